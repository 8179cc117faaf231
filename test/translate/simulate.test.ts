/**
 * Simulation (Istio's pilot simulation tests): synthetic requests through the generated RouteConfigurations with
 * the data plane's own pure matcher (route-table.ts) → which virtual host, route and cluster they reach.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { compileRouteConfig, type CompiledRouteConfig, type RouteRequest } from '../../src/data-plane/http/route/route-table.ts';
import { buildProxyConfig } from '../../src/control-plane/translate/build.ts';
import { loadCase, toOutput } from '../../src/control-plane/translate/testdata/cases.ts';
import type { RouteConfiguration__Output } from '../../src/xds/gen/envoy/config/route/v3/RouteConfiguration.ts';

function routeTables(caseName: string, nodeIndex = 0): Map<string, CompiledRouteConfig> {
  const c = loadCase(caseName);
  const { resources } = buildProxyConfig(c.push, c.golden[nodeIndex]);
  return new Map(resources.routes.map((r) => [r.name!, compileRouteConfig(toOutput<RouteConfiguration__Output>('routes', r))]));
}

function request(authority: string, path: string, headers: Record<string, string> = {}, method = 'GET'): RouteRequest {
  return { authority, path, method, headers: Object.entries(headers).flat(), scheme: 'http', isTls: false };
}

/** The cluster a request reaches (`random` picks among weighted clusters), or a description of the action. */
function reach(rt: CompiledRouteConfig, req: RouteRequest, random = 0): string {
  const m = rt.match(req, random);
  if (m === undefined) return 'no route';
  if (m.route.kind === 'redirect') return 'redirect';
  if (m.route.kind === 'direct_response') return `direct_response ${m.route.directResponse!.status}`;
  return m.route.route!.pickCluster(req, random)!.cluster;
}

describe('simulation: bookinfo through the productpage sidecar', () => {
  const tables = routeTables('bookinfo');
  const rt = tables.get('9080')!;

  it('reviews with end-user: jason reaches v2', () => {
    assert.equal(reach(rt, request('reviews:9080', '/reviews/0', { 'end-user': 'jason' })), 'outbound|9080|v2|reviews.default.svc.cluster.local');
    assert.equal(reach(rt, request('reviews.default.svc.cluster.local', '/reviews/0', { 'end-user': 'jason' })), 'outbound|9080|v2|reviews.default.svc.cluster.local');
  });

  it('reviews without the header splits 80/20 between v1 and v3', () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 100; i++) {
      const c = reach(rt, request('reviews', '/reviews/0', { 'end-user': 'alice' }), i / 100);
      counts.set(c, (counts.get(c) ?? 0) + 1);
    }
    assert.deepEqual(Object.fromEntries(counts), { 'outbound|9080|v1|reviews.default.svc.cluster.local': 80, 'outbound|9080|v3|reviews.default.svc.cluster.local': 20 });
  });

  it('details: match on uri, method, query and absent header; redirect; direct response; default', () => {
    assert.equal(reach(rt, request('details:9080', '/V1/DETAILS/0?debug', {})), 'outbound|9080|v1|details.default.svc.cluster.local');
    // x-skip present: the withoutHeaders match fails, the catch-all default route takes it.
    assert.equal(reach(rt, request('details:9080', '/v1/details/0?debug', { 'x-skip': '1' })), 'outbound|9080|v1|details.default.svc.cluster.local');
    const legacy = rt.match(request('details:9080', '/v1/details/0?debug'), 0)!;
    assert.equal(legacy.route.name, 'legacy');
    assert.equal(rt.match(request('details:9080', '/v1/details/0?debug', { 'x-skip': '1' }), 0)!.route.name, 'default');
    assert.equal(reach(rt, request('details', '/old')), 'redirect');
    assert.equal(reach(rt, request('details', '/teapot')), 'direct_response 418');
    // sourceLabels app=reviews: the productpage sidecar never gets that route.
    assert.ok(!rt.virtualHosts.find((v) => v.name === 'details.default.svc.cluster.local:9080')!.routes.some((r) => r.name === 'only-from-v2'));
  });

  it('services without a VirtualService take the default route; unknown hosts pass through', () => {
    assert.equal(reach(rt, request('productpage.default:9080', '/')), 'outbound|9080||productpage.default.svc.cluster.local');
    assert.equal(reach(rt, request('example.com', '/')), 'PassthroughCluster');
  });

  it('the explicit proxy routes absolute-form requests by host:port, and CONNECT to the service', () => {
    const proxy = tables.get('http_proxy')!;
    assert.equal(reach(proxy, request('reviews:9080', '/reviews/0', { 'end-user': 'jason' })), 'outbound|9080|v2|reviews.default.svc.cluster.local');
    assert.equal(reach(proxy, request('reviews:9080', '', {}, 'CONNECT')), 'outbound|9080||reviews.default.svc.cluster.local');
    // A bare host means port 80, which no bookinfo service has.
    assert.equal(reach(proxy, request('reviews', '/')), 'PassthroughCluster');
  });
});

describe('simulation: proxyless gRPC', () => {
  const rt = routeTables('proxyless').get('echo.default.svc.cluster.local:8080')!;
  it('x-version: v2 reaches subset v2, others split 90/10', () => {
    assert.equal(reach(rt, request('echo.default.svc.cluster.local:8080', '/echo.Echo/Echo', { 'x-version': 'v2' }, 'POST')), 'outbound|8080|v2|echo.default.svc.cluster.local');
    assert.equal(reach(rt, request('echo.default.svc.cluster.local:8080', '/echo.Echo/Echo', {}, 'POST'), 0.5), 'outbound|8080|v1|echo.default.svc.cluster.local');
    assert.equal(reach(rt, request('echo.default.svc.cluster.local:8080', '/echo.Echo/Echo', {}, 'POST'), 0.95), 'outbound|8080|v2|echo.default.svc.cluster.local');
  });
});

describe('simulation: Sidecar scoping', () => {
  it('a REGISTRY_ONLY proxy blocks hosts it does not see', () => {
    const rt = routeTables('sidecar-scope', 0).get('8080')!;
    assert.equal(reach(rt, request('auth.shared:8080', '/')), 'outbound|8080||auth.shared.svc.cluster.local');
    assert.equal(reach(rt, request('billing.team-b:8080', '/')), 'direct_response 502');
  });
});
