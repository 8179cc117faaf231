/**
 * `/stats/prometheus`: Envoy's Prometheus text exposition, as produced by its
 * GroupedStatsRequest + PrometheusStatsRender: metrics grouped by tag-extracted name, groups in
 * name order, counters then gauges then histograms, names prefixed `envoy_` with every character
 * outside `[a-zA-Z0-9_]` replaced by `_`, tags as labels in extraction order.
 */
import { cumulativeBuckets } from './histogram-statistics.ts';
import { formatG } from './format-number.ts';
import type { Counter, Gauge, Histogram, StatsStore, Tag } from './store.ts';

/** Query options of `/stats/prometheus`. */
export interface PrometheusOptions {
  /** `?usedonly`: skip stats never written. */
  usedOnly?: boolean;
  /** `?filter=`: keep stats whose full (untagged) name matches. */
  filter?: RegExp;
}

const PROM_INVALID = /[^a-zA-Z0-9_]/g;

/** Envoy's sanitizeName: Prometheus names must match `[a-zA-Z_][a-zA-Z0-9_]*`. */
export function sanitizePrometheusName(name: string): string {
  return name.replace(PROM_INVALID, '_');
}

/**
 * Envoy's sanitizeValue, as Prometheus' own text writer: escape `\`, newline and `"` in label values.
 */
export function escapeLabelValue(value: string): string {
  let out = '';
  for (const ch of value) {
    if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '"') out += '\\"';
    else out += ch;
  }
  return out;
}

/** `name="value",...` for a tag list, in tag order. */
export function formatPrometheusTags(tags: readonly Tag[]): string {
  let out = '';
  for (let i = 0; i < tags.length; i++) {
    if (i > 0) out += ',';
    out += `${sanitizePrometheusName(tags[i]!.name)}="${escapeLabelValue(tags[i]!.value)}"`;
  }
  return out;
}

/** `envoy_` + sanitized tag-extracted name. */
export function prometheusMetricName(tagExtractedName: string): string {
  return 'envoy_' + sanitizePrometheusName(tagExtractedName);
}

/**
 * Envoy sorts a group's members by StatName, which compares dot-separated tokens one at a time
 * (a name with fewer tokens sorts first when it is a prefix of another).
 */
export function compareStatNames(a: string, b: string): number {
  const ta = a.split('.');
  const tb = b.split('.');
  const n = Math.min(ta.length, tb.length);
  for (let i = 0; i < n; i++) {
    const x = ta[i]!;
    const y = tb[i]!;
    if (x !== y) return x < y ? -1 : 1;
  }
  return ta.length - tb.length;
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

type Shown = Counter | Gauge | Histogram;

function groupByExtractedName<T extends Shown>(metrics: Iterable<T>, opts: PrometheusOptions): Array<[string, T[]]> {
  const groups = new Map<string, T[]>();
  for (const m of metrics) {
    if (opts.usedOnly === true && !m.isUsed) continue;
    if (opts.filter !== undefined && !opts.filter.test(m.name)) continue;
    const list = groups.get(m.tagExtractedName);
    if (list === undefined) groups.set(m.tagExtractedName, [m]);
    else list.push(m);
  }
  const sorted = [...groups.entries()].sort((a, b) => compareStrings(a[0], b[0]));
  for (const [, list] of sorted) list.sort((a, b) => compareStatNames(a.name, b.name));
  return sorted;
}

function renderNumeric(out: string[], metrics: Iterable<Counter | Gauge>, type: 'counter' | 'gauge', opts: PrometheusOptions): void {
  for (const [extracted, group] of groupByExtractedName(metrics, opts)) {
    const name = prometheusMetricName(extracted);
    out.push(`# TYPE ${name} ${type}\n`);
    for (const m of group) out.push(`${name}{${formatPrometheusTags(m.tags)}} ${m.value}\n`);
  }
}

function renderHistogram(out: string[], name: string, h: Histogram): void {
  const tags = formatPrometheusTags(h.tags);
  const bucketTags = tags === '' ? '' : tags + ',';
  const stats = h.cumulativeStatistics();
  const buckets = cumulativeBuckets(stats);
  for (let i = 0; i < stats.bounds.length; i++) {
    // Envoy prints bounds with {:.32g} to stay in fixed-point for the default buckets.
    out.push(`${name}_bucket{${bucketTags}le="${formatG(stats.bounds[i]!, 32)}"} ${buckets[i]}\n`);
  }
  out.push(`${name}_bucket{${bucketTags}le="+Inf"} ${stats.sampleCount}\n`);
  out.push(`${name}_sum{${tags}} ${formatG(stats.sampleSum, 32)}\n`);
  out.push(`${name}_count{${tags}} ${stats.sampleCount}\n`);
}

/** Renders the whole store in Envoy's Prometheus text format. */
export function renderPrometheus(store: StatsStore, opts: PrometheusOptions = {}): string {
  const out: string[] = [];
  renderNumeric(out, store.counters(), 'counter', opts);
  renderNumeric(out, store.gauges(), 'gauge', opts);
  for (const [extracted, group] of groupByExtractedName(store.histograms(), opts)) {
    const name = prometheusMetricName(extracted);
    out.push(`# TYPE ${name} histogram\n`);
    for (const h of group) renderHistogram(out, name, h);
  }
  return out.join('');
}
