import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { murmurHash2_64 } from './murmur-hash2.ts';

describe('murmurHash2_64', () => {
  it('matches Envoy’s MurmurHash::murmurHash2 test vectors', () => {
    assert.equal(murmurHash2_64('foo'), 9631199822919835226n);
    assert.equal(murmurHash2_64('bar'), 11474628671133349555n);
    assert.equal(murmurHash2_64('foo\nbar'), 16306510975912980159n);
    assert.equal(murmurHash2_64('lyft'), 12847078931730529320n);
    assert.equal(murmurHash2_64(''), 6142509188972423790n);
  });

  it('matches std::hash<std::string> from libstdc++ (x86-64) on aligned, long and ring-key inputs', () => {
    assert.equal(murmurHash2_64('abcdefgh'), 8664279048047335611n);
    assert.equal(murmurHash2_64('abcdefghijklmnopq'), 16399385603263873375n);
    assert.equal(murmurHash2_64('0123456789abcdef0123456789abcdef!'), 452676222913866261n);
    assert.equal(murmurHash2_64('10.0.0.1:8080_17'), 14014034734899239605n);
  });

  it('depends on the seed', () => {
    assert.notEqual(murmurHash2_64('foo', 0n), murmurHash2_64('foo'));
  });
});
