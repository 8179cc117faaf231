import { createPublicKey } from 'node:crypto';
import '../../shared/identity/reflect-metadata.ts'; // must precede @peculiar/x509: tsyringe checks for it at load time
import * as x509 from '@peculiar/x509';
import { SloopError } from '../../shared/errors.ts';
import { randomSerialHex, type SigningCa } from './root.ts';
import { formatWorkloadSpiffeId, parseSpiffeId, type WorkloadIdentity } from '../../shared/identity/spiffe.ts';

/** 24 h, Istio's default workload certificate TTL (`DEFAULT_WORKLOAD_CERT_TTL`). */
export const DEFAULT_WORKLOAD_TTL_MS = 24 * 3600 * 1000;
/** 90 days, Istio's default maximum (`MAX_WORKLOAD_CERT_TTL`). */
export const DEFAULT_MAX_WORKLOAD_TTL_MS = 90 * 24 * 3600 * 1000;
/** How far notBefore is set before the signing time, so peers whose clocks lag a little accept the certificate. */
export const DEFAULT_BACKDATE_MS = 60 * 1000;

export interface IssuerOptions {
  /** Current time in ms since the epoch. */
  nowMs: () => number;
  /** TTL when the request names none. Default 24 h. Clamped to maxTtlMs. */
  defaultTtlMs?: number;
  /** Longest TTL ever issued. Default 90 days. */
  maxTtlMs?: number;
  /** Default 60 s. */
  backdateMs?: number;
}

export interface SignRequest {
  /** PEM PKCS#10 CSR. Its one SAN must be the URI of `identity`; its key must be ECDSA P-256. */
  csrPem: string;
  /** The identity the caller authenticated the requester as (never taken from the CSR). */
  identity: WorkloadIdentity;
  /** Requested lifetime; `undefined` or 0 means the default (as Istio's `validity_duration`). */
  ttlMs?: number;
}

/** An X.509-SVID and what a peer needs to verify it. The caller owns the returned object. */
export interface IssuedSvid {
  spiffeId: string;
  /** PEM: the leaf first, then the intermediates up to (not including) the root. */
  certChainPem: string[];
  /** PEM trust bundle: every root of the trust domain. */
  rootCertsPem: string[];
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
}

function badCsr(message: string, cause?: unknown): SloopError {
  return new SloopError('SLOOP_ERR_CA_INVALID_CSR', message, cause === undefined ? undefined : { cause });
}

function resolveTtlMs(request: SignRequest, defaultTtlMs: number, maxTtlMs: number): number {
  if (!(maxTtlMs > 0) || !(defaultTtlMs > 0)) {
    throw new SloopError('SLOOP_ERR_CA_INVALID_TTL', `CA TTLs must be positive (default ${defaultTtlMs} ms, max ${maxTtlMs} ms)`);
  }
  const requested = request.ttlMs ?? 0;
  if (!Number.isFinite(requested) || requested < 0) {
    throw new SloopError('SLOOP_ERR_CA_INVALID_TTL', `requested TTL ${requested} ms is not a non-negative number`);
  }
  return Math.min(requested === 0 ? defaultTtlMs : requested, maxTtlMs);
}

/**
 * Checks a CSR and returns its parsed form and the one SPIFFE ID it asks for. Refuses (SLOOP_ERR_CA_INVALID_CSR)
 * anything that is not a PKCS#10 CSR with a valid self-signature, an ECDSA P-256 key, and exactly one SAN which
 * is a URI and a valid SPIFFE ID. Other SAN types are refused because the SVID would not carry them.
 */
export async function checkCsr(csrPem: string): Promise<{ csr: x509.Pkcs10CertificateRequest; requestedId: string }> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    throw badCsr('CSR is not a PEM PKCS#10 certificate request', err);
  }
  let signatureOk: boolean;
  try {
    signatureOk = await csr.verify();
  } catch (err) {
    throw badCsr('CSR signature cannot be checked', err);
  }
  if (!signatureOk) throw badCsr('CSR signature does not verify with its own public key');

  // SPIFFE X509-SVID.md §3: leaf keys; Sloop issues ECDSA P-256 only (the issue's requirement).
  const key = createPublicKey({ key: Buffer.from(csr.publicKey.rawData), format: 'der', type: 'spki' });
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw badCsr(`CSR key must be ECDSA P-256 (got ${key.asymmetricKeyType}${key.asymmetricKeyDetails?.namedCurve ? ` ${key.asymmetricKeyDetails.namedCurve}` : ''})`);
  }

  // PKCS#10 extensionRequest attribute, 2.5.29.17 = subjectAltName.
  let sans: x509.SubjectAlternativeNameExtension[];
  try {
    sans = csr.extensions.filter((e) => e.type === '2.5.29.17').map((e) => new x509.SubjectAlternativeNameExtension(e.rawData));
  } catch (err) {
    // @peculiar/x509 refuses otherName, X.400 and EDI party names, which an SVID never carries either.
    throw badCsr('CSR subjectAltName holds a name type an SVID cannot carry', err);
  }
  if (sans.length !== 1) throw badCsr(`CSR must carry one subjectAltName extension (found ${sans.length})`);
  const names = sans[0].names.items;
  // SPIFFE X509-SVID.md §2: an SVID carries exactly one URI SAN.
  if (names.length !== 1 || names[0].type !== 'url') {
    throw badCsr(`CSR subjectAltName must be exactly one URI (found ${names.map((n) => n.type).join(', ') || 'none'})`);
  }
  const requestedId = names[0].value;
  try {
    parseSpiffeId(requestedId);
  } catch (err) {
    throw badCsr(`CSR URI SAN is not a SPIFFE ID`, err);
  }
  return { csr, requestedId };
}

/**
 * Signs a workload CSR into an X.509-SVID for the identity the caller authenticated, following SPIFFE's
 * X509-SVID.md: one URI SAN, basicConstraints CA:FALSE (critical), keyUsage digitalSignature (critical),
 * extKeyUsage serverAuth + clientAuth. The TTL is the request's (or the default), clamped to the maximum and to
 * the signing certificate's own expiry; notBefore is backdated by `backdateMs`.
 *
 * Throws SloopError: `SLOOP_ERR_CA_INVALID_CSR`, `SLOOP_ERR_CA_IDENTITY_MISMATCH` (the CSR asks for another
 * identity or trust domain), `SLOOP_ERR_CA_INVALID_TTL`, `SLOOP_ERR_CA_INVALID_SPIFFE_ID` (bad `identity`),
 * `SLOOP_ERR_CA_ROOT_INVALID` (the signing certificate has expired).
 */
export async function signWorkloadCsr(ca: SigningCa, request: SignRequest, options: IssuerOptions): Promise<IssuedSvid> {
  const expectedId = formatWorkloadSpiffeId(ca.trustDomain, request.identity);
  const ttlMs = resolveTtlMs(request, options.defaultTtlMs ?? DEFAULT_WORKLOAD_TTL_MS, options.maxTtlMs ?? DEFAULT_MAX_WORKLOAD_TTL_MS);
  const { csr, requestedId } = await checkCsr(request.csrPem);
  if (requestedId !== expectedId) {
    throw new SloopError('SLOOP_ERR_CA_IDENTITY_MISMATCH', `CSR asks for ${requestedId} but the requester authenticated as ${expectedId}`);
  }

  const now = options.nowMs();
  const caNotBefore = ca.signingCert.notBefore.getTime();
  const caNotAfter = ca.signingCert.notAfter.getTime();
  if (now >= caNotAfter) {
    throw new SloopError('SLOOP_ERR_CA_ROOT_INVALID', `signing certificate expired at ${ca.signingCert.notAfter.toISOString()}`);
  }
  // A leaf must not outlive, nor predate, the certificate that signs it (RFC 5280 path validation would fail).
  const notBefore = new Date(Math.max(now - (options.backdateMs ?? DEFAULT_BACKDATE_MS), caNotBefore));
  const notAfter = new Date(Math.min(now + ttlMs, caNotAfter));

  const keyUsage = x509.KeyUsageFlags.digitalSignature;
  // RFC 5480 §3: keyEncipherment must not be set for an EC key, and ECDHE (TLS 1.2/1.3) needs no keyAgreement;
  // digitalSignature alone is what an ECDSA P-256 SVID uses, and SPIFFE X509-SVID.md §4.3 requires it.
  const serialNumber = randomSerialHex();
  // RFC 5280 §4.2.1.1: the AKI repeats the issuer's SKI, which OpenSSL (and so Node's TLS) matches when it
  // builds a path; fall back to hashing the issuer key when the signing certificate has no SKI.
  const issuerSki = ca.signingCert.getExtension(x509.SubjectKeyIdentifierExtension);
  const authorityKeyId = issuerSki
    ? new x509.AuthorityKeyIdentifierExtension(issuerSki.keyId)
    : await x509.AuthorityKeyIdentifierExtension.create(ca.signingCert.publicKey);
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber,
    // SPIFFE leaves carry the identity in the SAN; the subject is empty, so the SAN is critical (RFC 5280 §4.2.1.6).
    subject: '',
    issuer: ca.signingCert.subjectName,
    notBefore,
    notAfter,
    publicKey: csr.publicKey,
    signingKey: ca.signingKey,
    signingAlgorithm: ca.signingAlgorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(keyUsage, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth], false),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: expectedId }], true),
      await x509.SubjectKeyIdentifierExtension.create(csr.publicKey),
      authorityKeyId,
    ],
  });
  return {
    spiffeId: expectedId,
    certChainPem: [leaf.toString('pem'), ...ca.intermediatesPem],
    rootCertsPem: [...ca.rootsPem],
    serialNumber,
    notBefore: leaf.notBefore,
    notAfter: leaf.notAfter,
  };
}
