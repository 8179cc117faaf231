/** The seam between a listener (accept, inspect, TLS) and what runs on the connection. */
import type { Socket } from 'node:net';
import type { DownstreamConnectionInfo } from '../http/stream.ts';

/** A terminal network filter (tcp_proxy, http_connection_manager) built once per filter chain. */
export interface NetworkFilter {
  /**
   * Takes over a new connection. `head` holds bytes already read by listener filters (to be processed
   * first); `alpn` is the negotiated ALPN protocol ('' if none).
   */
  onConnection(socket: Socket, info: DownstreamConnectionInfo, head: Buffer, alpn: string): void;
  /** Stop taking new work on existing connections (GOAWAY / Connection: close) and let them finish. */
  drain(): void;
  /** Number of connections still open. */
  readonly activeConnections: number;
  /** Forcibly closes everything. */
  close(): void;
}

/**
 * A non-terminal read filter ahead of the terminal one (`filters[0..n-2]` of a chain, e.g.
 * envoy.filters.network.rbac). It decides once per connection, after TLS and before the terminal filter sees the
 * connection; returning false closes the connection (Envoy's read filter answering StopIteration and closing).
 * Filters that transform bytes do not fit this seam.
 */
export interface ConnectionGate {
  onConnection(info: DownstreamConnectionInfo): boolean;
}
