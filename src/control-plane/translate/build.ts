/**
 * buildProxyConfig: everything one proxy gets in a push, ready for createSnapshot. Pure: same push and proxy,
 * same resources, byte for byte, each list sorted by name.
 */
import type { Cluster } from '../../xds/gen/envoy/config/cluster/v3/Cluster.ts';
import type { ClusterLoadAssignment } from '../../xds/gen/envoy/config/endpoint/v3/ClusterLoadAssignment.ts';
import type { Listener } from '../../xds/gen/envoy/config/listener/v3/Listener.ts';
import type { RouteConfiguration } from '../../xds/gen/envoy/config/route/v3/RouteConfiguration.ts';
import type { Diagnostic } from '../../shared/errors.ts';
import type { ProxyInfo } from '../registry/proxy-info.ts';
import type { PushContext } from './push-context.ts';
import { buildClusters } from './clusters.ts';
import { buildEndpoints } from './endpoints.ts';
import { buildListeners } from './listeners.ts';
import { buildRoutes } from './routes.ts';

/** The resources of one proxy, in protobufjs fromObject form (createSnapshot's input). */
export interface ProxyResources {
  listeners: Listener[];
  routes: RouteConfiguration[];
  clusters: Cluster[];
  endpoints: ClusterLoadAssignment[];
}

export interface ProxyConfig {
  resources: ProxyResources;
  /** Problems found building this proxy's config (resources left out, unsupported fields); the rest still builds. */
  diagnostics: Diagnostic[];
}

/**
 * Builds the listeners, routes, clusters and endpoints of one proxy (a sidecar or a proxyless gRPC client) from
 * the push's indexes. Never throws for bad config: a resource that cannot be built is left out with a diagnostic.
 * The push's own diagnostics (push.diagnostics) are not repeated here.
 */
export function buildProxyConfig(push: PushContext, proxy: ProxyInfo): ProxyConfig {
  const diagnostics: Diagnostic[] = [];
  const services = push.servicesVisibleTo(proxy);
  const clusters = buildClusters(push, proxy, services, diagnostics);
  const endpoints = buildEndpoints(push, proxy, services);
  const routes = buildRoutes(push, proxy, services, diagnostics);
  const listeners = buildListeners(push, proxy, services, diagnostics);
  return { resources: { listeners, routes, clusters, endpoints }, diagnostics: dedupe(diagnostics) };
}

function dedupe(list: Diagnostic[]): Diagnostic[] {
  const seen = new Set<string>();
  return list.filter((d) => {
    const key = `${d.file}:${d.line}:${d.column}:${d.path}:${d.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
