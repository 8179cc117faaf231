import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { H1_DEFAULT_LIMITS, H1_KIND_REQUEST, H1_KIND_RESPONSE, type H1Limits } from './parser.ts';
import { createRecorder, feed, mergeBodies, type H1Event, type Recorder } from './testing.ts';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

/** Parses `text` in one execute() call; returns the recorder and the bytes consumed. */
function req(text: string | Buffer, limits?: Partial<H1Limits>): { rec: Recorder; n: number } {
  const rec = createRecorder(H1_KIND_REQUEST, limits);
  const n = rec.parser.execute(typeof text === 'string' ? b(text) : text);
  return { rec, n };
}

function res(text: string, method = 'GET'): { rec: Recorder; n: number } {
  const rec = createRecorder(H1_KIND_RESPONSE);
  rec.parser.setResponseContext(method);
  const n = rec.parser.execute(b(text));
  return { rec, n };
}

function onlyError(rec: Recorder): { status: number; code: string } {
  const errors = rec.events.filter((e) => e.type === 'error');
  assert.equal(errors.length, 1, `expected exactly one error, got ${JSON.stringify(rec.events).slice(0, 500)}`);
  const e = errors[0];
  assert.ok(e.type === 'error');
  return { status: e.status, code: e.code };
}

/** Asserts the request is rejected with `status`/`code` and that no head reached the caller. */
function assertRejected(text: string | Buffer, status: number, code?: string, limits?: Partial<H1Limits>): void {
  const { rec } = req(text, limits);
  const err = onlyError(rec);
  assert.equal(err.status, status, `status for ${JSON.stringify(String(text).slice(0, 80))}: ${err.code}`);
  if (code !== undefined) assert.equal(err.code, code);
  assert.deepEqual(
    rec.events.filter((e) => e.type === 'request'),
    [],
    'a rejected request must not be delivered',
  );
  // Dead after the error: nothing more is parsed (RELIABILITY row 8).
  assert.equal(rec.parser.execute(b('GET / HTTP/1.1\r\nHost: a\r\n\r\n')), 0);
  assert.equal(rec.events.length, 1);
}

const GET = 'GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n';

describe('H1Parser requests', () => {
  it('parses a request head: lowercased names, trimmed values, wire order', () => {
    const text = 'GET /a HTTP/1.1\r\nHost: x.test\r\nX-Mixed-Case:  v1 \t\r\nx-empty:\r\nX-MIXED-CASE: \tv 2\r\n\r\n';
    const { rec, n } = req(text);
    assert.equal(n, text.length);
    assert.deepEqual(rec.events, [
      {
        type: 'request',
        method: 'GET',
        target: '/a',
        versionMinor: 1,
        headers: ['host', 'x.test', 'x-mixed-case', 'v1', 'x-empty', '', 'x-mixed-case', 'v 2'],
        bodyKind: 'none',
        contentLength: 0,
        keepAlive: true,
        upgrade: false,
      },
      { type: 'complete', trailers: null },
    ]);
  });

  it('keeps obs-text bytes in values (latin1 round trip)', () => {
    const { rec } = req(Buffer.concat([b('GET / HTTP/1.1\r\nHost: a\r\nX: caf'), Buffer.from([0xe9, 0xff]), b('\r\n\r\n')]));
    const head = rec.events[0];
    assert.ok(head.type === 'request');
    assert.equal(head.headers[3], 'caf\u00e9\u00ff');
  });

  it('accepts extension methods and absolute-, asterisk- and origin-form targets', () => {
    for (const [line, method, target] of [
      ['PROPFIND /dav HTTP/1.1', 'PROPFIND', '/dav'],
      ['GET http://upstream.test:8080/p?q HTTP/1.1', 'GET', 'http://upstream.test:8080/p?q'],
      ['OPTIONS * HTTP/1.1', 'OPTIONS', '*'],
      ['GET /%00/a%2Fb#frag HTTP/1.1', 'GET', '/%00/a%2Fb#frag'], // percent sequences are the router's business
    ] as const) {
      const { rec } = req(`${line}\r\nHost: a\r\n\r\n`);
      const head = rec.events[0];
      assert.ok(head.type === 'request', line);
      assert.equal(head.method, method);
      assert.equal(head.target, target);
    }
  });

  it('pipelines three requests from one buffer, bodies included', () => {
    const input =
      'GET /1 HTTP/1.1\r\nHost: a\r\n\r\n' +
      'POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello' +
      'POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n';
    const { rec, n } = req(input);
    assert.equal(n, input.length);
    assert.deepEqual(
      rec.events.map((e) => (e.type === 'request' ? `${e.method} ${e.target} ${e.bodyKind}:${e.contentLength}` : e.type === 'body' ? `body ${e.data}` : e.type)),
      ['GET /1 none:0', 'complete', 'POST /2 length:5', 'body hello', 'complete', 'POST /3 chunked:-1', 'body abc', 'complete'],
    );
  });

  it('delivers body chunks as views of the input, without copying', () => {
    const input = b('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc');
    const rec = createRecorder(H1_KIND_REQUEST);
    let seen: Buffer | null = null;
    rec.parser.onBody = (chunk) => {
      seen = chunk;
    };
    rec.parser.execute(input);
    assert.ok(seen !== null);
    const chunk: Buffer = seen;
    assert.equal(chunk.buffer, input.buffer);
    assert.equal(chunk.byteOffset, input.byteOffset + input.length - 3);
  });

  it('gives the same events for a head split at every byte boundary, and fed a byte at a time', () => {
    const input = b(GET + 'POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: v\r\n\r\n');
    const whole = createRecorder(H1_KIND_REQUEST);
    feed(whole, input);
    const expected = mergeBodies(whole.events);
    assert.equal(expected.filter((e) => e.type === 'complete').length, 2);
    for (let cut = 1; cut < input.length; cut++) {
      const rec = createRecorder(H1_KIND_REQUEST);
      assert.equal(feed(rec, input, [cut]), input.length);
      assert.deepEqual(mergeBodies(rec.events), expected, `split at ${cut}`);
    }
    const bytewise = createRecorder(H1_KIND_REQUEST);
    assert.equal(feed(bytewise, input, Array.from({ length: input.length }, (_, i) => i)), input.length);
    assert.deepEqual(mergeBodies(bytewise.events), expected);
  });

  it('parses chunked bodies with extensions and trailers', () => {
    const { rec } = req(
      'POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n' +
        '4;name=value;flag; q = "quoted \\" str"\r\nWiki\r\n' +
        'A\r\npedia in\r\n\r\n' +
        '0;last\r\nX-Checksum: abc\r\nGrpc-Status:  0 \r\n\r\n',
    );
    assert.deepEqual(mergeBodies(rec.events).slice(1), [
      { type: 'body', data: 'Wikipedia in\r\n' },
      { type: 'complete', trailers: ['x-checksum', 'abc', 'grpc-status', '0'] },
    ]);
  });

  it('treats Content-Length: 0 as an empty body and completes at once', () => {
    const { rec } = req('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n');
    assert.deepEqual(
      rec.events.map((e) => e.type),
      ['request', 'complete'],
    );
  });

  it('computes keep-alive per version and Connection tokens (RFC 9112 §9.3)', () => {
    const keepAlive = (head: string): boolean => {
      const e = req(head + '\r\n').rec.events[0];
      assert.ok(e.type === 'request', head);
      return e.keepAlive;
    };
    assert.equal(keepAlive('GET / HTTP/1.1\r\nHost: a\r\n'), true);
    assert.equal(keepAlive('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n'), false);
    assert.equal(keepAlive('GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, CLOSE\r\n'), false);
    assert.equal(keepAlive('GET / HTTP/1.0\r\n'), false);
    assert.equal(keepAlive('GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n'), true);
    assert.equal(keepAlive('GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n'), false);
    assert.equal(keepAlive('GET / HTTP/1.0\r\nConnection: keep-alivex\r\n'), false);
  });

  it('stops after an Upgrade head and leaves the remaining bytes to the caller', () => {
    const head = 'GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n';
    const { rec, n } = req(head + '\x81\x05hello');
    assert.equal(n, head.length);
    assert.equal(rec.events.length, 1);
    const e = rec.events[0];
    assert.ok(e.type === 'request' && e.upgrade);
    assert.equal(rec.parser.execute(b('more tunnel bytes')), 0);
  });

  it('does not upgrade when Upgrade is not listed in Connection', () => {
    const { rec } = req('GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n');
    const e = rec.events[0];
    assert.ok(e.type === 'request' && !e.upgrade);
    assert.equal(rec.events[1].type, 'complete');
  });

  it('continues as plain HTTP when the caller declines an upgrade with resume()', () => {
    const first = 'POST /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\n';
    const input = b(first + 'hiGET /next HTTP/1.1\r\nHost: a\r\n\r\n');
    const rec = createRecorder(H1_KIND_REQUEST);
    const n = rec.parser.execute(input);
    assert.equal(n, first.length);
    rec.parser.resume();
    assert.equal(rec.parser.execute(input.subarray(n)), input.length - n);
    assert.deepEqual(
      rec.events.map((e) => (e.type === 'request' ? e.target : e.type === 'body' ? e.data : e.type)),
      ['/ws', 'hi', 'complete', '/next', 'complete'],
    );
  });

  it('treats CONNECT as an upgrade with an authority-form target', () => {
    const head = 'CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n';
    const { rec, n } = req(head + '\x16\x03\x01');
    assert.equal(n, head.length);
    const e = rec.events[0];
    assert.ok(e.type === 'request');
    assert.deepEqual([e.method, e.target, e.upgrade, e.bodyKind], ['CONNECT', 'api.test:443', true, 'none']);
    assertRejected('CONNECT /path HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'H1_INVALID_TARGET');
    assertRejected('CONNECT a:99999x HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'H1_INVALID_TARGET');
    assertRejected('CONNECT user@a:443 HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'H1_INVALID_TARGET');
    assertRejected('CONNECT a:443 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody', 400, 'H1_INVALID_BODY_FRAMING');
  });

  it('pause() in onRequestHead holds the next pipelined request until resume()', () => {
    const input = b('GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n');
    const rec = createRecorder(H1_KIND_REQUEST);
    rec.hook = (e) => {
      if (e.type === 'request') rec.parser.pause();
    };
    const n = rec.parser.execute(input);
    assert.equal(n, input.length / 2);
    assert.deepEqual(
      rec.events.map((e) => e.type),
      ['request', 'complete'],
    );
    assert.equal(rec.parser.execute(input.subarray(n)), 0); // still paused
    rec.parser.resume();
    assert.equal(rec.parser.execute(input.subarray(n)), input.length - n);
    assert.deepEqual(
      rec.events.map((e) => e.type),
      ['request', 'complete', 'request', 'complete'],
    );
  });

  it('pause() in onBody stops before the next byte of body', () => {
    const input = b('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n');
    const rec = createRecorder(H1_KIND_REQUEST);
    rec.hook = (e) => {
      if (e.type === 'body') rec.parser.pause();
    };
    let pos = 0;
    for (let rounds = 0; pos < input.length && rounds < 10; rounds++) {
      pos += rec.parser.execute(input.subarray(pos));
      rec.parser.resume();
    }
    assert.equal(pos, input.length);
    assert.deepEqual(
      rec.events.map((e) => (e.type === 'body' ? e.data : e.type)),
      ['request', 'ab', 'cd', 'complete'],
    );
  });

  it('tolerates exactly one empty line before a request-line (RFC 9112 §2.2)', () => {
    const { rec } = req('\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.equal(rec.events[0].type, 'request');
    const after = req('POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n').rec;
    assert.deepEqual(
      after.events.map((e) => e.type),
      ['request', 'body', 'complete', 'request', 'complete'],
    );
    assertRejected('\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'H1_INVALID_REQUEST_LINE');
  });

  it('finish(): clean between messages, an error mid-message', () => {
    const idle = req('GET / HTTP/1.1\r\nHost: a\r\n\r\n').rec;
    idle.parser.finish();
    assert.equal(idle.errors, 0);
    for (const partial of ['GET / HTTP/1.1\r\nHo', 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab']) {
      const { rec } = req(partial);
      rec.parser.finish();
      assert.equal(onlyError(rec).code, 'H1_UNEXPECTED_EOF');
    }
  });

  it('reset() makes a dead parser usable again', () => {
    const { rec } = req('GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n');
    assert.equal(rec.errors, 1);
    rec.parser.reset();
    rec.parser.execute(b('GET /ok HTTP/1.1\r\nHost: a\r\n\r\n'));
    assert.deepEqual(
      rec.events.map((e) => e.type),
      ['error', 'request', 'complete'],
    );
  });

  it('rejects malformed request-lines', () => {
    assertRejected('GET  / HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'H1_INVALID_TARGET');
    assertRejected('GET / HTTP/1.1 \r\nHost: a\r\n\r\n', 400, 'H1_INVALID_VERSION');
    assertRejected('GET / http/1.1\r\nHost: a\r\n\r\n', 400, 'H1_INVALID_VERSION');
    assertRejected('GET /\r\nHost: a\r\n\r\n', 400, 'H1_INVALID_REQUEST_LINE');
    assertRejected('G(T / HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'H1_INVALID_METHOD');
    assertRejected(' GET / HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'H1_INVALID_REQUEST_LINE');
    assertRejected('GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'H1_INVALID_METHOD');
    assertRejected('GET * HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'H1_INVALID_TARGET');
    assertRejected('GET index.html HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'H1_INVALID_TARGET');
    assertRejected('GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'H1_INVALID_TARGET');
    assertRejected('GET /caf\xe9 HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'H1_INVALID_TARGET');
    // Start lines shorter than their fixed-length parts, alone in the input (found by the fuzzer).
    assertRejected('GET / HTTP\r\n\r\n', 400, 'H1_INVALID_VERSION');
    assertRejected('GET / H\r\nHost: a\r\n\r\n', 400, 'H1_INVALID_VERSION');
    assertRejected('\r\nGET x 0\r\n\r\n', 400, 'H1_INVALID_VERSION');
    assertRejected('GET / HTTP/2.0\r\nHost: a\r\n\r\n', 505, 'H1_UNSUPPORTED_VERSION');
    assertRejected('GET / HTTP/0.9\r\nHost: a\r\n\r\n', 505, 'H1_UNSUPPORTED_VERSION');
    assertRejected('GET / HTTP/1.2\r\nHost: a\r\n\r\n', 505, 'H1_UNSUPPORTED_VERSION');
  });

  it('rejects a Host with bytes outside reg-name / IP-literal', () => {
    assertRejected('GET / HTTP/1.1\r\nHost: a b\r\n\r\n', 400, 'H1_INVALID_HOST');
    assertRejected('GET / HTTP/1.1\r\nHost: user@a\r\n\r\n', 400, 'H1_INVALID_HOST');
    assertRejected('GET / HTTP/1.1\r\nHost: a/b\r\n\r\n', 400, 'H1_INVALID_HOST');
    const { rec } = req('GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n');
    assert.equal(rec.events[0].type, 'request');
  });
});

describe('H1Parser RELIABILITY rows 1-8', () => {
  it('row 1: Content-Length with Transfer-Encoding: chunked → 400, nothing forwarded', () => {
    assertRejected(
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n',
      400,
      'H1_CONTENT_LENGTH_WITH_TRANSFER_ENCODING',
    );
    assertRejected(
      'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n',
      400,
      'H1_CONTENT_LENGTH_WITH_TRANSFER_ENCODING',
    );
  });

  it('row 2: duplicate, conflicting or malformed Content-Length → 400', () => {
    const head = (cl: string): string => `POST / HTTP/1.1\r\nHost: a\r\n${cl}\r\n\r\nhello`;
    assertRejected(head('Content-Length: 5\r\nContent-Length: 5'), 400, 'H1_DUPLICATE_CONTENT_LENGTH');
    assertRejected(head('Content-Length: 5\r\nContent-Length: 6'), 400, 'H1_DUPLICATE_CONTENT_LENGTH');
    for (const v of ['+5', '-5', '5,6', '5, 5', '5 6', '0x5', '5.0', '', '1e3', '99999999999999999', '\xb5']) {
      assertRejected(head(`Content-Length: ${v}`), 400, 'H1_INVALID_CONTENT_LENGTH');
    }
    // ` 5` as a field-value is OWS + "5" (RFC 9112 §5.1 strips OWS before parsing): that one is valid.
    const { rec } = req(head('Content-Length:  5 '));
    assert.deepEqual(
      mergeBodies(rec.events).map((e) => e.type),
      ['request', 'body', 'complete'],
    );
    // Whitespace before the colon is the smuggling variant of " 5" and is rejected (row 4).
    assertRejected(head('Content-Length : 5'), 400, 'H1_INVALID_HEADER_NAME');
  });

  it('row 3: Transfer-Encoding other than exactly "chunked" → 501; with HTTP/1.0 → 400', () => {
    for (const te of ['gzip, chunked', 'chunkedx', 'chunked, chunked', 'identity', 'chunked;q=1', 'x chunked', 'chunked\r\nTransfer-Encoding: chunked']) {
      assertRejected(`POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ${te}\r\n\r\n0\r\n\r\n`, 501, 'H1_UNSUPPORTED_TRANSFER_ENCODING');
    }
    assertRejected('POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400, 'H1_TRANSFER_ENCODING_HTTP10');
  });

  it('row 4: obs-fold, whitespace before colon, bare LF or CR → 400', () => {
    assertRejected('GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n  folded\r\n\r\n', 400, 'H1_OBS_FOLD');
    assertRejected('GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n\tfolded\r\n\r\n', 400, 'H1_OBS_FOLD');
    assertRejected('GET / HTTP/1.1\r\n Host: a\r\n\r\n', 400, 'H1_OBS_FOLD');
    assertRejected('GET / HTTP/1.1\r\nHost : a\r\n\r\n', 400, 'H1_INVALID_HEADER_NAME');
    assertRejected('GET / HTTP/1.1\r\nHost\t: a\r\n\r\n', 400, 'H1_INVALID_HEADER_NAME');
    // Bare LF: as the whole framing (never yields CRLFCRLF), in the request-line, in a header, at the end.
    assertRejected('GET / HTTP/1.1\nHost: a\n\n', 400, 'H1_BARE_LF');
    assertRejected('GET / HTTP/1.1\nHost: a\r\n\r\n', 400, 'H1_BARE_LF');
    assertRejected('GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n', 400, 'H1_BARE_LF');
    assertRejected('GET / HTTP/1.1\r\nHost: a\r\n\n', 400, 'H1_BARE_LF');
    assertRejected('GET / HTTP/1.1\r\nHost: a\r\nX\n: b\r\n\r\n', 400, 'H1_BARE_LF');
    // Bare CR.
    assertRejected('GET / HTTP/1.1\rHost: a\r\n\r\n', 400);
    assertRejected('GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n', 400, 'H1_BARE_CR');
    assertRejected('GET / HTTP/1.1\r\nHost: a\r\r\n\r\n', 400, 'H1_BARE_CR');
    assertRejected('GET / HTTP/1.1\r\nHost: a\r\n\r\r\n', 400, 'H1_BARE_CR');
    assertRejected('GET / HTTP/1.1\r\nHost: a\r\r\r\r', 400, 'H1_BARE_CR');
    // Bare CR/LF are reported as soon as they arrive, not when a head that can never complete times out.
    const rec = createRecorder(H1_KIND_REQUEST);
    feed(rec, b('GET / HTTP/1.1\r\nHost: a\nX: '), [5, 17, 25]);
    assert.equal(onlyError(rec).code, 'H1_BARE_LF');
    // ... also for chunked framing lines.
    const sizeLf = req('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n').rec;
    assert.equal(onlyError(sizeLf).code, 'H1_INVALID_CHUNK_SIZE');
    const extLf = req('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;a\nabc\r\n0\r\n\r\n').rec;
    assert.equal(onlyError(extLf).code, 'H1_BARE_LF');
    const chunkLf = req('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n').rec;
    assert.equal(onlyError(chunkLf).code, 'H1_INVALID_CHUNK_END');
    const lastLf = req('POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\n').rec;
    assert.equal(onlyError(lastLf).code, 'H1_BARE_LF');
  });

  it('row 5: NUL, CR or LF in a header name or value; control bytes in the target → 400', () => {
    assertRejected('GET / HTTP/1.1\r\nHost: a\r\nX-A\x00: 1\r\n\r\n', 400, 'H1_INVALID_HEADER_NAME');
    assertRejected('GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x002\r\n\r\n', 400, 'H1_INVALID_HEADER_VALUE');
    assertRejected('GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x00\r\n\r\n', 400, 'H1_INVALID_HEADER_VALUE');
    assertRejected('GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r2\r\n\r\n', 400, 'H1_BARE_CR');
    assertRejected('GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\n2\r\n\r\n', 400, 'H1_BARE_LF');
    assertRejected('GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x7f\r\n\r\n', 400, 'H1_INVALID_HEADER_VALUE');
    assertRejected('GET / HTTP/1.1\r\nHost: a\r\nX-A: \x1b[31m\r\n\r\n', 400, 'H1_INVALID_HEADER_VALUE');
    assertRejected('GET / HTTP/1.1\r\nHost: a\r\n\x00: 1\r\n\r\n', 400, 'H1_INVALID_HEADER_NAME');
    assertRejected('GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n', 400, 'H1_INVALID_HEADER_NAME');
    assertRejected('GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'H1_INVALID_TARGET');
    assertRejected('GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'H1_INVALID_TARGET');
    assertRejected('GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n', 400, 'H1_INVALID_TARGET');
    // HTAB is the one control allowed in a value.
    const { rec } = req('GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\t2\r\n\r\n');
    const e = rec.events[0];
    assert.ok(e.type === 'request');
    assert.equal(e.headers[3], '1\t2');
  });

  it('row 6: head over 60 KiB or more than 100 fields → 431, with bounded buffering', () => {
    const bigValue = 'v'.repeat(61 * 1024);
    assertRejected(`GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${bigValue}\r\n\r\n`, 431, 'H1_HEADERS_TOO_LARGE');
    const fields = (count: number): string => Array.from({ length: count }, (_, i) => `X-${i}: ${i}\r\n`).join('');
    assertRejected(`GET / HTTP/1.1\r\nHost: a\r\n${fields(100)}\r\n`, 431, 'H1_TOO_MANY_HEADERS');
    const ok = req(`GET / HTTP/1.1\r\nHost: a\r\n${fields(99)}\r\n`).rec;
    assert.equal(ok.events[0].type, 'request');
    // Exactly at the byte limit passes, one byte more fails, however the input is split.
    const head = (size: number): string => {
      const base = 'GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n';
      return base.replace('X: ', 'X: ' + 'p'.repeat(size - base.length));
    };
    assert.equal(head(H1_DEFAULT_LIMITS.maxHeaderBytes).length, 60 * 1024);
    for (const cuts of [[], [100], Array.from({ length: 64 }, (_, i) => i * 1000)]) {
      const atLimit = createRecorder(H1_KIND_REQUEST);
      feed(atLimit, b(head(60 * 1024)), cuts);
      assert.equal(atLimit.events[0].type, 'request');
      const over = createRecorder(H1_KIND_REQUEST);
      const input = b(head(60 * 1024 + 1) + 'x'.repeat(100_000));
      const consumed = feed(over, input, cuts);
      assert.equal(onlyError(over).code, 'H1_HEADERS_TOO_LARGE');
      assert.ok(consumed <= 60 * 1024, `consumed ${consumed}: reading stops at the limit`);
    }
    // An endless header line fed in small pieces fails once the limit is crossed (memory stays flat).
    const slow = createRecorder(H1_KIND_REQUEST);
    slow.parser.execute(b('GET / HTTP/1.1\r\nHost: a\r\nX: '));
    let fed = 0;
    const piece = b('a'.repeat(512));
    while (slow.errors === 0 && fed < 200_000) {
      slow.parser.execute(piece);
      fed += piece.length;
    }
    assert.equal(onlyError(slow).status, 431);
    assert.ok(fed <= 60 * 1024, `fed ${fed}`);
    // Limits are configurable.
    assertRejected('GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\r\n', 431, 'H1_TOO_MANY_HEADERS', { maxHeadersCount: 1 });
    assertRejected('GET / HTTP/1.1\r\nHost: a\r\n\r\n', 431, 'H1_HEADERS_TOO_LARGE', { maxHeaderBytes: 20 });
  });

  it('row 7: chunk-extension flood → 413; chunk-size overflow → 400', () => {
    const chunkedHead = 'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n';
    const flood = chunkedHead + '1;' + 'a'.repeat(20_000) + '\r\nx\r\n0\r\n\r\n';
    const { rec, n } = req(flood);
    assert.deepEqual(onlyError(rec), { status: 413, code: 'H1_CHUNK_EXTENSION_TOO_LARGE' });
    assert.ok(n <= chunkedHead.length + 2 + 16 * 1024, `read ${n} bytes: bounded`);
    // Many small extensions add up per message.
    const many = chunkedHead + '1;e=1\r\nx\r\n'.repeat(5000) + '0\r\n\r\n';
    assert.deepEqual(onlyError(req(many).rec), { status: 413, code: 'H1_CHUNK_EXTENSION_TOO_LARGE' });
    // ... and the same flood split byte by byte is stopped just as early.
    const split = createRecorder(H1_KIND_REQUEST);
    const consumed = feed(split, b(flood), Array.from({ length: 20_000 }, (_, i) => chunkedHead.length + i * 7));
    assert.equal(onlyError(split).status, 413);
    assert.ok(consumed <= chunkedHead.length + 2 + 16 * 1024);

    for (const size of ['20000000000000', '1' + '0'.repeat(16), '0'.repeat(17) + '1', 'ffffffffffffffff']) {
      assert.deepEqual(onlyError(req(chunkedHead + size + '\r\n').rec), { status: 400, code: 'H1_CHUNK_SIZE_OVERFLOW' }, size);
    }
    // 2^53 - 1 is the largest size accepted.
    const big = req(chunkedHead + '1fffffffffffff\r\nabc').rec;
    assert.deepEqual(
      big.events.map((e) => e.type),
      ['request', 'body'],
    );
    for (const bad of ['\r\n', 'x\r\n', '-1\r\n', ' 1\r\nx\r\n', '1 \r\nx\r\n', '0x1\r\nx\r\n', '1;\r\nx\r\n', '1;=a\r\nx\r\n', '1;a="x\r\nx\r\n', '1;a=\x01\r\nx\r\n']) {
      const r = req(chunkedHead + bad).rec;
      const err = onlyError(r);
      assert.equal(err.status, 400, JSON.stringify(bad));
    }
  });

  it('row 8: a pipelined request after a rejected one is never parsed; two Host headers → 400', () => {
    const input = 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n';
    assertRejected(input, 400, 'H1_DUPLICATE_HOST');
    assertRejected('GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n', 400, 'H1_DUPLICATE_HOST');
    assertRejected('GET / HTTP/1.1\r\nX: 1\r\n\r\n', 400, 'H1_MISSING_HOST');
    // HTTP/1.0 does not require Host.
    assert.equal(req('GET / HTTP/1.0\r\n\r\n').rec.events[0].type, 'request');
    // A valid first request is delivered, the bad second one stops the connection.
    const { rec } = req('GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nxGET /3 HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.deepEqual(
      rec.events.map((e) => e.type),
      ['request', 'complete', 'error'],
    );
  });
});

describe('H1Parser responses', () => {
  const bodyOf = (events: H1Event[]): string =>
    events
      .filter((e) => e.type === 'body')
      .map((e) => (e.type === 'body' ? e.data : ''))
      .join('');

  it('parses a Content-Length response', () => {
    const text = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello';
    const { rec, n } = res(text);
    assert.equal(n, text.length);
    assert.deepEqual(rec.events[0], {
      type: 'response',
      status: 200,
      reason: 'OK',
      versionMinor: 1,
      headers: ['content-type', 'text/plain', 'content-length', '5'],
      bodyKind: 'length',
      contentLength: 5,
      keepAlive: true,
      upgrade: false,
    });
    assert.equal(bodyOf(rec.events), 'hello');
    assert.equal(rec.events.at(-1)?.type, 'complete');
  });

  it('parses chunked responses, including "gzip, chunked" codings', () => {
    const { rec } = res('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n');
    assert.ok(rec.events[0].type === 'response' && rec.events[0].bodyKind === 'chunked');
    assert.equal(bodyOf(rec.events), 'ok');
    assert.equal(rec.events.at(-1)?.type, 'complete');
  });

  it('reads a body without framing until EOF, and not keep-alive', () => {
    const { rec } = res('HTTP/1.1 200 OK\r\nServer: x\r\n\r\npart1');
    rec.parser.execute(b('part2'));
    const head = rec.events[0];
    assert.ok(head.type === 'response');
    assert.deepEqual([head.bodyKind, head.contentLength, head.keepAlive], ['eof', -1, false]);
    assert.equal(rec.events.at(-1)?.type, 'body');
    rec.parser.finish();
    assert.equal(bodyOf(rec.events), 'part1part2');
    assert.deepEqual(rec.events.at(-1), { type: 'complete', trailers: null });
    // A transfer coding without chunked is also close-delimited (RFC 9112 §6.3 rule 4).
    const gz = res('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz').rec;
    assert.ok(gz.events[0].type === 'response' && gz.events[0].bodyKind === 'eof');
  });

  it('HEAD, 204 and 304 responses have no body even with Content-Length', () => {
    const head = res('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n', 'HEAD').rec;
    assert.deepEqual(
      head.events.map((e) => (e.type === 'response' ? `${e.status} ${e.bodyKind}` : e.type)),
      ['200 none', 'complete', '204 none', 'complete'],
    );
    const notModified = res('HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: "x"\r\n\r\n').rec;
    assert.deepEqual(
      notModified.events.map((e) => e.type),
      ['response', 'complete'],
    );
  });

  it('the HEAD context applies to one response only', () => {
    const { rec } = res('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc', 'HEAD');
    assert.deepEqual(
      mergeBodies(rec.events).map((e) => (e.type === 'response' ? e.bodyKind : e.type === 'body' ? e.data : e.type)),
      ['none', 'complete', 'length', 'abc', 'complete'],
    );
  });

  it('100-continue and 103 are interim: the final response follows', () => {
    const { rec } = res('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok', 'HEAD');
    assert.deepEqual(
      rec.events.map((e) => (e.type === 'response' ? `${e.status} ${e.bodyKind}` : e.type)),
      ['100 none', '103 none', '200 none', 'complete'],
      'interim heads have no onMessageComplete; the HEAD context survives them',
    );
  });

  it('101 Switching Protocols stops the parser: the rest is tunnel data', () => {
    const head = 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n';
    const { rec, n } = res(head + '\x81\x02hi');
    assert.equal(n, head.length);
    assert.ok(rec.events[0].type === 'response' && rec.events[0].upgrade);
    assert.equal(rec.events.length, 1);
  });

  it('a 2xx answer to CONNECT is a tunnel; a 407 is an ordinary response', () => {
    const head = 'HTTP/1.1 200 Connection Established\r\n\r\n';
    const { rec, n } = res(head + 'tls bytes', 'CONNECT');
    assert.equal(n, head.length);
    assert.ok(rec.events[0].type === 'response' && rec.events[0].upgrade);
    const denied = res('HTTP/1.1 407 Proxy Auth\r\nContent-Length: 1\r\n\r\nx', 'CONNECT').rec;
    assert.deepEqual(
      denied.events.map((e) => e.type),
      ['response', 'body', 'complete'],
    );
  });

  it('HTTP/1.0 responses: keep-alive only when asked', () => {
    const plain = res('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n').rec.events[0];
    assert.ok(plain.type === 'response' && !plain.keepAlive && plain.versionMinor === 0);
    const ka = res('HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n').rec.events[0];
    assert.ok(ka.type === 'response' && ka.keepAlive);
  });

  it('accepts an empty reason phrase with or without its SP', () => {
    for (const line of ['HTTP/1.1 200 ', 'HTTP/1.1 200']) {
      const e = res(`${line}\r\nContent-Length: 0\r\n\r\n`).rec.events[0];
      assert.ok(e.type === 'response' && e.status === 200 && e.reason === '', line);
    }
  });

  it('rejects malformed responses and ambiguous framing', () => {
    const bad = (text: string, code: string): void => {
      const { rec } = res(text);
      assert.equal(onlyError(rec).code, code, text);
      assert.equal(rec.events.filter((e) => e.type === 'response').length, 0);
    };
    bad('HTTP/1.1 20 OK\r\n\r\n', 'H1_INVALID_STATUS_LINE');
    bad('HTTP/1.1 20\r\n\r\n', 'H1_INVALID_STATUS_LINE');
    bad('HTTP/1\r\n\r\n', 'H1_INVALID_STATUS_LINE');
    bad('HTTP/1.1 2000 OK\r\n\r\n', 'H1_INVALID_STATUS_LINE');
    bad('HTTP/1.1 099 OK\r\n\r\n', 'H1_INVALID_STATUS_LINE');
    bad('HTTP/1.1  200 OK\r\n\r\n', 'H1_INVALID_STATUS_LINE');
    bad('HTTP/1.1 200 O\x00K\r\n\r\n', 'H1_INVALID_STATUS_LINE');
    bad('HTTP/2 200 OK\r\n\r\n', 'H1_INVALID_STATUS_LINE');
    bad('ICY 200 OK\r\n\r\n', 'H1_INVALID_STATUS_LINE');
    bad('HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n', 'H1_CONTENT_LENGTH_WITH_TRANSFER_ENCODING');
    bad('HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n', 'H1_DUPLICATE_CONTENT_LENGTH');
    bad('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n', 'H1_INVALID_TRANSFER_ENCODING');
    bad('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n', 'H1_INVALID_TRANSFER_ENCODING');
    bad('HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', 'H1_TRANSFER_ENCODING_HTTP10');
    bad('HTTP/1.1 200 OK\nContent-Length: 0\n\n', 'H1_BARE_LF');
    bad('\r\nHTTP/1.1 200 OK\r\n\r\n', 'H1_INVALID_STATUS_LINE');
  });

  it('refuses framing fields in trailers and bounds trailer sections', () => {
    const { rec } = res('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n');
    assert.equal(onlyError(rec).code, 'H1_INVALID_TRAILER');
    const many = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n' + 'T: 1\r\n'.repeat(101) + '\r\n';
    assert.equal(onlyError(res(many).rec).status, 431);
    const folded = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\r\n 2\r\n\r\n';
    assert.equal(onlyError(res(folded).rec).code, 'H1_OBS_FOLD');
  });

  it('finish() mid-body is an error; after a Content-Length body it is clean', () => {
    const partial = res('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab').rec;
    partial.parser.finish();
    assert.equal(onlyError(partial).code, 'H1_UNEXPECTED_EOF');
    const chunked = res('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab').rec;
    chunked.parser.finish();
    assert.equal(onlyError(chunked).code, 'H1_UNEXPECTED_EOF');
    const done = res('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab').rec;
    done.parser.finish();
    assert.equal(done.errors, 0);
  });
});
