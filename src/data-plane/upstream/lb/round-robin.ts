/**
 * ROUND_ROBIN (arch_overview/upstream/load_balancing/load_balancers#weighted-round-robin): plain rotation
 * when all weights are equal, otherwise Envoy's earliest-deadline-first schedule, which interleaves hosts
 * smoothly in proportion to `load_balancing_weight`. With integer weights the EDF order repeats every
 * Σ weight / gcd picks, so when that period is short (≤ MAX_SCHEDULE_LENGTH) it is computed once and
 * replayed, making a weighted pick O(1); otherwise the EDF heap runs live (O(log n)).
 *
 * Export: `createRoundRobinPicker(hosts, random): HostPicker`, `buildWeightedSchedule(weights)`.
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

/** Longest precomputed weighted schedule (4 bytes per entry). */
export const MAX_SCHEDULE_LENGTH = 8192;

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/**
 * One period of the EDF order for integer weights: Σ w / g picks (g = gcd of the weights), in which host i
 * appears exactly w_i / g times. Undefined when weights aren't integers or the period is too long.
 */
export function buildWeightedSchedule(weights: readonly number[]): Int32Array | undefined {
  let g = 0;
  for (const w of weights) {
    if (!Number.isSafeInteger(w) || w <= 0) return undefined;
    g = gcd(w, g);
  }
  let period = 0;
  for (const w of weights) period += w / g;
  if (period > MAX_SCHEDULE_LENGTH) return undefined;
  const scheduler = new EdfScheduler(weights.map((w) => w / g));
  const schedule = new Int32Array(period);
  for (let i = 0; i < period; i++) schedule[i] = scheduler.pick();
  return schedule;
}

class ScheduledPicker implements HostPicker {
  private readonly hosts: readonly UpstreamHost[];
  private readonly schedule: Int32Array;
  private next: number;

  constructor(hosts: readonly UpstreamHost[], schedule: Int32Array, start: number) {
    this.hosts = hosts;
    this.schedule = schedule;
    this.next = start;
  }

  pick(): UpstreamHost {
    const host = this.hosts[this.schedule[this.next]];
    if (++this.next === this.schedule.length) this.next = 0;
    return host;
  }
}

/**
 * A round-robin picker over `hosts` (kept by reference; don't mutate the array afterwards). The order is
 * deterministic; `random` only chooses where it starts, so that many proxies sharing a config don't all
 * send their first request to the same host.
 */
export function createRoundRobinPicker(hosts: readonly UpstreamHost[], random: () => number): HostPicker {
  if (hosts.length === 0) return NO_HOSTS;
  if (hasEqualWeights(hosts)) return new RotatingPicker(hosts, Math.floor(random() * hosts.length));
  const schedule = buildWeightedSchedule(hosts.map((h) => h.weight));
  if (schedule) return new ScheduledPicker(hosts, schedule, Math.floor(random() * schedule.length));
  return new WeightedRoundRobinPicker(hosts, Math.floor(random() * hosts.length));
}
