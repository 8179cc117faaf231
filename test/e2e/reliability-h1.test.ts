// RELIABILITY rows 1–8 and 16 through `sloop proxy`, as raw bytes: request smuggling shapes, bad framing,
// header limits (Envoy: max_request_headers_kb 60, max_headers_count 100), pipelining after an error, and
// slowloris against the HCM's request_headers_timeout / request_timeout / stream_idle_timeout.
// Every rejection must close the connection and reach NOTHING upstream.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHttpUpstream, type HttpUpstream } from '../helpers/upstreams.ts';
import { startProxy, bootstrapWith, httpListener, staticCluster, virtualHost, prefixRoute, type ProxyHandle } from '../helpers/proxy.ts';
import { rawHttp, rawTcp } from '../helpers/clients.ts';
import { freePorts } from '../helpers/ports.ts';
import { createServer, type Server, type Socket } from 'node:net';

/**
 * node:http caps heads at 16 KiB, so heads near Envoy's 60 KiB limit go to this bare upstream: it reads a
 * head, records its size and first line, and answers 200.
 */
async function startBigHeadUpstream(): Promise<{ port: number; heads: Array<{ line: string; bytes: number }>; close(): Promise<void> }> {
  const heads: Array<{ line: string; bytes: number }> = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      heads.push({ line: buf.toString('latin1', 0, buf.indexOf('\r\n')), bytes: end + 4 });
      buf = buf.subarray(end + 4);
      s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    heads,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

const H = 'Host: svc.local\r\n';

/** [name, raw request, accepted statuses] — each must be rejected before anything reaches the upstream. */
const MALFORMED: ReadonlyArray<readonly [string, string, readonly number[]]> = [
  // Row 1: CL + TE is the classic smuggling vector (RFC 9112 §6.1: a server MAY reject; a proxy must not forward both).
  ['row 1: content-length with transfer-encoding chunked', `POST /x HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, [400]],
  ['row 1: transfer-encoding then content-length', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`, [400]],
  // Row 2: RFC 9112 §6.3 rule 5: conflicting or invalid Content-Length is unrecoverable.
  ['row 2: duplicate conflicting content-length', `POST /x HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`, [400]],
  ['row 2: content-length +5', `POST /x HTTP/1.1\r\n${H}Content-Length: +5\r\n\r\nhello`, [400]],
  ['row 2: content-length "5 5"', `POST /x HTTP/1.1\r\n${H}Content-Length: 5 5\r\n\r\nhello`, [400]],
  ['row 2: content-length 5,6', `POST /x HTTP/1.1\r\n${H}Content-Length: 5,6\r\n\r\nhello!`, [400]],
  ['row 2: content-length -1', `POST /x HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\n`, [400]],
  ['row 2: content-length overflow', `POST /x HTTP/1.1\r\n${H}Content-Length: 99999999999999999999999\r\n\r\n`, [400]],
  // Row 3: only "chunked" (last) is a framing we can proxy (Envoy answers 501 for other codings).
  ['row 3: transfer-encoding gzip, chunked', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`, [400, 501]],
  ['row 3: transfer-encoding chunkedx', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunkedx\r\n\r\n0\r\n\r\n`, [400, 501]],
  ['row 3: transfer-encoding chunked, chunked', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n`, [400, 501]],
  ['row 3: transfer-encoding on HTTP/1.0', `POST /x HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, [400, 501]],
  // Row 4: RFC 9112 §5.2 (obs-fold), §5.1 (no whitespace before the colon), §2.2 (bare CR).
  ['row 4: obs-fold', `GET /x HTTP/1.1\r\n${H}X-Folded: a\r\n b\r\n\r\n`, [400]],
  ['row 4: space before colon', `GET /x HTTP/1.1\r\n${H}X-Bad : v\r\n\r\n`, [400]],
  ['row 4: bare LF line endings', `GET /x HTTP/1.1\n${H.replace('\r\n', '\n')}\n`, [400]],
  ['row 4: bare CR in a header line', `GET /x HTTP/1.1\r\n${H}X-A: 1\rX-B: 2\r\n\r\n`, [400]],
  // Row 5: RFC 9110 §5.5: NUL, CR and LF are never valid in a field.
  ['row 5: NUL in a header value', `GET /x HTTP/1.1\r\n${H}X-Nul: a\0b\r\n\r\n`, [400]],
  ['row 5: NUL in a header name', `GET /x HTTP/1.1\r\n${H}X-N\0ul: v\r\n\r\n`, [400]],
  ['row 5: NUL in the request target', `GET /x\0y HTTP/1.1\r\n${H}\r\n`, [400]],
  // Row 7: chunk-size overflow (a 64-bit wrap would desync framing) and malformed chunks.
  ['row 7: chunk-size overflow', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff1\r\nabc\r\n0\r\n\r\n`, [400, 413]],
  ['row 7: non-hex chunk size', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`, [400]],
  // Row 8: RFC 9112 §3.2: more than one Host is a 400.
  ['row 8: two Host headers', `GET /x HTTP/1.1\r\n${H}Host: other.local\r\n\r\n`, [400]],
  ['row 8: missing Host on HTTP/1.1', `GET /x HTTP/1.1\r\nX-A: 1\r\n\r\n`, [400]],
  ['invalid method token', `G(T /x HTTP/1.1\r\n${H}\r\n`, [400]],
  ['HTTP/2.0 version on an h1 connection', `GET /x HTTP/2.0\r\n${H}\r\n`, [400, 505]],
];

describe('HTTP/1.1 robustness (RELIABILITY rows 1–8, 16)', () => {
  let up: HttpUpstream;
  let bigUp: Awaited<ReturnType<typeof startBigHeadUpstream>>;
  let proxy: ProxyHandle;
  let port: number;
  let smallPort: number;
  let slowPort: number;
  let idlePort: number;

  before(async () => {
    up = await startHttpUpstream({ name: 'a' });
    bigUp = await startBigHeadUpstream();
    const [p, small, slow, idle, admin] = await freePorts(5);
    port = p;
    smallPort = small;
    slowPort = slow;
    idlePort = idle;
    const vh = [virtualHost('svc', ['*'], [prefixRoute('/big/', 'big'), prefixRoute('/', 'a')])];
    proxy = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [
          httpListener({ name: 'edge', port, virtualHosts: vh }),
          httpListener({
            name: 'small',
            port: smallPort,
            virtualHosts: vh,
            hcmExtra: { max_request_headers_kb: 4, common_http_protocol_options: { max_headers_count: 10 } },
          }),
          // Slowloris guards: the header timer and the whole-request timer.
          httpListener({ name: 'slow', port: slowPort, virtualHosts: vh, hcmExtra: { request_headers_timeout: '0.3s', request_timeout: '0.6s' } }),
          httpListener({ name: 'idle', port: idlePort, virtualHosts: vh, hcmExtra: { stream_idle_timeout: '0.3s' } }),
        ],
        clusters: [staticCluster('a', [['127.0.0.1', up.port]]), staticCluster('big', [['127.0.0.1', bigUp.port]])],
      }),
    );
  });

  after(async () => {
    await proxy?.stop();
    await up?.close();
    await bigUp?.close();
  });

  for (const [name, bytes, statuses] of MALFORMED) {
    it(`${name} → ${statuses.join('/')}, closed, nothing upstream`, async () => {
      const seen = up.requests.length;
      const cx = up.connections;
      const before = (await proxy.stats())['http.edge.downstream_cx_protocol_error'] ?? 0;
      const r = await rawHttp(port, bytes, { waitForClose: true });
      assert.ok(r.response, `no response; got ${JSON.stringify(r.text)}`);
      assert.ok(statuses.includes(r.response.status), `status ${r.response.status}, want ${statuses.join('/')}`);
      assert.equal(r.responses.length, 1, 'exactly one response');
      assert.equal(r.response.headerMap['connection'], 'close');
      assert.ok(r.closed, 'proxy closed the connection');
      assert.equal(up.requests.length, seen, 'nothing reached the upstream');
      // Body-framing errors (row 7) come after a valid head: the router may already have opened an upstream
      // connection, as Envoy does, but the request never completes there.
      if (!name.startsWith('row 7')) assert.equal(up.connections, cx, 'no upstream connection was even opened');
      const after = (await proxy.stats())['http.edge.downstream_cx_protocol_error'];
      assert.equal(after, before + 1, 'downstream_cx_protocol_error counted once');
    });
  }

  it('row 6: headers over 60 KiB (Envoy default) → 431, closed, nothing upstream', async () => {
    const seen = up.requests.length;
    const big = `GET /x HTTP/1.1\r\n${H}X-Big: ${'a'.repeat(61 * 1024)}\r\n\r\n`;
    const r = await rawHttp(port, big, { waitForClose: true });
    assert.equal(r.response?.status, 431);
    assert.ok(r.closed);
    assert.equal(up.requests.length, seen);
    assert.equal(bigUp.heads.length, 0);
    // Just under the limit still passes, whole.
    const ok = await rawHttp(port, `GET /big/fits HTTP/1.1\r\n${H}X-Big: ${'a'.repeat(58 * 1024)}\r\nConnection: close\r\n\r\n`, { waitForClose: true });
    assert.equal(ok.response?.status, 200);
    assert.equal(bigUp.heads.at(-1)?.line, 'GET /big/fits HTTP/1.1');
    assert.ok((bigUp.heads.at(-1)?.bytes ?? 0) > 58 * 1024);
    const stats = await proxy.stats();
    assert.ok(stats['http.edge.downstream_rq_too_large'] >= 1);
  });

  it('row 6: a head trickled past the limit is cut off at the limit (bounded reads)', async () => {
    const seen = up.requests.length;
    const parts = [`GET /x HTTP/1.1\r\n${H}`];
    for (let i = 0; i < 70; i++) parts.push(`X-H${i}: ${'b'.repeat(1000)}\r\n`);
    const r = await rawHttp(port, parts, { waitForClose: true });
    assert.equal(r.response?.status, 431);
    assert.ok(r.closed);
    assert.equal(up.requests.length, seen);
  });

  it('row 6: more than 100 headers → 431; exactly 100 passes', async () => {
    const seen = up.requests.length;
    const headers = (n: number): string => Array.from({ length: n }, (_, i) => `X-H${i}: v\r\n`).join('');
    // Host counts as one header, as in Envoy's codec.
    const r = await rawHttp(port, `GET /x HTTP/1.1\r\n${H}${headers(101)}\r\n`, { waitForClose: true });
    assert.equal(r.response?.status, 431);
    assert.ok(r.closed);
    assert.equal(up.requests.length, seen);
    const ok = await rawHttp(port, `GET /ok100 HTTP/1.1\r\n${H}${headers(98)}Connection: close\r\n\r\n`, { waitForClose: true });
    assert.equal(ok.response?.status, 200);
    assert.equal(up.requests.at(-1)?.url, '/ok100');
    assert.ok((await proxy.stats())['http.edge.downstream_rq_too_many_headers'] >= 0);
  });

  it('row 6: max_request_headers_kb and max_headers_count move the limits', async () => {
    const seen = up.requests.length;
    // 5 KiB passes the default listener but not one limited to 4 KiB.
    const five = `GET /five HTTP/1.1\r\n${H}X-Big: ${'a'.repeat(5 * 1024)}\r\nConnection: close\r\n\r\n`;
    assert.equal((await rawHttp(port, five, { waitForClose: true })).response?.status, 200);
    const small = await rawHttp(smallPort, five, { waitForClose: true });
    assert.equal(small.response?.status, 431);
    assert.ok(small.closed);
    // 12 headers pass the default listener but not one limited to 10.
    const many = `GET /many HTTP/1.1\r\n${H}${Array.from({ length: 11 }, (_, i) => `X-H${i}: v\r\n`).join('')}Connection: close\r\n\r\n`;
    assert.equal((await rawHttp(port, many, { waitForClose: true })).response?.status, 200);
    const tooMany = await rawHttp(smallPort, many, { waitForClose: true });
    assert.equal(tooMany.response?.status, 431);
    assert.equal(up.requests.length, seen + 2, 'only the two requests on the default listener arrived');
    const stats = await proxy.stats();
    assert.equal(stats['http.small.downstream_cx_protocol_error'], 2);
  });

  it('row 7: chunk-extension flood → 413/400 with bounded reads, nothing upstream', async () => {
    const seen = up.requests.length;
    // 64 KiB of extension on one chunk line; the parser caps chunk extensions well below that.
    const flood = `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n1;${'e'.repeat(64 * 1024)}\r\na\r\n0\r\n\r\n`;
    const r = await rawHttp(port, flood, { waitForClose: true });
    assert.ok(r.response && [400, 413].includes(r.response.status), `status ${r.response?.status}`);
    assert.ok(r.closed);
    // The request head was valid, so the router may have started an upstream request, but it must never complete
    // with a body the client did not send in full.
    assert.ok(up.requests.slice(seen).every((q) => q.body.length === 0 || q.body.toString() !== 'a'));
  });

  it('row 8: a request pipelined after a rejected one is never processed', async () => {
    const seen = up.requests.length;
    const r = await rawHttp(
      port,
      `GET /bad HTTP/1.1\r\n${H}Content-Length: 1\r\nContent-Length: 2\r\n\r\nGET /smuggled HTTP/1.1\r\n${H}\r\n`,
      { waitForClose: true, responses: 2 },
    );
    assert.equal(r.responses.length, 1, `only the error response: ${r.text}`);
    assert.equal(r.response?.status, 400);
    assert.ok(r.closed);
    assert.equal(up.requests.length, seen);
    assert.ok(!up.requests.some((q) => q.url === '/smuggled'));
  });

  it('row 8: a good request, then a bad one on the same connection: first answered, then 400 and close', async () => {
    const seen = up.requests.length;
    const r = await rawHttp(port, `GET /first HTTP/1.1\r\n${H}\r\nGET /second HTTP/1.1\r\n${H}X: a\0\r\n\r\nGET /third HTTP/1.1\r\n${H}\r\n`, {
      waitForClose: true,
    });
    assert.deepEqual(
      r.responses.map((x) => x.status),
      [200, 400],
    );
    assert.ok(r.closed);
    assert.deepEqual(
      up.requests.slice(seen).map((q) => q.url),
      ['/first'],
    );
  });

  it('row 16: request_headers_timeout closes a client trickling its head (408, nothing upstream)', async () => {
    const seen = up.requests.length;
    const before = (await proxy.stats())['http.slow.downstream_rq_header_timeout'] ?? 0;
    const t0 = performance.now();
    // Half a head, then nothing: a slowloris client.
    const r = await rawHttp(slowPort, `GET /slowloris HTTP/1.1\r\n${H}X-A: 1\r\n`, { waitForClose: true, timeoutMs: 5_000 });
    const elapsed = performance.now() - t0;
    assert.ok(r.closed, 'closed by the proxy, not by the harness timeout');
    assert.ok(elapsed < 4_000, `closed after ${Math.round(elapsed)} ms`);
    assert.equal(r.response?.status, 408);
    assert.equal(r.response?.body.toString(), 'request header timeout');
    assert.equal(up.requests.length, seen);
    const stats = await proxy.stats();
    assert.equal(stats['http.slow.downstream_rq_header_timeout'], before + 1);
  });

  it('row 16: request_timeout ends a request whose body trickles (408 "request timeout")', async () => {
    const before = (await proxy.stats())['http.slow.downstream_rq_timeout'] ?? 0;
    // Headers complete at once, body never finishes.
    const r = await rawHttp(slowPort, `POST /slowbody HTTP/1.1\r\n${H}Content-Length: 100\r\n\r\nabc`, { waitForClose: true, timeoutMs: 5_000 });
    assert.ok(r.closed);
    assert.equal(r.response?.status, 408);
    assert.equal(r.response?.body.toString(), 'request timeout');
    assert.equal(r.response?.headerMap['connection'], 'close');
    assert.ok(!up.requests.some((q) => q.url === '/slowbody'), 'the incomplete request never completed upstream');
    const stats = await proxy.stats();
    assert.equal(stats['http.slow.downstream_rq_timeout'], before + 1);
  });

  it('row 16: request_headers_timeout does not touch a healthy keep-alive connection between requests', async () => {
    // Two requests 0.5 s apart (longer than the 0.3 s header timeout) on one connection: the timer
    // only runs while a head is incomplete.
    const { connect } = await import('node:net');
    const sock = connect(slowPort, '127.0.0.1');
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    await new Promise((r) => sock.once('connect', r));
    sock.write(`GET /ka1 HTTP/1.1\r\n${H}\r\n`);
    await new Promise((r) => setTimeout(r, 500));
    sock.write(`GET /ka2 HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
    await new Promise((r) => sock.once('close', r));
    const text = Buffer.concat(chunks).toString('latin1');
    assert.equal((text.match(/HTTP\/1\.1 200/g) ?? []).length, 2, text);
  });

  it('row 16: stream_idle_timeout ends a stalled request: 408 before the request completes', async () => {
    const before = (await proxy.stats())['http.idle.downstream_rq_idle_timeout'] ?? 0;
    const r = await rawHttp(idlePort, `POST /stall HTTP/1.1\r\n${H}Content-Length: 10\r\n\r\nab`, { waitForClose: true, timeoutMs: 5_000 });
    assert.ok(r.closed);
    assert.equal(r.response?.status, 408);
    assert.equal(r.response?.body.toString(), 'stream timeout');
    const stats = await proxy.stats();
    assert.equal(stats['http.idle.downstream_rq_idle_timeout'], before + 1);
  });

  it('row 16: stream_idle_timeout with the request complete and a silent upstream → 504 "stream timeout"', async () => {
    const r = await rawHttp(idlePort, `GET /delay/3000 HTTP/1.1\r\n${H}\r\n`, { timeoutMs: 5_000 });
    // Envoy's maybeRequestTimeoutCode: the client sent everything, so the upstream is the slow one → 504.
    assert.equal(r.response?.status, 504);
    assert.equal(r.response?.body.toString(), 'stream timeout');
  });

  it('row 16: a slowloris connection does not block others, and fds are released', async () => {
    const active = async (): Promise<number> => (await proxy.stats())['http.slow.downstream_cx_active'] ?? 0;
    const base = await active();
    const slow = rawTcp(slowPort, `GET /x HTTP/1.1\r\n`, { waitForClose: true, timeoutMs: 5_000 });
    const fast = await rawHttp(slowPort, `GET /fast HTTP/1.1\r\n${H}Connection: close\r\n\r\n`, { waitForClose: true });
    assert.equal(fast.response?.status, 200);
    const s = await slow;
    assert.ok(s.closed);
    assert.equal(await active(), base);
  });
});
