/**
 * Test helpers for the load balancers: a seeded PRNG, hosts and Cluster resources. Not used by
 * production code.
 */
import type { Cluster__Output } from '../../../xds/gen/envoy/config/cluster/v3/Cluster.ts';
import { lookupMessage, TO_OBJECT_OPTIONS } from '../../../xds/protos.ts';
import type { HostHealth, UpstreamHost } from './types.ts';

/** Mulberry32: a small deterministic PRNG giving uniform numbers in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A host `10.0.<priority>.<n>:8080` (or the given address), healthy, weight 1, unless overridden. */
export function makeHost(n: number, overrides: Partial<UpstreamHost> & { health?: HostHealth } = {}): UpstreamHost {
  const priority = overrides.priority ?? 0;
  const address = overrides.address ?? `10.0.${priority}.${n}`;
  const port = overrides.port ?? 8080;
  return {
    id: `${address}:${port}`,
    address,
    port,
    weight: 1,
    priority,
    locality: 'region/zone-a/',
    localityWeight: 1,
    health: 'healthy',
    activeRequests: 0,
    ...overrides,
  };
}

/** `count` hosts of one priority, the first `healthy` healthy, the next `degraded` degraded, the rest unhealthy. */
export function makeHosts(count: number, healthy = count, degraded = 0, priority = 0): UpstreamHost[] {
  return Array.from({ length: count }, (_, i) =>
    makeHost(i, { priority, health: i < healthy ? 'healthy' : i < healthy + degraded ? 'degraded' : 'unhealthy' }),
  );
}

/** A Cluster resource from Envoy-style snake_case fields, with the generated `__Output` shape. */
export function makeCluster(fields: Record<string, unknown> = {}): Cluster__Output {
  const T = lookupMessage('envoy.config.cluster.v3.Cluster')!;
  return T.toObject(T.fromObject({ name: 'test', ...fields }), TO_OBJECT_OPTIONS) as Cluster__Output;
}

/** How many times each host was returned over `n` calls of `pick`. */
export function countPicks(n: number, pick: () => UpstreamHost | undefined): Map<UpstreamHost | undefined, number> {
  const counts = new Map<UpstreamHost | undefined, number>();
  for (let i = 0; i < n; i++) {
    const h = pick();
    counts.set(h, (counts.get(h) ?? 0) + 1);
  }
  return counts;
}
