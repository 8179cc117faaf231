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

function fakeRequest(headers: string[] = []) {
  const encoders: FilterEncoder[] = [];
  let settle!: (o: Outcome) => void;
  const outcome = new Promise<Outcome>((r) => (settle = r));
  const req: FilterRequest = {
    head: { method: 'POST', path: '/p?q=1', authority: 'svc.local', scheme: 'http', headers, protocol: 'HTTP/2', contentLength: 3, hasBody: true, upgrade: '' } as FilterRequest['head'],
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
