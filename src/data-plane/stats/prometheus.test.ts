import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StatsStore } from './store.ts';
import { compareStatNames, escapeLabelValue, renderPrometheus } from './prometheus.ts';

test('renders counters, gauges and histograms grouped and sorted as Envoy does', () => {
  const store = new StatsStore();
  const ingress = store.scope('http.ingress_http');
  ingress.counter('downstream_rq_2xx').inc(3);
  ingress.counter('downstream_rq_5xx').inc();
  ingress.counter('downstream_rq_total').inc(4);
  const cluster = store.scope('cluster.service1');
  cluster.counter('upstream_rq_200').inc(3);
  cluster.counter('upstream_rq_503').inc();
  store.gauge('server.live', 'never_import').set(1);
  store.scope('listener.0.0.0.0:15001').gauge('downstream_cx_active').set(2);
  const h = cluster.histogram('upstream_rq_time', 'ms');
  h.record(3);
  h.record(7);

  const expected = [
    '# TYPE envoy_cluster_upstream_rq counter',
    'envoy_cluster_upstream_rq{envoy_response_code="200",envoy_cluster_name="service1"} 3',
    'envoy_cluster_upstream_rq{envoy_response_code="503",envoy_cluster_name="service1"} 1',
    '# TYPE envoy_http_downstream_rq_total counter',
    'envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix="ingress_http"} 4',
    '# TYPE envoy_http_downstream_rq_xx counter',
    'envoy_http_downstream_rq_xx{envoy_response_code_class="2",envoy_http_conn_manager_prefix="ingress_http"} 3',
    'envoy_http_downstream_rq_xx{envoy_response_code_class="5",envoy_http_conn_manager_prefix="ingress_http"} 1',
    '# TYPE envoy_listener_downstream_cx_active gauge',
    'envoy_listener_downstream_cx_active{envoy_listener_address="0.0.0.0_15001"} 2',
    '# TYPE envoy_server_live gauge',
    'envoy_server_live{} 1',
    '# TYPE envoy_cluster_upstream_rq_time histogram',
    ...[0.5, 1].map((le) => `envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="service1",le="${le}"} 0`),
    'envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="service1",le="5"} 1',
    ...[10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000].map(
      (le) => `envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="service1",le="${le}"} 2`,
    ),
    'envoy_cluster_upstream_rq_time_bucket{envoy_cluster_name="service1",le="+Inf"} 2',
    'envoy_cluster_upstream_rq_time_sum{envoy_cluster_name="service1"} 10',
    'envoy_cluster_upstream_rq_time_count{envoy_cluster_name="service1"} 2',
    '',
  ].join('\n');
  assert.equal(renderPrometheus(store), expected);
});

test('real Envoy output: cluster `qwen3:0.6b` (katanemo/plano#504) splits at the dot after sanitizing ":"', () => {
  const store = new StatsStore();
  store.scope('cluster.qwen3:0.6b').counter('assignment_stale');
  assert.equal(
    renderPrometheus(store),
    '# TYPE envoy_cluster_6b_assignment_stale counter\nenvoy_cluster_6b_assignment_stale{envoy_cluster_name="qwen3_0"} 0\n',
  );
});

test('real Envoy output: Istio FQDN clusters (istio/istio#51761), grouped and sorted by stat name', () => {
  const store = new StatsStore();
  // Created out of order on purpose.
  for (const c of ['outbound|80||graph', 'outbound|443||limited', 'outbound|443||graph', 'outbound|80||limited']) {
    store.scope(`cluster.${c}.facebook.com`).counter('upstream_rq_retry');
  }
  assert.equal(
    renderPrometheus(store),
    [
      '# TYPE envoy_cluster_facebook_com_upstream_rq_retry counter',
      'envoy_cluster_facebook_com_upstream_rq_retry{envoy_cluster_name="outbound|443||graph"} 0',
      'envoy_cluster_facebook_com_upstream_rq_retry{envoy_cluster_name="outbound|443||limited"} 0',
      'envoy_cluster_facebook_com_upstream_rq_retry{envoy_cluster_name="outbound|80||graph"} 0',
      'envoy_cluster_facebook_com_upstream_rq_retry{envoy_cluster_name="outbound|80||limited"} 0',
      '',
    ].join('\n'),
  );
});

test('real Envoy output: cilium bugtool histogram lines (cilium/cilium#22797)', () => {
  const store = new StatsStore();
  store.scope('cluster.default/details:9080').histogram('upstream_cx_connect_ms', 'ms');
  const out = renderPrometheus(store);
  assert.match(out, /^# TYPE envoy_cluster_upstream_cx_connect_ms histogram\n/);
  assert.ok(out.includes('envoy_cluster_upstream_cx_connect_ms_bucket{envoy_cluster_name="default/details_9080",le="50"} 0\n'));
  assert.ok(out.includes('envoy_cluster_upstream_cx_connect_ms_bucket{envoy_cluster_name="default/details_9080",le="1800000"} 0\n'));
  assert.ok(out.includes('envoy_cluster_upstream_cx_connect_ms_sum{envoy_cluster_name="default/details_9080"} 0\n'));
});

test('a histogram without tags has no leading comma before le', () => {
  const store = new StatsStore();
  store.histogram('server.initialization_time_ms', 'ms').record(12);
  const out = renderPrometheus(store);
  assert.ok(out.includes('envoy_server_initialization_time_ms_bucket{le="25"} 1\n'));
  assert.ok(out.includes('envoy_server_initialization_time_ms_sum{} 12\n'));
});

test('label values are escaped; invalid name characters become _', () => {
  assert.equal(escapeLabelValue('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
  const store = new StatsStore();
  store.scope('cluster.we"ird').counter('upstream_cx_total').inc();
  store.counter('custom.stat-with-dash').inc();
  const out = renderPrometheus(store);
  assert.ok(out.includes('envoy_cluster_upstream_cx_total{envoy_cluster_name="we\\"ird"} 1\n'), out);
  assert.ok(out.includes('# TYPE envoy_custom_stat_with_dash counter\nenvoy_custom_stat_with_dash{} 1\n'), out);
});

test('usedonly and filter select on the full stat name', () => {
  const store = new StatsStore();
  store.scope('cluster.a').counter('upstream_rq_total').inc();
  store.scope('cluster.b').counter('upstream_rq_total');
  store.gauge('server.live').set(1);
  const used = renderPrometheus(store, { usedOnly: true });
  assert.ok(used.includes('envoy_cluster_name="a"'));
  assert.ok(!used.includes('envoy_cluster_name="b"'));
  const filtered = renderPrometheus(store, { filter: /^cluster\.b\./ });
  assert.equal(filtered, '# TYPE envoy_cluster_upstream_rq_total counter\nenvoy_cluster_upstream_rq_total{envoy_cluster_name="b"} 0\n');
});

test('stat names compare token by token, as Envoy symbol tables do', () => {
  assert.ok(compareStatNames('a.b', 'a-x.b') < 0); // plain string order would put "a-x" first
  assert.ok(compareStatNames('a.b', 'a.b.c') < 0);
  assert.equal(compareStatNames('a.b', 'a.b'), 0);
});
