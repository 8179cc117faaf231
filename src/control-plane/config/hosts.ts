/**
 * Hostnames as Istio resolves them (pilot's ResolveShortnameToFQDN and host.Name matching). Pure.
 */
import { isIpAddress } from './schema/service-entry.ts';

/** Cluster domain suffix of Kubernetes Service hostnames (`name.namespace.svc.cluster.local`). */
export const DOMAIN_SUFFIX = 'cluster.local';

/**
 * A host written in a resource of `namespace`, as Istio reads it: a short name (no dot) is relative to the
 * namespace (`reviews` in `default` → `reviews.default.svc.cluster.local`); anything with a dot, `*`, and IP
 * addresses are taken as written (`reviews.default` stays as is, as in Istio).
 */
export function resolveShortname(host: string, namespace: string, domainSuffix = DOMAIN_SUFFIX): string {
  if (host === '' || host === '*' || isIpAddress(host) || host.includes('.')) return host;
  return `${host}.${namespace}.svc.${domainSuffix}`;
}

/**
 * Whether host `a` matches host `b`, either possibly a wildcard (`*`, `*.example.com`), as Istio's host.Name.Matches:
 * `*.example.com` matches `a.example.com` and `a.b.example.com`, not `example.com`.
 */
export function hostsMatch(a: string, b: string): boolean {
  if (a === b || a === '*' || b === '*') return true;
  const aWild = a.startsWith('*.');
  const bWild = b.startsWith('*.');
  if (aWild && bWild) return a.length <= b.length ? b.endsWith(a.slice(1)) : a.endsWith(b.slice(1));
  if (aWild) return b.endsWith(a.slice(1));
  if (bWild) return a.endsWith(b.slice(1));
  return false;
}

/** Whether `labels` has every key/value of `selector` (Kubernetes equality-based selection). An empty selector selects everything. */
export function selectorMatches(selector: Readonly<Record<string, string>>, labels: Readonly<Record<string, string>>): boolean {
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false;
  return true;
}

/** `k1=v1,k2=v2`, keys sorted, as Istio prints selectors in messages. */
export function formatSelector(selector: Readonly<Record<string, string>>): string {
  return Object.keys(selector).sort().map((k) => `${k}=${selector[k]}`).join(',');
}
