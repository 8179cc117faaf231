/**
 * Envoy RetryPolicy (route_components.proto, "Router: retry semantics" in the HTTP routing overview)
 * compiled to plain data: `retry_on` becomes a bit set, durations become milliseconds and defaults are
 * filled in, so the retry layer reads fields and never parses config per request.
 */
import type { RetryPolicy__Output } from '../../../xds/gen/envoy/config/route/v3/RetryPolicy.ts';
import type { Duration__Output } from '../../../xds/gen/google/protobuf/Duration.ts';
import type { CompiledHeaderMatcher, CompileSink } from './matchers.ts';
import { compileHeaderMatcher } from './matchers.ts';

/** Converts a protobuf Duration to whole milliseconds (truncating, as Envoy's durationToMilliseconds). */
export function durationMs(d: Duration__Output): number {
  return Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6);
}

/** `retry_on` conditions (HTTP and gRPC) as bits of CompiledRetryPolicy.retryOn. */
export const RETRY_ON = {
  '5xx': 1 << 0,
  'gateway-error': 1 << 1,
  reset: 1 << 2,
  'reset-before-request': 1 << 3,
  'connect-failure': 1 << 4,
  'envoy-ratelimited': 1 << 5,
  'retriable-4xx': 1 << 6,
  'refused-stream': 1 << 7,
  'retriable-status-codes': 1 << 8,
  'retriable-headers': 1 << 9,
  'http3-post-connect-failure': 1 << 10,
  cancelled: 1 << 11,
  'deadline-exceeded': 1 << 12,
  internal: 1 << 13,
  'resource-exhausted': 1 << 14,
  unavailable: 1 << 15,
} as const;

/** A `retry_on` condition name. */
export type RetryOnCondition = keyof typeof RETRY_ON;

/** Header that carries the rate-limit reset time for rate_limited_retry_back_off. */
export interface RetryResetHeader {
  name: string;
  format: 'SECONDS' | 'UNIX_TIMESTAMP';
}

/** A compiled RetryPolicy. Immutable, shared by every request on the route. */
export interface CompiledRetryPolicy {
  /** Bit set of RETRY_ON values. */
  retryOn: number;
  /** The same conditions by name. */
  retryOnNames: ReadonlySet<RetryOnCondition>;
  /** Default 1 (Envoy: num_retries "defaults to 1"). */
  numRetries: number;
  /** 0 = no per-try timeout (the route timeout applies). */
  perTryTimeoutMs: number;
  /** 0 = none. */
  perTryIdleTimeoutMs: number;
  /** Default 25 ms. */
  backoffBaseMs: number;
  /** Default 10 × base. */
  backoffMaxMs: number;
  retriableStatusCodes: readonly number[];
  /** Response headers that make a response retriable (any one matching). */
  retriableHeaders: readonly CompiledHeaderMatcher[];
  /** Request headers that must all match for the request to be retried at all. */
  retriableRequestHeaders: readonly CompiledHeaderMatcher[];
  /** Default 1: Envoy reattempts host selection once when predicates reject a host. */
  hostSelectionRetryMaxAttempts: number;
  /** Retry host predicate extension names, e.g. `envoy.retry_host_predicates.previous_hosts`. */
  retryHostPredicates: readonly string[];
  /** Retry priority extension name, if any. */
  retryPriority: string | undefined;
  /** rate_limited_retry_back_off, when set: max interval defaults to 300 s. */
  rateLimitedBackoff: { resetHeaders: readonly RetryResetHeader[]; maxIntervalMs: number } | undefined;
}

/**
 * Compiles a RetryPolicy found at `path`. Unknown `retry_on` names get a warning diagnostic and are
 * ignored (Envoy ignores them too); a max backoff below the base is an error.
 */
export function compileRetryPolicy(p: RetryPolicy__Output, path: string, sink: CompileSink): CompiledRetryPolicy {
  let retryOn = 0;
  const names = new Set<RetryOnCondition>();
  for (const raw of p.retry_on.split(',')) {
    const name = raw.trim();
    if (name === '') continue;
    if (Object.hasOwn(RETRY_ON, name)) {
      retryOn |= RETRY_ON[name as RetryOnCondition];
      names.add(name as RetryOnCondition);
    } else {
      sink.diagnostics.push({ severity: 'warning', code: 'SLOOP_ERR_CONFIG_UNSUPPORTED', path: `${path}.retry_on`, message: `unknown retry_on condition ${JSON.stringify(name)} ignored` });
    }
  }
  const backoffBaseMs = p.retry_back_off?.base_interval ? durationMs(p.retry_back_off.base_interval) : 25;
  const backoffMaxMs = p.retry_back_off?.max_interval ? durationMs(p.retry_back_off.max_interval) : backoffBaseMs * 10;
  if (p.retry_back_off?.base_interval && backoffBaseMs <= 0) {
    sink.diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: `${path}.retry_back_off.base_interval`, message: 'base_interval must be greater than 0' });
  }
  if (backoffMaxMs < backoffBaseMs) {
    sink.diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: `${path}.retry_back_off.max_interval`, message: 'max_interval must be greater than or equal to the base_interval' });
  }
  const attempts = Number(p.host_selection_retry_max_attempts);
  const rl = p.rate_limited_retry_back_off;
  return {
    retryOn,
    retryOnNames: names,
    numRetries: p.num_retries ? p.num_retries.value : 1,
    perTryTimeoutMs: p.per_try_timeout ? durationMs(p.per_try_timeout) : 0,
    perTryIdleTimeoutMs: p.per_try_idle_timeout ? durationMs(p.per_try_idle_timeout) : 0,
    backoffBaseMs,
    backoffMaxMs,
    retriableStatusCodes: [...p.retriable_status_codes],
    retriableHeaders: p.retriable_headers.map((h, i) => compileHeaderMatcher(h, `${path}.retriable_headers[${i}]`, sink)),
    retriableRequestHeaders: p.retriable_request_headers.map((h, i) => compileHeaderMatcher(h, `${path}.retriable_request_headers[${i}]`, sink)),
    hostSelectionRetryMaxAttempts: attempts > 0 ? attempts : 1,
    retryHostPredicates: p.retry_host_predicate.map((h) => h.name),
    retryPriority: p.retry_priority ? p.retry_priority.name : undefined,
    rateLimitedBackoff: rl
      ? { resetHeaders: rl.reset_headers.map((h) => ({ name: h.name.toLowerCase(), format: h.format })), maxIntervalMs: rl.max_interval ? durationMs(rl.max_interval) : 300_000 }
      : undefined,
  };
}
