// HttpProtocolOptions `auto_config` through `sloop proxy` (Envoy's AutoHttpConfig): over TLS the proxy offers
// ALPN `h2,http/1.1` and speaks HTTP/2 when the upstream selects h2, HTTP/1.1 when it selects http/1.1 or
// nothing; the host's last choice sends later requests straight to the right pool (h2 multiplexed on one
// connection); an UpstreamTlsContext's own `alpn_protocols` wins; gRPC works through it; and, as in Envoy, a
// plaintext transport socket (or a raw_buffer transport_socket_matches entry) refuses the cluster.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { status as grpcStatus } from '@grpc/grpc-js';
import { startHttpUpstream, startGrpcUpstream, grpcClient, type HttpUpstream, type GrpcUpstream, type EchoClient } from '../helpers/upstreams.ts';
import {
  startProxy, bootstrapWith, httpListener, staticCluster, virtualHost, prefixRoute, upstreamTls,
  type Json, type ProxyHandle,
} from '../helpers/proxy.ts';
import { httpRequest } from '../helpers/http-client.ts';
import { curl } from '../helpers/clients.ts';
import { freePorts, LOOPBACK } from '../helpers/ports.ts';
import { makeTestPki, type TestPki } from '../helpers/certs.ts';

const HTTP_PROTOCOL_OPTIONS = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';
const RAW_BUFFER_TYPE = 'type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer';

/** Cluster fields selecting `auto_config` (HTTP/1.1 or HTTP/2 by ALPN). */
function autoConfig(): Json {
  return {
    typed_extension_protocol_options: {
      [HTTP_PROTOCOL_OPTIONS]: { '@type': `type.googleapis.com/${HTTP_PROTOCOL_OPTIONS}`, auto_config: { http2_protocol_options: {}, http_protocol_options: {} } },
    },
  };
}

/** An HTTPS/1.1 upstream whose TLS stack selects no ALPN protocol at all (node:https defaults to http/1.1). */
async function startNoAlpnUpstream(pki: TestPki): Promise<{ port: number; seen: Array<{ httpVersion: string; alpn: string | false }>; server: TlsServer }> {
  const seen: Array<{ httpVersion: string; alpn: string | false }> = [];
  const http = createHttpServer((req, res) => {
    seen.push({ httpVersion: req.httpVersion, alpn: (req.socket as TLSSocket).alpnProtocol ?? false });
    req.resume();
    req.on('end', () => res.writeHead(200, { 'x-upstream': 'no-alpn' }).end(`no-alpn ${req.httpVersion}`));
  });
  const server = createTlsServer({ key: pki.server.key, cert: pki.server.cert }, (socket) => http.emit('connection', socket));
  await new Promise<void>((r) => server.listen(0, LOOPBACK, r));
  return { port: (server.address() as { port: number }).port, seen, server };
}

/** An HTTPS/1.1 upstream that offers ALPN `http/1.1` only; records each request's version and ALPN. */
async function startH1AlpnUpstream(pki: TestPki): Promise<{ port: number; seen: Array<{ httpVersion: string; alpn: string | false }>; server: HttpsServer }> {
  const seen: Array<{ httpVersion: string; alpn: string | false }> = [];
  const server = createHttpsServer({ key: pki.server.key, cert: pki.server.cert, ALPNProtocols: ['http/1.1'] }, (req, res) => {
    seen.push({ httpVersion: req.httpVersion, alpn: (req.socket as TLSSocket).alpnProtocol ?? false });
    req.resume();
    req.on('end', () => res.writeHead(200, { 'x-upstream': 'h1-alpn' }).end(`h1 ${req.httpVersion}`));
  });
  await new Promise<void>((r) => server.listen(0, LOOPBACK, r));
  return { port: (server.address() as { port: number }).port, seen, server };
}

describe('auto_config: upstream HTTP/2 or HTTP/1.1 by ALPN', () => {
  let dir: string;
  let pki: TestPki;
  let h2up: HttpUpstream;
  let noAlpnUp: Awaited<ReturnType<typeof startNoAlpnUpstream>>;
  let h1Alpn: Awaited<ReturnType<typeof startH1AlpnUpstream>>;
  let g: GrpcUpstream;
  let proxy: ProxyHandle;
  let port: number;
  let grpcPort: number;
  let client: EchoClient;

  const tls = (extra: { alpn?: string[] } = {}): Json => ({ transport_socket: upstreamTls({ caPath: pki.ca.certPath, sni: 'localhost', ...extra }) });
  const stat = async (name: string): Promise<number> => (await proxy.stats())[name] ?? 0;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sloop-alpn-e2e-'));
    pki = await makeTestPki(dir);
    // node:http2 createSecureServer with allowHTTP1: ALPN h2 or http/1.1.
    h2up = await startHttpUpstream({ name: 'h2up', h2: true, tls: { key: pki.server.key, cert: pki.server.cert } });
    noAlpnUp = await startNoAlpnUpstream(pki);
    h1Alpn = await startH1AlpnUpstream(pki);
    g = await startGrpcUpstream({ name: 'g', tls: { key: pki.server.key, cert: pki.server.cert } });
    const [p, gp, admin] = await freePorts(3);
    port = p;
    grpcPort = gp;
    proxy = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [
          httpListener({
            name: 'http',
            port,
            virtualHosts: [virtualHost('svc', ['*'], [
              prefixRoute('/h2/', 'auto_h2'),
              prefixRoute('/h1alpn/', 'auto_h1_alpn'),
              prefixRoute('/noalpn/', 'auto_no_alpn'),
              prefixRoute('/explicit-alpn/', 'auto_explicit_alpn'),
            ])],
          }),
          httpListener({ name: 'grpc', port: grpcPort, virtualHosts: [virtualHost('echo', ['*'], [prefixRoute('/', 'auto_grpc')])] }),
        ],
        clusters: [
          staticCluster('auto_h2', [[LOOPBACK, h2up.port]], { ...autoConfig(), ...tls() }),
          staticCluster('auto_h1_alpn', [[LOOPBACK, h1Alpn.port]], { ...autoConfig(), ...tls() }),
          staticCluster('auto_no_alpn', [[LOOPBACK, noAlpnUp.port]], { ...autoConfig(), ...tls() }),
          // The UpstreamTlsContext's alpn_protocols win over auto_config's default h2,http/1.1.
          staticCluster('auto_explicit_alpn', [[LOOPBACK, h2up.port]], { ...autoConfig(), ...tls({ alpn: ['http/1.1'] }) }),
          staticCluster('auto_grpc', [[LOOPBACK, g.port]], { ...autoConfig(), ...tls() }),
        ],
      }),
    );
    client = grpcClient(`${LOOPBACK}:${grpcPort}`, { authority: 'echo.local' });
  });

  after(async () => {
    client?.close();
    await proxy?.stop();
    await Promise.all([h2up?.close(), g?.close()]);
    await new Promise((r) => (noAlpnUp ? noAlpnUp.server.close(r) : r(undefined)));
    h1Alpn?.server.closeAllConnections();
    await new Promise((r) => (h1Alpn ? h1Alpn.server.close(r) : r(undefined)));
    await rm(dir, { recursive: true, force: true });
  });

  it('an upstream that selects h2 gets HTTP/2, multiplexed on one connection once the host is known', async () => {
    const first = await httpRequest(port, '/h2/first');
    assert.equal(first.status, 200, first.text);
    assert.equal(first.headers['x-upstream'], 'h2up');
    // The host chose h2: concurrent requests share the session instead of opening connections.
    const rest = await Promise.all(Array.from({ length: 8 }, (_, i) => httpRequest(port, `/h2/r${i}`)));
    for (const r of rest) assert.equal(r.status, 200, r.text);
    assert.equal(h2up.requests.length, 9);
    for (const req of h2up.requests) {
      assert.equal(req.httpVersion, '2.0');
      assert.equal(req.alpnProtocol, 'h2');
    }
    assert.equal(h2up.connections, 1);
    assert.equal(await stat('cluster.auto_h2.upstream_cx_http2_total'), 1);
    assert.equal(await stat('cluster.auto_h2.upstream_cx_http1_total'), 0);
    assert.equal(await stat('cluster.auto_h2.upstream_cx_total'), 1);
    assert.equal(await stat('cluster.auto_h2.upstream_rq_total'), 9);
    assert.equal(await stat('cluster.auto_h2.upstream_rq_pending_active'), 0);
    assert.equal(await stat('cluster.auto_h2.upstream_cx_active'), 1);
  });

  it('an h2 downstream (prior knowledge) reaches the h2 upstream as HTTP/2 too', async () => {
    const r = await curl(['--http2-prior-knowledge', `http://${LOOPBACK}:${port}/h2/from-h2`]);
    assert.equal(r.status, 200);
    const got = h2up.requests.at(-1)!;
    assert.equal(got.url, '/h2/from-h2');
    assert.equal(got.httpVersion, '2.0');
  });

  it('an HTTPS/1.1 upstream that offers only http/1.1 gets HTTP/1.1', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await httpRequest(port, `/h1alpn/${i}`);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.text, 'h1 1.1');
    }
    assert.deepEqual(h1Alpn.seen, Array.from({ length: 3 }, () => ({ httpVersion: '1.1', alpn: 'http/1.1' })));
    assert.equal(await stat('cluster.auto_h1_alpn.upstream_cx_http1_total'), 1); // keep-alive reuse
    assert.equal(await stat('cluster.auto_h1_alpn.upstream_cx_http2_total'), 0);
  });

  it('an upstream that negotiates no ALPN at all gets HTTP/1.1', async () => {
    const r = await httpRequest(port, '/noalpn/x');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, 'no-alpn 1.1');
    assert.deepEqual(noAlpnUp.seen, [{ httpVersion: '1.1', alpn: false }]);
    assert.equal(await stat('cluster.auto_no_alpn.upstream_cx_http1_total'), 1);
    assert.equal(await stat('cluster.auto_no_alpn.upstream_cx_http2_total'), 0);
  });

  it("the UpstreamTlsContext's alpn_protocols win: http/1.1 only, so HTTP/1.1 to an h2-capable upstream", async () => {
    const before = h2up.requests.length;
    const r = await httpRequest(port, '/explicit-alpn/x');
    assert.equal(r.status, 200, r.text);
    assert.equal(h2up.requests.length, before + 1);
    const got = h2up.requests.at(-1)!;
    assert.equal(got.httpVersion, '1.1');
    assert.equal(got.alpnProtocol, 'http/1.1');
    assert.equal(await stat('cluster.auto_explicit_alpn.upstream_cx_http1_total'), 1);
    assert.equal(await stat('cluster.auto_explicit_alpn.upstream_cx_http2_total'), 0);
  });

  it('gRPC through auto_config: unary and streaming over h2 to a TLS gRPC upstream', async () => {
    const u = await client.echo({ message: 'hi' }, { metadata: { 'x-trailer': 'tr' } });
    assert.equal(u.code, grpcStatus.OK, u.details);
    assert.equal(u.response?.message, 'hi');
    assert.equal(u.response?.upstream, 'g');
    assert.equal(u.trailers['x-trailer'], 'tr');
    const s = await client.stream({ message: 's', count: 3 });
    assert.equal(s.code, grpcStatus.OK, s.details);
    assert.deepEqual(s.responses.map((m) => m.message), ['s-0', 's-1', 's-2']);
    const failed = await client.echo({ message: 'x', fail_code: grpcStatus.NOT_FOUND });
    assert.equal(failed.code, grpcStatus.NOT_FOUND);
    assert.equal(await stat('cluster.auto_grpc.upstream_cx_http2_total'), 1);
    assert.equal(await stat('cluster.auto_grpc.upstream_cx_http1_total'), 0);
  });
});

describe('auto_config needs an ALPN transport socket (as Envoy)', () => {
  it('a plaintext cluster (no transport_socket) is refused at load', async () => {
    const [port, admin] = await freePorts(2);
    const proxy = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [httpListener({ name: 'l', port, virtualHosts: [virtualHost('v', ['*'], [prefixRoute('/', 'plain_auto')])] })],
        clusters: [staticCluster('plain_auto', [[LOOPBACK, 9]], autoConfig())],
      }),
      { expectFail: true },
    );
    assert.notEqual(proxy.exit?.code, 0);
    const err = proxy.stderr();
    assert.match(err, /typed_extension_protocol_options\["envoy\.extensions\.upstreams\.http\.v3\.HttpProtocolOptions"\]\.auto_config/);
    assert.match(err, /ALPN configured for cluster plain_auto which has a non-ALPN transport socket/);
  });

  it('a raw_buffer transport_socket_matches entry is refused too', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'sloop-alpn-e2e-'));
    try {
      const pki = await makeTestPki(dir);
      const [port, admin] = await freePorts(2);
      const proxy = await startProxy(
        bootstrapWith({
          adminPort: admin,
          listeners: [httpListener({ name: 'l', port, virtualHosts: [virtualHost('v', ['*'], [prefixRoute('/', 'mixed_auto')])] })],
          clusters: [staticCluster('mixed_auto', [[LOOPBACK, 9]], {
            ...autoConfig(),
            transport_socket: upstreamTls({ caPath: pki.ca.certPath }),
            transport_socket_matches: [{ name: 'plain', match: {}, transport_socket: { name: 'envoy.transport_sockets.raw_buffer', typed_config: { '@type': RAW_BUFFER_TYPE } } }],
          })],
        }),
        { expectFail: true },
      );
      assert.notEqual(proxy.exit?.code, 0);
      assert.match(proxy.stderr(), /ALPN configured for cluster mixed_auto which has a non-ALPN transport socket matcher/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
