// envoy.filters.http.ext_authz through `sloop proxy` with the example authorizer (examples/ext-authz/authorizer.ts,
// a grpc-js envoy.service.auth.v3.Authorization server) behind a STATIC cluster: allowed requests reach the
// upstream with the authorizer's headers, denied ones get its status, headers and body; a route can disable the
// filter; an authorizer that is down answers status_on_error (403), or lets the request through with
// failure_mode_allow. Issue #5.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHttpUpstream, type HttpUpstream } from '../helpers/upstreams.ts';
import { startProxy, bootstrapWith, httpListener, staticCluster, virtualHost, prefixRoute, http2ProtocolOptions, type ProxyHandle } from '../helpers/proxy.ts';
import { httpRequest, type SimpleResponse } from '../helpers/http-client.ts';
import { freePorts, LOOPBACK } from '../helpers/ports.ts';
import { startAuthorizer, DENIED_BODY, type Authorizer } from '../../examples/ext-authz/authorizer.ts';

const EXT_AUTHZ = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz';
const PER_ROUTE = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute';

function extAuthz(cluster: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { name: 'envoy.filters.http.ext_authz', typed_config: { '@type': EXT_AUTHZ, grpc_service: { envoy_grpc: { cluster_name: cluster }, timeout: '2s' }, ...extra } };
}

describe('ext_authz through sloop proxy', () => {
  let upstream: HttpUpstream;
  let authorizer: Authorizer;
  let proxy: ProxyHandle;
  let port: number;
  let downPort: number;
  let allowPort: number;

  const get = (p: number, path: string, headers: Array<[string, string]> = []): Promise<SimpleResponse> => httpRequest(p, path, { headers: [['host', 'svc.local'], ...headers] });

  before(async () => {
    upstream = await startHttpUpstream({ name: 'app' });
    authorizer = await startAuthorizer();
    const [p, dp, ap, admin, dead] = await freePorts(5);
    port = p;
    downPort = dp;
    allowPort = ap;
    const routes = [
      { ...prefixRoute('/skip', 'app'), typed_per_filter_config: { 'envoy.filters.http.ext_authz': { '@type': PER_ROUTE, disabled: true } } },
      { ...prefixRoute('/ctx', 'app'), typed_per_filter_config: { 'envoy.filters.http.ext_authz': { '@type': PER_ROUTE, check_settings: { context_extensions: { team: 'blue' } } } } },
      prefixRoute('/', 'app'),
    ];
    proxy = await startProxy(
      bootstrapWith({
        adminPort: admin,
        clusters: [
          staticCluster('app', [[LOOPBACK, upstream.port]]),
          staticCluster('authz', [[LOOPBACK, authorizer.port]], http2ProtocolOptions()),
          staticCluster('authz-down', [[LOOPBACK, dead]], http2ProtocolOptions()),
        ],
        listeners: [
          httpListener({ name: 'in', port, httpFilters: [extAuthz('authz')], virtualHosts: [virtualHost('svc', ['svc.local'], routes)] }),
          httpListener({ name: 'down', port: downPort, httpFilters: [extAuthz('authz-down')], virtualHosts: [virtualHost('svc', ['svc.local'], [prefixRoute('/', 'app')])] }),
          httpListener({
            name: 'open',
            port: allowPort,
            httpFilters: [extAuthz('authz-down', { failure_mode_allow: true, failure_mode_allow_header_add: true })],
            virtualHosts: [virtualHost('svc', ['svc.local'], [prefixRoute('/', 'app')])],
          }),
        ],
      }),
    );
  });

  after(async () => {
    await proxy?.stop();
    await upstream?.close();
    await authorizer?.close();
  });

  it('allowed by the authorizer: reaches the upstream with the authorizer header; the CheckRequest describes the request', async () => {
    const r = await get(port, '/api/items?x=1', [['x-ext-authz', 'allow'], ['x-custom', 'v'], ['x-request-id', 'req-1']]);
    assert.equal(r.status, 200, r.text);
    const seen = upstream.requests.at(-1)!;
    assert.equal(seen.url, '/api/items?x=1');
    assert.equal(seen.headerMap['x-ext-authz-check-result'], 'allowed');
    const check = authorizer.checks.at(-1)! as { attributes: { request: { http: Record<string, unknown> }; source: { address: { socket_address: { address: string } } } } };
    const http = check.attributes.request.http;
    assert.equal(http.method, 'GET');
    assert.equal(http.path, '/api/items?x=1');
    assert.equal(http.host, 'svc.local');
    assert.equal(http.protocol, 'HTTP/1.1');
    assert.equal((http.headers as Record<string, string>)['x-custom'], 'v');
    assert.equal((http.headers as Record<string, string>)[':method'], 'GET');
    assert.equal(http.id, 'req-1');
    assert.equal(check.attributes.source.address.socket_address.address, LOOPBACK);
  });

  it('a request body waits for the check and reaches the upstream whole', async () => {
    const body = 'x'.repeat(100_000);
    const r = await httpRequest(port, '/upload', { method: 'POST', body, headers: [['host', 'svc.local'], ['x-ext-authz', 'allow'], ['content-type', 'text/plain']] });
    assert.equal(r.status, 200);
    assert.equal(upstream.requests.at(-1)!.body.toString(), body);
  });

  it("denied by the authorizer: its status, headers and body; the upstream isn't reached", async () => {
    const before = upstream.requests.length;
    const r = await get(port, '/api/items');
    assert.equal(r.status, 403);
    assert.equal(r.text, DENIED_BODY);
    assert.equal(r.headers['x-ext-authz-check-result'], 'denied');
    assert.equal(upstream.requests.length, before);
  });

  it('a route with ExtAuthzPerRoute disabled skips the check; check_settings pass context_extensions', async () => {
    const checks = authorizer.checks.length;
    assert.equal((await get(port, '/skip/x')).status, 200);
    assert.equal(authorizer.checks.length, checks);
    assert.equal((await get(port, '/ctx/x', [['x-ext-authz', 'allow']])).status, 200);
    assert.deepEqual((authorizer.checks.at(-1) as { attributes: { context_extensions: Record<string, string> } }).attributes.context_extensions, { team: 'blue' });
  });

  it('authorizer down: status_on_error (403, empty body) without failure_mode_allow', async () => {
    const r = await get(downPort, '/x', [['x-ext-authz', 'allow']]);
    assert.equal(r.status, 403);
    assert.equal(r.text, '');
  });

  it('authorizer down with failure_mode_allow: the request passes, marked', async () => {
    const r = await get(allowPort, '/x');
    assert.equal(r.status, 200);
    assert.equal(upstream.requests.at(-1)!.headerMap['x-envoy-auth-failure-mode-allowed'], 'true');
  });

  it('stats', async () => {
    const s = await proxy.stats();
    assert.ok(s['http.in.ext_authz.ok']! >= 2);
    assert.ok(s['http.in.ext_authz.denied']! >= 1);
    assert.ok(s['http.in.ext_authz.disabled']! >= 1);
    assert.ok(s['http.down.ext_authz.error']! >= 1);
    assert.equal(s['http.down.ext_authz.failure_mode_allowed'] ?? 0, 0);
    assert.ok(s['http.open.ext_authz.failure_mode_allowed']! >= 1);
    assert.ok(s['cluster.app.ext_authz.ok']! >= 2);
  });
});
