/**
 * Deterministic fuzzing of the HTTP/1.1 parser: mutated requests and responses (seeded PRNG, so a failure
 * reproduces; the failing input is printed as hex). Properties checked for every input:
 * - execute()/finish() never throw and execute() never reports more bytes than it was given;
 * - at most one onError, and no event after it;
 * - events follow the message grammar (head, body*, complete; interim 1xx heads alone; nothing after an
 *   upgrade head), and after finish() every message has either completed or an error was reported;
 * - a Content-Length body never delivers more bytes than announced, and exactly that many when complete;
 *   a bodyless message delivers none;
 * - split invariance: the same input fed in random pieces (or byte by byte) yields the same events as fed
 *   whole (body chunks merged; errors compared as "an error", since which check fires first may depend on
 *   how much of the head has arrived).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { H1_KIND_REQUEST, H1_KIND_RESPONSE, type H1Kind } from './parser.ts';
import { createRecorder, mergeBodies, type H1Event, type Recorder } from './testing.ts';

const SEED = 0x5100b;
const CASES_PER_KIND = 6000;

/** mulberry32: small, fast, good enough for fuzzing, and deterministic. */
function createRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const REQUEST_CORPUS = [
  'GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nUser-Agent: fuzz\r\nAccept: */*\r\n\r\n',
  'POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /n HTTP/1.1\r\nHost: a\r\n\r\n',
  'POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\na\r\n0123456789\r\n0\r\nT: 1\r\n\r\n',
  'PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n',
  'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /2 HTTP/1.0\r\n\r\n',
  'GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00',
  'CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n\x16\x03',
  'OPTIONS * HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n\r\nGET http://x.test/ HTTP/1.1\r\nHost: x.test\r\n\r\n',
];

const RESPONSE_CORPUS = [
  'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhelloHTTP/1.1 204 No Content\r\n\r\n',
  'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;e\r\nhello\r\n0\r\nGrpc-Status: 0\r\n\r\n',
  'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok',
  'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nread until eof',
  'HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc',
  'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x00',
  'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: 10\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n',
];

/** Fragments that sit on parser decision points. */
const INTERESTING = [
  '\r\n', '\n', '\r', ' ', '\t', ':', '\0', ',', ';', '=', '"', '\\', '0', 'f', 'F', '\x7f', '\xff', '\r\n\r\n',
  'Transfer-Encoding: chunked\r\n', 'Content-Length: 3\r\n', 'Content-Length: 99999999999999999\r\n',
  'Host: b\r\n', 'Connection: close\r\n', 'Connection: upgrade\r\nUpgrade: x\r\n', ' chunked', '0\r\n\r\n',
  'ffffffffffffffffff', 'HTTP/1.1 ', 'GET / HTTP/1.1\r\n',
];

function mutate(rand: () => number, input: string): Buffer {
  let bytes = Buffer.from(input, 'latin1');
  const ops = 1 + Math.floor(rand() * 4);
  for (let k = 0; k < ops; k++) {
    const at = Math.floor(rand() * (bytes.length + 1));
    const roll = rand();
    if (roll < 0.25) {
      if (bytes.length > 0) bytes[Math.min(at, bytes.length - 1)] = Math.floor(rand() * 256);
    } else if (roll < 0.55) {
      const frag = Buffer.from(INTERESTING[Math.floor(rand() * INTERESTING.length)], 'latin1');
      bytes = Buffer.concat([bytes.subarray(0, at), frag, bytes.subarray(at)]);
    } else if (roll < 0.75) {
      const len = Math.floor(rand() * 8);
      bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(Math.min(bytes.length, at + len))]);
    } else if (roll < 0.9) {
      const len = Math.floor(rand() * 40);
      bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at, at + len), bytes.subarray(at)]);
    } else {
      bytes = bytes.subarray(0, at);
    }
  }
  return bytes;
}

/** Feeds the input, then finish(); asserts the per-run invariants; returns the recorder. */
function run(kind: H1Kind, context: string, input: Buffer, cuts: number[]): Recorder {
  const rec = createRecorder(kind, { maxHeaderBytes: 512, maxHeadersCount: 12, maxChunkExtBytes: 64 });
  if (kind === H1_KIND_RESPONSE) rec.parser.setResponseContext(context);
  // A parser stopped after an upgrade head must stay stopped: count what later execute() calls consume.
  let start = 0;
  const bounds = [...cuts.filter((c) => c > 0 && c < input.length), input.length];
  let stopped = false;
  for (const stop of bounds) {
    if (stop <= start) continue;
    const chunk = input.subarray(start, stop);
    const n = rec.parser.execute(chunk);
    assert.ok(n >= 0 && n <= chunk.length, `execute returned ${n} for ${chunk.length} bytes`);
    if (stopped) assert.equal(n, 0, 'a stopped parser consumed input');
    start += n;
    if (n < chunk.length) {
      stopped = true;
      start = stop;
    }
  }
  rec.parser.finish();
  checkGrammar(rec);
  return rec;
}

function checkGrammar(rec: Recorder): void {
  assert.ok(rec.errors <= 1, 'more than one onError');
  assert.equal(rec.eventsAfterError, 0, 'events after onError');
  let inMessage = false;
  let bodyKind = 'none';
  let announced = 0;
  let received = 0;
  let upgraded = false;
  for (const e of rec.events) {
    assert.ok(!upgraded || e.type === 'error', `event after an upgrade head: ${e.type}`);
    if (e.type === 'request' || e.type === 'response') {
      assert.ok(!inMessage, 'head inside a message');
      if (e.upgrade) {
        upgraded = true;
        continue;
      }
      if (e.type === 'response' && e.status < 200) continue; // interim
      inMessage = true;
      bodyKind = e.bodyKind;
      announced = e.contentLength;
      received = 0;
      if (e.bodyKind === 'length') assert.ok(e.contentLength >= 0);
      else if (e.bodyKind === 'none') assert.equal(e.contentLength, 0);
      else assert.equal(e.contentLength, -1);
    } else if (e.type === 'body') {
      assert.ok(inMessage, 'body outside a message');
      assert.notEqual(bodyKind, 'none', 'body for a bodyless message');
      assert.ok(e.data.length > 0, 'empty body chunk');
      received += e.data.length;
      if (bodyKind === 'length') assert.ok(received <= announced, `body ${received} > Content-Length ${announced}`);
    } else if (e.type === 'complete') {
      assert.ok(inMessage, 'complete outside a message');
      if (bodyKind === 'length') assert.equal(received, announced, 'complete before the announced length');
      inMessage = false;
    }
  }
  // After finish(): everything completed, or the connection was upgraded, or an error was reported.
  assert.ok(!inMessage || rec.errors === 1, 'message neither completed nor failed at EOF');
}

/** Events for comparison across splits: bodies merged, errors reduced to "an error". */
function normalized(events: readonly H1Event[]): unknown[] {
  return mergeBodies(events).map((e) => (e.type === 'error' ? { type: 'error' } : e));
}

function randomCuts(rand: () => number, length: number): number[] {
  if (rand() < 0.1) return Array.from({ length }, (_, i) => i); // byte by byte
  const n = 1 + Math.floor(rand() * 6);
  return Array.from({ length: n }, () => Math.floor(rand() * length)).sort((a, b) => a - b);
}

function fuzz(kind: H1Kind, corpus: readonly string[], seed: number): void {
  const rand = createRandom(seed);
  const contexts = ['GET', 'GET', 'HEAD', 'CONNECT'];
  let errors = 0;
  let completes = 0;
  for (let n = 0; n < CASES_PER_KIND; n++) {
    const base = corpus[Math.floor(rand() * corpus.length)];
    const input = rand() < 0.05 ? Buffer.from(base, 'latin1') : mutate(rand, base);
    const context = contexts[Math.floor(rand() * contexts.length)];
    const cuts = randomCuts(rand, input.length);
    try {
      const whole = run(kind, context, input, []);
      const split = run(kind, context, input, cuts);
      assert.deepEqual(normalized(split.events), normalized(whole.events), 'split changed the events');
      errors += whole.errors;
      completes += whole.events.filter((e) => e.type === 'complete').length;
    } catch (err) {
      const detail = `case ${n} kind ${kind} context ${context} input(hex) ${input.toString('hex')} cuts ${JSON.stringify(cuts)}`;
      throw new Error(`${(err as Error).message}\n${detail}`, { cause: err });
    }
  }
  // The corpus and mutations must exercise both outcomes, or the fuzzer is not testing anything.
  assert.ok(errors > CASES_PER_KIND / 10, `only ${errors} errors`);
  assert.ok(completes > CASES_PER_KIND / 10, `only ${completes} completed messages`);
}

describe('H1Parser fuzz', () => {
  it(`requests: ${CASES_PER_KIND} mutated inputs, whole and split`, () => {
    fuzz(H1_KIND_REQUEST, REQUEST_CORPUS, SEED);
  });

  it(`responses: ${CASES_PER_KIND} mutated inputs, whole and split`, () => {
    fuzz(H1_KIND_RESPONSE, RESPONSE_CORPUS, SEED + 1);
  });

  it('survives random bytes after a valid head prefix', () => {
    const rand = createRandom(SEED + 2);
    for (let n = 0; n < 1000; n++) {
      const len = Math.floor(rand() * 200);
      const noise = Buffer.from(Array.from({ length: len }, () => Math.floor(rand() * 256)));
      const kind = n % 2 === 0 ? H1_KIND_REQUEST : H1_KIND_RESPONSE;
      const prefix = Buffer.from(kind === H1_KIND_REQUEST ? 'POST / HTTP/1.1\r\nHost: a\r\n' : 'HTTP/1.1 200 OK\r\n', 'latin1');
      const input = Buffer.concat([prefix, noise]);
      const whole = run(kind, 'GET', input, []);
      const split = run(kind, 'GET', input, randomCuts(rand, input.length));
      assert.deepEqual(normalized(split.events), normalized(whole.events));
    }
  });
});
