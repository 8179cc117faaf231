import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate as NodeX509Certificate, createPrivateKey, type webcrypto } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import '../../shared/identity/reflect-metadata.ts';
import * as x509 from '@peculiar/x509';
import { signWorkloadCsr } from './issue.ts';
import { CA_FILES, loadCa, loadCaFromDir, loadOrCreateSelfSignedCa } from './root.ts';
import { makeCsr } from './testdata/csr.ts';

const NOW = Date.UTC(2026, 2, 1);
const H = 3600 * 1000;
const nowMs = () => NOW;
const identity = { namespace: 'default', serviceAccount: 'web' };

let base: string;
let n = 0;
const freshDir = () => join(base, `d${n++}`);
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'sloop-ca-root-'));
});
after(() => rm(base, { recursive: true, force: true }));

type Algo = 'ec' | 'rsa';
async function genKeys(algo: Algo): Promise<webcrypto.CryptoKeyPair> {
  const params = algo === 'ec'
    ? { name: 'ECDSA', namedCurve: 'P-256' }
    : { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' };
  return (await crypto.subtle.generateKey(params, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
}

interface TestCa { cert: x509.X509Certificate; keys: webcrypto.CryptoKeyPair; algo: Algo }

/** An operator CA certificate made the way `openssl`/Istio's Makefile would: root, or intermediate signed by `issuer`. */
async function makeCaCert(name: string, algo: Algo, issuer?: TestCa, opts: { isCa?: boolean; notAfter?: number } = {}): Promise<TestCa> {
  const keys = await genKeys(algo);
  const signer = issuer ?? { keys, algo, cert: undefined };
  const signingAlgorithm = (signer.algo === 'ec' ? { name: 'ECDSA', hash: 'SHA-256' } : { name: 'RSASSA-PKCS1-v1_5' }) as webcrypto.EcdsaParams;
  const cert = await x509.X509CertificateGenerator.create({
    subject: `CN=${name}, O=example`,
    issuer: issuer ? issuer.cert.subject : `CN=${name}, O=example`,
    notBefore: new Date(NOW - 24 * H),
    notAfter: new Date(opts.notAfter ?? NOW + 365 * 24 * H),
    publicKey: keys.publicKey,
    signingKey: signer.keys.privateKey,
    signingAlgorithm,
    extensions: [
      new x509.BasicConstraintsExtension(opts.isCa ?? true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, keys, algo };
}

async function keyPem(keys: webcrypto.CryptoKeyPair, form: 'pkcs8' | 'sec1' | 'pkcs1'): Promise<string> {
  const der = Buffer.from(await crypto.subtle.exportKey('pkcs8', keys.privateKey));
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({ type: form, format: 'pem' }) as string;
}

async function writeCacerts(dir: string, files: Partial<Record<keyof typeof CA_FILES, string>>): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const [k, text] of Object.entries(files)) await writeFile(join(dir, CA_FILES[k as keyof typeof CA_FILES]), text);
}

const pem = (...cas: TestCa[]) => cas.map((c) => c.cert.toString('pem')).join('\n') + '\n';

describe('self-signed root', () => {
  it('is created on first start with a 0600 key and kept across restarts', async () => {
    const dir = freshDir();
    const first = await loadOrCreateSelfSignedCa(dir, { nowMs, trustDomain: 'example.org' });
    assert.equal(first.source, 'self-signed');
    assert.equal(first.trustDomain, 'example.org');
    assert.equal((await stat(join(dir, CA_FILES.key))).mode & 0o777, 0o600);
    assert.equal((await stat(dir)).mode & 0o077, 0, 'directory is private');
    const root = new NodeX509Certificate(first.rootsPem[0]);
    assert.equal(root.ca, true);
    assert.equal(root.verify(root.publicKey), true, 'self-signed');
    assert.match(root.subject, /O=example\.org/);
    assert.equal(first.intermediatesPem.length, 0);
    for (const f of [CA_FILES.cert, CA_FILES.root, CA_FILES.chain]) assert.equal((await readFile(join(dir, f), 'utf8')).trim(), first.rootsPem[0].trim());

    const keyBefore = await readFile(join(dir, CA_FILES.key), 'utf8');
    const second = await loadOrCreateSelfSignedCa(dir, { nowMs: () => NOW + 1000 * H, trustDomain: 'example.org' });
    assert.equal(second.rootsPem[0], first.rootsPem[0], 'restart keeps the root');
    assert.equal(await readFile(join(dir, CA_FILES.key), 'utf8'), keyBefore);

    // A certificate issued after the restart verifies with the root from before it.
    const { csrPem } = await makeCsr({ sans: [{ type: 'url', value: 'spiffe://example.org/ns/default/sa/web' }] });
    const svid = await signWorkloadCsr(second, { csrPem, identity }, { nowMs: () => NOW + 1000 * H });
    assert.equal(new NodeX509Certificate(svid.certChainPem[0]).verify(root.publicKey), true);
  });

  it('refuses a directory holding a certificate without its key', async () => {
    const dir = freshDir();
    await loadOrCreateSelfSignedCa(dir, { nowMs });
    await rm(join(dir, CA_FILES.key));
    await assert.rejects(loadOrCreateSelfSignedCa(dir, { nowMs }), { code: 'SLOOP_ERR_CA_ROOT_INVALID' });
  });

  it('recreates a root whose creation stopped before ca-cert.pem was written', async () => {
    const dir = freshDir();
    await writeCacerts(dir, { key: 'leftover' });
    const ca = await loadOrCreateSelfSignedCa(dir, { nowMs });
    assert.equal(ca.rootsPem.length, 1);
  });
});

describe('operator cacerts', () => {
  it('loads an intermediate (SEC1 key) and issues leaf + intermediate chaining to root-cert.pem', async () => {
    const root = await makeCaCert('Root CA', 'ec');
    const inter = await makeCaCert('Intermediate CA', 'ec', root);
    const dir = freshDir();
    await writeCacerts(dir, { cert: pem(inter), key: await keyPem(inter.keys, 'sec1'), root: pem(root), chain: pem(inter, root) });
    const ca = await loadCa({ operatorCertsDir: dir, stateDir: freshDir(), nowMs });
    assert.equal(ca.source, 'operator');
    assert.equal(ca.trustDomain, 'cluster.local');
    assert.deepEqual(ca.rootsPem, [root.cert.toString('pem')]);
    assert.deepEqual(ca.intermediatesPem, [inter.cert.toString('pem')]);

    const { csrPem } = await makeCsr({ sans: [{ type: 'url', value: 'spiffe://cluster.local/ns/default/sa/web' }] });
    const svid = await signWorkloadCsr(ca, { csrPem, identity }, { nowMs });
    assert.equal(svid.certChainPem.length, 2);
    const [leaf, mid] = svid.certChainPem.map((p) => new NodeX509Certificate(p));
    const nodeRoot = new NodeX509Certificate(svid.rootCertsPem[0]);
    assert.equal(leaf.verify(mid.publicKey), true);
    assert.equal(leaf.checkIssued(mid), true);
    assert.equal(mid.verify(nodeRoot.publicKey), true);
    assert.equal(leaf.verify(nodeRoot.publicKey), false, 'the leaf is signed by the intermediate, not the root');
  });

  it('loads an RSA root used directly as the CA (Istio sample layout, no cert-chain.pem)', async () => {
    const root = await makeCaCert('RSA Root', 'rsa');
    const dir = freshDir();
    await writeCacerts(dir, { cert: pem(root), key: await keyPem(root.keys, 'pkcs1'), root: pem(root) });
    const ca = await loadCaFromDir(dir, { nowMs, trustDomain: 'example.org' });
    const { csrPem } = await makeCsr({ sans: [{ type: 'url', value: 'spiffe://example.org/ns/default/sa/web' }] });
    const svid = await signWorkloadCsr(ca, { csrPem, identity }, { nowMs });
    assert.equal(svid.certChainPem.length, 1);
    assert.equal(new NodeX509Certificate(svid.certChainPem[0]).verify(new NodeX509Certificate(svid.rootCertsPem[0]).publicKey), true);
  });

  it('refuses unusable material', async () => {
    const root = await makeCaCert('Root CA', 'ec');
    const inter = await makeCaCert('Intermediate CA', 'ec', root);
    const otherRoot = await makeCaCert('Other Root', 'ec');
    const notCa = await makeCaCert('Not a CA', 'ec', root, { isCa: false });
    const expired = await makeCaCert('Expired', 'ec', root, { notAfter: NOW - H });
    const interKey = await keyPem(inter.keys, 'pkcs8');
    const cases: [string, Partial<Record<keyof typeof CA_FILES, string>>, string][] = [
      ['key of another certificate', { cert: pem(inter), key: await keyPem(root.keys, 'pkcs8'), root: pem(root), chain: pem(inter) }, 'SLOOP_ERR_CA_ROOT_INVALID'],
      ['chain to another root', { cert: pem(inter), key: interKey, root: pem(otherRoot), chain: pem(inter) }, 'SLOOP_ERR_CA_ROOT_INVALID'],
      ['not a CA', { cert: pem(notCa), key: await keyPem(notCa.keys, 'pkcs8'), root: pem(root), chain: pem(notCa) }, 'SLOOP_ERR_CA_ROOT_INVALID'],
      ['expired', { cert: pem(expired), key: await keyPem(expired.keys, 'pkcs8'), root: pem(root), chain: pem(expired) }, 'SLOOP_ERR_CA_ROOT_INVALID'],
      ['chain not starting with ca-cert', { cert: pem(inter), key: interKey, root: pem(root), chain: pem(root) }, 'SLOOP_ERR_CA_ROOT_INVALID'],
      ['missing root-cert.pem', { cert: pem(inter), key: interKey }, 'SLOOP_ERR_CA_ROOT_UNREADABLE'],
      ['garbage key', { cert: pem(inter), key: 'nope', root: pem(root) }, 'SLOOP_ERR_CA_ROOT_UNREADABLE'],
      ['garbage certificate', { cert: 'nope', key: interKey, root: pem(root) }, 'SLOOP_ERR_CA_ROOT_UNREADABLE'],
    ];
    for (const [what, files, code] of cases) {
      const dir = freshDir();
      await writeCacerts(dir, files);
      await assert.rejects(loadCaFromDir(dir, { nowMs }), { code }, what);
    }
  });

  it('keeps every root of root-cert.pem in the bundle (root rotation overlap)', async () => {
    const oldRoot = await makeCaCert('Old Root', 'ec');
    const newRoot = await makeCaCert('New Root', 'ec');
    const inter = await makeCaCert('Intermediate CA', 'ec', newRoot);
    const dir = freshDir();
    await writeCacerts(dir, { cert: pem(inter), key: await keyPem(inter.keys, 'pkcs8'), root: pem(oldRoot, newRoot), chain: pem(inter, newRoot) });
    const ca = await loadCaFromDir(dir, { nowMs });
    assert.deepEqual(ca.rootsPem, [oldRoot.cert.toString('pem'), newRoot.cert.toString('pem')]);
    assert.deepEqual(ca.intermediatesPem, [inter.cert.toString('pem')]);
  });
});
