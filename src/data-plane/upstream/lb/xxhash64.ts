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
import { Buffer } from 'node:buffer';
import { splitBigInt, toBigInt, u64 } from './u64.ts';

// Module-local copies of u64.ts's add64 / mul64 / rotl64 / shr64, on signed int32 halves. Two V8 costs
// shaped this: calls into an imported module were not inlined as well as local ones (16 ns vs 4 ns per
// multiply), and a uint32 above 2^31 passed to a call that is not inlined gets boxed as a heap number (an
// allocation), while an int32 travels as a small integer. XXH64 makes ~20 such calls for a short key.
const r = new Int32Array(2); // r[0] = high 32 bits, r[1] = low 32 bits (as int32)

function add64(ah: number, al: number, bh: number, bl: number): void {
  const lo = (al + bl) | 0;
  // The low word wrapped exactly when the (unsigned) sum is smaller than an addend.
  r[0] = ah + bh + ((lo >>> 0) < (al >>> 0) ? 1 : 0);
  r[1] = lo;
}

function mul64(ah: number, al: number, bh: number, bl: number): void {
  const a0 = al & 0xffff;
  const a1 = al >>> 16;
  const b0 = bl & 0xffff;
  const b1 = bl >>> 16;
  const p00 = a0 * b0;
  const p01 = a0 * b1;
  const p10 = a1 * b0;
  const mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  const carry = a1 * b1 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16);
  r[1] = (mid << 16) | (p00 & 0xffff);
  // Int32Array stores wrap modulo 2^32, which is the arithmetic wanted here.
  r[0] = carry + Math.imul(ah, bl) + Math.imul(al, bh);
}

function rotl64(h: number, l: number, n: number): void {
  r[0] = (h << n) | (l >>> (32 - n));
  r[1] = (l << n) | (h >>> (32 - n));
}

function shr64(h: number, l: number, n: number): void {
  r[1] = (l >>> n) | (h << (32 - n));
  r[0] = h >>> n;
}

// The five 64-bit primes of the spec, as (hi, lo) int32 halves.
const P1H = 0x9e3779b1 | 0, P1L = 0x85ebca87 | 0;
const P2H = 0xc2b2ae3d | 0, P2L = 0x27d4eb4f | 0;
const P3H = 0x165667b1 | 0, P3L = 0x9e3779f9 | 0;
const P4H = 0x85ebca77 | 0, P4L = 0xc2b2ae63 | 0;
const P5H = 0x27d4eb2f | 0, P5L = 0x165667c5 | 0;
// -P1 mod 2^64, for the fourth accumulator's initial value (seed - PRIME64_1).
const NP1H = ~P1H, NP1L = (~P1L + 1) | 0;

// Strings are encoded into this scratch buffer rather than a fresh Buffer per call (Buffer#write is the
// fastest UTF-8 encoder measured here; it writes lone surrogates as U+FFFD, like TextEncoder). It grows up
// to SCRATCH_MAX_BYTES; a longer input (rare: header values are bounded far below) gets a one-off buffer.
const SCRATCH_MAX_BYTES = 64 * 1024;
let scratch = Buffer.allocUnsafe(256);

function read32(b: Uint8Array, i: number): number {
  return b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24);
}

/** XXH64 round: `rotl(acc + input * P2, 31) * P1` into r. */
function round(accH: number, accL: number, inH: number, inL: number): void {
  mul64(inH, inL, P2H, P2L);
  add64(accH, accL, r[0], r[1]);
  rotl64(r[0], r[1], 31);
  mul64(r[0], r[1], P1H, P1L);
}

/** XXH64 merge round: `(acc ^ round(0, val)) * P1 + P4` into r. */
function mergeRound(accH: number, accL: number, valH: number, valL: number): void {
  round(0, 0, valH, valL);
  mul64(accH ^ r[0], accL ^ r[1], P1H, P1L);
  add64(r[0], r[1], P4H, P4L);
}

/** The 32-byte stripe loop and accumulator merge of XXH64 (inputs of ≥ 32 bytes); the result is left in r. */
function stripes(b: Uint8Array, len: number, sH: number, sL: number): void {
  let p = 0;
  add64(sH, sL, P1H, P1L);
  add64(r[0], r[1], P2H, P2L);
  let v1H = r[0], v1L = r[1];
  add64(sH, sL, P2H, P2L);
  let v2H = r[0], v2L = r[1];
  let v3H = sH, v3L = sL;
  add64(sH, sL, NP1H, NP1L);
  let v4H = r[0], v4L = r[1];
  const limit = len - 32;
  do {
    round(v1H, v1L, read32(b, p + 4), read32(b, p)); v1H = r[0]; v1L = r[1];
    round(v2H, v2L, read32(b, p + 12), read32(b, p + 8)); v2H = r[0]; v2L = r[1];
    round(v3H, v3L, read32(b, p + 20), read32(b, p + 16)); v3H = r[0]; v3L = r[1];
    round(v4H, v4L, read32(b, p + 28), read32(b, p + 24)); v4H = r[0]; v4L = r[1];
    p += 32;
  } while (p <= limit);
  let hH: number, hL: number;
  rotl64(v1H, v1L, 1); hH = r[0]; hL = r[1];
  rotl64(v2H, v2L, 7); add64(hH, hL, r[0], r[1]); hH = r[0]; hL = r[1];
  rotl64(v3H, v3L, 12); add64(hH, hL, r[0], r[1]); hH = r[0]; hL = r[1];
  rotl64(v4H, v4L, 18); add64(hH, hL, r[0], r[1]); hH = r[0]; hL = r[1];
  mergeRound(hH, hL, v1H, v1L); hH = r[0]; hL = r[1];
  mergeRound(hH, hL, v2H, v2L); hH = r[0]; hL = r[1];
  mergeRound(hH, hL, v3H, v3L); hH = r[0]; hL = r[1];
  mergeRound(hH, hL, v4H, v4L);
}

/** XXH64's remaining bytes from `p` (fewer than 32) and the avalanche, from state `(hH:hL)`; result in r. */
function tail(b: Uint8Array, p: number, len: number, hH: number, hL: number): void {
  while (p + 8 <= len) {
    round(0, 0, read32(b, p + 4), read32(b, p));
    rotl64(hH ^ r[0], hL ^ r[1], 27);
    mul64(r[0], r[1], P1H, P1L);
    add64(r[0], r[1], P4H, P4L); hH = r[0]; hL = r[1];
    p += 8;
  }
  if (p + 4 <= len) {
    mul64(0, read32(b, p), P1H, P1L);
    rotl64(hH ^ r[0], hL ^ r[1], 23);
    mul64(r[0], r[1], P2H, P2L);
    add64(r[0], r[1], P3H, P3L); hH = r[0]; hL = r[1];
    p += 4;
  }
  while (p < len) {
    mul64(0, b[p], P5H, P5L);
    rotl64(hH ^ r[0], hL ^ r[1], 11);
    mul64(r[0], r[1], P1H, P1L); hH = r[0]; hL = r[1];
    p++;
  }
  // Avalanche.
  hL ^= hH >>> 1; // h ^= h >> 33: only (hi >>> 1) lands in the low word.
  mul64(hH, hL, P2H, P2L); hH = r[0]; hL = r[1];
  shr64(hH, hL, 29);
  mul64(hH ^ r[0], hL ^ r[1], P3H, P3L); hH = r[0]; hL = r[1];
  r[0] = hH;
  r[1] = hL ^ hH; // h ^= h >> 32
}

/**
 * XXH64 of `b[0, len)` with seed `(sH:sL)`; the result is left in r. Split in three functions so that each
 * stays within V8's inlining budget for the small arithmetic helpers.
 */
function xxh64Into(b: Uint8Array, len: number, sH: number, sL: number): void {
  if (len >= 32) stripes(b, len, sH, sL);
  else add64(sH, sL, P5H, P5L);
  // The length is added as a uint64; inputs here are far below 2^32 bytes.
  add64(r[0], r[1], 0, len | 0);
  tail(b, len & ~31, len, r[0], r[1]);
}

/** Hash `data` with seed `(sH:sL)` into r. */
function hashInto(data: string | Uint8Array, sH: number, sL: number): void {
  if (typeof data !== 'string') {
    xxh64Into(data, data.length, sH, sL);
    return;
  }
  // Buffer#write truncates silently, so the buffer must hold the worst case of 3 bytes per UTF-16 unit.
  const maxBytes = data.length * 3;
  let buf = scratch;
  if (maxBytes > buf.length) {
    if (maxBytes > SCRATCH_MAX_BYTES) buf = Buffer.allocUnsafe(maxBytes);
    else buf = scratch = Buffer.allocUnsafe(Math.max(maxBytes, buf.length * 2));
  }
  xxh64Into(buf, buf.write(data, 0, 'utf8'), sH, sL);
}

/**
 * XXH64 of `data` with seed `(seedHi:seedLo)`, left in the {@link u64} register instead of returned as a
 * BigInt: for building tables of many hashes without allocating one BigInt each.
 */
export function xxhash64ToRegister(data: string | Uint8Array, seedHi = 0, seedLo = 0): void {
  hashInto(data, seedHi | 0, seedLo | 0);
  u64[0] = r[0];
  u64[1] = r[1];
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
    hashInto(data, u64[0] | 0, u64[1] | 0);
  }
  return toBigInt(r[0] >>> 0, r[1] >>> 0);
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
    h = r[0];
    l = r[1];
  }
  return toBigInt(h >>> 0, l >>> 0);
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
    const rh = (h << 1) | (l >>> 31);
    const rl = (l << 1) | (h >>> 31);
    hashInto(keys[i], 0, 0);
    h = rh ^ r[0];
    l = rl ^ r[1];
  }
  return toBigInt(h >>> 0, l >>> 0);
}
