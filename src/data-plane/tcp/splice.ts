/** Byte relay between two connected sockets: WebSocket and CONNECT tunnels once the HTTP exchange is over. */
import type { Socket } from 'node:net';
import { socketIo, type SocketIo } from '../socket-io.ts';

/**
 * Copies bytes both ways between `a` and `b` with backpressure (a side whose peer's write buffer is full
 * stops reading until it drains). A FIN is relayed as a FIN (half-close, as Envoy's tunnels and tcp_proxy
 * do); an error or reset on either side destroys both. A side that closed cleanly lets the other flush
 * what it still holds before closing (destroySoon), so the last bytes of a tunnel are never dropped.
 * `onClosed` runs once, after both sockets have closed. `onActivity`, if given, runs for every chunk relayed
 * either way (the HTTP stream idle timer of a WebSocket / CONNECT tunnel).
 */
export function spliceSockets(a: Socket, b: Socket, onClosed: () => void, onActivity?: () => void): void {
  // Bytes go through socketIo (on the TCP handles for plain sockets, see socket-io.ts).
  let ioA: SocketIo | null = null;
  let ioB: SocketIo | null = null;
  const resumeA = (): void => ioA!.resume();
  const resumeB = (): void => ioB!.resume();
  ioA = socketIo(
    a,
    (d: Buffer) => {
      onActivity?.();
      if (!ioB!.write(d)) ioA!.pause();
    },
    resumeB,
  );
  ioB = socketIo(
    b,
    (d: Buffer) => {
      onActivity?.();
      if (!ioA!.write(d)) ioB!.pause();
    },
    resumeA,
  );
  // A stream write that filled a side's buffer ends with its 'drain'.
  a.on('drain', resumeB);
  b.on('drain', resumeA);
  endAndErrors(a, b);
  endAndErrors(b, a);
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

function endAndErrors(from: Socket, to: Socket): void {
  from.on('end', () => to.end());
  from.on('error', () => {
    from.destroy();
    to.destroy();
  });
}
