import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StatsStore } from './store.ts';
import { quantileSummary, renderStatsJson, renderStatsText } from './stats-render.ts';

function sampleStore(): StatsStore {
  const store = new StatsStore();
  store.scope('cluster.b').counter('upstream_rq_total').inc(2);
  store.scope('cluster.a').gauge('upstream_cx_active').set(1);
  store.counter('cluster.a.upstream_rq_total');
  store.scope('cluster.a').histogram('upstream_rq_time', 'ms');
  return store;
}

test('text: counters and gauges merged in name order, then histograms', () => {
  assert.equal(
    renderStatsText(sampleStore()),
    [
      'cluster.a.upstream_cx_active: 1',
      'cluster.a.upstream_rq_total: 0',
      'cluster.b.upstream_rq_total: 2',
      'cluster.a.upstream_rq_time: No recorded values',
      '',
    ].join('\n'),
  );
});

test('text: usedonly, filter and type', () => {
  const store = sampleStore();
  assert.equal(renderStatsText(store, { usedOnly: true }), 'cluster.a.upstream_cx_active: 1\ncluster.b.upstream_rq_total: 2\n');
  assert.equal(renderStatsText(store, { filter: /rq_total/ }), 'cluster.a.upstream_rq_total: 0\ncluster.b.upstream_rq_total: 2\n');
  assert.equal(renderStatsText(store, { type: 'Gauges' }), 'cluster.a.upstream_cx_active: 1\n');
  assert.equal(renderStatsText(store, { type: 'Histograms' }), 'cluster.a.upstream_rq_time: No recorded values\n');
});

test('text: histogram quantile summary P0(interval,cumulative) ... with nan for an empty interval', () => {
  const store = new StatsStore();
  const h = store.histogram('h');
  h.record(1);
  assert.equal(
    quantileSummary(h),
    'P0(nan,1) P25(nan,1) P50(nan,1) P75(nan,1) P90(nan,1) P95(nan,1) P99(nan,1) P99.5(nan,1) P99.9(nan,1) P100(nan,1)',
  );
  store.mergeHistograms();
  assert.match(quantileSummary(h), /^P0\(1,1\) P25\(1,1\)/);
  assert.equal(renderStatsText(store), `h: ${quantileSummary(h)}\n`);
});

test('text: histogram_buckets=cumulative prints B<bound>(interval,cumulative) with %g bounds', () => {
  const store = new StatsStore();
  const h = store.histogram('h');
  h.record(3);
  store.mergeHistograms();
  h.record(4000000);
  const line = renderStatsText(store, { histogramBuckets: 'cumulative' });
  assert.ok(line.startsWith('h: B0.5(0,0) B1(0,0) B5(1,1) B10(1,1)'), line);
  assert.ok(line.endsWith('B1.8e+06(1,1) B3.6e+06(1,1)\n'), line);
  const disjoint = renderStatsText(store, { histogramBuckets: 'disjoint' });
  assert.ok(disjoint.startsWith('h: B0.5(0,0) B1(0,0) B5(1,1) B10(0,0)'), disjoint);
});

test('json: stats array then a histograms entry with supported and computed quantiles', () => {
  const store = sampleStore();
  store.scope('cluster.a').histogram('upstream_rq_time').record(5);
  const parsed = JSON.parse(renderStatsJson(store)) as {
    stats: Array<{ name?: string; value?: number; histograms?: { supported_quantiles: number[]; computed_quantiles: unknown[] } }>;
  };
  assert.deepEqual(parsed.stats.slice(0, 3), [
    { name: 'cluster.a.upstream_cx_active', value: 1 },
    { name: 'cluster.a.upstream_rq_total', value: 0 },
    { name: 'cluster.b.upstream_rq_total', value: 2 },
  ]);
  const hist = parsed.stats[3]!.histograms!;
  assert.deepEqual(hist.supported_quantiles, [0, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100]);
  assert.deepEqual(hist.computed_quantiles[0], {
    name: 'cluster.a.upstream_rq_time',
    values: Array.from({ length: 10 }, () => ({ cumulative: 5, interval: null })),
  });
});

test('json: histogram_buckets=cumulative lists upper_bound/interval/cumulative per bucket', () => {
  const store = new StatsStore();
  store.histogram('h').record(0.2);
  const parsed = JSON.parse(renderStatsJson(store, { histogramBuckets: 'cumulative' })) as {
    stats: Array<{ histograms: Array<{ name: string; buckets: Array<{ upper_bound: number; interval: number; cumulative: number }> }> }>;
  };
  const buckets = parsed.stats[0]!.histograms[0]!.buckets;
  assert.equal(buckets.length, 19);
  assert.deepEqual(buckets[0], { upper_bound: 0.5, interval: 0, cumulative: 1 });
  assert.deepEqual(buckets[18], { upper_bound: 3600000, interval: 0, cumulative: 1 });
});
