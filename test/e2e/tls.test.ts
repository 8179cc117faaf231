// TLS through `sloop proxy`: downstream termination (DownstreamTlsContext from files and inline_string,
// ALPN h2/http/1.1 handed to the HCM), client certificates (require_client_certificate, trusted_ca, a SPIFFE
// URI SAN matcher), upstream TLS (UpstreamTlsContext sni, trusted_ca, SAN matcher, mTLS, ALPN h2), and bad
// TLS (plaintext, garbage, wrong certificates) that must close the connection, be counted with Envoy's stat
// names (listener.<addr>.ssl.*, cluster.<name>.ssl.*) and never take the proxy down (RELIABILITY row 24).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { startHttpUpstream, type HttpUpstream } from '../helpers/upstreams.ts';
import {
  startProxy, bootstrapWith, httpListener, staticCluster, virtualHost, prefixRoute, http2ProtocolOptions, downstreamTls, upstreamTls,
  type Json, type ProxyHandle,
} from '../helpers/proxy.ts';
import { curl, nghttp, rawTcp, runProcess } from '../helpers/clients.ts';
import { freePorts } from '../helpers/ports.ts';
import { makeTestPki, CLIENT_SPIFFE_ID, SERVER_SPIFFE_ID, type TestPki } from '../helpers/certs.ts';
import { waitUntil } from '../helpers/wait.ts';

const DOWNSTREAM_TLS_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';

/** Counter deltas between two stats snapshots (absent counts as 0). */
function delta(before: Record<string, number>, after: Record<string, number>, name: string): number {
  return (after[name] ?? 0) - (before[name] ?? 0);
}

describe('TLS', () => {
  let dir: string;
  let pki: TestPki;
  let plain: HttpUpstream;
  let tlsUp: HttpUpstream;
  let mtlsUp: HttpUpstream;
  let h2TlsUp: HttpUpstream;
  let proxy: ProxyHandle;
  let tlsPort: number;
  let inlinePort: number;
  let mtlsPort: number;
  let upPort: number;
  const stat = (port: number, name: string): string => `listener.127.0.0.1_${port}.${name}`;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sloop-tls-e2e-'));
    pki = await makeTestPki(dir);
    plain = await startHttpUpstream({ name: 'plain' });
    tlsUp = await startHttpUpstream({ name: 'tls-up', tls: { key: pki.server.key, cert: pki.server.cert } });
    mtlsUp = await startHttpUpstream({
      name: 'mtls-up',
      tls: { key: pki.server.key, cert: pki.server.cert, ca: pki.ca.cert, requestCert: true },
    });
    h2TlsUp = await startHttpUpstream({ name: 'h2-tls-up', h2: true, tls: { key: pki.server.key, cert: pki.server.cert } });
    const [tp, ip, mp, up, admin] = await freePorts(5);
    tlsPort = tp;
    inlinePort = ip;
    mtlsPort = mp;
    upPort = up;
    const inlineTls: Json = {
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': DOWNSTREAM_TLS_TYPE,
        common_tls_context: {
          tls_certificates: [{ certificate_chain: { inline_string: pki.server.cert }, private_key: { inline_string: pki.server.key } }],
        },
      },
    };
    const upstreamRoutes = [
      prefixRoute('/up/tls/', 'tls_up'),
      prefixRoute('/up/mtls/', 'mtls_up'),
      prefixRoute('/up/mtls-nocert/', 'mtls_up_nocert'),
      prefixRoute('/up/h2/', 'h2_tls_up'),
      prefixRoute('/up/wrong-ca/', 'wrong_ca_up'),
      prefixRoute('/up/wrong-san/', 'wrong_san_up'),
    ];
    proxy = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [
          httpListener({
            name: 'tls',
            port: tlsPort,
            virtualHosts: [virtualHost('svc', ['*'], [prefixRoute('/', 'plain')])],
            transportSocket: downstreamTls({ certPath: pki.server.certPath, keyPath: pki.server.keyPath, alpn: ['h2', 'http/1.1'] }),
          }),
          httpListener({
            name: 'inline',
            port: inlinePort,
            virtualHosts: [virtualHost('svc', ['*'], [prefixRoute('/', 'plain')])],
            transportSocket: inlineTls,
          }),
          httpListener({
            name: 'mtls',
            port: mtlsPort,
            virtualHosts: [virtualHost('svc', ['*'], [prefixRoute('/', 'plain')])],
            transportSocket: downstreamTls({
              certPath: pki.server.certPath,
              keyPath: pki.server.keyPath,
              caPath: pki.ca.certPath,
              requireClientCertificate: true,
              matchSans: [{ san_type: 'URI', matcher: { exact: CLIENT_SPIFFE_ID } }],
              alpn: ['h2', 'http/1.1'],
            }),
          }),
          httpListener({ name: 'upstreams', port: upPort, virtualHosts: [virtualHost('svc', ['*'], upstreamRoutes)] }),
        ],
        clusters: [
          staticCluster('plain', [['127.0.0.1', plain.port]]),
          staticCluster('tls_up', [['127.0.0.1', tlsUp.port]], {
            transport_socket: upstreamTls({ caPath: pki.ca.certPath, sni: 'backend.example.com' }),
          }),
          staticCluster('mtls_up', [['127.0.0.1', mtlsUp.port]], {
            transport_socket: upstreamTls({
              certPath: pki.client.certPath,
              keyPath: pki.client.keyPath,
              caPath: pki.ca.certPath,
              sni: 'localhost',
              matchSans: [{ san_type: 'URI', matcher: { exact: SERVER_SPIFFE_ID } }],
            }),
          }),
          staticCluster('mtls_up_nocert', [['127.0.0.1', mtlsUp.port]], {
            transport_socket: upstreamTls({ caPath: pki.ca.certPath, sni: 'localhost' }),
          }),
          staticCluster('h2_tls_up', [['127.0.0.1', h2TlsUp.port]], {
            ...http2ProtocolOptions(),
            transport_socket: upstreamTls({ caPath: pki.ca.certPath, sni: 'localhost', alpn: ['h2'] }),
          }),
          staticCluster('wrong_ca_up', [['127.0.0.1', tlsUp.port]], {
            transport_socket: upstreamTls({ caPath: pki.otherCa.certPath, sni: 'localhost' }),
          }),
          staticCluster('wrong_san_up', [['127.0.0.1', tlsUp.port]], {
            transport_socket: upstreamTls({
              caPath: pki.ca.certPath,
              sni: 'localhost',
              matchSans: [{ san_type: 'URI', matcher: { exact: 'spiffe://cluster.local/ns/default/sa/somebody-else' } }],
            }),
          }),
        ],
      }),
    );
  });

  after(async () => {
    await proxy?.stop();
    await Promise.all([plain?.close(), tlsUp?.close(), mtlsUp?.close(), h2TlsUp?.close()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Asserts the proxy is still up and serving after an abuse test. */
  async function assertStillServing(): Promise<void> {
    assert.equal(proxy.exit, undefined, `proxy exited: ${proxy.stderr()}`);
    const r = await curl(['--cacert', pki.ca.certPath, `https://localhost:${tlsPort}/still-alive`]);
    assert.equal(r.status, 200, r.stderr);
    assert.equal(plain.requests.at(-1)?.url, '/still-alive');
  }

  describe('downstream termination', () => {
    it('terminates TLS from filename certificates and negotiates h2 by ALPN (curl --http2)', async () => {
      const before = await proxy.stats();
      const r = await curl(['--http2', '--cacert', pki.ca.certPath, '-H', 'x-case: h2-alpn', `https://localhost:${tlsPort}/tls/h2?q=1`]);
      assert.equal(r.status, 200, r.stderr);
      assert.equal(r.httpVersion, '2');
      assert.equal(r.info.ssl_verify_result, 0);
      assert.equal(r.headers['x-upstream'], 'plain');
      const got = plain.requests.at(-1)!;
      assert.equal(got.url, '/tls/h2?q=1');
      assert.equal(got.httpVersion, '1.1');
      assert.equal(got.headerMap['x-case'], 'h2-alpn');
      assert.equal(got.headerMap['x-forwarded-proto'], 'https');
      assert.equal(got.headerMap['host'], `localhost:${tlsPort}`);
      const after = await proxy.stats();
      assert.equal(delta(before, after, stat(tlsPort, 'ssl.handshake')), 1);
      assert.equal(delta(before, after, 'http.tls.downstream_cx_ssl_total'), 1);
      assert.equal(delta(before, after, 'http.tls.downstream_cx_http2_total'), 1);
      assert.equal(delta(before, after, 'http.tls.downstream_cx_http1_total'), 0);
    });

    it('serves HTTP/1.1 over TLS when the client offers only http/1.1', async () => {
      const before = await proxy.stats();
      const r = await curl(['--http1.1', '--cacert', pki.ca.certPath, '-d', 'hello over tls', `https://localhost:${tlsPort}/tls/h1`]);
      assert.equal(r.status, 200, r.stderr);
      assert.equal(r.httpVersion, '1.1');
      const got = plain.requests.at(-1)!;
      assert.equal(got.url, '/tls/h1');
      assert.equal(got.body.toString(), 'hello over tls');
      assert.equal(got.headerMap['x-forwarded-proto'], 'https');
      const after = await proxy.stats();
      assert.equal(delta(before, after, 'http.tls.downstream_cx_http1_total'), 1);
      assert.equal(delta(before, after, 'http.tls.downstream_cx_http2_total'), 0);
    });

    it('openssl s_client sees ALPN h2 chosen and the server certificate chain', async () => {
      const r = await runProcess(
        'openssl',
        ['s_client', '-connect', `127.0.0.1:${tlsPort}`, '-servername', 'localhost', '-alpn', 'h2,http/1.1', '-CAfile', pki.ca.certPath, '-verify_return_error'],
        { input: '' },
      );
      const out = r.stdout.toString();
      assert.match(out, /ALPN protocol: h2/);
      assert.match(out, /Verify return code: 0 \(ok\)/);
      assert.match(out, /CN ?= ?server/);
      const h1 = await runProcess(
        'openssl',
        ['s_client', '-connect', `127.0.0.1:${tlsPort}`, '-servername', 'localhost', '-alpn', 'http/1.1', '-CAfile', pki.ca.certPath],
        { input: '' },
      );
      assert.match(h1.stdout.toString(), /ALPN protocol: http\/1\.1/);
    });

    it('nghttp speaks h2 over TLS through the proxy', async () => {
      const r = await nghttp(['-H', 'x-case: nghttp', `https://127.0.0.1:${tlsPort}/tls/nghttp`]);
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-upstream'], 'plain');
      const got = await plain.recorder.waitFor((q) => q.url === '/tls/nghttp');
      assert.equal(got.headerMap['x-case'], 'nghttp');
      assert.equal(got.headerMap['x-forwarded-proto'], 'https');
    });

    it('terminates TLS with certificates given as inline_string', async () => {
      const r = await curl(['--cacert', pki.ca.certPath, `https://localhost:${inlinePort}/inline`]);
      assert.equal(r.status, 200, r.stderr);
      assert.equal(plain.requests.at(-1)?.url, '/inline');
      // No alpn_protocols on this context: the server selects no ALPN and curl falls back to HTTP/1.1.
      assert.equal(r.httpVersion, '1.1');
    });
  });

  describe('client certificates', () => {
    const mtlsUrl = (path: string): string => `https://localhost:${mtlsPort}${path}`;

    it('accepts a client certificate that chains to trusted_ca and carries the expected SPIFFE URI SAN', async () => {
      const before = await proxy.stats();
      for (const version of ['--http2', '--http1.1']) {
        const r = await curl([version, '--cacert', pki.ca.certPath, '--cert', pki.client.certPath, '--key', pki.client.keyPath, mtlsUrl(`/mtls/ok${version}`)]);
        assert.equal(r.status, 200, r.stderr);
        assert.equal(r.httpVersion, version === '--http2' ? '2' : '1.1');
        assert.equal(plain.requests.at(-1)?.url, `/mtls/ok${version}`);
      }
      const after = await proxy.stats();
      assert.equal(delta(before, after, stat(mtlsPort, 'ssl.handshake')), 2);
    });

    it('refuses a client without a certificate: handshake fails, nothing reaches the upstream', async () => {
      const seen = plain.requests.length;
      const before = await proxy.stats();
      const r = await curl(['--cacert', pki.ca.certPath, mtlsUrl('/mtls/nocert')]);
      assert.equal(r.status, 0);
      assert.notEqual(r.exitCode, 0);
      assert.equal(plain.requests.length, seen);
      await waitUntil(async () => {
        const after = await proxy.stats();
        return delta(before, after, stat(mtlsPort, 'ssl.fail_verify_no_cert')) === 1 && delta(before, after, stat(mtlsPort, 'ssl.connection_error')) === 1;
      }, { what: 'ssl.fail_verify_no_cert and ssl.connection_error' });
      const after = await proxy.stats();
      assert.equal(delta(before, after, stat(mtlsPort, 'ssl.handshake')), 0);
      await assertStillServing();
    });

    it('refuses a client certificate from another CA', async () => {
      const seen = plain.requests.length;
      const before = await proxy.stats();
      const r = await curl(['--cacert', pki.ca.certPath, '--cert', pki.other.certPath, '--key', pki.other.keyPath, mtlsUrl('/mtls/other-ca')]);
      assert.equal(r.status, 0);
      assert.notEqual(r.exitCode, 0);
      assert.equal(plain.requests.length, seen);
      await waitUntil(async () => delta(before, await proxy.stats(), stat(mtlsPort, 'ssl.fail_verify_error')) === 1, { what: 'ssl.fail_verify_error' });
      await assertStillServing();
    });

    it('refuses a trusted client certificate whose SAN does not match', async () => {
      const seen = plain.requests.length;
      const before = await proxy.stats();
      // The server certificate chains to the same CA but carries URI SAN .../sa/server, not .../sa/client.
      const r = await curl(['--cacert', pki.ca.certPath, '--cert', pki.server.certPath, '--key', pki.server.keyPath, mtlsUrl('/mtls/wrong-san')]);
      assert.equal(r.status, 0);
      assert.notEqual(r.exitCode, 0);
      assert.equal(plain.requests.length, seen);
      await waitUntil(async () => delta(before, await proxy.stats(), stat(mtlsPort, 'ssl.fail_verify_san')) === 1, { what: 'ssl.fail_verify_san' });
      await assertStillServing();
    });

    it('openssl s_client: the right client certificate gets a response, a SAN mismatch gets no byte through', async () => {
      const request = (path: string): string => `GET ${path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`;
      const sClient = (pair: { certPath: string; keyPath: string }, path: string) =>
        runProcess(
          'openssl',
          ['s_client', '-connect', `127.0.0.1:${mtlsPort}`, '-servername', 'localhost', '-alpn', 'http/1.1', '-CAfile', pki.ca.certPath, '-cert', pair.certPath, '-key', pair.keyPath, '-quiet', '-ign_eof'],
          { input: request(path) },
        );
      const good = await sClient(pki.client, '/mtls/raw-ok');
      assert.match(good.stdout.toString(), /^HTTP\/1\.1 200/);
      assert.equal(plain.requests.at(-1)?.url, '/mtls/raw-ok');
      const seen = plain.requests.length;
      const bad = await sClient(pki.server, '/mtls/raw-bad');
      assert.doesNotMatch(bad.stdout.toString(), /HTTP\/1\.1/);
      assert.equal(plain.requests.length, seen);
    });
  });

  describe('bad TLS', () => {
    it('plaintext HTTP to a TLS-only listener is closed and counted as ssl.connection_error', async () => {
      const before = await proxy.stats();
      const r = await rawTcp(tlsPort, 'GET / HTTP/1.1\r\nhost: x\r\n\r\n', { waitForClose: true });
      assert.equal(r.closed, true);
      assert.doesNotMatch(r.text, /HTTP\/1\.1 200/);
      await waitUntil(async () => delta(before, await proxy.stats(), stat(tlsPort, 'ssl.connection_error')) === 1, { what: 'ssl.connection_error' });
      await assertStillServing();
    });

    it('garbage and a truncated ClientHello never crash the proxy', async () => {
      const before = await proxy.stats();
      const garbage = Buffer.from('16030100ffdeadbeef'.repeat(40), 'hex');
      const results = await Promise.all([
        rawTcp(tlsPort, garbage, { waitForClose: true }),
        rawTcp(tlsPort, Buffer.from([0x16, 0x03, 0x01, 0x00, 0x40, 0x01, 0x00, 0x00, 0x3c, 0x03, 0x03]), { end: true, waitForClose: true }),
        rawTcp(mtlsPort, Buffer.alloc(4096, 0xff), { waitForClose: true }),
      ]);
      for (const r of results) assert.equal(r.closed, true);
      await waitUntil(async () => {
        const after = await proxy.stats();
        return delta(before, after, stat(tlsPort, 'ssl.connection_error')) >= 2 && delta(before, after, stat(mtlsPort, 'ssl.connection_error')) >= 1;
      }, { what: 'ssl.connection_error on both listeners' });
      await assertStillServing();
    });

    it('a client that does not trust the proxy certificate fails; the proxy stays up', async () => {
      const r = await curl(['--cacert', pki.otherCa.certPath, `https://localhost:${tlsPort}/untrusted`]);
      assert.equal(r.status, 0);
      assert.equal(r.exitCode, 60); // CURLE_PEER_FAILED_VERIFICATION
      await assertStillServing();
    });

    it('a client that disconnects mid-handshake is cleaned up', async () => {
      const before = await proxy.stats();
      await new Promise<void>((resolve) => {
        const s = tlsConnect({ host: '127.0.0.1', port: tlsPort, servername: 'localhost', rejectUnauthorized: false });
        s.on('error', () => {});
        // Destroy as soon as the ClientHello is written, before the server's flight arrives.
        s.once('connect', () => {
          s.destroy();
          resolve();
        });
      });
      await waitUntil(async () => {
        const after = await proxy.stats();
        return after[stat(tlsPort, 'downstream_cx_active')] <= before[stat(tlsPort, 'downstream_cx_active')] && delta(before, after, stat(tlsPort, 'downstream_cx_destroy')) >= 1;
      }, { what: 'the aborted connection to close' });
      await assertStillServing();
    });
  });

  describe('upstream TLS', () => {
    const url = (path: string): string => `http://127.0.0.1:${upPort}${path}`;

    it('originates TLS with the configured SNI and verifies the upstream against trusted_ca', async () => {
      const r = await curl([url('/up/tls/x')]);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers['x-upstream'], 'tls-up');
      const got = tlsUp.requests.at(-1)!;
      assert.equal(got.url, '/up/tls/x');
      assert.equal(got.serverName, 'backend.example.com');
      assert.equal(got.alpnProtocol, undefined);
      assert.equal(got.peerSubjectAltName, undefined);
    });

    it('presents a client certificate to an mTLS upstream and checks its SPIFFE SAN', async () => {
      const r = await curl([url('/up/mtls/y')]);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers['x-upstream'], 'mtls-up');
      const got = mtlsUp.requests.at(-1)!;
      assert.equal(got.url, '/up/mtls/y');
      assert.equal(got.peerAuthorized, true);
      assert.match(got.peerSubjectAltName ?? '', new RegExp(`URI:${CLIENT_SPIFFE_ID.replace(/[/.]/g, '\\$&')}`));
      assert.equal(got.serverName, 'localhost');
    });

    it('without a client certificate the mTLS upstream refuses: 503, counted', async () => {
      const before = await proxy.stats();
      const seen = mtlsUp.requests.length;
      const r = await curl([url('/up/mtls-nocert/z')]);
      assert.equal(r.status, 503);
      assert.equal(mtlsUp.requests.length, seen);
      const after = await proxy.stats();
      assert.ok(delta(before, after, 'cluster.mtls_up_nocert.upstream_cx_connect_fail') >= 1);
    });

    it('speaks h2 to a TLS upstream selected by ALPN', async () => {
      const r = await curl(['--http1.1', url('/up/h2/w')]);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers['x-upstream'], 'h2-tls-up');
      const got = h2TlsUp.requests.at(-1)!;
      assert.equal(got.httpVersion, '2.0');
      assert.equal(got.alpnProtocol, 'h2');
      assert.equal(got.headerMap[':scheme'], 'https');
      assert.equal(got.url, '/up/h2/w');
    });

    it('an upstream certificate from an untrusted CA is refused: 503 UF, nothing sent', async () => {
      const before = await proxy.stats();
      const seen = tlsUp.requests.length;
      const r = await curl([url('/up/wrong-ca/v')]);
      assert.equal(r.status, 503);
      assert.match(r.text, /upstream connect error|TLS|certificate/i);
      assert.equal(tlsUp.requests.length, seen);
      const after = await proxy.stats();
      assert.ok(delta(before, after, 'cluster.wrong_ca_up.upstream_cx_connect_fail') >= 1);
      assert.ok(delta(before, after, 'cluster.wrong_ca_up.ssl.fail_verify_error') >= 1);
      assert.ok(delta(before, after, 'cluster.wrong_ca_up.ssl.connection_error') >= 1);
    });

    it('an upstream whose SAN does not match is refused: 503, nothing sent', async () => {
      const before = await proxy.stats();
      const seen = tlsUp.requests.length;
      const r = await curl([url('/up/wrong-san/u')]);
      assert.equal(r.status, 503);
      assert.equal(tlsUp.requests.length, seen);
      const after = await proxy.stats();
      assert.ok(delta(before, after, 'cluster.wrong_san_up.ssl.fail_verify_san') >= 1);
      assert.equal(delta(before, after, 'cluster.tls_up.ssl.handshake'), 0);
    });

    it('counts successful upstream handshakes per cluster', async () => {
      const before = await proxy.stats();
      // A fresh connection is not guaranteed (pooling), so compare against a cluster never used before.
      const r = await curl([url('/up/tls/count')]);
      assert.equal(r.status, 200);
      const after = await proxy.stats();
      assert.ok((after['cluster.tls_up.ssl.handshake'] ?? 0) >= 1, 'cluster.tls_up.ssl.handshake');
      assert.ok((after['cluster.h2_tls_up.ssl.handshake'] ?? 0) >= 1, 'cluster.h2_tls_up.ssl.handshake');
      assert.equal(delta(before, after, 'cluster.wrong_ca_up.ssl.handshake'), 0);
    });
  });
});
