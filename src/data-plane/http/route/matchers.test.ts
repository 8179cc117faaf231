import { test } from 'node:test';
import assert from 'node:assert/strict';
import { findQueryParameter, getHeaderJoined, percentDecode } from './matchers.ts';

test('findQueryParameter: first value, decoding, empty values, fragments, encoded keys', () => {
  assert.equal(findQueryParameter('/p?a=1&b=2&a=3', 'a'), '1');
  assert.equal(findQueryParameter('/p?a=1&b=2', 'b'), '2');
  assert.equal(findQueryParameter('/p?flag&x=1', 'flag'), '');
  assert.equal(findQueryParameter('/p?x=', 'x'), '');
  assert.equal(findQueryParameter('/p?x=a%2Fb', 'x'), 'a/b');
  assert.equal(findQueryParameter('/p?x=1#y=2', 'y'), undefined, 'the fragment is not part of the query');
  assert.equal(findQueryParameter('/p?my%20key=v', 'my key'), 'v');
  assert.equal(findQueryParameter('/p', 'a'), undefined);
  assert.equal(findQueryParameter('/p?ab=1', 'a'), undefined);
});

test('percentDecode keeps invalid sequences', () => {
  assert.equal(percentDecode('a%20b'), 'a b');
  assert.equal(percentDecode('100%'), '100%');
  assert.equal(percentDecode('%zz%41'), '%zzA');
});

test('getHeaderJoined joins repeated values with "," and is undefined when absent', () => {
  assert.equal(getHeaderJoined(['a', '1', 'b', '2', 'a', '3'], 'a'), '1,3');
  assert.equal(getHeaderJoined(['a', ''], 'a'), '');
  assert.equal(getHeaderJoined([], 'a'), undefined);
});
