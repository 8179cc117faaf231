/**
 * IP addresses and Envoy `config.core.v3.CidrRange`s as bytes, for filter-chain matching and certificate
 * IP SAN checks. Addresses are 4 bytes (IPv4) or 16 bytes (IPv6); IPv4-mapped IPv6 addresses
 * (`::ffff:a.b.c.d`, what a dual-stack Node server reports for IPv4 peers) are folded to their 4-byte IPv4
 * form so that a `10.0.0.0/8` range matches them.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** A CIDR range with its address already masked to the prefix (`10.1.2.3/8` is kept as `10.0.0.0/8`). */
export interface CidrRange {
  /** Network address, 4 or 16 bytes, host bits zero. */
  readonly bytes: Uint8Array;
  /** Prefix length in bits, 0..32 (IPv4) or 0..128 (IPv6). */
  readonly prefixLen: number;
}

/**
 * Parses an IPv4 or IPv6 address (an IPv6 zone suffix `%eth0` is ignored). IPv4-mapped IPv6 addresses
 * come back as 4 bytes. Returns undefined if `s` is not an IP address. Allocates one small array.
 */
export function parseIp(s: string): Uint8Array | undefined {
  if (isIPv4(s)) return parseIpv4(s);
  if (!isIPv6(s)) return undefined;
  const zone = s.indexOf('%');
  const text = zone >= 0 ? s.slice(0, zone) : s;
  const v6 = parseIpv6(text);
  if (v6 === undefined) return undefined;
  return isV4Mapped(v6) ? v6.slice(12) : v6;
}

function parseIpv4(s: string): Uint8Array {
  const out = new Uint8Array(4);
  let part = 0;
  let value = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x2e) {
      out[part++] = value;
      value = 0;
    } else {
      value = value * 10 + (c - 0x30);
    }
  }
  out[part] = value;
  return out;
}

/** `text` has already passed net.isIPv6, so only the layout needs handling, not validation. */
function parseIpv6(text: string): Uint8Array | undefined {
  const out = new Uint8Array(16);
  const gap = text.indexOf('::');
  const head = gap >= 0 ? text.slice(0, gap) : text;
  const tail = gap >= 0 ? text.slice(gap + 2) : '';
  const headWords = head === '' ? [] : head.split(':');
  const tailWords = tail === '' ? [] : tail.split(':');
  const words: number[] = [];
  const pushGroup = (groups: string[]): boolean => {
    for (const g of groups) {
      if (g.includes('.')) {
        // RFC 4291 §2.2 form 3: the last 32 bits may be written as dotted IPv4.
        if (!isIPv4(g)) return false;
        const v4 = parseIpv4(g);
        words.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else {
        words.push(parseInt(g, 16));
      }
    }
    return true;
  };
  if (!pushGroup(headWords)) return undefined;
  const headCount = words.length;
  if (!pushGroup(tailWords)) return undefined;
  const tailCount = words.length - headCount;
  if (gap < 0 && words.length !== 8) return undefined;
  for (let i = 0; i < headCount; i++) {
    out[i * 2] = words[i] >> 8;
    out[i * 2 + 1] = words[i] & 0xff;
  }
  const tailStart = 8 - tailCount;
  for (let i = 0; i < tailCount; i++) {
    out[(tailStart + i) * 2] = words[headCount + i] >> 8;
    out[(tailStart + i) * 2 + 1] = words[headCount + i] & 0xff;
  }
  return out;
}

function isV4Mapped(b: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return false;
  return b[10] === 0xff && b[11] === 0xff;
}

/**
 * Canonical text of an address: dotted IPv4, or RFC 5952 IPv6 (lowercase, longest run of two or more zero
 * groups shown as `::`). This is the form Envoy gives IP SANs and addresses in, so string matchers see it.
 */
export function formatIp(b: Uint8Array): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((b[i] << 8) | b[i + 1]);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  // RFC 5952 §4.2.2: a single zero group is not shortened to "::".
  if (bestLen < 2) return words.map((w) => w.toString(16)).join(':');
  const left = words.slice(0, bestStart).map((w) => w.toString(16)).join(':');
  const right = words.slice(bestStart + bestLen).map((w) => w.toString(16)).join(':');
  return `${left}::${right}`;
}

/**
 * Builds a CidrRange from Envoy's `address_prefix` and `prefix_len` (unset means 0, per address.proto).
 * An IPv4-mapped IPv6 prefix of length >= 96 becomes the equivalent IPv4 range. Returns an error message
 * string for a malformed address or a prefix longer than the address.
 */
export function parseCidrRange(addressPrefix: string, prefixLen: number): CidrRange | string {
  if (isIPv6(addressPrefix)) {
    const v6 = parseIpv6(addressPrefix);
    if (v6 === undefined) return `"${addressPrefix}" is not an IP address`;
    if (prefixLen > 128) return `prefix_len ${prefixLen} is longer than an IPv6 address`;
    if (isV4Mapped(v6) && prefixLen >= 96) return { bytes: maskBytes(v6.slice(12), prefixLen - 96), prefixLen: prefixLen - 96 };
    return { bytes: maskBytes(v6, prefixLen), prefixLen };
  }
  if (!isIPv4(addressPrefix)) return `"${addressPrefix}" is not an IP address`;
  if (prefixLen > 32) return `prefix_len ${prefixLen} is longer than an IPv4 address`;
  return { bytes: maskBytes(parseIpv4(addressPrefix), prefixLen), prefixLen };
}

function maskBytes(b: Uint8Array, prefixLen: number): Uint8Array {
  for (let i = 0; i < b.length; i++) {
    const bits = prefixLen - i * 8;
    if (bits >= 8) continue;
    b[i] = bits <= 0 ? 0 : b[i] & (0xff << (8 - bits));
  }
  return b;
}

/** True if `ip` (from parseIp) is inside `range`. Addresses of the other family never match. */
export function cidrContains(range: CidrRange, ip: Uint8Array): boolean {
  const net = range.bytes;
  if (net.length !== ip.length) return false;
  const full = range.prefixLen >> 3;
  for (let i = 0; i < full; i++) if (net[i] !== ip[i]) return false;
  const rest = range.prefixLen & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (ip[full] & mask) === net[full];
}

/** Canonical `address/len` text of a range: equal ranges (after masking) have equal keys. */
export function cidrKey(range: CidrRange): string {
  return `${formatIp(range.bytes)}/${range.prefixLen}`;
}

/** True for 127.0.0.0/8 and ::1 (RFC 1122 §3.2.1.3, RFC 4291 §2.5.3). */
export function isLoopback(ip: Uint8Array): boolean {
  if (ip.length === 4) return ip[0] === 127;
  for (let i = 0; i < 15; i++) if (ip[i] !== 0) return false;
  return ip[15] === 1;
}

/** Byte-wise equality of two parsed addresses. */
export function ipEquals(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
