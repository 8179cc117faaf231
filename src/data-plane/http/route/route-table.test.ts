import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../../shared/errors.ts';
import { compileRouteConfig } from './route-table.ts';
import type { CompiledRouteConfig, RouteRequest } from './route-table.ts';
import { request, routeConfig } from './testdata/helpers.ts';

function vhosts(...list: { name: string; domains: string[] }[]): object {
  return { name: 'rc', virtual_hosts: list.map((v) => ({ ...v, routes: [{ match: { prefix: '/' }, route: { cluster: v.name } }] })) };
}

function hostOf(table: CompiledRouteConfig, authority: string): string | undefined {
  return table.selectVirtualHost(authority)?.name;
}

test('virtual host precedence: exact > longest suffix wildcard > longest prefix wildcard > *', () => {
  const table = compileRouteConfig(
    routeConfig(
      vhosts(
        { name: 'default', domains: ['*'] },
        { name: 'prefix-short', domains: ['api.*'] },
        { name: 'prefix-long', domains: ['api.internal.*'] },
        { name: 'suffix', domains: ['*.example.com'] },
        { name: 'suffix-long', domains: ['*-prod.example.com', '*-test.example.com'] },
        { name: 'exact', domains: ['api.example.com', 'reviews:9080'] },
      ),
    ),
  );
  assert.equal(hostOf(table, 'api.example.com'), 'exact');
  assert.equal(hostOf(table, 'API.Example.COM'), 'exact', 'domains are case-insensitive');
  assert.equal(hostOf(table, 'a-prod.example.com'), 'suffix-long');
  assert.equal(hostOf(table, 'a-test.example.com'), 'suffix-long');
  assert.equal(hostOf(table, 'x.example.com'), 'suffix');
  assert.equal(hostOf(table, 'api.foo.example.com'), 'suffix', 'a suffix wildcard beats a prefix wildcard');
  assert.equal(hostOf(table, 'api.internal.org'), 'prefix-long');
  assert.equal(hostOf(table, 'api.other.org'), 'prefix-short');
  assert.equal(hostOf(table, 'example.com'), 'default');
  assert.equal(hostOf(table, '.example.com'), 'default', 'a wildcard never matches the empty string');
  assert.equal(hostOf(table, 'reviews:9080'), 'exact', 'a domain may carry a port');
  assert.equal(hostOf(table, 'reviews'), 'default');
  // Without stripping, the port is part of the Host.
  assert.equal(hostOf(table, 'api.example.com:8080'), 'prefix-short');
});

test('no virtual host matches without a * domain', () => {
  const table = compileRouteConfig(routeConfig(vhosts({ name: 'a', domains: ['a.com'] })));
  assert.equal(table.selectVirtualHost('b.com'), undefined);
  assert.equal(table.match(request({ authority: 'b.com' }), 0), undefined);
});

test('host port stripping: any port, or only the listener port', () => {
  const cfg = vhosts({ name: 'exact', domains: ['api.example.com', '[::1]'] }, { name: 'default', domains: ['*'] });
  const any = compileRouteConfig(routeConfig(cfg), { stripAnyHostPort: true });
  assert.equal(hostOf(any, 'api.example.com:8080'), 'exact');
  assert.equal(hostOf(any, '[::1]:80'), 'exact');
  const byRc = compileRouteConfig(routeConfig({ ...cfg, ignore_port_in_host_matching: true }));
  assert.equal(hostOf(byRc, 'api.example.com:1'), 'exact');
  const matching = compileRouteConfig(routeConfig(cfg), { stripMatchingHostPort: 8080 });
  assert.equal(hostOf(matching, 'api.example.com:8080'), 'exact');
  assert.equal(hostOf(matching, 'api.example.com:9090'), 'default');
});

test('duplicate domains and a second * are ConfigErrors naming the field', () => {
  const cfg = routeConfig(
    vhosts({ name: 'a', domains: ['a.com', '*'] }, { name: 'b', domains: ['A.com'] }, { name: 'c', domains: ['c.com', '*'] }),
  );
  assert.throws(
    () => compileRouteConfig(cfg),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.code, 'SLOOP_ERR_CONFIG_INVALID');
      assert.deepEqual(
        err.diagnostics.map((d) => d.path),
        ['virtual_hosts[1].domains[0]', 'virtual_hosts[2].domains[1]'],
      );
      assert.match(err.diagnostics[0]!.message, /duplicate domain "a.com"/);
      assert.match(err.diagnostics[1]!.message, /single wildcard/);
      return true;
    },
  );
});

test('a bad regex is a ConfigError at its exact field path, and every error is collected', () => {
  const cfg = routeConfig({
    name: 'rc',
    virtual_hosts: [
      { name: 'ok', domains: ['ok.com'], routes: [{ match: { prefix: '/' }, route: { cluster: 'c' } }] },
      {
        name: 'bad',
        domains: ['*'],
        routes: [
          { match: { safe_regex: { regex: '(a)\\1' } }, route: { cluster: 'c' } },
          { match: { prefix: '/', headers: [{ name: 'x', string_match: { safe_regex: { regex: '[' } } }] }, route: { cluster: 'c' } },
        ],
      },
    ],
  });
  assert.throws(
    () => compileRouteConfig(cfg),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.deepEqual(
        err.diagnostics.map((d) => [d.path, d.code]),
        [
          ['virtual_hosts[1].routes[0].match.safe_regex.regex', 'SLOOP_ERR_CONFIG_UNSUPPORTED'],
          ['virtual_hosts[1].routes[1].match.headers[0].string_match.safe_regex.regex', 'SLOOP_ERR_CONFIG_INVALID'],
        ],
      );
      assert.match(err.message, /RouteConfiguration rc/);
      return true;
    },
  );
});

/** One virtual host (`*`) with the given routes; each route's cluster is its name. */
function table(routes: object[], extra: object = {}): CompiledRouteConfig {
  return compileRouteConfig(
    routeConfig({ name: 'rc', virtual_hosts: [{ name: 'vh', domains: ['*'], routes, ...extra }] }),
  );
}

function r(name: string, match: object, action: object = { route: { cluster: name } }): object {
  return { name, match, ...action };
}

function matched(t: CompiledRouteConfig, req: Partial<RouteRequest>, random = 0): string | undefined {
  return t.match(request(req), random)?.route.name;
}

test('path specifiers: prefix, path, safe_regex, path_separated_prefix, connect_matcher', () => {
  const t = table([
    r('connect', { connect_matcher: {} }),
    r('exact', { path: '/exact' }),
    r('regex', { safe_regex: { regex: '/users/[0-9]+' } }),
    r('sep', { path_separated_prefix: '/api/dev' }),
    r('prefix', { prefix: '/static' }),
  ]);
  assert.equal(matched(t, { path: '/exact' }), 'exact');
  assert.equal(matched(t, { path: '/exact?x=1' }), 'exact', 'path ignores the query');
  assert.equal(matched(t, { path: '/exact/more' }), undefined);
  assert.equal(matched(t, { path: '/Exact' }), undefined, 'case-sensitive by default');
  assert.equal(matched(t, { path: '/users/42' }), 'regex');
  assert.equal(matched(t, { path: '/users/42?debug=1' }), 'regex', 'regex runs on the path without query');
  assert.equal(matched(t, { path: '/users/42/x' }), undefined, 'regex is a full match');
  assert.equal(matched(t, { path: '/api/dev' }), 'sep');
  assert.equal(matched(t, { path: '/api/dev/' }), 'sep');
  assert.equal(matched(t, { path: '/api/dev/v1' }), 'sep');
  assert.equal(matched(t, { path: '/api/dev?x=1' }), 'sep');
  assert.equal(matched(t, { path: '/api/developer' }), undefined);
  assert.equal(matched(t, { path: '/static/app.js' }), 'prefix');
  assert.equal(matched(t, { path: '/staticfoo' }), 'prefix', 'a prefix is a plain string prefix');
  assert.equal(matched(t, { method: 'CONNECT', authority: 'h:443', path: '' }), 'connect');
});

test('case_sensitive: { value: false } folds prefix, path and path_separated_prefix but not safe_regex', () => {
  const t = table([
    r('p', { prefix: '/Api', case_sensitive: { value: false } }),
    r('x', { path: '/EXACT', case_sensitive: { value: false } }),
    r('re', { safe_regex: { regex: '/re' }, case_sensitive: { value: false } }),
  ]);
  assert.equal(matched(t, { path: '/aPI/v1' }), 'p');
  assert.equal(matched(t, { path: '/exact' }), 'x');
  assert.equal(matched(t, { path: '/RE' }), undefined);
  assert.equal(matched(t, { path: '/re' }), 're');
});

test('first match wins, in configuration order', () => {
  const t = table([r('first', { prefix: '/a' }), r('second', { prefix: '/a/b' }), r('catchall', { prefix: '/' })]);
  assert.equal(matched(t, { path: '/a/b/c' }), 'first');
  assert.equal(matched(t, { path: '/z' }), 'catchall');
  const u = table([r('specific', { prefix: '/a/b' }), r('general', { prefix: '/a' })]);
  assert.equal(matched(u, { path: '/a/b/c' }), 'specific');
});

test('header matchers: string_match kinds, ignore_case, legacy exact_match, pseudo-headers', () => {
  const t = table([
    r('exact', { prefix: '/', headers: [{ name: 'x-v', string_match: { exact: 'v1' } }] }),
    r('ci', { prefix: '/', headers: [{ name: 'x-v', string_match: { exact: 'HELLO', ignore_case: true } }] }),
    r('prefix', { prefix: '/', headers: [{ name: 'x-v', string_match: { prefix: 'pre' } }] }),
    r('suffix', { prefix: '/', headers: [{ name: 'x-v', string_match: { suffix: 'fix' } }] }),
    r('contains', { prefix: '/', headers: [{ name: 'x-v', string_match: { contains: 'mid', ignore_case: true } }] }),
    r('regex', { prefix: '/', headers: [{ name: 'x-v', string_match: { safe_regex: { regex: 'r[0-9]+' } } }] }),
    r('legacy', { prefix: '/', headers: [{ name: 'X-Legacy', exact_match: 'yes' }] }),
    r('method', { prefix: '/', headers: [{ name: ':method', string_match: { exact: 'POST' } }] }),
    r('authority', { prefix: '/', headers: [{ name: ':authority', string_match: { suffix: '.svc' } }] }),
  ]);
  assert.equal(matched(t, { headers: ['x-v', 'v1'] }), 'exact');
  assert.equal(matched(t, { headers: ['x-v', 'hello'] }), 'ci');
  assert.equal(matched(t, { headers: ['x-v', 'prefixed'] }), 'prefix');
  assert.equal(matched(t, { headers: ['x-v', 'a-suffix'] }), 'suffix');
  assert.equal(matched(t, { headers: ['x-v', 'aMIDb'] }), 'contains');
  assert.equal(matched(t, { headers: ['x-v', 'r12'] }), 'regex');
  assert.equal(matched(t, { headers: ['x-v', 'r12x'] }), undefined);
  assert.equal(matched(t, { headers: ['x-legacy', 'yes'] }), 'legacy');
  assert.equal(matched(t, { method: 'POST' }), 'method');
  assert.equal(matched(t, { authority: 'reviews.svc' }), 'authority');
});

test('repeated headers are joined with "," before matching', () => {
  const t = table([r('joined', { prefix: '/', headers: [{ name: 'x-a', string_match: { exact: 'one,two' } }] })]);
  assert.equal(matched(t, { headers: ['x-a', 'one', 'other', 'z', 'x-a', 'two'] }), 'joined');
  assert.equal(matched(t, { headers: ['x-a', 'one'] }), undefined);
});

test('present_match, invert_match and treat_missing_header_as_empty follow Envoy', () => {
  const t = table([
    r('present', { prefix: '/p', headers: [{ name: 'x-a', present_match: true }] }),
    r('absent', { prefix: '/a', headers: [{ name: 'x-a', present_match: false }] }),
    r('inverted-present', { prefix: '/ip', headers: [{ name: 'x-a', present_match: true, invert_match: true }] }),
    r('inverted-exact', { prefix: '/ie', headers: [{ name: 'x-a', string_match: { exact: 'bad' }, invert_match: true }] }),
    r('missing-empty', { prefix: '/me', headers: [{ name: 'x-a', string_match: { exact: '' }, treat_missing_header_as_empty: true }] }),
  ]);
  assert.equal(matched(t, { path: '/p', headers: ['x-a', ''] }), 'present');
  assert.equal(matched(t, { path: '/p' }), undefined);
  assert.equal(matched(t, { path: '/a' }), 'absent');
  assert.equal(matched(t, { path: '/a', headers: ['x-a', '1'] }), undefined);
  assert.equal(matched(t, { path: '/ip' }), 'inverted-present', 'inverted presence matches a missing header');
  assert.equal(matched(t, { path: '/ip', headers: ['x-a', '1'] }), undefined);
  assert.equal(matched(t, { path: '/ie', headers: ['x-a', 'good'] }), 'inverted-exact');
  assert.equal(matched(t, { path: '/ie', headers: ['x-a', 'bad'] }), undefined);
  assert.equal(matched(t, { path: '/ie' }), undefined, 'inversion does not make a missing header match');
  assert.equal(matched(t, { path: '/me' }), 'missing-empty');
  assert.equal(matched(t, { path: '/me', headers: ['x-a', 'v'] }), undefined);
});

test('range_match is [start, end) on an integer value, and inverts', () => {
  const t = table([
    r('range', { prefix: '/r', headers: [{ name: 'x-n', range_match: { start: -10, end: 10 } }] }),
    r('not-range', { prefix: '/n', headers: [{ name: 'x-n', range_match: { start: -10, end: 0 }, invert_match: true, treat_missing_header_as_empty: true }] }),
  ]);
  assert.equal(matched(t, { path: '/r', headers: ['x-n', '-10'] }), 'range');
  assert.equal(matched(t, { path: '/r', headers: ['x-n', '9'] }), 'range');
  assert.equal(matched(t, { path: '/r', headers: ['x-n', '10'] }), undefined);
  assert.equal(matched(t, { path: '/r', headers: ['x-n', '5x'] }), undefined);
  assert.equal(matched(t, { path: '/n', headers: ['x-n', '-1'] }), undefined);
  assert.equal(matched(t, { path: '/n', headers: ['x-n', '3'] }), 'not-range');
  assert.equal(matched(t, { path: '/n' }), 'not-range', 'missing-as-empty is not a number, so the inverted range matches');
});

test('query parameter matchers: string_match on the first decoded value, present_match both ways', () => {
  const t = table([
    r('exact', { prefix: '/e', query_parameters: [{ name: 'debug', string_match: { exact: 'a b' } }] }),
    r('present', { prefix: '/p', query_parameters: [{ name: 'flag', present_match: true }] }),
    r('absent', { prefix: '/a', query_parameters: [{ name: 'flag', present_match: false }] }),
    r('ci', { prefix: '/c', query_parameters: [{ name: 'v', string_match: { prefix: 'ab', ignore_case: true } }] }),
  ]);
  assert.equal(matched(t, { path: '/e?x=1&debug=a%20b' }), 'exact');
  assert.equal(matched(t, { path: '/e?debug=a%20b&debug=zz' }), 'exact', 'the first value decides');
  assert.equal(matched(t, { path: '/e?debug=zz&debug=a%20b' }), undefined);
  assert.equal(matched(t, { path: '/e?xdebug=a%20b' }), undefined);
  assert.equal(matched(t, { path: '/p?flag' }), 'present');
  assert.equal(matched(t, { path: '/p?flags=1' }), undefined);
  assert.equal(matched(t, { path: '/a?other=1' }), 'absent');
  assert.equal(matched(t, { path: '/a?flag=1' }), undefined);
  assert.equal(matched(t, { path: '/c?v=ABC' }), 'ci');
});

test('grpc matches application/grpc and application/grpc+proto only', () => {
  const t = table([r('grpc', { prefix: '/', grpc: {} }), r('other', { prefix: '/' })]);
  assert.equal(matched(t, { headers: ['content-type', 'application/grpc'] }), 'grpc');
  assert.equal(matched(t, { headers: ['content-type', 'application/grpc+proto'] }), 'grpc');
  assert.equal(matched(t, { headers: ['content-type', 'application/grpc-web'] }), 'other');
  assert.equal(matched(t, {}), 'other');
});

test('runtime_fraction compares default_value with the request random', () => {
  const t = table([
    r('half', { prefix: '/', runtime_fraction: { default_value: { numerator: 50, denominator: 'HUNDRED' }, runtime_key: 'k' } }),
    r('rest', { prefix: '/' }),
  ]);
  assert.equal(matched(t, {}, 0), 'half');
  assert.equal(matched(t, {}, 0.4999), 'half');
  assert.equal(matched(t, {}, 0.5), 'rest');
  const million = table([r('tiny', { prefix: '/', runtime_fraction: { default_value: { numerator: 1, denominator: 'MILLION' } } }), r('rest', { prefix: '/' })]);
  assert.equal(matched(million, {}, 0.0000009), 'tiny');
  assert.equal(matched(million, {}, 0.000001), 'rest');
});

test('tls_context: presented/validated need TLS and the peer certificate flags', () => {
  const t = table([
    r('mtls', { prefix: '/', tls_context: { presented: { value: true } } }),
    r('validated-false', { prefix: '/', tls_context: { validated: { value: false } } }),
  ]);
  assert.equal(matched(t, { isTls: true, isPeerCertPresented: true }), 'mtls');
  assert.equal(matched(t, { isTls: true }), 'validated-false');
  assert.equal(matched(t, { isTls: false, isPeerCertPresented: true }), 'validated-false');
});

test('require_tls ALL redirects plain requests to https with 301; EXTERNAL_ONLY spares internal ones', () => {
  const all = table([r('app', { prefix: '/' })], { require_tls: 'ALL' });
  const m = all.match(request({ authority: 'example.com:80', path: '/x?y=1' }), 0)!;
  assert.equal(m.route.kind, 'redirect');
  assert.equal(m.route.redirect!.status, 301);
  assert.equal(m.route.redirect!.redirectLocation(request({ authority: 'example.com:80', path: '/x?y=1' })), 'https://example.com/x?y=1');
  assert.equal(matched(all, { scheme: 'https', isTls: true }), 'app');
  const ext = table([r('app', { prefix: '/' })], { require_tls: 'EXTERNAL_ONLY' });
  assert.equal(matched(ext, { headers: ['x-envoy-internal', 'true'] }), 'app');
  assert.equal(ext.match(request(), 0)!.route.kind, 'redirect');
});

test('typed_per_filter_config: route beats virtual host beats route config', () => {
  const any = (v: string) => ({ type_url: `type.googleapis.com/google.protobuf.StringValue`, value: Buffer.from(v) });
  const t = compileRouteConfig(
    routeConfig({
      name: 'rc',
      typed_per_filter_config: { a: any('rc-a'), b: any('rc-b'), c: any('rc-c') },
      virtual_hosts: [
        {
          name: 'vh',
          domains: ['*'],
          typed_per_filter_config: { b: any('vh-b'), c: any('vh-c') },
          routes: [{ match: { prefix: '/' }, route: { cluster: 'x' }, typed_per_filter_config: { c: any('route-c') } }],
        },
      ],
    }),
  );
  const route = t.match(request(), 0)!.route;
  assert.equal(route.perFilterConfig('a')?.value.toString(), 'rc-a');
  assert.equal(route.perFilterConfig('b')?.value.toString(), 'vh-b');
  assert.equal(route.perFilterConfig('c')?.value.toString(), 'route-c');
  assert.equal(route.perFilterConfig('d'), undefined);
  assert.equal(t.virtualHosts[0]!.perFilterConfig('c')?.value.toString(), 'vh-c');
});

test('unsupported features become diagnostics: warnings kept, errors thrown', () => {
  const t = table([r('meta', { prefix: '/', dynamic_metadata: [{ filter: 'f', path: [{ key: 'k' }], value: { string_match: { exact: 'v' } } }] }), r('next', { prefix: '/' })]);
  assert.equal(matched(t, {}), 'next', 'dynamic_metadata routes never match');
  assert.deepEqual(t.diagnostics.map((d) => [d.severity, d.path]), [['warning', 'virtual_hosts[0].routes[0].match.dynamic_metadata']]);
  assert.throws(() => table([{ match: { prefix: '/' }, route: { cluster_specifier_plugin: 'p' } }]), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.equal(err.diagnostics[0]!.path, 'virtual_hosts[0].routes[0].route.cluster_specifier_plugin');
    return true;
  });
});

test('referencedClusters lists static clusters from routes, weighted entries and mirrors', () => {
  const t = table([
    { match: { prefix: '/a' }, route: { cluster: 'a', request_mirror_policies: [{ cluster: 'shadow' }] } },
    { match: { prefix: '/w' }, route: { weighted_clusters: { clusters: [{ name: 'w1', weight: { value: 1 } }, { name: 'w2', weight: { value: 1 } }] } } },
  ]);
  assert.deepEqual([...t.referencedClusters].sort(), ['a', 'shadow', 'w1', 'w2']);
});
