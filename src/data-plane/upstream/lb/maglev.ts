/**
 * MAGLEV (arch_overview/upstream/load_balancing/load_balancers#maglev, `Cluster.MaglevLbConfig`): the
 * lookup table of Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load Balancer" (NSDI '16),
 * §3.4, as Envoy builds it. Each host walks its own permutation of the table slots — offset
 * `xxhash64(key) mod M`, skip `xxhash64(key, seed 1) mod (M − 1) + 1` — and the hosts take turns claiming
 * their next free slot; a host of weight w takes a turn in w/max_weight of the rounds. M (`table_size`,
 * default 65537) must be prime so that every permutation visits every slot. A request takes
 * `table[hash mod M]`.
 *
 * Export: `buildMaglevTable(weights, settings): HashTable`, `isPrime(n)`, `maglevSlots(table)` for tests.
 */
import { hashKeyOf } from './hash-key.ts';
import { u64 } from './u64.ts';
import { xxhash64ToRegister } from './xxhash64.ts';
import { NO_HOSTS } from './types.ts';
import type { HashTable, NormalizedHostWeight, UpstreamHost } from './types.ts';

/** Envoy's default table size, and the largest it accepts. */
export const DEFAULT_MAGLEV_TABLE_SIZE = 65537;
export const MAX_MAGLEV_TABLE_SIZE = 5000011;

/** Validated `maglev_lb_config` plus the consistent-hashing options that apply to it. */
export interface MaglevSettings {
  /** A prime ≤ {@link MAX_MAGLEV_TABLE_SIZE}. */
  tableSize: number;
  useHostnameForHashing: boolean;
}

/** Whether `n` is prime (trial division; table sizes are at most a few million). */
export function isPrime(n: number): boolean {
  if (!Number.isSafeInteger(n) || n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

/** (hi·2^32 + lo) mod m for uint32 halves, exact while m² < 2^53. */
function mod64(hi: number, lo: number, m: number, pow32ModM: number): number {
  return ((hi % m) * pow32ModM + lo) % m;
}

class MaglevTable implements HashTable {
  /** Slot → index into `hosts`. */
  readonly slots: Int32Array;
  private readonly hosts: readonly UpstreamHost[];
  private readonly size: number;
  private readonly pow32ModSize: number;

  constructor(table: Int32Array, hosts: readonly UpstreamHost[]) {
    this.slots = table;
    this.hosts = hosts;
    this.size = table.length;
    this.pow32ModSize = 4294967296 % table.length;
  }

  chooseHost(hi: number, lo: number, attempt: number): UpstreamHost {
    if (attempt > 0) {
      // Envoy: hash ^= ~0 - attempt + 1 (that is 2^64 - attempt), flipping many bits so that retries
      // scatter across the table instead of landing on a neighbour.
      hi = (hi ^ 0xffffffff) >>> 0;
      lo = (lo ^ (4294967296 - attempt)) >>> 0;
    }
    return this.hosts[this.slots[mod64(hi, lo, this.size, this.pow32ModSize)]];
  }
}

/** The slot → host index array of a table built by {@link buildMaglevTable}, for tests (undefined if empty). */
export function maglevSlots(table: HashTable): Int32Array | undefined {
  return table instanceof MaglevTable ? table.slots : undefined;
}

/** Build the table for one list of hosts. Config-time work: O(M log M) expected. */
export function buildMaglevTable(weights: readonly NormalizedHostWeight[], settings: MaglevSettings): HashTable {
  if (weights.length === 0) return NO_HOSTS;
  const m = settings.tableSize;
  const pow32 = 4294967296 % m;
  // Key order, as Envoy sorts: the fill order decides collisions, and EDS order must not matter.
  const sorted = weights
    .map((w) => ({ ...w, key: hashKeyOf(w.host, settings.useHostnameForHashing) }))
    .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const n = sorted.length;
  const offset = new Float64Array(n);
  const skip = new Float64Array(n);
  const weight = new Float64Array(n);
  const targetWeight = new Float64Array(n);
  const next = new Float64Array(n);
  const hosts: UpstreamHost[] = [];
  let maxWeight = 0;
  for (let i = 0; i < n; i++) {
    const { key } = sorted[i];
    hosts.push(sorted[i].host);
    xxhash64ToRegister(key);
    offset[i] = mod64(u64[0], u64[1], m, pow32);
    xxhash64ToRegister(key, 0, 1);
    skip[i] = (mod64(u64[0], u64[1], m - 1, 4294967296 % (m - 1))) + 1;
    weight[i] = sorted[i].weight;
    maxWeight = Math.max(maxWeight, weight[i]);
  }

  const table = new Int32Array(m).fill(-1);
  let filled = 0;
  for (let iteration = 1; filled < m; iteration++) {
    for (let i = 0; i < n && filled < m; i++) {
      // A host with max weight takes a slot every round; one with a third of it, every third round.
      if (iteration * weight[i] < targetWeight[i]) continue;
      targetWeight[i] += maxWeight;
      let slot = (offset[i] + skip[i] * next[i]) % m;
      while (table[slot] >= 0) {
        next[i]++;
        slot = (offset[i] + skip[i] * next[i]) % m;
      }
      table[slot] = i;
      next[i]++;
      filled++;
    }
  }
  return new MaglevTable(table, hosts);
}
