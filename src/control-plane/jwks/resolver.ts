/**
 * The control plane's JWKS fetcher, as istiod's: for every RequestAuthentication `jwksUri` the control plane
 * fetches the key set itself and translation inlines it (`local_jwks`), so a proxy never needs a route to the
 * issuer. Fetched once when a URI first appears, then refreshed every `refreshMs` (Istio's default
 * PILOT_JWT_PUB_KEY_REFRESH_INTERVAL, 20 min); a failed refresh keeps the last good key set. A changed key set
 * calls `onChange` (the control plane pushes). Kept out of translation, which stays pure: it reads
 * {@link JwksResolver.snapshot} through the push context.
 */
import type { Logger } from '../../shared/log.ts';

export const DEFAULT_JWKS_REFRESH_MS = 20 * 60 * 1000;
export const DEFAULT_JWKS_FETCH_TIMEOUT_MS = 5_000;
/** A key set larger than this is refused (istiod's limit is similar in spirit: JWKS are small). */
const MAX_JWKS_BYTES = 1 << 20;

export interface JwksResolverOptions {
  log: Logger;
  /** A key set was fetched for the first time or changed. */
  onChange: () => void;
  refreshMs?: number;
  fetchTimeoutMs?: number;
  /** Injected in tests; default the global fetch. */
  fetch?: typeof globalThis.fetch;
}

interface Entry {
  /** The last good key set, as JSON text. */
  keys: string | undefined;
  error: string | undefined;
  inFlight: boolean;
}

export class JwksResolver {
  readonly #o: Required<Omit<JwksResolverOptions, 'fetch'>> & { fetch: typeof globalThis.fetch };
  readonly #entries = new Map<string, Entry>();
  #timer: NodeJS.Timeout | undefined;

  constructor(o: JwksResolverOptions) {
    this.#o = {
      log: o.log,
      onChange: o.onChange,
      refreshMs: o.refreshMs ?? DEFAULT_JWKS_REFRESH_MS,
      fetchTimeoutMs: o.fetchTimeoutMs ?? DEFAULT_JWKS_FETCH_TIMEOUT_MS,
      fetch: o.fetch ?? globalThis.fetch,
    };
  }

  /** The URIs the config names now: new ones are fetched, gone ones forgotten. */
  update(uris: Iterable<string>): void {
    const want = new Set(uris);
    for (const uri of this.#entries.keys()) if (!want.has(uri)) this.#entries.delete(uri);
    for (const uri of want) {
      if (this.#entries.has(uri)) continue;
      this.#entries.set(uri, { keys: undefined, error: undefined, inFlight: false });
      void this.#fetch(uri);
    }
    if (this.#entries.size > 0 && this.#timer === undefined) {
      this.#timer = setInterval(() => this.refresh(), this.#o.refreshMs);
      this.#timer.unref();
    } else if (this.#entries.size === 0) this.close();
  }

  /** Fetches every URI again now. */
  refresh(): void {
    for (const uri of this.#entries.keys()) void this.#fetch(uri);
  }

  /** URI → key set (JSON text) of every URI fetched successfully at least once. */
  snapshot(): ReadonlyMap<string, string> {
    const out = new Map<string, string>();
    for (const [uri, e] of this.#entries) if (e.keys !== undefined) out.set(uri, e.keys);
    return out;
  }

  /** Why the last fetch of `uri` failed, if it did. */
  errorOf(uri: string): string | undefined {
    return this.#entries.get(uri)?.error;
  }

  close(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  async #fetch(uri: string): Promise<void> {
    const entry = this.#entries.get(uri);
    if (entry === undefined || entry.inFlight) return;
    entry.inFlight = true;
    let keys: string | undefined;
    let error: string | undefined;
    try {
      const res = await this.#o.fetch(uri, { signal: AbortSignal.timeout(this.#o.fetchTimeoutMs), redirect: 'follow' });
      const text = await res.text();
      if (res.status !== 200) error = `HTTP ${res.status}`;
      else if (text.length > MAX_JWKS_BYTES) error = `larger than ${MAX_JWKS_BYTES} bytes`;
      else {
        const parsed = JSON.parse(text) as { keys?: unknown };
        if (!Array.isArray(parsed.keys)) error = 'not a JWK Set (no "keys" array)';
        else keys = JSON.stringify({ keys: parsed.keys });
      }
    } catch (err) {
      error = (err as Error).name === 'TimeoutError' ? `timed out after ${this.#o.fetchTimeoutMs} ms` : (err as Error).message;
    } finally {
      entry.inFlight = false;
    }
    if (this.#entries.get(uri) !== entry) return; // dropped from the config meanwhile
    if (error !== undefined) {
      if (entry.error !== error) this.#o.log.warn({ jwksUri: uri, error, keeping: entry.keys !== undefined }, 'JWKS fetch failed');
      entry.error = error;
      return;
    }
    entry.error = undefined;
    if (keys !== entry.keys) {
      entry.keys = keys;
      this.#o.log.info({ jwksUri: uri }, 'JWKS fetched');
      this.#o.onChange();
    }
  }
}
