// WebSocket upgrades and CONNECT tunnels through the HTTP connection manager: HCM and per-route
// upgrade_configs, RFC 8441 extended CONNECT on h2 downstreams, CONNECT termination with connect_config,
// and RELIABILITY row 34 (unconfigured Upgrade, non-101 upstream answers: rejected, no tunnel).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import http2 from 'node:http2';
import { WebSocket } from 'ws';
import { startHttpUpstream, startTcpEcho, startWsUpstream, type HttpUpstream, type TcpEcho, type WsUpstream } from '../helpers/upstreams.ts';
import { startProxy, bootstrapWith, httpListener, staticCluster, virtualHost, prefixRoute, type ProxyHandle } from '../helpers/proxy.ts';
import { curl, rawHttp, rawTcp, wsExchange } from '../helpers/clients.ts';
import { freePorts, LOOPBACK } from '../helpers/ports.ts';
import { waitUntil } from '../helpers/wait.ts';

const UPGRADE_REQUEST = (path: string, host = 'ws.local'): string =>
  `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
  `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\n\r\n`;

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** One masked client frame (RFC 6455 §5.2), for the raw h2 test that has no WebSocket library under it. */
function clientFrame(opcode: number, payload: Buffer): Buffer {
  const mask = randomBytes(4);
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x80 | opcode, 0x80 | len]) : len < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  if (len >= 126 && len < 65536) {
    head[0] = 0x80 | opcode;
    head[1] = 0x80 | 126;
    head.writeUInt16BE(len, 2);
  } else if (len >= 65536) {
    head[0] = 0x80 | opcode;
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  const body = Buffer.alloc(len);
  for (let i = 0; i < len; i++) body[i] = payload[i] ^ mask[i & 3];
  return Buffer.concat([head, mask, body]);
}

/** Parses unmasked server frames from `buf`; returns complete frames and the bytes left over. */
function parseServerFrames(buf: Buffer): { frames: Array<{ opcode: number; payload: Buffer }>; rest: Buffer } {
  const frames: Array<{ opcode: number; payload: Buffer }> = [];
  let off = 0;
  while (buf.length - off >= 2) {
    const opcode = buf[off] & 0x0f;
    let len = buf[off + 1] & 0x7f;
    let p = off + 2;
    if (len === 126) {
      if (buf.length - p < 2) break;
      len = buf.readUInt16BE(p);
      p += 2;
    } else if (len === 127) {
      if (buf.length - p < 8) break;
      len = Number(buf.readBigUInt64BE(p));
      p += 8;
    }
    if (buf.length - p < len) break;
    frames.push({ opcode, payload: buf.subarray(p, p + len) });
    off = p + len;
  }
  return { frames, rest: buf.subarray(off) };
}

/** Opens a `ws` client and resolves once it is open (rejects on refusal). */
function openWs(url: string, headers: Record<string, string> = {}): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

function nextMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  return new Promise((resolve) => {
    ws.once('message', (data, isBinary) => {
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      resolve({ data: buf, isBinary });
    });
  });
}

describe('WebSocket and CONNECT through the HTTP connection manager', () => {
  let ws: WsUpstream;
  let wsReject: WsUpstream;
  let plain: HttpUpstream;
  let tcpEcho: TcpEcho;
  let proxy: ProxyHandle;
  /** HCM upgrade_configs: websocket. */
  let wsPort: number;
  /** No upgrade_configs on the HCM; per-route ones only. */
  let noWsPort: number;
  /** CONNECT terminated by the proxy (connect_config) to a TCP echo and to an HTTP upstream. */
  let connectPort: number;

  before(async () => {
    ws = await startWsUpstream({ name: 'ws' });
    wsReject = await startWsUpstream({ name: 'ws-reject', rejectStatus: 401 });
    plain = await startHttpUpstream({ name: 'plain' });
    tcpEcho = await startTcpEcho();
    let admin: number;
    let deadPort: number; // nothing listens there
    [wsPort, noWsPort, connectPort, deadPort, admin] = await freePorts(5);
    proxy = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [
          httpListener({
            name: 'ws_on',
            port: wsPort,
            statPrefix: 'ws_on',
            hcmExtra: { upgrade_configs: [{ upgrade_type: 'websocket' }], use_remote_address: true },
            virtualHosts: [
              virtualHost('ws', ['*'], [
                prefixRoute('/chat/', 'ws', { prefix_rewrite: '/rewritten/' }),
                prefixRoute('/off/', 'ws', { upgrade_configs: [{ upgrade_type: 'websocket', enabled: false }] }),
                prefixRoute('/reject/', 'ws_reject'),
                prefixRoute('/plain/', 'plain'),
                prefixRoute('/', 'ws'),
              ]),
            ],
          }),
          httpListener({
            name: 'ws_off',
            port: noWsPort,
            statPrefix: 'ws_off',
            virtualHosts: [
              virtualHost('ws', ['*'], [
                prefixRoute('/allowed/', 'ws', { upgrade_configs: [{ upgrade_type: 'websocket' }] }),
                prefixRoute('/', 'ws'),
              ]),
            ],
          }),
          httpListener({
            name: 'connect',
            port: connectPort,
            statPrefix: 'connect',
            virtualHosts: [
              virtualHost('tcp', ['echo.tcp:7'], [
                { match: { connect_matcher: {} }, route: { cluster: 'tcp_echo', upgrade_configs: [{ upgrade_type: 'CONNECT', connect_config: {} }] } },
              ]),
              virtualHost('dead', ['dead.tcp:9'], [
                { match: { connect_matcher: {} }, route: { cluster: 'dead', upgrade_configs: [{ upgrade_type: 'CONNECT', connect_config: {} }] } },
              ]),
              virtualHost('web', ['*'], [
                { match: { connect_matcher: {} }, route: { cluster: 'plain', upgrade_configs: [{ upgrade_type: 'CONNECT', connect_config: {} }] } },
                prefixRoute('/', 'plain'),
              ]),
            ],
          }),
        ],
        clusters: [
          staticCluster('ws', [[LOOPBACK, ws.port]]),
          staticCluster('ws_reject', [[LOOPBACK, wsReject.port]]),
          staticCluster('plain', [[LOOPBACK, plain.port]]),
          staticCluster('tcp_echo', [[LOOPBACK, tcpEcho.port]]),
          staticCluster('dead', [[LOOPBACK, deadPort]]),
        ],
      }),
    );
  });

  after(async () => {
    await proxy?.stop();
    await ws?.close();
    await wsReject?.close();
    await plain?.close();
    await tcpEcho?.close();
  });

  it('tunnels text and binary messages both ways; the upstream sees the routed path and forwarding headers', async () => {
    const seen = ws.upgrades.length;
    const bin = randomBytes(300);
    const r = await wsExchange(`ws://127.0.0.1:${wsPort}/chat/room?x=1`, ['hello text', bin, 'ünïcødé'], { headers: { 'x-custom': 'kept' } });
    assert.equal(r.error, undefined);
    assert.equal(r.ok, true);
    assert.equal(r.status, 101);
    assert.equal(r.headers['upgrade']?.toLowerCase(), 'websocket');
    assert.match(r.headers['connection'] ?? '', /upgrade/i);
    assert.deepEqual(r.replies[0], 'hello text');
    assert.ok(Buffer.isBuffer(r.replies[1]) && r.replies[1].equals(bin), 'binary comes back as binary, same bytes');
    assert.deepEqual(r.replies[2], 'ünïcødé');
    assert.equal(r.closeCode, 1000);
    const up = await ws.recorder.waitForCount(seen + 1).then((u) => u[seen]);
    assert.equal(up.url, '/rewritten/room?x=1');
    assert.equal(up.headerMap['upgrade']?.toLowerCase(), 'websocket');
    assert.match(up.headerMap['connection'] ?? '', /upgrade/i);
    assert.equal(up.headerMap['x-forwarded-for'], '127.0.0.1');
    assert.equal(up.headerMap['x-forwarded-proto'], 'http');
    assert.match(up.headerMap['x-request-id'] ?? '', /^[0-9a-f-]{36}$/);
    assert.equal(up.headerMap['x-envoy-original-path'], '/chat/room?x=1');
    assert.equal(up.headerMap['x-custom'], 'kept');
    assert.ok(up.headerMap['sec-websocket-key'], 'the client key reaches the upstream');
    assert.equal(up.headerMap['x-envoy-expected-rq-timeout-ms'], undefined, 'no route timeout on an upgrade');
    assert.ok(ws.messages.includes('hello text'));
  });

  it('carries ping/pong and close codes in both directions', async () => {
    const c = await openWs(`ws://127.0.0.1:${wsPort}/pp`);
    const pong = new Promise<Buffer>((resolve) => c.once('pong', (d: Buffer) => resolve(d)));
    c.ping(Buffer.from('are-you-there'));
    assert.equal((await pong).toString(), 'are-you-there');
    // Client-initiated close: the upstream receives our code and reason.
    const n = ws.closes.items.length;
    const closed = new Promise<number>((resolve) => c.once('close', (code) => resolve(code)));
    c.close(4001, 'client says bye');
    assert.equal(await closed, 4001);
    const got = await ws.closes.waitForCount(n + 1).then((x) => x[n]);
    assert.deepEqual(got, { code: 4001, reason: 'client says bye' });
    // Upstream-initiated close: the client receives the upstream's code and reason.
    const c2 = await openWs(`ws://127.0.0.1:${wsPort}/pp2`);
    const closed2 = new Promise<[number, string]>((resolve) => c2.once('close', (code, reason) => resolve([code, reason.toString()])));
    c2.send('__close:4002:server says bye');
    assert.deepEqual(await closed2, [4002, 'server says bye']);
  });

  it('carries large messages both ways (4 MiB binary, 1 MiB text)', async () => {
    const c = await openWs(`ws://127.0.0.1:${wsPort}/big`);
    const big = randomBytes(4 * 1024 * 1024);
    const p1 = nextMessage(c);
    c.send(big);
    const r1 = await p1;
    assert.equal(r1.isBinary, true);
    assert.equal(sha256(r1.data), sha256(big));
    const text = 'x'.repeat(1024 * 1024 - 7) + 'the-end';
    const p2 = nextMessage(c);
    c.send(text);
    const r2 = await p2;
    assert.equal(r2.isBinary, false);
    assert.equal(r2.data.toString(), text);
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    c.close(1000);
    await closed;
  });

  it('RELIABILITY 34: an Upgrade the connection manager does not allow → 403, counted, nothing reaches the upstream', async () => {
    const before = await proxy.stats();
    const seen = ws.upgrades.length;
    const r = await wsExchange(`ws://127.0.0.1:${noWsPort}/nope`, ['hi']);
    assert.equal(r.ok, false);
    assert.equal(r.status, 403);
    // Raw: the 403 closes the connection; bytes sent after the head (a would-be frame) go nowhere.
    const raw = await rawHttp(noWsPort, [UPGRADE_REQUEST('/nope'), clientFrame(1, Buffer.from('smuggled'))], { waitForClose: true });
    assert.equal(raw.response?.status, 403);
    assert.equal(raw.response?.headerMap['upgrade'], undefined);
    assert.equal(raw.closed, true);
    const st = await waitUntil(async () => {
      const s = await proxy.stats();
      return (s['http.ws_off.downstream_rq_ws_on_non_ws_route'] ?? 0) - (before['http.ws_off.downstream_rq_ws_on_non_ws_route'] ?? 0) >= 2 ? s : undefined;
    }, { what: 'http.ws_off.downstream_rq_ws_on_non_ws_route + 2' });
    assert.equal((st['http.ws_off.downstream_rq_4xx'] ?? 0) - (before['http.ws_off.downstream_rq_4xx'] ?? 0), 2);
    assert.equal(ws.upgrades.length, seen, 'the upstream saw no upgrade');
    // Another upgrade type on a websocket-only connection manager is just as unconfigured.
    const h2c = await rawHttp(wsPort, 'GET / HTTP/1.1\r\nHost: ws.local\r\nConnection: Upgrade\r\nUpgrade: foo\r\n\r\n', { waitForClose: true });
    assert.equal(h2c.response?.status, 403);
    assert.equal(ws.upgrades.length, seen);
  });

  it('per-route upgrade_configs: enable on a route of a connection manager without it, disable on one with it', async () => {
    const seen = ws.upgrades.length;
    const on = await wsExchange(`ws://127.0.0.1:${noWsPort}/allowed/x`, ['routed on']);
    assert.equal(on.ok, true, on.error);
    assert.deepEqual(on.replies, ['routed on']);
    assert.equal((await ws.recorder.waitForCount(seen + 1))[seen].url, '/allowed/x');
    const off = await wsExchange(`ws://127.0.0.1:${wsPort}/off/x`, ['routed off']);
    assert.equal(off.ok, false);
    assert.equal(off.status, 403);
    assert.equal(ws.upgrades.length, seen + 1, 'the disabled route sent nothing upstream');
  });

  it('RELIABILITY 34: an upstream that refuses the upgrade → its response goes back, no tunnel', async () => {
    const seen = wsReject.upgrades.length;
    const r = await wsExchange(`ws://127.0.0.1:${wsPort}/reject/x`, ['hi']);
    assert.equal(r.ok, false);
    assert.equal(r.status, 401);
    assert.equal(wsReject.upgrades.length, seen + 1, 'the upstream saw the upgrade request');
    const raw = await rawHttp(wsPort, [UPGRADE_REQUEST('/reject/y')], { waitForClose: true });
    assert.equal(raw.response?.status, 401);
    assert.equal(raw.closed, true);
  });

  it('RELIABILITY 34: an upstream that answers 200 to an Upgrade → 200 with its body, bytes after the head are not tunnelled', async () => {
    const seen = plain.requests.length;
    const raw = await rawHttp(wsPort, [UPGRADE_REQUEST('/plain/a'), 'GET /plain/smuggled HTTP/1.1\r\nHost: ws.local\r\n\r\n'], { waitForClose: true, timeoutMs: 5_000 });
    assert.equal(raw.response?.status, 200);
    assert.equal(raw.response?.headerMap['x-upstream'], 'plain');
    assert.equal(raw.response?.headerMap['upgrade'], undefined);
    assert.equal(raw.closed, true, 'the connection closes after the refused upgrade');
    assert.equal(raw.responses.filter((x) => x.status >= 200).length, 1, 'one response only');
    await plain.recorder.waitForCount(seen + 1);
    assert.equal(plain.requests.length, seen + 1, 'the trailing request was neither tunnelled nor parsed');
    assert.equal(plain.requests[seen].url, '/plain/a');
  });

  it('RFC 8441: WebSocket over an h2 downstream (extended CONNECT) to an HTTP/1.1 upstream', async () => {
    const seen = ws.upgrades.length;
    const session = http2.connect(`http://127.0.0.1:${wsPort}`);
    try {
      await new Promise<void>((resolve, reject) => {
        session.once('remoteSettings', () => resolve());
        session.once('error', reject);
      });
      assert.equal(session.remoteSettings.enableConnectProtocol, true, 'SETTINGS_ENABLE_CONNECT_PROTOCOL');
      const stream = session.request({
        ':method': 'CONNECT',
        ':protocol': 'websocket',
        ':scheme': 'http',
        ':path': '/chat/h2?y=2',
        ':authority': 'ws.local',
        'sec-websocket-version': '13',
        // RFC 8441 §5 drops the key on h2; an HTTP/1.1 upstream needs one, so this client sends it.
        'sec-websocket-key': randomBytes(16).toString('base64'),
      });
      const response = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        stream.once('response', resolve);
        stream.once('error', reject);
        stream.once('close', () => reject(new Error(`stream closed before a response (rst ${stream.rstCode})`)));
      });
      assert.equal(response[':status'], 200);
      assert.equal(response['upgrade'], undefined);
      assert.equal(response['connection'], undefined);
      let buf = Buffer.alloc(0);
      const frames: Array<{ opcode: number; payload: Buffer }> = [];
      stream.on('data', (d: Buffer) => {
        const parsed = parseServerFrames(Buffer.concat([buf, d]));
        frames.push(...parsed.frames);
        buf = Buffer.from(parsed.rest);
      });
      const bin = randomBytes(70_000);
      stream.write(clientFrame(1, Buffer.from('over h2')));
      stream.write(clientFrame(2, bin));
      await waitUntil(() => frames.length >= 2, { what: 'two echoed frames over the h2 stream' });
      assert.deepEqual({ opcode: frames[0].opcode, text: frames[0].payload.toString() }, { opcode: 1, text: 'over h2' });
      assert.equal(frames[1].opcode, 2);
      assert.equal(sha256(frames[1].payload), sha256(bin));
      const up = ws.upgrades[seen];
      assert.equal(up.url, '/rewritten/h2?y=2');
      assert.equal(up.headerMap['upgrade']?.toLowerCase(), 'websocket');
      assert.match(up.headerMap['connection'] ?? '', /upgrade/i);
      assert.equal(up.headerMap['host'], 'ws.local');
      // Close handshake over the tunnel, then the stream ends.
      const n = ws.closes.items.length;
      const close = Buffer.alloc(2);
      close.writeUInt16BE(1000);
      stream.write(clientFrame(8, close));
      assert.equal((await ws.closes.waitForCount(n + 1))[n].code, 1000);
      await waitUntil(() => frames.some((f) => f.opcode === 8), { what: 'the close frame back' });
      stream.end();
      await new Promise<void>((resolve) => (stream.closed ? resolve() : stream.once('close', () => resolve())));
    } finally {
      session.destroy();
    }
  });

  it('CONNECT with connect_config: the proxy answers 200 and tunnels raw TCP to the cluster', async () => {
    const seen = tcpEcho.connections.length;
    const r = await rawTcp(connectPort, ['CONNECT echo.tcp:7 HTTP/1.1\r\nHost: echo.tcp:7\r\n\r\n', 'raw bytes through CONNECT'], {
      until: (d) => d.toString('latin1').includes('raw bytes through CONNECT'),
      timeoutMs: 5_000,
    });
    assert.match(r.text, /^HTTP\/1\.1 200 /);
    const [head, rest] = [r.text.slice(0, r.text.indexOf('\r\n\r\n')), r.text.slice(r.text.indexOf('\r\n\r\n') + 4)];
    assert.doesNotMatch(head, /transfer-encoding|content-length/i, 'a 2xx to CONNECT has no body framing (RFC 9110 §9.3.6)');
    assert.equal(rest, 'raw bytes through CONNECT');
    const conn = await tcpEcho.recorder.waitForCount(seen + 1).then((c) => c[seen]);
    assert.equal(Buffer.concat(conn.chunks).toString(), 'raw bytes through CONNECT', 'the upstream got the tunnelled bytes, not the CONNECT head');
  });

  it('CONNECT with connect_config: curl -p -x through the proxy reaches the HTTP upstream', async () => {
    const seen = plain.requests.length;
    const r = await curl(['-p', '-x', `http://127.0.0.1:${connectPort}`, 'http://svc.example:8080/through/tunnel']);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-upstream'], 'plain');
    const got = await plain.recorder.waitForCount(seen + 1).then((x) => x[seen]);
    assert.equal(got.url, '/through/tunnel');
    assert.equal(got.headerMap['host'], 'svc.example:8080', 'the request inside the tunnel is the client\'s, untouched');
    assert.equal(got.headerMap['x-forwarded-for'], undefined);
  });

  it('CONNECT with connect_config over an h2 downstream: 200 on the stream, DATA both ways, END_STREAM as FIN', async () => {
    const seen = tcpEcho.connections.length;
    const session = http2.connect(`http://127.0.0.1:${connectPort}`);
    try {
      const stream = session.request({ ':method': 'CONNECT', ':authority': 'echo.tcp:7' });
      const response = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        stream.once('response', resolve);
        stream.once('error', reject);
      });
      assert.equal(response[':status'], 200);
      const chunks: Buffer[] = [];
      stream.on('data', (d: Buffer) => chunks.push(d));
      const ended = new Promise<void>((resolve) => stream.once('end', () => resolve()));
      const payload = randomBytes(256 * 1024);
      stream.end(payload); // END_STREAM: the echo sees FIN, echoes, and closes; we see END_STREAM
      await ended;
      assert.equal(sha256(Buffer.concat(chunks)), sha256(payload));
      const conn = await tcpEcho.recorder.waitForCount(seen + 1).then((c) => c[seen]);
      await waitUntil(() => conn.ended, { what: 'the upstream to see FIN' });
      assert.equal(conn.bytes, payload.length);
    } finally {
      session.destroy();
    }
  });

  it('CONNECT with connect_config to an upstream that refuses the connection → 503, counted', async () => {
    const before = await proxy.stats();
    const r = await rawHttp(connectPort, ['CONNECT dead.tcp:9 HTTP/1.1\r\nHost: dead.tcp:9\r\n\r\n'], { waitForClose: true });
    assert.equal(r.response?.status, 503);
    assert.match(r.response?.body.toString() ?? '', /upstream connect error or disconnect\/reset before headers\. reset reason: remote connection failure/);
    assert.equal(r.closed, true);
    const st = await proxy.stats();
    assert.equal((st['cluster.dead.upstream_cx_connect_fail'] ?? 0) - (before['cluster.dead.upstream_cx_connect_fail'] ?? 0), 1);
  });

  it('CONNECT on a connection manager without it → 403, no tunnel', async () => {
    const before = await proxy.stats();
    const r = await rawHttp(wsPort, ['CONNECT echo.tcp:7 HTTP/1.1\r\nHost: echo.tcp:7\r\n\r\n'], { waitForClose: true });
    assert.equal(r.response?.status, 403);
    assert.equal(r.closed, true);
    await waitUntil(async () => ((await proxy.stats())['http.ws_on.downstream_rq_ws_on_non_ws_route'] ?? 0) > (before['http.ws_on.downstream_rq_ws_on_non_ws_route'] ?? 0), {
      what: 'http.ws_on.downstream_rq_ws_on_non_ws_route + 1',
    });
  });

  it('closing either end of a WebSocket tears the tunnel down and counts the upgrade', async () => {
    const st0 = await proxy.stats();
    const c = await openWs(`ws://127.0.0.1:${wsPort}/gone`);
    const n = ws.closes.items.length;
    c.terminate(); // no close frame: the TCP connection just goes away
    const got = await ws.closes.waitForCount(n + 1).then((x) => x[n]);
    assert.equal(got.code, 1006, 'the upstream sees the connection drop (abnormal closure)');
    const st = await waitUntil(async () => {
      const s = await proxy.stats();
      return (s['http.ws_on.downstream_rq_completed'] ?? 0) > (st0['http.ws_on.downstream_rq_completed'] ?? 0) ? s : undefined;
    }, { what: 'the upgraded request to complete' });
    assert.ok((st['http.ws_on.downstream_cx_upgrades_total'] ?? 0) > (st0['http.ws_on.downstream_cx_upgrades_total'] ?? 0));
    await waitUntil(async () => ((await proxy.stats())['http.ws_on.downstream_cx_upgrades_active'] ?? -1) === 0, { what: 'no active upgrades' });
  });
});

