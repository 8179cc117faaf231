/**
 * envoy.filters.http.cors (extensions.filters.http.cors.v3.Cors): Cross-Origin Resource Sharing, as Envoy's
 * cors_filter.cc does it. Policies come from `typed_per_filter_config` (CorsPolicy) of the route, then the
 * virtual host; without one, the route's and virtual host's deprecated `cors` fields. For each setting the
 * most specific policy that sets it wins; `filter_enabled` / `shadow_enabled` are read from the first policy.
 * - No policy, not enabled, or no (or empty) Origin: nothing happens.
 * - Origin matched against `allow_origin_string_match` (a matcher also matching `*` allows every origin):
 *   counted in `http.<stat_prefix>.cors.origin_valid` / `origin_invalid`. Shadow mode only counts.
 * - Preflight (OPTIONS with Origin and Access-Control-Request-Method): answered 200 by the proxy with
 *   Access-Control-Allow-Origin (when allowed), -Allow-Credentials, -Allow-Methods, -Allow-Headers
 *   (`*` echoes the request's), -Max-Age, -Allow-Private-Network; a preflight from an origin not allowed is
 *   forwarded upstream when `forward_not_matching_preflights` (default true), else answered without
 *   Access-Control-Allow-Origin.
 * - Other requests from an allowed origin: the response gets Access-Control-Allow-Origin (the origin),
 *   -Allow-Credentials and -Expose-Headers.
 */
import type { Any__Output } from '../../../xds/gen/google/protobuf/Any.ts';
import type { CorsPolicy__Output } from '../../../xds/gen/envoy/extensions/filters/http/cors/v3/CorsPolicy.ts';
import type { CorsPolicy__Output as RouteCorsPolicy__Output } from '../../../xds/gen/envoy/config/route/v3/CorsPolicy.ts';
import type { RuntimeFractionalPercent__Output } from '../../../xds/gen/envoy/config/core/v3/RuntimeFractionalPercent.ts';
import { unpackAny } from '../../../xds/any.ts';
import { ConfigError } from '../../../shared/errors.ts';
import type { Counter } from '../../stats/store.ts';
import { getHeader, setHeader } from '../headers.ts';
import { compileStringMatcher, matchString, type CompiledStringMatcher, type CompileSink } from '../route/matchers.ts';
import { fractionOf } from '../route/route-action.ts';
import type { FilterFactoryContext, FilterRequest, HttpFilter } from './types.ts';

export const CORS_FILTER_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors';

/** A compiled CorsPolicy (either proto: the filter's per-route one or the route's deprecated `cors`). */
export interface CompiledCorsPolicy {
  allowOrigins: readonly CompiledStringMatcher[];
  allowMethods: string;
  allowHeaders: string;
  exposeHeaders: string;
  maxAge: string;
  allowCredentials: boolean | undefined;
  allowPrivateNetworkAccess: boolean | undefined;
  forwardNotMatchingPreflights: boolean | undefined;
  /** Fraction of requests the policy is enforced for (filter_enabled, default 100 %). */
  enabled: number;
  /** Fraction evaluated in shadow mode (shadow_enabled; default 0). */
  shadow: number;
}

function runtimeFraction(p: RuntimeFractionalPercent__Output | null | undefined, dflt: number): number {
  return p === null || p === undefined ? dflt : fractionOf(p.default_value);
}

/**
 * Compiles a CorsPolicy.
 * @throws ConfigError for a bad origin matcher (a regex RE2 and JavaScript disagree on, …).
 */
export function compileCorsPolicy(p: CorsPolicy__Output | RouteCorsPolicy__Output): CompiledCorsPolicy {
  const sink: CompileSink = { diagnostics: [] };
  const allowOrigins = p.allow_origin_string_match.map((m, i) => compileStringMatcher(m, `allow_origin_string_match[${i}]`, sink));
  if (sink.diagnostics.some((d) => d.severity === 'error')) throw new ConfigError(sink.diagnostics, 'CorsPolicy');
  const rp = p as Partial<CorsPolicy__Output>;
  return {
    allowOrigins,
    allowMethods: p.allow_methods,
    allowHeaders: p.allow_headers,
    exposeHeaders: p.expose_headers,
    maxAge: p.max_age,
    allowCredentials: p.allow_credentials?.value,
    allowPrivateNetworkAccess: p.allow_private_network_access?.value,
    forwardNotMatchingPreflights: rp.forward_not_matching_preflights?.value,
    // route.v3.CorsPolicy's enabled_specifier is a oneof: filter_enabled is the only member left in v3.
    enabled: runtimeFraction(p.filter_enabled, 1),
    shadow: runtimeFraction(p.shadow_enabled, 0),
  };
}

/** The first policy's non-empty value of a setting, in order (route first). */
function first<T>(policies: readonly CompiledCorsPolicy[], get: (p: CompiledCorsPolicy) => T | undefined | '', dflt: T): T {
  for (const p of policies) {
    const v = get(p);
    if (v !== undefined && v !== '') return v as T;
  }
  return dflt;
}

/** Per-request CORS state (Envoy's latched origin) that decorates the response. */
class CorsResponse {
  private readonly origin: string;
  private readonly policies: readonly CompiledCorsPolicy[];

  constructor(origin: string, policies: readonly CompiledCorsPolicy[]) {
    this.origin = origin;
    this.policies = policies;
  }

  onResponseHeaders(_status: number, headers: string[]): void {
    setHeader(headers, 'access-control-allow-origin', this.origin);
    if (first(this.policies, (p) => p.allowCredentials, false)) setHeader(headers, 'access-control-allow-credentials', 'true');
    const expose = first(this.policies, (p) => p.exposeHeaders, '');
    if (expose !== '') setHeader(headers, 'access-control-expose-headers', expose);
  }
}

/** The CORS filter of one connection manager. */
export class CorsFilter implements HttpFilter {
  readonly name: string;
  private readonly random: () => number;
  private readonly log: FilterFactoryContext['log'];
  private readonly originValid: Counter;
  private readonly originInvalid: Counter;
  private readonly compiled = new WeakMap<object, CompiledCorsPolicy | null>();

  constructor(name: string, ctx: FilterFactoryContext) {
    this.name = name;
    this.random = ctx.random;
    this.log = ctx.log;
    const scope = ctx.store.scope(`http.${ctx.statPrefix}.cors`);
    this.originValid = scope.counter('origin_valid');
    this.originInvalid = scope.counter('origin_invalid');
  }

  private compile(key: object, build: () => CompiledCorsPolicy): CompiledCorsPolicy | null {
    let c = this.compiled.get(key);
    if (c === undefined) {
      try {
        c = build();
      } catch (err) {
        this.log.warn({ filter: this.name, err: (err as Error).message }, 'invalid CORS policy; skipped');
        c = null;
      }
      this.compiled.set(key, c);
    }
    return c;
  }

  /** Envoy's initializeCorsPolicies: per-filter configs (route, then virtual host), else the legacy fields. */
  private policiesFor(req: FilterRequest): CompiledCorsPolicy[] {
    const out: CompiledCorsPolicy[] = [];
    const route = req.matchedRoute!;
    const vh = req.matchedVirtualHost;
    const routeAny = route.perFilterConfig(this.name);
    const vhAny = vh?.perFilterConfig(this.name);
    const add = (any: Any__Output | undefined): void => {
      if (any === undefined) return;
      const c = this.compile(any, () => compileCorsPolicy(unpackAny<CorsPolicy__Output>(any)));
      if (c !== null) out.push(c);
    };
    add(routeAny);
    // The route's map already falls back to the virtual host's entry; count it once.
    if (vhAny !== routeAny) add(vhAny);
    if (out.length > 0) return out;
    const legacy = route.route?.cors;
    if (legacy) {
      const c = this.compile(legacy, () => compileCorsPolicy(legacy));
      if (c !== null) out.push(c);
    }
    return out;
  }

  decodeHeaders(req: FilterRequest): boolean {
    const route = req.matchedRoute;
    if (route === undefined || route.kind !== 'route') return true;
    const policies = this.policiesFor(req);
    if (policies.length === 0) return true;
    const enabled = this.random() < policies[0]!.enabled;
    const shadow = !enabled && this.random() < policies[0]!.shadow;
    if (!enabled && !shadow) return true;
    const h = req.head.headers;
    const origin = getHeader(h, 'origin');
    if (origin === undefined || origin === '') return true;
    const origins = first(policies, (p) => (p.allowOrigins.length > 0 ? p.allowOrigins : undefined), [] as readonly CompiledStringMatcher[]);
    const allowed = origins.some((m) => matchString(m, '*') || matchString(m, origin));
    if (allowed) this.originValid.inc();
    else this.originInvalid.inc();
    if (!enabled) return true;
    const requestMethod = req.head.method === 'OPTIONS' ? getHeader(h, 'access-control-request-method') : undefined;
    const isPreflight = requestMethod !== undefined && requestMethod !== '';
    if (!isPreflight || (!allowed && first(policies, (p) => p.forwardNotMatchingPreflights, true))) {
      if (allowed) req.addEncoder(new CorsResponse(origin, policies));
      return true;
    }
    const out: string[] = [];
    if (allowed) out.push('access-control-allow-origin', origin);
    if (first(policies, (p) => p.allowCredentials, false)) out.push('access-control-allow-credentials', 'true');
    const methods = first(policies, (p) => p.allowMethods, '');
    if (methods !== '') out.push('access-control-allow-methods', methods === '*' ? requestMethod : methods);
    const allowHeaders = first(policies, (p) => p.allowHeaders, '');
    if (allowHeaders !== '') out.push('access-control-allow-headers', allowHeaders === '*' ? (getHeader(h, 'access-control-request-headers') ?? '') : allowHeaders);
    const maxAge = first(policies, (p) => p.maxAge, '');
    if (maxAge !== '') out.push('access-control-max-age', maxAge);
    if (first(policies, (p) => p.allowPrivateNetworkAccess, false) && getHeader(h, 'access-control-request-private-network') === 'true') {
      out.push('access-control-allow-private-network', 'true');
    }
    req.respondHeadersOnly(200, out);
    return false;
  }
}

/** Registry entry: the filter's own typed_config (Cors) has no fields that change behaviour. */
export function createCorsFilter(name: string, _typedConfig: Any__Output, ctx: FilterFactoryContext): CorsFilter {
  return new CorsFilter(name, ctx);
}
