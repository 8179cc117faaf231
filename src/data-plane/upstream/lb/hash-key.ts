/**
 * Host keys and weights for the consistent-hashing tables (ring hash and Maglev), as Envoy derives them
 * (`ThreadAwareLoadBalancerBase`): the key is the host's address as Envoy prints it (`ip:port`, IPv6 as
 * `[ip]:port`) or its hostname with `use_hostname_for_hashing`; weights are host weights normalized to sum
 * to 1, multiplied by the normalized locality weight when locality weighted LB is on.
 */
import type { HostSet } from './priority-set.ts';
import type { NormalizedHostWeight, UpstreamHost } from './types.ts';

/** The string a host is hashed by. */
export function hashKeyOf(host: UpstreamHost, useHostname: boolean): string {
  if (useHostname && host.hostname) return host.hostname;
  return host.address.includes(':') ? `[${host.address}]:${host.port}` : `${host.address}:${host.port}`;
}

function pushNormalized(hosts: readonly UpstreamHost[], share: number, out: NormalizedHostWeight[]): void {
  let sum = 0;
  for (const h of hosts) sum += h.weight;
  if (sum <= 0) return;
  for (const host of hosts) out.push({ host, weight: (host.weight * share) / sum });
}

/**
 * Normalized weights of `hosts` (one priority's healthy, degraded or all hosts). With `set` (locality
 * weighted LB), each locality's hosts share that locality's fraction of the priority's total locality
 * weight; a locality of weight 0 gets nothing, and if every weight is 0 the result is empty (as in Envoy).
 */
export function normalizeWeights(hosts: readonly UpstreamHost[], set: HostSet | undefined): NormalizedHostWeight[] {
  const out: NormalizedHostWeight[] = [];
  if (!set) {
    pushNormalized(hosts, 1, out);
    return out;
  }
  let total = 0;
  for (const loc of set.localities) total += Math.max(0, loc.weight);
  if (total === 0) return out;
  const members = new Set(hosts);
  for (const loc of set.localities) {
    if (loc.weight <= 0) continue;
    pushNormalized(loc.all.filter((h) => members.has(h)), loc.weight / total, out);
  }
  return out;
}
