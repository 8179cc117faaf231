/**
 * CDS for one proxy (Istio's pilot/pkg/networking/core/cluster*.go): `outbound|PORT||HOST` and one
 * `outbound|PORT|SUBSET|HOST` per DestinationRule subset for every visible service port, with the DestinationRule's
 * traffic policy; `inbound|PORT||` for the proxy's own workload; Istio's PassthroughCluster, BlackHoleCluster and
 * InboundPassthroughClusterIpv4. Proxyless gRPC clients get EDS clusters only (grpc-js-xds rejects the rest).
 * Pure.
 */
import type { Cluster } from '../../xds/gen/envoy/config/cluster/v3/Cluster.ts';
import type { ConfigModel, DestinationRule } from '../config/model.ts';
import { TLS_MODE_ISTIO, TRANSPORT_SOCKET_MATCH, autoMtlsApplies, endpointUsesMtls } from './security.ts';
import type { Diagnostic } from '../../shared/errors.ts';
import type { ProxyInfo } from '../registry/proxy-info.ts';
import type { RegistryEndpoint, RegistryPort, RegistryService } from '../registry/registry.ts';
import type { PushContext } from './push-context.ts';
import { effectivePolicy, type EffectivePolicy } from './traffic-policy.ts';
import {
  ADS_SOURCE, BLACKHOLE_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER, PASSTHROUGH_CLUSTER, TYPE, any, diag, duration, durationMs, inboundClusterName,
  isHttp2Protocol, isHttpProtocol, outboundClusterName, sortByName,
} from './util.ts';
import { selectorMatches } from '../config/hosts.ts';

/** Istio's mesh default connect timeout (MeshConfig.connectTimeout). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const MAX_UINT32 = 4294967295;
/** Istio's default ring size for consistent hashing. */
const DEFAULT_RING_SIZE = 1024;
/** Where Istio looks for the system CA bundle when a SIMPLE/MUTUAL rule names none. */
export const SYSTEM_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';
/** Istio's SDS secret names for the workload certificate and the mesh root (ISTIO_MUTUAL). */
export const SDS_WORKLOAD_SECRET = 'default';
export const SDS_ROOT_SECRET = 'ROOTCA';

/** One cluster to build: which service port and subset, and its endpoint filter. */
export interface ClusterTarget {
  name: string;
  service: RegistryService;
  port: RegistryPort;
  subset: string;
  /** Subset labels (empty for the whole service). */
  labels: Readonly<Record<string, string>>;
  dr: DestinationRule | undefined;
}

/**
 * Every outbound cluster a proxy needs, with the DestinationRule that shapes it. Shared by clusters.ts and
 * endpoints.ts so both name the same set.
 */
export function outboundTargets(push: PushContext, proxy: ProxyInfo, services: readonly RegistryService[]): ClusterTarget[] {
  const out: ClusterTarget[] = [];
  for (const service of services) {
    if (proxy.type === 'grpc' && service.resolution !== 'EDS') continue;
    const dr = push.destinationRule(proxy, service.hostname, service.namespace);
    for (const port of service.ports) {
      if (port.protocol === 'UDP') continue;
      out.push({ name: outboundClusterName(port.port, '', service.hostname), service, port, subset: '', labels: {}, dr });
      for (const s of dr?.spec.subsets ?? []) {
        out.push({ name: outboundClusterName(port.port, s.name, service.hostname), service, port, subset: s.name, labels: s.labels ?? {}, dr });
      }
    }
  }
  return out;
}

/** The endpoints of a target: the service port's endpoints whose labels carry the subset's labels. */
export function targetEndpoints(t: ClusterTarget): RegistryEndpoint[] {
  return (t.service.endpoints.get(t.port.port) ?? []).filter((e) => selectorMatches(t.labels, e.labels));
}

/**
 * `metadata.filter_metadata["envoy.transport_socket_match"].tlsMode = "istio"` for an endpoint auto mTLS reaches
 * with ISTIO_MUTUAL (security.ts endpointUsesMtls), else nothing.
 */
export function endpointMetadata(model: ConfigModel, t: ClusterTarget, e: RegistryEndpoint): { metadata?: object } {
  const targetPort = typeof t.port.targetPort === 'number' ? t.port.targetPort : e.port;
  if (t.service.meshExternal || !endpointUsesMtls(model, t.service, e, targetPort)) return {};
  return { metadata: { filter_metadata: { [TRANSPORT_SOCKET_MATCH]: { fields: { tlsMode: { stringValue: TLS_MODE_ISTIO } } } } } };
}

/** Inbound service ports of the proxy's workload: (service port, resolved target port). */
export function inboundPorts(push: PushContext, proxy: ProxyInfo): { service: RegistryService; port: RegistryPort; targetPort: number }[] {
  if (proxy.type !== 'sidecar') return [];
  const out: { service: RegistryService; port: RegistryPort; targetPort: number }[] = [];
  const seen = new Set<number>();
  for (const service of push.servicesOf(proxy)) {
    for (const port of service.ports) {
      if (port.protocol === 'UDP') continue;
      const target = typeof port.targetPort === 'number' ? port.targetPort : proxy.podPorts.find((p) => p.name === port.targetPort)?.containerPort;
      if (target === undefined || seen.has(target)) continue;
      seen.add(target);
      out.push({ service, port, targetPort: target });
    }
  }
  return out.sort((a, b) => a.targetPort - b.targetPort);
}

/** Builds the proxy's clusters, sorted by name. */
export function buildClusters(push: PushContext, proxy: ProxyInfo, services: readonly RegistryService[], diagnostics: Diagnostic[]): Cluster[] {
  return sortByName([...buildOutboundClusters(push, proxy, services, diagnostics), ...buildInboundClusters(push, proxy)], (c) => c.name ?? '');
}

/** The clusters of the proxy's own workload (`inbound|PORT||`), sorted by name. */
export function buildInboundClusters(push: PushContext, proxy: ProxyInfo): Cluster[] {
  return sortByName(inboundPorts(push, proxy).map(({ port, targetPort }) => inboundCluster(port, targetPort)), (c) => c.name ?? '');
}

/**
 * The clusters every proxy of the class gets (outbound ones, Istio's passthrough and blackhole), sorted by name:
 * they read of the proxy only what PushContext.proxyClassKey covers.
 */
export function buildOutboundClusters(push: PushContext, proxy: ProxyInfo, services: readonly RegistryService[], diagnostics: Diagnostic[]): Cluster[] {
  const out: Cluster[] = [];
  const classKey = push.proxyClassKey(proxy);
  for (const service of services) {
    // Per service, kept from the previous push while nothing but endpoints changed and its own are the same.
    const built = push.memoByService(classKey, 'clusters', service, () => {
      const own: Diagnostic[] = [];
      const clusters: Cluster[] = [];
      for (const t of outboundTargets(push, proxy, [service])) {
        const c = outboundCluster(push.model, t, proxy, own);
        if (c !== undefined) clusters.push(c);
      }
      return { clusters, diagnostics: own };
    });
    out.push(...built.clusters);
    diagnostics.push(...built.diagnostics);
  }
  if (proxy.type === 'sidecar') {
    out.push(
      { name: PASSTHROUGH_CLUSTER, type: 'ORIGINAL_DST', lb_policy: 'CLUSTER_PROVIDED', connect_timeout: durationMs(DEFAULT_CONNECT_TIMEOUT_MS), circuit_breakers: { thresholds: [defaultThresholds()] } },
      { name: INBOUND_PASSTHROUGH_CLUSTER, type: 'ORIGINAL_DST', lb_policy: 'CLUSTER_PROVIDED', connect_timeout: durationMs(DEFAULT_CONNECT_TIMEOUT_MS), circuit_breakers: { thresholds: [defaultThresholds()] } },
      // Istio's BlackHoleCluster: STATIC with no endpoints, so everything sent there fails (REGISTRY_ONLY).
      { name: BLACKHOLE_CLUSTER, type: 'STATIC', connect_timeout: durationMs(DEFAULT_CONNECT_TIMEOUT_MS) },
    );
  }
  return sortByName(out, (c) => c.name ?? '');
}

function defaultThresholds(): NonNullable<NonNullable<Cluster['circuit_breakers']>['thresholds']>[number] {
  // Istio's getDefaultCircuitBreakerThresholds: effectively unlimited, with remaining-capacity gauges.
  return { max_connections: { value: MAX_UINT32 }, max_pending_requests: { value: MAX_UINT32 }, max_requests: { value: MAX_UINT32 }, max_retries: { value: MAX_UINT32 }, track_remaining: true };
}

function inboundCluster(port: RegistryPort, targetPort: number): Cluster {
  const name = inboundClusterName(targetPort);
  const c: Cluster = {
    name,
    type: 'STATIC',
    connect_timeout: durationMs(DEFAULT_CONNECT_TIMEOUT_MS),
    lb_policy: 'ROUND_ROBIN',
    circuit_breakers: { thresholds: [defaultThresholds()] },
    // The application next to the sidecar (Istio before 1.10; Sloop has no original-destination inbound yet).
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: targetPort } } } }] }] },
  };
  if (isHttp2Protocol(port.protocol)) c.typed_extension_protocol_options = { 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': any(TYPE.httpProtocolOptions, { explicit_http_config: { http2_protocol_options: {} } }) };
  return c;
}

function outboundCluster(model: ConfigModel, t: ClusterTarget, proxy: ProxyInfo, diagnostics: Diagnostic[]): Cluster | undefined {
  const policy = effectivePolicy(t.dr, t.subset, t.port.port);
  const c: Cluster = { name: t.name, connect_timeout: durationMs(DEFAULT_CONNECT_TIMEOUT_MS) };
  const svc = t.service;
  switch (svc.resolution) {
    case 'EDS':
      c.type = 'EDS';
      c.eds_cluster_config = { eds_config: ADS_SOURCE, service_name: t.name };
      break;
    case 'DNS':
    case 'DNS_ROUND_ROBIN': {
      c.type = svc.resolution === 'DNS' ? 'STRICT_DNS' : 'LOGICAL_DNS';
      c.dns_lookup_family = 'V4_ONLY';
      const eps = targetEndpoints(t);
      c.load_assignment = {
        cluster_name: t.name,
        endpoints: eps.length === 0 ? [] : [{ lb_endpoints: eps.map((e) => ({ endpoint: { address: { socket_address: { address: e.address, port_value: e.port } } }, ...endpointMetadata(model, t, e), load_balancing_weight: { value: e.weight } })) }],
      };
      break;
    }
    case 'PASSTHROUGH':
      c.type = 'ORIGINAL_DST';
      c.lb_policy = 'CLUSTER_PROVIDED';
      break;
  }
  if (proxy.type === 'sidecar') c.circuit_breakers = { thresholds: [defaultThresholds()] };
  if (proxy.type === 'grpc') applyProxylessLoadBalancer(c, policy, t, diagnostics);
  else applyLoadBalancer(c, policy);
  applyConnectionPool(c, policy, t.port, proxy);
  applyOutlierDetection(c, policy);
  if (!applyTls(c, policy, t, diagnostics)) return undefined;
  if (policy.tls === undefined && proxy.type === 'sidecar' && c.type !== 'ORIGINAL_DST' && autoMtlsApplies(model, t.service)) applyAutoMtls(c, t);
  return c;
}

function applyLoadBalancer(c: Cluster, p: EffectivePolicy): void {
  if (c.type === 'ORIGINAL_DST') return;
  const lb = p.loadBalancer;
  const hash = lb?.consistentHash;
  if (hash !== undefined) {
    if (hash.maglev !== undefined) {
      c.lb_policy = 'MAGLEV';
      if (hash.maglev.tableSize !== undefined) c.maglev_lb_config = { table_size: { value: hash.maglev.tableSize } };
    } else {
      c.lb_policy = 'RING_HASH';
      c.ring_hash_lb_config = { minimum_ring_size: { value: hash.ringHash?.minimumRingSize ?? hash.minimumRingSize ?? DEFAULT_RING_SIZE } };
    }
    return;
  }
  switch (lb?.simple) {
    case 'ROUND_ROBIN':
      c.lb_policy = 'ROUND_ROBIN';
      break;
    case 'RANDOM':
      c.lb_policy = 'RANDOM';
      break;
    case 'PASSTHROUGH':
      // Istio: PASSTHROUGH turns the cluster into an original-destination one.
      c.type = 'ORIGINAL_DST';
      c.lb_policy = 'CLUSTER_PROVIDED';
      delete c.eds_cluster_config;
      delete c.load_assignment;
      delete c.dns_lookup_family;
      break;
    default:
      // UNSPECIFIED, LEAST_CONN, LEAST_REQUEST and no setting: Istio's default is LEAST_REQUEST.
      c.lb_policy = 'LEAST_REQUEST';
  }
}

/**
 * gRPC's xDS clients know only ROUND_ROBIN and RING_HASH (grpc-js-xds NACKs a Cluster with any other lb_policy,
 * LEAST_REQUEST included), so proxyless clusters do what Istio's grpcgen applyLoadBalancing does: round robin,
 * ring hash for consistentHash, and every other simple policy falls back to round robin with a warning.
 */
function applyProxylessLoadBalancer(c: Cluster, p: EffectivePolicy, t: ClusterTarget, diagnostics: Diagnostic[]): void {
  c.lb_policy = 'ROUND_ROBIN';
  const lb = p.loadBalancer;
  const hash = lb?.consistentHash;
  if (hash !== undefined) {
    if (hash.maglev !== undefined) {
      diagnostics.push(diag(t.dr!, 'spec.trafficPolicy.loadBalancer.consistentHash.maglev', `proxyless gRPC clients have no MAGLEV load balancer; ${t.name} uses RING_HASH for them`));
    }
    c.lb_policy = 'RING_HASH';
    c.ring_hash_lb_config = { minimum_ring_size: { value: hash.ringHash?.minimumRingSize ?? hash.minimumRingSize ?? DEFAULT_RING_SIZE } };
    return;
  }
  if (lb?.simple !== undefined && lb.simple !== 'ROUND_ROBIN' && lb.simple !== 'UNSPECIFIED') {
    diagnostics.push(diag(t.dr!, 'spec.trafficPolicy.loadBalancer.simple', `proxyless gRPC clients support only ROUND_ROBIN and consistentHash; ${t.name} uses ROUND_ROBIN for them instead of ${lb.simple}`));
  }
}

function applyConnectionPool(c: Cluster, p: EffectivePolicy, port: RegistryPort, proxy: ProxyInfo): void {
  const pool = p.connectionPool;
  const tcp = pool?.tcp;
  const http = pool?.http;
  if (tcp?.connectTimeout !== undefined) c.connect_timeout = duration(tcp.connectTimeout);
  const th = c.circuit_breakers?.thresholds?.[0];
  if (th !== undefined) {
    if (tcp?.maxConnections !== undefined) th.max_connections = { value: tcp.maxConnections };
    if (http?.http1MaxPendingRequests !== undefined) th.max_pending_requests = { value: http.http1MaxPendingRequests };
    if (http?.http2MaxRequests !== undefined) th.max_requests = { value: http.http2MaxRequests };
    if (http?.maxRetries !== undefined) th.max_retries = { value: http.maxRetries };
  }
  if (tcp?.tcpKeepalive !== undefined) {
    const k = tcp.tcpKeepalive;
    c.upstream_connection_options = {
      tcp_keepalive: {
        ...(k.probes !== undefined ? { keepalive_probes: { value: k.probes } } : {}),
        ...(k.time !== undefined ? { keepalive_time: { value: k.time.seconds } } : {}),
        ...(k.interval !== undefined ? { keepalive_interval: { value: k.interval.seconds } } : {}),
      },
    };
  }
  if (!isHttpProtocol(port.protocol) || proxy.type === 'grpc') return;
  const common: Record<string, unknown> = {};
  if (http?.idleTimeout !== undefined) common.idle_timeout = duration(http.idleTimeout);
  if (http?.maxRequestsPerConnection !== undefined && http.maxRequestsPerConnection > 0) common.max_requests_per_connection = { value: http.maxRequestsPerConnection };
  if (tcp?.maxConnectionDuration !== undefined) common.max_connection_duration = duration(tcp.maxConnectionDuration);
  const h2 = isHttp2Protocol(port.protocol) || http?.h2UpgradePolicy === 'UPGRADE';
  const h2Options = http?.maxConcurrentStreams !== undefined ? { max_concurrent_streams: { value: http.maxConcurrentStreams } } : {};
  let explicit: Record<string, unknown> | undefined;
  if (http?.useClientProtocol === true) explicit = { use_downstream_protocol_config: { http_protocol_options: {}, http2_protocol_options: h2Options } };
  else if (h2) explicit = { explicit_http_config: { http2_protocol_options: h2Options } };
  else if (Object.keys(common).length > 0) explicit = { explicit_http_config: { http_protocol_options: {} } };
  if (explicit === undefined) return;
  c.typed_extension_protocol_options = {
    'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': any(TYPE.httpProtocolOptions, { ...(Object.keys(common).length > 0 ? { common_http_protocol_options: common } : {}), ...explicit }),
  };
}

function applyOutlierDetection(c: Cluster, p: EffectivePolicy): void {
  const od = p.outlierDetection;
  if (od === undefined) return;
  const out: NonNullable<Cluster['outlier_detection']> = {};
  // Istio's applyOutlierDetection: 5xx and gateway errors are enforced only when configured.
  out.enforcing_consecutive_5xx = { value: 0 };
  out.enforcing_consecutive_gateway_failure = { value: 0 };
  const gateway = od.consecutiveGatewayErrors ?? (od.consecutiveErrors !== undefined && od.consecutiveErrors > 0 ? od.consecutiveErrors : undefined);
  if (gateway !== undefined) {
    out.consecutive_gateway_failure = { value: gateway };
    out.enforcing_consecutive_gateway_failure = { value: gateway > 0 ? 100 : 0 };
  }
  if (od.consecutive5xxErrors !== undefined) {
    out.consecutive_5xx = { value: od.consecutive5xxErrors };
    out.enforcing_consecutive_5xx = { value: od.consecutive5xxErrors > 0 ? 100 : 0 };
  }
  if (od.interval !== undefined) out.interval = duration(od.interval);
  if (od.baseEjectionTime !== undefined) out.base_ejection_time = duration(od.baseEjectionTime);
  if (od.maxEjectionPercent !== undefined) out.max_ejection_percent = { value: od.maxEjectionPercent };
  if (od.splitExternalLocalOriginErrors) {
    out.split_external_local_origin_errors = true;
    if (od.consecutiveLocalOriginFailures !== undefined) {
      out.consecutive_local_origin_failure = { value: od.consecutiveLocalOriginFailures };
      out.enforcing_consecutive_local_origin_failure = { value: 100 };
    }
  }
  c.outlier_detection = out;
  // Istio: minHealthPercent becomes the panic threshold.
  if (od.minHealthPercent !== undefined) c.common_lb_config = { healthy_panic_threshold: { value: od.minHealthPercent } };
}

/**
 * ISTIO_MUTUAL: the mesh's own certificates over SDS under Istio's secret names, SANs of the endpoints' service
 * accounts, SNI `outbound_.PORT_.SUBSET_.HOST`, ALPN `istio`.
 */
function istioMutualContext(t: ClusterTarget, sni: string | undefined): Record<string, unknown> {
  const sans = [...new Set(targetEndpoints(t).map((e) => e.serviceAccount).filter((s): s is string => s !== undefined))].sort()
    .map((sa) => ({ san_type: 'URI', matcher: { exact: `spiffe://cluster.local/ns/${t.service.namespace}/sa/${sa}` } }));
  return {
    common_tls_context: {
      tls_certificate_sds_secret_configs: [{ name: SDS_WORKLOAD_SECRET, sds_config: ADS_SOURCE }],
      combined_validation_context: {
        default_validation_context: sans.length > 0 ? { match_typed_subject_alt_names: sans } : {},
        validation_context_sds_secret_config: { name: SDS_ROOT_SECRET, sds_config: ADS_SOURCE },
      },
      alpn_protocols: ['istio'],
    },
    sni: sni ?? `outbound_.${t.port.port}_.${t.subset}_.${t.service.hostname}`,
  };
}

/**
 * Istio's auto mTLS, for clusters whose DestinationRule sets no `tls`: endpoints whose metadata says
 * `tlsMode: istio` (endpoints.ts) get ISTIO_MUTUAL, every other endpoint plaintext.
 */
function applyAutoMtls(c: Cluster, t: ClusterTarget): void {
  c.transport_socket_matches = [
    {
      name: 'tlsMode-istio',
      match: { fields: { tlsMode: { stringValue: TLS_MODE_ISTIO } } },
      transport_socket: { name: 'envoy.transport_sockets.tls', typed_config: any(TYPE.upstreamTls, istioMutualContext(t, undefined)) },
    },
    { name: 'tlsMode-disabled', match: {}, transport_socket: { name: 'envoy.transport_sockets.raw_buffer', typed_config: any(TYPE.rawBuffer, {}) } },
  ];
}

/** Adds the UpstreamTlsContext for the rule's tls mode. False: the cluster cannot be built (diagnosed). */
function applyTls(c: Cluster, p: EffectivePolicy, t: ClusterTarget, diagnostics: Diagnostic[]): boolean {
  const tls = p.tls;
  if (tls === undefined || tls.mode === undefined || tls.mode === 'DISABLE') return true;
  const path = p.tlsPath ?? 'spec.trafficPolicy.tls';
  let ctx: Record<string, unknown>;
  if (tls.mode === 'ISTIO_MUTUAL') {
    ctx = istioMutualContext(t, tls.sni);
  } else {
    const common: Record<string, unknown> = {};
    if (tls.credentialName !== undefined) {
      diagnostics.push(diag(t.dr!, `${path}.credentialName`, 'credentialName needs SDS for Kubernetes secrets, which Sloop does not serve yet; the cluster is left out', { severity: 'error', code: 'SLOOP_ERR_CONFIG_UNSUPPORTED' }));
      return false;
    }
    if (tls.mode === 'MUTUAL') {
      common.tls_certificates = [{ certificate_chain: { filename: tls.clientCertificate }, private_key: { filename: tls.privateKey } }];
    }
    if (tls.insecureSkipVerify !== true) {
      const validation: Record<string, unknown> = { trusted_ca: { filename: tls.caCertificates ?? SYSTEM_CA_BUNDLE } };
      if (tls.subjectAltNames !== undefined && tls.subjectAltNames.length > 0) {
        validation.match_typed_subject_alt_names = tls.subjectAltNames.map((s) => ({ san_type: s.startsWith('spiffe://') ? 'URI' : 'DNS', matcher: { exact: s } }));
      }
      if (tls.caCrl !== undefined) validation.crl = { filename: tls.caCrl };
      common.validation_context = validation;
    }
    ctx = { common_tls_context: common };
    // Istio sets SNI to the host for external services when the rule names none.
    const sni = tls.sni ?? (t.service.meshExternal && !t.service.hostname.startsWith('*') ? t.service.hostname : undefined);
    if (sni !== undefined) ctx.sni = sni;
  }
  c.transport_socket = { name: 'envoy.transport_sockets.tls', typed_config: any(TYPE.upstreamTls, ctx) };
  return true;
}
