import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate as NodeX509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import '../../shared/identity/reflect-metadata.ts';
import * as x509 from '@peculiar/x509';
import { DEFAULT_BACKDATE_MS, signWorkloadCsr } from './issue.ts';
import { createSelfSignedCa, type CryptoKey, type SigningCa } from './root.ts';
import { corruptSignature, makeCsr } from './testdata/csr.ts';

const NOW = Date.UTC(2026, 0, 15, 12);
const H = 3600 * 1000;
const ID = 'spiffe://cluster.local/ns/default/sa/reviews';
const identity = { namespace: 'default', serviceAccount: 'reviews' };
const options = { nowMs: () => NOW };

let dir: string;
let ca: SigningCa;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sloop-ca-issue-'));
  ca = await createSelfSignedCa(dir, { nowMs: () => NOW - 24 * H });
});
after(() => rm(dir, { recursive: true, force: true }));

describe('signWorkloadCsr', () => {
  it('round trip: the SVID verifies against the root with @peculiar/x509 and node:crypto', async () => {
    const { csrPem, keys } = await makeCsr({ sans: [{ type: 'url', value: ID }] });
    const svid = await signWorkloadCsr(ca, { csrPem, identity }, options);
    assert.equal(svid.spiffeId, ID);
    assert.equal(svid.certChainPem.length, 1, 'a self-signed root has no intermediates');
    assert.equal(svid.rootCertsPem.length, 1);

    const leaf = new x509.X509Certificate(svid.certChainPem[0]);
    const root = new x509.X509Certificate(svid.rootCertsPem[0]);
    assert.equal(await leaf.verify({ publicKey: root.publicKey, date: new Date(NOW) }), true);
    assert.equal(await leaf.verify({ publicKey: root.publicKey, date: new Date(NOW + 25 * H) }), false, 'expired after the TTL');
    const chain = await new x509.X509ChainBuilder({ certificates: [root] }).build(leaf);
    assert.equal(chain.length, 2);

    const nodeLeaf = new NodeX509Certificate(svid.certChainPem[0]);
    const nodeRoot = new NodeX509Certificate(svid.rootCertsPem[0]);
    assert.equal(nodeLeaf.verify(nodeRoot.publicKey), true);
    assert.equal(nodeLeaf.checkIssued(nodeRoot), true, "OpenSSL matches issuer name and AKI/SKI");
    assert.equal(nodeLeaf.subjectAltName, `URI:${ID}`);
    assert.equal(nodeLeaf.ca, false);
    // The certificate carries the CSR's key.
    const spki = Buffer.from(await crypto.subtle.exportKey('spki', keys.publicKey));
    assert.deepEqual(nodeLeaf.publicKey.export({ type: 'spki', format: 'der' }), spki);
    assert.equal(nodeLeaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');

    // A different root does not verify it.
    const otherDir = await mkdtemp(join(tmpdir(), 'sloop-ca-other-'));
    try {
      const other = await createSelfSignedCa(otherDir, { nowMs: () => NOW - H });
      assert.equal(nodeLeaf.verify(new NodeX509Certificate(other.rootsPem[0]).publicKey), false);
    } finally {
      await rm(otherDir, { recursive: true, force: true });
    }
  });

  it('SVIDs work for mutual TLS through Node (OpenSSL) with the root as the only trust anchor', async () => {
    const clientId = 'spiffe://cluster.local/ns/default/sa/productpage';
    const pkcs8Pem = async (key: CryptoKey) => `-----BEGIN PRIVATE KEY-----\n${Buffer.from(await crypto.subtle.exportKey('pkcs8', key)).toString('base64')}\n-----END PRIVATE KEY-----\n`;
    const server = await makeCsr({ sans: [{ type: 'url', value: ID }] });
    const client = await makeCsr({ sans: [{ type: 'url', value: clientId }] });
    // Real clock here: OpenSSL checks validity against the wall clock, so sign with the CA at "now".
    const nowCaDir = await mkdtemp(join(tmpdir(), 'sloop-ca-tls-'));
    try {
      const liveCa = await createSelfSignedCa(nowCaDir, { nowMs: () => Date.now() - H });
      const live = { nowMs: () => Date.now() };
      const serverSvid = await signWorkloadCsr(liveCa, { csrPem: server.csrPem, identity }, live);
      const clientSvid = await signWorkloadCsr(liveCa, { csrPem: client.csrPem, identity: { namespace: 'default', serviceAccount: 'productpage' } }, live);
      const peers: string[] = [];
      const srv = tls.createServer({ key: await pkcs8Pem(server.keys.privateKey), cert: serverSvid.certChainPem.join('\n'), ca: serverSvid.rootCertsPem, requestCert: true, rejectUnauthorized: true }, (socket) => {
        peers.push(String(socket.getPeerCertificate().subjectaltname));
        socket.end('ok');
      });
      srv.listen(0, '127.0.0.1');
      await once(srv, 'listening');
      try {
        const socket = tls.connect({
          host: '127.0.0.1',
          port: (srv.address() as AddressInfo).port,
          key: await pkcs8Pem(client.keys.privateKey),
          cert: clientSvid.certChainPem.join('\n'),
          ca: clientSvid.rootCertsPem,
          // SPIFFE peers are checked by URI SAN, not host name.
          checkServerIdentity: (_host, cert) => (cert.subjectaltname === `URI:${ID}` ? undefined : new Error(`unexpected server ${cert.subjectaltname}`)),
        });
        const chunks: Buffer[] = [];
        socket.on('data', (c: Buffer) => chunks.push(c));
        await once(socket, 'end');
        assert.equal(socket.authorized, true);
        assert.equal(Buffer.concat(chunks).toString(), 'ok');
        assert.deepEqual(peers, [`URI:${clientId}`]);
        socket.destroy();
      } finally {
        srv.close();
      }
    } finally {
      await rm(nowCaDir, { recursive: true, force: true });
    }
  });

  it('follows the X.509-SVID extension rules', async () => {
    const { csrPem } = await makeCsr({ sans: [{ type: 'url', value: ID }] });
    const leaf = new x509.X509Certificate((await signWorkloadCsr(ca, { csrPem, identity }, options)).certChainPem[0]);

    const basic = leaf.getExtension(x509.BasicConstraintsExtension);
    assert.ok(basic);
    assert.equal(basic.ca, false);
    assert.equal(basic.critical, true);

    const ku = leaf.getExtension(x509.KeyUsagesExtension);
    assert.ok(ku);
    assert.equal(ku.critical, true);
    assert.equal(ku.usages, x509.KeyUsageFlags.digitalSignature);

    const eku = leaf.getExtension(x509.ExtendedKeyUsageExtension);
    assert.ok(eku);
    assert.deepEqual([...eku.usages].sort(), [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth].sort());

    const san = leaf.getExtension(x509.SubjectAlternativeNameExtension);
    assert.ok(san);
    assert.deepEqual(san.names.toJSON(), [{ type: 'url', value: ID }]);
    assert.equal(san.critical, true, 'empty subject makes the SAN critical');
    assert.equal(leaf.subject, '');

    assert.ok(leaf.getExtension(x509.AuthorityKeyIdentifierExtension));
    assert.ok(leaf.getExtension(x509.SubjectKeyIdentifierExtension));
    assert.equal(leaf.notBefore.getTime(), Math.floor((NOW - DEFAULT_BACKDATE_MS) / 1000) * 1000);
    assert.equal(leaf.notAfter.getTime(), NOW + 24 * H, 'default TTL is 24 h');
  });

  it('refuses a CSR for another identity or trust domain', async () => {
    for (const other of ['spiffe://cluster.local/ns/default/sa/ratings', 'spiffe://cluster.local/ns/prod/sa/reviews', 'spiffe://evil.example/ns/default/sa/reviews']) {
      const { csrPem } = await makeCsr({ sans: [{ type: 'url', value: other }] });
      await assert.rejects(signWorkloadCsr(ca, { csrPem, identity }, options), { code: 'SLOOP_ERR_CA_IDENTITY_MISMATCH' });
    }
  });

  it('refuses a CSR with a bad signature', async () => {
    const { csrPem } = await makeCsr({ sans: [{ type: 'url', value: ID }] });
    await assert.rejects(signWorkloadCsr(ca, { csrPem: corruptSignature(csrPem), identity }, options), { code: 'SLOOP_ERR_CA_INVALID_CSR' });
  });

  it('refuses malformed CSRs, wrong keys and SANs an SVID cannot carry', async () => {
    await assert.rejects(signWorkloadCsr(ca, { csrPem: 'not a csr', identity }, options), { code: 'SLOOP_ERR_CA_INVALID_CSR' });
    const cases = [
      await makeCsr({}),
      await makeCsr({ sans: [{ type: 'dns', value: 'reviews.default.svc' }] }),
      await makeCsr({ sans: [{ type: 'url', value: ID }, { type: 'url', value: 'spiffe://cluster.local/ns/default/sa/other' }] }),
      await makeCsr({ sans: [{ type: 'url', value: ID }, { type: 'dns', value: 'reviews' }] }),
      await makeCsr({ sans: [{ type: 'url', value: 'https://cluster.local/ns/default/sa/reviews' }] }),
      await makeCsr({ sans: [{ type: 'url', value: ID }], curve: 'P-384' }),
    ];
    for (const { csrPem } of cases) {
      await assert.rejects(signWorkloadCsr(ca, { csrPem, identity }, options), { code: 'SLOOP_ERR_CA_INVALID_CSR' });
    }
  });

  it('clamps the TTL to the maximum and to the CA lifetime, and refuses negative TTLs', async () => {
    const { csrPem } = await makeCsr({ sans: [{ type: 'url', value: ID }] });
    const long = await signWorkloadCsr(ca, { csrPem, identity, ttlMs: 30 * 24 * H }, { ...options, maxTtlMs: 48 * H });
    assert.equal(long.notAfter.getTime(), NOW + 48 * H);
    const short = await signWorkloadCsr(ca, { csrPem, identity, ttlMs: 2 * H }, { ...options, maxTtlMs: 48 * H });
    assert.equal(short.notAfter.getTime(), NOW + 2 * H);
    const defaultAboveMax = await signWorkloadCsr(ca, { csrPem, identity }, { ...options, maxTtlMs: 6 * H });
    assert.equal(defaultAboveMax.notAfter.getTime(), NOW + 6 * H);
    const pastCa = await signWorkloadCsr(ca, { csrPem, identity, ttlMs: 20 * 365 * 24 * H }, { ...options, maxTtlMs: 30 * 365 * 24 * H });
    assert.equal(pastCa.notAfter.getTime(), ca.signingCert.notAfter.getTime());
    await assert.rejects(signWorkloadCsr(ca, { csrPem, identity, ttlMs: -1 }, options), { code: 'SLOOP_ERR_CA_INVALID_TTL' });
    await assert.rejects(signWorkloadCsr(ca, { csrPem, identity }, { ...options, maxTtlMs: 0 }), { code: 'SLOOP_ERR_CA_INVALID_TTL' });
  });

  it('never backdates before the CA and refuses to sign after the CA expired', async () => {
    const { csrPem } = await makeCsr({ sans: [{ type: 'url', value: ID }] });
    const caStart = ca.signingCert.notBefore.getTime();
    const early = await signWorkloadCsr(ca, { csrPem, identity }, { nowMs: () => caStart + 1000 });
    assert.equal(early.notBefore.getTime(), caStart);
    await assert.rejects(signWorkloadCsr(ca, { csrPem, identity }, { nowMs: () => ca.signingCert.notAfter.getTime() }), { code: 'SLOOP_ERR_CA_ROOT_INVALID' });
  });
});
