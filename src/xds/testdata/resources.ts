/**
 * Builders of small, valid Envoy v3 resources for the xDS tests (protobufjs `fromObject` form), shaped as
 * Istio's proxyless gRPC clients expect them: EDS clusters over ADS, RDS over ADS, api_listeners.
 */
import { packAny } from '../any.ts';
import type { Cluster } from '../gen/envoy/config/cluster/v3/Cluster.ts';
import type { ClusterLoadAssignment } from '../gen/envoy/config/endpoint/v3/ClusterLoadAssignment.ts';
import type { Listener } from '../gen/envoy/config/listener/v3/Listener.ts';
import type { RouteConfiguration } from '../gen/envoy/config/route/v3/RouteConfiguration.ts';
import { HCM_TYPE_URL, TCP_PROXY_TYPE_URL } from '../type-urls.ts';

const ROUTER_TYPE_URL = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
const ADS = { ads: {}, resource_api_version: 'V3' as const };

/** An EDS cluster whose endpoints come over ADS (`service_name` defaults to the cluster name). */
export function edsCluster(name: string, opts: { serviceName?: string; connectTimeoutMs?: number } = {}): Cluster {
  return {
    name,
    type: 'EDS',
    eds_cluster_config: { eds_config: ADS, service_name: opts.serviceName ?? '' },
    connect_timeout: { seconds: 0, nanos: (opts.connectTimeoutMs ?? 500) * 1e6 },
    lb_policy: 'ROUND_ROBIN',
  };
}

/** One locality of `127.0.0.1` (or given host) endpoints. */
export function loadAssignment(clusterName: string, endpoints: readonly { port: number; host?: string }[]): ClusterLoadAssignment {
  return {
    cluster_name: clusterName,
    endpoints: [
      {
        locality: { region: 'local', zone: 'a' },
        load_balancing_weight: { value: 1 },
        lb_endpoints: endpoints.map((e) => ({
          endpoint: { address: { socket_address: { address: e.host ?? '127.0.0.1', port_value: e.port } } },
          health_status: 'HEALTHY' as const,
          load_balancing_weight: { value: 1 },
        })),
      },
    ],
  };
}

function hcm(statPrefix: string, routeName: string): object {
  return {
    stat_prefix: statPrefix,
    rds: { route_config_name: routeName, config_source: ADS },
    http_filters: [{ name: 'envoy.filters.http.router', typed_config: packAny(ROUTER_TYPE_URL, {}) }],
  };
}

/** A listener whose HTTP connection manager takes its routes over RDS: an `api_listener` (proxyless gRPC) or on a port. */
export function rdsListener(name: string, routeName: string, opts: { port?: number } = {}): Listener {
  const config = packAny(HCM_TYPE_URL, hcm(name, routeName));
  if (opts.port === undefined) return { name, api_listener: { api_listener: config } };
  return {
    name,
    address: { socket_address: { address: '127.0.0.1', port_value: opts.port } },
    filter_chains: [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: config }] }],
  };
}

/** A tcp_proxy listener sending everything to `cluster`. */
export function tcpListener(name: string, cluster: string, port: number): Listener {
  return {
    name,
    address: { socket_address: { address: '127.0.0.1', port_value: port } },
    filter_chains: [{ filters: [{ name: 'envoy.filters.network.tcp_proxy', typed_config: packAny(TCP_PROXY_TYPE_URL, { stat_prefix: name, cluster }) }] }],
  };
}

/** One virtual host for `domain`, every request to one cluster or split by weight. */
export function routeConfig(name: string, domain: string, target: string | readonly { cluster: string; weight: number }[]): RouteConfiguration {
  const action =
    typeof target === 'string'
      ? { cluster: target }
      : { weighted_clusters: { clusters: target.map((t) => ({ name: t.cluster, weight: { value: t.weight } })) } };
  return { name, virtual_hosts: [{ name: domain, domains: [domain], routes: [{ match: { prefix: '' }, route: action }] }] };
}
