// HTTP/2 over TLS when ALPN does not say h2: mesh mTLS offers ALPN `istio` (Istio's sidecars), and a CONNECT
// tunnel carries whatever the app speaks (gRPC's h2c) inside the sidecars' TLS. The connection manager (codec
// AUTO) then reads the HTTP/2 preface to pick its codec and must hand those bytes to the HTTP/2 session.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { connect as tlsConnect } from 'node:tls';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startHttpUpstream, type HttpUpstream } from '../helpers/upstreams.ts';
import { startProxy, bootstrapWith, httpListener, staticCluster, virtualHost, prefixRoute, downstreamTls, tlsInspector, type ProxyHandle } from '../helpers/proxy.ts';
import { freePorts } from '../helpers/ports.ts';
import { makeTestPki, type TestPki } from '../helpers/certs.ts';

describe('HTTP/2 over TLS without ALPN h2 (codec picked from the preface)', () => {
  let dir: string;
  let pki: TestPki;
  let up: HttpUpstream;
  let proxy: ProxyHandle;
  let port: number;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sloop-tls-sniff-'));
    pki = await makeTestPki(dir);
    up = await startHttpUpstream({ name: 'app' });
    const [p, admin] = await freePorts(2);
    port = p;
    proxy = await startProxy(bootstrapWith({
      adminPort: admin,
      listeners: [httpListener({
        name: 'mtls', port,
        // As the control plane's inbound listeners have it: the client's ALPN list is read before the handshake,
        // so a list without h2/http/1.1 (`istio`) completes without ALPN instead of being refused.
        listenerExtra: { listener_filters: [tlsInspector()] },
        virtualHosts: [virtualHost('app', ['*'], [prefixRoute('/', 'app')])],
        transportSocket: downstreamTls({ certPath: pki.server.certPath, keyPath: pki.server.keyPath, caPath: pki.ca.certPath, requireClientCertificate: true, alpn: ['h2', 'http/1.1'] }),
      })],
      clusters: [staticCluster('app', [['127.0.0.1', up.port]])],
    }));
  });

  after(async () => {
    await proxy?.stop();
    await up?.close();
    await rm(dir, { recursive: true, force: true });
  });

  for (const alpn of [['istio'], [] as string[]]) {
    it(`serves h2 requests when the client offers ALPN ${JSON.stringify(alpn)}`, async () => {
      const session = http2.connect(`https://localhost:${port}`, {
        createConnection: () => tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key, ...(alpn.length > 0 ? { ALPNProtocols: alpn } : {}) }),
      });
      try {
        for (let i = 0; i < 3; i++) {
          const got = await new Promise<{ status: number; body: string }>((resolve, reject) => {
            const r = session.request({ ':path': `/sniff/${i}` });
            let status = 0;
            let body = '';
            r.on('response', (h) => (status = Number(h[':status'])));
            r.on('data', (c: Buffer) => (body += c.toString()));
            r.on('end', () => resolve({ status, body }));
            r.on('error', reject);
            r.end();
          });
          assert.equal(got.status, 200, got.body);
          assert.equal(up.requests.at(-1)?.url, `/sniff/${i}`);
        }
      } finally {
        session.close();
      }
      const stats = await proxy.stats();
      assert.ok((stats['http.mtls.downstream_cx_http2_total'] ?? 0) >= 1);
    });
  }
});
