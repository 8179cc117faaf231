/**
 * Text and JSON bodies of Envoy's `/clusters` and `/listeners` admin endpoints, built from the
 * provider's plain data. JSON mirrors envoy.admin.v3.Clusters / Listeners in proto3 JSON form
 * (fields in field-number order, defaults omitted, uint64 as strings).
 */
import { formatG, formatShortest } from '../stats/format-number.ts';

/** Per-priority circuit breaker limits, as shown by /clusters. */
export interface AdminCircuitBreakerLimits {
  maxConnections: number;
  maxPendingRequests: number;
  maxRequests: number;
  maxRetries: number;
}

/** One upstream host as shown by /clusters. */
export interface AdminHost {
  address: string;
  port: number;
  /** Envoy's HostUtility::healthFlagsToString: `healthy` or `/failed_active_hc/failed_outlier_check...`. */
  health: string;
  weight: number;
  priority: number;
  region?: string;
  zone?: string;
  subZone?: string;
  hostname?: string;
  canary?: boolean;
  /** Outlier-detection success rate in percent; absent/negative when not computed. */
  successRate?: number;
  localOriginSuccessRate?: number;
  /** Host stats by name: cx_active, cx_connect_fail, cx_total, rq_active, rq_error, rq_success, rq_timeout, rq_total. */
  stats: Record<string, number>;
}

/** Outlier detector summary of a cluster. */
export interface AdminOutlierInfo {
  successRateAverage: number;
  successRateEjectionThreshold: number;
  localOriginSuccessRateAverage: number;
  localOriginSuccessRateEjectionThreshold: number;
}

/** One cluster as shown by /clusters. */
export interface AdminCluster {
  name: string;
  /** Cluster.alt_stat_name when set, else the name (Envoy's ClusterInfo::observabilityName). */
  observabilityName?: string;
  addedViaApi: boolean;
  hosts: AdminHost[];
  /** Defaults to Envoy's defaults (1024/1024/1024/3) for both priorities. */
  circuitBreakers?: { default: AdminCircuitBreakerLimits; high: AdminCircuitBreakerLimits };
  outlier?: AdminOutlierInfo;
  edsServiceName?: string;
}

/** One listener as shown by /listeners. */
export interface AdminListener {
  name: string;
  address: string;
  port: number;
}

/** Envoy's default thresholds (circuit breaker docs: max_connections/pending/requests 1024, max_retries 3). */
export const DEFAULT_CIRCUIT_BREAKER_LIMITS: Readonly<AdminCircuitBreakerLimits> = Object.freeze({
  maxConnections: 1024,
  maxPendingRequests: 1024,
  maxRequests: 1024,
  maxRetries: 3,
});

/** Host gauges (ALL_HOST_STATS); every other host stat is a counter. */
const HOST_GAUGES = new Set(['cx_active', 'rq_active']);

/** `ip:port`, bracketing IPv6 as Envoy's Address::asString does. */
export function socketAddressString(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** `/clusters` text, line for line as Envoy's ClustersHandler::writeClustersAsText. */
export function formatClustersText(clusters: readonly AdminCluster[]): string {
  let out = '';
  for (const c of clusters) {
    const n = c.name;
    // Envoy's TextClustersChunkProcessor::render opens each cluster with its observability name.
    out += `${n}::observability_name::${c.observabilityName ?? n}\n`;
    if (c.outlier !== undefined) {
      out += `${n}::outlier::success_rate_average::${formatG(c.outlier.successRateAverage)}\n`;
      out += `${n}::outlier::success_rate_ejection_threshold::${formatG(c.outlier.successRateEjectionThreshold)}\n`;
      out += `${n}::outlier::local_origin_success_rate_average::${formatG(c.outlier.localOriginSuccessRateAverage)}\n`;
      out += `${n}::outlier::local_origin_success_rate_ejection_threshold::${formatG(c.outlier.localOriginSuccessRateEjectionThreshold)}\n`;
    }
    for (const [priority, limits] of [
      ['default', c.circuitBreakers?.default ?? DEFAULT_CIRCUIT_BREAKER_LIMITS],
      ['high', c.circuitBreakers?.high ?? DEFAULT_CIRCUIT_BREAKER_LIMITS],
    ] as const) {
      out += `${n}::${priority}_priority::max_connections::${limits.maxConnections}\n`;
      out += `${n}::${priority}_priority::max_pending_requests::${limits.maxPendingRequests}\n`;
      out += `${n}::${priority}_priority::max_requests::${limits.maxRequests}\n`;
      out += `${n}::${priority}_priority::max_retries::${limits.maxRetries}\n`;
    }
    out += `${n}::added_via_api::${c.addedViaApi}\n`;
    if (c.edsServiceName !== undefined && c.edsServiceName !== '') out += `${n}::eds_service_name::${c.edsServiceName}\n`;
    for (const h of c.hosts) {
      const a = socketAddressString(h.address, h.port);
      for (const stat of Object.keys(h.stats).sort(cmp)) out += `${n}::${a}::${stat}::${h.stats[stat]}\n`;
      out += `${n}::${a}::hostname::${h.hostname ?? ''}\n`;
      out += `${n}::${a}::health_flags::${h.health}\n`;
      out += `${n}::${a}::weight::${h.weight}\n`;
      out += `${n}::${a}::region::${h.region ?? ''}\n`;
      out += `${n}::${a}::zone::${h.zone ?? ''}\n`;
      out += `${n}::${a}::sub_zone::${h.subZone ?? ''}\n`;
      out += `${n}::${a}::canary::${h.canary ?? false}\n`;
      out += `${n}::${a}::priority::${h.priority}\n`;
      out += `${n}::${a}::success_rate::${formatShortest(h.successRate ?? -1)}\n`;
      out += `${n}::${a}::local_origin_success_rate::${formatShortest(h.localOriginSuccessRate ?? -1)}\n`;
    }
  }
  return out;
}

function socketAddressJson(address: string, port: number): object {
  return { socket_address: port === 0 ? { address } : { address, port_value: port } };
}

function healthStatusJson(flags: string): Record<string, unknown> {
  const set = new Set(flags.split('/').filter((f) => f !== '' && f !== 'healthy'));
  const out: Record<string, unknown> = {};
  if (set.has('failed_active_hc')) out['failed_active_health_check'] = true;
  if (set.has('failed_outlier_check')) out['failed_outlier_check'] = true;
  if (set.has('degraded_active_hc')) out['failed_active_degraded_check'] = true;
  if (set.has('pending_dynamic_removal')) out['pending_dynamic_removal'] = true;
  if (set.has('pending_active_hc')) out['pending_active_hc'] = true;
  if (set.has('excluded_via_immediate_hc_fail')) out['excluded_via_immediate_hc_fail'] = true;
  if (set.has('active_hc_timeout')) out['active_hc_timeout'] = true;
  out['eds_health_status'] = set.has('failed_eds_health') ? 'UNHEALTHY' : set.has('degraded_eds_health') ? 'DEGRADED' : 'HEALTHY';
  return out;
}

function thresholdsJson(priority: 'DEFAULT' | 'HIGH', l: AdminCircuitBreakerLimits): object {
  return {
    // proto3 JSON omits the default enum value.
    ...(priority === 'HIGH' ? { priority } : {}),
    max_connections: l.maxConnections,
    max_pending_requests: l.maxPendingRequests,
    max_requests: l.maxRequests,
    max_retries: l.maxRetries,
  };
}

/** `/clusters?format=json`: envoy.admin.v3.Clusters, pretty-printed as protobuf's JSON printer does. */
export function formatClustersJson(clusters: readonly AdminCluster[]): string {
  const statuses = clusters.map((c) => {
    const status: Record<string, unknown> = { name: c.name, observability_name: c.observabilityName ?? c.name };
    if (c.addedViaApi) status['added_via_api'] = true;
    if (c.outlier !== undefined && c.outlier.successRateEjectionThreshold > 0) {
      status['success_rate_ejection_threshold'] = { value: c.outlier.successRateEjectionThreshold };
    }
    if (c.hosts.length > 0) {
      status['host_statuses'] = c.hosts.map((h) => {
        const host: Record<string, unknown> = { address: socketAddressJson(h.address, h.port) };
        const names = Object.keys(h.stats).sort(cmp);
        // Envoy lists counters then gauges; SimpleMetric.type COUNTER is the default (omitted).
        const stats = [...names.filter((s) => !HOST_GAUGES.has(s)), ...names.filter((s) => HOST_GAUGES.has(s))].map((s) => {
          const v = h.stats[s]!;
          return {
            ...(HOST_GAUGES.has(s) ? { type: 'GAUGE' } : {}),
            ...(v !== 0 ? { value: String(v) } : {}),
            name: s,
          };
        });
        if (stats.length > 0) host['stats'] = stats;
        host['health_status'] = healthStatusJson(h.health);
        if (h.successRate !== undefined && h.successRate >= 0) host['success_rate'] = { value: h.successRate };
        if (h.weight !== 0) host['weight'] = h.weight;
        if (h.hostname !== undefined && h.hostname !== '') host['hostname'] = h.hostname;
        if (h.priority !== 0) host['priority'] = h.priority;
        if (h.localOriginSuccessRate !== undefined && h.localOriginSuccessRate >= 0) {
          host['local_origin_success_rate'] = { value: h.localOriginSuccessRate };
        }
        const locality: Record<string, string> = {};
        if (h.region) locality['region'] = h.region;
        if (h.zone) locality['zone'] = h.zone;
        if (h.subZone) locality['sub_zone'] = h.subZone;
        if (Object.keys(locality).length > 0) host['locality'] = locality;
        return host;
      });
    }
    status['circuit_breakers'] = {
      thresholds: [
        thresholdsJson('DEFAULT', c.circuitBreakers?.default ?? DEFAULT_CIRCUIT_BREAKER_LIMITS),
        thresholdsJson('HIGH', c.circuitBreakers?.high ?? DEFAULT_CIRCUIT_BREAKER_LIMITS),
      ],
    };
    if (c.edsServiceName !== undefined && c.edsServiceName !== '') status['eds_service_name'] = c.edsServiceName;
    return status;
  });
  return protoJson({ cluster_statuses: statuses });
}

/** `/listeners` text: `name::address` per listener. */
export function formatListenersText(listeners: readonly AdminListener[]): string {
  let out = '';
  for (const l of listeners) out += `${l.name}::${socketAddressString(l.address, l.port)}\n`;
  return out;
}

/** `/listeners?format=json`: envoy.admin.v3.Listeners. */
export function formatListenersJson(listeners: readonly AdminListener[]): string {
  return protoJson({
    listener_statuses: listeners.map((l) => ({ name: l.name, local_address: socketAddressJson(l.address, l.port) })),
  });
}

/** Pretty JSON as protobuf's JsonPrintOptions.add_whitespace prints it (one-space indent). */
export function protoJson(value: unknown): string {
  return JSON.stringify(value, null, 1) + '\n';
}
