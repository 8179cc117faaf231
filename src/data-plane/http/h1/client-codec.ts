/**
 * HTTP/1.1 client side: one upstream connection carrying one request at a time (no upstream
 * pipelining, as Envoy). The pool (upstream/h1-pool.ts) owns connections and hands them to streams.
 */
import type { Socket } from 'node:net';
import { H1Parser, type H1ParseError } from './parser.ts';
import type { RequestHead, ResetReason, UpstreamStream } from '../stream.ts';
import { socketIo, type SocketIo } from '../../socket-io.ts';

const CRLF = Buffer.from('\r\n');
const LAST_CHUNK = Buffer.from('0\r\n\r\n');
const EMPTY = Buffer.alloc(0);

function noop(): void {}
function noopHeaders(_s: number, _h: string[], _e: boolean): void {}
function noopData(_c: Buffer): void {}
function noopEnd(_t: string[] | null): void {}
function noopReset(_r: ResetReason, _d: string): void {}

export interface H1ClientHooks {
  /** The connection can take another request. */
  onIdle(c: H1ClientConnection): void;
  /** The connection is gone (closed by either side or unusable). */
  onClosed(c: H1ClientConnection): void;
}

export class H1ClientConnection implements UpstreamStream {
  readonly socket: Socket;
  /** Reads and writes (on the TCP handle for a plain socket, see socket-io.ts). */
  private readonly io: SocketIo;
  private readonly parser: H1Parser;
  private readonly hooks: H1ClientHooks;
  onHeaders: (status: number, headers: string[], endStream: boolean) => void = noopHeaders;
  onData: (chunk: Buffer) => void = noopData;
  onEnd: (trailers: string[] | null) => void = noopEnd;
  onReset: (reason: ResetReason, detail: string) => void = noopReset;
  onWritable: () => void = noop;
  onUpgrade: UpstreamStream['onUpgrade'] = null;
  flushTarget: { flush(): void } | null = null;
  readonly batchesReads = true;
  /** A request is in flight on this connection. */
  busy = false;
  closed = false;
  private chunked = false;
  private requestSent = false;
  private responseDone = false;
  private keepAlive = true;
  private gotResponseBytes = false;
  private isUpgrade = false;
  private method = 'GET';
  requests = 0;
  /** Opaque slot for the pool (the host this connection belongs to). */
  poolData: unknown = null;
  /** When the connection last went idle (for the pool's idle timeout). */
  idleSince = 0;

  constructor(socket: Socket, hooks: H1ClientHooks, maxHeaderBytes = 60 * 1024, maxHeadersCount = 100) {
    this.socket = socket;
    this.hooks = hooks;
    const p = new H1Parser(1, { maxHeaderBytes, maxHeadersCount });
    this.parser = p;
    p.onResponseHead = this.onResponseHead.bind(this);
    p.onBody = this.onBody.bind(this);
    p.onMessageComplete = this.onMessageComplete.bind(this);
    p.onError = this.onParseError.bind(this);
    this.io = socketIo(socket, this.onSocketData.bind(this), this.onSocketDrain.bind(this));
    socket.on('end', this.onSocketEnd.bind(this));
    socket.on('close', this.onSocketClose.bind(this));
    socket.on('error', noop);
    socket.setNoDelay(true);
  }

  /** Makes this connection carry a new request; the caller sets the callbacks after. */
  begin(): void {
    this.busy = true;
    this.requestSent = false;
    this.responseDone = false;
    this.gotResponseBytes = false;
    this.keepAlive = true;
    this.isUpgrade = false;
    this.onHeaders = noopHeaders;
    this.onData = noopData;
    this.onEnd = noopEnd;
    this.onReset = noopReset;
    this.onWritable = noop;
    this.onUpgrade = null;
    this.flushTarget = null;
    this.requests++;
  }

  sendHeaders(head: RequestHead, endStream: boolean): void {
    // RFC 8441 extended CONNECT from an h2 downstream (`:protocol websocket`) is an HTTP/1.1 Upgrade on this
    // side: GET with Upgrade/Connection (Envoy's Utility::transformUpgradeRequestFromH2toH1).
    const method = head.method === 'CONNECT' && head.upgrade !== '' && head.upgrade !== 'connect' ? 'GET' : head.method;
    this.method = method;
    this.parser.setResponseContext(method);
    const isConnect = method === 'CONNECT';
    let s = method + ' ' + (isConnect ? head.authority : head.path) + ' HTTP/1.1\r\nhost: ' + head.authority + '\r\n';
    const h = head.headers;
    let hasLength = false;
    for (let i = 0; i < h.length; i += 2) {
      const n = h[i];
      if (n === 'content-length') hasLength = true;
      s += n + ': ' + h[i + 1] + '\r\n';
    }
    this.chunked = false;
    if (head.upgrade !== '' && !isConnect) {
      this.isUpgrade = true;
      s += 'connection: upgrade\r\nupgrade: ' + head.upgrade + '\r\n';
    } else if (isConnect) {
      this.isUpgrade = true;
    } else if (!endStream && !hasLength) {
      s += 'transfer-encoding: chunked\r\n';
      this.chunked = true;
    }
    const sock = this.socket;
    if (endStream) {
      this.io.write(s + '\r\n');
      this.requestSent = true;
    } else {
      sock.cork();
      sock.write(s + '\r\n', 'latin1');
      process.nextTick(uncork, sock);
    }
  }

  write(chunk: Buffer): boolean {
    if (this.closed || chunk.length === 0) return true;
    const io = this.io;
    if (this.chunked) {
      io.write(chunk.length.toString(16) + '\r\n');
      io.write(chunk);
      return io.write(CRLF);
    }
    return io.write(chunk);
  }

  end(trailers: string[] | null): void {
    if (this.closed || this.requestSent) return;
    this.requestSent = true;
    if (this.chunked) {
      if (trailers !== null && trailers.length > 0) {
        let s = '0\r\n';
        for (let i = 0; i < trailers.length; i += 2) s += trailers[i] + ': ' + trailers[i + 1] + '\r\n';
        this.io.write(s + '\r\n');
      } else this.io.write(LAST_CHUNK);
    }
    if (this.responseDone) this.release();
  }

  reset(): void {
    if (this.closed) return;
    this.busy = false;
    this.closed = true;
    this.socket.destroy();
  }

  pauseResponse(): void {
    this.io.pause();
  }

  resumeResponse(): void {
    this.io.resume();
  }

  private onSocketData(data: Buffer): void {
    if (!this.busy) {
      // Bytes with no request outstanding: the server is confused; this connection is unusable.
      this.destroyQuietly();
      return;
    }
    this.gotResponseBytes = true;
    const ft = this.flushTarget;
    const n = this.parser.execute(data);
    if (ft !== null) ft.flush();
    if (n < data.length && this.isUpgrade && !this.closed) {
      this.upgradeLeftover = data.subarray(n);
    }
  }

  private upgradeLeftover: Buffer = EMPTY;

  private onResponseHead(
    status: number,
    _reason: string,
    _versionMinor: 0 | 1,
    headers: string[],
    bodyKind: string,
    _contentLength: number,
    keepAlive: boolean,
  ): void {
    if (status < 200 && status !== 101) return; // interim responses are not forwarded (Envoy's default)
    this.keepAlive = keepAlive;
    if (this.isUpgrade && (status === 101 || (this.method === 'CONNECT' && status >= 200 && status < 300))) {
      // The tunnel starts after this head; the parser stopped, give the raw socket to the router.
      queueMicrotask(() => this.handOver(status, headers));
      return;
    }
    if (this.isUpgrade) this.keepAlive = false;
    this.onHeaders(status, headers, bodyKind === 'none');
  }

  private handOver(status: number, headers: string[]): void {
    const cb = this.onUpgrade;
    const sock = this.socket;
    this.closed = true;
    this.busy = false;
    this.io.detach();
    sock.removeAllListeners('end');
    sock.removeAllListeners('close');
    this.hooks.onClosed(this);
    if (cb === null) {
      sock.destroy();
      this.onReset('protocol-error', 'unexpected upgrade');
      return;
    }
    const head = this.upgradeLeftover;
    this.upgradeLeftover = EMPTY;
    cb(status, headers, sock, head);
  }

  private onBody(chunk: Buffer): void {
    this.onData(chunk);
  }

  private onMessageComplete(trailers: string[] | null): void {
    this.responseDone = true;
    const end = this.onEnd;
    if (this.requestSent) this.release();
    else {
      // Response complete before we finished sending the request: Envoy resets the upstream side.
      this.keepAlive = false;
    }
    end(trailers);
  }

  private release(): void {
    this.busy = false;
    // Drop every reference to the finished request so an idle pooled connection retains nothing of it.
    this.flushTarget = null;
    this.onUpgrade = null;
    this.onHeaders = noopHeaders;
    this.onData = noopData;
    this.onEnd = noopEnd;
    this.onReset = noopReset;
    this.onWritable = noop;
    if (!this.keepAlive || this.closed) {
      this.destroyQuietly();
      return;
    }
    this.parser.reset();
    // The response may have completed inside the same read that made the router pause it for a slow
    // downstream: an idle connection must read again, or the next request on it never sees its response.
    if (this.io.isPaused()) this.io.resume();
    this.hooks.onIdle(this);
  }

  private onParseError(err: H1ParseError): void {
    const cb = this.onReset;
    this.destroyQuietly();
    if (this.busy) {
      this.busy = false;
      cb('protocol-error', err.message);
    }
  }

  private onSocketDrain(): void {
    if (this.busy) this.onWritable();
  }

  private onSocketEnd(): void {
    if (this.busy && !this.responseDone) {
      // EOF: completes a close-delimited body, else it is a reset.
      this.parser.finish();
    }
    this.destroyQuietly();
  }

  private onSocketClose(): void {
    const wasBusy = this.busy && !this.responseDone;
    this.closed = true;
    this.busy = false;
    this.hooks.onClosed(this);
    if (wasBusy) {
      this.onReset('connection-termination', this.gotResponseBytes ? 'connection termination' : 'connection termination before response');
    }
  }

  private destroyQuietly(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
  }

  /** True when a request reused this connection and it died before any response byte (a keep-alive race). */
  get diedBeforeResponse(): boolean {
    return !this.gotResponseBytes;
  }
}

function uncork(s: Socket): void {
  s.uncork();
}
