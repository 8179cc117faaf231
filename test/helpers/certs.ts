/**
 * A throwaway PKI for TLS and mTLS e2e tests, made with the `openssl` CLI (an implementation other than
 * Node's, like the certificates users bring). Keys are ECDSA P-256: fast to generate on a 2-core CI box.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** A certificate and its private key, as PEM text and as files. */
export interface CertKeyPair {
  cert: string;
  key: string;
  certPath: string;
  keyPath: string;
}

/** Every certificate {@link makeTestPki} makes. */
export interface TestPki {
  dir: string;
  /** Root CA that signs `server` and `client`. */
  ca: CertKeyPair;
  /**
   * Leaf signed by `ca` with SANs DNS:localhost, DNS:*.example.com, IP:127.0.0.1 and
   * URI:spiffe://cluster.local/ns/default/sa/server; usable for serverAuth and clientAuth.
   */
  server: CertKeyPair;
  /** Leaf signed by `ca` with SAN URI:spiffe://cluster.local/ns/default/sa/client (clientAuth, serverAuth). */
  client: CertKeyPair;
  /** A second, unrelated root CA. */
  otherCa: CertKeyPair;
  /**
   * Leaf signed by `otherCa` with the SANs of both `server` and `client` (DNS:localhost, IP:127.0.0.1,
   * URI:spiffe://cluster.local/ns/default/sa/client), so a test that swaps it in fails only on the chain.
   */
  other: CertKeyPair;
}

/** SPIFFE ID in the server certificate. */
export const SERVER_SPIFFE_ID = 'spiffe://cluster.local/ns/default/sa/server';
/** SPIFFE ID in the client certificate. */
export const CLIENT_SPIFFE_ID = 'spiffe://cluster.local/ns/default/sa/client';

// A private config, so the system openssl.cnf (which differs between distributions) adds nothing.
const REQ_CONFIG = `[req]
distinguished_name = dn
x509_extensions = v3_ca
[dn]
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
`;

function leafExtensions(san: string): string {
  return `[v3_leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = ${san}
`;
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await execFileAsync('openssl', args, { cwd });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr ?? '';
    throw new Error(`openssl ${args[0]} failed: ${stderr.trim() || String(err)}`, { cause: err });
  }
}

async function pairAt(dir: string, name: string): Promise<CertKeyPair> {
  const certPath = join(dir, `${name}.crt`);
  const keyPath = join(dir, `${name}.key`);
  const [cert, key] = await Promise.all([readFile(certPath, 'utf8'), readFile(keyPath, 'utf8')]);
  return { cert, key, certPath, keyPath };
}

async function makeCa(dir: string, name: string, cn: string): Promise<CertKeyPair> {
  await openssl(
    ['req', '-x509', ...EC_KEY, '-config', 'req.cnf', '-subj', `/O=Sloop Test/CN=${cn}`, '-days', '3650', '-keyout', `${name}.key`, '-out', `${name}.crt`],
    dir,
  );
  return pairAt(dir, name);
}

async function makeLeaf(dir: string, name: string, ca: string, cn: string, san: string): Promise<CertKeyPair> {
  await writeFile(join(dir, `${name}.ext`), leafExtensions(san));
  await openssl(['req', '-new', ...EC_KEY, '-config', 'req.cnf', '-subj', `/O=Sloop Test/CN=${cn}`, '-keyout', `${name}.key`, '-out', `${name}.csr`], dir);
  // A random serial per leaf: RFC 5280 §4.1.2.2 wants serials unique per CA, and -CAcreateserial would
  // leave a shared serial file behind that parallel calls could race on.
  const serial = '0x' + randomBytes(8).toString('hex');
  await openssl(
    ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-set_serial', serial, '-days', '825', '-extfile', `${name}.ext`, '-extensions', 'v3_leaf', '-out', `${name}.crt`],
    dir,
  );
  return pairAt(dir, name);
}

/**
 * Writes a fresh PKI into `dir` (created if missing) and returns paths and PEM contents. Takes a few
 * hundred milliseconds; make one per test file. Throws if `openssl` is missing or fails.
 */
export async function makeTestPki(dir: string): Promise<TestPki> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'req.cnf'), REQ_CONFIG);
  const [ca, otherCa] = await Promise.all([makeCa(dir, 'ca', 'Sloop Test CA'), makeCa(dir, 'other-ca', 'Other Test CA')]);
  const [server, client, other] = await Promise.all([
    makeLeaf(dir, 'server', 'ca', 'server', `DNS:localhost, DNS:*.example.com, IP:127.0.0.1, URI:${SERVER_SPIFFE_ID}`),
    makeLeaf(dir, 'client', 'ca', 'client', `URI:${CLIENT_SPIFFE_ID}`),
    makeLeaf(dir, 'other', 'other-ca', 'other', `DNS:localhost, IP:127.0.0.1, URI:${CLIENT_SPIFFE_ID}`),
  ]);
  return { dir, ca, server, client, otherCa, other };
}
