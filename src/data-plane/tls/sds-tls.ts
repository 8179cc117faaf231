/**
 * A TLS context (downstream or upstream) whose certificates or trust bundle come from named secrets (SDS):
 * built when every secret it names is present, rebuilt when one changes, and swapped in for *new*
 * connections only. Connections already established keep the SecureContext they were made with, so a
 * certificate rotation never drops a connection (Envoy does the same: a new SSL_CTX for new connections).
 *
 * While a secret is pending (the agent has not got its first certificate, or ADS has not delivered it yet) the
 * context does not exist: the listener or cluster warms, as under Envoy's init manager, for up to a timeout.
 */
import type { CommonTlsContext__Output } from '../../xds/gen/envoy/extensions/transport_sockets/tls/v3/CommonTlsContext.ts';
import type { SdsSecretConfig__Output } from '../../xds/gen/envoy/extensions/transport_sockets/tls/v3/SdsSecretConfig.ts';
import type { Secret__Output } from '../../xds/gen/envoy/extensions/transport_sockets/tls/v3/Secret.ts';
import { ConfigError } from '../../shared/errors.ts';
import type { Logger } from '../../shared/log.ts';
import type { SecretManager } from './secrets.ts';
import type { TlsContextOptions } from './context.ts';

/** Envoy's default SDS `initial_fetch_timeout`: how long a listener or cluster waits for its secrets. */
export const DEFAULT_SECRET_WARMING_MS = 15_000;

/** Every SDS secret a CommonTlsContext names (certificates and validation context). */
export function sdsReferences(common: CommonTlsContext__Output | null | undefined): SdsSecretConfig__Output[] {
  if (!common) return [];
  const refs = [...common.tls_certificate_sds_secret_configs];
  if (common.validation_context_type === 'validation_context_sds_secret_config' && common.validation_context_sds_secret_config) {
    refs.push(common.validation_context_sds_secret_config);
  }
  if (common.validation_context_type === 'combined_validation_context' && common.combined_validation_context?.validation_context_sds_secret_config) {
    refs.push(common.combined_validation_context.validation_context_sds_secret_config);
  }
  return refs;
}

/** The SDS secrets a CommonTlsContext's validation context names (the trust bundle side). */
export function sdsValidationReferences(common: CommonTlsContext__Output | null | undefined): SdsSecretConfig__Output[] {
  return sdsReferences(common).slice(common?.tls_certificate_sds_secret_configs.length ?? 0);
}

export interface SdsTlsOptions<T> {
  /** The context's CommonTlsContext: the secrets it names are watched. */
  common: CommonTlsContext__Output | null;
  secrets: SecretManager;
  /** Compiles the context with these options (`lookupSecret`, `spiffeTrustDomain`); throws ConfigError. */
  build: (options: TlsContextOptions) => T;
  /** Called with each context built after a secret changed (not for the one built by `create`). */
  onUpdate: (tls: T) => void;
  log: Logger;
  /** Where the context is, for logs (`listener in:15006 chain 0`, `cluster outbound|80||x`). */
  where: string;
}

export class SdsTls<T> {
  #current: T | undefined;
  readonly #o: SdsTlsOptions<T>;
  readonly #refs: readonly SdsSecretConfig__Output[];
  readonly #unsubscribe: (() => void)[] = [];
  #scheduled = false;
  #closed = false;
  /** Resolves when a context exists (at once if the secrets were all present). */
  readonly ready: Promise<void>;
  #markReady!: () => void;
  /** Number of contexts built after a secret changed. */
  rebuilds = 0;

  /**
   * Builds now if every secret is present (a bad secret is then a ConfigError, as for inline certificates), or
   * waits for pending ones. A secret no source can deliver is a ConfigError (`SDS secret "x" is unknown`).
   */
  constructor(o: SdsTlsOptions<T>) {
    this.#o = o;
    this.#refs = sdsReferences(o.common);
    this.ready = new Promise((r) => (this.#markReady = r));
    const validation = new Set(sdsValidationReferences(o.common));
    const states = this.#refs.map((r) => o.secrets.availability(r, validation.has(r) ? 'validation' : 'certificate'));
    if (states.includes('unavailable') || states.every((s) => s === 'present')) {
      this.#current = o.build(this.#options()); // throws ConfigError
      this.#markReady();
    } else {
      o.log.info({ where: o.where, secrets: this.#refs.filter((_, i) => states[i] === 'pending').map((r) => r.name) }, 'TLS context warming: waiting for secrets');
    }
    for (const name of new Set(this.#refs.map((r) => r.name))) this.#unsubscribe.push(o.secrets.subscribe(name, () => this.#schedule()));
  }

  /** The context for new connections; undefined while warming. */
  get current(): T | undefined {
    return this.#current;
  }

  /** Whether a context exists, else the names still missing. */
  missing(): string[] {
    return this.#refs.map((r) => r.name).filter((n) => this.#o.secrets.get(n) === undefined);
  }

  /** Waits until ready or `timeoutMs`; true if ready. */
  async waitReady(timeoutMs: number): Promise<boolean> {
    if (this.#current !== undefined) return true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((r) => {
      timer = setTimeout(() => r(false), timeoutMs);
      timer.unref();
    });
    const ok = await Promise.race([this.ready.then(() => true), timeout]);
    clearTimeout(timer);
    return ok;
  }

  close(): void {
    this.#closed = true;
    for (const u of this.#unsubscribe.splice(0)) u();
  }

  #options(): TlsContextOptions {
    const secrets = this.#o.secrets;
    return {
      lookupSecret: (name: string): Secret__Output | undefined => secrets.get(name),
      spiffeTrustDomain: secrets.spiffeTrustDomain(this.#refs.map((r) => r.name)),
    };
  }

  /** Secrets change in bursts (the agent sets ROOTCA and default together): rebuild once per tick. */
  #schedule(): void {
    if (this.#scheduled || this.#closed) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      if (!this.#closed) this.#rebuild();
    });
  }

  #rebuild(): void {
    const o = this.#o;
    const missing = this.missing();
    if (missing.length > 0) {
      // A removed secret: keep the last context (Envoy keeps serving with what it has).
      if (this.#current !== undefined) o.log.warn({ where: o.where, secrets: missing }, 'TLS secret removed; keeping the last context');
      return;
    }
    let built: T;
    try {
      built = o.build(this.#options());
    } catch (err) {
      const detail = err instanceof ConfigError ? err.diagnostics.map((d) => `${d.path}: ${d.message}`).join('; ') : (err as Error).message;
      o.log.error({ where: o.where, err: detail }, 'TLS secret update rejected; keeping the last context');
      return;
    }
    const first = this.#current === undefined;
    this.#current = built;
    this.rebuilds++;
    if (first) {
      o.log.info({ where: o.where }, 'TLS context warmed');
      this.#markReady();
    } else o.log.debug({ where: o.where }, 'TLS context rebuilt with updated secrets');
    o.onUpdate(built);
  }
}
