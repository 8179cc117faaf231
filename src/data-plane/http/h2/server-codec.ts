/**
 * HTTP/2 server side, on node:http2 (nghttp2). Sockets accepted by our listener are handed to one
 * shared Http2Server per HTTP connection manager with `emit('connection')`, so protocol detection,
 * TLS termination and filter-chain selection stay ours.
 */
import http2 from 'node:http2';
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import type { DownstreamConnectionInfo, RequestHead, ResetReason, ServerStream } from '../stream.ts';
import { fromH2Object, fromH2Raw, stripForH2, toH2Headers } from './convert.ts';

const { NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_INTERNAL_ERROR, NGHTTP2_PROTOCOL_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants;
/** Request pseudo-headers allowed on top of max_headers_count (:method :scheme :authority :path :protocol, + slack). */
const PSEUDO_HEADERS_MAX = 8;

/**
 * RFC 9113 §8.2.1: a field value with NUL, CR or LF, or with leading/trailing whitespace, makes the request
 * malformed. nghttp2 as Node builds it lets some through, so the codec checks every field before a stream
 * becomes a request (RELIABILITY row 5/14: never forwarded).
 */
function isMalformedField(name: string, value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0 || c === 10 || c === 13) return true;
  }
  if (value.length > 0) {
    const first = value.charCodeAt(0);
    const last = value.charCodeAt(value.length - 1);
    if (first === 32 || first === 9 || last === 32 || last === 9) return true;
  }
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    // Lowercase token characters only (§8.2.1); ':' only as the first character of a pseudo-header.
    if (c <= 32 || c >= 127 || (c >= 65 && c <= 90) || (c === 58 && i > 0)) return true;
  }
  return false;
}

function noop(): void {}
function noopData(_c: Buffer): void {}
function noopEnd(_t: string[] | null): void {}
function noopReset(_r: ResetReason): void {}

export interface H2ServerOptions {
  maxConcurrentStreams: number;
  /** Header list size cap (SETTINGS_MAX_HEADER_LIST_SIZE), bytes. */
  maxHeaderListSize: number;
  maxHeadersCount: number;
  initialStreamWindowSize: number;
  /** Called per stream; the callee sets callbacks synchronously. */
  onStream: (stream: ServerStream) => void;
  onSession: (session: http2.ServerHttp2Session, conn: DownstreamConnectionInfo) => void;
  onSessionClose: (session: http2.ServerHttp2Session) => void;
  onProtocolError: (what: string) => void;
}

const kConn = Symbol('sloop.conn');
type SessionWithConn = http2.ServerHttp2Session & { [kConn]?: DownstreamConnectionInfo };

class H2ServerStream implements ServerStream {
  readonly head: RequestHead;
  readonly conn: DownstreamConnectionInfo;
  onData: (chunk: Buffer) => void = noopData;
  onEnd: (trailers: string[] | null) => void = noopEnd;
  onReset: (reason: ResetReason) => void = noopReset;
  onWritable: () => void = noop;
  responseStarted = false;
  private done = false;
  private trailers: string[] | null = null;
  private reqTrailers: string[] | null = null;
  private readonly s: http2.ServerHttp2Stream;

  constructor(s: http2.ServerHttp2Stream, head: RequestHead, conn: DownstreamConnectionInfo, endStream: boolean) {
    this.s = s;
    this.head = head;
    this.conn = conn;
    s.on('data', (c: Buffer) => this.onData(c));
    s.on('trailers', (t: http2.IncomingHttpHeaders) => {
      this.reqTrailers = fromH2Object(t);
    });
    s.on('end', () => this.onEnd(this.reqTrailers));
    s.on('drain', () => this.onWritable());
    s.on('wantTrailers', () => {
      const t = this.trailers;
      this.trailers = null;
      s.sendTrailers(t === null ? {} : toH2Headers({}, t));
    });
    s.on('close', () => {
      if (!this.done) {
        this.done = true;
        this.onReset('remote-reset');
      }
    });
    s.on('error', noop);
    if (endStream) {
      // No body: the 'end' event still fires once the readable side is consumed.
      s.resume();
    }
  }

  respond(status: number, headers: string[], endStream: boolean): void {
    if (this.responseStarted || this.s.destroyed) return;
    if (status >= 100 && status < 200) {
      if (status === 101) return;
      this.s.additionalHeaders(toH2Headers({ ':status': status }, headersForH2(headers)));
      return;
    }
    this.responseStarted = true;
    const obj = toH2Headers({ ':status': status }, headersForH2(headers));
    try {
      this.s.respond(obj, { endStream, waitForTrailers: !endStream });
    } catch {
      this.reset();
      return;
    }
    if (endStream) this.done = true;
  }

  write(chunk: Buffer): boolean {
    if (this.done || this.s.destroyed) return true;
    return this.s.write(chunk);
  }

  end(trailers: string[] | null): void {
    if (this.done || this.s.destroyed) return;
    if (!this.responseStarted) this.respond(200, [], false);
    this.done = true;
    if (trailers !== null && trailers.length > 0) this.trailers = headersForH2(trailers);
    this.s.end();
  }

  reset(): void {
    if (this.s.destroyed) return;
    this.done = true;
    this.s.close(NGHTTP2_INTERNAL_ERROR);
  }

  pauseRequest(): void {
    this.s.pause();
  }

  resumeRequest(): void {
    this.s.resume();
  }

  flush(): void {
    // node:http2 frames and coalesces writes itself.
  }

  closeAfterResponse(): void {
    const sess = this.s.session;
    if (sess && !sess.closed) sess.goaway();
  }
}

function headersForH2(h: string[]): string[] {
  stripForH2(h);
  return h;
}

/** One per HTTP connection manager: owns the nghttp2 server object and turns streams into ServerStreams. */
export class H2ServerCodec {
  private readonly server: http2.Http2Server;
  private readonly opts: H2ServerOptions;
  readonly sessions = new Set<http2.ServerHttp2Session>();

  constructor(opts: H2ServerOptions) {
    this.opts = opts;
    this.server = http2.createServer({
      settings: {
        maxConcurrentStreams: opts.maxConcurrentStreams,
        maxHeaderListSize: opts.maxHeaderListSize,
        initialWindowSize: opts.initialStreamWindowSize,
        enableConnectProtocol: true,
      },
      maxHeaderListPairs: opts.maxHeadersCount + PSEUDO_HEADERS_MAX,
      maxSessionMemory: 64,
      // RELIABILITY rows 9/12/13: bounded invalid frames and rejected streams per session.
      maxSessionInvalidFrames: 1000,
      maxSessionRejectedStreams: 100,
      unknownProtocolTimeout: 10000,
    });
    this.server.on('session', (session: SessionWithConn) => {
      this.sessions.add(session);
      session.on('close', () => {
        this.sessions.delete(session);
        this.opts.onSessionClose(session);
      });
      session.on('error', () => this.opts.onProtocolError('session-error'));
      session.on('frameError', () => this.opts.onProtocolError('frame-error'));
    });
    this.server.on('stream', (s: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, raw: string[]) =>
      this.onStream(s, headers, flags, raw),
    );
    this.server.on('sessionError', () => this.opts.onProtocolError('session-error'));
  }

  /** Starts HTTP/2 on an accepted (possibly TLS) socket. `head` holds bytes already read from it. */
  accept(socket: Socket, conn: DownstreamConnectionInfo, head: Buffer): void {
    // Bytes already read to pick the codec (the preface, when no ALPN said h2) go back in front of the stream.
    // node:http2 reads a TLS socket through its native handle, past anything unshifted in JS, so a TLS socket
    // with such bytes (mesh mTLS offers ALPN `istio`, not h2; a CONNECT tunnel carries h2c inside TLS) is handed
    // over through a JS stream that replays them first.
    let carrier: Socket | Duplex = socket;
    if (head.length > 0) {
      if (socket instanceof TLSSocket) carrier = replayingStream(socket, head);
      else socket.unshift(head);
    }
    this.server.once('session', (session: SessionWithConn) => {
      session[kConn] = conn;
      // Listener sockets allow half-open (tcp_proxy needs it), but an HTTP codec has no use for it: Envoy
      // treats the peer's FIN as the end of the connection. Without this, a client that sends FIN leaves
      // the session (and downstream_cx_active) until the idle timeout.
      socket.once('end', () => {
        if (!session.destroyed) session.destroy();
      });
      this.opts.onSession(session, conn);
    });
    this.server.emit('connection', carrier);
  }

  private onStream(s: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, raw: string[]): void {
    // Before anything can throw: a stream nghttp2 later closes with an error must never be an unhandled 'error'.
    s.on('error', noop);
    // Envoy's h2 codec resets a stream whose decoded headers exceed max_request_headers_kb (counting name and
    // value bytes) or max_headers_count (http2.header_overflow). nghttp2 enforces our SETTINGS_MAX_HEADER_LIST_SIZE
    // only once the client has ACKed our SETTINGS, so a header block sent with the preface (an HPACK bomb:
    // one big dynamic-table entry referenced by many one-byte indexed fields) decodes past it; check here too,
    // before anything is forwarded (RELIABILITY rows 6 and 11).
    let headerBytes = 0;
    for (let i = 0; i < raw.length; i += 2) headerBytes += raw[i].length + raw[i + 1].length;
    if (headerBytes > this.opts.maxHeaderListSize || raw.length / 2 > this.opts.maxHeadersCount + PSEUDO_HEADERS_MAX) {
      this.opts.onProtocolError('header-overflow');
      s.close(NGHTTP2_ENHANCE_YOUR_CALM);
      return;
    }
    for (let i = 0; i < raw.length; i += 2) {
      if (isMalformedField(raw[i], raw[i + 1])) {
        this.opts.onProtocolError('malformed-header');
        s.close(NGHTTP2_PROTOCOL_ERROR);
        return;
      }
    }
    const session = s.session as SessionWithConn | undefined;
    const conn = session?.[kConn];
    if (conn === undefined) {
      s.close(NGHTTP2_REFUSED_STREAM);
      return;
    }
    const method = String(headers[':method'] ?? '');
    const protocol = headers[':protocol'];
    const endStream = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    const h = fromH2Raw(raw);
    let contentLength = -1;
    for (let i = 0; i < h.length; i += 2) {
      if (h[i] === 'content-length') {
        contentLength = Number(h[i + 1]);
        break;
      }
    }
    const head: RequestHead = {
      method,
      path: String(headers[':path'] ?? ''),
      authority: String(headers[':authority'] ?? headers.host ?? ''),
      scheme: String(headers[':scheme'] ?? 'http'),
      headers: h,
      protocol: 'HTTP/2',
      contentLength: endStream ? 0 : contentLength,
      hasBody: !endStream,
      // RFC 8441 extended CONNECT carries WebSocket over h2.
      upgrade: method === 'CONNECT' ? (typeof protocol === 'string' ? protocol.toLowerCase() : 'connect') : '',
    };
    this.opts.onStream(new H2ServerStream(s, head, conn, endStream));
  }

  /** Graceful drain: GOAWAY on every session; streams in flight finish. */
  drain(): void {
    for (const s of this.sessions) if (!s.closed) s.close();
  }

  destroyAll(): void {
    for (const s of this.sessions) s.destroy();
  }
}

/** A Duplex over `socket` that yields `head` before the socket's own bytes (see H2ServerCodec.accept). */
function replayingStream(socket: Socket, head: Buffer): Duplex {
  const d = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk: Buffer, _encoding, cb) {
      socket.write(chunk, cb);
    },
    final(cb) {
      socket.end();
      cb();
    },
    destroy(err, cb) {
      socket.destroy(err ?? undefined);
      cb(err);
    },
  });
  d.push(head);
  socket.on('data', (c: Buffer) => {
    if (!d.push(c)) socket.pause();
  });
  socket.on('end', () => d.push(null));
  socket.on('error', (err) => d.destroy(err));
  socket.on('close', () => d.destroy());
  socket.resume();
  return d;
}
