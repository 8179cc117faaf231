/**
 * Applies xDS resources from the ADS client (xds/ads-client.ts) to the running proxy, as Envoy does
 * (api/xds_protocol, intro/arch_overview/operations/dynamic_configuration, cluster warming, listener drain):
 *
 * - CDS: clusters are built with the same code as static ones. A new or changed cluster *warms* (EDS: until
 *   its first ClusterLoadAssignment or its eds_config.initial_fetch_timeout; DNS: first resolution) while the
 *   version it replaces keeps serving; then it becomes active and the old one closes once its in-flight
 *   requests are done. A cluster the control plane no longer sends is removed the same way.
 * - EDS: ClusterLoadAssignments update the host sets of every cluster that names them (unchanged hosts keep
 *   their connection pools). They are cached, so a re-created cluster warms at once from the last one.
 * - LDS: listeners are built with the same code as static ones. One that uses RDS warms until its route
 *   tables arrive (or rds.config_source.initial_fetch_timeout). A changed listener on the same address takes
 *   over the listening socket, and the old one drains (Connection: close / GOAWAY); its connections finish.
 * - RDS: a route table is swapped in every connection manager that names it; new requests use it at once.
 *
 * Every update is all or nothing: one invalid resource rejects the response (the client NACKs with the
 * diagnostics) and what was serving keeps serving. The proxy is initialized (ready) once the first CDS
 * response is applied and its clusters warm, then the first LDS response applied and its listeners warm,
 * or when the initial_fetch_timeouts pass (Envoy's init manager order: CDS, then LDS).
 */
import type { Cluster__Output } from '../xds/gen/envoy/config/cluster/v3/Cluster.ts';
import type { ClusterLoadAssignment__Output } from '../xds/gen/envoy/config/endpoint/v3/ClusterLoadAssignment.ts';
import type { Listener__Output } from '../xds/gen/envoy/config/listener/v3/Listener.ts';
import type { RouteConfiguration__Output } from '../xds/gen/envoy/config/route/v3/RouteConfiguration.ts';
import type { VirtualHost__Output } from '../xds/gen/envoy/config/route/v3/VirtualHost.ts';
import type { Duration__Output } from '../xds/gen/google/protobuf/Duration.ts';
import type { AdsClient, AdsHandler, ResourceUpdate } from '../xds/ads-client.ts';
import { TYPE_URLS } from '../xds/type-urls.ts';
import { SECRET_TYPE, type SecretManager } from './tls/secrets.ts';
import type { Secret__Output } from '../xds/gen/envoy/extensions/transport_sockets/tls/v3/Secret.ts';
import { packAny, unpackAny } from '../xds/any.ts';
import { lookupMessage, TO_OBJECT_OPTIONS } from '../xds/protos.ts';
import type { HttpConnectionManager__Output } from '../xds/gen/envoy/extensions/filters/network/http_connection_manager/v3/HttpConnectionManager.ts';
import { ConfigError, formatDiagnostic, type Diagnostic } from '../shared/errors.ts';
import type { Logger } from '../shared/log.ts';
import type { Counter, Gauge, StatsStore } from './stats/store.ts';
import { durationMs } from './duration.ts';
import type { ClusterManager } from './upstream/cluster-manager.ts';
import type { ClusterRuntime } from './upstream/cluster.ts';
import { listenerAddress, type ListenerRuntime } from './listener/listener.ts';
import { compileRouteConfig, type CompiledRouteConfig, type CompileRouteOptions } from './http/route/route-table.ts';
import type { RdsProvider } from './http/hcm.ts';

// The type URLs as ads-client.ts names them; from type-urls.ts, so this module doesn't load the ADS client (grpc-js).
const { listener: LISTENER_TYPE, cluster: CLUSTER_TYPE, route: ROUTE_TYPE, endpoint: ENDPOINT_TYPE, virtualHost: VIRTUAL_HOST_TYPE } = TYPE_URLS;

/** Envoy's default initial_fetch_timeout (config_source.proto). */
const DEFAULT_INITIAL_FETCH_MS = 15_000;
const T = 'type.googleapis.com/';
/** The holders' key of default CompileRouteOptions (holders are keyed by their options' JSON). */
const DEFAULT_OPTS_KEY = JSON.stringify({});

/** A resource as /config_dump shows it. */
export interface DumpedResource<T> {
  name: string;
  version: string;
  config: T;
  /** Wall-clock milliseconds of the last update. */
  lastUpdatedMs: number;
}

/** What the proxy lends the dynamic configuration. */
export interface DynamicEnv {
  clusters: ClusterManager;
  /** The server's active listeners; dynamic ones are added, replaced and removed here. */
  listeners: ListenerRuntime[];
  store: StatsStore;
  log: Logger;
  /** Builds a listener with the static path's code; `onRouteTable` sees each inline route table it compiles. */
  buildListener(l: Listener__Output, onRouteTable: (rt: CompiledRouteConfig, path: string) => void): ListenerRuntime;
  staticClusterNames: ReadonlySet<string>;
  staticListenerNames: ReadonlySet<string>;
  /** How long replaced listeners and clusters may take to finish in-flight work. */
  drainMs: number;
  cdsInitialFetchMs: number;
  ldsInitialFetchMs: number;
  wallClock: () => number;
  /** SDS over ADS: Secrets received are put here (source `ads`); absent, Secret updates are NACKed. */
  secrets?: SecretManager;
}

interface RouteHolder {
  current: CompiledRouteConfig;
  opts: CompileRouteOptions;
}

interface RouteEntry {
  name: string;
  version: string;
  config: RouteConfiguration__Output | undefined;
  lastUpdatedMs: number;
  holders: Map<string, RouteHolder>;
  received: boolean;
  waiters: Array<() => void>;
  stats: { update_attempt: Counter; update_success: Counter; update_rejected: Counter; config_reload: Counter };
}

interface WarmingCluster {
  rt: ClusterRuntime;
  entry: DumpedResource<Cluster__Output>;
  timer: NodeJS.Timeout;
}

interface DynListener {
  rt: ListenerRuntime;
  entry: DumpedResource<Listener__Output>;
  rdsNames: string[];
  key: string;
}

export class DynamicConfig implements AdsHandler, RdsProvider {
  private readonly env: DynamicEnv;
  private readonly log: Logger;
  private client: AdsClient | undefined;
  private readonly activeClusters = new Map<string, DumpedResource<Cluster__Output> & { key: string }>();
  private readonly warmingClusters = new Map<string, WarmingCluster & { key: string }>();
  private readonly endpoints = new Map<string, DumpedResource<ClusterLoadAssignment__Output>>();
  private readonly routes = new Map<string, RouteEntry>();
  /**
   * VHDS (delta ADS only, src/xds/vhds.ts): route table name → its virtual hosts by resource name
   * (`<route table>/<virtual host>`). Kept whether or not the table has arrived yet: the control plane sends a
   * table's virtual hosts just before the table.
   */
  private readonly vhosts = new Map<string, Map<string, VirtualHost__Output>>();
  private readonly activeListeners = new Map<string, DynListener>();
  private readonly warmingListeners = new Map<string, DynListener>();
  private readonly draining = new Set<ListenerRuntime>();
  /** Route names asked for while a listener is being built. */
  private collecting: Set<string> | undefined;
  private cdsReceived = false;
  private ldsReceived = false;
  private onCds: (() => void) | undefined;
  private onLds: (() => void) | undefined;
  private closed = false;
  private readonly s: {
    cds: Record<'update_attempt' | 'update_success' | 'update_rejected', Counter>;
    lds: Record<'update_attempt' | 'update_success' | 'update_rejected', Counter>;
    cluster_added: Counter; cluster_modified: Counter; cluster_removed: Counter;
    active_clusters: Gauge; warming_clusters: Gauge;
    listener_added: Counter; listener_modified: Counter; listener_removed: Counter; listener_create_failure: Counter;
    total_listeners_active: Gauge; total_listeners_warming: Gauge; total_listeners_draining: Gauge;
    connected_state: Gauge;
  };

  constructor(env: DynamicEnv) {
    this.env = env;
    this.log = env.log.child({ component: 'xds' });
    const cm = env.store.scope('cluster_manager');
    const lm = env.store.scope('listener_manager');
    const sub = (scope: ReturnType<StatsStore['scope']>) => ({
      update_attempt: scope.counter('update_attempt'),
      update_success: scope.counter('update_success'),
      update_rejected: scope.counter('update_rejected'),
    });
    this.s = {
      cds: sub(cm.scope('cds')),
      lds: sub(lm.scope('lds')),
      cluster_added: cm.counter('cluster_added'),
      cluster_modified: cm.counter('cluster_modified'),
      cluster_removed: cm.counter('cluster_removed'),
      active_clusters: cm.gauge('active_clusters'),
      warming_clusters: cm.gauge('warming_clusters'),
      listener_added: lm.counter('listener_added'),
      listener_modified: lm.counter('listener_modified'),
      listener_removed: lm.counter('listener_removed'),
      listener_create_failure: lm.counter('listener_create_failure'),
      total_listeners_active: lm.gauge('total_listeners_active'),
      total_listeners_warming: lm.gauge('total_listeners_warming'),
      total_listeners_draining: lm.gauge('total_listeners_draining'),
      connected_state: env.store.scope('control_plane').gauge('connected_state'),
    };
  }

  /**
   * Subscribes (CDS first; LDS once clusters are warm, as Envoy's init manager does) and resolves when the
   * proxy is initialized: first CDS and LDS applied and warm, or their initial_fetch_timeouts passed.
   */
  async start(client: AdsClient): Promise<void> {
    this.client = client;
    client.subscribe(CLUSTER_TYPE, '*');
    // Every virtual host of the route tables the control plane has for this proxy (VHDS's initial set is all).
    if (client.mode === 'delta') client.subscribe(VIRTUAL_HOST_TYPE, '*');
    this.updateRdsInterest(); // route tables static listeners name
    this.subscribeSecrets(this.env.secrets?.adsNames ?? []); // SDS names static clusters and listeners use
    client.start();
    await this.phase((r) => (this.onCds = r), () => this.cdsReceived, this.env.cdsInitialFetchMs, 'CDS');
    await this.clustersWarm(this.env.cdsInitialFetchMs);
    if (this.closed) return;
    client.subscribe(LISTENER_TYPE, '*');
    await this.phase((r) => (this.onLds = r), () => this.ldsReceived, this.env.ldsInitialFetchMs, 'LDS');
    await this.listenersWarm();
  }

  /** SDS over ADS: the full set of Secret names the TLS contexts need from the control plane. */
  subscribeSecrets(names: readonly string[]): void {
    if (names.length > 0) this.client?.subscribe(SECRET_TYPE, [...names]);
  }

  /**
   * Secrets (SDS over ADS): each goes to the secret manager, whose subscribers (TLS contexts) rebuild for new
   * connections; a secret whose content a context cannot use is logged there and the last context kept.
   */
  private applySecrets(u: ResourceUpdate): string[] | undefined {
    const secrets = this.env.secrets;
    if (secrets === undefined) return ['SDS secrets are not supported without a secret manager'];
    const problems = u.added.filter((a) => !a.name).map(() => 'Secret without a name');
    if (problems.length > 0) return problems;
    for (const a of u.added) {
      const secret = a.resource as Secret__Output;
      secrets.set(secret.name ? secret : { ...secret, name: a.name }, 'ads', { version: a.version });
    }
    for (const name of u.removed) secrets.delete(name, 'ads');
    this.log.debug({ added: u.added.map((a) => a.name), removed: u.removed, version: u.versionInfo }, 'SDS update applied');
    return undefined;
  }

  private async phase(set: (r: () => void) => void, done: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (done()) return;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await new Promise<boolean>((resolve) => {
      set(() => resolve(false));
      timer = setTimeout(() => resolve(true), timeoutMs);
      timer.unref();
    });
    clearTimeout(timer);
    if (timedOut) this.log.warn({ what, timeoutMs }, 'initial_fetch_timeout passed; initializing without it');
  }

  private async clustersWarm(timeoutMs: number): Promise<void> {
    let timedOut = false;
    const timeout = new Promise<void>((r) => setTimeout(r, timeoutMs).unref()).then(() => {
      timedOut = true;
    });
    // A CDS update while warming replaces warming clusters (a closed one counts as initialized): wait for the
    // clusters warming now, until none is left or the timeout.
    while (!timedOut) {
      const pending = [...this.warmingClusters.values()].map((w) => w.rt.initialized);
      if (pending.length === 0) return;
      await Promise.race([Promise.all(pending), timeout]);
      // Promotion runs in the initialized callbacks; let them run first.
      await Promise.resolve();
    }
  }

  private async listenersWarm(): Promise<void> {
    while (!this.closed && this.warmingListeners.size > 0) {
      await new Promise<void>((r) => this.listenerWaiters.push(r));
    }
  }

  private listenerWaiters: Array<() => void> = [];
  private wakeListenerWaiters(): void {
    for (const w of this.listenerWaiters.splice(0)) w();
  }

  onConnectionState(connected: boolean): void {
    this.s.connected_state.set(connected ? 1 : 0);
  }

  onUpdate(u: ResourceUpdate): string[] | undefined {
    if (this.closed) return ['proxy is shutting down'];
    switch (u.typeUrl) {
      case CLUSTER_TYPE:
        return this.applyClusters(u);
      case ENDPOINT_TYPE:
        return this.applyEndpoints(u);
      case LISTENER_TYPE:
        return this.applyListeners(u);
      case ROUTE_TYPE:
        return this.applyRoutes(u);
      case VIRTUAL_HOST_TYPE:
        return this.applyVirtualHosts(u);
      case SECRET_TYPE:
        return this.applySecrets(u);
      default:
        return [`unsupported resource type ${u.typeUrl}`];
    }
  }

  // ---- CDS ---------------------------------------------------------------------------------------------

  private applyClusters(u: ResourceUpdate): string[] | undefined {
    this.s.cds.update_attempt.inc();
    const diags: string[] = [];
    const built: Array<{ rt: ClusterRuntime; key: string; version: string }> = [];
    for (const r of u.added) {
      const c = r.resource as Cluster__Output;
      const where = `Cluster ${JSON.stringify(c.name)}`;
      if (this.env.staticClusterNames.has(c.name)) {
        diags.push(`${where}: name: a static cluster has this name and cannot be replaced by CDS`);
        continue;
      }
      const key = contentKey(CLUSTER_TYPE, c);
      if (this.activeClusters.get(c.name)?.key === key && !this.warmingClusters.has(c.name)) continue; // unchanged
      if (this.warmingClusters.get(c.name)?.key === key) continue;
      const type = c.cluster_discovery_type === 'type' ? (c.type ?? 'STATIC') : 'CLUSTER_PROVIDED';
      if (type === 'EDS') {
        const src = c.eds_cluster_config?.eds_config;
        if (src && src.config_source_specifier !== 'ads') {
          diags.push(`${where}: eds_cluster_config.eds_config: only \`ads: {}\` config sources are supported`);
          continue;
        }
      }
      try {
        built.push({ rt: this.env.clusters.build(c), key, version: r.version });
      } catch (err) {
        diags.push(...problemsOf(where, err));
      }
    }
    if (diags.length > 0) {
      for (const b of built) b.rt.close();
      this.s.cds.update_rejected.inc();
      return diags;
    }
    const now = this.env.wallClock();
    for (const { rt, key, version } of built) {
      const prior = this.warmingClusters.get(rt.name);
      if (prior !== undefined) {
        clearTimeout(prior.timer);
        prior.rt.close();
      }
      const entry = { name: rt.name, version, config: rt.config, lastUpdatedMs: now };
      rt.start();
      const timeoutMs = rt.type === 'EDS' ? initialFetchMs(rt.config.eds_cluster_config?.eds_config?.initial_fetch_timeout) : DEFAULT_INITIAL_FETCH_MS;
      if (rt.type === 'EDS') {
        const cla = this.endpoints.get(rt.edsServiceName);
        if (cla !== undefined) rt.setAssignment(cla.config);
      }
      // Warming (Envoy's cluster_manager warming): the cluster it replaces serves until this one has hosts.
      const timer = setTimeout(() => {
        this.log.warn({ cluster: rt.name }, 'cluster warming timed out (initial_fetch_timeout); activating without hosts');
        rt.markWarm();
      }, timeoutMs);
      timer.unref();
      const w = { rt, entry, timer, key };
      this.warmingClusters.set(rt.name, w);
      void rt.initialized.then(() => this.promoteCluster(w));
    }
    for (const name of u.removed) {
      const w = this.warmingClusters.get(name);
      if (w !== undefined) {
        clearTimeout(w.timer);
        w.rt.close();
        this.warmingClusters.delete(name);
      }
      if (this.activeClusters.delete(name)) {
        this.env.clusters.remove(name, this.env.drainMs);
        this.s.cluster_removed.inc();
      }
    }
    this.updateClusterGauges();
    this.updateEdsInterest();
    this.s.cds.update_success.inc();
    this.cdsReceived = true;
    this.onCds?.();
    return undefined;
  }

  private promoteCluster(w: WarmingCluster & { key: string }): void {
    if (this.warmingClusters.get(w.rt.name) !== w || this.closed) return;
    clearTimeout(w.timer);
    this.warmingClusters.delete(w.rt.name);
    (this.activeClusters.has(w.rt.name) ? this.s.cluster_modified : this.s.cluster_added).inc();
    this.activeClusters.set(w.rt.name, { ...w.entry, key: w.key });
    this.env.clusters.activate(w.rt, this.env.drainMs);
    this.updateClusterGauges();
    this.log.info({ cluster: w.rt.name, version: w.entry.version }, 'cluster active');
  }

  private updateClusterGauges(): void {
    this.s.active_clusters.set(this.env.staticClusterNames.size + this.activeClusters.size);
    this.s.warming_clusters.set(this.warmingClusters.size);
  }

  private updateEdsInterest(): void {
    const names = new Set<string>();
    for (const c of this.env.clusters.all()) if (c.type === 'EDS' && c.addedViaApi) names.add(c.edsServiceName);
    for (const w of this.warmingClusters.values()) if (w.rt.type === 'EDS') names.add(w.rt.edsServiceName);
    // Active clusters about to be removed are already out of the manager.
    this.client?.subscribe(ENDPOINT_TYPE, [...names]);
    // The cache holds only assignments some cluster still names (bounded by the clusters the proxy has).
    for (const n of this.endpoints.keys()) if (!names.has(n)) this.endpoints.delete(n);
  }

  // ---- EDS ---------------------------------------------------------------------------------------------

  private applyEndpoints(u: ResourceUpdate): string[] | undefined {
    const diags: string[] = [];
    for (const r of u.added) {
      const cla = r.resource as ClusterLoadAssignment__Output;
      cla.endpoints.forEach((le, i) =>
        le.lb_endpoints.forEach((lb, j) => {
          if (lb.host_identifier === 'endpoint' && !lb.endpoint?.address?.socket_address) {
            diags.push(`ClusterLoadAssignment ${JSON.stringify(r.name)}: endpoints[${i}].lb_endpoints[${j}].endpoint.address: only socket_address is supported`);
          }
        }),
      );
    }
    if (diags.length > 0) {
      for (const r of u.added) for (const c of this.clustersNamed(r.name)) c.stats.update_failure.inc();
      return diags;
    }
    const now = this.env.wallClock();
    for (const r of u.added) {
      const cla = r.resource as ClusterLoadAssignment__Output;
      this.endpoints.set(r.name, { name: r.name, version: r.version, config: cla, lastUpdatedMs: now });
      for (const c of this.clustersNamed(r.name)) c.setAssignment(cla);
    }
    for (const name of u.removed) {
      this.endpoints.delete(name);
      for (const c of this.clustersNamed(name)) c.setAssignment(undefined);
    }
    return undefined;
  }

  private *clustersNamed(edsName: string): Iterable<ClusterRuntime> {
    for (const c of this.env.clusters.all()) if (c.addedViaApi && c.type === 'EDS' && c.edsServiceName === edsName) yield c;
    for (const w of this.warmingClusters.values()) if (w.rt.type === 'EDS' && w.rt.edsServiceName === edsName) yield w.rt;
  }

  // ---- LDS ---------------------------------------------------------------------------------------------

  private applyListeners(u: ResourceUpdate): string[] | undefined {
    this.s.lds.update_attempt.inc();
    const diags: string[] = [];
    const built: DynListener[] = [];
    // The listener set after this update, for Envoy's duplicate address check.
    const next = new Map<string, Listener__Output>();
    for (const l of this.env.listeners) next.set(l.name, l.config);
    for (const w of this.warmingListeners.values()) next.set(w.rt.name, w.rt.config);
    for (const n of u.removed) next.delete(n);
    for (const r of u.added) next.set(r.name, r.resource as Listener__Output);
    const byAddress = new Map<string, string>();
    for (const [name, l] of next) {
      const sa = l.address?.socket_address;
      if (!sa || (sa.port_value ?? 0) === 0) continue;
      const k = `${sa.address}:${sa.port_value}`;
      const other = byAddress.get(k);
      if (other !== undefined) diags.push(`Listener ${JSON.stringify(name)}: address: listener ${JSON.stringify(name)} has duplicate address ${k} as existing listener ${JSON.stringify(other)}`);
      else byAddress.set(k, name);
    }
    for (const r of u.added) {
      const l = r.resource as Listener__Output;
      const where = `Listener ${JSON.stringify(l.name)}`;
      if (this.env.staticListenerNames.has(l.name)) {
        diags.push(`${where}: name: a static listener has this name and cannot be replaced by LDS`);
        continue;
      }
      const key = contentKey(LISTENER_TYPE, l);
      if ((this.warmingListeners.get(l.name) ?? this.activeListeners.get(l.name))?.key === key) continue; // unchanged
      if (diags.length > 0) continue; // don't build what will be thrown away
      const rds = new Set<string>();
      this.collecting = rds;
      try {
        const rt = this.env.buildListener(l, (table, path) => {
          // Envoy: validate_clusters defaults to true for an inline route_config, so a route to a cluster the
          // proxy doesn't have rejects the listener (a route table from RDS defaults to false).
          if (table.validateClusters === false) return;
          for (const c of table.referencedClusters) {
            if (this.env.clusters.get(c) === undefined) diags.push(`${where}: ${path}: route to unknown cluster ${JSON.stringify(c)}`);
          }
        });
        built.push({ rt, entry: { name: l.name, version: r.version, config: l, lastUpdatedMs: 0 }, rdsNames: [...rds], key });
      } catch (err) {
        diags.push(...problemsOf(where, err));
      } finally {
        this.collecting = undefined;
      }
    }
    if (diags.length > 0) {
      for (const b of built) b.rt.close();
      this.pruneRoutes();
      this.s.lds.update_rejected.inc();
      return diags;
    }
    const now = this.env.wallClock();
    for (const b of built) {
      b.entry.lastUpdatedMs = now;
      this.warmingListeners.get(b.rt.name)?.rt.close();
      this.warmingListeners.set(b.rt.name, b);
      void this.warmListener(b);
    }
    for (const name of u.removed) {
      const w = this.warmingListeners.get(name);
      if (w !== undefined) {
        w.rt.close();
        this.warmingListeners.delete(name);
      }
      const a = this.activeListeners.get(name);
      if (a !== undefined) {
        this.activeListeners.delete(name);
        const i = this.env.listeners.indexOf(a.rt);
        if (i >= 0) this.env.listeners.splice(i, 1);
        this.drainListener(a.rt);
        this.s.listener_removed.inc();
      }
    }
    this.updateListenerGauges();
    this.pruneRoutes();
    this.s.lds.update_success.inc();
    this.ldsReceived = true;
    this.onLds?.();
    this.wakeListenerWaiters();
    return undefined;
  }

  /** Waits for the listener's route tables (or their initial_fetch_timeout), then puts it in service. */
  private async warmListener(b: DynListener): Promise<void> {
    const waits = b.rdsNames.map((n) => this.routes.get(n)).filter((e): e is RouteEntry => e !== undefined && !e.received);
    if (waits.length > 0) {
      const timeoutMs = initialFetchMs(rdsInitialFetch(b.entry.config));
      await Promise.race([
        Promise.all(waits.map((e) => new Promise<void>((r) => e.waiters.push(r)))),
        new Promise((r) => setTimeout(r, timeoutMs).unref()),
      ]);
    }
    await b.rt.secretsWarmed(); // SDS secrets of its TLS chains (Envoy's init manager waits for them too)
    if (this.warmingListeners.get(b.rt.name) !== b || this.closed) return;
    const old = this.activeListeners.get(b.rt.name);
    try {
      if (old !== undefined && sameAddress(old.rt.config, b.rt.config) && old.rt.port !== 0 && old.rt.bindsToPort && b.rt.bindsToPort) {
        b.rt.adoptSocketOf(old.rt);
        this.drainListener(old.rt, false);
      } else {
        await b.rt.listen();
        if (old !== undefined) this.drainListener(old.rt);
      }
    } catch (err) {
      // Envoy counts listener_create_failure and keeps what served before (the update was already ACKed).
      this.s.listener_create_failure.inc();
      this.log.error({ listener: b.rt.name, err: (err as Error).message }, 'listener failed to start');
      this.warmingListeners.delete(b.rt.name);
      b.rt.close();
      this.updateListenerGauges();
      this.wakeListenerWaiters();
      return;
    }
    this.warmingListeners.delete(b.rt.name);
    if (old !== undefined) {
      const i = this.env.listeners.indexOf(old.rt);
      if (i >= 0) this.env.listeners.splice(i, 1, b.rt);
      else this.env.listeners.push(b.rt);
      this.s.listener_modified.inc();
    } else {
      this.env.listeners.push(b.rt);
      this.s.listener_added.inc();
    }
    this.activeListeners.set(b.rt.name, b);
    this.log.info({ listener: b.rt.name, port: b.rt.port, version: b.entry.version }, 'listener active');
    this.updateListenerGauges();
    this.pruneRoutes();
    this.wakeListenerWaiters();
  }

  /** Envoy's listener drain: stop accepting (unless the socket was handed over), finish connections, close. */
  private drainListener(rt: ListenerRuntime, stopAccepting = true): void {
    if (stopAccepting) rt.drain();
    this.draining.add(rt);
    this.updateListenerGauges();
    const deadline = Date.now() + this.env.drainMs;
    const check = (): void => {
      if (rt.activeConnections === 0 || Date.now() >= deadline) {
        rt.close();
        this.draining.delete(rt);
        this.updateListenerGauges();
        return;
      }
      setTimeout(check, 100).unref();
    };
    check();
  }

  private updateListenerGauges(): void {
    this.s.total_listeners_active.set(this.env.listeners.length);
    this.s.total_listeners_warming.set(this.warmingListeners.size);
    this.s.total_listeners_draining.set(this.draining.size);
  }

  // ---- RDS ---------------------------------------------------------------------------------------------

  /** RdsProvider: called by connection managers as they are built. */
  routeConfig(name: string, statPrefix: string, opts: CompileRouteOptions): { readonly current: CompiledRouteConfig } {
    this.collecting?.add(name);
    let e = this.routes.get(name);
    if (e === undefined) {
      const scope = this.env.store.scope(`http.${statPrefix}.rds.${name}`);
      e = {
        name, version: '', config: undefined, lastUpdatedMs: 0, holders: new Map(), received: false, waiters: [],
        stats: { update_attempt: scope.counter('update_attempt'), update_success: scope.counter('update_success'), update_rejected: scope.counter('update_rejected'), config_reload: scope.counter('config_reload') },
      };
      this.routes.set(name, e);
    }
    const k = JSON.stringify(opts);
    let h = e.holders.get(k);
    if (h === undefined) {
      h = { current: compileRouteConfig(this.tableOf(e.config ?? emptyRoutes(name)), opts), opts };
      e.holders.set(k, h);
    }
    this.updateRdsInterest();
    return h;
  }

  private applyRoutes(u: ResourceUpdate): string[] | undefined {
    const diags: string[] = [];
    const compiled = new Map<string, CompiledRouteConfig>();
    for (const r of u.added) {
      const rc = r.resource as RouteConfiguration__Output;
      this.routes.get(r.name)?.stats.update_attempt.inc();
      if (rc.vhds && rc.vhds.config_source?.config_source_specifier !== 'ads') {
        diags.push(`RouteConfiguration ${JSON.stringify(r.name)}: vhds.config_source: only \`ads: {}\` (VHDS over the delta ADS stream) is supported`);
        continue;
      }
      try {
        const table = compileRouteConfig(this.tableOf(rc));
        // Envoy: for RDS, validate_clusters defaults to false (unknown clusters are 404 at request time).
        if (table.validateClusters === true) {
          for (const c of table.referencedClusters) if (this.env.clusters.get(c) === undefined) diags.push(`RouteConfiguration ${JSON.stringify(r.name)}: route to unknown cluster ${JSON.stringify(c)} (validate_clusters is set)`);
        }
        compiled.set(r.name, table);
      } catch (err) {
        diags.push(...problemsOf(`RouteConfiguration ${JSON.stringify(r.name)}`, err));
      }
    }
    if (diags.length > 0) {
      for (const r of u.added) this.routes.get(r.name)?.stats.update_rejected.inc();
      return diags;
    }
    const now = this.env.wallClock();
    for (const r of u.added) {
      const e = this.routes.get(r.name);
      if (e === undefined) continue; // not (or no longer) referenced by any listener
      e.config = r.resource as RouteConfiguration__Output;
      e.version = r.version;
      e.lastUpdatedMs = now;
      this.recompile(e, compiled.get(r.name));
      e.stats.update_success.inc();
      e.stats.config_reload.inc();
      e.received = true;
      for (const w of e.waiters.splice(0)) w();
    }
    for (const name of u.removed) {
      const e = this.routes.get(name);
      if (e === undefined) continue;
      // Envoy replaces a removed route table with an empty one (every request 404s).
      e.config = undefined;
      e.lastUpdatedMs = now;
      for (const h of e.holders.values()) h.current = compileRouteConfig(emptyRoutes(name), h.opts);
    }
    return undefined;
  }

  /**
   * Compiles the entry's table for each connection manager holding it; `checked`, the table compiled with the
   * default options to check the update, serves the holders that use those (most), so it is not compiled twice.
   */
  private recompile(e: RouteEntry, checked: CompiledRouteConfig | undefined): void {
    for (const [optsKey, h] of e.holders) h.current = optsKey === DEFAULT_OPTS_KEY && checked !== undefined ? checked : compileRouteConfig(this.tableOf(e.config!), h.opts);
  }

  /**
   * The route table as compiled: with `vhds`, its own virtual hosts followed by those VHDS sent (in name order).
   * `hosts` overrides the held ones (an update being checked).
   */
  private tableOf(rc: RouteConfiguration__Output, hosts = this.vhosts.get(rc.name)): RouteConfiguration__Output {
    if (!rc.vhds) return rc;
    const extra = hosts === undefined ? [] : [...hosts.keys()].sort().map((k) => hosts.get(k)!);
    return { ...rc, vhds: null, virtual_hosts: [...rc.virtual_hosts, ...extra] };
  }

  /**
   * VHDS: virtual hosts added, changed or removed. Each route table they belong to is recompiled with them; if any
   * fails to compile (a domain repeated across virtual hosts, a bad regex, ...) the whole update is NACKed and the
   * tables keep serving what they had.
   */
  private applyVirtualHosts(u: ResourceUpdate): string[] | undefined {
    const diags: string[] = [];
    const touched = new Map<string, Map<string, VirtualHost__Output>>();
    const compiled = new Map<string, CompiledRouteConfig>();
    const hostsOf = (name: string, where: string): Map<string, VirtualHost__Output> | undefined => {
      const slash = name.lastIndexOf('/');
      if (slash <= 0 || slash === name.length - 1) {
        diags.push(`${where}: VHDS resource names are "<route configuration name>/<virtual host>"`);
        return undefined;
      }
      const table = name.slice(0, slash);
      let m = touched.get(table);
      if (m === undefined) touched.set(table, (m = new Map(this.vhosts.get(table))));
      return m;
    };
    for (const r of u.added) hostsOf(r.name, `VirtualHost ${JSON.stringify(r.name)}`)?.set(r.name, r.resource as VirtualHost__Output);
    for (const name of u.removed) hostsOf(name, `VirtualHost ${JSON.stringify(name)}`)?.delete(name);
    for (const [table, hosts] of touched) {
      const e = this.routes.get(table);
      if (!e?.config?.vhds) continue; // not held (yet): checked when the table arrives
      try {
        compiled.set(table, compileRouteConfig(this.tableOf(e.config, hosts)));
      } catch (err) {
        diags.push(...problemsOf(`RouteConfiguration ${JSON.stringify(table)} with VHDS`, err));
      }
    }
    if (diags.length > 0) return diags;
    const now = this.env.wallClock();
    for (const [table, hosts] of touched) {
      if (hosts.size === 0) this.vhosts.delete(table);
      else this.vhosts.set(table, hosts);
      const e = this.routes.get(table);
      if (!e?.config?.vhds) continue;
      this.recompile(e, compiled.get(table));
      e.lastUpdatedMs = now;
      e.stats.config_reload.inc();
    }
    this.log.debug({ added: u.added.length, removed: u.removed.length, tables: [...touched.keys()] }, 'VHDS update applied');
    return undefined;
  }

  /** Drops route tables no listener uses any more, and tells the client what to subscribe to. */
  private pruneRoutes(): void {
    const used = new Set<string>();
    for (const l of [...this.activeListeners.values(), ...this.warmingListeners.values()]) for (const n of l.rdsNames) used.add(n);
    for (const n of this.staticRdsNames) used.add(n);
    for (const n of this.routes.keys()) if (!used.has(n)) this.routes.delete(n);
    this.updateRdsInterest();
  }

  /** Route names used by static listeners (registered while the bootstrap was built). */
  private readonly staticRdsNames = new Set<string>();
  /** Call once static listeners are built: the route tables they asked for stay subscribed. */
  noteStaticRoutes(): void {
    for (const n of this.routes.keys()) this.staticRdsNames.add(n);
  }

  private updateRdsInterest(): void {
    if (this.collecting !== undefined) return; // a listener being built may still be rejected
    this.client?.subscribe(ROUTE_TYPE, [...this.routes.keys()]);
  }

  // ---- admin ---------------------------------------------------------------------------------------------

  /** The dynamic parts of /config_dump, as envoy.admin.v3 dump fields (in `fromObject` form). */
  dump(includeEds: boolean): { clusters: object; listeners: object; routes: object; endpoints: object | undefined } {
    const ts = (ms: number) => ({ seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 });
    return {
      clusters: {
        dynamic_active_clusters: [...this.activeClusters.values()].map((c) => ({ version_info: c.version, cluster: packAny(T + 'envoy.config.cluster.v3.Cluster', c.config), last_updated: ts(c.lastUpdatedMs) })),
        dynamic_warming_clusters: [...this.warmingClusters.values()].map((w) => ({ version_info: w.entry.version, cluster: packAny(T + 'envoy.config.cluster.v3.Cluster', w.entry.config), last_updated: ts(w.entry.lastUpdatedMs) })),
      },
      listeners: {
        dynamic_listeners: [...new Set([...this.activeListeners.keys(), ...this.warmingListeners.keys()])].map((name) => {
          const a = this.activeListeners.get(name);
          const w = this.warmingListeners.get(name);
          const state = (l: DynListener) => ({ version_info: l.entry.version, listener: packAny(T + 'envoy.config.listener.v3.Listener', l.entry.config), last_updated: ts(l.entry.lastUpdatedMs) });
          return { name, active_state: a ? state(a) : undefined, warming_state: w ? state(w) : undefined };
        }),
      },
      routes: {
        dynamic_route_configs: [...this.routes.values()].filter((e) => e.config !== undefined).map((e) => ({ version_info: e.version, route_config: packAny(T + 'envoy.config.route.v3.RouteConfiguration', { ...this.tableOf(e.config!), vhds: e.config!.vhds }), last_updated: ts(e.lastUpdatedMs) })),
      },
      endpoints: includeEds
        ? { dynamic_endpoint_configs: [...this.endpoints.values()].map((e) => ({ version_info: e.version, endpoint_config: packAny(T + 'envoy.config.endpoint.v3.ClusterLoadAssignment', e.config), last_updated: ts(e.lastUpdatedMs) })) }
        : undefined,
    };
  }

  /** Closes listeners still draining after an LDS update (the end of the server's own drain). */
  closeDraining(): void {
    for (const d of this.draining) d.close();
    this.draining.clear();
  }

  /**
   * Stops taking updates (closes the client) and drops what is warming; draining listeners keep draining
   * until {@link closeDraining}. The server closes active listeners.
   */
  close(): void {
    this.closed = true;
    this.client?.close();
    for (const w of this.warmingClusters.values()) {
      clearTimeout(w.timer);
      w.rt.close();
    }
    this.warmingClusters.clear();
    for (const w of this.warmingListeners.values()) w.rt.close();
    this.warmingListeners.clear();
    this.onCds?.();
    this.onLds?.();
    this.wakeListenerWaiters();
  }

  /** Listeners draining after an LDS update (their connections count toward the server's drain). */
  get drainingListeners(): ReadonlySet<ListenerRuntime> {
    return this.draining;
  }
}

function initialFetchMs(d: Duration__Output | null | undefined): number {
  const ms = durationMs(d, DEFAULT_INITIAL_FETCH_MS);
  // 0 disables the timeout in Envoy: wait as long as it takes (bounded here only by the process lifetime).
  return ms === 0 ? 2_147_483_647 : ms;
}

function rdsInitialFetch(l: Listener__Output): Duration__Output | null | undefined {
  // Only the timeout of the first RDS source is used; listeners normally have one.
  for (const fc of [...l.filter_chains, ...(l.default_filter_chain ? [l.default_filter_chain] : [])]) {
    for (const f of fc.filters) {
      const any = f.typed_config;
      if (any?.type_url.endsWith('.HttpConnectionManager')) return rdsTimeoutOf(any);
    }
  }
  return undefined;
}

function rdsTimeoutOf(any: { type_url: string; value: Buffer }): Duration__Output | null | undefined {
  try {
    // Decoding again is cheap next to building the listener and only happens for warming listeners.
    const hcm = unpackHcm(any);
    return hcm.rds?.config_source?.initial_fetch_timeout;
  } catch {
    return undefined;
  }
}

function unpackHcm(any: { type_url: string; value: Buffer }): HttpConnectionManager__Output {
  return unpackAny<HttpConnectionManager__Output>(any);
}

/** A failed build as NACK lines: each error diagnostic of a ConfigError, else the error's message, after `where`. */
function problemsOf(where: string, err: unknown): string[] {
  if (!(err instanceof ConfigError)) return [`${where}: ${(err as Error).message}`];
  return err.diagnostics.filter((d) => d.severity === 'error').map((d) => `${where}: ${formatDiagnostic(d)}`);
}

function emptyRoutes(name: string): RouteConfiguration__Output {
  // Every field at its default, as a decoded message has them.
  const type = lookupMessage('envoy.config.route.v3.RouteConfiguration')!;
  return type.toObject(type.fromObject({ name }), TO_OBJECT_OPTIONS) as RouteConfiguration__Output;
}

/** Canonical bytes of a resource, to skip updates that change nothing (Envoy skips unchanged listeners and clusters). */
function contentKey(typeUrl: string, o: object): string {
  return packAny(typeUrl, o).value.toString('base64');
}

function sameAddress(a: Listener__Output, b: Listener__Output): boolean {
  try {
    const x = listenerAddress(a);
    const y = listenerAddress(b);
    return x.host === y.host && x.port === y.port && x.port !== 0;
  } catch {
    return false;
  }
}
