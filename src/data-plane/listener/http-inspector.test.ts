import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inspectHttp, MAX_REQUEST_LINE_BYTES } from './http-inspector.ts';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

/** Every strict prefix of `s` must ask for more; `s` itself must give `expected`. */
function assertIncremental(s: string, expected: string): void {
  for (let len = 0; len < s.length; len++) {
    assert.equal(inspectHttp(b(s.slice(0, len))), 'need-more', `prefix ${JSON.stringify(s.slice(0, len))}`);
  }
  assert.equal(inspectHttp(b(s)), expected, s);
}

test('the HTTP/2 connection preface is h2c, and its prefixes need more', () => {
  assertIncremental('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'h2c');
  // A preface followed by a SETTINGS frame is still h2c.
  assert.equal(inspectHttp(Buffer.concat([b('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])])), 'h2c');
  // "PRI" is not an HTTP/1 method, so a request line that diverges from the preface is unknown.
  assert.equal(inspectHttp(b('PRI * HTTP/1.1\r\n')), 'unknown');
});

test('HTTP/1.x request lines give their version once the line ends', () => {
  assertIncremental('GET /index.html HTTP/1.1\r\n', 'http/1.1');
  assertIncremental('POST http://example.com/a?b=c HTTP/1.0\r\n', 'http/1.0');
  assertIncremental('OPTIONS * HTTP/1.1\r\n', 'http/1.1');
  assertIncremental('CONNECT example.com:443 HTTP/1.1\r\n', 'http/1.1');
  assertIncremental('M-SEARCH * HTTP/1.1\r\n', 'http/1.1');
  assert.equal(inspectHttp(b('DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n')), 'http/1.1');
  // RFC 9112 §2.2: a bare LF line ending is tolerated.
  assert.equal(inspectHttp(b('GET / HTTP/1.0\n')), 'http/1.0');
});

test('anything else is unknown as soon as it cannot be a request line', () => {
  assert.equal(inspectHttp(Buffer.from([0x16, 3, 1])), 'unknown', 'TLS record');
  assert.equal(inspectHttp(b('get / HTTP/1.1\r\n')), 'unknown', 'methods are case-sensitive');
  assert.equal(inspectHttp(b('GETX')), 'unknown', 'no method starts with GETX');
  assert.equal(inspectHttp(b('FOO / HTTP/1.1\r\n')), 'unknown');
  assert.equal(inspectHttp(b('GET  / HTTP/1.1\r\n')), 'unknown', 'empty target');
  assert.equal(inspectHttp(b('GET /\r\n')), 'unknown', 'HTTP/0.9 request line');
  assert.equal(inspectHttp(b('GET / HTTP/2.0\r\n')), 'unknown');
  assert.equal(inspectHttp(b('GET / HTTP/1.2\r\n')), 'unknown');
  assert.equal(inspectHttp(b('GET / HTTP/1.1 \r\n')), 'unknown');
  assert.equal(inspectHttp(b('GET / http/1.1\r\n')), 'unknown');
  assert.equal(inspectHttp(b('GET /a\u0001b HTTP/1.1\r\n')), 'unknown', 'control character in target');
  assert.equal(inspectHttp(b('SSH-2.0-OpenSSH_9.6\r\n')), 'unknown');
});

test('a first line longer than the limit is unknown, a shorter unfinished one waits', () => {
  const longTarget = '/' + 'a'.repeat(MAX_REQUEST_LINE_BYTES);
  assert.equal(inspectHttp(b(`GET ${longTarget}`)), 'unknown');
  assert.equal(inspectHttp(b(`GET ${longTarget} HTTP/1.1\r\n`)), 'unknown');
  const justUnder = '/' + 'a'.repeat(MAX_REQUEST_LINE_BYTES - 100);
  assert.equal(inspectHttp(b(`GET ${justUnder}`)), 'need-more');
  assert.equal(inspectHttp(b(`GET ${justUnder} HTTP/1.1\r\n`)), 'http/1.1');
});
