/**
 * `auto_config` (envoy.extensions.upstreams.http.v3.HttpProtocolOptions.AutoHttpConfig) for one upstream host:
 * Envoy's mixed connection pool. Every new connection is TLS offering ALPN `h2,http/1.1` (or the
 * UpstreamTlsContext's own `alpn_protocols`, which win), and becomes an HTTP/2 connection when the upstream
 * selects `h2`, else HTTP/1.1 (any other protocol, or none: an old TLS stack without ALPN has no HTTP/2 either).
 *
 * The host's last negotiated protocol decides where a new request goes: its HTTP/2 pool (multiplexed) once the
 * host chose h2, else its HTTP/1.1 pool, which is also where requests wait while the first connection
 * handshakes (one connection per waiting request, as Envoy's pool does while it cannot know the stream limit).
 * A connection that negotiates the other protocol is handed to the other pool together with every request
 * still waiting in this one, and the host's protocol flips. Both pools share the cluster's circuit breakers;
 * `upstream_cx_http1_total` / `upstream_cx_http2_total` count a connection once its protocol is known.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { ConnectOptions } from './connect.ts';
import type { PoolCallbacks } from './pool-types.ts';
import type { ClusterRuntime } from './cluster.ts';
import type { UpstreamHost } from './lb/types.ts';
import type { UpstreamTransport } from './transport-socket.ts';
import { H1Pool } from './h1-pool.ts';
import { H2Pool } from './h2-pool.ts';

/** The ALPN list auto_config offers when the UpstreamTlsContext sets none (Envoy's default for the cluster). */
export const AUTO_ALPN: readonly string[] = ['h2', 'http/1.1'];

export type NegotiatedProtocol = 'http1' | 'http2';

export class MixedPool {
  readonly h1: H1Pool;
  readonly h2: H2Pool;
  /** What the host's last connection negotiated; undefined until its first handshake completes. */
  negotiated: NegotiatedProtocol | undefined;
  private readonly cluster: ClusterRuntime;
  readonly host: UpstreamHost;
  readonly transport: UpstreamTransport;

  constructor(cluster: ClusterRuntime, host: UpstreamHost, transport: UpstreamTransport) {
    this.cluster = cluster;
    this.host = host;
    this.transport = transport;
    this.h1 = new H1Pool(cluster, host, transport, this);
    this.h2 = new H2Pool(cluster, host, transport, this);
  }

  /** The pool a new request goes to: HTTP/2 once the host negotiated h2, else HTTP/1.1 (which probes). */
  pick(): H1Pool | H2Pool {
    return this.negotiated === 'http2' ? this.h2 : this.h1;
  }

  /** Options for one new connection: the host's transport socket, with the auto_config ALPN list. */
  connectOptions(): ConnectOptions {
    const o = this.cluster.connectOptions(this.host, this.transport);
    if (o.tls !== undefined) o.tls = { ...o.tls, ALPNProtocols: o.tls.ALPNProtocols ?? [...AUTO_ALPN] };
    return o;
  }

  /** Records what a new connection negotiated (h2 = HTTP/2, anything else or nothing = HTTP/1.1). */
  onHandshake(socket: Socket): NegotiatedProtocol {
    const alpn = (socket as Partial<TLSSocket>).alpnProtocol;
    this.negotiated = alpn === 'h2' ? 'http2' : 'http1';
    return this.negotiated;
  }

  /**
   * `from` made a connection that negotiated the other protocol: the other pool takes it (already counted in
   * the cluster's connections) and every request still waiting in `from`.
   */
  handOver(from: H1Pool | H2Pool, socket: Socket): void {
    const to = from === this.h1 ? this.h2 : this.h1;
    to.adopt(socket, from.pending.takeAll());
  }

  /** Removes a waiting request from whichever pool holds it (a hand-over may have moved it). */
  cancel(cb: PoolCallbacks): void {
    if (!this.h1.pending.cancel(cb)) this.h2.pending.cancel(cb);
  }
}
