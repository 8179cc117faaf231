/**
 * The workload agent inside `sloop proxy` (Istio's pilot-agent SDS server, in process): it owns the workload's
 * private key, which never leaves the process, and keeps a valid X.509-SVID for it.
 *
 * 1. Generate an ECDSA P-256 key and a PKCS#10 CSR whose one URI SAN is the workload's SPIFFE ID.
 * 2. CreateCertificate on the control plane's CA, authenticated with the bootstrap token.
 * 3. Check the answer (the leaf carries our SPIFFE ID and our key, and chains to the trust bundle) and install
 *    the secrets `ROOTCA` (validation_context.trusted_ca: every root of the bundle) and `default`
 *    (tls_certificate: the chain and the key) in the proxy's SecretManager; TLS contexts that use them are
 *    rebuilt for new connections.
 * 4. Renew at half the certificate's life, with jitter (shared/identity/rotation.ts), with a fresh key;
 *    on failure retry with exponential backoff and full jitter, never later than the renewal deadline allows.
 */
import { X509Certificate, createPrivateKey, type webcrypto } from 'node:crypto';
import '../../shared/identity/reflect-metadata.ts'; // must precede @peculiar/x509: tsyringe checks for it at load time
import * as x509 from '@peculiar/x509';
import type { Logger } from '../../shared/log.ts';
import { computeRenewalTimeMs } from '../../shared/identity/rotation.ts';
import { formatWorkloadSpiffeId, type WorkloadIdentity } from '../../shared/identity/spiffe.ts';
import { tlsCertificateSecret, validationContextSecret, type SecretManager } from '../tls/secrets.ts';
import { CaClient } from './ca-client.ts';

x509.cryptoProvider.set(globalThis.crypto);

/** Istio's SDS names: the workload certificate and the mesh trust bundle. */
export const WORKLOAD_SECRET = 'default';
export const ROOT_SECRET = 'ROOTCA';

export interface AgentOptions {
  /** `host:port` of the CA (the control plane). */
  caAddress: string;
  /** Returns the bootstrap token (re-read on every request, so a rotated token file is picked up). */
  token: () => string;
  trustDomain: string;
  identity: WorkloadIdentity;
  secrets: SecretManager;
  log: Logger;
  /** Requested certificate lifetime in seconds; 0 = the CA's default (24 h). */
  ttlSeconds?: number;
  /** Renewal jitter as a fraction of the lifetime (rotation.ts; default ±5 %). */
  jitterFraction?: number;
  /** Retry backoff: first interval and cap. Default 1 s and 30 s. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  nowMs?: () => number;
  random?: () => number;
  /** Extra request metadata (Istio's `metadata` Struct: WorkloadName, ...). */
  metadata?: Record<string, string>;
}

/** The certificate in use, for logs, admin and tests. */
export interface AgentCertificate {
  spiffeId: string;
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
  renewAt: Date;
}

export class WorkloadAgent {
  readonly spiffeId: string;
  readonly #o: AgentOptions;
  readonly #client: CaClient;
  readonly #log: Logger;
  readonly #nowMs: () => number;
  readonly #random: () => number;
  #timer: NodeJS.Timeout | null = null;
  #closed = false;
  #failures = 0;
  #current: AgentCertificate | undefined;
  /** Resolves with the first certificate installed. */
  readonly ready: Promise<AgentCertificate>;
  #markReady!: (c: AgentCertificate) => void;
  /** Counts, for logs and tests. */
  readonly counts = { issued: 0, failed: 0 };

  constructor(o: AgentOptions) {
    this.#o = o;
    this.spiffeId = formatWorkloadSpiffeId(o.trustDomain, o.identity); // throws on a bad identity
    this.#client = new CaClient({ address: o.caAddress });
    this.#log = o.log.child({ component: 'agent', spiffeId: this.spiffeId });
    this.#nowMs = o.nowMs ?? Date.now;
    this.#random = o.random ?? Math.random;
    this.ready = new Promise((r) => (this.#markReady = r));
    // Reserve the names now, so TLS contexts that use them warm instead of asking ADS for them.
    o.secrets.reserve([WORKLOAD_SECRET, ROOT_SECRET], 'agent');
  }

  get current(): AgentCertificate | undefined {
    return this.#current;
  }

  /** Asks for the first certificate at once; renewals and retries follow on their own. */
  start(): void {
    this.#schedule(0);
  }

  close(): void {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#client.close();
  }

  #schedule(delayMs: number): void {
    if (this.#closed) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#renew();
    }, Math.max(0, delayMs));
    // Keep the process alive only through the proxy's own sockets; a pending renewal alone must not.
    this.#timer.unref();
  }

  async #renew(): Promise<void> {
    const started = this.#nowMs();
    try {
      const cert = await this.#fetch(started);
      if (this.#closed) return;
      this.#failures = 0;
      this.counts.issued++;
      const first = this.#current === undefined;
      this.#current = cert;
      this.#log.info(
        { serial: cert.serialNumber, notAfter: cert.notAfter.toISOString(), renewAt: cert.renewAt.toISOString(), rotation: !first },
        first ? 'workload certificate installed' : 'workload certificate rotated',
      );
      if (first) this.#markReady(cert);
      this.#schedule(cert.renewAt.getTime() - this.#nowMs());
    } catch (err) {
      if (this.#closed) return;
      this.counts.failed++;
      this.#failures++;
      const base = this.#o.backoffBaseMs ?? 1000;
      const max = this.#o.backoffMaxMs ?? 30_000;
      // Exponential backoff with full jitter (as the xDS client reconnects), capped; while a certificate is still
      // valid, never wait past its expiry.
      let delay = Math.floor(this.#random() * Math.min(max, base * 2 ** Math.min(this.#failures - 1, 20)));
      delay = Math.max(delay, Math.min(base, 100));
      if (this.#current !== undefined) delay = Math.min(delay, Math.max(0, this.#current.notAfter.getTime() - this.#nowMs() - 1000));
      this.#log.warn({ err: (err as Error).message, attempt: this.#failures, retryInMs: delay }, 'workload certificate request failed; retrying');
      this.#schedule(delay);
    }
  }

  async #fetch(startedMs: number): Promise<AgentCertificate> {
    const keys = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams,
      extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: this.spiffeId }])],
    });
    const chain = await this.#client.createCertificate({
      csrPem: csr.toString('pem'),
      validitySeconds: this.#o.ttlSeconds ?? 0,
      token: this.#o.token(),
      metadata: this.#o.metadata,
    });
    const pkcs8 = Buffer.from(await crypto.subtle.exportKey('pkcs8', keys.privateKey));
    const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`;

    // The last element is the trust bundle (every root); the rest is the leaf and its intermediates.
    const bundlePem = chain[chain.length - 1];
    const certChainPem = chain.slice(0, -1).map((p) => (p.endsWith('\n') ? p : `${p}\n`)).join('');
    const leaf = new X509Certificate(chain[0]);
    this.#check(leaf, chain.slice(1, -1), bundlePem, keyPem);

    const notBefore = new Date(leaf.validFrom);
    const notAfter = new Date(leaf.validTo);
    // The CA backdates notBefore (clock skew); renewal time is half of the life we actually got from now on.
    const renewAtMs = computeRenewalTimeMs(
      { notBeforeMs: Math.max(notBefore.getTime(), Math.min(startedMs, notAfter.getTime() - 1)), notAfterMs: notAfter.getTime() },
      { random: this.#random, jitterFraction: this.#o.jitterFraction },
    );
    // The bundle first: a new root must be trusted before a certificate signed by it is presented.
    this.#o.secrets.set(validationContextSecret(ROOT_SECRET, bundlePem), 'agent', { spiffeTrustDomain: this.#o.trustDomain });
    this.#o.secrets.set(tlsCertificateSecret(WORKLOAD_SECRET, certChainPem, keyPem), 'agent', { version: leaf.serialNumber });
    return { spiffeId: this.spiffeId, serialNumber: leaf.serialNumber, notBefore, notAfter, renewAt: new Date(renewAtMs) };
  }

  /** Refuses an answer the proxy could not use safely: wrong identity, wrong key, or not chaining to the bundle. */
  #check(leaf: X509Certificate, intermediatesPem: string[], bundlePem: string, keyPem: string): void {
    if (leaf.subjectAltName !== `URI:${this.spiffeId}`) throw new Error(`CA issued ${leaf.subjectAltName ?? 'no SAN'}, expected URI:${this.spiffeId}`);
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) throw new Error('CA issued a certificate for another key');
    const roots = splitPem(bundlePem).map((p) => new X509Certificate(p));
    if (roots.length === 0) throw new Error('CA sent an empty trust bundle');
    let cur = leaf;
    for (const p of intermediatesPem) {
      const next = new X509Certificate(p);
      if (!cur.checkIssued(next) || !cur.verify(next.publicKey)) throw new Error('certificate chain is broken');
      cur = next;
    }
    if (!roots.some((r) => cur.checkIssued(r) && cur.verify(r.publicKey))) throw new Error('certificate does not chain to the trust bundle');
  }
}

/** Every PEM certificate in a text. */
export function splitPem(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}
