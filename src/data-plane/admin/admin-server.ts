/**
 * Envoy's admin interface (bootstrap `admin.address`): `/stats`, `/stats/prometheus`, `/ready`,
 * `/config_dump`, `/clusters`, `/listeners`, `/quitquitquit`, ... Served with node:http since this
 * is not the data path. It knows the proxy only through AdminProvider, which the proxy wires.
 *
 * As in Envoy (AdminImpl::makeRequest): the path (without query) must equal a handler's path;
 * handlers that mutate server state require POST and answer any other method with
 * `405 Method <M> not allowed, POST required.`; an unknown path gets `404 invalid path. <help>`.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SloopError } from '../../shared/errors.ts';
import type { Logger } from '../../shared/log.ts';
import { httpConnectionManagerStats, listenerStats, type HttpConnectionManagerStats, type ListenerStats } from '../stats/envoy-stats.ts';
import { renderPrometheus } from '../stats/prometheus.ts';
import { renderStatsJson, renderStatsText, type HistogramBucketsMode, type StatsTypeFilter } from '../stats/stats-render.ts';
import type { StatsStore } from '../stats/store.ts';
import type { GlobalConnectionLimit } from '../overload-manager.ts';
import {
  formatClustersJson,
  formatClustersText,
  formatListenersJson,
  formatListenersText,
  protoJson,
  type AdminCluster,
  type AdminListener,
} from './admin-format.ts';

export type { AdminCluster, AdminHost, AdminListener, AdminCircuitBreakerLimits, AdminOutlierInfo } from './admin-format.ts';

/** envoy.admin.v3.ServerInfo.State. */
export type ServerState = 'LIVE' | 'DRAINING' | 'PRE_INITIALIZING' | 'INITIALIZING';

/** Options of /config_dump. */
export interface ConfigDumpOptions {
  resource?: string;
  mask?: string;
  /** `?name_regex=`. */
  nameRegex?: string;
  includeEds: boolean;
}

/** Process memory figures for /memory, in bytes. */
export interface MemoryInfo {
  allocated: number;
  heapSize: number;
  physical: number;
}

/** What the admin server needs from the proxy. Every call happens on an admin request, never per data request. */
export interface AdminProvider {
  stats: StatsStore;
  /** DRAINING once health checks were failed via /healthcheck/fail (Envoy's Utility::serverState). */
  serverState(): ServerState;
  /**
   * Envoy-shaped config dump (envoy.admin.v3.ConfigDump as JSON). Return `undefined` when
   * `resource` names no dumpable resource (404); throw for a bad mask/regex (400, message shown).
   */
  configDump(opts: ConfigDumpOptions): unknown;
  clusters(): AdminCluster[];
  listeners(): AdminListener[];
  /** envoy.admin.v3.ServerInfo as JSON. */
  serverInfo(): unknown;
  /** Called after the /quitquitquit response has been sent. */
  quit(): void;
  drainListeners(opts: { graceful: boolean; inboundOnly: boolean; skipExit: boolean }): void;
  setHealthCheckFailed(failed: boolean): void;
  /** Defaults to process.memoryUsage(). */
  memory?(): MemoryInfo;
}

/** Options for startAdminServer. */
export interface AdminServerOptions {
  /** Monotonic clock in ms for `http.admin.downstream_rq_time`; defaults to performance.now. */
  nowMs?: () => number;
  /** The overload manager's global downstream connection limit (absent with admin.ignore_global_conn_limit). */
  connectionLimit?: GlobalConnectionLimit;
}

/** A running admin server. */
export interface AdminServer {
  /** The bound port (useful with port 0). */
  readonly port: number;
  /** Stops listening and closes open admin connections. */
  close(): Promise<void>;
}

const TEXT = 'text/plain; charset=UTF-8';
const JSON_TYPE = 'application/json';

interface AdminResponse {
  status: number;
  body: string;
  contentType?: string;
  /** Runs once the response is flushed (e.g. /quitquitquit). */
  after?: () => void;
}

interface Handler {
  path: string;
  help: string;
  mutates: boolean;
  params?: ReadonlyArray<readonly [string, string]>;
  run(query: URLSearchParams): AdminResponse;
}

const ok = (body = 'OK\n'): AdminResponse => ({ status: 200, body });
const badRequest = (body: string): AdminResponse => ({ status: 400, body });

function parseFilter(query: URLSearchParams): RegExp | undefined | AdminResponse {
  const f = query.get('filter');
  if (f === null || f === '') return undefined;
  try {
    return new RegExp(f);
  } catch {
    return badRequest(`Invalid re2 regex: ${f}\n`);
  }
}

const BUCKET_MODES: Record<string, HistogramBucketsMode> = { none: 'none', summary: 'none', cumulative: 'cumulative', disjoint: 'disjoint' };
const TYPES: Record<string, StatsTypeFilter> = { All: 'All', Counters: 'Counters', Gauges: 'Gauges', Histograms: 'Histograms' };

function buildHandlers(p: AdminProvider, getHelp: () => string): Handler[] {
  const stats = (query: URLSearchParams, forcePrometheus: boolean): AdminResponse => {
    const filter = parseFilter(query);
    if (filter !== undefined && !(filter instanceof RegExp)) return filter;
    const usedOnly = query.has('usedonly');
    const format = forcePrometheus ? 'prometheus' : (query.get('format') ?? 'text');
    if (format === 'prometheus') {
      return { status: 200, body: renderPrometheus(p.stats, { usedOnly, ...(filter ? { filter } : {}) }) };
    }
    const bucketsParam = query.get('histogram_buckets') ?? 'none';
    const histogramBuckets = BUCKET_MODES[bucketsParam];
    if (histogramBuckets === undefined) return badRequest(`usage: /stats?histogram_buckets=(cumulative|disjoint|none)\n`);
    const type = TYPES[query.get('type') ?? 'All'];
    if (type === undefined) return badRequest('usage: /stats?type=(All|Counters|Gauges|Histograms)\n');
    const opts = { usedOnly, histogramBuckets, type, ...(filter ? { filter } : {}) };
    if (format === 'json') return { status: 200, body: renderStatsJson(p.stats, opts), contentType: JSON_TYPE };
    if (format === 'text') return { status: 200, body: renderStatsText(p.stats, opts) };
    return badRequest(`usage: /stats?format=(json|prometheus|text)\n`);
  };

  return [
    { path: '/', help: 'Admin home page', mutates: false, run: () => ok(getHelp()) },
    {
      path: '/clusters',
      help: 'upstream cluster status',
      mutates: false,
      params: [['format', 'File format to use; One of (text, json)']],
      run: (q) =>
        q.get('format') === 'json'
          ? { status: 200, body: formatClustersJson(p.clusters()), contentType: JSON_TYPE }
          : ok(formatClustersText(p.clusters())),
    },
    {
      path: '/config_dump',
      help: 'dump current Envoy configs (experimental)',
      mutates: false,
      params: [
        ['resource', 'The resource to dump'],
        ['mask', 'The mask to apply'],
        ['name_regex', 'Dump only the currently loaded configurations whose names match the specified regex'],
        ['include_eds', 'Dump currently loaded configuration including EDS'],
      ],
      run: (q) => {
        const resource = q.get('resource');
        const mask = q.get('mask');
        const nameRegex = q.get('name_regex');
        const opts: ConfigDumpOptions = {
          includeEds: q.has('include_eds'),
          ...(resource ? { resource } : {}),
          ...(mask ? { mask } : {}),
          ...(nameRegex ? { nameRegex } : {}),
        };
        let dump: unknown;
        try {
          dump = p.configDump(opts);
        } catch (err) {
          return badRequest(`${err instanceof Error ? err.message : String(err)}\n`);
        }
        if (dump === undefined) return { status: 404, body: `no resource found matching "${resource ?? ''}"\n` };
        return { status: 200, body: protoJson(dump), contentType: JSON_TYPE };
      },
    },
    {
      path: '/drain_listeners',
      help: 'drain listeners',
      mutates: true,
      params: [
        ['graceful', 'When draining listeners, enter a graceful drain period prior to closing listeners'],
        ['skip_exit', 'When draining listeners, do not exit after the drain period. This must be used with graceful'],
        ['inboundonly', 'Drains all inbound listeners'],
      ],
      run: (q) => {
        const graceful = q.has('graceful');
        const skipExit = q.has('skip_exit');
        // Envoy rejects skip_exit without graceful.
        if (skipExit && !graceful) return badRequest('skip_exit requires graceful\n');
        p.drainListeners({ graceful, inboundOnly: q.has('inboundonly'), skipExit });
        return ok();
      },
    },
    {
      path: '/healthcheck/fail',
      help: 'cause the server to fail health checks',
      mutates: true,
      run: () => {
        p.setHealthCheckFailed(true);
        return ok();
      },
    },
    {
      path: '/healthcheck/ok',
      help: 'cause the server to pass health checks',
      mutates: true,
      run: () => {
        p.setHealthCheckFailed(false);
        return ok();
      },
    },
    { path: '/help', help: 'print out list of admin commands', mutates: false, run: () => ok(getHelp()) },
    {
      path: '/listeners',
      help: 'print listener info',
      mutates: false,
      params: [['format', 'File format to use; One of (text, json)']],
      run: (q) =>
        q.get('format') === 'json'
          ? { status: 200, body: formatListenersJson(p.listeners()), contentType: JSON_TYPE }
          : ok(formatListenersText(p.listeners())),
    },
    {
      path: '/memory',
      help: 'print current allocation/heap usage',
      mutates: false,
      run: () => {
        const m = p.memory?.() ?? defaultMemory();
        // envoy.admin.v3.Memory; uint64 fields print as strings in proto3 JSON.
        const body = protoJson({
          allocated: String(m.allocated),
          heap_size: String(m.heapSize),
          pageheap_unmapped: '0',
          pageheap_free: '0',
          total_thread_cache: '0',
          total_physical_bytes: String(m.physical),
        });
        return { status: 200, body, contentType: JSON_TYPE };
      },
    },
    {
      path: '/quitquitquit',
      help: 'exit the server',
      mutates: true,
      run: () => ({ status: 200, body: 'OK\n', after: () => p.quit() }),
    },
    {
      path: '/ready',
      help: 'print server state, return 200 if LIVE, otherwise return 503',
      mutates: false,
      run: () => {
        const state = p.serverState();
        return { status: state === 'LIVE' ? 200 : 503, body: `${state}\n` };
      },
    },
    {
      path: '/reset_counters',
      help: 'reset all counters to zero',
      mutates: true,
      run: () => {
        p.stats.resetCounters();
        return ok();
      },
    },
    {
      path: '/server_info',
      help: 'print server version/status information',
      mutates: false,
      run: () => ({ status: 200, body: protoJson(p.serverInfo()), contentType: JSON_TYPE }),
    },
    {
      path: '/stats',
      help: 'print server stats',
      mutates: false,
      params: [
        ['usedonly', 'Only include stats that have been written by system since restart'],
        ['filter', 'Regular expression (Google re2) for filtering stats'],
        ['format', 'Format to use; One of (text, json, prometheus)'],
        ['type', 'Stat types to include.; One of (All, Counters, Histograms, Gauges)'],
        ['histogram_buckets', 'Histogram bucket display mode; One of (cumulative, disjoint, none)'],
      ],
      run: (q) => stats(q, false),
    },
    {
      path: '/stats/prometheus',
      help: 'print server stats in prometheus format',
      mutates: false,
      params: [
        ['usedonly', 'Only include stats that have been written by system since restart'],
        ['filter', 'Regular expression (Google re2) for filtering stats'],
      ],
      run: (q) => stats(q, true),
    },
  ];
}

function defaultMemory(): MemoryInfo {
  const m = process.memoryUsage();
  return { allocated: m.heapUsed, heapSize: m.heapTotal, physical: m.rss };
}

/** Envoy's getHelp(): handlers in path order, `(POST)` on mutating ones, params indented below. */
function formatHelp(handlers: readonly Handler[]): string {
  let out = 'admin commands are:\n';
  for (const h of [...handlers].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))) {
    out += `  ${h.path}${h.mutates ? ' (POST)' : ''}: ${h.help}\n`;
    for (const [id, help] of h.params ?? []) out += `      ${id}: ${help}\n`;
  }
  return out;
}

/**
 * Starts the admin server on `addr` (port 0 picks a free port). Envoy's own admin traffic is
 * counted in `http.admin.*` and `listener.admin.*`, as Envoy does.
 * @throws SloopError SLOOP_ERR_PROXY_LISTEN_FAILED when the address cannot be bound.
 */
export function startAdminServer(
  addr: { address: string; port: number },
  provider: AdminProvider,
  log: Logger,
  options: AdminServerOptions = {},
): Promise<AdminServer> {
  const alog = log.child({ component: 'admin' });
  const nowMs = options.nowMs ?? (() => performance.now());
  const handlerList: Handler[] = [];
  const help = (): string => formatHelp(handlerList);
  handlerList.push(...buildHandlers(provider, help));
  const byPath = new Map(handlerList.map((h) => [h.path, h]));
  const hcm: HttpConnectionManagerStats = httpConnectionManagerStats(provider.stats, 'admin');
  const listener: ListenerStats = listenerStats(provider.stats, 'admin');

  const dispatch = (req: IncomingMessage): AdminResponse => {
    const raw = req.url ?? '/';
    const q = raw.indexOf('?');
    const path = q === -1 ? raw : raw.slice(0, q);
    const query = new URLSearchParams(q === -1 ? '' : raw.slice(q + 1));
    const handler = byPath.get(path);
    if (handler === undefined) return { status: 404, body: 'invalid path. ' + help() };
    const method = req.method ?? 'GET';
    if (handler.mutates && method !== 'POST') {
      alog.warn({ path, method }, 'admin path mutates state, POST required');
      return { status: 405, body: `Method ${method} not allowed, POST required.` };
    }
    try {
      return handler.run(query);
    } catch (err) {
      alog.warn({ err, path }, 'admin handler failed');
      return { status: 500, body: 'internal error\n' };
    }
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const start = nowMs();
    hcm.downstreamRqTotal.inc();
    if (req.httpVersionMajor === 2) hcm.downstreamRqHttp2Total.inc();
    else hcm.downstreamRqHttp1Total.inc();
    hcm.downstreamRqActive.inc();
    // Request bodies are not used by any endpoint; drain them so keep-alive works.
    req.resume();
    const r = dispatch(req);
    res.writeHead(r.status, {
      'content-type': r.contentType ?? TEXT,
      'cache-control': 'no-cache, max-age=0',
      'x-content-type-options': 'nosniff',
    });
    // Charged when the response starts, as Envoy charges codes on encodeHeaders.
    hcm.chargeResponse(r.status);
    res.end(r.body, () => {
      hcm.downstreamRqActive.dec();
      hcm.downstreamRqTime.record(nowMs() - start);
      r.after?.();
    });
  };

  const server = createServer(onRequest);
  const limit = options.connectionLimit;
  server.on('connection', (socket) => {
    if (limit !== undefined) {
      // As on every listener (listener.ts): over the global limit the connection is closed at once.
      if (!limit.tryAllocate()) {
        listener.downstreamGlobalCxOverflow.inc();
        socket.destroy();
        return;
      }
      socket.once('close', () => limit.release());
    }
    listener.downstreamCxTotal.inc();
    listener.downstreamCxActive.inc();
    hcm.downstreamCxTotal.inc();
    hcm.downstreamCxActive.inc();
    hcm.downstreamCxHttp1Total.inc();
    hcm.downstreamCxHttp1Active.inc();
    socket.once('close', () => {
      listener.downstreamCxActive.dec();
      listener.downstreamCxDestroy.inc();
      hcm.downstreamCxActive.dec();
      hcm.downstreamCxHttp1Active.dec();
      hcm.downstreamCxDestroy.inc();
    });
  });

  return new Promise<AdminServer>((resolve, reject) => {
    const onError = (err: Error): void => {
      reject(new SloopError('SLOOP_ERR_PROXY_LISTEN_FAILED', `admin server cannot listen on ${addr.address}:${addr.port}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen(addr.port, addr.address, () => {
      server.off('error', onError);
      server.on('error', (err) => alog.error({ err }, 'admin server error'));
      const port = (server.address() as AddressInfo).port;
      alog.info({ address: addr.address, port }, 'admin listening');
      resolve({
        port,
        close: () =>
          new Promise<void>((done, fail) => {
            server.close((err) => (err ? fail(err) : done()));
            server.closeAllConnections();
          }),
      });
    });
  });
}
