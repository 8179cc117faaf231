/**
 * envoy.filters.http.fault (extensions.filters.http.fault.v3.HTTPFault): injects delays and aborts into
 * requests, as Envoy's fault_filter.cc does:
 * - the filter's config applies unless the route (or its virtual host / route configuration) carries a
 *   `typed_per_filter_config` for this filter's name, which then replaces it entirely;
 * - a fault applies only when `headers` all match, `upstream_cluster` (if set) is the route's cluster and
 *   `downstream_nodes` (if set) lists the `x-envoy-downstream-service-node` header;
 * - `max_active_faults` caps concurrent faulted requests (over it: `faults_overflow`, no fault);
 * - delay first (fixed, or `x-envoy-fault-delay-request` ms with `header_delay`), then abort (HTTP status or
 *   gRPC status, or `x-envoy-fault-abort-request` / `x-envoy-fault-abort-grpc-request` with `header_abort`);
 *   each fires with its own percentage; header-controlled faults may lower it with
 *   `x-envoy-fault-{delay,abort}-request-percentage`, never raise it;
 * - the abort is a local reply "fault filter abort"; gRPC requests get trailers-only with the grpc-status;
 * - stats `http.<stat_prefix>.fault.{delays_injected,aborts_injected,faults_overflow,active_faults}` and,
 *   per `x-envoy-downstream-service-cluster`, `http.<stat_prefix>.fault.<cluster>.{delays,aborts}_injected`.
 * Sloop has no runtime layer, so the `*_runtime` keys are ignored (their defaults come from the config).
 * `response_rate_limit` (bandwidth limiting) is not implemented and is refused.
 */
import type { HTTPFault__Output } from '../../../xds/gen/envoy/extensions/filters/http/fault/v3/HTTPFault.ts';
import type { FractionalPercent__Output } from '../../../xds/gen/envoy/type/v3/FractionalPercent.ts';
import type { Any__Output } from '../../../xds/gen/google/protobuf/Any.ts';
import { unpackAny } from '../../../xds/any.ts';
import { ConfigError } from '../../../shared/errors.ts';
import type { Counter, Gauge, StatsScope } from '../../stats/store.ts';
import { durationMs } from '../../duration.ts';
import { getHeader } from '../headers.ts';
import { compileHeaderMatcher, matchHeaderList, type CompiledHeaderMatcher, type CompileSink } from '../route/matchers.ts';
import type { FilterFactoryContext, FilterRequest, HttpFilter } from './types.ts';

export const FAULT_FILTER_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault';

const DENOMINATORS: Record<string, number> = { HUNDRED: 100, TEN_THOUSAND: 10_000, MILLION: 1_000_000 };

/** A FractionalPercent as numerator/denominator (header-controlled percentages replace the numerator). */
interface Percent {
  numerator: number;
  denominator: number;
}

/** A compiled HTTPFault. */
export interface CompiledFault {
  delay: { kind: 'fixed'; ms: number; percent: Percent } | { kind: 'header'; percent: Percent } | undefined;
  abort: { kind: 'http'; status: number; percent: Percent } | { kind: 'grpc'; status: number; percent: Percent } | { kind: 'header'; percent: Percent } | undefined;
  upstreamCluster: string;
  headers: readonly CompiledHeaderMatcher[];
  downstreamNodes: readonly string[];
  /** undefined = unlimited. */
  maxActiveFaults: number | undefined;
  perDownstreamClusterStats: boolean;
}

function percentOf(p: FractionalPercent__Output | null): Percent {
  // envoy/type/v3/percent.proto: an unset FractionalPercent is 0 % (the field's default message).
  if (p === null) return { numerator: 0, denominator: 100 };
  return { numerator: p.numerator, denominator: DENOMINATORS[p.denominator] ?? 100 };
}

/**
 * Compiles an HTTPFault. `path` prefixes diagnostic paths.
 * @throws ConfigError with every problem found.
 */
export function compileFault(cfg: HTTPFault__Output, path = ''): CompiledFault {
  const sink: CompileSink = { diagnostics: [] };
  const at = (p: string): string => (path === '' ? p : `${path}.${p}`);
  let delay: CompiledFault['delay'];
  if (cfg.delay !== null) {
    const percent = percentOf(cfg.delay.percentage);
    if (cfg.delay.fault_delay_secifier === 'header_delay') delay = { kind: 'header', percent };
    else if (cfg.delay.fault_delay_secifier === 'fixed_delay') delay = { kind: 'fixed', ms: durationMs(cfg.delay.fixed_delay ?? null, 0), percent };
    else sink.diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: at('delay'), message: 'delay needs fixed_delay or header_delay' });
  }
  let abort: CompiledFault['abort'];
  if (cfg.abort !== null) {
    const a = cfg.abort;
    const percent = percentOf(a.percentage);
    if (a.error_type === 'http_status') {
      // fault.proto: http_status is [200, 600).
      if (a.http_status! < 200 || a.http_status! >= 600) sink.diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: at('abort.http_status'), message: `http_status must be in [200, 600), got ${a.http_status}` });
      abort = { kind: 'http', status: a.http_status!, percent };
    } else if (a.error_type === 'grpc_status') abort = { kind: 'grpc', status: a.grpc_status!, percent };
    else if (a.error_type === 'header_abort') abort = { kind: 'header', percent };
    else sink.diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: at('abort'), message: 'abort needs http_status, grpc_status or header_abort' });
  }
  if (cfg.response_rate_limit !== null) {
    sink.diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_UNSUPPORTED', path: at('response_rate_limit'), message: 'response_rate_limit is not supported' });
  }
  const headers = cfg.headers.map((h, i) => compileHeaderMatcher(h, at(`headers[${i}]`), sink));
  if (sink.diagnostics.some((d) => d.severity === 'error')) throw new ConfigError(sink.diagnostics, 'HTTPFault');
  return {
    delay,
    abort,
    upstreamCluster: cfg.upstream_cluster,
    headers,
    downstreamNodes: cfg.downstream_nodes,
    maxActiveFaults: cfg.max_active_faults?.value,
    perDownstreamClusterStats: !cfg.disable_downstream_cluster_stats,
  };
}

/** Envoy's header-controlled percentage: the header's numerator, capped at the configured one. */
function headerPercent(base: Percent, headers: readonly string[], name: string): Percent {
  const v = getHeader(headers, name);
  if (v === undefined) return base;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) return base;
  return { numerator: Math.min(n, base.numerator), denominator: base.denominator };
}

/** Whether a fault with this percentage fires, for `r` uniform in [0, 1) (Envoy: random % denominator < numerator). */
function fires(p: Percent, r: number): boolean {
  return Math.floor(r * p.denominator) < p.numerator;
}

function nonNegativeInt(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d+$/.test(v)) return undefined;
  return Number(v);
}

interface FaultStats {
  scope: StatsScope;
  delaysInjected: Counter;
  abortsInjected: Counter;
  faultsOverflow: Counter;
  activeFaults: Gauge;
}

/** The fault filter of one connection manager. */
export class FaultFilter implements HttpFilter {
  readonly name: string;
  private readonly config: CompiledFault;
  private readonly stats: FaultStats;
  private readonly random: () => number;
  private readonly log: FilterFactoryContext['log'];
  /** Compiled per-route configs (null: invalid, the fault is skipped), keyed by the route table's Any. */
  private readonly perRoute = new WeakMap<Any__Output, CompiledFault | null>();
  private active = 0;

  constructor(name: string, config: CompiledFault, ctx: FilterFactoryContext) {
    this.name = name;
    this.config = config;
    this.random = ctx.random;
    this.log = ctx.log;
    const scope = ctx.store.scope(`http.${ctx.statPrefix}.fault`);
    this.stats = {
      scope,
      delaysInjected: scope.counter('delays_injected'),
      abortsInjected: scope.counter('aborts_injected'),
      faultsOverflow: scope.counter('faults_overflow'),
      activeFaults: scope.gauge('active_faults'),
    };
  }

  /** The config for this request: the most specific typed_per_filter_config, else the filter's. */
  private configFor(req: FilterRequest): CompiledFault | null {
    const any = req.matchedRoute?.perFilterConfig(this.name);
    if (any === undefined) return this.config;
    let c = this.perRoute.get(any);
    if (c === undefined) {
      try {
        c = compileFault(unpackAny<HTTPFault__Output>(any));
      } catch (err) {
        // Route tables are compiled without knowing the HCM's filters, so a bad per-route fault surfaces here.
        this.log.warn({ filter: this.name, route: req.matchedRoute?.name, err: (err as Error).message }, 'invalid per-route fault config; fault skipped');
        c = null;
      }
      this.perRoute.set(any, c);
    }
    return c;
  }

  decodeHeaders(req: FilterRequest): boolean {
    const f = this.configFor(req);
    if (f === null || (f.delay === undefined && f.abort === undefined)) return true;
    const h = req.head.headers;
    if (f.upstreamCluster !== '') {
      const action = req.matchedRoute?.route;
      if (action === undefined || action.clusterSpecifier !== 'cluster' || action.cluster !== f.upstreamCluster) return true;
    }
    if (f.downstreamNodes.length > 0) {
      const node = getHeader(h, 'x-envoy-downstream-service-node');
      if (node === undefined || !f.downstreamNodes.includes(node)) return true;
    }
    if (f.headers.length > 0 && !matchHeaderList(f.headers, h, false)) return true;
    if (f.maxActiveFaults !== undefined && this.active >= f.maxActiveFaults) {
      this.stats.faultsOverflow.inc();
      return true;
    }
    const delayMs = this.delayMs(f, h);
    const abort = this.abortStatus(f, req, h);
    if (delayMs === undefined && abort === undefined) return true;
    const run = new FaultRun(this, req, abort, this.downstreamCluster(f, h));
    if (delayMs !== undefined) {
      run.delay(delayMs);
      return false;
    }
    return run.abortOrContinue();
  }

  private delayMs(f: CompiledFault, h: readonly string[]): number | undefined {
    const d = f.delay;
    if (d === undefined) return undefined;
    if (d.kind === 'fixed') return fires(d.percent, this.random()) ? d.ms : undefined;
    const ms = nonNegativeInt(getHeader(h, 'x-envoy-fault-delay-request'));
    if (ms === undefined) return undefined;
    return fires(headerPercent(d.percent, h, 'x-envoy-fault-delay-request-percentage'), this.random()) ? ms : undefined;
  }

  /** The abort to send, sampled now (Envoy decides both faults when the request arrives). */
  private abortStatus(f: CompiledFault, req: FilterRequest, h: readonly string[]): { http: number; grpc: number | undefined } | undefined {
    const a = f.abort;
    if (a === undefined) return undefined;
    if (a.kind === 'http') return fires(a.percent, this.random()) ? { http: a.status, grpc: undefined } : undefined;
    // gRPC aborts answer HTTP 200 with the grpc-status (Envoy's abortWithStatus for grpc_status).
    if (a.kind === 'grpc') return fires(a.percent, this.random()) ? { http: 200, grpc: a.status } : undefined;
    const grpc = nonNegativeInt(getHeader(h, 'x-envoy-fault-abort-grpc-request'));
    let out: { http: number; grpc: number | undefined } | undefined;
    if (grpc !== undefined && req.isGrpc) out = { http: 200, grpc };
    else {
      const status = nonNegativeInt(getHeader(h, 'x-envoy-fault-abort-request'));
      if (status !== undefined && status >= 200 && status < 600) out = { http: status, grpc: undefined };
    }
    if (out === undefined) return undefined;
    return fires(headerPercent(a.percent, h, 'x-envoy-fault-abort-request-percentage'), this.random()) ? out : undefined;
  }

  private downstreamCluster(f: CompiledFault, h: readonly string[]): string | undefined {
    if (!f.perDownstreamClusterStats) return undefined;
    const c = getHeader(h, 'x-envoy-downstream-service-cluster');
    return c === undefined || c === '' ? undefined : c;
  }

  /** Called by a FaultRun when it starts faulting a request. */
  onFaultStart(): void {
    this.active++;
    this.stats.activeFaults.inc();
  }

  onFaultEnd(): void {
    this.active--;
    this.stats.activeFaults.dec();
  }

  countDelay(downstreamCluster: string | undefined): void {
    this.stats.delaysInjected.inc();
    if (downstreamCluster !== undefined) this.stats.scope.counter(`${downstreamCluster}.delays_injected`).inc();
  }

  countAbort(downstreamCluster: string | undefined): void {
    this.stats.abortsInjected.inc();
    if (downstreamCluster !== undefined) this.stats.scope.counter(`${downstreamCluster}.aborts_injected`).inc();
  }
}

/** One faulted request: holds the delay timer and the active-fault slot until the request ends. */
class FaultRun {
  private readonly filter: FaultFilter;
  private readonly req: FilterRequest;
  private readonly abort: { http: number; grpc: number | undefined } | undefined;
  private readonly downstreamCluster: string | undefined;
  private timer: NodeJS.Timeout | null = null;
  private ended = false;

  constructor(filter: FaultFilter, req: FilterRequest, abort: { http: number; grpc: number | undefined } | undefined, downstreamCluster: string | undefined) {
    this.filter = filter;
    this.req = req;
    this.abort = abort;
    this.downstreamCluster = downstreamCluster;
    filter.onFaultStart();
    req.addEncoder({ onDone: () => this.end() });
  }

  delay(ms: number): void {
    this.filter.countDelay(this.downstreamCluster);
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.ended) return;
      if (this.abortOrContinue()) this.req.continueDecoding();
    }, ms);
  }

  /** Sends the abort if there is one (returns false), else returns true to continue. */
  abortOrContinue(): boolean {
    if (this.abort === undefined) return true;
    this.filter.countAbort(this.downstreamCluster);
    this.req.sendLocalReply(this.abort.http, 'fault filter abort', this.abort.grpc);
    return false;
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.filter.onFaultEnd();
  }
}

/** Registry entry: builds the filter from its HCM typed_config. */
export function createFaultFilter(name: string, typedConfig: Any__Output, ctx: FilterFactoryContext): FaultFilter {
  const cfg = compileFault(unpackAny<HTTPFault__Output>(typedConfig));
  return new FaultFilter(name, cfg, ctx);
}

