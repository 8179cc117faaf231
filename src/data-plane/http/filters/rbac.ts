/**
 * envoy.filters.http.rbac (extensions.filters.http.rbac.v3.RBAC): Envoy's role based access control on requests
 * (engine in ../../rbac/engine.ts).
 * - Per route: an RBACPerRoute in typed_per_filter_config (route, else virtual host, else route configuration)
 *   replaces the filter's config; an RBACPerRoute without `rbac` turns the filter off for that route.
 * - `shadow_rules` are evaluated first and only counted (`http.<stat_prefix>.rbac.<shadow_rules_stat_prefix>
 *   shadow_allowed|shadow_denied`); the result goes to dynamic metadata under `envoy.filters.http.rbac`:
 *   `<shadow_rules_stat_prefix>shadow_effective_policy_id` (when a policy matched) and
 *   `<shadow_rules_stat_prefix>shadow_engine_result` (`allowed` / `denied`), which Istio's dry-run reads.
 * - `rules` are enforced: `http.<stat_prefix>.rbac.<rules_stat_prefix>allowed|denied`; a denied request gets
 *   Envoy's 403 `RBAC: access denied` (gRPC: trailers-only, grpc-status 7 PERMISSION_DENIED). No `rules`: nothing
 *   is enforced. LOG rules allow and set `envoy.common` `access_log_hint` when a policy matched.
 * - `matcher` / `shadow_matcher` (the xDS matcher API) and `track_per_rule_stats` are unsupported (config errors).
 */
import type { Any__Output } from '../../../xds/gen/google/protobuf/Any.ts';
import type { RBAC__Output } from '../../../xds/gen/envoy/extensions/filters/http/rbac/v3/RBAC.ts';
import type { RBACPerRoute__Output } from '../../../xds/gen/envoy/extensions/filters/http/rbac/v3/RBACPerRoute.ts';
import { unpackAny } from '../../../xds/any.ts';
import { ConfigError, type Diagnostic } from '../../../shared/errors.ts';
import type { Counter } from '../../stats/store.ts';
import { compileRbac, type RbacEngine } from '../../rbac/engine.ts';
import type { FilterFactoryContext, FilterRequest, HttpFilter } from './types.ts';

export const RBAC_FILTER_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC';
export const RBAC_PER_ROUTE_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute';
/** Envoy's dynamic metadata namespace for this filter (its canonical name, whatever http_filters[].name says). */
export const RBAC_METADATA_NAMESPACE = 'envoy.filters.http.rbac';
export const RBAC_DENIED_BODY = 'RBAC: access denied';

/** One compiled RBAC config: the filter's or a route's. */
interface CompiledRbacConfig {
  readonly engine: RbacEngine | undefined;
  readonly shadow: RbacEngine | undefined;
  readonly shadowPolicyKey: string;
  readonly shadowResultKey: string;
}

/** A route whose RBACPerRoute has no `rbac`: the filter does nothing there. */
const DISABLED = null;

/**
 * Compiles the filter's RBAC message (also the one inside RBACPerRoute).
 * @throws ConfigError with paths relative to the message.
 */
export function compileHttpRbac(cfg: RBAC__Output): CompiledRbacConfig {
  const diags: Diagnostic[] = [];
  const unsupported = (path: string, message: string): void => {
    diags.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_UNSUPPORTED', path, message });
  };
  if (cfg.matcher) unsupported('matcher', 'RBAC `matcher` is not supported; use `rules`');
  if (cfg.shadow_matcher) unsupported('shadow_matcher', 'RBAC `shadow_matcher` is not supported; use `shadow_rules`');
  if (cfg.track_per_rule_stats) unsupported('track_per_rule_stats', 'per-policy RBAC stats are not supported');
  const engine = cfg.rules ? compileRbac(cfg.rules, 'rules', diags) : undefined;
  const shadow = cfg.shadow_rules ? compileRbac(cfg.shadow_rules, 'shadow_rules', diags) : undefined;
  if (diags.length > 0) throw new ConfigError(diags, 'RBAC filter');
  return {
    engine,
    shadow,
    shadowPolicyKey: `${cfg.shadow_rules_stat_prefix}shadow_effective_policy_id`,
    shadowResultKey: `${cfg.shadow_rules_stat_prefix}shadow_engine_result`,
  };
}

export class RbacFilter implements HttpFilter {
  readonly name: string;
  private readonly config: CompiledRbacConfig;
  private readonly allowed: Counter;
  private readonly denied: Counter;
  private readonly shadowAllowed: Counter;
  private readonly shadowDenied: Counter;
  private readonly log: FilterFactoryContext['log'];
  private readonly xff: NonNullable<FilterFactoryContext['xff']>;
  /** Per-route configs by their Any (compiled once; null = disabled for the route, undefined entry = invalid). */
  private readonly perRoute = new WeakMap<object, CompiledRbacConfig | null>();

  constructor(name: string, cfg: RBAC__Output, ctx: FilterFactoryContext) {
    this.name = name;
    this.log = ctx.log;
    this.xff = ctx.xff ?? { useRemoteAddress: false, numTrustedHops: 0 };
    this.config = compileHttpRbac(cfg);
    const scope = ctx.store.scope(`http.${ctx.statPrefix}.rbac`);
    this.allowed = scope.counter(`${cfg.rules_stat_prefix}allowed`);
    this.denied = scope.counter(`${cfg.rules_stat_prefix}denied`);
    this.shadowAllowed = scope.counter(`${cfg.shadow_rules_stat_prefix}shadow_allowed`);
    this.shadowDenied = scope.counter(`${cfg.shadow_rules_stat_prefix}shadow_denied`);
  }

  /** The route's RBACPerRoute (compiled once), the filter's config, or null when the route disables the filter. */
  private configFor(req: FilterRequest): CompiledRbacConfig | null {
    const any = req.matchedRoute?.perFilterConfig(this.name) ?? req.matchedVirtualHost?.perFilterConfig(this.name);
    if (any === undefined) return this.config;
    let c = this.perRoute.get(any);
    if (c === undefined) {
      try {
        const pr = unpackAny<RBACPerRoute__Output>(any);
        c = pr.rbac ? compileHttpRbac(pr.rbac) : DISABLED;
      } catch (err) {
        // An invalid per-route policy must not open the route: keep the filter's own config for it.
        this.log.warn({ filter: this.name, err: (err as Error).message }, 'invalid RBACPerRoute; using the filter config');
        c = this.config;
      }
      this.perRoute.set(any, c);
    }
    return c;
  }

  decodeHeaders(req: FilterRequest): boolean {
    const cfg = this.configFor(req);
    if (cfg === null) return true;
    // dynamicMetadata is created on first read: only engines with metadata matchers ask for it.
    const metadata = cfg.shadow?.readsMetadata === true || cfg.engine?.readsMetadata === true ? req.dynamicMetadata : undefined;
    const ctx = { conn: req.conn, head: req.head, metadata, xff: this.xff };
    if (cfg.shadow !== undefined) {
      const r = cfg.shadow.evaluate(ctx);
      (r.allowed ? this.shadowAllowed : this.shadowDenied).inc();
      const md = getNamespace(req, RBAC_METADATA_NAMESPACE);
      if (r.policyId !== undefined) md[cfg.shadowPolicyKey] = r.policyId;
      md[cfg.shadowResultKey] = r.allowed ? 'allowed' : 'denied';
    }
    const engine = cfg.engine;
    if (engine === undefined) return true;
    const r = engine.evaluate(ctx);
    if (engine.action === 'LOG') {
      getNamespace(req, 'envoy.common').access_log_hint = r.policyId !== undefined;
      return true;
    }
    if (r.allowed) {
      this.allowed.inc();
      return true;
    }
    this.denied.inc();
    this.log.debug({ policy: r.policyId ?? 'none', path: req.head.path }, 'rbac_access_denied_matched_policy');
    req.sendLocalReply(403, RBAC_DENIED_BODY);
    return false;
  }
}

function getNamespace(req: FilterRequest, ns: string): Record<string, unknown> {
  const md = req.dynamicMetadata;
  let o = md.get(ns);
  if (o === undefined) {
    o = {};
    md.set(ns, o);
  }
  return o;
}

/** Registry entry. */
export function createRbacFilter(name: string, typedConfig: Any__Output, ctx: FilterFactoryContext): RbacFilter {
  return new RbacFilter(name, unpackAny<RBAC__Output>(typedConfig), ctx);
}
