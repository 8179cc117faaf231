/** What a connection pool hands to the router, and what the router hands back. */
import type { ResetReason, UpstreamStream } from '../http/stream.ts';
import type { UpstreamHost } from './lb/types.ts';

/** A router request waiting for (or holding) an upstream stream. */
export interface PoolCallbacks {
  onPoolReady(stream: UpstreamStream, host: UpstreamHost): void;
  onPoolFailure(reason: ResetReason, detail: string, host: UpstreamHost): void;
}

/** Circuit-breaker thresholds of one priority (Envoy's defaults: 1024 / 1024 / 1024 / 3). */
export interface Thresholds {
  maxConnections: number;
  maxPendingRequests: number;
  maxRequests: number;
  maxRetries: number;
}

/** Live resource counts one cluster shares across its pools, checked against Thresholds. */
export interface ResourceCounts {
  connections: number;
  pendingRequests: number;
  requests: number;
  retries: number;
}

/** The cluster counters a pending queue keeps (the subset of ClusterRuntime it needs). */
interface PendingOwner {
  resources: ResourceCounts;
  stats: { upstream_rq_pending_total: { inc(): void }; upstream_rq_pending_active: { inc(): void; dec(): void }; upstream_rq_cancelled: { inc(): void } };
}

/**
 * A pool's queue of requests waiting for a connection or stream, FIFO, kept in step with the cluster's
 * `pendingRequests` (circuit breaker) and its `upstream_rq_pending_*` stats: every request counted on the way in
 * is counted out exactly once, whether it gets a stream, is cancelled, fails, or moves to another pool.
 */
export class PendingRequests {
  readonly #owner: PendingOwner;
  #queue: PoolCallbacks[] = [];

  constructor(owner: PendingOwner) {
    this.#owner = owner;
  }

  get length(): number {
    return this.#queue.length;
  }

  /** Queues a new request (counted as pending). */
  add(cb: PoolCallbacks): void {
    this.#queue.push(cb);
    this.#owner.resources.pendingRequests++;
    this.#owner.stats.upstream_rq_pending_total.inc();
    this.#owner.stats.upstream_rq_pending_active.inc();
  }

  /** The oldest request, no longer pending (it gets a stream now), or undefined. */
  next(): PoolCallbacks | undefined {
    const cb = this.#queue.shift();
    if (cb !== undefined) this.#uncount();
    return cb;
  }

  /** Removes `cb` if it waits here, counting it cancelled; whether it did. */
  cancel(cb: PoolCallbacks): boolean {
    const i = this.#queue.indexOf(cb);
    if (i < 0) return false;
    this.#queue.splice(i, 1);
    this.#uncount();
    this.#owner.stats.upstream_rq_cancelled.inc();
    return true;
  }

  /** auto_config: every waiting request, handed to the host's other pool (still counted as pending there). */
  takeAll(): PoolCallbacks[] {
    return this.#queue.splice(0);
  }

  /** auto_config: requests another pool of the host handed over (already counted as pending). */
  adopt(waiting: readonly PoolCallbacks[]): void {
    this.#queue.push(...waiting);
  }

  /** Fails `cbs` (requests counted as pending, here or handed over) with `reason`; empties nothing else. */
  fail(cbs: readonly PoolCallbacks[], reason: ResetReason, detail: string, host: UpstreamHost): void {
    for (const cb of cbs) {
      this.#uncount();
      cb.onPoolFailure(reason, detail, host);
    }
  }

  /** Fails every waiting request. */
  failAll(reason: ResetReason, detail: string, host: UpstreamHost): void {
    this.fail(this.#queue.splice(0), reason, detail, host);
  }

  #uncount(): void {
    this.#owner.resources.pendingRequests--;
    this.#owner.stats.upstream_rq_pending_active.dec();
  }
}
