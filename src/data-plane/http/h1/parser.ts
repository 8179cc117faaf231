/**
 * A strict, incremental HTTP/1.1 parser for requests and responses (RFC 9110 / RFC 9112), used per
 * connection on the proxy's hot path and at its security boundary (request smuggling: shared/RELIABILITY.md
 * rows 1–8). It is deliberately stricter than llhttp: anything ambiguous about message framing is an error,
 * never a guess, and after the first error the parser is dead so a pipelined request behind a rejected one
 * is never parsed.
 *
 * Design (why it is fast):
 * - A head (or trailer section) complete in the input is parsed in place in one pass over its bytes: typed-array
 *   reads and 256-entry class tables validate every byte and record field offsets. Only then is the head decoded
 *   with ONE latin1 `toString`, and names/values are `slice`s of that string (one native call per head instead
 *   of two per field; scanning the decoded string with `charCodeAt` instead measured ~2x slower). No regular
 *   expressions anywhere. Header strings may therefore share memory with their head (V8 sliced strings):
 *   bounded by `maxHeaderBytes`.
 * - A head split across `execute` calls is copied into one bounded per-parser buffer; only the new bytes are
 *   examined on each call (linear in the input even when fed a byte at a time), bare CR / bare LF are reported
 *   as soon as they arrive, and the buffer never grows past `maxHeaderBytes`.
 * - Body bytes are delivered as zero-copy `subarray`s of the input (the input itself when it is all body).
 * - Callbacks are plain properties set once per connection (no EventEmitter, no closures per message).
 *
 * Refinements of the original API sketch (documented here as the contract):
 * - `onResponseHead` has a final `upgrade` argument: true for `101` and for a 2xx answer to CONNECT. Either way
 *   the parser stops after the head (see below).
 * - `contentLength` is the number of body bytes that follow when `bodyKind === 'length'`, 0 for `'none'` and -1
 *   for `'chunked'` / `'eof'`. The raw header stays in `headers`.
 * - Interim responses (1xx other than 101) fire `onResponseHead` only, never `onMessageComplete`; parsing then
 *   continues with the final response of the same exchange.
 * - After an upgrade/CONNECT head (request: `upgrade === true`; response: `101` or CONNECT 2xx) `execute`
 *   returns the offset just past the head and the parser ignores further input: the remaining bytes belong to
 *   the tunnel. A caller that declines an upgrade request calls `resume()`, and the parser then treats the
 *   message as an ordinary one (body per its framing, then the next pipelined message).
 * - `pause()` takes effect before the parser consumes more input. Events that need no more input are still
 *   delivered: pausing in `onRequestHead` of a bodyless request still yields its `onMessageComplete` in the
 *   same `execute` call, and `execute` then returns the offset after that message.
 * - `setResponseContext(method)` applies to the next final response only (it is consumed by it), so a context
 *   left over from a HEAD request can never strip the body of a later response.
 *
 * Strictness choices beyond the RFC's MUSTs (each also rejected or bounded by Envoy in some mode):
 * - Duplicate Content-Length headers are rejected even when equal (RFC 9112 §6.3 allows merging identical
 *   values; refusing removes a whole class of proxy/upstream disagreement).
 * - Request Transfer-Encoding must be exactly `chunked` (any case): other codings and lists are 501 (RFC 9112
 *   §6.1 "a server that receives a transfer coding it does not understand SHOULD respond with 501").
 *   Content-Length together with Transfer-Encoding is 400 for requests AND responses (RFC 9112 §6.1 lets a
 *   recipient treat it as an error; Envoy rejects it unless `allow_chunked_length` is set).
 * - Whitespace after a chunk size, empty chunk-extension names and malformed quoted extension values are 400.
 * - Content-Length, Transfer-Encoding and Host are refused in trailers (RFC 9110 §6.5.1: framing and routing
 *   fields must not be trailers).
 * - Only one leading empty line before a request-line is tolerated (RFC 9112 §2.2 "at least one").
 * - `maxHeaderBytes` bounds the whole head: start line, field lines and the terminating CRLFs.
 *
 * The parser never throws on any input. Callbacks must not throw (an exception propagates out of `execute`
 * and leaves the parser in an unspecified state); they may call `pause()`.
 */
import { FIELD_VALUE, HEX, HOST, QDTEXT, TARGET, TOKEN } from './char-tables.ts';

/** Parser kind: parse requests (server side of a connection). */
export const H1_KIND_REQUEST = 0;
/** Parser kind: parse responses (client side of a connection). */
export const H1_KIND_RESPONSE = 1;
/** `H1_KIND_REQUEST | H1_KIND_RESPONSE`. */
export type H1Kind = typeof H1_KIND_REQUEST | typeof H1_KIND_RESPONSE;

/**
 * How the body of a message is framed: none, Content-Length bytes, chunked, or until the connection closes
 * (`'eof'`, responses only; RFC 9112 §6.3 rule 8).
 */
export type BodyKind = 'none' | 'length' | 'chunked' | 'eof';

/** Bounds enforced by the parser (RELIABILITY rows 6 and 7; Envoy defaults). */
export interface H1Limits {
  /**
   * Max bytes of a head (start line + field lines + CRLFs), and separately of a trailer section. Default 60 KiB
   * (Envoy `max_request_headers_kb`); capped at 2^29 - 1. Exceeded → 431.
   */
  maxHeaderBytes: number;
  /** Max field lines in a head, and separately in a trailer section. Default 100 (Envoy `max_headers_count`). Exceeded → 431. */
  maxHeadersCount: number;
  /** Max total chunk-extension bytes per message. Default 16 KiB. Exceeded → 413. */
  maxChunkExtBytes?: number;
}

/** Default limits, equal to Envoy's defaults where Envoy has one. */
export const H1_DEFAULT_LIMITS: Readonly<Required<H1Limits>> = Object.freeze({
  maxHeaderBytes: 60 * 1024,
  maxHeadersCount: 100,
  maxChunkExtBytes: 16 * 1024,
});

/** Stable codes of {@link H1ParseError}. Branch on these, never on the message. */
export const H1_ERROR_CODES = [
  'H1_INVALID_REQUEST_LINE',
  'H1_INVALID_METHOD',
  'H1_INVALID_TARGET',
  'H1_INVALID_VERSION',
  'H1_UNSUPPORTED_VERSION',
  'H1_INVALID_STATUS_LINE',
  'H1_INVALID_HEADER_NAME',
  'H1_INVALID_HEADER_VALUE',
  'H1_OBS_FOLD',
  'H1_BARE_LF',
  'H1_BARE_CR',
  'H1_HEADERS_TOO_LARGE',
  'H1_TOO_MANY_HEADERS',
  'H1_INVALID_CONTENT_LENGTH',
  'H1_DUPLICATE_CONTENT_LENGTH',
  'H1_CONTENT_LENGTH_WITH_TRANSFER_ENCODING',
  'H1_UNSUPPORTED_TRANSFER_ENCODING',
  'H1_INVALID_TRANSFER_ENCODING',
  'H1_TRANSFER_ENCODING_HTTP10',
  'H1_INVALID_BODY_FRAMING',
  'H1_MISSING_HOST',
  'H1_DUPLICATE_HOST',
  'H1_INVALID_HOST',
  'H1_INVALID_CHUNK_SIZE',
  'H1_CHUNK_SIZE_OVERFLOW',
  'H1_INVALID_CHUNK_EXTENSION',
  'H1_CHUNK_EXTENSION_TOO_LARGE',
  'H1_INVALID_CHUNK_END',
  'H1_INVALID_TRAILER',
  'H1_UNEXPECTED_EOF',
] as const;

/** One of {@link H1_ERROR_CODES}. */
export type H1ErrorCode = (typeof H1_ERROR_CODES)[number];

/**
 * Why a message was rejected. Not an `Error` subclass on purpose: capturing a stack per bad request would make
 * garbage cheap to send and expensive to receive. The connection owner wraps it, e.g.
 * `new SloopError('SLOOP_ERR_PROXY_DOWNSTREAM_PROTOCOL', err.message, { cause: err })`.
 *
 * `status` is the HTTP status a server should answer before closing (400, 413, 431, 501, 505); for a response
 * parser it only classifies the fault (the proxy answers 502 to its own client).
 */
export class H1ParseError {
  readonly status: 400 | 413 | 431 | 501 | 505;
  readonly code: H1ErrorCode;
  readonly message: string;
  constructor(status: 400 | 413 | 431 | 501 | 505, code: H1ErrorCode, message: string) {
    this.status = status;
    this.code = code;
    this.message = message;
  }
}

/** `onRequestHead` signature: see {@link H1Parser.onRequestHead}. */
export type H1RequestHeadCallback = (
  method: string,
  target: string,
  versionMinor: 0 | 1,
  headers: string[],
  bodyKind: BodyKind,
  contentLength: number,
  keepAlive: boolean,
  upgrade: boolean,
) => void;

/** `onResponseHead` signature: see {@link H1Parser.onResponseHead}. */
export type H1ResponseHeadCallback = (
  status: number,
  reason: string,
  versionMinor: 0 | 1,
  headers: string[],
  bodyKind: BodyKind,
  contentLength: number,
  keepAlive: boolean,
  upgrade: boolean,
) => void;

const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;
const COLON = 58;
const SEMI = 59;
const EQUALS = 61;
const DQUOTE = 34;
const BACKSLASH = 92;

const COMMA = 44;

/** Scan results besides an end offset. */
const NEED_MORE = -1;
const FAILED = -2;
/** fieldOffs name-end word: offset in the low bits, bit 30 (TOKEN value 2 << 29) = has an uppercase letter. */
const NAME_UPPER_BIT = 1 << 30;
const NAME_END_MASK = (1 << 29) - 1;

// Parser states. Plain numbers (no enum: erasableSyntaxOnly), compared with ===.
const S_HEAD = 0; // expecting/accumulating a head
const S_BODY_LENGTH = 1;
const S_CHUNK_SIZE = 2;
const S_CHUNK_EXT = 3;
const S_CHUNK_SIZE_LF = 4;
const S_CHUNK_DATA = 5;
const S_CHUNK_DATA_CR = 6;
const S_CHUNK_DATA_LF = 7;
const S_TRAILER_START = 8; // after the last chunk: CRLF (no trailers) or a field line
const S_TRAILER_START_LF = 9;
const S_TRAILERS = 10; // accumulating a trailer section
const S_BODY_EOF = 11;
const S_COMPLETE_PENDING = 12; // a bodyless message whose onMessageComplete is still owed (declined upgrade)
const S_UPGRADED = 13; // stopped after an upgrade/CONNECT head
const S_DEAD = 14; // after an error or finish()

// Chunk-extension sub-states (RFC 9112 §7.1.1: chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] )).
const EXT_NAME_START = 0;
const EXT_NAME = 1;
const EXT_AFTER_NAME = 2;
const EXT_VALUE_START = 3;
const EXT_VALUE_TOKEN = 4;
const EXT_QUOTED = 5;
const EXT_QUOTED_ESCAPE = 6;
const EXT_AFTER_VALUE = 7;

// Connection header tokens (RFC 9110 §7.6.1).
const CONN_CLOSE = 1;
const CONN_KEEP_ALIVE = 2;
const CONN_UPGRADE = 4;

/** 2^49: a chunk size at or above it overflows 2^53 after the next hex digit. */
const CHUNK_SIZE_OVERFLOW = 562949953421312;
/** Content-Length above this is not an exact JS number. */
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
/** A parser keeps its head buffer for reuse only up to this size, so idle connections stay small. */
const KEEP_BLOCK_BUFFER_BYTES = 8 * 1024;

function noop(): void {}

/**
 * An HTTP/1.1 parser for one connection. Set the `on*` callbacks once, then call `execute` with each chunk
 * read from the socket and `finish` at EOF.
 *
 * Ownership: `headers`/`trailers` arrays passed to callbacks belong to the callee. `onBody` chunks are views
 * of the buffer passed to `execute`; copy them to keep them beyond the callback.
 */
export class H1Parser {
  /**
   * A request head is complete (request parsers). `headers` is flat `[name0, value0, …]`, names lowercased,
   * values with surrounding OWS trimmed, in wire order. `upgrade` is true for CONNECT and for a request with
   * `Connection: upgrade` plus an `Upgrade` header; `execute` then stops after the head (see file header).
   */
  onRequestHead: H1RequestHeadCallback = noop;
  /**
   * A response head is complete (response parsers), interim 1xx included. `upgrade` is true for 101 and for
   * a 2xx answer to CONNECT; `execute` then stops after the head.
   */
  onResponseHead: H1ResponseHeadCallback = noop;
  /** Body bytes (de-chunked). A view of the `execute` input: copy it to retain it. */
  onBody: (chunk: Buffer) => void = noop;
  /** The message (body and trailers) is complete. `trailers` is null when there were none. */
  onMessageComplete: (trailers: string[] | null) => void = noop;
  /** The input is invalid. Called once; the parser is dead afterwards (the caller closes the connection). */
  onError: (err: H1ParseError) => void = noop;

  private readonly kind: H1Kind;
  private readonly maxHeaderBytes: number;
  private readonly maxHeadersCount: number;
  private readonly maxChunkExtBytes: number;

  private state = S_HEAD;
  private paused = false;

  // Partial head / trailer section carried across execute() calls.
  private blockBuf: Buffer | null = null;
  private blockLen = 0;

  // Body framing progress.
  private remaining = 0;
  private chunkSize = 0;
  private chunkDigits = 0;
  private extState = EXT_NAME_START;
  private extBytes = 0;
  /** Where a declined upgrade continues (see resume()). */
  private afterUpgradeState = S_COMPLETE_PENDING;

  // Response context (setResponseContext), consumed by the next final response.
  private isHeadRequest = false;
  private isConnectRequest = false;

  // Per-head facts collected while scanning field lines (reset by each head).
  private contentLength = -1;
  private hostCount = 0;
  private teCount = 0;
  /** Request: the single TE value is exactly `chunked`. Response: `chunked` is the final coding. */
  private teChunked = false;
  /** Response: the TE list puts `chunked` anywhere but last, or twice. */
  private teInvalid = false;
  private connection = 0;
  private hasUpgradeHeader = false;
  /** Per field: name start, name end | NAME_UPPER_BIT, value start, value end (relative to the block). */
  private readonly fieldOffs: Int32Array;
  private fieldCount = 0;

  /**
   * @param kind `H1_KIND_REQUEST` (server side) or `H1_KIND_RESPONSE` (client side).
   * @param limits overrides of {@link H1_DEFAULT_LIMITS}.
   */
  constructor(kind: H1Kind, limits?: Partial<H1Limits>) {
    this.kind = kind;
    // Field offsets are packed into 29 bits (fieldOffs), far above any sane head size.
    this.maxHeaderBytes = Math.min(limits?.maxHeaderBytes ?? H1_DEFAULT_LIMITS.maxHeaderBytes, NAME_END_MASK);
    this.maxHeadersCount = limits?.maxHeadersCount ?? H1_DEFAULT_LIMITS.maxHeadersCount;
    this.maxChunkExtBytes = limits?.maxChunkExtBytes ?? H1_DEFAULT_LIMITS.maxChunkExtBytes;
    this.fieldOffs = new Int32Array(this.maxHeadersCount * 4);
  }

  /**
   * Parses `data`, firing callbacks. Returns the number of bytes consumed: all of them, unless the parser was
   * paused, stopped after an upgrade/CONNECT head, or hit an error (then: the offset where it stopped). Bytes
   * not consumed are the caller's (tunnel data, or input to re-feed after `resume()`). Returns 0 once dead.
   */
  execute(data: Buffer): number {
    const end = data.length;
    let pos = 0;
    for (;;) {
      if (this.paused) return pos;
      const state = this.state;
      if (state === S_HEAD || state === S_TRAILERS) {
        if (pos >= end) return pos;
        pos = this.readBlock(data, pos, end);
      } else if (state === S_BODY_LENGTH) {
        if (pos >= end) return pos;
        const avail = end - pos;
        const rem = this.remaining;
        if (avail < rem) {
          this.remaining = rem - avail;
          this.onBody(pos === 0 ? data : data.subarray(pos, end));
          return end;
        }
        this.remaining = 0;
        this.onBody(pos === 0 && rem === end ? data : data.subarray(pos, pos + rem));
        pos += rem;
        this.completeMessage(null);
      } else if (state === S_BODY_EOF) {
        if (pos < end) this.onBody(pos === 0 ? data : data.subarray(pos, end));
        return end;
      } else if (state === S_COMPLETE_PENDING) {
        this.completeMessage(null);
      } else if (state === S_UPGRADED || state === S_DEAD) {
        return pos;
      } else {
        if (pos >= end) return pos;
        pos = this.readChunked(data, pos, end);
      }
    }
  }

  /** Stops consuming input at the next event boundary; `execute` returns early. */
  pause(): void {
    this.paused = true;
  }

  /**
   * Undoes `pause()`. Called while stopped after an upgrade/CONNECT request head, it declines the upgrade:
   * the message continues as an ordinary one (its body, then the next pipelined message). Re-feed the bytes
   * `execute` did not consume.
   */
  resume(): void {
    this.paused = false;
    if (this.state === S_UPGRADED) this.state = this.afterUpgradeState;
  }

  /**
   * Response parsers: the method of the request the next final response answers. HEAD → no body (RFC 9110
   * §9.3.2); CONNECT 2xx → tunnel (RFC 9110 §9.3.6). Consumed by the next final (non-1xx) response.
   */
  setResponseContext(requestMethod: string): void {
    this.isHeadRequest = requestMethod === 'HEAD';
    this.isConnectRequest = requestMethod === 'CONNECT';
  }

  /**
   * The peer closed its side (EOF). Completes a close-delimited response body; reports `H1_UNEXPECTED_EOF` if
   * a message was incomplete. The parser is dead afterwards.
   */
  finish(): void {
    const state = this.state;
    if (state === S_DEAD || state === S_UPGRADED) {
      this.state = S_DEAD;
      return;
    }
    if (state === S_BODY_EOF || state === S_COMPLETE_PENDING) {
      this.state = S_DEAD;
      this.onMessageComplete(null);
      return;
    }
    if (state === S_HEAD && this.blockLen === 0) {
      this.state = S_DEAD; // clean close between messages
      return;
    }
    this.fail(400, 'H1_UNEXPECTED_EOF', 'connection closed before the message was complete');
  }

  /**
   * True while part of a head has arrived but not its end: the window Envoy's request_headers_timeout (and the
   * stream timers that start with the stream) guard against slowloris clients.
   */
  get hasPartialHead(): boolean {
    return this.state === S_HEAD && this.blockLen > 0;
  }

  /** Returns the parser to its initial state (same kind, limits and callbacks), e.g. to reuse it from a pool. */
  reset(): void {
    this.state = S_HEAD;
    this.paused = false;
    this.blockLen = 0;
    if (this.blockBuf !== null && this.blockBuf.length > KEEP_BLOCK_BUFFER_BYTES) this.blockBuf = null;
    this.remaining = 0;
    this.chunkSize = 0;
    this.chunkDigits = 0;
    this.extState = EXT_NAME_START;
    this.extBytes = 0;
    this.afterUpgradeState = S_COMPLETE_PENDING;
    this.isHeadRequest = false;
    this.isConnectRequest = false;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Heads and trailer sections
  //
  // Two phases. Scan: walk the bytes of the Buffer (typed-array reads; scanning a freshly decoded string with
  // charCodeAt measured ~2x slower in V8), validate every byte, and record field offsets in `fieldOffs`.
  // Build: once the block is known to be complete and valid, decode it with ONE latin1 toString and `slice`
  // names and values out of it. Scans take a `limit`; reaching it without the final CRLF returns NEED_MORE.

  /**
   * Parses the head / trailer section at `pos`. Fast path: it is complete in `data` (one scan, no copy).
   * Otherwise the bytes go to the bounded block buffer (see `accumulate`).
   */
  private readBlock(data: Buffer, pos: number, end: number): number {
    if (this.blockLen === 0) {
      const max = this.maxHeaderBytes;
      const limit = end - pos > max ? pos + max : end;
      const r = this.parseBlock(data, pos, limit);
      if (r >= 0) return r;
      if (r === FAILED) return pos;
      if (limit < end) {
        this.failTooLarge();
        return pos;
      }
    }
    return this.accumulate(data, pos, end);
  }

  /**
   * Appends up to `maxHeaderBytes - blockLen` bytes to the block buffer, checking only the new bytes: every LF
   * must follow a CR and every CR must precede an LF (RFC 9112 §2.2: bare CR/LF are errors here, reported as
   * soon as seen rather than at a timeout), and the first CRLFCRLF ends the block, which is then parsed.
   * Linear in the input however it is split.
   */
  private accumulate(data: Buffer, pos: number, end: number): number {
    const oldLen = this.blockLen;
    const avail = end - pos;
    const room = this.maxHeaderBytes - oldLen;
    const n = avail < room ? avail : room;
    const newLen = oldLen + n;
    let buf = this.blockBuf;
    if (buf === null || buf.length < newLen) {
      let cap = buf === null ? 1024 : buf.length * 2;
      while (cap < newLen) cap *= 2;
      if (cap > this.maxHeaderBytes) cap = this.maxHeaderBytes;
      const grown = Buffer.allocUnsafe(cap);
      if (buf !== null && oldLen > 0) buf.copy(grown, 0, 0, oldLen);
      buf = grown;
      this.blockBuf = grown;
    }
    data.copy(buf, oldLen, pos, pos + n);
    let prev = oldLen > 0 ? buf[oldLen - 1] : -1;
    for (let i = oldLen; i < newLen; i++) {
      const b = buf[i];
      if (prev === CR && b !== LF) {
        this.fail(400, 'H1_BARE_CR', 'CR not followed by LF');
        return pos + (i - oldLen);
      }
      if (b === LF) {
        if (prev !== CR) {
          this.fail(400, 'H1_BARE_LF', 'LF not preceded by CR');
          return pos + (i - oldLen);
        }
        // Every LF so far followed a CR, so LF at i-2 means buf[i-3..i] is CRLFCRLF.
        if (i >= 3 && buf[i - 2] === LF) {
          const blockEnd = i + 1;
          this.blockLen = 0;
          if (buf.length > KEEP_BLOCK_BUFFER_BYTES) this.blockBuf = null;
          const r = this.parseBlock(buf, 0, blockEnd);
          if (r === NEED_MORE) {
            // Only the fixed-length start-line lookaheads (HTTP-version, status code) can run past the end of a
            // complete block: the start line is too short to be valid.
            if (this.kind === H1_KIND_REQUEST) this.fail(400, 'H1_INVALID_VERSION', 'truncated request-line');
            else this.fail(400, 'H1_INVALID_STATUS_LINE', 'truncated status-line');
          }
          if (r < 0) return pos + (i - oldLen);
          // The first CRLFCRLF ends the first empty line, so a complete block parses to its end.
          return pos + (blockEnd - oldLen);
        }
      }
      prev = b;
    }
    this.blockLen = newLen;
    if (avail > room) {
      this.failTooLarge();
      return pos + n;
    }
    return end;
  }

  private failTooLarge(): void {
    this.blockBuf = null;
    const what = this.state === S_TRAILERS ? 'trailer section' : 'head';
    this.fail(431, 'H1_HEADERS_TOO_LARGE', `${what} exceeds ${this.maxHeaderBytes} bytes`);
  }

  /** Parses a head or trailer section in `buf[start, limit)`; returns its end, NEED_MORE or FAILED. */
  private parseBlock(buf: Buffer, start: number, limit: number): number {
    if (this.state === S_TRAILERS) {
      const end = this.scanFields(buf, start, start, limit, true);
      if (end < 0) return end;
      const trailers: string[] = [];
      this.buildFields(buf, start, buf.toString('latin1', start, end), trailers);
      this.completeMessage(trailers);
      return end;
    }
    return this.kind === H1_KIND_REQUEST ? this.parseRequestHead(buf, start, limit) : this.parseResponseHead(buf, start, limit);
  }

  private resetHeadFacts(): void {
    this.contentLength = -1;
    this.hostCount = 0;
    this.teCount = 0;
    this.teChunked = false;
    this.teInvalid = false;
    this.connection = 0;
    this.hasUpgradeHeader = false;
  }

  private parseRequestHead(buf: Buffer, start: number, limit: number): number {
    let i = start;
    if (i >= limit) return NEED_MORE;
    let c = buf[i];
    if (c === CR) {
      // RFC 9112 §2.2: ignore one empty line before the request-line (clients that send CRLF after a body).
      if (i + 1 >= limit) return NEED_MORE;
      if (buf[i + 1] !== LF) {
        this.fail(400, 'H1_BARE_CR', 'CR not followed by LF');
        return FAILED;
      }
      i += 2;
    }
    // method = token, then exactly one SP (RFC 9112 §3).
    const mStart = i;
    while (i < limit && TOKEN[(c = buf[i])] !== 0) i++;
    if (i >= limit) return NEED_MORE;
    if (c !== SP || i === mStart) {
      this.requestLineError(c, i === mStart ? 'H1_INVALID_REQUEST_LINE' : 'H1_INVALID_METHOD');
      return FAILED;
    }
    const mEnd = i;
    // request-target: visible ASCII only; NUL/CTL/DEL/SP/obs-text end it and are then errors.
    const tStart = ++i;
    while (i < limit && TARGET[(c = buf[i])] === 1) i++;
    if (i >= limit) return NEED_MORE;
    if (c !== SP || i === tStart) {
      this.requestLineError(c, 'H1_INVALID_TARGET');
      return FAILED;
    }
    const tEnd = i;
    const version = this.scanVersion(buf, i + 1, limit);
    if (version < 0) return version;
    const minor: 0 | 1 = version === 1 ? 1 : 0;
    i += 11; // SP "HTTP/1.x" CRLF

    this.resetHeadFacts();
    const end = this.scanFields(buf, start, i, limit, false);
    if (end < 0) return end;

    // Complete and byte-valid: decode once, then apply the message-level rules.
    const s = buf.toString('latin1', start, end);
    const method = internMethod(buf, mStart, mEnd) ?? s.slice(mStart - start, mEnd - start);
    const target = s.slice(tStart - start, tEnd - start);
    const isConnect = method === 'CONNECT';
    if (!this.checkTargetForm(method, target, isConnect)) return FAILED;
    // RFC 9112 §3.2: a 1.1 request without Host, or with more than one (checked while scanning), gets 400.
    if (this.hostCount === 0 && minor === 1) {
      this.fail(400, 'H1_MISSING_HOST', 'HTTP/1.1 request without Host');
      return FAILED;
    }

    let bodyKind: BodyKind = 'none';
    let contentLength = 0;
    if (this.teCount > 0) {
      // RFC 9112 §6.1: TE in an HTTP/1.0 message means faulty framing; CL + TE is a smuggling signature.
      if (minor === 0) {
        this.fail(400, 'H1_TRANSFER_ENCODING_HTTP10', 'Transfer-Encoding in an HTTP/1.0 request');
        return FAILED;
      }
      if (this.contentLength >= 0) {
        this.fail(400, 'H1_CONTENT_LENGTH_WITH_TRANSFER_ENCODING', 'both Content-Length and Transfer-Encoding');
        return FAILED;
      }
      if (this.teCount !== 1 || !this.teChunked) {
        this.fail(501, 'H1_UNSUPPORTED_TRANSFER_ENCODING', 'only "Transfer-Encoding: chunked" is accepted');
        return FAILED;
      }
      if (isConnect) {
        this.fail(400, 'H1_INVALID_BODY_FRAMING', 'CONNECT request with content');
        return FAILED;
      }
      bodyKind = 'chunked';
      contentLength = -1;
    } else if (this.contentLength >= 0) {
      // RFC 9110 §9.3.6: a CONNECT request has no content.
      if (isConnect && this.contentLength > 0) {
        this.fail(400, 'H1_INVALID_BODY_FRAMING', 'CONNECT request with content');
        return FAILED;
      }
      bodyKind = 'length';
      contentLength = this.contentLength;
    }
    const conn = this.connection;
    // RFC 9112 §9.3: 1.1 persists unless "close"; 1.0 persists only with "keep-alive".
    const keepAlive = (conn & CONN_CLOSE) === 0 && (minor === 1 || (conn & CONN_KEEP_ALIVE) !== 0);
    // RFC 9110 §7.8: Upgrade is only meaningful when listed in Connection.
    const upgrade = isConnect || ((conn & CONN_UPGRADE) !== 0 && this.hasUpgradeHeader);
    const headers: string[] = [];
    this.buildFields(buf, start, s, headers);

    const next = this.enterBody(bodyKind, contentLength);
    if (upgrade) {
      this.afterUpgradeState = next;
      this.state = S_UPGRADED;
    }
    this.onRequestHead(method, target, minor, headers, bodyKind, contentLength, keepAlive, upgrade);
    if (!upgrade && next === S_COMPLETE_PENDING && this.state === S_COMPLETE_PENDING) this.completeMessage(null);
    return end;
  }

  private parseResponseHead(buf: Buffer, start: number, limit: number): number {
    // status-line = HTTP-version SP 3DIGIT SP [reason-phrase] CRLF (RFC 9112 §4).
    if (start + 12 > limit) return NEED_MORE;
    const version = this.matchVersion(buf, start);
    if (version < 0) return version;
    const minor: 0 | 1 = version === 1 ? 1 : 0;
    const d0 = buf[start + 9] - 48;
    const d1 = buf[start + 10] - 48;
    const d2 = buf[start + 11] - 48;
    if (buf[start + 8] !== SP || !isDigit(d0) || !isDigit(d1) || !isDigit(d2) || d0 === 0) {
      this.fail(400, 'H1_INVALID_STATUS_LINE', 'malformed status code');
      return FAILED;
    }
    const status = d0 * 100 + d1 * 10 + d2;
    let i = start + 12;
    if (i >= limit) return NEED_MORE;
    let c = buf[i];
    let rStart = i;
    if (c === SP) {
      rStart = ++i;
      while (i < limit && FIELD_VALUE[(c = buf[i])] === 1) i++;
      if (i >= limit) return NEED_MORE;
    }
    const rEnd = i;
    // A missing SP before an empty reason is tolerated (common in the wild, framing-neutral).
    if (c !== CR) {
      this.lineEndError(c, 'H1_INVALID_STATUS_LINE', 'malformed reason phrase');
      return FAILED;
    }
    if (i + 1 >= limit) return NEED_MORE;
    if (buf[i + 1] !== LF) {
      this.fail(400, 'H1_BARE_CR', 'CR not followed by LF');
      return FAILED;
    }
    i += 2;

    this.resetHeadFacts();
    const end = this.scanFields(buf, start, i, limit, false);
    if (end < 0) return end;

    if (this.teCount > 0) {
      if (minor === 0) {
        this.fail(400, 'H1_TRANSFER_ENCODING_HTTP10', 'Transfer-Encoding in an HTTP/1.0 response');
        return FAILED;
      }
      if (this.contentLength >= 0) {
        this.fail(400, 'H1_CONTENT_LENGTH_WITH_TRANSFER_ENCODING', 'both Content-Length and Transfer-Encoding');
        return FAILED;
      }
      if (this.teInvalid) {
        this.fail(400, 'H1_INVALID_TRANSFER_ENCODING', '"chunked" must be the final transfer coding, once');
        return FAILED;
      }
    }

    const s = buf.toString('latin1', start, end);
    const reason = rEnd > rStart ? s.slice(rStart - start, rEnd - start) : '';
    const headers: string[] = [];
    this.buildFields(buf, start, s, headers);
    const conn = this.connection;
    let keepAlive = (conn & CONN_CLOSE) === 0 && (minor === 1 || (conn & CONN_KEEP_ALIVE) !== 0);
    if (status < 200 && status !== 101) {
      // Interim response (RFC 9110 §15.2): no content; the final response follows on the same exchange.
      this.onResponseHead(status, reason, minor, headers, 'none', 0, keepAlive, false);
      return end;
    }
    const isHead = this.isHeadRequest;
    const isConnect = this.isConnectRequest;
    this.isHeadRequest = false;
    this.isConnectRequest = false;

    // RFC 9112 §6.3, in order: HEAD/1xx/204/304 have no content; CONNECT 2xx becomes a tunnel; then TE
    // (chunked last → chunked, else read until close), then Content-Length, else read until close.
    let bodyKind: BodyKind;
    let contentLength = 0;
    let upgrade = false;
    if (status === 101 || (isConnect && status >= 200 && status < 300)) {
      bodyKind = 'none';
      upgrade = true;
    } else if (isHead || status === 204 || status === 304) {
      bodyKind = 'none';
    } else if (this.teCount > 0) {
      bodyKind = this.teChunked ? 'chunked' : 'eof';
      contentLength = -1;
    } else if (this.contentLength >= 0) {
      bodyKind = 'length';
      contentLength = this.contentLength;
    } else {
      bodyKind = 'eof';
      contentLength = -1;
    }
    if (bodyKind === 'eof') keepAlive = false;

    const next = this.enterBody(bodyKind, contentLength);
    if (upgrade) {
      this.afterUpgradeState = next;
      this.state = S_UPGRADED;
    }
    this.onResponseHead(status, reason, minor, headers, bodyKind, contentLength, keepAlive, upgrade);
    if (!upgrade && next === S_COMPLETE_PENDING && this.state === S_COMPLETE_PENDING) this.completeMessage(null);
    return end;
  }

  /** Sets the body state for a framing and returns it. */
  private enterBody(bodyKind: BodyKind, contentLength: number): number {
    let next: number;
    if (bodyKind === 'chunked') {
      this.chunkSize = 0;
      this.chunkDigits = 0;
      this.extBytes = 0;
      next = S_CHUNK_SIZE;
    } else if (bodyKind === 'length' && contentLength > 0) {
      this.remaining = contentLength;
      next = S_BODY_LENGTH;
    } else if (bodyKind === 'eof') {
      next = S_BODY_EOF;
    } else {
      next = S_COMPLETE_PENDING;
    }
    this.state = next;
    return next;
  }

  /** `"HTTP/1." DIGIT CRLF` at `i` (after the target's SP). Returns the minor version, NEED_MORE or FAILED. */
  private scanVersion(buf: Buffer, i: number, limit: number): number {
    if (i + 10 > limit) return NEED_MORE;
    const minor = this.matchVersion(buf, i);
    if (minor < 0) return minor;
    const c = buf[i + 8];
    if (c !== CR || buf[i + 9] !== LF) {
      this.lineEndError(c, 'H1_INVALID_VERSION', 'malformed HTTP version');
      return FAILED;
    }
    return minor;
  }

  /**
   * Matches `HTTP/1.0` or `HTTP/1.1` at `i` (8 bytes available). Another well-formed version is 505 (RFC 9110
   * §15.6.6), anything else 400. HTTP-name is case-sensitive (RFC 9112 §2.3).
   */
  private matchVersion(buf: Buffer, i: number): number {
    if (buf[i] === 72 && buf[i + 1] === 84 && buf[i + 2] === 84 && buf[i + 3] === 80 && buf[i + 4] === 47 && buf[i + 6] === 46) {
      const major = buf[i + 5] - 48;
      const minor = buf[i + 7] - 48;
      if (major === 1 && (minor === 1 || minor === 0)) return minor;
      if (isDigit(major) && isDigit(minor)) {
        this.fail(505, 'H1_UNSUPPORTED_VERSION', 'only HTTP/1.0 and HTTP/1.1 are supported');
        return FAILED;
      }
    }
    if (this.kind === H1_KIND_RESPONSE) this.fail(400, 'H1_INVALID_STATUS_LINE', 'malformed HTTP version');
    else this.fail(400, 'H1_INVALID_VERSION', 'malformed HTTP version');
    return FAILED;
  }

  /** Classifies the byte that ended a request-line token. */
  private requestLineError(c: number, code: H1ErrorCode): void {
    if (c === LF) this.fail(400, 'H1_BARE_LF', 'LF not preceded by CR');
    else if (c === CR) this.fail(400, 'H1_INVALID_REQUEST_LINE', 'request-line is not "method SP target SP version"');
    else this.fail(400, code, code === 'H1_INVALID_TARGET' ? 'invalid byte in request-target' : 'invalid request-line');
  }

  /** Classifies the byte found where a line's CRLF was expected. */
  private lineEndError(c: number, code: H1ErrorCode, message: string): void {
    if (c === LF) this.fail(400, 'H1_BARE_LF', 'LF not preceded by CR');
    else if (c === CR) this.fail(400, 'H1_BARE_CR', 'CR not followed by LF');
    else this.fail(400, code, message);
  }

  /**
   * RFC 9112 §3.2: origin-form (`/…`), absolute-form (`scheme://…`, forward proxies), authority-form (CONNECT
   * only) or asterisk-form (OPTIONS only). Percent-encoding is left to the router.
   */
  private checkTargetForm(method: string, target: string, isConnect: boolean): boolean {
    const c0 = target.charCodeAt(0);
    if (isConnect) {
      // authority-form = uri-host ":" port
      const colon = target.lastIndexOf(':');
      let ok = colon > 0 && colon < target.length - 1 && target.length - colon - 1 <= 5;
      for (let i = 0; ok && i < colon; i++) ok = HOST[target.charCodeAt(i)] === 1;
      for (let i = colon + 1; ok && i < target.length; i++) ok = isDigit(target.charCodeAt(i) - 48);
      if (!ok) this.fail(400, 'H1_INVALID_TARGET', 'CONNECT target must be host:port');
      return ok;
    }
    if (c0 === 47) return true; // '/'
    if (c0 === 42 && target.length === 1) {
      if (method === 'OPTIONS') return true;
      this.fail(400, 'H1_INVALID_TARGET', 'asterisk-form is only valid for OPTIONS');
      return false;
    }
    // absolute-form: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 §3.1), then "://".
    let i = 0;
    if ((c0 | 0x20) >= 97 && (c0 | 0x20) <= 122) {
      for (i = 1; i < target.length; i++) {
        const c = target.charCodeAt(i);
        const lc = c | 0x20;
        if (!((lc >= 97 && lc <= 122) || isDigit(c - 48) || c === 43 || c === 45 || c === 46)) break;
      }
      if (target.startsWith('://', i) && target.length > i + 3) return true;
    }
    this.fail(400, 'H1_INVALID_TARGET', 'request-target is not origin-, absolute-, authority- or asterisk-form');
    return false;
  }

  /**
   * Scans field lines from `i` up to and including the empty line; returns the index after it, NEED_MORE or
   * FAILED. Records offsets (relative to `base`) in `fieldOffs`; notes framing facts of heads; refuses framing
   * and routing fields in trailers.
   */
  private scanFields(buf: Buffer, base: number, i: number, limit: number, isTrailer: boolean): number {
    const maxCount = this.maxHeadersCount;
    const offs = this.fieldOffs;
    let count = 0;
    this.fieldCount = 0;
    for (;;) {
      if (i >= limit) return NEED_MORE;
      let c = buf[i];
      if (c === CR) {
        if (i + 1 >= limit) return NEED_MORE;
        if (buf[i + 1] === LF) {
          this.fieldCount = count;
          return i + 2;
        }
        this.fail(400, 'H1_BARE_CR', 'CR not followed by LF');
        return FAILED;
      }
      // field-name = token, immediately followed by ":" (RFC 9112 §5.1: no whitespace before the colon).
      const nStart = i;
      let upper = 0;
      let t = 0;
      while (i < limit && (t = TOKEN[(c = buf[i])]) !== 0) {
        upper |= t;
        i++;
      }
      if (i >= limit) return NEED_MORE;
      if (c !== COLON || i === nStart) {
        this.fieldNameError(c, i === nStart, isTrailer);
        return FAILED;
      }
      if (count >= maxCount) {
        this.fail(431, 'H1_TOO_MANY_HEADERS', `more than ${maxCount} ${isTrailer ? 'trailer' : 'header'} fields`);
        return FAILED;
      }
      const nEnd = i;
      // field-value with surrounding OWS trimmed (RFC 9112 §5.1); NUL, CR, LF and other CTLs except HTAB are
      // invalid (RFC 9110 §5.5) and end the scan.
      i++;
      while (i < limit && ((c = buf[i]) === SP || c === HTAB)) i++;
      const vStart = i;
      while (i < limit && FIELD_VALUE[buf[i]] === 1) i++;
      if (i >= limit) return NEED_MORE;
      c = buf[i];
      if (c !== CR) {
        this.lineEndError(c, 'H1_INVALID_HEADER_VALUE', 'invalid byte in a field value');
        return FAILED;
      }
      if (i + 1 >= limit) return NEED_MORE;
      if (buf[i + 1] !== LF) {
        this.fail(400, 'H1_BARE_CR', 'CR not followed by LF');
        return FAILED;
      }
      let vEnd = i;
      while (vEnd > vStart && ((c = buf[vEnd - 1]) === SP || c === HTAB)) vEnd--;
      i += 2;
      const o = count << 2;
      offs[o] = nStart - base;
      offs[o + 1] = (nEnd - base) | (upper << 29); // bit 30 set: the name has an uppercase letter
      offs[o + 2] = vStart - base;
      offs[o + 3] = vEnd - base;
      count++;
      const nameLen = nEnd - nStart;
      if (isTrailer) {
        if (
          (nameLen === 4 && equalsLowerAscii(buf, nStart, 'host')) ||
          (nameLen === 14 && equalsLowerAscii(buf, nStart, 'content-length')) ||
          (nameLen === 17 && equalsLowerAscii(buf, nStart, 'transfer-encoding'))
        ) {
          this.fail(400, 'H1_INVALID_TRAILER', 'framing or routing field in trailers');
          return FAILED;
        }
      } else if (
        (nameLen === 4 || nameLen === 7 || nameLen === 10 || nameLen === 14 || nameLen === 17) &&
        !this.noteField(buf, nStart, nameLen, vStart, vEnd)
      ) {
        return FAILED;
      }
    }
  }

  /**
   * Appends the recorded fields of the block decoded as `s` (`buf` from `base`) to `out`: lowercased names,
   * trimmed values. A common field name is the shared lowercase constant (no slice, no toLowerCase, and an
   * internalized string that later lookups compare by identity).
   */
  private buildFields(buf: Buffer, base: number, s: string, out: string[]): void {
    const offs = this.fieldOffs;
    const n = this.fieldCount << 2;
    for (let o = 0; o < n; o += 4) {
      const nEndFlags = offs[o + 1];
      const nStart = offs[o];
      const nEnd = nEndFlags & NAME_END_MASK;
      let name = internFieldName(buf, base + nStart, nEnd - nStart);
      if (name === undefined) {
        name = s.slice(nStart, nEnd);
        if ((nEndFlags & NAME_UPPER_BIT) !== 0) name = name.toLowerCase();
      }
      const vStart = offs[o + 2];
      const vEnd = offs[o + 3];
      out.push(name, vEnd === vStart ? '' : s.slice(vStart, vEnd));
    }
  }

  private fieldNameError(c: number, empty: boolean, isTrailer: boolean): void {
    if (empty && (c === SP || c === HTAB)) {
      // RFC 9112 §5.2: obs-fold is rejected by a server; a proxy must not forward it either.
      this.fail(400, 'H1_OBS_FOLD', 'obsolete line folding or whitespace before a field line');
    } else if (c === LF) {
      this.fail(400, 'H1_BARE_LF', 'LF not preceded by CR');
    } else if (c === SP || c === HTAB) {
      this.fail(400, 'H1_INVALID_HEADER_NAME', 'whitespace between field name and colon');
    } else {
      this.fail(400, 'H1_INVALID_HEADER_NAME', `invalid ${isTrailer ? 'trailer' : 'header'} field name`);
    }
  }

  /** Records a framing/routing field of a head. Returns false after reporting an error. */
  private noteField(buf: Buffer, nStart: number, nameLen: number, vStart: number, vEnd: number): boolean {
    if (nameLen === 4) {
      if (!equalsLowerAscii(buf, nStart, 'host')) return true;
      if (++this.hostCount > 1) {
        this.fail(400, 'H1_DUPLICATE_HOST', 'more than one Host header');
        return false;
      }
      for (let k = vStart; k < vEnd; k++) {
        if (HOST[buf[k]] !== 1) {
          this.fail(400, 'H1_INVALID_HOST', 'invalid byte in Host');
          return false;
        }
      }
    } else if (nameLen === 7) {
      if (equalsLowerAscii(buf, nStart, 'upgrade')) this.hasUpgradeHeader = true;
    } else if (nameLen === 10) {
      if (equalsLowerAscii(buf, nStart, 'connection')) this.connection |= connectionTokens(buf, vStart, vEnd);
    } else if (nameLen === 14) {
      if (equalsLowerAscii(buf, nStart, 'content-length')) return this.noteContentLength(buf, vStart, vEnd);
    } else if (equalsLowerAscii(buf, nStart, 'transfer-encoding')) {
      this.noteTransferEncoding(buf, vStart, vEnd);
    }
    return true;
  }

  /** RFC 9110 §8.6: Content-Length = 1*DIGIT. No sign, no whitespace, no list; a second one is an error. */
  private noteContentLength(buf: Buffer, vStart: number, vEnd: number): boolean {
    if (this.contentLength >= 0) {
      this.fail(400, 'H1_DUPLICATE_CONTENT_LENGTH', 'more than one Content-Length');
      return false;
    }
    const len = vEnd - vStart;
    let n = 0;
    let ok = len > 0 && len <= 16;
    for (let k = vStart; ok && k < vEnd; k++) {
      const d = buf[k] - 48;
      ok = isDigit(d);
      n = n * 10 + d;
    }
    if (!ok || n > MAX_SAFE) {
      this.fail(400, 'H1_INVALID_CONTENT_LENGTH', 'Content-Length must be digits only');
      return false;
    }
    this.contentLength = n;
    return true;
  }

  private noteTransferEncoding(buf: Buffer, vStart: number, vEnd: number): void {
    this.teCount++;
    if (this.kind === H1_KIND_REQUEST) {
      this.teChunked = vEnd - vStart === 7 && equalsLowerAscii(buf, vStart, 'chunked');
      return;
    }
    // Response: a list of codings; chunked must be the last one across all TE fields, and appear once.
    let k = vStart;
    while (k <= vEnd) {
      let e = k;
      while (e < vEnd && buf[e] !== COMMA) e++;
      let a = k;
      let b = e;
      while (a < b && isOws(buf[a])) a++;
      while (b > a && isOws(buf[b - 1])) b--;
      if (b > a) {
        if (this.teChunked) this.teInvalid = true; // a coding after chunked
        this.teChunked = b - a === 7 && equalsLowerAscii(buf, a, 'chunked');
      }
      k = e + 1;
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Chunked bodies (RFC 9112 §7.1)

  private readChunked(data: Buffer, pos: number, end: number): number {
    while (pos < end) {
      const state = this.state;
      if (state === S_CHUNK_DATA) {
        const avail = end - pos;
        const rem = this.remaining;
        const n = avail < rem ? avail : rem;
        this.remaining = rem - n;
        if (n === rem) this.state = S_CHUNK_DATA_CR;
        this.onBody(pos === 0 && n === end ? data : data.subarray(pos, pos + n));
        pos += n;
        if (this.paused) return pos;
      } else if (state === S_CHUNK_SIZE) {
        const b = data[pos];
        const v = HEX[b];
        if (v >= 0) {
          // Bound the size before it loses precision (2^53) and the digit count (leading zeros).
          if (++this.chunkDigits > 16 || this.chunkSize >= CHUNK_SIZE_OVERFLOW) {
            this.fail(400, 'H1_CHUNK_SIZE_OVERFLOW', 'chunk size too large');
            return pos;
          }
          this.chunkSize = this.chunkSize * 16 + v;
          pos++;
        } else if (this.chunkDigits === 0) {
          this.fail(400, 'H1_INVALID_CHUNK_SIZE', 'chunk size must start with a hex digit');
          return pos;
        } else if (b === CR) {
          this.state = S_CHUNK_SIZE_LF;
          pos++;
        } else if (b === SEMI) {
          this.state = S_CHUNK_EXT;
          this.extState = EXT_NAME_START;
          pos++;
          if (++this.extBytes > this.maxChunkExtBytes) {
            this.fail(413, 'H1_CHUNK_EXTENSION_TOO_LARGE', 'chunk extensions too large');
            return pos;
          }
        } else {
          // Includes whitespace after the size: llhttp treats it as lenient-only, we refuse it.
          this.fail(400, 'H1_INVALID_CHUNK_SIZE', 'invalid byte after chunk size');
          return pos;
        }
      } else if (state === S_CHUNK_EXT) {
        pos = this.readChunkExt(data, pos, end);
        if (this.state === S_DEAD) return pos;
      } else if (state === S_CHUNK_SIZE_LF) {
        if (data[pos] !== LF) {
          this.fail(400, 'H1_BARE_CR', 'CR not followed by LF after chunk size');
          return pos;
        }
        pos++;
        const size = this.chunkSize;
        this.chunkSize = 0;
        this.chunkDigits = 0;
        if (size === 0) {
          this.state = S_TRAILER_START;
        } else {
          this.remaining = size;
          this.state = S_CHUNK_DATA;
        }
      } else if (state === S_CHUNK_DATA_CR) {
        if (data[pos] !== CR) {
          this.fail(400, 'H1_INVALID_CHUNK_END', 'chunk data not followed by CRLF');
          return pos;
        }
        this.state = S_CHUNK_DATA_LF;
        pos++;
      } else if (state === S_CHUNK_DATA_LF) {
        if (data[pos] !== LF) {
          this.fail(400, 'H1_INVALID_CHUNK_END', 'chunk data not followed by CRLF');
          return pos;
        }
        this.state = S_CHUNK_SIZE;
        pos++;
      } else if (state === S_TRAILER_START) {
        if (data[pos] === CR) {
          this.state = S_TRAILER_START_LF;
          pos++;
        } else {
          this.state = S_TRAILERS; // a trailer section; execute() hands it to readBlock
          return pos;
        }
      } else if (state === S_TRAILER_START_LF) {
        if (data[pos] !== LF) {
          this.fail(400, 'H1_BARE_CR', 'CR not followed by LF after the last chunk');
          return pos;
        }
        pos++;
        this.completeMessage(null);
        return pos;
      } else {
        return pos;
      }
    }
    return pos;
  }

  /**
   * Validates chunk extensions (we never forward them, but a lax scanner here is where LF-in-extension
   * smuggling lives) and bounds their total size per message (chunk-extension flood, CVE-2024-22019).
   */
  private readChunkExt(data: Buffer, pos: number, end: number): number {
    let st = this.extState;
    const start = pos;
    const budget = this.maxChunkExtBytes - this.extBytes;
    for (; pos < end; pos++) {
      if (pos - start >= budget) {
        this.fail(413, 'H1_CHUNK_EXTENSION_TOO_LARGE', 'chunk extensions too large');
        return pos;
      }
      const b = data[pos];
      if (b === CR) {
        if (st === EXT_NAME_START || st === EXT_VALUE_START || st === EXT_QUOTED || st === EXT_QUOTED_ESCAPE) break;
        this.extBytes += pos - start;
        this.state = S_CHUNK_SIZE_LF;
        return pos + 1;
      }
      let ok: boolean;
      if (st === EXT_NAME_START) {
        ok = TOKEN[b] !== 0 || b === SP || b === HTAB;
        if (TOKEN[b] !== 0) st = EXT_NAME;
      } else if (st === EXT_NAME || st === EXT_VALUE_TOKEN) {
        ok = true;
        if (b === SEMI) st = EXT_NAME_START;
        else if (b === SP || b === HTAB) st = st === EXT_NAME ? EXT_AFTER_NAME : EXT_AFTER_VALUE;
        else if (b === EQUALS && st === EXT_NAME) st = EXT_VALUE_START;
        else ok = TOKEN[b] !== 0;
      } else if (st === EXT_AFTER_NAME || st === EXT_AFTER_VALUE) {
        ok = true;
        if (b === SEMI) st = EXT_NAME_START;
        else if (b === EQUALS && st === EXT_AFTER_NAME) st = EXT_VALUE_START;
        else ok = b === SP || b === HTAB;
      } else if (st === EXT_VALUE_START) {
        ok = true;
        if (b === DQUOTE) st = EXT_QUOTED;
        else if (TOKEN[b] !== 0) st = EXT_VALUE_TOKEN;
        else ok = b === SP || b === HTAB;
      } else if (st === EXT_QUOTED) {
        ok = true;
        if (b === DQUOTE) st = EXT_AFTER_VALUE;
        else if (b === BACKSLASH) st = EXT_QUOTED_ESCAPE;
        else ok = QDTEXT[b] === 1;
      } else {
        // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
        ok = FIELD_VALUE[b] === 1;
        st = EXT_QUOTED;
      }
      if (!ok) break;
    }
    if (pos < end) {
      const b = data[pos];
      if (b === LF) this.fail(400, 'H1_BARE_LF', 'LF not preceded by CR in chunk extension');
      else this.fail(400, 'H1_INVALID_CHUNK_EXTENSION', 'malformed chunk extension');
      return pos;
    }
    this.extBytes += pos - start;
    this.extState = st;
    return pos;
  }

  // ---------------------------------------------------------------------------------------------------------

  private completeMessage(trailers: string[] | null): void {
    this.state = S_HEAD;
    this.onMessageComplete(trailers);
  }

  private fail(status: 400 | 413 | 431 | 501 | 505, code: H1ErrorCode, message: string): void {
    this.state = S_DEAD;
    this.blockLen = 0;
    this.onError(new H1ParseError(status, code, message));
  }
}

function isDigit(d: number): boolean {
  return d >= 0 && d <= 9;
}

function isOws(c: number): boolean {
  return c === SP || c === HTAB;
}

/**
 * `buf[at, at + lit.length)` equals `lit` ignoring ASCII case; `lit` is lowercase letters and `-` only, and
 * the bytes are field bytes (no CR): then `b | 0x20` equals a letter only for that letter in either case,
 * and equals `-` only for `-` (CR, 0x0D, is the other byte that maps to it).
 */
function equalsLowerAscii(buf: Buffer, at: number, lit: string): boolean {
  for (let k = 0; k < lit.length; k++) {
    if ((buf[at + k] | 0x20) !== lit.charCodeAt(k)) return false;
  }
  return true;
}

/** Connection = #connection-option (RFC 9110 §7.6.1); returns CONN_* bits for the options we act on. */
function connectionTokens(buf: Buffer, vStart: number, vEnd: number): number {
  let flags = 0;
  let k = vStart;
  while (k <= vEnd) {
    let e = k;
    while (e < vEnd && buf[e] !== COMMA) e++;
    let a = k;
    let b = e;
    while (a < b && isOws(buf[a])) a++;
    while (b > a && isOws(buf[b - 1])) b--;
    const n = b - a;
    if (n === 5 && equalsLowerAscii(buf, a, 'close')) flags |= CONN_CLOSE;
    else if (n === 10 && equalsLowerAscii(buf, a, 'keep-alive')) flags |= CONN_KEEP_ALIVE;
    else if (n === 7 && equalsLowerAscii(buf, a, 'upgrade')) flags |= CONN_UPGRADE;
    k = e + 1;
  }
  return flags;
}

/**
 * Common field names by length (lowercase letters and `-` only, as equalsLowerAscii needs). Interning them
 * saves a slice and a toLowerCase per field, and gives the router internalized strings to compare.
 */
const FIELD_NAMES: readonly (readonly string[])[] = (() => {
  const names = [
    'te', 'via', 'age', 'host', 'date', 'etag', 'vary', 'from', 'link', 'accept', 'cookie', 'expect', 'origin', 'pragma',
    'server', 'expires', 'referer', 'trailer', 'upgrade', 'location', 'if-match', 'connection', 'keep-alive',
    'set-cookie', 'user-agent', 'content-type', 'grpc-status', 'x-request-id', 'grpc-timeout', 'grpc-message', 'accept-ranges',
    'authorization', 'cache-control', 'last-modified', 'if-none-match', 'content-length', 'accept-encoding', 'accept-language',
    'x-forwarded-for', 'content-encoding', 'proxy-connection', 'x-forwarded-proto', 'if-modified-since', 'transfer-encoding',
    'x-forwarded-client-cert', 'x-envoy-upstream-service-time', 'x-envoy-expected-rq-timeout-ms',
  ];
  const byLen: string[][] = [];
  for (let i = 0; i <= 32; i++) byLen.push([]);
  for (const n of names) byLen[n.length]!.push(n);
  return byLen;
})();

/** The shared constant for a common field name at `buf[at, at + len)` in any case, else undefined. */
function internFieldName(buf: Buffer, at: number, len: number): string | undefined {
  if (len > 32) return undefined;
  const cands = FIELD_NAMES[len]!;
  for (let k = 0; k < cands.length; k++) {
    const c = cands[k]!;
    if (equalsLowerAscii(buf, at, c)) return c;
  }
  return undefined;
}

const METHODS = ['GET', 'PUT', 'POST', 'HEAD', 'PATCH', 'TRACE', 'DELETE', 'OPTIONS', 'CONNECT'] as const;

/** Returns the shared constant for a common method (no allocation, identity-comparable), else undefined. */
function internMethod(buf: Buffer, start: number, end: number): string | undefined {
  const len = end - start;
  for (let k = 0; k < METHODS.length; k++) {
    const m = METHODS[k];
    if (m.length !== len) continue;
    let j = 0;
    while (j < len && buf[start + j] === m.charCodeAt(j)) j++;
    if (j === len) return m;
  }
  return undefined;
}
