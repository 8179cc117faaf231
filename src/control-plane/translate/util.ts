/**
 * Small helpers shared by the translate builders: Istio's names, Duration/percent conversions, Any packing and
 * diagnostics. Pure.
 */
import type { Diagnostic, ErrorCode } from '../../shared/errors.ts';
import type { Duration, ModelResource } from '../config/model.ts';
import type { IstioProtocol } from '../config/model.ts';
import { packAny, type PackedAny } from '../../xds/any.ts';

export { cmp } from '../registry/registry.ts';

/** Istio's cluster name: `outbound|9080|v2|reviews.default.svc.cluster.local` (pilot model.BuildSubsetKey). */
export function outboundClusterName(port: number, subset: string, host: string): string {
  return `outbound|${port}|${subset}|${host}`;
}

/** Istio's inbound cluster name (since 1.10): `inbound|<targetPort>||`. */
export function inboundClusterName(port: number): string {
  return `inbound|${port}||`;
}

/** Istio's passthrough and blackhole clusters. */
export const PASSTHROUGH_CLUSTER = 'PassthroughCluster';
export const BLACKHOLE_CLUSTER = 'BlackHoleCluster';
export const INBOUND_PASSTHROUGH_CLUSTER = 'InboundPassthroughClusterIpv4';

/** The RDS route configuration of the explicit HTTP proxy chain of virtualOutbound (Istio's RDSHttpProxy). */
export const HTTP_PROXY_ROUTE_NAME = 'http_proxy';

export const TYPE = {
  hcm: 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
  tcpProxy: 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy',
  router: 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router',
  fault: 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault',
  cors: 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors',
  corsPolicy: 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy',
  originalDst: 'type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst',
  httpInspector: 'type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector',
  tlsInspector: 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector',
  upstreamTls: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
  downstreamTls: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
  rawBuffer: 'type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer',
  httpProtocolOptions: 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
} as const;

/** HTTP filter names (keys of typed_per_filter_config). */
export const FILTER = { fault: 'envoy.filters.http.fault', cors: 'envoy.filters.http.cors', router: 'envoy.filters.http.router' } as const;

/** ADS config source, as every xDS reference Sloop emits uses. */
export const ADS_SOURCE = { ads: {}, resource_api_version: 'V3' as const };

/** Packs a message for a typed_config. */
export function any(typeUrl: string, message: object): PackedAny {
  return packAny(typeUrl, message);
}

/** Model Duration → protobuf Duration (fromObject form). */
export function duration(d: Duration): { seconds: number; nanos: number } {
  return { seconds: d.seconds, nanos: d.nanos };
}

export function durationMs(ms: number): { seconds: number; nanos: number } {
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
}

/**
 * Istio's Percent (a double 0..100) → Envoy FractionalPercent, as Istio's translatePercentToFractionalPercent:
 * MILLION denominator, `value * 10000` rounded.
 */
export function fractionalPercent(value: number): { numerator: number; denominator: 'MILLION' } {
  return { numerator: Math.round(value * 10_000), denominator: 'MILLION' };
}

/** Whether Istio treats the protocol as HTTP (an HTTP connection manager; HTTP routes). */
export function isHttpProtocol(p: IstioProtocol): boolean {
  return p === 'HTTP' || p === 'HTTP2' || p === 'GRPC' || p === 'GRPC-Web' || p === 'HTTP_PROXY';
}

/** HTTP/2 upstream (Istio: GRPC and HTTP2 ports). */
export function isHttp2Protocol(p: IstioProtocol): boolean {
  return p === 'HTTP2' || p === 'GRPC';
}

/** TLS-passthrough ports (SNI routing). */
export function isTlsProtocol(p: IstioProtocol): boolean {
  return p === 'TLS' || p === 'HTTPS';
}

/** A diagnostic about a model resource, at the position of `path` when known. */
export function diag(resource: ModelResource, path: string, message: string, opts: { severity?: Diagnostic['severity']; code?: ErrorCode } = {}): Diagnostic {
  const pos = resource.positions[path] ?? resource.origin;
  return {
    severity: opts.severity ?? 'warning', code: opts.code ?? 'SLOOP_ERR_CONFIG_INVALID',
    file: resource.origin.file, line: pos.line, column: pos.column,
    kind: resource.kind, namespace: resource.namespace, name: resource.name, path, message,
  };
}

/** Sorts resources by a name field, code-unit order. */
export function sortByName<T>(items: T[], name: (t: T) => string): T[] {
  return items.sort((a, b) => {
    const x = name(a);
    const y = name(b);
    return x < y ? -1 : x > y ? 1 : 0;
  });
}
