import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { compileFault, FaultFilter } from './fault.ts';
import { StatsStore } from '../../stats/store.ts';
import type { FilterEncoder, FilterRequest } from './types.ts';
import type { HTTPFault__Output } from '../../../xds/gen/envoy/extensions/filters/http/fault/v3/HTTPFault.ts';
import type { Logger } from '../../../shared/log.ts';

const ALL = { numerator: 100, denominator: 'HUNDRED' as const };
const noLog = { warn: () => {} } as unknown as Logger;

function fault(over: Partial<HTTPFault__Output>): HTTPFault__Output {
  return { delay: null, abort: null, upstream_cluster: '', headers: [], downstream_nodes: [], max_active_faults: null, response_rate_limit: null, disable_downstream_cluster_stats: false, ...over } as HTTPFault__Output;
}

/** A FilterRequest that records what the filter did. */
function fakeRequest(headers: string[] = []) {
  const log: string[] = [];
  const encoders: FilterEncoder[] = [];
  const req: FilterRequest = {
    head: { method: 'GET', path: '/', authority: 'x', scheme: 'http', headers, protocol: 'HTTP/1.1', contentLength: -1, hasBody: false, upgrade: '' } as FilterRequest['head'],
    matchedRoute: undefined,
    matchedVirtualHost: undefined,
    isGrpc: false,
    conn: { remoteAddress: '127.0.0.1', remotePort: 1, localAddress: '127.0.0.1', localPort: 2, isTls: false, serverName: '', originalDstAddress: '127.0.0.1', originalDstPort: 2 },
    dynamicMetadata: new Map(),
    clearRouteCache: () => log.push('clear'),
    continueDecoding: () => log.push('continue'),
    sendLocalReply: (status, body, grpc) => log.push(`reply ${status} ${body}${grpc === undefined ? '' : ` grpc ${grpc}`}`),
    respondHeadersOnly: (status) => log.push(`headers ${status}`),
    addEncoder: (e) => encoders.push(e),
  };
  return { req, log, done: () => encoders.forEach((e) => e.onDone?.()) };
}

function filter(cfg: HTTPFault__Output, random = () => 0) {
  const store = new StatsStore();
  const f = new FaultFilter('envoy.filters.http.fault', compileFault(cfg), { statPrefix: 'in', store, log: noLog, random });
  return { f, stat: (n: string) => store.counter(`http.in.fault.${n}`).value, gauge: () => store.gauge('http.in.fault.active_faults').value };
}

describe('fault filter', () => {
  it('aborts with the configured status and counts it', () => {
    const { f, stat } = filter(fault({ abort: { http_status: 503, percentage: ALL, error_type: 'http_status' } }));
    const r = fakeRequest();
    assert.equal(f.decodeHeaders(r.req), false);
    assert.deepEqual(r.log, ['reply 503 fault filter abort']);
    assert.equal(stat('aborts_injected'), 1);
  });

  it('delays on a timer, then continues; the active-fault gauge follows the request', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const { f, stat, gauge } = filter(fault({ delay: { fixed_delay: { seconds: '2', nanos: 0 }, percentage: ALL, fault_delay_secifier: 'fixed_delay' } }));
    const r = fakeRequest();
    assert.equal(f.decodeHeaders(r.req), false);
    assert.equal(gauge(), 1);
    t.mock.timers.tick(1999);
    assert.deepEqual(r.log, []);
    t.mock.timers.tick(1);
    assert.deepEqual(r.log, ['continue']);
    assert.equal(stat('delays_injected'), 1);
    r.done();
    assert.equal(gauge(), 0);
  });

  it('a request that ends during the delay cancels it', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const { f } = filter(fault({ delay: { fixed_delay: { seconds: '1', nanos: 0 }, percentage: ALL, fault_delay_secifier: 'fixed_delay' } }));
    const r = fakeRequest();
    f.decodeHeaders(r.req);
    r.done();
    t.mock.timers.tick(1000);
    assert.deepEqual(r.log, []);
  });

  it('percentages compare against the injected random number', () => {
    const half = fault({ abort: { http_status: 500, percentage: { numerator: 50, denominator: 'HUNDRED' }, error_type: 'http_status' } });
    assert.equal(filter(half, () => 0.49).f.decodeHeaders(fakeRequest().req), false);
    assert.equal(filter(half, () => 0.5).f.decodeHeaders(fakeRequest().req), true);
  });

  it('header matchers and downstream_nodes gate the fault', () => {
    const cfg = fault({
      abort: { http_status: 500, percentage: ALL, error_type: 'http_status' },
      headers: [{ name: 'x-test', present_match: true, header_match_specifier: 'present_match' } as never],
      downstream_nodes: ['node-a'],
    });
    const { f } = filter(cfg);
    assert.equal(f.decodeHeaders(fakeRequest(['x-test', '1']).req), true);
    assert.equal(f.decodeHeaders(fakeRequest(['x-envoy-downstream-service-node', 'node-a']).req), true);
    assert.equal(f.decodeHeaders(fakeRequest(['x-test', '1', 'x-envoy-downstream-service-node', 'node-a']).req), false);
  });

  it('gRPC aborts carry the grpc status; per-downstream-cluster stats', () => {
    const { f, stat } = filter(fault({ abort: { grpc_status: 14, percentage: ALL, error_type: 'grpc_status' } }));
    const r = fakeRequest(['x-envoy-downstream-service-cluster', 'web']);
    f.decodeHeaders(r.req);
    assert.deepEqual(r.log, ['reply 200 fault filter abort grpc 14']);
    assert.equal(stat('web.aborts_injected'), 1);
    assert.equal(stat('aborts_injected'), 1);
  });

  it('refuses response_rate_limit and out-of-range statuses', () => {
    assert.throws(() => compileFault(fault({ response_rate_limit: {} as never })), { code: 'SLOOP_ERR_CONFIG_INVALID' });
    assert.throws(() => compileFault(fault({ abort: { http_status: 100, percentage: ALL, error_type: 'http_status' } })), /http_status/);
  });
});
