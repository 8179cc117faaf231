import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { packAny } from '../../../xds/any.ts';
import { decodeProtoJson } from '../../../xds/proto-json.ts';
import { typeForUrl } from '../../../xds/any.ts';
import type { Any__Output } from '../../../xds/gen/google/protobuf/Any.ts';
import { StatsStore } from '../../stats/store.ts';
import type { Logger } from '../../../shared/log.ts';
import type { CompiledRoute } from '../route/route-table.ts';
import type { FilterRequest } from './types.ts';
import { createRbacFilter, RBAC_FILTER_TYPE, RBAC_PER_ROUTE_TYPE } from './rbac.ts';

const noLog = { warn: () => {}, debug: () => {} } as unknown as Logger;
const ANY = [{ any: true }];

/** An Any built from proto JSON (so defaults and enums are what the bootstrap decoder produces). */
function any(typeUrl: string, json: unknown): Any__Output {
  const r = decodeProtoJson<object>(typeForUrl(typeUrl), json);
  assert.ok(r.value, JSON.stringify(r.diagnostics));
  return packAny(typeUrl, r.value) as Any__Output;
}

function request(path: string, method = 'GET', perRoute?: Any__Output) {
  const log: string[] = [];
  const route = perRoute === undefined ? undefined : ({ kind: 'route', perFilterConfig: (n: string) => (n === 'envoy.filters.http.rbac' ? perRoute : undefined) } as unknown as CompiledRoute);
  const req: FilterRequest = {
    head: { method, path, authority: 'x', scheme: 'http', headers: [], protocol: 'HTTP/1.1', contentLength: -1, hasBody: false, upgrade: '' },
    matchedRoute: route,
    matchedVirtualHost: undefined,
    isGrpc: false,
    conn: { remoteAddress: '127.0.0.1', remotePort: 1, localAddress: '127.0.0.1', localPort: 2, isTls: false, serverName: '', originalDstAddress: '127.0.0.1', originalDstPort: 2 },
    dynamicMetadata: new Map(),
    clearRouteCache: () => {},
    continueDecoding: () => log.push('continue'),
    sendLocalReply: (status, body) => log.push(`reply ${status} ${body}`),
    respondHeadersOnly: () => {},
    addEncoder: () => {},
  };
  return { req, log };
}

describe('envoy.filters.http.rbac', () => {
  const config = any(RBAC_FILTER_TYPE, {
    rules: { action: 'DENY', policies: { admin: { permissions: [{ url_path: { path: { prefix: '/admin' } } }], principals: ANY } } },
    rules_stat_prefix: 'enf_',
    shadow_rules: { action: 'ALLOW', policies: { gets: { permissions: [{ header: { name: ':method', string_match: { exact: 'GET' } } }], principals: ANY } } },
    shadow_rules_stat_prefix: 'istio_dry_run_allow_',
  });

  it('enforces rules with 403 "RBAC: access denied", evaluates shadow rules into dynamic metadata and stats', () => {
    const store = new StatsStore();
    const f = createRbacFilter('envoy.filters.http.rbac', config, { statPrefix: 'in', store, log: noLog, random: Math.random });
    const a = request('/admin/x');
    assert.equal(f.decodeHeaders(a.req), false);
    assert.deepEqual(a.log, ['reply 403 RBAC: access denied']);
    assert.deepEqual(a.req.dynamicMetadata.get('envoy.filters.http.rbac'), {
      istio_dry_run_allow_shadow_effective_policy_id: 'gets',
      istio_dry_run_allow_shadow_engine_result: 'allowed',
    });
    const b = request('/ok', 'POST');
    assert.equal(f.decodeHeaders(b.req), true);
    assert.deepEqual(b.req.dynamicMetadata.get('envoy.filters.http.rbac'), { istio_dry_run_allow_shadow_engine_result: 'denied' });
    const v = (n: string): number => store.counter(n).value;
    assert.equal(v('http.in.rbac.enf_denied'), 1);
    assert.equal(v('http.in.rbac.enf_allowed'), 1);
    assert.equal(v('http.in.rbac.istio_dry_run_allow_shadow_allowed'), 1);
    assert.equal(v('http.in.rbac.istio_dry_run_allow_shadow_denied'), 1);
  });

  it('RBACPerRoute: without rbac the filter is off (not even shadow); with rbac it replaces the filter config', () => {
    const store = new StatsStore();
    const f = createRbacFilter('envoy.filters.http.rbac', config, { statPrefix: 'in', store, log: noLog, random: Math.random });
    const off = request('/admin', 'GET', any(RBAC_PER_ROUTE_TYPE, {}));
    assert.equal(f.decodeHeaders(off.req), true);
    assert.equal(off.req.dynamicMetadata.size, 0);
    const closed = request('/ok', 'GET', any(RBAC_PER_ROUTE_TYPE, { rbac: { rules: { action: 'ALLOW' } } }));
    assert.equal(f.decodeHeaders(closed.req), false);
    assert.deepEqual(closed.log, ['reply 403 RBAC: access denied']);
  });

  it('LOG rules allow and set the envoy.common access_log_hint', () => {
    const store = new StatsStore();
    const cfg = any(RBAC_FILTER_TYPE, { rules: { action: 'LOG', policies: { p: { permissions: [{ url_path: { path: { exact: '/x' } } }], principals: ANY } } } });
    const f = createRbacFilter('rbac', cfg, { statPrefix: 'in', store, log: noLog, random: Math.random });
    const r = request('/x?q');
    assert.equal(f.decodeHeaders(r.req), true);
    assert.deepEqual(r.req.dynamicMetadata.get('envoy.common'), { access_log_hint: true });
    const r2 = request('/y');
    assert.equal(f.decodeHeaders(r2.req), true);
    assert.deepEqual(r2.req.dynamicMetadata.get('envoy.common'), { access_log_hint: false });
  });

  it('matcher-based configs are refused', () => {
    const cfg = any(RBAC_FILTER_TYPE, { track_per_rule_stats: true });
    assert.throws(() => createRbacFilter('rbac', cfg, { statPrefix: 'in', store: new StatsStore(), log: noLog, random: Math.random }), /track_per_rule_stats/);
  });
});
