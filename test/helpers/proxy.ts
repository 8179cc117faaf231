/**
 * Runs the real `sloop proxy` as a child process for e2e tests, plus builders for the Envoy v3 bootstrap it
 * reads. Builders emit Envoy's YAML field names (snake_case, `@type` on typed_config, durations as "1s"),
 * exactly as a user would write the file, so e2e tests also cover bootstrap parsing.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { freePort, LOOPBACK } from './ports.ts';

/** Root of the repository (this file is test/helpers/proxy.ts). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The `sloop` launcher, which runs src/cli/main.ts on the repo's pinned Node 24. */
export const SLOOP_BIN = join(REPO_ROOT, 'bin', 'sloop');

/** A JSON-like object (a bootstrap or a fragment of one). */
export type Json = { [key: string]: unknown };

/** How a proxy process ended. */
export interface ProxyExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Anything with node:test's `after` hook (`TestContext`, or `{ after }` from node:test's `describe`). */
export interface AfterHook {
  after(fn: () => unknown): void;
}

/** Options for {@link startProxy}. */
export interface StartProxyOptions {
  /** Extra CLI arguments after `proxy -c <file>`. */
  args?: string[];
  /** Added to the inherited environment. */
  env?: Record<string, string>;
  /**
   * The proxy is expected to refuse the config: wait for it to exit (not to become ready) and return the
   * handle with `exit` set. Throws if it becomes ready instead.
   */
  expectFail?: boolean;
  /** Stop the proxy in this test's `after` hook. Without it, call `stop()` yourself (or `await using`). */
  t?: AfterHook;
  /** Cap for becoming ready (or, with `expectFail`, for exiting). Default 15 s. */
  readyTimeoutMs?: number;
  /** Admin port, when the bootstrap is a YAML string without `admin.address.socket_address.port_value`. */
  adminPort?: number;
  /**
   * Command line to run instead of `bin/sloop proxy -c <configPath> ...args`: for example
   * `(c) => ['envoy', '-c', c, '--base-id', '7']` to run the same test against Envoy, or a fake in the
   * harness's self-test.
   */
  command?: (configPath: string) => string[];
}

/** A response from the admin interface. */
export interface AdminResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** A running (or, with `expectFail`, exited) proxy. */
export interface ProxyHandle {
  adminPort: number;
  process: ChildProcess;
  /** The bootstrap file the proxy was started with (in a private temp dir removed by `stop`). */
  configPath: string;
  /** Everything written to stdout so far. */
  stdout(): string;
  /** Everything written to stderr so far. */
  stderr(): string;
  /** Resolves when the process exits. */
  exited: Promise<ProxyExit>;
  /** Set once the process has exited. */
  readonly exit: ProxyExit | undefined;
  /** Polls `GET /ready` on the admin port until 200. `startProxy` already awaited it. */
  ready(timeoutMs?: number): Promise<void>;
  /** Counters and gauges from `GET /stats?format=json` (Envoy's shape), falling back to text `GET /stats`. */
  stats(): Promise<Record<string, number>>;
  /** Any admin request: `admin('/clusters')`, `admin('/healthcheck/fail', 'POST')`. */
  admin(path: string, method?: string): Promise<AdminResponse>;
  /** Resolves with the output so far once stdout or stderr matches `pattern`. */
  waitForOutput(pattern: string | RegExp, timeoutMs?: number): Promise<string>;
  /**
   * Sends `signal` (default SIGTERM), waits up to `timeoutMs` (default 5 s) for exit, then SIGKILLs.
   * Idempotent; also removes the temp config dir.
   */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<ProxyExit>;
  [Symbol.asyncDispose](): Promise<void>;
}

// Children still running when the test process exits are killed, so a failed assertion (which skips the
// test's own cleanup) never leaves a proxy holding ports on a CI machine.
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
  live.add(child);
  child.once('exit', () => live.delete(child));
}

function adminPortOf(doc: unknown): number | undefined {
  const port = (doc as { admin?: { address?: { socket_address?: { port_value?: unknown } } } } | null)?.admin?.address?.socket_address
    ?.port_value;
  return typeof port === 'number' && port > 0 ? port : undefined;
}

/**
 * Writes `bootstrap` (a JS object, written as YAML, or YAML/JSON text as is) to a temp file and starts
 * `bin/sloop proxy -c <file>`. A bootstrap object without an admin address gets one on a free port. Resolves
 * once `GET /ready` answers 200; rejects after `readyTimeoutMs` or if the process exits first, with its stderr
 * in the message.
 */
export async function startProxy(bootstrap: Json | string, opts: StartProxyOptions = {}): Promise<ProxyHandle> {
  let adminPort: number | undefined;
  let text: string;
  if (typeof bootstrap === 'string') {
    text = bootstrap;
    adminPort = opts.adminPort ?? adminPortOf(parseYaml(bootstrap));
    if (adminPort === undefined) throw new Error('startProxy: YAML bootstrap has no admin port; pass opts.adminPort');
  } else {
    adminPort = adminPortOf(bootstrap);
    let doc = bootstrap;
    if (adminPort === undefined) {
      adminPort = opts.adminPort ?? (await freePort());
      doc = { ...bootstrap, admin: adminConfig(adminPort) };
    }
    text = stringifyYaml(doc);
  }
  const dir = await mkdtemp(join(tmpdir(), 'sloop-e2e-'));
  const configPath = join(dir, 'bootstrap.yaml');
  await writeFile(configPath, text);

  const [command, ...args] = opts.command ? opts.command(configPath) : [SLOOP_BIN, 'proxy', '-c', configPath];
  const child = spawn(command, [...args, ...(opts.args ?? [])], {
    cwd: REPO_ROOT,
    env: opts.env ? { ...process.env, ...opts.env } : process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  track(child);
  let out = '';
  let err = '';
  const outputWaiters = new Set<() => void>();
  const onOutput = (): void => {
    for (const w of outputWaiters) w();
  };
  child.stdout?.setEncoding('utf8').on('data', (s: string) => {
    out += s;
    onOutput();
  });
  child.stderr?.setEncoding('utf8').on('data', (s: string) => {
    err += s;
    onOutput();
  });
  let exit: ProxyExit | undefined;
  const exited = new Promise<ProxyExit>((resolve) => {
    child.once('error', (e) => {
      err += `\n[harness] spawn failed: ${e.message}`;
      exit ??= { code: null, signal: null };
      resolve(exit);
    });
    // 'close' (not 'exit') so stdout/stderr are complete when callers read them after exit.
    child.once('close', (code, signal) => {
      exit ??= { code, signal };
      resolve(exit);
    });
  });
  const port = adminPort;

  const describe = (): string => `sloop proxy (admin ${port}, config ${configPath})`;
  const tail = (): string => {
    const lines = (err || out).trimEnd().split('\n');
    return lines.slice(-40).join('\n');
  };

  const ready = async (timeoutMs = opts.readyTimeoutMs ?? 15_000): Promise<void> => {
    const deadline = performance.now() + timeoutMs;
    let last = 'no answer yet';
    while (performance.now() < deadline) {
      if (exit) throw new Error(`${describe()} exited (${formatExit(exit)}) before it was ready; stderr:\n${tail()}`);
      try {
        const res = await adminRequest(port, '/ready', 'GET', 1_000);
        if (res.status === 200) return;
        last = `GET /ready → ${res.status} ${res.text.trim()}`;
      } catch (e) {
        last = `GET /ready failed: ${(e as Error).message}`;
      }
      await Promise.race([exited, delay(50)]);
    }
    throw new Error(`${describe()} not ready after ${timeoutMs} ms (${last}); stderr:\n${tail()}`);
  };

  let stopped: Promise<ProxyExit> | undefined;
  const stop = (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 5_000): Promise<ProxyExit> =>
    (stopped ??= (async () => {
      if (!exit) {
        child.kill(signal);
        const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
        await exited;
        clearTimeout(timer);
      }
      await rm(dir, { recursive: true, force: true });
      return exit as ProxyExit;
    })());

  const handle: ProxyHandle = {
    adminPort: port,
    process: child,
    configPath,
    stdout: () => out,
    stderr: () => err,
    exited,
    get exit() {
      return exit;
    },
    ready,
    stats: () => fetchStats(port),
    admin: (path, method = 'GET') => adminRequest(port, path, method, 5_000),
    waitForOutput: (pattern, timeoutMs = 5_000) =>
      new Promise((resolve, reject) => {
        const matches = (): boolean => (typeof pattern === 'string' ? out.includes(pattern) || err.includes(pattern) : pattern.test(out) || pattern.test(err));
        if (matches()) return resolve(out + err);
        const check = (): void => {
          if (!matches()) return;
          cleanup();
          resolve(out + err);
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`${describe()}: no output matching ${String(pattern)} within ${timeoutMs} ms; output:\n${tail()}`));
        }, timeoutMs);
        const cleanup = (): void => {
          clearTimeout(timer);
          outputWaiters.delete(check);
        };
        outputWaiters.add(check);
      }),
    stop,
    [Symbol.asyncDispose]: async () => {
      await stop();
    },
  };
  opts.t?.after(() => stop());

  if (opts.expectFail) {
    const timeoutMs = opts.readyTimeoutMs ?? 15_000;
    const outcome = await Promise.race([
      exited.then(() => 'exited' as const),
      delay(timeoutMs).then(() => 'timeout' as const),
      pollUntilReady(port, () => exit !== undefined).then((isReady) => (isReady ? ('ready' as const) : ('exited' as const))),
    ]);
    if (outcome !== 'exited') {
      await stop('SIGKILL');
      throw new Error(`${describe()} was expected to fail but ${outcome === 'ready' ? 'became ready' : `was still running after ${timeoutMs} ms`}; stderr:\n${tail()}`);
    }
    await stop();
    return handle;
  }
  try {
    await ready();
  } catch (e) {
    await stop('SIGKILL');
    throw e;
  }
  return handle;
}

async function pollUntilReady(port: number, isDone: () => boolean): Promise<boolean> {
  while (!isDone()) {
    try {
      if ((await adminRequest(port, '/ready', 'GET', 1_000)).status === 200) return true;
    } catch {
      // not listening yet
    }
    await delay(50);
  }
  return false;
}

function formatExit(exit: ProxyExit): string {
  return exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/**
 * One request to an admin port over a fresh connection (no agent), so no pooled socket outlives the test.
 * Rejects on connection errors and after `timeoutMs`.
 */
export function adminRequest(port: number, path: string, method = 'GET', timeoutMs = 5_000): Promise<AdminResponse> {
  return new Promise((resolve, reject) => {
    const req = request({ host: LOOPBACK, port, path, method, agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`admin ${method} ${path} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Reads stats from an admin port. Envoy's `GET /stats?format=json` answers `{"stats":[{"name","value"}...,
 * {"histograms":...}]}`; histograms are skipped. Falls back to the text form (`name: value` per line).
 */
export async function fetchStats(port: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const json = await adminRequest(port, '/stats?format=json');
  if (json.status === 200) {
    try {
      const doc = JSON.parse(json.text) as { stats?: Array<{ name?: string; value?: number | string }> };
      for (const s of doc.stats ?? []) if (typeof s.name === 'string' && s.value !== undefined) out[s.name] = Number(s.value);
      return out;
    } catch {
      // not JSON: use the text form below
    }
  }
  const text = await adminRequest(port, '/stats');
  if (text.status !== 200) throw new Error(`GET /stats → ${text.status}: ${text.text}`);
  for (const line of text.text.split('\n')) {
    const m = /^([^:\s]+): (-?\d+(?:\.\d+)?)$/.exec(line.trim());
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Bootstrap builders (Envoy v3 field names; see envoy.config.bootstrap.v3.Bootstrap)

const HCM_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
const TCP_PROXY_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy';
const HTTP_PROTOCOL_OPTIONS_TYPE = 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const DOWNSTREAM_TLS_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
const UPSTREAM_TLS_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';

/** `envoy.config.core.v3.Address` for 127.0.0.1 (or `host`) and `port`. */
export function socketAddress(port: number, host = LOOPBACK): Json {
  return { socket_address: { address: host, port_value: port } };
}

/** The bootstrap's `admin` block: the admin interface on 127.0.0.1:`port`. */
export function adminConfig(port: number): Json {
  return { address: socketAddress(port) };
}

/**
 * A STATIC cluster with one locality holding `endpoints` (ROUND_ROBIN, connect_timeout 1s). `extra` is
 * merged over the top level (`lb_policy`, `circuit_breakers`, `outlier_detection`, `health_checks`,
 * `transport_socket`, ...; spread {@link http2ProtocolOptions} for h2 upstreams).
 */
export function staticCluster(name: string, endpoints: ReadonlyArray<readonly [string, number]>, extra: Json = {}): Json {
  return {
    name,
    type: 'STATIC',
    connect_timeout: '1s',
    lb_policy: 'ROUND_ROBIN',
    load_assignment: {
      cluster_name: name,
      endpoints: [{ lb_endpoints: endpoints.map(([host, port]) => ({ endpoint: { address: socketAddress(port, host) } })) }],
    },
    ...extra,
  };
}

/**
 * Cluster fields that make the proxy speak HTTP/2 to the upstream (h2c, or h2 over TLS), the v3 way:
 * `typed_extension_protocol_options` with an HttpProtocolOptions `explicit_http_config.http2_protocol_options`.
 * Spread into {@link staticCluster}'s `extra`.
 */
/** Options for {@link adsBootstrap}. */
export interface AdsBootstrapOptions {
  adminPort: number;
  /** Port of the ADS server on 127.0.0.1 (reached through the static cluster `xds-grpc`). */
  adsPort: number;
  /** `node` of the bootstrap (id, cluster, metadata). */
  node: Json;
  apiType?: 'GRPC' | 'DELTA_GRPC';
  /** Reconnect back-off `max_interval` (base is 0.05 s). Default 0.4 s. */
  maxBackOff?: string;
}

/**
 * A bootstrap whose listeners and clusters all come over ADS (Envoy's `dynamic_resources` with `ads_config`),
 * the control plane being the static cluster `xds-grpc` (HTTP/2) on 127.0.0.1:`adsPort`.
 */
export function adsBootstrap(o: AdsBootstrapOptions): Json {
  return {
    node: o.node,
    admin: { address: socketAddress(o.adminPort) },
    dynamic_resources: {
      ads_config: {
        api_type: o.apiType ?? 'GRPC',
        transport_api_version: 'V3',
        grpc_services: [{ envoy_grpc: { cluster_name: 'xds-grpc', retry_policy: { retry_back_off: { base_interval: '0.05s', max_interval: o.maxBackOff ?? '0.4s' } } } }],
      },
      cds_config: { ads: {}, resource_api_version: 'V3' },
      lds_config: { ads: {}, resource_api_version: 'V3' },
    },
    static_resources: { clusters: [staticCluster('xds-grpc', [[LOOPBACK, o.adsPort]], http2ProtocolOptions())] },
  };
}

export function http2ProtocolOptions(http2Options: Json = {}): Json {
  return {
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': HTTP_PROTOCOL_OPTIONS_TYPE,
        explicit_http_config: { http2_protocol_options: http2Options },
      },
    },
  };
}

/** A virtual host (`envoy.config.route.v3.VirtualHost`). */
export function virtualHost(name: string, domains: readonly string[], routes: readonly Json[], extra: Json = {}): Json {
  return { name, domains: [...domains], routes: [...routes], ...extra };
}

/** A route matching path `prefix` and sending to `cluster`; `routeExtra` goes into the RouteAction. */
export function prefixRoute(prefix: string, cluster: string, routeExtra: Json = {}): Json {
  return { match: { prefix }, route: { cluster, ...routeExtra } };
}

/** Options for {@link httpListener}. */
export interface HttpListenerOptions {
  name: string;
  port: number;
  /** Bind address. Default 127.0.0.1. */
  address?: string;
  /** A full inline `route_config` (RouteConfiguration). */
  routeConfig?: Json;
  /** Shorthand: `route_config: { name: <name>-routes, virtual_hosts }`. */
  virtualHosts?: readonly Json[];
  /** HTTP filters before the router (the router is appended unless the list already ends with it). */
  httpFilters?: readonly Json[];
  /** `codec_type`. Default AUTO. */
  codecType?: 'AUTO' | 'HTTP1' | 'HTTP2' | 'HTTP3';
  /** `stat_prefix`. Default the listener name. */
  statPrefix?: string;
  /** Merged over the HttpConnectionManager (timeouts, `use_remote_address`, `http_protocol_options`...). */
  hcmExtra?: Json;
  /** Merged over the Listener. */
  listenerExtra?: Json;
  /** The filter chain's `transport_socket` (see {@link downstreamTls}). */
  transportSocket?: Json;
}

/** The router HTTP filter (`envoy.filters.http.router`), always last in the chain. */
export function routerFilter(): Json {
  return { name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_TYPE } };
}

/** A Listener with one filter chain holding an `envoy.filters.network.http_connection_manager`. */
export function httpListener(opts: HttpListenerOptions): Json {
  const filters = [...(opts.httpFilters ?? [])];
  const lastType = (filters.at(-1)?.typed_config as Json | undefined)?.['@type'];
  if (lastType !== ROUTER_TYPE) filters.push(routerFilter());
  let routeConfig = opts.routeConfig;
  if (!routeConfig) {
    if (!opts.virtualHosts) throw new Error(`httpListener ${opts.name}: give routeConfig or virtualHosts`);
    routeConfig = { name: `${opts.name}-routes`, virtual_hosts: [...opts.virtualHosts] };
  }
  const hcm: Json = {
    '@type': HCM_TYPE,
    stat_prefix: opts.statPrefix ?? opts.name,
    codec_type: opts.codecType ?? 'AUTO',
    route_config: routeConfig,
    http_filters: filters,
    ...opts.hcmExtra,
  };
  const chain: Json = { filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: hcm }] };
  if (opts.transportSocket) chain.transport_socket = opts.transportSocket;
  return { name: opts.name, address: socketAddress(opts.port, opts.address), filter_chains: [chain], ...opts.listenerExtra };
}

/** Options for {@link httpFilterChain}: the HCM part of {@link HttpListenerOptions} plus the chain's match. */
export interface HttpFilterChainOptions {
  /** `stat_prefix` of the HttpConnectionManager. */
  statPrefix: string;
  routeConfig?: Json;
  virtualHosts?: readonly Json[];
  httpFilters?: readonly Json[];
  codecType?: 'AUTO' | 'HTTP1' | 'HTTP2' | 'HTTP3';
  hcmExtra?: Json;
  /** `filter_chain_match` (destination_port, server_names, transport_protocol, application_protocols...). */
  match?: Json;
  transportSocket?: Json;
  /** The chain's `name`. */
  name?: string;
}

/**
 * One FilterChain holding an `envoy.filters.network.http_connection_manager`, for listeners with several
 * chains (`filter_chains: [...]`, `default_filter_chain`). {@link httpListener} is the one-chain shorthand.
 */
export function httpFilterChain(opts: HttpFilterChainOptions): Json {
  const listener = httpListener({ ...opts, name: opts.statPrefix, port: 0 });
  const chain = (listener.filter_chains as Json[])[0];
  if (opts.match) chain.filter_chain_match = opts.match;
  if (opts.name) chain.name = opts.name;
  return chain;
}

/** One FilterChain holding an `envoy.filters.network.tcp_proxy` to `cluster`. */
export function tcpProxyFilterChain(opts: { statPrefix: string; cluster: string; match?: Json; transportSocket?: Json; name?: string }): Json {
  const listener = tcpProxyListener({ name: opts.statPrefix, port: 0, cluster: opts.cluster, transportSocket: opts.transportSocket });
  const chain = (listener.filter_chains as Json[])[0];
  if (opts.match) chain.filter_chain_match = opts.match;
  if (opts.name) chain.name = opts.name;
  return chain;
}

/** The `envoy.filters.listener.tls_inspector` listener filter. */
export function tlsInspector(): Json {
  return { name: 'envoy.filters.listener.tls_inspector', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector' } };
}

/** The `envoy.filters.listener.http_inspector` listener filter. */
export function httpInspector(): Json {
  return { name: 'envoy.filters.listener.http_inspector', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector' } };
}

/** Options for {@link tcpProxyListener}. */
export interface TcpProxyListenerOptions {
  name: string;
  port: number;
  cluster: string;
  address?: string;
  statPrefix?: string;
  /** Merged over the TcpProxy (`idle_timeout`, `max_connect_attempts`...). */
  tcpProxyExtra?: Json;
  listenerExtra?: Json;
  transportSocket?: Json;
}

/** A Listener with one filter chain holding an `envoy.filters.network.tcp_proxy` to `cluster`. */
export function tcpProxyListener(opts: TcpProxyListenerOptions): Json {
  const tcpProxy: Json = { '@type': TCP_PROXY_TYPE, stat_prefix: opts.statPrefix ?? opts.name, cluster: opts.cluster, ...opts.tcpProxyExtra };
  const chain: Json = { filters: [{ name: 'envoy.filters.network.tcp_proxy', typed_config: tcpProxy }] };
  if (opts.transportSocket) chain.transport_socket = opts.transportSocket;
  return { name: opts.name, address: socketAddress(opts.port, opts.address), filter_chains: [chain], ...opts.listenerExtra };
}

/** Certificate files for the TLS transport socket builders (paths, as in {@link CertKeyPair} from certs.ts). */
export interface TlsFiles {
  certPath?: string;
  keyPath?: string;
  /** Trusted CA for verifying the peer (`validation_context.trusted_ca`). */
  caPath?: string;
  /** `validation_context.match_typed_subject_alt_names` entries, e.g. `[{ san_type: 'URI', matcher: { exact: 'spiffe://...' } }]`. */
  matchSans?: readonly Json[];
  /** ALPN protocols to offer/accept (`common_tls_context.alpn_protocols`). */
  alpn?: readonly string[];
}

function commonTlsContext(files: TlsFiles): Json {
  const ctx: Json = {};
  if (files.certPath && files.keyPath) {
    ctx.tls_certificates = [{ certificate_chain: { filename: files.certPath }, private_key: { filename: files.keyPath } }];
  }
  if (files.caPath) {
    const validation: Json = { trusted_ca: { filename: files.caPath } };
    if (files.matchSans) validation.match_typed_subject_alt_names = [...files.matchSans];
    ctx.validation_context = validation;
  }
  if (files.alpn) ctx.alpn_protocols = [...files.alpn];
  return ctx;
}

/** A listener `transport_socket` terminating TLS; `requireClientCertificate` for mTLS (needs `caPath`). */
export function downstreamTls(files: TlsFiles & { requireClientCertificate?: boolean }): Json {
  const typed: Json = { '@type': DOWNSTREAM_TLS_TYPE, common_tls_context: commonTlsContext(files) };
  if (files.requireClientCertificate) typed.require_client_certificate = true;
  return { name: 'envoy.transport_sockets.tls', typed_config: typed };
}

/** A cluster `transport_socket` originating TLS (`sni` sets the SNI sent; cert/key for mTLS). */
export function upstreamTls(files: TlsFiles & { sni?: string }): Json {
  const typed: Json = { '@type': UPSTREAM_TLS_TYPE, common_tls_context: commonTlsContext(files) };
  if (files.sni) typed.sni = files.sni;
  return { name: 'envoy.transport_sockets.tls', typed_config: typed };
}

/** Options for {@link bootstrapWith}. */
export interface BootstrapOptions {
  listeners: readonly Json[];
  clusters: readonly Json[];
  adminPort: number;
  /** Merged over the top level (`node`, `layered_runtime`, `dynamic_resources`...). */
  extra?: Json;
}

/** An `envoy.config.bootstrap.v3.Bootstrap` with static listeners and clusters and an admin interface. */
export function bootstrapWith(opts: BootstrapOptions): Json {
  return {
    admin: adminConfig(opts.adminPort),
    static_resources: { listeners: [...opts.listeners], clusters: [...opts.clusters] },
    ...opts.extra,
  };
}
