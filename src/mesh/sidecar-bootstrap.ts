/**
 * The Envoy v3 bootstrap of a `sloop up` sidecar: explicit mode (INTERCEPTION_MODE NONE) with everything on
 * 127.0.0.1, or transparent mode (REDIRECT) inside the workload's network namespace with its own IP. The
 * workload is identified by Istio's node metadata; all listeners and clusters come over ADS from the control
 * plane. Pure: same input, same bootstrap.
 */

/** What the control plane needs to know about one workload and where its sidecar listens. */
export interface SidecarSpec {
  /** Workload name, e.g. `reviews-v1` (NAME, and the node id's pod part). */
  name: string;
  namespace: string;
  /** Workload labels (`app`, `version`): what Services and DestinationRule subsets select. */
  labels: Readonly<Record<string, string>>;
  /** Kubernetes service account (SERVICE_ACCOUNT): the workload's identity, the agent's CSR and peers' SAN checks. */
  serviceAccount?: string;
  /** The app's own port and its name (the Service's `targetPort`), when the workload serves. */
  appPort?: { name: string; port: number };
  /** Port of the sidecar's inbound listener for `appPort`: what peers dial (SLOOP_ENDPOINT_PORTS). */
  inboundPort?: number;
  /** Explicit mode: the sidecar's HTTP proxy port (`virtualOutbound`), the app's HTTP_PROXY. Transparent: unset (15001). */
  outboundPort?: number;
  adminPort: number;
  /** Address the admin listener binds (default 127.0.0.1). */
  adminHost?: string;
  /** The workload's IP (INSTANCE_IPS and the node id; default 127.0.0.1). */
  instanceIp?: string;
  /** Istio's INTERCEPTION_MODE: NONE (explicit, the default) or REDIRECT (iptables in the workload's namespace). */
  interceptionMode?: 'NONE' | 'REDIRECT';
  xdsHost: string;
  xdsPort: number;
}

/** The node id Istio's sidecars use: `sidecar~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local`. */
export function sidecarNodeId(s: Pick<SidecarSpec, 'name' | 'namespace' | 'instanceIp'>): string {
  return `sidecar~${s.instanceIp ?? '127.0.0.1'}~${s.name}.${s.namespace}~${s.namespace}.svc.cluster.local`;
}

/** The bootstrap for `sloop proxy -c` (Envoy's field names, so Envoy could run it too). */
export function buildSidecarBootstrap(s: SidecarSpec): Record<string, unknown> {
  const metadata: Record<string, unknown> = {
    NAME: s.name,
    NAMESPACE: s.namespace,
    LABELS: { ...s.labels },
    INSTANCE_IPS: s.instanceIp ?? '127.0.0.1',
    INTERCEPTION_MODE: s.interceptionMode ?? 'NONE',
  };
  if (s.serviceAccount !== undefined) metadata.SERVICE_ACCOUNT = s.serviceAccount;
  if (s.outboundPort !== undefined) metadata.SLOOP_OUTBOUND_PORT = String(s.outboundPort);
  if (s.appPort !== undefined) {
    metadata.POD_PORTS = JSON.stringify([{ name: s.appPort.name, containerPort: s.appPort.port, protocol: 'TCP' }]);
    if (s.inboundPort !== undefined) metadata.SLOOP_ENDPOINT_PORTS = { [String(s.appPort.port)]: s.inboundPort };
  }
  const address = (port: number, host = '127.0.0.1'): Record<string, unknown> => ({ socket_address: { address: host, port_value: port } });
  return {
    node: { id: sidecarNodeId(s), cluster: `${s.labels.app ?? s.name}.${s.namespace}`, metadata },
    admin: { address: address(s.adminPort, s.adminHost) },
    dynamic_resources: {
      ads_config: {
        // Incremental xDS: a change sends only what changed, and route tables come as VHDS (one resource per
        // virtual host, src/xds/vhds.ts), so a VirtualService edit reaches every sidecar as one virtual host.
        api_type: 'DELTA_GRPC',
        transport_api_version: 'V3',
        // Reconnect quickly when the control plane restarts; a laptop mesh has no thundering herd to avoid.
        grpc_services: [{ envoy_grpc: { cluster_name: 'xds-grpc', retry_policy: { retry_back_off: { base_interval: '0.2s', max_interval: '5s' } } } }],
      },
      cds_config: { ads: {}, resource_api_version: 'V3' },
      lds_config: { ads: {}, resource_api_version: 'V3' },
    },
    static_resources: {
      clusters: [
        {
          name: 'xds-grpc',
          type: 'STATIC',
          connect_timeout: '1s',
          load_assignment: { cluster_name: 'xds-grpc', endpoints: [{ lb_endpoints: [{ endpoint: { address: address(s.xdsPort, s.xdsHost) } }] }] },
          typed_extension_protocol_options: {
            'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
              '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
              explicit_http_config: { http2_protocol_options: {} },
            },
          },
        },
      ],
    },
  };
}
