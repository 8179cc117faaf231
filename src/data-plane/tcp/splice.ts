/** Byte relay between two connected sockets: WebSocket and CONNECT tunnels once the HTTP exchange is over. */
import type { Socket } from 'node:net';

/**
 * Copies bytes both ways between `a` and `b` with backpressure (a side whose peer's write buffer is full
 * stops reading until it drains). A FIN is relayed as a FIN (half-close, as Envoy's tunnels and tcp_proxy
 * do); an error or reset on either side destroys both. A side that closed cleanly lets the other flush
 * what it still holds before closing (destroySoon), so the last bytes of a tunnel are never dropped.
 * `onClosed` runs once, after both sockets have closed. `onActivity`, if given, runs for every chunk relayed
 * either way (the HTTP stream idle timer of a WebSocket / CONNECT tunnel).
 */
export function spliceSockets(a: Socket, b: Socket, onClosed: () => void, onActivity?: () => void): void {
  relay(a, b, onActivity);
  relay(b, a, onActivity);
  let open = 2;
  const onClose = (): void => {
    if (--open === 0) onClosed();
  };
  a.once('close', () => {
    if (!b.destroyed) b.destroySoon();
    onClose();
  });
  b.once('close', () => {
    if (!a.destroyed) a.destroySoon();
    onClose();
  });
  a.resume();
  b.resume();
}

function relay(from: Socket, to: Socket, onActivity: (() => void) | undefined): void {
  from.on('data', (d: Buffer) => {
    onActivity?.();
    if (!to.write(d)) from.pause();
  });
  to.on('drain', () => from.resume());
  from.on('end', () => to.end());
  from.on('error', () => {
    from.destroy();
    to.destroy();
  });
}
