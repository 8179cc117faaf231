/**
 * envoy.filters.network.http_connection_manager: owns the downstream HTTP codecs of a filter chain
 * (HTTP/1.1 of our own, HTTP/2 on nghttp2), the compiled route table, limits and timeouts, and runs
 * each request through the HTTP filters: those of filters/registry.ts (fault, cors), then the router
 * (router.ts), which must be last.
 */
import type { Socket } from 'node:net';
import type { HttpConnectionManager__Output } from '../../xds/gen/envoy/extensions/filters/network/http_connection_manager/v3/HttpConnectionManager.ts';
import type { Router__Output } from '../../xds/gen/envoy/extensions/filters/http/router/v3/Router.ts';
import { unpackAny } from '../../xds/any.ts';
import { ConfigError, SloopError, type Diagnostic } from '../../shared/errors.ts';
import type { Logger } from '../../shared/log.ts';
import type { NetworkFilter } from '../listener/network-filter.ts';
import type { ClusterManager } from '../upstream/cluster-manager.ts';
import type { Counter, Gauge, Histogram, StatsStore } from '../stats/store.ts';
import { durationMs } from '../duration.ts';
import { H1ServerConnection } from './h1/server-codec.ts';
import { H2ServerCodec } from './h2/server-codec.ts';
import type { DownstreamConnectionInfo, ServerStream } from './stream.ts';
import { compileRouteConfig, type CompiledRouteConfig, type CompileRouteOptions } from './route/route-table.ts';
import { ActiveRequest } from './router.ts';
import type { H1ParseError } from './h1/parser.ts';
import type { HttpFilter } from './filters/types.ts';
import { createHttpFilterRegistry, type HttpFilterRegistry } from './filters/registry.ts';
import { compilePathNormalization, type PathNormalization } from './path-normalize.ts';
import { compileXfcc, type XfccConfig } from './xfcc.ts';

export const ROUTER_FILTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
const H2_PREFACE_START = Buffer.from('PRI * HTTP/2.0');

const HCM_COUNTERS = [
  'downstream_cx_total', 'downstream_cx_http1_total', 'downstream_cx_http2_total', 'downstream_cx_ssl_total',
  'downstream_cx_protocol_error', 'downstream_cx_destroy', 'downstream_cx_idle_timeout', 'downstream_cx_drain_close',
  'downstream_rq_total', 'downstream_rq_http1_total', 'downstream_rq_http2_total', 'downstream_rq_1xx', 'downstream_rq_2xx',
  'downstream_rq_3xx', 'downstream_rq_4xx', 'downstream_rq_5xx', 'downstream_rq_completed', 'downstream_rq_rx_reset',
  'downstream_rq_tx_reset', 'downstream_rq_timeout', 'downstream_rq_idle_timeout', 'downstream_rq_too_large',
  'downstream_rq_ws_on_non_ws_route', 'downstream_rq_non_relative_path', 'downstream_rq_header_timeout',
  'downstream_rq_response_before_rq_complete', 'downstream_rq_max_duration_reached', 'downstream_rq_overload_close',
  'no_route', 'no_cluster', 'rq_direct_response', 'rq_redirect', 'rq_total', 'rq_reset_after_downstream_response_started',
  'downstream_rq_too_many_headers', 'downstream_cx_rx_bytes_total', 'downstream_cx_tx_bytes_total',
  'downstream_cx_upgrades_total', 'downstream_rq_failed_path_normalization', 'downstream_rq_redirected_with_normalized_path',
] as const;
const HCM_GAUGES = ['downstream_cx_active', 'downstream_cx_http1_active', 'downstream_cx_http2_active', 'downstream_cx_ssl_active', 'downstream_rq_active', 'downstream_cx_upgrades_active'] as const;

export type HcmStats = { [K in (typeof HCM_COUNTERS)[number]]: Counter } & { [K in (typeof HCM_GAUGES)[number]]: Gauge } & {
  downstream_rq_time: Histogram;
  downstream_cx_length_ms: Histogram;
};

export interface HcmEnv {
  clusters: ClusterManager;
  store: StatsStore;
  log: Logger;
  now: () => number;
  random: () => number;
  baseDir: string;
  isDraining: () => boolean;
  /** Route tables from RDS; absent when the proxy has no ADS (then `rds` is refused). */
  rds?: RdsProvider;
  /** HTTP filters by type URL; default {@link createHttpFilterRegistry}. */
  httpFilters?: HttpFilterRegistry;
}

/** Route tables delivered by RDS, shared by every connection manager that names them. */
export interface RdsProvider {
  /**
   * The live route table `name` compiled with this connection manager's options: `current` is swapped on every
   * accepted RDS update (new requests use it at once) and is an empty table (404) until the first one arrives.
   */
  routeConfig(name: string, statPrefix: string, opts: CompileRouteOptions): { readonly current: CompiledRouteConfig };
}

/** Everything per-request code reads from the connection manager's config, precomputed once. */
export interface HcmConfig {
  statPrefix: string;
  routes: CompiledRouteConfig;
  codec: 'AUTO' | 'HTTP1' | 'HTTP2';
  maxRequestHeadersBytes: number;
  maxHeadersCount: number;
  streamIdleTimeoutMs: number;
  requestTimeoutMs: number;
  requestHeadersTimeoutMs: number;
  /** min of the non-zero request_headers_timeout, request_timeout, stream_idle_timeout: bounds a head (0 = none). */
  headTimeoutMs: number;
  connectionIdleTimeoutMs: number;
  maxStreamDurationMs: number;
  /** upgrade type (lowercase) → enabled, from upgrade_configs. */
  upgrades: ReadonlyMap<string, boolean>;
  serverName: string;
  serverHeader: 'OVERWRITE' | 'APPEND_IF_ABSENT' | 'PASS_THROUGH';
  useRemoteAddress: boolean;
  skipXffAppend: boolean;
  generateRequestId: boolean;
  preserveExternalRequestId: boolean;
  alwaysSetRequestIdInResponse: boolean;
  via: string;
  suppressEnvoyHeaders: boolean;
  proxy100Continue: boolean;
  h2MaxConcurrentStreams: number;
  h2InitialStreamWindowSize: number;
  stats: HcmStats;
  hostname: string;
  /** HTTP filters before the router, in order; empty when none is configured (the router runs directly). */
  httpFilters: readonly HttpFilter[];
  /** normalize_path / merge_slashes / path_with_escaped_slashes_action (path-normalize.ts); undefined when all off. */
  pathNormalization: PathNormalization | undefined;
  /** forward_client_cert_details / set_current_client_cert_details (xfcc.ts). */
  xfcc: XfccConfig;
}

function buildStats(store: StatsStore, prefix: string): HcmStats {
  const scope = store.scope(`http.${prefix}`);
  const s: Record<string, unknown> = {};
  for (const n of HCM_COUNTERS) s[n] = scope.counter(n);
  for (const n of HCM_GAUGES) s[n] = scope.gauge(n);
  s.downstream_rq_time = scope.histogram('downstream_rq_time', 'ms');
  s.downstream_cx_length_ms = scope.histogram('downstream_cx_length_ms', 'ms');
  return s as HcmStats;
}

/** Validates and compiles an HttpConnectionManager; ConfigError paths are relative to it. */
export function compileHcm(cfg: HttpConnectionManager__Output, env: HcmEnv): HcmConfig {
  const diags: Diagnostic[] = [];
  const err = (path: string, message: string, code: Diagnostic['code'] = 'SLOOP_ERR_CONFIG_INVALID'): void => {
    diags.push({ severity: 'error', code, path, message });
  };
  let routes: CompiledRouteConfig | undefined;
  let rdsHolder: { readonly current: CompiledRouteConfig } | undefined;
  if (cfg.route_specifier === 'route_config' && cfg.route_config) {
    try {
      routes = compileRouteConfig(cfg.route_config, { stripAnyHostPort: cfg.strip_any_host_port === true });
    } catch (e) {
      if (e instanceof ConfigError) for (const d of e.diagnostics) diags.push({ ...d, path: `route_config.${d.path}` });
      else throw e;
    }
  } else if (cfg.route_specifier === 'rds' && env.rds !== undefined) {
    if (cfg.rds?.config_source?.config_source_specifier !== 'ads') err('rds.config_source', 'only `ads: {}` config sources are supported for RDS', 'SLOOP_ERR_CONFIG_UNSUPPORTED');
    else if (!cfg.rds.route_config_name) err('rds.route_config_name', 'route_config_name is required');
    else rdsHolder = env.rds.routeConfig(cfg.rds.route_config_name, cfg.stat_prefix, { stripAnyHostPort: cfg.strip_any_host_port === true });
  } else if (cfg.route_specifier === 'rds') {
    err('rds', 'RDS needs dynamic_resources.ads_config in the bootstrap; use route_config', 'SLOOP_ERR_CONFIG_UNSUPPORTED');
  } else {
    err('route_specifier', 'route_config is required (scoped_routes is not supported)', 'SLOOP_ERR_CONFIG_UNSUPPORTED');
  }
  let suppressEnvoyHeaders = false;
  const filters = cfg.http_filters;
  const registry = env.httpFilters ?? createHttpFilterRegistry();
  const httpFilters: HttpFilter[] = [];
  if (filters.length === 0) err('http_filters', 'the router filter (envoy.filters.http.router) must be the last HTTP filter');
  filters.forEach((f, i) => {
    const url = f.typed_config?.type_url ?? '';
    if (f.disabled) return;
    if (url === ROUTER_FILTER) {
      if (i !== filters.length - 1) err(`http_filters[${i}]`, 'the router must be the last HTTP filter');
      const r = unpackAny<Router__Output>(f.typed_config!);
      suppressEnvoyHeaders = r.suppress_envoy_headers;
      return;
    }
    const factory = registry.get(url);
    if (factory !== undefined) {
      try {
        httpFilters.push(factory(f.name, f.typed_config!, { statPrefix: cfg.stat_prefix, store: env.store, log: env.log, random: env.random, xff: { useRemoteAddress: cfg.use_remote_address?.value ?? false, numTrustedHops: cfg.xff_num_trusted_hops }, clusters: env.clusters, baseDir: env.baseDir }));
      } catch (e) {
        if (e instanceof ConfigError) for (const d of e.diagnostics) diags.push({ ...d, path: `http_filters[${i}].typed_config.${d.path}` });
        else if (e instanceof SloopError) err(`http_filters[${i}].typed_config`, e.message, e.code);
        else throw e;
      }
      return;
    }
    if (f.is_optional) return; // Envoy skips optional filters it doesn't know.
    err(`http_filters[${i}].typed_config`, `unsupported HTTP filter ${JSON.stringify(url || f.name)} (mark it is_optional to skip it)`, 'SLOOP_ERR_CONFIG_UNSUPPORTED');
  });
  if (filters.length > 0 && filters[filters.length - 1].typed_config?.type_url !== ROUTER_FILTER) {
    err(`http_filters[${filters.length - 1}]`, 'the last HTTP filter must be the router (envoy.filters.http.router)');
  }
  const upgrades = new Map<string, boolean>();
  for (const u of cfg.upgrade_configs) upgrades.set(u.upgrade_type.toLowerCase(), u.enabled?.value ?? true);
  const common = cfg.common_http_protocol_options;
  const maxKb = cfg.max_request_headers_kb?.value ?? 60;
  // Envoy defaults: stream idle 5 min, request and request-headers timeouts off, connection idle 1 h.
  const streamIdleTimeoutMs = durationMs(cfg.stream_idle_timeout, 300_000);
  const requestTimeoutMs = durationMs(cfg.request_timeout, 0);
  const requestHeadersTimeoutMs = durationMs(cfg.request_headers_timeout, 0);
  let headTimeoutMs = 0;
  for (const ms of [requestHeadersTimeoutMs, requestTimeoutMs, streamIdleTimeoutMs]) if (ms > 0 && (headTimeoutMs === 0 || ms < headTimeoutMs)) headTimeoutMs = ms;
  if (rdsHolder !== undefined) routes = rdsHolder.current;
  if (diags.length > 0 || routes === undefined) throw new ConfigError(diags, 'http_connection_manager');
  const out: HcmConfig = {
    statPrefix: cfg.stat_prefix,
    routes,
    codec: cfg.codec_type === 'HTTP1' ? 'HTTP1' : cfg.codec_type === 'HTTP2' ? 'HTTP2' : 'AUTO',
    maxRequestHeadersBytes: maxKb * 1024,
    maxHeadersCount: common?.max_headers_count?.value ?? 100,
    streamIdleTimeoutMs,
    requestTimeoutMs,
    requestHeadersTimeoutMs,
    headTimeoutMs,
    connectionIdleTimeoutMs: durationMs(common?.idle_timeout, 3600_000),
    maxStreamDurationMs: durationMs(common?.max_stream_duration, 0),
    upgrades,
    serverName: cfg.server_name || 'envoy',
    serverHeader: cfg.server_header_transformation as HcmConfig['serverHeader'],
    useRemoteAddress: cfg.use_remote_address?.value ?? false,
    skipXffAppend: cfg.skip_xff_append,
    generateRequestId: cfg.generate_request_id?.value ?? true,
    preserveExternalRequestId: cfg.preserve_external_request_id,
    alwaysSetRequestIdInResponse: cfg.always_set_request_id_in_response,
    via: cfg.via,
    suppressEnvoyHeaders,
    proxy100Continue: cfg.proxy_100_continue,
    h2MaxConcurrentStreams: cfg.http2_protocol_options?.max_concurrent_streams?.value ?? 2147483647,
    h2InitialStreamWindowSize: Math.min(cfg.http2_protocol_options?.initial_stream_window_size?.value ?? 1 << 20, 2147483647),
    stats: buildStats(env.store, cfg.stat_prefix),
    hostname: '',
    httpFilters,
    pathNormalization: compilePathNormalization(cfg),
    xfcc: compileXfcc(cfg),
  };
  // RDS: requests read `routes` when they start, so an accepted update applies to the next request.
  if (rdsHolder !== undefined) {
    const holder = rdsHolder;
    Object.defineProperty(out, 'routes', { get: () => holder.current, enumerable: true });
  }
  return out;
}

export class HttpConnectionManagerFilter implements NetworkFilter {
  readonly cfg: HcmConfig;
  readonly env: HcmEnv;
  private h2: H2ServerCodec | undefined;
  private readonly h1Conns = new Set<H1ServerConnection>();
  private h2Sessions = 0;
  private draining = false;
  private readonly onStreamBound: (s: ServerStream) => void;
  private readonly onHeadTimeoutBound: () => string;

  constructor(cfg: HttpConnectionManager__Output, env: HcmEnv) {
    this.env = env;
    this.cfg = compileHcm(cfg, env);
    this.onStreamBound = (s) => this.onStream(s);
    this.onHeadTimeoutBound = () => this.onHeadTimeout();
  }

  onConnection(socket: Socket, info: DownstreamConnectionInfo, head: Buffer, alpn: string): void {
    const st = this.cfg.stats;
    st.downstream_cx_total.inc();
    st.downstream_cx_active.inc();
    if (info.isTls) {
      st.downstream_cx_ssl_total.inc();
      st.downstream_cx_ssl_active.inc();
    }
    const started = this.env.now();
    socket.once('close', () => {
      st.downstream_cx_active.dec();
      if (info.isTls) st.downstream_cx_ssl_active.dec();
      st.downstream_cx_destroy.inc();
      st.downstream_cx_length_ms.record(this.env.now() - started);
    });
    const codec = this.cfg.codec;
    if (codec === 'HTTP2' || alpn === 'h2') return this.startH2(socket, info, head);
    if (codec === 'HTTP1' || alpn === 'http/1.1' || alpn === 'http/1.0') return this.startH1(socket, info, head);
    // AUTO on cleartext (or TLS without ALPN): the h2 connection preface decides (RFC 9113 §3.4).
    if (head.length >= H2_PREFACE_START.length || (head.length > 0 && !H2_PREFACE_START.subarray(0, head.length).equals(head))) {
      return head.subarray(0, H2_PREFACE_START.length).equals(H2_PREFACE_START) ? this.startH2(socket, info, head) : this.startH1(socket, info, head);
    }
    let buf = head;
    // Until the first bytes pick a codec, nothing else watches this socket: a peer that closes (FIN; listener
    // sockets allow half-open) or never sends a byte would hold its fd forever (RELIABILITY row 18). Envoy
    // closes on remote close and runs the connection idle_timeout (common_http_protocol_options, 1 h) from accept.
    const onEnd = (): void => {
      socket.destroy();
    };
    const idleMs = this.cfg.connectionIdleTimeoutMs;
    const idleTimer = idleMs > 0
      ? setTimeout(() => {
        st.downstream_cx_idle_timeout.inc();
        socket.destroy();
      }, idleMs)
      : null;
    const stopWaiting = (): void => {
      if (idleTimer !== null) clearTimeout(idleTimer);
      socket.removeListener('end', onEnd);
      socket.removeListener('close', stopWaiting);
    };
    socket.once('end', onEnd);
    socket.once('close', stopWaiting);
    const onData = (d: Buffer): void => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      const n = Math.min(buf.length, H2_PREFACE_START.length);
      const isPrefix = buf.subarray(0, n).equals(H2_PREFACE_START.subarray(0, n));
      if (isPrefix && buf.length < H2_PREFACE_START.length) return;
      stopWaiting();
      socket.removeListener('data', onData);
      socket.pause();
      if (isPrefix) this.startH2(socket, info, buf);
      else this.startH1(socket, info, buf);
    };
    socket.on('data', onData);
    socket.resume();
  }

  private startH1(socket: Socket, info: DownstreamConnectionInfo, head: Buffer): void {
    const st = this.cfg.stats;
    st.downstream_cx_http1_total.inc();
    st.downstream_cx_http1_active.inc();
    if (head.length > 0) socket.unshift(head);
    const c = new H1ServerConnection(socket, {
      maxHeaderBytes: this.cfg.maxRequestHeadersBytes,
      maxHeadersCount: this.cfg.maxHeadersCount,
      scheme: info.isTls ? 'https' : 'http',
      conn: info,
      onStream: this.onStreamBound,
      onProtocolError: (e: H1ParseError) => this.onH1ProtocolError(e),
      onClose: () => {
        if (this.h1Conns.delete(c)) st.downstream_cx_http1_active.dec();
      },
      idleTimeoutMs: this.cfg.connectionIdleTimeoutMs,
      headTimeoutMs: this.cfg.headTimeoutMs,
      onHeadTimeout: this.onHeadTimeoutBound,
    });
    this.h1Conns.add(c);
    if (this.draining) c.drain();
    socket.resume();
  }

  /**
   * An HTTP/1 head did not complete before the first stream timer: count the timer that fired and return
   * the body of Envoy's 408 for it (ConnectionManagerImpl::ActiveStream::onRequestHeaderTimeout /
   * onRequestTimeout / onIdleTimeout; 408 because the request is incomplete, per maybeRequestTimeoutCode).
   */
  private onHeadTimeout(): string {
    const c = this.cfg;
    const st = c.stats;
    st.downstream_rq_4xx.inc();
    if (c.headTimeoutMs === c.requestHeadersTimeoutMs) {
      st.downstream_rq_header_timeout.inc();
      return 'request header timeout';
    }
    if (c.headTimeoutMs === c.requestTimeoutMs) {
      st.downstream_rq_timeout.inc();
      return 'request timeout';
    }
    st.downstream_rq_idle_timeout.inc();
    return 'stream timeout';
  }

  private onH1ProtocolError(e: H1ParseError): void {
    const st = this.cfg.stats;
    st.downstream_cx_protocol_error.inc();
    if (e.status === 431) st.downstream_rq_too_large.inc();
    if (e.status >= 400 && e.status < 500) st.downstream_rq_4xx.inc();
    else if (e.status >= 500) st.downstream_rq_5xx.inc();
  }

  private startH2(socket: Socket, info: DownstreamConnectionInfo, head: Buffer): void {
    const st = this.cfg.stats;
    st.downstream_cx_http2_total.inc();
    st.downstream_cx_http2_active.inc();
    socket.once('close', () => st.downstream_cx_http2_active.dec());
    if (this.h2 === undefined) {
      this.h2 = new H2ServerCodec({
        maxConcurrentStreams: this.cfg.h2MaxConcurrentStreams,
        maxHeaderListSize: this.cfg.maxRequestHeadersBytes,
        maxHeadersCount: this.cfg.maxHeadersCount,
        initialStreamWindowSize: this.cfg.h2InitialStreamWindowSize,
        onStream: this.onStreamBound,
        onSession: (session) => {
          this.h2Sessions++;
          if (this.draining) session.goaway();
        },
        onSessionClose: () => {
          this.h2Sessions--;
        },
        onProtocolError: () => st.downstream_cx_protocol_error.inc(),
      });
    }
    // A TLS socket comes from the listener with its server handshake completed (completeServerHandshake in
    // tls/context.ts), which node:http2 needs before it starts a session on it.
    this.h2.accept(socket, info, head);
  }

  private onStream(s: ServerStream): void {
    new ActiveRequest(this, s).start();
  }

  drain(): void {
    this.draining = true;
    this.cfg.stats.downstream_cx_drain_close.inc(this.h1Conns.size);
    for (const c of this.h1Conns) c.drain();
    this.h2?.drain();
  }

  get activeConnections(): number {
    return this.h1Conns.size + this.h2Sessions;
  }

  close(): void {
    for (const c of this.h1Conns) c.destroy();
    this.h2?.destroyAll();
  }
}
