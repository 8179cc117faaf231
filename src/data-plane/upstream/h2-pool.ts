/**
 * HTTP/2 pool for one upstream host: requests multiplex as streams on a session; a new session is
 * opened when every session is at the peer's SETTINGS_MAX_CONCURRENT_STREAMS, up to max_connections.
 */
import http2 from 'node:http2';
import type { Socket } from 'node:net';
import { H2ClientStream } from '../http/h2/client-codec.ts';
import { connectUpstream } from './connect.ts';
import { PendingRequests, type PoolCallbacks } from './pool-types.ts';
import type { ClusterRuntime } from './cluster.ts';
import type { UpstreamHost } from './lb/types.ts';
import type { UpstreamTransport } from './transport-socket.ts';
import type { MixedPool } from './mixed-pool.ts';

interface Session {
  s: http2.ClientHttp2Session;
  active: number;
  maxStreams: number;
  ready: boolean;
  draining: boolean;
}

export class H2Pool {
  private readonly sessions: Session[] = [];
  /** Requests waiting here (auto_config's mixed pool cancels in, and hands over, the queue directly). */
  readonly pending: PendingRequests;
  private readonly cluster: ClusterRuntime;
  readonly host: UpstreamHost;
  /** The host's transport socket when the pool was made: pools are per (host, transport socket). */
  readonly transport: UpstreamTransport;
  private connecting = 0;
  private closed = false;
  /** Retired (the host's transport socket changed): sessions close once queued requests are served. */
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

  newStream(cb: PoolCallbacks): boolean {
    const sess = this.pick();
    if (sess !== undefined) {
      this.attach(sess, cb);
      return true;
    }
    const cl = this.cluster;
    if (cl.resources.pendingRequests >= cl.thresholds.maxPendingRequests) {
      cl.stats.upstream_rq_pending_overflow.inc();
      return false;
    }
    this.pending.add(cb);
    if (this.connecting === 0 && cl.resources.connections < cl.thresholds.maxConnections) this.connect();
    return true;
  }

  cancel(cb: PoolCallbacks): void {
    if (this.mixed !== undefined) this.mixed.cancel(cb);
    else this.pending.cancel(cb);
  }

  /**
   * auto_config: a connection another pool of this host opened negotiated h2 (it is already counted in the
   * cluster's connections); `waiting` are that pool's queued requests, served here once the session is ready.
   */
  adopt(socket: Socket, waiting: PoolCallbacks[]): void {
    const cl = this.cluster;
    if (this.closed) {
      socket.destroy();
      cl.resources.connections--;
      cl.stats.upstream_cx_active.dec();
      cl.stats.upstream_cx_destroy.inc();
      this.pending.fail(waiting, 'connection-termination', 'pool closed', this.host);
      return;
    }
    this.pending.adopt(waiting);
    cl.stats.upstream_cx_http2_total.inc();
    this.connecting++;
    this.onConnected(socket);
  }

  private pick(): Session | undefined {
    for (const s of this.sessions) if (s.ready && !s.draining && s.active < s.maxStreams) return s;
    return undefined;
  }

  private attach(sess: Session, cb: PoolCallbacks): void {
    const st = new H2ClientStream(sess.s, this.transport.tlsEnabled ? 'https' : 'http');
    sess.active++;
    st.onDone = () => {
      sess.active--;
      this.drainPending();
      if (sess.draining && sess.active === 0) sess.s.close();
    };
    cb.onPoolReady(st, this.host);
  }

  private drainPending(): void {
    while (this.pending.length > 0) {
      const sess = this.pick();
      if (sess === undefined) break;
      this.attach(sess, this.pending.next()!);
    }
    const cl = this.cluster;
    if (this.pending.length > 0 && this.connecting === 0 && !this.closed && cl.resources.connections < cl.thresholds.maxConnections) {
      this.connect();
    }
    if (this.draining && this.pending.length === 0) this.closeSessions();
  }

  /**
   * Retires the pool (its host now uses another transport socket): the cluster stops handing it requests; queued
   * requests are still served, then every session closes once its streams end.
   */
  drain(): void {
    this.draining = true;
    if (this.pending.length === 0) this.closeSessions();
  }

  /** Nothing left: no session, none connecting, no queued request. */
  get drained(): boolean {
    return this.sessions.length === 0 && this.connecting === 0 && this.pending.length === 0;
  }

  private closeSessions(): void {
    for (const s of this.sessions) {
      if (s.draining) continue;
      s.draining = true;
      if (s.active === 0) s.s.close();
    }
  }

  private connect(): void {
    const cl = this.cluster;
    this.connecting++;
    cl.resources.connections++;
    cl.stats.upstream_cx_total.inc();
    // auto_config counts the protocol once ALPN has chosen it.
    if (this.mixed === undefined) cl.stats.upstream_cx_http2_total.inc();
    cl.stats.upstream_cx_active.inc();
    const started = cl.now();
    let opts;
    if (this.mixed !== undefined) opts = this.mixed.connectOptions();
    else {
      opts = cl.connectOptions(this.host, this.transport);
      if (opts.tls !== undefined) opts.tls = { ...opts.tls, ALPNProtocols: ['h2'] };
    }
    connectUpstream(opts, (err, socket) => {
      if (err !== null || socket === null) {
        this.connecting--;
        cl.resources.connections--;
        cl.stats.upstream_cx_active.dec();
        cl.stats.upstream_cx_connect_fail.inc();
        if (err?.reason === 'connect-timeout') cl.stats.upstream_cx_connect_timeout.inc();
        cl.onHostConnectFailure(this.host);
        this.pending.failAll(err?.reason === 'connect-timeout' ? 'connect-timeout' : 'connect-failure', err?.detail ?? '', this.host);
        return;
      }
      cl.stats.upstream_cx_connect_ms.record(cl.now() - started);
      if (this.mixed !== undefined) {
        if (this.mixed.onHandshake(socket) === 'http1') {
          // The host no longer offers h2: the HTTP/1.1 pool takes the connection and the waiting requests.
          this.connecting--;
          this.mixed.handOver(this, socket);
          return;
        }
        cl.stats.upstream_cx_http2_total.inc();
      }
      this.onConnected(socket);
    });
  }

  private onConnected(socket: Socket): void {
    const cl = this.cluster;
    const authority = `${this.transport.tlsEnabled ? 'https' : 'http'}://${this.host.address}:${this.host.port}`;
    const s = http2.connect(authority, {
      createConnection: () => socket,
      settings: { enablePush: false, initialWindowSize: 1 << 20 },
      maxSessionMemory: 64,
    });
    const sess: Session = { s, active: 0, maxStreams: 100, ready: false, draining: false };
    this.sessions.push(sess);
    let counted = true;
    const gone = (): void => {
      const i = this.sessions.indexOf(sess);
      if (i >= 0) this.sessions.splice(i, 1);
      if (!sess.ready) {
        sess.ready = true;
        this.connecting--;
      }
      if (counted) {
        counted = false;
        cl.resources.connections--;
        cl.stats.upstream_cx_active.dec();
        cl.stats.upstream_cx_destroy.inc();
      }
      if (!this.closed) this.drainPending();
    };
    s.on('remoteSettings', (settings) => {
      sess.maxStreams = Math.min(settings.maxConcurrentStreams ?? 100, cl.thresholds.maxRequests);
      if (!sess.ready) {
        sess.ready = true;
        this.connecting--;
      }
      this.drainPending();
    });
    s.on('goaway', () => {
      sess.draining = true;
      if (sess.active === 0) s.close();
    });
    s.on('close', gone);
    s.on('error', () => s.destroy());
    s.setTimeout(0);
  }

  get activeConnections(): number {
    return this.sessions.length;
  }

  close(): void {
    this.closed = true;
    for (const s of this.sessions) {
      s.draining = true;
      if (s.active === 0) s.s.close();
    }
    this.pending.failAll('connection-termination', 'pool closed', this.host);
  }
}
