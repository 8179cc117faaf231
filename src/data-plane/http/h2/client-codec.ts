/** HTTP/2 client side: one node:http2 stream per upstream request, on a pooled session. */
import http2 from 'node:http2';
import type { RequestHead, ResetReason, UpstreamStream } from '../stream.ts';
import { fromH2Object, stripForH2, toH2Headers } from './convert.ts';

const { NGHTTP2_REFUSED_STREAM, NGHTTP2_CANCEL, NGHTTP2_FLAG_END_STREAM } = http2.constants;

function noop(): void {}
function noopHeaders(_s: number, _h: string[], _e: boolean): void {}
function noopData(_c: Buffer): void {}
function noopEnd(_t: string[] | null): void {}
function noopReset(_r: ResetReason, _d: string): void {}

export class H2ClientStream implements UpstreamStream {
  onHeaders: (status: number, headers: string[], endStream: boolean) => void = noopHeaders;
  onData: (chunk: Buffer) => void = noopData;
  onEnd: (trailers: string[] | null) => void = noopEnd;
  onReset: (reason: ResetReason, detail: string) => void = noopReset;
  onWritable: () => void = noop;
  onUpgrade: UpstreamStream['onUpgrade'] = null;
  flushTarget: { flush(): void } | null = null;
  readonly batchesReads = false;
  private s: http2.ClientHttp2Stream | null = null;
  private readonly session: http2.ClientHttp2Session;
  private readonly scheme: string;
  private trailersOut: string[] | null = null;
  private trailersIn: string[] | null = null;
  private finished = false;
  private gotHeaders = false;
  /** Called once when the stream is over, whatever the outcome (the pool counts active streams). */
  onDone: () => void = noop;

  constructor(session: http2.ClientHttp2Session, scheme: string) {
    this.session = session;
    this.scheme = scheme;
  }

  sendHeaders(head: RequestHead, endStream: boolean): void {
    const h = head.headers;
    stripForH2(h);
    const obj: http2.OutgoingHttpHeaders = { ':method': head.method, ':authority': head.authority };
    if (head.method === 'CONNECT') {
      if (head.upgrade !== '' && head.upgrade !== 'connect') {
        obj[':protocol'] = head.upgrade;
        obj[':scheme'] = this.scheme;
        obj[':path'] = head.path;
      }
    } else {
      obj[':scheme'] = this.scheme;
      obj[':path'] = head.path;
    }
    let s: http2.ClientHttp2Stream;
    try {
      s = this.session.request(toH2Headers(obj, h), { endStream, waitForTrailers: !endStream });
    } catch (err) {
      queueMicrotask(() => this.fail('connection-termination', (err as Error).message));
      return;
    }
    this.s = s;
    s.on('response', (headers: http2.IncomingHttpHeaders, flags: number) => {
      const status = Number(headers[':status']);
      if (status >= 100 && status < 200) return;
      this.gotHeaders = true;
      const end = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
      this.onHeaders(status, fromH2Object(headers), end);
      if (end) this.complete(null);
    });
    s.on('data', (c: Buffer) => this.onData(c));
    s.on('trailers', (t: http2.IncomingHttpHeaders) => {
      this.trailersIn = fromH2Object(t);
    });
    s.on('end', () => {
      if (this.gotHeaders) this.complete(this.trailersIn);
    });
    s.on('drain', () => this.onWritable());
    s.on('wantTrailers', () => {
      const t = this.trailersOut;
      this.trailersOut = null;
      s.sendTrailers(t === null ? {} : toH2Headers({}, t));
    });
    s.on('close', () => {
      if (this.finished) return;
      const code = s.rstCode ?? 0;
      if (code === NGHTTP2_REFUSED_STREAM) this.fail('remote-refused-stream', 'refused stream');
      else if (this.gotHeaders && code === 0) this.complete(this.trailersIn);
      else this.fail(this.session.destroyed || this.session.closed ? 'connection-termination' : 'remote-reset', `reset code ${code}`);
    });
    s.on('error', noop);
  }

  private complete(trailers: string[] | null): void {
    if (this.finished) return;
    this.finished = true;
    this.onDone();
    this.onEnd(trailers);
  }

  private fail(reason: ResetReason, detail: string): void {
    if (this.finished) return;
    this.finished = true;
    this.onDone();
    this.onReset(reason, detail);
  }

  write(chunk: Buffer): boolean {
    const s = this.s;
    if (s === null || s.destroyed) return true;
    return s.write(chunk);
  }

  end(trailers: string[] | null): void {
    const s = this.s;
    if (s === null || s.destroyed) return;
    if (trailers !== null && trailers.length > 0) {
      stripForH2(trailers);
      this.trailersOut = trailers;
    }
    s.end();
  }

  reset(): void {
    const s = this.s;
    if (!this.finished) {
      this.finished = true;
      this.onDone();
    }
    if (s !== null && !s.destroyed) s.close(NGHTTP2_CANCEL);
  }

  pauseResponse(): void {
    this.s?.pause();
  }

  resumeResponse(): void {
    this.s?.resume();
  }
}
