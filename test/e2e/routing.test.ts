// Routing through `sloop proxy` over real traffic, with Envoy's semantics (route_components.proto and the
// "HTTP routing" architecture overview): virtual host domain matching, route matchers, cluster selection
// (weighted_clusters, cluster_header), rewrites, redirects, header mutation at the three levels with
// Envoy's order, and the forwarding headers (x-request-id, x-forwarded-for/-proto, upstream service time).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHttpUpstream, type HttpUpstream } from '../helpers/upstreams.ts';
import { startProxy, bootstrapWith, httpListener, staticCluster, virtualHost, prefixRoute, type Json, type ProxyHandle } from '../helpers/proxy.ts';
import { curl } from '../helpers/clients.ts';
import { countByUpstream, httpRequest } from '../helpers/http-client.ts';
import { freePorts } from '../helpers/ports.ts';
import { waitUntil } from '../helpers/wait.ts';

/** A header to add (`envoy.config.core.v3.HeaderValueOption`) with an explicit append_action. */
function add(key: string, value: string, appendAction = 'APPEND_IF_EXISTS_OR_ADD'): Json {
  return { header: { key, value }, append_action: appendAction };
}

/** A route to `cluster` that also tags the request with `x-route: <name>` so the upstream shows which route matched. */
function tagged(name: string, match: Json, cluster = 'a', routeExtra: Json = {}): Json {
  return { name, match, route: { cluster, ...routeExtra }, request_headers_to_add: [add('x-route', name, 'OVERWRITE_IF_EXISTS_OR_ADD')] };
}

/** A virtual host that tags requests with `x-vh: <name>` and sends everything to cluster a. */
function taggedVhost(name: string, domains: readonly string[]): Json {
  return virtualHost(name, domains, [prefixRoute('/', 'a')], { request_headers_to_add: [add('x-vh', name, 'OVERWRITE_IF_EXISTS_OR_ADD')] });
}

describe('routing', () => {
  let a: HttpUpstream;
  let b: HttpUpstream;
  let c: HttpUpstream;
  let proxy: ProxyHandle;
  let port: number;
  /** Same routes as `port`, but the route configuration sets most_specific_header_mutations_wins. */
  let specificPort: number;
  /** use_remote_address: true. */
  let edgePort: number;

  /** Sends through the main listener with `host` and returns the response (node:http client). */
  const get = (host: string, path: string, headers: ReadonlyArray<readonly [string, string]> = [], p = port) =>
    httpRequest(p, path, { headers: [['host', host], ...headers] });

  before(async () => {
    a = await startHttpUpstream({ name: 'a' });
    b = await startHttpUpstream({ name: 'b' });
    c = await startHttpUpstream({ name: 'c' });
    const [p, sp, ep, admin] = await freePorts(4);
    port = p;
    specificPort = sp;
    edgePort = ep;

    const domainHosts = [
      taggedVhost('exact', ['api.example.com']),
      taggedVhost('suffix-long', ['*.api.example.com']),
      taggedVhost('suffix', ['*.example.com']),
      taggedVhost('prefix', ['api.*']),
      taggedVhost('ported', ['ported.example.com:8443']),
      taggedVhost('default', ['*']),
    ];
    const matchHost = virtualHost('match', ['match.test'], [
      tagged('path', { path: '/exact' }),
      tagged('separated', { path_separated_prefix: '/sep' }),
      tagged('case-insensitive', { prefix: '/CaseI', case_sensitive: false }),
      tagged('case-sensitive-path', { path: '/Exact/Case' }),
      tagged('regex', { safe_regex: { regex: '/regex/[0-9]+' } }),
      tagged('h-exact', { prefix: '/h/', headers: [{ name: 'x-exact', string_match: { exact: 'yes' } }] }),
      tagged('h-prefix', { prefix: '/h/', headers: [{ name: 'x-prefix', string_match: { prefix: 'pre' } }] }),
      tagged('h-suffix', { prefix: '/h/', headers: [{ name: 'x-suffix', string_match: { suffix: 'fix' } }] }),
      tagged('h-contains', { prefix: '/h/', headers: [{ name: 'x-contains', string_match: { contains: 'needle' } }] }),
      tagged('h-regex', { prefix: '/h/', headers: [{ name: 'x-version', string_match: { safe_regex: { regex: 'v[0-9]+' } } }] }),
      tagged('h-present', { prefix: '/h/', headers: [{ name: 'x-present', present_match: true }] }),
      tagged('h-ignore-case', { prefix: '/h/', headers: [{ name: 'x-ci', string_match: { exact: 'MiXeD', ignore_case: true } }] }),
      // Two matchers: both must hold. invert_match: the header must not be `internal` (or be absent).
      tagged('h-inverted', { prefix: '/h/inv/', headers: [{ name: 'x-tier', string_match: { exact: 'internal' }, invert_match: true }] }),
      tagged('h-inverted-missing-empty', {
        prefix: '/h/inv-empty/',
        headers: [{ name: 'x-tier', string_match: { exact: 'internal' }, invert_match: true, treat_missing_header_as_empty: true }],
      }),
      tagged('h-absent', { prefix: '/h/absent/', headers: [{ name: 'x-debug', present_match: false }] }),
      tagged('q-exact', { prefix: '/q', query_parameters: [{ name: 'debug', string_match: { exact: '1' } }] }),
      tagged('q-present', { prefix: '/q', query_parameters: [{ name: 'trace', present_match: true }] }),
      tagged('grpc', { prefix: '/grpcsvc/', grpc: {} }),
      tagged('fallback', { prefix: '/' }, 'b'),
    ]);
    const actionHost = virtualHost('actions', ['actions.test'], [
      {
        match: { prefix: '/weighted' },
        route: {
          weighted_clusters: {
            clusters: [
              { name: 'a', weight: 1, request_headers_to_add: [add('x-wc', 'a')] },
              { name: 'b', weight: 3, request_headers_to_add: [add('x-wc', 'b')] },
            ],
          },
        },
      },
      { match: { prefix: '/by-header' }, route: { cluster_header: 'x-target-cluster' } },
      { match: { prefix: '/re/' }, route: { cluster: 'c', regex_rewrite: { pattern: { regex: '^/re/(\\w+)/(\\w+)$' }, substitution: '/swapped/\\2/\\1' } } },
      { match: { prefix: '/hostrw-header' }, route: { cluster: 'c', host_rewrite_header: 'x-new-host' } },
      { match: { prefix: '/hostrw' }, route: { cluster: 'c', host_rewrite_literal: 'literal.internal' } },
      { match: { prefix: '/' }, route: { cluster: 'a' } },
    ]);
    const redirectHost = virtualHost('redirects', ['redirect.test', 'redirect.test:*'], [
      { match: { prefix: '/secure' }, redirect: { https_redirect: true } },
      { match: { prefix: '/moved-host' }, redirect: { host_redirect: 'new.example.com' } },
      { match: { prefix: '/moved-path' }, redirect: { path_redirect: '/landing', response_code: 'PERMANENT_REDIRECT' } },
      { match: { prefix: '/v1/' }, redirect: { prefix_rewrite: '/v2/', response_code: 'TEMPORARY_REDIRECT' } },
      { match: { prefix: '/strip' }, redirect: { path_redirect: '/clean', strip_query: true, response_code: 'SEE_OTHER' } },
      { match: { prefix: '/port' }, redirect: { port_redirect: 9443, scheme_redirect: 'https' } },
    ]);
    // Header mutation at the three levels. Envoy applies route, then virtual host, then route configuration
    // (each level removes, then adds), unless most_specific_header_mutations_wins reverses the order.
    const headerHost = virtualHost(
      'headers',
      ['headers.test'],
      [
        {
          match: { prefix: '/mut' },
          route: { cluster: 'a' },
          request_headers_to_add: [
            add('x-order', 'route'),
            add('x-win', 'route', 'OVERWRITE_IF_EXISTS_OR_ADD'),
            add('x-absent', 'route', 'ADD_IF_ABSENT'),
            add('x-overwrite-only', 'route', 'OVERWRITE_IF_EXISTS'),
            add('x-later-removed', 'route'),
            add('x-client-addr', '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%', 'OVERWRITE_IF_EXISTS_OR_ADD'),
          ],
          request_headers_to_remove: ['x-remove-me'],
          response_headers_to_add: [add('x-resp-order', 'route'), add('x-resp-win', 'route', 'OVERWRITE_IF_EXISTS_OR_ADD')],
          response_headers_to_remove: ['x-upstream'],
        },
      ],
      {
        request_headers_to_add: [add('x-order', 'vhost'), add('x-win', 'vhost', 'OVERWRITE_IF_EXISTS_OR_ADD')],
        request_headers_to_remove: ['x-later-removed'],
        response_headers_to_add: [add('x-resp-order', 'vhost'), add('x-resp-win', 'vhost', 'OVERWRITE_IF_EXISTS_OR_ADD')],
      },
    );
    const routeConfig = (name: string, mostSpecificWins: boolean): Json => ({
      name,
      virtual_hosts: [matchHost, actionHost, redirectHost, headerHost, ...domainHosts],
      request_headers_to_add: [add('x-order', 'config'), add('x-win', 'config', 'OVERWRITE_IF_EXISTS_OR_ADD')],
      response_headers_to_add: [add('x-resp-order', 'config'), add('x-resp-win', 'config', 'OVERWRITE_IF_EXISTS_OR_ADD')],
      ...(mostSpecificWins ? { most_specific_header_mutations_wins: true } : {}),
    });
    proxy = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [
          httpListener({ name: 'main', port, routeConfig: routeConfig('main-routes', false) }),
          httpListener({ name: 'specific', port: specificPort, routeConfig: routeConfig('specific-routes', true) }),
          httpListener({ name: 'edge', port: edgePort, routeConfig: routeConfig('edge-routes', false), hcmExtra: { use_remote_address: true } }),
        ],
        clusters: [staticCluster('a', [['127.0.0.1', a.port]]), staticCluster('b', [['127.0.0.1', b.port]]), staticCluster('c', [['127.0.0.1', c.port]])],
      }),
    );
  });

  after(async () => {
    await proxy?.stop();
    await a?.close();
    await b?.close();
    await c?.close();
  });

  it('selects virtual hosts: exact, then longest *.suffix, then prefix*, then *; case-insensitive; port kept', async () => {
    const cases: Array<[string, string]> = [
      ['api.example.com', 'exact'],
      ['API.Example.COM', 'exact'],
      ['v1.api.example.com', 'suffix-long'],
      ['foo.example.com', 'suffix'],
      ['deep.foo.example.com', 'suffix'],
      ['api.other.org', 'prefix'],
      // The Host keeps its port when matching (no strip_*_host_port): the exact domain no longer matches,
      // nor does *.example.com (the host ends in ":1234"), but api.* does.
      ['api.example.com:1234', 'prefix'],
      ['ported.example.com:8443', 'ported'],
      ['ported.example.com', 'suffix'],
      ['example.com', 'default'],
      ['unrelated', 'default'],
    ];
    for (const [host, vh] of cases) {
      const r = await get(host, '/vh');
      assert.equal(r.status, 200, host);
      assert.equal(r.json().headers['x-vh'], vh, `Host ${host}`);
      assert.equal(r.json().upstream, 'a');
    }
    // curl (a third-party client) agrees on one of them, and the upstream saw the original Host.
    const cr = await curl(['-H', 'host: v2.api.example.com', `http://127.0.0.1:${port}/vh-curl`]);
    assert.equal(cr.status, 200);
    const seen = a.requests.find((r) => r.url === '/vh-curl');
    assert.equal(seen?.headerMap['x-vh'], 'suffix-long');
    assert.equal(seen?.headerMap['host'], 'v2.api.example.com');
  });

  it('matches path, path_separated_prefix, case_sensitive and safe_regex', async () => {
    const route = async (path: string): Promise<string | undefined> => (await get('match.test', path)).json().headers['x-route'];
    assert.equal(await route('/exact'), 'path');
    assert.equal(await route('/exact?x=1'), 'path', 'path ignores the query');
    assert.equal(await route('/exact/more'), 'fallback');
    assert.equal(await route('/sep'), 'separated');
    assert.equal(await route('/sep/x/y'), 'separated');
    assert.equal(await route('/sep?q=1'), 'separated');
    assert.equal(await route('/separate'), 'fallback', 'path_separated_prefix needs a / boundary');
    assert.equal(await route('/casei/thing'), 'case-insensitive');
    assert.equal(await route('/CASEI'), 'case-insensitive');
    assert.equal(await route('/Exact/Case'), 'case-sensitive-path');
    assert.equal(await route('/exact/case'), 'fallback', 'case_sensitive defaults to true');
    assert.equal(await route('/regex/123'), 'regex');
    assert.equal(await route('/regex/123?z=9'), 'regex', 'safe_regex matches the path without the query');
    assert.equal(await route('/regex/12a'), 'fallback', 'safe_regex must match the whole path');
    assert.equal(await route('/x/regex/1'), 'fallback');
    // The fallback route goes to cluster b.
    assert.equal((await get('match.test', '/anything')).json().upstream, 'b');
  });

  it('matches headers: exact, prefix, suffix, contains, safe_regex, present, ignore_case, invert', async () => {
    const route = async (path: string, headers: Array<[string, string]>): Promise<string | undefined> =>
      (await get('match.test', path, headers)).json().headers['x-route'];
    assert.equal(await route('/h/1', [['x-exact', 'yes']]), 'h-exact');
    assert.equal(await route('/h/1', [['x-exact', 'yes!']]), 'fallback');
    assert.equal(await route('/h/1', [['x-prefix', 'prefixed']]), 'h-prefix');
    assert.equal(await route('/h/1', [['x-prefix', 'xpre']]), 'fallback');
    assert.equal(await route('/h/1', [['x-suffix', 'thesuffix']]), 'h-suffix');
    assert.equal(await route('/h/1', [['x-suffix', 'fixed']]), 'fallback');
    assert.equal(await route('/h/1', [['x-contains', 'hay-needle-stack']]), 'h-contains');
    assert.equal(await route('/h/1', [['x-contains', 'hay']]), 'fallback');
    assert.equal(await route('/h/1', [['x-version', 'v42']]), 'h-regex');
    assert.equal(await route('/h/1', [['x-version', 'v42-beta']]), 'fallback', 'safe_regex is a full match');
    assert.equal(await route('/h/1', [['x-present', '']]), 'h-present', 'present_match matches an empty value');
    assert.equal(await route('/h/1', [['x-ci', 'mixed']]), 'h-ignore-case');
    assert.equal(await route('/h/inv/', [['x-tier', 'internal']]), 'fallback');
    assert.equal(await route('/h/inv/', [['x-tier', 'external']]), 'h-inverted');
    // HeaderMatcher docs: a missing header is ignored by the rule, so it "will not match" even inverted,
    // unless treat_missing_header_as_empty makes it "" (which is not "internal", so the inverted rule holds).
    assert.equal(await route('/h/inv/', []), 'fallback');
    assert.equal(await route('/h/inv-empty/', []), 'h-inverted-missing-empty');
    assert.equal(await route('/h/inv-empty/', [['x-tier', 'internal']]), 'fallback');
    assert.equal(await route('/h/absent/', []), 'h-absent', 'present_match false matches an absent header');
    assert.equal(await route('/h/absent/', [['x-debug', '1']]), 'fallback');
    assert.equal(await route('/h/1', []), 'fallback');
  });

  it('matches query_parameters and grpc', async () => {
    const route = async (path: string, headers: Array<[string, string]> = []): Promise<string | undefined> =>
      (await get('match.test', path, headers)).json().headers['x-route'];
    assert.equal(await route('/q?debug=1'), 'q-exact');
    assert.equal(await route('/q?a=b&debug=1'), 'q-exact');
    assert.equal(await route('/q?debug=2'), 'fallback');
    assert.equal(await route('/q?trace'), 'q-present');
    assert.equal(await route('/q?trace=anything'), 'q-present');
    assert.equal(await route('/q'), 'fallback');
    assert.equal(await route('/grpcsvc/Method', [['content-type', 'application/grpc']]), 'grpc');
    assert.equal(await route('/grpcsvc/Method', [['content-type', 'application/grpc+proto']]), 'grpc');
    assert.equal(await route('/grpcsvc/Method', [['content-type', 'application/json']]), 'fallback');
  });

  it('splits weighted_clusters by weight, adding each cluster’s own headers', async () => {
    const n = 400;
    const counts = await countByUpstream(port, n, (i) => `/weighted/${i}`, { headersFor: () => [['host', 'actions.test']] });
    assert.equal((counts.a ?? 0) + (counts.b ?? 0), n, JSON.stringify(counts));
    // Weights 1:3 → 25 % to a. Binomial(400, 0.25) has σ ≈ 8.7; ±40 is more than 4.5 σ.
    assert.ok(counts.a >= 60 && counts.a <= 140, `a got ${counts.a} of ${n}`);
    const lastA = a.requests.filter((r) => r.url.startsWith('/weighted/')).at(-1);
    const lastB = b.requests.filter((r) => r.url.startsWith('/weighted/')).at(-1);
    assert.equal(lastA?.headerMap['x-wc'], 'a');
    assert.equal(lastB?.headerMap['x-wc'], 'b');
  });

  it('routes by cluster_header; a missing or unknown cluster is a 503', async () => {
    const toC = await get('actions.test', '/by-header/1', [['x-target-cluster', 'c']]);
    assert.equal(toC.status, 200);
    assert.equal(toC.json().upstream, 'c');
    const toB = await get('actions.test', '/by-header/2', [['x-target-cluster', 'b']]);
    assert.equal(toB.json().upstream, 'b');
    const unknown = await get('actions.test', '/by-header/3', [['x-target-cluster', 'nope']]);
    assert.equal(unknown.status, 503);
    const missing = await get('actions.test', '/by-header/4');
    assert.equal(missing.status, 503);
    const stats = await proxy.stats();
    assert.ok(stats['http.main.no_cluster'] >= 2, `http.main.no_cluster = ${stats['http.main.no_cluster']}`);
  });

  it('applies regex_rewrite and host rewrites, keeping the original path', async () => {
    const r = await get('actions.test', '/re/first/second?keep=1');
    assert.equal(r.status, 200);
    const seen = c.requests.at(-1)!;
    assert.equal(seen.url, '/swapped/second/first?keep=1');
    assert.equal(seen.headerMap['x-envoy-original-path'], '/re/first/second?keep=1');
    // No match: the path goes through unchanged.
    await get('actions.test', '/re/only-one');
    assert.equal(c.requests.at(-1)!.url, '/re/only-one');

    await get('actions.test', '/hostrw');
    assert.equal(c.requests.at(-1)!.headerMap['host'], 'literal.internal');
    await get('actions.test', '/hostrw-header', [['x-new-host', 'from-header.internal']]);
    assert.equal(c.requests.at(-1)!.headerMap['host'], 'from-header.internal');
    await get('actions.test', '/hostrw-header');
    assert.equal(c.requests.at(-1)!.headerMap['host'], 'actions.test', 'no header: Host unchanged');
  });

  it('redirects: https_redirect, host_redirect, path_redirect, prefix_rewrite, strip_query, port_redirect, response_code', async () => {
    const before = c.requests.length + a.requests.length + b.requests.length;
    const secure = await curl(['-H', 'host: redirect.test', `http://127.0.0.1:${port}/secure/page?x=1`]);
    assert.equal(secure.status, 301);
    assert.equal(secure.headers['location'], 'https://redirect.test/secure/page?x=1');
    // The default port of the old scheme is dropped when the scheme changes.
    const secure80 = await curl(['-H', 'host: redirect.test:80', `http://127.0.0.1:${port}/secure`]);
    assert.equal(secure80.headers['location'], 'https://redirect.test/secure');
    const host = await curl(['-H', 'host: redirect.test', `http://127.0.0.1:${port}/moved-host/a?b=c`]);
    assert.equal(host.status, 301);
    assert.equal(host.headers['location'], 'http://new.example.com/moved-host/a?b=c');
    const path = await curl(['-H', 'host: redirect.test', `http://127.0.0.1:${port}/moved-path/x`]);
    assert.equal(path.status, 308);
    assert.equal(path.headers['location'], 'http://redirect.test/landing');
    const prefix = await curl(['-H', 'host: redirect.test', `http://127.0.0.1:${port}/v1/items/7?full=1`]);
    assert.equal(prefix.status, 307);
    assert.equal(prefix.headers['location'], 'http://redirect.test/v2/items/7?full=1');
    const strip = await curl(['-H', 'host: redirect.test', `http://127.0.0.1:${port}/strip?secret=1`]);
    assert.equal(strip.status, 303);
    assert.equal(strip.headers['location'], 'http://redirect.test/clean');
    const portR = await curl(['-H', 'host: redirect.test:8080', `http://127.0.0.1:${port}/port/x`]);
    assert.equal(portR.status, 301);
    assert.equal(portR.headers['location'], 'https://redirect.test:9443/port/x');
    assert.equal(c.requests.length + a.requests.length + b.requests.length, before, 'redirects never reach an upstream');
    await waitUntil(async () => (await proxy.stats())['http.main.rq_redirect'] >= 7, { what: 'http.main.rq_redirect >= 7' });
  });

  it('mutates request headers at route, virtual host and route configuration level in Envoy’s order', async () => {
    const r = await get('headers.test', '/mut', [
      ['x-order', 'client'],
      ['x-win', 'client'],
      ['x-absent', 'client'],
      ['x-remove-me', 'gone'],
      ['x-later-removed', 'client'],
    ]);
    assert.equal(r.status, 200);
    const seen = a.requests.at(-1)!;
    const values = (name: string): string[] => seen.headers.filter(([k]) => k.toLowerCase() === name).map(([, v]) => v);
    // Route first, then virtual host, then route configuration; APPEND keeps every value in that order.
    assert.deepEqual(values('x-order'), ['client', 'route', 'vhost', 'config']);
    // OVERWRITE at each level: the last level applied (route configuration) wins.
    assert.deepEqual(values('x-win'), ['config']);
    assert.deepEqual(values('x-absent'), ['client'], 'ADD_IF_ABSENT keeps the client value');
    assert.deepEqual(values('x-remove-me'), []);
    // The route adds x-later-removed, then the virtual host removes every x-later-removed.
    assert.deepEqual(values('x-later-removed'), []);
    assert.deepEqual(values('x-overwrite-only'), [], 'OVERWRITE_IF_EXISTS adds nothing when absent');
    assert.deepEqual(values('x-client-addr'), ['127.0.0.1'], 'command operators are formatted');

    await get('headers.test', '/mut', [['x-overwrite-only', 'client']]);
    const second = a.requests.at(-1)!;
    assert.equal(second.headerMap['x-overwrite-only'], 'route');
    assert.equal(second.headerMap['x-absent'], 'route', 'ADD_IF_ABSENT adds when absent');
  });

  it('with most_specific_header_mutations_wins the route level is applied last', async () => {
    await get('headers.test', '/mut', [['x-later-removed', 'client']], specificPort);
    const seen = a.requests.at(-1)!;
    const values = (name: string): string[] => seen.headers.filter(([k]) => k.toLowerCase() === name).map(([, v]) => v);
    assert.deepEqual(values('x-order'), ['config', 'vhost', 'route']);
    assert.deepEqual(values('x-win'), ['route']);
    // The virtual host removes the client's value first, then the route adds its own.
    assert.deepEqual(values('x-later-removed'), ['route']);
  });

  it('mutates response headers at all three levels in the same order', async () => {
    const r = await curl(['-H', 'host: headers.test', `http://127.0.0.1:${port}/mut`]);
    assert.equal(r.status, 200);
    const values = (name: string): string[] => r.rawHeaders.filter(([k]) => k.toLowerCase() === name).map(([, v]) => v);
    assert.deepEqual(values('x-resp-order'), ['route', 'vhost', 'config']);
    assert.deepEqual(values('x-resp-win'), ['config']);
    assert.deepEqual(values('x-upstream'), [], 'response_headers_to_remove drops the upstream’s header');
    assert.equal(r.json().upstream, 'a');

    const s = await curl(['-H', 'host: headers.test', `http://127.0.0.1:${specificPort}/mut`]);
    const sv = (name: string): string[] => s.rawHeaders.filter(([k]) => k.toLowerCase() === name).map(([, v]) => v);
    assert.deepEqual(sv('x-resp-order'), ['config', 'vhost', 'route']);
    assert.deepEqual(sv('x-resp-win'), ['route']);
  });

  it('generates x-request-id when absent and keeps a client’s one', async () => {
    const first = await get('actions.test', '/rid/1');
    const id1 = first.json().headers['x-request-id'];
    assert.match(id1 ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const second = await get('actions.test', '/rid/2');
    assert.notEqual(second.json().headers['x-request-id'], id1, 'a new id per request');
    const kept = await get('actions.test', '/rid/3', [['x-request-id', 'client-chosen-id']]);
    assert.equal(kept.json().headers['x-request-id'], 'client-chosen-id');
    assert.equal(a.requests.at(-1)!.headerMap['x-request-id'], 'client-chosen-id');
  });

  it('sets x-forwarded-proto, x-forwarded-for (use_remote_address) and x-envoy-upstream-service-time', async () => {
    // Default listener (use_remote_address false): XFP is added when absent and a client's value is kept;
    // XFF is not appended.
    const plain = await get('actions.test', '/fwd/1');
    assert.equal(plain.json().headers['x-forwarded-proto'], 'http');
    assert.equal(plain.json().headers['x-forwarded-for'], undefined);
    assert.match(String(plain.headers['x-envoy-upstream-service-time']), /^\d+$/);
    const keptProto = await get('actions.test', '/fwd/2', [['x-forwarded-proto', 'https'], ['x-forwarded-for', '203.0.113.7']]);
    assert.equal(keptProto.json().headers['x-forwarded-proto'], 'https');
    assert.equal(keptProto.json().headers['x-forwarded-for'], '203.0.113.7');

    // Edge listener (use_remote_address true): XFF gets the peer appended with ",", XFP is the real scheme.
    const edge = await get('actions.test', '/fwd/3', [['x-forwarded-proto', 'https'], ['x-forwarded-for', '203.0.113.7']], edgePort);
    assert.equal(edge.status, 200);
    const seen = a.requests.at(-1)!;
    assert.equal(seen.url, '/fwd/3');
    assert.equal(seen.headerMap['x-forwarded-for'], '203.0.113.7,127.0.0.1');
    assert.equal(seen.headerMap['x-forwarded-proto'], 'http');
    const fresh = await get('actions.test', '/fwd/4', [], edgePort);
    assert.equal(fresh.json().headers['x-forwarded-for'], '127.0.0.1');
    assert.match(String(fresh.headers['x-envoy-upstream-service-time']), /^\d+$/);
  });
});
