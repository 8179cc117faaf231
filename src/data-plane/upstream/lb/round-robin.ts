/**
 * ROUND_ROBIN (arch_overview/upstream/load_balancing/load_balancers#weighted-round-robin): plain rotation
 * when all weights are equal, otherwise Envoy's earliest-deadline-first schedule, which interleaves hosts
 * smoothly in proportion to `load_balancing_weight`.
 *
 * Export: `createRoundRobinPicker(hosts, random): HostPicker`.
 */
import { EdfScheduler } from './edf-scheduler.ts';
import { NO_HOSTS } from './types.ts';
import type { HostPicker, UpstreamHost } from './types.ts';

/** Whether every host has the same weight (then Envoy skips EDF). */
export function hasEqualWeights(hosts: readonly UpstreamHost[]): boolean {
  for (let i = 1; i < hosts.length; i++) if (hosts[i].weight !== hosts[0].weight) return false;
  return true;
}

class RotatingPicker implements HostPicker {
  private readonly hosts: readonly UpstreamHost[];
  private next: number;

  constructor(hosts: readonly UpstreamHost[], start: number) {
    this.hosts = hosts;
    this.next = start;
  }

  pick(): UpstreamHost {
    const host = this.hosts[this.next];
    if (++this.next === this.hosts.length) this.next = 0;
    return host;
  }
}

class WeightedRoundRobinPicker implements HostPicker {
  private readonly hosts: readonly UpstreamHost[];
  private readonly scheduler: EdfScheduler;

  constructor(hosts: readonly UpstreamHost[], initialPicks: number) {
    this.hosts = hosts;
    this.scheduler = new EdfScheduler(hosts.map((h) => h.weight), initialPicks);
  }

  pick(): UpstreamHost {
    return this.hosts[this.scheduler.pick()];
  }
}

/**
 * A round-robin picker over `hosts` (kept by reference; don't mutate the array afterwards). The order is
 * deterministic; `random` only chooses where it starts, so that many proxies sharing a config don't all
 * send their first request to the same host.
 */
export function createRoundRobinPicker(hosts: readonly UpstreamHost[], random: () => number): HostPicker {
  if (hosts.length === 0) return NO_HOSTS;
  const start = Math.floor(random() * hosts.length);
  return hasEqualWeights(hosts) ? new RotatingPicker(hosts, start) : new WeightedRoundRobinPicker(hosts, start);
}
