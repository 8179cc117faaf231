// The HCM's stream_idle_timeout (and a route's idle_timeout) on upgraded streams, as Envoy applies it: the
// stream idle timer keeps running once a WebSocket or CONNECT tunnel is up, bytes in either direction reset it,
// and when it fires the tunnel is torn down and counted in http.<stat_prefix>.downstream_rq_idle_timeout.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { WebSocket } from 'ws';
import { startTcpEcho, startWsUpstream, type TcpEcho, type WsUpstream } from '../helpers/upstreams.ts';
import { startProxy, bootstrapWith, httpListener, staticCluster, virtualHost, prefixRoute, type ProxyHandle } from '../helpers/proxy.ts';
import { freePorts, LOOPBACK } from '../helpers/ports.ts';
import { waitUntil } from '../helpers/wait.ts';

/** stream_idle_timeout of the tunnel listeners. */
const IDLE_MS = 800;
/** How long the "active" tests keep bytes flowing: several idle timeouts. */
const ACTIVE_MS = 3 * IDLE_MS;
/** Gap between bytes in the "active" tests: well under the timeout. */
const TICK_MS = IDLE_MS / 4;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const CONNECT_ROUTE = { match: { connect_matcher: {} }, route: { cluster: 'tcp_echo', upgrade_configs: [{ upgrade_type: 'CONNECT', connect_config: {} }] } };

function openWs(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

function echoOf(ws: WebSocket, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    ws.once('message', (data) => {
      const got = Buffer.isBuffer(data) ? data.toString() : String(data);
      if (got === text) resolve();
      else reject(new Error(`expected echo ${text}, got ${got}`));
    });
    ws.send(text);
  });
}

/** A raw CONNECT tunnel on an HTTP/1.1 connection: resolves once the 200 head is in. */
async function openConnect(port: number, authority: string): Promise<{ socket: Socket; received: () => string; closed: Promise<number> }> {
  const socket = connect({ port, host: LOOPBACK });
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
  socket.on('error', () => {});
  const closed = new Promise<number>((r) => socket.once('close', () => r(performance.now())));
  socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
  await waitUntil(() => text.includes('\r\n\r\n'), { what: 'the CONNECT response head' });
  assert.match(text, /^HTTP\/1\.1 200 /);
  const headEnd = text.indexOf('\r\n\r\n') + 4;
  return { socket, received: () => text.slice(headEnd), closed };
}

describe('stream_idle_timeout on WebSocket and CONNECT tunnels', () => {
  let ws: WsUpstream;
  let tcpEcho: TcpEcho;
  /** Writes a byte every TICK_MS to whoever connects and never reads: traffic in one direction only. */
  let ticker: Server;
  let tickerPort: number;
  let proxy: ProxyHandle;
  let tunnelPort: number;
  let routeIdlePort: number;

  const idleTimeouts = async (prefix: string): Promise<number> => (await proxy.stats())[`http.${prefix}.downstream_rq_idle_timeout`] ?? 0;

  before(async () => {
    ws = await startWsUpstream({ name: 'ws' });
    tcpEcho = await startTcpEcho();
    ticker = createServer((s) => {
      s.on('error', () => {});
      const t = setInterval(() => s.write('.'), TICK_MS);
      s.once('close', () => clearInterval(t));
    });
    await new Promise<void>((r) => ticker.listen(0, LOOPBACK, r));
    tickerPort = (ticker.address() as { port: number }).port;
    let admin: number;
    [tunnelPort, routeIdlePort, admin] = await freePorts(3);
    proxy = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [
          httpListener({
            name: 'tunnel',
            port: tunnelPort,
            statPrefix: 'tunnel',
            hcmExtra: { upgrade_configs: [{ upgrade_type: 'websocket' }], stream_idle_timeout: `${IDLE_MS / 1000}s` },
            virtualHosts: [
              virtualHost('echo', ['echo.tcp:7'], [CONNECT_ROUTE]),
              virtualHost('ticker', ['ticker.tcp:9'], [{ ...CONNECT_ROUTE, route: { ...CONNECT_ROUTE.route, cluster: 'ticker' } }]),
              virtualHost('ws', ['*'], [prefixRoute('/', 'ws')]),
            ],
          }),
          // The HCM's timeout is long; the route's idle_timeout is the one that applies.
          httpListener({
            name: 'route_idle',
            port: routeIdlePort,
            statPrefix: 'route_idle',
            hcmExtra: { upgrade_configs: [{ upgrade_type: 'websocket' }], stream_idle_timeout: '60s' },
            virtualHosts: [virtualHost('ws', ['*'], [prefixRoute('/', 'ws', { idle_timeout: `${IDLE_MS / 1000}s` })])],
          }),
        ],
        clusters: [
          staticCluster('ws', [[LOOPBACK, ws.port]]),
          staticCluster('tcp_echo', [[LOOPBACK, tcpEcho.port]]),
          staticCluster('ticker', [[LOOPBACK, tickerPort]]),
        ],
      }),
    );
  });

  after(async () => {
    await proxy?.stop();
    await ws?.close();
    await tcpEcho?.close();
    await new Promise<void>((r) => (ticker ? ticker.close(() => r()) : r()));
  });

  it('an idle WebSocket is closed after stream_idle_timeout and counted', async () => {
    const before = await idleTimeouts('tunnel');
    const c = await openWs(`ws://127.0.0.1:${tunnelPort}/idle`);
    await echoOf(c, 'hello');
    const lastActivity = performance.now();
    const closedAt = await new Promise<number>((r) => c.once('close', () => r(performance.now())));
    const idleFor = closedAt - lastActivity;
    assert.ok(idleFor >= IDLE_MS - 50, `closed after ${idleFor.toFixed(0)} ms idle, not before the timeout`);
    assert.ok(idleFor < IDLE_MS + 1500, `closed after ${idleFor.toFixed(0)} ms idle`);
    await waitUntil(async () => (await idleTimeouts('tunnel')) === before + 1, { what: 'downstream_rq_idle_timeout +1' });
    const st = await proxy.stats();
    assert.equal(st['http.tunnel.downstream_cx_upgrades_active'], 0, 'the upgrade is no longer active');
  });

  it('a WebSocket with messages flowing stays open past the timeout', async () => {
    const before = await idleTimeouts('tunnel');
    const c = await openWs(`ws://127.0.0.1:${tunnelPort}/active`);
    let closed = false;
    c.once('close', () => (closed = true));
    try {
      const end = performance.now() + ACTIVE_MS;
      for (let i = 0; performance.now() < end; i++) {
        await echoOf(c, `tick ${i}`);
        await sleep(TICK_MS);
      }
      assert.equal(closed, false, `open after ${ACTIVE_MS} ms of traffic (timeout ${IDLE_MS} ms)`);
      assert.equal(c.readyState, WebSocket.OPEN);
      assert.equal(await idleTimeouts('tunnel'), before);
    } finally {
      c.terminate();
    }
  });

  it("a route's idle_timeout applies to its WebSocket tunnels", async () => {
    const before = await idleTimeouts('route_idle');
    const c = await openWs(`ws://127.0.0.1:${routeIdlePort}/route`);
    await echoOf(c, 'hello');
    const start = performance.now();
    await new Promise<void>((r) => c.once('close', () => r()));
    assert.ok(performance.now() - start < IDLE_MS + 1500, 'closed at the route idle_timeout, not the HCM 60 s');
    await waitUntil(async () => (await idleTimeouts('route_idle')) === before + 1, { what: 'route_idle downstream_rq_idle_timeout +1' });
  });

  it('an idle CONNECT tunnel is closed after stream_idle_timeout, both sides', async () => {
    const before = await idleTimeouts('tunnel');
    const seen = tcpEcho.connections.length;
    const t = await openConnect(tunnelPort, 'echo.tcp:7');
    t.socket.write('ping');
    await waitUntil(() => t.received() === 'ping', { what: 'the echo through the tunnel' });
    const lastActivity = performance.now();
    const closedAt = await t.closed;
    assert.ok(closedAt - lastActivity >= IDLE_MS - 50, `closed after ${(closedAt - lastActivity).toFixed(0)} ms idle`);
    assert.ok(closedAt - lastActivity < IDLE_MS + 1500);
    const conn = (await tcpEcho.recorder.waitForCount(seen + 1))[seen];
    await waitUntil(() => conn.closed, { what: 'the upstream side of the tunnel closed too' });
    await waitUntil(async () => (await idleTimeouts('tunnel')) === before + 1, { what: 'downstream_rq_idle_timeout +1' });
  });

  it('a CONNECT tunnel with bytes flowing stays open past the timeout (client to upstream and back)', async () => {
    const before = await idleTimeouts('tunnel');
    const t = await openConnect(tunnelPort, 'echo.tcp:7');
    let closed = false;
    void t.closed.then(() => (closed = true));
    try {
      const end = performance.now() + ACTIVE_MS;
      let sent = '';
      for (let i = 0; performance.now() < end; i++) {
        t.socket.write(`${i};`);
        sent += `${i};`;
        await sleep(TICK_MS);
      }
      await waitUntil(() => t.received() === sent, { what: 'every byte echoed' });
      assert.equal(closed, false, `open after ${ACTIVE_MS} ms of traffic (timeout ${IDLE_MS} ms)`);
      assert.equal(await idleTimeouts('tunnel'), before);
    } finally {
      t.socket.destroy();
    }
  });

  it('bytes from the upstream alone keep a CONNECT tunnel open', async () => {
    const before = await idleTimeouts('tunnel');
    const t = await openConnect(tunnelPort, 'ticker.tcp:9');
    let closed = false;
    void t.closed.then(() => (closed = true));
    try {
      await sleep(ACTIVE_MS);
      assert.equal(closed, false, `open after ${ACTIVE_MS} ms with only upstream bytes (timeout ${IDLE_MS} ms)`);
      assert.ok(t.received().length >= ACTIVE_MS / TICK_MS - 3, `ticks received: ${t.received().length}`);
      assert.equal(await idleTimeouts('tunnel'), before);
    } finally {
      t.socket.destroy();
    }
  });

  it('an idle CONNECT tunnel over HTTP/2 is reset after the timeout; the connection stays usable', async () => {
    const before = await idleTimeouts('tunnel');
    const session = http2.connect(`http://127.0.0.1:${tunnelPort}`);
    session.on('error', () => {});
    try {
      const stream = session.request({ ':method': 'CONNECT', ':authority': 'echo.tcp:7' });
      stream.on('error', () => {});
      const response = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        stream.once('response', resolve);
        stream.once('error', reject);
      });
      assert.equal(response[':status'], 200);
      const start = performance.now();
      await new Promise<void>((r) => stream.once('close', () => r()));
      const idleFor = performance.now() - start;
      assert.ok(idleFor >= IDLE_MS - 50 && idleFor < IDLE_MS + 1500, `stream closed after ${idleFor.toFixed(0)} ms`);
      assert.notEqual(stream.rstCode, 0, 'the stream was reset, not ended');
      await waitUntil(async () => (await idleTimeouts('tunnel')) === before + 1, { what: 'downstream_rq_idle_timeout +1' });
      // Only the stream went: a new tunnel on the same session works.
      const again = session.request({ ':method': 'CONNECT', ':authority': 'echo.tcp:7' });
      again.on('error', () => {});
      const chunks: Buffer[] = [];
      again.on('data', (d: Buffer) => chunks.push(d));
      again.write('still here');
      await waitUntil(() => Buffer.concat(chunks).toString() === 'still here', { what: 'echo on a second tunnel of the same session' });
      again.close();
    } finally {
      session.destroy();
    }
  });
});
