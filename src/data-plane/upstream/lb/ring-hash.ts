/**
 * RING_HASH (arch_overview/upstream/load_balancing/load_balancers#ring-hash, `Cluster.RingHashLbConfig`):
 * a ketama-style ring. Each host gets entries hashed from `"<key>_<i>"`, as many as its normalized weight
 * times the scale; the scale is chosen so that the lightest host gets a whole number of entries and the
 * ring has at least `minimum_ring_size` (default 1024) and at most `maximum_ring_size` (default 8M)
 * entries. A request takes the first entry whose hash is ≥ its own, wrapping to the first entry.
 *
 * Export: `buildRingHash(weights, settings): HashTable`, `ringHashSize(table)` for tests.
 */
import { murmurHash2_64 } from './murmur-hash2.ts';
import { splitBigInt, u64 } from './u64.ts';
import { xxhash64ToRegister } from './xxhash64.ts';
import { hashKeyOf } from './hash-key.ts';
import { NO_HOSTS } from './types.ts';
import type { HashTable, NormalizedHostWeight, UpstreamHost } from './types.ts';

/** Envoy's defaults and hard limit for ring sizes. */
export const DEFAULT_MIN_RING_SIZE = 1024;
export const DEFAULT_MAX_RING_SIZE = 8 * 1024 * 1024;
export const RING_SIZE_LIMIT = 8 * 1024 * 1024;

/** Validated `ring_hash_lb_config` plus the consistent-hashing options that apply to it. */
export interface RingHashSettings {
  minimumRingSize: number;
  maximumRingSize: number;
  hashFunction: 'XX_HASH' | 'MURMUR_HASH_2';
  useHostnameForHashing: boolean;
}

class Ring implements HashTable {
  private readonly hashHi: Uint32Array;
  private readonly hashLo: Uint32Array;
  private readonly hostIndex: Int32Array;
  private readonly hosts: readonly UpstreamHost[];

  constructor(hashHi: Uint32Array, hashLo: Uint32Array, hostIndex: Int32Array, hosts: readonly UpstreamHost[]) {
    this.hashHi = hashHi;
    this.hashLo = hashLo;
    this.hostIndex = hostIndex;
    this.hosts = hosts;
  }

  get size(): number {
    return this.hostIndex.length;
  }

  chooseHost(hi: number, lo: number, attempt: number): UpstreamHost {
    const hashHi = this.hashHi;
    const hashLo = this.hashLo;
    const n = hashHi.length;
    // Lower bound: the first entry with hash ≥ (hi:lo).
    let left = 0;
    let right = n;
    while (left < right) {
      const mid = (left + right) >>> 1;
      const mh = hashHi[mid];
      if (mh < hi || (mh === hi && hashLo[mid] < lo)) left = mid + 1;
      else right = mid;
    }
    if (left === n) left = 0;
    // Envoy on a host-selection retry: behave as if that entry weren't there by stepping `attempt`
    // entries along the ring (which may still land on the same host).
    if (attempt > 0) left = (left + attempt) % n;
    return this.hosts[this.hostIndex[left]];
  }
}

/** Number of entries of a table built by {@link buildRingHash} (0 for an empty one). */
export function ringHashSize(table: HashTable): number {
  return table instanceof Ring ? table.size : 0;
}

/** Build the ring for one list of hosts. Config-time work: O(ring size × log). */
export function buildRingHash(weights: readonly NormalizedHostWeight[], settings: RingHashSettings): HashTable {
  if (weights.length === 0) return NO_HOSTS;
  // Hosts in key order, so the ring does not depend on EDS order when entry counts are fractional.
  const sorted = weights
    .map((w) => ({ ...w, key: hashKeyOf(w.host, settings.useHostnameForHashing) }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  let minWeight = Infinity;
  for (const w of sorted) minWeight = Math.min(minWeight, w.weight);
  // Envoy: scale so that the lightest host gets ⌈min_weight × min_ring_size⌉ entries, capped at the max.
  const scale = Math.min(Math.ceil(minWeight * settings.minimumRingSize) / minWeight, settings.maximumRingSize);
  const ringSize = Math.ceil(scale);

  const hi = new Uint32Array(ringSize);
  const lo = new Uint32Array(ringSize);
  const owners = new Int32Array(ringSize);
  const hosts: UpstreamHost[] = [];
  const murmur = settings.hashFunction === 'MURMUR_HASH_2';
  // Running sums keep the total at ⌈scale⌉ entries even when per-host counts are fractional.
  let n = 0;
  let target = 0;
  for (const entry of sorted) {
    const index = hosts.push(entry.host) - 1;
    target += scale * entry.weight;
    for (let i = 0; n < target && n < ringSize; i++, n++) {
      const key = `${entry.key}_${i}`;
      if (murmur) splitBigInt(murmurHash2_64(key));
      else xxhash64ToRegister(key);
      hi[n] = u64[0];
      lo[n] = u64[1];
      owners[n] = index;
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => hi[a] - hi[b] || lo[a] - lo[b]);
  const sortedHi = new Uint32Array(n);
  const sortedLo = new Uint32Array(n);
  const hostIndex = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const j = order[i];
    sortedHi[i] = hi[j];
    sortedLo[i] = lo[j];
    hostIndex[i] = owners[j];
  }
  return new Ring(sortedHi, sortedLo, hostIndex, hosts);
}
