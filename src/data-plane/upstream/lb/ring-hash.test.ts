import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { normalizeWeights } from './hash-key.ts';
import { buildRingHash, ringHashSize } from './ring-hash.ts';
import type { RingHashSettings } from './ring-hash.ts';
import { makeHost } from './testing.ts';
import { splitBigInt, u64 } from './u64.ts';
import { xxhash64 } from './xxhash64.ts';
import { murmurHash2_64 } from './murmur-hash2.ts';
import type { HashTable, UpstreamHost } from './types.ts';

const SETTINGS: RingHashSettings = { minimumRingSize: 1024, maximumRingSize: 8 * 1024 * 1024, hashFunction: 'XX_HASH', useHostnameForHashing: false };

function ring(hosts: UpstreamHost[], settings: Partial<RingHashSettings> = {}): HashTable {
  return buildRingHash(normalizeWeights(hosts, undefined), { ...SETTINGS, ...settings });
}

function lookup(table: HashTable, hash: bigint, attempt = 0): UpstreamHost | undefined {
  splitBigInt(hash);
  return table.chooseHost(u64[0], u64[1], attempt);
}

const KEYS = Array.from({ length: 10000 }, (_, i) => xxhash64(`session-${i}`));

describe('buildRingHash', () => {
  it('sizes the ring so that the lightest host gets a whole number of entries', () => {
    const hundred = Array.from({ length: 100 }, (_, i) => makeHost(i));
    // ⌈0.01 × 1024⌉ / 0.01 = 1100 entries, 11 per host.
    assert.equal(ringHashSize(ring(hundred)), 1100);
    assert.equal(ringHashSize(ring([makeHost(0, { weight: 1 }), makeHost(1, { weight: 3 })])), 1024);
    assert.equal(ringHashSize(ring(hundred, { maximumRingSize: 512 })), 512);
    assert.equal(ringHashSize(ring(hundred, { minimumRingSize: 4096 })), 4100);
  });

  it('places entries at xxhash64("<ip:port>_<i>") as Envoy does, and maps a hash to the next entry', () => {
    const hosts = [0, 1, 2].map((i) => makeHost(i));
    const table = ring(hosts);
    for (const h of hosts) {
      for (const i of [0, 5, 300]) assert.equal(lookup(table, xxhash64(`${h.address}:${h.port}_${i}`)), h, `${h.id} entry ${i}`);
    }
    // Just past an entry goes to the following one, which is not always the same host.
    const owners = new Set(hosts.map((h) => lookup(table, xxhash64(`${h.id}_0`) + 1n)));
    assert.ok(owners.size >= 1);
    // Past the last entry wraps to the first.
    assert.ok(lookup(table, (1n << 64n) - 1n));
  });

  it('brackets IPv6 addresses in the key like Envoy’s address string', () => {
    const v6 = makeHost(0, { address: 'fd00::1', port: 80 });
    const table = ring([v6, makeHost(1)]);
    assert.equal(lookup(table, xxhash64('[fd00::1]:80_7')), v6);
  });

  it('hashes the hostname instead with use_hostname_for_hashing', () => {
    const named = makeHost(0, { hostname: 'reviews-v1.default.svc' });
    const table = ring([named, makeHost(1, { hostname: 'other' })], { useHostnameForHashing: true });
    assert.equal(lookup(table, xxhash64('reviews-v1.default.svc_3')), named);
  });

  it('uses MurmurHash2 for MURMUR_HASH_2', () => {
    const hosts = [0, 1, 2].map((i) => makeHost(i));
    const table = ring(hosts, { hashFunction: 'MURMUR_HASH_2' });
    for (const h of hosts) assert.equal(lookup(table, murmurHash2_64(`${h.id}_9`)), h);
  });

  it('sends the same hash to the same host, and spreads keys in proportion to weight', () => {
    const hosts = [makeHost(0, { weight: 1 }), makeHost(1, { weight: 1 }), makeHost(2, { weight: 2 })];
    const table = ring(hosts);
    const counts = new Map<UpstreamHost | undefined, number>();
    for (const k of KEYS) {
      const h = lookup(table, k);
      assert.equal(lookup(table, k), h);
      counts.set(h, (counts.get(h) ?? 0) + 1);
    }
    const heavy = counts.get(hosts[2])! / KEYS.length;
    assert.ok(heavy > 0.43 && heavy < 0.57, `weight-2 host got ${heavy}`);
  });

  it('remaps only about a tenth of the keys when one of 10 hosts goes away', () => {
    const hosts = Array.from({ length: 10 }, (_, i) => makeHost(i));
    const before = ring(hosts);
    const removed = hosts[4];
    const after = ring(hosts.filter((h) => h !== removed));
    let moved = 0;
    let orphaned = 0;
    for (const k of KEYS) {
      const was = lookup(before, k);
      const now = lookup(after, k);
      assert.notEqual(now, removed);
      if (was === removed) orphaned++;
      if (was !== now) moved++;
    }
    // The removed host's ≈10 % of keys all move. Envoy's sizing then gives each remaining host
    // ⌈1024 / 9⌉ = 114 entries instead of ⌈1024 / 10⌉ = 103, and those new entries take some more keys
    // (Sloop keeps Envoy's scheme so that a key lands where an Envoy sidecar would send it).
    assert.ok(orphaned > 800 && orphaned < 1200, `removed host had ${orphaned} keys`);
    assert.ok(moved - orphaned < orphaned, `${moved - orphaned} keys of remaining hosts moved`);
    assert.ok(moved < 2000, `${moved} of ${KEYS.length} keys moved`);
  });

  it('remaps only the removed host’s keys when the ring keeps its per-host entry count', () => {
    // 100 entries per host before and after (minimum_ring_size 1000 for 10 hosts, 900 for 9): the entries of
    // the remaining hosts are identical, so exactly the removed host's keys move.
    const hosts = Array.from({ length: 10 }, (_, i) => makeHost(i));
    const before = ring(hosts, { minimumRingSize: 1000 });
    const removed = hosts[4];
    const after = ring(hosts.filter((h) => h !== removed), { minimumRingSize: 900 });
    let moved = 0;
    for (const k of KEYS) {
      const was = lookup(before, k);
      if (was !== lookup(after, k)) {
        assert.equal(was, removed, 'only keys of the removed host move');
        moved++;
      }
    }
    assert.ok(moved > 700 && moved < 1300, `${moved} of ${KEYS.length} keys moved`);
  });

  it('moves a host-selection retry along the ring', () => {
    const hosts = Array.from({ length: 5 }, (_, i) => makeHost(i));
    const table = ring(hosts);
    let differs = 0;
    for (const k of KEYS.slice(0, 200)) if (lookup(table, k, 1) !== lookup(table, k, 0)) differs++;
    assert.ok(differs > 100, `retry picked another host for ${differs} of 200 keys`);
  });

  it('is empty without hosts', () => {
    assert.equal(lookup(ring([]), 5n), undefined);
  });
});
