/**
 * The stats store: counters, gauges and histograms named exactly as Envoy names them
 * (`cluster.<name>.upstream_rq_total`, `http.<stat_prefix>.downstream_rq_2xx`, ...).
 *
 * Hot-path contract: look a stat up ONCE (config time) and keep the object. Incrementing is a field
 * write (`counter.inc()` / `counter.value++`); there is no map lookup, closure or allocation per
 * request. Tags are extracted when a stat is created, so rendering never re-parses names.
 */
import { DEFAULT_HISTOGRAM_BUCKETS, type HistogramStatistics } from './histogram-statistics.ts';
import { TagProducer, type Tag } from './tag-extractor.ts';

export type { Tag } from './tag-extractor.ts';

/** Envoy's Gauge::ImportMode: whether a hot-restarted child adds the parent's value. */
export type GaugeImportMode = 'accumulate' | 'never_import';

/** Envoy's Histogram::Unit, abbreviated. */
export type HistogramUnit = 'ms' | 'us' | 'bytes' | 'unspecified';

/** A monotonic counter (Envoy Stats::Counter). Only `reset()` (admin /reset_counters) lowers it. */
export class Counter {
  readonly name: string;
  readonly tagExtractedName: string;
  readonly tags: readonly Tag[];
  /** Current value. Hot-path code may write it directly; it must only grow. */
  value = 0;
  private latchedValue = 0;
  private usedBeforeReset = false;

  constructor(name: string, tagExtractedName: string, tags: readonly Tag[]) {
    this.name = name;
    this.tagExtractedName = tagExtractedName;
    this.tags = tags;
  }

  inc(n = 1): void {
    this.value += n;
  }

  /** Envoy's `used()`: written at least once since start (the `?usedonly` filter). */
  get isUsed(): boolean {
    return this.value !== 0 || this.usedBeforeReset;
  }

  /** Increase since the previous latch (Envoy `latch()`, for delta-based sinks such as statsd). */
  latch(): number {
    const delta = this.value - this.latchedValue;
    this.latchedValue = this.value;
    return delta;
  }

  /** Sets the value to zero (admin /reset_counters). */
  reset(): void {
    if (this.value !== 0) this.usedBeforeReset = true;
    this.value = 0;
    this.latchedValue = 0;
  }
}

/** A gauge (Envoy Stats::Gauge): goes up and down. */
export class Gauge {
  readonly name: string;
  readonly tagExtractedName: string;
  readonly tags: readonly Tag[];
  readonly importMode: GaugeImportMode;
  value = 0;
  private written = false;

  constructor(name: string, tagExtractedName: string, tags: readonly Tag[], importMode: GaugeImportMode) {
    this.name = name;
    this.tagExtractedName = tagExtractedName;
    this.tags = tags;
    this.importMode = importMode;
  }

  inc(): void {
    this.value++;
    this.written = true;
  }
  dec(): void {
    this.value--;
    this.written = true;
  }
  add(n: number): void {
    this.value += n;
    this.written = true;
  }
  sub(n: number): void {
    this.value -= n;
    this.written = true;
  }
  set(v: number): void {
    this.value = v;
    this.written = true;
  }

  /** Envoy's `used()`: set/inc/dec was called at least once (even if the value is back to 0). */
  get isUsed(): boolean {
    return this.written || this.value !== 0;
  }
}

/** Mutable accumulation behind a Histogram: one interval or the merged total. */
class Accumulator implements HistogramStatistics {
  readonly bounds: readonly number[];
  readonly counts: Float64Array;
  sampleCount = 0;
  sampleSum = 0;
  min = NaN;
  max = NaN;
  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }
  addFrom(o: Accumulator): void {
    for (let i = 0; i < this.counts.length; i++) this.counts[i] += o.counts[i]!;
    if (o.sampleCount === 0) return;
    this.min = this.sampleCount === 0 ? o.min : Math.min(this.min, o.min);
    this.max = this.sampleCount === 0 ? o.max : Math.max(this.max, o.max);
    this.sampleCount += o.sampleCount;
    this.sampleSum += o.sampleSum;
  }
  clear(): void {
    this.counts.fill(0);
    this.sampleCount = 0;
    this.sampleSum = 0;
    this.min = NaN;
    this.max = NaN;
  }
  copy(): Accumulator {
    const c = new Accumulator(this.bounds);
    c.addFrom(this);
    return c;
  }
}

/**
 * A histogram (Envoy ParentHistogram) over fixed buckets (DEFAULT_HISTOGRAM_BUCKETS).
 *
 * Like Envoy, values are recorded into the current interval; `merge()` (the store's periodic flush)
 * closes the interval. `intervalStatistics()` is the last closed interval (empty before the first
 * merge), `cumulativeStatistics()` everything recorded so far, including the open interval.
 */
export class Histogram {
  readonly name: string;
  readonly tagExtractedName: string;
  readonly tags: readonly Tag[];
  readonly unit: HistogramUnit;
  private readonly bounds: readonly number[];
  private readonly current: Accumulator;
  private readonly merged: Accumulator;
  private lastInterval: Accumulator;

  constructor(name: string, tagExtractedName: string, tags: readonly Tag[], unit: HistogramUnit, bounds: readonly number[]) {
    this.name = name;
    this.tagExtractedName = tagExtractedName;
    this.tags = tags;
    this.unit = unit;
    this.bounds = bounds;
    this.current = new Accumulator(bounds);
    this.merged = new Accumulator(bounds);
    this.lastInterval = new Accumulator(bounds);
  }

  /** Records one sample, in this histogram's unit. */
  record(v: number): void {
    const b = this.bounds;
    const n = b.length;
    let i = 0;
    // Linear scan: latency samples overwhelmingly land in the first few buckets.
    while (i < n && v > b[i]!) i++;
    const cur = this.current;
    cur.counts[i]++;
    if (cur.sampleCount === 0) {
      cur.min = v;
      cur.max = v;
    } else {
      if (v < cur.min) cur.min = v;
      if (v > cur.max) cur.max = v;
    }
    cur.sampleCount++;
    cur.sampleSum += v;
  }

  /** Closes the current interval (Envoy's mergeHistograms on stats flush). */
  merge(): void {
    this.merged.addFrom(this.current);
    this.lastInterval = this.current.copy();
    this.current.clear();
  }

  /** Samples of the last closed interval. */
  intervalStatistics(): HistogramStatistics {
    return this.lastInterval;
  }

  /** All samples recorded since start (merged intervals plus the open one). */
  cumulativeStatistics(): HistogramStatistics {
    if (this.current.sampleCount === 0) return this.merged;
    const all = this.merged.copy();
    all.addFrom(this.current);
    return all;
  }

  /** Envoy's `used()`: at least one sample was recorded. */
  get isUsed(): boolean {
    return this.merged.sampleCount !== 0 || this.current.sampleCount !== 0;
  }
}

/** Any stat held by the store. */
export type Metric = Counter | Gauge | Histogram;

/** A view of the store that prefixes every name with `<prefix>.` (Envoy Stats::Scope). */
export interface StatsScope {
  /** The sanitized prefix without trailing dot; '' for the root. */
  readonly prefix: string;
  counter(name: string): Counter;
  gauge(name: string, importMode?: GaugeImportMode): Gauge;
  histogram(name: string, unit?: HistogramUnit): Histogram;
  scope(prefix: string): StatsScope;
}

/**
 * Envoy's Stats::Utility::sanitizeStatsName, applied to scope prefixes: strips a leading/trailing
 * dot and replaces ':' (and NUL) with '_', which is why `0.0.0.0:15001` shows as `0.0.0.0_15001`.
 */
export function sanitizeStatsName(name: string): string {
  let s = name;
  if (s.endsWith('.')) s = s.slice(0, -1);
  if (s.startsWith('.')) s = s.slice(1);
  return s.replace(/[:\0]/g, '_');
}

function join(prefix: string, name: string): string {
  return prefix === '' ? name : `${prefix}.${name}`;
}

class PrefixedScope implements StatsScope {
  readonly prefix: string;
  private readonly store: StatsStore;
  constructor(store: StatsStore, prefix: string) {
    this.store = store;
    this.prefix = prefix;
  }
  counter(name: string): Counter {
    return this.store.counter(join(this.prefix, name));
  }
  gauge(name: string, importMode?: GaugeImportMode): Gauge {
    return this.store.gauge(join(this.prefix, name), importMode);
  }
  histogram(name: string, unit?: HistogramUnit): Histogram {
    return this.store.histogram(join(this.prefix, name), unit);
  }
  scope(prefix: string): StatsScope {
    return new PrefixedScope(this.store, join(this.prefix, sanitizeStatsName(prefix)));
  }
}

/** Options for a StatsStore. */
export interface StatsStoreOptions {
  /** Tag extraction; defaults to Envoy's default tag extractors. */
  tagProducer?: TagProducer;
  /** Histogram bucket bounds; defaults to Envoy's. */
  histogramBuckets?: readonly number[];
}

/**
 * Owns every stat. Getting a stat by name creates it on first use and returns the same object
 * afterwards (same name → same object), so components that share a name share the value, as in Envoy.
 * Lookups are map lookups: do them at config time, never per request.
 */
export class StatsStore implements StatsScope {
  readonly prefix = '';
  private readonly tagProducer: TagProducer;
  private readonly buckets: readonly number[];
  private readonly counterMap = new Map<string, Counter>();
  private readonly gaugeMap = new Map<string, Gauge>();
  private readonly histogramMap = new Map<string, Histogram>();

  constructor(options: StatsStoreOptions = {}) {
    this.tagProducer = options.tagProducer ?? new TagProducer();
    this.buckets = options.histogramBuckets ?? DEFAULT_HISTOGRAM_BUCKETS;
  }

  counter(name: string): Counter {
    let c = this.counterMap.get(name);
    if (c === undefined) {
      const t = this.tagProducer.produceTags(name);
      c = new Counter(name, t.tagExtractedName, t.tags);
      this.counterMap.set(name, c);
    }
    return c;
  }

  /** `importMode` only applies when the gauge is created. */
  gauge(name: string, importMode: GaugeImportMode = 'accumulate'): Gauge {
    let g = this.gaugeMap.get(name);
    if (g === undefined) {
      const t = this.tagProducer.produceTags(name);
      g = new Gauge(name, t.tagExtractedName, t.tags, importMode);
      this.gaugeMap.set(name, g);
    }
    return g;
  }

  /** `unit` only applies when the histogram is created. */
  histogram(name: string, unit: HistogramUnit = 'unspecified'): Histogram {
    let h = this.histogramMap.get(name);
    if (h === undefined) {
      const t = this.tagProducer.produceTags(name);
      h = new Histogram(name, t.tagExtractedName, t.tags, unit, this.buckets);
      this.histogramMap.set(name, h);
    }
    return h;
  }

  scope(prefix: string): StatsScope {
    return new PrefixedScope(this, sanitizeStatsName(prefix));
  }

  /**
   * Drops every stat under `<prefix>.` (e.g. when CDS removes a cluster), like Envoy releasing a
   * scope. Objects already handed out keep working but are no longer rendered.
   */
  removeScope(prefix: string): void {
    const p = sanitizeStatsName(prefix) + '.';
    for (const map of [this.counterMap, this.gaugeMap, this.histogramMap] as const) {
      for (const name of map.keys()) if (name.startsWith(p)) map.delete(name);
    }
  }

  /** Every counter, in creation order. The store owns them; callers must not retain the iterator. */
  counters(): IterableIterator<Counter> {
    return this.counterMap.values();
  }
  gauges(): IterableIterator<Gauge> {
    return this.gaugeMap.values();
  }
  histograms(): IterableIterator<Histogram> {
    return this.histogramMap.values();
  }

  forEachCounter(fn: (c: Counter) => void): void {
    for (const c of this.counterMap.values()) fn(c);
  }
  forEachGauge(fn: (g: Gauge) => void): void {
    for (const g of this.gaugeMap.values()) fn(g);
  }
  forEachHistogram(fn: (h: Histogram) => void): void {
    for (const h of this.histogramMap.values()) fn(h);
  }

  /** Closes the current histogram interval everywhere (call on each stats flush, Envoy default 5 s). */
  mergeHistograms(): void {
    for (const h of this.histogramMap.values()) h.merge();
  }

  /** Admin /reset_counters. */
  resetCounters(): void {
    for (const c of this.counterMap.values()) c.reset();
  }
}
