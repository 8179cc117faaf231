/** Opens one upstream TCP (or TLS) connection with Envoy's connect_timeout semantics. */
import net from 'node:net';
import tls from 'node:tls';

export interface ConnectOptions {
  host: string;
  port: number;
  connectTimeoutMs: number;
  /** When set, TLS to the upstream with these options (from UpstreamTlsContext). */
  tls?: tls.ConnectionOptions;
  /** Extra check after the handshake (SAN match); returns an error string or undefined. */
  verifyPeer?: (socket: tls.TLSSocket) => string | undefined;
  /** Called when the TLS handshake fails after TCP connected (for the cluster's `ssl.*` stats). */
  onTlsError?: (err: Error) => void;
  /**
   * Keep our sending side open after the upstream's FIN (tcp_proxy and tunnels relay half-close as
   * Envoy does); without it Node ends the socket as soon as the peer does.
   */
  allowHalfOpen?: boolean;
}

export type ConnectFailure = { reason: 'connect-failure' | 'connect-timeout'; detail: string };

/** Calls back once with a connected socket or a failure; returns a cancel function. */
export function connectUpstream(
  o: ConnectOptions,
  cb: (err: ConnectFailure | null, socket: net.Socket | null) => void,
): () => void {
  let done = false;
  let socket: net.Socket;
  const finish = (err: ConnectFailure | null): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    socket.removeListener('error', onError);
    if (err !== null) {
      socket.destroy();
      cb(err, null);
    } else cb(null, socket);
  };
  const onError = (e: Error): void => finish({ reason: 'connect-failure', detail: describeConnectError(e) });
  if (o.tls !== undefined) {
    const t = tls.connect({ ...o.tls, host: o.host, port: o.port, allowHalfOpen: o.allowHalfOpen === true } as tls.ConnectionOptions) // tls.connect honours allowHalfOpen; @types/node omits it;
    socket = t;
    // Errors before TCP connects are connect failures, and errors after the handshake are not TLS ones.
    let isSecure = false;
    if (o.onTlsError !== undefined) t.once('connect', () => t.once('error', (e) => isSecure || o.onTlsError?.(e)));
    t.once('secureConnect', () => {
      isSecure = true;
      const bad = o.verifyPeer?.(t);
      if (bad !== undefined) finish({ reason: 'connect-failure', detail: `TLS_error:|${bad}` });
      else finish(null);
    });
  } else {
    socket = net.connect({ host: o.host, port: o.port, allowHalfOpen: o.allowHalfOpen === true });
    socket.once('connect', () => finish(null));
  }
  socket.on('error', onError);
  const timer = setTimeout(() => finish({ reason: 'connect-timeout', detail: 'connection timeout' }), o.connectTimeoutMs);
  return () => {
    if (!done) {
      done = true;
      clearTimeout(timer);
      socket.destroy();
    }
  };
}

/** Envoy-style transport failure text: "delayed connect error: 111" (ECONNREFUSED) and friends. */
function describeConnectError(e: Error): string {
  const code = (e as NodeJS.ErrnoException).code;
  const errno = (e as NodeJS.ErrnoException).errno;
  if (code === 'ECONNREFUSED') return 'delayed connect error: Connection refused';
  if (code !== undefined && code.startsWith('ERR_SSL')) return `TLS_error:|${e.message}`;
  if (e.message.includes('SSL') || e.message.includes('certificate')) return `TLS_error:|${e.message}`;
  return `delayed connect error: ${code ?? errno ?? e.message}`;
}
