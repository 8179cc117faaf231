/**
 * Request mirroring (RouteAction.request_mirror_policies), as Envoy's router shadows a request: a copy of
 * the upstream request goes to the mirror cluster with `-shadow` appended to the host (before any port;
 * `disable_shadow_host_suffix_append` keeps it), fire and forget. Its response is read and dropped; its
 * failures, slowness or absence never touch the main request. The body is copied as it streams, up to the
 * route's buffer limit: a larger body abandons the shadow (`retry_or_shadow_abandoned`). A shadow that
 * outlives the route timeout is reset.
 */
import type { ClusterRuntime } from '../upstream/cluster.ts';
import type { PoolCallbacks } from '../upstream/pool-types.ts';
import type { H1Pool } from '../upstream/h1-pool.ts';
import type { H2Pool } from '../upstream/h2-pool.ts';
import type { UpstreamHost } from '../upstream/lb/types.ts';
import type { RequestHead, ResetReason, UpstreamStream } from './stream.ts';

/** `host` with `-shadow` before its port (Envoy's shadow host rewrite). */
export function shadowAuthority(authority: string): string {
  const bracket = authority.lastIndexOf(']');
  const colon = authority.lastIndexOf(':');
  if (colon > bracket && colon > 0) return `${authority.slice(0, colon)}-shadow${authority.slice(colon)}`;
  return `${authority}-shadow`;
}

function statusClass(status: number, c: ClusterRuntime['stats']): ClusterRuntime['stats']['upstream_rq_2xx'] {
  return status < 200 ? c.upstream_rq_1xx : status < 300 ? c.upstream_rq_2xx : status < 400 ? c.upstream_rq_3xx : status < 500 ? c.upstream_rq_4xx : c.upstream_rq_5xx;
}

/** One shadow request. Created by the router; fed the request body; finishes on its own. */
export class ShadowRequest implements PoolCallbacks {
  private readonly cluster: ClusterRuntime;
  private readonly head: RequestHead;
  private readonly bodyLimit: number;
  private host: UpstreamHost | undefined;
  private stream: UpstreamStream | null = null;
  private pool: H1Pool | H2Pool | undefined;
  private pending: Buffer[] | null = null;
  private pendingBytes = 0;
  private ended = false;
  private trailers: string[] | null = null;
  private done = false;
  private timer: NodeJS.Timeout | null = null;
  private startMs = 0;

  constructor(cluster: ClusterRuntime, head: RequestHead, bodyLimit: number) {
    this.cluster = cluster;
    this.head = head;
    this.bodyLimit = bodyLimit;
  }

  /**
   * Picks a host and asks its pool for a stream. `random` is the request's random source; `timeoutMs`
   * (0 = none) bounds the whole shadow. Returns false when the shadow could not start (no host, breaker).
   */
  start(random: () => number, downstreamIsH2: boolean, timeoutMs: number): boolean {
    const c = this.cluster;
    const host = c.chooseHost({ hash: undefined, random });
    if (host === undefined) {
      c.stats.upstream_cx_none_healthy.inc();
      return false;
    }
    if (c.resources.requests >= c.thresholds.maxRequests) {
      c.stats.upstream_rq_pending_overflow.inc();
      return false;
    }
    this.host = host;
    host.activeRequests++;
    c.resources.requests++;
    c.stats.upstream_rq_total.inc();
    c.stats.upstream_rq_active.inc();
    this.startMs = c.now();
    if (timeoutMs > 0) {
      this.timer = setTimeout(() => {
        this.timer = null;
        c.stats.upstream_rq_timeout.inc();
        this.finish(true);
      }, timeoutMs);
      this.timer.unref();
    }
    const pool = c.newStream(host, downstreamIsH2, this);
    if (pool === undefined) {
      this.finish(false);
      return false;
    }
    if (this.stream === null && !this.done) this.pool = pool;
    return true;
  }

  onPoolReady(stream: UpstreamStream, host: UpstreamHost): void {
    if (this.done || host !== this.host) {
      stream.reset();
      return;
    }
    this.pool = undefined;
    this.stream = stream;
    stream.onHeaders = (status, _h, end) => {
      statusClass(status, this.cluster.stats).inc();
      this.cluster.statusCounter(status).inc();
      this.cluster.onHostResponse(host, status);
      if (end) this.finish(false);
    };
    stream.onData = () => {};
    stream.onEnd = () => this.finish(false);
    stream.onReset = (_r: ResetReason) => {
      this.stream = null;
      this.cluster.stats.upstream_rq_rx_reset.inc();
      this.finish(false);
    };
    stream.onWritable = () => {};
    stream.flushTarget = null;
    const head = this.head;
    stream.sendHeaders(head, !head.hasBody);
    if (!head.hasBody) return;
    if (this.pending !== null) for (const c of this.pending) stream.write(c);
    this.pending = null;
    this.pendingBytes = 0;
    if (this.ended) stream.end(this.trailers);
  }

  onPoolFailure(_reason: ResetReason, _detail: string, host: UpstreamHost): void {
    if (this.done || host !== this.host) return;
    this.pool = undefined;
    this.finish(false);
  }

  /** A chunk of the request body (the router keeps no reference to it after this call). */
  write(chunk: Buffer): void {
    if (this.done || !this.head.hasBody) return;
    if (this.stream !== null) {
      // Fire and forget: the main request never waits for the shadow's backpressure, so a shadow that cannot
      // keep up with the body is abandoned at the buffer limit instead (bounded memory either way).
      if (!this.stream.write(chunk) && this.stream !== null) this.checkBacklog(chunk.length);
      return;
    }
    this.pendingBytes += chunk.length;
    if (this.pendingBytes > this.bodyLimit) {
      this.cluster.stats.retry_or_shadow_abandoned.inc();
      this.finish(true);
      return;
    }
    (this.pending ??= []).push(Buffer.from(chunk));
  }

  private backlog = 0;
  private checkBacklog(n: number): void {
    this.backlog += n;
    if (this.backlog > this.bodyLimit) {
      this.cluster.stats.retry_or_shadow_abandoned.inc();
      this.finish(true);
    }
  }

  /** The request body ended. */
  end(trailers: string[] | null): void {
    if (this.done || this.ended) return;
    this.ended = true;
    this.trailers = trailers;
    if (this.stream !== null && this.head.hasBody) this.stream.end(trailers);
  }

  /** The main request went away before its body was complete: a partial shadow is useless. */
  abandonIfIncomplete(): void {
    if (!this.ended && this.head.hasBody) this.finish(true);
  }

  private finish(reset: boolean): void {
    if (this.done) return;
    this.done = true;
    if (this.timer !== null) clearTimeout(this.timer);
    const c = this.cluster;
    if (this.stream !== null) {
      if (reset) {
        this.stream.reset();
        c.stats.upstream_rq_tx_reset.inc();
      }
      this.stream = null;
    } else if (this.pool !== undefined) {
      this.pool.cancel(this);
      this.pool = undefined;
    }
    this.pending = null;
    if (this.host !== undefined) {
      this.host.activeRequests--;
      c.resources.requests--;
      c.stats.upstream_rq_active.dec();
      c.stats.upstream_rq_completed.inc();
      c.stats.upstream_rq_time.record(c.now() - this.startMs);
    }
  }
}
