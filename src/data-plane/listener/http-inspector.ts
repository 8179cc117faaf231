/**
 * Envoy's `envoy.filters.listener.http_inspector`: sniffs the first bytes of a plaintext connection and
 * reports the HTTP version, which the listener passes to filter-chain matching as the connection's
 * `application_protocols` (`h2c`, `http/1.1`, `http/1.0`, the values Envoy's inspector sets).
 *
 * HTTP/2 prior knowledge is the client connection preface (RFC 9113 §3.4); HTTP/1.x is a request line
 * `method SP request-target SP HTTP-version CRLF` (RFC 9112 §3). Nothing is consumed.
 */

/** The inspector's answer for the bytes seen so far. */
export type HttpInspection = 'need-more' | 'h2c' | 'http/1.1' | 'http/1.0' | 'unknown';

/** Longest first line waited for, as Envoy's inspector bounds its peek; longer is 'unknown'. */
export const MAX_REQUEST_LINE_BYTES = 8 * 1024;

/** RFC 9113 §3.4: the HTTP/2 client connection preface. */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/**
 * Methods recognised on a request line: RFC 9110 §9, PATCH (RFC 5789) and the WebDAV/UPnP/other methods
 * that Envoy's HTTP/1 parser accepts. Methods are case-sensitive (RFC 9110 §9.1).
 */
const METHODS: readonly Buffer[] = [
  'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH',
  'COPY', 'LOCK', 'MKCOL', 'MOVE', 'PROPFIND', 'PROPPATCH', 'SEARCH', 'UNLOCK', 'BIND', 'REBIND', 'UNBIND',
  'ACL', 'REPORT', 'MKACTIVITY', 'CHECKOUT', 'MERGE', 'M-SEARCH', 'NOTIFY', 'SUBSCRIBE', 'UNSUBSCRIBE',
  'PURGE', 'MKCALENDAR', 'LINK', 'UNLINK', 'SOURCE', 'QUERY',
].map((m) => Buffer.from(m, 'latin1'));

const MAX_METHOD_BYTES = Math.max(...METHODS.map((m) => m.length));
const VERSION_PREFIX = Buffer.from('HTTP/1.', 'latin1');
const SP = 0x20;
const CR = 0x0d;
const LF = 0x0a;

/**
 * Classifies `buf`, the bytes peeked so far from the start of a connection. Answers 'need-more' only
 * while the bytes are still a possible prefix of an h2 preface or an HTTP/1.x request line, so other
 * protocols are told apart from their first bytes. Pure; allocates nothing.
 */
export function inspectHttp(buf: Buffer): HttpInspection {
  const n = buf.length;
  if (n === 0) return 'need-more';
  const m = n < H2_PREFACE.length ? n : H2_PREFACE.length;
  if (buf.compare(H2_PREFACE, 0, m, 0, m) === 0) return n >= H2_PREFACE.length ? 'h2c' : 'need-more';

  // method
  let i = 0;
  while (i < n && buf[i] !== SP) {
    if (i >= MAX_METHOD_BYTES) return 'unknown';
    i++;
  }
  if (i === n) return isMethodPrefix(buf, n) ? 'need-more' : 'unknown';
  if (!isMethod(buf, i)) return 'unknown';

  // request-target: visible characters up to the next SP (RFC 9112 §3.2; no CR/LF, so HTTP/0.9-style
  // request lines without a version are not HTTP/1.x).
  const targetStart = i + 1;
  let j = targetStart;
  while (j < n && buf[j] !== SP) {
    const c = buf[j];
    if (c <= 0x20 || c === 0x7f) return 'unknown';
    if (j >= MAX_REQUEST_LINE_BYTES) return 'unknown';
    j++;
  }
  if (j === n) return n >= MAX_REQUEST_LINE_BYTES ? 'unknown' : 'need-more';
  if (j === targetStart) return 'unknown';

  // HTTP-version "HTTP/1.0" or "HTTP/1.1", then CRLF (RFC 9112 §2.2 lets a recipient accept a bare LF).
  let k = j + 1;
  for (let v = 0; v < VERSION_PREFIX.length; v++, k++) {
    if (k >= n) return 'need-more';
    if (buf[k] !== VERSION_PREFIX[v]) return 'unknown';
  }
  if (k >= n) return 'need-more';
  const minor = buf[k];
  if (minor !== 0x30 && minor !== 0x31) return 'unknown';
  k++;
  if (k >= n) return 'need-more';
  if (buf[k] === CR) {
    k++;
    if (k >= n) return 'need-more';
  }
  if (buf[k] !== LF) return 'unknown';
  return minor === 0x31 ? 'http/1.1' : 'http/1.0';
}

function isMethod(buf: Buffer, len: number): boolean {
  for (const m of METHODS) if (m.length === len && buf.compare(m, 0, len, 0, len) === 0) return true;
  return false;
}

function isMethodPrefix(buf: Buffer, len: number): boolean {
  for (const m of METHODS) if (m.length >= len && buf.compare(m, 0, len, 0, len) === 0) return true;
  return false;
}
