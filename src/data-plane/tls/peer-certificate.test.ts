import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeTestPki, CLIENT_SPIFFE_ID, SERVER_SPIFFE_ID, type TestPki } from '../../../test/helpers/certs.ts';
import { LazyPeerCertificate } from './peer-certificate.ts';
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
});
