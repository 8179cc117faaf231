/**
 * HTTP/1.1 connection pool for one upstream host: keep-alive connections reused LIFO (the warmest
 * socket first), new connections up to the cluster's max_connections, then a bounded pending queue
 * (max_pending_requests), as Envoy's pool does.
 */
import type { Socket } from 'node:net';
import { H1ClientConnection, type H1ClientHooks } from '../http/h1/client-codec.ts';
import { connectUpstream, type ConnectFailure } from './connect.ts';
import { PendingRequests, type PoolCallbacks } from './pool-types.ts';
import type { ClusterRuntime } from './cluster.ts';
import type { UpstreamHost } from './lb/types.ts';
import type { UpstreamTransport } from './transport-socket.ts';
import type { MixedPool } from './mixed-pool.ts';

export class H1Pool implements H1ClientHooks {
  private readonly idle: H1ClientConnection[] = [];
  private readonly all = new Set<H1ClientConnection>();
  /** Requests waiting here (auto_config's mixed pool cancels in, and hands over, the queue directly). */
  readonly pending: PendingRequests;
  private connecting = 0;
  private readonly cluster: ClusterRuntime;
  readonly host: UpstreamHost;
  /** The host's transport socket when the pool was made: pools are per (host, transport socket). */
  readonly transport: UpstreamTransport;
  private closed = false;
  /** Retired (the host's transport socket changed): no new streams; connections close once idle. */
  private draining = false;
  /** auto_config: the host's mixed pool, which picks each connection's protocol by ALPN. */
  readonly mixed: MixedPool | undefined;

  constructor(cluster: ClusterRuntime, host: UpstreamHost, transport: UpstreamTransport, mixed?: MixedPool) {
    this.cluster = cluster;
    this.pending = new PendingRequests(cluster);
    this.host = host;
    this.transport = transport;
    this.mixed = mixed;
  }

  /** Gets a stream now (idle connection) or later (new connection / queue); false on overflow. */
  newStream(cb: PoolCallbacks): boolean {
    const c = this.idle.pop();
    if (c !== undefined) {
      this.attach(c, cb);
      return true;
    }
    const cl = this.cluster;
    if (cl.resources.connections < cl.thresholds.maxConnections && this.connecting <= this.pending.length) {
      this.pending.add(cb);
      this.connect();
      return true;
    }
    if (cl.resources.pendingRequests >= cl.thresholds.maxPendingRequests) {
      cl.stats.upstream_rq_pending_overflow.inc();
      if (cl.resources.connections >= cl.thresholds.maxConnections) cl.stats.upstream_cx_overflow.inc();
      return false;
    }
    this.pending.add(cb);
    return true;
  }

  /** Removes a request that no longer wants a connection (downstream went away, timeout). */
  cancel(cb: PoolCallbacks): void {
    if (this.mixed !== undefined) this.mixed.cancel(cb);
    else this.pending.cancel(cb);
  }

  /**
   * auto_config: a connection another pool of this host opened negotiated HTTP/1.1 (it is already counted in
   * the cluster's connections); `waiting` are that pool's queued requests, which now wait here.
   */
  adopt(socket: Socket, waiting: PoolCallbacks[]): void {
    if (!this.closed) this.pending.adopt(waiting);
    else this.pending.fail(waiting, 'connection-termination', 'pool closed', this.host);
    this.cluster.stats.upstream_cx_http1_total.inc();
    this.onConnected(socket);
    // One connection per waiting request, as newStream would have opened.
    const cl = this.cluster;
    while (!this.closed && this.pending.length > this.connecting && cl.resources.connections < cl.thresholds.maxConnections) this.connect();
  }

  private attach(c: H1ClientConnection, cb: PoolCallbacks): void {
    c.begin();
    cb.onPoolReady(c, this.host);
  }

  private connect(): void {
    const cl = this.cluster;
    this.connecting++;
    cl.resources.connections++;
    cl.stats.upstream_cx_total.inc();
    // auto_config counts the protocol once ALPN has chosen it.
    if (this.mixed === undefined) cl.stats.upstream_cx_http1_total.inc();
    cl.stats.upstream_cx_active.inc();
    const started = cl.now();
    connectUpstream(this.mixed?.connectOptions() ?? cl.connectOptions(this.host, this.transport), (err, socket) => {
      this.connecting--;
      if (err !== null || socket === null) {
        this.onConnectFailure(err ?? { reason: 'connect-failure', detail: 'unknown' });
        return;
      }
      cl.stats.upstream_cx_connect_ms.record(cl.now() - started);
      if (this.mixed !== undefined) {
        if (this.mixed.onHandshake(socket) === 'http2') {
          this.mixed.handOver(this, socket);
          return;
        }
        cl.stats.upstream_cx_http1_total.inc();
      }
      this.onConnected(socket);
    });
  }

  private onConnected(socket: Socket): void {
    const c = new H1ClientConnection(socket, this, this.cluster.maxHeaderBytes, this.cluster.maxHeadersCount);
    this.all.add(c);
    if (this.closed) {
      c.reset();
      return;
    }
    const cb = this.pending.next();
    if (cb !== undefined) this.attach(c, cb);
    else if (this.draining) c.reset();
    else this.idle.push(c);
  }

  private onConnectFailure(err: ConnectFailure): void {
    const cl = this.cluster;
    cl.resources.connections--;
    cl.stats.upstream_cx_active.dec();
    cl.stats.upstream_cx_connect_fail.inc();
    if (err.reason === 'connect-timeout') cl.stats.upstream_cx_connect_timeout.inc();
    cl.onHostConnectFailure(this.host);
    // Requests beyond what the remaining in-progress connections can serve fail now.
    while (this.pending.length > this.connecting) {
      const cb = this.pending.next();
      cb?.onPoolFailure(err.reason === 'connect-timeout' ? 'connect-timeout' : 'connect-failure', err.detail, this.host);
    }
  }

  onIdle(c: H1ClientConnection): void {
    const maxReq = this.cluster.maxRequestsPerConnection;
    if (maxReq > 0 && c.requests >= maxReq) {
      c.reset();
      return;
    }
    const cb = this.pending.next();
    if (cb !== undefined) {
      this.attach(c, cb);
      return;
    }
    if (this.draining) {
      c.reset();
      return;
    }
    c.idleSince = this.cluster.now();
    this.idle.push(c);
  }

  onClosed(c: H1ClientConnection): void {
    if (!this.all.delete(c)) return;
    const cl = this.cluster;
    cl.resources.connections--;
    cl.stats.upstream_cx_active.dec();
    cl.stats.upstream_cx_destroy.inc();
    const i = this.idle.indexOf(c);
    if (i >= 0) this.idle.splice(i, 1);
    // A slot freed: a queued request may now get a new connection.
    if (this.pending.length > this.connecting && !this.closed && cl.resources.connections < cl.thresholds.maxConnections) {
      this.connect();
    }
  }

  get activeConnections(): number {
    return this.all.size;
  }

  /**
   * Retires the pool (its host now uses another transport socket): the cluster stops handing it requests, idle
   * connections close now, busy ones when their request ends; requests already queued here are still served.
   */
  drain(): void {
    this.draining = true;
    for (const c of this.idle.splice(0)) c.reset();
  }

  /** Nothing left: no connection, none connecting, no queued request. */
  get drained(): boolean {
    return this.all.size === 0 && this.connecting === 0 && this.pending.length === 0;
  }

  /** Closes idle connections now; busy ones close when their request ends. */
  close(): void {
    this.closed = true;
    for (const c of this.idle.splice(0)) c.reset();
    this.pending.failAll('connection-termination', 'pool closed', this.host);
  }

  /** Drops connections idle for longer than `ms` (common_http_protocol_options.idle_timeout). */
  reapIdle(now: number, ms: number): void {
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const c = this.idle[i];
      if (now - c.idleSince >= ms) {
        this.idle.splice(i, 1);
        c.reset();
      }
    }
  }
}
