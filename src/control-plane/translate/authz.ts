/**
 * AuthorizationPolicy → Envoy RBAC, with Istio's semantics (istio.io/latest/docs/reference/config/security/
 * authorization-policy/ and the authorization concepts page). Pure.
 *
 * Evaluation order on a workload: CUSTOM, then DENY, then ALLOW; AUDIT only logs. Each other action becomes one RBAC
 * filter (HTTP chains: envoy.filters.http.rbac before the router, after jwt_authn; TCP chains:
 * envoy.filters.network.rbac before tcp_proxy): DENY with action DENY, ALLOW with action ALLOW (an ALLOW policy
 * with no rules adds no policy: allow nothing; `rules: [{}]` allows everything), AUDIT with action LOG. A rule is
 * one RBAC policy `ns[NS]-policy[NAME]-rule[I]`: its permission is (any `to` operation) AND every destination-side
 * `when`; its principal is (any `from` source) AND every source-side `when`. Within a source or operation every
 * field must match; within a field any value; `not*` fields must match none.
 *
 * Field → Envoy matcher, as Istio:
 * - principals → authenticated.principal_name `spiffe://<value>` (`*` any, `prefix*`, `*suffix`);
 *   namespaces → principal regex `.*\/ns/<ns>/.*`; serviceAccounts `ns/sa` → principal `spiffe://cluster.local/ns/NS/sa/SA`;
 *   ipBlocks → direct_remote_ip; remoteIpBlocks → remote_ip; requestPrincipals → the verified JWT's `iss` and
 *   `sub` in jwt_authn's dynamic metadata (security.ts JWT_PAYLOAD_METADATA_KEY): `iss/sub` matched exactly
 *   across every split at a `/`, with Istio's `*` wildcards.
 * - hosts → `:authority` case-insensitive, with or without a port; ports → destination_port; methods → `:method`;
 *   paths → url_path (exact, `prefix*`, `*suffix`, `*`).
 * - when: request.headers[X], source.ip, remote.ip, source.namespace, source.principal, source.serviceAccount,
 *   request.auth.principal / audiences / presenter / claims[a][b], destination.ip, destination.port, connection.sni.
 *
 * TCP chains: request principals, hosts, methods, paths and `request.*` conditions are HTTP-only. In an ALLOW
 * (or AUDIT) policy a rule using one is dropped (it matches nothing); in a DENY (or CUSTOM) policy those fields
 * are ignored and the rest of the rule kept, so the deny is broader, never narrower (Istio's documented behaviour).
 *
 * `istio.io/dry-run: "true"` policies become `shadow_rules`: evaluated and counted, not enforced.
 *
 * CUSTOM (Istio's ext_authz integration; see {@link resolveCustomProvider}): the policies name an ext_authz provider
 * of `meshConfig.extensionProviders` (the ConfigMap `istio-system/istio`). On HTTP chains they become two filters
 * ahead of AUDIT/DENY/ALLOW: an RBAC filter whose `shadow_rules` (action DENY, stat prefix `istio_ext_authz_`) hold
 * the CUSTOM rules as policies `istio-ext-authz-ns[NS]-policy[NAME]-rule[I]` — evaluated, never enforced, the
 * matching policy's name written to dynamic metadata `envoy.filters.http.rbac` /
 * `istio_ext_authz_shadow_effective_policy_id` — and `envoy.filters.http.ext_authz` (gRPC, `outbound|PORT||HOST`
 * of the provider's service) whose `filter_enabled_metadata` requires that id to start with `istio-ext-authz`, so
 * the authorizer is asked only about requests a CUSTOM rule matches. When the provider cannot be used (not defined,
 * not a gRPC ext_authz provider, its service or port not in the registry, several providers on one workload) the
 * CUSTOM rules deny what they match instead (Istio: "will generate deny configs for the specified rules"), with an
 * error diagnostic. TCP chains have no ext_authz in Sloop's proxy (Envoy's envoy.filters.network.ext_authz): there
 * CUSTOM rules deny what they match, with a warning.
 */
import type { AuthorizationCondition, AuthorizationOperation, AuthorizationPolicy, AuthorizationRule, AuthorizationSource, Duration, MeshConfigMap } from '../config/model.ts';
import { meshConfigOf } from '../config/model.ts';
import type { Diagnostic } from '../../shared/errors.ts';
import type { ProxyInfo } from '../registry/proxy-info.ts';
import type { PushContext } from './push-context.ts';
import { any, diag, duration, outboundClusterName } from './util.ts';
import { JWT_AUTHN_FILTER, JWT_PAYLOAD_METADATA_KEY, TRUST_DOMAIN, olderFirst } from './security.ts';

const HTTP_RBAC_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC';
const NETWORK_RBAC_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC';
export const HTTP_RBAC_FILTER = 'envoy.filters.http.rbac';
export const NETWORK_RBAC_FILTER = 'envoy.filters.network.rbac';
const EXT_AUTHZ_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz';
export const HTTP_EXT_AUTHZ_FILTER = 'envoy.filters.http.ext_authz';
/** Istio's names for the CUSTOM action's shadow RBAC: policy-name prefix and stat prefix (authz/model). */
export const EXT_AUTHZ_MATCH_PREFIX = 'istio-ext-authz';
export const EXT_AUTHZ_SHADOW_STAT_PREFIX = 'istio_ext_authz_';
/** Istio's default timeout of an ext_authz provider (MeshConfig.ExtensionProvider …timeout: 600s). */
const EXT_AUTHZ_DEFAULT_TIMEOUT: Duration = { seconds: 600, nanos: 0 };

type Json = Record<string, unknown>;
type RbacAction = 'ALLOW' | 'DENY' | 'LOG';

// ---------------------------------------------------------------------------------------------------------------
// String matchers with Istio's wildcards

function escapeRegex(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');
}

/** Istio's StringMatcherWithPrefix: `*` any non-empty, `*x` suffix, `x*` prefix, else exact; `prefix` prepended. */
export function wildcardMatcher(v: string, prefix = '', ignoreCase = false): Json {
  const ic = ignoreCase ? { ignore_case: true } : {};
  if (v === '*') return { safe_regex: { regex: '.+' } };
  if (v.startsWith('*')) {
    if (prefix === '') return { suffix: v.slice(1), ...ic };
    return { safe_regex: { regex: `${escapeRegex(prefix)}.*${escapeRegex(v.slice(1))}` } };
  }
  if (v.endsWith('*')) return { prefix: prefix + v.slice(0, -1), ...ic };
  return { exact: prefix + v, ...ic };
}

// ---------------------------------------------------------------------------------------------------------------
// Principals (source side) and permissions (destination side)

const anyId: Json = { any: true };
const anyRule: Json = { any: true };

function orIds(ids: Json[]): Json {
  return ids.length === 1 ? ids[0] : { or_ids: { ids } };
}
function andIds(ids: Json[]): Json {
  return ids.length === 0 ? anyId : ids.length === 1 ? ids[0] : { and_ids: { ids } };
}
function orRules(rules: Json[]): Json {
  return rules.length === 1 ? rules[0] : { or_rules: { rules } };
}
function andRules(rules: Json[]): Json {
  return rules.length === 0 ? anyRule : rules.length === 1 ? rules[0] : { and_rules: { rules } };
}

function principalId(v: string): Json {
  return { authenticated: { principal_name: wildcardMatcher(v, 'spiffe://') } };
}

function namespaceId(ns: string): Json {
  const re = ns.split('*').map(escapeRegex).join('.*');
  return { authenticated: { principal_name: { safe_regex: { regex: `.*/ns/${re}/.*` } } } };
}

function serviceAccountId(sa: string): Json {
  const [ns, name] = sa.split('/');
  return { authenticated: { principal_name: { exact: `spiffe://${TRUST_DOMAIN}/ns/${ns}/sa/${name}` } } };
}

function cidr(v: string): Json {
  const [ip, bits] = v.split('/');
  return { address_prefix: ip, prefix_len: { value: bits !== undefined ? Number(bits) : ip.includes(':') ? 128 : 32 } };
}

/** A matcher on jwt_authn's payload metadata at `path` (a string, or any element of a list). */
function jwtMetadata(path: string[], m: Json, listToo: boolean): Json {
  const meta = (value: Json): Json => ({ metadata: { filter: JWT_AUTHN_FILTER, path: [JWT_PAYLOAD_METADATA_KEY, ...path].map((key) => ({ key })), value } });
  if (!listToo) return meta({ string_match: m });
  return { or_ids: { ids: [meta({ string_match: m }), meta({ list_match: { one_of: { string_match: m } } })] } };
}

/**
 * `request.auth.principal` = `iss/sub` of the verified token. The issuer may itself hold `/`, so the joined
 * string is matched exactly: an OR over every way of splitting the value at a `/` into issuer and subject.
 */
function requestPrincipalId(v: string): Json {
  if (v === '*') return jwtMetadata(['iss'], { safe_regex: { regex: '.+' } }, false);
  const splits = (s: string): number[] => [...s].flatMap((c, i) => (c === '/' ? [i] : []));
  const both = (iss: Json, sub: Json): Json => ({ and_ids: { ids: [jwtMetadata(['iss'], iss, false), jwtMetadata(['sub'], sub, false)] } });
  const subAny = { safe_regex: { regex: '.*' } };
  const alts: Json[] = [];
  if (v.endsWith('*')) {
    // "iss/sub" starts with p: the issuer starts with p, or the issuer is p up to a "/" and the subject starts with the rest.
    const p = v.slice(0, -1);
    alts.push(both({ prefix: p }, subAny));
    for (const i of splits(p)) alts.push(both({ exact: p.slice(0, i) }, { prefix: p.slice(i + 1) }));
  } else if (v.startsWith('*')) {
    const s = v.slice(1);
    alts.push(both({ safe_regex: { regex: '.*' } }, { suffix: s }));
    for (const i of splits(s)) alts.push(both({ suffix: s.slice(0, i) }, { exact: s.slice(i + 1) }));
  } else {
    for (const i of splits(v)) alts.push(both({ exact: v.slice(0, i) }, { exact: v.slice(i + 1) }));
  }
  // Empty prefix/suffix matchers are invalid in Envoy: an empty one means "anything" here.
  const fixed = alts.map((a) => fixEmpty(a));
  return fixed.length === 0 ? { not_id: anyId } : orIds(fixed);
}

function fixEmpty(x: unknown): Json {
  if (Array.isArray(x)) return x.map(fixEmpty) as unknown as Json;
  if (typeof x !== 'object' || x === null) return x as Json;
  const o = x as Json;
  if (Object.keys(o).length === 1 && (o.prefix === '' || o.suffix === '')) return { safe_regex: { regex: '.*' } };
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, fixEmpty(v)]));
}

function header(name: string, v: string): Json {
  if (v === '*') return { header: { name, present_match: true } };
  return { header: { name, string_match: wildcardMatcher(v) } };
}

/** Istio's host matcher: case-insensitive, with or without a port for exact hosts. */
function hostPermission(v: string): Json {
  if (v === '*') return { header: { name: ':authority', present_match: true } };
  if (v.startsWith('*') || v.endsWith('*')) return { header: { name: ':authority', string_match: wildcardMatcher(v, '', true) } };
  return { header: { name: ':authority', string_match: { safe_regex: { regex: `(?i)${escapeRegex(v)}(:[0-9]+)?` } } } };
}

function pathPermission(v: string): Json {
  return { url_path: { path: wildcardMatcher(v) } };
}

function portPermission(v: string): Json {
  return { destination_port: Number(v) };
}

function field<T>(values: readonly T[] | undefined, one: (v: T) => Json, or: (x: Json[]) => Json, not: boolean): Json[] {
  if (values === undefined || values.length === 0) return [];
  const m = or(values.map(one));
  return [not ? (or === orIds ? { not_id: m } : { not_rule: m }) : m];
}

/** Whether a source uses HTTP-only fields. */
function sourceHttpOnly(s: AuthorizationSource): boolean {
  return (s.requestPrincipals?.length ?? 0) > 0 || (s.notRequestPrincipals?.length ?? 0) > 0;
}
function operationHttpOnly(o: AuthorizationOperation): boolean {
  return [o.hosts, o.notHosts, o.methods, o.notMethods, o.paths, o.notPaths].some((x) => (x?.length ?? 0) > 0);
}
function conditionHttpOnly(c: AuthorizationCondition): boolean {
  return c.key.startsWith('request.');
}

function sourceId(s: AuthorizationSource, tcp: boolean): Json {
  const ids: Json[] = [
    ...field(s.principals, principalId, orIds, false),
    ...field(s.notPrincipals, principalId, orIds, true),
    ...(tcp ? [] : field(s.requestPrincipals, requestPrincipalId, orIds, false)),
    ...(tcp ? [] : field(s.notRequestPrincipals, requestPrincipalId, orIds, true)),
    ...field(s.namespaces, namespaceId, orIds, false),
    ...field(s.notNamespaces, namespaceId, orIds, true),
    ...field(s.serviceAccounts, serviceAccountId, orIds, false),
    ...field(s.notServiceAccounts, serviceAccountId, orIds, true),
    ...field(s.ipBlocks, (v) => ({ direct_remote_ip: cidr(v) }), orIds, false),
    ...field(s.notIpBlocks, (v) => ({ direct_remote_ip: cidr(v) }), orIds, true),
    ...field(s.remoteIpBlocks, (v) => ({ remote_ip: cidr(v) }), orIds, false),
    ...field(s.notRemoteIpBlocks, (v) => ({ remote_ip: cidr(v) }), orIds, true),
  ];
  return andIds(ids);
}

function operationPermission(o: AuthorizationOperation, tcp: boolean): Json {
  const rules: Json[] = [
    ...(tcp ? [] : field(o.hosts, hostPermission, orRules, false)),
    ...(tcp ? [] : field(o.notHosts, hostPermission, orRules, true)),
    ...field(o.ports, portPermission, orRules, false),
    ...field(o.notPorts, portPermission, orRules, true),
    ...(tcp ? [] : field(o.methods, (v) => header(':method', v), orRules, false)),
    ...(tcp ? [] : field(o.notMethods, (v) => header(':method', v), orRules, true)),
    ...(tcp ? [] : field(o.paths, pathPermission, orRules, false)),
    ...(tcp ? [] : field(o.notPaths, pathPermission, orRules, true)),
  ];
  return andRules(rules);
}

/** A `when` condition: which side it belongs to and its matcher for one value. */
function conditionMatcher(key: string): { side: 'principal' | 'permission'; one: (v: string) => Json } {
  const bracket = (prefix: string) => key.slice(prefix.length).split('][').map((s) => s.replace(/^\[|\]$/g, ''));
  if (key.startsWith('request.headers[')) return { side: 'principal', one: (v) => header(bracket('request.headers')[0], v) };
  if (key.startsWith('request.auth.claims[')) return { side: 'principal', one: (v) => jwtMetadata(bracket('request.auth.claims'), wildcardMatcher(v), true) };
  switch (key) {
    case 'source.ip': return { side: 'principal', one: (v) => ({ direct_remote_ip: cidr(v) }) };
    case 'remote.ip': return { side: 'principal', one: (v) => ({ remote_ip: cidr(v) }) };
    case 'source.namespace': return { side: 'principal', one: namespaceId };
    case 'source.principal': return { side: 'principal', one: principalId };
    case 'source.serviceAccount': return { side: 'principal', one: serviceAccountId };
    case 'request.auth.principal': return { side: 'principal', one: requestPrincipalId };
    case 'request.auth.audiences': return { side: 'principal', one: (v) => jwtMetadata(['aud'], wildcardMatcher(v), true) };
    case 'request.auth.presenter': return { side: 'principal', one: (v) => jwtMetadata(['azp'], wildcardMatcher(v), false) };
    case 'destination.ip': return { side: 'permission', one: (v) => ({ destination_ip: cidr(v) }) };
    case 'destination.port': return { side: 'permission', one: portPermission };
    case 'connection.sni': return { side: 'permission', one: (v) => ({ requested_server_name: wildcardMatcher(v) }) };
    default: throw new Error(`unvalidated when key ${key}`);
  }
}

/** One rule → an RBAC policy, or undefined when the rule cannot apply on a TCP chain of an ALLOW-like policy. */
export function rulePolicy(rule: AuthorizationRule, opts: { tcp: boolean; dropHttpOnly: boolean }): Json | undefined {
  const { tcp } = opts;
  if (tcp && opts.dropHttpOnly) {
    const http = (rule.from ?? []).some((f) => sourceHttpOnly(f.source)) || (rule.to ?? []).some((t) => operationHttpOnly(t.operation)) || (rule.when ?? []).some(conditionHttpOnly);
    if (http) return undefined;
  }
  const principals: Json[] = [];
  const permissions: Json[] = [];
  if (rule.from !== undefined && rule.from.length > 0) principals.push(orIds(rule.from.map((f) => sourceId(f.source, tcp))));
  if (rule.to !== undefined && rule.to.length > 0) permissions.push(orRules(rule.to.map((t) => operationPermission(t.operation, tcp))));
  for (const c of rule.when ?? []) {
    if (tcp && conditionHttpOnly(c)) continue;
    const m = conditionMatcher(c.key);
    if (m.side === 'principal') {
      principals.push(...field(c.values, m.one, orIds, false), ...field(c.notValues, m.one, orIds, true));
    } else {
      permissions.push(...field(c.values, m.one, orRules, false), ...field(c.notValues, m.one, orRules, true));
    }
  }
  return { permissions: [andRules(permissions)], principals: [andIds(principals)] };
}

/** Istio's `istio.io/dry-run: "true"` annotation: the policy is evaluated and counted, never enforced. */
function isDryRun(p: AuthorizationPolicy): boolean {
  return p.annotations['istio.io/dry-run'] === 'true';
}

/** An ext_authz provider of meshConfig.extensionProviders, resolved to the proxy's cluster for it. */
export interface ResolvedExtAuthz {
  name: string;
  cluster: string;
  timeout: Duration;
  failOpen: boolean;
  /** `statusOnError` as a number; undefined: Envoy's default 403. */
  statusOnError: number | undefined;
}

/**
 * The provider of the CUSTOM policies that apply to a workload, as Istio resolves it: undefined when there are
 * none (dry-run CUSTOM policies are not applied: Istio has no dry-run for CUSTOM), `{ provider }` when usable, else
 * `{ provider: undefined }` after an error diagnostic naming the field (the CUSTOM rules then deny what they match).
 * Only one provider per workload (Istio); the provider must be `envoyExtAuthzGrpc` (Sloop's proxy has no
 * `http_service`), its `service` (`[ns/]host`) a Service or ServiceEntry host of the registry with `port`. A
 * provider service the proxy does not see (a Sidecar's egress hides it) still resolves, with a warning: the
 * cluster is not in its CDS and every check fails (`statusOnError`, or `failOpen`).
 */
export function resolveCustomProvider(push: PushContext, proxy: ProxyInfo, policies: readonly AuthorizationPolicy[], diagnostics: Diagnostic[]): { provider: ResolvedExtAuthz | undefined } | undefined {
  const custom = [...policies].filter((p) => p.spec.action === 'CUSTOM').sort(olderFirst);
  for (const p of custom.filter(isDryRun)) {
    diagnostics.push(diag(p, 'metadata.annotations', 'istio.io/dry-run is not supported for CUSTOM policies (as in Istio): the policy is not applied'));
  }
  const active = custom.filter((p) => !isDryRun(p));
  if (active.length === 0) return undefined;
  const fail = (p: MeshConfigMap | AuthorizationPolicy, path: string, why: string): { provider: undefined } => {
    diagnostics.push(diag(p, path, `${why}; requests the CUSTOM rules of ${active.map((a) => `${a.namespace}/${a.name}`).join(', ')} match are denied instead`, { severity: 'error' }));
    return { provider: undefined };
  };
  const names = [...new Set(active.map((p) => p.spec.provider?.name ?? ''))];
  if (names.length > 1) {
    return fail(active[active.length - 1], 'spec.provider.name', `workload ${proxy.namespace}/${proxy.name}: only one CUSTOM provider may apply to a workload (Istio), found ${names.map((n) => `"${n}"`).join(', ')}`);
  }
  const policy = active[0];
  const name = names[0];
  const mesh = meshConfigOf(push.model);
  const providers = mesh.config.extensionProviders ?? [];
  const index = providers.findIndex((e) => e.name === name);
  if (index < 0 || mesh.resource === undefined) {
    const known = providers.map((e) => `"${e.name}"`).join(', ');
    return fail(policy, 'spec.provider.name', `provider "${name}" is not defined in meshConfig.extensionProviders (ConfigMap istio-system/istio, data.mesh)${known !== '' ? `; defined: ${known}` : ''}`);
  }
  const cm = mesh.resource;
  const entry = providers[index];
  const at = `data.mesh.extensionProviders[${index}]`;
  if (entry.envoyExtAuthzHttp !== undefined) return fail(cm, `${at}.envoyExtAuthzHttp`, `provider "${name}": envoyExtAuthzHttp is not supported (Sloop's ext_authz filter speaks gRPC only); use envoyExtAuthzGrpc`);
  const grpc = entry.envoyExtAuthzGrpc;
  if (grpc === undefined) return fail(cm, at, `provider "${name}" is not an authorization provider (envoyExtAuthzGrpc)`);
  const slash = grpc.service.indexOf('/');
  const ns = slash >= 0 ? grpc.service.slice(0, slash) : undefined;
  const host = slash >= 0 ? grpc.service.slice(slash + 1) : grpc.service;
  const candidates = push.registry.services.filter((svc) => svc.hostname === host && (ns === undefined || svc.namespace === ns));
  if (candidates.length === 0) {
    return fail(cm, `${at}.envoyExtAuthzGrpc.service`, `provider "${name}": service "${grpc.service}" is not a Service or ServiceEntry host of the mesh${!host.includes('.') ? ' (use the fully qualified host, such as name.namespace.svc.cluster.local)' : ''}`);
  }
  if (candidates.length > 1 && ns === undefined) {
    return fail(cm, `${at}.envoyExtAuthzGrpc.service`, `provider "${name}": host "${host}" is defined in namespaces ${candidates.map((c) => c.namespace).join(', ')}; qualify it as <namespace>/${host}`);
  }
  const svc = candidates[0];
  if (!svc.ports.some((p) => p.port === grpc.port && p.protocol !== 'UDP')) {
    return fail(cm, `${at}.envoyExtAuthzGrpc.port`, `provider "${name}": service ${svc.hostname} has no port ${grpc.port} (ports: ${svc.ports.map((p) => p.port).join(', ')})`);
  }
  const cluster = outboundClusterName(grpc.port, '', svc.hostname);
  if (!push.servicesVisibleTo(proxy).includes(svc)) {
    diagnostics.push(diag(cm, `${at}.envoyExtAuthzGrpc.service`, `provider "${name}": ${svc.hostname} is not visible to workload ${proxy.namespace}/${proxy.name} (Sidecar egress or exportTo), so its cluster ${cluster} is not in the proxy's CDS and every check of policy ${policy.namespace}/${policy.name} fails (${grpc.failOpen === true ? 'failOpen: allowed' : `statusOnError ${grpc.statusOnError ?? '403'}`})`));
  }
  if (grpc.includeRequestBodyInCheck !== undefined) {
    diagnostics.push(diag(cm, `${at}.envoyExtAuthzGrpc.includeRequestBodyInCheck`, `provider "${name}": includeRequestBodyInCheck is not supported by Sloop's ext_authz filter (with_request_body); checks carry no body`, { severity: 'error', code: 'SLOOP_ERR_CONFIG_UNSUPPORTED' }));
  }
  return {
    provider: {
      name,
      cluster,
      timeout: grpc.timeout ?? EXT_AUTHZ_DEFAULT_TIMEOUT,
      failOpen: grpc.failOpen ?? false,
      statusOnError: grpc.statusOnError !== undefined ? Number(grpc.statusOnError) : undefined,
    },
  };
}

/** Istio's ext_authz filter for a gRPC provider, called only for requests a CUSTOM rule matched (the shadow RBAC's metadata). */
function extAuthzFilter(p: ResolvedExtAuthz): object {
  return {
    name: HTTP_EXT_AUTHZ_FILTER,
    typed_config: any(EXT_AUTHZ_TYPE, {
      grpc_service: { envoy_grpc: { cluster_name: p.cluster }, timeout: duration(p.timeout) },
      ...(p.failOpen ? { failure_mode_allow: true } : {}),
      ...(p.statusOnError !== undefined ? { status_on_error: { code: p.statusOnError } } : {}),
      transport_api_version: 'V3',
      filter_enabled_metadata: {
        filter: HTTP_RBAC_FILTER,
        path: [{ key: `${EXT_AUTHZ_SHADOW_STAT_PREFIX}shadow_effective_policy_id` }],
        value: { string_match: { prefix: EXT_AUTHZ_MATCH_PREFIX } },
      },
    }),
  };
}

/**
 * The authorization filters of a workload's chain, in Istio's order: CUSTOM (shadow RBAC + ext_authz, or the deny
 * fallback), AUDIT, DENY, ALLOW. `custom` is {@link resolveCustomProvider}'s answer for the workload. Dry-run
 * policies (`istio.io/dry-run: "true"`) go to `shadow_rules` (stat prefix `istio_dry_run_allow_` /
 * `istio_dry_run_deny_`, the result in dynamic metadata), so a dry-run ALLOW policy alone does not turn on
 * allow-nothing.
 */
export function rbacFilters(policies: readonly AuthorizationPolicy[], tcp: boolean, diagnostics: Diagnostic[] | undefined, custom?: { provider: ResolvedExtAuthz | undefined }): object[] {
  const sorted = [...policies].sort(olderFirst);
  const toPolicies = (selected: readonly AuthorizationPolicy[], dropHttpOnly: boolean, prefix = ''): Record<string, Json> => {
    const out: Record<string, Json> = {};
    for (const p of selected) {
      (p.spec.rules ?? []).forEach((rule, i) => {
        const policy = rulePolicy(rule, { tcp, dropHttpOnly });
        if (policy !== undefined) out[`${prefix}ns[${p.namespace}]-policy[${p.name}]-rule[${i}]`] = policy;
      });
    }
    return out;
  };
  /** The filter body for one action: enforced `rules`, and `shadow_rules` for `istio.io/dry-run` policies. */
  const build = (actions: readonly string[], rbacAction: RbacAction, dropHttpOnly: boolean): Json | undefined => {
    const selected = sorted.filter((p) => actions.includes(p.spec.action ?? 'ALLOW'));
    const enforced = selected.filter((p) => !isDryRun(p));
    const dryRun = selected.filter(isDryRun);
    const body: Json = {};
    const rules = toPolicies(enforced, dropHttpOnly);
    // DENY, LOG and the CUSTOM fallback with nothing to match enforce nothing; ALLOW with nothing allows nothing.
    if (enforced.length > 0 && (Object.keys(rules).length > 0 || rbacAction === 'ALLOW')) body.rules = { action: rbacAction, policies: rules };
    if (dryRun.length > 0 && rbacAction !== 'LOG') {
      body.shadow_rules = { action: rbacAction, policies: toPolicies(dryRun, dropHttpOnly) };
      body.shadow_rules_stat_prefix = rbacAction === 'ALLOW' ? 'istio_dry_run_allow_' : 'istio_dry_run_deny_';
    }
    return Object.keys(body).length > 0 ? body : undefined;
  };
  const out: object[] = [];
  const wrap = (body: Json): object => (tcp
    ? { name: NETWORK_RBAC_FILTER, typed_config: any(NETWORK_RBAC_TYPE, { stat_prefix: 'tcp.', ...body }) }
    : { name: HTTP_RBAC_FILTER, typed_config: any(HTTP_RBAC_TYPE, body) });
  // CUSTOM: dry-run ones are not applied (resolveCustomProvider said so).
  const customPolicies = sorted.filter((p) => p.spec.action === 'CUSTOM' && !isDryRun(p));
  if (customPolicies.length > 0) {
    const provider = custom?.provider;
    if (provider !== undefined && !tcp) {
      const shadow = toPolicies(customPolicies, false, `${EXT_AUTHZ_MATCH_PREFIX}-`);
      if (Object.keys(shadow).length > 0) {
        out.push(wrap({ shadow_rules: { action: 'DENY', policies: shadow }, shadow_rules_stat_prefix: EXT_AUTHZ_SHADOW_STAT_PREFIX }), extAuthzFilter(provider));
      }
    } else {
      const rules = toPolicies(customPolicies, false);
      if (Object.keys(rules).length > 0) {
        out.push(wrap({ rules: { action: 'DENY', policies: rules } }));
        if (provider !== undefined) {
          for (const p of customPolicies) {
            diagnostics?.push(diag(p, 'spec.action', `CUSTOM on TCP traffic (TCP ports, the inbound passthrough, TLS the app terminates) needs envoy.filters.network.ext_authz, which Sloop's proxy does not have: connections this policy's rules match (HTTP-only fields ignored) are denied`));
          }
        }
      }
    }
  }
  for (const [actions, action, drop] of [[['AUDIT'], 'LOG', true], [['DENY'], 'DENY', false], [['ALLOW'], 'ALLOW', true]] as const) {
    const body = build(actions, action, drop);
    if (body !== undefined) out.push(wrap(body));
  }
  return out;
}
