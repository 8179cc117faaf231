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
