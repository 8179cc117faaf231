/**
 * One Envoy Listener at run time: accepts connections on its address, runs the listener filters
 * (tls_inspector, http_inspector: peek without consuming), picks a filter chain with Envoy's matching
 * rules, terminates TLS if the chain has a DownstreamTlsContext, and hands the connection to the
 * chain's terminal network filter (tcp_proxy or http_connection_manager).
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Listener__Output } from '../../xds/gen/envoy/config/listener/v3/Listener.ts';
import type { FilterChain__Output } from '../../xds/gen/envoy/config/listener/v3/FilterChain.ts';
import type { DownstreamTlsContext__Output } from '../../xds/gen/envoy/extensions/transport_sockets/tls/v3/DownstreamTlsContext.ts';
import { unpackAny } from '../../xds/any.ts';
import { ConfigError, SloopError, type Diagnostic } from '../../shared/errors.ts';
import type { Logger } from '../../shared/log.ts';
import { compileFilterChains, type FilterChainSelector, type ConnectionInfo } from './filter-chain-match.ts';
import { inspectTls } from './tls-inspector.ts';
import { inspectHttp } from './http-inspector.ts';
import { completeServerHandshake, createDownstreamTls, handshakeFailureStat, type DownstreamTls } from '../tls/context.ts';
import { SslStats } from '../tls/ssl-stats.ts';
import type { SecretManager } from '../tls/secrets.ts';
import { DEFAULT_SECRET_WARMING_MS, SdsTls, sdsReferences } from '../tls/sds-tls.ts';
import { resolveDataSource } from '../data-source.ts';
import type { ConnectionGate, NetworkFilter } from './network-filter.ts';
import { NETWORK_RBAC_TYPE, createNetworkRbacFilter } from '../rbac/network-rbac.ts';
import { LazyPeerCertificate } from '../tls/peer-certificate.ts';
import type { DownstreamConnectionInfo } from '../http/stream.ts';
import type { Counter, Gauge, StatsStore } from '../stats/store.ts';
import { durationMs } from '../duration.ts';
import { getOriginalDst, loadOriginalDstAddon, type OriginalDst } from './original-dst.ts';
import type { GlobalConnectionLimit } from '../overload-manager.ts';

export const TLS_INSPECTOR = 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector';
export const HTTP_INSPECTOR = 'type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector';
export const ORIGINAL_DST = 'type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst';
const DOWNSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
const RAW_BUFFER = 'type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer';

/** Builds the terminal network filter of a chain; throws ConfigError with paths relative to the filter. */
export type NetworkFilterFactory = (filter: FilterChain__Output['filters'][number], path: string) => NetworkFilter;

interface CompiledChain {
  /** The TLS context for new connections; undefined for plaintext chains and for SDS chains still warming. */
  tls: DownstreamTls | undefined;
  /** Set when the chain's certificates or trust bundle are SDS secrets: rebuilds `tls` when they change. */
  sds?: SdsTls<DownstreamTls>;
  filter: NetworkFilter;
  /** Non-terminal read filters (network-filter.ts ConnectionGate), in order; undefined when there are none. */
  gates: ConnectionGate[] | undefined;
}

export interface ListenerStats {
  downstream_cx_total: Counter;
  downstream_cx_destroy: Counter;
  downstream_cx_active: Gauge;
  no_filter_chain_match: Counter;
  downstream_listener_filter_error: Counter;
  downstream_pre_cx_timeout: Counter;
  downstream_cx_overflow: Counter;
  /** Connections closed on accept because the overload manager's global connection limit was reached. */
  downstream_global_cx_overflow: Counter;
  /** Envoy's TLS statistics, `listener.<addr>.ssl.*` (the listener scope, as for Envoy's downstream sockets). */
  ssl: SslStats;
}

/**
 * Listener filter stats. Envoy creates them in the listener factory context's scope, which is the server's
 * root scope, so they are `tls_inspector.tls_found` and `http_inspector.http11_found`, shared by listeners.
 */
interface InspectorStats {
  tls_found: Counter;
  tls_not_found: Counter;
  sni_found: Counter;
  sni_not_found: Counter;
  alpn_found: Counter;
  alpn_not_found: Counter;
  client_hello_too_large: Counter;
  http10_found: Counter;
  http11_found: Counter;
  http2_found: Counter;
  http_not_found: Counter;
}

/**
 * Finds the listener for a connection's original destination (Envoy's ConnectionHandlerImpl::
 * getBalancedHandlerByAddress): the listener on exactly `address:port`, else the one on the wildcard address
 * (0.0.0.0 or ::, by the address's family) with that port; draining listeners are skipped.
 */
export function findListenerByAddress(listeners: Iterable<ListenerRuntime>, address: string, port: number): ListenerRuntime | undefined {
  let wildcard: ListenerRuntime | undefined;
  const any = address.includes(':') ? '::' : '0.0.0.0';
  for (const l of listeners) {
    if (l.isDraining) continue;
    const a = listenerAddress(l.config);
    const p = l.port || a.port;
    if (p !== port) continue;
    if (a.host === address) return l;
    if (a.host === any && wildcard === undefined) wildcard = l;
  }
  return wildcard;
}

/** Resolves a port-0 or named listener address to what net.listen takes. */
export function listenerAddress(l: Listener__Output): { host: string; port: number } {
  const sa = l.address?.socket_address;
  if (!sa) throw new SloopError('SLOOP_ERR_CONFIG_UNSUPPORTED', `listener ${l.name}: only socket_address listeners are supported`);
  return { host: sa.address, port: sa.port_value ?? 0 };
}

export class ListenerRuntime {
  readonly name: string;
  readonly config: Listener__Output;
  private readonly selector: FilterChainSelector;
  private readonly chains = new Map<FilterChain__Output, CompiledChain>();
  private server: net.Server;
  /** False once an updated listener (LDS) took over this one's listening socket. */
  private ownsServer = true;
  private readonly log: Logger;
  private readonly stats: ListenerStats;
  private readonly inspectorStats: InspectorStats;
  private readonly useTlsInspector: boolean;
  private readonly useHttpInspector: boolean;
  private readonly filtersTimeoutMs: number;
  private readonly continueOnTimeout: boolean;
  private readonly sockets = new Set<net.Socket>();
  private boundPort = 0;
  private draining = false;
  /** `bind_to_port` (default true): false listeners open no socket and only take hand-offs (use_original_dst). */
  readonly bindsToPort: boolean;
  /** The original_dst listener filter, explicit or implied by use_original_dst (as Envoy adds it). */
  private readonly readsOriginalDst: boolean;
  /** use_original_dst: the lookup that hands a redirected connection to the listener of its original destination. */
  private readonly handOff: ((address: string, port: number) => ListenerRuntime | undefined) | undefined;
  /** Named TLS secrets (static, agent, ADS) for chains whose DownstreamTlsContext uses SDS. */
  private readonly secrets: SecretManager | undefined;
  /** The overload manager's global_downstream_max_connections; undefined without one or with ignore_global_conn_limit. */
  private readonly globalLimit: GlobalConnectionLimit | undefined;

  /**
   * Validates and compiles everything; throws ConfigError (paths relative to the listener).
   * `findListener` finds the listener of an original destination among the proxy's listeners; it is needed
   * for `use_original_dst` (without it, redirected connections stay on this listener). `globalLimit` is the
   * overload manager's global downstream connection limit, shared by every listener of the proxy.
   */
  constructor(config: Listener__Output, makeFilter: NetworkFilterFactory, store: StatsStore, log: Logger, baseDir: string, findListener?: (address: string, port: number) => ListenerRuntime | undefined, secrets?: SecretManager, globalLimit?: GlobalConnectionLimit) {
    this.name = config.name;
    this.secrets = secrets;
    this.globalLimit = config.ignore_global_conn_limit ? undefined : globalLimit;
    this.config = config;
    this.log = log.child({ listener: config.name });
    listenerAddress(config);
    const diags: Diagnostic[] = [];
    this.selector = compileFilterChains(config);
    let tlsInsp = false;
    let httpInsp = false;
    let originalDstPath: string | undefined;
    config.listener_filters.forEach((f, i) => {
      const url = f.typed_config?.type_url ?? '';
      if (url === TLS_INSPECTOR) tlsInsp = true;
      else if (url === HTTP_INSPECTOR) httpInsp = true;
      else if (url === ORIGINAL_DST) originalDstPath ??= `listener_filters[${i}]`;
      else {
        diags.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_UNSUPPORTED', path: `listener_filters[${i}].typed_config`, message: `unsupported listener filter ${JSON.stringify(url || f.name)}` });
      }
    });
    this.bindsToPort = config.bind_to_port?.value ?? true;
    const useOriginalDst = config.use_original_dst?.value ?? false;
    // Envoy's ListenerImpl::buildOriginalDstListenerFilter: use_original_dst adds the original_dst filter.
    if (useOriginalDst) originalDstPath ??= 'use_original_dst';
    this.readsOriginalDst = originalDstPath !== undefined;
    this.handOff = useOriginalDst ? findListener : undefined;
    if (originalDstPath !== undefined) {
      try {
        loadOriginalDstAddon();
      } catch (err) {
        if (!(err instanceof SloopError)) throw err;
        diags.push({ severity: 'error', code: err.code, path: originalDstPath, message: err.message });
      }
    }
    // Envoy adds the TLS inspector on its own when a chain needs SNI/ALPN/transport_protocol.
    this.useTlsInspector = tlsInsp || this.selector.needsTlsInspection;
    this.useHttpInspector = httpInsp || this.selector.needsHttpInspection;
    this.filtersTimeoutMs = durationMs(config.listener_filters_timeout, 15000);
    this.continueOnTimeout = config.continue_on_listener_filters_timeout;
    const all: [FilterChain__Output, string][] = config.filter_chains.map((c, i) => [c, `filter_chains[${i}]`]);
    if (config.default_filter_chain) all.push([config.default_filter_chain, 'default_filter_chain']);
    for (const [chain, path] of all) {
      try {
        this.chains.set(chain, this.compileChain(chain, path, makeFilter, baseDir, store));
      } catch (err) {
        if (err instanceof ConfigError) diags.push(...err.diagnostics);
        else throw err;
      }
    }
    if (diags.length > 0) {
      for (const c of this.chains.values()) c.sds?.close();
      throw new ConfigError(diags, `listener ${config.name}`);
    }
    const addr = listenerAddress(config);
    const scope = store.scope(`listener.${addr.host}_${addr.port}`);
    this.stats = {
      downstream_cx_total: scope.counter('downstream_cx_total'),
      downstream_cx_destroy: scope.counter('downstream_cx_destroy'),
      downstream_cx_active: scope.gauge('downstream_cx_active'),
      no_filter_chain_match: scope.counter('no_filter_chain_match'),
      downstream_listener_filter_error: scope.counter('downstream_listener_filter_error'),
      downstream_pre_cx_timeout: scope.counter('downstream_pre_cx_timeout'),
      downstream_cx_overflow: scope.counter('downstream_cx_overflow'),
      downstream_global_cx_overflow: scope.counter('downstream_global_cx_overflow'),
      ssl: new SslStats(scope),
    };
    const tlsInspector = store.scope('tls_inspector');
    const httpInspector = store.scope('http_inspector');
    this.inspectorStats = {
      tls_found: tlsInspector.counter('tls_found'),
      tls_not_found: tlsInspector.counter('tls_not_found'),
      sni_found: tlsInspector.counter('sni_found'),
      sni_not_found: tlsInspector.counter('sni_not_found'),
      alpn_found: tlsInspector.counter('alpn_found'),
      alpn_not_found: tlsInspector.counter('alpn_not_found'),
      client_hello_too_large: tlsInspector.counter('client_hello_too_large'),
      http10_found: httpInspector.counter('http10_found'),
      http11_found: httpInspector.counter('http11_found'),
      http2_found: httpInspector.counter('http2_found'),
      http_not_found: httpInspector.counter('http_not_found'),
    };
    this.server = net.createServer({ noDelay: true, allowHalfOpen: true }, (s) => this.onAccept(s));
    this.server.on('error', (err) => this.log.error({ err: err.message }, 'listener error'));
  }

  private compileChain(chain: FilterChain__Output, path: string, makeFilter: NetworkFilterFactory, baseDir: string, store: StatsStore): CompiledChain {
    const diags: Diagnostic[] = [];
    let downTls: DownstreamTls | undefined;
    let sds: SdsTls<DownstreamTls> | undefined;
    let compiled: CompiledChain | undefined;
    const ts = chain.transport_socket;
    if (ts?.typed_config) {
      if (ts.typed_config.type_url === DOWNSTREAM_TLS) {
        try {
          const ctx = unpackAny<DownstreamTlsContext__Output>(ts.typed_config);
          const read = (ds: Parameters<typeof resolveDataSource>[0]): Buffer | undefined => resolveDataSource(ds, baseDir);
          const refs = this.secrets !== undefined ? sdsReferences(ctx.common_tls_context) : [];
          if (refs.length > 0) {
            // SDS secrets: new connections get the context rebuilt on every secret change; existing ones keep theirs.
            sds = new SdsTls({
              common: ctx.common_tls_context,
              secrets: this.secrets!,
              build: (tlsOptions) => createDownstreamTls(ctx, read, tlsOptions),
              onUpdate: (t) => {
                if (compiled !== undefined) compiled.tls = t;
              },
              log: this.log,
              where: `listener ${this.name} ${path}`,
            });
            downTls = sds.current;
          } else downTls = createDownstreamTls(ctx, read);
        } catch (err) {
          if (err instanceof ConfigError) for (const d of err.diagnostics) diags.push({ ...d, path: `${path}.transport_socket.typed_config.${d.path}` });
          else throw err;
        }
      } else if (ts.typed_config.type_url !== RAW_BUFFER) {
        diags.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_UNSUPPORTED', path: `${path}.transport_socket.typed_config`, message: `unsupported transport socket ${JSON.stringify(ts.typed_config.type_url)}` });
      }
    }
    const filters = chain.filters;
    if (filters.length === 0) diags.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: `${path}.filters`, message: 'a filter chain needs a terminal network filter (tcp_proxy or http_connection_manager)' });
    let filter: NetworkFilter | undefined;
    let gates: ConnectionGate[] | undefined;
    filters.forEach((f, i) => {
      try {
        // Only the last filter is terminal; earlier ones are read filters that decide on the connection (rbac).
        if (i === filters.length - 1) filter = makeFilter(f, `${path}.filters[${i}]`);
        else if (f.typed_config?.type_url === NETWORK_RBAC_TYPE) {
          try {
            (gates ??= []).push(createNetworkRbacFilter(f.typed_config, store, this.log));
          } catch (err) {
            if (err instanceof ConfigError) for (const d of err.diagnostics) diags.push({ ...d, path: `${path}.filters[${i}].typed_config.${d.path}` });
            else throw err;
          }
        } else diags.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_UNSUPPORTED', path: `${path}.filters[${i}]`, message: `unsupported non-terminal network filter ${JSON.stringify(f.typed_config?.type_url ?? f.name)}` });
      } catch (err) {
        if (err instanceof ConfigError) diags.push(...err.diagnostics);
        else throw err;
      }
    });
    if (diags.length > 0 || filter === undefined) {
      sds?.close();
      throw new ConfigError(diags, `filter chain ${path}`);
    }
    compiled = { tls: downTls, filter, gates, sds };
    return compiled;
  }

  /**
   * Waits (at most `timeoutMs`, Envoy's SDS initial_fetch_timeout) until every SDS-backed chain has its secrets,
   * as Envoy's init manager keeps a listener warming. A chain still without them afterwards refuses connections.
   */
  async secretsWarmed(timeoutMs = DEFAULT_SECRET_WARMING_MS): Promise<void> {
    const warming = [...this.chains.values()].filter((c) => c.sds !== undefined && c.tls === undefined);
    if (warming.length === 0) return;
    const ok = await Promise.all(warming.map((c) => c.sds!.waitReady(timeoutMs)));
    if (!ok.every(Boolean)) {
      const missing = [...new Set(warming.flatMap((c) => c.sds!.missing()))];
      this.log.warn({ secrets: missing, timeoutMs }, 'listener secrets not available in time; TLS chains without them refuse connections until they arrive');
    }
  }

  async listen(): Promise<number> {
    await this.secretsWarmed();
    const { host, port } = listenerAddress(this.config);
    if (!this.bindsToPort) {
      // Envoy: "the listener will not bind to its port and only receives connections handed off by a
      // use_original_dst listener". Such a listener needs a real port to be found by.
      this.boundPort = port;
      return port;
    }
    await new Promise<void>((resolve, reject) => {
      const onErr = (err: Error): void => reject(new SloopError('SLOOP_ERR_PROXY_LISTEN_FAILED', `listener ${this.name}: cannot listen on ${host}:${port}: ${err.message}`, { cause: err }));
      this.server.once('error', onErr);
      this.server.listen({ host, port, backlog: 1024 }, () => {
        this.server.removeListener('error', onErr);
        resolve();
      });
    });
    this.boundPort = (this.server.address() as net.AddressInfo).port;
    return this.boundPort;
  }

  get port(): number {
    return this.boundPort;
  }

  /**
   * LDS replaced `old` with this listener on the same address: take over its listening socket, so new
   * connections come here without a moment of refused connections, and drain `old` (its connections finish
   * with Connection: close / GOAWAY, as Envoy's listener drain does). `old` must not be closed before this.
   */
  adoptSocketOf(old: ListenerRuntime): void {
    if (!this.bindsToPort || !old.bindsToPort) {
      // Nothing to hand over (dynamic-config only adopts between bound listeners; this keeps the invariant).
      this.boundPort = listenerAddress(this.config).port;
      old.drain();
      return;
    }
    const srv = old.server;
    old.ownsServer = false;
    srv.removeAllListeners('connection');
    srv.on('connection', (s: net.Socket) => this.onAccept(s));
    this.server = srv;
    this.boundPort = old.boundPort;
    old.drain();
  }

  private onAccept(socket: net.Socket): void {
    const limit = this.globalLimit;
    if (limit !== undefined) {
      // Envoy's TcpListenerImpl::rejectCxOverGlobalLimit: over the limit, the accepted socket is closed before
      // anything else (no listener filter, no downstream_cx_total), counted in downstream_global_cx_overflow.
      // The listener that accepted decides; a use_original_dst hand-off keeps the slot it took.
      if (!limit.tryAllocate()) {
        this.stats.downstream_global_cx_overflow.inc();
        socket.on('error', noop);
        socket.destroy();
        return;
      }
      socket.once('close', () => limit.release());
    }
    let restored: OriginalDst | undefined;
    if (this.readsOriginalDst) {
      restored = this.readOriginalDst(socket);
      // Envoy's ActiveTcpSocket::newConnection: a connection whose local address was restored goes to the
      // listener of that address, if any (once: that listener does not hand it on again), else stays here.
      // Hand-off happens before any inspection here, so the target's listener filters see untouched bytes.
      if (restored !== undefined && this.handOff !== undefined) {
        const target = this.handOff(restored.address, restored.port);
        if (target !== undefined && target !== this) {
          target.acceptHandedOff(socket, restored);
          return;
        }
      }
    }
    this.acceptWorker(socket, restored);
  }

  /** A connection a use_original_dst listener handed over; its local address is already restored. */
  private acceptHandedOff(socket: net.Socket, restored: OriginalDst): void {
    this.acceptWorker(socket, restored);
  }

  /** Reads SO_ORIGINAL_DST; undefined when the kernel has none (the connection keeps its local address). */
  private readOriginalDst(socket: net.Socket): OriginalDst | undefined {
    try {
      return getOriginalDst(socket);
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'original destination unavailable');
      return undefined;
    }
  }

  private acceptWorker(socket: net.Socket, restored: OriginalDst | undefined): void {
    this.stats.downstream_cx_total.inc();
    this.stats.downstream_cx_active.inc();
    this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      this.stats.downstream_cx_active.dec();
      this.stats.downstream_cx_destroy.inc();
    });
    socket.on('error', noop);
    if (!this.useTlsInspector && !this.useHttpInspector) {
      this.dispatch(socket, restored, EMPTY, undefined, []);
      return;
    }
    // Listener filters peek: read until every inspector has decided, then hand the bytes on.
    let buf: Buffer = EMPTY;
    const timer = setTimeout(() => {
      this.stats.downstream_pre_cx_timeout.inc();
      socket.removeListener('data', onData);
      if (this.continueOnTimeout) this.dispatch(socket, restored, buf, undefined, []);
      else socket.destroy();
    }, this.filtersTimeoutMs);
    const onData = (d: Buffer): void => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      let sni: string | undefined;
      let protos: string[] = [];
      let isTls = false;
      if (this.useTlsInspector) {
        const r = inspectTls(buf);
        if (r.state === 'need-more') return;
        if (r.state === 'tls') {
          isTls = true;
          sni = r.serverName;
          protos = r.alpn;
        }
      }
      if (!isTls && this.useHttpInspector) {
        const r = inspectHttp(buf);
        if (r === 'need-more') return;
        if (r !== 'unknown') protos = [r];
      }
      this.countInspection(isTls, sni, protos);
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.pause();
      this.dispatch(socket, restored, buf, isTls ? 'tls' : 'raw_buffer', protos, sni);
    };
    socket.on('data', onData);
    socket.once('end', () => {
      clearTimeout(timer);
      socket.destroy();
    });
  }

  private countInspection(isTls: boolean, sni: string | undefined, protos: string[]): void {
    const st = this.inspectorStats;
    if (this.useTlsInspector) {
      if (!isTls) st.tls_not_found.inc();
      else {
        st.tls_found.inc();
        (sni !== undefined ? st.sni_found : st.sni_not_found).inc();
        (protos.length > 0 ? st.alpn_found : st.alpn_not_found).inc();
      }
    }
    if (this.useHttpInspector && !isTls) {
      const p = protos[0];
      (p === 'h2c' ? st.http2_found : p === 'http/1.1' ? st.http11_found : p === 'http/1.0' ? st.http10_found : st.http_not_found).inc();
    }
  }

  private dispatch(socket: net.Socket, restored: OriginalDst | undefined, head: Buffer, transport: string | undefined, protos: string[], sni?: string): void {
    socket.removeAllListeners('end');
    // Envoy's restoreLocalAddress: after original_dst, the connection's local address *is* the original
    // destination, for filter chain matching (destination_port, prefix_ranges) and everything downstream.
    const localAddress = restored !== undefined ? stripV4Mapped(restored.address) : stripV4Mapped(socket.localAddress ?? '');
    const localPort = restored !== undefined ? restored.port : (socket.localPort ?? 0);
    const remoteAddress = stripV4Mapped(socket.remoteAddress ?? '');
    const ci: ConnectionInfo = {
      destinationIp: localAddress,
      destinationPort: localPort,
      sourceIp: remoteAddress,
      sourcePort: socket.remotePort ?? 0,
      directSourceIp: remoteAddress,
      serverName: sni,
      transportProtocol: transport ?? 'raw_buffer',
      applicationProtocols: protos,
    };
    const chainCfg = this.selector.select(ci);
    const chain = chainCfg === undefined ? undefined : this.chains.get(chainCfg);
    if (chain === undefined) {
      this.stats.no_filter_chain_match.inc();
      socket.destroy();
      return;
    }
    const info: DownstreamConnectionInfo = {
      remoteAddress,
      remotePort: socket.remotePort ?? 0,
      localAddress,
      localPort,
      isTls: chain.tls !== undefined,
      serverName: sni ?? '',
      originalDstAddress: localAddress,
      originalDstPort: localPort,
      // Present from the start (set on mTLS handshakes below) so every connection's info has one shape.
      peerCertificate: undefined,
    };
    if (chain.tls === undefined && chain.sds !== undefined) {
      // An SDS chain whose secrets have not arrived: there is no certificate to present (never plaintext).
      this.stats.ssl.connection_error.inc();
      this.log.debug({ secrets: chain.sds.missing() }, 'TLS secrets not available; connection closed');
      socket.destroy();
      return;
    }
    if (chain.tls === undefined) {
      if (chain.gates !== undefined && !passGates(chain.gates, info)) {
        socket.destroy();
        return;
      }
      chain.filter.onConnection(socket, info, head, '');
      return;
    }
    if (head.length > 0) socket.unshift(head);
    const downTls = chain.tls;
    // With the TLS inspector's view of the client's ALPN list, offer ours only if they overlap: Envoy then
    // completes the handshake without ALPN, where Node would abort it with no_application_protocol.
    const alpn = transport === 'tls' ? downTls.selectAlpn(protos) : downTls.alpn.length > 0 ? downTls.alpn : undefined;
    const t = new tls.TLSSocket(socket, {
      isServer: true,
      secureContext: downTls.secureContext,
      requestCert: downTls.requestCert,
      rejectUnauthorized: downTls.rejectUnauthorized,
      ALPNProtocols: alpn,
    });
    const hsTimer = setTimeout(() => socket.destroy(), 10_000);
    // Set once the handshake has succeeded or failed, so each connection is counted once.
    let settled = false;
    t.on('error', (err) => {
      if (!settled) {
        settled = true;
        this.stats.ssl.onFailure(handshakeFailureStat(err));
        this.log.debug({ err: err.message }, 'TLS handshake failed');
      }
      socket.destroy();
    });
    // A peer that half-closes before finishing the handshake can never finish it (the listener socket allows
    // half-open connections, for tcp_proxy): close it, as Envoy does on a read EOF during the handshake.
    t.once('end', () => {
      if (!settled) t.destroy();
    });
    // A peer that closes (or resets) before finishing the handshake is a failed handshake too.
    t.once('close', () => {
      clearTimeout(hsTimer);
      if (!settled) {
        settled = true;
        this.stats.ssl.connection_error.inc();
      }
    });
    t.once('secure', () => {
      clearTimeout(hsTimer);
      if (settled) return;
      settled = true;
      completeServerHandshake(t, downTls.requestCert);
      const bad = downTls.checkPeer(t);
      if (bad !== undefined) {
        this.stats.ssl.onFailure(bad.stat);
        this.log.debug({ err: bad.message }, 'TLS peer verification failed');
        t.destroy();
        return;
      }
      this.stats.ssl.onHandshake(t);
      info.serverName = (t as tls.TLSSocket & { servername?: string }).servername || info.serverName;
      // Read on first use only (RBAC `authenticated`): plain connections and chains without client certs pay nothing.
      if (downTls.requestCert) info.peerCertificate = new LazyPeerCertificate(t);
      if (chain.gates !== undefined && !passGates(chain.gates, info)) {
        t.destroy();
        return;
      }
      chain.filter.onConnection(t, info, EMPTY, typeof t.alpnProtocol === 'string' ? t.alpnProtocol : '');
    });
  }

  /** Stops accepting; connections drain through their filters. */
  drain(): void {
    if (this.draining) return;
    this.draining = true;
    if (this.ownsServer) this.server.close();
    for (const c of this.chains.values()) c.filter.drain();
  }

  get isDraining(): boolean {
    return this.draining;
  }

  get activeConnections(): number {
    return this.sockets.size;
  }

  close(): void {
    if (this.ownsServer) this.server.close();
    for (const c of this.chains.values()) c.sds?.close();
    for (const c of this.chains.values()) c.filter.close();
    for (const s of this.sockets) s.destroy();
  }
}

const EMPTY: Buffer = Buffer.alloc(0);
function noop(): void {}
/** Runs the chain's non-terminal read filters; false as soon as one refuses the connection. */
function passGates(gates: readonly ConnectionGate[], info: DownstreamConnectionInfo): boolean {
  for (const g of gates) if (!g.onConnection(info)) return false;
  return true;
}
function stripV4Mapped(a: string): string {
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}
