import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { compileExtAuthz, ExtAuthzFilter, EXT_AUTHZ_FILTER_TYPE, authorizationClientClass } from './ext-authz.ts';
import { StatsStore } from '../../stats/store.ts';
import { typeForUrl } from '../../../xds/any.ts';
import { decodeProtoJson } from '../../../xds/proto-json.ts';
import { ConfigError } from '../../../shared/errors.ts';
import type { FilterEncoder, FilterRequest } from './types.ts';
import type { ExtAuthz__Output } from '../../../xds/gen/envoy/extensions/filters/http/ext_authz/v3/ExtAuthz.ts';
import type { CheckResponse__Output } from '../../../xds/gen/envoy/service/auth/v3/CheckResponse.ts';
import type { Logger } from '../../../shared/log.ts';
import { packAny } from '../../../xds/any.ts';
import type { Any__Output } from '../../../xds/gen/google/protobuf/Any.ts';
import { createRbacFilter, RBAC_FILTER_TYPE } from './rbac.ts';

const noLog = { warn: () => {}, info: () => {} } as unknown as Logger;

function decode(json: Record<string, unknown>): ExtAuthz__Output {
  const r = decodeProtoJson<ExtAuthz__Output>(typeForUrl(EXT_AUTHZ_FILTER_TYPE), json);
  if (r.value === undefined) throw new Error(r.diagnostics.map((d) => `${d.path}: ${d.message}`).join('\n'));
  return r.value;
}

interface Outcome {
  kind: 'continue' | 'reply';
  status?: number;
  body?: string;
  responseHeaders?: string[];
}

function fakeRequest(headers: string[] = [], path = '/p?q=1') {
  const encoders: FilterEncoder[] = [];
  let settle!: (o: Outcome) => void;
  const outcome = new Promise<Outcome>((r) => (settle = r));
  const req: FilterRequest = {
    head: { method: 'POST', path, authority: 'svc.local', scheme: 'http', headers, protocol: 'HTTP/2', contentLength: 3, hasBody: true, upgrade: '' } as FilterRequest['head'],
    matchedRoute: undefined,
    matchedVirtualHost: undefined,
    isGrpc: false,
    conn: {
      remoteAddress: '10.0.0.1', remotePort: 5555, localAddress: '10.0.0.2', localPort: 80, isTls: true, serverName: 'svc.local', originalDstAddress: '10.0.0.2', originalDstPort: 80,
      peerCertificate: { presented: true, validated: true, uriSans: ['spiffe://cluster.local/ns/default/sa/client'], dnsSans: [], subject: 'CN=client' },
    },
    dynamicMetadata: new Map(),
    clearRouteCache: () => {},
    continueDecoding: () => settle({ kind: 'continue' }),
    sendLocalReply: (status, body) => {
      const h: string[] = [];
      for (const e of encoders) e.onResponseHeaders?.(status, h);
      settle({ kind: 'reply', status, body, responseHeaders: h });
    },
    respondHeadersOnly: () => {},
    addEncoder: (e) => encoders.push(e),
  };
  return { req, outcome };
}

function build(json: Record<string, unknown>, answer?: (r: unknown) => CheckResponse__Output | Error) {
  const store = new StatsStore();
  const f = new ExtAuthzFilter(
    'authz',
    compileExtAuthz(decode(json)),
    { statPrefix: 'in', store, log: noLog, random: () => 0 },
    answer === undefined
      ? undefined
      : (req, _md, _deadline, cb) => {
          const a = answer(req);
          setImmediate(() => (a instanceof Error ? cb(Object.assign(a, { code: 14 }) as grpc.ServiceError) : cb(null, a)));
        },
  );
  return { f, stat: (n: string) => store.counter(`http.in.ext_authz.${n}`).value };
}

const target = { grpc_service: { envoy_grpc: { cluster_name: 'authz' } } };
const ok = (extra: Record<string, unknown> = {}): CheckResponse__Output => ({ status: { code: 0, message: '', details: [] }, dynamic_metadata: null, ok_response: { headers: [], headers_to_remove: [], response_headers_to_add: [], query_parameters_to_set: [], query_parameters_to_remove: [], dynamic_metadata: null, ...extra }, http_response: 'ok_response' }) as CheckResponse__Output;

describe('ext_authz filter', () => {
  it('builds the CheckRequest from the request and its connection', async () => {
    let seen: Record<string, any> = {};
    const { f } = build(target, (r) => {
      seen = r as Record<string, any>;
      return ok();
    });
    const r = fakeRequest(['x-request-id', 'rid', 'x-a', '1', 'x-a', '2']);
    assert.equal(f.decodeHeaders(r.req), false);
    assert.equal((await r.outcome).kind, 'continue');
    const a = seen.attributes;
    assert.equal(a.source.principal, 'spiffe://cluster.local/ns/default/sa/client');
    assert.deepEqual(a.source.address.socket_address, { address: '10.0.0.1', port_value: 5555 });
    assert.deepEqual(a.destination.address.socket_address, { address: '10.0.0.2', port_value: 80 });
    assert.equal(a.request.http.id, 'rid');
    assert.equal(a.request.http.headers['x-a'], '1,2');
    assert.equal(a.request.http.headers[':path'], '/p?q=1');
    assert.equal(a.request.http.query, 'q=1');
    assert.equal(a.request.http.size, 3);
    assert.equal(a.request.http.protocol, 'HTTP/2');
  });

  it('OK: sets, appends and removes request headers (never Host); response_headers_to_add reach the response', async () => {
    const { f, stat } = build(target, () =>
      ok({
        headers: [
          { header: { key: 'x-set', value: 'new' }, append: { value: false } },
          { header: { key: 'x-add', value: 'b' }, append: { value: true } },
          { header: { key: 'x-absent', value: 'v' }, append: null, append_action: 'ADD_IF_ABSENT' },
          { header: { key: 'host', value: 'evil' }, append: { value: false } },
        ],
        headers_to_remove: ['x-drop'],
      }),
    );
    const h = ['x-set', 'old', 'x-add', 'a', 'x-drop', '1', 'x-absent', 'keep'];
    const r = fakeRequest(h);
    f.decodeHeaders(r.req);
    assert.equal((await r.outcome).kind, 'continue');
    assert.deepEqual(h, ['x-set', 'new', 'x-add', 'a', 'x-absent', 'keep', 'x-add', 'b']);
    assert.equal(stat('ok'), 1);
  });

  it('denied: the denied_response status, headers and body (403 by default)', async () => {
    const { f, stat } = build(target, () => ({ status: { code: 16, message: '', details: [] }, denied_response: { status: { code: 'Unauthorized' }, headers: [{ header: { key: 'x-why', value: 'nope' }, append: { value: false } }], body: 'go away' }, http_response: 'denied_response', dynamic_metadata: null }) as unknown as CheckResponse__Output);
    const r = fakeRequest();
    f.decodeHeaders(r.req);
    const o = await r.outcome;
    assert.equal(o.status, 401);
    assert.equal(o.body, 'go away');
    assert.deepEqual(o.responseHeaders, ['x-why', 'nope']);
    assert.equal(stat('denied'), 1);
    const d = build(target, () => ({ status: { code: 7, message: '', details: [] }, http_response: undefined, dynamic_metadata: null }) as unknown as CheckResponse__Output);
    const r2 = fakeRequest();
    d.f.decodeHeaders(r2.req);
    assert.equal((await r2.outcome).status, 403);
  });

  it('errors: status_on_error, or failure_mode_allow', async () => {
    const down = build({ ...target, status_on_error: { code: 'ServiceUnavailable' } }, () => new Error('unavailable'));
    const r = fakeRequest();
    down.f.decodeHeaders(r.req);
    assert.deepEqual(await r.outcome, { kind: 'reply', status: 503, body: '', responseHeaders: [] });
    assert.equal(down.stat('error'), 1);
    const open = build({ ...target, failure_mode_allow: true, failure_mode_allow_header_add: true }, () => new Error('unavailable'));
    const h: string[] = [];
    const r2 = fakeRequest(h);
    open.f.decodeHeaders(r2.req);
    assert.equal((await r2.outcome).kind, 'continue');
    assert.deepEqual(h, ['x-envoy-auth-failure-mode-allowed', 'true']);
    assert.equal(open.stat('failure_mode_allowed'), 1);
  });

  it('filter_enabled_metadata: with Istio\'s shadow RBAC in front, only requests a CUSTOM rule matches are checked', async () => {
    // What Istio's CUSTOM action translates to (control-plane translate/authz.ts): an RBAC filter whose shadow
    // rules hold the CUSTOM rules, then ext_authz enabled by the matched policy id's prefix.
    const store = new StatsStore();
    const rbacJson = {
      shadow_rules: { action: 'DENY', policies: { 'istio-ext-authz-ns[foo]-policy[ext]-rule[0]': { permissions: [{ url_path: { path: { exact: '/headers' } } }], principals: [{ any: true }] } } },
      shadow_rules_stat_prefix: 'istio_ext_authz_',
    };
    const r = decodeProtoJson<object>(typeForUrl(RBAC_FILTER_TYPE), rbacJson);
    assert.ok(r.value, JSON.stringify(r.diagnostics));
    const rbac = createRbacFilter('envoy.filters.http.rbac', packAny(RBAC_FILTER_TYPE, r.value) as Any__Output, { statPrefix: 'in', store, log: noLog, random: () => 0 });
    const checks: unknown[] = [];
    const { f, stat } = build({
      ...target,
      filter_enabled_metadata: { filter: 'envoy.filters.http.rbac', path: [{ key: 'istio_ext_authz_shadow_effective_policy_id' }], value: { string_match: { prefix: 'istio-ext-authz' } } },
    }, (req) => {
      checks.push(req);
      return ok();
    });
    const matched = fakeRequest([], '/headers?x=1');
    assert.equal(rbac.decodeHeaders(matched.req), true, 'shadow rules never enforce');
    assert.deepEqual(matched.req.dynamicMetadata.get('envoy.filters.http.rbac'), {
      'istio_ext_authz_shadow_effective_policy_id': 'istio-ext-authz-ns[foo]-policy[ext]-rule[0]',
      'istio_ext_authz_shadow_engine_result': 'denied',
    });
    assert.equal(f.decodeHeaders(matched.req), false, 'waits for the check');
    assert.equal((await matched.outcome).kind, 'continue');
    assert.equal(checks.length, 1);
    const other = fakeRequest([], '/ip');
    assert.equal(rbac.decodeHeaders(other.req), true);
    assert.deepEqual(other.req.dynamicMetadata.get('envoy.filters.http.rbac'), { 'istio_ext_authz_shadow_engine_result': 'allowed' });
    assert.equal(f.decodeHeaders(other.req), true, 'not checked: continues at once');
    assert.equal(checks.length, 1);
    assert.equal(stat('disabled'), 1);
    assert.equal(stat('ok'), 1);
    assert.equal(store.counter('http.in.rbac.istio_ext_authz_shadow_denied').value, 1);
    assert.equal(store.counter('http.in.rbac.istio_ext_authz_shadow_allowed').value, 1);
    // Another filter's policy id (a dry-run policy, another prefix) does not enable it.
    const dry = fakeRequest([], '/headers');
    dry.req.dynamicMetadata.set('envoy.filters.http.rbac', { istio_ext_authz_shadow_effective_policy_id: 'ns[foo]-policy[x]-rule[0]' });
    assert.equal(f.decodeHeaders(dry.req), true);
    assert.equal(checks.length, 1);
    // A bad matcher is a config error naming the field.
    assert.throws(() => compileExtAuthz(decode({ ...target, filter_enabled_metadata: { filter: 'f', path: [{ key: 'k' }], value: { string_match: { safe_regex: { regex: '(' } } } } })), (e: unknown) => e instanceof ConfigError && e.diagnostics.some((d) => d.path.startsWith('filter_enabled_metadata.value.string_match')));
  });

  it('refuses what it does not implement', () => {
    assert.throws(
      () => compileExtAuthz(decode({ http_service: { server_uri: { uri: 'http://a', cluster: 'a', timeout: '1s' } } })),
      (e: unknown) => e instanceof ConfigError && e.diagnostics[0]!.path === 'http_service' && e.diagnostics[0]!.code === 'SLOOP_ERR_CONFIG_UNSUPPORTED',
    );
    assert.throws(() => compileExtAuthz(decode({ ...target, with_request_body: { max_request_bytes: 10 } })), /with_request_body is not supported/);
  });

  describe('over gRPC (google_grpc target_uri)', () => {
    const server = new grpc.Server();
    after(() => server.forceShutdown());

    it('envoy_grpc with an Istio cluster name (outbound|PORT||HOST, no valid :authority): the call still goes through', async () => {
      const grpcServer = new grpc.Server();
      let calls = 0;
      grpcServer.addService(authorizationClientClass().service, {
        Check(_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) {
          calls++;
          cb(null, { status: { code: 0 } });
        },
      });
      const port = await new Promise<number>((res, rej) => grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
      try {
        const store = new StatsStore();
        const cluster = 'outbound|9000||ext-authz.foo.svc.cluster.local';
        const clusters = { get: (n: string) => (n === cluster ? { chooseHost: () => ({ address: '127.0.0.1', port }) } : undefined) };
        const f = new ExtAuthzFilter('authz', compileExtAuthz(decode({ grpc_service: { envoy_grpc: { cluster_name: cluster }, timeout: '2s' } })), {
          statPrefix: 'in', store, log: noLog, random: () => 0, clusters: clusters as never,
        });
        const r = fakeRequest();
        f.decodeHeaders(r.req);
        assert.equal((await r.outcome).kind, 'continue');
        assert.equal(store.counter('http.in.ext_authz.ok').value, 1);
        assert.equal(calls, 1);
      } finally {
        grpcServer.forceShutdown();
      }
    });

    it('an authorizer slower than grpc_service.timeout is an error (status_on_error)', async () => {
      server.addService(authorizationClientClass().service, { Check() {} /* never answers */ });
      const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
      const { f, stat } = build({ grpc_service: { google_grpc: { target_uri: `127.0.0.1:${port}`, stat_prefix: 'authz' }, timeout: '0.2s' } });
      const r = fakeRequest();
      const t0 = Date.now();
      f.decodeHeaders(r.req);
      const o = await r.outcome;
      assert.equal(o.status, 403);
      assert.ok(Date.now() - t0 >= 150, 'waited for the deadline');
      assert.equal(stat('error'), 1);
    });
  });
});
