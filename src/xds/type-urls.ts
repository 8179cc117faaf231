/**
 * The xDS resource types Sloop's ADS server serves, by type URL, and the order in which it pushes them.
 */

/** Type URL of each resource type served over ADS. */
export const TYPE_URLS = {
  cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  endpoint: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
  listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  route: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  virtualHost: 'type.googleapis.com/envoy.config.route.v3.VirtualHost',
  secret: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret',
} as const;

/** One of the type URLs in {@link TYPE_URLS}. */
export type ResourceTypeUrl = (typeof TYPE_URLS)[keyof typeof TYPE_URLS];

/**
 * Push order. xDS protocol doc, "Eventual consistency considerations": CDS first, then EDS for those clusters,
 * then LDS, then RDS, so that no listener or route refers to a cluster the client does not have yet
 * (make-before-break). VHDS virtual hosts (delta only, see vhds.ts) just before the RouteConfigurations that use
 * them, so a route table is complete when it arrives. Secrets last, as Istio's pilot orders them; Envoy warms a cluster or listener until the
 * Secret it names arrives on its own (named) SDS subscription.
 */
export const PUSH_ORDER: readonly ResourceTypeUrl[] = [TYPE_URLS.cluster, TYPE_URLS.endpoint, TYPE_URLS.listener, TYPE_URLS.virtualHost, TYPE_URLS.route, TYPE_URLS.secret];

/** Short names for logs and stats (`CDS`, `EDS`, ...). */
export const TYPE_SHORT_NAMES: Readonly<Record<ResourceTypeUrl, string>> = {
  [TYPE_URLS.cluster]: 'CDS',
  [TYPE_URLS.endpoint]: 'EDS',
  [TYPE_URLS.listener]: 'LDS',
  [TYPE_URLS.route]: 'RDS',
  [TYPE_URLS.virtualHost]: 'VHDS',
  [TYPE_URLS.secret]: 'SDS',
};

/**
 * Types whose state-of-the-world responses must carry every subscribed resource (absence means deletion), and
 * for which an empty first request means a wildcard subscription (xDS protocol doc, "Grouping Resources into
 * Responses" and "How the client specifies what resources to return").
 */
export function isFullStateType(typeUrl: string): boolean {
  return typeUrl === TYPE_URLS.listener || typeUrl === TYPE_URLS.cluster;
}

/** True for the type URLs in {@link TYPE_URLS}. */
export function isResourceTypeUrl(typeUrl: string): typeUrl is ResourceTypeUrl {
  return (PUSH_ORDER as readonly string[]).includes(typeUrl);
}

/** `CDS` for the cluster type URL, the URL itself for a type Sloop doesn't serve. */
export function shortTypeName(typeUrl: string): string {
  return isResourceTypeUrl(typeUrl) ? TYPE_SHORT_NAMES[typeUrl] : typeUrl;
}

/**
 * `node.client_features` entry of a client that takes RDS as VHDS over its delta ADS stream (src/xds/vhds.ts):
 * route tables carry `vhds: { config_source: { ads: {} } }` and their virtual hosts come as VirtualHost resources.
 */
export const VHDS_CLIENT_FEATURE = 'sloop.config.vhds-over-ads';

/** Type URL of the HTTP connection manager network filter. */
export const HCM_TYPE_URL = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
/** Type URL of the TCP proxy network filter. */
export const TCP_PROXY_TYPE_URL = 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy';
