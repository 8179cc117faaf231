// Authorization in `sloop proxy`: envoy.filters.http.rbac (ALLOW/DENY rules, shadow rules, RBACPerRoute, Envoy's
// 403 and stat names), the HCM's path normalization in front of it (the RELIABILITY bypass variants of /admin),
// principal-based ALLOW over mTLS vs a plaintext client on a PERMISSIVE-like listener, and
// envoy.filters.network.rbac closing TCP connections. Issue #5.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startHttpUpstream, startTcpEcho, type HttpUpstream, type TcpEcho } from '../helpers/upstreams.ts';
import {
  startProxy,
  bootstrapWith,
  httpListener,
  httpFilterChain,
  staticCluster,
  virtualHost,
  prefixRoute,
  downstreamTls,
  tlsInspector,
  socketAddress,
  fetchStats,
  type Json,
  type ProxyHandle,
} from '../helpers/proxy.ts';
import { curl, nghttp, rawHttp, rawTcp } from '../helpers/clients.ts';
import { freePorts, LOOPBACK } from '../helpers/ports.ts';
import { makeTestPki, CLIENT_SPIFFE_ID, type TestPki } from '../helpers/certs.ts';
import { h2Raw, headersFrame, getRequest, FRAME } from '../helpers/h2frames.ts';

const RBAC = 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC';
const RBAC_PER_ROUTE = 'type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute';
const NET_RBAC = 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC';
const TCP_PROXY = 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy';
const ANY = [{ any: true }];

/** Istio's `hosts: [httpbin.foo]` as RBAC header rules: case-insensitive, with or without a port. */
const HOST_RULE = {
  or_rules: {
    rules: [
      { header: { name: ':authority', string_match: { exact: 'httpbin.foo', ignore_case: true } } },
      { header: { name: ':authority', string_match: { prefix: 'httpbin.foo:', ignore_case: true } } },
    ],
  },
};

/** DENY /admin (and /hostonly for httpbin.foo), shadow ALLOW only GETs (Istio's dry-run prefix). */
function rbacFilter(): Json {
  return {
    name: 'envoy.filters.http.rbac',
    typed_config: {
      '@type': RBAC,
      rules: {
        action: 'DENY',
        policies: {
          admin: { permissions: [{ url_path: { path: { prefix: '/admin' } } }], principals: ANY },
          host: { permissions: [{ and_rules: { rules: [HOST_RULE, { url_path: { path: { exact: '/hostonly' } } }] } }], principals: ANY },
        },
      },
      shadow_rules: { action: 'ALLOW', policies: { 'only-get': { permissions: [{ header: { name: ':method', string_match: { exact: 'GET' } } }], principals: ANY } } },
      shadow_rules_stat_prefix: 'istio_dry_run_allow_',
    },
  };
}

function routes(cluster: string): Json[] {
  return [
    virtualHost('all', ['*'], [
      // RBACPerRoute without `rbac`: the filter is off on this route.
      { ...prefixRoute('/admin/public', cluster), typed_per_filter_config: { 'envoy.filters.http.rbac': { '@type': RBAC_PER_ROUTE } } },
      // RBACPerRoute with rules: they replace the filter's (ALLOW nothing).
      { ...prefixRoute('/closed', cluster), typed_per_filter_config: { 'envoy.filters.http.rbac': { '@type': RBAC_PER_ROUTE, rbac: { rules: { action: 'ALLOW' } } } } },
      prefixRoute('/', cluster),
    ]),
  ];
}

function normalizingListener(name: string, port: number, escaped: string): Json {
  return httpListener({
    name,
    port,
    httpFilters: [rbacFilter()],
    virtualHosts: routes('up'),
    hcmExtra: { normalize_path: true, merge_slashes: true, path_with_escaped_slashes_action: escaped },
  });
}

/** RBAC allowing only the client certificate's SPIFFE ID. */
function principalRbac(): Json {
  return {
    name: 'envoy.filters.http.rbac',
    typed_config: {
      '@type': RBAC,
      rules: { action: 'ALLOW', policies: { client: { permissions: ANY, principals: [{ authenticated: { principal_name: { exact: CLIENT_SPIFFE_ID } } }] } } },
    },
  };
}

function tcpRbacListener(name: string, port: number, rbac: Json): Json {
  return {
    name,
    address: socketAddress(port),
    filter_chains: [
      {
        filters: [
          { name: 'envoy.filters.network.rbac', typed_config: { '@type': NET_RBAC, ...rbac } },
          { name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': TCP_PROXY, stat_prefix: name, cluster: 'echo' } },
        ],
      },
    ],
  };
}

describe('RBAC and path normalization', () => {
  let up: HttpUpstream;
  let echo: TcpEcho;
  let proxy: ProxyHandle;
  let pki: TestPki;
  let dir: string;
  let keep: number, reject: number, redirect: number, forward: number, permissive: number, tcpDeny: number, tcpAllow: number, tcpMtls: number;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sloop-rbac-e2e-'));
    pki = await makeTestPki(dir);
    up = await startHttpUpstream({ name: 'up' });
    echo = await startTcpEcho();
    const ports = await freePorts(9);
    [keep, reject, redirect, forward, permissive, tcpDeny, tcpAllow, tcpMtls] = ports as [number, number, number, number, number, number, number, number];
    const admin = ports[8]!;
    const mtlsTcp = tcpRbacListener('tcp_mtls', tcpMtls, {
      stat_prefix: 'tcpmtls.',
      rules: { action: 'ALLOW', policies: { client: { permissions: ANY, principals: [{ authenticated: { principal_name: { exact: CLIENT_SPIFFE_ID } } }] } } },
    });
    (mtlsTcp.filter_chains as Json[])[0]!.transport_socket = downstreamTls({ certPath: pki.server.certPath, keyPath: pki.server.keyPath, caPath: pki.ca.certPath, requireClientCertificate: true });
    const tlsChain = httpFilterChain({
      statPrefix: 'permissive_tls',
      httpFilters: [principalRbac()],
      virtualHosts: routes('up'),
      match: { transport_protocol: 'tls' },
      transportSocket: downstreamTls({ certPath: pki.server.certPath, keyPath: pki.server.keyPath, caPath: pki.ca.certPath, requireClientCertificate: true, alpn: ['h2', 'http/1.1'] }),
    });
    const plainChain = httpFilterChain({ statPrefix: 'permissive_plain', httpFilters: [principalRbac()], virtualHosts: routes('up') });
    proxy = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [
          normalizingListener('keep', keep, 'KEEP_UNCHANGED'),
          normalizingListener('reject', reject, 'REJECT_REQUEST'),
          normalizingListener('redirect', redirect, 'UNESCAPE_AND_REDIRECT'),
          normalizingListener('forward', forward, 'UNESCAPE_AND_FORWARD'),
          { name: 'permissive', address: socketAddress(permissive), listener_filters: [tlsInspector()], filter_chains: [tlsChain, plainChain] },
          tcpRbacListener('tcp_deny', tcpDeny, {
            stat_prefix: 'tcp.',
            rules: { action: 'DENY', policies: { local: { permissions: [{ destination_port: tcpDeny }], principals: [{ remote_ip: { address_prefix: '127.0.0.0', prefix_len: 8 } }] } } },
          }),
          mtlsTcp,
          tcpRbacListener('tcp_allow', tcpAllow, {
            stat_prefix: 'tcpok.',
            rules: { action: 'ALLOW', policies: { port: { permissions: [{ destination_port: tcpAllow }], principals: ANY } } },
            shadow_rules: { action: 'DENY', policies: { all: { permissions: ANY, principals: ANY } } },
            shadow_rules_stat_prefix: 'dry_',
          }),
        ],
        clusters: [staticCluster('up', [[LOOPBACK, up.port]]), staticCluster('echo', [[LOOPBACK, echo.port]])],
      }),
    );
  });

  after(async () => {
    await proxy?.stop();
    await up?.close();
    await echo?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const url = (port: number, path: string): string => `http://127.0.0.1:${port}${path}`;
  const lastUrl = (): string => up.requests.at(-1)!.url;

  for (const [label, flags] of [['HTTP/1.1', ['--http1.1']], ['HTTP/2', ['--http2-prior-knowledge']]] as const) {
    it(`${label}: DENY /admin with every bypass variant → 403 "RBAC: access denied"`, async () => {
      for (const path of ['/admin', '//admin', '/a/../admin', '/%61dmin', '/\\admin', '/./admin/x', '/%2e%2e/admin', '/admin?x=1']) {
        const before = up.requests.length;
        const r = await curl([...flags, '--path-as-is', url(keep, path)]);
        assert.equal(r.status, 403, `${path}: ${r.text}`);
        assert.equal(r.text, 'RBAC: access denied', path);
        assert.equal(up.requests.length, before, `${path} must not reach the upstream`);
      }
    });

    it(`${label}: allowed requests reach the upstream with the normalized path, the query untouched`, async () => {
      const r = await curl([...flags, '--path-as-is', url(keep, '/a/./b/../c//d/%7Euser%3c?q=/../x//y')]);
      assert.equal(r.status, 200, r.text);
      assert.equal(lastUrl(), '/a/c/d/~user%3C?q=/../x//y');
      // RBACPerRoute without rbac: /admin/public passes the DENY /admin prefix; with ALLOW-nothing rules: 403.
      assert.equal((await curl([...flags, url(keep, '/admin/public/x')])).status, 200);
      assert.equal((await curl([...flags, url(keep, '/closed')])).status, 403);
    });
  }

  it('escaped slashes: KEEP_UNCHANGED forwards as is, REJECT_REQUEST 400, UNESCAPE_AND_REDIRECT 307, UNESCAPE_AND_FORWARD denies', async () => {
    const p = '/x%2F..%2Fadmin';
    const k = await curl(['--path-as-is', url(keep, p)]);
    assert.equal(k.status, 200);
    assert.equal(lastUrl(), p, 'kept: one segment for the proxy, forwarded unchanged (as Envoy)');
    const before = up.requests.length;
    assert.equal((await curl(['--path-as-is', url(reject, p)])).status, 400);
    const rd = await curl(['--path-as-is', url(redirect, `${p}?q=%2F`)]);
    assert.equal(rd.status, 307);
    assert.equal(rd.headers.location, '/admin?q=%2F');
    const followed = await curl(['--path-as-is', '-L', url(redirect, p)]);
    assert.equal(followed.status, 403, 'the redirect target is denied');
    const fw = await curl(['--path-as-is', '--http2-prior-knowledge', url(forward, '/x%2f..%5cadmin')]);
    assert.equal(fw.status, 403);
    assert.equal(up.requests.length, before);
    // Unescaped and forwarded when allowed.
    assert.equal((await curl(['--path-as-is', url(forward, '/a%2Fb')])).status, 200);
    assert.equal(lastUrl(), '/a/b');
    const stats = await fetchStats(proxy.adminPort);
    assert.equal(stats['http.reject.downstream_rq_failed_path_normalization'], 1);
    assert.ok(stats['http.redirect.downstream_rq_redirected_with_normalized_path']! >= 2);
  });

  it('a fragment in the path is rejected with 400 before routing (HTTP/1.1 raw and HTTP/2)', async () => {
    const before = up.requests.length;
    const r = await rawHttp(keep, 'GET /admin#x HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.equal(r.responses[0]?.status, 400);
    const r2 = await rawHttp(keep, 'GET /ok#frag HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.equal(r2.responses[0]?.status, 400);
    // Raw HTTP/2 frames (clients strip fragments themselves): the answer is a HEADERS frame with :status 400
    // (HPACK static index 12, 0x8c), and nothing reaches the upstream.
    const h2 = await h2Raw(keep, [headersFrame(1, getRequest('a', '/admin#x'))], { until: (x) => x.responded.has(1) || x.resets.has(1), timeoutMs: 3_000 });
    const headers = h2.frames.find((f) => f.type === FRAME.HEADERS && f.streamId === 1);
    assert.equal(headers?.payload[0], 0x8c, `response ${headers?.payload.toString('hex')} resets ${[...h2.resets]}`);
    assert.equal(up.requests.length, before);
  });

  it('a request target that is not origin-form (`\\admin`) never reaches the upstream', async () => {
    const before = up.requests.length;
    const r = await rawHttp(keep, 'GET \\admin HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.equal(r.responses[0]?.status, 400, r.text);
    // nghttp2 refuses a :path that is neither origin-form nor `*`: the stream is reset.
    const h2 = await nghttp(['-H', ':path: \\admin', url(keep, '/')]);
    assert.equal(h2.status, 0, JSON.stringify(h2.streams));
    assert.equal(h2.streams[0]?.resetCode, 'PROTOCOL_ERROR');
    assert.equal(up.requests.length, before);
  });

  it('host rules: Host HTTPBIN.Foo:80 gets the same decision as httpbin.foo, over HTTP/1.1 and HTTP/2', async () => {
    for (const host of ['httpbin.foo', 'HTTPBIN.Foo:80', 'httpbin.foo:8000']) {
      assert.equal((await curl(['-H', `Host: ${host}`, url(keep, '/hostonly')])).status, 403, host);
      assert.equal((await curl(['--http2-prior-knowledge', '-H', `Host: ${host}`, url(keep, '/hostonly')])).status, 403, `h2 ${host}`);
    }
    assert.equal((await curl(['-H', 'Host: httpbin.foo.other', url(keep, '/hostonly')])).status, 200);
  });

  it('gRPC requests are denied with grpc-status 7 (PERMISSION_DENIED)', async () => {
    const r = await curl(['--http2-prior-knowledge', '-H', 'content-type: application/grpc', '-H', 'te: trailers', '-d', '', url(keep, '/admin.Svc/Call')]);
    assert.equal(r.status, 200);
    assert.equal(r.headers['grpc-status'] ?? r.trailers.find(([n]) => n === 'grpc-status')?.[1], '7');
  });

  it("shadow rules only count, with Envoy's stat names", async () => {
    const s0 = await fetchStats(proxy.adminPort);
    assert.equal((await curl(['-X', 'POST', '-d', 'x', url(keep, '/post')])).status, 200, 'a shadow deny is not enforced');
    assert.equal((await curl([url(keep, '/get')])).status, 200);
    assert.equal((await curl([url(keep, '/admin')])).status, 403);
    const s1 = await fetchStats(proxy.adminPort);
    const d = (n: string): number => (s1[n] ?? NaN) - (s0[n] ?? 0);
    assert.equal(d('http.keep.rbac.istio_dry_run_allow_shadow_denied'), 1);
    assert.equal(d('http.keep.rbac.istio_dry_run_allow_shadow_allowed'), 2);
    assert.equal(d('http.keep.rbac.allowed'), 2);
    assert.equal(d('http.keep.rbac.denied'), 1);
  });

  it('principal ALLOW: the mTLS client (SPIFFE ID) passes over HTTP/1.1 and HTTP/2, plaintext on the same port is denied', async () => {
    const tlsArgs = ['--cacert', pki.ca.certPath, '--cert', pki.client.certPath, '--key', pki.client.keyPath];
    for (const v of ['--http1.1', '--http2']) {
      const r = await curl([v, ...tlsArgs, `https://localhost:${permissive}/secure`]);
      assert.equal(r.status, 200, `${v}: ${r.stderr} ${r.text}`);
    }
    const plain = await curl([url(permissive, '/secure')]);
    assert.equal(plain.status, 403);
    assert.equal(plain.text, 'RBAC: access denied');
    const plain2 = await curl(['--http2-prior-knowledge', url(permissive, '/secure')]);
    assert.equal(plain2.status, 403);
    const stats = await fetchStats(proxy.adminPort);
    assert.equal(stats['http.permissive_tls.rbac.allowed'], 2);
    assert.equal(stats['http.permissive_plain.rbac.denied'], 2);
  });

  it('network RBAC over mTLS: the principal comes from the client certificate', async () => {
    const conns = echo.connections.length;
    const ok = await tlsExchange(tcpMtls, pki, pki.client, 'ping');
    assert.equal(ok.data, 'ping');
    const denied = await tlsExchange(tcpMtls, pki, pki.server, 'ping');
    assert.equal(denied.closed, true);
    assert.equal(denied.data, '');
    assert.equal(echo.connections.length, conns + 1);
    const stats = await fetchStats(proxy.adminPort);
    assert.equal(stats['tcpmtls.rbac.allowed'], 1);
    assert.equal(stats['tcpmtls.rbac.denied'], 1);
  });

  it('network RBAC: a denied connection is closed before tcp_proxy; an allowed one is proxied; shadow only counts', async () => {
    const conns = echo.connections.length;
    const denied = await rawTcp(tcpDeny, 'hello', { waitForClose: true, timeoutMs: 3_000 });
    assert.equal(denied.closed, true);
    assert.equal(denied.text, '');
    const ok = await rawTcp(tcpAllow, 'hello', { until: (d) => d.toString() === 'hello', timeoutMs: 3_000 });
    assert.equal(ok.text, 'hello');
    assert.equal(echo.connections.length, conns + 1, 'only the allowed connection reached the upstream');
    const stats = await fetchStats(proxy.adminPort);
    assert.equal(stats['tcp.rbac.denied'], 1);
    assert.equal(stats['tcp.rbac.allowed'], 0);
    assert.equal(stats['tcpok.rbac.allowed'], 1);
    assert.equal(stats['tcpok.rbac.dry_shadow_denied'], 1);
    assert.equal(stats['tcpok.rbac.dry_shadow_allowed'], 0);
  });
});

/** Opens a TLS connection with a client certificate, sends `msg`, and returns what came back before close. */
function tlsExchange(port: number, pki: TestPki, pair: { cert: string; key: string }, msg: string): Promise<{ data: string; closed: boolean }> {
  return new Promise((resolve) => {
    let data = '';
    const s = tls.connect({ port, host: LOOPBACK, ca: pki.ca.cert, servername: 'localhost', cert: pair.cert, key: pair.key });
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ data, closed: false });
    }, 3_000);
    s.on('secureConnect', () => s.write(msg));
    s.on('data', (d: Buffer) => {
      data += d.toString();
      if (data === msg) {
        clearTimeout(timer);
        s.destroy();
        resolve({ data, closed: false });
      }
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ data, closed: true });
    });
  });
}

describe('RBAC config errors', () => {
  it('unsupported pieces stop the proxy with the field path', async (t) => {
    const [port, tport, admin] = await freePorts(3);
    const proxy = await startProxy(
      bootstrapWith({
        adminPort: admin!,
        listeners: [
          httpListener({
            name: 'bad',
            port: port!,
            virtualHosts: [virtualHost('all', ['*'], [prefixRoute('/', 'up')])],
            httpFilters: [
              {
                name: 'envoy.filters.http.rbac',
                typed_config: {
                  '@type': RBAC,
                  rules: { action: 'ALLOW', policies: { p: { permissions: [{ matcher: { name: 'm', typed_config: { '@type': 'type.googleapis.com/google.protobuf.Empty' } } }], principals: [{ filter_state: { key: 'k', string_match: { exact: 'v' } } }] } } },
                },
              },
            ],
          }),
          tcpRbacListener('bad_tcp', tport!, { stat_prefix: 'x.', enforcement_type: 'CONTINUOUS', rules: { action: 'DENY' } }),
        ],
        clusters: [staticCluster('up', [[LOOPBACK, 1]]), staticCluster('echo', [[LOOPBACK, 1]])],
      }),
      { expectFail: true, t },
    );
    assert.equal(proxy.exit?.code, 1);
    const err = proxy.stderr();
    assert.match(err, /permissions\[0\]\.matcher/);
    assert.match(err, /principals\[0\]\.filter_state/);
    assert.match(err, /enforcement_type: enforcement_type CONTINUOUS is not supported/);
  });
});
