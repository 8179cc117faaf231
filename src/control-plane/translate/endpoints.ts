/**
 * EDS for one proxy: a ClusterLoadAssignment for every EDS cluster clusters.ts builds (empty when the service has
 * no endpoints yet, so a snapshot stays consistent), endpoints grouped by locality as Istio does. Pure.
 */
import type { ClusterLoadAssignment } from '../../xds/gen/envoy/config/endpoint/v3/ClusterLoadAssignment.ts';
import type { ProxyInfo } from '../registry/proxy-info.ts';
import type { RegistryService } from '../registry/registry.ts';
import type { PushContext } from './push-context.ts';
import { endpointMetadata, outboundTargets, targetEndpoints } from './clusters.ts';
import { cmp, sortByName } from './util.ts';
import { effectivePolicy } from './traffic-policy.ts';

/** Builds the ClusterLoadAssignments of the proxy's EDS clusters, sorted by cluster name. */
export function buildEndpoints(push: PushContext, proxy: ProxyInfo, services: readonly RegistryService[]): ClusterLoadAssignment[] {
  const out: ClusterLoadAssignment[] = [];
  const classKey = push.proxyClassKey(proxy);
  // Per service, kept from the previous push while nothing but endpoints changed and its own are the same.
  for (const service of services) out.push(...push.memoByService(classKey, 'endpoints', service, () => serviceEndpoints(push, proxy, service)));
  return sortByName(out, (c) => c.cluster_name ?? '');
}

function serviceEndpoints(push: PushContext, proxy: ProxyInfo, service: RegistryService): ClusterLoadAssignment[] {
  const out: ClusterLoadAssignment[] = [];
  for (const t of outboundTargets(push, proxy, [service])) {
    if (t.service.resolution !== 'EDS') continue;
    // A PASSTHROUGH load balancer makes the cluster ORIGINAL_DST: it has no EDS.
    // Proxyless clusters stay EDS whatever the policy (clusters.ts applyProxylessLoadBalancer).
    if (proxy.type !== 'grpc' && effectivePolicy(t.dr, t.subset, t.port.port).loadBalancer?.simple === 'PASSTHROUGH') continue;
    const byLocality = new Map<string, ReturnType<typeof targetEndpoints>>();
    for (const e of targetEndpoints(t)) {
      const list = byLocality.get(e.locality) ?? [];
      list.push(e);
      byLocality.set(e.locality, list);
    }
    const localities = [...byLocality.keys()].sort(cmp);
    out.push({
      cluster_name: t.name,
      endpoints: localities.map((loc) => {
        const [region = '', zone = '', subZone = ''] = loc.split('/');
        const eps = byLocality.get(loc)!;
        return {
          // Always set, empty for no locality, as Istio's ConvertLocality: gRPC's xDS clients NACK a
          // ClusterLoadAssignment with an unset locality ("endpoints[0].locality unset").
          locality: loc !== '' ? { region, zone, sub_zone: subZone } : {},
          load_balancing_weight: { value: eps.reduce((s, e) => s + e.weight, 0) },
          lb_endpoints: eps.map((e) => ({
            endpoint: { address: { socket_address: { address: e.address, port_value: e.port } } },
            ...(proxy.type === 'sidecar' ? endpointMetadata(push.model, t, e) : {}),
            health_status: 'HEALTHY' as const,
            load_balancing_weight: { value: e.weight },
          })),
        };
      }),
    });
  }
  return out;
}
