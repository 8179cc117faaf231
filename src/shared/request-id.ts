/**
 * Random UUIDv4 strings for x-request-id, made from a pooled block of CSPRNG bytes: one randomFillSync per 256
 * ids. The hex digits are written into one scratch buffer and read out as a single latin1 string, so the hot
 * path allocates that string only (joining 20 pieces with `+` allocated ~600 bytes of cons-strings per id).
 */
import { randomFillSync } from 'node:crypto';

const POOL_IDS = 256;
const pool = Buffer.allocUnsafe(16 * POOL_IDS);
let next = POOL_IDS;
/** ASCII codes of the two hex digits of every byte value: HEX_PAIRS[2*b], HEX_PAIRS[2*b+1]. */
const HEX_PAIRS = Buffer.from(Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0')).join(''), 'latin1');
/** 8-4-4-4-12: where the 16 bytes go in the 36-character text; the dashes never move. */
const OFFSETS = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
const scratch = Buffer.from('00000000-0000-0000-0000-000000000000', 'latin1');

/** A fresh RFC 9562 version-4 UUID, lowercase. */
export function uuidV4(): string {
  if (next === POOL_IDS) {
    randomFillSync(pool);
    next = 0;
  }
  const o = next++ * 16;
  // Version 4 (high nibble of byte 6) and the RFC variant (top bits 10 of byte 8).
  pool[o + 6] = (pool[o + 6] & 0x0f) | 0x40;
  pool[o + 8] = (pool[o + 8] & 0x3f) | 0x80;
  for (let i = 0; i < 16; i++) {
    const b = pool[o + i] * 2;
    const at = OFFSETS[i];
    scratch[at] = HEX_PAIRS[b];
    scratch[at + 1] = HEX_PAIRS[b + 1];
  }
  return scratch.toString('latin1', 0, 36);
}
