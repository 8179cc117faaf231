/**
 * Compiled route tables: an Envoy RouteConfiguration (envoy.config.route.v3) turned, once per RDS
 * update, into a structure the router matches per request without compiling regexes and with (almost)
 * no allocation. Envoy's route_components.proto and the "HTTP routing" architecture overview are the
 * spec.
 *
 * API:
 * ```ts
 * const table = compileRouteConfig(rc, { stripMatchingHostPort: 8080 }); // throws ConfigError
 * const m = table.match(req, random);          // RouteMatch | undefined (undefined → 404 NR)
 * m.route.kind                                 // 'route' | 'redirect' | 'direct_response' | 'non_forwarding'
 * m.route.route!.pickCluster(req, random2)     // { cluster, weightedEntry? } | undefined (→ cluster_not_found code)
 * rewritePath(m.route, req.path)               // prefix_rewrite / regex_rewrite, query kept
 * m.route.redirect!.redirectLocation(req)      // Location for redirects, with m.route.redirect!.status
 * applyHeaderMutations(headers, requestHeaderChain(m.route, pick), ctx)
 * m.route.perFilterConfig('envoy.filters.http.fault')
 * ```
 *
 * Virtual host selection (Envoy RouteMatcher::findVirtualHost): the Host is lowercased; an exact domain
 * wins, then the longest suffix wildcard (`*.foo.com`, `*-bar.foo.com`), then the longest prefix wildcard
 * (`foo.*`), then `*`. Wildcards never match the empty string. The Host is matched with its port unless
 * `ignore_port_in_host_matching` / `stripAnyHostPort` or `stripMatchingHostPort` (the listener's port,
 * Envoy's HCM strip_matching_host_port) applies; domains may carry ports (`reviews:9080`).
 *
 * Routes are tried in order and the first match wins. Path specifiers: prefix (on the path including
 * the query, as Envoy), path and path_separated_prefix (on the path without query/fragment), safe_regex
 * (full match on the path without query; case_sensitive does not apply), connect_matcher (CONNECT).
 * tls_context reads RouteRequest.isTls plus the optional isPeerCertPresented / isPeerCertValidated (absent
 * = no certificate). runtime_fraction uses its default_value only (Sloop has no runtime layer) against
 * the `random` passed to match(). dynamic_metadata matchers never match (no dynamic metadata exists at
 * routing time); that is reported as a warning.
 */
import type { RouteConfiguration__Output } from '../../../xds/gen/envoy/config/route/v3/RouteConfiguration.ts';
import type { VirtualHost__Output } from '../../../xds/gen/envoy/config/route/v3/VirtualHost.ts';
import type { Route__Output } from '../../../xds/gen/envoy/config/route/v3/Route.ts';
import type { RouteMatch__Output } from '../../../xds/gen/envoy/config/route/v3/RouteMatch.ts';
import type { Any__Output } from '../../../xds/gen/google/protobuf/Any.ts';
import type { Metadata__Output } from '../../../xds/gen/envoy/config/core/v3/Metadata.ts';
import type { HeaderValueOption__Output } from '../../../xds/gen/envoy/config/core/v3/HeaderValueOption.ts';
import type { Diagnostic } from '../../../shared/errors.ts';
import { ConfigError } from '../../../shared/errors.ts';
import type { CompiledHeaderMatcher, CompiledQueryParameterMatcher, CompileSink, RouteRequest } from './matchers.ts';
import { compileHeaderMatcher, compileQueryParameterMatcher, compileRegexAt, getHeaderFirst, matchQueryParameters, matchRequestHeaders } from './matchers.ts';
import type { CompiledHeaderMutation } from './header-mutation.ts';
import { compileHeaderMutation } from './header-mutation.ts';
import type { ClusterPick, CompiledDirectResponse, CompiledMirrorPolicy, CompiledWeightedCluster } from './route-action.ts';
import {
  CompiledRedirect,
  CompiledRouteAction,
  DEFAULT_MAX_DIRECT_RESPONSE_BODY_BYTES,
  applyPathRewrite,
  compileDirectResponse,
  compileMirrorPolicies,
  compileRedirect,
  compileRouteAction,
  fractionOf,
  overlayFilterConfig,
  pathEndIndex,
  portIndex,
} from './route-action.ts';
import type { CompiledRetryPolicy } from './retry-policy.ts';
import { compileRetryPolicy } from './retry-policy.ts';
import { compileHashPolicy } from './hash-policy.ts';

export type { RouteRequest } from './matchers.ts';

/** Options from the listener / connection manager that affect virtual host selection. */
export interface CompileRouteOptions {
  /** Ignore any `:port` in the Host (HCM strip_any_host_port). */
  stripAnyHostPort?: boolean;
  /** Ignore the Host's port when it equals this (the listener's) port (HCM strip_matching_host_port). */
  stripMatchingHostPort?: number;
}

/** What a route does. `filter_action` routes compile to `non_forwarding`. */
export type RouteActionKind = 'route' | 'redirect' | 'direct_response' | 'non_forwarding';

const PATH_PREFIX = 0;
const PATH_EXACT = 1;
const PATH_REGEX = 2;
const PATH_SEPARATED_PREFIX = 3;
const PATH_CONNECT = 4;

/** A compiled RouteMatch. */
export interface CompiledRouteMatch {
  /** 0 prefix, 1 path, 2 safe_regex, 3 path_separated_prefix, 4 connect_matcher. */
  pathKind: 0 | 1 | 2 | 3 | 4;
  /** The prefix or path; lowercased when not case-sensitive. */
  path: string;
  caseSensitive: boolean;
  regex: RegExp | undefined;
  headers: readonly CompiledHeaderMatcher[];
  queryParameters: readonly CompiledQueryParameterMatcher[];
  isGrpc: boolean;
  /** Probability in [0, 1], or -1 without runtime_fraction. */
  runtimeFraction: number;
  tlsPresented: boolean | undefined;
  tlsValidated: boolean | undefined;
  /** dynamic_metadata matchers exist: never matches (see file header). */
  isNeverMatching: boolean;
}

/** Route decorator (tracing span name). */
export interface CompiledDecorator {
  operation: string;
  /** Default true. */
  propagate: boolean;
}

/** One compiled route. Immutable after compileRouteConfig returns. */
export class CompiledRoute {
  name: string;
  kind: RouteActionKind;
  match: CompiledRouteMatch;
  route: CompiledRouteAction | undefined;
  redirect: CompiledRedirect | undefined;
  directResponse: CompiledDirectResponse | undefined;
  /** Request mutations of route, virtual host and route config, in application order. */
  requestHeaderChain: readonly CompiledHeaderMutation[] = [];
  responseHeaderChain: readonly CompiledHeaderMutation[] = [];
  /** typed_per_filter_config of route config, virtual host and route merged, most specific winning. */
  typedPerFilterConfig: ReadonlyMap<string, Any__Output> = new Map();
  metadata: Metadata__Output | null = null;
  decorator: CompiledDecorator | undefined;
  /** Route's per_request_buffer_limit_bytes, else the virtual host's. */
  perRequestBufferLimitBytes: number | undefined;

  constructor(name: string, kind: RouteActionKind, match: CompiledRouteMatch) {
    this.name = name;
    this.kind = kind;
    this.match = match;
  }

  /** The raw typed_per_filter_config for filter `name` (route, else virtual host, else route config). */
  perFilterConfig(name: string): Any__Output | undefined {
    return this.typedPerFilterConfig.get(name);
  }
}

/** A compiled VirtualHost. */
export class CompiledVirtualHost {
  name: string;
  domains: readonly string[];
  routes: CompiledRoute[] = [];
  requireTls: 'NONE' | 'EXTERNAL_ONLY' | 'ALL' = 'NONE';
  retryPolicy: CompiledRetryPolicy | undefined;
  typedPerFilterConfig: ReadonlyMap<string, Any__Output> = new Map();
  metadata: Metadata__Output | null = null;
  includeRequestAttemptCount = false;
  includeAttemptCountInResponse = false;
  /** Prebuilt matches, parallel to `routes`. */
  matches: RouteMatch[] = [];
  /** The 301-to-https route used when require_tls rejects a request. */
  tlsRedirect: RouteMatch | undefined;

  constructor(name: string, domains: readonly string[]) {
    this.name = name;
    this.domains = domains;
  }

  /** typed_per_filter_config for `name` at virtual host (else route config) level. */
  perFilterConfig(name: string): Any__Output | undefined {
    return this.typedPerFilterConfig.get(name);
  }
}

/** The result of matching: prebuilt and shared, never mutate. */
export interface RouteMatch {
  virtualHost: CompiledVirtualHost;
  route: CompiledRoute;
}

/** A compiled RouteConfiguration. */
export interface CompiledRouteConfig {
  name: string;
  virtualHosts: readonly CompiledVirtualHost[];
  /** Warnings found while compiling (errors throw). */
  diagnostics: readonly Diagnostic[];
  /** internal_only_headers, lowercased: the connection manager strips them from external requests. */
  internalOnlyHeaders: readonly string[];
  /** validate_clusters, if set. */
  validateClusters: boolean | undefined;
  /** Every cluster named statically (cluster, weighted entries, mirrors), for validation. */
  referencedClusters: ReadonlySet<string>;
  /** Virtual host for a Host / :authority value, or undefined (→ 404). */
  selectVirtualHost(authority: string): CompiledVirtualHost | undefined;
  /**
   * The first matching route. `random` in [0, 1) drives runtime_fraction; pass the same per-request
   * value Envoy would (its stream random). Undefined means no route: respond 404 (flag NR).
   */
  match(req: RouteRequest, random: number): RouteMatch | undefined;
}

/** The request header mutation chain for a route and (optionally) the weighted cluster it picked. */
export function requestHeaderChain(route: CompiledRoute, pick?: ClusterPick): readonly CompiledHeaderMutation[] {
  return pick?.weightedEntry ? pick.weightedEntry.requestHeaderChain : route.requestHeaderChain;
}

/** The response header mutation chain for a route and (optionally) the weighted cluster it picked. */
export function responseHeaderChain(route: CompiledRoute, pick?: ClusterPick): readonly CompiledHeaderMutation[] {
  return pick?.weightedEntry ? pick.weightedEntry.responseHeaderChain : route.responseHeaderChain;
}

/**
 * The path to forward for `route` (or to redirect to, before path_redirect): prefix_rewrite swaps the
 * matched prefix (`matchedPrefixLength` overrides the compiled one), regex_rewrite substitutes on the path
 * without the query; the query string is kept. Returns `path` unchanged when the route rewrites nothing.
 */
export function rewritePath(route: CompiledRoute, path: string, matchedPrefixLength?: number): string {
  const rw = route.route?.pathRewrite ?? route.redirect?.pathRewrite;
  return rw === undefined ? path : applyPathRewrite(rw, path, matchedPrefixLength);
}

/** ASCII case-insensitive `s.startsWith(lowerPrefix)`, without allocating. */
function startsWithIgnoreCase(s: string, lowerPrefix: string): boolean {
  const n = lowerPrefix.length;
  if (s.length < n) return false;
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c >= 65 && c <= 90) c += 32;
    if (c !== lowerPrefix.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * Envoy Grpc::Common::hasGrpcContentType: content-type is exactly application/grpc or starts with
 * application/grpc+ (application/grpc-web is not gRPC).
 */
function isGrpcRequest(headers: readonly string[]): boolean {
  const ct = getHeaderFirst(headers, 'content-type');
  if (ct === undefined || !ct.startsWith('application/grpc')) return false;
  return ct.length === 16 || ct.charCodeAt(16) === 43 /* + */;
}

function routeMatches(m: CompiledRouteMatch, req: RouteRequest, path: string, pathEnd: number, random: number): boolean {
  switch (m.pathKind) {
    case PATH_PREFIX:
      if (m.caseSensitive ? !path.startsWith(m.path) : !startsWithIgnoreCase(path, m.path)) return false;
      break;
    case PATH_EXACT:
      if (pathEnd !== m.path.length || (m.caseSensitive ? !path.startsWith(m.path) : !startsWithIgnoreCase(path, m.path))) return false;
      break;
    case PATH_REGEX:
      if (m.regex === undefined || !m.regex.test(pathEnd === path.length ? path : path.slice(0, pathEnd))) return false;
      break;
    case PATH_SEPARATED_PREFIX: {
      const n = m.path.length;
      if (pathEnd < n || (pathEnd > n && path.charCodeAt(n) !== 47 /* / */)) return false;
      if (m.caseSensitive ? !path.startsWith(m.path) : !startsWithIgnoreCase(path, m.path)) return false;
      break;
    }
    default:
      if (req.method !== 'CONNECT') return false;
  }
  if (m.isNeverMatching) return false;
  if (m.runtimeFraction >= 0 && !(random < m.runtimeFraction)) return false;
  if (m.isGrpc && !isGrpcRequest(req.headers)) return false;
  if (m.headers.length !== 0 && !matchRequestHeaders(m.headers, req)) return false;
  if (m.queryParameters.length !== 0 && !matchQueryParameters(m.queryParameters, path)) return false;
  if (m.tlsPresented !== undefined && m.tlsPresented !== (req.isTls && req.isPeerCertPresented === true)) return false;
  if (m.tlsValidated !== undefined && m.tlsValidated !== (req.isTls && req.isPeerCertValidated === true)) return false;
  return true;
}

/** Wildcard domains of one length, tried longest first. */
interface WildcardGroup {
  length: number;
  /** The only entry when the group has one (compare with endsWith/startsWith, no allocation). */
  single: string | undefined;
  singleHost: CompiledVirtualHost | undefined;
  map: Map<string, CompiledVirtualHost>;
}

class RouteTable implements CompiledRouteConfig {
  name = '';
  virtualHosts: CompiledVirtualHost[] = [];
  diagnostics: Diagnostic[] = [];
  internalOnlyHeaders: string[] = [];
  validateClusters: boolean | undefined;
  referencedClusters = new Set<string>();
  exact = new Map<string, CompiledVirtualHost>();
  suffixes: WildcardGroup[] = [];
  prefixes: WildcardGroup[] = [];
  defaultHost: CompiledVirtualHost | undefined;
  stripAnyPort = false;
  /** `:port` to strip, or ''. */
  stripPortSuffix = '';

  selectVirtualHost(authority: string): CompiledVirtualHost | undefined {
    let host = authority.toLowerCase();
    if (this.stripAnyPort || (this.stripPortSuffix !== '' && host.endsWith(this.stripPortSuffix))) {
      const i = portIndex(host);
      if (i >= 0) host = host.slice(0, i);
    }
    const exact = this.exact.get(host);
    if (exact !== undefined) return exact;
    const n = host.length;
    for (let g = 0; g < this.suffixes.length; g++) {
      const group = this.suffixes[g]!;
      if (group.length >= n) continue;
      if (group.single !== undefined) {
        if (host.endsWith(group.single)) return group.singleHost;
      } else {
        const vh = group.map.get(host.slice(n - group.length));
        if (vh !== undefined) return vh;
      }
    }
    for (let g = 0; g < this.prefixes.length; g++) {
      const group = this.prefixes[g]!;
      if (group.length >= n) continue;
      if (group.single !== undefined) {
        if (host.startsWith(group.single)) return group.singleHost;
      } else {
        const vh = group.map.get(host.slice(0, group.length));
        if (vh !== undefined) return vh;
      }
    }
    return this.defaultHost;
  }

  match(req: RouteRequest, random: number): RouteMatch | undefined {
    const vh = this.selectVirtualHost(req.authority);
    if (vh === undefined) return undefined;
    // VirtualHost.require_tls: answer plain-text requests with a 301 to https (EXTERNAL_ONLY spares
    // requests Envoy marked internal with x-envoy-internal: true).
    if (vh.tlsRedirect !== undefined && req.scheme !== 'https') {
      if (vh.requireTls === 'ALL' || getHeaderFirst(req.headers, 'x-envoy-internal') !== 'true') return vh.tlsRedirect;
    }
    const path = req.path;
    const pathEnd = pathEndIndex(path);
    const routes = vh.routes;
    for (let i = 0; i < routes.length; i++) {
      if (routeMatches(routes[i]!.match, req, path, pathEnd, random)) return vh.matches[i];
    }
    return undefined;
  }
}

function addWildcard(groups: WildcardGroup[], key: string, vh: CompiledVirtualHost): void {
  let g = groups.find((x) => x.length === key.length);
  if (!g) {
    g = { length: key.length, single: undefined, singleHost: undefined, map: new Map() };
    groups.push(g);
  }
  g.map.set(key, vh);
}

function finishWildcards(groups: WildcardGroup[]): void {
  groups.sort((a, b) => b.length - a.length);
  for (const g of groups) {
    if (g.map.size === 1) {
      const [[k, v]] = [...g.map];
      g.single = k;
      g.singleHost = v;
    }
  }
}

function errorAt(sink: CompileSink, path: string, message: string, code: Diagnostic['code'] = 'SLOOP_ERR_CONFIG_INVALID'): void {
  sink.diagnostics.push({ severity: 'error', code, path, message });
}

function warnAt(sink: CompileSink, path: string, message: string): void {
  sink.diagnostics.push({ severity: 'warning', code: 'SLOOP_ERR_CONFIG_UNSUPPORTED', path, message });
}

/** Orders mutation levels: most specific first by default, least specific first when it should win last. */
function chain(levels: readonly (CompiledHeaderMutation | undefined)[], mostSpecificWins: boolean): CompiledHeaderMutation[] {
  const present = levels.filter((l): l is CompiledHeaderMutation => l !== undefined);
  return mostSpecificWins ? present.reverse() : present;
}

function compileMatch(m: RouteMatch__Output | null, path: string, sink: CompileSink): CompiledRouteMatch {
  const out: CompiledRouteMatch = {
    pathKind: PATH_PREFIX,
    path: '',
    caseSensitive: true,
    regex: undefined,
    headers: [],
    queryParameters: [],
    isGrpc: false,
    runtimeFraction: -1,
    tlsPresented: undefined,
    tlsValidated: undefined,
    isNeverMatching: false,
  };
  if (m === null) {
    errorAt(sink, path, 'route has no match');
    out.isNeverMatching = true;
    return out;
  }
  out.caseSensitive = m.case_sensitive ? m.case_sensitive.value : true;
  const fold = (s: string): string => (out.caseSensitive ? s : s.toLowerCase());
  switch (m.path_specifier) {
    case 'prefix':
      out.pathKind = PATH_PREFIX;
      out.path = fold(m.prefix ?? '');
      break;
    case 'path':
      out.pathKind = PATH_EXACT;
      out.path = fold(m.path ?? '');
      break;
    case 'safe_regex':
      out.pathKind = PATH_REGEX;
      out.regex = compileRegexAt(sink, `${path}.safe_regex.regex`, m.safe_regex?.regex ?? '', true);
      break;
    case 'path_separated_prefix': {
      out.pathKind = PATH_SEPARATED_PREFIX;
      const p = m.path_separated_prefix ?? '';
      // Envoy's validation: starts with '/', has no '?' or '#', does not end in '/'.
      if (!/^\/[^?#]*[^/]$/.test(p) && p !== '') {
        errorAt(sink, `${path}.path_separated_prefix`, `${JSON.stringify(p)} must start with / and neither end with / nor contain ? or #`);
      }
      out.path = fold(p);
      break;
    }
    case 'connect_matcher':
      out.pathKind = PATH_CONNECT;
      break;
    default:
      errorAt(sink, `${path}.${m.path_specifier ?? 'path_specifier'}`, m.path_specifier ? `${m.path_specifier} is not supported` : 'no path specifier set', m.path_specifier ? 'SLOOP_ERR_CONFIG_UNSUPPORTED' : 'SLOOP_ERR_CONFIG_INVALID');
      out.isNeverMatching = true;
  }
  out.headers = m.headers.map((h, i) => compileHeaderMatcher(h, `${path}.headers[${i}]`, sink));
  out.queryParameters = m.query_parameters.map((q, i) => compileQueryParameterMatcher(q, `${path}.query_parameters[${i}]`, sink));
  out.isGrpc = m.grpc !== null;
  if (m.runtime_fraction) out.runtimeFraction = fractionOf(m.runtime_fraction.default_value);
  if (m.tls_context) {
    out.tlsPresented = m.tls_context.presented ? m.tls_context.presented.value : undefined;
    out.tlsValidated = m.tls_context.validated ? m.tls_context.validated.value : undefined;
  }
  if (m.dynamic_metadata.length > 0) {
    warnAt(sink, `${path}.dynamic_metadata`, 'dynamic_metadata matching is not supported: this route never matches');
    out.isNeverMatching = true;
  }
  return out;
}

interface Level {
  request: CompiledHeaderMutation | undefined;
  response: CompiledHeaderMutation | undefined;
}

function compileLevel(
  o: {
    request_headers_to_add: HeaderValueOption__Output[];
    request_headers_to_remove: string[];
    response_headers_to_add: HeaderValueOption__Output[];
    response_headers_to_remove: string[];
  },
  path: string,
  sink: CompileSink,
): Level {
  return {
    request: compileHeaderMutation(o.request_headers_to_add, o.request_headers_to_remove, path, 'request_headers_to_add', 'request_headers_to_remove', sink),
    response: compileHeaderMutation(o.response_headers_to_add, o.response_headers_to_remove, path, 'response_headers_to_add', 'response_headers_to_remove', sink),
  };
}

interface VhostContext {
  vhost: CompiledVirtualHost;
  level: Level;
  rcLevel: Level;
  mostSpecificWins: boolean;
  mirrorPolicies: readonly CompiledMirrorPolicy[];
  cors: VirtualHost__Output['cors'];
  bufferLimit: number | undefined;
  maxBodyBytes: number;
  table: RouteTable;
}

function compileRoute(r: Route__Output, path: string, cx: VhostContext, sink: CompileSink): CompiledRoute {
  const match = compileMatch(r.match, `${path}.match`, sink);
  // prefix_rewrite replaces what the route matched: the prefix, or the whole exact path; for regex routes
  // Envoy replaces the whole path (query kept).
  const rewriteBase = {
    matchedLength: match.pathKind === PATH_PREFIX || match.pathKind === PATH_EXACT || match.pathKind === PATH_SEPARATED_PREFIX ? match.path.length : 0,
    replacesWholePath: match.pathKind === PATH_REGEX,
  };
  let kind: RouteActionKind;
  switch (r.action) {
    case 'route':
      kind = 'route';
      break;
    case 'redirect':
      kind = 'redirect';
      break;
    case 'direct_response':
      kind = 'direct_response';
      break;
    case 'non_forwarding_action':
      kind = 'non_forwarding';
      break;
    case 'filter_action':
      warnAt(sink, `${path}.filter_action`, 'filter_action is treated as non_forwarding');
      kind = 'non_forwarding';
      break;
    default:
      errorAt(sink, path, 'route has no action');
      kind = 'non_forwarding';
  }
  const route = new CompiledRoute(r.name, kind, match);
  route.metadata = r.metadata;
  route.decorator = r.decorator ? { operation: r.decorator.operation, propagate: r.decorator.propagate ? r.decorator.propagate.value : true } : undefined;
  route.perRequestBufferLimitBytes = r.per_request_buffer_limit_bytes ? r.per_request_buffer_limit_bytes.value : cx.bufferLimit;
  route.typedPerFilterConfig = overlayFilterConfig(cx.vhost.typedPerFilterConfig, r.typed_per_filter_config);

  const own = compileLevel(r, path, sink);
  const wins = cx.mostSpecificWins;
  route.requestHeaderChain = chain([own.request, cx.level.request, cx.rcLevel.request], wins);
  route.responseHeaderChain = chain([own.response, cx.level.response, cx.rcLevel.response], wins);

  if (kind === 'route' && r.route) {
    const a = r.route;
    const at = `${path}.route`;
    const weighted: CompiledWeightedCluster[] = [];
    if (a.cluster_specifier === 'weighted_clusters' && a.weighted_clusters) {
      a.weighted_clusters.clusters.forEach((c, i) => {
        const cpath = `${at}.weighted_clusters.clusters[${i}]`;
        if ((c.name === '') === (c.cluster_header === '')) errorAt(sink, cpath, 'exactly one of name or cluster_header must be set');
        const lvl = compileLevel(c, cpath, sink);
        const entry: CompiledWeightedCluster = {
          name: c.name,
          clusterHeader: c.cluster_header.toLowerCase(),
          weight: c.weight ? c.weight.value : 0,
          hostRewriteLiteral: c.host_rewrite_specifier === 'host_rewrite_literal' ? c.host_rewrite_literal : undefined,
          metadataMatch: c.metadata_match,
          typedPerFilterConfig: overlayFilterConfig(route.typedPerFilterConfig, c.typed_per_filter_config),
          requestHeaderMutation: lvl.request,
          responseHeaderMutation: lvl.response,
          requestHeaderChain: chain([lvl.request, own.request, cx.level.request, cx.rcLevel.request], wins),
          responseHeaderChain: chain([lvl.response, own.response, cx.level.response, cx.rcLevel.response], wins),
          pick: undefined,
        };
        if (c.name !== '') {
          entry.pick = { cluster: c.name, weightedEntry: entry };
          cx.table.referencedClusters.add(c.name);
        }
        weighted.push(entry);
      });
    }
    const hash = compileHashPolicy(a.hash_policy, at, sink);
    route.route = compileRouteAction(a, at, rewriteBase, weighted, { retryPolicy: cx.vhost.retryPolicy, mirrorPolicies: cx.mirrorPolicies, cors: cx.cors }, hash, sink);
    if (route.route.clusterSpecifier === 'cluster' && route.route.cluster !== '') cx.table.referencedClusters.add(route.route.cluster);
    for (const m of route.route.mirrorPolicies) if (m.cluster !== '') cx.table.referencedClusters.add(m.cluster);
  } else if (kind === 'redirect' && r.redirect) {
    route.redirect = compileRedirect(r.redirect, `${path}.redirect`, rewriteBase, sink);
  } else if (kind === 'direct_response' && r.direct_response) {
    route.directResponse = compileDirectResponse(r.direct_response, `${path}.direct_response`, cx.maxBodyBytes, sink);
  }
  return route;
}

function compileVirtualHost(v: VirtualHost__Output, path: string, rc: RouteConfiguration__Output, rcLevel: Level, rcFilterConfig: ReadonlyMap<string, Any__Output>, rcMirrors: readonly CompiledMirrorPolicy[], table: RouteTable, sink: CompileSink): CompiledVirtualHost {
  const vh = new CompiledVirtualHost(v.name, v.domains.map((d) => d.toLowerCase()));
  vh.requireTls = v.require_tls;
  vh.metadata = v.metadata;
  vh.includeRequestAttemptCount = v.include_request_attempt_count;
  vh.includeAttemptCountInResponse = v.include_attempt_count_in_response;
  vh.typedPerFilterConfig = overlayFilterConfig(rcFilterConfig, v.typed_per_filter_config);
  vh.retryPolicy = v.retry_policy ? compileRetryPolicy(v.retry_policy, `${path}.retry_policy`, sink) : undefined;
  if (v.matcher) errorAt(sink, `${path}.matcher`, 'the matcher tree API is not supported; use routes', 'SLOOP_ERR_CONFIG_UNSUPPORTED');
  const cx: VhostContext = {
    vhost: vh,
    level: compileLevel(v, path, sink),
    rcLevel,
    mostSpecificWins: rc.most_specific_header_mutations_wins,
    // Most specific non-empty list wins, no merging (VirtualHost.request_mirror_policies).
    mirrorPolicies: v.request_mirror_policies.length > 0 ? compileMirrorPolicies(v.request_mirror_policies) : rcMirrors,
    cors: v.cors,
    bufferLimit: v.per_request_buffer_limit_bytes ? v.per_request_buffer_limit_bytes.value : undefined,
    maxBodyBytes: rc.max_direct_response_body_size_bytes ? rc.max_direct_response_body_size_bytes.value : DEFAULT_MAX_DIRECT_RESPONSE_BODY_BYTES,
    table,
  };
  v.routes.forEach((r, i) => {
    const route = compileRoute(r, `${path}.routes[${i}]`, cx, sink);
    vh.routes.push(route);
    vh.matches.push({ virtualHost: vh, route });
  });
  if (vh.requireTls !== 'NONE') {
    const redirect = new CompiledRedirect({ prefixRewrite: undefined, regexRewrite: undefined, matchedLength: 0, replacesWholePath: false });
    redirect.scheme = 'https';
    redirect.status = 301;
    const route = new CompiledRoute('', 'redirect', compileMatch({ prefix: '', path_specifier: 'prefix', case_sensitive: null, headers: [], query_parameters: [], grpc: null, runtime_fraction: null, tls_context: null, dynamic_metadata: [] }, path, sink));
    route.redirect = redirect;
    route.typedPerFilterConfig = vh.typedPerFilterConfig;
    vh.tlsRedirect = { virtualHost: vh, route };
  }
  return vh;
}

/**
 * Compiles a RouteConfiguration for matching. Reads direct_response `filename` bodies now. Throws
 * ConfigError (code SLOOP_ERR_CONFIG_INVALID) carrying every error diagnostic, each with its Envoy field
 * path (`virtual_hosts[1].routes[0].match.safe_regex.regex`); warnings are kept on the result. The result
 * is immutable and safe to share across requests.
 */
export function compileRouteConfig(rc: RouteConfiguration__Output, opts: CompileRouteOptions = {}): CompiledRouteConfig {
  const sink: CompileSink = { diagnostics: [] };
  const table = new RouteTable();
  table.name = rc.name;
  table.internalOnlyHeaders = rc.internal_only_headers.map((h) => h.toLowerCase());
  table.validateClusters = rc.validate_clusters ? rc.validate_clusters.value : undefined;
  table.stripAnyPort = opts.stripAnyHostPort === true || rc.ignore_port_in_host_matching;
  table.stripPortSuffix = opts.stripMatchingHostPort !== undefined ? `:${opts.stripMatchingHostPort}` : '';
  if (rc.vhds) warnAt(sink, 'vhds', 'VHDS works only for route tables from a delta ADS stream: here only the inline virtual_hosts are used');
  if (rc.ignore_path_parameters_in_path_matching) warnAt(sink, 'ignore_path_parameters_in_path_matching', 'not supported: path parameters take part in matching');

  const rcLevel = compileLevel(rc, '', sink);
  const rcFilterConfig = overlayFilterConfig(new Map(), rc.typed_per_filter_config);
  const rcMirrors = compileMirrorPolicies(rc.request_mirror_policies);

  // Envoy rejects a domain that appears twice across the configuration, and more than one `*`.
  const seen = new Map<string, string>();
  rc.virtual_hosts.forEach((v, i) => {
    const path = `virtual_hosts[${i}]`;
    const vh = compileVirtualHost(v, path, rc, rcLevel, rcFilterConfig, rcMirrors, table, sink);
    table.virtualHosts.push(vh);
    if (v.domains.length === 0) errorAt(sink, `${path}.domains`, 'at least one domain is required');
    vh.domains.forEach((d, j) => {
      const at = `${path}.domains[${j}]`;
      const prior = seen.get(d);
      if (prior !== undefined) {
        errorAt(sink, at, d === '*' ? `only a single wildcard domain is permitted in route ${rc.name} (also in ${prior})` : `duplicate domain ${JSON.stringify(d)} in route ${rc.name} (also in ${prior})`);
        return;
      }
      seen.set(d, `virtual_hosts[${i}] ${v.name}`);
      if (d === '*') table.defaultHost = vh;
      else if (d.startsWith('*')) addWildcard(table.suffixes, d.slice(1), vh);
      else if (d.endsWith('*')) addWildcard(table.prefixes, d.slice(0, -1), vh);
      else table.exact.set(d, vh);
    });
  });
  finishWildcards(table.suffixes);
  finishWildcards(table.prefixes);

  if (sink.diagnostics.some((d) => d.severity === 'error')) throw new ConfigError(sink.diagnostics, `RouteConfiguration ${rc.name}`);
  table.diagnostics = sink.diagnostics;
  return table;
}

/**
 * A RouteMatch outside a route table (jwt_authn's RequirementRule.match): compiled with the route table's rules,
 * matched against a request as a route would be. Diagnostics go to `sink` with paths under `path`.
 */
export function compileStandaloneRouteMatch(m: RouteMatch__Output | null, path: string, sink: CompileSink): CompiledRouteMatch {
  return compileMatch(m, path, sink);
}

/** Whether `req` matches a RouteMatch compiled by {@link compileStandaloneRouteMatch}. */
export function standaloneRouteMatches(m: CompiledRouteMatch, req: RouteRequest, random: number): boolean {
  return routeMatches(m, req, req.path, pathEndIndex(req.path), random);
}
