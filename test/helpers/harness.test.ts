/**
 * Self-test of the e2e harness, without the proxy: real clients (curl, nghttp, h2load, grpc-js, ws, raw
 * sockets) against the harness's own upstreams, the PKI, the parsers, and startProxy against a fake proxy.
 * If this file fails, fix the harness before trusting any test/e2e result.
 */
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { Http2ServerRequest } from 'node:http2';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type protobuf from 'protobufjs';
import { parse as parseYaml } from 'yaml';
import { lookupMessage } from '../../src/xds/protos.ts';
import { CLIENT_SPIFFE_ID, makeTestPki, SERVER_SPIFFE_ID, type TestPki } from './certs.ts';
import { curl, h2load, nghttp, parseHeaderDump, parseHttpResponses, rawHttp, rawTcp, wsExchange } from './clients.ts';
import { freePort, freePorts, LOOPBACK } from './ports.ts';
import {
  bootstrapWith,
  downstreamTls,
  http2ProtocolOptions,
  httpListener,
  prefixRoute,
  startProxy,
  staticCluster,
  tcpProxyListener,
  upstreamTls,
  virtualHost,
  type Json,
} from './proxy.ts';
import { grpcClient, startGrpcUpstream, startHttpUpstream, startTcpEcho, startWsUpstream } from './upstreams.ts';
import { Recorder, waitUntil } from './wait.ts';

const FAKE_PROXY = fileURLToPath(new URL('../fixtures/fake-proxy.ts', import.meta.url));

describe('ports', () => {
  test('freePorts returns distinct ports that can be bound', async () => {
    const ports = await freePorts(5);
    assert.equal(new Set(ports).size, 5);
    const port = await freePort();
    const server = createServer();
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, LOOPBACK, resolve));
    await new Promise((resolve) => server.close(resolve));
  });
});

describe('HTTP/1.1 upstream with curl and raw sockets', () => {
  let up: Awaited<ReturnType<typeof startHttpUpstream>>;
  let base: string;
  before(async () => {
    up = await startHttpUpstream({ name: 'alpha' });
    base = `http://127.0.0.1:${up.port}`;
  });
  after(() => up.close());

  test('echoes method, url, headers and body and records the request', async () => {
    const r = await curl([`${base}/hello?x=1`, '-H', 'X-Custom: one', '-H', 'x-custom: two', '--data-binary', 'payload']);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.status, 200);
    assert.equal(r.httpVersion, '1.1');
    assert.equal(r.headers['x-upstream'], 'alpha');
    const echo = r.json();
    assert.deepEqual([echo.upstream, echo.method, echo.url, echo.body], ['alpha', 'POST', '/hello?x=1', 'payload']);
    assert.equal(echo.headers['x-custom'], 'one, two');
    const rec = up.requests.at(-1)!;
    assert.equal(rec.body.toString(), 'payload');
    assert.equal(rec.httpVersion, '1.1');
    assert.deepEqual(rec.headers.filter(([n]) => n.toLowerCase() === 'x-custom'), [['X-Custom', 'one'], ['x-custom', 'two']]);
    assert.equal(rec.remotePort, r.info.local_port);
  });

  test('special paths: status, bytes, stream, trailers, delay', async () => {
    const s = await curl([`${base}/prefix/status/503`]);
    assert.equal(s.status, 503);
    assert.equal(s.json().url, '/prefix/status/503');
    const noContent = await curl([`${base}/status/204`]);
    assert.equal(noContent.status, 204);
    assert.equal(noContent.body.length, 0);

    const b = await curl([`${base}/bytes/3000`]);
    assert.equal(b.body.length, 3000);
    assert.equal(b.headers['content-length'], '3000');

    const st = await curl([`${base}/stream/4`]);
    assert.equal(st.headers['transfer-encoding'], 'chunked');
    assert.equal(st.text, 'chunk 0\nchunk 1\nchunk 2\nchunk 3\n');

    const t = await curl([`${base}/trailers`]);
    assert.equal(t.text, 'body before trailers\n');
    assert.deepEqual(t.trailers, [['x-trailer', 'yes'], ['x-upstream-trailer', 'alpha']]);

    const started = performance.now();
    const d = await curl([`${base}/delay/150`]);
    assert.equal(d.status, 200);
    assert.ok(performance.now() - started >= 140, 'delay path answered early');
  });

  test('/reset closes the connection without a response', async () => {
    const r = await curl([`${base}/reset`]);
    assert.equal(r.status, 0);
    assert.equal(r.exitCode, 52, `curl: ${r.stderr}`); // CURLE_GOT_NOTHING
    assert.equal(up.requests.at(-1)!.url, '/reset');
  });

  test('rawHttp: pipelined requests share one connection and parse as two responses', async () => {
    const fresh = await startHttpUpstream();
    try {
      const req = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: a\r\n\r\n`;
      const r = await rawHttp(fresh.port, req('/one') + req('/stream/2'), { responses: 2 });
      assert.equal(r.responses.length, 2);
      assert.equal(JSON.parse(r.responses[0].body.toString()).url, '/one');
      assert.equal(r.responses[1].body.toString(), 'chunk 0\nchunk 1\n');
      assert.equal(fresh.connections, 1);
      assert.deepEqual(fresh.requests.map((q) => q.url), ['/one', '/stream/2']);
      assert.equal(new Set(fresh.requests.map((q) => q.remotePort)).size, 1);
    } finally {
      await fresh.close();
    }
  });

  test('rawHttp: a malformed request gets 400 and the connection closes', async () => {
    const r = await rawHttp(up.port, 'GET / HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n', { waitForClose: true });
    assert.equal(r.response?.status, 400);
    assert.equal(r.closed, true);
    assert.equal(r.timedOut, false);
  });

  test('rawHttp: HEAD responses have no body; idle keep-alive hits the timeout cap', async () => {
    const r = await rawHttp(up.port, 'HEAD /bytes/10 HTTP/1.1\r\nHost: a\r\n\r\n', { head: true });
    assert.equal(r.response?.status, 200);
    assert.equal(r.response?.headerMap['content-length'], '10');
    assert.equal(r.response?.body.length, 0);
    const idle = await rawHttp(up.port, 'GET / HTTP/1.1\r\nHost: a\r\n\r\n', { waitForClose: true, timeoutMs: 200 });
    assert.equal(idle.response?.status, 200);
    assert.deepEqual([idle.closed, idle.timedOut], [false, true]);
  });

  test('custom handler sees the recorded request', async () => {
    const custom = await startHttpUpstream({
      handler: (_req, res, rec) => {
        res.setHeader('x-len', String(rec.body.length));
        res.statusCode = 201;
        res.end('custom');
      },
    });
    try {
      const r = await curl([`http://127.0.0.1:${custom.port}/`, '-d', 'abcd']);
      assert.deepEqual([r.status, r.headers['x-len'], r.text], [201, '4', 'custom']);
    } finally {
      await custom.close();
    }
  });
});

describe('h2c upstream with curl, nghttp and h2load', () => {
  let up: Awaited<ReturnType<typeof startHttpUpstream>>;
  let base: string;
  before(async () => {
    up = await startHttpUpstream({ name: 'h2', h2: true });
    base = `http://127.0.0.1:${up.port}`;
  });
  after(() => up.close());

  test('prior-knowledge h2 and HTTP/1.1 on the same port', async () => {
    const h2 = await curl(['--http2-prior-knowledge', `${base}/x`, '-d', 'hi']);
    assert.equal(h2.exitCode, 0, h2.stderr);
    assert.equal(h2.httpVersion, '2');
    assert.equal(h2.json().httpVersion, '2.0');
    assert.equal(h2.json().body, 'hi');
    const rec = up.requests.at(-1)!;
    assert.ok(rec.headers.some(([n, v]) => n === ':path' && v === '/x'), 'h2 pseudo-headers recorded');
    const h1 = await curl([`${base}/y`]);
    assert.equal(h1.httpVersion, '1.1');
    assert.equal(h1.json().httpVersion, '1.1');
  });

  test('nghttp: headers, trailers, stream reset', async () => {
    const r = await nghttp([`${base}/trailers`, '-H', 'x-a: b']);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-upstream'], 'h2');
    assert.deepEqual(r.streams[0].trailers, [['x-trailer', 'yes'], ['x-upstream-trailer', 'h2']]);
    assert.equal(up.requests.at(-1)!.headerMap['x-a'], 'b');

    const reset = await nghttp([`${base}/reset`]);
    assert.equal(reset.status, 0);
    assert.equal(reset.streams[0]?.resetCode, 'INTERNAL_ERROR');
  });

  test('nghttp reports the server SETTINGS; h2Settings sets them', async () => {
    const limited = await startHttpUpstream({ h2: true, h2Settings: { maxConcurrentStreams: 7 } });
    try {
      const r = await nghttp([`http://127.0.0.1:${limited.port}/`]);
      assert.equal(r.serverSettings.SETTINGS_MAX_CONCURRENT_STREAMS, 7);
      assert.equal(r.goaway, undefined);
    } finally {
      await limited.close();
    }
  });

  test('nghttp reports a GOAWAY with its error code', async () => {
    const calm = await startHttpUpstream({
      h2: true,
      handler: (req, res) => {
        res.end('bye');
        // ENHANCE_YOUR_CALM (0xb), RFC 9113 §7: an unusual code, so the parse cannot pass by accident.
        (req as Http2ServerRequest).stream.session?.goaway(0xb);
      },
    });
    try {
      const r = await nghttp([`http://127.0.0.1:${calm.port}/`]);
      assert.equal(r.status, 200);
      assert.equal(r.goaway, 'ENHANCE_YOUR_CALM');
    } finally {
      await calm.close();
    }
  });

  test('h2load: all requests succeed over few connections', async () => {
    const before = up.connections;
    const r = await h2load(['-n', '40', '-c', '2', '-m', '4', `${base}/status/201`]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.deepEqual([r.total, r.succeeded, r.failed, r.errored], [40, 40, 0, 0]);
    assert.equal(r.status['2xx'], 40);
    assert.ok(r.reqPerSec > 0);
    assert.equal(up.connections - before, 2);
  });
});

describe('TLS with the test PKI', () => {
  let pki: TestPki;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sloop-harness-pki-'));
    pki = await makeTestPki(dir);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('certificates carry the promised SANs and chains', () => {
    const ca = new X509Certificate(pki.ca.cert);
    const otherCa = new X509Certificate(pki.otherCa.cert);
    const server = new X509Certificate(pki.server.cert);
    const client = new X509Certificate(pki.client.cert);
    const other = new X509Certificate(pki.other.cert);
    assert.ok(ca.ca && otherCa.ca && !server.ca);
    assert.equal(server.subjectAltName, `DNS:localhost, DNS:*.example.com, IP Address:127.0.0.1, URI:${SERVER_SPIFFE_ID}`);
    assert.equal(client.subjectAltName, `URI:${CLIENT_SPIFFE_ID}`);
    assert.ok(server.verify(ca.publicKey) && client.verify(ca.publicKey));
    assert.ok(other.verify(otherCa.publicKey));
    assert.equal(other.verify(ca.publicKey), false);
    assert.ok(server.checkPrivateKey(createPrivateKey(pki.server.key)));
  });

  test('https upstream: curl verifies with --cacert, --resolve and wildcard SAN; refuses without', async () => {
    const up = await startHttpUpstream({ tls: { key: pki.server.key, cert: pki.server.cert } });
    try {
      const ok = await curl(['--cacert', pki.ca.certPath, `https://localhost:${up.port}/`]);
      assert.equal(ok.status, 200, ok.stderr);
      const wildcard = await curl(['--cacert', pki.ca.certPath, '--resolve', `api.example.com:${up.port}:127.0.0.1`, `https://api.example.com:${up.port}/`]);
      assert.equal(wildcard.status, 200, wildcard.stderr);
      const untrusted = await curl([`https://localhost:${up.port}/`]);
      assert.equal(untrusted.exitCode, 60); // CURLE_PEER_FAILED_VERIFICATION
      const insecure = await curl(['-k', `https://localhost:${up.port}/`]);
      assert.equal(insecure.status, 200);
    } finally {
      await up.close();
    }
  });

  test('mTLS upstream: records the client SPIFFE ID and rejects missing or foreign client certs', async () => {
    const up = await startHttpUpstream({ h2: true, tls: { key: pki.server.key, cert: pki.server.cert, ca: pki.ca.cert, requestCert: true } });
    try {
      const url = `https://localhost:${up.port}/`;
      const ok = await curl(['--http2', '--cacert', pki.ca.certPath, '--cert', pki.client.certPath, '--key', pki.client.keyPath, url]);
      assert.equal(ok.status, 200, ok.stderr);
      assert.equal(ok.httpVersion, '2');
      const rec = up.requests.at(-1)!;
      assert.equal(rec.alpnProtocol, 'h2');
      assert.equal(rec.peerSubjectAltName, `URI:${CLIENT_SPIFFE_ID}`);
      assert.equal(rec.peerAuthorized, true);

      const none = await curl(['--cacert', pki.ca.certPath, url]);
      assert.equal(none.status, 0);
      assert.notEqual(none.exitCode, 0);
      const foreign = await curl(['--cacert', pki.ca.certPath, '--cert', pki.other.certPath, '--key', pki.other.keyPath, url]);
      assert.equal(foreign.status, 0);
      assert.equal(up.requests.length, 1);
    } finally {
      await up.close();
    }
  });

  test('gRPC over TLS with servername override', async () => {
    const up = await startGrpcUpstream({ tls: { key: pki.server.key, cert: pki.server.cert } });
    const client = grpcClient(`127.0.0.1:${up.port}`, { tls: { ca: pki.ca.cert, servername: 'svc.example.com' } });
    try {
      const r = await client.echo({ message: 'secure' });
      assert.equal(r.code, 0, r.details);
      assert.equal(r.response?.message, 'secure');
    } finally {
      client.close();
      await up.close();
    }
  });
});

describe('gRPC upstream and client', () => {
  let up: Awaited<ReturnType<typeof startGrpcUpstream>>;
  let client: ReturnType<typeof grpcClient>;
  before(async () => {
    up = await startGrpcUpstream({ name: 'g1' });
    client = grpcClient(`127.0.0.1:${up.port}`, { authority: 'echo.test' });
  });
  after(async () => {
    client.close();
    await up.close();
  });

  test('unary: response, metadata echo, initial metadata and trailers', async () => {
    const r = await client.echo({ message: 'hi' }, { metadata: { 'x-custom': 'v', 'x-trailer': 'back' } });
    assert.equal(r.code, 0, r.details);
    assert.deepEqual([r.response?.message, r.response?.upstream], ['hi', 'g1']);
    assert.equal(r.response?.metadata['x-custom'], 'v');
    assert.equal(r.headers['x-upstream'], 'g1');
    assert.equal(r.trailers['x-trailer'], 'back');
    const call = up.calls.at(-1)!;
    assert.equal(call.method, 'Echo');
    assert.equal(call.path, '/sloop.test.Echo/Echo');
    assert.equal(call.metadata['x-custom'], 'v');
    assert.match(call.metadata['user-agent'] ?? '', /grpc-node-js/);
  });

  test('unary failure and deadline', async () => {
    const fail = await client.echo({ message: 'x', fail_code: 5 });
    assert.equal(fail.code, 5);
    assert.equal(fail.response, undefined);
    assert.equal(fail.trailers['x-trailer'], 'g1');
    const late = await client.echo({ message: 'x', sleep_ms: 2_000 }, { deadlineMs: 100 });
    assert.equal(late.code, 4); // DEADLINE_EXCEEDED
  });

  test('server streaming, with and without a final error', async () => {
    const ok = await client.stream({ message: 's', count: 4 });
    assert.equal(ok.code, 0);
    assert.deepEqual(ok.responses.map((r) => r.message), ['s-0', 's-1', 's-2', 's-3']);
    assert.equal(ok.trailers['x-trailer'], 'g1');
    const bad = await client.stream({ message: 's', count: 2, fail_code: 14 });
    assert.equal(bad.code, 14);
    assert.equal(bad.responses.length, 2);
  });

  test('client streaming and bidi', async () => {
    const c = await client.collect([{ message: 'a' }, { message: 'b' }, { message: 'c' }]);
    assert.equal(c.code, 0);
    assert.equal(c.response?.message, 'a,b,c');
    assert.equal(up.calls.at(-1)!.requests.length, 3);
    const chat = await client.chat([{ message: 'x' }, { message: 'y' }]);
    assert.equal(chat.code, 0);
    assert.deepEqual(chat.responses.map((r) => r.message), ['x', 'y']);
    const chatFail = await client.chat([{ message: 'x' }, { message: 'y', fail_code: 7 }]);
    assert.equal(chatFail.code, 7);
    assert.deepEqual(chatFail.responses.map((r) => r.message), ['x']);
  });

  test('unreachable target resolves with UNAVAILABLE', async () => {
    const port = await freePort();
    const dead = grpcClient(`127.0.0.1:${port}`);
    try {
      const r = await dead.echo({ message: 'x' }, { deadlineMs: 2_000 });
      assert.equal(r.code, 14);
    } finally {
      dead.close();
    }
  });
});

describe('WebSocket upstream', () => {
  test('echoes text and binary and records the upgrade request', async () => {
    const up = await startWsUpstream({ name: 'w' });
    try {
      const r = await wsExchange(`ws://127.0.0.1:${up.port}/chat?room=1`, ['hello', Buffer.from([1, 2, 3])], { headers: { 'x-client': 'c1' } });
      assert.equal(r.ok, true, r.error);
      assert.equal(r.status, 101);
      assert.deepEqual(r.replies, ['hello', Buffer.from([1, 2, 3])]);
      assert.equal(r.closeCode, 1000);
      assert.equal(up.upgrades[0].url, '/chat?room=1');
      assert.equal(up.upgrades[0].headerMap['x-client'], 'c1');
      assert.equal(up.upgrades[0].headerMap.upgrade, 'websocket');
      const plain = await curl([`http://127.0.0.1:${up.port}/`]);
      assert.equal(plain.status, 426);
      // An HTTP server that ignores the Upgrade answers 200: wsExchange must report a refusal, not hang.
      const notWs = await startHttpUpstream();
      try {
        const refused = await wsExchange(`ws://127.0.0.1:${notWs.port}/status/403`, ['x']);
        assert.deepEqual([refused.ok, refused.status, refused.closeCode], [false, 403, 0]);
        assert.match(refused.error ?? '', /refused with 403/);
      } finally {
        await notWs.close();
      }
    } finally {
      await up.close();
    }
  });
});

describe('TCP echo and rawTcp', () => {
  test('banner, echo, half-close and connection records', async () => {
    const up = await startTcpEcho({ banner: 'HELLO\r\n' });
    try {
      const r = await rawTcp(up.port, ['ping', 'pong'], { end: true, waitForClose: true });
      assert.equal(r.text, 'HELLO\r\npingpong');
      assert.equal(r.closed, true);
      const conn = await up.recorder.waitFor((c) => c.closed);
      assert.equal(conn.ended, true);
      assert.equal(up.received().toString(), 'pingpong');
      const early = await rawTcp(up.port, 'abc', { until: (d) => d.includes('abc') });
      assert.deepEqual([early.text, early.closed, early.timedOut], ['HELLO\r\nabc', false, false]);
      await up.recorder.waitForCount(2);
    } finally {
      await up.close();
    }
  });

  test('rawTcp rejects when nothing listens', async () => {
    const port = await freePort();
    await assert.rejects(rawTcp(port, 'x'), /raw connection .* failed/);
  });
});

describe('parsers', () => {
  test('parseHttpResponses: 1xx, chunked with trailers, content-length, close-delimited', () => {
    const data = Buffer.from(
      'HTTP/1.1 100 Continue\r\n\r\n' +
        'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n' +
        'HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno' +
        'HTTP/1.0 200 OK\r\n\r\nuntil close',
    );
    const open = parseHttpResponses(data);
    assert.deepEqual(open.responses.map((r) => r.status), [100, 200, 404]);
    assert.equal(open.responses[1].body.toString(), 'abcde');
    assert.deepEqual(open.responses[1].trailers, [['X-T', '1']]);
    assert.equal(open.responses[2].reason, 'Not Found');
    const closed = parseHttpResponses(data, 0, true);
    assert.equal(closed.responses.length, 4);
    assert.equal(closed.responses[3].body.toString(), 'until close');
    const partial = parseHttpResponses(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab'));
    assert.equal(partial.responses.length, 0);
  });

  test('parseHeaderDump: interim, final and trailers', () => {
    const dump = 'HTTP/1.1 100 Continue\r\n\r\nHTTP/2 200 \r\ncontent-type: text/plain\r\nx-a: 1\r\n\r\ngrpc-status: 0\r\n';
    const { blocks, trailers } = parseHeaderDump(dump);
    assert.deepEqual(blocks.map((b) => b.status), [100, 200]);
    assert.deepEqual(blocks[1].headers, [['content-type', 'text/plain'], ['x-a', '1']]);
    assert.deepEqual(trailers, [['grpc-status', '0']]);
  });
});

describe('wait helpers', () => {
  test('Recorder wakes waiters on push and times out with context', async () => {
    const rec = new Recorder<number>('numbers');
    const seven = rec.waitFor((n) => n === 7, 1_000);
    const three = rec.waitForCount(3, 1_000);
    rec.push(1);
    rec.push(7);
    assert.equal(await seven, 7);
    rec.push(2);
    assert.deepEqual(await three, [1, 7, 2]);
    await assert.rejects(rec.waitForCount(10, 20), /waiting for 10 item\(s\) in numbers \(have 3\)/);
  });

  test('waitUntil returns the first truthy value and reports the last error', async () => {
    let calls = 0;
    assert.equal(await waitUntil(() => (++calls >= 3 ? 'done' : undefined), { intervalMs: 1 }), 'done');
    assert.equal(calls, 3);
    await assert.rejects(
      waitUntil(() => {
        throw new Error('boom');
      }, { timeoutMs: 30, intervalMs: 5, what: 'stat x' }),
      (err: Error) => /stat x/.test(err.message) && (err.cause as Error).message === 'boom',
    );
  });
});

describe('startProxy (against a fake proxy)', () => {
  const fake = (c: string): string[] => [process.execPath, '--disable-warning=ExperimentalWarning', FAKE_PROXY, c];

  test('waits for /ready, reads stats and output, stops with SIGTERM', async (t) => {
    const adminPort = await freePort();
    const proxy = await startProxy(bootstrapWith({ listeners: [], clusters: [], adminPort }), { command: fake, t });
    assert.equal(proxy.adminPort, adminPort);
    const stats = await proxy.stats();
    assert.equal(stats['server.live'], 1);
    assert.ok(stats['fake.admin_requests'] >= 4, 'three /ready polls and one stats call');
    assert.equal((await proxy.admin('/nope')).status, 404);
    await proxy.waitForOutput(/admin listening on \d+/);
    const written = parseYaml(await readFile(proxy.configPath, 'utf8')) as Json;
    assert.deepEqual(written.admin, { address: { socket_address: { address: '127.0.0.1', port_value: adminPort } } });
    const exit = await proxy.stop();
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.match(proxy.stdout(), /fake proxy draining/);
    assert.equal(await proxy.stop(), exit, 'stop is idempotent');
  });

  test('fills in an admin port when the bootstrap has none', async (t) => {
    const proxy = await startProxy({ static_resources: {} }, { command: fake, t });
    assert.ok(proxy.adminPort > 0);
    assert.equal((await proxy.admin('/ready')).status, 200);
  });

  test('expectFail returns the exit; an unexpected exit rejects with stderr', async () => {
    const failing = await startProxy({ fake_fail: true }, { command: fake, expectFail: true });
    assert.equal(failing.exit?.code, 3);
    assert.match(failing.stderr(), /configuration rejected/);
    await assert.rejects(startProxy({ fake_fail: true }, { command: fake }), (err: Error) => /exited \(code 3\)[\s\S]*configuration rejected/.test(err.message));
  });

  test('expectFail rejects when the proxy becomes ready', async () => {
    await assert.rejects(startProxy({}, { command: fake, expectFail: true }), /expected to fail but became ready/);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Bootstrap builders: every key they emit must be a field of Envoy's protos (typos would otherwise only
// show up as a confusing proxy error in some e2e test).

const OPAQUE_TYPES = new Set(['.google.protobuf.Duration', '.google.protobuf.Struct', '.google.protobuf.Value', '.google.protobuf.Timestamp']);

function unknownFields(type: protobuf.Type, value: unknown, path: string, out: string[]): void {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return;
  const obj = value as Json;
  if (type.fullName === '.google.protobuf.Any') {
    const url = obj['@type'];
    const inner = typeof url === 'string' ? lookupMessage(url) : undefined;
    if (!inner) out.push(`${path}: unknown @type ${String(url)}`);
    else unknownFields(inner, Object.fromEntries(Object.entries(obj).filter(([k]) => k !== '@type')), path, out);
    return;
  }
  if (OPAQUE_TYPES.has(type.fullName) || type.fullName.startsWith('.google.protobuf.') && type.fullName.endsWith('Value')) return;
  for (const [key, v] of Object.entries(obj)) {
    const field = type.fields[key];
    if (!field) {
      out.push(`${path}.${key}: not a field of ${type.fullName}`);
      continue;
    }
    const sub = field.resolvedType;
    if (!sub || !('fields' in sub)) continue;
    const msg = sub as protobuf.Type;
    if (field.map) for (const [k, item] of Object.entries(v as Json)) unknownFields(msg, item, `${path}.${key}[${k}]`, out);
    else if (field.repeated) (v as unknown[]).forEach((item, i) => unknownFields(msg, item, `${path}.${key}[${i}]`, out));
    else unknownFields(msg, v, `${path}.${key}`, out);
  }
}

describe('bootstrap builders', () => {
  test('emit only Envoy v3 field names', () => {
    const bootstrap = bootstrapWith({
      adminPort: 9901,
      listeners: [
        httpListener({
          name: 'ingress',
          port: 10000,
          virtualHosts: [virtualHost('all', ['*'], [prefixRoute('/', 'web', { timeout: '5s' })])],
          hcmExtra: { stream_idle_timeout: '30s' },
          transportSocket: downstreamTls({ certPath: '/s.crt', keyPath: '/s.key', caPath: '/ca.crt', requireClientCertificate: true, alpn: ['h2', 'http/1.1'] }),
        }),
        tcpProxyListener({ name: 'tcp', port: 10001, cluster: 'db', tcpProxyExtra: { idle_timeout: '10s' } }),
      ],
      clusters: [
        staticCluster('web', [['127.0.0.1', 8080], ['127.0.0.1', 8081]], {
          ...http2ProtocolOptions(),
          transport_socket: upstreamTls({ caPath: '/ca.crt', sni: 'web.example.com', matchSans: [{ san_type: 'URI', matcher: { exact: SERVER_SPIFFE_ID } }] }),
        }),
        staticCluster('db', [['127.0.0.1', 5432]]),
      ],
    });
    const problems: string[] = [];
    unknownFields(lookupMessage('envoy.config.bootstrap.v3.Bootstrap')!, bootstrap, 'bootstrap', problems);
    assert.deepEqual(problems, []);
    // The checker itself must catch a typo, or the assertion above proves nothing.
    const typo: string[] = [];
    unknownFields(lookupMessage('envoy.config.bootstrap.v3.Bootstrap')!, { static_resources: { clusters: [{ name: 'x', lb_polcy: 'RANDOM' }] } }, 'b', typo);
    assert.deepEqual(typo, ['b.static_resources.clusters[0].lb_polcy: not a field of .envoy.config.cluster.v3.Cluster']);
  });

  test('httpListener appends the router once and requires routes', () => {
    const withRouter = httpListener({ name: 'l', port: 1, virtualHosts: [], httpFilters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' } }] });
    const hcm = ((withRouter.filter_chains as Json[])[0].filters as Json[])[0].typed_config as Json;
    assert.equal((hcm.http_filters as Json[]).length, 1);
    assert.equal(hcm.codec_type, 'AUTO');
    assert.throws(() => httpListener({ name: 'l', port: 1 }), /routeConfig or virtualHosts/);
  });
});
