/**
 * The proxy process: builds clusters and listeners from an Envoy bootstrap (the same code path will
 * apply xDS resources), serves the admin interface, and drains on SIGTERM.
 */
import { dirname } from 'node:path';
import type { Bootstrap__Output } from '../xds/gen/envoy/config/bootstrap/v3/Bootstrap.ts';
import type { Filter__Output } from '../xds/gen/envoy/config/listener/v3/Filter.ts';
import type { HttpConnectionManager__Output } from '../xds/gen/envoy/extensions/filters/network/http_connection_manager/v3/HttpConnectionManager.ts';
import type { TcpProxy__Output } from '../xds/gen/envoy/extensions/filters/network/tcp_proxy/v3/TcpProxy.ts';
import { unpackAny } from '../xds/any.ts';
import { ConfigError, type Diagnostic } from '../shared/errors.ts';
import type { Logger } from '../shared/log.ts';
import { StatsStore } from './stats/store.ts';
import { serverStats, type ServerStats } from './stats/envoy-stats.ts';
import { durationMs } from './duration.ts';
import { ClusterManager } from './upstream/cluster-manager.ts';
import { findListenerByAddress, ListenerRuntime, listenerAddress } from './listener/listener.ts';
import type { NetworkFilter } from './listener/network-filter.ts';
import { TcpProxyFilter } from './tcp/tcp-proxy.ts';
import { HttpConnectionManagerFilter } from './http/hcm.ts';
import { startAdminServer, type AdminProvider } from './admin/admin-server.ts';
import { configDump } from './config-dump.ts';
import { DynamicConfig } from './dynamic-config.ts';
import { VHDS_CLIENT_FEATURE } from '../xds/type-urls.ts';
import type { CompiledRouteConfig } from './http/route/route-table.ts';
import type { ConfigSource__Output } from '../xds/gen/envoy/config/core/v3/ConfigSource.ts';
import { SecretManager } from './tls/secrets.ts';
import { createGlobalConnectionLimit, type GlobalConnectionLimit } from './overload-manager.ts';

export const HCM_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
export const TCP_PROXY_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy';

export type ServerState = 'PRE_INITIALIZING' | 'INITIALIZING' | 'LIVE' | 'DRAINING';

/** `server.state` values: envoy.admin.v3.ServerInfo.State numbers. */
const STATE_GAUGE: Record<ServerState, number> = { LIVE: 0, DRAINING: 1, PRE_INITIALIZING: 2, INITIALIZING: 3 };

export interface ProxyOptions {
  log: Logger;
  /** The bootstrap file, for relative paths and config_dump. */
  configPath: string;
  /** How long SIGTERM waits for in-flight work before closing what is left (Envoy's --drain-time-s). */
  drainTimeMs: number;
  now?: () => number;
  random?: () => number;
  /**
   * Named TLS secrets for SDS references. The CLI passes the one its workload agent fills (`default`, `ROOTCA`);
   * the bootstrap's static_resources.secrets are added, and with ADS other names are asked of the control plane.
   */
  secrets?: SecretManager;
}

export class ProxyServer {
  readonly bootstrap: Bootstrap__Output;
  readonly stats = new StatsStore();
  readonly clusters: ClusterManager;
  readonly listeners: ListenerRuntime[] = [];
  /** SDS secrets: static, from the workload agent, or over ADS. */
  readonly secrets: SecretManager;
  /** overload_manager's global_downstream_max_connections, shared by every listener (and the admin one). */
  readonly globalConnectionLimit: GlobalConnectionLimit | undefined;
  private readonly opts: ProxyOptions;
  private readonly log: Logger;
  private admin: { port: number; close(): Promise<void> } | undefined;
  state: ServerState = 'PRE_INITIALIZING';
  private healthCheckFailed = false;
  private readonly startedAt: number;
  private readonly serverStats: ServerStats;
  private flushTimer: NodeJS.Timeout | null = null;
  /** xDS resources from ADS (bootstrap dynamic_resources), else undefined. */
  readonly dynamic: DynamicConfig | undefined;
  private readonly ads: { clusterName: string; mode: 'sotw' | 'delta'; backoffBaseMs: number; backoffMaxMs: number } | undefined;
  private stopping: Promise<void> | undefined;
  /** Resolves when the process should exit (quitquitquit or drain complete). */
  readonly done: Promise<void>;
  private finish!: () => void;

  constructor(bootstrap: Bootstrap__Output, opts: ProxyOptions) {
    this.bootstrap = bootstrap;
    this.opts = opts;
    this.log = opts.log;
    const now = opts.now ?? (() => performance.now());
    const random = opts.random ?? Math.random;
    this.startedAt = Date.now();
    this.done = new Promise((r) => (this.finish = r));
    this.secrets = opts.secrets ?? new SecretManager();
    // The bootstrap loader validated overload_manager (validateOverloadManager).
    this.globalConnectionLimit = createGlobalConnectionLimit(bootstrap);
    const limit = this.globalConnectionLimit;
    for (const s of bootstrap.static_resources?.secrets ?? []) this.secrets.set(s, 'static');
    // SDS names that no local source has are asked for on the ADS stream (once it exists: DynamicConfig.start).
    if (bootstrap.dynamic_resources?.ads_config) this.secrets.setAdsRequester((names) => this.dynamic?.subscribeSecrets(names));
    this.clusters = new ClusterManager(this.stats, { log: this.log, now, random, baseDir: dirname(opts.configPath), secrets: this.secrets });
    const diags: Diagnostic[] = [];
    try {
      this.clusters.addStatic(bootstrap.static_resources?.clusters ?? [], 'static_resources.clusters');
    } catch (err) {
      if (err instanceof ConfigError) diags.push(...err.diagnostics);
      else throw err;
    }
    this.ads = checkDynamicResources(bootstrap, diags);
    if (this.ads !== undefined) {
      const dr = bootstrap.dynamic_resources!;
      this.dynamic = new DynamicConfig({
        clusters: this.clusters,
        listeners: this.listeners,
        store: this.stats,
        log: this.log,
        buildListener: (l, onRouteTable) =>
          new ListenerRuntime(l, (f, p) => this.makeFilter(f, p, l.drain_type, onRouteTable), this.stats, this.log, dirname(opts.configPath), this.findListener, this.secrets, limit),
        staticClusterNames: new Set((bootstrap.static_resources?.clusters ?? []).map((c) => c.name)),
        staticListenerNames: new Set((bootstrap.static_resources?.listeners ?? []).map((l) => l.name)),
        drainMs: opts.drainTimeMs,
        cdsInitialFetchMs: initialFetchMs(dr.cds_config),
        ldsInitialFetchMs: initialFetchMs(dr.lds_config),
        wallClock: () => Date.now(),
        secrets: this.secrets,
      });
    }
    const names = new Set<string>();
    /** "host:port" → listener name, for Envoy's "has duplicate address" check (port 0 binds anywhere). */
    const addresses = new Map<string, string>();
    (bootstrap.static_resources?.listeners ?? []).forEach((l, i) => {
      const path = `static_resources.listeners[${i}]`;
      if (names.has(l.name)) {
        diags.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: `${path}.name`, message: `duplicate listener name ${JSON.stringify(l.name)}` });
        return;
      }
      names.add(l.name);
      // Envoy rejects the config ("listener ... has duplicate address ... as existing listener") rather than
      // failing at bind time, so --mode validate catches it and nothing is half-started.
      const sa = l.address?.socket_address;
      if (sa && (sa.port_value ?? 0) !== 0) {
        const key = `${sa.address}:${sa.port_value}`;
        const other = addresses.get(key);
        if (other !== undefined) {
          diags.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: `${path}.address`, message: `listener ${JSON.stringify(l.name)} has duplicate address ${key} as existing listener ${JSON.stringify(other)}` });
          return;
        }
        addresses.set(key, l.name);
      }
      try {
        this.listeners.push(new ListenerRuntime(l, (f, p) => this.makeFilter(f, `${path}.${p}`, l.drain_type), this.stats, this.log, dirname(opts.configPath), this.findListener, this.secrets, limit));
      } catch (err) {
        if (err instanceof ConfigError) {
          for (const d of err.diagnostics) diags.push(d.path.startsWith('static_resources') ? d : { ...d, path: `${path}.${d.path}` });
        } else throw err;
      }
    });
    if (diags.length > 0) {
      this.clusters.close();
      for (const l of this.listeners) l.close();
      throw new ConfigError(diags, 'bootstrap');
    }
    this.dynamic?.noteStaticRoutes();
    this.serverStats = serverStats(this.stats);
    this.serverStats.concurrency.set(1);
    this.serverStats.state.set(STATE_GAUGE.PRE_INITIALIZING);
  }

  /** use_original_dst hand-off: the active listener (static or LDS) of an original destination. */
  private readonly findListener = (address: string, port: number): ListenerRuntime | undefined => findListenerByAddress(this.listeners, address, port);

  /** Envoy's Utility::serverState: a LIVE server whose health checks were failed reports DRAINING. */
  private currentState(): ServerState {
    return this.healthCheckFailed && this.state === 'LIVE' ? 'DRAINING' : this.state;
  }

  /**
   * One stats flush (Envoy's InstanceImpl::flushStats, every `stats_flush_interval`, default 5 s): close the
   * histogram interval and refresh the server gauges, which are only this fresh in /stats, as in Envoy.
   */
  private flushStats(): void {
    this.stats.mergeHistograms();
    const s = this.serverStats;
    const mem = process.memoryUsage();
    s.uptime.set(Math.floor((Date.now() - this.startedAt) / 1000));
    s.memoryAllocated.set(mem.heapUsed);
    s.memoryHeapSize.set(mem.heapTotal);
    s.memoryPhysicalSize.set(mem.rss);
    const state = this.currentState();
    s.state.set(STATE_GAUGE[state]);
    // server.live: "1 if the server is not currently draining, 0 otherwise".
    s.live.set(state === 'LIVE' ? 1 : 0);
    let connections = 0;
    for (const l of this.listeners) connections += l.activeConnections;
    s.totalConnections.set(connections);
  }

  private makeFilter(f: Filter__Output, path: string, drainType?: string, onRouteTable?: (rt: CompiledRouteConfig, path: string) => void): NetworkFilter {
    const url = f.typed_config?.type_url ?? '';
    const where = (d: Diagnostic): Diagnostic => ({ ...d, path: `${path}.typed_config.${d.path}` });
    try {
      if (url === HCM_TYPE) {
        const hcm = unpackAny<HttpConnectionManager__Output>(f.typed_config!);
        const filter = new HttpConnectionManagerFilter(hcm, {
          clusters: this.clusters,
          store: this.stats,
          log: this.log,
          now: this.opts.now ?? (() => performance.now()),
          random: this.opts.random ?? Math.random,
          baseDir: dirname(this.opts.configPath),
          // Envoy's DrainManagerImpl::drainClose: a DEFAULT drain_type listener also drain-closes every
          // connection while the server is health-check failed (admin /healthcheck/fail).
          isDraining: () => this.state === 'DRAINING' || (this.healthCheckFailed && drainType !== 'MODIFY_ONLY'),
          rds: this.dynamic,
        });
        if (onRouteTable !== undefined && hcm.route_specifier === 'route_config') onRouteTable(filter.cfg.routes, `${path}.typed_config.route_config`);
        return filter;
      }
      if (url === TCP_PROXY_TYPE) {
        return new TcpProxyFilter(unpackAny<TcpProxy__Output>(f.typed_config!), { clusters: this.clusters, store: this.stats, log: this.log, random: this.opts.random ?? Math.random }, path);
      }
    } catch (err) {
      if (err instanceof ConfigError) throw new ConfigError(err.diagnostics.map((d) => (d.path.startsWith('static_resources') ? d : where(d))));
      throw err;
    }
    throw new ConfigError([{ severity: 'error', code: 'SLOOP_ERR_CONFIG_UNSUPPORTED', path: `${path}.typed_config`, message: `unsupported network filter ${JSON.stringify(url || f.name)} (supported: ${HCM_TYPE}, ${TCP_PROXY_TYPE})` }]);
  }

  /** Opens every listener, then the admin port; LIVE once clusters have their first hosts. */
  async start(): Promise<void> {
    this.state = 'INITIALIZING';
    this.serverStats.state.set(STATE_GAUGE.INITIALIZING);
    const adminAddr = this.bootstrap.admin?.address?.socket_address;
    if (adminAddr) {
      this.admin = await startAdminServer({ address: adminAddr.address, port: adminAddr.port_value ?? 0 }, this.adminProvider(), this.log, {
        // Envoy's admin.ignore_global_conn_limit: the admin listener is limited too unless it says otherwise.
        connectionLimit: this.bootstrap.admin?.ignore_global_conn_limit === true ? undefined : this.globalConnectionLimit,
      });
    }
    await this.clusters.initialized(5000);
    // Listeners from LDS open as they are applied; only the static ones are opened below.
    const staticListeners = [...this.listeners];
    if (this.dynamic !== undefined && this.ads !== undefined) {
      const ads = this.ads;
      // On a delta stream the proxy takes RDS as VHDS (one resource per virtual host, src/xds/vhds.ts), so a
      // VirtualService edit sends one virtual host instead of every route table; it says so in client_features.
      const node = ads.mode === 'delta'
        ? { ...this.bootstrap.node, client_features: [...(this.bootstrap.node?.client_features ?? []), VHDS_CLIENT_FEATURE] }
        : (this.bootstrap.node ?? {});
      // Imported here: a proxy without dynamic_resources never loads the ADS client and @grpc/grpc-js.
      const { AdsClient } = await import('../xds/ads-client.ts');
      const client = new AdsClient({
        target: () => {
          // The control plane is the static cluster ads_config names; its first host (re-read on every reconnect).
          const h = this.clusters.get(ads.clusterName)?.hosts().flat()[0];
          return h === undefined ? undefined : h.address.includes(':') ? `[${h.address}]:${h.port}` : `${h.address}:${h.port}`;
        },
        node,
        mode: ads.mode,
        handler: this.dynamic,
        log: this.log,
        backoffBaseMs: ads.backoffBaseMs,
        backoffMaxMs: ads.backoffMaxMs,
        random: this.opts.random,
      });
      await this.dynamic.start(client);
      if (this.stopping !== undefined) return; // SIGTERM while waiting for the first config
    }
    try {
      for (const l of staticListeners) {
        const port = await l.listen();
        this.log.info({ listener: l.name, port }, 'listener started');
      }
    } catch (err) {
      for (const l of this.listeners) l.close();
      await this.admin?.close();
      this.clusters.close();
      throw err;
    }
    this.state = 'LIVE';
    this.flushStats();
    const flushMs = durationMs(this.bootstrap.stats_flush_interval, 5000);
    this.flushTimer = setInterval(() => this.flushStats(), flushMs > 0 ? flushMs : 5000);
    this.flushTimer.unref();
  }

  get adminPort(): number | undefined {
    return this.admin?.port;
  }

  private adminProvider(): AdminProvider {
    return {
      stats: this.stats,
      serverState: () => this.currentState(),
      configDump: (o) => configDump(this, o),
      clusters: () =>
        [...this.clusters.all()].map((c) => ({
          name: c.name,
          observabilityName: c.config.alt_stat_name || c.name,
          addedViaApi: c.addedViaApi,
          hosts: c.hosts().flatMap((p) =>
            p.map((h) => {
              const [region, zone, subZone] = h.locality.split('/');
              return {
                address: h.address,
                port: h.port,
                // Envoy's healthFlagsToString: flags in its order (outlier ejection, then EDS health), else healthy.
                health: ((h.outlierEjected === true ? '/failed_outlier_check' : '') + (h.health === 'unhealthy' ? '/failed_eds_health' : h.health === 'degraded' ? '/degraded_eds_health' : '')) || 'healthy',
                weight: h.weight,
                priority: h.priority,
                region,
                zone,
                subZone,
                stats: c.hostStats(h),
              };
            }),
          ),
        })),
      listeners: () =>
        this.listeners.map((l) => {
          const a = listenerAddress(l.config);
          return { name: l.name, address: a.host, port: l.port || a.port };
        }),
      serverInfo: () => ({
        version: 'sloop/0.1.0',
        state: this.currentState(),
        uptime_current_epoch: `${Math.floor((Date.now() - this.startedAt) / 1000)}s`,
        uptime_all_epochs: `${Math.floor((Date.now() - this.startedAt) / 1000)}s`,
        node: this.bootstrap.node ? { id: this.bootstrap.node.id, cluster: this.bootstrap.node.cluster } : {},
        command_line_options: { concurrency: 1, drain_time: `${this.opts.drainTimeMs / 1000}s` },
      }),
      quit: () => {
        void this.stop(0);
      },
      drainListeners: (o) => {
        for (const l of this.listeners) {
          if (o.inboundOnly && l.config.traffic_direction !== 'INBOUND') continue;
          if (o.graceful) l.drain();
          else l.close();
        }
      },
      setHealthCheckFailed: (failed) => {
        this.healthCheckFailed = failed;
      },
    };
  }

  /**
   * Drain and stop: stop accepting, let in-flight requests finish (h1 answers with Connection: close,
   * h2 sends GOAWAY), exit when nothing is left or after `drainMs`.
   */
  stop(drainMs = this.opts.drainTimeMs): Promise<void> {
    if (this.stopping) return this.stopping;
    this.stopping = (async () => {
      this.state = 'DRAINING';
      // No LDS/CDS updates while draining: nothing new may start listening.
      this.dynamic?.close();
      this.flushStats();
      this.log.info({ drainMs }, 'draining');
      for (const l of this.listeners) l.drain();
      const deadline = Date.now() + drainMs;
      const draining = this.dynamic?.drainingListeners ?? new Set<ListenerRuntime>();
      while (Date.now() < deadline && (this.listeners.some((l) => l.activeConnections > 0) || [...draining].some((l) => l.activeConnections > 0))) {
        await new Promise((r) => setTimeout(r, 20));
      }
      this.dynamic?.closeDraining();
      for (const l of this.listeners) l.close();
      this.clusters.close();
      if (this.flushTimer !== null) clearInterval(this.flushTimer);
      await this.admin?.close();
      this.log.info({}, 'stopped');
      this.finish();
    })();
    return this.stopping;
  }
}

/** ConfigSource initial_fetch_timeout (Envoy's default 15 s; 0 = wait forever). */
function initialFetchMs(src: ConfigSource__Output | null): number {
  const ms = durationMs(src?.initial_fetch_timeout, 15_000);
  return ms === 0 ? 2_147_483_647 : ms;
}

/**
 * Validates bootstrap `dynamic_resources`: Sloop's xDS is ADS over gRPC (SotW or delta, v3) to a static
 * cluster, with `ads: {}` config sources. Returns undefined when there are no dynamic resources.
 */
function checkDynamicResources(b: Bootstrap__Output, diags: Diagnostic[]): { clusterName: string; mode: 'sotw' | 'delta'; backoffBaseMs: number; backoffMaxMs: number } | undefined {
  const dr = b.dynamic_resources;
  if (!dr || (!dr.ads_config && !dr.cds_config && !dr.lds_config)) return undefined;
  const bad = (path: string, message: string, code: Diagnostic['code'] = 'SLOOP_ERR_CONFIG_UNSUPPORTED'): void => {
    diags.push({ severity: 'error', code, path: `dynamic_resources.${path}`, message });
  };
  const before = diags.length;
  for (const [key, src] of [['cds_config', dr.cds_config], ['lds_config', dr.lds_config]] as const) {
    if (src && src.config_source_specifier !== 'ads') bad(key, `only \`ads: {}\` is supported (found ${src.config_source_specifier ?? 'nothing'})`);
  }
  if (dr.cds_resources_locator || dr.lds_resources_locator) bad('cds_resources_locator', 'xdstp:// resource locators are not supported');
  const ads = dr.ads_config;
  if (!ads) {
    bad('ads_config', 'ads_config is required when cds_config or lds_config uses ads', 'SLOOP_ERR_CONFIG_INVALID');
    return undefined;
  }
  if (ads.api_type !== 'GRPC' && ads.api_type !== 'DELTA_GRPC') bad('ads_config.api_type', `api_type ${ads.api_type} is not supported (GRPC or DELTA_GRPC)`);
  if (ads.transport_api_version !== 'V3') bad('ads_config.transport_api_version', 'transport_api_version must be V3', 'SLOOP_ERR_CONFIG_INVALID');
  const gs = ads.grpc_services[0];
  const clusterName = gs?.envoy_grpc?.cluster_name ?? '';
  if (ads.grpc_services.length !== 1) bad('ads_config.grpc_services', 'exactly one grpc_services entry is required', 'SLOOP_ERR_CONFIG_INVALID');
  else if (gs.target_specifier !== 'envoy_grpc') bad('ads_config.grpc_services[0]', 'only envoy_grpc is supported');
  else if (!(b.static_resources?.clusters ?? []).some((c) => c.name === clusterName)) {
    bad('ads_config.grpc_services[0].envoy_grpc.cluster_name', `${JSON.stringify(clusterName)} is not a static cluster (the control plane must be reachable without xDS)`, 'SLOOP_ERR_CONFIG_INVALID');
  }
  if (diags.length > before) return undefined;
  const back = gs.envoy_grpc?.retry_policy?.retry_back_off;
  // Envoy's xDS gRPC retry defaults: 500 ms base, 30 s cap (GrpcMux's backoff strategy).
  const backoffBaseMs = durationMs(back?.base_interval, 500) || 500;
  const backoffMaxMs = durationMs(back?.max_interval, Math.max(30_000, backoffBaseMs)) || 30_000;
  return { clusterName, mode: ads.api_type === 'DELTA_GRPC' ? 'delta' : 'sotw', backoffBaseMs, backoffMaxMs };
}
