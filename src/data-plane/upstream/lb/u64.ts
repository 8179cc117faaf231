/**
 * Unsigned 64-bit values as pairs of uint32 halves, without BigInt arithmetic (which allocates per
 * operation): `splitBigInt` / `toBigInt` convert at the edges, and add64 / mul64 / rotl64 / shr64 serve
 * MurmurHash2 (config time). XXH64, which runs per request, keeps module-local int32 copies of these
 * helpers (see xxhash64.ts for why). Results go to the shared register {@link u64}; read it right after the
 * call (single-threaded, nothing runs in between).
 */

/**
 * Result register of the operations below: `u64[0]` holds the high 32 bits, `u64[1]` the low 32 bits. A
 * typed array, because storing a uint32 above 2^30 in an object field boxes it (a heap allocation per
 * store), while a Uint32Array element store does not.
 */
export const u64 = new Uint32Array(2);

/** `(ah:al) + (bh:bl) mod 2^64` into {@link u64}. */
export function add64(ah: number, al: number, bh: number, bl: number): void {
  const lo = (al + bl) >>> 0;
  // The low word wrapped exactly when the truncated sum is smaller than an addend.
  u64[0] = (ah + bh + (lo < al ? 1 : 0)) >>> 0;
  u64[1] = lo;
}

/** `(ah:al) * (bh:bl) mod 2^64` into {@link u64}. */
export function mul64(ah: number, al: number, bh: number, bl: number): void {
  // The full 64-bit product of the low words, from 16-bit limbs so that every partial product is exact
  // in a double; the high words only contribute to the high half (mod 2^64), where Math.imul suffices.
  const a0 = al & 0xffff;
  const a1 = al >>> 16;
  const b0 = bl & 0xffff;
  const b1 = bl >>> 16;
  const p00 = a0 * b0;
  const p01 = a0 * b1;
  const p10 = a1 * b0;
  const mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  const carry = a1 * b1 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16);
  u64[1] = ((mid << 16) | (p00 & 0xffff)) >>> 0;
  u64[0] = (carry + Math.imul(ah, bl) + Math.imul(al, bh)) >>> 0;
}

/** Rotate `(h:l)` left by `r` bits, 0 < r < 32, into {@link u64}. */
export function rotl64(h: number, l: number, r: number): void {
  u64[0] = ((h << r) | (l >>> (32 - r))) >>> 0;
  u64[1] = ((l << r) | (h >>> (32 - r))) >>> 0;
}

/** Logical right shift of `(h:l)` by `r` bits, 0 < r < 32, into {@link u64}. */
export function shr64(h: number, l: number, r: number): void {
  u64[1] = ((l >>> r) | (h << (32 - r))) >>> 0;
  u64[0] = h >>> r;
}

// A BigUint64Array store converts any BigInt modulo 2^64 without allocating; the Uint32Array view over the
// same bytes then reads the halves. Which index holds the low half depends on the platform's endianness.
const SPLIT64 = new BigUint64Array(1);
const SPLIT32 = new Uint32Array(SPLIT64.buffer);
SPLIT64[0] = 1n;
const LO_INDEX = SPLIT32[0] === 1 ? 0 : 1;
const HI_INDEX = 1 - LO_INDEX;

/** The uint64 `(hi:lo)` (each half taken modulo 2^32) as a BigInt, allocating only the result. */
export function toBigInt(hi: number, lo: number): bigint {
  SPLIT32[HI_INDEX] = hi;
  SPLIT32[LO_INDEX] = lo;
  return SPLIT64[0];
}

/** Split a BigInt (taken modulo 2^64) into {@link u64} without allocating. */
export function splitBigInt(value: bigint): void {
  SPLIT64[0] = value;
  u64[0] = SPLIT32[HI_INDEX];
  u64[1] = SPLIT32[LO_INDEX];
}
