import { X509Certificate as NodeX509Certificate, createPrivateKey, createPublicKey, type KeyObject, type webcrypto } from 'node:crypto';
import { chmod, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import '../../shared/identity/reflect-metadata.ts'; // must precede @peculiar/x509: tsyringe checks for it at load time
import * as x509 from '@peculiar/x509';
import { SloopError } from '../../shared/errors.ts';
import { DEFAULT_TRUST_DOMAIN, validateTrustDomain } from '../../shared/identity/spiffe.ts';

// @peculiar/x509 signs and verifies through WebCrypto; Node's is the standard one.
x509.cryptoProvider.set(globalThis.crypto);

/** WebCrypto types, from node:crypto because the project compiles without the DOM lib. */
export type CryptoKey = webcrypto.CryptoKey;
export type SigningAlgorithm = webcrypto.Algorithm | webcrypto.EcdsaParams;

/** File names of Istio's plugged-in CA layout (`cacerts` secret), which Sloop also uses for its own root. */
export const CA_FILES = {
  cert: 'ca-cert.pem',
  key: 'ca-key.pem',
  root: 'root-cert.pem',
  chain: 'cert-chain.pem',
} as const;

/** Ten years, as Istio's self-signed root (`CITADEL_SELF_SIGNED_CA_CERT_TTL` default 87600h). */
export const DEFAULT_ROOT_TTL_MS = 10 * 365 * 24 * 3600 * 1000;

/** The signing half of a CA, loaded from disk. Immutable; safe to share between requests. */
export interface SigningCa {
  trustDomain: string;
  /** Where the material came from: an operator's `cacerts` or a root Sloop created itself. */
  source: 'operator' | 'self-signed';
  /** The certificate that signs workload certificates (a root, or an operator's intermediate). */
  signingCert: x509.X509Certificate;
  signingKey: CryptoKey;
  signingAlgorithm: SigningAlgorithm;
  /** PEM certificates to send after a leaf, signing certificate first, roots excluded. Empty for a root. */
  intermediatesPem: readonly string[];
  /** PEM trust bundle (every certificate of root-cert.pem). */
  rootsPem: readonly string[];
}

export interface LoadCaOptions {
  /** Defaults to `cluster.local`. */
  trustDomain?: string;
  /** Current time in ms since the epoch; used to refuse an expired CA and to date a new root. */
  nowMs: () => number;
}

export interface SelfSignedCaOptions extends LoadCaOptions {
  /** Lifetime of a newly created root. Defaults to DEFAULT_ROOT_TTL_MS. */
  rootTtlMs?: number;
}

const PEM_CERT_RE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function unreadable(message: string, cause?: unknown): SloopError {
  return new SloopError('SLOOP_ERR_CA_ROOT_UNREADABLE', message, cause === undefined ? undefined : { cause });
}
function invalidCa(message: string, cause?: unknown): SloopError {
  return new SloopError('SLOOP_ERR_CA_ROOT_INVALID', message, cause === undefined ? undefined : { cause });
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw unreadable(`cannot read CA file ${path}`, err);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw unreadable(`cannot stat CA file ${path}`, err);
  }
}

/** Every certificate in a PEM file, in order. Throws `SLOOP_ERR_CA_ROOT_UNREADABLE` if there is none or one is bad. */
export function parseCertificatesPem(text: string, file: string): x509.X509Certificate[] {
  const blocks = text.match(PEM_CERT_RE) ?? [];
  if (blocks.length === 0) throw unreadable(`${file} holds no PEM certificate`);
  return blocks.map((pem, i) => {
    try {
      return new x509.X509Certificate(pem);
    } catch (err) {
      throw unreadable(`${file}: certificate #${i + 1} cannot be parsed`, err);
    }
  });
}

function sameDer(a: x509.X509Certificate, b: x509.X509Certificate): boolean {
  return Buffer.from(a.rawData).equals(Buffer.from(b.rawData));
}

/** WebCrypto import and signature parameters for a CA key. Only keys WebCrypto can sign with are accepted. */
async function importSigningKey(key: KeyObject, file: string): Promise<{ cryptoKey: CryptoKey; signingAlgorithm: SigningAlgorithm }> {
  const pkcs8 = key.export({ type: 'pkcs8', format: 'der' });
  if (key.asymmetricKeyType === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    const params = curve === 'prime256v1' ? { namedCurve: 'P-256', hash: 'SHA-256' } : curve === 'secp384r1' ? { namedCurve: 'P-384', hash: 'SHA-384' } : undefined;
    if (!params) throw invalidCa(`${file}: EC curve ${curve ?? '?'} is not supported (use P-256 or P-384)`);
    const cryptoKey = await crypto.subtle.importKey('pkcs8', pkcs8, { name: 'ECDSA', namedCurve: params.namedCurve }, false, ['sign']);
    return { cryptoKey, signingAlgorithm: { name: 'ECDSA', hash: params.hash } as webcrypto.EcdsaParams };
  }
  if (key.asymmetricKeyType === 'rsa') {
    // Istio's sample cacerts are RSA; PKCS#1 v1.5 with SHA-256 is what Istio's CA signs with.
    const cryptoKey = await crypto.subtle.importKey('pkcs8', pkcs8, { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, false, ['sign']);
    return { cryptoKey, signingAlgorithm: { name: 'RSASSA-PKCS1-v1_5' } };
  }
  throw invalidCa(`${file}: key type ${key.asymmetricKeyType ?? '?'} is not supported (use ECDSA P-256/P-384 or RSA)`);
}

/**
 * Walks from `leaf` to one of `roots` through `pool`, checking issuer names and signatures with node:crypto.
 * Returns the path, leaf first, root last.
 */
function pathToRoot(leaf: x509.X509Certificate, pool: readonly x509.X509Certificate[], roots: readonly x509.X509Certificate[]): x509.X509Certificate[] | undefined {
  const candidates = [...pool, ...roots];
  const path = [leaf];
  for (let depth = 0; depth < 10; depth++) {
    const cur = path[path.length - 1];
    if (roots.some((r) => sameDer(r, cur))) return path;
    const curNode = new NodeX509Certificate(Buffer.from(cur.rawData));
    const issuer = candidates.find((c) => {
      if (sameDer(c, cur)) return false;
      const node = new NodeX509Certificate(Buffer.from(c.rawData));
      return curNode.checkIssued(node) && curNode.verify(node.publicKey); // "this was issued by node"
    });
    if (!issuer) return undefined;
    path.push(issuer);
  }
  return undefined;
}

/**
 * Loads a CA from a directory in Istio's `cacerts` layout: `ca-cert.pem` (the signing certificate, a root or an
 * intermediate), `ca-key.pem` (its private key, any PEM form node:crypto reads), `root-cert.pem` (the trust
 * bundle; may hold several roots during a root rotation) and `cert-chain.pem` (ca-cert.pem followed by the
 * intermediates up to the root; optional when ca-cert.pem is itself a root).
 *
 * Checks that the signing certificate is a CA allowed to sign certificates, is valid now, matches the key, and
 * chains to a certificate in root-cert.pem. Throws SloopError `SLOOP_ERR_CA_ROOT_UNREADABLE` (files missing or
 * not PEM) or `SLOOP_ERR_CA_ROOT_INVALID` (material unusable).
 */
export async function loadCaFromDir(dir: string, options: LoadCaOptions, source: SigningCa['source'] = 'operator'): Promise<SigningCa> {
  const trustDomain = options.trustDomain ?? DEFAULT_TRUST_DOMAIN;
  validateTrustDomain(trustDomain);
  const certFile = join(dir, CA_FILES.cert);
  const keyFile = join(dir, CA_FILES.key);
  const rootFile = join(dir, CA_FILES.root);
  const chainFile = join(dir, CA_FILES.chain);

  const [signingCert] = parseCertificatesPem(await readText(certFile), certFile);
  const roots = parseCertificatesPem(await readText(rootFile), rootFile);
  const chain = (await exists(chainFile)) ? parseCertificatesPem(await readText(chainFile), chainFile) : [signingCert];

  let key: KeyObject;
  try {
    key = createPrivateKey(await readText(keyFile));
  } catch (err) {
    if (err instanceof SloopError) throw err;
    throw unreadable(`${keyFile} is not a PEM private key`, err);
  }

  const basic = signingCert.getExtension(x509.BasicConstraintsExtension);
  if (!basic?.ca) throw invalidCa(`${certFile} is not a CA certificate (basicConstraints CA:TRUE missing)`);
  const usage = signingCert.getExtension(x509.KeyUsagesExtension);
  if (usage && (usage.usages & x509.KeyUsageFlags.keyCertSign) === 0) throw invalidCa(`${certFile} may not sign certificates (keyUsage lacks keyCertSign)`);
  const now = options.nowMs();
  if (now < signingCert.notBefore.getTime() || now >= signingCert.notAfter.getTime()) {
    throw invalidCa(`${certFile} is not valid now (valid ${signingCert.notBefore.toISOString()} to ${signingCert.notAfter.toISOString()})`);
  }
  const keySpki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  if (!keySpki.equals(Buffer.from(signingCert.publicKey.rawData))) throw invalidCa(`${keyFile} does not match the public key of ${certFile}`);
  if (!sameDer(chain[0], signingCert)) throw invalidCa(`${chainFile} must start with ${CA_FILES.cert}`);
  const path = pathToRoot(signingCert, chain, roots);
  if (!path) throw invalidCa(`${certFile} does not chain to a certificate in ${rootFile} through ${chainFile}`);

  const { cryptoKey, signingAlgorithm } = await importSigningKey(key, keyFile);
  return {
    trustDomain,
    source,
    signingCert,
    signingKey: cryptoKey,
    signingAlgorithm,
    intermediatesPem: path.slice(0, -1).map((c) => c.toString('pem')),
    rootsPem: roots.map((c) => c.toString('pem')),
  };
}

async function writeAtomic(path: string, data: string, mode: number): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    await writeFile(tmp, data, { mode, flag: 'w' });
    await chmod(tmp, mode); // the umask may have narrowed or the file pre-existed; set it exactly
    await rename(tmp, path);
  } catch (err) {
    throw unreadable(`cannot write CA file ${path}`, err);
  }
}

/**
 * Creates a self-signed ECDSA P-256 root and writes it to `dir` in the `cacerts` layout, the key with mode 0600.
 * ca-cert.pem is written last, so a crash part way leaves a directory that the next start recreates.
 * Overwrites what is there; use loadOrCreateSelfSignedCa to keep an existing root.
 */
export async function createSelfSignedCa(dir: string, options: SelfSignedCaOptions): Promise<SigningCa> {
  const trustDomain = options.trustDomain ?? DEFAULT_TRUST_DOMAIN;
  validateTrustDomain(trustDomain);
  const now = options.nowMs();
  const keys = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
    // Istio's self-signed root carries the trust domain as its organization.
    name: [{ O: [trustDomain] }, { CN: ['Sloop root CA'] }],
    notBefore: new Date(now),
    notAfter: new Date(now + (options.rootTtlMs ?? DEFAULT_ROOT_TTL_MS)),
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = Buffer.from(await crypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`;
  const certPem = cert.toString('pem') + '\n';
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw unreadable(`cannot create CA directory ${dir}`, err);
  }
  await writeAtomic(join(dir, CA_FILES.key), keyPem, 0o600);
  await writeAtomic(join(dir, CA_FILES.root), certPem, 0o644);
  await writeAtomic(join(dir, CA_FILES.chain), certPem, 0o644);
  await writeAtomic(join(dir, CA_FILES.cert), certPem, 0o644);
  return loadCaFromDir(dir, options, 'self-signed');
}

/**
 * Loads the self-signed root kept in `dir`, or creates one on first start, so a restart keeps the same root.
 * A directory with ca-cert.pem but no ca-key.pem is refused (`SLOOP_ERR_CA_ROOT_INVALID`) rather than replaced:
 * workloads may already trust that root.
 */
export async function loadOrCreateSelfSignedCa(dir: string, options: SelfSignedCaOptions): Promise<SigningCa> {
  const hasCert = await exists(join(dir, CA_FILES.cert));
  if (!hasCert) return createSelfSignedCa(dir, options);
  if (!(await exists(join(dir, CA_FILES.key)))) throw invalidCa(`${dir} has ${CA_FILES.cert} but no ${CA_FILES.key}; restore the key or remove the directory`);
  return loadCaFromDir(dir, options, 'self-signed');
}

/**
 * The CA for a control plane: the operator's `cacerts` directory when one is given (like Istio's plugged-in
 * certificates), else a self-signed root kept in `stateDir`.
 */
export async function loadCa(options: SelfSignedCaOptions & { operatorCertsDir?: string; stateDir: string }): Promise<SigningCa> {
  if (options.operatorCertsDir !== undefined) return loadCaFromDir(options.operatorCertsDir, options, 'operator');
  return loadOrCreateSelfSignedCa(options.stateDir, options);
}

/** A positive 128-bit serial number in hex (RFC 5280 §4.1.2.2: positive, at most 20 octets, unique per CA). */
export function randomSerialHex(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] & 0x7f) | 0x01; // positive and never a leading zero octet
  return Buffer.from(bytes).toString('hex');
}
