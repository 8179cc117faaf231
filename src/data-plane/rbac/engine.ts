/**
 * Envoy's RBAC engine (config.rbac.v3.RBAC), shared by envoy.filters.http.rbac and envoy.filters.network.rbac:
 * compiled once at config time into plain matcher trees, evaluated per request (HTTP) or per connection
 * (network). Semantics follow Envoy's RoleBasedAccessControlEngineImpl and rbac/matchers.cc:
 * - a policy matches when ANY of its permissions and ANY of its principals match;
 * - policies are tried in name order (Envoy keeps them in a sorted map); the first match is the effective policy;
 * - ALLOW allows only when a policy matches, DENY denies only when one matches, LOG always allows (and reports
 *   whether a policy matched as the access-log hint).
 * What a matcher reads comes from {@link RbacContext}: connection facts for both filters, request facts (headers,
 * path, dynamic metadata) only for HTTP. The network filter evaluates with no request, which Envoy models as an
 * empty header map: header matchers see absent headers and url_path never matches.
 * Unsupported pieces are config errors naming the field: CEL `condition`s, Permission `matcher`/`uri_template`
 * extensions, Principal `filter_state`, `audit_logging_options` loggers.
 */
import type { RBAC__Output } from '../../xds/gen/envoy/config/rbac/v3/RBAC.ts';
import type { Permission__Output } from '../../xds/gen/envoy/config/rbac/v3/Permission.ts';
import type { Principal__Output } from '../../xds/gen/envoy/config/rbac/v3/Principal.ts';
import type { CidrRange__Output } from '../../xds/gen/envoy/config/core/v3/CidrRange.ts';
import type { MetadataMatcher__Output } from '../../xds/gen/envoy/type/matcher/v3/MetadataMatcher.ts';
import type { ValueMatcher__Output } from '../../xds/gen/envoy/type/matcher/v3/ValueMatcher.ts';
import type { PathMatcher__Output } from '../../xds/gen/envoy/type/matcher/v3/PathMatcher.ts';
import type { Diagnostic } from '../../shared/errors.ts';
import {
  compileHeaderMatcher,
  compileStringMatcher,
  getHeaderJoined,
  matchHeaderValue,
  matchString,
  type CompiledHeaderMatcher,
  type CompiledStringMatcher,
  type CompileSink,
} from '../http/route/matchers.ts';
import { cidrContains, parseCidrRange, parseIp, type CidrRange } from '../listener/cidr-range.ts';
import type { DownstreamConnectionInfo, RequestHead } from '../http/stream.ts';

/** What one evaluation sees. `head` and `metadata` are absent for the network filter. */
export interface RbacContext {
  readonly conn: DownstreamConnectionInfo;
  readonly head: RequestHead | undefined;
  readonly metadata: ReadonlyMap<string, Record<string, unknown>> | null | undefined;
  /**
   * The connection manager's x-forwarded-for settings, for `remote_ip` (see {@link trustedClientAddress}).
   * Absent (the network filter): `remote_ip` is the connection's peer address.
   */
  readonly xff?: { readonly useRemoteAddress: boolean; readonly numTrustedHops: number } | undefined;
}

/** The engine's verdict. */
export interface RbacResult {
  readonly allowed: boolean;
  /** The first matching policy's name, or undefined when none matched. */
  readonly policyId: string | undefined;
}

type Action = 'ALLOW' | 'DENY' | 'LOG';

/** A compiled matcher node: a permission or a principal (the two share one evaluator). */
type Node =
  | { readonly t: 'any' }
  | { readonly t: 'and'; readonly ids: readonly Node[] }
  | { readonly t: 'or'; readonly ids: readonly Node[] }
  | { readonly t: 'not'; readonly id: Node }
  | { readonly t: 'header'; readonly m: CompiledHeaderMatcher }
  | { readonly t: 'path'; readonly m: CompiledStringMatcher }
  | { readonly t: 'dst_ip'; readonly r: CidrRange }
  | { readonly t: 'direct_ip'; readonly r: CidrRange }
  | { readonly t: 'client_ip'; readonly r: CidrRange }
  | { readonly t: 'dst_port'; readonly port: number }
  | { readonly t: 'dst_port_range'; readonly start: number; readonly end: number }
  | { readonly t: 'sni'; readonly m: CompiledStringMatcher }
  | { readonly t: 'metadata'; readonly m: CompiledMetadataMatcher }
  | { readonly t: 'authenticated'; readonly m: CompiledStringMatcher | undefined };

/** A compiled envoy.type.matcher.v3.MetadataMatcher (also ext_authz's `filter_enabled_metadata`). */
export interface CompiledMetadataMatcher {
  readonly filter: string;
  readonly path: readonly string[];
  readonly value: CompiledValueMatcher;
  readonly invert: boolean;
}

type CompiledValueMatcher =
  | { readonly t: 'null' }
  | { readonly t: 'double_exact'; readonly v: number }
  | { readonly t: 'double_range'; readonly start: number; readonly end: number }
  | { readonly t: 'string'; readonly m: CompiledStringMatcher }
  | { readonly t: 'bool'; readonly v: boolean }
  | { readonly t: 'present'; readonly v: boolean }
  | { readonly t: 'list'; readonly one: CompiledValueMatcher }
  | { readonly t: 'or'; readonly any: readonly CompiledValueMatcher[] }
  | { readonly t: 'never' };

interface CompiledPolicy {
  readonly name: string;
  readonly permissions: readonly Node[];
  readonly principals: readonly Node[];
}

/** A compiled RBAC rule set. */
export class RbacEngine {
  readonly action: Action;
  /** Some matcher reads dynamic metadata (callers may skip materializing it otherwise). */
  readonly readsMetadata: boolean;
  private readonly policies: readonly CompiledPolicy[];

  constructor(action: Action, policies: readonly CompiledPolicy[], readsMetadata: boolean) {
    this.action = action;
    this.policies = policies;
    this.readsMetadata = readsMetadata;
  }

  /** Evaluates the rules; allocates nothing but the result and, once, the parsed peer addresses. */
  evaluate(ctx: RbacContext): RbacResult {
    const ev = new Evaluation(ctx);
    let matched: string | undefined;
    for (const p of this.policies) {
      if (ev.anyMatch(p.permissions) && ev.anyMatch(p.principals)) {
        matched = p.name;
        break;
      }
    }
    switch (this.action) {
      case 'ALLOW':
        return { allowed: matched !== undefined, policyId: matched };
      case 'DENY':
        return { allowed: matched === undefined, policyId: matched };
      default:
        return { allowed: true, policyId: matched };
    }
  }
}

/** Per-evaluation state: lazily parsed addresses. */
class Evaluation {
  private readonly ctx: RbacContext;
  private remote: Uint8Array | null | undefined;
  private client: Uint8Array | null | undefined;
  private local: Uint8Array | null | undefined;

  constructor(ctx: RbacContext) {
    this.ctx = ctx;
  }

  anyMatch(nodes: readonly Node[]): boolean {
    for (let i = 0; i < nodes.length; i++) if (this.match(nodes[i]!)) return true;
    return false;
  }

  private remoteIp(): Uint8Array | null {
    if (this.remote === undefined) this.remote = parseIp(this.ctx.conn.remoteAddress) ?? null;
    return this.remote;
  }

  private clientIp(): Uint8Array | null {
    if (this.client === undefined) {
      const ctx = this.ctx;
      this.client = ctx.xff === undefined || ctx.head === undefined ? this.remoteIp() : (parseIp(trustedClientAddress(ctx.head, ctx.conn.remoteAddress, ctx.xff)) ?? null);
    }
    return this.client;
  }

  private localIp(): Uint8Array | null {
    if (this.local === undefined) this.local = parseIp(this.ctx.conn.localAddress) ?? null;
    return this.local;
  }

  match(n: Node): boolean {
    const ctx = this.ctx;
    switch (n.t) {
      case 'any':
        return true;
      case 'and':
        for (const c of n.ids) if (!this.match(c)) return false;
        return true;
      case 'or':
        return this.anyMatch(n.ids);
      case 'not':
        return !this.match(n.id);
      case 'header':
        return matchHeaderValue(n.m, headerValue(ctx.head, n.m.name));
      case 'path': {
        const head = ctx.head;
        // Envoy's PathMatcher: no :path (the network filter) never matches; the query string is not part of it.
        if (head === undefined || head.path === '') return false;
        const q = head.path.indexOf('?');
        return matchString(n.m, q < 0 ? head.path : head.path.slice(0, q));
      }
      case 'dst_ip': {
        const ip = this.localIp();
        return ip !== null && cidrContains(n.r, ip);
      }
      case 'direct_ip': {
        const ip = this.remoteIp();
        return ip !== null && cidrContains(n.r, ip);
      }
      case 'client_ip': {
        const ip = this.clientIp();
        return ip !== null && cidrContains(n.r, ip);
      }
      case 'dst_port':
        return ctx.conn.localPort === n.port;
      case 'dst_port_range':
        return ctx.conn.localPort >= n.start && ctx.conn.localPort < n.end;
      case 'sni':
        return matchString(n.m, ctx.conn.serverName);
      case 'metadata':
        return matchMetadata(n.m, ctx.metadata);
      case 'authenticated':
        return matchAuthenticated(n.m, ctx.conn);
    }
  }
}

/**
 * Envoy's trusted client address (HCM "x-forwarded-for" rules), what RBAC `remote_ip` matches: with
 * use_remote_address the immediate peer is appended to the XFF list first; then the address `numTrustedHops`
 * places from the right is the client (use_remote_address with 0 hops: the peer itself; without
 * use_remote_address and 0 hops: the last XFF entry). Too few entries or an entry that is not an IP: the peer.
 */
export function trustedClientAddress(head: RequestHead, peer: string, xff: { readonly useRemoteAddress: boolean; readonly numTrustedHops: number }): string {
  if (xff.useRemoteAddress && xff.numTrustedHops === 0) return peer;
  const raw = getHeaderJoined(head.headers, 'x-forwarded-for');
  if (raw === undefined) return peer;
  const entries = raw.split(',');
  if (xff.useRemoteAddress) entries.push(peer);
  const i = entries.length - 1 - xff.numTrustedHops;
  if (i < 0) return peer;
  const a = entries[i]!.trim();
  return parseIp(a) === undefined ? peer : a;
}

/**
 * A request header's value for RBAC: every value joined with "," (Envoy's HeaderUtility), pseudo-headers from the
 * request line. `host` and `:authority` are the same header in Envoy (HTTP/1 Host becomes :authority).
 */
function headerValue(head: RequestHead | undefined, name: string): string | undefined {
  if (head === undefined) return undefined;
  switch (name) {
    case ':authority':
    case 'host':
      return head.authority === '' ? undefined : head.authority;
    case ':path':
      return head.path === '' ? undefined : head.path;
    case ':method':
      return head.method;
    case ':scheme':
      return head.scheme;
    default:
      return getHeaderJoined(head.headers, name);
  }
}

/**
 * Envoy's AuthenticatedMatcher: plaintext never matches; without principal_name any TLS connection matches;
 * otherwise the peer certificate's URI SANs, then DNS SANs, then its subject are tried.
 */
function matchAuthenticated(m: CompiledStringMatcher | undefined, conn: DownstreamConnectionInfo): boolean {
  if (!conn.isTls) return false;
  if (m === undefined) return true;
  const peer = conn.peerCertificate;
  if (peer === undefined) return matchString(m, '');
  for (const u of peer.uriSans) if (matchString(m, u)) return true;
  for (const d of peer.dnsSans) if (matchString(m, d)) return true;
  return matchString(m, peer.subject);
}

/** Envoy's MetadataMatcher over the request's dynamic metadata (a missing value is "not set"). */
export function matchMetadata(m: CompiledMetadataMatcher, md: RbacContext['metadata']): boolean {
  let v: unknown = md?.get(m.filter);
  for (let i = 0; i < m.path.length && v !== undefined; i++) {
    v = v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>)[m.path[i]!] : undefined;
  }
  if (m.path.length === 0) v = undefined; // PGV: path has min_items 1; an empty path reads nothing.
  return matchValue(m.value, v) !== m.invert;
}

function matchValue(m: CompiledValueMatcher, v: unknown): boolean {
  switch (m.t) {
    case 'null':
      return v === null;
    case 'double_exact':
      return typeof v === 'number' && v === m.v;
    case 'double_range':
      return typeof v === 'number' && v >= m.start && v < m.end;
    case 'string':
      return typeof v === 'string' && matchString(m.m, v);
    case 'bool':
      return typeof v === 'boolean' && v === m.v;
    case 'present':
      return m.v === (v !== undefined);
    case 'list':
      return Array.isArray(v) && v.some((e) => matchValue(m.one, e));
    case 'or':
      return m.any.some((x) => matchValue(x, v));
    default:
      return false;
  }
}

// ---- compilation ---------------------------------------------------------------------------------------

function unsupported(sink: CompileSink, path: string, message: string): void {
  sink.diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_UNSUPPORTED', path, message });
}

function invalid(sink: CompileSink, path: string, message: string): void {
  sink.diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path, message });
}

function compileCidr(c: CidrRange__Output | null | undefined, path: string, sink: CompileSink): CidrRange {
  const r = parseCidrRange(c?.address_prefix ?? '', c?.prefix_len?.value ?? 0);
  if (typeof r === 'string') {
    invalid(sink, path, r);
    return { bytes: new Uint8Array(0), prefixLen: 0 };
  }
  return r;
}

function compilePathMatcher(p: PathMatcher__Output | null | undefined, path: string, sink: CompileSink): CompiledStringMatcher {
  if (!p?.path) {
    invalid(sink, path, 'PathMatcher needs `path`');
    return { kind: 0, value: '\u0000never', ignoreCase: false, regex: undefined };
  }
  return compileStringMatcher(p.path, `${path}.path`, sink);
}

function compileValueMatcher(v: ValueMatcher__Output | null | undefined, path: string, sink: CompileSink): CompiledValueMatcher {
  switch (v?.match_pattern) {
    case 'null_match':
      return { t: 'null' };
    case 'double_match': {
      const d = v.double_match!;
      if (d.match_pattern === 'exact') return { t: 'double_exact', v: d.exact ?? 0 };
      if (d.match_pattern === 'range') return { t: 'double_range', start: d.range?.start ?? 0, end: d.range?.end ?? 0 };
      invalid(sink, `${path}.double_match`, 'DoubleMatcher needs `range` or `exact`');
      return { t: 'never' };
    }
    case 'string_match':
      return { t: 'string', m: compileStringMatcher(v.string_match!, `${path}.string_match`, sink) };
    case 'bool_match':
      return { t: 'bool', v: v.bool_match ?? false };
    case 'present_match':
      return { t: 'present', v: v.present_match ?? false };
    case 'list_match':
      return { t: 'list', one: compileValueMatcher(v.list_match?.one_of, `${path}.list_match.one_of`, sink) };
    case 'or_match':
      return { t: 'or', any: (v.or_match?.value_matchers ?? []).map((x, i) => compileValueMatcher(x, `${path}.or_match.value_matchers[${i}]`, sink)) };
    default:
      invalid(sink, path, 'ValueMatcher needs a match_pattern');
      return { t: 'never' };
  }
}

/** Compiles a MetadataMatcher; problems go to `sink.diagnostics` with paths under `path`. */
export function compileMetadataMatcher(m: MetadataMatcher__Output | null | undefined, path: string, sink: CompileSink & { readsMetadata?: boolean }): CompiledMetadataMatcher {
  sink.readsMetadata = true;
  const segs = (m?.path ?? []).map((s) => s.key ?? '');
  if (segs.length === 0) invalid(sink, `${path}.path`, 'MetadataMatcher needs at least one path segment');
  return { filter: m?.filter ?? '', path: segs, value: compileValueMatcher(m?.value, `${path}.value`, sink), invert: m?.invert ?? false };
}

function compilePermission(p: Permission__Output, path: string, sink: CompileSink): Node {
  switch (p.rule) {
    case 'any':
      return { t: 'any' };
    case 'and_rules':
      return { t: 'and', ids: (p.and_rules?.rules ?? []).map((r, i) => compilePermission(r, `${path}.and_rules.rules[${i}]`, sink)) };
    case 'or_rules':
      return { t: 'or', ids: (p.or_rules?.rules ?? []).map((r, i) => compilePermission(r, `${path}.or_rules.rules[${i}]`, sink)) };
    case 'not_rule':
      return { t: 'not', id: compilePermission(p.not_rule!, `${path}.not_rule`, sink) };
    case 'header':
      return { t: 'header', m: compileHeaderMatcher(p.header!, `${path}.header`, sink) };
    case 'url_path':
      return { t: 'path', m: compilePathMatcher(p.url_path, `${path}.url_path`, sink) };
    case 'destination_ip':
      return { t: 'dst_ip', r: compileCidr(p.destination_ip, `${path}.destination_ip`, sink) };
    case 'destination_port':
      return { t: 'dst_port', port: p.destination_port ?? 0 };
    case 'destination_port_range':
      return { t: 'dst_port_range', start: p.destination_port_range?.start ?? 0, end: p.destination_port_range?.end ?? 0 };
    case 'requested_server_name':
      return { t: 'sni', m: compileStringMatcher(p.requested_server_name!, `${path}.requested_server_name`, sink) };
    case 'metadata':
      return { t: 'metadata', m: compileMetadataMatcher(p.metadata, `${path}.metadata`, sink) };
    case 'matcher':
    case 'uri_template':
      unsupported(sink, `${path}.${p.rule}`, `RBAC permission \`${p.rule}\` (${p[p.rule]?.typed_config?.type_url ?? 'extension'}) is not supported`);
      return { t: 'not', id: { t: 'any' } };
    default:
      invalid(sink, path, 'a Permission needs a rule');
      return { t: 'not', id: { t: 'any' } };
  }
}

function compilePrincipal(p: Principal__Output, path: string, sink: CompileSink): Node {
  switch (p.identifier) {
    case 'any':
      return { t: 'any' };
    case 'and_ids':
      return { t: 'and', ids: (p.and_ids?.ids ?? []).map((r, i) => compilePrincipal(r, `${path}.and_ids.ids[${i}]`, sink)) };
    case 'or_ids':
      return { t: 'or', ids: (p.or_ids?.ids ?? []).map((r, i) => compilePrincipal(r, `${path}.or_ids.ids[${i}]`, sink)) };
    case 'not_id':
      return { t: 'not', id: compilePrincipal(p.not_id!, `${path}.not_id`, sink) };
    case 'authenticated': {
      const pn = p.authenticated?.principal_name;
      return { t: 'authenticated', m: pn ? compileStringMatcher(pn, `${path}.authenticated.principal_name`, sink) : undefined };
    }
    // source_ip (deprecated) is the connection's peer, as direct_remote_ip (no PROXY protocol here);
    // remote_ip is the client address the connection manager derives from x-forwarded-for.
    case 'source_ip':
    case 'direct_remote_ip':
      return { t: 'direct_ip', r: compileCidr(p[p.identifier], `${path}.${p.identifier}`, sink) };
    case 'remote_ip':
      return { t: 'client_ip', r: compileCidr(p.remote_ip, `${path}.remote_ip`, sink) };
    case 'header':
      return { t: 'header', m: compileHeaderMatcher(p.header!, `${path}.header`, sink) };
    case 'url_path':
      return { t: 'path', m: compilePathMatcher(p.url_path, `${path}.url_path`, sink) };
    case 'metadata':
      return { t: 'metadata', m: compileMetadataMatcher(p.metadata, `${path}.metadata`, sink) };
    case 'filter_state':
      unsupported(sink, `${path}.filter_state`, 'RBAC principal `filter_state` is not supported');
      return { t: 'not', id: { t: 'any' } };
    default:
      invalid(sink, path, 'a Principal needs an identifier');
      return { t: 'not', id: { t: 'any' } };
  }
}

/**
 * Compiles a config.rbac.v3.RBAC. Diagnostics go to `diags` with paths under `path` (e.g. `rules`).
 */
export function compileRbac(rbac: RBAC__Output, path: string, diags: Diagnostic[]): RbacEngine {
  const sink: CompileSink & { readsMetadata?: boolean } = { diagnostics: diags };
  const action = rbac.action as Action | number;
  const act: Action = action === 'DENY' || action === 1 ? 'DENY' : action === 'LOG' || action === 2 ? 'LOG' : 'ALLOW';
  if ((rbac.audit_logging_options?.logger_configs.length ?? 0) > 0) {
    unsupported(sink, `${path}.audit_logging_options`, 'RBAC audit loggers are not supported');
  }
  const names = Object.keys(rbac.policies).sort();
  const policies: CompiledPolicy[] = [];
  for (const name of names) {
    const p = rbac.policies[name]!;
    const pp = `${path}.policies[${JSON.stringify(name)}]`;
    if (p.condition) unsupported(sink, `${pp}.condition`, 'RBAC policy conditions (CEL) are not supported');
    if (p.checked_condition) unsupported(sink, `${pp}.checked_condition`, 'RBAC policy conditions (CEL) are not supported');
    if (p.permissions.length === 0) invalid(sink, `${pp}.permissions`, 'a policy needs at least one permission');
    if (p.principals.length === 0) invalid(sink, `${pp}.principals`, 'a policy needs at least one principal');
    policies.push({
      name,
      permissions: p.permissions.map((x, i) => compilePermission(x, `${pp}.permissions[${i}]`, sink)),
      principals: p.principals.map((x, i) => compilePrincipal(x, `${pp}.principals[${i}]`, sink)),
    });
  }
  return new RbacEngine(act, policies, sink.readsMetadata === true);
}
