// Cluster transport_socket_matches (Istio's auto-mTLS shape) from a static bootstrap: one cluster, two endpoints.
// The endpoint labelled `envoy.transport_socket_match: { tlsMode: istio }` is a TLS upstream that requires a client
// certificate; the other is plaintext. Round robin reaches both, each over its own transport: the TLS upstream sees
// the client certificate's SPIFFE ID, the plaintext one plain HTTP. Over HTTP/1.1, HTTP/2 and tcp_proxy.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeTestPki, CLIENT_SPIFFE_ID, SERVER_SPIFFE_ID, type TestPki } from '../helpers/certs.ts';
import { startHttpUpstream, type HttpUpstream } from '../helpers/upstreams.ts';
import { startProxy, bootstrapWith, httpListener, tcpProxyListener, prefixRoute, virtualHost, upstreamTls, http2ProtocolOptions, socketAddress, type Json, type ProxyHandle } from '../helpers/proxy.ts';
import { curl } from '../helpers/clients.ts';
import { freePorts } from '../helpers/ports.ts';

const RAW_BUFFER = { name: 'envoy.transport_sockets.raw_buffer', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer' } };

/** A cluster whose first endpoint is labelled tlsMode istio, with Istio's two transport socket matches. */
function mixedCluster(name: string, pki: TestPki, tlsPort: number, plainPort: number, extra: Json = {}): Json {
  const lbEndpoint = (port: number, labelled: boolean): Json => ({
    endpoint: { address: socketAddress(port) },
    ...(labelled ? { metadata: { filter_metadata: { 'envoy.transport_socket_match': { tlsMode: 'istio' } } } } : {}),
  });
  return {
    name,
    type: 'STATIC',
    connect_timeout: '1s',
    lb_policy: 'ROUND_ROBIN',
    load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [lbEndpoint(tlsPort, true), lbEndpoint(plainPort, false)] }] },
    transport_socket_matches: [
      {
        name: 'tlsMode-istio',
        match: { tlsMode: 'istio' },
        transport_socket: upstreamTls({
          certPath: pki.client.certPath,
          keyPath: pki.client.keyPath,
          caPath: pki.ca.certPath,
          matchSans: [{ san_type: 'URI', matcher: { exact: SERVER_SPIFFE_ID } }],
          sni: 'outbound_.80_._.web.default.svc.cluster.local',
        }),
      },
      { name: 'tlsMode-disabled', match: {}, transport_socket: RAW_BUFFER },
    ],
    ...extra,
  };
}

describe('cluster transport_socket_matches: per-endpoint TLS or plaintext', () => {
  let dir: string;
  let pki: TestPki;
  const apps: HttpUpstream[] = [];
  let proxy: ProxyHandle;
  let httpPort: number;
  let tcpPort: number;
  let tls1: HttpUpstream, plain1: HttpUpstream, tls2: HttpUpstream, plain2: HttpUpstream;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sloop-tsm-'));
    pki = await makeTestPki(dir);
    const tlsOpts = { key: pki.server.key, cert: pki.server.cert, ca: pki.ca.cert, requestCert: true };
    tls1 = await startHttpUpstream({ name: 'tls', tls: tlsOpts });
    plain1 = await startHttpUpstream({ name: 'plain' });
    tls2 = await startHttpUpstream({ name: 'tls-h2', h2: true, tls: tlsOpts });
    plain2 = await startHttpUpstream({ name: 'plain-h2', h2: true });
    apps.push(tls1, plain1, tls2, plain2);
    let admin: number;
    [httpPort, tcpPort, admin] = await freePorts(3);
    proxy = await startProxy(bootstrapWith({
      adminPort: admin,
      listeners: [
        httpListener({ name: 'http', port: httpPort, virtualHosts: [virtualHost('all', ['*'], [prefixRoute('/h2/', 'mixed-h2'), prefixRoute('/', 'mixed')])] }),
        tcpProxyListener({ name: 'tcp', port: tcpPort, cluster: 'mixed-tcp' }),
      ],
      clusters: [
        mixedCluster('mixed', pki, tls1.port, plain1.port),
        mixedCluster('mixed-h2', pki, tls2.port, plain2.port, http2ProtocolOptions()),
        mixedCluster('mixed-tcp', pki, tls1.port, plain1.port),
      ],
    }));
  });

  after(async () => {
    await proxy?.stop();
    for (const a of apps) await a.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('HTTP/1.1: round robin reaches both endpoints; the labelled one over mTLS with the client\'s SPIFFE ID', async () => {
    const seen: Record<string, number> = {};
    for (let i = 0; i < 6; i++) {
      const r = await curl(['-s', `http://127.0.0.1:${httpPort}/r${i}`]);
      assert.equal(r.status, 200, `${r.text}\n${proxy.stderr()}`);
      seen[r.headers['x-upstream']] = (seen[r.headers['x-upstream']] ?? 0) + 1;
    }
    assert.deepEqual(seen, { tls: 3, plain: 3 });
    assert.equal(tls1.requests.length, 3);
    for (const q of tls1.requests) {
      assert.equal(q.peerAuthorized, true);
      assert.match(q.peerSubjectAltName ?? '', new RegExp(`URI:${CLIENT_SPIFFE_ID}`));
      assert.equal(q.serverName, 'outbound_.80_._.web.default.svc.cluster.local');
    }
    // A plaintext server would have answered a TLS ClientHello with a 400, never with these requests.
    assert.equal(plain1.requests.length, 3);
    for (const q of plain1.requests) assert.equal(q.peerSubjectAltName, undefined);
    const stats = await proxy.stats();
    assert.equal(stats['cluster.mixed.tlsMode-istio.total_match_count'], 1);
    assert.equal(stats['cluster.mixed.tlsMode-disabled.total_match_count'], 1);
    assert.equal(stats['cluster.mixed.default.total_match_count'], 0);
    assert.ok(stats['cluster.mixed.ssl.handshake'] >= 1, 'ssl.* of the matched TLS socket count in the cluster');
    assert.equal(stats['cluster.mixed.ssl.connection_error'] ?? 0, 0);
  });

  it('HTTP/2: h2 over TLS (ALPN) to the labelled endpoint, h2c to the other', async () => {
    const seen: Record<string, string> = {};
    for (let i = 0; i < 4; i++) {
      const r = await curl(['-s', `http://127.0.0.1:${httpPort}/h2/r${i}`]);
      assert.equal(r.status, 200, `${r.text}\n${proxy.stderr()}`);
      seen[r.headers['x-upstream']] = r.json().httpVersion as string;
    }
    assert.deepEqual(seen, { 'tls-h2': '2.0', 'plain-h2': '2.0' });
    assert.equal(tls2.requests.at(-1)!.alpnProtocol, 'h2');
    assert.match(tls2.requests.at(-1)!.peerSubjectAltName ?? '', new RegExp(`URI:${CLIENT_SPIFFE_ID}`));
    assert.equal(plain2.requests.at(-1)!.alpnProtocol, undefined);
  });

  it('tcp_proxy connects with each host\'s own transport socket', async () => {
    const before = { tls: tls1.requests.length, plain: plain1.requests.length };
    const seen = new Set<string>();
    for (let i = 0; i < 2; i++) {
      const r = await curl(['-s', `http://127.0.0.1:${tcpPort}/tcp${i}`]);
      assert.equal(r.status, 200, `${r.text}\n${proxy.stderr()}`);
      seen.add(r.headers['x-upstream']);
    }
    assert.deepEqual([...seen].sort(), ['plain', 'tls']);
    assert.equal(tls1.requests.length, before.tls + 1);
    assert.equal(plain1.requests.length, before.plain + 1);
    assert.match(tls1.requests.at(-1)!.peerSubjectAltName ?? '', new RegExp(`URI:${CLIENT_SPIFFE_ID}`));
  });
});
