import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { combineHashes, hashKeysToHash, xxhash64, xxhash64ToRegister, xxhash64Values } from './xxhash64.ts';
import { u64 } from './u64.ts';
import { seededRandom } from './testing.ts';

// A direct BigInt transcription of the XXH64 spec, slow but obviously shaped like the spec, to cross-check
// the 32-bit-halves implementation on many inputs.
const M = (1n << 64n) - 1n;
const P1 = 0x9e3779b185ebca87n, P2 = 0xc2b2ae3d27d4eb4fn, P3 = 0x165667b19e3779f9n, P4 = 0x85ebca77c2b2ae63n, P5 = 0x27d4eb2f165667c5n;
const rotl = (x: bigint, r: bigint) => ((x << r) | (x >> (64n - r))) & M;
const round = (acc: bigint, input: bigint) => (rotl((acc + input * P2) & M, 31n) * P1) & M;
const merge = (acc: bigint, val: bigint) => (((acc ^ round(0n, val)) * P1) & M) + P4 & M;
function read(b: Uint8Array, i: number, n: number): bigint {
  let v = 0n;
  for (let k = n - 1; k >= 0; k--) v = (v << 8n) | BigInt(b[i + k]);
  return v;
}
function reference(b: Uint8Array, seed: bigint): bigint {
  let p = 0;
  let h: bigint;
  if (b.length >= 32) {
    let v1 = (seed + P1 + P2) & M, v2 = (seed + P2) & M, v3 = seed, v4 = (seed - P1) & M;
    for (; p + 32 <= b.length; p += 32) {
      v1 = round(v1, read(b, p, 8)); v2 = round(v2, read(b, p + 8, 8));
      v3 = round(v3, read(b, p + 16, 8)); v4 = round(v4, read(b, p + 24, 8));
    }
    h = (rotl(v1, 1n) + rotl(v2, 7n) + rotl(v3, 12n) + rotl(v4, 18n)) & M;
    h = merge(merge(merge(merge(h, v1), v2), v3), v4);
  } else {
    h = (seed + P5) & M;
  }
  h = (h + BigInt(b.length)) & M;
  for (; p + 8 <= b.length; p += 8) h = ((rotl(h ^ round(0n, read(b, p, 8)), 27n) * P1) + P4) & M;
  if (p + 4 <= b.length) { h = ((rotl(h ^ ((read(b, p, 4) * P1) & M), 23n) * P2) + P3) & M; p += 4; }
  for (; p < b.length; p++) h = (rotl(h ^ ((BigInt(b[p]) * P5) & M), 11n) * P1) & M;
  h ^= h >> 33n; h = (h * P2) & M; h ^= h >> 29n; h = (h * P3) & M; h ^= h >> 32n;
  return h;
}

describe('xxhash64', () => {
  it('matches the published XXH64 vectors', () => {
    assert.equal(xxhash64(''), 0xef46db3751d8e999n);
    assert.equal(xxhash64('a'), 0xd24ec4f1a98c6e5bn);
    assert.equal(xxhash64('abc'), 0x44bc2cf5ad770999n);
    // python-xxhash's README example (≥ 32 bytes, exercises the stripe loop).
    assert.equal(xxhash64('Nobody inspects the spammish repetition'), 0xfbcea83c8a378bf1n);
  });

  it('matches vectors computed with the reference C implementation (seeded, long, non-ASCII)', () => {
    assert.equal(xxhash64('xxhash', 20n), 0x48b35aa98dc04f56n);
    assert.equal(xxhash64('0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ', 1n), 0x3073b9986fe00fb9n);
    assert.equal(xxhash64('10.0.0.1:8080', 1n), 0x0dfce9efd349b428n);
    assert.equal(xxhash64('héllo 😀'), 0x9df0df77af1db728n);
  });

  it('agrees with a BigInt transcription of the spec on random inputs and seeds', () => {
    const random = seededRandom(7);
    for (let n = 0; n < 500; n++) {
      const bytes = Uint8Array.from({ length: Math.floor(random() * 150) }, () => Math.floor(random() * 256));
      const seed = n % 4 === 0 ? 0n : (BigInt(Math.floor(random() * 2 ** 32)) << 32n) | BigInt(Math.floor(random() * 2 ** 32));
      assert.equal(xxhash64(bytes, seed), reference(bytes, seed), `length ${bytes.length} seed ${seed}`);
    }
  });

  it('hashes a string as its UTF-8 bytes, lone surrogates as U+FFFD like TextEncoder', () => {
    for (const s of ['plain', 'ünïcödé', '日本語のキー', 'emoji 😀 pair', 'lone \ud800 high', 'lone \udc00 low', 'x'.repeat(70000)]) {
      assert.equal(xxhash64(s), xxhash64(new TextEncoder().encode(s)), s.slice(0, 20));
    }
  });

  it('writes the same hash into the register', () => {
    xxhash64ToRegister('abc');
    assert.equal((BigInt(u64[0]) << 32n) | BigInt(u64[1]), 0x44bc2cf5ad770999n);
    xxhash64ToRegister('10.0.0.1:8080', 0, 1);
    assert.equal((BigInt(u64[0]) << 32n) | BigInt(u64[1]), xxhash64('10.0.0.1:8080', 1n));
  });
});

describe('combineHashes', () => {
  it('rotates the running value left by one before each XOR (Envoy HashPolicyImpl::generateHash)', () => {
    const a = 0x8000000000000001n;
    const b = 0x0123456789abcdefn;
    assert.equal(combineHashes([]), 0n);
    assert.equal(combineHashes([a]), a);
    // rotl(a, 1) = 0x0000000000000003: the top bit wraps around.
    assert.equal(combineHashes([a, b]), 0x3n ^ b);
    assert.equal(combineHashes([a, b, a]), ((((0x3n ^ b) << 1n) | ((0x3n ^ b) >> 63n)) & M) ^ a);
  });

  it('does not cancel out two identical policies', () => {
    const h = xxhash64('user-42');
    assert.notEqual(combineHashes([h, h]), 0n);
  });
});

describe('hashKeysToHash', () => {
  it('is combineHashes of each key’s xxhash64', () => {
    const keys = ['x-user: 42', 'cookie', '10.1.2.3'];
    assert.equal(hashKeysToHash(keys), combineHashes(keys.map((k) => xxhash64(k))));
    assert.equal(hashKeysToHash(['only']), xxhash64('only'));
    assert.equal(hashKeysToHash([]), 0n);
  });
});

describe('xxhash64Values', () => {
  it('chains each value’s hash as the next seed, as Envoy hashes a list', () => {
    assert.equal(xxhash64Values([]), xxhash64(''));
    assert.equal(xxhash64Values(['a']), xxhash64('a'));
    assert.equal(xxhash64Values(['a', 'b', 'c']), xxhash64('c', xxhash64('b', xxhash64('a'))));
    assert.notEqual(xxhash64Values(['a', 'b']), xxhash64Values(['b', 'a']));
  });
});
