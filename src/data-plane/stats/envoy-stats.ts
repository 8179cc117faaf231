/**
 * Typed bundles of the stats each component emits, with Envoy's exact names. Build a bundle once
 * per component (config time) and keep it; every property is a stat object whose name is the
 * snake_case form of the property under the component's prefix (`downstreamRq2xx` →
 * `http.<stat_prefix>.downstream_rq_2xx`).
 *
 * Lists follow Envoy's stat macros: ALL_HTTP_CONN_MAN_STATS + ALL_ROUTER_STATS
 * (docs: "HTTP connection manager statistics"), ALL_CLUSTER_*_STATS ("General cluster statistics"),
 * ALL_LISTENER_STATS ("Listener statistics"), ALL_TCP_PROXY_STATS ("TCP proxy statistics") and
 * ALL_SERVER_STATS ("Server statistics").
 */
import type { Counter, Gauge, Histogram, StatsScope, StatsStore } from './store.ts';

/** Status class index (1..5) of an HTTP status, or 0 when outside 100..599. */
function statusClass(status: number): number {
  const c = (status / 100) | 0;
  return c >= 1 && c <= 5 ? c : 0;
}

/** `http.<stat_prefix>.*`: the HTTP connection manager and its router filter. */
export class HttpConnectionManagerStats {
  readonly scope: StatsScope;
  readonly downstreamCxTotal: Counter;
  readonly downstreamCxSslTotal: Counter;
  readonly downstreamCxHttp1Total: Counter;
  readonly downstreamCxHttp2Total: Counter;
  readonly downstreamCxHttp3Total: Counter;
  readonly downstreamCxUpgradesTotal: Counter;
  readonly downstreamCxDestroy: Counter;
  readonly downstreamCxDestroyRemote: Counter;
  readonly downstreamCxDestroyLocal: Counter;
  readonly downstreamCxDestroyActiveRq: Counter;
  readonly downstreamCxDestroyLocalActiveRq: Counter;
  readonly downstreamCxDestroyRemoteActiveRq: Counter;
  readonly downstreamCxDelayedCloseTimeout: Counter;
  readonly downstreamCxDrainClose: Counter;
  readonly downstreamCxIdleTimeout: Counter;
  readonly downstreamCxMaxDurationReached: Counter;
  readonly downstreamCxMaxRequestsReached: Counter;
  readonly downstreamCxOverloadDisableKeepalive: Counter;
  readonly downstreamCxProtocolError: Counter;
  readonly downstreamCxRxBytesTotal: Counter;
  readonly downstreamCxTxBytesTotal: Counter;
  readonly downstreamFlowControlPausedReadingTotal: Counter;
  readonly downstreamFlowControlResumedReadingTotal: Counter;
  readonly downstreamRqTotal: Counter;
  readonly downstreamRqHttp1Total: Counter;
  readonly downstreamRqHttp2Total: Counter;
  readonly downstreamRqHttp3Total: Counter;
  readonly downstreamRq1xx: Counter;
  readonly downstreamRq2xx: Counter;
  readonly downstreamRq3xx: Counter;
  readonly downstreamRq4xx: Counter;
  readonly downstreamRq5xx: Counter;
  readonly downstreamRqCompleted: Counter;
  readonly downstreamRqFailedPathNormalization: Counter;
  readonly downstreamRqHeaderTimeout: Counter;
  readonly downstreamRqIdleTimeout: Counter;
  readonly downstreamRqMaxDurationReached: Counter;
  readonly downstreamRqNonRelativePath: Counter;
  readonly downstreamRqOverloadClose: Counter;
  readonly downstreamRqRedirectedWithNormalizedPath: Counter;
  readonly downstreamRqResponseBeforeRqComplete: Counter;
  readonly downstreamRqRxReset: Counter;
  readonly downstreamRqTxReset: Counter;
  readonly downstreamRqTimeout: Counter;
  readonly downstreamRqTooLarge: Counter;
  readonly downstreamRqTooManyPrematureResets: Counter;
  readonly downstreamRqWsOnNonWsRoute: Counter;
  readonly rsTooLarge: Counter;
  readonly downstreamCxActive: Gauge;
  readonly downstreamCxHttp1Active: Gauge;
  readonly downstreamCxHttp2Active: Gauge;
  readonly downstreamCxHttp3Active: Gauge;
  readonly downstreamCxSslActive: Gauge;
  readonly downstreamCxUpgradesActive: Gauge;
  readonly downstreamCxRxBytesBuffered: Gauge;
  readonly downstreamCxTxBytesBuffered: Gauge;
  readonly downstreamRqActive: Gauge;
  readonly downstreamCxLengthMs: Histogram;
  readonly downstreamRqTime: Histogram;
  // Router filter stats share the HCM prefix.
  readonly noCluster: Counter;
  readonly noRoute: Counter;
  readonly rqDirectResponse: Counter;
  readonly rqRedirect: Counter;
  readonly rqResetAfterDownstreamResponseStarted: Counter;
  readonly rqTotal: Counter;
  readonly rqOverloadLocalReply: Counter;
  /** Indexed by status class 1..5. */
  private readonly rqByClass: ReadonlyArray<Counter | undefined>;

  constructor(store: StatsStore, statPrefix: string) {
    const s = (this.scope = store.scope(`http.${statPrefix}`));
    this.downstreamCxTotal = s.counter('downstream_cx_total');
    this.downstreamCxSslTotal = s.counter('downstream_cx_ssl_total');
    this.downstreamCxHttp1Total = s.counter('downstream_cx_http1_total');
    this.downstreamCxHttp2Total = s.counter('downstream_cx_http2_total');
    this.downstreamCxHttp3Total = s.counter('downstream_cx_http3_total');
    this.downstreamCxUpgradesTotal = s.counter('downstream_cx_upgrades_total');
    this.downstreamCxDestroy = s.counter('downstream_cx_destroy');
    this.downstreamCxDestroyRemote = s.counter('downstream_cx_destroy_remote');
    this.downstreamCxDestroyLocal = s.counter('downstream_cx_destroy_local');
    this.downstreamCxDestroyActiveRq = s.counter('downstream_cx_destroy_active_rq');
    this.downstreamCxDestroyLocalActiveRq = s.counter('downstream_cx_destroy_local_active_rq');
    this.downstreamCxDestroyRemoteActiveRq = s.counter('downstream_cx_destroy_remote_active_rq');
    this.downstreamCxDelayedCloseTimeout = s.counter('downstream_cx_delayed_close_timeout');
    this.downstreamCxDrainClose = s.counter('downstream_cx_drain_close');
    this.downstreamCxIdleTimeout = s.counter('downstream_cx_idle_timeout');
    this.downstreamCxMaxDurationReached = s.counter('downstream_cx_max_duration_reached');
    this.downstreamCxMaxRequestsReached = s.counter('downstream_cx_max_requests_reached');
    this.downstreamCxOverloadDisableKeepalive = s.counter('downstream_cx_overload_disable_keepalive');
    this.downstreamCxProtocolError = s.counter('downstream_cx_protocol_error');
    this.downstreamCxRxBytesTotal = s.counter('downstream_cx_rx_bytes_total');
    this.downstreamCxTxBytesTotal = s.counter('downstream_cx_tx_bytes_total');
    this.downstreamFlowControlPausedReadingTotal = s.counter('downstream_flow_control_paused_reading_total');
    this.downstreamFlowControlResumedReadingTotal = s.counter('downstream_flow_control_resumed_reading_total');
    this.downstreamRqTotal = s.counter('downstream_rq_total');
    this.downstreamRqHttp1Total = s.counter('downstream_rq_http1_total');
    this.downstreamRqHttp2Total = s.counter('downstream_rq_http2_total');
    this.downstreamRqHttp3Total = s.counter('downstream_rq_http3_total');
    this.downstreamRq1xx = s.counter('downstream_rq_1xx');
    this.downstreamRq2xx = s.counter('downstream_rq_2xx');
    this.downstreamRq3xx = s.counter('downstream_rq_3xx');
    this.downstreamRq4xx = s.counter('downstream_rq_4xx');
    this.downstreamRq5xx = s.counter('downstream_rq_5xx');
    this.downstreamRqCompleted = s.counter('downstream_rq_completed');
    this.downstreamRqFailedPathNormalization = s.counter('downstream_rq_failed_path_normalization');
    this.downstreamRqHeaderTimeout = s.counter('downstream_rq_header_timeout');
    this.downstreamRqIdleTimeout = s.counter('downstream_rq_idle_timeout');
    this.downstreamRqMaxDurationReached = s.counter('downstream_rq_max_duration_reached');
    this.downstreamRqNonRelativePath = s.counter('downstream_rq_non_relative_path');
    this.downstreamRqOverloadClose = s.counter('downstream_rq_overload_close');
    this.downstreamRqRedirectedWithNormalizedPath = s.counter('downstream_rq_redirected_with_normalized_path');
    this.downstreamRqResponseBeforeRqComplete = s.counter('downstream_rq_response_before_rq_complete');
    this.downstreamRqRxReset = s.counter('downstream_rq_rx_reset');
    this.downstreamRqTxReset = s.counter('downstream_rq_tx_reset');
    this.downstreamRqTimeout = s.counter('downstream_rq_timeout');
    this.downstreamRqTooLarge = s.counter('downstream_rq_too_large');
    this.downstreamRqTooManyPrematureResets = s.counter('downstream_rq_too_many_premature_resets');
    this.downstreamRqWsOnNonWsRoute = s.counter('downstream_rq_ws_on_non_ws_route');
    this.rsTooLarge = s.counter('rs_too_large');
    this.downstreamCxActive = s.gauge('downstream_cx_active');
    this.downstreamCxHttp1Active = s.gauge('downstream_cx_http1_active');
    this.downstreamCxHttp2Active = s.gauge('downstream_cx_http2_active');
    this.downstreamCxHttp3Active = s.gauge('downstream_cx_http3_active');
    this.downstreamCxSslActive = s.gauge('downstream_cx_ssl_active');
    this.downstreamCxUpgradesActive = s.gauge('downstream_cx_upgrades_active');
    this.downstreamCxRxBytesBuffered = s.gauge('downstream_cx_rx_bytes_buffered');
    this.downstreamCxTxBytesBuffered = s.gauge('downstream_cx_tx_bytes_buffered');
    this.downstreamRqActive = s.gauge('downstream_rq_active');
    this.downstreamCxLengthMs = s.histogram('downstream_cx_length_ms', 'ms');
    this.downstreamRqTime = s.histogram('downstream_rq_time', 'ms');
    this.noCluster = s.counter('no_cluster');
    this.noRoute = s.counter('no_route');
    this.rqDirectResponse = s.counter('rq_direct_response');
    this.rqRedirect = s.counter('rq_redirect');
    this.rqResetAfterDownstreamResponseStarted = s.counter('rq_reset_after_downstream_response_started');
    this.rqTotal = s.counter('rq_total');
    this.rqOverloadLocalReply = s.counter('rq_overload_local_reply');
    this.rqByClass = [
      undefined,
      this.downstreamRq1xx,
      this.downstreamRq2xx,
      this.downstreamRq3xx,
      this.downstreamRq4xx,
      this.downstreamRq5xx,
    ];
  }

  /** Charges `downstream_rq_<N>xx` and `downstream_rq_completed` for a response (no allocation). */
  chargeResponse(status: number): void {
    const c = this.rqByClass[statusClass(status)];
    if (c !== undefined) c.value++;
    this.downstreamRqCompleted.value++;
  }
}

/** `listener.<address>.http.<stat_prefix>.*`: Envoy's per-listener HCM stats (CONN_MAN_LISTENER_STATS). */
export class HttpConnectionManagerListenerStats {
  readonly downstreamRq1xx: Counter;
  readonly downstreamRq2xx: Counter;
  readonly downstreamRq3xx: Counter;
  readonly downstreamRq4xx: Counter;
  readonly downstreamRq5xx: Counter;
  readonly downstreamRqCompleted: Counter;
  private readonly rqByClass: ReadonlyArray<Counter | undefined>;

  constructor(store: StatsStore, listenerAddress: string, statPrefix: string) {
    const s = store.scope(`listener.${listenerAddress}`).scope(`http.${statPrefix}`);
    this.downstreamRq1xx = s.counter('downstream_rq_1xx');
    this.downstreamRq2xx = s.counter('downstream_rq_2xx');
    this.downstreamRq3xx = s.counter('downstream_rq_3xx');
    this.downstreamRq4xx = s.counter('downstream_rq_4xx');
    this.downstreamRq5xx = s.counter('downstream_rq_5xx');
    this.downstreamRqCompleted = s.counter('downstream_rq_completed');
    this.rqByClass = [
      undefined,
      this.downstreamRq1xx,
      this.downstreamRq2xx,
      this.downstreamRq3xx,
      this.downstreamRq4xx,
      this.downstreamRq5xx,
    ];
  }

  chargeResponse(status: number): void {
    const c = this.rqByClass[statusClass(status)];
    if (c !== undefined) c.value++;
    this.downstreamRqCompleted.value++;
  }
}

/** `cluster.<name>.circuit_breakers.<default|high>.*` (ALL_CLUSTER_CIRCUIT_BREAKERS_STATS). */
export class CircuitBreakerStats {
  readonly cxOpen: Gauge;
  readonly cxPoolOpen: Gauge;
  readonly rqOpen: Gauge;
  readonly rqPendingOpen: Gauge;
  readonly rqRetryOpen: Gauge;
  /** The remaining_* gauges exist only with `track_remaining: true`, as in Envoy. */
  readonly remainingCx: Gauge | null;
  readonly remainingCxPools: Gauge | null;
  readonly remainingPending: Gauge | null;
  readonly remainingRetries: Gauge | null;
  readonly remainingRq: Gauge | null;

  constructor(scope: StatsScope, trackRemaining: boolean) {
    this.cxOpen = scope.gauge('cx_open');
    this.cxPoolOpen = scope.gauge('cx_pool_open');
    this.rqOpen = scope.gauge('rq_open');
    this.rqPendingOpen = scope.gauge('rq_pending_open');
    this.rqRetryOpen = scope.gauge('rq_retry_open');
    this.remainingCx = trackRemaining ? scope.gauge('remaining_cx') : null;
    this.remainingCxPools = trackRemaining ? scope.gauge('remaining_cx_pools') : null;
    this.remainingPending = trackRemaining ? scope.gauge('remaining_pending') : null;
    this.remainingRetries = trackRemaining ? scope.gauge('remaining_retries') : null;
    this.remainingRq = trackRemaining ? scope.gauge('remaining_rq') : null;
  }
}

/** Options for ClusterStats. */
export interface ClusterStatsOptions {
  /** Cluster.alt_stat_name: used instead of the cluster name in stat names. */
  altStatName?: string;
  /** CircuitBreakers.Thresholds.track_remaining, per priority. */
  trackRemaining?: { default?: boolean; high?: boolean };
}

/** `cluster.<name>.*`: traffic, config-update, endpoint, load-balancing and router code stats. */
export class ClusterStats {
  readonly scope: StatsScope;
  // ALL_CLUSTER_TRAFFIC_STATS
  readonly bindErrors: Counter;
  readonly originalDstHostInvalid: Counter;
  readonly retryOrShadowAbandoned: Counter;
  readonly upstreamCxCloseNotify: Counter;
  readonly upstreamCxConnectAttemptsExceeded: Counter;
  readonly upstreamCxConnectFail: Counter;
  readonly upstreamCxConnectTimeout: Counter;
  readonly upstreamCxDestroy: Counter;
  readonly upstreamCxDestroyLocal: Counter;
  readonly upstreamCxDestroyLocalWithActiveRq: Counter;
  readonly upstreamCxDestroyRemote: Counter;
  readonly upstreamCxDestroyRemoteWithActiveRq: Counter;
  readonly upstreamCxDestroyWithActiveRq: Counter;
  readonly upstreamCxHttp1Total: Counter;
  readonly upstreamCxHttp2Total: Counter;
  readonly upstreamCxHttp3Total: Counter;
  readonly upstreamCxIdleTimeout: Counter;
  readonly upstreamCxMaxDurationReached: Counter;
  readonly upstreamCxMaxRequests: Counter;
  readonly upstreamCxNoneHealthy: Counter;
  readonly upstreamCxOverflow: Counter;
  readonly upstreamCxPoolOverflow: Counter;
  readonly upstreamCxProtocolError: Counter;
  readonly upstreamCxRxBytesTotal: Counter;
  readonly upstreamCxTotal: Counter;
  readonly upstreamCxTxBytesTotal: Counter;
  readonly upstreamFlowControlBackedUpTotal: Counter;
  readonly upstreamFlowControlDrainedTotal: Counter;
  readonly upstreamFlowControlPausedReadingTotal: Counter;
  readonly upstreamFlowControlResumedReadingTotal: Counter;
  readonly upstreamInternalRedirectFailedTotal: Counter;
  readonly upstreamInternalRedirectSucceededTotal: Counter;
  readonly upstreamRqCancelled: Counter;
  readonly upstreamRqCompleted: Counter;
  readonly upstreamRqMaintenanceMode: Counter;
  readonly upstreamRqMaxDurationReached: Counter;
  readonly upstreamRqPendingFailureEject: Counter;
  readonly upstreamRqPendingOverflow: Counter;
  readonly upstreamRqPendingTotal: Counter;
  readonly upstreamRqPerTryTimeout: Counter;
  readonly upstreamRqPerTryIdleTimeout: Counter;
  readonly upstreamRqRetry: Counter;
  readonly upstreamRqRetryBackoffExponential: Counter;
  readonly upstreamRqRetryBackoffRatelimited: Counter;
  readonly upstreamRqRetryLimitExceeded: Counter;
  readonly upstreamRqRetryOverflow: Counter;
  readonly upstreamRqRetrySuccess: Counter;
  readonly upstreamRqRxReset: Counter;
  readonly upstreamRqTimeout: Counter;
  readonly upstreamRqTotal: Counter;
  readonly upstreamRqTxReset: Counter;
  readonly upstreamCxActive: Gauge;
  readonly upstreamCxRxBytesBuffered: Gauge;
  readonly upstreamCxTxBytesBuffered: Gauge;
  readonly upstreamRqActive: Gauge;
  readonly upstreamRqPendingActive: Gauge;
  readonly upstreamCxConnectMs: Histogram;
  readonly upstreamCxLengthMs: Histogram;
  // Router code stats (CodeStatsImpl): classes are eager, exact codes lazy.
  readonly upstreamRq1xx: Counter;
  readonly upstreamRq2xx: Counter;
  readonly upstreamRq3xx: Counter;
  readonly upstreamRq4xx: Counter;
  readonly upstreamRq5xx: Counter;
  readonly upstreamRqTime: Histogram;
  // ALL_CLUSTER_CONFIG_UPDATE_STATS
  readonly assignmentStale: Counter;
  readonly assignmentTimeoutReceived: Counter;
  readonly assignmentUseCached: Counter;
  readonly updateAttempt: Counter;
  readonly updateEmpty: Counter;
  readonly updateFailure: Counter;
  readonly updateNoRebuild: Counter;
  readonly updateSuccess: Counter;
  readonly version: Gauge;
  readonly warmingState: Gauge;
  // ALL_CLUSTER_ENDPOINT_STATS
  readonly maxHostWeight: Gauge;
  readonly membershipChange: Counter;
  readonly membershipDegraded: Gauge;
  readonly membershipExcluded: Gauge;
  readonly membershipHealthy: Gauge;
  readonly membershipTotal: Gauge;
  // ALL_CLUSTER_LB_STATS
  readonly lbHealthyPanic: Counter;
  readonly lbLocalClusterNotOk: Counter;
  readonly lbRecalculateZoneStructures: Counter;
  readonly lbSubsetsCreated: Counter;
  readonly lbSubsetsFallback: Counter;
  readonly lbSubsetsFallbackPanic: Counter;
  readonly lbSubsetsRemoved: Counter;
  readonly lbSubsetsSelected: Counter;
  readonly lbZoneClusterTooSmall: Counter;
  readonly lbZoneNoCapacityLeft: Counter;
  readonly lbZoneNumberDiffers: Counter;
  readonly lbZoneRoutingAllDirectly: Counter;
  readonly lbZoneRoutingCrossZone: Counter;
  readonly lbZoneRoutingSampled: Counter;
  readonly lbSubsetsActive: Gauge;
  readonly circuitBreakers: { readonly default: CircuitBreakerStats; readonly high: CircuitBreakerStats };
  /** Indexed by status class 1..5. */
  private readonly rqByClass: ReadonlyArray<Counter | undefined>;
  /** Indexed by status code; filled on first use of a code. */
  private readonly rqByCode: Array<Counter | undefined> = new Array<Counter | undefined>(600);

  constructor(store: StatsStore, clusterName: string, options: ClusterStatsOptions = {}) {
    const s = (this.scope = store.scope(`cluster.${options.altStatName ?? clusterName}`));
    this.bindErrors = s.counter('bind_errors');
    this.originalDstHostInvalid = s.counter('original_dst_host_invalid');
    this.retryOrShadowAbandoned = s.counter('retry_or_shadow_abandoned');
    this.upstreamCxCloseNotify = s.counter('upstream_cx_close_notify');
    this.upstreamCxConnectAttemptsExceeded = s.counter('upstream_cx_connect_attempts_exceeded');
    this.upstreamCxConnectFail = s.counter('upstream_cx_connect_fail');
    this.upstreamCxConnectTimeout = s.counter('upstream_cx_connect_timeout');
    this.upstreamCxDestroy = s.counter('upstream_cx_destroy');
    this.upstreamCxDestroyLocal = s.counter('upstream_cx_destroy_local');
    this.upstreamCxDestroyLocalWithActiveRq = s.counter('upstream_cx_destroy_local_with_active_rq');
    this.upstreamCxDestroyRemote = s.counter('upstream_cx_destroy_remote');
    this.upstreamCxDestroyRemoteWithActiveRq = s.counter('upstream_cx_destroy_remote_with_active_rq');
    this.upstreamCxDestroyWithActiveRq = s.counter('upstream_cx_destroy_with_active_rq');
    this.upstreamCxHttp1Total = s.counter('upstream_cx_http1_total');
    this.upstreamCxHttp2Total = s.counter('upstream_cx_http2_total');
    this.upstreamCxHttp3Total = s.counter('upstream_cx_http3_total');
    this.upstreamCxIdleTimeout = s.counter('upstream_cx_idle_timeout');
    this.upstreamCxMaxDurationReached = s.counter('upstream_cx_max_duration_reached');
    this.upstreamCxMaxRequests = s.counter('upstream_cx_max_requests');
    this.upstreamCxNoneHealthy = s.counter('upstream_cx_none_healthy');
    this.upstreamCxOverflow = s.counter('upstream_cx_overflow');
    this.upstreamCxPoolOverflow = s.counter('upstream_cx_pool_overflow');
    this.upstreamCxProtocolError = s.counter('upstream_cx_protocol_error');
    this.upstreamCxRxBytesTotal = s.counter('upstream_cx_rx_bytes_total');
    this.upstreamCxTotal = s.counter('upstream_cx_total');
    this.upstreamCxTxBytesTotal = s.counter('upstream_cx_tx_bytes_total');
    this.upstreamFlowControlBackedUpTotal = s.counter('upstream_flow_control_backed_up_total');
    this.upstreamFlowControlDrainedTotal = s.counter('upstream_flow_control_drained_total');
    this.upstreamFlowControlPausedReadingTotal = s.counter('upstream_flow_control_paused_reading_total');
    this.upstreamFlowControlResumedReadingTotal = s.counter('upstream_flow_control_resumed_reading_total');
    this.upstreamInternalRedirectFailedTotal = s.counter('upstream_internal_redirect_failed_total');
    this.upstreamInternalRedirectSucceededTotal = s.counter('upstream_internal_redirect_succeeded_total');
    this.upstreamRqCancelled = s.counter('upstream_rq_cancelled');
    this.upstreamRqCompleted = s.counter('upstream_rq_completed');
    this.upstreamRqMaintenanceMode = s.counter('upstream_rq_maintenance_mode');
    this.upstreamRqMaxDurationReached = s.counter('upstream_rq_max_duration_reached');
    this.upstreamRqPendingFailureEject = s.counter('upstream_rq_pending_failure_eject');
    this.upstreamRqPendingOverflow = s.counter('upstream_rq_pending_overflow');
    this.upstreamRqPendingTotal = s.counter('upstream_rq_pending_total');
    this.upstreamRqPerTryTimeout = s.counter('upstream_rq_per_try_timeout');
    this.upstreamRqPerTryIdleTimeout = s.counter('upstream_rq_per_try_idle_timeout');
    this.upstreamRqRetry = s.counter('upstream_rq_retry');
    this.upstreamRqRetryBackoffExponential = s.counter('upstream_rq_retry_backoff_exponential');
    this.upstreamRqRetryBackoffRatelimited = s.counter('upstream_rq_retry_backoff_ratelimited');
    this.upstreamRqRetryLimitExceeded = s.counter('upstream_rq_retry_limit_exceeded');
    this.upstreamRqRetryOverflow = s.counter('upstream_rq_retry_overflow');
    this.upstreamRqRetrySuccess = s.counter('upstream_rq_retry_success');
    this.upstreamRqRxReset = s.counter('upstream_rq_rx_reset');
    this.upstreamRqTimeout = s.counter('upstream_rq_timeout');
    this.upstreamRqTotal = s.counter('upstream_rq_total');
    this.upstreamRqTxReset = s.counter('upstream_rq_tx_reset');
    this.upstreamCxActive = s.gauge('upstream_cx_active');
    this.upstreamCxRxBytesBuffered = s.gauge('upstream_cx_rx_bytes_buffered');
    this.upstreamCxTxBytesBuffered = s.gauge('upstream_cx_tx_bytes_buffered');
    this.upstreamRqActive = s.gauge('upstream_rq_active');
    this.upstreamRqPendingActive = s.gauge('upstream_rq_pending_active');
    this.upstreamCxConnectMs = s.histogram('upstream_cx_connect_ms', 'ms');
    this.upstreamCxLengthMs = s.histogram('upstream_cx_length_ms', 'ms');
    this.upstreamRq1xx = s.counter('upstream_rq_1xx');
    this.upstreamRq2xx = s.counter('upstream_rq_2xx');
    this.upstreamRq3xx = s.counter('upstream_rq_3xx');
    this.upstreamRq4xx = s.counter('upstream_rq_4xx');
    this.upstreamRq5xx = s.counter('upstream_rq_5xx');
    this.upstreamRqTime = s.histogram('upstream_rq_time', 'ms');
    this.assignmentStale = s.counter('assignment_stale');
    this.assignmentTimeoutReceived = s.counter('assignment_timeout_received');
    this.assignmentUseCached = s.counter('assignment_use_cached');
    this.updateAttempt = s.counter('update_attempt');
    this.updateEmpty = s.counter('update_empty');
    this.updateFailure = s.counter('update_failure');
    this.updateNoRebuild = s.counter('update_no_rebuild');
    this.updateSuccess = s.counter('update_success');
    this.version = s.gauge('version', 'never_import');
    this.warmingState = s.gauge('warming_state', 'never_import');
    this.maxHostWeight = s.gauge('max_host_weight', 'never_import');
    this.membershipChange = s.counter('membership_change');
    this.membershipDegraded = s.gauge('membership_degraded', 'never_import');
    this.membershipExcluded = s.gauge('membership_excluded', 'never_import');
    this.membershipHealthy = s.gauge('membership_healthy', 'never_import');
    this.membershipTotal = s.gauge('membership_total', 'never_import');
    this.lbHealthyPanic = s.counter('lb_healthy_panic');
    this.lbLocalClusterNotOk = s.counter('lb_local_cluster_not_ok');
    this.lbRecalculateZoneStructures = s.counter('lb_recalculate_zone_structures');
    this.lbSubsetsCreated = s.counter('lb_subsets_created');
    this.lbSubsetsFallback = s.counter('lb_subsets_fallback');
    this.lbSubsetsFallbackPanic = s.counter('lb_subsets_fallback_panic');
    this.lbSubsetsRemoved = s.counter('lb_subsets_removed');
    this.lbSubsetsSelected = s.counter('lb_subsets_selected');
    this.lbZoneClusterTooSmall = s.counter('lb_zone_cluster_too_small');
    this.lbZoneNoCapacityLeft = s.counter('lb_zone_no_capacity_left');
    this.lbZoneNumberDiffers = s.counter('lb_zone_number_differs');
    this.lbZoneRoutingAllDirectly = s.counter('lb_zone_routing_all_directly');
    this.lbZoneRoutingCrossZone = s.counter('lb_zone_routing_cross_zone');
    this.lbZoneRoutingSampled = s.counter('lb_zone_routing_sampled');
    this.lbSubsetsActive = s.gauge('lb_subsets_active');
    const cb = s.scope('circuit_breakers');
    this.circuitBreakers = {
      default: new CircuitBreakerStats(cb.scope('default'), options.trackRemaining?.default ?? false),
      high: new CircuitBreakerStats(cb.scope('high'), options.trackRemaining?.high ?? false),
    };
    this.rqByClass = [undefined, this.upstreamRq1xx, this.upstreamRq2xx, this.upstreamRq3xx, this.upstreamRq4xx, this.upstreamRq5xx];
  }

  /**
   * `upstream_rq_<code>`, created on first use (Envoy creates these lazily too). After the first
   * call for a code this is an array read.
   */
  upstreamRqCode(status: number): Counter {
    const code = status | 0;
    if (code < 0 || code >= 600) return this.scope.counter(`upstream_rq_${code}`);
    let c = this.rqByCode[code];
    if (c === undefined) {
      c = this.scope.counter(`upstream_rq_${code}`);
      this.rqByCode[code] = c;
    }
    return c;
  }

  /**
   * Envoy's CodeStatsImpl::chargeResponseStat for one upstream response: `upstream_rq_<code>`,
   * `upstream_rq_<N>xx` and `upstream_rq_completed`.
   */
  chargeResponse(status: number): void {
    this.upstreamRqCode(status).value++;
    const c = this.rqByClass[statusClass(status)];
    if (c !== undefined) c.value++;
    this.upstreamRqCompleted.value++;
  }
}

/**
 * The `<address>` part of `listener.<address>.*` for a socket address: `0.0.0.0:15001`, `[::]:80`
 * (the store turns ':' into '_', giving Envoy's `0.0.0.0_15001` and `[__]_80`).
 */
export function listenerStatAddress(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** `listener.<address|stat_prefix>.*` (ALL_LISTENER_STATS). */
export class ListenerStats {
  readonly scope: StatsScope;
  readonly downstreamCxDestroy: Counter;
  readonly downstreamCxOverflow: Counter;
  readonly downstreamCxOverloadReject: Counter;
  readonly downstreamCxTotal: Counter;
  readonly downstreamCxTransportSocketConnectTimeout: Counter;
  readonly downstreamGlobalCxOverflow: Counter;
  readonly downstreamListenerFilterError: Counter;
  readonly downstreamListenerFilterRemoteClose: Counter;
  readonly downstreamPreCxTimeout: Counter;
  readonly noFilterChainMatch: Counter;
  readonly downstreamCxActive: Gauge;
  readonly downstreamPreCxActive: Gauge;
  readonly downstreamCxLengthMs: Histogram;

  /** @param address `listenerStatAddress(...)` or the Listener's stat_prefix. */
  constructor(store: StatsStore, address: string) {
    const s = (this.scope = store.scope(`listener.${address}`));
    this.downstreamCxDestroy = s.counter('downstream_cx_destroy');
    this.downstreamCxOverflow = s.counter('downstream_cx_overflow');
    this.downstreamCxOverloadReject = s.counter('downstream_cx_overload_reject');
    this.downstreamCxTotal = s.counter('downstream_cx_total');
    this.downstreamCxTransportSocketConnectTimeout = s.counter('downstream_cx_transport_socket_connect_timeout');
    this.downstreamGlobalCxOverflow = s.counter('downstream_global_cx_overflow');
    this.downstreamListenerFilterError = s.counter('downstream_listener_filter_error');
    this.downstreamListenerFilterRemoteClose = s.counter('downstream_listener_filter_remote_close');
    this.downstreamPreCxTimeout = s.counter('downstream_pre_cx_timeout');
    this.noFilterChainMatch = s.counter('no_filter_chain_match');
    this.downstreamCxActive = s.gauge('downstream_cx_active');
    this.downstreamPreCxActive = s.gauge('downstream_pre_cx_active');
    this.downstreamCxLengthMs = s.histogram('downstream_cx_length_ms', 'ms');
  }
}

/** `tcp.<stat_prefix>.*` (ALL_TCP_PROXY_STATS). */
export class TcpProxyStats {
  readonly scope: StatsScope;
  readonly downstreamCxRxBytesTotal: Counter;
  readonly downstreamCxTxBytesTotal: Counter;
  readonly downstreamCxTotal: Counter;
  readonly downstreamCxNoRoute: Counter;
  readonly downstreamFlowControlPausedReadingTotal: Counter;
  readonly downstreamFlowControlResumedReadingTotal: Counter;
  readonly earlyDataReceivedCountTotal: Counter;
  readonly idleTimeout: Counter;
  readonly maxDownstreamConnectionDurationReached: Counter;
  readonly upstreamFlushTotal: Counter;
  readonly downstreamCxRxBytesBuffered: Gauge;
  readonly downstreamCxTxBytesBuffered: Gauge;
  readonly upstreamFlushActive: Gauge;

  constructor(store: StatsStore, statPrefix: string) {
    const s = (this.scope = store.scope(`tcp.${statPrefix}`));
    this.downstreamCxRxBytesTotal = s.counter('downstream_cx_rx_bytes_total');
    this.downstreamCxTxBytesTotal = s.counter('downstream_cx_tx_bytes_total');
    this.downstreamCxTotal = s.counter('downstream_cx_total');
    this.downstreamCxNoRoute = s.counter('downstream_cx_no_route');
    this.downstreamFlowControlPausedReadingTotal = s.counter('downstream_flow_control_paused_reading_total');
    this.downstreamFlowControlResumedReadingTotal = s.counter('downstream_flow_control_resumed_reading_total');
    this.earlyDataReceivedCountTotal = s.counter('early_data_received_count_total');
    this.idleTimeout = s.counter('idle_timeout');
    this.maxDownstreamConnectionDurationReached = s.counter('max_downstream_connection_duration_reached');
    this.upstreamFlushTotal = s.counter('upstream_flush_total');
    this.downstreamCxRxBytesBuffered = s.gauge('downstream_cx_rx_bytes_buffered');
    this.downstreamCxTxBytesBuffered = s.gauge('downstream_cx_tx_bytes_buffered');
    this.upstreamFlushActive = s.gauge('upstream_flush_active');
  }
}

/**
 * `server.*` (ALL_SERVER_STATS). The owner refreshes uptime/memory/state on each stats flush, as
 * Envoy's InstanceImpl::updateServerStats does.
 */
export class ServerStats {
  readonly scope: StatsScope;
  readonly debugAssertionFailures: Counter;
  readonly envoyBugFailures: Counter;
  readonly dynamicUnknownFields: Counter;
  readonly staticUnknownFields: Counter;
  readonly concurrency: Gauge;
  readonly daysUntilFirstCertExpiring: Gauge;
  readonly hotRestartEpoch: Gauge;
  readonly live: Gauge;
  readonly memoryAllocated: Gauge;
  readonly memoryHeapSize: Gauge;
  readonly memoryPhysicalSize: Gauge;
  readonly parentConnections: Gauge;
  /** Envoy's ServerInfo.State as a number: 0 LIVE, 1 DRAINING, 2 PRE_INITIALIZING, 3 INITIALIZING. */
  readonly state: Gauge;
  readonly statsRecentLookups: Gauge;
  readonly totalConnections: Gauge;
  readonly uptime: Gauge;
  readonly version: Gauge;
  readonly initializationTimeMs: Histogram;

  constructor(store: StatsStore) {
    const s = (this.scope = store.scope('server'));
    this.debugAssertionFailures = s.counter('debug_assertion_failures');
    this.envoyBugFailures = s.counter('envoy_bug_failures');
    this.dynamicUnknownFields = s.counter('dynamic_unknown_fields');
    this.staticUnknownFields = s.counter('static_unknown_fields');
    this.concurrency = s.gauge('concurrency', 'never_import');
    this.daysUntilFirstCertExpiring = s.gauge('days_until_first_cert_expiring');
    this.hotRestartEpoch = s.gauge('hot_restart_epoch', 'never_import');
    this.live = s.gauge('live', 'never_import');
    this.memoryAllocated = s.gauge('memory_allocated');
    this.memoryHeapSize = s.gauge('memory_heap_size');
    this.memoryPhysicalSize = s.gauge('memory_physical_size');
    this.parentConnections = s.gauge('parent_connections');
    this.state = s.gauge('state', 'never_import');
    this.statsRecentLookups = s.gauge('stats_recent_lookups', 'never_import');
    this.totalConnections = s.gauge('total_connections');
    this.uptime = s.gauge('uptime');
    this.version = s.gauge('version', 'never_import');
    this.initializationTimeMs = s.histogram('initialization_time_ms', 'ms');
  }
}

/** `http.<stat_prefix>.*` stats of one HttpConnectionManager. */
export function httpConnectionManagerStats(store: StatsStore, statPrefix: string): HttpConnectionManagerStats {
  return new HttpConnectionManagerStats(store, statPrefix);
}

/** `cluster.<name>.*` stats of one Cluster. */
export function clusterStats(store: StatsStore, clusterName: string, options?: ClusterStatsOptions): ClusterStats {
  return new ClusterStats(store, clusterName, options);
}

/** `listener.<address>.*` stats of one Listener. */
export function listenerStats(store: StatsStore, address: string): ListenerStats {
  return new ListenerStats(store, address);
}

/** `tcp.<stat_prefix>.*` stats of one TcpProxy. */
export function tcpProxyStats(store: StatsStore, statPrefix: string): TcpProxyStats {
  return new TcpProxyStats(store, statPrefix);
}

/** `server.*` stats. */
export function serverStats(store: StatsStore): ServerStats {
  return new ServerStats(store);
}
