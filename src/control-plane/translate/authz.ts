/**
 * AuthorizationPolicy → Envoy RBAC, with Istio's semantics (istio.io/latest/docs/reference/config/security/
 * authorization-policy/ and the authorization concepts page). Pure.
 *
 * Evaluation order on a workload: CUSTOM, then DENY, then ALLOW; AUDIT only logs. Each action becomes one RBAC
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
 * CUSTOM needs an ext_authz provider from meshConfig.extensionProviders, which Sloop has none of: the policy is
 * an error diagnostic and its rules deny what they match (fail closed) instead of calling a provider.
 */
import type { AuthorizationCondition, AuthorizationOperation, AuthorizationPolicy, AuthorizationRule, AuthorizationSource } from '../config/model.ts';
import type { Diagnostic } from '../../shared/errors.ts';
import { any, diag } from './util.ts';
import { JWT_AUTHN_FILTER, JWT_PAYLOAD_METADATA_KEY, TRUST_DOMAIN, olderFirst } from './security.ts';

const HTTP_RBAC_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC';
const NETWORK_RBAC_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC';
export const HTTP_RBAC_FILTER = 'envoy.filters.http.rbac';
export const NETWORK_RBAC_FILTER = 'envoy.filters.network.rbac';

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

/**
 * The RBAC filters of a workload's chain, in Istio's order (CUSTOM fallback, AUDIT, DENY, ALLOW). Dry-run policies
 * (`istio.io/dry-run: "true"`) go to `shadow_rules` (stat prefix `istio_dry_run_allow_` / `istio_dry_run_deny_`,
 * the result in dynamic metadata), so a dry-run ALLOW policy alone does not turn on allow-nothing.
 */
export function rbacFilters(policies: readonly AuthorizationPolicy[], tcp: boolean, diagnostics: Diagnostic[] | undefined): object[] {
  const sorted = [...policies].sort(olderFirst);
  const toPolicies = (selected: readonly AuthorizationPolicy[], dropHttpOnly: boolean): Record<string, Json> => {
    const out: Record<string, Json> = {};
    for (const p of selected) {
      (p.spec.rules ?? []).forEach((rule, i) => {
        const policy = rulePolicy(rule, { tcp, dropHttpOnly });
        if (policy !== undefined) out[`ns[${p.namespace}]-policy[${p.name}]-rule[${i}]`] = policy;
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
  const custom = sorted.filter((p) => p.spec.action === 'CUSTOM');
  for (const p of custom) {
    diagnostics?.push(diag(p, 'spec.provider.name', `CUSTOM authorization needs the ext_authz provider "${p.spec.provider?.name ?? ''}" from meshConfig.extensionProviders, which Sloop does not support yet; requests this policy selects are denied instead`, { severity: 'error', code: 'SLOOP_ERR_CONFIG_UNSUPPORTED' }));
  }
  const out: object[] = [];
  const wrap = (body: Json): object => (tcp
    ? { name: NETWORK_RBAC_FILTER, typed_config: any(NETWORK_RBAC_TYPE, { stat_prefix: 'tcp.', ...body }) }
    : { name: HTTP_RBAC_FILTER, typed_config: any(HTTP_RBAC_TYPE, body) });
  for (const [actions, action, drop] of [[['CUSTOM'], 'DENY', false], [['AUDIT'], 'LOG', true], [['DENY'], 'DENY', false], [['ALLOW'], 'ALLOW', true]] as const) {
    const body = build(actions, action, drop);
    if (body !== undefined) out.push(wrap(body));
  }
  return out;
}
