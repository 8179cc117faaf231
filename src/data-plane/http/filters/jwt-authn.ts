/**
 * envoy.filters.http.jwt_authn (extensions.filters.http.jwt_authn.v3.JwtAuthentication): verifies JSON Web Tokens
 * as Envoy's filter does (filter.cc, verifier.cc, authenticator.cc, extractor.cc and jwt_verify_lib):
 * - The requirement: the route's PerRouteConfig (`disabled`, or `requirement_name` from `requirement_map`; an
 *   unknown name → 403 "Failed JWT authentication: …"), else the first `rules[]` entry whose RouteMatch matches,
 *   else none (the request passes). `bypass_cors_preflight` lets CORS preflights through.
 * - Requirements: `provider_name`, `provider_and_audiences`, `requires_any` (OK if one child is; otherwise the
 *   last error other than missing / unknown issuer, else unknown issuer, else missing — `allow_missing` in the
 *   list turns "missing" into OK, `allow_missing_or_failed` turns anything into OK), `requires_all`,
 *   `allow_missing`, `allow_missing_or_failed`, an empty requirement (passes).
 * - Tokens come from the provider's `from_headers` (value after `value_prefix`), `from_params`, `from_cookies`, or
 *   by default `Authorization: Bearer <jwt>` and `?access_token=`. Every token found must verify.
 * - Per token: parse (alg must be one Envoy supports — `none` is refused), issuer, exp/nbf with
 *   `clock_skew_seconds` (default 60), audiences, `subjects`, `require_expiration`, `max_lifetime`, then the
 *   signature against the provider's JWKS (`local_jwks`, or `remote_jwks` fetched through a cluster and cached for
 *   `cache_duration`, default 10 min; `async_fetch` prefetches and refreshes in the background).
 * - On success: `forward_payload_header` (base64url payload, `pad_forward_payload_header`), `claim_to_headers`
 *   (nested claims `a.b`), the token header removed unless `forward`, `payload_in_metadata` /
 *   `header_in_metadata` written to the request's dynamic metadata `envoy.filters.http.jwt_authn` (RBAC reads it),
 *   `clear_route_cache`. Headers the filter sets are first removed from the request (no spoofing).
 * - On failure: 401 with the status as body ("Jwt is missing", "Jwt is expired", "Jwks remote fetch is failed",
 *   …; 403 for "Audiences in Jwt are not allowed") and `www-authenticate: Bearer realm="<scheme>://<host><path>"`
 *   plus `, error="invalid_token"` unless the token was missing; `strip_failure_response` drops body and header.
 * - Stats `http.<stat_prefix>.jwt_authn.allowed|denied|cors_preflight_bypassed|jwks_fetch_success|jwks_fetch_failed`.
 * Verification is asynchronous (WebCrypto via `jose`, and JWKS fetches): the filter stops the chain and resumes it.
 */
import type { Any__Output } from '../../../xds/gen/google/protobuf/Any.ts';
import type { JwtAuthentication__Output } from '../../../xds/gen/envoy/extensions/filters/http/jwt_authn/v3/JwtAuthentication.ts';
import type { JwtProvider__Output } from '../../../xds/gen/envoy/extensions/filters/http/jwt_authn/v3/JwtProvider.ts';
import type { JwtRequirement__Output } from '../../../xds/gen/envoy/extensions/filters/http/jwt_authn/v3/JwtRequirement.ts';
import type { PerRouteConfig__Output } from '../../../xds/gen/envoy/extensions/filters/http/jwt_authn/v3/PerRouteConfig.ts';
import { unpackAny } from '../../../xds/any.ts';
import { ConfigError, SloopError, type Diagnostic } from '../../../shared/errors.ts';
import type { Counter } from '../../stats/store.ts';
import { durationMs } from '../../duration.ts';
import { resolveDataSource } from '../../data-source.ts';
import { getHeader, getHeaderJoined, removeHeader } from '../headers.ts';
import { compileStringMatcher, findQueryParameter, matchString, type CompiledStringMatcher, type CompileSink } from '../route/matchers.ts';
import { compileStandaloneRouteMatch, standaloneRouteMatches, type CompiledRouteMatch } from '../route/route-table.ts';
import type { FilterFactoryContext, FilterRequest, HttpFilter } from './types.ts';
import { AudienceCheck, checkTime, claimAt, claimHeaderValue, JwtStatus, parseJwt, type JwtStatusText } from './jwt-authn/jwt.ts';
import { JwksSource, loadJose, verifySignature, type RemoteJwksConfig } from './jwt-authn/jwks.ts';
import { clusterGet } from './cluster-http.ts';

export const JWT_AUTHN_FILTER_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication';
export const JWT_AUTHN_METADATA_NAMESPACE = 'envoy.filters.http.jwt_authn';

/** Envoy's MaximumUriLength for the realm of www-authenticate. */
const MAX_REALM_PATH = 256;

/** A compiled JwtProvider. */
export interface CompiledProvider {
  name: string;
  issuer: string;
  audiences: AudienceCheck;
  jwks: JwksSource;
  forward: boolean;
  forwardPayloadHeader: string;
  padForwardPayloadHeader: boolean;
  payloadInMetadata: string;
  headerInMetadata: string;
  claimToHeaders: readonly { header: string; claim: string }[];
  clearRouteCache: boolean;
  clockSkewSec: number;
  subjects: CompiledStringMatcher | undefined;
  requireExpiration: boolean;
  /** Seconds; 0 = no limit. */
  maxLifetimeSec: number;
  spaceDelimitedClaims: ReadonlySet<string>;
  /** Where this provider's tokens are (its own extractor). */
  extractor: Extractor;
}

/** One place a token may be, with the issuers of the providers that name it ('' = a provider without issuer). */
interface Location {
  kind: 'header' | 'param' | 'cookie';
  name: string;
  prefix: string;
  issuers: Set<string>;
}

/** Envoy's Extractor over a set of providers. */
interface Extractor {
  locations: readonly Location[];
  /** Headers the providers set (forward_payload_header, claim_to_headers): removed from requests first. */
  sanitize: readonly string[];
}

interface FoundToken {
  value: string;
  loc: Location;
}

type CompiledRequirement =
  | { kind: 'allow_all' }
  | { kind: 'provider'; provider: CompiledProvider; audiences: AudienceCheck | undefined }
  | { kind: 'allow_missing' | 'allow_failed' }
  | { kind: 'any'; children: readonly CompiledRequirement[]; allowMissing: boolean; allowMissingOrFailed: boolean }
  | { kind: 'all'; children: readonly CompiledRequirement[] };

interface CompiledRule {
  match: CompiledRouteMatch;
  requirement: CompiledRequirement;
}

/** A compiled JwtAuthentication. */
export interface CompiledJwtAuthn {
  providers: ReadonlyMap<string, CompiledProvider>;
  /** Extractor over all providers (allow_missing / allow_missing_or_failed). */
  allExtractor: Extractor;
  rules: readonly CompiledRule[];
  requirementMap: ReadonlyMap<string, CompiledRequirement>;
  bypassCorsPreflight: boolean;
  stripFailureResponse: boolean;
}

const DEFAULT_HEADER = { name: 'authorization', prefix: 'Bearer ' };
const DEFAULT_PARAM = 'access_token';

function buildExtractor(providers: readonly JwtProvider__Output[]): Extractor {
  const byKey = new Map<string, Location>();
  const sanitize = new Set<string>();
  const add = (kind: Location['kind'], name: string, prefix: string, issuer: string): void => {
    const key = `${kind}\0${name}\0${prefix}`;
    let loc = byKey.get(key);
    if (loc === undefined) {
      loc = { kind, name, prefix, issuers: new Set() };
      byKey.set(key, loc);
    }
    loc.issuers.add(issuer);
  };
  for (const p of providers) {
    if (p.from_headers.length === 0 && p.from_params.length === 0 && p.from_cookies.length === 0) {
      add('header', DEFAULT_HEADER.name, DEFAULT_HEADER.prefix, p.issuer);
      add('param', DEFAULT_PARAM, '', p.issuer);
    }
    for (const h of p.from_headers) add('header', h.name.toLowerCase(), h.value_prefix, p.issuer);
    for (const q of p.from_params) add('param', q, '', p.issuer);
    for (const c of p.from_cookies) add('cookie', c, '', p.issuer);
    if (p.forward_payload_header !== '') sanitize.add(p.forward_payload_header.toLowerCase());
    for (const c of p.claim_to_headers) sanitize.add(c.header_name.toLowerCase());
  }
  const locations = [...byKey.values()];
  // Envoy's order: headers, then query parameters, then cookies.
  const order = { header: 0, param: 1, cookie: 2 } as const;
  locations.sort((a, b) => order[a.kind] - order[b.kind]);
  return { locations, sanitize: [...sanitize] };
}

/** The characters a JWT may have (base64url and the dots); a header value's token ends at the first other one. */
function isJwtChar(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 45 || c === 95 || c === 46 || c === 61;
}

function cookieValue(headers: readonly string[], name: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] !== 'cookie') continue;
    for (const part of headers[i + 1]!.split(';')) {
      const eq = part.indexOf('=');
      if (eq < 0) continue;
      if (part.slice(0, eq).trim() !== name) continue;
      let v = part.slice(eq + 1).trim();
      if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
      return v;
    }
  }
  return undefined;
}

function extract(ex: Extractor, path: string, headers: readonly string[]): FoundToken[] {
  const out: FoundToken[] = [];
  for (const loc of ex.locations) {
    if (loc.kind === 'header') {
      const v = getHeaderJoined(headers, loc.name);
      if (v === undefined) continue;
      if (loc.prefix === '') {
        out.push({ value: v, loc });
        continue;
      }
      const pos = v.indexOf(loc.prefix);
      if (pos < 0) continue;
      let end = pos + loc.prefix.length;
      while (end < v.length && isJwtChar(v.charCodeAt(end))) end++;
      out.push({ value: v.slice(pos + loc.prefix.length, end), loc });
    } else if (loc.kind === 'param') {
      const v = findQueryParameter(path, loc.name);
      if (v !== undefined) out.push({ value: v, loc });
    } else {
      const v = cookieValue(headers, loc.name);
      if (v !== undefined) out.push({ value: v, loc });
    }
  }
  return out;
}

function issuerAllowed(loc: Location, iss: string): boolean {
  return loc.issuers.has(iss) || loc.issuers.has('');
}

/** Per-request verification state (Envoy's verifier context). */
class VerifyContext {
  readonly req: FilterRequest;
  readonly extracted: Record<string, unknown> = {};
  hasExtracted = false;

  constructor(req: FilterRequest) {
    this.req = req;
  }
}

/** The jwt_authn filter of one connection manager. */
export class JwtAuthnFilter implements HttpFilter {
  readonly name: string;
  readonly config: CompiledJwtAuthn;
  private readonly allowed: Counter;
  private readonly denied: Counter;
  private readonly corsBypassed: Counter;
  private readonly log: FilterFactoryContext['log'];
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly perRoute = new WeakMap<Any__Output, PerRouteConfig__Output | null>();

  constructor(name: string, config: CompiledJwtAuthn, ctx: FilterFactoryContext, counters: { allowed: Counter; denied: Counter; corsBypassed: Counter }, now: () => number) {
    this.name = name;
    this.config = config;
    this.log = ctx.log;
    this.random = ctx.random;
    this.allowed = counters.allowed;
    this.denied = counters.denied;
    this.corsBypassed = counters.corsBypassed;
    this.now = now;
  }

  private perRouteConfig(any: Any__Output): PerRouteConfig__Output | null {
    let c = this.perRoute.get(any);
    if (c === undefined) {
      try {
        c = unpackAny<PerRouteConfig__Output>(any);
      } catch (err) {
        this.log.warn({ filter: this.name, err: (err as Error).message }, 'invalid jwt_authn PerRouteConfig; filter skipped on this route');
        c = null;
      }
      this.perRoute.set(any, c);
    }
    return c;
  }

  decodeHeaders(req: FilterRequest): boolean {
    const h = req.head.headers;
    if (this.config.bypassCorsPreflight && req.head.method === 'OPTIONS' && (getHeader(h, 'origin') ?? '') !== '' && (getHeader(h, 'access-control-request-method') ?? '') !== '') {
      this.corsBypassed.inc();
      this.allowed.inc();
      return true;
    }
    let requirement: CompiledRequirement | undefined;
    const any = req.matchedRoute?.perFilterConfig(this.name);
    if (any !== undefined) {
      const per = this.perRouteConfig(any);
      if (per !== null && per.requirement_specifier === 'requirement_name') {
        requirement = this.config.requirementMap.get(per.requirement_name!);
        if (requirement === undefined) {
          this.denied.inc();
          req.sendLocalReply(403, `Failed JWT authentication: Wrong requirement_name: ${per.requirement_name}. It should be one of [${[...this.config.requirementMap.keys()].join(',')}]`);
          return false;
        }
      }
      // disabled (or an undecodable per-route config): no requirement.
    } else {
      const rreq = { authority: req.head.authority, path: req.head.path, method: req.head.method, headers: h, scheme: req.head.scheme, isTls: req.conn.isTls };
      for (const r of this.config.rules) {
        if (standaloneRouteMatches(r.match, rreq, this.random())) {
          requirement = r.requirement;
          break;
        }
      }
    }
    if (requirement === undefined || requirement.kind === 'allow_all') {
      this.allowed.inc();
      return true;
    }
    const head = req.head;
    const realm = `${head.scheme}://${head.authority}${head.path.length > MAX_REALM_PATH ? head.path.slice(0, MAX_REALM_PATH) : head.path}`;
    const ctx = new VerifyContext(req);
    let gone = false;
    req.addEncoder({ onDone: () => (gone = true) });
    this.evaluate(requirement, ctx).then(
      (status) => {
        if (!gone) this.complete(ctx, status, realm);
      },
      (err: unknown) => {
        this.log.warn({ filter: this.name, err: (err as Error).message }, 'jwt_authn verification error');
        if (!gone) this.complete(ctx, JwtStatus.JwtVerificationFail, realm);
      },
    );
    return false;
  }

  private complete(ctx: VerifyContext, status: JwtStatusText, realm: string): void {
    const req = ctx.req;
    if (ctx.hasExtracted) {
      const prev = req.dynamicMetadata.get(JWT_AUTHN_METADATA_NAMESPACE);
      req.dynamicMetadata.set(JWT_AUTHN_METADATA_NAMESPACE, prev === undefined ? ctx.extracted : { ...prev, ...ctx.extracted });
    }
    if (status === JwtStatus.Ok) {
      this.allowed.inc();
      req.continueDecoding();
      return;
    }
    this.denied.inc();
    const code = status === JwtStatus.JwtAudienceNotAllowed ? 403 : 401;
    if (this.config.stripFailureResponse) {
      req.sendLocalReply(code, '');
      return;
    }
    const value = `Bearer realm="${realm}"${status === JwtStatus.JwtMissed ? '' : ', error="invalid_token"'}`;
    req.addEncoder({
      onResponseHeaders: (_s, headers) => {
        removeHeader(headers, 'www-authenticate');
        headers.push('www-authenticate', value);
      },
    });
    req.sendLocalReply(code, status);
  }

  private async evaluate(r: CompiledRequirement, ctx: VerifyContext): Promise<JwtStatusText> {
    switch (r.kind) {
      case 'allow_all':
        return JwtStatus.Ok;
      case 'provider':
        return this.authenticate(r.provider.extractor, ctx, r.provider, r.audiences, false, false);
      case 'allow_missing':
        return this.authenticate(this.config.allExtractor, ctx, undefined, undefined, false, true);
      case 'allow_failed':
        return this.authenticate(this.config.allExtractor, ctx, undefined, undefined, true, true);
      case 'all':
        for (const c of r.children) {
          const s = await this.evaluate(c, ctx);
          if (s !== JwtStatus.Ok) return s;
        }
        return JwtStatus.Ok;
      case 'any': {
        let final: JwtStatusText = JwtStatus.JwtMissed;
        for (const c of r.children) {
          const s = await this.evaluate(c, ctx);
          if (s === JwtStatus.Ok) return s;
          // Prefer real errors over "unknown issuer", and that over "missing".
          if ((s !== JwtStatus.JwtMissed && s !== JwtStatus.JwtUnknownIssuer) || final === JwtStatus.JwtMissed) final = s;
        }
        if (r.allowMissingOrFailed) return JwtStatus.Ok;
        if (r.allowMissing && final === JwtStatus.JwtMissed) return JwtStatus.Ok;
        return final;
      }
    }
  }

  /** Envoy's Authenticator: every extracted token is verified; the last status decides (see doneWithStatus). */
  private async authenticate(ex: Extractor, ctx: VerifyContext, provider: CompiledProvider | undefined, audiences: AudienceCheck | undefined, allowFailed: boolean, allowMissing: boolean): Promise<JwtStatusText> {
    const h = ctx.req.head.headers;
    for (const name of ex.sanitize) removeHeader(h, name);
    const tokens = extract(ex, ctx.req.head.path, h);
    let status: JwtStatusText = JwtStatus.JwtMissed;
    while (tokens.length > 0) {
      const tok = tokens.pop()!;
      status = await this.verifyToken(tok, ctx, provider, audiences);
      if (status !== JwtStatus.Ok && !allowFailed && !allowMissing) break;
    }
    if (allowFailed) return JwtStatus.Ok;
    if (allowMissing && status === JwtStatus.JwtMissed) return JwtStatus.Ok;
    return status;
  }

  private findByIssuer(iss: string): CompiledProvider | undefined {
    let noIssuer: CompiledProvider | undefined;
    for (const p of this.config.providers.values()) {
      if (p.issuer === iss) return p;
      if (p.issuer === '' && noIssuer === undefined) noIssuer = p;
    }
    return noIssuer;
  }

  private async verifyToken(tok: FoundToken, ctx: VerifyContext, fixed: CompiledProvider | undefined, audiences: AudienceCheck | undefined): Promise<JwtStatusText> {
    const jwt = parseJwt(tok.value);
    if (typeof jwt === 'string') return jwt;
    if (!issuerAllowed(tok.loc, jwt.iss)) return JwtStatus.JwtUnknownIssuer;
    const p = fixed ?? this.findByIssuer(jwt.iss);
    if (p === undefined || (p.issuer !== '' && p.issuer !== jwt.iss)) return JwtStatus.JwtUnknownIssuer;
    const nowSec = Math.floor(this.now() / 1000);
    const t = checkTime(jwt, nowSec, p.clockSkewSec);
    if (t !== JwtStatus.Ok) return t;
    if ((p.requireExpiration || p.maxLifetimeSec > 0) && jwt.exp === 0) return JwtStatus.JwtExpired;
    if (p.maxLifetimeSec > 0 && jwt.exp - nowSec > p.maxLifetimeSec) return JwtStatus.JwtVerificationFail;
    if (!(audiences ?? p.audiences).allows(jwt.audiences)) return JwtStatus.JwtAudienceNotAllowed;
    if (p.subjects !== undefined && !matchString(p.subjects, jwt.sub)) return JwtStatus.JwtVerificationFail;
    let keys = p.jwks.current();
    keys ??= await p.jwks.fetch();
    if (typeof keys === 'string') return keys;
    const sig = await verifySignature(jwt, keys);
    if (sig !== JwtStatus.Ok) return sig;
    // A good token: Envoy's handleGoodJwt.
    const h = ctx.req.head.headers;
    if (p.forwardPayloadHeader !== '') {
      let v = jwt.payloadB64;
      if (p.padForwardPayloadHeader) v += '='.repeat((4 - (v.length % 4)) % 4);
      h.push(p.forwardPayloadHeader, v);
    }
    for (const c of p.claimToHeaders) {
      const v = claimHeaderValue(claimAt(jwt.payload, c.claim));
      if (v !== undefined) h.push(c.header, v);
    }
    if (!p.forward && tok.loc.kind === 'header') removeHeader(h, tok.loc.name);
    if (p.headerInMetadata !== '') {
      ctx.extracted[p.headerInMetadata] = jwt.header;
      ctx.hasExtracted = true;
    }
    if (p.payloadInMetadata !== '') {
      let payload = jwt.payload;
      if (p.spaceDelimitedClaims.size > 0) {
        payload = { ...payload };
        for (const c of p.spaceDelimitedClaims) {
          const v = payload[c];
          if (typeof v === 'string') payload[c] = v.split(' ').filter((s) => s !== '');
        }
      }
      ctx.extracted[p.payloadInMetadata] = payload;
      ctx.hasExtracted = true;
    }
    if (p.clearRouteCache) ctx.req.clearRouteCache();
    return JwtStatus.Ok;
  }
}

/** What compiling needs besides the config (injected in tests). */
export interface JwtAuthnCompileEnv {
  ctx: FilterFactoryContext;
  jwksStats: { fetchSuccess(): void; fetchFailed(): void };
  now: () => number;
  /** Fetches a remote JWKS body; default: GET through the named cluster (cluster-http.ts). */
  fetcher?: (cfg: RemoteJwksConfig) => Promise<string>;
}

function defaultFetcher(ctx: FilterFactoryContext): (cfg: RemoteJwksConfig) => Promise<string> {
  return async (cfg) => {
    const res = await clusterGet(ctx.clusters, cfg.cluster, cfg.uri, cfg.timeoutMs, ctx.random);
    if (res.status !== 200) throw new Error(`status ${res.status}`);
    return res.body.toString('utf8');
  };
}

/**
 * Compiles a JwtAuthentication.
 * @throws ConfigError with every problem found (paths relative to the typed_config).
 */
export function compileJwtAuthn(cfg: JwtAuthentication__Output, env: JwtAuthnCompileEnv): CompiledJwtAuthn {
  const diags: Diagnostic[] = [];
  const err = (path: string, message: string, code: Diagnostic['code'] = 'SLOOP_ERR_CONFIG_INVALID'): void => {
    diags.push({ severity: 'error', code, path, message });
  };
  const sink: CompileSink = { diagnostics: diags };
  if (cfg.filter_state_rules !== null) err('filter_state_rules', 'filter_state_rules is not supported', 'SLOOP_ERR_CONFIG_UNSUPPORTED');
  const fetcher = env.fetcher ?? defaultFetcher(env.ctx);
  const providers = new Map<string, CompiledProvider>();
  const rawProviders = Object.entries(cfg.providers);
  for (const [name, p] of rawProviders) {
    const at = `providers.${name}`;
    let local: string | undefined;
    let remote: RemoteJwksConfig | undefined;
    if (p.jwks_source_specifier === 'local_jwks') {
      try {
        local = resolveDataSource(p.local_jwks, env.ctx.baseDir)?.toString('utf8') ?? '';
      } catch (e) {
        err(`${at}.local_jwks`, (e as Error).message, e instanceof SloopError ? e.code : 'SLOOP_ERR_CONFIG_INVALID');
      }
    } else if (p.jwks_source_specifier === 'remote_jwks') {
      const r = p.remote_jwks!;
      const uri = r.http_uri;
      if (uri === null || uri.uri === '') err(`${at}.remote_jwks.http_uri`, 'http_uri with a uri is required');
      else if (!uri.cluster) err(`${at}.remote_jwks.http_uri.cluster`, 'cluster is required');
      else {
        remote = {
          uri: uri.uri,
          cluster: uri.cluster,
          timeoutMs: durationMs(uri.timeout, 1000),
          cacheMs: durationMs(r.cache_duration, 600_000),
          asyncFetch: r.async_fetch === null ? undefined : { failedRefetchMs: durationMs(r.async_fetch.failed_refetch_duration, 1000) },
          retries: r.retry_policy === null ? 0 : (r.retry_policy.num_retries?.value ?? 1),
          retryBaseMs: durationMs(r.retry_policy?.retry_back_off?.base_interval, 1000),
        };
      }
    } else err(at, 'one of remote_jwks or local_jwks is required');
    if (p.failed_status_in_metadata !== '') err(`${at}.failed_status_in_metadata`, 'failed_status_in_metadata is not supported', 'SLOOP_ERR_CONFIG_UNSUPPORTED');
    const subjects = p.subjects === null ? undefined : compileStringMatcher(p.subjects, `${at}.subjects`, sink);
    const log = env.ctx.log;
    const jwks = new JwksSource({
      local,
      remote,
      fetcher,
      stats: env.jwksStats,
      now: env.now,
      onError: (msg) => log.warn({ provider: name }, msg),
    });
    providers.set(name, {
      name,
      issuer: p.issuer,
      audiences: new AudienceCheck(p.audiences),
      jwks,
      forward: p.forward,
      forwardPayloadHeader: p.forward_payload_header.toLowerCase(),
      padForwardPayloadHeader: p.pad_forward_payload_header,
      payloadInMetadata: p.payload_in_metadata,
      headerInMetadata: p.header_in_metadata,
      claimToHeaders: p.claim_to_headers.map((c) => ({ header: c.header_name.toLowerCase(), claim: c.claim_name })),
      clearRouteCache: p.clear_route_cache,
      clockSkewSec: p.clock_skew_seconds > 0 ? p.clock_skew_seconds : 60,
      subjects,
      requireExpiration: p.require_expiration,
      maxLifetimeSec: Math.floor(durationMs(p.max_lifetime, 0) / 1000),
      spaceDelimitedClaims: new Set(p.normalize_payload_in_metadata?.space_delimited_claims ?? []),
      extractor: buildExtractor([p]),
    });
  }
  const compileReq = (r: JwtRequirement__Output | null | undefined, at: string): CompiledRequirement => {
    if (r === null || r === undefined) return { kind: 'allow_all' };
    switch (r.requires_type) {
      case 'provider_name':
      case 'provider_and_audiences': {
        const pname = r.requires_type === 'provider_name' ? r.provider_name! : r.provider_and_audiences!.provider_name;
        const provider = providers.get(pname);
        if (provider === undefined) {
          err(`${at}.${r.requires_type}`, `Required provider ['${pname}'] is not configured.`);
          return { kind: 'allow_all' };
        }
        const auds = r.requires_type === 'provider_and_audiences' && r.provider_and_audiences!.audiences.length > 0 ? new AudienceCheck(r.provider_and_audiences!.audiences) : undefined;
        return { kind: 'provider', provider, audiences: auds };
      }
      case 'requires_any': {
        const children: CompiledRequirement[] = [];
        let allowMissing = false;
        let allowMissingOrFailed = false;
        r.requires_any!.requirements.forEach((c, i) => {
          if (c.requires_type === 'allow_missing') allowMissing = true;
          else if (c.requires_type === 'allow_missing_or_failed') allowMissingOrFailed = true;
          else children.push(compileReq(c, `${at}.requires_any.requirements[${i}]`));
        });
        // A list of only allow_* entries is that verifier (Envoy's AnyVerifierImpl).
        if (children.length === 0 && (allowMissing || allowMissingOrFailed)) children.push({ kind: allowMissingOrFailed ? 'allow_failed' : 'allow_missing' });
        return { kind: 'any', children, allowMissing, allowMissingOrFailed };
      }
      case 'requires_all':
        return { kind: 'all', children: r.requires_all!.requirements.map((c, i) => compileReq(c, `${at}.requires_all.requirements[${i}]`)) };
      case 'allow_missing':
        return { kind: 'allow_missing' };
      case 'allow_missing_or_failed':
        return { kind: 'allow_failed' };
      default:
        return { kind: 'allow_all' };
    }
  };
  const requirementMap = new Map<string, CompiledRequirement>();
  for (const [name, r] of Object.entries(cfg.requirement_map)) requirementMap.set(name, compileReq(r, `requirement_map.${name}`));
  const rules: CompiledRule[] = [];
  cfg.rules.forEach((rule, i) => {
    const at = `rules[${i}]`;
    const match = compileStandaloneRouteMatch(rule.match, `${at}.match`, sink);
    let requirement: CompiledRequirement;
    if (rule.requirement_type === 'requirement_name') {
      const r = requirementMap.get(rule.requirement_name!);
      if (r === undefined) {
        err(`${at}.requirement_name`, `Wrong requirement_name: ${rule.requirement_name}. It should be one of [${[...requirementMap.keys()].join(',')}]`);
        requirement = { kind: 'allow_all' };
      } else requirement = r;
    } else requirement = compileReq(rule.requires, `${at}.requires`);
    rules.push({ match, requirement });
  });
  if (diags.some((d) => d.severity === 'error')) {
    for (const p of providers.values()) p.jwks.close();
    throw new ConfigError(diags, 'JwtAuthentication');
  }
  return {
    providers,
    allExtractor: buildExtractor(rawProviders.map(([, p]) => p)),
    rules,
    requirementMap,
    bypassCorsPreflight: cfg.bypass_cors_preflight,
    stripFailureResponse: cfg.strip_failure_response,
  };
}

/** Registry entry: builds the filter from its HCM typed_config. */
export function createJwtAuthnFilter(name: string, typedConfig: Any__Output, ctx: FilterFactoryContext): JwtAuthnFilter {
  loadJose().catch(() => undefined); // verification needs it: load it now rather than on the first request
  const scope = ctx.store.scope(`http.${ctx.statPrefix}.jwt_authn`);
  const fetchSuccess = scope.counter('jwks_fetch_success');
  const fetchFailed = scope.counter('jwks_fetch_failed');
  const now = (): number => Date.now();
  const cfg = compileJwtAuthn(unpackAny<JwtAuthentication__Output>(typedConfig), {
    ctx,
    jwksStats: { fetchSuccess: () => fetchSuccess.inc(), fetchFailed: () => fetchFailed.inc() },
    now,
  });
  return new JwtAuthnFilter(name, cfg, ctx, { allowed: scope.counter('allowed'), denied: scope.counter('denied'), corsBypassed: scope.counter('cors_preflight_bypassed') }, now);
}
