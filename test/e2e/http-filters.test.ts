// HTTP filters before the router through `sloop proxy`: envoy.filters.http.fault (HCM-level config and
// per-route typed_per_filter_config, delay and abort with percentages, header-controlled faults, max_active_faults,
// gRPC aborts, Istio's bookinfo ratings fault as the control plane emits it) and envoy.filters.http.cors
// (preflights, allowed and refused origins, forward_not_matching_preflights, stats). Issue #4.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHttpUpstream, startGrpcUpstream, grpcClient, type HttpUpstream, type GrpcUpstream, type EchoClient } from '../helpers/upstreams.ts';
import { startProxy, bootstrapWith, httpListener, staticCluster, virtualHost, prefixRoute, http2ProtocolOptions, type ProxyHandle } from '../helpers/proxy.ts';
import { httpRequest } from '../helpers/http-client.ts';
import { freePorts } from '../helpers/ports.ts';
import { waitUntil } from '../helpers/wait.ts';

const FAULT = 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault';
const CORS = 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors';
const CORS_POLICY = 'type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy';
const ALL = { numerator: 100, denominator: 'HUNDRED' };

/** A route carrying a per-route fault config. */
function faultRoute(prefix: string, cluster: string, fault: Record<string, unknown>): Record<string, unknown> {
  return { ...prefixRoute(prefix, cluster), typed_per_filter_config: { 'envoy.filters.http.fault': { '@type': FAULT, ...fault } } };
}

describe('HTTP filters: fault and cors', () => {
  let a: HttpUpstream;
  let g: GrpcUpstream;
  let proxy: ProxyHandle;
  let port: number;
  let istioPort: number;
  const clients: EchoClient[] = [];

  before(async () => {
    a = await startHttpUpstream({ name: 'a' });
    g = await startGrpcUpstream({ name: 'g' });
    const [p, ip, admin] = await freePorts(3);
    port = p;
    istioPort = ip;
    const corsPolicy = {
      allow_origin_string_match: [{ exact: 'https://good.example' }, { suffix: '.trusted.example' }],
      allow_methods: 'GET,POST',
      allow_headers: 'x-a,x-b',
      expose_headers: 'x-upstream',
      max_age: '600',
      allow_credentials: true,
    };
    proxy = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [
          httpListener({
            name: 'filters',
            port,
            httpFilters: [
              { name: 'envoy.filters.http.cors', typed_config: { '@type': CORS } },
              // Filter-level fault: only requests carrying x-hcm-fault, 503 always.
              { name: 'envoy.filters.http.fault', typed_config: { '@type': FAULT, abort: { http_status: 503, percentage: ALL }, headers: [{ name: 'x-hcm-fault', present_match: true }] } },
            ],
            virtualHosts: [
              virtualHost('svc', ['svc.local'], [
                faultRoute('/override/', 'a', { abort: { http_status: 418, percentage: ALL } }),
                faultRoute('/half/', 'a', { abort: { http_status: 500, percentage: { numerator: 50, denominator: 'HUNDRED' } } }),
                faultRoute('/header/', 'a', { abort: { header_abort: {}, percentage: ALL }, delay: { header_delay: {}, percentage: ALL } }),
                faultRoute('/maxactive/', 'a', { delay: { fixed_delay: '2s', percentage: ALL }, max_active_faults: 1 }),
                faultRoute('/delay-abort/', 'a', { delay: { fixed_delay: '0.2s', percentage: ALL }, abort: { http_status: 502, percentage: ALL } }),
                faultRoute('/none/', 'a', { abort: { http_status: 500, percentage: { numerator: 0, denominator: 'HUNDRED' } } }),
                faultRoute('/other-cluster/', 'a', { abort: { http_status: 500, percentage: ALL }, upstream_cluster: 'g' }),
                prefixRoute('/', 'a'),
              ]),
              virtualHost('grpc', ['grpc.local'], [faultRoute('/', 'g', { abort: { grpc_status: 8, percentage: ALL } })]),
              virtualHost('grpc-http', ['grpc-http.local'], [faultRoute('/', 'g', { abort: { http_status: 503, percentage: ALL } })]),
              virtualHost('cors', ['cors.local'], [
                { ...prefixRoute('/strict/', 'a'), typed_per_filter_config: { 'envoy.filters.http.cors': { '@type': CORS_POLICY, ...corsPolicy, forward_not_matching_preflights: false } } },
                prefixRoute('/', 'a'),
              ], { typed_per_filter_config: { 'envoy.filters.http.cors': { '@type': CORS_POLICY, ...corsPolicy } } }),
            ],
          }),
          // Istio's bookinfo ratings faults (samples/bookinfo/networking/virtual-service-ratings-test-abort.yaml and
          // -delay.yaml) as src/control-plane/translate emits them: optional cors and fault filters with empty
          // configs, the fault per route as a MILLION fraction behind the `end-user: jason` match. The delay is
          // 0.3 s instead of the sample's 7 s.
          httpListener({
            name: 'istio',
            port: istioPort,
            httpFilters: [
              { name: 'envoy.filters.http.cors', typed_config: { '@type': CORS }, is_optional: true },
              { name: 'envoy.filters.http.fault', typed_config: { '@type': FAULT }, is_optional: true },
            ],
            virtualHosts: [
              virtualHost('ratings.default.svc.cluster.local:9080', ['ratings', 'ratings:9080'], [
                {
                  match: { prefix: '/', headers: [{ name: 'end-user', string_match: { exact: 'jason' } }] },
                  route: { cluster: 'a', timeout: '0s' },
                  typed_per_filter_config: { 'envoy.filters.http.fault': { '@type': FAULT, abort: { http_status: 500, percentage: { numerator: 1000000, denominator: 'MILLION' } } } },
                },
                { name: 'default', match: { prefix: '/' }, route: { cluster: 'a', timeout: '0s' } },
              ]),
              virtualHost('ratings-delay', ['ratings-delay'], [
                {
                  match: { prefix: '/', headers: [{ name: 'end-user', string_match: { exact: 'jason' } }] },
                  route: { cluster: 'a', timeout: '0s' },
                  typed_per_filter_config: { 'envoy.filters.http.fault': { '@type': FAULT, delay: { fixed_delay: '0.3s', percentage: { numerator: 1000000, denominator: 'MILLION' } } } },
                },
                { match: { prefix: '/' }, route: { cluster: 'a', timeout: '0s' } },
              ]),
            ],
          }),
        ],
        clusters: [staticCluster('a', [['127.0.0.1', a.port]]), staticCluster('g', [['127.0.0.1', g.port]], http2ProtocolOptions())],
      }),
    );
  });

  after(async () => {
    for (const c of clients) c.close();
    await proxy?.stop();
    await a?.close();
    await g?.close();
  });

  const get = (path: string, host: string, headers: Array<[string, string]> = [], method = 'GET') => httpRequest(port, path, { method, headers: [['host', host], ...headers] });

  it('bookinfo ratings abort: jason gets 500 "fault filter abort", everyone else reaches ratings', async () => {
    const before = a.requests.length;
    const r = await httpRequest(istioPort, '/ratings/0', { headers: [['host', 'ratings:9080'], ['end-user', 'jason']] });
    assert.equal(r.status, 500);
    assert.equal(r.text, 'fault filter abort');
    assert.equal(r.headers['x-upstream'], undefined);
    assert.equal(a.requests.length, before, 'the aborted request never reached the upstream');
    const ok = await httpRequest(istioPort, '/ratings/0', { headers: [['host', 'ratings:9080'], ['end-user', 'alice']] });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['x-upstream'], 'a');
    const st = await proxy.stats();
    assert.equal(st['http.istio.fault.aborts_injected'], 1);
  });

  it('bookinfo ratings delay: jason waits at least the fixed delay, then reaches ratings', async () => {
    const t0 = performance.now();
    const r = await httpRequest(istioPort, '/ratings/0', { headers: [['host', 'ratings-delay'], ['end-user', 'jason']] });
    const elapsed = performance.now() - t0;
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-upstream'], 'a');
    assert.ok(elapsed >= 290, `delayed ${elapsed} ms`);
    const st = await proxy.stats();
    assert.equal(st['http.istio.fault.delays_injected'], 1);
  });

  it('filter-level config applies where the route has none; a per-route config replaces it', async () => {
    assert.equal((await get('/plain', 'svc.local')).status, 200);
    const hcm = await get('/plain', 'svc.local', [['x-hcm-fault', '1']]);
    assert.equal(hcm.status, 503);
    assert.equal(hcm.text, 'fault filter abort');
    // The route's own config replaces the filter's entirely: its abort applies, the header condition doesn't.
    assert.equal((await get('/override/x', 'svc.local')).status, 418);
    assert.equal((await get('/override/x', 'svc.local', [['x-hcm-fault', '1']])).status, 418);
  });

  it('abort percentage: about half of the requests abort, and the stat counts exactly those', async () => {
    const before = (await proxy.stats())['http.filters.fault.aborts_injected'] ?? 0;
    let aborted = 0;
    const n = 60;
    for (let i = 0; i < n; i++) {
      const r = await get('/half/x', 'svc.local');
      if (r.status === 500) {
        assert.equal(r.text, 'fault filter abort');
        aborted++;
      } else assert.equal(r.status, 200);
    }
    assert.ok(aborted > 0 && aborted < n, `aborted ${aborted} of ${n}`);
    assert.equal((await proxy.stats())['http.filters.fault.aborts_injected'], before + aborted);
    // 0 % never fires.
    for (let i = 0; i < 5; i++) assert.equal((await get('/none/x', 'svc.local')).status, 200);
  });

  it('upstream_cluster limits the fault to routes to that cluster', async () => {
    assert.equal((await get('/other-cluster/x', 'svc.local')).status, 200);
  });

  it('header-controlled faults apply only where header_abort / header_delay are configured', async () => {
    const r = await get('/header/x', 'svc.local', [['x-envoy-fault-abort-request', '429']]);
    assert.equal(r.status, 429);
    assert.equal((await get('/header/x', 'svc.local')).status, 200);
    // The percentage header can only lower the configured percentage: 0 disables the abort.
    const p = await get('/header/x', 'svc.local', [['x-envoy-fault-abort-request', '429'], ['x-envoy-fault-abort-request-percentage', '0']]);
    assert.equal(p.status, 200);
    const t0 = performance.now();
    const d = await get('/header/x', 'svc.local', [['x-envoy-fault-delay-request', '200']]);
    assert.equal(d.status, 200);
    assert.ok(performance.now() - t0 >= 190);
    // Elsewhere the headers are ignored.
    assert.equal((await get('/plain', 'svc.local', [['x-envoy-fault-abort-request', '429']])).status, 200);
  });

  it('a delay comes before the abort, and the abort still fires after it', async () => {
    const t0 = performance.now();
    const r = await get('/delay-abort/x', 'svc.local');
    assert.equal(r.status, 502);
    assert.ok(performance.now() - t0 >= 190);
  });

  it('max_active_faults: over the cap a request goes through unfaulted and counts faults_overflow', async () => {
    const first = get('/maxactive/x', 'svc.local');
    await waitUntil(async () => (await proxy.stats())['http.filters.fault.active_faults'] === 1, { what: 'one active fault' });
    const second = await get('/maxactive/x', 'svc.local');
    assert.equal(second.status, 200);
    assert.equal((await proxy.stats())['http.filters.fault.faults_overflow'], 1);
    assert.equal((await first).status, 200);
    await waitUntil(async () => (await proxy.stats())['http.filters.fault.active_faults'] === 0, { what: 'no active fault' });
  });

  it('gRPC: a grpc_status abort is a trailers-only reply with that status; an HTTP abort is mapped', async () => {
    const c = grpcClient(`127.0.0.1:${port}`, { authority: 'grpc.local' });
    clients.push(c);
    const r = await c.echo({ message: 'hi' });
    assert.equal(r.code, 8);
    assert.equal(r.details, 'fault filter abort');
    assert.equal(g.calls.length, 0);
    const h = grpcClient(`127.0.0.1:${port}`, { authority: 'grpc-http.local' });
    clients.push(h);
    assert.equal((await h.echo({ message: 'hi' })).code, 14); // 503 → UNAVAILABLE
  });

  it('cors: a preflight from an allowed origin is answered by the proxy', async () => {
    const before = a.requests.length;
    const r = await get('/api', 'cors.local', [['origin', 'https://good.example'], ['access-control-request-method', 'POST'], ['access-control-request-headers', 'x-a']], 'OPTIONS');
    assert.equal(r.status, 200);
    assert.equal(r.headers['access-control-allow-origin'], 'https://good.example');
    assert.equal(r.headers['access-control-allow-methods'], 'GET,POST');
    assert.equal(r.headers['access-control-allow-headers'], 'x-a,x-b');
    assert.equal(r.headers['access-control-max-age'], '600');
    assert.equal(r.headers['access-control-allow-credentials'], 'true');
    assert.equal(a.requests.length, before, 'the preflight was not forwarded');
  });

  it('cors: responses to allowed origins carry Access-Control-Allow-Origin; others do not', async () => {
    const ok = await get('/api', 'cors.local', [['origin', 'https://app.trusted.example']]);
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['x-upstream'], 'a');
    assert.equal(ok.headers['access-control-allow-origin'], 'https://app.trusted.example');
    assert.equal(ok.headers['access-control-expose-headers'], 'x-upstream');
    assert.equal(ok.headers['access-control-allow-credentials'], 'true');
    const bad = await get('/api', 'cors.local', [['origin', 'https://evil.example']]);
    assert.equal(bad.status, 200);
    assert.equal(bad.headers['access-control-allow-origin'], undefined);
    const none = await get('/api', 'cors.local');
    assert.equal(none.headers['access-control-allow-origin'], undefined);
    const st = await proxy.stats();
    assert.ok(st['http.filters.cors.origin_valid']! >= 1);
    assert.ok(st['http.filters.cors.origin_invalid']! >= 1);
  });

  it('cors: a preflight from a refused origin is forwarded by default, answered without ACAO with forward_not_matching_preflights false', async () => {
    const fwd = await get('/api', 'cors.local', [['origin', 'https://evil.example'], ['access-control-request-method', 'GET']], 'OPTIONS');
    assert.equal(fwd.headers['x-upstream'], 'a');
    assert.equal(a.requests.at(-1)!.method, 'OPTIONS');
    const strict = await get('/strict/api', 'cors.local', [['origin', 'https://evil.example'], ['access-control-request-method', 'GET']], 'OPTIONS');
    assert.equal(strict.status, 200);
    assert.equal(strict.headers['x-upstream'], undefined);
    assert.equal(strict.headers['access-control-allow-origin'], undefined);
    assert.equal(strict.headers['access-control-allow-methods'], 'GET,POST');
  });
});
