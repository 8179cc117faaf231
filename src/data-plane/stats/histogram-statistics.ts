/**
 * Read-side math for histograms: quantiles and bucket views computed from fixed bucket counts.
 * Only the admin/flush path calls this, never the request path.
 */

/**
 * Envoy's default histogram bucket upper bounds (`HistogramSettingsImpl::defaultBuckets`), in the
 * histogram's unit. Samples above the last bound land in an overflow bucket (Prometheus `+Inf`).
 */
export const DEFAULT_HISTOGRAM_BUCKETS: readonly number[] = Object.freeze([
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000,
]);

/** Envoy's supported quantiles (`HistogramStatisticsImpl::supportedQuantiles`), as fractions. */
export const SUPPORTED_QUANTILES: readonly number[] = Object.freeze([0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1]);

/** A snapshot of samples: disjoint bucket counts (last slot = overflow), count, sum, min, max. */
export interface HistogramStatistics {
  readonly bounds: readonly number[];
  /** Disjoint counts: `counts[i]` holds samples in (bounds[i-1], bounds[i]]; `counts[bounds.length]` the overflow. */
  readonly counts: ArrayLike<number>;
  readonly sampleCount: number;
  readonly sampleSum: number;
  /** NaN when there are no samples. */
  readonly min: number;
  readonly max: number;
}

/**
 * Quantiles for SUPPORTED_QUANTILES, NaN for every quantile when there are no samples (Envoy prints
 * `nan`). Exact values are not kept, so this interpolates linearly inside the bucket holding the
 * rank, clamped to the observed min/max (P0 = min, P100 = max). Envoy's circllhist is finer-grained,
 * so mid quantiles are approximations of what Envoy would print.
 */
export function computeQuantiles(s: HistogramStatistics, quantiles: readonly number[] = SUPPORTED_QUANTILES): number[] {
  const out: number[] = [];
  for (const q of quantiles) out.push(quantile(s, q));
  return out;
}

function quantile(s: HistogramStatistics, q: number): number {
  if (s.sampleCount === 0) return NaN;
  if (q <= 0) return s.min;
  if (q >= 1) return s.max;
  const target = q * s.sampleCount;
  let before = 0;
  for (let i = 0; i < s.counts.length; i++) {
    const c = s.counts[i]!;
    if (c === 0) continue;
    if (before + c >= target) {
      const lowerBound = i === 0 ? 0 : s.bounds[i - 1]!;
      const upperBound = i < s.bounds.length ? s.bounds[i]! : s.max;
      const lower = Math.max(lowerBound, s.min);
      const upper = Math.min(upperBound, s.max);
      if (upper <= lower) return lower;
      return lower + ((upper - lower) * (target - before)) / c;
    }
    before += c;
  }
  return s.max;
}

/** Cumulative bucket counts, one per bound (samples <= bound): Prometheus `le` semantics. */
export function cumulativeBuckets(s: HistogramStatistics): number[] {
  const out: number[] = [];
  let running = 0;
  for (let i = 0; i < s.bounds.length; i++) {
    running += s.counts[i]!;
    out.push(running);
  }
  return out;
}

/** Disjoint bucket counts, one per bound (overflow excluded), as Envoy's computeDisjointBuckets. */
export function disjointBuckets(s: HistogramStatistics): number[] {
  const out: number[] = [];
  for (let i = 0; i < s.bounds.length; i++) out.push(s.counts[i]!);
  return out;
}
