import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, Gauge, Histogram, StatsStore } from './store.ts';
import {
  clusterStats,
  httpConnectionManagerStats,
  HttpConnectionManagerListenerStats,
  listenerStatAddress,
  listenerStats,
  serverStats,
  tcpProxyStats,
} from './envoy-stats.ts';

const camel = (snake: string): string => snake.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());

/**
 * Every stat property must be the camelCase of its Envoy name under `prefix`, which catches a
 * property wired to the wrong stat name. Returns how many stats were checked.
 */
function checkNames(bundle: object, prefix: string): number {
  let n = 0;
  for (const [prop, v] of Object.entries(bundle)) {
    if (v instanceof Counter || v instanceof Gauge || v instanceof Histogram) {
      assert.ok(v.name.startsWith(prefix), `${prop}: ${v.name} is not under ${prefix}`);
      assert.equal(camel(v.name.slice(prefix.length)), prop, `${prop} → ${v.name}`);
      n++;
    }
  }
  return n;
}

test('HTTP connection manager stats use Envoy names under http.<stat_prefix>.', () => {
  const store = new StatsStore();
  const s = httpConnectionManagerStats(store, 'ingress_http');
  assert.ok(checkNames(s, 'http.ingress_http.') >= 60);
  assert.equal(s.downstreamRqTime.unit, 'ms');
  assert.equal(s.downstreamRq2xx.name, 'http.ingress_http.downstream_rq_2xx');
  assert.equal(s.noRoute.name, 'http.ingress_http.no_route');
  // Building the bundle twice shares the same stats.
  assert.equal(httpConnectionManagerStats(store, 'ingress_http').downstreamRqTotal, s.downstreamRqTotal);
});

test('chargeResponse counts the status class and completed', () => {
  const store = new StatsStore();
  const s = httpConnectionManagerStats(store, 'p');
  s.chargeResponse(204);
  s.chargeResponse(503);
  s.chargeResponse(503);
  s.chargeResponse(99); // no class, still completed
  assert.equal(s.downstreamRq2xx.value, 1);
  assert.equal(s.downstreamRq5xx.value, 2);
  assert.equal(s.downstreamRqCompleted.value, 4);
  const l = new HttpConnectionManagerListenerStats(store, listenerStatAddress('0.0.0.0', 15006), 'p');
  l.chargeResponse(404);
  assert.equal(store.counter('listener.0.0.0.0_15006.http.p.downstream_rq_4xx').value, 1);
});

test('cluster stats: Envoy names, lazy per-code counters and circuit breaker gauges', () => {
  const store = new StatsStore();
  const c = clusterStats(store, 'outbound|9080||reviews.default.svc.cluster.local');
  const prefix = 'cluster.outbound|9080||reviews.default.svc.cluster.local.';
  assert.ok(checkNames(c, prefix) >= 90);
  assert.equal(c.membershipHealthy.importMode, 'never_import');
  assert.equal(c.upstreamCxActive.importMode, 'accumulate');
  assert.equal(store.counter(prefix + 'upstream_rq_200').isUsed, false);
  c.chargeResponse(200);
  c.chargeResponse(200);
  c.chargeResponse(503);
  assert.equal(c.upstreamRqCode(200).value, 2);
  assert.equal(c.upstreamRqCode(200), store.counter(prefix + 'upstream_rq_200'));
  assert.equal(c.upstreamRq2xx.value, 2);
  assert.equal(c.upstreamRq5xx.value, 1);
  assert.equal(c.upstreamRqCompleted.value, 3);
  assert.equal(c.circuitBreakers.default.rqOpen.name, prefix + 'circuit_breakers.default.rq_open');
  assert.equal(c.circuitBreakers.high.cxOpen.name, prefix + 'circuit_breakers.high.cx_open');
  assert.equal(c.circuitBreakers.default.remainingRq, null);
  const tracked = clusterStats(store, 'x', { trackRemaining: { default: true } });
  assert.equal(tracked.circuitBreakers.default.remainingRq?.name, 'cluster.x.circuit_breakers.default.remaining_rq');
  assert.equal(clusterStats(store, 'long.name', { altStatName: 'short' }).upstreamRqTotal.name, 'cluster.short.upstream_rq_total');
});

test('listener, tcp proxy and server stats', () => {
  const store = new StatsStore();
  assert.equal(listenerStatAddress('::', 80), '[::]:80');
  const l = listenerStats(store, listenerStatAddress('0.0.0.0', 15001));
  assert.ok(checkNames(l, 'listener.0.0.0.0_15001.') >= 12);
  assert.equal(listenerStats(store, listenerStatAddress('::', 80)).downstreamCxTotal.name, 'listener.[__]_80.downstream_cx_total');
  const t = tcpProxyStats(store, 'outbound|3306||mysql');
  assert.ok(checkNames(t, 'tcp.outbound|3306||mysql.') >= 12);
  const s = serverStats(store);
  assert.ok(checkNames(s, 'server.') >= 17);
  assert.equal(s.live.importMode, 'never_import');
});
