// HTTP/1.1 through `sloop proxy`: routing, forwarding headers, keep-alive, local replies, stats.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHttpUpstream, type HttpUpstream } from '../helpers/upstreams.ts';
import { startProxy, bootstrapWith, httpListener, staticCluster, virtualHost, prefixRoute, type ProxyHandle } from '../helpers/proxy.ts';
import { curl, rawHttp } from '../helpers/clients.ts';
import { freePorts } from '../helpers/ports.ts';

describe('HTTP/1.1 proxying', () => {
  let a: HttpUpstream;
  let b: HttpUpstream;
  let proxy: ProxyHandle;
  let port: number;

  before(async () => {
    a = await startHttpUpstream({ name: 'a' });
    b = await startHttpUpstream({ name: 'b' });
    const [p, admin] = await freePorts(2);
    port = p;
    proxy = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [
          httpListener({
            name: 'ingress',
            port,
            virtualHosts: [
              virtualHost('svc', ['svc.local', 'svc.local:*'], [
                prefixRoute('/b/', 'b', { prefix_rewrite: '/rewritten/' }),
                { match: { path: '/direct' }, direct_response: { status: 418, body: { inline_string: 'teapot' } } },
                { match: { prefix: '/old' }, redirect: { path_redirect: '/new', response_code: 'FOUND' } },
                prefixRoute('/slow/', 'a', { timeout: '0.2s' }),
                prefixRoute('/nohost/', 'missing'),
                prefixRoute('/', 'a', { host_rewrite_literal: 'rewritten.host' }),
              ], { request_headers_to_add: [{ header: { key: 'x-vhost', value: 'svc' } }], response_headers_to_add: [{ header: { key: 'x-served-by', value: 'sloop' } }] }),
            ],
          }),
        ],
        clusters: [staticCluster('a', [['127.0.0.1', a.port]]), staticCluster('b', [['127.0.0.1', b.port]]), staticCluster('dead', [['127.0.0.1', 1]])],
      }),
    );
  });

  after(async () => {
    await proxy?.stop();
    await a?.close();
    await b?.close();
  });

  it('forwards a GET and both ends see what Envoy would send', async () => {
    const r = await curl(['-H', 'host: svc.local', `http://127.0.0.1:${port}/hello?x=1`]);
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-upstream'], 'a');
    assert.equal(r.headers['server'], 'envoy');
    assert.equal(r.headers['x-served-by'], 'sloop');
    assert.match(r.headers['x-envoy-upstream-service-time'] ?? '', /^\d+$/);
    const got = a.requests.at(-1)!;
    assert.equal(got.url, '/hello?x=1');
    assert.equal(got.headerMap['host'], 'rewritten.host');
    assert.equal(got.headerMap['x-forwarded-proto'], 'http');
    assert.match(got.headerMap['x-request-id'] ?? '', /^[0-9a-f-]{36}$/);
    assert.equal(got.headerMap['x-envoy-expected-rq-timeout-ms'], '15000');
    assert.equal(got.headerMap['x-vhost'], 'svc');
  });

  it('rewrites the prefix and keeps the query', async () => {
    const r = await curl(['-H', 'host: svc.local', `http://127.0.0.1:${port}/b/thing?q=2`]);
    assert.equal(r.status, 200);
    assert.equal(b.requests.at(-1)!.url, '/rewritten/thing?q=2');
    assert.equal(b.requests.at(-1)!.headerMap['x-envoy-original-path'], '/b/thing?q=2');
  });

  it('carries request bodies, chunked and content-length, and streams responses', async () => {
    const r = await curl(['-H', 'host: svc.local', '--data-binary', 'hello body', `http://127.0.0.1:${port}/post`]);
    assert.equal(r.status, 200);
    assert.equal(a.requests.at(-1)!.body.toString(), 'hello body');
    const c = await curl(['-H', 'host: svc.local', '-H', 'transfer-encoding: chunked', '--data-binary', 'chunky', `http://127.0.0.1:${port}/post`]);
    assert.equal(c.status, 200);
    assert.equal(a.requests.at(-1)!.body.toString(), 'chunky');
    const s = await curl(['-H', 'host: svc.local', `http://127.0.0.1:${port}/stream/5`]);
    assert.equal(s.status, 200);
    assert.ok(s.body.length > 0);
    const big = await curl(['-H', 'host: svc.local', `http://127.0.0.1:${port}/bytes/300000`]);
    assert.equal(big.body.length, 300000);
  });

  it('answers direct responses, redirects and 404 like Envoy', async () => {
    const d = await curl(['-H', 'host: svc.local', `http://127.0.0.1:${port}/direct`]);
    assert.equal(d.status, 418);
    assert.equal(d.text, 'teapot');
    const r = await curl(['-H', 'host: svc.local', `http://127.0.0.1:${port}/old`]);
    assert.equal(r.status, 302);
    assert.equal(r.headers['location'], 'http://svc.local/new');
    const n = await curl(['-H', 'host: other.local', `http://127.0.0.1:${port}/`]);
    assert.equal(n.status, 404);
    const stats = await proxy.stats();
    assert.ok(stats['http.ingress.no_route'] >= 1);
    assert.ok(stats['http.ingress.rq_direct_response'] >= 1);
    assert.ok(stats['http.ingress.rq_redirect'] >= 1);
  });

  it('local replies keep a bodyless request\'s connection alive; pipelined requests after them are answered in order', async () => {
    const n = a.requests.length;
    const get = (path: string, host = 'svc.local') => `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`;
    const r = await rawHttp(port, get('/direct') + get('/nothing-here', 'other.local') + get('/old') + get('/after-local-replies'), { responses: 4 });
    assert.deepEqual(r.responses.map((x) => x.status), [418, 404, 302, 200]);
    for (const x of r.responses) assert.notEqual(x.headerMap['connection'], 'close', `${x.status} closed the connection`);
    assert.equal(r.closed, false);
    assert.deepEqual(a.requests.slice(n).map((q) => q.url), ['/after-local-replies']);
  });

  it('503 for a missing cluster, 504 upstream request timeout at the route timeout', async () => {
    const m = await curl(['-H', 'host: svc.local', `http://127.0.0.1:${port}/nohost/x`]);
    assert.equal(m.status, 503);
    const t = await curl(['-H', 'host: svc.local', `http://127.0.0.1:${port}/slow/delay/2000`]);
    assert.equal(t.status, 504);
    assert.equal(t.text, 'upstream request timeout');
    const stats = await proxy.stats();
    assert.ok(stats['cluster.a.upstream_rq_timeout'] >= 1);
  });

  it('keeps downstream and upstream connections alive and pipelines in order', async () => {
    const before = a.connections;
    const req = 'GET /p1 HTTP/1.1\r\nhost: svc.local\r\n\r\nGET /p2 HTTP/1.1\r\nhost: svc.local\r\n\r\nGET /p3 HTTP/1.1\r\nhost: svc.local\r\nconnection: close\r\n\r\n';
    const r = await rawHttp(port, req, { waitForClose: true });
    const order = [...r.text.matchAll(/"url":"(\/p\d)"/g)].map((m) => m[1]);
    assert.deepEqual(order, ['/p1', '/p2', '/p3']);
    assert.equal((r.text.match(/HTTP\/1\.1 200/g) ?? []).length, 3);
    assert.ok(a.connections - before <= 1, 'upstream connection reused');
  });

  it('counts requests with Envoy stat names', async () => {
    const stats = await proxy.stats();
    assert.ok(stats['http.ingress.downstream_rq_total'] >= 5);
    assert.ok(stats['http.ingress.downstream_rq_2xx'] >= 3);
    assert.ok(stats['cluster.a.upstream_rq_total'] >= 3);
    assert.ok(stats['cluster.a.upstream_rq_2xx'] >= 3);
    assert.ok('cluster.a.upstream_cx_active' in stats);
    const prom = await proxy.admin('/stats/prometheus');
    assert.match(prom.text, /envoy_cluster_upstream_rq_total\{envoy_cluster_name="a"\} \d+/);
  });
});
