/**
 * One upstream cluster at run time: its hosts (static, DNS-resolved or original destination), load
 * balancer, connection pools per host and protocol, circuit breakers and Envoy's cluster stats.
 */
import dns from 'node:dns';
import { isIP } from 'node:net';
import type { Cluster__Output } from '../../xds/gen/envoy/config/cluster/v3/Cluster.ts';
import type { ClusterLoadAssignment__Output } from '../../xds/gen/envoy/config/endpoint/v3/ClusterLoadAssignment.ts';
import type { HttpProtocolOptions__Output } from '../../xds/gen/envoy/extensions/upstreams/http/v3/HttpProtocolOptions.ts';
import { unpackAny } from '../../xds/any.ts';
import { ConfigError, type Diagnostic } from '../../shared/errors.ts';
import type { Logger } from '../../shared/log.ts';
import type { Counter, Gauge, Histogram, StatsScope } from '../stats/store.ts';
import { createLoadBalancerFromSettings, parseLbSettings, type LbSettings, type LoadBalancer, type LbContext, type UpstreamHost } from './lb/load-balancer.ts';
import type { SecretManager } from '../tls/secrets.ts';
import { DEFAULT_SECRET_WARMING_MS } from '../tls/sds-tls.ts';
import { TransportSockets, type UpstreamTransport } from './transport-socket.ts';
import { H1Pool } from './h1-pool.ts';
import { H2Pool } from './h2-pool.ts';
import { MixedPool } from './mixed-pool.ts';
import type { ConnectOptions } from './connect.ts';
import type { PoolCallbacks, ResourceCounts, Thresholds } from './pool-types.ts';
import { durationMs } from '../duration.ts';
import { OutlierDetector, compileOutlierDetection, type LocalOriginResult } from './outlier.ts';

export const HTTP_PROTOCOL_OPTIONS_KEY = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

const COUNTERS = [
  'upstream_cx_total', 'upstream_cx_http1_total', 'upstream_cx_http2_total', 'upstream_cx_connect_fail',
  'upstream_cx_connect_timeout', 'upstream_cx_destroy', 'upstream_cx_overflow', 'upstream_rq_total',
  'upstream_rq_completed', 'upstream_rq_pending_total', 'upstream_rq_pending_overflow', 'upstream_rq_cancelled',
  'upstream_rq_timeout', 'upstream_rq_per_try_timeout', 'upstream_rq_rx_reset', 'upstream_rq_tx_reset',
  'upstream_rq_retry', 'upstream_rq_retry_success', 'upstream_rq_retry_overflow', 'upstream_rq_retry_limit_exceeded',
  'upstream_rq_retry_backoff_exponential', 'upstream_rq_1xx', 'upstream_rq_2xx', 'upstream_rq_3xx', 'upstream_rq_4xx',
  'upstream_rq_5xx', 'membership_change', 'lb_healthy_panic', 'upstream_cx_none_healthy', 'retry_or_shadow_abandoned',
  'upstream_cx_rx_bytes_total', 'upstream_cx_tx_bytes_total', 'update_attempt', 'update_success', 'update_failure',
  'upstream_rq_maintenance_mode', 'original_dst_host_invalid',
] as const;
const GAUGES = ['upstream_cx_active', 'upstream_rq_active', 'upstream_rq_pending_active', 'membership_healthy', 'membership_total', 'membership_degraded'] as const;

export type ClusterStats = { [K in (typeof COUNTERS)[number]]: Counter } & { [K in (typeof GAUGES)[number]]: Gauge } & {
  upstream_cx_connect_ms: Histogram;
  upstream_rq_time: Histogram;
  scope: StatsScope;
};

function makeStats(scope: StatsScope): ClusterStats {
  const s: Record<string, unknown> = { scope };
  for (const n of COUNTERS) s[n] = scope.counter(n);
  for (const n of GAUGES) s[n] = scope.gauge(n);
  s.upstream_cx_connect_ms = scope.histogram('upstream_cx_connect_ms', 'ms');
  s.upstream_rq_time = scope.histogram('upstream_rq_time', 'ms');
  return s as ClusterStats;
}

interface HostCounters {
  cxTotal: number;
  cxConnectFail: number;
  rqTotal: number;
}

/** `auto`: HttpProtocolOptions.auto_config, HTTP/2 or HTTP/1.1 by ALPN per connection (see mixed-pool.ts). */
export type UpstreamProtocol = 'http1' | 'http2' | 'downstream' | 'auto';

export interface ClusterEnv {
  log: Logger;
  now: () => number;
  random: () => number;
  baseDir: string;
  /** Named TLS secrets (static, agent, ADS) for UpstreamTlsContexts that use SDS. */
  secrets?: SecretManager;
}

export class ClusterRuntime {
  readonly name: string;
  readonly config: Cluster__Output;
  readonly stats: ClusterStats;
  readonly resources: ResourceCounts = { connections: 0, pendingRequests: 0, requests: 0, retries: 0 };
  readonly thresholds: Thresholds;
  readonly connectTimeoutMs: number;
  readonly protocol: UpstreamProtocol;
  readonly maxRequestsPerConnection: number;
  readonly idleTimeoutMs: number;
  readonly maxHeaderBytes = 60 * 1024;
  readonly maxHeadersCount: number;
  readonly perConnectionBufferLimitBytes: number;
  readonly tlsEnabled: boolean;
  readonly type: string;
  readonly addedViaApi: boolean;
  /** transport_socket and transport_socket_matches (undefined only when the cluster failed to build). */
  private readonly sockets!: TransportSockets;
  /** The socket of a host without metadata (ORIGINAL_DST hosts). */
  private noMetadataTransport!: UpstreamTransport;
  private hostsByPriority: UpstreamHost[][] = [];
  private lb: LoadBalancer | undefined;
  /** Validated once per Cluster version; undefined for ORIGINAL_DST (CLUSTER_PROVIDED: no balancer). */
  private readonly lbSettings: LbSettings | undefined;
  /**
   * ORIGINAL_DST with `original_dst_lb_config.use_http_header`: the lowercase request header that overrides
   * the connection's original destination (default `x-envoy-original-dst-host`), else undefined.
   */
  readonly originalDstHeader: string | undefined;
  private readonly originalDstPortOverride: number | undefined;
  private readonly cleanupIntervalMs: number;
  private cleanupTimer: NodeJS.Timeout | null = null;
  private readonly h1Pools = new Map<UpstreamHost, H1Pool>();
  private readonly h2Pools = new Map<UpstreamHost, H2Pool>();
  private readonly env: ClusterEnv;
  /** Present when the cluster has `outlier_detection`. */
  readonly outlier: OutlierDetector | undefined;
  private dnsTimer: NodeJS.Timeout | null = null;
  private dnsRefreshMs: number;
  private closed = false;
  /** Resolves when the cluster has its first host set (DNS clusters resolve asynchronously). */
  readonly initialized: Promise<void>;
  private markInitialized!: () => void;
  private markClosed!: () => void;

  constructor(config: Cluster__Output, scope: StatsScope, env: ClusterEnv, addedViaApi = false) {
    this.name = config.name;
    this.config = config;
    this.env = env;
    this.addedViaApi = addedViaApi;
    this.stats = makeStats(scope);
    const hostsReady = new Promise<void>((r) => (this.markInitialized = r));
    this.initialized = hostsReady;
    const diags: Diagnostic[] = [];
    this.type = config.cluster_discovery_type === 'type' ? (config.type ?? 'STATIC') : 'CLUSTER_PROVIDED';
    this.connectTimeoutMs = durationMs(config.connect_timeout, 5000);
    this.dnsRefreshMs = durationMs(config.dns_refresh_rate, 5000);
    const t = config.circuit_breakers?.thresholds?.find((x) => x.priority === 'DEFAULT');
    this.thresholds = {
      maxConnections: t?.max_connections?.value ?? 1024,
      maxPendingRequests: t?.max_pending_requests?.value ?? 1024,
      maxRequests: t?.max_requests?.value ?? 1024,
      maxRetries: t?.max_retries?.value ?? 3,
    };
    this.perConnectionBufferLimitBytes = config.per_connection_buffer_limit_bytes?.value ?? 1024 * 1024;
    // Protocol: HttpProtocolOptions extension first, then the deprecated cluster-level fields.
    let protocol: UpstreamProtocol = 'http1';
    let common = config.common_http_protocol_options;
    const ext = config.typed_extension_protocol_options?.[HTTP_PROTOCOL_OPTIONS_KEY];
    if (ext) {
      const po = unpackAny<HttpProtocolOptions__Output>(ext);
      if (po.upstream_protocol_options === 'explicit_http_config') {
        protocol = po.explicit_http_config?.protocol_config === 'http2_protocol_options' ? 'http2' : 'http1';
      } else if (po.upstream_protocol_options === 'use_downstream_protocol_config') protocol = 'downstream';
      else if (po.upstream_protocol_options === 'auto_config') protocol = 'auto';
      if (po.common_http_protocol_options) common = po.common_http_protocol_options;
    } else if (config.http2_protocol_options) protocol = 'http2';
    else if (config.protocol_selection === 'USE_DOWNSTREAM_PROTOCOL') protocol = 'downstream';
    this.protocol = protocol;
    this.maxRequestsPerConnection = common?.max_requests_per_connection?.value ?? config.max_requests_per_connection?.value ?? 0;
    this.idleTimeoutMs = durationMs(common?.idle_timeout, 3600_000);
    this.maxHeadersCount = common?.max_headers_count?.value ?? 100;
    // Upstream transport sockets: transport_socket (envoy.transport_sockets.tls or raw_buffer) and
    // transport_socket_matches; each host gets one when it joins (setHosts), never per request.
    try {
      this.sockets = new TransportSockets(config, scope, env);
      this.tlsEnabled = this.sockets.default.tlsEnabled;
      this.noMetadataTransport = this.sockets.resolve(undefined, undefined);
      // The cluster warms until its secrets arrive (at most Envoy's SDS initial_fetch_timeout). With
      // transport_socket_matches, only the secrets of the sockets its hosts use: Envoy waits for every socket's,
      // but a proxy without mesh certificates whose endpoints are all plaintext must not wait 15 s for nothing.
      const waitSds = (ts: readonly UpstreamTransport[]): Promise<unknown> =>
        Promise.all(ts.filter((t) => t.sdsTls !== undefined).map((t) => t.sdsTls!.waitReady(DEFAULT_SECRET_WARMING_MS)));
      if (!this.sockets.hasMatches) {
        if (this.sockets.default.sdsTls !== undefined) this.initialized = Promise.all([hostsReady, waitSds([this.sockets.default])]).then(() => undefined);
      } else if (this.sockets.all.some((t) => t.sdsTls !== undefined)) {
        this.initialized = hostsReady.then(() => waitSds([...this.transportsInUse()])).then(() => undefined);
      }
    } catch (err) {
      if (err instanceof ConfigError) diags.push(...err.diagnostics);
      else throw err;
      this.tlsEnabled = false;
    }
    // Envoy (ClusterImplBase): auto_config needs a transport socket that negotiates ALPN, i.e. TLS, both the
    // cluster's own and every transport_socket_matches entry's; plaintext (raw_buffer, or none) is refused.
    if (protocol === 'auto' && this.sockets !== undefined) {
      const path = `typed_extension_protocol_options[${JSON.stringify(HTTP_PROTOCOL_OPTIONS_KEY)}].auto_config`;
      if (!this.sockets.default.tlsEnabled) {
        diags.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path, message: `ALPN configured for cluster ${config.name} which has a non-ALPN transport socket (auto_config needs an UpstreamTlsContext transport_socket)` });
      } else if (this.sockets.all.some((t) => !t.tlsEnabled)) {
        diags.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path, message: `ALPN configured for cluster ${config.name} which has a non-ALPN transport socket matcher (every transport_socket_matches entry must be an UpstreamTlsContext with auto_config)` });
      }
    }
    // Envoy: "Only 'CLUSTER_PROVIDED' is allowed with cluster type 'ORIGINAL_DST'"; every other type needs a
    // policy we implement (parseLbSettings rejects CLUSTER_PROVIDED there). Errors surface at load time.
    if (this.type === 'ORIGINAL_DST') {
      if (config.lb_policy !== 'CLUSTER_PROVIDED') {
        diags.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: 'lb_policy', message: `lb_policy ${config.lb_policy} is not valid for cluster type ORIGINAL_DST; only CLUSTER_PROVIDED is allowed` });
      }
      const od = config.original_dst_lb_config;
      this.originalDstHeader = od?.use_http_header ? (od.http_header_name || 'x-envoy-original-dst-host').toLowerCase() : undefined;
      this.originalDstPortOverride = od?.upstream_port_override?.value;
    } else {
      try {
        this.lbSettings = parseLbSettings(config);
      } catch (err) {
        if (err instanceof ConfigError) diags.push(...err.diagnostics);
        else throw err;
      }
    }
    if (config.outlier_detection) {
      this.outlier = new OutlierDetector(compileOutlierDetection(config.outlier_detection), {
        now: env.now,
        random: env.random,
        scope: scope.scope('outlier_detection'),
        hostCount: () => {
          let n = 0;
          for (const p of this.hostsByPriority) n += p.length;
          return n;
        },
        onChange: () => this.rebuildLoadBalancer(),
      });
    }
    // cluster.proto cleanup_interval: unused original-destination hosts are dropped after it (default 5 s).
    this.cleanupIntervalMs = durationMs(config.cleanup_interval, 5000);
    // A cluster closed before it warmed (replaced by a newer CDS version) is done warming: nothing waits on it.
    const closed = new Promise<void>((r) => (this.markClosed = r));
    this.initialized = Promise.race([this.initialized, closed]);
    if (diags.length > 0) {
      this.sockets?.close();
      throw new ConfigError(diags, `cluster ${config.name}`);
    }
  }

  /** The transport sockets the current hosts use (ORIGINAL_DST: the one its hosts will get). */
  private transportsInUse(): Set<UpstreamTransport> {
    const used = new Set<UpstreamTransport>();
    if (this.type === 'ORIGINAL_DST') used.add(this.noMetadataTransport);
    for (const p of this.hostsByPriority) for (const h of p) if (h.transport !== undefined) used.add(h.transport);
    return used;
  }

  /** EDS clusters: the ClusterLoadAssignment name (eds_cluster_config.service_name, else the cluster name). */
  get edsServiceName(): string {
    return this.config.eds_cluster_config?.service_name || this.name;
  }

  /**
   * EDS: a ClusterLoadAssignment for this cluster (or undefined when the control plane removed it, which
   * empties the host set). The first one initializes (warms) the cluster; hosts that stay keep their pools.
   */
  setAssignment(cla: ClusterLoadAssignment__Output | undefined): void {
    if (this.closed) return;
    this.setHosts(cla === undefined ? [] : hostsFromAssignment({ load_assignment: cla } as Cluster__Output, (a) => [a], this.sockets));
    this.stats.update_success.inc();
    this.markInitialized();
  }

  /** Marks the cluster initialized without hosts (EDS initial_fetch_timeout passed). */
  markWarm(): void {
    this.markInitialized();
  }

  /**
   * Closes the cluster once nothing uses it (a cluster replaced or removed by CDS: requests that already
   * picked it finish on it, as in Envoy), or after `maxMs` at the latest.
   */
  closeWhenIdle(maxMs: number): void {
    const deadline = this.env.now() + maxMs;
    const check = (): void => {
      const r = this.resources;
      if ((r.requests === 0 && r.pendingRequests === 0 && this.tcpConnections === 0) || this.env.now() >= deadline) {
        this.close();
        return;
      }
      setTimeout(check, 100).unref();
    };
    check();
  }

  /** tcp_proxy connections open through this cluster (they hold no pool request). */
  get tcpConnections(): number {
    let pooled = 0;
    for (const p of this.h1Pools.values()) pooled += p.activeConnections;
    for (const p of this.h2Pools.values()) pooled += p.activeConnections;
    for (const p of this.retiredPools) {
      if (p.drained) this.retiredPools.delete(p);
      else pooled += p.activeConnections;
    }
    return Math.max(0, this.resources.connections - pooled);
  }

  /** Starts host discovery (static now, DNS in the background). */
  start(): void {
    this.outlier?.start();
    const la = this.config.load_assignment;
    switch (this.type) {
      case 'STATIC':
        this.setHosts(hostsFromAssignment(this.config, (a) => [a], this.sockets));
        this.markInitialized();
        break;
      case 'STRICT_DNS':
      case 'LOGICAL_DNS':
        void this.resolveDns();
        break;
      case 'ORIGINAL_DST':
        this.setHosts([]);
        this.markInitialized();
        break;
      case 'EDS':
        // Endpoints arrive over xDS (ClusterLoadAssignment) via setAssignment().
        if (la) this.setHosts(hostsFromAssignment(this.config, (a) => [a], this.sockets));
        break;
      default:
        this.setHosts([]);
        this.markInitialized();
    }
  }

  private async resolveDns(): Promise<void> {
    if (this.closed) return;
    this.stats.update_attempt.inc();
    const family = this.config.dns_lookup_family;
    const lookupFamily = family === 'V4_ONLY' ? 4 : family === 'V6_ONLY' ? 6 : 0;
    const cache = new Map<string, string[]>();
    let failed = false;
    for (const le of this.config.load_assignment?.endpoints ?? []) {
      for (const lb of le.lb_endpoints) {
        const sa = lb.endpoint?.address?.socket_address;
        if (!sa || cache.has(sa.address)) continue;
        try {
          const res = await dns.promises.lookup(sa.address, { all: true, family: lookupFamily, order: family === 'V6_ONLY' || family === 'AUTO' ? 'ipv6first' : 'ipv4first' });
          let addrs = res.map((r) => r.address);
          if (family === 'V4_PREFERRED' || family === 'AUTO') {
            const v4 = res.filter((r) => r.family === 4).map((r) => r.address);
            const v6 = res.filter((r) => r.family === 6).map((r) => r.address);
            addrs = family === 'AUTO' ? (v6.length ? v6 : v4) : v4.length ? v4 : v6;
          }
          cache.set(sa.address, addrs);
        } catch (err) {
          failed = true;
          this.env.log.warn({ cluster: this.name, host: sa.address, err: (err as Error).message }, 'DNS resolution failed');
        }
      }
    }
    if (this.closed) return;
    if (failed) this.stats.update_failure.inc();
    else this.stats.update_success.inc();
    const logical = this.type === 'LOGICAL_DNS';
    // A failed lookup keeps the previous addresses (Envoy keeps the last good resolution).
    if (!failed || this.hostsByPriority.length === 0) {
      this.setHosts(hostsFromAssignment(this.config, (a) => {
        const r = cache.get(a) ?? [];
        return logical ? r.slice(0, 1) : r;
      }, this.sockets));
    }
    this.markInitialized();
    this.dnsTimer = setTimeout(() => void this.resolveDns(), failed && this.config.dns_failure_refresh_rate ? durationMs(this.config.dns_failure_refresh_rate.base_interval, this.dnsRefreshMs) : this.dnsRefreshMs);
    this.dnsTimer.unref();
  }

  /** Replaces the host set (static, DNS or EDS). Keeps host objects (and their pools) that didn't change. */
  setHosts(next: UpstreamHost[][]): void {
    // A DNS refresh that resolves to the same addresses is not a membership change (Envoy compares the
    // host lists before updating), so the balancer keeps its state and membership_change stays put.
    if (this.lb !== undefined && sameHosts(this.hostsByPriority, next)) return;
    const old = new Map<string, UpstreamHost>();
    for (const p of this.hostsByPriority) for (const h of p) old.set(`${h.id}/${h.priority}`, h);
    const merged = next.map((p) =>
      p.map((h) => {
        const prev = old.get(`${h.id}/${h.priority}`);
        if (prev !== undefined) {
          old.delete(`${h.id}/${h.priority}`);
          prev.weight = h.weight;
          prev.health = h.health;
          prev.locality = h.locality;
          prev.localityWeight = h.localityWeight;
          if (prev.transport !== h.transport) {
            // New metadata picked another transport socket: new connections use it, pooled ones finish.
            this.retirePools(prev);
            prev.transport = h.transport;
            h.transport?.matchCount?.inc();
          }
          return prev;
        }
        h.transport?.matchCount?.inc();
        return h;
      }),
    );
    for (const gone of old.values()) {
      this.closePools(gone);
      this.outlier?.removeHost(gone);
    }
    this.hostsByPriority = merged;
    const total = this.updateMembershipStats();
    this.lb = total > 0 && this.lbSettings !== undefined ? createLoadBalancerFromSettings(this.lbSettings, merged, this.env.random) : undefined;
  }

  /** Outlier ejection changed a host's eligibility: same hosts, new balancer (Envoy rebuilds its host sets). */
  private rebuildLoadBalancer(): void {
    if (this.closed) return;
    const total = this.updateMembershipStats();
    if (this.type !== 'ORIGINAL_DST') {
      this.lb = total > 0 && this.lbSettings !== undefined ? createLoadBalancerFromSettings(this.lbSettings, this.hostsByPriority, this.env.random) : undefined;
    }
  }

  /** Sets the membership gauges from hostsByPriority and counts a membership change; returns the host count. */
  private updateMembershipStats(): number {
    let total = 0;
    let healthy = 0;
    let degraded = 0;
    for (const p of this.hostsByPriority) for (const h of p) {
      total++;
      if (h.outlierEjected === true) continue;
      if (h.health === 'healthy') healthy++;
      else if (h.health === 'degraded') degraded++;
    }
    this.stats.membership_total.set(total);
    this.stats.membership_healthy.set(healthy);
    this.stats.membership_degraded.set(degraded);
    this.stats.membership_change.inc();
    return total;
  }

  /** Pools of a host whose transport socket changed: they serve what they hold and close (see {@link tcpConnections}). */
  private readonly retiredPools = new Set<H1Pool | H2Pool>();

  private retirePools(h: UpstreamHost): void {
    for (const pools of [this.h1Pools, this.h2Pools] as Map<UpstreamHost, H1Pool | H2Pool>[]) {
      const p = pools.get(h);
      if (p === undefined) continue;
      pools.delete(h);
      p.drain();
      this.retiredPools.add(p);
    }
  }

  private closePools(h: UpstreamHost): void {
    this.hostCounters.delete(h);
    this.h1Pools.get(h)?.close();
    this.h1Pools.delete(h);
    this.h2Pools.get(h)?.close();
    this.h2Pools.delete(h);
  }

  /**
   * Picks a host for a request; undefined means "no healthy upstream".
   * @param originalDst the downstream connection's original destination (ORIGINAL_DST clusters only).
   * @param overrideDst the value of {@link originalDstHeader} on the request, when the cluster has one.
   */
  chooseHost(ctx: LbContext, originalDst?: { address: string; port: number }, overrideDst?: string): UpstreamHost | undefined {
    if (this.type !== 'ORIGINAL_DST') return this.lb?.chooseHost(ctx);
    if (overrideDst !== undefined) {
      // Envoy's original_dst LB: the header must hold a resolved `ip:port`; anything else is counted and
      // gets no host (503), it never falls back to the connection's address.
      const dst = parseIpPort(overrideDst);
      if (dst === undefined) {
        this.stats.original_dst_host_invalid.inc();
        return undefined;
      }
      return this.originalDstHost(dst.address, dst.port);
    }
    return originalDst === undefined ? undefined : this.originalDstHost(originalDst.address, originalDst.port);
  }

  private readonly origHosts = new Map<string, UpstreamHost>();
  /** Original-destination hosts picked since the last cleanup (Envoy's per-host `used` flag). */
  private readonly origUsed = new Set<UpstreamHost>();

  private originalDstHost(address: string, dstPort: number): UpstreamHost {
    const port = this.originalDstPortOverride ?? dstPort;
    const id = address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
    let h = this.origHosts.get(id);
    if (h === undefined) {
      h = { id, address, port, weight: 1, priority: 0, locality: '', localityWeight: 0, health: 'healthy', activeRequests: 0, transport: this.noMetadataTransport };
      this.noMetadataTransport.matchCount?.inc();
      this.origHosts.set(id, h);
      this.publishOriginalDstHosts();
      if (this.cleanupTimer === null && !this.closed) {
        // Hosts come from requests (possibly from a client-chosen header), so they must not accumulate.
        this.cleanupTimer = setInterval(() => this.cleanupOriginalDstHosts(), this.cleanupIntervalMs);
        this.cleanupTimer.unref();
      }
    }
    this.origUsed.add(h);
    return h;
  }

  private publishOriginalDstHosts(): void {
    this.hostsByPriority = [[...this.origHosts.values()]];
    this.updateMembershipStats();
  }

  /** Envoy's OriginalDstCluster::cleanup: drops hosts neither used since the last run nor busy. */
  private cleanupOriginalDstHosts(): void {
    let removed = false;
    for (const [id, h] of this.origHosts) {
      if (this.origUsed.has(h) || h.activeRequests > 0) continue;
      this.origHosts.delete(id);
      this.closePools(h);
      removed = true;
    }
    this.origUsed.clear();
    if (removed) this.publishOriginalDstHosts();
    if (this.origHosts.size === 0 && this.cleanupTimer !== null) {
      clearInterval(this.cleanupTimer);
      this.cleanupTimer = null;
    }
  }

  /** Per-host counters of Envoy's ALL_HOST_STATS that /clusters prints (plain numbers: not in /stats). */
  private readonly hostCounters = new Map<UpstreamHost, HostCounters>();
  private countersOf(host: UpstreamHost): HostCounters {
    let c = this.hostCounters.get(host);
    if (c === undefined) {
      c = { cxTotal: 0, cxConnectFail: 0, rqTotal: 0 };
      this.hostCounters.set(host, c);
    }
    return c;
  }

  /** Asks the host's pool for a stream; false = circuit breaker overflow. */
  newStream(host: UpstreamHost, downstreamIsH2: boolean, cb: PoolCallbacks): H1Pool | H2Pool | undefined {
    this.countersOf(host).rqTotal++;
    const transport = host.transport ?? this.sockets.default;
    let pool: H1Pool | H2Pool | undefined;
    if (this.protocol === 'auto' && transport.tlsEnabled) {
      // The host's two pools are made together and retired together (retirePools, closePools).
      let mixed = this.h1Pools.get(host)?.mixed;
      if (mixed === undefined) {
        mixed = new MixedPool(this, host, transport);
        this.h1Pools.set(host, mixed.h1);
        this.h2Pools.set(host, mixed.h2);
      }
      pool = mixed.pick();
      return pool.newStream(cb) ? pool : undefined;
    }
    const h2 = this.protocol === 'http2' || (this.protocol === 'downstream' && downstreamIsH2);
    if (h2) {
      pool = this.h2Pools.get(host);
      if (pool === undefined) {
        pool = new H2Pool(this, host, transport);
        this.h2Pools.set(host, pool);
      }
    } else {
      pool = this.h1Pools.get(host);
      if (pool === undefined) {
        pool = new H1Pool(this, host, transport);
        this.h1Pools.set(host, pool);
      }
    }
    return pool.newStream(cb) ? pool : undefined;
  }

  /**
   * Options for one new upstream connection to `host` (pools and tcp_proxy call it once per connect), over the
   * host's transport socket, or `transport` (a pool's own).
   */
  connectOptions(host: UpstreamHost, transport: UpstreamTransport = host.transport ?? this.sockets.default): ConnectOptions {
    this.countersOf(host).cxTotal++;
    return { host: host.address, port: host.port, connectTimeoutMs: this.connectTimeoutMs, tls: transport.tlsOptions, verifyPeer: transport.verifyPeer, onTlsError: transport.onTlsError };
  }

  onHostConnectFailure(host: UpstreamHost): void {
    this.countersOf(host).cxConnectFail++;
    this.outlier?.putLocalOrigin(host, 'connect-failure');
  }

  /** An upstream response status from `host`, for outlier detection. */
  onHostResponse(host: UpstreamHost, status: number): void {
    this.outlier?.putHttpStatus(host, status);
  }

  /** A reset or timeout of a request to `host` (local origin), for outlier detection. */
  onHostLocalFailure(host: UpstreamHost, result: LocalOriginResult): void {
    this.outlier?.putLocalOrigin(host, result);
  }

  now(): number {
    return this.env.now();
  }

  private readonly codeCounters: Counter[] = [];
  /** `cluster.<name>.upstream_rq_<code>`, created on first use and cached (no per-request lookup). */
  statusCounter(status: number): Counter {
    return (this.codeCounters[status] ??= this.stats.scope.counter(`upstream_rq_${status}`));
  }

  hosts(): readonly UpstreamHost[][] {
    return this.hostsByPriority;
  }

  /** Host stats for /clusters, by Envoy's names (the subset Sloop tracks). */
  hostStats(host: UpstreamHost): Record<string, number> {
    const c = this.hostCounters.get(host);
    return {
      cx_active: (this.h1Pools.get(host)?.activeConnections ?? 0) + (this.h2Pools.get(host)?.activeConnections ?? 0),
      cx_connect_fail: c?.cxConnectFail ?? 0,
      cx_total: c?.cxTotal ?? 0,
      rq_active: host.activeRequests,
      rq_total: c?.rqTotal ?? 0,
    };
  }

  close(): void {
    this.closed = true;
    this.markClosed();
    this.sockets.close();
    this.outlier?.close();
    if (this.dnsTimer !== null) clearTimeout(this.dnsTimer);
    if (this.cleanupTimer !== null) clearInterval(this.cleanupTimer);
    for (const p of this.h1Pools.values()) p.close();
    for (const p of this.h2Pools.values()) p.close();
    for (const p of this.retiredPools) p.close();
    this.retiredPools.clear();
    this.h1Pools.clear();
    this.h2Pools.clear();
  }
}

/** Same hosts, weights, health, localities and transport sockets in the same order (a no-op update). */
function sameHosts(a: readonly UpstreamHost[][], b: readonly UpstreamHost[][]): boolean {
  if (a.length !== b.length) return false;
  for (let p = 0; p < a.length; p++) {
    const x = a[p];
    const y = b[p];
    if (x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) {
      const h = x[i];
      const k = y[i];
      if (h.id !== k.id || h.weight !== k.weight || h.health !== k.health || h.locality !== k.locality || h.localityWeight !== k.localityWeight || h.transport !== k.transport) return false;
    }
  }
  return true;
}

/**
 * `ip:port` or `[ipv6]:port` as Envoy's parseInternetAddressAndPortNoThrow accepts it (no names: the
 * original-destination header must carry a resolved address), else undefined.
 */
export function parseIpPort(s: string): { address: string; port: number } | undefined {
  let address: string;
  let portText: string;
  if (s.startsWith('[')) {
    const end = s.indexOf(']:');
    if (end < 0) return undefined;
    address = s.slice(1, end);
    portText = s.slice(end + 2);
    if (isIP(address) !== 6) return undefined;
  } else {
    const colon = s.lastIndexOf(':');
    if (colon < 0) return undefined;
    address = s.slice(0, colon);
    portText = s.slice(colon + 1);
    if (isIP(address) !== 4) return undefined;
  }
  if (portText.length === 0 || portText.length > 5) return undefined;
  for (let i = 0; i < portText.length; i++) {
    const c = portText.charCodeAt(i);
    if (c < 48 || c > 57) return undefined;
  }
  const port = Number(portText);
  return port <= 65535 ? { address, port } : undefined;
}

/**
 * Hosts from `load_assignment`, grouped by priority; `resolve` maps an endpoint address to IPs, `sockets` picks
 * each endpoint's transport socket from its metadata (transport_socket_matches).
 */
function hostsFromAssignment(c: Cluster__Output, resolve: (addr: string) => string[], sockets: TransportSockets): UpstreamHost[][] {
  const out: UpstreamHost[][] = [];
  for (const le of c.load_assignment?.endpoints ?? []) {
    const prio = le.priority ?? 0;
    const loc = le.locality ? `${le.locality.region}/${le.locality.zone}/${le.locality.sub_zone}` : '';
    const lw = le.load_balancing_weight?.value ?? 0;
    for (const lb of le.lb_endpoints) {
      const sa = lb.endpoint?.address?.socket_address;
      if (!sa) continue;
      const port = sa.port_value ?? 0;
      const health = lb.health_status === 'UNHEALTHY' || lb.health_status === 'DRAINING' || lb.health_status === 'TIMEOUT'
        ? 'unhealthy'
        : lb.health_status === 'DEGRADED' ? 'degraded' : 'healthy';
      const transport = sockets.resolve(lb.metadata, le.metadata);
      for (const ip of resolve(sa.address)) {
        (out[prio] ??= []).push({
          id: `${ip}:${port}`,
          address: ip,
          port,
          weight: lb.load_balancing_weight?.value ?? 1,
          priority: prio,
          locality: loc,
          localityWeight: lw,
          health,
          activeRequests: 0,
          transport,
        });
      }
    }
  }
  for (let i = 0; i < out.length; i++) out[i] ??= [];
  return out;
}
