/**
 * The proxy's named TLS secrets (Envoy's SecretManager): what `tls_certificate_sds_secret_configs` and
 * `validation_context_sds_secret_config` resolve against. A secret comes from one of three sources:
 *
 * - `static`: the bootstrap's `static_resources.secrets` (Envoy: an SdsSecretConfig without `sds_config`);
 * - `agent`: the in-process workload agent (src/data-plane/agent/), which serves `default` (the workload's
 *   certificate and key) and `ROOTCA` (the trust bundle) and replaces them on every renewal;
 * - `ads`: the control plane, over the ADS stream (type `envoy.extensions.transport_sockets.tls.v3.Secret`),
 *   for names referenced with `sds_config: { ads: {} }` that no local source provides.
 *
 * Consumers (TLS contexts of listeners and clusters) subscribe to the names they use and rebuild their context
 * when a secret changes. A name a source has *reserved* but not delivered yet is pending: consumers wait for it
 * (warming) instead of failing.
 */
import type { Secret__Output } from '../../xds/gen/envoy/extensions/transport_sockets/tls/v3/Secret.ts';
import type { SdsSecretConfig__Output } from '../../xds/gen/envoy/extensions/transport_sockets/tls/v3/SdsSecretConfig.ts';
import { packAny, unpackAny } from '../../xds/any.ts';

export const SECRET_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';

export type SecretSource = 'static' | 'agent' | 'ads';

type Listener = (secret: Secret__Output | undefined) => void;

/** How a consumer can get a secret it references. */
export type SecretAvailability = 'present' | 'pending' | 'unavailable';

export class SecretManager {
  readonly #secrets = new Map<string, { secret: Secret__Output; source: SecretSource; spiffeTrustDomain?: string; version: string; updatedMs: number }>();
  /** Names a local source (the agent) will provide. */
  readonly #reserved = new Map<string, SecretSource>();
  /**
   * Trust bundles the control plane sends over ADS under a name the agent serves (`ROOTCA`): merged into the
   * agent's (union of the roots), so a root the control plane adds is trusted at once, not at the next renewal.
   */
  readonly #adsBundles = new Map<string, Secret__Output>();
  readonly #listeners = new Map<string, Set<Listener>>();
  /** Names requested over ADS so far (the ADS subscription is this whole set). */
  readonly #adsNames = new Set<string>();
  /** Set when the proxy has an ADS stream (bootstrap dynamic_resources); asks for the full set of names. */
  #adsRequester: ((names: readonly string[]) => void) | undefined;

  /** Declares that `source` will deliver `names` (the agent does this before its first certificate arrives). */
  reserve(names: readonly string[], source: SecretSource): void {
    for (const n of names) this.#reserved.set(n, source);
  }

  /** Connects the ADS client: `request` is called with every SDS name to subscribe to, now and on each change. */
  setAdsRequester(request: ((names: readonly string[]) => void) | undefined): void {
    this.#adsRequester = request;
    if (request !== undefined && this.#adsNames.size > 0) request([...this.#adsNames]);
  }

  get hasAds(): boolean {
    return this.#adsRequester !== undefined;
  }

  /** Names subscribed over ADS. */
  get adsNames(): readonly string[] {
    return [...this.#adsNames];
  }

  /**
   * Adds or replaces a secret and tells its subscribers. A secret reserved by another source is not replaced by
   * ADS. `spiffeTrustDomain` marks a validation context as a SPIFFE trust bundle: peers checked against it must be
   * X.509-SVIDs of that trust domain (context.ts `checkSvid`).
   */
  set(secret: Secret__Output, source: SecretSource, meta: { spiffeTrustDomain?: string; version?: string } = {}): void {
    const owner = this.#reserved.get(secret.name);
    if (owner === 'agent' && source === 'ads') {
      if (secret.validation_context?.trusted_ca?.inline_string === undefined && secret.validation_context?.trusted_ca?.inline_bytes === undefined) return;
      this.#adsBundles.set(secret.name, secret);
      const merged = this.get(secret.name);
      if (merged !== undefined) this.#notify(secret.name, merged);
      return;
    }
    if (owner !== undefined && owner !== source) return;
    const prev = this.#secrets.get(secret.name);
    if (prev !== undefined && prev.source === 'static' && source !== 'static') return; // the bootstrap wins
    this.#secrets.set(secret.name, { secret, source, spiffeTrustDomain: meta.spiffeTrustDomain, version: meta.version ?? '', updatedMs: Date.now() });
    this.#notify(secret.name, secret);
  }

  /** Removes a secret (ADS removal); subscribers are told, and keep their last context. */
  delete(name: string, source: SecretSource): void {
    if (source === 'ads' && this.#adsBundles.delete(name)) {
      const merged = this.get(name);
      if (merged !== undefined) this.#notify(name, merged);
      return;
    }
    const cur = this.#secrets.get(name);
    if (cur === undefined || cur.source !== source) return;
    this.#secrets.delete(name);
    this.#notify(name, undefined);
  }

  get(name: string): Secret__Output | undefined {
    const own = this.#secrets.get(name)?.secret;
    const ads = this.#adsBundles.get(name);
    if (own === undefined || ads === undefined || !own.validation_context) return own;
    // Union of the roots, each PEM certificate once, the agent's first.
    const pems = [bundleText(own), bundleText(ads)].flatMap((t) => t.match(PEM_CERT_RE) ?? []);
    if (pems.length === 0) return own;
    const merged = [...new Set(pems.map((p) => p.trim()))].join('\n') + '\n';
    return { ...own, validation_context: { ...own.validation_context, trusted_ca: { ...own.validation_context.trusted_ca!, specifier: 'inline_string', inline_string: merged } } };
  }

  /** The SPIFFE trust domain of the first of `names` that is a SPIFFE trust bundle, if any. */
  spiffeTrustDomain(names: readonly string[]): string | undefined {
    for (const n of names) {
      const td = this.#secrets.get(n)?.spiffeTrustDomain;
      if (td !== undefined) return td;
    }
    return undefined;
  }

  sourceOf(name: string): SecretSource | undefined {
    return this.#secrets.get(name)?.source ?? this.#reserved.get(name);
  }

  /**
   * Whether a referenced secret can be had: present now, pending (a local source reserved it, or it is asked
   * for over ADS — this call subscribes), or unavailable (a config error, as before SDS existed).
   */
  availability(ref: SdsSecretConfig__Output, role: 'certificate' | 'validation' = 'certificate'): SecretAvailability {
    const viaAds = ref.sds_config?.config_source_specifier === 'ads' && this.#adsRequester !== undefined;
    // A trust bundle the agent serves is also asked of the control plane (merged, see #adsBundles).
    if (role === 'validation' && viaAds && this.#reserved.get(ref.name) === 'agent') this.#requestOverAds(ref.name);
    if (this.#secrets.has(ref.name)) return 'present';
    if (this.#reserved.has(ref.name)) return 'pending';
    if (viaAds) {
      this.#requestOverAds(ref.name);
      return 'pending';
    }
    return 'unavailable';
  }

  /**
   * Every secret for /config_dump (Envoy's SecretsConfigDump): present ones with their source, version and update
   * time, and names still awaited (warming). Private keys and passwords are `[redacted]`, as Envoy redacts them.
   */
  dump(): { name: string; source: SecretSource; version: string; updatedMs: number; secret: Secret__Output | undefined }[] {
    type Entry = { name: string; source: SecretSource; version: string; updatedMs: number; secret: Secret__Output | undefined };
    const out: Entry[] = [...this.#secrets.entries()].map(([name, e]) => ({ name, source: e.source, version: e.version, updatedMs: e.updatedMs, secret: redact(this.get(name)!) }));
    for (const [name, source] of this.#reserved) if (!this.#secrets.has(name)) out.push({ name, source, version: '', updatedMs: 0, secret: undefined });
    for (const name of this.#adsNames) if (!this.#secrets.has(name) && !this.#reserved.has(name)) out.push({ name, source: 'ads', version: '', updatedMs: 0, secret: undefined });
    return out;
  }

  /** Calls `listener` whenever `name` changes; returns the unsubscribe function. */
  subscribe(name: string, listener: Listener): () => void {
    let set = this.#listeners.get(name);
    if (set === undefined) this.#listeners.set(name, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.#listeners.delete(name);
    };
  }

  /** Resolves true once every name is present, false after `timeoutMs`. */
  waitFor(names: readonly string[], timeoutMs: number): Promise<boolean> {
    const missing = (): boolean => names.some((n) => !this.#secrets.has(n));
    if (!missing()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const unsubs: (() => void)[] = [];
      const finish = (ok: boolean): void => {
        clearTimeout(timer);
        for (const u of unsubs) u();
        resolve(ok);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      timer.unref();
      for (const n of names) unsubs.push(this.subscribe(n, () => !missing() && finish(true)));
    });
  }

  #requestOverAds(name: string): void {
    if (this.#adsNames.has(name)) return;
    this.#adsNames.add(name);
    this.#adsRequester?.([...this.#adsNames]);
  }

  #notify(name: string, secret: Secret__Output | undefined): void {
    for (const l of [...(this.#listeners.get(name) ?? [])]) l(secret);
  }
}

const PEM_CERT_RE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

const REDACTED = { specifier: 'inline_string', inline_string: '[redacted]', watched_directory: null } as const;

function redact(s: Secret__Output): Secret__Output {
  const c = s.tls_certificate;
  if (!c) return s;
  return { ...s, tls_certificate: { ...c, private_key: c.private_key ? { ...REDACTED } : c.private_key, password: c.password ? { ...REDACTED } : c.password } };
}

function bundleText(s: Secret__Output): string {
  const ca = s.validation_context?.trusted_ca;
  return ca?.inline_string ?? (ca?.inline_bytes ? Buffer.from(ca.inline_bytes).toString('utf8') : '');
}

/** A Secret in its decoded `__Output` shape (every default filled in) from proto3-JSON-like fields. */
export function makeSecret(fields: { name: string } & Record<string, unknown>): Secret__Output {
  return unpackAny<Secret__Output>(packAny(SECRET_TYPE, fields));
}

/** A `tls_certificate` secret with inline PEM chain and key. */
export function tlsCertificateSecret(name: string, chainPem: string, keyPem: string): Secret__Output {
  return makeSecret({ name, tls_certificate: { certificate_chain: { inline_string: chainPem }, private_key: { inline_string: keyPem } } });
}

/** A `validation_context` secret trusting every certificate of `caPem`. */
export function validationContextSecret(name: string, caPem: string): Secret__Output {
  return makeSecret({ name, validation_context: { trusted_ca: { inline_string: caPem } } });
}
