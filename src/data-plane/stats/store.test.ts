import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StatsStore, sanitizeStatsName } from './store.ts';
import { computeQuantiles, cumulativeBuckets, DEFAULT_HISTOGRAM_BUCKETS, disjointBuckets } from './histogram-statistics.ts';
import { formatG, formatShortest } from './format-number.ts';

test('same name returns the same object, through the store or any scope', () => {
  const store = new StatsStore();
  const a = store.counter('cluster.c1.upstream_rq_total');
  const b = store.scope('cluster.c1').counter('upstream_rq_total');
  const c = store.scope('cluster').scope('c1').counter('upstream_rq_total');
  assert.equal(a, b);
  assert.equal(a, c);
  b.inc();
  c.inc(2);
  assert.equal(a.value, 3);
  assert.notEqual(store.gauge('g'), store.gauge('h'));
  assert.equal(store.histogram('x.h', 'ms'), store.histogram('x.h'));
  assert.equal(store.histogram('x.h').unit, 'ms');
});

test("scope prefixes are sanitized like Envoy's: ':' → '_', edge dots dropped", () => {
  assert.equal(sanitizeStatsName('listener.0.0.0.0:15001.'), 'listener.0.0.0.0_15001');
  assert.equal(sanitizeStatsName('.cluster.[::1]:80'), 'cluster.[__1]_80');
  const store = new StatsStore();
  assert.equal(store.scope('listener.0.0.0.0:15001').counter('downstream_cx_total').name, 'listener.0.0.0.0_15001.downstream_cx_total');
  assert.equal(store.scope('cluster.qwen3:0.6b').counter('assignment_stale').name, 'cluster.qwen3_0.6b.assignment_stale');
  // Leaf names are not sanitized (Envoy only sanitizes scope names).
  assert.equal(store.counter('a:b').name, 'a:b');
});

test('tags are extracted once, at creation', () => {
  const store = new StatsStore();
  const c = store.scope('cluster.reviews').counter('upstream_rq_200');
  assert.equal(c.tagExtractedName, 'cluster.upstream_rq');
  assert.deepEqual(c.tags, [
    { name: 'envoy.response_code', value: '200' },
    { name: 'envoy.cluster_name', value: 'reviews' },
  ]);
});

test('counter: used flag survives reset, latch returns deltas', () => {
  const store = new StatsStore();
  const c = store.counter('c');
  assert.equal(c.isUsed, false);
  c.inc();
  c.value++; // hot-path direct write is allowed
  assert.equal(c.value, 2);
  assert.equal(c.isUsed, true);
  assert.equal(c.latch(), 2);
  c.inc(5);
  assert.equal(c.latch(), 5);
  assert.equal(c.latch(), 0);
  store.resetCounters();
  assert.equal(c.value, 0);
  assert.equal(c.isUsed, true);
  c.inc();
  assert.equal(c.latch(), 1);
});

test('gauge: set to zero still counts as used; import mode is kept', () => {
  const store = new StatsStore();
  const g = store.gauge('server.live', 'never_import');
  assert.equal(g.importMode, 'never_import');
  assert.equal(store.gauge('other').importMode, 'accumulate');
  assert.equal(g.isUsed, false);
  g.set(0);
  assert.equal(g.isUsed, true);
  const a = store.gauge('active');
  a.inc();
  a.inc();
  a.dec();
  a.add(5);
  a.sub(2);
  assert.equal(a.value, 4);
});

test('histogram: samples land in Envoy default buckets with le semantics, overflow beyond 3600000', () => {
  const store = new StatsStore();
  const h = store.histogram('h', 'ms');
  for (const v of [0.5, 0.7, 1, 3, 3600000, 3600001]) h.record(v);
  const s = h.cumulativeStatistics();
  assert.deepEqual(s.bounds, DEFAULT_HISTOGRAM_BUCKETS);
  assert.equal(s.sampleCount, 6);
  assert.equal(s.sampleSum, 0.5 + 0.7 + 1 + 3 + 3600000 + 3600001);
  const d = disjointBuckets(s);
  assert.equal(d[0], 1); // 0.5 <= 0.5
  assert.equal(d[1], 2); // 0.7, 1
  assert.equal(d[2], 1); // 3
  assert.equal(d[18], 1); // 3600000 <= 3600000
  assert.equal(s.counts[19], 1); // overflow
  const c = cumulativeBuckets(s);
  assert.equal(c[0], 1);
  assert.equal(c[2], 4);
  assert.equal(c[18], 5);
});

test('histogram: interval statistics cover the last merged interval, cumulative covers everything', () => {
  const store = new StatsStore();
  const h = store.histogram('h');
  assert.equal(h.isUsed, false);
  h.record(10);
  assert.equal(h.isUsed, true);
  assert.equal(h.intervalStatistics().sampleCount, 0); // nothing merged yet
  assert.equal(h.cumulativeStatistics().sampleCount, 1);
  store.mergeHistograms();
  assert.equal(h.intervalStatistics().sampleCount, 1);
  h.record(20);
  h.record(30);
  assert.equal(h.intervalStatistics().sampleCount, 1);
  assert.equal(h.cumulativeStatistics().sampleCount, 3);
  store.mergeHistograms();
  assert.equal(h.intervalStatistics().sampleCount, 2);
  assert.equal(h.intervalStatistics().min, 20);
  assert.equal(h.cumulativeStatistics().sampleCount, 3);
  assert.equal(h.cumulativeStatistics().min, 10);
  assert.equal(h.cumulativeStatistics().max, 30);
  store.mergeHistograms();
  assert.equal(h.intervalStatistics().sampleCount, 0);
});

test('quantiles: NaN when empty, min/max at the ends, interpolated inside a bucket', () => {
  const store = new StatsStore();
  const h = store.histogram('h');
  assert.ok(computeQuantiles(h.cumulativeStatistics()).every(Number.isNaN));
  // 100 samples uniformly 1..100 → buckets (0.5,1]:1 (1,5]:4 (5,10]:5 (10,25]:15 (25,50]:25 (50,100]:50
  for (let i = 1; i <= 100; i++) h.record(i);
  const [p0, p25, p50, p75, p90, , , , , p100] = computeQuantiles(h.cumulativeStatistics());
  assert.equal(p0, 1);
  assert.equal(p100, 100);
  assert.equal(p25, 25); // rank 25 is the end of (10,25]
  assert.equal(p50, 50);
  assert.equal(p75, 75); // halfway through (50,100]
  assert.equal(p90, 90);
});

test('removeScope drops the stats under a prefix only', () => {
  const store = new StatsStore();
  store.scope('cluster.a').counter('upstream_rq_total').inc();
  store.scope('cluster.a').gauge('upstream_cx_active').inc();
  store.scope('cluster.a').histogram('upstream_rq_time').record(1);
  store.scope('cluster.ab').counter('upstream_rq_total').inc();
  store.removeScope('cluster.a');
  assert.deepEqual([...store.counters()].map((c) => c.name), ['cluster.ab.upstream_rq_total']);
  assert.equal([...store.gauges()].length, 0);
  assert.equal([...store.histograms()].length, 0);
});

test('formatG matches printf %g', () => {
  assert.equal(formatG(0.5), '0.5');
  assert.equal(formatG(1), '1');
  assert.equal(formatG(300000), '300000');
  assert.equal(formatG(1800000), '1.8e+06');
  assert.equal(formatG(3600000), '3.6e+06');
  assert.equal(formatG(99.5), '99.5');
  assert.equal(formatG(0.0001), '0.0001');
  assert.equal(formatG(0.00001), '1e-05');
  assert.equal(formatG(NaN), 'nan');
  assert.equal(formatG(3600000, 32), '3600000');
  assert.equal(formatG(0.1 + 0.2, 32), '0.30000000000000004440892098500626');
  assert.equal(formatG(-2.5), '-2.5');
  assert.equal(formatShortest(NaN), 'nan');
  assert.equal(formatShortest(1.05), '1.05');
});
