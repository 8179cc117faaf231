// Filter chain matching through `sloop proxy` (Envoy's FilterChainMatch): one port serving TLS by SNI (exact
// before `*.deep.example.com` before `*.example.com`) and by ALPN, HTTP/1.1 and h2c (prior knowledge) told apart
// by the http_inspector, and anything else sent to `default_filter_chain`; destination_port; and connections
// that match no chain (closed, `listener.<addr>.no_filter_chain_match`) never taking the proxy down.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startHttpUpstream, startTcpEcho, type HttpUpstream, type TcpEcho } from '../helpers/upstreams.ts';
import {
  startProxy, bootstrapWith, staticCluster, virtualHost, prefixRoute, downstreamTls, httpFilterChain, tcpProxyFilterChain,
  tlsInspector, httpInspector, socketAddress, type Json, type ProxyHandle,
} from '../helpers/proxy.ts';
import { curl, nghttp, rawTcp, runProcess } from '../helpers/clients.ts';
import { freePorts } from '../helpers/ports.ts';
import { makeTestPki, type TestPki } from '../helpers/certs.ts';
import { waitUntil } from '../helpers/wait.ts';

function delta(before: Record<string, number>, after: Record<string, number>, name: string): number {
  return (after[name] ?? 0) - (before[name] ?? 0);
}

const UPSTREAMS = ['api', 'wild', 'deep', 'alpn-h2', 'alpn-h1', 'h2c', 'h1', 'port-match', 'port-fallback'] as const;
type UpstreamName = (typeof UPSTREAMS)[number];

describe('filter chain matching', () => {
  let dir: string;
  let pki: TestPki;
  const up = {} as Record<UpstreamName, HttpUpstream>;
  let echo: TcpEcho;
  let proxy: ProxyHandle;
  let multiPort: number;
  let sniOnlyPort: number;
  let portMatchPort: number;
  let portMissPort: number;
  const stat = (port: number, name: string): string => `listener.127.0.0.1_${port}.${name}`;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sloop-match-e2e-'));
    pki = await makeTestPki(dir);
    for (const name of UPSTREAMS) up[name] = await startHttpUpstream({ name });
    echo = await startTcpEcho();
    const [mp, sp, pmp, pxp, admin] = await freePorts(5);
    multiPort = mp;
    sniOnlyPort = sp;
    portMatchPort = pmp;
    portMissPort = pxp;
    const tlsSocket = downstreamTls({ certPath: pki.server.certPath, keyPath: pki.server.keyPath, alpn: ['h2', 'http/1.1'] });
    const to = (cluster: UpstreamName, extra: Partial<Parameters<typeof httpFilterChain>[0]> = {}): Json =>
      httpFilterChain({ statPrefix: cluster.replace('-', '_'), virtualHosts: [virtualHost('all', ['*'], [prefixRoute('/', cluster)])], ...extra });
    const multi: Json = {
      name: 'multi',
      address: socketAddress(multiPort),
      listener_filters: [tlsInspector(), httpInspector()],
      filter_chains: [
        to('api', { name: 'exact', match: { transport_protocol: 'tls', server_names: ['api.example.com'] }, transportSocket: tlsSocket }),
        to('wild', { name: 'wildcard', match: { transport_protocol: 'tls', server_names: ['*.example.com'] }, transportSocket: tlsSocket }),
        to('deep', { name: 'deeper-wildcard', match: { transport_protocol: 'tls', server_names: ['*.deep.example.com'] }, transportSocket: tlsSocket }),
        to('alpn-h2', {
          name: 'alpn-h2',
          match: { transport_protocol: 'tls', server_names: ['alpn.test'], application_protocols: ['h2'] },
          transportSocket: tlsSocket,
        }),
        to('alpn-h1', {
          name: 'alpn-h1',
          match: { transport_protocol: 'tls', server_names: ['alpn.test'], application_protocols: ['http/1.1'] },
          transportSocket: tlsSocket,
        }),
        to('h2c', { name: 'h2c', match: { transport_protocol: 'raw_buffer', application_protocols: ['h2c'] }, codecType: 'HTTP2' }),
        to('h1', { name: 'h1', match: { transport_protocol: 'raw_buffer', application_protocols: ['http/1.1', 'http/1.0'] }, codecType: 'HTTP1' }),
      ],
      default_filter_chain: tcpProxyFilterChain({ name: 'opaque', statPrefix: 'opaque', cluster: 'echo' }),
    };
    const sniOnly: Json = {
      name: 'sni-only',
      address: socketAddress(sniOnlyPort),
      listener_filters: [tlsInspector()],
      filter_chains: [to('api', { match: { server_names: ['api.example.com'] }, transportSocket: tlsSocket })],
    };
    const portMatch: Json = {
      name: 'port-match',
      address: socketAddress(portMatchPort),
      filter_chains: [
        to('port-match', { match: { destination_port: portMatchPort } }),
        to('h1', { match: { destination_port: portMissPort } }),
        to('port-fallback'),
      ],
    };
    const portMiss: Json = {
      name: 'port-miss',
      address: socketAddress(portMissPort),
      filter_chains: [to('port-match', { match: { destination_port: portMatchPort } })],
    };
    proxy = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [multi, sniOnly, portMatch, portMiss],
        clusters: [...UPSTREAMS.map((n) => staticCluster(n, [['127.0.0.1', up[n].port]])), staticCluster('echo', [['127.0.0.1', echo.port]])],
      }),
    );
  });

  after(async () => {
    await proxy?.stop();
    await Promise.all([...Object.values(up).map((u) => u.close()), echo?.close()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** curl over TLS to the multi listener with `host` as SNI (and Host), resolved to 127.0.0.1. */
  function tlsCurl(host: string, path: string, extra: string[] = []): ReturnType<typeof curl> {
    return curl(['--resolve', `${host}:${multiPort}:127.0.0.1`, '--cacert', pki.ca.certPath, ...extra, `https://${host}:${multiPort}${path}`]);
  }

  async function assertServedBy(name: UpstreamName, path: string): Promise<void> {
    const got = await up[name].recorder.waitFor((q) => q.url === path);
    for (const other of UPSTREAMS) if (other !== name) assert.ok(!up[other].requests.some((q) => q.url === path), `${path} also reached ${other}`);
    assert.equal(got.url, path);
  }

  describe('one port: TLS by SNI and ALPN, HTTP/1.1, h2c, and opaque TCP', () => {
    it('an exact server name wins over wildcards', async () => {
      const before = await proxy.stats();
      const r = await tlsCurl('api.example.com', '/sni/exact');
      assert.equal(r.status, 200, r.stderr);
      assert.equal(r.headers['x-upstream'], 'api');
      await assertServedBy('api', '/sni/exact');
      const got = up.api.requests.at(-1)!;
      assert.equal(got.headerMap['x-forwarded-proto'], 'https');
      const after = await proxy.stats();
      assert.equal(delta(before, after, 'tls_inspector.tls_found'), 1);
      assert.equal(delta(before, after, 'tls_inspector.sni_found'), 1);
      assert.equal(delta(before, after, stat(multiPort, 'ssl.handshake')), 1);
      assert.equal(delta(before, after, 'http.api.downstream_cx_ssl_total'), 1);
    });

    it('*.example.com takes other names under example.com', async () => {
      const r = await tlsCurl('www.example.com', '/sni/wildcard');
      assert.equal(r.status, 200, r.stderr);
      assert.equal(r.headers['x-upstream'], 'wild');
      await assertServedBy('wild', '/sni/wildcard');
    });

    it('the most specific wildcard wins: *.deep.example.com over *.example.com', async () => {
      // The certificate's *.example.com does not cover two labels, so skip verification for this name only.
      const r = await curl(['--resolve', `x.deep.example.com:${multiPort}:127.0.0.1`, '-k', `https://x.deep.example.com:${multiPort}/sni/deep`]);
      assert.equal(r.status, 200, r.stderr);
      assert.equal(r.headers['x-upstream'], 'deep');
      await assertServedBy('deep', '/sni/deep');
    });

    it('application_protocols picks the chain by the ALPN the client offers', async () => {
      const h2 = await tlsCurl('alpn.test', '/alpn/h2', ['-k', '--http2']);
      assert.equal(h2.status, 200, h2.stderr);
      assert.equal(h2.httpVersion, '2');
      assert.equal(h2.headers['x-upstream'], 'alpn-h2');
      await assertServedBy('alpn-h2', '/alpn/h2');
      const h1 = await tlsCurl('alpn.test', '/alpn/h1', ['-k', '--http1.1']);
      assert.equal(h1.status, 200, h1.stderr);
      assert.equal(h1.httpVersion, '1.1');
      assert.equal(h1.headers['x-upstream'], 'alpn-h1');
      await assertServedBy('alpn-h1', '/alpn/h1');
      // openssl offering only http/1.1 reaches the http/1.1 chain and gets http/1.1 back.
      const s = await runProcess('openssl', ['s_client', '-connect', `127.0.0.1:${multiPort}`, '-servername', 'alpn.test', '-alpn', 'http/1.1', '-ign_eof'], {
        input: 'GET /alpn/openssl HTTP/1.1\r\nhost: alpn.test\r\nconnection: close\r\n\r\n',
      });
      assert.match(s.stdout.toString(), /ALPN protocol: http\/1\.1/);
      assert.match(s.stdout.toString(), /x-upstream: alpn-h1/);
      await assertServedBy('alpn-h1', '/alpn/openssl');
    });

    it('cleartext HTTP/1.1 goes to the http/1.1 chain (http_inspector)', async () => {
      const before = await proxy.stats();
      const r = await curl(['--http1.1', `http://127.0.0.1:${multiPort}/plain/h1`]);
      assert.equal(r.status, 200, r.stderr);
      assert.equal(r.httpVersion, '1.1');
      assert.equal(r.headers['x-upstream'], 'h1');
      await assertServedBy('h1', '/plain/h1');
      assert.equal(up.h1.requests.at(-1)!.headerMap['x-forwarded-proto'], 'http');
      const after = await proxy.stats();
      assert.equal(delta(before, after, 'http_inspector.http11_found'), 1);
      assert.equal(delta(before, after, 'tls_inspector.tls_not_found'), 1);
      assert.equal(delta(before, after, 'http.h1.downstream_cx_http1_total'), 1);
    });

    it('HTTP/1.0 also goes to the http/1.1 chain', async () => {
      const r = await rawTcp(multiPort, 'GET /plain/h10 HTTP/1.0\r\nhost: x\r\n\r\n', { waitForClose: true });
      assert.match(r.text, /^HTTP\/1\.[01] 200/);
      assert.match(r.text, /x-upstream: h1/i);
      await assertServedBy('h1', '/plain/h10');
    });

    it('h2c with prior knowledge goes to the h2c chain (curl and nghttp)', async () => {
      const before = await proxy.stats();
      const r = await curl(['--http2-prior-knowledge', `http://127.0.0.1:${multiPort}/plain/h2c`]);
      assert.equal(r.status, 200, r.stderr);
      assert.equal(r.httpVersion, '2');
      assert.equal(r.headers['x-upstream'], 'h2c');
      await assertServedBy('h2c', '/plain/h2c');
      const n = await nghttp([`http://127.0.0.1:${multiPort}/plain/nghttp`]);
      assert.equal(n.status, 200, n.stderr);
      assert.equal(n.headers['x-upstream'], 'h2c');
      await assertServedBy('h2c', '/plain/nghttp');
      const after = await proxy.stats();
      assert.equal(delta(before, after, 'http_inspector.http2_found'), 2);
      assert.equal(delta(before, after, 'http.h2c.downstream_cx_http2_total'), 2);
    });

    it('bytes that are neither TLS nor HTTP go to default_filter_chain (tcp_proxy)', async () => {
      const before = await proxy.stats();
      const payload = 'HELO opaque protocol\r\n';
      const r = await rawTcp(multiPort, payload, { until: (d) => d.length >= payload.length });
      assert.equal(r.text, payload);
      const conn = await echo.recorder.waitFor((c) => Buffer.concat(c.chunks).toString() === payload);
      assert.equal(conn.bytes, payload.length);
      const after = await proxy.stats();
      assert.equal(delta(before, after, 'http_inspector.http_not_found'), 1);
      assert.equal(delta(before, after, stat(multiPort, 'no_filter_chain_match')), 0);
    });

    it('TLS with an unknown SNI falls to default_filter_chain, which gets the raw ClientHello', async () => {
      const seen = echo.connections.length;
      const r = await curl(['--resolve', `unknown.test:${multiPort}:127.0.0.1`, '-k', `https://unknown.test:${multiPort}/nope`], { timeoutMs: 3_000 });
      assert.equal(r.status, 0);
      const conn = await echo.recorder.waitFor((c) => echo.connections.indexOf(c) >= seen);
      // A TLS handshake record (content type 22), passed through untouched.
      assert.equal(conn.chunks[0][0], 0x16);
      for (const name of UPSTREAMS) assert.ok(!up[name].requests.some((q) => q.url === '/nope'));
    });
  });

  describe('no matching chain', () => {
    it('an unknown SNI with no default chain is closed and counted as no_filter_chain_match', async () => {
      const before = await proxy.stats();
      const r = await curl(['--resolve', `other.example.com:${sniOnlyPort}:127.0.0.1`, '-k', `https://other.example.com:${sniOnlyPort}/x`]);
      assert.equal(r.status, 0);
      assert.notEqual(r.exitCode, 0);
      await waitUntil(async () => delta(before, await proxy.stats(), stat(sniOnlyPort, 'no_filter_chain_match')) === 1, { what: 'no_filter_chain_match' });
      // The matching name still works on the same listener.
      const ok = await curl(['--resolve', `api.example.com:${sniOnlyPort}:127.0.0.1`, '--cacert', pki.ca.certPath, `https://api.example.com:${sniOnlyPort}/sni-only/ok`]);
      assert.equal(ok.status, 200, ok.stderr);
      await assertServedBy('api', '/sni-only/ok');
    });

    it('TLS without SNI does not match a server_names chain', async () => {
      const before = await proxy.stats();
      const r = await runProcess('openssl', ['s_client', '-connect', `127.0.0.1:${sniOnlyPort}`, '-noservername'], { input: '' });
      assert.doesNotMatch(r.stdout.toString(), /BEGIN CERTIFICATE|Server certificate/);
      await waitUntil(async () => {
        const after = await proxy.stats();
        return delta(before, after, stat(sniOnlyPort, 'no_filter_chain_match')) === 1 && delta(before, after, 'tls_inspector.sni_not_found') === 1;
      }, { what: 'no_filter_chain_match and sni_not_found' });
    });

    it('plaintext and garbage to a TLS-only listener are closed and counted; the proxy keeps serving', async () => {
      const before = await proxy.stats();
      const results = await Promise.all([
        rawTcp(sniOnlyPort, 'GET / HTTP/1.1\r\nhost: x\r\n\r\n', { waitForClose: true }),
        rawTcp(sniOnlyPort, Buffer.from('00ff16030300'.repeat(100), 'hex'), { waitForClose: true }),
        rawTcp(sniOnlyPort, Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 0x01]), { end: true, waitForClose: true }),
      ]);
      for (const r of results) {
        assert.equal(r.closed, true);
        assert.equal(r.data.length, 0);
      }
      await waitUntil(async () => delta(before, await proxy.stats(), stat(sniOnlyPort, 'no_filter_chain_match')) === 3, { what: 'three no_filter_chain_match' });
      assert.equal(proxy.exit, undefined);
      const ok = await curl(['--resolve', `api.example.com:${sniOnlyPort}:127.0.0.1`, '--cacert', pki.ca.certPath, `https://api.example.com:${sniOnlyPort}/sni-only/after`]);
      assert.equal(ok.status, 200, ok.stderr);
    });
  });

  describe('destination_port', () => {
    it('a chain naming the listener port wins over the chain without a port', async () => {
      const r = await curl([`http://127.0.0.1:${portMatchPort}/port/match`]);
      assert.equal(r.status, 200, r.stderr);
      assert.equal(r.headers['x-upstream'], 'port-match');
      await assertServedBy('port-match', '/port/match');
    });

    it('a listener whose only chain names another port closes the connection', async () => {
      const before = await proxy.stats();
      const r = await curl([`http://127.0.0.1:${portMissPort}/port/miss`]);
      assert.equal(r.status, 0);
      assert.ok([52, 56].includes(r.exitCode), `curl exit ${r.exitCode}: ${r.stderr}`); // empty reply or reset
      await waitUntil(async () => delta(before, await proxy.stats(), stat(portMissPort, 'no_filter_chain_match')) === 1, { what: 'no_filter_chain_match' });
      for (const name of UPSTREAMS) assert.ok(!up[name].requests.some((q) => q.url === '/port/miss'));
    });
  });
});
