/**
 * Envoy's `envoy.filters.listener.tls_inspector`: looks at the first bytes peeked from a new connection,
 * decides whether they start a TLS ClientHello, and reads the SNI and ALPN offered, without consuming
 * anything. The listener feeds the result to filter-chain matching as `transport_protocol: tls`,
 * `server_names` and `application_protocols`.
 *
 * Wire formats: TLS record layer (RFC 8446 §5.1, RFC 5246 §6.2), ClientHello (RFC 8446 §4.1.2), server_name
 * (RFC 6066 §3) and application_layer_protocol_negotiation (RFC 7301 §3.1). Every length is bounds-checked:
 * garbage gives 'not-tls', never an exception.
 */

/** What the inspector found in the bytes seen so far. */
export type TlsInspection =
  | { readonly state: 'need-more' }
  | { readonly state: 'not-tls' }
  | {
      readonly state: 'tls';
      /** SNI host_name, lowercased; undefined if the client sent none (or the hello was too large). */
      readonly serverName: string | undefined;
      /** ALPN protocol names in the client's preference order; empty if none were offered. */
      readonly alpn: string[];
      readonly ja3?: never;
    };

/**
 * Largest ClientHello, counted in raw bytes from the start of the connection (record headers included),
 * that the inspector waits for. Envoy's tls_inspector bounds its peek buffer the same way
 * (`max_client_hello_size`); past it the connection is still TLS, but without SNI/ALPN.
 */
export const MAX_CLIENT_HELLO_BYTES = 16 * 1024;

const NEED_MORE: TlsInspection = Object.freeze({ state: 'need-more' });
const NOT_TLS: TlsInspection = Object.freeze({ state: 'not-tls' });

const CONTENT_TYPE_HANDSHAKE = 22;
const HANDSHAKE_CLIENT_HELLO = 1;
const RECORD_HEADER_BYTES = 5;
const HANDSHAKE_HEADER_BYTES = 4;
/** RFC 8446 §5.1: TLSPlaintext.length MUST NOT exceed 2^14. */
const MAX_RECORD_BODY_BYTES = 1 << 14;
/** legacy_version(2) + random(32) + session_id(1) + cipher_suites(2+2) + compression_methods(1+1). */
const MIN_CLIENT_HELLO_BODY_BYTES = 41;
const EXT_SERVER_NAME = 0;
const EXT_ALPN = 16;
const SNI_HOST_NAME = 0;
/** RFC 6066 §3 / BoringSSL's TLSEXT_MAXLEN_host_name. */
const MAX_HOST_NAME_BYTES = 255;

/** Result of checking a record header: its body length, or one of these negative markers. */
const HEADER_INCOMPLETE = -1;
const HEADER_BAD = -2;

/**
 * Inspects `buf`, the bytes peeked so far (always from the start of the connection). Call again with
 * more bytes while it answers 'need-more'; it never asks for more than `maxClientHelloBytes` in total.
 * Pure and allocation-light: the 'need-more' and 'not-tls' answers are shared frozen objects.
 */
export function inspectTls(buf: Buffer, maxClientHelloBytes: number = MAX_CLIENT_HELLO_BYTES): TlsInspection {
  const n = buf.length;
  // Walk handshake records, gathering the ClientHello, which may be fragmented across several
  // (RFC 8446 §5.1). Segments of record bodies are tracked only once a second record shows up.
  let pos = 0;
  let have = 0; // handshake bytes seen so far
  let need = -1; // handshake bytes in the ClientHello (header + body), once its header is seen
  let starts: number[] | undefined;
  let lens: number[] | undefined;
  for (let rec = 0; ; rec++) {
    const recLen = checkRecordHeader(buf, pos, rec === 0);
    if (recLen === HEADER_BAD) return NOT_TLS;
    if (recLen === HEADER_INCOMPLETE) return pos + RECORD_HEADER_BYTES > maxClientHelloBytes ? tooLarge() : NEED_MORE;
    const bodyStart = pos + RECORD_HEADER_BYTES;
    const avail = Math.min(recLen, n - bodyStart);
    if (rec === 1) {
      starts = [RECORD_HEADER_BYTES];
      lens = [have];
    }
    if (starts && lens) {
      starts.push(bodyStart);
      lens.push(avail);
    }
    const haveBefore = have;
    have += avail;
    if (have > 0 && byteAt(buf, 0, starts, lens) !== HANDSHAKE_CLIENT_HELLO) return NOT_TLS;
    if (need < 0 && have >= HANDSHAKE_HEADER_BYTES) {
      const bodyLen =
        (byteAt(buf, 1, starts, lens) << 16) | (byteAt(buf, 2, starts, lens) << 8) | byteAt(buf, 3, starts, lens);
      if (bodyLen < MIN_CLIENT_HELLO_BODY_BYTES) return NOT_TLS;
      need = HANDSHAKE_HEADER_BYTES + bodyLen;
      if (need + RECORD_HEADER_BYTES > maxClientHelloBytes) return tooLarge();
    }
    if (need >= 0 && need - haveBefore <= recLen) {
      // The hello ends inside this record, at raw offset bodyStart + (need - haveBefore).
      if (bodyStart + need - haveBefore > maxClientHelloBytes) return tooLarge();
      if (have < need) return NEED_MORE;
      return parseClientHello(assemble(buf, need, starts, lens));
    }
    if (avail < recLen) return NEED_MORE;
    pos = bodyStart + recLen;
    if (pos + RECORD_HEADER_BYTES >= maxClientHelloBytes) return tooLarge();
  }
}

/** Byte `k` of the handshake stream: directly after the first header, or found through the segments. */
function byteAt(buf: Buffer, k: number, starts: number[] | undefined, lens: number[] | undefined): number {
  if (!starts || !lens) return buf[RECORD_HEADER_BYTES + k];
  for (let i = 0; i < starts.length; i++) {
    if (k < lens[i]) return buf[starts[i] + k];
    k -= lens[i];
  }
  return -1;
}

/** The first `need` handshake bytes as one Buffer: a view for one record, a copy across several. */
function assemble(buf: Buffer, need: number, starts: number[] | undefined, lens: number[] | undefined): Buffer {
  if (!starts || !lens) return buf.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + need);
  const parts: Buffer[] = [];
  for (let i = 0; i < starts.length; i++) parts.push(buf.subarray(starts[i], starts[i] + lens[i]));
  return Buffer.concat(parts, need);
}

function tooLarge(): TlsInspection {
  return { state: 'tls', serverName: undefined, alpn: [] };
}

/**
 * Checks a TLS record header at `pos`: content type handshake, legacy_record_version 3.1–3.4 on the
 * first record (RFC 8446 §5.1 allows 0x0301 for the initial ClientHello), any 3.x after it, and a
 * non-empty body of at most 2^14 bytes (§5.1: zero-length handshake fragments MUST NOT be sent). Partial
 * headers are checked as far as they go so that non-TLS traffic is rejected from its first byte.
 */
function checkRecordHeader(buf: Buffer, pos: number, isFirst: boolean): number {
  const n = buf.length - pos;
  if (n <= 0) return HEADER_INCOMPLETE;
  if (buf[pos] !== CONTENT_TYPE_HANDSHAKE) return HEADER_BAD;
  if (n < 2) return HEADER_INCOMPLETE;
  if (buf[pos + 1] !== 3) return HEADER_BAD;
  if (n < 3) return HEADER_INCOMPLETE;
  const minor = buf[pos + 2];
  if (isFirst ? minor < 1 || minor > 4 : minor > 4) return HEADER_BAD;
  if (n < RECORD_HEADER_BYTES) return HEADER_INCOMPLETE;
  const len = (buf[pos + 3] << 8) | buf[pos + 4];
  if (len === 0 || len > MAX_RECORD_BODY_BYTES) return HEADER_BAD;
  return len;
}

/** Parses a complete ClientHello handshake message (header included). */
function parseClientHello(h: Buffer): TlsInspection {
  const end = h.length;
  let p = HANDSHAKE_HEADER_BYTES;
  // legacy_version: always 3.x (RFC 8446 §4.1.2 fixes it at 0x0303; older clients send 3.1–3.3).
  if (h[p] !== 3) return NOT_TLS;
  p += 2 + 32; // legacy_version, random
  const sessionIdLen = h[p];
  if (sessionIdLen > 32) return NOT_TLS;
  p += 1 + sessionIdLen;
  if (p + 2 > end) return NOT_TLS;
  const cipherLen = (h[p] << 8) | h[p + 1];
  if (cipherLen < 2 || (cipherLen & 1) !== 0) return NOT_TLS;
  p += 2 + cipherLen;
  if (p + 1 > end) return NOT_TLS;
  const compressionLen = h[p];
  if (compressionLen < 1) return NOT_TLS;
  p += 1 + compressionLen;
  if (p > end) return NOT_TLS;
  let serverName: string | undefined;
  let alpn: string[] = [];
  if (p === end) return { state: 'tls', serverName, alpn }; // no extensions block at all (pre-TLS 1.2 clients)
  if (p + 2 > end) return NOT_TLS;
  const extLen = (h[p] << 8) | h[p + 1];
  p += 2;
  // RFC 8446 §4.1.2: the extensions fill the rest of the message; trailing bytes are a decode_error.
  if (p + extLen !== end) return NOT_TLS;
  let seenSni = false;
  let seenAlpn = false;
  while (p < end) {
    if (p + 4 > end) return NOT_TLS;
    const type = (h[p] << 8) | h[p + 1];
    const len = (h[p + 2] << 8) | h[p + 3];
    p += 4;
    if (p + len > end) return NOT_TLS;
    if (type === EXT_SERVER_NAME) {
      // RFC 8446 §4.2: an extension type appears at most once.
      if (seenSni) return NOT_TLS;
      seenSni = true;
      const sni = parseServerName(h, p, p + len);
      if (sni === null) return NOT_TLS;
      serverName = sni;
    } else if (type === EXT_ALPN) {
      if (seenAlpn) return NOT_TLS;
      seenAlpn = true;
      const list = parseAlpn(h, p, p + len);
      if (list === null) return NOT_TLS;
      alpn = list;
    }
    p += len;
  }
  return { state: 'tls', serverName, alpn };
}

/** server_name extension body → lowercased host_name, undefined if none of type host_name, null if malformed. */
function parseServerName(h: Buffer, start: number, end: number): string | undefined | null {
  if (start + 2 > end) return null;
  const listLen = (h[start] << 8) | h[start + 1];
  let p = start + 2;
  if (p + listLen !== end || listLen === 0) return null;
  let name: string | undefined;
  while (p < end) {
    if (p + 3 > end) return null;
    const nameType = h[p];
    const len = (h[p + 1] << 8) | h[p + 2];
    p += 3;
    if (p + len > end) return null;
    if (nameType === SNI_HOST_NAME) {
      // RFC 6066 §3: at most one name per type; HostName is non-empty ASCII without a NUL.
      if (name !== undefined || len === 0 || len > MAX_HOST_NAME_BYTES) return null;
      for (let i = p; i < p + len; i++) if (h[i] === 0 || h[i] > 0x7e) return null;
      // DNS names are case-insensitive (RFC 4343); Envoy lowercases SNI before matching server_names.
      name = h.toString('latin1', p, p + len).toLowerCase();
    }
    p += len;
  }
  return name;
}

/** ALPN extension body → protocol names, null if malformed (RFC 7301 §3.1: names are 1..255 bytes). */
function parseAlpn(h: Buffer, start: number, end: number): string[] | null {
  if (start + 2 > end) return null;
  const listLen = (h[start] << 8) | h[start + 1];
  let p = start + 2;
  if (p + listLen !== end || listLen < 2) return null;
  const out: string[] = [];
  while (p < end) {
    const len = h[p];
    p += 1;
    if (len === 0 || p + len > end) return null;
    out.push(h.toString('latin1', p, p + len));
    p += len;
  }
  return out;
}
