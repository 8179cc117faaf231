/**
 * A TCP port-forward (as `kubectl port-forward`): accepts on one address and pipes each connection, byte for
 * byte, to another. `sloop up --mode transparent` uses it to put the frontend (inside its network namespace)
 * on the host's 127.0.0.1:<port>, and the control plane (on the host's loopback) on an address the
 * namespaces can reach. It sees no protocol, so HTTP/1.1, h2 and gRPC pass unchanged.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

/** A running forward. */
export interface PortForward {
  /** `host:port` it accepts on. */
  listen: string;
  /** `host:port` it connects to. */
  target: string;
  /** Stops accepting and destroys every open connection (both sides). Safe to call more than once. */
  close(): Promise<void>;
}

/**
 * Listens on `listenHost:listenPort` and forwards each connection to `targetHost:targetPort`. A target that
 * refuses or fails resets the accepted connection (the client sees the failure as it would without the
 * forward). Rejects with the bind error (e.g. EADDRINUSE). Connections are bounded by the kernel's backlog
 * and file descriptors, as any server's.
 */
export async function startPortForward(listenHost: string, listenPort: number, targetHost: string, targetPort: number, connectTimeoutMs = 5000): Promise<PortForward> {
  const sockets = new Set<Socket>();
  const track = (s: Socket): void => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  };
  const server: Server = createServer({ allowHalfOpen: true, noDelay: true }, (down) => {
    track(down);
    const up = connect({ host: targetHost, port: targetPort, allowHalfOpen: true, noDelay: true });
    track(up);
    up.setTimeout(connectTimeoutMs, () => up.destroy(new Error('connect timeout')));
    up.once('connect', () => up.setTimeout(0));
    // One side failing ends the other: a reset, not a half-written stream that looks complete.
    down.on('error', () => up.destroy());
    up.on('error', () => down.resetAndDestroy());
    down.pipe(up);
    up.pipe(down);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: listenHost, port: listenPort, exclusive: true }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  let closing: Promise<void> | undefined;
  return {
    listen: `${listenHost}:${listenPort}`,
    target: `${targetHost}:${targetPort}`,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      })),
  };
}
