/**
 * 64-bit MurmurHash2 as Envoy computes it for `RingHashLbConfig.hash_function: MURMUR_HASH_2`
 * (`MurmurHash::murmurHash2`, a port of libstdc++'s `_Hash_bytes`, i.e. what `std::hash<std::string>`
 * returns on 64-bit gcc builds). Envoy offers it so that a ring can match other software hashing that way.
 *
 * Export: `murmurHash2_64(data: string | Uint8Array, seed?: bigint): bigint` (seed defaults to
 * {@link STD_HASH_SEED}).
 */
import { mul64, splitBigInt, toBigInt, u64 } from './u64.ts';

/** Envoy's `MurmurHash::STD_HASH_SEED`, the seed libstdc++ passes to `_Hash_bytes`. */
export const STD_HASH_SEED = 0xc70f6907n;

// 0xc6a4a7935bd1e995, the multiplier of MurmurHash64A.
const MH = 0xc6a4a793, ML = 0x5bd1e995;
const encoder = new TextEncoder();

function read32(b: Uint8Array, i: number): number {
  return (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0;
}

/**
 * MurmurHash2-64 of `data` (a string is hashed as its UTF-8 bytes). Used only when rings are built, so
 * strings go through TextEncoder rather than a scratch buffer.
 */
export function murmurHash2_64(data: string | Uint8Array, seed: bigint = STD_HASH_SEED): bigint {
  const b = typeof data === 'string' ? encoder.encode(data) : data;
  const len = b.length;
  splitBigInt(seed);
  const sH = u64[0], sL = u64[1];
  mul64(0, len >>> 0, MH, ML);
  let hH = (sH ^ u64[0]) >>> 0, hL = (sL ^ u64[1]) >>> 0;
  const aligned = len & ~7;
  for (let p = 0; p < aligned; p += 8) {
    // data = shiftMix(load64(p) * mul) * mul, where shiftMix(v) = v ^ (v >> 47).
    mul64(read32(b, p + 4), read32(b, p), MH, ML);
    mul64(u64[0], (u64[1] ^ (u64[0] >>> 15)) >>> 0, MH, ML);
    mul64((hH ^ u64[0]) >>> 0, (hL ^ u64[1]) >>> 0, MH, ML);
    hH = u64[0]; hL = u64[1];
  }
  const rest = len & 7;
  if (rest !== 0) {
    // The trailing bytes load little-endian into the low end of a uint64.
    let dH = 0, dL = 0;
    for (let i = rest - 1; i >= 0; i--) {
      dH = ((dH << 8) | (dL >>> 24)) >>> 0;
      dL = ((dL << 8) | b[aligned + i]) >>> 0;
    }
    mul64((hH ^ dH) >>> 0, (hL ^ dL) >>> 0, MH, ML);
    hH = u64[0]; hL = u64[1];
  }
  mul64(hH, (hL ^ (hH >>> 15)) >>> 0, MH, ML);
  hH = u64[0]; hL = u64[1];
  return toBigInt(hH, (hL ^ (hH >>> 15)) >>> 0);
}
