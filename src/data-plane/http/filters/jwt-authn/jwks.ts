/**
 * JSON Web Key Sets for jwt_authn: parsing with Envoy's statuses, key selection as jwt_verify_lib does it (kid,
 * then alg, then key type), signature verification with `jose` (WebCrypto), and a provider's key source — inline
 * (`local_jwks`) or fetched through a cluster (`remote_jwks`) and cached for `cache_duration`.
 */
import type { JWK } from 'jose';
import { JwtStatus, type JwtStatusText, type ParsedJwt } from './jwt.ts';

/** One usable key of a JWKS. */
export interface JwkEntry {
  kty: 'RSA' | 'EC' | 'oct' | 'OKP';
  kid: string;
  alg: string;
  jwk: JWK;
}

/** A parsed JWKS: its usable keys. */
export interface Jwks {
  keys: readonly JwkEntry[];
}

function validKey(k: unknown): JwkEntry | undefined {
  if (typeof k !== 'object' || k === null) return undefined;
  const j = k as Record<string, unknown>;
  const kid = typeof j.kid === 'string' ? j.kid : '';
  if (j.alg !== undefined && typeof j.alg !== 'string') return undefined;
  const alg = (j.alg as string | undefined) ?? '';
  switch (j.kty) {
    case 'RSA':
      if (typeof j.n !== 'string' || typeof j.e !== 'string') return undefined;
      if (alg !== '' && !alg.startsWith('RS') && !alg.startsWith('PS')) return undefined;
      return { kty: 'RSA', kid, alg, jwk: j as JWK };
    case 'EC':
      if (typeof j.x !== 'string' || typeof j.y !== 'string') return undefined;
      if (j.crv !== undefined && !['P-256', 'P-384', 'P-521'].includes(j.crv as string)) return undefined;
      if (alg !== '' && !alg.startsWith('ES')) return undefined;
      return { kty: 'EC', kid, alg, jwk: j as JWK };
    case 'oct':
      if (typeof j.k !== 'string') return undefined;
      if (alg !== '' && !alg.startsWith('HS')) return undefined;
      return { kty: 'oct', kid, alg, jwk: j as JWK };
    case 'OKP':
      if (j.crv !== 'Ed25519' || typeof j.x !== 'string') return undefined;
      if (alg !== '' && alg !== 'EdDSA') return undefined;
      return { kty: 'OKP', kid, alg, jwk: j as JWK };
    default:
      return undefined;
  }
}

/** Parses a JWKS document (JSON). Invalid keys are skipped; a set with none left is "no valid keys". */
export function parseJwks(text: string): Jwks | JwtStatusText {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return JwtStatus.JwksParseError;
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return JwtStatus.JwksParseError;
  const keys = (doc as Record<string, unknown>).keys;
  if (keys === undefined) return JwtStatus.JwksNoKeys;
  if (!Array.isArray(keys)) return JwtStatus.JwksBadKeys;
  const out: JwkEntry[] = [];
  for (const k of keys) {
    const e = validKey(k);
    if (e !== undefined) out.push(e);
  }
  if (out.length === 0) return JwtStatus.JwksNoValidKeys;
  return { keys: out };
}

const EC_CURVES: Record<string, string> = { ES256: 'P-256', ES384: 'P-384', ES512: 'P-521' };

function keyFitsAlg(k: JwkEntry, alg: string): boolean {
  if (alg.startsWith('RS') || alg.startsWith('PS')) return k.kty === 'RSA';
  if (alg.startsWith('ES')) return k.kty === 'EC' && (k.jwk.crv === undefined || k.jwk.crv === EC_CURVES[alg]);
  if (alg.startsWith('HS')) return k.kty === 'oct';
  return alg === 'EdDSA' && k.kty === 'OKP';
}

/**
 * `jose`, imported on first use (a proxy without jwt_authn never loads it; docs/performance.md, "Memory").
 * A jwt_authn filter starts the import when it is created, so requests find it loaded.
 */
let jose: typeof import('jose') | undefined;
let joseLoading: Promise<typeof import('jose')> | undefined;

export function loadJose(): Promise<typeof import('jose')> {
  return (joseLoading ??= import('jose').then((m) => (jose = m)));
}

/** Imported keys, per JWK object and algorithm (importing is the expensive part of a check). */
const imported = new WeakMap<JwkEntry, Map<string, Promise<unknown>>>();

function importFor(k: JwkEntry, alg: string): Promise<unknown> {
  let m = imported.get(k);
  if (m === undefined) {
    m = new Map();
    imported.set(k, m);
  }
  let p = m.get(alg);
  if (p === undefined) {
    const jwk = { ...k.jwk, alg, ext: true };
    p = jose !== undefined ? jose.importJWK(jwk, alg) : loadJose().then((j) => j.importJWK(jwk, alg));
    m.set(alg, p);
  }
  return p;
}

/**
 * jwt_verify_lib verifyJwtWithoutTimeChecking: tries every key whose kid (when both have one) and alg (when the
 * key has one) match the token's; Ok when one verifies the signature, "Jwt verification fails" when a key matched
 * but none verified, "Jwks doesn't have key to match kid or alg from Jwt" when no key matched.
 */
export async function verifySignature(jwt: ParsedJwt, jwks: Jwks): Promise<JwtStatusText> {
  let matched = false;
  for (const k of jwks.keys) {
    if (jwt.kid !== '' && k.kid !== '' && k.kid !== jwt.kid) continue;
    if (k.alg !== '' && k.alg !== jwt.alg) continue;
    matched = true;
    if (!keyFitsAlg(k, jwt.alg)) continue;
    try {
      const key = await importFor(k, jwt.alg);
      const j = jose ?? (await loadJose());
      await j.compactVerify(jwt.token, key as Parameters<typeof j.compactVerify>[1], { algorithms: [jwt.alg] });
      return JwtStatus.Ok;
    } catch {
      // a bad signature, or a key WebCrypto refuses: try the next key
    }
  }
  return matched ? JwtStatus.JwtVerificationFail : JwtStatus.JwksKidAlgMismatch;
}

/** How a provider fetches its remote JWKS. */
export interface RemoteJwksConfig {
  uri: string;
  cluster: string;
  timeoutMs: number;
  cacheMs: number;
  /** async_fetch: fetch at start and on expiry in the background; undefined = on demand. */
  asyncFetch: { failedRefetchMs: number } | undefined;
  /** retry_policy num_retries (0 = no retry) and the back-off base interval. */
  retries: number;
  retryBaseMs: number;
}

export interface JwksFetcher {
  /** Resolves to the body of a 200 response, rejects otherwise. */
  (cfg: RemoteJwksConfig): Promise<string>;
}

export interface JwksStats {
  fetchSuccess(): void;
  fetchFailed(): void;
}

/**
 * A provider's keys. Local keys are parsed once. Remote keys are fetched when a token needs them and the cache is
 * empty or older than cache_duration (concurrent requests share one fetch); a failed fetch fails those requests
 * with "Jwks remote fetch is failed" and the next request tries again. With async_fetch the keys are fetched at
 * start and refreshed in the background when they expire (a failed refresh retries after failed_refetch_duration,
 * and the previous keys keep serving meanwhile).
 */
export class JwksSource {
  private keys: Jwks | undefined;
  /** A local JWKS that failed to parse: every token fails with "no valid keys". */
  private readonly localStatus: JwtStatusText | undefined;
  private expiresAt = 0;
  private inflight: Promise<Jwks | JwtStatusText> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private used = false;
  private backgroundRuns = 0;
  readonly remote: RemoteJwksConfig | undefined;
  private readonly fetcher: JwksFetcher | undefined;
  private readonly stats: JwksStats;
  private readonly now: () => number;
  private readonly onError: (msg: string) => void;

  constructor(opts: {
    local?: string;
    remote?: RemoteJwksConfig;
    fetcher?: JwksFetcher;
    stats: JwksStats;
    now: () => number;
    onError: (msg: string) => void;
  }) {
    this.remote = opts.remote;
    this.fetcher = opts.fetcher;
    this.stats = opts.stats;
    this.now = opts.now;
    this.onError = opts.onError;
    if (opts.local !== undefined) {
      const j = parseJwks(opts.local);
      if (typeof j === 'string') {
        this.localStatus = j;
        this.onError(`invalid local_jwks: ${j}`);
      } else this.keys = j;
      this.expiresAt = Number.POSITIVE_INFINITY;
    }
    // Deferred: compiling a config (also `--mode validate`, or a config rejected later) must not fetch at once.
    if (this.remote?.asyncFetch !== undefined) this.schedule(0);
  }

  /** The keys to verify with now, or undefined when they must be fetched first (see {@link fetch}). */
  current(): Jwks | JwtStatusText | undefined {
    if (this.localStatus !== undefined) return JwtStatus.JwksNoValidKeys;
    this.used = true;
    // With async_fetch, expired keys keep serving while the background refresh is scheduled or running.
    if (this.keys !== undefined && (this.now() < this.expiresAt || (this.remote?.asyncFetch !== undefined && (this.timer !== undefined || this.inflight !== undefined)))) return this.keys;
    if (this.remote === undefined) return JwtStatus.JwksNoValidKeys;
    return undefined;
  }

  /** Fetches the remote JWKS (shared by concurrent callers): the keys or "Jwks remote fetch is failed". */
  fetch(): Promise<Jwks | JwtStatusText> {
    this.inflight ??= this.doFetch().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private async doFetch(): Promise<Jwks | JwtStatusText> {
    const r = this.remote!;
    for (let attempt = 0; ; attempt++) {
      try {
        const body = await this.fetcher!(r);
        const j = parseJwks(body);
        if (typeof j === 'string') throw new Error(j);
        this.stats.fetchSuccess();
        this.keys = j;
        this.expiresAt = this.now() + r.cacheMs;
        if (r.asyncFetch !== undefined) this.schedule(r.cacheMs);
        return j;
      } catch (err) {
        this.stats.fetchFailed();
        this.onError(`jwks fetch from ${r.uri} failed: ${(err as Error).message}`);
        if (attempt >= r.retries || this.closed) {
          if (r.asyncFetch !== undefined) this.schedule(r.asyncFetch.failedRefetchMs);
          return JwtStatus.JwksFetchFail;
        }
        // Envoy's retry back-off: full jitter up to base × 2^attempt.
        const wait = Math.random() * r.retryBaseMs * 2 ** attempt;
        await new Promise((res) => setTimeout(res, wait).unref());
      }
    }
  }

  /**
   * A background refresh. After the first, a source nobody used since the last one stops refreshing (a filter of
   * a replaced or rejected listener must not fetch forever); its next use fetches on demand and restarts them.
   */
  private refresh(): void {
    if (!this.used && this.backgroundRuns > 0) return;
    this.backgroundRuns++;
    this.used = false;
    void this.fetch();
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.refresh();
    }, ms);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
  }
}
