/**
 * RouteAction.hash_policy compiled to an evaluator that yields the strings a consistent-hash load
 * balancer (ring hash, Maglev) hashes. Envoy's HashPolicyImpl semantics: policies run in order, each may
 * contribute a key, and a `terminal` policy that produced a key stops the rest ("if a terminal policy
 * doesn't work, fall back to the rest"). The balancer combines the keys (Envoy folds them as
 * `rotl(h, 1) ^ next`).
 *
 * - header: every value of the header, with regex_rewrite applied to each, sorted so value order does not
 *   change the key, joined with "\u0000".
 * - cookie: the cookie's value; when absent and `ttl` is set, Envoy generates a cookie from the
 *   downstream address and asks the router to set it: we report that in `ctx.cookieToSet`.
 * - connection_properties.source_ip, query_parameter (first value).
 * - filter_state: skipped (Sloop has no filter state objects yet).
 */
import type { _envoy_config_route_v3_RouteAction_HashPolicy__Output as HashPolicy__Output } from '../../../xds/gen/envoy/config/route/v3/RouteAction.ts';
import type { CompileSink, PseudoHeader, RouteRequest } from './matchers.ts';
import { diagnose, findQueryParameter, pseudoHeaderOf } from './matchers.ts';
import type { CompiledSubstitution } from './regex.ts';
import { compileSubstitution, substitute } from './regex.ts';
import { durationMs } from './retry-policy.ts';
import { xxhash64 } from '../../upstream/lb/xxhash64.ts';

/** A cookie the router must add (Set-Cookie) because a hash policy generated it. */
export interface GeneratedCookie {
  name: string;
  value: string;
  /** Cookie path attribute ('' = none). */
  path: string;
  ttlMs: number;
  attributes: readonly { name: string; value: string }[];
}

/** Per-request inputs and outputs of hashKeys. */
export interface HashContext {
  /** Downstream remote IP without port ('' when unknown). */
  sourceIp: string;
  /**
   * The downstream connection's remote then local address, each `ip:port` (Envoy's `asString()`),
   * concatenated: what a generated cookie's value is hashed from. Defaults to `sourceIp`.
   */
  connectionAddresses?: string;
  /** Set by hashKeys when a cookie hash policy generated a cookie that must be sent to the client. */
  cookieToSet?: GeneratedCookie;
}

const HP_HEADER = 0;
const HP_COOKIE = 1;
const HP_SOURCE_IP = 2;
const HP_QUERY = 3;

interface CompiledHashPolicyEntry {
  kind: 0 | 1 | 2 | 3;
  /** Header, cookie or query parameter name (header lowercased). */
  name: string;
  pseudo: PseudoHeader;
  rewrite: CompiledSubstitution | undefined;
  /** Cookie: generate when absent (ttl set). */
  cookieTtlMs: number | undefined;
  cookiePath: string;
  cookieAttributes: readonly { name: string; value: string }[];
  terminal: boolean;
}

/** A compiled hash_policy list. */
export class CompiledHashPolicy {
  readonly entries: readonly CompiledHashPolicyEntry[];

  constructor(entries: readonly CompiledHashPolicyEntry[]) {
    this.entries = entries;
  }

  /**
   * The keys for this request, or undefined when no policy produced one (the balancer then picks
   * randomly, as Envoy does). May set `ctx.cookieToSet`.
   */
  hashKeys(req: RouteRequest, ctx: HashContext): string[] | undefined {
    let keys: string[] | undefined;
    for (let i = 0; i < this.entries.length; i++) {
      const e = this.entries[i]!;
      const key = entryKey(e, req, ctx);
      if (key === undefined) continue;
      (keys ??= []).push(key);
      if (e.terminal) break;
    }
    return keys;
  }
}

function entryKey(e: CompiledHashPolicyEntry, req: RouteRequest, ctx: HashContext): string | undefined {
  switch (e.kind) {
    case HP_HEADER: {
      if (e.pseudo !== 0) {
        const v = e.pseudo === 1 ? req.authority : e.pseudo === 2 ? req.path : e.pseudo === 3 ? req.method : req.scheme;
        return e.rewrite ? substitute(e.rewrite, v) : v;
      }
      let values: string[] | undefined;
      let single: string | undefined;
      const h = req.headers;
      for (let j = 0; j < h.length; j += 2) {
        if (h[j] !== e.name) continue;
        const v = e.rewrite ? substitute(e.rewrite, h[j + 1]!) : h[j + 1]!;
        if (single === undefined) single = v;
        else (values ??= [single]).push(v);
      }
      if (values === undefined) return single;
      return values.sort().join('\u0000');
    }
    case HP_COOKIE: {
      const v = cookieValue(req.headers, e.name);
      if (v !== undefined) return v;
      if (e.cookieTtlMs === undefined) return undefined;
      // Envoy's Router::addDownstreamSetCookie: Hex::uint64ToHex(xxHash64(remote + local address)), so
      // every stream of one connection gets the same cookie.
      const value = xxhash64(ctx.connectionAddresses ?? ctx.sourceIp).toString(16).padStart(16, '0');
      ctx.cookieToSet = { name: e.name, value, path: e.cookiePath, ttlMs: e.cookieTtlMs, attributes: e.cookieAttributes };
      return value;
    }
    case HP_SOURCE_IP:
      return ctx.sourceIp === '' ? undefined : ctx.sourceIp;
    default:
      return findQueryParameter(req.path, e.name);
  }
}

/** The value of cookie `name` from the request's Cookie header(s), or undefined. */
export function cookieValue(headers: readonly string[], name: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] !== 'cookie') continue;
    const c = headers[i + 1]!;
    let start = 0;
    while (start < c.length) {
      let end = c.indexOf(';', start);
      if (end < 0) end = c.length;
      while (c.charCodeAt(start) === 32) start += 1;
      const eq = c.indexOf('=', start);
      if (eq > 0 && eq < end && eq - start === name.length && c.startsWith(name, start)) {
        let v = c.slice(eq + 1, end).trim();
        if (v.length >= 2 && v[0] === '"' && v[v.length - 1] === '"') v = v.slice(1, -1);
        return v;
      }
      start = end + 1;
    }
  }
  return undefined;
}

/** `ip:port` or `[ipv6]:port`, as Envoy's Address::Instance::asString() prints a socket address. */
export function addressString(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/**
 * The Set-Cookie value for a generated cookie, as Envoy's Http::Utility::makeSetCookieValue builds it for
 * the cookie hash policy: `name="value"`, `Max-Age` in whole seconds unless the ttl is zero (a session
 * cookie), `Path` when set, the configured attributes, then `HttpOnly`.
 */
export function formatSetCookie(c: GeneratedCookie): string {
  let out = `${c.name}="${c.value}"`;
  const maxAgeS = Math.floor(c.ttlMs / 1000);
  if (maxAgeS !== 0) out += `; Max-Age=${maxAgeS}`;
  if (c.path !== '') out += `; Path=${c.path}`;
  for (const a of c.attributes) out += a.value === '' ? `; ${a.name}` : `; ${a.name}=${a.value}`;
  return `${out}; HttpOnly`;
}

/** Compiles `hash_policy` at `path` (the RouteAction). Returns undefined for an empty list. */
export function compileHashPolicy(list: readonly HashPolicy__Output[], path: string, sink: CompileSink): CompiledHashPolicy | undefined {
  const entries: CompiledHashPolicyEntry[] = [];
  list.forEach((hp, i) => {
    const at = `${path}.hash_policy[${i}]`;
    const base = { name: '', pseudo: 0 as PseudoHeader, rewrite: undefined, cookieTtlMs: undefined, cookiePath: '', cookieAttributes: [], terminal: hp.terminal };
    switch (hp.policy_specifier) {
      case 'header': {
        const name = (hp.header?.header_name ?? '').toLowerCase();
        let rewrite: CompiledSubstitution | undefined;
        const rr = hp.header?.regex_rewrite;
        if (rr) {
          try {
            rewrite = compileSubstitution(rr.pattern?.regex ?? '', rr.substitution);
          } catch (err) {
            diagnose(sink, `${at}.header.regex_rewrite`, err);
          }
        }
        entries.push({ ...base, kind: HP_HEADER, name, pseudo: name === 'host' ? 1 : pseudoHeaderOf(name), rewrite });
        break;
      }
      case 'cookie': {
        const c = hp.cookie!;
        entries.push({ ...base, kind: HP_COOKIE, name: c.name, cookieTtlMs: c.ttl ? durationMs(c.ttl) : undefined, cookiePath: c.path, cookieAttributes: c.attributes.map((a) => ({ name: a.name, value: a.value })) });
        break;
      }
      case 'connection_properties':
        if (hp.connection_properties?.source_ip) entries.push({ ...base, kind: HP_SOURCE_IP });
        break;
      case 'query_parameter':
        entries.push({ ...base, kind: HP_QUERY, name: hp.query_parameter?.name ?? '' });
        break;
      default:
        sink.diagnostics.push({ severity: 'warning', code: 'SLOOP_ERR_CONFIG_UNSUPPORTED', path: `${at}.${hp.policy_specifier ?? 'policy_specifier'}`, message: 'hash policy ignored: filter_state is not supported' });
    }
  });
  return entries.length === 0 ? undefined : new CompiledHashPolicy(entries);
}
