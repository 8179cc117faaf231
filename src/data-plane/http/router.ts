/**
 * One request through the connection manager and the router filter (envoy.filters.http.router):
 * route match → local replies (404, redirect, direct response) → cluster → host → pool → upstream,
 * with Envoy's timeouts (route timeout from end of request, per-try timeout), retries (retry_on
 * semantics, exponential backoff with full jitter, retry circuit breaker), request-id / forwarding
 * headers, header mutations and stats. Errors become Envoy's local replies in one place (`fail`).
 */
import type { Socket } from 'node:net';
import type { HttpConnectionManagerFilter, HcmConfig } from './hcm.ts';
import type { DownstreamConnectionInfo, RequestHead, ResetReason, ServerStream, UpstreamStream } from './stream.ts';
import { getHeader, hasHeader, removeHeader, setHeader, stripHopByHop, isGrpcContentType } from './headers.ts';
import { sendLocalReply } from './local-reply.ts';
import { normalizeRequestPath } from './path-normalize.ts';
import { mutateXfcc } from './xfcc.ts';
import type { RouteMatch, RouteRequest } from './route/route-table.ts';
import { requestHeaderChain, responseHeaderChain, rewritePath } from './route/route-table.ts';
import type { ClusterPick } from './route/route-action.ts';
import { RETRY_ON, type CompiledRetryPolicy } from './route/retry-policy.ts';
import { applyHeaderMutations, type HeaderFormatContext } from './route/header-mutation.ts';
import { matchHeaderList } from './route/matchers.ts';
import { addressString, formatSetCookie, type HashContext } from './route/hash-policy.ts';
import type { ClusterRuntime } from '../upstream/cluster.ts';
import { connectUpstream } from '../upstream/connect.ts';
import { spliceSockets } from '../tcp/splice.ts';
import type { H1Pool } from '../upstream/h1-pool.ts';
import type { H2Pool } from '../upstream/h2-pool.ts';
import type { PoolCallbacks } from '../upstream/pool-types.ts';
import type { UpstreamHost } from '../upstream/lb/types.ts';
import { hashKeysToHash } from '../upstream/lb/xxhash64.ts';
import { uuidV4 } from '../../shared/request-id.ts';
import type { FilterEncoder, FilterRequest } from './filters/types.ts';
import type { CompiledRoute, CompiledVirtualHost } from './route/route-table.ts';
import { ShadowRequest, shadowAuthority } from './mirror.ts';
import { shouldMirror, type CompiledMirrorPolicy } from './route/route-action.ts';

/** Envoy's reset reason strings, as they appear in local reply bodies and access logs. */
function resetReasonText(r: ResetReason): string {
  switch (r) {
    case 'connect-failure':
      return 'remote connection failure';
    case 'connect-timeout':
      return 'connection timeout';
    case 'remote-reset':
      return 'remote reset';
    case 'remote-refused-stream':
      return 'remote refused stream reset';
    case 'connection-termination':
      return 'connection termination';
    case 'protocol-error':
      return 'protocol error';
    case 'overflow':
      return 'overflow';
    default:
      return 'local reset';
  }
}

const GRPC_RETRY: Record<string, number> = {
  '1': RETRY_ON.cancelled,
  '4': RETRY_ON['deadline-exceeded'],
  '8': RETRY_ON['resource-exhausted'],
  '13': RETRY_ON.internal,
  '14': RETRY_ON.unavailable,
};

/** gRPC timeout header (grpc-timeout: 1-8 digits + unit H/M/S/m/u/n) in ms, or -1. */
function parseGrpcTimeoutMs(v: string | undefined): number {
  if (v === undefined || v.length < 2 || v.length > 9) return -1;
  const n = Number(v.slice(0, -1));
  if (!Number.isInteger(n) || n < 0) return -1;
  switch (v[v.length - 1]) {
    case 'H':
      return n * 3600_000;
    case 'M':
      return n * 60_000;
    case 'S':
      return n * 1000;
    case 'm':
      return n;
    case 'u':
      return Math.ceil(n / 1000);
    case 'n':
      return Math.ceil(n / 1e6);
    default:
      return -1;
  }
}

/** String(ms), remembered for the last value: routes mostly share one timeout, so no string per request. */
let lastTimeoutMs = -1;
let lastTimeoutText = '';
function timeoutText(ms: number): string {
  if (ms !== lastTimeoutMs) {
    lastTimeoutMs = ms;
    lastTimeoutText = String(ms);
  }
  return lastTimeoutText;
}

function statusClassCounter<T>(status: number, c1: T, c2: T, c3: T, c4: T, c5: T): T {
  return status < 200 ? c1 : status < 300 ? c2 : status < 400 ? c3 : status < 500 ? c4 : c5;
}

export class ActiveRequest implements PoolCallbacks, FilterRequest {
  private readonly hcm: HttpConnectionManagerFilter;
  private readonly cfg: HcmConfig;
  private readonly down: ServerStream;
  private readonly startMs: number;
  private match: RouteMatch | undefined;
  private pick: ClusterPick | undefined;
  private cluster: ClusterRuntime | undefined;
  private retry: CompiledRetryPolicy | undefined;
  private upHead: RequestHead | undefined;
  private up: UpstreamStream | null = null;
  private pool: H1Pool | H2Pool | undefined;
  private host: UpstreamHost | undefined;
  private hostCounted = false;
  private requestComplete = false;
  private trailers: string[] | null = null;
  /** Body chunks kept for a retry (or while the upstream is connecting). */
  private body: Buffer[] | null = null;
  private bodyBytes = 0;
  private bodyLimit = 0;
  private bufferForRetry = false;
  private attempt = 0;
  private attemptedHosts: UpstreamHost[] | null = null;
  private retriesCounted = false;
  private globalTimer: NodeJS.Timeout | null = null;
  private perTryTimer: NodeJS.Timeout | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  private requestTimer: NodeJS.Timeout | null = null;
  private lastActivity = 0;
  private idleTimeoutMs = 0;
  private timeoutMs = 0;
  private upstreamStartMs = 0;
  private responseStarted = false;
  private done = false;
  /** The upgrade was allowed: counted in downstream_cx_upgrades_active until the stream finishes. */
  private upgradeCounted = false;
  /** CONNECT terminated here: cancels the pending TCP connect, and gives back the connection slot. */
  private tunnelCancel: (() => void) | null = null;
  private tunnelRelease: (() => void) | null = null;
  /** Set while a WebSocket / CONNECT tunnel is up: closes both of its sides (stream idle timeout). */
  private tunnelTeardown: (() => void) | null = null;
  private requestId = '';
  private hashValue: bigint | undefined;
  /** Set-Cookie for a cookie the route's hash policy generated (cookie with ttl, absent on the request). */
  private setCookie: string | undefined;
  readonly isGrpc: boolean;
  private fmt: HeaderFormatContext | undefined;
  private upstreamSent = false;
  /** HTTP filters: the request as matched (kept while a filter holds it), next filter, response hooks. */
  private routeReq: RouteRequest | undefined;
  private filterIndex = 0;
  private encoders: FilterEncoder[] | null = null;
  private metadata: Map<string, Record<string, unknown>> | null = null;
  /** Shadow requests (request_mirror_policies) still being fed the request body. */
  private shadows: ShadowRequest[] | null = null;

  constructor(hcm: HttpConnectionManagerFilter, down: ServerStream) {
    this.hcm = hcm;
    this.cfg = hcm.cfg;
    this.down = down;
    this.startMs = hcm.env.now();
    this.isGrpc = isGrpcContentType(getHeader(down.head.headers, 'content-type'));
    down.onData = (c) => this.onDownData(c);
    down.onEnd = (t) => this.onDownEnd(t);
    down.onReset = (r) => this.onDownReset(r);
    down.onWritable = () => this.up?.resumeResponse();
  }

  start(): void {
    const st = this.cfg.stats;
    const head = this.down.head;
    st.downstream_rq_total.inc();
    st.rq_total.inc();
    st.downstream_rq_active.inc();
    if (head.protocol === 'HTTP/2') st.downstream_rq_http2_total.inc();
    else st.downstream_rq_http1_total.inc();
    if (this.hcm.env.isDraining()) this.down.closeAfterResponse();
    if (head.authority === '') {
      // RFC 9112 §3.2 / RFC 9113 §8.3.1: a request without Host / :authority is malformed.
      return this.localReply(400, 'missing host header');
    }
    // Before routing and filters: Envoy's fragment rejection and the HCM's path normalization (path-normalize.ts).
    // Without normalization configured this is one indexOf, no allocation.
    if (this.cfg.pathNormalization !== undefined || head.path.indexOf('#') !== -1) {
      if (!this.normalizePath(head)) return;
    }
    // x-forwarded-client-cert: removed unless the mode and a client certificate say otherwise (xfcc.ts).
    mutateXfcc(head.headers, this.down.conn, this.cfg.xfcc);
    // HCM request_timeout: until the whole request is in (or the response starts). A request that ended
    // with its head is already complete, so only requests with a body pay for the timer.
    if (this.cfg.requestTimeoutMs > 0 && head.hasBody) this.requestTimer = setTimeout(() => this.onRequestTimeout(), this.cfg.requestTimeoutMs);
    const req: RouteRequest = { authority: head.authority, path: head.path, method: head.method, headers: head.headers, scheme: head.scheme, isTls: this.down.conn.isTls };
    const m = this.cfg.routes.match(req, this.hcm.env.random());
    // Envoy (FilterManager::createFilterChain): an Upgrade, or CONNECT (treated as upgrade type "CONNECT"),
    // needs an upgrade_config enabling it on the matched route entry or, absent one there, on the connection
    // manager. Otherwise 403 with an empty body (details upgrade_failed) and downstream_rq_ws_on_non_ws_route,
    // before the router runs: so also for a request that matches no route or a direct_response.
    if (head.upgrade !== '') {
      const routeUpgrades = m?.route.kind === 'route' ? m.route.route?.upgrades : undefined;
      if (!(routeUpgrades?.get(head.upgrade) ?? this.cfg.upgrades.get(head.upgrade) ?? false)) {
        st.downstream_rq_ws_on_non_ws_route.inc();
        return this.localReply(403, '');
      }
      this.upgradeCounted = true;
      st.downstream_cx_upgrades_total.inc();
      st.downstream_cx_upgrades_active.inc();
    }
    this.match = m;
    // HTTP filters before the router (fault, cors); without any, nothing per request is spent here.
    if (this.cfg.httpFilters.length !== 0) {
      this.routeReq = req;
      if (!this.runDecoderFilters()) return;
    }
    this.routeRequest(req, m);
  }

  /** Applies path normalization to `head.path`; false when the request was answered (400 or 307). */
  private normalizePath(head: RequestHead): boolean {
    const r = normalizeRequestPath(head.path, this.cfg.pathNormalization);
    if (r.action === 'forward') {
      head.path = r.path;
      return true;
    }
    // Envoy: gRPC requests are never redirected; they fail like a rejected path (400 → grpc-status 13).
    if (r.action === 'reject' || this.isGrpc) {
      this.cfg.stats.downstream_rq_failed_path_normalization.inc();
      this.localReply(400, '');
      return false;
    }
    this.cfg.stats.downstream_rq_redirected_with_normalized_path.inc();
    this.localReplyRaw(307, undefined, ['location', r.path]);
    return false;
  }

  // ---- HTTP filters (filters/types.ts FilterRequest) -------------------------------------

  get head(): RequestHead {
    return this.down.head;
  }

  get matchedRoute(): CompiledRoute | undefined {
    return this.match?.route;
  }

  get matchedVirtualHost(): CompiledVirtualHost | undefined {
    return this.match?.virtualHost;
  }

  get conn(): DownstreamConnectionInfo {
    return this.down.conn;
  }

  get dynamicMetadata(): Map<string, Record<string, unknown>> {
    return (this.metadata ??= new Map());
  }

  clearRouteCache(): void {
    const head = this.down.head;
    const req: RouteRequest = { authority: head.authority, path: head.path, method: head.method, headers: head.headers, scheme: head.scheme, isTls: this.down.conn.isTls };
    this.routeReq = req;
    this.match = this.cfg.routes.match(req, this.hcm.env.random());
  }

  /** Runs the filters from `filterIndex`; false when one stopped the chain (or answered). */
  private runDecoderFilters(): boolean {
    const fs = this.cfg.httpFilters;
    while (this.filterIndex < fs.length) {
      const f = fs[this.filterIndex++]!;
      if (!f.decodeHeaders(this) || this.done) return false;
    }
    return true;
  }

  continueDecoding(): void {
    if (this.done) return;
    if (this.runDecoderFilters()) this.routeRequest(this.routeReq!, this.match);
  }

  sendLocalReply(status: number, body: string, grpcStatus?: number): void {
    this.localReply(status, body, false, grpcStatus);
  }

  respondHeadersOnly(status: number, headers: string[]): void {
    this.localReplyRaw(status, undefined, headers);
  }

  addEncoder(e: FilterEncoder): void {
    (this.encoders ??= []).push(e);
  }

  private runEncoders(status: number, headers: string[]): void {
    for (const e of this.encoders!) e.onResponseHeaders?.(status, headers);
  }

  // ---- router ----------------------------------------------------------------------------

  private routeRequest(req: RouteRequest, m: RouteMatch | undefined): void {
    const st = this.cfg.stats;
    const head = this.down.head;
    if (m === undefined) {
      st.no_route.inc();
      return this.localReply(404, '');
    }
    const route = m.route;
    if (route.kind === 'direct_response') {
      st.rq_direct_response.inc();
      const dr = route.directResponse!;
      const h: string[] = [];
      if (dr.body !== undefined) h.push('content-type', 'text/plain');
      applyHeaderMutations(h, route.responseHeaderChain, this.formatCtx());
      return this.localReplyRaw(dr.status, dr.body, h);
    }
    if (route.kind === 'redirect') {
      st.rq_redirect.inc();
      const rd = route.redirect!;
      const h = ['location', rd.redirectLocation(req)];
      applyHeaderMutations(h, route.responseHeaderChain, this.formatCtx());
      return this.localReplyRaw(rd.status, undefined, h);
    }
    if (route.kind !== 'route' || route.route === undefined) return this.localReply(404, '');
    const action = route.route;
    const pick = action.pickCluster(req, this.hcm.env.random());
    this.pick = pick;
    const cluster = pick === undefined ? undefined : this.hcm.env.clusters.get(pick.cluster);
    if (cluster === undefined) {
      st.no_cluster.inc();
      return this.localReply(action.clusterNotFoundResponseCode, '');
    }
    this.cluster = cluster;
    if (head.upgrade === 'connect' && action.terminateConnect) return this.startConnectTunnel(cluster, action.idleTimeoutMs ?? this.cfg.streamIdleTimeoutMs);
    this.retry = action.retryPolicy;
    if (this.retry !== undefined && this.retry.retriableRequestHeaders.length > 0 && !matchHeaderList(this.retry.retriableRequestHeaders, head.headers, false)) {
      this.retry = undefined;
    }
    // Timeouts: the route's, or gRPC's own deadline when the route honours grpc-timeout.
    let timeoutMs = action.timeoutMs;
    if (this.isGrpc && action.grpcTimeoutHeaderMaxMs !== undefined) {
      const g = parseGrpcTimeoutMs(getHeader(head.headers, 'grpc-timeout'));
      if (g >= 0) {
        timeoutMs = action.grpcTimeoutHeaderMaxMs > 0 ? Math.min(g, action.grpcTimeoutHeaderMaxMs) : g;
        if (action.grpcTimeoutHeaderOffsetMs !== undefined && timeoutMs > action.grpcTimeoutHeaderOffsetMs) timeoutMs -= action.grpcTimeoutHeaderOffsetMs;
      } else if (action.grpcTimeoutHeaderMaxMs === 0) timeoutMs = 0;
    }
    if (head.upgrade !== '') timeoutMs = 0; // tunnels have no response deadline (Envoy disables it on upgrade)
    this.timeoutMs = timeoutMs;
    this.upHead = this.buildUpstreamHead(req, action.hashPolicy !== undefined);
    this.bufferForRetry = this.retry !== undefined && this.retry.numRetries > 0;
    this.bodyLimit = route.perRequestBufferLimitBytes ?? cluster.perConnectionBufferLimitBytes;
    if (!head.hasBody) this.requestComplete = true;
    if (this.requestComplete && timeoutMs > 0) this.armGlobalTimeout();
    // Stream idle timeout (route idle_timeout, else the HCM's): only armed when it can fire before the
    // route timeout, which saves a timer per request in the common case (GET, 15 s route, 5 min idle).
    const idleMs = action.idleTimeoutMs ?? this.cfg.streamIdleTimeoutMs;
    if (idleMs > 0 && !(this.globalTimer !== null && timeoutMs <= idleMs)) this.armIdle(idleMs);
    if (action.mirrorPolicies.length !== 0 && head.upgrade === '') this.startShadows(action.mirrorPolicies, action.timeoutMs);
    this.startAttempt();
  }

  /**
   * request_mirror_policies: a shadow per policy that fires (its runtime_fraction against the request's random
   * number), to the mirror cluster with `-shadow` on the host. Body bytes already received are copied now.
   */
  private startShadows(policies: readonly CompiledMirrorPolicy[], routeTimeoutMs: number): void {
    const env = this.hcm.env;
    const up = this.upHead!;
    for (const p of policies) {
      if (!shouldMirror(p, env.random())) continue;
      let name = p.cluster;
      if (p.clusterHeader !== '') name = getHeader(this.down.head.headers, p.clusterHeader) ?? '';
      const cluster = name === '' ? undefined : env.clusters.get(name);
      if (cluster === undefined) continue;
      const head: RequestHead = { ...up, headers: up.headers.slice(), authority: p.disableShadowHostSuffixAppend ? up.authority : shadowAuthority(up.authority) };
      const shadow = new ShadowRequest(cluster, head, this.bodyLimit);
      if (!shadow.start(env.random, this.down.head.protocol === 'HTTP/2', routeTimeoutMs)) continue;
      if (this.body !== null) for (const c of this.body) shadow.write(c);
      if (this.requestComplete) shadow.end(this.trailers);
      else (this.shadows ??= []).push(shadow);
    }
  }

  private formatCtx(): HeaderFormatContext {
    if (this.fmt !== undefined) return this.fmt;
    const c = this.down.conn;
    this.fmt = {
      downstreamRemoteAddress: `${c.remoteAddress.includes(':') ? `[${c.remoteAddress}]` : c.remoteAddress}:${c.remotePort}`,
      downstreamLocalAddress: `${c.localAddress.includes(':') ? `[${c.localAddress}]` : c.localAddress}:${c.localPort}`,
      protocol: this.down.head.protocol,
      upstreamRemoteAddress: '',
      hostname: this.cfg.hostname,
      startTimeMs: Date.now(),
      requestHeaders: this.down.head.headers,
    };
    return this.fmt;
  }

  /** The request as it goes upstream: hop-by-hop stripped, forwarding headers, rewrites, mutations. */
  private buildUpstreamHead(req: RouteRequest, wantHash: boolean): RequestHead {
    const down = this.down.head;
    const route = this.match!.route;
    const action = route.route!;
    const h = down.headers;
    const teTrailers = (getHeader(h, 'te') ?? '').toLowerCase().includes('trailers');
    if (wantHash) {
      const c = this.down.conn;
      const hctx: HashContext = { sourceIp: c.remoteAddress, connectionAddresses: `${addressString(c.remoteAddress, c.remotePort)}${addressString(c.localAddress, c.localPort)}` };
      const keys = action.hashPolicy!.hashKeys(req, hctx);
      if (keys !== undefined && keys.length > 0) this.hashValue = hashKeysToHash(keys);
      if (hctx.cookieToSet !== undefined) this.setCookie = formatSetCookie(hctx.cookieToSet);
    }
    stripHopByHop(h);
    if (teTrailers) h.push('te', 'trailers');
    // Envoy answers Expect: 100-continue itself unless proxy_100_continue is set.
    const expect = getHeader(h, 'expect');
    if (expect !== undefined && expect.toLowerCase() === '100-continue' && !this.cfg.proxy100Continue) {
      removeHeader(h, 'expect');
      if (down.protocol !== 'HTTP/2') this.down.respond(100, [], false);
    }
    const conn = this.down.conn;
    const proto = conn.isTls ? 'https' : 'http';
    if (this.cfg.useRemoteAddress) {
      setHeader(h, 'x-forwarded-proto', proto);
      if (!this.cfg.skipXffAppend) {
        const xff = getHeader(h, 'x-forwarded-for');
        setHeader(h, 'x-forwarded-for', xff === undefined ? conn.remoteAddress : `${xff},${conn.remoteAddress}`);
      }
    } else if (!hasHeader(h, 'x-forwarded-proto')) h.push('x-forwarded-proto', proto);
    if (this.cfg.generateRequestId) {
      const id = getHeader(h, 'x-request-id');
      if (id === undefined || id === '' || (this.cfg.useRemoteAddress && !this.cfg.preserveExternalRequestId)) {
        this.requestId = uuidV4();
        setHeader(h, 'x-request-id', this.requestId);
      } else this.requestId = id;
    }
    if (this.cfg.via !== '') {
      const via = getHeader(h, 'via');
      setHeader(h, 'via', via === undefined ? this.cfg.via : `${via}, ${this.cfg.via}`);
    }
    if (!this.cfg.suppressEnvoyHeaders && this.timeoutMs > 0) setHeader(h, 'x-envoy-expected-rq-timeout-ms', timeoutText(this.timeoutMs));
    let authority = down.authority;
    const hr = action.hostRewrite;
    if (hr.kind === 'literal') authority = hr.value;
    else if (hr.kind === 'header') {
      const v = getHeader(h, hr.header);
      if (v !== undefined && v !== '') authority = v;
    }
    if (hr.kind !== 'none' && hr.kind !== 'auto' && authority !== down.authority) {
      if (action.appendXForwardedHost) h.push('x-forwarded-host', down.authority);
    }
    const path = down.path === '' ? '' : rewritePath(route, down.path);
    if (path !== down.path) h.push('x-envoy-original-path', down.path);
    const chain = requestHeaderChain(route, this.pick);
    if (chain.length > 0) applyHeaderMutations(h, chain, this.formatCtx());
    return {
      method: down.method,
      path,
      authority,
      scheme: down.scheme,
      headers: h,
      protocol: down.protocol,
      contentLength: down.contentLength,
      hasBody: down.hasBody,
      upgrade: down.upgrade,
    };
  }

  // ---- upstream attempts -------------------------------------------------------------------

  private startAttempt(): void {
    if (this.done) return;
    const cluster = this.cluster!;
    this.attempt++;
    const ctxRandom = this.hcm.env.random;
    const prev = this.attemptedHosts;
    const host = cluster.chooseHost(
      {
        hash: this.hashValue,
        random: ctxRandom,
        shouldSelectAnotherHost: prev !== null && this.retry?.retryHostPredicates.some((p) => p.endsWith('previous_hosts')) ? (hh) => prev.includes(hh) : undefined,
        hostSelectionRetryMaxAttempts: this.retry?.hostSelectionRetryMaxAttempts,
      },
      // ORIGINAL_DST only: the connection's original destination, overridden by the cluster's
      // original_dst_lb_config header when enabled (first value, as Envoy reads it).
      cluster.type === 'ORIGINAL_DST' ? { address: this.down.conn.originalDstAddress, port: this.down.conn.originalDstPort } : undefined,
      cluster.originalDstHeader === undefined ? undefined : getHeader(this.down.head.headers, cluster.originalDstHeader),
    );
    if (host === undefined) {
      cluster.stats.upstream_cx_none_healthy.inc();
      return this.localReply(503, 'no healthy upstream');
    }
    if (cluster.resources.requests >= cluster.thresholds.maxRequests) {
      cluster.stats.upstream_rq_pending_overflow.inc();
      return this.localReply(503, 'upstream connect error or disconnect/reset before headers. reset reason: overflow', true);
    }
    (this.attemptedHosts ??= []).push(host);
    this.claimHost(cluster, host);
    if (this.fmt !== undefined) this.fmt.upstreamRemoteAddress = host.id;
    const pool = cluster.newStream(host, this.down.head.protocol === 'HTTP/2', this);
    if (pool === undefined) {
      this.releaseHost();
      return this.localReply(503, 'upstream connect error or disconnect/reset before headers. reset reason: overflow', true);
    }
    if (this.up === null) this.pool = pool;
  }

  onPoolReady(stream: UpstreamStream, host: UpstreamHost): void {
    if (this.done || host !== this.host) {
      stream.reset();
      return;
    }
    this.pool = undefined;
    this.up = stream;
    stream.onHeaders = (s, h, e) => this.onUpHeaders(stream, s, h, e);
    stream.onData = (c) => {
      if (this.up !== stream) return;
      this.touch();
      if (!this.down.write(c)) stream.pauseResponse();
    };
    stream.onEnd = (t) => this.onUpEnd(stream, t);
    stream.onReset = (r, d) => this.onUpReset(stream, r, d);
    stream.onWritable = () => this.down.resumeRequest();
    stream.flushTarget = this.down;
    if (this.down.head.upgrade !== '') stream.onUpgrade = (status, headers, socket, head) => this.onUpUpgrade(status, headers, socket, head);
    const head = this.upHead!;
    if (this.retry?.numRetries && this.attempt > 1 && this.match!.virtualHost.includeRequestAttemptCount) {
      setHeader(head.headers, 'x-envoy-attempt-count', String(this.attempt));
    }
    const bodyDone = this.requestComplete && (this.body === null || this.body.length === 0) && this.trailers === null;
    stream.sendHeaders(head, bodyDone && !head.hasBody);
    this.upstreamSent = true;
    if (head.hasBody) {
      if (this.body !== null) {
        for (const c of this.body) stream.write(c);
        if (!this.bufferForRetry) {
          this.body = null;
          this.bodyBytes = 0;
        }
      }
      if (this.requestComplete) stream.end(this.trailers);
      else this.down.resumeRequest();
    }
    const perTry = this.retry?.perTryTimeoutMs ?? 0;
    if (perTry > 0 && this.requestComplete) this.armPerTry(perTry);
  }

  onPoolFailure(reason: ResetReason, detail: string, host: UpstreamHost): void {
    if (this.done || host !== this.host) return;
    this.pool = undefined;
    this.releaseHost();
    this.onAttemptFailed(reason, detail, false);
  }

  private onUpHeaders(stream: UpstreamStream, status: number, headers: string[], endStream: boolean): void {
    if (this.up !== stream || this.done) return;
    const cluster = this.cluster!;
    if (cluster.outlier !== undefined) cluster.onHostResponse(this.host!, status);
    // Would this response be retried?
    if (this.retry !== undefined && this.shouldRetryResponse(status, headers)) {
      if (this.canRetry()) {
        cluster.stats.upstream_rq_completed.inc();
        this.countUpstreamStatus(status);
        this.abandonAttempt(stream);
        this.scheduleRetry();
        return;
      }
    }
    this.clearPerTry();
    this.clearRequestTimer();
    this.responseStarted = true;
    this.countUpstreamStatus(status);
    if (this.attempt > 1) cluster.stats.upstream_rq_retry_success.inc();
    stripHopByHop(headers);
    if (!this.cfg.suppressEnvoyHeaders) headers.push('x-envoy-upstream-service-time', String(Math.round(this.hcm.env.now() - this.upstreamStartMs)));
    this.decorateResponse(headers, status);
    // Envoy's Filter::onUpstreamHeaders adds the cookies a hash policy generated (upstream responses only).
    if (this.setCookie !== undefined) headers.push('set-cookie', this.setCookie);
    this.down.respond(status, headers, endStream);
    if (!stream.batchesReads) this.down.flush();
    this.countDownstreamStatus(status);
    if (endStream) this.finish(true);
  }

  private onUpEnd(stream: UpstreamStream, trailers: string[] | null): void {
    if (this.up !== stream || this.done) return;
    this.down.end(trailers);
    this.finish(true);
  }

  private onUpReset(stream: UpstreamStream, reason: ResetReason, detail: string): void {
    if (this.up !== stream || this.done) return;
    this.up = null;
    this.releaseHost();
    const cluster = this.cluster!;
    cluster.stats.upstream_rq_rx_reset.inc();
    if (cluster.outlier !== undefined && !this.responseStarted) cluster.onHostLocalFailure(this.host!, 'reset');
    if (this.responseStarted) {
      // Mid-response: nothing to retry; the client sees the reset.
      this.cfg.stats.rq_reset_after_downstream_response_started.inc();
      this.down.reset();
      this.finish(false);
      return;
    }
    this.onAttemptFailed(reason, detail, true);
  }

  /** A failure before response headers: retry if the policy says so, else a local reply. */
  private onAttemptFailed(reason: ResetReason, detail: string, sent: boolean): void {
    this.clearPerTry();
    if (this.retry !== undefined && this.shouldRetryReset(reason, sent) && this.canRetry()) {
      this.scheduleRetry();
      return;
    }
    const prefix = this.attempt > 1 ? 'retried and the latest reset reason: ' : 'reset reason: ';
    // Envoy reports a transport failure reason for refused/failed connects only; a connect timeout reads
    // "reset reason: connection timeout" alone.
    const transport = detail !== '' && reason === 'connect-failure' ? `, transport failure reason: ${detail}` : '';
    this.localReply(503, `upstream connect error or disconnect/reset before headers. ${prefix}${resetReasonText(reason)}${transport}`);
  }

  private shouldRetryResponse(status: number, headers: string[]): boolean {
    const r = this.retry!;
    const on = r.retryOn;
    if (on & RETRY_ON['5xx'] && status >= 500) return true;
    if (on & RETRY_ON['gateway-error'] && status >= 502 && status <= 504) return true;
    if (on & RETRY_ON['retriable-4xx'] && status === 409) return true;
    if (on & RETRY_ON['retriable-status-codes'] && r.retriableStatusCodes.includes(status)) return true;
    if (on & RETRY_ON['envoy-ratelimited'] && hasHeader(headers, 'x-envoy-ratelimited')) return true;
    if (on & RETRY_ON['retriable-headers'] && r.retriableHeaders.length > 0 && matchHeaderList(r.retriableHeaders, headers, true)) return true;
    if (this.isGrpc) {
      const g = getHeader(headers, 'grpc-status');
      if (g !== undefined) {
        const bit = GRPC_RETRY[g];
        if (bit !== undefined && on & bit) return true;
      }
    }
    return false;
  }

  private shouldRetryReset(reason: ResetReason, sent: boolean): boolean {
    const on = this.retry!.retryOn;
    const isConnect = reason === 'connect-failure' || reason === 'connect-timeout';
    if (on & (RETRY_ON['5xx'] | RETRY_ON['gateway-error'] | RETRY_ON.reset)) return true;
    if (on & RETRY_ON['reset-before-request'] && !sent) return true;
    if (on & RETRY_ON['connect-failure'] && isConnect) return true;
    if (on & RETRY_ON['refused-stream'] && reason === 'remote-refused-stream') return true;
    return false;
  }

  /** Checks retry budget, body buffering and the retry circuit breaker; counts Envoy's retry stats. */
  private canRetry(): boolean {
    const cluster = this.cluster!;
    const r = this.retry!;
    if (this.down.responseStarted) return false;
    if (this.attempt > r.numRetries) {
      cluster.stats.upstream_rq_retry_limit_exceeded.inc();
      return false;
    }
    if (this.bufferForRetry === false && this.down.head.hasBody) {
      // The body outgrew the retry buffer: keepBody already counted retry_or_shadow_abandoned. Envoy's router
      // counts it once, when it drops its retry state on the overflow, not again at the retry decision.
      return false;
    }
    if (!this.retriesCounted && cluster.resources.retries >= cluster.thresholds.maxRetries) {
      cluster.stats.upstream_rq_retry_overflow.inc();
      return false;
    }
    if (!this.retriesCounted) {
      this.retriesCounted = true;
      cluster.resources.retries++;
    }
    return true;
  }

  private abandonAttempt(stream: UpstreamStream): void {
    this.clearPerTry();
    this.up = null;
    stream.reset();
    this.releaseHost();
  }

  private scheduleRetry(): void {
    const r = this.retry!;
    const cluster = this.cluster!;
    cluster.stats.upstream_rq_retry.inc();
    cluster.stats.upstream_rq_retry_backoff_exponential.inc();
    // Envoy: fully jittered exponential backoff, random in [0, base·(2^n − 1)], capped at max.
    const n = this.attempt;
    const ceiling = Math.min(r.backoffBaseMs * (2 ** n - 1), r.backoffMaxMs);
    const delay = Math.floor(this.hcm.env.random() * ceiling);
    const t = setTimeout(() => this.startAttempt(), delay);
    t.unref();
  }

  /** Counts a request against `host` and its cluster (requests breaker, upstream_rq_*); releaseHost undoes it. */
  private claimHost(cluster: ClusterRuntime, host: UpstreamHost): void {
    this.host = host;
    host.activeRequests++;
    cluster.resources.requests++;
    this.hostCounted = true;
    cluster.stats.upstream_rq_total.inc();
    cluster.stats.upstream_rq_active.inc();
    this.upstreamStartMs = this.hcm.env.now();
  }

  private releaseHost(): void {
    if (!this.hostCounted) return;
    this.hostCounted = false;
    const cluster = this.cluster!;
    this.host!.activeRequests--;
    cluster.resources.requests--;
    cluster.stats.upstream_rq_active.dec();
    cluster.stats.upstream_rq_time.record(this.hcm.env.now() - this.upstreamStartMs);
  }

  private countUpstreamStatus(status: number): void {
    const s = this.cluster!.stats;
    statusClassCounter(status, s.upstream_rq_1xx, s.upstream_rq_2xx, s.upstream_rq_3xx, s.upstream_rq_4xx, s.upstream_rq_5xx).inc();
    this.cluster!.statusCounter(status).inc();
  }

  private countDownstreamStatus(status: number): void {
    const s = this.cfg.stats;
    statusClassCounter(status, s.downstream_rq_1xx, s.downstream_rq_2xx, s.downstream_rq_3xx, s.downstream_rq_4xx, s.downstream_rq_5xx).inc();
  }

  private decorateResponse(headers: string[], status: number): void {
    const sh = this.cfg.serverHeader;
    if (sh === 'OVERWRITE') setHeader(headers, 'server', this.cfg.serverName);
    else if (sh === 'APPEND_IF_ABSENT' && !hasHeader(headers, 'server')) headers.push('server', this.cfg.serverName);
    if (this.cfg.alwaysSetRequestIdInResponse && this.requestId !== '') setHeader(headers, 'x-request-id', this.requestId);
    if (this.cfg.via !== '') {
      const via = getHeader(headers, 'via');
      setHeader(headers, 'via', via === undefined ? this.cfg.via : `${via}, ${this.cfg.via}`);
    }
    const m = this.match;
    if (m !== undefined) {
      const chain = responseHeaderChain(m.route, this.pick);
      if (chain.length > 0) applyHeaderMutations(headers, chain, this.formatCtx());
    }
    if (this.encoders !== null) this.runEncoders(status, headers);
  }

  // ---- WebSocket / CONNECT tunnels -------------------------------------------------------

  private onUpUpgrade(status: number, headers: string[], upSocket: Socket, upHead: Buffer): void {
    const down = this.down as ServerStream & { takeSocket?: () => { socket: Socket; head: Buffer } };
    this.clearPerTry();
    this.clearGlobal();
    // The stream idle timer keeps running on the tunnel (Envoy's FilterManager: upgraded streams are streams;
    // bytes either way reset it, and when it fires the tunnel is torn down as downstream_rq_idle_timeout).
    this.touch();
    this.responseStarted = true;
    this.countUpstreamStatus(status);
    const upgradeValue = getHeader(headers, 'upgrade') ?? this.down.head.upgrade;
    stripHopByHop(headers);
    this.decorateResponse(headers, status);
    if (down.takeSocket === undefined) {
      // RFC 8441 on an h2 downstream (Envoy's transformUpgradeResponseFromH1toH2): the 101 becomes a 200 on
      // the stream, without upgrade/connection (stripped above), and the tunnel's bytes travel as DATA.
      const h = headers.filter((_, i) => (i % 2 === 0 ? headers[i] : headers[i - 1]) !== 'sec-websocket-accept');
      const st = status === 101 ? 200 : status;
      this.countDownstreamStatus(st);
      this.down.respond(st, h, false);
      this.tunnelStream(upSocket, upHead);
      return;
    }
    this.countDownstreamStatus(status);
    if (status === 101) headers.push('upgrade', upgradeValue);
    this.down.respond(status, headers, false);
    this.tunnelSocket(upSocket, upHead);
  }

  /** HTTP/1.1 downstream: once the 101 / 2xx head is queued, the connection's socket becomes the tunnel. */
  private tunnelSocket(upSocket: Socket, upHead: Buffer): void {
    const down = this.down as ServerStream & { takeSocket: () => { socket: Socket; head: Buffer } };
    const { socket: downSocket, head: downHead } = down.takeSocket();
    if (downHead.length > 0) upSocket.write(downHead);
    if (upHead.length > 0) downSocket.write(upHead);
    this.tunnelTeardown = () => {
      downSocket.destroy();
      upSocket.destroy();
    };
    // Only a tunnel with a stream idle timeout pays for noting its activity.
    spliceSockets(downSocket, upSocket, () => this.finish(true), this.idleTimer !== null ? () => this.touch() : undefined);
  }

  /** HTTP/2 downstream: the tunnel rides on the stream (DATA frames, END_STREAM as half-close). */
  private tunnelStream(upSocket: Socket, upHead: Buffer): void {
    const down = this.down;
    if (upHead.length > 0) down.write(upHead);
    // Bytes the client sent before the tunnel opened (kept by onDownData).
    if (this.body !== null) {
      for (const c of this.body) upSocket.write(c);
      this.body = null;
      this.bodyBytes = 0;
    }
    this.tunnelTeardown = () => {
      down.reset();
      upSocket.destroy();
    };
    const watchIdle = this.idleTimer !== null;
    upSocket.on('data', (d: Buffer) => {
      if (watchIdle) this.touch();
      if (!down.write(d)) upSocket.pause();
    });
    down.onWritable = () => upSocket.resume();
    down.onData = (c) => {
      if (watchIdle) this.touch();
      if (!upSocket.write(c)) down.pauseRequest();
    };
    upSocket.on('drain', () => down.resumeRequest());
    down.onEnd = () => upSocket.end();
    down.onReset = () => {
      upSocket.destroy();
      this.finish(false);
    };
    upSocket.on('end', () => down.end(null));
    upSocket.on('error', () => down.reset());
    upSocket.on('close', () => this.finish(true));
    upSocket.resume();
    down.resumeRequest();
  }

  /**
   * CONNECT with the route's connect_config: Envoy terminates it (TcpUpstream): a TCP connection to a host
   * of the cluster, then 200 downstream and raw bytes both ways. A failed connect is the router's usual 503.
   */
  private startConnectTunnel(cluster: ClusterRuntime, idleMs: number): void {
    this.retry = undefined;
    this.attempt = 1;
    if (idleMs > 0) this.armIdle(idleMs);
    const host = cluster.chooseHost(
      { hash: undefined, random: this.hcm.env.random },
      cluster.type === 'ORIGINAL_DST' ? { address: this.down.conn.originalDstAddress, port: this.down.conn.originalDstPort } : undefined,
    );
    if (host === undefined) {
      cluster.stats.upstream_cx_none_healthy.inc();
      return this.localReply(503, 'no healthy upstream');
    }
    if (cluster.resources.connections >= cluster.thresholds.maxConnections) {
      cluster.stats.upstream_cx_overflow.inc();
      return this.localReply(503, 'upstream connect error or disconnect/reset before headers. reset reason: overflow', true);
    }
    this.claimHost(cluster, host);
    cluster.resources.connections++;
    cluster.stats.upstream_cx_total.inc();
    cluster.stats.upstream_cx_active.inc();
    this.tunnelRelease = () => {
      cluster.resources.connections--;
      cluster.stats.upstream_cx_active.dec();
      cluster.stats.upstream_cx_destroy.inc();
    };
    this.tunnelCancel = connectUpstream({ ...cluster.connectOptions(host), allowHalfOpen: true }, (err, up) => {
      this.tunnelCancel = null;
      if (err !== null || up === null) {
        this.releaseTunnel();
        cluster.stats.upstream_cx_connect_fail.inc();
        if (err?.reason === 'connect-timeout') cluster.stats.upstream_cx_connect_timeout.inc();
        cluster.onHostConnectFailure(host);
        this.releaseHost();
        return this.onAttemptFailed(err?.reason ?? 'connect-failure', err?.detail ?? '', false);
      }
      if (this.done) {
        up.destroy();
        this.releaseTunnel();
        return;
      }
      up.setNoDelay(true);
      up.once('close', () => this.releaseTunnel());
      // The stream idle timer keeps running on the tunnel (see onUpUpgrade).
      this.touch();
      this.clearGlobal();
      this.responseStarted = true;
      this.countUpstreamStatus(200);
      this.countDownstreamStatus(200);
      const h: string[] = [];
      this.decorateResponse(h, 200);
      this.down.respond(200, h, false);
      if ((this.down as { takeSocket?: unknown }).takeSocket !== undefined) this.tunnelSocket(up, Buffer.alloc(0));
      else this.tunnelStream(up, Buffer.alloc(0));
    });
  }

  private releaseTunnel(): void {
    const r = this.tunnelRelease;
    this.tunnelRelease = null;
    r?.();
  }

  // ---- downstream events -----------------------------------------------------------------

  private onDownData(chunk: Buffer): void {
    if (this.done) return;
    this.touch();
    if (this.shadows !== null) for (const sh of this.shadows) sh.write(chunk);
    const up = this.up;
    if (up !== null && (!this.bufferForRetry || this.attempt > 0)) {
      if (this.bufferForRetry) this.keepBody(chunk);
      if (!up.write(chunk)) this.down.pauseRequest();
      return;
    }
    this.keepBody(chunk);
    if (up === null && this.bodyBytes > this.bodyLimit) this.down.pauseRequest();
  }

  private keepBody(chunk: Buffer): void {
    if (this.body === null) this.body = [];
    this.bodyBytes += chunk.length;
    if (this.bufferForRetry && this.bodyBytes > this.bodyLimit) {
      // Too big to replay: this request is no longer retriable (Envoy: retry_or_shadow_abandoned).
      this.bufferForRetry = false;
      this.cluster?.stats.retry_or_shadow_abandoned.inc();
      if (this.up !== null) {
        this.body = null;
        this.bodyBytes = 0;
        return;
      }
    }
    // Parser chunks may view a shared buffer: copy what we keep.
    this.body.push(Buffer.from(chunk));
  }

  private onDownEnd(trailers: string[] | null): void {
    if (this.done) return;
    this.requestComplete = true;
    this.trailers = trailers;
    this.clearRequestTimer();
    if (this.shadows !== null) {
      for (const sh of this.shadows) sh.end(trailers);
      this.shadows = null;
    }
    if (this.timeoutMs > 0 && this.globalTimer === null && this.cluster !== undefined) {
      this.armGlobalTimeout();
      if (this.idleTimer !== null && this.timeoutMs <= this.idleTimeoutMs) this.clearIdle();
    }
    const up = this.up;
    if (up !== null && this.upstreamSent && this.upHead!.hasBody) {
      up.end(trailers);
      const perTry = this.retry?.perTryTimeoutMs ?? 0;
      if (perTry > 0) this.armPerTry(perTry);
    }
  }

  private onDownReset(_r: ResetReason): void {
    if (this.done) return;
    this.cfg.stats.downstream_rq_rx_reset.inc();
    if (this.up !== null) {
      this.up.reset();
      this.up = null;
      this.cluster?.stats.upstream_rq_tx_reset.inc();
    }
    if (this.pool !== undefined) {
      this.pool.cancel(this);
      this.pool = undefined;
    }
    this.releaseHost();
    this.finish(false);
  }

  // ---- timers ----------------------------------------------------------------------------

  private armGlobalTimeout(): void {
    this.globalTimer = setTimeout(() => this.onGlobalTimeout(), this.timeoutMs);
  }

  private onGlobalTimeout(): void {
    this.globalTimer = null;
    if (this.done) return;
    const cluster = this.cluster!;
    cluster.stats.upstream_rq_timeout.inc();
    if (cluster.outlier !== undefined && this.host !== undefined && !this.responseStarted && this.hostCounted) cluster.onHostLocalFailure(this.host, 'timeout');
    if (this.up !== null) {
      this.up.reset();
      this.up = null;
      cluster.stats.upstream_rq_tx_reset.inc();
    }
    if (this.pool !== undefined) {
      this.pool.cancel(this);
      this.pool = undefined;
    }
    this.releaseHost();
    if (this.responseStarted) {
      this.down.reset();
      this.finish(false);
      return;
    }
    this.localReply(504, 'upstream request timeout');
  }

  private armPerTry(ms: number): void {
    this.clearPerTry();
    this.perTryTimer = setTimeout(() => this.onPerTryTimeout(), ms);
  }

  private onPerTryTimeout(): void {
    this.perTryTimer = null;
    if (this.done || this.responseStarted) return;
    const cluster = this.cluster!;
    cluster.stats.upstream_rq_per_try_timeout.inc();
    if (cluster.outlier !== undefined && this.host !== undefined && this.hostCounted) cluster.onHostLocalFailure(this.host, 'timeout');
    if (this.up !== null) {
      const up = this.up;
      this.up = null;
      up.reset();
      cluster.stats.upstream_rq_tx_reset.inc();
    }
    this.releaseHost();
    // Envoy treats a per-try timeout like a 504 for retry purposes.
    const on = this.retry?.retryOn ?? 0;
    if (on & (RETRY_ON['5xx'] | RETRY_ON['gateway-error']) && this.canRetry()) {
      this.scheduleRetry();
      return;
    }
    this.localReply(504, 'upstream request timeout');
  }

  private armIdle(ms: number): void {
    this.idleTimeoutMs = ms;
    this.clearIdle();
    if (ms <= 0) return;
    this.lastActivity = this.hcm.env.now();
    this.idleTimer = setTimeout(() => this.onIdleCheck(), ms);
  }

  /** Notes activity for the stream idle timer; lastActivity is read only by that timer (armIdle sets it anew). */
  private touch(): void {
    if (this.idleTimer !== null) this.lastActivity = this.hcm.env.now();
  }

  private onIdleCheck(): void {
    this.idleTimer = null;
    if (this.done) return;
    const idleFor = this.hcm.env.now() - this.lastActivity;
    if (idleFor < this.idleTimeoutMs) {
      this.idleTimer = setTimeout(() => this.onIdleCheck(), this.idleTimeoutMs - idleFor);
      return;
    }
    this.cfg.stats.downstream_rq_idle_timeout.inc();
    const teardown = this.tunnelTeardown;
    if (teardown !== null) {
      // An idle tunnel: Envoy resets the stream, which closes an HTTP/1.1 connection (the tunnel's downstream).
      this.tunnelTeardown = null;
      this.finish(false);
      teardown();
      return;
    }
    if (this.up !== null) {
      this.up.reset();
      this.up = null;
    }
    if (this.pool !== undefined) {
      this.pool.cancel(this);
      this.pool = undefined;
    }
    this.releaseHost();
    // Envoy's maybeRequestTimeoutCode: 408 while the client still owes request bytes, 504 once it sent them all.
    if (this.responseStarted) {
      this.down.reset();
      this.finish(false);
    } else this.localReply(this.requestComplete ? 504 : 408, 'stream timeout');
  }

  /** HCM request_timeout fired before the request was complete: Envoy's onRequestTimeout. */
  private onRequestTimeout(): void {
    this.requestTimer = null;
    if (this.done || this.requestComplete) return;
    this.cfg.stats.downstream_rq_timeout.inc();
    if (this.up !== null) {
      this.up.reset();
      this.up = null;
      this.cluster?.stats.upstream_rq_tx_reset.inc();
    }
    if (this.pool !== undefined) {
      this.pool.cancel(this);
      this.pool = undefined;
    }
    this.releaseHost();
    if (this.responseStarted) {
      this.down.reset();
      this.finish(false);
    } else this.localReply(408, 'request timeout');
  }

  private clearRequestTimer(): void {
    if (this.requestTimer !== null) {
      clearTimeout(this.requestTimer);
      this.requestTimer = null;
    }
  }

  private clearPerTry(): void {
    if (this.perTryTimer !== null) {
      clearTimeout(this.perTryTimer);
      this.perTryTimer = null;
    }
  }

  private clearGlobal(): void {
    if (this.globalTimer !== null) {
      clearTimeout(this.globalTimer);
      this.globalTimer = null;
    }
  }

  private clearIdle(): void {
    if (this.idleTimer !== null) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
  }

  // ---- completion ------------------------------------------------------------------------

  /**
   * `overloaded`: the request was dropped by a circuit breaker; Envoy's router (onUpstreamAbort with
   * dropped = true) then adds `x-envoy-overloaded: true` unless suppress_envoy_headers is set.
   */
  private localReply(status: number, body: string, overloaded = false, grpcStatus?: number): void {
    if (this.done) return;
    this.countDownstreamStatus(status);
    const h: string[] = [];
    if (this.cfg.alwaysSetRequestIdInResponse && this.requestId !== '') h.push('x-request-id', this.requestId);
    if (overloaded && !this.cfg.suppressEnvoyHeaders) h.push('x-envoy-overloaded', 'true');
    if (this.encoders !== null) this.runEncoders(status, h);
    sendLocalReply(this.down, status, body, h, this.cfg.serverName, grpcStatus);
    this.finish(true);
  }

  private localReplyRaw(status: number, body: Buffer | undefined, headers: string[]): void {
    if (this.done) return;
    this.countDownstreamStatus(status);
    headers.push('server', this.cfg.serverName);
    if (this.encoders !== null) this.runEncoders(status, headers);
    if (body === undefined || body.length === 0) {
      this.down.respond(status, headers, true);
    } else {
      headers.push('content-length', String(body.length));
      this.down.respond(status, headers, false);
      this.down.write(body);
      this.down.end(null);
    }
    this.finish(true);
  }

  private finish(_ok: boolean): void {
    if (this.done) return;
    this.done = true;
    this.clearPerTry();
    this.clearGlobal();
    this.clearIdle();
    this.clearRequestTimer();
    this.releaseHost();
    if (this.pool !== undefined) {
      this.pool.cancel(this);
      this.pool = undefined;
    }
    if (this.retriesCounted) {
      this.retriesCounted = false;
      this.cluster!.resources.retries--;
    }
    if (this.tunnelCancel !== null) {
      // The downstream went away while the CONNECT tunnel was still connecting.
      this.tunnelCancel();
      this.tunnelCancel = null;
      this.releaseTunnel();
    }
    const st = this.cfg.stats;
    if (this.upgradeCounted) {
      this.upgradeCounted = false;
      st.downstream_cx_upgrades_active.dec();
    }
    st.downstream_rq_active.dec();
    st.downstream_rq_completed.inc();
    st.downstream_rq_time.record(this.hcm.env.now() - this.startMs);
    if (this.cluster !== undefined && this.attempt > 0) this.cluster.stats.upstream_rq_completed.inc();
    this.body = null;
    if (this.shadows !== null) {
      for (const sh of this.shadows) sh.abandonIfIncomplete();
      this.shadows = null;
    }
    if (this.encoders !== null) for (const e of this.encoders) e.onDone?.();
  }
}
