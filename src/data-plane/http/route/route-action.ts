/**
 * Route actions (route_components.proto RouteAction, RedirectAction, DirectResponseAction) compiled to
 * plain data plus small methods the router calls per request: pick a cluster, rewrite the path and host,
 * compute a redirect Location. Everything that can be decided at config time is.
 */
import { readFileSync } from 'node:fs';
import type { RouteAction__Output } from '../../../xds/gen/envoy/config/route/v3/RouteAction.ts';
import type { _envoy_config_route_v3_RouteAction_RequestMirrorPolicy__Output as RequestMirrorPolicy__Output } from '../../../xds/gen/envoy/config/route/v3/RouteAction.ts';
import type { RedirectAction__Output } from '../../../xds/gen/envoy/config/route/v3/RedirectAction.ts';
import type { DirectResponseAction__Output } from '../../../xds/gen/envoy/config/route/v3/DirectResponseAction.ts';
import type { RegexMatchAndSubstitute__Output } from '../../../xds/gen/envoy/type/matcher/v3/RegexMatchAndSubstitute.ts';
import type { FractionalPercent__Output } from '../../../xds/gen/envoy/type/v3/FractionalPercent.ts';
import type { Any__Output } from '../../../xds/gen/google/protobuf/Any.ts';
import type { Metadata__Output } from '../../../xds/gen/envoy/config/core/v3/Metadata.ts';
import type { CorsPolicy__Output } from '../../../xds/gen/envoy/config/route/v3/CorsPolicy.ts';
import type { CompileSink, RouteRequest } from './matchers.ts';
import { diagnose, getHeaderFirst } from './matchers.ts';
import type { CompiledHeaderMutation } from './header-mutation.ts';
import type { CompiledSubstitution } from './regex.ts';
import { compileSubstitution, substitute } from './regex.ts';
import type { CompiledRetryPolicy } from './retry-policy.ts';
import { compileRetryPolicy, durationMs } from './retry-policy.ts';
import type { CompiledHashPolicy } from './hash-policy.ts';

/** Envoy's default route timeout (RouteAction.timeout): 15 s. */
export const DEFAULT_ROUTE_TIMEOUT_MS = 15_000;

/** Envoy's default max_direct_response_body_size_bytes. */
export const DEFAULT_MAX_DIRECT_RESPONSE_BODY_BYTES = 4096;

const DENOMINATORS: Record<string, number> = { HUNDRED: 100, TEN_THOUSAND: 10_000, MILLION: 1_000_000 };

/**
 * A FractionalPercent as a probability in [0, 1]. Envoy's featureEnabled(random) is
 * `random % denominator < numerator`; with a uniform random in [0, 1) that is `random < numerator /
 * denominator` (numerators above the denominator count as 100 %).
 */
export function fractionOf(p: FractionalPercent__Output | null): number {
  if (!p) return 1;
  const d = DENOMINATORS[p.denominator] ?? 100;
  return Math.min(p.numerator, d) / d;
}

/** How the path is rewritten before forwarding (or before building a redirect Location). */
export interface CompiledPathRewrite {
  /** prefix_rewrite ('' in the proto = unset → undefined). */
  prefixRewrite: string | undefined;
  regexRewrite: CompiledSubstitution | undefined;
  /** Characters of the path the route matched (prefix length, or the whole exact path). */
  matchedLength: number;
  /** safe_regex routes: prefix_rewrite replaces the whole path but keeps the query (Envoy). */
  replacesWholePath: boolean;
}

/** Index of the end of the path proper: the first `?` or `#`, or the length. */
export function pathEndIndex(path: string): number {
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 63 /* ? */ || c === 35 /* # */) return i;
  }
  return path.length;
}

/**
 * Applies a path rewrite to `path` (query string kept). Envoy: prefix_rewrite swaps the matched prefix
 * (the prefix as configured, also for case-insensitive matches) for the new one; regex_rewrite runs on
 * the path without the query. `matchedLength` overrides the compiled matched length.
 */
export function applyPathRewrite(rw: CompiledPathRewrite, path: string, matchedLength?: number): string {
  if (rw.prefixRewrite !== undefined) {
    if (rw.replacesWholePath) return rw.prefixRewrite + path.slice(pathEndIndex(path));
    return rw.prefixRewrite + path.slice(matchedLength ?? rw.matchedLength);
  }
  if (rw.regexRewrite !== undefined) {
    const end = pathEndIndex(path);
    return end === path.length ? substitute(rw.regexRewrite, path) : substitute(rw.regexRewrite, path.slice(0, end)) + path.slice(end);
  }
  return path;
}

/** Result of picking a cluster. Shared, prebuilt objects for static names: callers must not mutate. */
export interface ClusterPick {
  cluster: string;
  /** The weighted_clusters entry chosen, when the route has weighted clusters. */
  weightedEntry?: CompiledWeightedCluster;
}

/** One weighted_clusters entry. */
export interface CompiledWeightedCluster {
  /** Static cluster name ('' when taken from `clusterHeader`). */
  name: string;
  clusterHeader: string;
  weight: number;
  hostRewriteLiteral: string | undefined;
  metadataMatch: Metadata__Output | null;
  typedPerFilterConfig: ReadonlyMap<string, Any__Output>;
  /** Full request/response mutation chains for this entry (route table fills these in). */
  requestHeaderChain: readonly CompiledHeaderMutation[];
  responseHeaderChain: readonly CompiledHeaderMutation[];
  /** This entry's own mutations, before chaining. */
  requestHeaderMutation: CompiledHeaderMutation | undefined;
  responseHeaderMutation: CompiledHeaderMutation | undefined;
  /** Prebuilt pick for a static name. */
  pick: ClusterPick | undefined;
}

/** A compiled RequestMirrorPolicy. */
export interface CompiledMirrorPolicy {
  cluster: string;
  clusterHeader: string;
  /** Probability in [0, 1] (runtime_fraction default_value; 1 when unset). */
  fraction: number;
  traceSampled: boolean | undefined;
  disableShadowHostSuffixAppend: boolean;
}

/** Compiles request_mirror_policies. */
export function compileMirrorPolicies(list: readonly RequestMirrorPolicy__Output[]): CompiledMirrorPolicy[] {
  return list.map((m) => ({
    cluster: m.cluster,
    clusterHeader: m.cluster_header.toLowerCase(),
    fraction: fractionOf(m.runtime_fraction?.default_value ?? null),
    traceSampled: m.trace_sampled ? m.trace_sampled.value : undefined,
    disableShadowHostSuffixAppend: m.disable_shadow_host_suffix_append,
  }));
}

/** Whether a mirror policy fires for a request's random number in [0, 1). */
export function shouldMirror(m: CompiledMirrorPolicy, random: number): boolean {
  return random < m.fraction;
}

/** How the Host header is rewritten (host_rewrite_specifier). */
export type HostRewrite =
  | { kind: 'none' }
  | { kind: 'literal'; value: string }
  | { kind: 'header'; header: string }
  | { kind: 'path_regex'; rewrite: CompiledSubstitution }
  | { kind: 'auto' };

const DIGITS = /^\d+$/;

const CLUSTER_NOT_FOUND_CODES: Record<string, number> = { SERVICE_UNAVAILABLE: 503, NOT_FOUND: 404, INTERNAL_SERVER_ERROR: 500 };

/** Values a route action inherits from its virtual host / route configuration. */
export interface RouteActionInherited {
  retryPolicy: CompiledRetryPolicy | undefined;
  mirrorPolicies: readonly CompiledMirrorPolicy[];
  cors: CorsPolicy__Output | null;
}

/** A compiled RouteAction (action kind `route`). */
export class CompiledRouteAction {
  clusterSpecifier: 'cluster' | 'cluster_header' | 'weighted_clusters' = 'cluster';
  cluster = '';
  /** Lowercased request header naming the cluster. */
  clusterHeader = '';
  weightedClusters: readonly CompiledWeightedCluster[] = [];
  /** Sum of weights (or total_weight). */
  totalWeight = 0;
  /** weighted_clusters.header_name: take the random value from this header when it holds a number. */
  randomValueHeader = '';
  /** HTTP status when the cluster is missing (cluster_not_found_response_code; default 503). */
  clusterNotFoundResponseCode = 503;
  pathRewrite: CompiledPathRewrite;
  hostRewrite: HostRewrite = { kind: 'none' };
  appendXForwardedHost = false;
  /** 0 = no timeout. Default 15 s. */
  timeoutMs = DEFAULT_ROUTE_TIMEOUT_MS;
  /** undefined = use the connection manager's stream idle timeout; 0 = disabled. */
  idleTimeoutMs: number | undefined;
  /** undefined = connection manager default; 0 = unlimited for this route. */
  maxStreamDurationMs: number | undefined;
  /** undefined = ignore grpc-timeout; 0 = use grpc-timeout uncapped; else the cap. */
  grpcTimeoutHeaderMaxMs: number | undefined;
  grpcTimeoutHeaderOffsetMs: number | undefined;
  /** The route's retry policy, else the virtual host's. */
  retryPolicy: CompiledRetryPolicy | undefined;
  hashPolicy: CompiledHashPolicy | undefined;
  /** upgrade_configs: lowercased upgrade type → enabled. Types absent here follow the connection manager. */
  upgrades: ReadonlyMap<string, boolean> = new Map();
  /**
   * An enabled CONNECT upgrade_config with connect_config: the proxy terminates CONNECT itself (TCP to the
   * cluster, 200 downstream) instead of forwarding the CONNECT request upstream.
   */
  terminateConnect = false;
  /** The most specific non-empty mirror policy list (route, else virtual host, else route config). */
  mirrorPolicies: readonly CompiledMirrorPolicy[] = [];
  priority: 'DEFAULT' | 'HIGH' = 'DEFAULT';
  metadataMatch: Metadata__Output | null = null;
  cors: CorsPolicy__Output | null = null;

  constructor(pathRewrite: CompiledPathRewrite) {
    this.pathRewrite = pathRewrite;
  }

  /**
   * Chooses the upstream cluster. `random` in [0, 1) picks among weighted clusters in proportion to
   * their weights (Envoy: `random % total_weight` against cumulative weights). Returns undefined when the
   * cluster comes from a header that is missing or empty: respond with clusterNotFoundResponseCode.
   */
  pickCluster(req: RouteRequest, random: number): ClusterPick | undefined {
    switch (this.clusterSpecifier) {
      case 'cluster':
        return this.staticPick;
      case 'cluster_header': {
        const name = getHeaderFirst(req.headers, this.clusterHeader);
        return name === undefined || name === '' ? undefined : { cluster: name };
      }
      default: {
        let r = -1;
        if (this.randomValueHeader !== '') {
          const v = getHeaderFirst(req.headers, this.randomValueHeader);
          if (v !== undefined && DIGITS.test(v)) r = Number(BigInt(v) % BigInt(this.totalWeight));
        }
        if (r < 0) r = Math.floor(random * this.totalWeight);
        const list = this.weightedClusters;
        let acc = 0;
        for (let i = 0; i < list.length; i++) {
          const e = list[i]!;
          acc += e.weight;
          if (r < acc) {
            if (e.pick !== undefined) return e.pick;
            const name = getHeaderFirst(req.headers, e.clusterHeader);
            return name === undefined || name === '' ? undefined : { cluster: name, weightedEntry: e };
          }
        }
        return undefined;
      }
    }
  }

  /** Prebuilt pick for `cluster`. */
  staticPick: ClusterPick | undefined;

  /** The request path after prefix_rewrite / regex_rewrite (query kept); the input when none applies. */
  rewritePath(path: string): string {
    return applyPathRewrite(this.pathRewrite, path);
  }

  /**
   * The new Host / :authority, or undefined to keep it. A weighted entry's host_rewrite_literal wins.
   * `auto` returns undefined: the router substitutes the chosen upstream host's hostname.
   */
  rewriteHost(req: RouteRequest, pick?: ClusterPick): string | undefined {
    const entryHost = pick?.weightedEntry?.hostRewriteLiteral;
    if (entryHost !== undefined) return entryHost;
    const h = this.hostRewrite;
    switch (h.kind) {
      case 'literal':
        return h.value;
      case 'header': {
        const v = getHeaderFirst(req.headers, h.header);
        return v === undefined || v === '' ? undefined : v;
      }
      case 'path_regex': {
        const end = pathEndIndex(req.path);
        return substitute(h.rewrite, end === req.path.length ? req.path : req.path.slice(0, end));
      }
      default:
        return undefined;
    }
  }

  /** Whether auto_host_rewrite is on (host comes from the chosen endpoint's hostname). */
  get isAutoHostRewrite(): boolean {
    return this.hostRewrite.kind === 'auto';
  }
}

/** Compiles a RegexMatchAndSubstitute at `path`. */
export function compileRegexRewrite(rr: RegexMatchAndSubstitute__Output, path: string, sink: CompileSink): CompiledSubstitution | undefined {
  try {
    return compileSubstitution(rr.pattern?.regex ?? '', rr.substitution);
  } catch (err) {
    diagnose(sink, `${path}.pattern.regex`, err);
    return undefined;
  }
}

/**
 * Compiles a RouteAction at `path` (`virtual_hosts[i].routes[j].route`). Weighted cluster entries come
 * from the caller (which compiles their header mutations and per-filter configs). The route's match
 * determines the prefix_rewrite semantics, passed as `pathRewriteBase`.
 */
export function compileRouteAction(
  a: RouteAction__Output,
  path: string,
  pathRewriteBase: { matchedLength: number; replacesWholePath: boolean },
  weighted: CompiledWeightedCluster[],
  inherited: RouteActionInherited,
  hashPolicy: CompiledHashPolicy | undefined,
  sink: CompileSink,
): CompiledRouteAction {
  const pathRewrite: CompiledPathRewrite = { prefixRewrite: undefined, regexRewrite: undefined, ...pathRewriteBase };
  const rewrites = [a.prefix_rewrite !== '', a.regex_rewrite !== null, a.path_rewrite_policy !== null].filter(Boolean).length;
  if (rewrites > 1) {
    sink.diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path, message: 'only one of prefix_rewrite, regex_rewrite or path_rewrite_policy may be set' });
  }
  if (a.prefix_rewrite !== '') pathRewrite.prefixRewrite = a.prefix_rewrite;
  if (a.regex_rewrite) pathRewrite.regexRewrite = compileRegexRewrite(a.regex_rewrite, `${path}.regex_rewrite`, sink);
  if (a.path_rewrite_policy) {
    sink.diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_UNSUPPORTED', path: `${path}.path_rewrite_policy`, message: `path_rewrite_policy ${a.path_rewrite_policy.name} is not supported` });
  }

  const out = new CompiledRouteAction(pathRewrite);
  switch (a.cluster_specifier) {
    case 'cluster':
      out.clusterSpecifier = 'cluster';
      out.cluster = a.cluster ?? '';
      out.staticPick = { cluster: out.cluster };
      break;
    case 'cluster_header':
      out.clusterSpecifier = 'cluster_header';
      out.clusterHeader = (a.cluster_header ?? '').toLowerCase();
      break;
    case 'weighted_clusters': {
      const wc = a.weighted_clusters!;
      out.clusterSpecifier = 'weighted_clusters';
      out.weightedClusters = weighted;
      const sum = weighted.reduce((s, e) => s + e.weight, 0);
      if (wc.total_weight !== null && wc.total_weight.value !== sum) {
        sink.diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: `${path}.weighted_clusters.total_weight`, message: `sum of weights (${sum}) does not equal total_weight (${wc.total_weight.value})` });
      }
      if (sum <= 0) {
        sink.diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: `${path}.weighted_clusters`, message: 'sum of weights must be greater than 0' });
      }
      out.totalWeight = Math.max(sum, 1);
      out.randomValueHeader = (wc.header_name ?? '').toLowerCase();
      break;
    }
    default:
      sink.diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_UNSUPPORTED', path: `${path}.${a.cluster_specifier ?? 'cluster_specifier'}`, message: a.cluster_specifier ? `${a.cluster_specifier} is not supported` : 'no cluster specifier set' });
  }
  out.clusterNotFoundResponseCode = CLUSTER_NOT_FOUND_CODES[a.cluster_not_found_response_code] ?? 503;

  switch (a.host_rewrite_specifier) {
    case 'host_rewrite_literal':
      out.hostRewrite = { kind: 'literal', value: a.host_rewrite_literal ?? '' };
      break;
    case 'host_rewrite_header':
      out.hostRewrite = { kind: 'header', header: (a.host_rewrite_header ?? '').toLowerCase() };
      break;
    case 'auto_host_rewrite':
      if (a.auto_host_rewrite?.value) out.hostRewrite = { kind: 'auto' };
      break;
    case 'host_rewrite_path_regex': {
      const rw = compileRegexRewrite(a.host_rewrite_path_regex!, `${path}.host_rewrite_path_regex`, sink);
      if (rw) out.hostRewrite = { kind: 'path_regex', rewrite: rw };
      break;
    }
    default:
  }
  out.appendXForwardedHost = a.append_x_forwarded_host;

  out.timeoutMs = a.timeout ? durationMs(a.timeout) : DEFAULT_ROUTE_TIMEOUT_MS;
  out.idleTimeoutMs = a.idle_timeout ? durationMs(a.idle_timeout) : undefined;
  const msd = a.max_stream_duration;
  if (msd) {
    out.maxStreamDurationMs = msd.max_stream_duration ? durationMs(msd.max_stream_duration) : undefined;
    out.grpcTimeoutHeaderMaxMs = msd.grpc_timeout_header_max ? durationMs(msd.grpc_timeout_header_max) : undefined;
    out.grpcTimeoutHeaderOffsetMs = msd.grpc_timeout_header_offset ? durationMs(msd.grpc_timeout_header_offset) : undefined;
  } else {
    // Deprecated max_grpc_timeout / grpc_timeout_offset carry the same meaning for the grpc-timeout header.
    out.grpcTimeoutHeaderMaxMs = a.max_grpc_timeout ? durationMs(a.max_grpc_timeout) : undefined;
    out.grpcTimeoutHeaderOffsetMs = a.grpc_timeout_offset ? durationMs(a.grpc_timeout_offset) : undefined;
  }

  // Envoy: a route's retry policy replaces the virtual host's entirely (no field merge).
  out.retryPolicy = a.retry_policy ? compileRetryPolicy(a.retry_policy, `${path}.retry_policy`, sink) : inherited.retryPolicy;
  out.hashPolicy = hashPolicy;
  const upgrades = new Map<string, boolean>();
  for (const u of a.upgrade_configs) {
    const enabled = u.enabled ? u.enabled.value : true;
    upgrades.set(u.upgrade_type.toLowerCase(), enabled);
    if (enabled && u.upgrade_type.toLowerCase() === 'connect' && u.connect_config !== null) out.terminateConnect = true;
  }
  out.upgrades = upgrades;
  out.mirrorPolicies = a.request_mirror_policies.length > 0 ? compileMirrorPolicies(a.request_mirror_policies) : inherited.mirrorPolicies;
  out.priority = a.priority === 'HIGH' ? 'HIGH' : 'DEFAULT';
  out.metadataMatch = a.metadata_match;
  out.cors = a.cors ?? inherited.cors;
  return out;
}

const REDIRECT_CODES: Record<string, number> = { MOVED_PERMANENTLY: 301, FOUND: 302, SEE_OTHER: 303, TEMPORARY_REDIRECT: 307, PERMANENT_REDIRECT: 308 };

/** A compiled RedirectAction. */
export class CompiledRedirect {
  /** 301 (default), 302, 303, 307 or 308. */
  status = 301;
  /** Lowercased scheme to redirect to ('' = keep the request's). */
  scheme = '';
  host = '';
  /** `:port` or ''. */
  port = '';
  /** path_redirect, or undefined. */
  pathRedirect: string | undefined;
  pathRedirectHasQuery = false;
  stripQuery = false;
  pathRewrite: CompiledPathRewrite;

  constructor(pathRewrite: CompiledPathRewrite) {
    this.pathRewrite = pathRewrite;
  }

  /**
   * The Location for `req`, following Envoy's Http::Utility::newUri: scheme from scheme_redirect /
   * https_redirect else the request's; host from host_redirect else the request's, dropping its port when
   * port_redirect is set or when the scheme changes away from a default port (:80 for http, :443 for
   * https); path from path_redirect (its own query wins; else the request's query is kept) or the
   * request path after prefix_rewrite / regex_rewrite; strip_query drops the query.
   */
  redirectLocation(req: RouteRequest): string {
    const scheme = this.scheme !== '' ? this.scheme : req.scheme;
    let host: string;
    if (this.host !== '') {
      // Envoy would concatenate host_redirect's own port with port_redirect; we replace it instead.
      host = this.port !== '' ? stripPort(this.host) : this.host;
    } else {
      host = requestHostForRedirect(req, scheme, this.port);
    }
    let path: string;
    if (this.pathRedirect !== undefined) {
      if (this.pathRedirectHasQuery) {
        path = this.pathRedirect;
      } else {
        const q = req.path.indexOf('?');
        path = q < 0 ? this.pathRedirect : this.pathRedirect + req.path.slice(q);
      }
    } else {
      path = applyPathRewrite(this.pathRewrite, req.path);
    }
    if (!path.startsWith('/')) path = '/' + path;
    if (this.stripQuery && !this.pathRedirectHasQuery) {
      const q = path.indexOf('?');
      if (q >= 0) path = path.slice(0, q);
    }
    return `${scheme}://${host}${this.port}${path}`;
  }
}

/** Host without its `:port` (IPv6 literals keep their brackets). */
export function stripPort(host: string): string {
  const i = portIndex(host);
  return i < 0 ? host : host.slice(0, i);
}

/** Index of the `:` that starts the port in a Host value, or -1. */
export function portIndex(host: string): number {
  if (host.startsWith('[')) {
    const end = host.indexOf(']:');
    return end < 0 ? -1 : end + 1;
  }
  return host.lastIndexOf(':');
}

function requestHostForRedirect(req: RouteRequest, newScheme: string, newPort: string): string {
  const host = req.authority;
  const i = portIndex(host);
  if (i < 0) return host;
  const port = host.slice(i);
  let remove = newPort !== '';
  // Envoy decides on X-Forwarded-Proto, so http://foo:80 served over TLS keeps its port.
  if (newScheme !== req.scheme) {
    remove ||= (req.scheme === 'https' && port === ':443') || (req.scheme === 'http' && port === ':80');
  }
  return remove ? host.slice(0, i) : host;
}

/** Compiles a RedirectAction at `path`. */
export function compileRedirect(r: RedirectAction__Output, path: string, base: { matchedLength: number; replacesWholePath: boolean }, sink: CompileSink): CompiledRedirect {
  const pathRewrite: CompiledPathRewrite = { prefixRewrite: undefined, regexRewrite: undefined, ...base };
  const out = new CompiledRedirect(pathRewrite);
  out.status = REDIRECT_CODES[r.response_code] ?? 301;
  if (r.scheme_rewrite_specifier === 'https_redirect' && r.https_redirect) out.scheme = 'https';
  else if (r.scheme_rewrite_specifier === 'scheme_redirect') out.scheme = (r.scheme_redirect ?? '').toLowerCase();
  out.host = r.host_redirect;
  out.port = r.port_redirect !== 0 ? `:${r.port_redirect}` : '';
  out.stripQuery = r.strip_query;
  switch (r.path_rewrite_specifier) {
    case 'path_redirect':
      out.pathRedirect = r.path_redirect ?? '';
      out.pathRedirectHasQuery = out.pathRedirect.includes('?');
      break;
    case 'prefix_rewrite':
      pathRewrite.prefixRewrite = r.prefix_rewrite ?? '';
      break;
    case 'regex_rewrite':
      if (r.regex_rewrite) pathRewrite.regexRewrite = compileRegexRewrite(r.regex_rewrite, `${path}.regex_rewrite`, sink);
      break;
    default:
  }
  return out;
}

/** A compiled DirectResponseAction. */
export interface CompiledDirectResponse {
  status: number;
  /** Body bytes, read at compile time; undefined for no body. */
  body: Buffer | undefined;
}

/**
 * Compiles a DirectResponseAction at `path`. A `filename` body is read now (config time), so requests
 * never touch the filesystem. Bodies above `maxBodyBytes` are rejected as Envoy does.
 */
export function compileDirectResponse(d: DirectResponseAction__Output, path: string, maxBodyBytes: number, sink: CompileSink): CompiledDirectResponse {
  if (d.status < 200 || d.status >= 600) {
    sink.diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: `${path}.status`, message: `status ${d.status} is outside [200, 600)` });
  }
  let body: Buffer | undefined;
  const b = d.body;
  if (b) {
    switch (b.specifier) {
      case 'inline_string':
        body = Buffer.from(b.inline_string ?? '', 'utf8');
        break;
      case 'inline_bytes':
        body = b.inline_bytes ?? Buffer.alloc(0);
        break;
      case 'filename':
        try {
          body = readFileSync(b.filename ?? '');
        } catch (err) {
          sink.diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_UNREADABLE', path: `${path}.body.filename`, message: `cannot read ${b.filename}: ${(err as Error).message}` });
        }
        break;
      default:
        sink.diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_UNSUPPORTED', path: `${path}.body`, message: `DataSource ${b.specifier ?? '(unset)'} is not supported for direct_response` });
    }
  }
  if (body !== undefined && body.length > maxBodyBytes) {
    sink.diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: `${path}.body`, message: `body is ${body.length} bytes, above max_direct_response_body_size_bytes ${maxBodyBytes}` });
  }
  return { status: d.status, body };
}

/** Compiles a typed_per_filter_config map into a Map (most specific levels overlay earlier ones). */
export function overlayFilterConfig(base: ReadonlyMap<string, Any__Output>, own: { [key: string]: Any__Output }): ReadonlyMap<string, Any__Output> {
  const keys = Object.keys(own);
  if (keys.length === 0) return base;
  const m = new Map(base);
  for (const k of keys) m.set(k, own[k]!);
  return m;
}
