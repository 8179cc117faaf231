/**
 * envoy.filters.http.ext_authz (extensions.filters.http.ext_authz.v3.ExtAuthz) with a gRPC authorization service:
 * every request (unless the route's ExtAuthzPerRoute disables it, `filter_enabled` samples it out, or
 * `filter_enabled_metadata` does not match the request's dynamic metadata — Istio's CUSTOM action enables the
 * filter only for requests whose shadow RBAC policy id, `envoy.filters.http.rbac` /
 * `istio_ext_authz_shadow_effective_policy_id`, starts with `istio-ext-authz`) is sent as an
 * envoy.service.auth.v3 CheckRequest to `Authorization/Check` — on a host of the `envoy_grpc` cluster picked by the
 * cluster's load balancer (plaintext HTTP/2; `:authority` is `envoy_grpc.authority`, else the cluster name as in
 * Envoy — unless the name is no valid authority, as Istio's `outbound|PORT||HOST`, then the host's address), or to
 * `google_grpc.target_uri` — and the chain waits for the answer:
 * - OK (CheckResponse.status.code 0): `ok_response.headers` are set on (or, with `append` / an appending
 *   `append_action`, added to) the upstream request, `headers_to_remove` removed; `clear_route_cache` re-matches
 *   the route. Counted in `ok`.
 * - Any other status: the client gets `denied_response.status` (default 403), its headers and body. `denied`.
 * - The call failed (unreachable, `grpc_service.timeout` — default 200 ms — exceeded, bad response): `error`;
 *   with `failure_mode_allow` the request continues (`failure_mode_allowed`, and
 *   `x-envoy-auth-failure-mode-allowed: true` with `failure_mode_allow_header_add`), otherwise it is answered
 *   with `status_on_error` (default 403) and an empty body.
 * The CheckRequest carries source/destination addresses (and the source principal from the client certificate's
 * first URI SAN, else its subject), the request's id (x-request-id), method, headers (with the pseudo-headers
 * :authority, :method, :path, :scheme), path, host, scheme, protocol, size, `context_extensions` from the
 * route's `check_settings`, and with `include_tls_session` the SNI.
 * Stats `http.<stat_prefix>.ext_authz.ok|denied|error|failure_mode_allowed|disabled`, and as in Envoy
 * `cluster.<route's cluster>.ext_authz.*` for routes with one cluster.
 * A request the filter skips (per-route `disabled`, `filter_enabled`, `filter_enabled_metadata`) counts in
 * `disabled` and continues, as Envoy does.
 * Not implemented (refused): `http_service`, `with_request_body`, `allowed_headers`/`disallowed_headers`,
 * `deny_at_disable`.
 */
import { createRequire } from 'node:module';
import type * as grpc from '@grpc/grpc-js';
import type { Any__Output } from '../../../xds/gen/google/protobuf/Any.ts';
import type { ExtAuthz__Output } from '../../../xds/gen/envoy/extensions/filters/http/ext_authz/v3/ExtAuthz.ts';
import type { ExtAuthzPerRoute__Output } from '../../../xds/gen/envoy/extensions/filters/http/ext_authz/v3/ExtAuthzPerRoute.ts';
import type { CheckResponse__Output } from '../../../xds/gen/envoy/service/auth/v3/CheckResponse.ts';
import type { CheckRequest } from '../../../xds/gen/envoy/service/auth/v3/CheckRequest.ts';
import type { HeaderValueOption__Output } from '../../../xds/gen/envoy/config/core/v3/HeaderValueOption.ts';
import { unpackAny } from '../../../xds/any.ts';
import { envoyRoot, protoIncludeDirs } from '../../../xds/protos.ts';
import { ConfigError, type Diagnostic } from '../../../shared/errors.ts';
import type { Counter, StatsStore } from '../../stats/store.ts';
import { durationMs } from '../../duration.ts';
import { getHeader, hasHeader, removeHeader, setHeader } from '../headers.ts';
import { fractionOf } from '../route/route-action.ts';
import { compileMetadataMatcher, matchMetadata, type CompiledMetadataMatcher } from '../../rbac/engine.ts';
import type { FilterFactoryContext, FilterRequest, HttpFilter } from './types.ts';

export const EXT_AUTHZ_FILTER_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz';

/** RFC 3986 authority characters (what nghttp2 accepts in :authority). */
const VALID_AUTHORITY = /^[A-Za-z0-9\-._~!$&'()*+,;=:@[\]%]+$/;

/** Headers an authorization service may not change on the request (Envoy refuses pseudo-headers and Host). */
const PROTECTED = new Set(['host', ':authority', ':path', ':method', ':scheme']);

type CheckFn = (req: CheckRequest, metadata: grpc.Metadata, deadlineMs: number, cb: (err: grpc.ServiceError | null, res?: CheckResponse__Output) => void) => void;

const require = createRequire(import.meta.url);
let grpcModule: typeof grpc | undefined;

/**
 * @grpc/grpc-js (and @grpc/proto-loader), loaded on first use: a proxy without ext_authz (or xDS) never loads
 * them (docs/performance.md, "Memory"). Both are CommonJS, so `require` gives the same instance `import` does.
 */
function grpcJs(): typeof grpc {
  return (grpcModule ??= require('@grpc/grpc-js') as typeof grpc);
}

let authorizationClient: grpc.ServiceClientConstructor | undefined;

/** The generated grpc-js client class of envoy.service.auth.v3.Authorization (loaded once per process). */
export function authorizationClientClass(): grpc.ServiceClientConstructor {
  if (authorizationClient !== undefined) return authorizationClient;
  const protoLoader = require('@grpc/proto-loader') as typeof import('@grpc/proto-loader');
  const def = protoLoader.loadSync('envoy/service/auth/v3/external_auth.proto', {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: protoIncludeDirs(),
  });
  const pkg = grpcJs().loadPackageDefinition(def) as unknown as { envoy: { service: { auth: { v3: { Authorization: grpc.ServiceClientConstructor } } } } };
  authorizationClient = pkg.envoy.service.auth.v3.Authorization;
  return authorizationClient;
}

/** envoy.type.v3.StatusCode name → HTTP status. */
let statusCodes: Record<string, number> | undefined;
function httpStatusOf(name: string | number | undefined, dflt: number): number {
  if (typeof name === 'number') return name >= 100 ? name : dflt;
  if (name === undefined || name === '' || name === 'Empty') return dflt;
  statusCodes ??= envoyRoot().lookupEnum('envoy.type.v3.StatusCode').values;
  const n = statusCodes[name];
  return n !== undefined && n >= 100 ? n : dflt;
}

/** A compiled ExtAuthz. */
export interface CompiledExtAuthz {
  target: { kind: 'cluster'; cluster: string; authority: string } | { kind: 'uri'; uri: string };
  timeoutMs: number;
  initialMetadata: readonly [string, string][];
  failureModeAllow: boolean;
  failureModeAllowHeaderAdd: boolean;
  statusOnError: number;
  clearRouteCache: boolean;
  includeTlsSession: boolean;
  /** filter_enabled fraction in [0, 1]. */
  enabled: number;
  /** filter_enabled_metadata: the filter runs only for requests whose dynamic metadata matches. */
  enabledMetadata: CompiledMetadataMatcher | undefined;
}

/**
 * Compiles an ExtAuthz.
 * @throws ConfigError for unsupported or missing settings.
 */
export function compileExtAuthz(cfg: ExtAuthz__Output): CompiledExtAuthz {
  const diags: Diagnostic[] = [];
  const unsupported = (path: string, what = path): void => {
    diags.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_UNSUPPORTED', path, message: `${what} is not supported` });
  };
  let target: CompiledExtAuthz['target'] = { kind: 'uri', uri: '' };
  const gs = cfg.grpc_service;
  if (cfg.services === 'http_service') unsupported('http_service', 'http_service (an HTTP authorization service)');
  else if (gs === null || gs === undefined) diags.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: 'grpc_service', message: 'grpc_service is required' });
  else if (gs.target_specifier === 'envoy_grpc') target = { kind: 'cluster', cluster: gs.envoy_grpc!.cluster_name, authority: gs.envoy_grpc!.authority };
  else if (gs.target_specifier === 'google_grpc') {
    const g = gs.google_grpc!;
    if (g.channel_credentials !== null && g.channel_credentials.credential_specifier !== 'local_credentials') unsupported('grpc_service.google_grpc.channel_credentials', 'TLS channel credentials');
    if (g.call_credentials.length > 0) unsupported('grpc_service.google_grpc.call_credentials');
    target = { kind: 'uri', uri: g.target_uri };
  } else diags.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: 'grpc_service', message: 'grpc_service needs envoy_grpc or google_grpc' });
  if (cfg.with_request_body !== null) unsupported('with_request_body');
  if (cfg.allowed_headers !== null) unsupported('allowed_headers');
  if (cfg.disallowed_headers !== null) unsupported('disallowed_headers');
  const enabledMetadata = cfg.filter_enabled_metadata !== null ? compileMetadataMatcher(cfg.filter_enabled_metadata, 'filter_enabled_metadata', { diagnostics: diags }) : undefined;
  if (cfg.deny_at_disable !== null) unsupported('deny_at_disable');
  if (diags.length > 0) throw new ConfigError(diags, 'ExtAuthz');
  return {
    target,
    timeoutMs: durationMs(gs?.timeout, 200),
    initialMetadata: (gs?.initial_metadata ?? []).map((h) => [h.key.toLowerCase(), h.value] as [string, string]),
    failureModeAllow: cfg.failure_mode_allow,
    failureModeAllowHeaderAdd: cfg.failure_mode_allow_header_add,
    statusOnError: httpStatusOf(cfg.status_on_error?.code, 403),
    clearRouteCache: cfg.clear_route_cache,
    includeTlsSession: cfg.include_tls_session,
    enabled: cfg.filter_enabled === null ? 1 : fractionOf(cfg.filter_enabled.default_value),
    enabledMetadata,
  };
}

const COUNTERS = ['ok', 'denied', 'error', 'failure_mode_allowed', 'disabled'] as const;
type ExtAuthzCounters = { [K in (typeof COUNTERS)[number]]: Counter };

function countersAt(store: StatsStore, prefix: string): ExtAuthzCounters {
  const scope = store.scope(prefix);
  const out: Partial<ExtAuthzCounters> = {};
  for (const c of COUNTERS) out[c] = scope.counter(c);
  return out as ExtAuthzCounters;
}

/** Applies one HeaderValueOption to a request or response header list (Envoy's append semantics). */
function applyHeaderOption(h: string[], o: HeaderValueOption__Output): void {
  const hv = o.header;
  if (hv === null) return;
  const name = hv.key.toLowerCase();
  if (name === '' || PROTECTED.has(name)) return;
  const value = hv.value !== '' ? hv.value : hv.raw_value.length > 0 ? Buffer.from(hv.raw_value).toString('latin1') : '';
  let action: string;
  if (o.append !== null) action = o.append.value ? 'APPEND_IF_EXISTS_OR_ADD' : 'OVERWRITE_IF_EXISTS_OR_ADD';
  else action = o.append_action;
  switch (action) {
    case 'ADD_IF_ABSENT':
      if (!hasHeader(h, name)) h.push(name, value);
      break;
    case 'OVERWRITE_IF_EXISTS':
      if (hasHeader(h, name)) setHeader(h, name, value);
      break;
    case 'OVERWRITE_IF_EXISTS_OR_ADD':
      setHeader(h, name, value);
      break;
    default:
      h.push(name, value);
  }
}

/** The ext_authz filter of one connection manager. */
export class ExtAuthzFilter implements HttpFilter {
  readonly name: string;
  readonly config: CompiledExtAuthz;
  private readonly ctx: FilterFactoryContext;
  private readonly stats: ExtAuthzCounters;
  private readonly clusterStats = new Map<string, ExtAuthzCounters>();
  private readonly clients = new Map<string, grpc.Client>();
  private readonly perRoute = new WeakMap<Any__Output, ExtAuthzPerRoute__Output | null>();
  /** Injected by tests; default: a grpc-js client per upstream host. */
  private readonly check: CheckFn;

  constructor(name: string, config: CompiledExtAuthz, ctx: FilterFactoryContext, check?: CheckFn) {
    this.name = name;
    this.config = config;
    this.ctx = ctx;
    this.stats = countersAt(ctx.store, `http.${ctx.statPrefix}.ext_authz`);
    this.check = check ?? ((req, md, deadline, cb) => this.callCheck(req, md, deadline, cb));
  }

  private clientFor(target: string, authority: string): grpc.Client {
    let c = this.clients.get(target);
    if (c === undefined) {
      const Ctor = authorizationClientClass();
      const opts: grpc.ChannelOptions = authority !== '' ? { 'grpc.default_authority': authority } : {};
      c = new Ctor(target, grpcJs().credentials.createInsecure(), opts);
      this.clients.set(target, c);
    }
    return c;
  }

  private callCheck(req: CheckRequest, md: grpc.Metadata, deadlineMs: number, cb: (err: grpc.ServiceError | null, res?: CheckResponse__Output) => void): void {
    const t = this.config.target;
    let target: string;
    let authority = '';
    if (t.kind === 'uri') target = t.uri;
    else {
      const cluster = this.ctx.clusters?.get(t.cluster);
      const host = cluster?.chooseHost({ random: this.ctx.random });
      if (host === undefined) {
        const e = new Error(cluster === undefined ? `cluster ${t.cluster} not found` : 'no healthy upstream') as grpc.ServiceError;
        e.code = grpcJs().status.UNAVAILABLE;
        setImmediate(() => cb(e));
        return;
      }
      target = host.address.includes(':') ? `ipv6:[${host.address}]:${host.port}` : `${host.address}:${host.port}`;
      // Envoy's default :authority is the cluster name. Istio's cluster names (`outbound|9000||host`) hold `|`,
      // which HTTP/2 servers that check :authority (nghttp2, so Node's and grpc-js's) refuse with a
      // PROTOCOL_ERROR reset: such a name gives way to the channel's default, the host's address.
      authority = t.authority !== '' ? t.authority : VALID_AUTHORITY.test(t.cluster) ? t.cluster : '';
    }
    const client = this.clientFor(target, authority) as grpc.Client & {
      Check(r: CheckRequest, m: grpc.Metadata, o: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res?: CheckResponse__Output) => void): void;
    };
    client.Check(req, md, { deadline: Date.now() + deadlineMs }, cb);
  }

  private perRouteConfig(any: Any__Output): ExtAuthzPerRoute__Output | null {
    let c = this.perRoute.get(any);
    if (c === undefined) {
      try {
        c = unpackAny<ExtAuthzPerRoute__Output>(any);
      } catch (err) {
        this.ctx.log.warn({ filter: this.name, err: (err as Error).message }, 'invalid ExtAuthzPerRoute; ignored');
        c = null;
      }
      this.perRoute.set(any, c);
    }
    return c;
  }

  /** The route's cluster stats (`cluster.<name>.ext_authz.*`), when the route has one cluster. */
  private routeStats(req: FilterRequest): ExtAuthzCounters | undefined {
    const a = req.matchedRoute?.route;
    if (a === undefined || a.clusterSpecifier !== 'cluster' || a.cluster === '') return undefined;
    let s = this.clusterStats.get(a.cluster);
    if (s === undefined) {
      s = countersAt(this.ctx.store, `cluster.${a.cluster}.ext_authz`);
      this.clusterStats.set(a.cluster, s);
    }
    return s;
  }

  private count(req: FilterRequest, name: (typeof COUNTERS)[number]): void {
    this.stats[name].inc();
    this.routeStats(req)?.[name].inc();
  }

  decodeHeaders(req: FilterRequest): boolean {
    const any = req.matchedRoute?.perFilterConfig(this.name);
    const per = any === undefined ? null : this.perRouteConfig(any);
    if (per?.disabled === true) {
      this.count(req, 'disabled');
      return true;
    }
    // Envoy's filterEnabled: the runtime fraction and the metadata matcher (the metadata as the filters before
    // this one left it: Istio's shadow RBAC writes the CUSTOM policy that matched).
    if ((this.config.enabled < 1 && !(this.ctx.random() < this.config.enabled))
      || (this.config.enabledMetadata !== undefined && !matchMetadata(this.config.enabledMetadata, req.dynamicMetadata))) {
      this.count(req, 'disabled');
      return true;
    }
    const check = this.buildCheckRequest(req, per?.check_settings?.context_extensions ?? {});
    const md = new (grpcJs().Metadata)();
    for (const [k, v] of this.config.initialMetadata) md.add(k, v);
    let gone = false;
    req.addEncoder({ onDone: () => (gone = true) });
    this.check(check, md, this.config.timeoutMs, (err, res) => {
      if (gone) return;
      if (err !== null || res === undefined) return this.onError(req, err?.message ?? 'no response');
      this.onResponse(req, res);
    });
    return false;
  }

  private onError(req: FilterRequest, msg: string): void {
    this.count(req, 'error');
    this.ctx.log.warn({ filter: this.name, err: msg }, 'ext_authz check failed');
    if (this.config.failureModeAllow) {
      this.count(req, 'failure_mode_allowed');
      if (this.config.failureModeAllowHeaderAdd) setHeader(req.head.headers, 'x-envoy-auth-failure-mode-allowed', 'true');
      req.continueDecoding();
      return;
    }
    req.sendLocalReply(this.config.statusOnError, '');
  }

  private onResponse(req: FilterRequest, res: CheckResponse__Output): void {
    const code = res.status?.code ?? 0;
    if (code === 0) {
      this.count(req, 'ok');
      const ok = res.ok_response;
      if (ok !== null && ok !== undefined) {
        const h = req.head.headers;
        for (const o of ok.headers) applyHeaderOption(h, o);
        for (const n of ok.headers_to_remove) {
          const name = n.toLowerCase();
          if (!PROTECTED.has(name) && !name.startsWith(':')) removeHeader(h, name);
        }
        if (ok.response_headers_to_add.length > 0) {
          const add = ok.response_headers_to_add;
          req.addEncoder({ onResponseHeaders: (_s, headers) => add.forEach((o) => applyHeaderOption(headers, o)) });
        }
      }
      if (this.config.clearRouteCache && ok !== null && ok !== undefined && (ok.headers.length > 0 || ok.headers_to_remove.length > 0)) req.clearRouteCache();
      req.continueDecoding();
      return;
    }
    this.count(req, 'denied');
    const denied = res.denied_response;
    const status = httpStatusOf(denied?.status?.code, 403);
    const body = denied?.body ?? '';
    if (denied !== null && denied !== undefined && denied.headers.length > 0) {
      // The local reply sets its own content-type/content-length for a body.
      const hs = body === '' ? denied.headers : denied.headers.filter((o) => !['content-type', 'content-length'].includes(o.header?.key.toLowerCase() ?? ''));
      req.addEncoder({ onResponseHeaders: (_s, headers) => hs.forEach((o) => applyHeaderOption(headers, o)) });
    }
    req.sendLocalReply(status, body);
  }

  /** Envoy's CheckRequestUtils::createHttpCheck. */
  buildCheckRequest(req: FilterRequest, contextExtensions: Record<string, string>): CheckRequest {
    const head = req.head;
    const conn = req.conn;
    const headers: Record<string, string> = { ':authority': head.authority, ':method': head.method, ':path': head.path, ':scheme': head.scheme };
    const h = head.headers;
    for (let i = 0; i < h.length; i += 2) {
      const n = h[i]!;
      headers[n] = headers[n] === undefined ? h[i + 1]! : `${headers[n]},${h[i + 1]!}`;
    }
    const q = head.path.indexOf('?');
    const pc = conn.peerCertificate;
    const principal = pc !== undefined && pc.presented ? (pc.uriSans[0] ?? pc.subject) : '';
    const nowMs = Date.now();
    return {
      attributes: {
        source: { address: { socket_address: { address: conn.remoteAddress, port_value: conn.remotePort } }, principal },
        destination: { address: { socket_address: { address: conn.localAddress, port_value: conn.localPort } } },
        request: {
          time: { seconds: Math.floor(nowMs / 1000), nanos: (nowMs % 1000) * 1e6 },
          http: {
            id: getHeader(h, 'x-request-id') ?? '',
            method: head.method,
            headers,
            path: head.path,
            host: head.authority,
            scheme: head.scheme,
            query: q < 0 ? '' : head.path.slice(q + 1),
            protocol: head.protocol,
            size: head.contentLength >= 0 ? head.contentLength : head.hasBody ? -1 : 0,
          },
        },
        context_extensions: contextExtensions,
        ...(this.config.includeTlsSession && conn.isTls ? { tls_session: { sni: conn.serverName } } : {}),
      },
    };
  }
}

/** Registry entry: builds the filter from its HCM typed_config. */
export function createExtAuthzFilter(name: string, typedConfig: Any__Output, ctx: FilterFactoryContext): ExtAuthzFilter {
  return new ExtAuthzFilter(name, compileExtAuthz(unpackAny<ExtAuthz__Output>(typedConfig)), ctx);
}
