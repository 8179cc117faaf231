/**
 * HTTP/1.1 server side of the proxy, on a raw net/tls socket with our own strict parser (parser.ts).
 * One request is processed at a time per connection: a pipelined request is parsed only after the
 * previous response completed (RFC 9112 §9.3.2 lets responses be ordered; Envoy does the same).
 */
import type { Socket } from 'node:net';
import { H1Parser, type H1ParseError } from './parser.ts';
import type { DownstreamConnectionInfo, RequestHead, ResetReason, ServerStream } from '../stream.ts';
import { statusLine } from '../status-text.ts';
import { socketIo, type SocketIo } from '../../socket-io.ts';

export interface H1ServerOptions {
  maxHeaderBytes: number;
  maxHeadersCount: number;
  scheme: 'http' | 'https';
  conn: DownstreamConnectionInfo;
  /** Called once per request head; the callee sets the stream's callbacks synchronously. */
  onStream: (stream: ServerStream) => void;
  /** Malformed request: the codec answers with `status` and closes; this is for stats/logs. */
  onProtocolError: (err: H1ParseError) => void;
  /** Connection closed (either side). */
  onClose: () => void;
  /** Idle connection timeout (no request in flight), 0 = none. */
  idleTimeoutMs: number;
  /**
   * Longest a head may take from its first byte to its end, 0 = none. Envoy starts request_headers_timeout,
   * request_timeout and stream_idle_timeout when the stream begins (first byte), and only the end of the head
   * is an event that could stop or reset them, so the first of them to fire bounds the head.
   */
  headTimeoutMs?: number;
  /** The head timer fired: count it and return the 408 body Envoy sends for the timer that fired. */
  onHeadTimeout?: () => string;
}

const EMPTY = Buffer.alloc(0);
const CRLF = Buffer.from('\r\n');
const LAST_CHUNK = Buffer.from('0\r\n\r\n');

const BODY_NONE = 0;
const BODY_LENGTH = 1;
const BODY_CHUNKED = 2;
const BODY_CLOSE = 3;

class H1ServerStream implements ServerStream {
  readonly head: RequestHead;
  readonly conn: DownstreamConnectionInfo;
  onData: (chunk: Buffer) => void = noopData;
  onEnd: (trailers: string[] | null) => void = noopEnd;
  onReset: (reason: ResetReason) => void = noopReset;
  onWritable: () => void = noop;
  responseStarted = false;
  responseDone = false;
  requestDone = false;
  /** Response framing chosen in respond(). */
  private bodyMode = BODY_NONE;
  private readonly c: H1ServerConnection;
  keepAlive: boolean;

  constructor(c: H1ServerConnection, head: RequestHead, keepAlive: boolean) {
    this.c = c;
    this.head = head;
    this.conn = c.opts.conn;
    this.keepAlive = keepAlive;
  }

  respond(status: number, headers: string[], endStream: boolean): void {
    if (this.responseStarted || this.c.closed) return;
    if (status >= 100 && status < 200 && status !== 101) {
      // Interim response (100 Continue, 103): forward as is, the final one follows.
      let s = statusLine(status);
      for (let i = 0; i < headers.length; i += 2) s += headers[i] + ': ' + headers[i + 1] + '\r\n';
      this.c.io.write(s + '\r\n');
      return;
    }
    this.responseStarted = true;
    const isHead = this.head.method === 'HEAD';
    // RFC 9110 §9.3.6: a 2xx to CONNECT has no content; the tunnel starts right after the head.
    const isTunnel = status === 101 || (this.head.method === 'CONNECT' && status >= 200 && status < 300);
    const noBody = isHead || status === 204 || status === 304 || isTunnel;
    let s = statusLine(status);
    let hasLength = false;
    for (let i = 0; i < headers.length; i += 2) {
      const n = headers[i];
      if (n === 'content-length') {
        hasLength = true;
      } else if (n === 'connection' || n === 'transfer-encoding' || n === 'keep-alive') {
        continue;
      }
      if (isTunnel && n === 'content-length') continue;
      s += n + ': ' + headers[i + 1] + '\r\n';
    }
    // Envoy (ActiveStream::encodeHeaders): a response before the request is complete makes an HTTP/1
    // connection close, since the rest of the request is unread; say so with Connection: close.
    // A request without a body is complete once its head is parsed, even though the parser reports the end of
    // the message only after this (synchronous) local reply returns: that connection stays reusable.
    if (this.c.draining || !(this.requestDone || this.isBodyless())) this.keepAlive = false;
    if (status === 101) {
      s += 'connection: upgrade\r\n';
      this.bodyMode = BODY_NONE;
    } else if (noBody) {
      this.bodyMode = BODY_NONE;
    } else if (hasLength) {
      this.bodyMode = BODY_LENGTH;
    } else if (endStream) {
      s += 'content-length: 0\r\n';
      this.bodyMode = BODY_NONE;
    } else if (this.head.protocol === 'HTTP/1.1') {
      s += 'transfer-encoding: chunked\r\n';
      this.bodyMode = BODY_CHUNKED;
    } else {
      // HTTP/1.0 client and unknown length: the body ends when we close.
      this.bodyMode = BODY_CLOSE;
      this.keepAlive = false;
    }
    if (!isTunnel) {
      if (!this.keepAlive) s += 'connection: close\r\n';
      else if (this.head.protocol === 'HTTP/1.0') s += 'connection: keep-alive\r\n';
    }
    // The head waits for the first body chunk (or end / flush) so head and body leave in one write.
    this.pendingHead = s + '\r\n';
    if (endStream) {
      this.flush();
      this.finishResponse();
    }
  }

  /** No request body follows the head (and no tunnel): nothing of the request is left unread. */
  isBodyless(): boolean {
    return !this.head.hasBody && this.head.upgrade === '';
  }

  /** Head not yet written: joined with the first body chunk into one socket write. */
  private pendingHead = '';

  /** Writes a pending response head now (the router calls this at the end of an upstream read). */
  flush(): void {
    if (this.pendingHead !== '') {
      const h = this.pendingHead;
      this.pendingHead = '';
      if (!this.c.closed) this.c.io.write(h);
    }
  }

  write(chunk: Buffer): boolean {
    if (this.responseDone || this.c.closed || chunk.length === 0) return true;
    const io = this.c.io;
    if (this.pendingHead !== '' && this.bodyMode === BODY_LENGTH) {
      const h = this.pendingHead;
      this.pendingHead = '';
      const out = Buffer.allocUnsafe(h.length + chunk.length);
      out.write(h, 0, 'latin1');
      chunk.copy(out, h.length);
      return io.write(out);
    }
    this.flush();
    if (this.bodyMode === BODY_CHUNKED) {
      io.write(chunk.length.toString(16) + '\r\n');
      io.write(chunk);
      return io.write(CRLF);
    }
    if (this.bodyMode === BODY_NONE) return true;
    return io.write(chunk);
  }

  end(trailers: string[] | null): void {
    if (this.responseDone || this.c.closed) return;
    if (!this.responseStarted) this.respond(200, [], false);
    this.flush();
    if (this.bodyMode === BODY_CHUNKED) {
      if (trailers !== null && trailers.length > 0) {
        let s = '0\r\n';
        for (let i = 0; i < trailers.length; i += 2) s += trailers[i] + ': ' + trailers[i + 1] + '\r\n';
        this.c.io.write(s + '\r\n');
      } else {
        this.c.io.write(LAST_CHUNK);
      }
    }
    this.finishResponse();
  }

  private finishResponse(): void {
    this.responseDone = true;
    if (this.bodyMode === BODY_CLOSE || !this.keepAlive) {
      this.c.closeAfterFlush();
      return;
    }
    this.c.onResponseDone(this);
  }

  reset(): void {
    if (this.c.closed) return;
    this.pendingHead = '';
    this.responseDone = true;
    this.c.destroy();
  }

  pauseRequest(): void {
    this.c.io.pause();
  }

  resumeRequest(): void {
    this.c.io.resume();
  }

  closeAfterResponse(): void {
    this.keepAlive = false;
  }

  /** For an accepted Upgrade: hands over the raw socket and the bytes read past the head. */
  takeSocket(): { socket: Socket; head: Buffer } {
    this.flush();
    return this.c.detach();
  }
}

function noop(): void {}
function onIdleTimer(c: H1ServerConnection): void {
  c.onIdle();
}
function noopData(_c: Buffer): void {}
function noopEnd(_t: string[] | null): void {}
function noopReset(_r: ResetReason): void {}

/** Drives one downstream HTTP/1.1 connection. */
export class H1ServerConnection {
  readonly socket: Socket;
  /** Reads and writes (on the TCP handle for a plain socket, see socket-io.ts). */
  readonly io: SocketIo;
  readonly opts: H1ServerOptions;
  private readonly parser: H1Parser;
  private current: H1ServerStream | null = null;
  /** Bytes received while the parser waits for the current response to finish. */
  private pending: Buffer = EMPTY;
  private parsing = true;
  closed = false;
  draining = false;
  private detached = false;
  private idleTimer: NodeJS.Timeout | null = null;
  private headTimer: NodeJS.Timeout | null = null;

  constructor(socket: Socket, opts: H1ServerOptions) {
    this.socket = socket;
    this.opts = opts;
    const p = new H1Parser(0, { maxHeaderBytes: opts.maxHeaderBytes, maxHeadersCount: opts.maxHeadersCount });
    this.parser = p;
    p.onRequestHead = this.onRequestHead.bind(this);
    p.onBody = this.onBody.bind(this);
    p.onMessageComplete = this.onMessageComplete.bind(this);
    p.onError = this.onParseError.bind(this);
    this.io = socketIo(socket, this.onSocketData.bind(this), this.onSocketDrain.bind(this));
    socket.on('end', this.onSocketEnd.bind(this));
    socket.on('close', this.onSocketClose.bind(this));
    socket.on('error', noop);
    socket.setNoDelay(true);
    this.armIdle();
  }

  /** When the connection last became idle; the idle timer re-arms itself instead of being reset per request. */
  private idleSince = 0;

  private armIdle(): void {
    this.idleSince = performance.now();
    if (this.opts.idleTimeoutMs > 0 && this.idleTimer === null) {
      this.idleTimer = setTimeout(onIdleTimer, this.opts.idleTimeoutMs, this);
      this.idleTimer.unref();
    }
  }

  onIdle(): void {
    this.idleTimer = null;
    if (this.closed || this.detached) return;
    const left = this.opts.idleTimeoutMs - (performance.now() - this.idleSince);
    if (this.current !== null || left > 0) {
      this.idleTimer = setTimeout(onIdleTimer, this.current !== null ? this.opts.idleTimeoutMs : left, this);
      this.idleTimer.unref();
      return;
    }
    this.closeAfterFlush();
  }

  private clearIdleTimer(): void {
    if (this.idleTimer !== null) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
  }

  private onSocketData(data: Buffer): void {
    if (this.closed || this.detached) return;
    if (!this.parsing) {
      // Bounded: a client that pipelines while we answer may send at most one head's worth ahead.
      this.pending = this.pending.length === 0 ? data : Buffer.concat([this.pending, data]);
      if (this.pending.length > this.opts.maxHeaderBytes + 65536) this.io.pause();
      return;
    }
    this.feed(data);
  }

  private feed(data: Buffer): void {
    const n = this.parser.execute(data);
    if (this.closed || this.detached) return;
    if (n < data.length) this.pending = this.pending.length === 0 ? data.subarray(n) : Buffer.concat([this.pending, data.subarray(n)]);
    // Only a head split across reads needs a timer: a head that arrives whole costs nothing here.
    if (this.headTimer === null && this.current === null && this.parser.hasPartialHead) this.armHeadTimer();
  }

  private armHeadTimer(): void {
    const ms = this.opts.headTimeoutMs ?? 0;
    if (ms > 0) this.headTimer = setTimeout(() => this.onHeadTimeout(), ms);
  }

  private disarmHeadTimer(): void {
    if (this.headTimer !== null) {
      clearTimeout(this.headTimer);
      this.headTimer = null;
    }
  }

  /** Slowloris: the head did not complete in time. 408 with Envoy's body, then close (nothing was routed). */
  private onHeadTimeout(): void {
    this.headTimer = null;
    if (this.closed || this.detached || this.current !== null) return;
    const body = this.opts.onHeadTimeout?.() ?? 'request timeout';
    this.io.write(statusLine(408) + `content-length: ${body.length}\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n${body}`);
    this.closeAfterFlush();
  }

  private onRequestHead(
    method: string,
    target: string,
    versionMinor: 0 | 1,
    headers: string[],
    _bodyKind: string,
    contentLength: number,
    keepAlive: boolean,
    upgrade: boolean,
  ): void {
    this.disarmHeadTimer();
    let authority = '';
    // Host is routing input (:authority), not a header to forward as is.
    for (let i = 0; i < headers.length; i += 2) {
      if (headers[i] === 'host') {
        authority = headers[i + 1];
        for (let j = i + 2; j < headers.length; j++) headers[j - 2] = headers[j];
        headers.length -= 2;
        break;
      }
    }
    let path = target;
    let upgradeToken = '';
    if (method === 'CONNECT') {
      authority = target;
      path = '';
      upgradeToken = 'connect';
    } else if (target.charCodeAt(0) !== 47 /* / */ && target !== '*') {
      // absolute-form (forward-proxy style, RFC 9112 §3.2.2): the target's authority wins over Host.
      const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/([^/?#]*)([^#]*)/.exec(target);
      if (m !== null) {
        authority = m[2];
        path = m[3] === '' ? '/' : m[3].startsWith('/') ? m[3] : '/' + m[3];
      }
    }
    if (upgrade && upgradeToken === '') {
      for (let i = 0; i < headers.length; i += 2) {
        if (headers[i] === 'upgrade') {
          upgradeToken = headers[i + 1].toLowerCase();
          break;
        }
      }
    }
    const hasBody = contentLength > 0 || contentLength === -1 ? _bodyKind !== 'none' : false;
    const head: RequestHead = {
      method,
      path,
      authority,
      scheme: this.opts.scheme,
      headers,
      protocol: versionMinor === 1 ? 'HTTP/1.1' : 'HTTP/1.0',
      contentLength: _bodyKind === 'length' ? contentLength : _bodyKind === 'none' ? 0 : -1,
      hasBody,
      upgrade: upgradeToken,
    };
    // After an Upgrade/CONNECT head the bytes that follow belong to the tunnel, not to HTTP.
    if (upgradeToken !== '') this.parsing = false;
    const stream = new H1ServerStream(this, head, keepAlive && !this.draining && upgradeToken === '');
    this.current = stream;
    this.opts.onStream(stream);
  }

  private onBody(chunk: Buffer): void {
    const s = this.current;
    if (s !== null && !s.requestDone) s.onData(chunk);
  }

  private onMessageComplete(trailers: string[] | null): void {
    const s = this.current;
    if (s === null) return;
    s.requestDone = true;
    if (s.responseDone) {
      // A local reply finished inside the head callback of a bodyless request (onResponseDone waited for
      // this): the connection moves on to the next request.
      s.onEnd(trailers);
      this.onResponseDone(s);
      return;
    }
    // Hold the next pipelined request until this response is out.
    this.parsing = false;
    this.parser.pause();
    s.onEnd(trailers);
  }

  private onParseError(err: H1ParseError): void {
    this.opts.onProtocolError(err);
    const s = this.current;
    if (s !== null && !s.requestDone) {
      s.requestDone = true;
      s.onReset('protocol-error');
    }
    if (s === null || !s.responseStarted) {
      const body = err.status === 431 ? 'Request Header Fields Too Large' : 'Bad Request';
      this.io.write(statusLine(err.status) + `content-length: ${body.length}\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n${body}`);
    }
    this.closeAfterFlush();
  }

  /** Called by the stream when its response is complete and the connection stays open. */
  onResponseDone(s: H1ServerStream): void {
    if (this.current !== s) return;
    if (!s.requestDone) {
      // Bodyless request answered before the parser reported its end: onMessageComplete finishes the job.
      if (s.isBodyless()) return;
      // Response finished before the request body did (e.g. local reply): the rest of the body is
      // unread protocol state, so the connection cannot be reused (Envoy closes it too).
      this.closeAfterFlush();
      return;
    }
    this.current = null;
    this.armIdle();
    if (!this.parsing) {
      this.parsing = true;
      this.parser.resume();
      const p = this.pending;
      this.pending = EMPTY;
      if (this.io.isPaused()) this.io.resume();
      if (p.length > 0) this.feed(p);
    }
  }

  private onSocketDrain(): void {
    const s = this.current;
    if (s !== null) s.onWritable();
  }

  private onSocketEnd(): void {
    // Half-close from the client: finish the in-flight response, then close.
    if (this.current === null || this.current.responseDone) this.destroy();
    else if (!this.current.requestDone) {
      const s = this.current;
      s.requestDone = true;
      s.onReset('connection-termination');
      this.destroy();
    } else this.current.keepAlive = false;
  }

  private onSocketClose(): void {
    if (this.detached) return;
    this.closed = true;
    this.clearIdleTimer();
    this.disarmHeadTimer();
    const s = this.current;
    this.current = null;
    if (s !== null && !s.responseDone) {
      s.responseDone = true;
      s.onReset('connection-termination');
    }
    this.opts.onClose();
  }

  closeAfterFlush(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.end();
    // Don't wait forever for a peer that never reads.
    const t = setTimeout(() => this.socket.destroy(), 5000);
    t.unref();
    this.socket.once('close', () => clearTimeout(t));
  }

  destroy(): void {
    this.closed = true;
    this.socket.destroy();
  }

  /** Graceful drain: idle connections close now, busy ones after their response. */
  drain(): void {
    this.draining = true;
    if (this.current === null) this.closeAfterFlush();
    else this.current.keepAlive = false;
  }

  get busy(): boolean {
    return this.current !== null;
  }

  detach(): { socket: Socket; head: Buffer } {
    this.detached = true;
    this.clearIdleTimer();
    this.io.detach();
    this.socket.removeAllListeners('end');
    const head = this.pending;
    this.pending = EMPTY;
    this.current = null;
    this.opts.onClose();
    return { socket: this.socket, head };
  }
}
