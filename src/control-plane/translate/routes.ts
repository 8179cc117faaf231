/**
 * RDS for one proxy (Istio's pilot/pkg/networking/core/route/route.go): a RouteConfiguration per outbound HTTP
 * port named by the port (`"9080"`), `http_proxy` for the explicit-proxy chain of virtualOutbound, and for
 * proxyless gRPC one per service port named `HOST:PORT`. A virtual host per service port, `HOST:PORT`, with
 * Istio's domains; routes from the mesh VirtualService for the host, else Istio's default route. Pure.
 */
import type { Route } from '../../xds/gen/envoy/config/route/v3/Route.ts';
import type { RouteConfiguration } from '../../xds/gen/envoy/config/route/v3/RouteConfiguration.ts';
import type { VirtualHost } from '../../xds/gen/envoy/config/route/v3/VirtualHost.ts';
import type { Diagnostic } from '../../shared/errors.ts';
import type { Destination, Headers, HTTPMatchRequest, HTTPRoute, StringMatch, VirtualService } from '../config/model.ts';
import { resolveShortname, selectorMatches, DOMAIN_SUFFIX } from '../config/hosts.ts';
import { isIpAddress } from '../config/schema/service-entry.ts';
import type { ProxyInfo } from '../registry/proxy-info.ts';
import type { RegistryPort, RegistryService } from '../registry/registry.ts';
import type { PushContext } from './push-context.ts';
import { effectivePolicy } from './traffic-policy.ts';
import {
  FILTER, HTTP_PROXY_ROUTE_NAME, PASSTHROUGH_CLUSTER, TYPE, any, cmp, diag, duration, fractionalPercent, isHttpProtocol,
  outboundClusterName, sortByName,
} from './util.ts';

type HeaderMatcher = NonNullable<NonNullable<Route['match']>['headers']>[number];
type RouteAction = NonNullable<Route['route']>;
type HeaderValueOption = NonNullable<Route['request_headers_to_add']>[number];

/** Istio's default retry policy (pilot/pkg/networking/core/route/retry/retry.go DefaultPolicy). */
export const DEFAULT_RETRY_ON = 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes';
const PREVIOUS_HOSTS = 'envoy.retry_host_predicates.previous_hosts';

/** gRPC status names (Istio's fault abort grpcStatus) → codes. */
const GRPC_STATUS: Readonly<Record<string, number>> = {
  OK: 0, CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, ALREADY_EXISTS: 6, PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9, ABORTED: 10, OUT_OF_RANGE: 11, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14,
  DATA_LOSS: 15, UNAUTHENTICATED: 16,
};

const REDIRECT_CODES: Readonly<Record<number, string>> = { 301: 'MOVED_PERMANENTLY', 302: 'FOUND', 303: 'SEE_OTHER', 307: 'TEMPORARY_REDIRECT', 308: 'PERMANENT_REDIRECT' };

/** What kind of route configuration a virtual host is built for. */
interface VhostMode {
  /** Proxyless gRPC: no default retries, no per-filter configs (its HCM has only the router), no mirrors. */
  proxyless: boolean;
  /** The explicit HTTP proxy config: `host:port` domains (bare only for port 80) and a CONNECT route first. */
  httpProxy: boolean;
}

/** Every HTTP port of the visible services, ascending. */
export function outboundHttpPorts(services: readonly RegistryService[]): number[] {
  const ports = new Set<number>();
  for (const s of services) for (const p of s.ports) if (isHttpProtocol(p.protocol)) ports.add(p.port);
  return [...ports].sort((a, b) => a - b);
}

/** Builds the proxy's RouteConfigurations, sorted by name. */
export function buildRoutes(push: PushContext, proxy: ProxyInfo, services: readonly RegistryService[], diagnostics: Diagnostic[]): RouteConfiguration[] {
  const out: RouteConfiguration[] = [];
  const classKey = push.proxyClassKey(proxy);
  if (proxy.type === 'grpc') {
    for (const s of services) {
      if (s.resolution !== 'EDS') continue;
      for (const p of s.ports) {
        if (p.protocol === 'UDP') continue;
        const name = `${s.hostname}:${p.port}`;
        const vh = keptVirtualHost(push, classKey, proxy, s, p, { proxyless: true, httpProxy: false }, diagnostics, new Set());
        out.push({ name, virtual_hosts: [vh], validate_clusters: { value: false } });
      }
    }
    return sortByName(out, (r) => r.name ?? '');
  }
  const mode = push.outboundTrafficMode(proxy);
  for (const port of outboundHttpPorts(services)) {
    const seen = new Set<string>();
    const vhosts: VirtualHost[] = [];
    for (const s of services) {
      const p = s.ports.find((x) => x.port === port && isHttpProtocol(x.protocol));
      if (p !== undefined) vhosts.push(keptVirtualHost(push, classKey, proxy, s, p, { proxyless: false, httpProxy: false }, diagnostics, seen));
    }
    vhosts.push(catchAllVirtualHost(mode));
    out.push({ name: String(port), virtual_hosts: vhosts, validate_clusters: { value: false } });
  }
  // The explicit proxy's routes: every visible HTTP service port, reached by `host:port` (HTTP_PROXY clients send
  // absolute-form requests, or CONNECT host:port, to virtualOutbound).
  const seen = new Set<string>();
  const vhosts: VirtualHost[] = [];
  for (const s of services) {
    for (const p of s.ports) {
      if (isHttpProtocol(p.protocol)) vhosts.push(keptVirtualHost(push, classKey, proxy, s, p, { proxyless: false, httpProxy: true }, diagnostics, seen));
    }
  }
  vhosts.push(catchAllVirtualHost(mode));
  out.push({ name: HTTP_PROXY_ROUTE_NAME, virtual_hosts: vhosts, validate_clusters: { value: false } });
  return sortByName(out, (r) => r.name ?? '');
}

function catchAllVirtualHost(mode: 'ALLOW_ANY' | 'REGISTRY_ONLY'): VirtualHost {
  // Istio's allow_any / block_all virtual hosts for hosts the registry doesn't know.
  if (mode === 'REGISTRY_ONLY') {
    return { name: 'block_all', domains: ['*'], routes: [{ name: 'block_all', match: { prefix: '/' }, direct_response: { status: 502 } }], include_request_attempt_count: true };
  }
  return {
    name: 'allow_any', domains: ['*'], include_request_attempt_count: true,
    routes: [{ name: 'allow_any', match: { prefix: '/' }, route: { cluster: PASSTHROUGH_CLUSTER, timeout: { seconds: 0, nanos: 0 } } }],
  };
}

/**
 * Istio's domains for a service port (generateVirtualHostDomains): the host and, for Kubernetes hosts, its
 * shorter forms (`reviews.default.svc`, `reviews.default`, and `reviews` from the same namespace), each also with
 * `:PORT`; ServiceEntry IP addresses too. For the explicit proxy only `host:port`, plus the bare names on port 80
 * (a Host header without a port means 80).
 */
export function virtualHostDomains(service: RegistryService, port: number, proxy: ProxyInfo, httpProxy: boolean): string[] {
  const names = [service.hostname];
  const k8sSuffix = `.svc.${DOMAIN_SUFFIX}`;
  if (service.kind === 'Service' && service.hostname.endsWith(k8sSuffix)) {
    const base = service.hostname.slice(0, -DOMAIN_SUFFIX.length - 1); // name.ns.svc
    const [name, ns] = base.split('.');
    if (proxy.namespace === ns) names.push(name);
    names.push(base, `${name}.${ns}`);
  }
  for (const a of service.addresses) if (isIpAddress(a)) names.push(a);
  const out: string[] = [];
  for (const n of names) {
    if (!httpProxy || port === 80) out.push(n);
    out.push(`${n}:${port}`);
  }
  return out;
}

/**
 * {@link virtualHost}, kept from the previous push when only VirtualServices (or endpoints) changed since and the
 * one for this host is the same object (unchanged documents validate to the same objects): a VirtualService edit
 * rebuilds one service's virtual hosts, not every class's thousands. `seen` gets the same domains either way.
 */
function keptVirtualHost(push: PushContext, classKey: string, proxy: ProxyInfo, service: RegistryService, port: RegistryPort, mode: VhostMode, diagnostics: Diagnostic[], seen: Set<string>): VirtualHost {
  const key = `${classKey}\n${mode.proxyless ? 'g' : mode.httpProxy ? 'p' : 'o'}\n${port.port}\n${service.namespace}/${service.hostname}`;
  let built = false;
  const kept = push.memoVirtualHost(key, push.virtualService(service.hostname), () => {
    built = true;
    const own: Diagnostic[] = [];
    return { vh: virtualHost(push, proxy, service, port, mode, own, seen), diagnostics: own };
  });
  if (!built) for (const d of kept.vh.domains ?? []) seen.add(d);
  diagnostics.push(...kept.diagnostics);
  return kept.vh;
}

function virtualHost(push: PushContext, proxy: ProxyInfo, service: RegistryService, port: RegistryPort, mode: VhostMode, diagnostics: Diagnostic[], seen: Set<string>): VirtualHost {
  // Envoy rejects a domain twice in one RouteConfiguration; the first service (by hostname) keeps it.
  const domains = virtualHostDomains(service, port.port, proxy, mode.httpProxy).filter((d) => !seen.has(d));
  for (const d of domains) seen.add(d);
  const vs = push.virtualService(service.hostname);
  let routes: Route[];
  if (vs !== undefined && (vs.spec.http?.length ?? 0) > 0) {
    routes = [];
    vs.spec.http!.forEach((r, i) => routes.push(...httpRoutes(push, proxy, vs, r, i, service, port.port, mode, diagnostics)));
  } else {
    routes = [defaultRoute(push, proxy, service, port.port, mode)];
  }
  if (mode.httpProxy) {
    routes.unshift({
      name: 'connect',
      match: { connect_matcher: {} },
      route: { cluster: outboundClusterName(port.port, '', service.hostname), timeout: { seconds: 0, nanos: 0 }, upgrade_configs: [{ upgrade_type: 'CONNECT', connect_config: {} }] },
    });
  }
  return { name: `${service.hostname}:${port.port}`, domains, routes, include_request_attempt_count: true };
}

/** Istio's route when no VirtualService routes the host: everything to the service's cluster. */
function defaultRoute(push: PushContext, proxy: ProxyInfo, service: RegistryService, port: number, mode: VhostMode): Route {
  const cluster = outboundClusterName(port, '', service.hostname);
  const action: RouteAction = { cluster, timeout: { seconds: 0, nanos: 0 } };
  const hash = hashPolicy(push, proxy, service.hostname, '', port);
  if (hash !== undefined) action.hash_policy = [hash];
  if (!mode.proxyless) action.retry_policy = defaultRetryPolicy(hash !== undefined);
  return { name: 'default', match: { prefix: '/' }, route: action };
}

function defaultRetryPolicy(hasHash: boolean): NonNullable<RouteAction['retry_policy']> {
  return {
    retry_on: DEFAULT_RETRY_ON,
    num_retries: { value: 2 },
    retriable_status_codes: [503],
    // Istio drops the previous-hosts predicate with consistent hashing (a retry must reach the same host).
    ...(hasHash ? {} : { retry_host_predicate: [{ name: PREVIOUS_HOSTS }], host_selection_retry_max_attempts: 5 }),
  };
}

/** The route hash policy of the DestinationRule's consistentHash for a cluster, if any. */
function hashPolicy(push: PushContext, proxy: ProxyInfo, host: string, subset: string, port: number): NonNullable<RouteAction['hash_policy']>[number] | undefined {
  const svc = push.service(host);
  const dr = push.destinationRule(proxy, host, svc?.namespace ?? proxy.namespace);
  const h = effectivePolicy(dr, subset, port).loadBalancer?.consistentHash;
  if (h === undefined) return undefined;
  if (h.httpHeaderName !== undefined) return { header: { header_name: h.httpHeaderName } };
  if (h.httpCookie !== undefined) {
    return { cookie: { name: h.httpCookie.name, ...(h.httpCookie.path !== undefined ? { path: h.httpCookie.path } : {}), ...(h.httpCookie.ttl !== undefined ? { ttl: duration(h.httpCookie.ttl) } : {}) } };
  }
  if (h.useSourceIp) return { connection_properties: { source_ip: true } };
  if (h.httpQueryParameterName !== undefined) return { query_parameter: { name: h.httpQueryParameterName } };
  return undefined;
}

/** Whether an HTTP/TCP/TLS match applies to this proxy and port (port, sourceLabels, sourceNamespace, gateways). */
export function matchApplies(m: { port?: number; sourceLabels?: Record<string, string>; sourceNamespace?: string; gateways?: string[] }, proxy: ProxyInfo, port: number): boolean {
  if (m.port !== undefined && m.port !== port) return false;
  if (m.sourceLabels !== undefined && !selectorMatches(m.sourceLabels, proxy.labels)) return false;
  if (m.sourceNamespace !== undefined && m.sourceNamespace !== proxy.namespace) return false;
  if (m.gateways !== undefined && m.gateways.length > 0 && !m.gateways.includes('mesh')) return false;
  return true;
}

function httpRoutes(push: PushContext, proxy: ProxyInfo, vs: VirtualService, r: HTTPRoute, i: number, service: RegistryService, port: number, mode: VhostMode, diagnostics: Diagnostic[]): Route[] {
  const path = `spec.http[${i}]`;
  if (r.delegate !== undefined) {
    diagnostics.push(diag(vs, `${path}.delegate`, 'delegate VirtualServices are not supported yet; the route is left out', { code: 'SLOOP_ERR_CONFIG_UNSUPPORTED' }));
    return [];
  }
  const matches: (HTTPMatchRequest | undefined)[] = r.match && r.match.length > 0 ? r.match : [undefined];
  const out: Route[] = [];
  for (const m of matches) {
    if (m !== undefined && !matchApplies(m, proxy, port)) continue;
    const route = routeBody(push, proxy, vs, r, path, port, mode, diagnostics);
    if (route === undefined) return [];
    const name = r.name ? (m?.name ? `${r.name}.${m.name}` : r.name) : (m?.name ?? '');
    out.push({ ...(name !== '' ? { name } : {}), match: routeMatch(m), ...route });
  }
  return out;
}

function stringMatcher(s: StringMatch): Record<string, unknown> | undefined {
  if (s.exact !== undefined) return { exact: s.exact };
  if (s.prefix !== undefined) return { prefix: s.prefix };
  if (s.regex !== undefined) return { safe_regex: { regex: s.regex } };
  return undefined;
}

function headerMatcher(name: string, s: StringMatch, invert: boolean): HeaderMatcher {
  const sm = stringMatcher(s);
  // Istio: an empty match (or prefix "") only asks for the header to be present.
  const body = sm === undefined || s.prefix === '' ? { present_match: true } : { string_match: sm };
  return { name, ...body, ...(invert ? { invert_match: true } : {}) };
}

/** Istio's TranslateRouteMatch. */
function routeMatch(m: HTTPMatchRequest | undefined): NonNullable<Route['match']> {
  const out: NonNullable<Route['match']> = {};
  const uri = m?.uri;
  if (uri?.exact !== undefined) out.path = uri.exact;
  else if (uri?.regex !== undefined) out.safe_regex = { regex: uri.regex };
  else out.prefix = uri?.prefix ?? '/';
  if (m?.ignoreUriCase) out.case_sensitive = { value: false };
  const headers: HeaderMatcher[] = [];
  for (const name of Object.keys(m?.headers ?? {}).sort(cmp)) headers.push(headerMatcher(name, m!.headers![name], false));
  for (const name of Object.keys(m?.withoutHeaders ?? {}).sort(cmp)) headers.push(headerMatcher(name, m!.withoutHeaders![name], true));
  if (m?.method !== undefined) headers.push(headerMatcher(':method', m.method, false));
  if (m?.authority !== undefined) headers.push(headerMatcher(':authority', m.authority, false));
  if (m?.scheme !== undefined) headers.push(headerMatcher(':scheme', m.scheme, false));
  if (headers.length > 0) out.headers = headers;
  const qp = Object.keys(m?.queryParams ?? {}).sort(cmp).map((name) => {
    const s = m!.queryParams![name];
    const sm = stringMatcher(s);
    return sm === undefined || s.exact === '' ? { name, present_match: true } : { name, string_match: sm };
  });
  if (qp.length > 0) out.query_parameters = qp;
  return out;
}

function headerOptions(set: Record<string, string> | undefined, add: Record<string, string> | undefined): HeaderValueOption[] {
  const out: HeaderValueOption[] = [];
  for (const k of Object.keys(set ?? {}).sort(cmp)) out.push({ header: { key: k, value: set![k] }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' });
  for (const k of Object.keys(add ?? {}).sort(cmp)) out.push({ header: { key: k, value: add![k] }, append_action: 'APPEND_IF_EXISTS_OR_ADD' });
  return out;
}

/** Header mutations of an Istio `headers` block, as Route / WeightedCluster fields. */
function headerMutations(h: Headers | undefined): Record<string, unknown> {
  if (h === undefined) return {};
  const out: Record<string, unknown> = {};
  const reqAdd = headerOptions(h.request?.set, h.request?.add);
  if (reqAdd.length > 0) out.request_headers_to_add = reqAdd;
  if (h.request?.remove?.length) out.request_headers_to_remove = [...h.request.remove];
  const resAdd = headerOptions(h.response?.set, h.response?.add);
  if (resAdd.length > 0) out.response_headers_to_add = resAdd;
  if (h.response?.remove?.length) out.response_headers_to_remove = [...h.response.remove];
  return out;
}

function destinationCluster(push: PushContext, vs: VirtualService, d: Destination, port: number, path: string, diagnostics: Diagnostic[]): string {
  const host = resolveShortname(d.host, vs.namespace);
  const svc = push.service(host);
  if (svc === undefined) diagnostics.push(diag(vs, `${path}.host`, `host "${host}" matches no Service or ServiceEntry; requests routed there get 503`));
  const p = d.port?.number ?? (svc !== undefined && svc.ports.length === 1 ? svc.ports[0].port : port);
  return outboundClusterName(p, d.subset ?? '', host);
}

/** Everything of an Envoy Route but its match. Undefined: the whole HTTP route is dropped (diagnosed). */
function routeBody(push: PushContext, proxy: ProxyInfo, vs: VirtualService, r: HTTPRoute, path: string, port: number, mode: VhostMode, diagnostics: Diagnostic[]): Omit<Route, 'match'> | undefined {
  const out: Omit<Route, 'match'> = { ...headerMutations(r.headers) };
  if (r.redirect !== undefined) {
    const rd = r.redirect;
    const code = rd.redirectCode ?? 301;
    if (REDIRECT_CODES[code] === undefined) {
      diagnostics.push(diag(vs, `${path}.redirect.redirectCode`, `redirect code ${code} has no Envoy equivalent (301, 302, 303, 307, 308); the route is left out`, { severity: 'error' }));
      return undefined;
    }
    out.redirect = {
      ...(rd.uri !== undefined ? { path_redirect: rd.uri } : {}),
      ...(rd.authority !== undefined ? { host_redirect: rd.authority } : {}),
      ...(rd.port !== undefined ? { port_redirect: rd.port } : {}),
      ...(rd.scheme !== undefined ? { scheme_redirect: rd.scheme } : {}),
      response_code: REDIRECT_CODES[code] as 'MOVED_PERMANENTLY',
    };
  } else if (r.directResponse !== undefined) {
    const body = r.directResponse.body;
    out.direct_response = {
      status: r.directResponse.status,
      ...(body?.string !== undefined ? { body: { inline_string: body.string } } : body?.bytes !== undefined ? { body: { inline_bytes: Buffer.from(body.bytes, 'base64') } } : {}),
    };
  } else {
    const dests = (r.route ?? []).map((d, j) => ({ d, j })).filter(({ d }, _, all) => all.length === 1 || (d.weight ?? 0) > 0);
    const action: RouteAction = {};
    if (dests.length === 1) {
      const { d, j } = dests[0];
      action.cluster = destinationCluster(push, vs, d.destination, port, `${path}.route[${j}].destination`, diagnostics);
      Object.assign(out, mergeHeaderMutations(out, headerMutations(d.headers)));
    } else {
      action.weighted_clusters = {
        clusters: dests.map(({ d, j }) => ({
          name: destinationCluster(push, vs, d.destination, port, `${path}.route[${j}].destination`, diagnostics),
          weight: { value: d.weight ?? 0 },
          ...headerMutations(d.headers),
        })),
      };
    }
    action.timeout = r.timeout !== undefined ? duration(r.timeout) : { seconds: 0, nanos: 0 };
    const first = dests[0]?.d.destination;
    const hash = first === undefined ? undefined : hashPolicy(push, proxy, resolveShortname(first.host, vs.namespace), first.subset ?? '', first.port?.number ?? port);
    if (hash !== undefined) action.hash_policy = [hash];
    const retry = retryPolicy(r, hash !== undefined, mode);
    if (retry !== undefined) action.retry_policy = retry;
    if (r.rewrite?.uri !== undefined) action.prefix_rewrite = r.rewrite.uri;
    if (r.rewrite?.uriRegexRewrite !== undefined) action.regex_rewrite = { pattern: { regex: r.rewrite.uriRegexRewrite.match }, substitution: r.rewrite.uriRegexRewrite.rewrite };
    if (r.rewrite?.authority !== undefined) action.host_rewrite_literal = r.rewrite.authority;
    if (!mode.proxyless) {
      const mirrors = mirrorPolicies(push, vs, r, path, port, diagnostics);
      if (mirrors.length > 0) action.request_mirror_policies = mirrors;
    }
    out.route = action;
  }
  if (!mode.proxyless) {
    const perFilter: Record<string, ReturnType<typeof any>> = {};
    if (r.fault !== undefined) {
      const fault = faultConfig(r.fault, vs, path, diagnostics);
      if (fault !== undefined) perFilter[FILTER.fault] = any(TYPE.fault, fault);
    }
    if (r.corsPolicy !== undefined) perFilter[FILTER.cors] = any(TYPE.corsPolicy, corsConfig(r.corsPolicy));
    if (Object.keys(perFilter).length > 0) out.typed_per_filter_config = perFilter;
  }
  return out;
}

function mergeHeaderMutations(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = [...((a[k] as unknown[] | undefined) ?? []), ...(v as unknown[])];
  return out;
}

/** Istio's retry.ConvertPolicy. */
function retryPolicy(r: HTTPRoute, hasHash: boolean, mode: VhostMode): RouteAction['retry_policy'] | undefined {
  const rt = r.retries;
  if (rt === undefined) return mode.proxyless ? undefined : defaultRetryPolicy(hasHash);
  if ((rt.attempts ?? 0) === 0) return undefined;
  const policy: NonNullable<RouteAction['retry_policy']> = mode.proxyless ? { retry_on: 'unavailable,cancelled', num_retries: { value: 2 } } : defaultRetryPolicy(hasHash);
  policy.num_retries = { value: rt.attempts ?? 2 };
  if (rt.retryOn !== undefined) {
    const parts = rt.retryOn.split(',').map((s) => s.trim()).filter((s) => s !== '');
    const codes = parts.filter((p) => /^\d+$/.test(p)).map(Number);
    const policies = parts.filter((p) => !/^\d+$/.test(p));
    if (codes.length > 0 && !policies.includes('retriable-status-codes')) policies.push('retriable-status-codes');
    policy.retry_on = policies.join(',');
    if (codes.length > 0) policy.retriable_status_codes = codes;
    else delete policy.retriable_status_codes;
  }
  if (rt.perTryTimeout !== undefined) policy.per_try_timeout = duration(rt.perTryTimeout);
  if (rt.backoff !== undefined) policy.retry_back_off = { base_interval: duration(rt.backoff) };
  return policy;
}

function mirrorPolicies(push: PushContext, vs: VirtualService, r: HTTPRoute, path: string, port: number, diagnostics: Diagnostic[]): NonNullable<RouteAction['request_mirror_policies']> {
  const list: { d: Destination; pct: number; p: string }[] = [];
  if (r.mirror !== undefined) list.push({ d: r.mirror, pct: r.mirrorPercentage?.value ?? r.mirrorPercent ?? 100, p: `${path}.mirror` });
  (r.mirrors ?? []).forEach((m, k) => list.push({ d: m.destination, pct: m.percentage?.value ?? 100, p: `${path}.mirrors[${k}].destination` }));
  return list.map(({ d, pct, p }) => ({
    cluster: destinationCluster(push, vs, d, port, p, diagnostics),
    runtime_fraction: { default_value: fractionalPercent(pct) },
  }));
}

function faultConfig(f: NonNullable<HTTPRoute['fault']>, vs: VirtualService, path: string, diagnostics: Diagnostic[]): Record<string, unknown> | undefined {
  const out: Record<string, unknown> = {};
  const pct = (p: { value?: number } | undefined, legacy?: number) => fractionalPercent(p?.value ?? legacy ?? 100);
  if (f.delay?.fixedDelay !== undefined) out.delay = { fixed_delay: duration(f.delay.fixedDelay), percentage: pct(f.delay.percentage, f.delay.percent) };
  const a = f.abort;
  if (a !== undefined) {
    if (a.httpStatus !== undefined) out.abort = { http_status: a.httpStatus, percentage: pct(a.percentage) };
    else if (a.grpcStatus !== undefined) {
      const code = GRPC_STATUS[a.grpcStatus.toUpperCase()] ?? (/^\d+$/.test(a.grpcStatus) ? Number(a.grpcStatus) : undefined);
      if (code === undefined) diagnostics.push(diag(vs, `${path}.fault.abort.grpcStatus`, `unknown gRPC status "${a.grpcStatus}"; the abort is left out`));
      else out.abort = { grpc_status: code, percentage: pct(a.percentage) };
    } else diagnostics.push(diag(vs, `${path}.fault.abort`, 'http2Error aborts are not supported (as in Istio); the abort is left out', { code: 'SLOOP_ERR_CONFIG_UNSUPPORTED' }));
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

function corsConfig(c: NonNullable<HTTPRoute['corsPolicy']>): Record<string, unknown> {
  const origins = [...(c.allowOrigins ?? []).map(stringMatcher).filter((m) => m !== undefined), ...(c.allowOrigin ?? []).map((o) => (o === '*' ? { prefix: '' } : { exact: o }))];
  return {
    ...(origins.length > 0 ? { allow_origin_string_match: origins } : {}),
    ...(c.allowMethods?.length ? { allow_methods: c.allowMethods.join(',') } : {}),
    ...(c.allowHeaders?.length ? { allow_headers: c.allowHeaders.join(',') } : {}),
    ...(c.exposeHeaders?.length ? { expose_headers: c.exposeHeaders.join(',') } : {}),
    ...(c.maxAge !== undefined ? { max_age: String(c.maxAge.seconds) } : {}),
    ...(c.allowCredentials !== undefined ? { allow_credentials: { value: c.allowCredentials } } : {}),
    ...(c.unmatchedPreflights !== undefined && c.unmatchedPreflights !== 'UNSPECIFIED' ? { forward_not_matching_preflights: { value: c.unmatchedPreflights === 'FORWARD' } } : {}),
    filter_enabled: { default_value: { numerator: 100, denominator: 'HUNDRED' } },
  };
}

