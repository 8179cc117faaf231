import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cidrContains, cidrKey, formatIp, isLoopback, parseCidrRange, parseIp, type CidrRange } from './cidr-range.ts';

test('parseIp reads IPv4, IPv6 in all its spellings, and folds IPv4-mapped addresses to IPv4', () => {
  assert.deepEqual([...parseIp('192.168.0.255')!], [192, 168, 0, 255]);
  assert.deepEqual([...parseIp('::1')!], [...new Array(15).fill(0), 1]);
  assert.deepEqual([...parseIp('2001:db8::8:800:200c:417a')!], [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 8, 8, 0, 0x20, 0x0c, 0x41, 0x7a]);
  assert.deepEqual([...parseIp('2001:DB8:0:0:8:800:200C:417A')!], [...parseIp('2001:db8::8:800:200c:417a')!]);
  assert.deepEqual([...parseIp('::ffff:10.0.0.1')!], [10, 0, 0, 1]);
  assert.deepEqual([...parseIp('::ffff:a00:1')!], [10, 0, 0, 1]);
  assert.deepEqual([...parseIp('64:ff9b::192.0.2.33')!].slice(12), [192, 0, 2, 33]);
  assert.deepEqual([...parseIp('fe80::1%eth0')!], [0xfe, 0x80, ...new Array(13).fill(0), 1]);
  assert.equal(parseIp('1.2.3'), undefined);
  assert.equal(parseIp('example.com'), undefined);
  assert.equal(parseIp(''), undefined);
});

test('formatIp gives the RFC 5952 text Envoy uses', () => {
  for (const [input, text] of [
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // one zero group is not shortened
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // the longest run is
    ['::', '::'],
    ['fe80::', 'fe80::'],
    ['10.0.0.7', '10.0.0.7'],
  ]) {
    assert.equal(formatIp(parseIp(input)!), text, input);
  }
});

test('CIDR ranges are masked, contain only their own family, and key equal when equal', () => {
  const r = parseCidrRange('10.1.2.3', 12) as CidrRange;
  assert.equal(cidrKey(r), '10.0.0.0/12');
  assert.ok(cidrContains(r, parseIp('10.15.255.255')!));
  assert.ok(!cidrContains(r, parseIp('10.16.0.0')!));
  assert.ok(!cidrContains(r, parseIp('2001:db8::1')!));
  const all = parseCidrRange('0.0.0.0', 0) as CidrRange;
  assert.ok(cidrContains(all, parseIp('255.1.1.1')!));
  const v6 = parseCidrRange('2001:db8:ffff::', 33) as CidrRange;
  assert.equal(cidrKey(v6), '2001:db8:8000::/33');
  assert.ok(cidrContains(v6, parseIp('2001:db8:8000::1')!));
  assert.ok(!cidrContains(v6, parseIp('2001:db8:7fff::1')!));
  const mapped = parseCidrRange('::ffff:10.0.0.0', 104) as CidrRange;
  assert.equal(cidrKey(mapped), '10.0.0.0/8');
  assert.match(parseCidrRange('10.0.0.0', 33) as string, /longer than an IPv4/);
  assert.match(parseCidrRange('::', 129) as string, /longer than an IPv6/);
  assert.match(parseCidrRange('bogus', 8) as string, /not an IP address/);
});

test('isLoopback covers 127/8 and ::1 only', () => {
  assert.ok(isLoopback(parseIp('127.8.9.10')!));
  assert.ok(isLoopback(parseIp('::1')!));
  assert.ok(isLoopback(parseIp('::ffff:127.0.0.1')!));
  assert.ok(!isLoopback(parseIp('128.0.0.1')!));
  assert.ok(!isLoopback(parseIp('::2')!));
});
