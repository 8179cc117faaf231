/**
 * LEAST_REQUEST (arch_overview/upstream/load_balancing/load_balancers#weighted-least-request,
 * `Cluster.LeastRequestLbConfig`):
 * - all weights equal: sample `choice_count` hosts at random (default 2, "power of two choices") and take
 *   the one with the fewest active requests; with no more hosts than choices, scan them all instead and
 *   break ties at random (Envoy's full scan).
 * - weights differ: EDF where a host's weight, recomputed each time it is picked, is
 *   `load_balancing_weight / (active_requests + 1) ^ active_request_bias` (bias default 1.0; 0 makes it
 *   weighted round robin).
 *
 * Export: `createLeastRequestPicker(hosts, settings, random): HostPicker`.
 */
import { EdfScheduler } from './edf-scheduler.ts';
import { hasEqualWeights } from './round-robin.ts';
import { NO_HOSTS } from './types.ts';
import type { HostPicker, LbContext, UpstreamHost } from './types.ts';

/** Validated `least_request_lb_config`. */
export interface LeastRequestSettings {
  /** ≥ 2. */
  choiceCount: number;
  /** ≥ 0. */
  activeRequestBias: number;
}

class ChoicesPicker implements HostPicker {
  private readonly hosts: readonly UpstreamHost[];
  private readonly choiceCount: number;

  constructor(hosts: readonly UpstreamHost[], choiceCount: number) {
    this.hosts = hosts;
    this.choiceCount = choiceCount;
  }

  pick(ctx: LbContext): UpstreamHost {
    const hosts = this.hosts;
    const n = hosts.length;
    if (n <= this.choiceCount) {
      let best = hosts[0];
      let tied = 1;
      for (let i = 1; i < n; i++) {
        const h = hosts[i];
        if (h.activeRequests < best.activeRequests) {
          best = h;
          tied = 1;
        } else if (h.activeRequests === best.activeRequests && ctx.random() * ++tied < 1) {
          // Reservoir sampling: each of the k tied hosts ends up chosen with probability 1/k.
          best = h;
        }
      }
      return best;
    }
    let best = hosts[Math.floor(ctx.random() * n)];
    for (let c = 1; c < this.choiceCount; c++) {
      const h = hosts[Math.floor(ctx.random() * n)];
      if (h.activeRequests < best.activeRequests) best = h;
    }
    return best;
  }
}

function dynamicWeight(host: UpstreamHost, bias: number): number {
  if (bias === 0) return host.weight;
  const inFlight = host.activeRequests + 1;
  return bias === 1 ? host.weight / inFlight : host.weight / Math.pow(inFlight, bias);
}

class WeightedLeastRequestPicker implements HostPicker {
  private readonly hosts: readonly UpstreamHost[];
  private readonly scheduler: EdfScheduler;
  private readonly bias: number;

  constructor(hosts: readonly UpstreamHost[], bias: number, initialPicks: number) {
    this.hosts = hosts;
    this.bias = bias;
    this.scheduler = new EdfScheduler(hosts.map((h) => dynamicWeight(h, bias)), initialPicks);
  }

  pick(): UpstreamHost {
    const index = this.scheduler.peek();
    const host = this.hosts[index];
    // Envoy's pickAndAdd: the picked host is requeued with its weight at this moment.
    this.scheduler.requeueTop(dynamicWeight(host, this.bias));
    return host;
  }
}

/** A least-request picker over `hosts` (kept by reference); `random` only seeds the EDF start. */
export function createLeastRequestPicker(hosts: readonly UpstreamHost[], settings: LeastRequestSettings, random: () => number): HostPicker {
  if (hosts.length === 0) return NO_HOSTS;
  if (hasEqualWeights(hosts)) return new ChoicesPicker(hosts, settings.choiceCount);
  return new WeightedLeastRequestPicker(hosts, settings.activeRequestBias, Math.floor(random() * hosts.length));
}
