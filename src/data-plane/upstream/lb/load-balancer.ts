/**
 * Upstream load balancing: Envoy's cluster load balancers (arch_overview/upstream/load_balancing and
 * `envoy.config.cluster.v3.Cluster`), entry point of this folder.
 *
 * ```ts
 * const lb = createLoadBalancer(cluster, hostsByPriority, random);   // throws ConfigError on bad config
 * const host = lb.chooseHost({ hash, random, shouldSelectAnotherHost });
 * ```
 * - `hostsByPriority[p]` are the hosts of priority p (index = priority). The cluster manager owns the host
 *   objects and builds a new balancer whenever membership, weights or health change; `activeRequests` is
 *   read live. Building is O(hosts) (plus the table for RING_HASH / MAGLEV); `chooseHost` is O(1) or
 *   O(log n) and allocation-free.
 * - Every policy first picks a priority and a host source from the priority load (priority-set.ts:
 *   overprovisioning factor, degraded hosts, panic threshold, locality weights), then the policy picks a
 *   host from that source: ROUND_ROBIN (round-robin.ts), LEAST_REQUEST (least-request.ts), RANDOM
 *   (random.ts), RING_HASH (ring-hash.ts), MAGLEV (maglev.ts).
 * - The hashing policies use `ctx.hash` for both the priority and the host, so a key sticks to a host; with
 *   no hash they pick a random point (Envoy does the same).
 * - `shouldSelectAnotherHost` gets up to `hostSelectionRetryMaxAttempts` (default 1) further picks, then
 *   the last pick stands (Envoy's host selection retry).
 *
 * Not supported (rejected with SLOOP_ERR_CONFIG_UNSUPPORTED): CLUSTER_PROVIDED, LOAD_BALANCING_POLICY_CONFIG
 * (typed `load_balancing_policy`). Ignored: `slow_start_config`, `zone_aware_lb_config` (needs the local
 * cluster), `consistent_hashing_lb_config.hash_balance_factor` (bounded loads),
 * `ClusterLoadAssignment.policy.weighted_priority_health`.
 */
import { ConfigError } from '../../../shared/errors.ts';
import type { Diagnostic } from '../../../shared/errors.ts';
import type { Cluster__Output } from '../../../xds/gen/envoy/config/cluster/v3/Cluster.ts';
import { normalizeWeights } from './hash-key.ts';
import { createLeastRequestPicker } from './least-request.ts';
import type { LeastRequestSettings } from './least-request.ts';
import { buildMaglevTable, DEFAULT_MAGLEV_TABLE_SIZE, isPrime, MAX_MAGLEV_TABLE_SIZE } from './maglev.ts';
import type { MaglevSettings } from './maglev.ts';
import {
  buildHostSet,
  computePriorityLoad,
  createLocalityPicker,
  DEFAULT_OVERPROVISIONING_FACTOR,
  DEFAULT_PANIC_THRESHOLD_PERCENT,
  PriorityBands,
} from './priority-set.ts';
import type { HostSet, HostSource } from './priority-set.ts';
import { createRandomPicker } from './random.ts';
import { buildRingHash, DEFAULT_MAX_RING_SIZE, DEFAULT_MIN_RING_SIZE, RING_SIZE_LIMIT } from './ring-hash.ts';
import type { RingHashSettings } from './ring-hash.ts';
import { createRoundRobinPicker } from './round-robin.ts';
import { splitBigInt, u64 } from './u64.ts';
import type { HashTable, HostPicker, LbContext, LoadBalancer, UpstreamHost } from './types.ts';

export type { HostHealth, LbContext, LoadBalancer, UpstreamHost } from './types.ts';

/** The `lb_policy` values Sloop implements. */
export type SupportedLbPolicy = 'ROUND_ROBIN' | 'LEAST_REQUEST' | 'RANDOM' | 'RING_HASH' | 'MAGLEV';

/** Inputs that come from outside the Cluster resource. */
export interface LoadBalancerOptions {
  /**
   * `ClusterLoadAssignment.policy.overprovisioning_factor` from EDS, in percent. Defaults to the cluster's
   * own `load_assignment` policy, else 140.
   */
  overprovisioningFactor?: number;
}

/** A cluster's load-balancing configuration, validated and with Envoy's defaults applied. */
export interface LbSettings {
  readonly policy: SupportedLbPolicy;
  /** `common_lb_config.healthy_panic_threshold`, percent; 0 disables panic mode. */
  readonly panicThresholdPercent: number;
  /** `common_lb_config.locality_weighted_lb_config` is set. */
  readonly localityWeighted: boolean;
  /** Percent (140 = 1.4). */
  readonly overprovisioningFactor: number;
  readonly leastRequest: LeastRequestSettings;
  readonly ringHash: RingHashSettings;
  readonly maglev: MaglevSettings;
}

const SUPPORTED_POLICIES: ReadonlySet<string> = new Set<SupportedLbPolicy>(['ROUND_ROBIN', 'LEAST_REQUEST', 'RANDOM', 'RING_HASH', 'MAGLEV']);

function error(diags: Diagnostic[], path: string, message: string, code: Diagnostic['code'] = 'SLOOP_ERR_CONFIG_INVALID'): void {
  diags.push({ severity: 'error', code, path, message });
}

/** A UInt64Value's number, or `fallback` when unset. Values beyond 2^53 come out inexact but still too big. */
function uint64(value: { value: string } | null | undefined, fallback: number): number {
  return value ? Number(value.value) : fallback;
}

/**
 * Validate and default the load-balancing fields of a Cluster. Collects every problem, then throws.
 * @throws ConfigError listing each invalid or unsupported field (paths relative to the Cluster).
 */
export function parseLbSettings(cluster: Cluster__Output, options: LoadBalancerOptions = {}): LbSettings {
  const diags: Diagnostic[] = [];
  const policy = cluster.lb_policy;
  if (!SUPPORTED_POLICIES.has(policy)) {
    error(diags, 'lb_policy', `lb_policy ${policy} is not supported; use ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH or MAGLEV`, 'SLOOP_ERR_CONFIG_UNSUPPORTED');
  }

  const common = cluster.common_lb_config;
  let panicThresholdPercent = DEFAULT_PANIC_THRESHOLD_PERCENT;
  if (common?.healthy_panic_threshold) {
    const value = common.healthy_panic_threshold.value;
    // type.v3.Percent: [0, 100]. Envoy rounds it to an integer percent (PROTOBUF_PERCENT_TO_ROUNDED_INTEGER_OR_DEFAULT).
    if (!(value >= 0 && value <= 100)) {
      error(diags, 'common_lb_config.healthy_panic_threshold.value', `must be within [0, 100], got ${value}`);
    }
    panicThresholdPercent = Math.round(value);
  }
  const localityWeighted = common?.locality_config_specifier === 'locality_weighted_lb_config';

  const overprovisioningFactor =
    options.overprovisioningFactor ?? cluster.load_assignment?.policy?.overprovisioning_factor?.value ?? DEFAULT_OVERPROVISIONING_FACTOR;
  // ClusterLoadAssignment.Policy.overprovisioning_factor: uint32, gt 0.
  if (!(Number.isInteger(overprovisioningFactor) && overprovisioningFactor > 0)) {
    error(diags, 'load_assignment.policy.overprovisioning_factor.value', `must be a positive integer, got ${overprovisioningFactor}`);
  }

  const lr = cluster.least_request_lb_config;
  const choiceCount = lr?.choice_count ? lr.choice_count.value : 2;
  if (policy === 'LEAST_REQUEST' && choiceCount < 2) {
    error(diags, 'least_request_lb_config.choice_count.value', `must be at least 2, got ${choiceCount}`);
  }
  const activeRequestBias = lr?.active_request_bias ? lr.active_request_bias.default_value : 1;
  if (policy === 'LEAST_REQUEST' && !(activeRequestBias >= 0 && Number.isFinite(activeRequestBias))) {
    error(diags, 'least_request_lb_config.active_request_bias.default_value', `must be a finite number ≥ 0, got ${activeRequestBias}`);
  }

  const useHostnameForHashing = common?.consistent_hashing_lb_config?.use_hostname_for_hashing ?? false;
  const ring = cluster.ring_hash_lb_config;
  const minimumRingSize = uint64(ring?.minimum_ring_size, DEFAULT_MIN_RING_SIZE);
  const maximumRingSize = uint64(ring?.maximum_ring_size, DEFAULT_MAX_RING_SIZE);
  if (policy === 'RING_HASH') {
    // cluster.proto: both sizes are limited to 8M; Envoy also rejects min > max.
    if (minimumRingSize > RING_SIZE_LIMIT) error(diags, 'ring_hash_lb_config.minimum_ring_size.value', `must be at most ${RING_SIZE_LIMIT}, got ${minimumRingSize}`);
    if (maximumRingSize > RING_SIZE_LIMIT) error(diags, 'ring_hash_lb_config.maximum_ring_size.value', `must be at most ${RING_SIZE_LIMIT}, got ${maximumRingSize}`);
    if (minimumRingSize > maximumRingSize) {
      error(diags, 'ring_hash_lb_config.minimum_ring_size.value', `minimum_ring_size (${minimumRingSize}) > maximum_ring_size (${maximumRingSize})`);
    }
    if (maximumRingSize < 1) error(diags, 'ring_hash_lb_config.maximum_ring_size.value', 'must be at least 1');
  }
  const hashFunction = ring?.hash_function === 'MURMUR_HASH_2' ? 'MURMUR_HASH_2' : 'XX_HASH';

  const tableSize = uint64(cluster.maglev_lb_config?.table_size, DEFAULT_MAGLEV_TABLE_SIZE);
  if (policy === 'MAGLEV') {
    // cluster.proto: "The table size must be prime number limited to 5000011."
    if (!isPrime(tableSize)) error(diags, 'maglev_lb_config.table_size.value', `must be a prime number, got ${tableSize}`);
    else if (tableSize > MAX_MAGLEV_TABLE_SIZE) error(diags, 'maglev_lb_config.table_size.value', `must be at most ${MAX_MAGLEV_TABLE_SIZE}, got ${tableSize}`);
  }

  if (diags.length > 0) throw new ConfigError(diags, `load balancing of cluster "${cluster.name}"`);
  return {
    policy: policy as SupportedLbPolicy,
    panicThresholdPercent,
    localityWeighted,
    overprovisioningFactor,
    leastRequest: { choiceCount, activeRequestBias },
    ringHash: { minimumRingSize, maximumRingSize, hashFunction, useHostnameForHashing },
    maglev: { tableSize, useHostnameForHashing },
  };
}

/**
 * Build the load balancer of a cluster for the current hosts.
 * @param cluster the CDS resource (its `lb_policy`, `*_lb_config` and `common_lb_config` are read).
 * @param hostsByPriority hosts per priority, index = priority; arrays are kept by reference and must not
 *   be mutated afterwards (build a new balancer instead). Host objects may be mutated in place.
 * @param random uniform [0, 1), used at build time (start offsets); picks use `ctx.random`.
 * @throws ConfigError for invalid or unsupported configuration (see {@link parseLbSettings}).
 */
export function createLoadBalancer(
  cluster: Cluster__Output,
  hostsByPriority: readonly (readonly UpstreamHost[])[],
  random: () => number,
  options?: LoadBalancerOptions,
): LoadBalancer {
  return createLoadBalancerFromSettings(parseLbSettings(cluster, options), hostsByPriority, random);
}

/** {@link createLoadBalancer} with settings parsed once per Cluster version (no validation here). */
export function createLoadBalancerFromSettings(
  settings: LbSettings,
  hostsByPriority: readonly (readonly UpstreamHost[])[],
  random: () => number,
): LoadBalancer {
  let any = false;
  for (const hosts of hostsByPriority) if (hosts.length > 0) any = true;
  if (!any) return EMPTY_LOAD_BALANCER;
  const sets = hostsByPriority.map((hosts, p) => buildHostSet(hosts, p));
  const load = computePriorityLoad(sets, settings.overprovisioningFactor, settings.panicThresholdPercent);
  if (settings.policy === 'RING_HASH' || settings.policy === 'MAGLEV') {
    const cache = new Map<string, HashTable>();
    const bands = new PriorityBands<HashTable>(load, (p, source) => cached(cache, p, source, () => buildHashTable(settings, sets[p], source)));
    return new HashingLoadBalancer(bands);
  }
  const pickerFor = (hosts: readonly UpstreamHost[]): HostPicker => {
    switch (settings.policy) {
      case 'LEAST_REQUEST':
        return createLeastRequestPicker(hosts, settings.leastRequest, random);
      case 'RANDOM':
        return createRandomPicker(hosts);
      default:
        return createRoundRobinPicker(hosts, random);
    }
  };
  const cache = new Map<string, HostPicker>();
  const bands = new PriorityBands<HostPicker>(load, (p, source) =>
    cached(cache, p, source, () => {
      const set = sets[p];
      const plain = pickerFor(set[source]);
      // Locality weighting applies to healthy and degraded sources; panic balances over all hosts
      // (Envoy's hostSourceToUse checks panic before localities).
      if (!settings.localityWeighted || source === 'all') return plain;
      return createLocalityPicker(set, source, settings.overprovisioningFactor, pickerFor, plain, random);
    }),
  );
  return new PickingLoadBalancer(bands);
}

/** One picker or table per (priority, source): panic maps a priority's healthy and degraded bands to one. */
function cached<S>(cache: Map<string, S>, priority: number, source: HostSource, build: () => S): S {
  const key = `${priority}/${source}`;
  let value = cache.get(key);
  if (value === undefined) {
    value = build();
    cache.set(key, value);
  }
  return value;
}

function buildHashTable(settings: LbSettings, set: HostSet, source: HostSource): HashTable {
  // Sloop builds a separate table from the degraded hosts for the degraded band of the priority load,
  // so that degraded hosts take the spill-over the load assigns them.
  const weights = normalizeWeights(set[source], settings.localityWeighted ? set : undefined);
  return settings.policy === 'MAGLEV' ? buildMaglevTable(weights, settings.maglev) : buildRingHash(weights, settings.ringHash);
}

const EMPTY_LOAD_BALANCER: LoadBalancer = { chooseHost: () => undefined };

class PickingLoadBalancer implements LoadBalancer {
  private readonly bands: PriorityBands<HostPicker>;
  private readonly only: HostPicker | undefined;

  constructor(bands: PriorityBands<HostPicker>) {
    this.bands = bands;
    this.only = bands.only;
  }

  private pickOnce(ctx: LbContext): UpstreamHost | undefined {
    // Envoy's choosePriority draws in 1..100 against the cumulative priority load.
    const source = this.only ?? this.bands.select(Math.floor(ctx.random() * 100) + 1);
    return source.pick(ctx);
  }

  chooseHost(ctx: LbContext): UpstreamHost | undefined {
    const avoid = ctx.shouldSelectAnotherHost;
    const retries = ctx.hostSelectionRetryMaxAttempts ?? 1;
    for (let attempt = 0; ; attempt++) {
      const host = this.pickOnce(ctx);
      if (host === undefined || avoid === undefined || attempt >= retries || !avoid(host)) return host;
    }
  }
}

const TWO_POW_32 = 4294967296;
// 2^32 mod 100, to reduce a 64-bit hash mod 100 from its halves.
const TWO_POW_32_MOD_100 = 96;

class HashingLoadBalancer implements LoadBalancer {
  private readonly bands: PriorityBands<HashTable>;
  private readonly only: HashTable | undefined;

  constructor(bands: PriorityBands<HashTable>) {
    this.bands = bands;
    this.only = bands.only;
  }

  chooseHost(ctx: LbContext): UpstreamHost | undefined {
    let hi: number;
    let lo: number;
    if (ctx.hash !== undefined) {
      splitBigInt(ctx.hash);
      hi = u64[0];
      lo = u64[1];
    } else {
      hi = Math.floor(ctx.random() * TWO_POW_32);
      lo = Math.floor(ctx.random() * TWO_POW_32);
    }
    // Envoy picks the priority with the same hash (hash % 100 + 1), so a key also sticks to a priority.
    const table = this.only ?? this.bands.select((((hi % 100) * TWO_POW_32_MOD_100 + lo) % 100) + 1);
    const avoid = ctx.shouldSelectAnotherHost;
    const retries = ctx.hostSelectionRetryMaxAttempts ?? 1;
    for (let attempt = 0; ; attempt++) {
      const host = table.chooseHost(hi, lo, attempt);
      if (host === undefined || avoid === undefined || attempt >= retries || !avoid(host)) return host;
    }
  }
}
