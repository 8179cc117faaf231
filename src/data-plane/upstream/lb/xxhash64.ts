/**
 * XXH64 (https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md), the hash Envoy uses for ring hash
 * and Maglev host keys (`HashUtil::xxHash64`) and for route `hash_policy` values, so a request keyed the same
 * way lands on the same host as it would behind Envoy.
 *
 * Exports:
 * - `xxhash64(data: string | Uint8Array, seed?: bigint): bigint` — strings are hashed as their UTF-8 bytes.
 * - `xxhash64Values(values: readonly string[]): bigint` — Envoy's hash of a list (each value seeds the next).
 * - `combineHashes(hashes: readonly bigint[]): bigint` — Envoy's `HashPolicyImpl::generateHash` combination.
 * - `hashKeysToHash(keys: readonly string[]): bigint` — xxhash64 each key, then combineHashes.
 * - `xxhash64ToRegister(data, seedHi?, seedLo?): void` — the hash as uint32 halves in u64.ts's register.
 *
 * The arithmetic runs on 32-bit halves (see u64.ts): no allocation until the final BigInt.
 */
import { add64, mul64, rotl64, shr64, toBigInt, splitBigInt, u64 } from './u64.ts';

// The five 64-bit primes of the spec, as (hi, lo) halves.
const P1H = 0x9e3779b1, P1L = 0x85ebca87;
const P2H = 0xc2b2ae3d, P2L = 0x27d4eb4f;
const P3H = 0x165667b1, P3L = 0x9e3779f9;
const P4H = 0x85ebca77, P4L = 0xc2b2ae63;
const P5H = 0x27d4eb2f, P5L = 0x165667c5;
// -P1 mod 2^64, for the fourth accumulator's initial value (seed - PRIME64_1).
const NP1H = ~P1H >>> 0, NP1L = (~P1L + 1) >>> 0;

// Strings are encoded into this scratch buffer rather than a fresh Buffer per call. It grows up to
// SCRATCH_MAX_BYTES; a longer input (rare: header values are bounded far below) gets a one-off buffer.
const SCRATCH_MAX_BYTES = 64 * 1024;
let scratch = new Uint8Array(256);

/** UTF-8 encode `s` (lone surrogates become U+FFFD, as TextEncoder does) into `out`, which must hold 3 bytes per UTF-16 unit. */
function encodeUtf8(s: string, out: Uint8Array): number {
  let n = 0;
  const len = s.length;
  for (let i = 0; i < len; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      out[n++] = c;
    } else if (c < 0x800) {
      out[n++] = 0xc0 | (c >>> 6);
      out[n++] = 0x80 | (c & 0x3f);
    } else {
      if (c >= 0xd800 && c <= 0xdfff) {
        const next = i + 1 < len ? s.charCodeAt(i + 1) : 0;
        if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
          i++;
          out[n++] = 0xf0 | (c >>> 18);
          out[n++] = 0x80 | ((c >>> 12) & 0x3f);
          out[n++] = 0x80 | ((c >>> 6) & 0x3f);
          out[n++] = 0x80 | (c & 0x3f);
          continue;
        }
        c = 0xfffd;
      }
      out[n++] = 0xe0 | (c >>> 12);
      out[n++] = 0x80 | ((c >>> 6) & 0x3f);
      out[n++] = 0x80 | (c & 0x3f);
    }
  }
  return n;
}

function read32(b: Uint8Array, i: number): number {
  return (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0;
}

/** XXH64 round: `rotl(acc + input * P2, 31) * P1` into u64. */
function round(accH: number, accL: number, inH: number, inL: number): void {
  mul64(inH, inL, P2H, P2L);
  add64(accH, accL, u64[0], u64[1]);
  rotl64(u64[0], u64[1], 31);
  mul64(u64[0], u64[1], P1H, P1L);
}

/** XXH64 merge round: `(acc ^ round(0, val)) * P1 + P4` into u64. */
function mergeRound(accH: number, accL: number, valH: number, valL: number): void {
  round(0, 0, valH, valL);
  mul64((accH ^ u64[0]) >>> 0, (accL ^ u64[1]) >>> 0, P1H, P1L);
  add64(u64[0], u64[1], P4H, P4L);
}

/** XXH64 of `b[0, len)` with seed `(sH:sL)`; the result is left in u64. */
function xxh64Into(b: Uint8Array, len: number, sH: number, sL: number): void {
  let p = 0;
  let hH: number, hL: number;
  if (len >= 32) {
    add64(sH, sL, P1H, P1L);
    add64(u64[0], u64[1], P2H, P2L);
    let v1H = u64[0], v1L = u64[1];
    add64(sH, sL, P2H, P2L);
    let v2H = u64[0], v2L = u64[1];
    let v3H = sH, v3L = sL;
    add64(sH, sL, NP1H, NP1L);
    let v4H = u64[0], v4L = u64[1];
    const limit = len - 32;
    do {
      round(v1H, v1L, read32(b, p + 4), read32(b, p)); v1H = u64[0]; v1L = u64[1];
      round(v2H, v2L, read32(b, p + 12), read32(b, p + 8)); v2H = u64[0]; v2L = u64[1];
      round(v3H, v3L, read32(b, p + 20), read32(b, p + 16)); v3H = u64[0]; v3L = u64[1];
      round(v4H, v4L, read32(b, p + 28), read32(b, p + 24)); v4H = u64[0]; v4L = u64[1];
      p += 32;
    } while (p <= limit);
    rotl64(v1H, v1L, 1); hH = u64[0]; hL = u64[1];
    rotl64(v2H, v2L, 7); add64(hH, hL, u64[0], u64[1]); hH = u64[0]; hL = u64[1];
    rotl64(v3H, v3L, 12); add64(hH, hL, u64[0], u64[1]); hH = u64[0]; hL = u64[1];
    rotl64(v4H, v4L, 18); add64(hH, hL, u64[0], u64[1]); hH = u64[0]; hL = u64[1];
    mergeRound(hH, hL, v1H, v1L); hH = u64[0]; hL = u64[1];
    mergeRound(hH, hL, v2H, v2L); hH = u64[0]; hL = u64[1];
    mergeRound(hH, hL, v3H, v3L); hH = u64[0]; hL = u64[1];
    mergeRound(hH, hL, v4H, v4L); hH = u64[0]; hL = u64[1];
  } else {
    add64(sH, sL, P5H, P5L); hH = u64[0]; hL = u64[1];
  }
  // The length is added as a uint64; inputs here are far below 2^32 bytes.
  add64(hH, hL, 0, len >>> 0); hH = u64[0]; hL = u64[1];

  while (p + 8 <= len) {
    round(0, 0, read32(b, p + 4), read32(b, p));
    rotl64((hH ^ u64[0]) >>> 0, (hL ^ u64[1]) >>> 0, 27);
    mul64(u64[0], u64[1], P1H, P1L);
    add64(u64[0], u64[1], P4H, P4L); hH = u64[0]; hL = u64[1];
    p += 8;
  }
  if (p + 4 <= len) {
    mul64(0, read32(b, p), P1H, P1L);
    rotl64((hH ^ u64[0]) >>> 0, (hL ^ u64[1]) >>> 0, 23);
    mul64(u64[0], u64[1], P2H, P2L);
    add64(u64[0], u64[1], P3H, P3L); hH = u64[0]; hL = u64[1];
    p += 4;
  }
  while (p < len) {
    mul64(0, b[p], P5H, P5L);
    rotl64((hH ^ u64[0]) >>> 0, (hL ^ u64[1]) >>> 0, 11);
    mul64(u64[0], u64[1], P1H, P1L); hH = u64[0]; hL = u64[1];
    p++;
  }

  // Avalanche.
  hL = (hL ^ (hH >>> 1)) >>> 0; // h ^= h >> 33: only (hi >>> 1) lands in the low word.
  mul64(hH, hL, P2H, P2L); hH = u64[0]; hL = u64[1];
  shr64(hH, hL, 29);
  mul64((hH ^ u64[0]) >>> 0, (hL ^ u64[1]) >>> 0, P3H, P3L); hH = u64[0]; hL = u64[1];
  u64[0] = hH;
  u64[1] = (hL ^ hH) >>> 0; // h ^= h >> 32
}

/** Hash `data` with seed `(sH:sL)` into u64. */
function hashInto(data: string | Uint8Array, sH: number, sL: number): void {
  if (typeof data !== 'string') {
    xxh64Into(data, data.length, sH, sL);
    return;
  }
  const maxBytes = data.length * 3;
  let buf = scratch;
  if (maxBytes > buf.length) {
    if (maxBytes > SCRATCH_MAX_BYTES) buf = new Uint8Array(maxBytes);
    else buf = scratch = new Uint8Array(Math.max(maxBytes, buf.length * 2));
  }
  xxh64Into(buf, encodeUtf8(data, buf), sH, sL);
}

/**
 * XXH64 of `data` with seed `(seedHi:seedLo)`, left in the {@link u64} register instead of returned as a
 * BigInt: for building tables of many hashes without allocating one BigInt each.
 */
export function xxhash64ToRegister(data: string | Uint8Array, seedHi = 0, seedLo = 0): void {
  hashInto(data, seedHi, seedLo);
}

/**
 * XXH64 of `data` (a string is hashed as its UTF-8 bytes) with `seed` (default 0), as an unsigned 64-bit
 * BigInt. Matches Envoy's `HashUtil::xxHash64(key, seed)`.
 */
export function xxhash64(data: string | Uint8Array, seed?: bigint): bigint {
  if (seed === undefined || seed === 0n) {
    hashInto(data, 0, 0);
  } else {
    splitBigInt(seed);
    hashInto(data, u64[0], u64[1]);
  }
  return toBigInt(u64[0], u64[1]);
}

/**
 * Envoy's hash of a list of values (`HashUtil::xxHash64(absl::Span<absl::string_view>)`): each value is
 * hashed with the previous hash as its seed, starting from 0; an empty list hashes "" with seed 0. Envoy's
 * header hash policy sorts a multi-valued header's values first and then hashes them this way.
 */
export function xxhash64Values(values: readonly string[]): bigint {
  if (values.length === 0) return xxhash64('');
  let h = 0, l = 0;
  for (let i = 0; i < values.length; i++) {
    hashInto(values[i], h, l);
    h = u64[0];
    l = u64[1];
  }
  return toBigInt(h, l);
}

const MASK64 = (1n << 64n) - 1n;

/**
 * Combine the hashes of a route's hash policies the way Envoy's `HashPolicyImpl::generateHash` does: the
 * running value is rotated left by one bit before each XOR, so that two identical policies don't cancel
 * each other out. An empty list gives 0.
 */
export function combineHashes(hashes: readonly bigint[]): bigint {
  let acc = 0n;
  for (let i = 0; i < hashes.length; i++) {
    const rotated = i === 0 ? 0n : ((acc << 1n) | (acc >> 63n)) & MASK64;
    acc = rotated ^ (hashes[i] & MASK64);
  }
  return acc;
}

/** xxhash64 each key (seed 0) and {@link combineHashes} the results. */
export function hashKeysToHash(keys: readonly string[]): bigint {
  let h = 0, l = 0;
  for (let i = 0; i < keys.length; i++) {
    // rotl(acc, 1) on the halves, then XOR the key's hash; the first key's hash is taken as is.
    const rh = ((h << 1) | (l >>> 31)) >>> 0;
    const rl = ((l << 1) | (h >>> 31)) >>> 0;
    hashInto(keys[i], 0, 0);
    h = (rh ^ u64[0]) >>> 0;
    l = (rl ^ u64[1]) >>> 0;
  }
  return toBigInt(h, l);
}
