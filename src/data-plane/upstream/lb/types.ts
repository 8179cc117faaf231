/**
 * Shared types of the upstream load balancers (see load-balancer.ts for the entry point).
 */
import type { UpstreamTransport } from '../transport-socket.ts';

/** Health of one endpoint as the load balancer sees it. */
export type HostHealth = 'healthy' | 'degraded' | 'unhealthy';

/**
 * One upstream endpoint. The cluster manager owns these objects: it builds them from EDS
 * (`LbEndpoint`), keeps health current (EDS `health_status` with UNKNOWN → healthy, active health checking,
 * outlier ejection), and the router increments `activeRequests` when a request starts and decrements it
 * when it ends. Load balancers read them and never write them.
 */
export interface UpstreamHost {
  /** `address:port`. */
  readonly id: string;
  readonly address: string;
  readonly port: number;
  /** `LbEndpoint.hostname`, used for hashing when `consistent_hashing_lb_config.use_hostname_for_hashing` is set. */
  readonly hostname?: string;
  /** `LbEndpoint.load_balancing_weight`, ≥ 1 (default 1). */
  weight: number;
  /** `LocalityLbEndpoints.priority`; 0 is the highest. Load balancers use the index in `hostsByPriority`. */
  priority: number;
  /** Locality key (`region/zone/sub_zone`); hosts of one priority with the same key form one locality. */
  locality: string;
  /** `LocalityLbEndpoints.load_balancing_weight`; 0 when unset (such a locality gets no weighted traffic). */
  localityWeight: number;
  health: HostHealth;
  /** Requests in flight to this host, maintained by the router. */
  activeRequests: number;
  /** Ejected by outlier detection (upstream/outlier.ts): picked only in panic, like an unhealthy host. */
  outlierEjected?: boolean;
  metadata?: unknown;
  /**
   * The cluster's transport socket for this host (its own `transport_socket`, or the `transport_socket_matches`
   * entry its metadata matched), set by the cluster when the host joins or its metadata changes.
   */
  transport?: UpstreamTransport;
}

/** What a load balancer may know about the request it picks a host for. */
export interface LbContext {
  /** The route `hash_policy` result, when it produced one (consistent hashing). */
  hash?: bigint;
  /** Uniform in [0, 1); injected so that tests are deterministic. */
  random: () => number;
  /**
   * Retry host predicate (`previous_hosts` and friends): a host for which this returns true is avoided if
   * another pick, up to `hostSelectionRetryMaxAttempts` more, finds one it accepts. Envoy then uses the
   * last pick anyway.
   */
  shouldSelectAnotherHost?: (host: UpstreamHost) => boolean;
  /** `RetryPolicy.host_selection_retry_max_attempts`; default 1, as in Envoy. */
  hostSelectionRetryMaxAttempts?: number;
}

/**
 * Picks an upstream host per request. Built for one snapshot of membership, weights and health; the
 * cluster manager builds a new one when any of those change. `chooseHost` is O(1) or O(log n) and does
 * not allocate.
 */
export interface LoadBalancer {
  /** The host for this request, or undefined when there is none to pick (503 "no healthy upstream"). */
  chooseHost(ctx: LbContext): UpstreamHost | undefined;
}

/** Picks from one fixed list of hosts (one priority's healthy, degraded or all hosts, or one locality's). */
export interface HostPicker {
  pick(ctx: LbContext): UpstreamHost | undefined;
}

/** A consistent-hashing table (ring or Maglev) over one list of hosts. */
export interface HashTable {
  /**
   * The host for the 64-bit hash `(hi:lo)` (two uint32 halves). `attempt` > 0 on a retry of host selection,
   * which moves the lookup elsewhere as Envoy does.
   */
  chooseHost(hi: number, lo: number, attempt: number): UpstreamHost | undefined;
}

/** A host and its share of the table: host weights (× locality weights) normalized to sum to at most 1. */
export interface NormalizedHostWeight {
  host: UpstreamHost;
  weight: number;
}

/** The empty picker/table: no host. */
export const NO_HOSTS: HostPicker & HashTable = {
  pick: () => undefined,
  chooseHost: () => undefined,
};
