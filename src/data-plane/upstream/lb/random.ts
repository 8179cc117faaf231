/**
 * RANDOM (arch_overview/upstream/load_balancing/load_balancers#random): a uniformly random host when all
 * weights are equal. When weights differ, Sloop draws in proportion to `load_balancing_weight` (binary
 * search over cumulative weights, O(log n)) so that endpoint weights from EDS are honoured by every policy.
 *
 * Export: `createRandomPicker(hosts): HostPicker`.
 */
import { hasEqualWeights } from './round-robin.ts';
import { NO_HOSTS } from './types.ts';
import type { HostPicker, LbContext, UpstreamHost } from './types.ts';

class UniformPicker implements HostPicker {
  private readonly hosts: readonly UpstreamHost[];

  constructor(hosts: readonly UpstreamHost[]) {
    this.hosts = hosts;
  }

  pick(ctx: LbContext): UpstreamHost {
    return this.hosts[Math.floor(ctx.random() * this.hosts.length)];
  }
}

class WeightedRandomPicker implements HostPicker {
  private readonly hosts: readonly UpstreamHost[];
  /** cumulative[i] = weight of hosts 0..i. */
  private readonly cumulative: Float64Array;
  private readonly total: number;

  constructor(hosts: readonly UpstreamHost[]) {
    this.hosts = hosts;
    this.cumulative = new Float64Array(hosts.length);
    let acc = 0;
    for (let i = 0; i < hosts.length; i++) this.cumulative[i] = acc += hosts[i].weight;
    this.total = acc;
  }

  pick(ctx: LbContext): UpstreamHost {
    const target = ctx.random() * this.total;
    const cumulative = this.cumulative;
    // First index whose cumulative weight exceeds the target.
    let lo = 0;
    let hi = cumulative.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cumulative[mid] > target) hi = mid;
      else lo = mid + 1;
    }
    return this.hosts[lo];
  }
}

/** A random picker over `hosts` (kept by reference). */
export function createRandomPicker(hosts: readonly UpstreamHost[]): HostPicker {
  if (hosts.length === 0) return NO_HOSTS;
  return hasEqualWeights(hosts) ? new UniformPicker(hosts) : new WeightedRandomPicker(hosts);
}
