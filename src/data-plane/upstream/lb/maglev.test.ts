import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeWeights } from './hash-key.ts';
import { buildMaglevTable, isPrime, maglevSlots } from './maglev.ts';
import { makeHost } from './testing.ts';
import { splitBigInt, u64 } from './u64.ts';
import { xxhash64 } from './xxhash64.ts';
import type { HashTable, UpstreamHost } from './types.ts';

function table(hosts: UpstreamHost[], tableSize = 65537): HashTable {
  return buildMaglevTable(normalizeWeights(hosts, undefined), { tableSize, useHostnameForHashing: false });
}

function lookup(t: HashTable, hash: bigint, attempt = 0): UpstreamHost | undefined {
  splitBigInt(hash);
  return t.chooseHost(u64[0], u64[1], attempt);
}

function slotCounts(t: HashTable): number[] {
  const counts: number[] = [];
  for (const i of maglevSlots(t)!) counts[i] = (counts[i] ?? 0) + 1;
  return counts;
}

const KEYS = Array.from({ length: 10000 }, (_, i) => xxhash64(`conn-${i}`));

describe('isPrime', () => {
  it('recognizes the default and maximum table sizes and rejects composites', () => {
    for (const p of [2, 3, 7, 65537, 5000011]) assert.ok(isPrime(p), `${p}`);
    for (const c of [0, 1, 4, 65536, 65535, 5000010, 1.5, -7]) assert.ok(!isPrime(c), `${c}`);
  });
});

describe('buildMaglevTable', () => {
  it('fills every slot, equal weights within one slot of each other', () => {
    const t = table(Array.from({ length: 7 }, (_, i) => makeHost(i)));
    const slots = maglevSlots(t)!;
    assert.equal(slots.length, 65537);
    assert.ok(slots.every((s) => s >= 0));
    const counts = slotCounts(t);
    assert.ok(Math.max(...counts) - Math.min(...counts) <= 1, `counts ${counts}`);
  });

  it('gives weighted hosts proportional slots', () => {
    const t = table([makeHost(0, { weight: 1 }), makeHost(1, { weight: 2 })]);
    const counts = slotCounts(t);
    assert.ok(Math.abs(counts[1] / 65537 - 2 / 3) < 0.001, `counts ${counts}`);
  });

  it('builds the same table as a BigInt transcription of Envoy’s MaglevTable', () => {
    // Envoy: hosts sorted by key; offset = xxHash64(key) % M, skip = xxHash64(key, 1) % (M - 1) + 1; each
    // round, a host whose weight allows it claims the next free slot of its permutation.
    function reference(entries: { key: string; weight: number }[], m: number): number[] {
      const sorted = [...entries].sort((a, b) => (a.key < b.key ? -1 : 1));
      const max = Math.max(...sorted.map((e) => e.weight));
      const state = sorted.map((e) => ({
        offset: xxhash64(e.key) % BigInt(m),
        skip: (xxhash64(e.key, 1n) % BigInt(m - 1)) + 1n,
        weight: e.weight,
        target: 0,
        next: 0n,
      }));
      const out = new Array<number>(m).fill(-1);
      let filled = 0;
      for (let iteration = 1; filled < m; iteration++) {
        state.forEach((s, i) => {
          if (filled >= m || iteration * s.weight < s.target) return;
          s.target += max;
          let c = Number((s.offset + s.skip * s.next) % BigInt(m));
          while (out[c] >= 0) c = Number((s.offset + s.skip * ++s.next) % BigInt(m));
          out[c] = i;
          s.next++;
          filled++;
        });
      }
      return out;
    }
    const hosts = [makeHost(3, { weight: 2 }), makeHost(1, { weight: 1 }), makeHost(2, { weight: 3 })];
    for (const m of [13, 251, 65537]) {
      const total = hosts.reduce((a, h) => a + h.weight, 0);
      const expected = reference(hosts.map((h) => ({ key: h.id, weight: h.weight / total })), m);
      assert.deepEqual([...maglevSlots(table(hosts, m))!], expected, `table size ${m}`);
    }
  });

  it('looks a hash up at table[hash mod size]', () => {
    const hosts = Array.from({ length: 5 }, (_, i) => makeHost(i));
    const t = table(hosts);
    const slots = maglevSlots(t)!;
    const sortedHosts = [...hosts].sort((a, b) => (a.id < b.id ? -1 : 1));
    for (const k of KEYS.slice(0, 500)) assert.equal(lookup(t, k), sortedHosts[slots[Number(k % 65537n)]]);
  });

  it('does not depend on the order hosts arrive in', () => {
    const hosts = Array.from({ length: 6 }, (_, i) => makeHost(i));
    const a = table(hosts);
    const b = table([...hosts].reverse());
    for (const k of KEYS.slice(0, 500)) assert.equal(lookup(a, k), lookup(b, k));
  });

  it('remaps few keys besides those of a removed host (1 of 10)', () => {
    const hosts = Array.from({ length: 10 }, (_, i) => makeHost(i));
    const before = table(hosts);
    const removed = hosts[3];
    const after = table(hosts.filter((h) => h !== removed));
    let moved = 0;
    let orphaned = 0;
    for (const k of KEYS) {
      const was = lookup(before, k);
      const now = lookup(after, k);
      assert.notEqual(now, removed);
      if (was === removed) orphaned++;
      if (was !== now) moved++;
    }
    assert.ok(orphaned > 800 && orphaned < 1200, `removed host had ${orphaned} keys`);
    assert.ok(moved < 1600, `${moved} of ${KEYS.length} keys moved`);
  });

  it('flips the hash on a host-selection retry (Envoy: hash ^ (2^64 - attempt))', () => {
    const hosts = Array.from({ length: 5 }, (_, i) => makeHost(i));
    const t = table(hosts);
    const k = KEYS[0];
    const flipped = k ^ ((1n << 64n) - 1n);
    assert.equal(lookup(t, k, 1), lookup(t, flipped, 0));
    assert.equal(lookup(t, k, 2), lookup(t, k ^ ((1n << 64n) - 2n), 0));
  });

  it('works with small prime tables and is empty without hosts', () => {
    const t = table([makeHost(0), makeHost(1), makeHost(2)], 7);
    assert.ok(maglevSlots(t)!.every((s) => s >= 0 && s < 3));
    assert.equal(lookup(table([]), 1n), undefined);
  });
});
