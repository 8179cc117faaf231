/**
 * Priority levels, panic mode, degraded hosts and localities: what every Envoy load balancer does before
 * the policy itself picks a host (Envoy's `LoadBalancerBase` / `ZoneAwareLoadBalancerBase`).
 *
 * - Per priority P: health(P) = min(100, ⌊OF × healthy / total⌋) and degraded(P) likewise, with the
 *   overprovisioning factor OF in percent (default 140, i.e. 1.4). Integer arithmetic, as Envoy's.
 * - Normalized total availability = min(100, Σ health + degraded). Load is distributed in priority order,
 *   healthy first: load(P) = min(remaining, ⌊health(P) × 100 / total⌋); then degraded load from what is
 *   left; rounding leftovers go to the first priority with any availability.
 *   (arch_overview/upstream/load_balancing/priority, …/degraded)
 * - Panic (arch_overview/upstream/load_balancing/panic_threshold): unless the normalized total is 100, a
 *   priority whose (healthy + degraded) % is below `healthy_panic_threshold` (default 50) balances across
 *   all its hosts. When every priority is in panic, load is split by host count instead.
 * - Locality weighted LB (…/locality_weight): a locality's effective weight is its weight × min(1, OF ×
 *   eligible / total) in that locality, and localities are picked by EDF on those weights.
 */
import { EdfScheduler } from './edf-scheduler.ts';
import type { HostPicker, LbContext, UpstreamHost } from './types.ts';

/** Envoy's default overprovisioning factor, in percent. */
export const DEFAULT_OVERPROVISIONING_FACTOR = 140;
/** Envoy's default `healthy_panic_threshold`, in percent. */
export const DEFAULT_PANIC_THRESHOLD_PERCENT = 50;

/** The hosts of one locality within one priority. */
export interface LocalityHosts {
  /** Locality key (`region/zone/sub_zone`). */
  readonly key: string;
  /** The locality's `load_balancing_weight` (from its first host). */
  readonly weight: number;
  readonly all: readonly UpstreamHost[];
  readonly healthy: readonly UpstreamHost[];
  readonly degraded: readonly UpstreamHost[];
}

/** One priority's hosts, split by health and by locality. */
export interface HostSet {
  readonly priority: number;
  readonly all: readonly UpstreamHost[];
  readonly healthy: readonly UpstreamHost[];
  readonly degraded: readonly UpstreamHost[];
  /** Localities sorted by key, so that the result doesn't depend on EDS order. */
  readonly localities: readonly LocalityHosts[];
}

/** Split one priority's hosts by health and locality. Unhealthy hosts appear only in `all`. */
export function buildHostSet(hosts: readonly UpstreamHost[], priority: number): HostSet {
  const healthy: UpstreamHost[] = [];
  const degraded: UpstreamHost[] = [];
  const byKey = new Map<string, { key: string; weight: number; all: UpstreamHost[]; healthy: UpstreamHost[]; degraded: UpstreamHost[] }>();
  for (const host of hosts) {
    let loc = byKey.get(host.locality);
    if (!loc) {
      loc = { key: host.locality, weight: host.localityWeight, all: [], healthy: [], degraded: [] };
      byKey.set(host.locality, loc);
    }
    loc.all.push(host);
    if (host.outlierEjected === true) continue; // Envoy: FAILED_OUTLIER_CHECK makes a host unhealthy
    if (host.health === 'healthy') {
      healthy.push(host);
      loc.healthy.push(host);
    } else if (host.health === 'degraded') {
      degraded.push(host);
      loc.degraded.push(host);
    }
  }
  const localities = [...byKey.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return { priority, all: hosts, healthy, degraded, localities };
}

/** How traffic splits across priorities, in integer percent (healthy + degraded loads sum to 100). */
export interface PriorityLoad {
  /** Percent of requests that go to each priority's healthy hosts (or all its hosts when in panic). */
  readonly healthy: readonly number[];
  /** Percent of requests that go to each priority's degraded hosts. */
  readonly degraded: readonly number[];
  /** Whether each priority is in panic mode (balances across all of its hosts). */
  readonly panic: readonly boolean[];
}

function availability(count: number, total: number, overprovisioningFactor: number): number {
  return total === 0 ? 0 : Math.min(100, Math.floor((overprovisioningFactor * count) / total));
}

/**
 * Envoy's priority load, degraded load and panic flags for the given host sets.
 * @param overprovisioningFactor percent (140 = 1.4).
 * @param panicThresholdPercent 0–100; 0 disables panic mode.
 */
export function computePriorityLoad(hostSets: readonly HostSet[], overprovisioningFactor: number, panicThresholdPercent: number): PriorityLoad {
  const n = Math.max(1, hostSets.length);
  const healthyLoad = new Array<number>(n).fill(0);
  const degradedLoad = new Array<number>(n).fill(0);
  const panic = new Array<boolean>(n).fill(false);
  const health = new Array<number>(n).fill(0);
  const degradedAvail = new Array<number>(n).fill(0);
  let sum = 0;
  for (let p = 0; p < hostSets.length; p++) {
    const set = hostSets[p];
    health[p] = availability(set.healthy.length, set.all.length, overprovisioningFactor);
    degradedAvail[p] = availability(set.degraded.length, set.all.length, overprovisioningFactor);
    sum += health[p] + degradedAvail[p];
  }
  const normalizedTotal = Math.min(100, sum);

  if (normalizedTotal === 0 && panicThresholdPercent === 0) {
    // Panic disabled and nothing available: Envoy sends everything to P0, which then finds no host.
    healthyLoad[0] = 100;
    return { healthy: healthyLoad, degraded: degradedLoad, panic };
  }

  // Envoy ignores the panic threshold while the priorities together can carry all traffic.
  let totalPanic = hostSets.length > 0;
  for (let p = 0; p < hostSets.length; p++) {
    const set = hostSets[p];
    if (normalizedTotal === 100) {
      panic[p] = false;
    } else {
      const total = set.all.length;
      const availablePercent = total === 0 ? 0 : (100 * (set.healthy.length + set.degraded.length)) / total;
      panic[p] = availablePercent < panicThresholdPercent;
    }
    totalPanic &&= panic[p];
  }

  if (totalPanic) {
    // Every priority is in panic: split by host count, health ignored (Envoy's recalculateLoadInTotalPanic).
    let totalHosts = 0;
    for (const set of hostSets) totalHosts += set.all.length;
    if (totalHosts === 0) {
      healthyLoad[0] = 100;
      return { healthy: healthyLoad, degraded: degradedLoad, panic };
    }
    let remaining = 100;
    let firstNonEmpty = -1;
    for (let p = 0; p < hostSets.length; p++) {
      const count = hostSets[p].all.length;
      if (firstNonEmpty < 0 && count > 0) firstNonEmpty = p;
      healthyLoad[p] = Math.floor((100 * count) / totalHosts);
      remaining -= healthyLoad[p];
    }
    healthyLoad[firstNonEmpty] += remaining;
    return { healthy: healthyLoad, degraded: degradedLoad, panic };
  }

  let remaining = 100;
  let firstHealthy = -1;
  for (let p = 0; p < hostSets.length; p++) {
    if (firstHealthy < 0 && health[p] > 0) firstHealthy = p;
    healthyLoad[p] = Math.min(remaining, Math.floor((health[p] * 100) / normalizedTotal));
    remaining -= healthyLoad[p];
  }
  let firstDegraded = -1;
  for (let p = 0; p < hostSets.length; p++) {
    if (firstDegraded < 0 && degradedAvail[p] > 0) firstDegraded = p;
    degradedLoad[p] = Math.min(remaining, Math.floor((degradedAvail[p] * 100) / normalizedTotal));
    remaining -= degradedLoad[p];
  }
  // Rounding leftovers go to the first priority with healthy availability, else the first degraded one.
  if (remaining > 0) {
    if (firstHealthy >= 0) healthyLoad[firstHealthy] += remaining;
    else degradedLoad[firstDegraded] += remaining;
  }
  return { healthy: healthyLoad, degraded: degradedLoad, panic };
}

/** Which hosts of a priority a band of traffic goes to. */
export type HostSource = 'healthy' | 'degraded' | 'all';

/**
 * The priority load as bands of the 1..100 range, each mapped to a source built once. A request draws a
 * number in 1..100 (from the hash or at random, as Envoy's `choosePriority`) and takes the band it falls in.
 */
export class PriorityBands<S> {
  /** Inclusive upper bound of each band in 1..100, ascending. */
  private readonly bounds: Int32Array;
  private readonly sources: S[];
  /** The source when one band covers everything, so the common case skips the draw. */
  readonly only: S | undefined;

  constructor(load: PriorityLoad, sourceFor: (priority: number, source: HostSource) => S) {
    const bounds: number[] = [];
    const sources: S[] = [];
    let acc = 0;
    // Healthy bands of every priority come before degraded ones, as in Envoy's choosePriority.
    for (let p = 0; p < load.healthy.length; p++) {
      if (load.healthy[p] === 0) continue;
      acc += load.healthy[p];
      bounds.push(acc);
      sources.push(sourceFor(p, load.panic[p] ? 'all' : 'healthy'));
    }
    for (let p = 0; p < load.degraded.length; p++) {
      if (load.degraded[p] === 0) continue;
      acc += load.degraded[p];
      bounds.push(acc);
      sources.push(sourceFor(p, load.panic[p] ? 'all' : 'degraded'));
    }
    this.bounds = Int32Array.from(bounds);
    this.sources = sources;
    this.only = sources.length === 1 ? sources[0] : undefined;
  }

  /** The source of the band containing `draw` (1..100). */
  select(draw: number): S {
    const bounds = this.bounds;
    const last = bounds.length - 1;
    for (let i = 0; i < last; i++) if (draw <= bounds[i]) return this.sources[i];
    return this.sources[last];
  }
}

/**
 * Picks a locality by EDF on effective weights, then a host within it with that locality's picker. Built
 * only when `locality_weighted_lb_config` is set; when no locality has a positive effective weight, Envoy
 * falls back to the priority's whole host list, and so does this (`fallback`).
 */
export class LocalityPicker implements HostPicker {
  private readonly scheduler: EdfScheduler;
  private readonly pickers: HostPicker[];

  constructor(scheduler: EdfScheduler, pickers: HostPicker[]) {
    this.scheduler = scheduler;
    this.pickers = pickers;
  }

  pick(ctx: LbContext): UpstreamHost | undefined {
    return this.pickers[this.scheduler.pick()].pick(ctx);
  }
}

/**
 * Effective locality weight (Envoy's `HostSetImpl::effectiveLocalityWeight`): the configured weight scaled
 * by the locality's availability, min(1, OF × eligible / total).
 */
export function effectiveLocalityWeight(locality: LocalityHosts, eligible: number, overprovisioningFactor: number): number {
  const total = locality.all.length;
  if (total === 0 || locality.weight <= 0) return 0;
  return locality.weight * Math.min(1, ((overprovisioningFactor / 100) * eligible) / total);
}

/**
 * The picker for one priority's healthy or degraded hosts with locality weighting: a {@link LocalityPicker}
 * over the localities with positive effective weight, or `fallback` when there are none.
 */
export function createLocalityPicker(
  set: HostSet,
  source: 'healthy' | 'degraded',
  overprovisioningFactor: number,
  pickerFor: (hosts: readonly UpstreamHost[]) => HostPicker,
  fallback: HostPicker,
  random: () => number,
): HostPicker {
  const weights: number[] = [];
  const pickers: HostPicker[] = [];
  for (const loc of set.localities) {
    const eligible = loc[source];
    const w = effectiveLocalityWeight(loc, eligible.length, overprovisioningFactor);
    if (w > 0 && eligible.length > 0) {
      weights.push(w);
      pickers.push(pickerFor(eligible));
    }
  }
  if (weights.length === 0) return fallback;
  if (weights.length === 1) return pickers[0];
  return new LocalityPicker(new EdfScheduler(weights, Math.floor(random() * weights.length)), pickers);
}
