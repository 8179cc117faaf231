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
import { buildInboundClusters, buildOutboundClusters } from './clusters.ts';
import { buildEndpoints } from './endpoints.ts';
import { buildInboundListeners, buildOutboundListeners } from './listeners.ts';
import { buildRoutes } from './routes.ts';
import { sortByName } from './util.ts';

/** The resources of one proxy, in protobufjs fromObject form (createSnapshot's input). */
export interface ProxyResources {
  listeners: Listener[];
  routes: RouteConfiguration[];
  clusters: Cluster[];
  endpoints: ClusterLoadAssignment[];
}

export interface ProxyConfig {
  /**
   * The proxy's resources. Resources, and the routes and endpoints lists, may be shared with other proxies of
   * its class in the same push (see PushContext.proxyClassKey): read them, never mutate them.
   */
  resources: ProxyResources;
  /**
   * The same clusters and listeners as `resources`, as the class's shared list (one object for every proxy of the
   * class in this push) plus this proxy's own inbound ones: createSnapshot's layered input.
   */
  layers: {
    clusters: { shared: readonly Cluster[]; own: readonly Cluster[] };
    listeners: { shared: readonly Listener[]; own: readonly Listener[] };
  };
  /** Problems found building this proxy's config (resources left out, unsupported fields); the rest still builds. */
  diagnostics: Diagnostic[];
}

/** What every proxy of a class shares; the lists are sorted by name. */
interface ClassConfig<T> {
  resources: T;
  diagnostics: readonly Diagnostic[];
}

/**
 * Builds the listeners, routes, clusters and endpoints of one proxy (a sidecar or a proxyless gRPC client) from
 * the push's indexes. Never throws for bad config: a resource that cannot be built is left out with a diagnostic.
 * The push's own diagnostics (push.diagnostics) are not repeated here.
 *
 * The outbound side (everything but the proxy's own workload's inbound listeners and clusters) is built once per
 * proxy class and push (memoized in the push context) from the class's view of the proxy, so it cannot depend on
 * anything the class key leaves out; the inbound side is built per proxy.
 */
export function buildProxyConfig(push: PushContext, proxy: ProxyInfo): ProxyConfig {
  const key = push.proxyClassKey(proxy);
  // Routes and outbound listeners read services, ports and policies but no endpoint: a push that changes only
  // endpoints (a proxy connected) may reuse them from the previous push of the same model.
  const free = push.memoByClass(key, () => {
    const p = push.classProxy(proxy);
    const diagnostics: Diagnostic[] = [];
    const services = push.servicesVisibleTo(p);
    const routes = buildRoutes(push, p, services, diagnostics);
    const listeners = buildOutboundListeners(push, p, services, diagnostics);
    return { resources: { routes, listeners }, diagnostics };
  }, { endpointFree: true });
  const withEndpoints: ClassConfig<{ clusters: Cluster[]; endpoints: ClusterLoadAssignment[] }> = push.memoByClass(key, () => {
    const p = push.classProxy(proxy);
    const diagnostics: Diagnostic[] = [];
    const services = push.servicesVisibleTo(p);
    const clusters = buildOutboundClusters(push, p, services, diagnostics);
    const endpoints = buildEndpoints(push, p, services);
    return { resources: { clusters, endpoints }, diagnostics };
  });
  // The proxy's own side: kept across pushes that change nothing it reads (PushContext.memoInbound), so its
  // objects are found by identity in the EncodingCache instead of being rebuilt and compared for every proxy.
  const inbound = push.memoInbound(proxy, () => {
    const diagnostics: Diagnostic[] = [];
    const clusters = buildInboundClusters(push, proxy);
    const listeners = buildInboundListeners(push, proxy, diagnostics);
    return { clusters, listeners, diagnostics };
  });
  const inboundClusters = inbound.clusters;
  const inboundDiagnostics = inbound.diagnostics;
  const inboundListeners = inbound.listeners;
  const layers = {
    clusters: { shared: withEndpoints.resources.clusters, own: inboundClusters },
    listeners: { shared: free.resources.listeners, own: inboundListeners },
  };
  // The merged lists are made when read: the control plane hands `layers` to createSnapshot instead, so a push
  // does not sort thousands of a class's clusters once per proxy.
  let clusters: Cluster[] | undefined;
  let listeners: Listener[] | undefined;
  return {
    resources: {
      get listeners() {
        return (listeners ??= merge(layers.listeners.shared, layers.listeners.own, (l) => l.name ?? ''));
      },
      routes: free.resources.routes,
      get clusters() {
        return (clusters ??= merge(layers.clusters.shared, layers.clusters.own, (c) => c.name ?? ''));
      },
      endpoints: withEndpoints.resources.endpoints,
    },
    layers,
    // The order of a build from scratch: clusters', routes', then listeners' diagnostics (outbound, then inbound).
    diagnostics: dedupe([...withEndpoints.diagnostics, ...free.diagnostics, ...inboundDiagnostics]),
  };
}

/** Two lists sorted by name as one, sorted; the shared list itself when there is nothing to add. */
function merge<T>(shared: T[], own: T[], name: (t: T) => string): T[] {
  if (own.length === 0) return shared;
  return sortByName([...shared, ...own], name);
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
