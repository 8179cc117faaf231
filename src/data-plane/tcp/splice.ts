/** Byte relays between two connected sockets: relayBytes (also tcp_proxy's), and spliceSockets for WebSocket and CONNECT tunnels once the HTTP exchange is over. */
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
  relayBytes(a, b, onActivity === undefined ? {} : { onChunk: onActivity });
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

export interface RelayHooks {
  /** Each chunk, before it is written across; `fromA` says which side read it. */
  onChunk?(fromA: boolean, chunk: Buffer): void;
  /** `a` stopped reading because `b` could not take more, and started again once it drained. */
  onPauseA?(): void;
  onResumeA?(): void;
}

/**
 * Copies the bytes each side reads to the other, through socketIo (on the TCP handles for plain sockets,
 * see socket-io.ts); a side whose peer cannot take more stops reading until that peer drains. Ends, errors and
 * closes are the caller's (spliceSockets, tcp_proxy).
 */
export function relayBytes(a: Socket, b: Socket, hooks: RelayHooks): void {
  let ioA: SocketIo | null = null;
  let ioB: SocketIo | null = null;
  const resumeA = (): void => {
    if (!ioA!.isPaused()) return;
    hooks.onResumeA?.();
    ioA!.resume();
  };
  const resumeB = (): void => {
    if (ioB!.isPaused()) ioB!.resume();
  };
  ioA = socketIo(
    a,
    (d: Buffer) => {
      hooks.onChunk?.(true, d);
      if (!ioB!.write(d)) {
        hooks.onPauseA?.();
        ioA!.pause();
      }
    },
    resumeB,
  );
  ioB = socketIo(
    b,
    (d: Buffer) => {
      hooks.onChunk?.(false, d);
      if (!ioA!.write(d)) ioB!.pause();
    },
    resumeA,
  );
}
