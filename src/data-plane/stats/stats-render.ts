/**
 * `/stats` in Envoy's text and JSON formats (StatsTextRender / StatsJsonRender): counters and gauges
 * merged and sorted by name, then histograms sorted by name.
 */
import {
  computeQuantiles,
  cumulativeBuckets,
  disjointBuckets,
  SUPPORTED_QUANTILES,
  type HistogramStatistics,
} from './histogram-statistics.ts';
import { formatG, formatShortest } from './format-number.ts';
import type { Counter, Gauge, Histogram, StatsStore } from './store.ts';

/** Envoy's `?type=` values. */
export type StatsTypeFilter = 'All' | 'Counters' | 'Gauges' | 'Histograms';

/** Envoy's `?histogram_buckets=` values that we support. */
export type HistogramBucketsMode = 'none' | 'cumulative' | 'disjoint';

/** Query options of `/stats`. */
export interface StatsRenderOptions {
  usedOnly?: boolean;
  /** Matched against the full stat name. Must not be a global/sticky RegExp. */
  filter?: RegExp;
  type?: StatsTypeFilter;
  histogramBuckets?: HistogramBucketsMode;
}

interface Selected {
  numeric: Array<Counter | Gauge>;
  histograms: Histogram[];
}

function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

function select(store: StatsStore, opts: StatsRenderOptions): Selected {
  const type = opts.type ?? 'All';
  const keep = (m: Counter | Gauge | Histogram): boolean =>
    (opts.usedOnly !== true || m.isUsed) && (opts.filter === undefined || opts.filter.test(m.name));
  const numeric: Array<Counter | Gauge> = [];
  if (type === 'All' || type === 'Counters') for (const c of store.counters()) if (keep(c)) numeric.push(c);
  if (type === 'All' || type === 'Gauges') for (const g of store.gauges()) if (keep(g)) numeric.push(g);
  const histograms: Histogram[] = [];
  if (type === 'All' || type === 'Histograms') for (const h of store.histograms()) if (keep(h)) histograms.push(h);
  numeric.sort(byName);
  histograms.sort(byName);
  return { numeric, histograms };
}

/** `P0(interval,cumulative) P25(...) ...`, Envoy's ParentHistogramImpl::quantileSummary. */
export function quantileSummary(h: Histogram): string {
  const interval = computeQuantiles(h.intervalStatistics());
  const cumulative = computeQuantiles(h.cumulativeStatistics());
  const parts: string[] = [];
  for (let i = 0; i < SUPPORTED_QUANTILES.length; i++) {
    parts.push(`P${formatG(100 * SUPPORTED_QUANTILES[i]!)}(${formatShortest(interval[i]!)},${formatShortest(cumulative[i]!)})`);
  }
  return parts.join(' ');
}

function bucketSummary(h: Histogram, view: (s: HistogramStatistics) => number[]): string {
  const interval = h.intervalStatistics();
  const iv = view(interval);
  const cv = view(h.cumulativeStatistics());
  const parts: string[] = [];
  for (let i = 0; i < interval.bounds.length; i++) parts.push(`B${formatG(interval.bounds[i]!)}(${iv[i]},${cv[i]})`);
  return parts.join(' ');
}

/** Text format: `name: value` lines; histograms as Envoy prints them. */
export function renderStatsText(store: StatsStore, opts: StatsRenderOptions = {}): string {
  const { numeric, histograms } = select(store, opts);
  let out = '';
  for (const m of numeric) out += `${m.name}: ${m.value}\n`;
  const mode = opts.histogramBuckets ?? 'none';
  for (const h of histograms) {
    if (!h.isUsed) out += `${h.name}: No recorded values\n`;
    else if (mode === 'cumulative') out += `${h.name}: ${bucketSummary(h, cumulativeBuckets)}\n`;
    else if (mode === 'disjoint') out += `${h.name}: ${bucketSummary(h, disjointBuckets)}\n`;
    else out += `${h.name}: ${quantileSummary(h)}\n`;
  }
  return out;
}

/** JSON number, with NaN as null as Envoy's Json::Streamer does. */
function num(x: number): number | null {
  return Number.isFinite(x) ? x : null;
}

/** JSON format, shaped like Envoy's `/stats?format=json`. */
export function renderStatsJson(store: StatsStore, opts: StatsRenderOptions = {}): string {
  const { numeric, histograms } = select(store, opts);
  const stats: unknown[] = numeric.map((m) => ({ name: m.name, value: m.value }));
  const mode = opts.histogramBuckets ?? 'none';
  if (histograms.length > 0) {
    if (mode === 'none') {
      stats.push({
        histograms: {
          supported_quantiles: SUPPORTED_QUANTILES.map((q) => 100 * q),
          computed_quantiles: histograms.map((h) => {
            const cumulative = computeQuantiles(h.cumulativeStatistics());
            const interval = computeQuantiles(h.intervalStatistics());
            return { name: h.name, values: cumulative.map((c, i) => ({ cumulative: num(c), interval: num(interval[i]!) })) };
          }),
        },
      });
    } else {
      const view = mode === 'cumulative' ? cumulativeBuckets : disjointBuckets;
      stats.push({
        histograms: histograms.map((h) => {
          const interval = h.intervalStatistics();
          const iv = view(interval);
          const cv = view(h.cumulativeStatistics());
          return {
            name: h.name,
            buckets: interval.bounds.map((b, i) => ({ upper_bound: b, interval: iv[i], cumulative: cv[i] })),
          };
        }),
      });
    }
  }
  return JSON.stringify({ stats });
}
