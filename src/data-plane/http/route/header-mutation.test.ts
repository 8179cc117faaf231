import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../../shared/errors.ts';
import type { HeaderFormatContext } from './header-mutation.ts';
import { addressWithoutPort, applyHeaderMutation, applyHeaderMutations, compileHeaderMutation, compileHeaderValue, formatHeaderValue } from './header-mutation.ts';
import type { CompileSink } from './matchers.ts';
import { compileRouteConfig, requestHeaderChain, responseHeaderChain } from './route-table.ts';
import { request, routeConfig } from './testdata/helpers.ts';
import type { HeaderValueOption__Output } from '../../../xds/gen/envoy/config/core/v3/HeaderValueOption.ts';

function ctx(over: Partial<HeaderFormatContext> = {}): HeaderFormatContext {
  return {
    downstreamRemoteAddress: '10.1.2.3:5555',
    downstreamLocalAddress: '[fd00::1]:15006',
    protocol: 'HTTP/1.1',
    upstreamRemoteAddress: '10.9.9.9:8080',
    hostname: 'pod-1',
    startTimeMs: Date.UTC(2024, 0, 2, 3, 4, 5, 678),
    requestHeaders: [],
    ...over,
  };
}

function hvo(key: string, value: string, extra: Partial<HeaderValueOption__Output> = {}): HeaderValueOption__Output {
  return { header: { key, value, raw_value: Buffer.alloc(0) }, append: null, append_action: 'APPEND_IF_EXISTS_OR_ADD', keep_empty_value: false, ...extra };
}

function level(adds: HeaderValueOption__Output[], removes: string[] = []) {
  const sink: CompileSink = { diagnostics: [] };
  const m = compileHeaderMutation(adds, removes, 'x', 'request_headers_to_add', 'request_headers_to_remove', sink)!;
  assert.deepEqual(sink.diagnostics, []);
  return m;
}

test('append actions: append, add-if-absent, overwrite-or-add, overwrite-if-exists', () => {
  const headers = ['a', '1', 'b', '2', 'a', '3'];
  applyHeaderMutation(
    headers,
    level([
      hvo('a', 'appended'),
      hvo('b', 'kept?', { append_action: 'ADD_IF_ABSENT' }),
      hvo('c', 'new', { append_action: 'ADD_IF_ABSENT' }),
      hvo('a', 'only', { append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }),
      hvo('d', 'no', { append_action: 'OVERWRITE_IF_EXISTS' }),
      hvo('b', 'replaced', { append_action: 'OVERWRITE_IF_EXISTS' }),
    ]),
    ctx(),
  );
  // Overwrites run first (a → only, b → replaced), then appends (a += appended, c added).
  assert.deepEqual(headers, ['a', 'only', 'b', 'replaced', 'a', 'appended', 'c', 'new']);
});

test('deprecated append: false overwrites; append together with append_action is an error', () => {
  const headers = ['a', '1', 'a', '2'];
  applyHeaderMutation(headers, level([hvo('a', 'x', { append: { value: false } })]), ctx());
  assert.deepEqual(headers, ['a', 'x']);
  const sink: CompileSink = { diagnostics: [] };
  compileHeaderMutation([hvo('a', 'x', { append: { value: true }, append_action: 'ADD_IF_ABSENT' })], [], 'vh', 'request_headers_to_add', 'request_headers_to_remove', sink);
  assert.deepEqual(sink.diagnostics.map((d) => d.path), ['vh.request_headers_to_add[0].append']);
});

test('removals run before adds and remove every occurrence; names are case-insensitive', () => {
  const headers = ['x-drop', '1', 'keep', 'k', 'x-drop', '2'];
  applyHeaderMutation(headers, level([hvo('X-Drop', 'new')], ['X-DROP']), ctx());
  assert.deepEqual(headers, ['keep', 'k', 'x-drop', 'new']);
});

test('empty values are skipped unless keep_empty_value', () => {
  const headers: string[] = [];
  applyHeaderMutation(headers, level([hvo('a', ''), hvo('b', '', { keep_empty_value: true }), hvo('c', '%REQ(missing)%')]), ctx());
  assert.deepEqual(headers, ['b', '']);
});

test('pseudo-headers and host can be neither added nor removed', () => {
  const sink: CompileSink = { diagnostics: [] };
  compileHeaderMutation([hvo(':path', '/x'), hvo('Host', 'h')], [':authority', 'host', 'ok'], 'vh', 'request_headers_to_add', 'request_headers_to_remove', sink);
  assert.deepEqual(sink.diagnostics.map((d) => d.path), ['vh.request_headers_to_remove[0]', 'vh.request_headers_to_remove[1]', 'vh.request_headers_to_add[0].header.key', 'vh.request_headers_to_add[1].header.key']);
});

test('a value without operators compiles to the plain string', () => {
  assert.equal(compileHeaderValue('plain'), 'plain');
  assert.equal(compileHeaderValue('100%% sure'), '100% sure', 'escapes alone stay a plain string');
  assert.notEqual(typeof compileHeaderValue('%HOSTNAME%'), 'string');
});

test('command operators', () => {
  const c = ctx({ requestHeaders: ['x-id', 'abcdef', 'x-b', 'B'] });
  const f = (v: string) => formatHeaderValue(compileHeaderValue(v), c);
  assert.equal(f('%DOWNSTREAM_REMOTE_ADDRESS%'), '10.1.2.3:5555');
  assert.equal(f('ip=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%;'), 'ip=10.1.2.3;');
  assert.equal(f('%DOWNSTREAM_LOCAL_ADDRESS%'), '[fd00::1]:15006');
  assert.equal(f('%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%'), 'fd00::1');
  assert.equal(f('%PROTOCOL%'), 'HTTP/1.1');
  assert.equal(f('%UPSTREAM_REMOTE_ADDRESS%'), '10.9.9.9:8080');
  assert.equal(f('%HOSTNAME%'), 'pod-1');
  assert.equal(f('%START_TIME%'), '2024-01-02T03:04:05.678Z');
  assert.equal(f('%START_TIME(%s)%'), String(Math.floor(Date.UTC(2024, 0, 2, 3, 4, 5, 678) / 1000)));
  assert.equal(f('%REQ(X-ID)%'), 'abcdef');
  assert.equal(f('%REQ(X-ID):3%'), 'abc');
  assert.equal(f('%REQ(x-a?x-b)%'), 'B');
  assert.equal(f('%REQ(x-none)%'), '');
  assert.equal(f('a%%b%HOSTNAME%%%'), 'a%bpod-1%');
  assert.throws(() => compileHeaderValue('%BOGUS%'), /unsupported command operator %BOGUS%/);
  assert.throws(() => compileHeaderValue('%HOSTNAME'), /unterminated/);
});

test('addressWithoutPort handles IPv4, bracketed IPv6 and bare addresses', () => {
  assert.equal(addressWithoutPort('1.2.3.4:80'), '1.2.3.4');
  assert.equal(addressWithoutPort('[::1]:80'), '::1');
  assert.equal(addressWithoutPort('::1'), '::1');
  assert.equal(addressWithoutPort('1.2.3.4'), '1.2.3.4');
});

test('values are formatted against the headers before the level adds anything', () => {
  const headers = ['x-a', 'orig'];
  applyHeaderMutation(headers, level([hvo('x-a', 'new', { append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }), hvo('x-copy', '%REQ(x-a)%')]), ctx({ requestHeaders: headers }));
  assert.deepEqual(headers, ['x-a', 'new', 'x-copy', 'orig']);
});

function chainConfig(mostSpecificWins: boolean): object {
  const set = (v: string) => [{ header: { key: 'x-level', value: v }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }];
  const add = (v: string) => [{ header: { key: 'x-trail', value: v } }];
  return {
    name: 'rc',
    most_specific_header_mutations_wins: mostSpecificWins,
    request_headers_to_add: [...set('rc'), ...add('rc')],
    response_headers_to_add: set('rc'),
    virtual_hosts: [
      {
        name: 'vh',
        domains: ['*'],
        request_headers_to_add: [...set('vh'), ...add('vh')],
        routes: [
          {
            match: { prefix: '/w' },
            request_headers_to_add: [...set('route'), ...add('route')],
            route: { weighted_clusters: { clusters: [{ name: 'a', weight: { value: 1 }, request_headers_to_add: [...set('cluster'), ...add('cluster')] }] } },
          },
          { match: { prefix: '/' }, request_headers_to_add: [...set('route'), ...add('route')], route: { cluster: 'c' } },
        ],
      },
    ],
  };
}

test('levels apply route → virtual host → route config by default, so the least specific overwrite wins', () => {
  const t = compileRouteConfig(routeConfig(chainConfig(false)));
  const m = t.match(request({ path: '/x' }), 0)!;
  const headers: string[] = [];
  applyHeaderMutations(headers, requestHeaderChain(m.route), ctx());
  assert.deepEqual(headers, ['x-level', 'rc', 'x-trail', 'route', 'x-trail', 'vh', 'x-trail', 'rc']);
  const resp: string[] = [];
  applyHeaderMutations(resp, responseHeaderChain(m.route), ctx());
  assert.deepEqual(resp, ['x-level', 'rc']);
  const w = t.match(request({ path: '/w' }), 0)!;
  const wh: string[] = [];
  applyHeaderMutations(wh, requestHeaderChain(w.route, w.route.route!.pickCluster(request(), 0)), ctx());
  assert.deepEqual(wh, ['x-level', 'rc', 'x-trail', 'cluster', 'x-trail', 'route', 'x-trail', 'vh', 'x-trail', 'rc']);
});

test('most_specific_header_mutations_wins reverses the order, so the route (then weighted cluster) wins', () => {
  const t = compileRouteConfig(routeConfig(chainConfig(true)));
  const headers: string[] = [];
  applyHeaderMutations(headers, requestHeaderChain(t.match(request({ path: '/x' }), 0)!.route), ctx());
  assert.deepEqual(headers, ['x-level', 'route', 'x-trail', 'rc', 'x-trail', 'vh', 'x-trail', 'route']);
  const w = t.match(request({ path: '/w' }), 0)!;
  const wh: string[] = [];
  applyHeaderMutations(wh, requestHeaderChain(w.route, w.route.route!.pickCluster(request(), 0)), ctx());
  assert.equal(wh[1], 'cluster');
});

test('bad header config is a ConfigError at the field path', () => {
  assert.throws(
    () =>
      compileRouteConfig(
        routeConfig({
          name: 'rc',
          virtual_hosts: [{ name: 'vh', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'c' }, response_headers_to_add: [{ header: { key: 'x', value: '%NOPE%' } }] }] }],
        }),
      ),
    (err: unknown) => err instanceof ConfigError && err.diagnostics[0]!.path === 'virtual_hosts[0].routes[0].response_headers_to_add[0].header.value',
  );
  assert.throws(
    () => compileRouteConfig(routeConfig({ name: 'rc', request_headers_to_remove: [':path'], virtual_hosts: [] })),
    (err: unknown) => err instanceof ConfigError && err.diagnostics[0]!.path === 'request_headers_to_remove[0]',
  );
});
