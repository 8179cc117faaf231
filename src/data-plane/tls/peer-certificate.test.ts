import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeTestPki, CLIENT_SPIFFE_ID, SERVER_SPIFFE_ID, type TestPki } from '../../../test/helpers/certs.ts';
import { X509Certificate } from 'node:crypto';
import { LazyPeerCertificate, rfc2253Subject } from './peer-certificate.ts';
import { completeServerHandshake } from './context.ts';

/** Accepts one TLS connection the way the listener does (TLSSocket over an accepted socket) and returns its facts. */
async function handshake(pki: TestPki, client: { cert?: string; key?: string }): Promise<LazyPeerCertificate> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  try {
    const accepted = new Promise<LazyPeerCertificate>((resolve, reject) => {
      server.once('connection', (s) => {
        const t = new tls.TLSSocket(s, { isServer: true, secureContext: tls.createSecureContext({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert }), requestCert: true, rejectUnauthorized: false });
        t.once('secure', () => {
          completeServerHandshake(t, true);
          const info = new LazyPeerCertificate(t);
          void info.subject; // read while the socket is open
          resolve(info);
          t.destroy();
        });
        t.once('error', reject);
      });
    });
    const c = tls.connect({ port, host: '127.0.0.1', ca: pki.ca.cert, servername: 'localhost', ...client });
    c.on('error', () => {});
    const info = await accepted;
    c.destroy();
    return info;
  } finally {
    server.close();
  }
}

describe('LazyPeerCertificate', () => {
  let dir: string;
  let pki: TestPki;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sloop-peer-cert-'));
    pki = await makeTestPki(dir);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads URI SANs, DNS SANs, the RFC 2253 subject and chain validation', async () => {
    const p = await handshake(pki, { cert: pki.client.cert, key: pki.client.key });
    assert.equal(p.presented, true);
    assert.equal(p.validated, true);
    assert.deepEqual(p.uriSans, [CLIENT_SPIFFE_ID]);
    assert.deepEqual(p.dnsSans, []);
    assert.equal(p.subject, 'CN=client,O=Sloop Test');
    const s = await handshake(pki, { cert: pki.server.cert, key: pki.server.key });
    assert.deepEqual(s.uriSans, [SERVER_SPIFFE_ID]);
    assert.deepEqual(s.dnsSans, ['localhost', '*.example.com']);
    const o = await handshake(pki, { cert: pki.other.cert, key: pki.other.key });
    assert.equal(o.presented, true);
    assert.equal(o.validated, false, 'signed by another CA');
  });

  it('no client certificate: nothing presented, empty identity', async () => {
    const p = await handshake(pki, {});
    assert.equal(p.presented, false);
    assert.equal(p.validated, false);
    assert.deepEqual(p.uriSans, []);
    assert.equal(p.subject, '');
  });

  it('an empty subject (an X.509-SVID from the CA, like Istio\'s) is "", not an error that hides the SANs', () => {
    // Issued by `sloop controlplane --ca-dir` to sa/web: no subject, a critical URI SAN. Node 24 gives its
    // X509Certificate an undefined `subject`.
    const svid = new X509Certificate(`-----BEGIN CERTIFICATE-----
MIIB5jCCAY2gAwIBAgIQOQhtMt3eCZNVepTMBlTF8jAKBggqhkjOPQQDAjAwMRYw
FAYDVQQKEw1jbHVzdGVyLmxvY2FsMRYwFAYDVQQDEw1TbG9vcCByb290IENBMB4X
DTI2MTIwMjA5MzgyMVoXDTI2MTIwMzA5MzgyNFowADBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABH3h7FgjRGr01onMOhVXulkBqvphAxSSonKR9odi8IEh6Tr0zhVv
RDd+MF5/ByIISERW6M04wWvsCZDeFt4qrzqjgbgwgbUwDAYDVR0TAQH/BAIwADAO
BgNVHQ8BAf8EBAMCB4AwHQYDVR0lBBYwFAYIKwYBBQUHAwEGCCsGAQUFBwMCMDYG
A1UdEQEB/wQsMCqGKHNwaWZmZTovL2NsdXN0ZXIubG9jYWwvbnMvZGVmYXVsdC9z
YS93ZWIwHQYDVR0OBBYEFFVb9CYnE8Q4Kdye7mnSR5mYdZOJMB8GA1UdIwQYMBaA
FAqSlyMBYexi1DGlt2u0PvwWJlMJMAoGCCqGSM49BAMCA0cAMEQCIFw/wIPRoWDa
piCf+JjvB/tsURQZV92WFteYhpqSYZ1uAiBvZlPJtFzkLiop8z3v7+rCSpC1Ynl4
wnbUSmKcafHXmg==
-----END CERTIFICATE-----`);
    assert.equal(svid.subjectAltName, 'URI:spiffe://cluster.local/ns/default/sa/web');
    assert.equal(rfc2253Subject(svid), '');
  });
});
