import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../../shared/errors.ts';
import { compileRouteConfig, rewritePath } from './route-table.ts';
import type { CompiledRoute, RouteRequest } from './route-table.ts';
import { RETRY_ON } from './retry-policy.ts';
import type { HashContext } from './hash-policy.ts';
import { request, routeConfig } from './testdata/helpers.ts';

/** Compiles one route (under a `*` virtual host with `vh` extras) and returns it. */
function route(r: object, vh: object = {}, rc: object = {}): CompiledRoute {
  const t = compileRouteConfig(routeConfig({ name: 'rc', ...rc, virtual_hosts: [{ name: 'vh', domains: ['*'], routes: [r], ...vh }] }));
  return t.virtualHosts[0]!.routes[0]!;
}

function req(over: Partial<RouteRequest> = {}): RouteRequest {
  return request(over);
}

test('cluster: a shared prebuilt pick; cluster_not_found_response_code defaults to 503', () => {
  const r = route({ match: { prefix: '/' }, route: { cluster: 'reviews' } });
  assert.equal(r.kind, 'route');
  const a = r.route!;
  assert.deepEqual(a.pickCluster(req(), 0), { cluster: 'reviews' });
  assert.equal(a.pickCluster(req(), 0), a.pickCluster(req(), 0.9), 'no allocation per pick');
  assert.equal(a.clusterNotFoundResponseCode, 503);
  assert.equal(route({ match: { prefix: '/' }, route: { cluster: 'x', cluster_not_found_response_code: 'NOT_FOUND' } }).route!.clusterNotFoundResponseCode, 404);
});

test('weighted_clusters: picks in proportion to weight over a deterministic random sequence', () => {
  const a = route({
    match: { prefix: '/' },
    route: { weighted_clusters: { clusters: [{ name: 'v1', weight: { value: 70 } }, { name: 'v2', weight: { value: 0 } }, { name: 'v3', weight: { value: 30 } }] } },
  }).route!;
  const counts: Record<string, number> = {};
  for (let i = 0; i < 1000; i++) {
    const c = a.pickCluster(req(), i / 1000)!.cluster;
    counts[c] = (counts[c] ?? 0) + 1;
  }
  assert.deepEqual(counts, { v1: 700, v3: 300 });
  assert.equal(a.pickCluster(req(), 0.6999)!.cluster, 'v1');
  assert.equal(a.pickCluster(req(), 0.7)!.cluster, 'v3');
  assert.equal(a.pickCluster(req(), 0.7)!.weightedEntry?.name, 'v3');
});

test('weighted_clusters: total_weight must equal the sum; header_name supplies the random value', () => {
  assert.throws(
    () => route({ match: { prefix: '/' }, route: { weighted_clusters: { total_weight: { value: 100 }, clusters: [{ name: 'a', weight: { value: 10 } }] } } }),
    (err: unknown) => err instanceof ConfigError && err.diagnostics[0]!.path === 'virtual_hosts[0].routes[0].route.weighted_clusters.total_weight',
  );
  const a = route({
    match: { prefix: '/' },
    route: { weighted_clusters: { header_name: 'x-rand', clusters: [{ name: 'a', weight: { value: 1 } }, { name: 'b', weight: { value: 1 } }] } },
  }).route!;
  assert.equal(a.pickCluster(req({ headers: ['x-rand', '3'] }), 0)!.cluster, 'b', '3 % 2 = 1 → b');
  assert.equal(a.pickCluster(req({ headers: ['x-rand', '4'] }), 0.99)!.cluster, 'a');
  assert.equal(a.pickCluster(req({ headers: ['x-rand', 'nope'] }), 0.99)!.cluster, 'b', 'falls back to the random');
});

test('cluster_header takes the cluster from a request header; missing → undefined', () => {
  const a = route({ match: { prefix: '/' }, route: { cluster_header: 'X-Cluster' } }).route!;
  assert.deepEqual(a.pickCluster(req({ headers: ['x-cluster', 'blue'] }), 0), { cluster: 'blue' });
  assert.equal(a.pickCluster(req(), 0), undefined);
  assert.equal(a.pickCluster(req({ headers: ['x-cluster', ''] }), 0), undefined);
  const w = route({
    match: { prefix: '/' },
    route: { weighted_clusters: { clusters: [{ cluster_header: 'x-c', weight: { value: 1 } }] } },
  }).route!;
  assert.equal(w.pickCluster(req({ headers: ['x-c', 'green'] }), 0)!.cluster, 'green');
});

test('prefix_rewrite swaps the matched prefix, keeps the query, also for case-insensitive matches', () => {
  const p = route({ match: { prefix: '/api/' }, route: { cluster: 'c', prefix_rewrite: '/' } });
  assert.equal(rewritePath(p, '/api/users?x=1'), '/users?x=1');
  const ci = route({ match: { prefix: '/API', case_sensitive: { value: false } }, route: { cluster: 'c', prefix_rewrite: '/v2' } });
  assert.equal(rewritePath(ci, '/api/users'), '/v2/users');
  const exact = route({ match: { path: '/old' }, route: { cluster: 'c', prefix_rewrite: '/new' } });
  assert.equal(rewritePath(exact, '/old?q'), '/new?q');
  const sep = route({ match: { path_separated_prefix: '/svc' }, route: { cluster: 'c', prefix_rewrite: '/x' } });
  assert.equal(rewritePath(sep, '/svc/a'), '/x/a');
  const re = route({ match: { safe_regex: { regex: '/v[0-9]/.*' } }, route: { cluster: 'c', prefix_rewrite: '/all' } });
  assert.equal(rewritePath(re, '/v1/a/b?z=1'), '/all?z=1', 'regex routes replace the whole path');
  assert.equal(rewritePath(p, '/api/users', 4), '//users', 'an explicit matched length overrides the prefix length');
  const none = route({ match: { prefix: '/' }, route: { cluster: 'c' } });
  assert.equal(rewritePath(none, '/a?b'), '/a?b');
});

test('regex_rewrite substitutes on the path without the query', () => {
  const r = route({
    match: { prefix: '/' },
    route: { cluster: 'c', regex_rewrite: { pattern: { regex: '^/service/([^/]+)(/.*)$' }, substitution: '\\2/instance/\\1' } },
  });
  assert.equal(rewritePath(r, '/service/foo/v1/api?x=/service/a/b'), '/v1/api/instance/foo?x=/service/a/b');
  const all = route({ match: { prefix: '/' }, route: { cluster: 'c', regex_rewrite: { pattern: { regex: 'one' }, substitution: 'two' } } });
  assert.equal(rewritePath(all, '/xxx/one/one'), '/xxx/two/two', 'every match is replaced');
  assert.throws(
    () => route({ match: { prefix: '/' }, route: { cluster: 'c', regex_rewrite: { pattern: { regex: '(?=x)' }, substitution: '' } } }),
    (err: unknown) => err instanceof ConfigError && err.diagnostics[0]!.path === 'virtual_hosts[0].routes[0].route.regex_rewrite.pattern.regex',
  );
});

test('host rewrite: literal, header, path regex, auto; a weighted entry literal wins', () => {
  assert.equal(route({ match: { prefix: '/' }, route: { cluster: 'c', host_rewrite_literal: 'up.local' } }).route!.rewriteHost(req()), 'up.local');
  const h = route({ match: { prefix: '/' }, route: { cluster: 'c', host_rewrite_header: 'X-Host' } }).route!;
  assert.equal(h.rewriteHost(req({ headers: ['x-host', 'h.example'] })), 'h.example');
  assert.equal(h.rewriteHost(req()), undefined);
  const pr = route({ match: { prefix: '/' }, route: { cluster: 'c', host_rewrite_path_regex: { pattern: { regex: '^/prefix/([^/]+)/.*$' }, substitution: '\\1.svc' } } }).route!;
  assert.equal(pr.rewriteHost(req({ path: '/prefix/api/x?y' })), 'api.svc');
  const auto = route({ match: { prefix: '/' }, route: { cluster: 'c', auto_host_rewrite: { value: true } } }).route!;
  assert.equal(auto.isAutoHostRewrite, true);
  assert.equal(auto.rewriteHost(req()), undefined);
  const w = route({
    match: { prefix: '/' },
    route: { host_rewrite_literal: 'route.host', weighted_clusters: { clusters: [{ name: 'a', weight: { value: 1 }, host_rewrite_literal: 'entry.host' }] } },
  }).route!;
  assert.equal(w.rewriteHost(req(), w.pickCluster(req(), 0)), 'entry.host');
  assert.equal(w.rewriteHost(req()), 'route.host');
});

test('timeouts: 15 s default, 0 disables, idle and max stream duration with grpc-timeout settings', () => {
  const d = route({ match: { prefix: '/' }, route: { cluster: 'c' } }).route!;
  assert.equal(d.timeoutMs, 15_000);
  assert.equal(d.idleTimeoutMs, undefined);
  assert.equal(d.maxStreamDurationMs, undefined);
  const t = route({
    match: { prefix: '/' },
    route: {
      cluster: 'c',
      timeout: { seconds: 0 },
      idle_timeout: { seconds: 2, nanos: 500_000_000 },
      max_stream_duration: { max_stream_duration: { seconds: 30 }, grpc_timeout_header_max: { seconds: 0 }, grpc_timeout_header_offset: { nanos: 5_000_000 } },
    },
  }).route!;
  assert.equal(t.timeoutMs, 0);
  assert.equal(t.idleTimeoutMs, 2500);
  assert.equal(t.maxStreamDurationMs, 30_000);
  assert.equal(t.grpcTimeoutHeaderMaxMs, 0);
  assert.equal(t.grpcTimeoutHeaderOffsetMs, 5);
});

test('retry policy: defaults, route policy replaces the virtual host one', () => {
  const vhPolicy = { retry_policy: { retry_on: '5xx' } };
  const inherited = route({ match: { prefix: '/' }, route: { cluster: 'c' } }, vhPolicy).route!.retryPolicy!;
  assert.equal(inherited.retryOn, RETRY_ON['5xx']);
  assert.equal(inherited.numRetries, 1);
  assert.equal(inherited.perTryTimeoutMs, 0);
  assert.equal(inherited.backoffBaseMs, 25);
  assert.equal(inherited.backoffMaxMs, 250);
  assert.equal(inherited.hostSelectionRetryMaxAttempts, 1);
  const own = route(
    {
      match: { prefix: '/' },
      route: {
        cluster: 'c',
        retry_policy: {
          retry_on: 'gateway-error, connect-failure,refused-stream,retriable-status-codes,retriable-headers,cancelled,unavailable',
          num_retries: { value: 3 },
          per_try_timeout: { seconds: 2 },
          per_try_idle_timeout: { seconds: 1 },
          retry_back_off: { base_interval: { nanos: 100_000_000 } },
          retriable_status_codes: [409],
          retriable_headers: [{ name: 'X-Retry', string_match: { exact: 'yes' } }],
          retriable_request_headers: [{ name: ':method', string_match: { exact: 'GET' } }],
          host_selection_retry_max_attempts: 5,
          retry_host_predicate: [{ name: 'envoy.retry_host_predicates.previous_hosts' }],
        },
      },
    },
    vhPolicy,
  ).route!.retryPolicy!;
  assert.equal(own.retryOn & RETRY_ON['5xx'], 0, 'no merge with the virtual host policy');
  assert.deepEqual([...own.retryOnNames].sort(), ['cancelled', 'connect-failure', 'gateway-error', 'refused-stream', 'retriable-headers', 'retriable-status-codes', 'unavailable']);
  assert.equal(own.numRetries, 3);
  assert.equal(own.perTryTimeoutMs, 2000);
  assert.equal(own.perTryIdleTimeoutMs, 1000);
  assert.equal(own.backoffBaseMs, 100);
  assert.equal(own.backoffMaxMs, 1000);
  assert.deepEqual(own.retriableStatusCodes, [409]);
  assert.equal(own.retriableHeaders[0]!.name, 'x-retry');
  assert.equal(own.retriableRequestHeaders[0]!.name, ':method');
  assert.equal(own.hostSelectionRetryMaxAttempts, 5);
  assert.deepEqual(own.retryHostPredicates, ['envoy.retry_host_predicates.previous_hosts']);
  assert.equal(route({ match: { prefix: '/' }, route: { cluster: 'c' } }).route!.retryPolicy, undefined);
});

test('retry policy: unknown retry_on warns, max backoff below base is an error', () => {
  const t = compileRouteConfig(routeConfig({ name: 'rc', virtual_hosts: [{ name: 'vh', domains: ['*'], retry_policy: { retry_on: '5xx,bogus' }, routes: [] }] }));
  assert.deepEqual(t.diagnostics.map((d) => [d.severity, d.path]), [['warning', 'virtual_hosts[0].retry_policy.retry_on']]);
  assert.throws(
    () => route({ match: { prefix: '/' }, route: { cluster: 'c', retry_policy: { retry_back_off: { base_interval: { seconds: 2 }, max_interval: { seconds: 1 } } } } }),
    (err: unknown) => err instanceof ConfigError && err.diagnostics[0]!.path === 'virtual_hosts[0].routes[0].route.retry_policy.retry_back_off.max_interval',
  );
});

test('hash policy: header (all values, sorted), cookie (generated when ttl set), source ip, query, terminal', () => {
  const a = route({
    match: { prefix: '/' },
    route: {
      cluster: 'c',
      hash_policy: [
        { header: { header_name: 'X-User' } },
        { cookie: { name: 'sticky', ttl: { seconds: 60 }, path: '/' } },
        { query_parameter: { name: 'shard' }, terminal: true },
        { connection_properties: { source_ip: true } },
      ],
    },
  }).route!;
  const ctx: HashContext = { sourceIp: '10.0.0.1' };
  assert.deepEqual(a.hashPolicy!.hashKeys(req({ headers: ['x-user', 'b', 'cookie', 'a=1; sticky=abc', 'x-user', 'a'], path: '/?shard=7' }), ctx), ['a\u0000b', 'abc', '7']);
  assert.equal(ctx.cookieToSet, undefined);
  const keys = a.hashPolicy!.hashKeys(req(), ctx)!;
  assert.equal(keys.length, 2, 'cookie generated, no shard, falls through to source ip');
  assert.equal(keys[1], '10.0.0.1');
  // Re-read through the declared type: the earlier assertion narrowed the property to undefined.
  const cookie = (ctx as HashContext).cookieToSet;
  assert.equal(cookie?.name, 'sticky');
  assert.equal(cookie?.ttlMs, 60_000);
  assert.equal(cookie?.value, keys[0]);
  const none = route({ match: { prefix: '/' }, route: { cluster: 'c', hash_policy: [{ header: { header_name: 'x' } }] } }).route!;
  assert.equal(none.hashPolicy!.hashKeys(req(), { sourceIp: '' }), undefined);
});

test('upgrade_configs and mirror policies (most specific non-empty list wins)', () => {
  const r = route(
    {
      match: { prefix: '/' },
      route: { cluster: 'c', upgrade_configs: [{ upgrade_type: 'WebSocket' }, { upgrade_type: 'CONNECT', enabled: { value: false } }] },
    },
    { request_mirror_policies: [{ cluster: 'vh-shadow', runtime_fraction: { default_value: { numerator: 10 } } }] },
    { request_mirror_policies: [{ cluster: 'rc-shadow' }] },
  ).route!;
  assert.deepEqual([...r.upgrades], [['websocket', true], ['connect', false]]);
  assert.deepEqual(r.mirrorPolicies.map((m) => [m.cluster, m.fraction]), [['vh-shadow', 0.1]]);
  const rcOnly = route({ match: { prefix: '/' }, route: { cluster: 'c' } }, {}, { request_mirror_policies: [{ cluster: 'rc-shadow' }] }).route!;
  assert.deepEqual(rcOnly.mirrorPolicies.map((m) => [m.cluster, m.fraction]), [['rc-shadow', 1]]);
});

function location(redirect: object, over: Partial<RouteRequest> = {}, match: object = { prefix: '/' }): string {
  const r = route({ match, redirect });
  return r.redirect!.redirectLocation(req(over));
}

test('redirect: scheme, host, port and path variants', () => {
  assert.equal(location({ https_redirect: true }, { authority: 'a.com', path: '/x?y=1' }), 'https://a.com/x?y=1');
  assert.equal(location({ https_redirect: true }, { authority: 'a.com:80' }), 'https://a.com/', 'default http port dropped on scheme change');
  assert.equal(location({ https_redirect: true }, { authority: 'a.com:8080' }), 'https://a.com:8080/', 'non-default port kept');
  assert.equal(location({ scheme_redirect: 'HTTP' }, { authority: 'a.com:443', scheme: 'https' }), 'http://a.com/');
  assert.equal(location({ host_redirect: 'b.com' }, { path: '/p' }), 'http://b.com/p');
  assert.equal(location({ port_redirect: 8443 }, { authority: 'a.com:80' }), 'http://a.com:8443/');
  assert.equal(location({ host_redirect: 'b.com:90', port_redirect: 91 }), 'http://b.com:91/');
  assert.equal(location({ path_redirect: '/new' }, { path: '/old?q=1' }), 'http://example.com/new?q=1', 'request query kept');
  assert.equal(location({ path_redirect: '/new?a=b', strip_query: true }, { path: '/old?q=1' }), 'http://example.com/new?a=b', "path_redirect's query wins");
  assert.equal(location({ path_redirect: '/new', strip_query: true }, { path: '/old?q=1' }), 'http://example.com/new');
  assert.equal(location({ prefix_rewrite: '/v2' }, { path: '/v1/users?x' }, { prefix: '/v1' }), 'http://example.com/v2/users?x');
  assert.equal(location({ prefix_rewrite: '' }, { path: '/v1/users' }, { prefix: '/v1/' }), 'http://example.com/users', 'a leading / is added');
  assert.equal(location({ regex_rewrite: { pattern: { regex: '^/a/(.*)$' }, substitution: '/b/\\1' }, strip_query: true }, { path: '/a/c?d' }), 'http://example.com/b/c');
});

test('redirect: response codes', () => {
  const status = (code: string | undefined) => route({ match: { prefix: '/' }, redirect: code ? { response_code: code } : { https_redirect: true } }).redirect!.status;
  assert.equal(status(undefined), 301);
  assert.equal(status('FOUND'), 302);
  assert.equal(status('SEE_OTHER'), 303);
  assert.equal(status('TEMPORARY_REDIRECT'), 307);
  assert.equal(status('PERMANENT_REDIRECT'), 308);
});

test('direct_response: inline string, inline bytes, a file read at compile time, size limit', () => {
  const s = route({ match: { prefix: '/' }, direct_response: { status: 200, body: { inline_string: 'ok' } } });
  assert.equal(s.kind, 'direct_response');
  assert.equal(s.directResponse!.status, 200);
  assert.equal(s.directResponse!.body!.toString(), 'ok');
  assert.deepEqual(route({ match: { prefix: '/' }, direct_response: { status: 503, body: { inline_bytes: Buffer.from([1, 2]) } } }).directResponse!.body, Buffer.from([1, 2]));
  assert.equal(route({ match: { prefix: '/' }, direct_response: { status: 204 } }).directResponse!.body, undefined);
  const dir = mkdtempSync(join(tmpdir(), 'sloop-route-'));
  const file = join(dir, 'body.txt');
  writeFileSync(file, 'from file');
  assert.equal(route({ match: { prefix: '/' }, direct_response: { status: 403, body: { filename: file } } }).directResponse!.body!.toString(), 'from file');
  assert.throws(
    () => route({ match: { prefix: '/' }, direct_response: { status: 200, body: { filename: join(dir, 'missing') } } }),
    (err: unknown) => err instanceof ConfigError && err.diagnostics[0]!.code === 'SLOOP_ERR_CONFIG_UNREADABLE',
  );
  assert.throws(
    () => route({ match: { prefix: '/' }, direct_response: { status: 200, body: { inline_string: 'x'.repeat(11) } } }, {}, { max_direct_response_body_size_bytes: { value: 10 } }),
    (err: unknown) => err instanceof ConfigError && err.diagnostics[0]!.path === 'virtual_hosts[0].routes[0].direct_response.body',
  );
});

test('non_forwarding action and route metadata / decorator', () => {
  const r = route({ name: 'nf', match: { prefix: '/' }, non_forwarding_action: {}, decorator: { operation: 'op' } });
  assert.equal(r.kind, 'non_forwarding');
  assert.equal(r.name, 'nf');
  assert.deepEqual(r.decorator, { operation: 'op', propagate: true });
});
