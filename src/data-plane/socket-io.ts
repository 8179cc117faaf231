/**
 * Reads and writes of a socket whose bytes we relay or parse (the HTTP/1.1 codecs, tcp_proxy, WebSocket/CONNECT
 * tunnels). For a plain TCP socket they go straight to its libuv handle; for anything else (TLS, or when turned
 * off) through the net.Socket stream.
 *
 * Why: through net.Socket, every read is `onStreamRead → Readable.push → emit('data')` plus a `process.nextTick`,
 * and every write `Writable.write → _write → writeGeneric` plus an `afterWrite` tick. A Node TCP relay spends about
 * a tenth of its CPU per request there (docs/performance.md, "reads and writes on the handle"), and the
 * proxy does two reads and two writes per proxied request. On the handle, a read is one call into our code with a
 * Buffer over the bytes libuv read, and a write is one `writeLatin1String`/`writeBuffer`, as Node's own stream
 * code does underneath.
 *
 * What stays with net.Socket, unchanged: connect, EOF (`'end'`), errors and `'close'`, `end()` (libuv's shutdown
 * waits for queued writes, ours included), `destroy()`, bytes counters (the handle keeps them), and any bytes
 * already queued in the stream (unshifted by protocol sniffing): while the Readable holds bytes, a read goes
 * through the stream so order is kept; while the Writable holds bytes, so does a write. libuv keeps the order
 * of writes that reach the handle from either path (a write queued in libuv makes every later one queue too).
 *
 * This uses `process.binding('stream_wrap')` (WriteWrap and the shared read/write state), Node's documented
 * legacy accessor for these bindings (DEP0111 is documentation-only); the repo pins Node 24, and a Node
 * without them gets the stream path. `useStreamIo()` (SLOOP_SOCKET_IO=stream) turns the handle path off.
 */
import type { Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';

export interface SocketIo {
  /** Writes bytes (a string is latin1). False when the kernel did not take them all: `onDrain` follows. */
  write(data: string | Buffer): boolean;
  /** Stops reading (backpressure). */
  pause(): void;
  resume(): void;
  isPaused(): boolean;
  /** Hands the socket back to plain net.Socket reading, without our listeners (an upgraded connection becomes a tunnel). */
  detach(): void;
  /** True when reads and writes go to the libuv handle. */
  readonly direct: boolean;
}

interface StreamHandle {
  onread: (this: StreamHandle, ab: ArrayBuffer | undefined) => unknown;
  reading: boolean;
  readStart(): number;
  readStop(): number;
  writeBuffer(req: object, data: Buffer): number;
  writeLatin1String(req: object, data: string): number;
}

interface Bindings {
  WriteWrap: new () => { oncomplete: (this: WriteReq, status: number) => void; io: DirectIo | null; buffer: Buffer | null };
  state: Int32Array;
  kReadBytesOrError: number;
  kArrayBufferOffset: number;
  kLastWriteWasAsync: number;
  TCP: abstract new (...args: never[]) => object;
}
type WriteReq = InstanceType<Bindings['WriteWrap']>;

let bindings: Bindings | null | undefined;
let enabled = true;

/** Turns the handle path off for every socket wrapped from now on (`SLOOP_SOCKET_IO=stream`). */
export function useStreamIo(): void {
  enabled = false;
}

function loadBindings(): Bindings | null {
  if (bindings !== undefined) return bindings;
  bindings = null;
  try {
    const binding = (process as unknown as { binding(name: string): Record<string, unknown> }).binding;
    const sw = binding('stream_wrap');
    const tcp = binding('tcp_wrap');
    const b = {
      WriteWrap: sw.WriteWrap as Bindings['WriteWrap'],
      state: sw.streamBaseState as Int32Array,
      kReadBytesOrError: sw.kReadBytesOrError as number,
      kArrayBufferOffset: sw.kArrayBufferOffset as number,
      kLastWriteWasAsync: sw.kLastWriteWasAsync as number,
      TCP: tcp.TCP as Bindings['TCP'],
    };
    if (
      typeof b.WriteWrap === 'function' &&
      b.state instanceof Int32Array &&
      typeof b.TCP === 'function' &&
      [b.kReadBytesOrError, b.kArrayBufferOffset, b.kLastWriteWasAsync].every((k) => typeof k === 'number')
    ) {
      bindings = b;
    }
  } catch {
    // No legacy bindings on this Node: the stream path is used.
  }
  return bindings;
}

/**
 * Wraps `socket` for its reader and writer: `onData` gets every chunk read (from the handle or the stream), and
 * `onDrain` is called once writes that were refused (`write` returned false) are out, from the handle or on the
 * socket's 'drain'. Both are listeners until `detach()`.
 */
export function socketIo(socket: Socket, onData: (chunk: Buffer) => void, onDrain: () => void): SocketIo {
  socket.on('data', onData);
  socket.on('drain', onDrain);
  const b = enabled ? loadBindings() : null;
  const h = (socket as unknown as { _handle: StreamHandle | null })._handle;
  if (b === null || h === null || !(h instanceof b.TCP) || socket.connecting || typeof h.onread !== 'function') {
    return new StreamIo(socket, onData, onDrain);
  }
  return new DirectIo(socket, h, b, onData, onDrain);
}

/** Takes `onData` and `onDrain` off the socket's listeners. */
function removeListeners(socket: Socket, onData: (chunk: Buffer) => void, onDrain: () => void): void {
  socket.removeListener('data', onData);
  socket.removeListener('drain', onDrain);
}

class StreamIo implements SocketIo {
  readonly direct = false;
  private readonly socket: Socket;
  private readonly onData: (chunk: Buffer) => void;
  private readonly onDrain: () => void;
  constructor(socket: Socket, onData: (chunk: Buffer) => void, onDrain: () => void) {
    this.socket = socket;
    this.onData = onData;
    this.onDrain = onDrain;
  }
  write(data: string | Buffer): boolean {
    return typeof data === 'string' ? this.socket.write(data, 'latin1') : this.socket.write(data);
  }
  pause(): void {
    this.socket.pause();
  }
  resume(): void {
    this.socket.resume();
  }
  isPaused(): boolean {
    return this.socket.isPaused();
  }
  detach(): void {
    removeListeners(this.socket, this.onData, this.onDrain);
  }
}

/** A write request no native write holds: the next handle write uses it. */
let spareReq: WriteReq | null = null;

function onDirectWriteDone(this: WriteReq, _status: number): void {
  // A failed write (the connection reset or was destroyed) surfaces as the socket's error/close; only the
  // accounting is ours.
  const io = this.io;
  this.io = null;
  this.buffer = null;
  if (io !== null) io.writeDone();
}

class DirectIo implements SocketIo {
  readonly direct = true;
  private readonly socket: Socket;
  private readonly handle: StreamHandle;
  private readonly b: Bindings;
  private readonly nodeOnread: StreamHandle['onread'];
  private readonly onData: (chunk: Buffer) => void;
  private readonly onDrain: () => void;
  /** Handle writes libuv queued because the kernel buffer was full. */
  private queued = 0;
  private paused = false;
  private attached = true;

  constructor(socket: Socket, handle: StreamHandle, b: Bindings, onData: (chunk: Buffer) => void, onDrain: () => void) {
    this.socket = socket;
    this.handle = handle;
    this.b = b;
    this.onData = onData;
    this.onDrain = onDrain;
    const nodeOnread = handle.onread;
    this.nodeOnread = nodeOnread;
    const state = b.state;
    const kRead = b.kReadBytesOrError;
    const kOffset = b.kArrayBufferOffset;
    const rs = (socket as unknown as { _readableState: { length: number } })._readableState;
    handle.onread = function directRead(this: StreamHandle, ab: ArrayBuffer | undefined): unknown {
      const n = state[kRead]!;
      // EOF and errors, and any read while the stream still holds earlier bytes, take Node's path.
      if (n <= 0 || ab === undefined || rs.length !== 0) return nodeOnread.call(this, ab);
      onData(Buffer.from(ab, state[kOffset]!, n));
      return undefined;
    };
  }

  write(data: string | Buffer): boolean {
    const s = this.socket;
    if (!this.attached || s.writableLength !== 0 || s.writableCorked !== 0 || s.destroyed || s.writableEnded) {
      return typeof data === 'string' ? s.write(data, 'latin1') : s.write(data);
    }
    const b = this.b;
    // The binding attaches a native write request to `req` only when the write has to wait; a write the kernel
    // takes at once leaves it untouched, so it is kept for the next one (one object less per write).
    let req = spareReq;
    if (req === null) {
      req = new b.WriteWrap();
      req.oncomplete = onDirectWriteDone;
      req.io = null;
      req.buffer = null;
    } else spareReq = null;
    const err = typeof data === 'string' ? this.handle.writeLatin1String(req, data) : this.handle.writeBuffer(req, data);
    if (err !== 0) {
      const e = new Error(`write ${getSystemErrorName(err)}`) as NodeJS.ErrnoException;
      e.errno = err;
      e.code = getSystemErrorName(err);
      e.syscall = 'write';
      s.destroy(e);
      return false;
    }
    if (b.state[b.kLastWriteWasAsync] === 0) {
      spareReq = req;
      return this.queued === 0;
    }
    // libuv writes from the Buffer's memory later: keep the Buffer alive until then (Node's own writeGeneric does
    // the same; a string was copied by the binding).
    if (typeof data !== 'string') req.buffer = data;
    req.io = this;
    this.queued++;
    return false;
  }

  writeDone(): void {
    if (--this.queued === 0 && this.attached && !this.socket.destroyed) this.onDrain();
  }

  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.socket.pause();
    const h = this.handle;
    if (h.reading && !this.socket.destroyed) {
      h.reading = false;
      h.readStop();
    }
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    const h = this.handle;
    if (!h.reading && !this.socket.destroyed) {
      h.reading = true;
      const err = h.readStart();
      if (err !== 0) {
        this.socket.destroy();
        return;
      }
    }
    this.socket.resume();
  }

  isPaused(): boolean {
    return this.paused;
  }

  detach(): void {
    if (!this.attached) return;
    this.attached = false;
    this.handle.onread = this.nodeOnread;
    removeListeners(this.socket, this.onData, this.onDrain);
    // Paused here means the handle stopped reading, which a paused net.Socket never does by itself: Node would
    // only restart it from a read it is waiting for. Give the next owner a socket paused the Node way (the handle
    // reads into the Readable until its high-water mark), so its resume() works as on any socket.
    const h = this.handle;
    if (this.paused && !h.reading && !this.socket.destroyed) {
      h.reading = true;
      if (h.readStart() !== 0) this.socket.destroy();
    }
  }
}
