/**
 * Outlier detection (envoy.config.cluster.v3.OutlierDetection), Envoy's consecutive-error detectors
 * (outlier_detection_impl.cc):
 * - every upstream response is reported with its status: a 5xx counts toward `consecutive_5xx` (default 5),
 *   a 502/503/504 also toward `consecutive_gateway_failure` (default 5), anything else resets both. Local-origin
 *   failures (connect failure, reset, timeout) count as 503/503/504 unless `split_external_local_origin_errors`,
 *   which counts them toward `consecutive_local_origin_failure` (default 5) instead and a connect success resets it;
 * - on reaching a threshold the host is ejected with probability `enforcing_*` percent (defaults: 5xx 100,
 *   gateway failure 0, local origin 100), provided fewer than `max_ejection_percent` (default 10) of the
 *   cluster's hosts are ejected already (`always_eject_one_host` lifts that for the first ejection);
 * - an ejected host is not picked by the load balancer and shows `/failed_outlier_check` in /clusters; every
 *   `interval` (default 10 s) hosts ejected for `base_ejection_time` (default 30 s) × their ejection count
 *   (capped at `max_ejection_time`, default 300 s) return; a host that stays in for an interval has its
 *   ejection count decremented;
 * - stats `cluster.<name>.outlier_detection.ejections_{active,overflow,total,enforced_total,
 *   enforced_consecutive_5xx,detected_consecutive_5xx,…}`.
 * Success-rate and failure-percentage detection are not implemented (with Envoy's defaults they need 5 hosts
 * with 100 requests each per interval).
 */
import type { OutlierDetection__Output } from '../../xds/gen/envoy/config/cluster/v3/OutlierDetection.ts';
import type { Counter, Gauge, StatsScope } from '../stats/store.ts';
import { durationMs } from '../duration.ts';
import type { UpstreamHost } from './lb/types.ts';

/** A compiled OutlierDetection, with Envoy's defaults filled in. */
export interface OutlierConfig {
  consecutive5xx: number;
  consecutiveGatewayFailure: number;
  consecutiveLocalOriginFailure: number;
  /** Percent chances of enforcing each detection. */
  enforcingConsecutive5xx: number;
  enforcingConsecutiveGatewayFailure: number;
  enforcingConsecutiveLocalOriginFailure: number;
  intervalMs: number;
  baseEjectionTimeMs: number;
  maxEjectionTimeMs: number;
  maxEjectionPercent: number;
  splitExternalLocalOriginErrors: boolean;
  alwaysEjectOneHost: boolean;
}

/** OutlierDetection → config with Envoy's defaults (outlier_detection.proto). */
export function compileOutlierDetection(od: OutlierDetection__Output): OutlierConfig {
  const base = durationMs(od.base_ejection_time, 30_000);
  return {
    consecutive5xx: od.consecutive_5xx?.value ?? 5,
    consecutiveGatewayFailure: od.consecutive_gateway_failure?.value ?? 5,
    consecutiveLocalOriginFailure: od.consecutive_local_origin_failure?.value ?? 5,
    enforcingConsecutive5xx: od.enforcing_consecutive_5xx?.value ?? 100,
    enforcingConsecutiveGatewayFailure: od.enforcing_consecutive_gateway_failure?.value ?? 0,
    enforcingConsecutiveLocalOriginFailure: od.enforcing_consecutive_local_origin_failure?.value ?? 100,
    intervalMs: durationMs(od.interval, 10_000),
    baseEjectionTimeMs: base,
    // Envoy: max_ejection_time defaults to 300 s, or base_ejection_time when that is larger.
    maxEjectionTimeMs: durationMs(od.max_ejection_time, Math.max(300_000, base)),
    maxEjectionPercent: Math.min(100, od.max_ejection_percent?.value ?? 10),
    splitExternalLocalOriginErrors: od.split_external_local_origin_errors,
    alwaysEjectOneHost: od.always_eject_one_host?.value ?? false,
  };
}

/** Kinds of detection, with Envoy's stat names. */
type EjectionType = 'consecutive_5xx' | 'consecutive_gateway_failure' | 'consecutive_local_origin_failure';

/** Local-origin results the router and pools report. */
export type LocalOriginResult = 'connect-failure' | 'connect-success' | 'timeout' | 'reset';

interface HostState {
  consecutive5xx: number;
  consecutiveGateway: number;
  consecutiveLocal: number;
  ejectedAtMs: number;
  numEjections: number;
}

/** What the detector needs from its cluster. */
export interface OutlierEnv {
  now: () => number;
  random: () => number;
  /** `cluster.<name>.outlier_detection` */
  scope: StatsScope;
  /** Number of hosts in the cluster now (for max_ejection_percent). */
  hostCount: () => number;
  /** A host was ejected or returned: rebuild the load balancer. */
  onChange: () => void;
}

/** One cluster's outlier detector. Hosts are tracked by object identity while the cluster keeps them. */
export class OutlierDetector {
  readonly config: OutlierConfig;
  private readonly env: OutlierEnv;
  private readonly states = new Map<UpstreamHost, HostState>();
  private readonly ejected = new Set<UpstreamHost>();
  private timer: NodeJS.Timeout | null = null;
  private readonly active: Gauge;
  private readonly counters = new Map<string, Counter>();

  constructor(config: OutlierConfig, env: OutlierEnv) {
    this.config = config;
    this.env = env;
    this.active = env.scope.gauge('ejections_active');
    for (const n of ['ejections_total', 'ejections_overflow', 'ejections_enforced_total', 'ejections_consecutive_5xx',
      'ejections_enforced_consecutive_5xx', 'ejections_detected_consecutive_5xx',
      'ejections_enforced_consecutive_gateway_failure', 'ejections_detected_consecutive_gateway_failure',
      'ejections_enforced_consecutive_local_origin_failure', 'ejections_detected_consecutive_local_origin_failure']) {
      this.counters.set(n, env.scope.counter(n));
    }
  }

  private inc(name: string): void {
    this.counters.get(name)!.inc();
  }

  /** Starts the interval timer (unejection and ejection-count decay). */
  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => this.onInterval(), this.config.intervalMs);
    this.timer.unref();
  }

  close(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private stateOf(host: UpstreamHost): HostState {
    let s = this.states.get(host);
    if (s === undefined) {
      s = { consecutive5xx: 0, consecutiveGateway: 0, consecutiveLocal: 0, ejectedAtMs: 0, numEjections: 0 };
      this.states.set(host, s);
    }
    return s;
  }

  /** The host left the cluster: forget it (an ejected one no longer counts as active). */
  removeHost(host: UpstreamHost): void {
    this.states.delete(host);
    if (this.ejected.delete(host)) this.active.dec();
    host.outlierEjected = false;
  }

  isEjected(host: UpstreamHost): boolean {
    return this.ejected.has(host);
  }

  /** An HTTP response (status) from `host`. */
  putHttpStatus(host: UpstreamHost, status: number): void {
    const s = this.stateOf(host);
    if (status < 500 || status > 599) {
      s.consecutive5xx = 0;
      s.consecutiveGateway = 0;
      return;
    }
    if (status >= 502 && status <= 504) {
      if (++s.consecutiveGateway === this.config.consecutiveGatewayFailure) this.detected(host, s, 'consecutive_gateway_failure');
    } else s.consecutiveGateway = 0;
    if (++s.consecutive5xx === this.config.consecutive5xx) this.detected(host, s, 'consecutive_5xx');
  }

  /** A failure (or connect success) that happened in the proxy rather than in an upstream response. */
  putLocalOrigin(host: UpstreamHost, result: LocalOriginResult): void {
    if (!this.config.splitExternalLocalOriginErrors) {
      // Envoy's putResultNoLocalExternalSplit: connect failures and resets read as 503, timeouts as 504.
      if (result === 'connect-success') return;
      this.putHttpStatus(host, result === 'timeout' ? 504 : 503);
      return;
    }
    const s = this.stateOf(host);
    if (result === 'connect-success') {
      s.consecutiveLocal = 0;
      return;
    }
    if (++s.consecutiveLocal === this.config.consecutiveLocalOriginFailure) this.detected(host, s, 'consecutive_local_origin_failure');
  }

  private detected(host: UpstreamHost, s: HostState, type: EjectionType): void {
    // Envoy resets the detector's counter when it fires, whether or not the host gets ejected.
    if (type === 'consecutive_5xx') s.consecutive5xx = 0;
    else if (type === 'consecutive_gateway_failure') s.consecutiveGateway = 0;
    else s.consecutiveLocal = 0;
    if (this.ejected.has(host)) return;
    const c = this.config;
    const total = this.env.hostCount();
    const ejectedPercent = total === 0 ? 100 : (100 * this.ejected.size) / total;
    if (!(ejectedPercent < c.maxEjectionPercent || (c.alwaysEjectOneHost && this.ejected.size === 0))) {
      this.inc('ejections_overflow');
      return;
    }
    if (type === 'consecutive_5xx') {
      this.inc('ejections_total'); // deprecated counters Envoy still keeps
      this.inc('ejections_consecutive_5xx');
    }
    this.inc(`ejections_detected_${type}`);
    const enforcing = type === 'consecutive_5xx' ? c.enforcingConsecutive5xx : type === 'consecutive_gateway_failure' ? c.enforcingConsecutiveGatewayFailure : c.enforcingConsecutiveLocalOriginFailure;
    if (!(this.env.random() * 100 < enforcing)) return;
    this.inc('ejections_enforced_total');
    this.inc(`ejections_enforced_${type}`);
    s.numEjections++;
    s.ejectedAtMs = this.env.now();
    this.ejected.add(host);
    host.outlierEjected = true;
    this.active.inc();
    this.env.onChange();
  }

  /** Envoy's DetectorImpl::onIntervalTimer: return hosts whose ejection time passed; decay ejection counts. */
  onInterval(): void {
    const now = this.env.now();
    const c = this.config;
    let changed = false;
    for (const [host, s] of this.states) {
      if (this.ejected.has(host)) {
        const ejectMs = Math.min(c.baseEjectionTimeMs * s.numEjections, c.maxEjectionTimeMs);
        if (now - s.ejectedAtMs >= ejectMs) {
          this.ejected.delete(host);
          host.outlierEjected = false;
          this.active.dec();
          changed = true;
        }
      } else if (s.numEjections > 0) {
        // In for a whole interval: the next ejection is shorter again (Envoy's ejection time backoff decay).
        s.numEjections--;
      }
    }
    if (changed) this.env.onChange();
  }
}
