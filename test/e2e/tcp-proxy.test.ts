// envoy.filters.network.tcp_proxy through `sloop proxy`: cluster and weighted_clusters, idle_timeout,
// connect failures, half-close both ways, large transfers with backpressure, many connections, Envoy's stats.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { startTcpEcho, type TcpEcho } from '../helpers/upstreams.ts';
import { startProxy, bootstrapWith, staticCluster, tcpProxyListener, type ProxyHandle } from '../helpers/proxy.ts';
import { freePort, freePorts, LOOPBACK } from '../helpers/ports.ts';
import { Recorder, waitUntil } from '../helpers/wait.ts';

const TCP_PROXY_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy';

/** What a plain node:net client saw on one connection through the proxy. */
interface ClientResult {
  data: Buffer;
  /** The proxy sent FIN (clean end) before the socket closed. */
  gotEnd: boolean;
  hadError: boolean;
}

function openClient(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: LOOPBACK, port, allowHalfOpen: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/**
 * Collects everything `s` receives until it closes. On the proxy's FIN it ends its own side too, as a
 * client without allowHalfOpen would (our sockets are half-open so the half-close tests can keep sending).
 */
function collect(s: Socket): Promise<ClientResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let gotEnd = false;
    let hadError = false;
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => {
      gotEnd = true;
      s.end();
    });
    s.on('error', () => {
      hadError = true;
    });
    s.once('close', () => resolve({ data: Buffer.concat(chunks), gotEnd, hadError }));
  });
}

/** Sends `payload` on a fresh connection, half-closes, and resolves with what came back before close. */
async function roundTrip(port: number, payload: Buffer | string): Promise<ClientResult> {
  const s = await openClient(port);
  const done = collect(s);
  s.end(payload);
  return done;
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** A net server with allowHalfOpen that hands each accepted socket to `onSocket`; closes them all on close(). */
async function startRawServer(onSocket: (s: Socket) => void): Promise<{ port: number; server: Server; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.on('error', () => {});
    onSocket(s);
  });
  await new Promise<void>((resolve) => server.listen(0, LOOPBACK, resolve));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no address');
  return {
    port: addr.port,
    server,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('tcp_proxy', () => {
  let echo: TcpEcho;
  let echoB: TcpEcho;
  let halfCloseUp: Awaited<ReturnType<typeof startRawServer>>;
  let serverFirstUp: Awaited<ReturnType<typeof startRawServer>>;
  /** What serverFirstUp received from each client after it had already sent its own FIN. */
  const afterServerFin = new Recorder<{ data: string; gotEnd: boolean }>('connections to the server-closes-first upstream');
  let proxy: ProxyHandle;
  let port: number; // cluster: echo
  let weightedPort: number;
  let idlePort: number;
  let deadPort: number;
  let halfPort: number;
  let serverFirstPort: number;
  let unknownPort: number;

  before(async () => {
    echo = await startTcpEcho();
    echoB = await startTcpEcho();
    // Reads until the client's FIN, then answers with what it got and closes: only works if the proxy
    // relays the client's half-close and keeps the other direction open.
    halfCloseUp = await startRawServer((s) => {
      const got: Buffer[] = [];
      s.on('data', (c: Buffer) => got.push(c));
      s.on('end', () => s.end(`after-fin:${Buffer.concat(got).toString()}`));
    });
    // Speaks first and half-closes at once; keeps reading what the client still sends.
    serverFirstUp = await startRawServer((s) => {
      const got: Buffer[] = [];
      s.end('server-done');
      s.on('data', (c: Buffer) => got.push(c));
      s.on('end', () => afterServerFin.push({ data: Buffer.concat(got).toString(), gotEnd: true }));
    });
    let admin: number;
    [port, weightedPort, idlePort, deadPort, halfPort, serverFirstPort, unknownPort, admin] = await freePorts(8);
    const deadUpstreamPort = await freePort(); // nothing listens there: connection refused
    proxy = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [
          tcpProxyListener({ name: 'tcp_echo', port, cluster: 'echo', statPrefix: 'echo_tcp' }),
          {
            name: 'tcp_weighted',
            address: { socket_address: { address: LOOPBACK, port_value: weightedPort } },
            filter_chains: [
              {
                filters: [
                  {
                    name: 'envoy.filters.network.tcp_proxy',
                    typed_config: {
                      '@type': TCP_PROXY_TYPE,
                      stat_prefix: 'weighted',
                      weighted_clusters: { clusters: [{ name: 'echo', weight: 75 }, { name: 'echo_b', weight: 25 }] },
                    },
                  },
                ],
              },
            ],
          },
          tcpProxyListener({ name: 'tcp_idle', port: idlePort, cluster: 'echo', statPrefix: 'idle', tcpProxyExtra: { idle_timeout: '0.5s' } }),
          tcpProxyListener({ name: 'tcp_dead', port: deadPort, cluster: 'dead', statPrefix: 'dead' }),
          tcpProxyListener({ name: 'tcp_half', port: halfPort, cluster: 'half', statPrefix: 'half' }),
          tcpProxyListener({ name: 'tcp_server_first', port: serverFirstPort, cluster: 'server_first', statPrefix: 'server_first' }),
          tcpProxyListener({ name: 'tcp_unknown', port: unknownPort, cluster: 'no_such_cluster', statPrefix: 'unknown' }),
        ],
        clusters: [
          staticCluster('echo', [[LOOPBACK, echo.port]]),
          staticCluster('echo_b', [[LOOPBACK, echoB.port]]),
          staticCluster('dead', [[LOOPBACK, deadUpstreamPort]]),
          staticCluster('half', [[LOOPBACK, halfCloseUp.port]]),
          staticCluster('server_first', [[LOOPBACK, serverFirstUp.port]]),
        ],
      }),
    );
  });

  after(async () => {
    await proxy?.stop();
    await echo?.close();
    await echoB?.close();
    await halfCloseUp?.close();
    await serverFirstUp?.close();
  });

  it('relays bytes both ways to the cluster and counts them in tcp.<stat_prefix>.* and cluster stats', async () => {
    const before = await proxy.stats();
    const seen = echo.connections.length;
    const r = await roundTrip(port, 'hello through tcp_proxy');
    assert.equal(r.data.toString(), 'hello through tcp_proxy');
    assert.equal(r.gotEnd, true, 'the proxy relays the upstream FIN');
    const conn = await echo.recorder.waitForCount(seen + 1).then((c) => c[seen]);
    assert.equal(Buffer.concat(conn.chunks).toString(), 'hello through tcp_proxy');
    const st = await waitUntil(async () => {
      const s = await proxy.stats();
      return (s['tcp.echo_tcp.downstream_cx_tx_bytes_total'] ?? 0) - (before['tcp.echo_tcp.downstream_cx_tx_bytes_total'] ?? 0) >= 23 ? s : undefined;
    }, { what: 'tcp tx bytes stat' });
    const d = (n: string): number => (st[n] ?? 0) - (before[n] ?? 0);
    assert.equal(d('tcp.echo_tcp.downstream_cx_total'), 1);
    assert.equal(d('tcp.echo_tcp.downstream_cx_rx_bytes_total'), 23);
    assert.equal(d('tcp.echo_tcp.downstream_cx_tx_bytes_total'), 23);
    assert.equal(d('cluster.echo.upstream_cx_total'), 1);
    assert.equal(d('cluster.echo.upstream_cx_tx_bytes_total'), 23);
    assert.equal(d('cluster.echo.upstream_cx_rx_bytes_total'), 23);
  });

  it('half-close downstream → upstream: the client end()s, the upstream sees FIN and can still answer', async () => {
    const r = await roundTrip(halfPort, 'question');
    assert.equal(r.hadError, false);
    assert.equal(r.data.toString(), 'after-fin:question');
    assert.equal(r.gotEnd, true);
  });

  it('half-close upstream → downstream: the upstream end()s first, the client can still send', async () => {
    const s = await openClient(serverFirstPort);
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    const gotEnd = new Promise<void>((resolve) => s.once('end', () => resolve()));
    const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
    await gotEnd;
    assert.equal(Buffer.concat(chunks).toString(), 'server-done');
    const n = afterServerFin.items.length;
    // Our side is still open: these bytes must reach the upstream, which already sent its FIN.
    s.write('still-talking');
    s.end(' and-done');
    const got = await afterServerFin.waitForCount(n + 1).then((items) => items[n]);
    assert.equal(got.data, 'still-talking and-done');
    await closed;
  });

  it('carries 20 MB each way with backpressure, byte for byte', async () => {
    const payload = randomBytes(20 * 1024 * 1024);
    const seen = echo.connections.length;
    const s = await openClient(port);
    const done = collect(s);
    // Write in 64 KiB slices honouring our own backpressure, so the proxy's flow control is what paces us.
    for (let off = 0; off < payload.length; off += 65536) {
      if (!s.write(payload.subarray(off, off + 65536))) await new Promise((resolve) => s.once('drain', resolve));
    }
    s.end();
    const r = await done;
    assert.equal(r.data.length, payload.length);
    assert.equal(sha256(r.data), sha256(payload));
    const conn = echo.connections[seen];
    assert.equal(conn.bytes, payload.length, 'the upstream got every byte');
    assert.equal(sha256(Buffer.concat(conn.chunks)), sha256(payload));
  });

  it('keeps a slow reader bounded: nothing is lost when the client stops reading for a while', async () => {
    // Larger than every socket buffer on the path can hold (loopback buffers autotune to several MiB each, eight
    // of them between client, proxy and echo): the client must block unless the proxy buffers without bound.
    const payload = randomBytes(64 * 1024 * 1024);
    const s = await openClient(port);
    s.pause();
    const chunks: Buffer[] = [];
    const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
    // Write everything; with the reader paused the echo's replies back up through the proxy to us.
    let blocked = false;
    const writes = (async () => {
      for (let off = 0; off < payload.length; off += 65536) {
        if (!s.write(payload.subarray(off, off + 65536))) {
          blocked = true;
          await new Promise((resolve) => s.once('drain', resolve));
        }
      }
      s.end();
    })();
    await waitUntil(() => blocked, { what: 'the client to feel backpressure while not reading', timeoutMs: 20_000 });
    s.on('data', (c: Buffer) => chunks.push(c));
    s.resume();
    await writes;
    await closed;
    assert.equal(sha256(Buffer.concat(chunks)), sha256(payload));
  });

  it('serves many concurrent connections, each getting its own bytes back', async () => {
    const N = 100;
    const payloads = Array.from({ length: N }, (_, i) => Buffer.concat([Buffer.from(`conn-${i}:`), randomBytes(4096 + i)]));
    const results = await Promise.all(payloads.map((p) => roundTrip(port, p)));
    for (let i = 0; i < N; i++) assert.ok(results[i].data.equals(payloads[i]), `connection ${i} got its own bytes`);
  });

  it('splits connections across weighted_clusters by weight', async () => {
    const a0 = echo.connections.length;
    const b0 = echoB.connections.length;
    const N = 200;
    // Batches of 20 keep the 2-core machine from drowning; every connection is still a fresh pick.
    for (let i = 0; i < N; i += 20) {
      const rs = await Promise.all(Array.from({ length: 20 }, (_, j) => roundTrip(weightedPort, `w${i + j}`)));
      for (const [j, r] of rs.entries()) assert.equal(r.data.toString(), `w${i + j}`);
    }
    const a = echo.connections.length - a0;
    const b = echoB.connections.length - b0;
    assert.equal(a + b, N);
    // 75/25 over 200: mean 150, σ ≈ 6.1. ±5σ is plausible; a broken split (all to one side, or 50/50) is not.
    assert.ok(a >= 120 && a <= 180, `echo got ${a} of ${N} (want ≈150)`);
    assert.ok(b >= 20 && b <= 80, `echo_b got ${b} of ${N} (want ≈50)`);
    const st = await proxy.stats();
    assert.ok((st['tcp.weighted.downstream_cx_total'] ?? 0) >= N);
  });

  it('closes a connection idle for idle_timeout, both sides, and counts tcp.<prefix>.idle_timeout', async () => {
    const before = (await proxy.stats())['tcp.idle.idle_timeout'] ?? 0;
    const seen = echo.connections.length;
    const s = await openClient(idlePort);
    const r = collect(s);
    s.write('ping');
    const conn = await echo.recorder.waitForCount(seen + 1).then((c) => c[seen]);
    const lastByteAt = performance.now();
    const result = await r; // closed by the proxy, not by us
    // Not early: the window runs from the last byte (upper bound left loose for a loaded machine).
    assert.ok(performance.now() - lastByteAt >= 450, `closed ${Math.round(performance.now() - lastByteAt)} ms after the last byte`);
    assert.equal(result.data.toString(), 'ping');
    await waitUntil(() => conn.closed, { what: 'the upstream side of the idle connection to close' });
    await waitUntil(async () => ((await proxy.stats())['tcp.idle.idle_timeout'] ?? 0) === before + 1, { what: 'tcp.idle.idle_timeout + 1' });
  });

  it('does not close a connection that keeps talking within idle_timeout', async () => {
    const s = await openClient(idlePort);
    const r = collect(s);
    let closedEarly = false;
    s.once('close', () => {
      closedEarly = true;
    });
    // 2 s of traffic every 100 ms against a 0.5 s idle timeout.
    for (let i = 0; i < 20; i++) {
      s.write(`tick${i};`);
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.equal(closedEarly, false, `closed after ${i + 1} ticks despite activity`);
    }
    s.end();
    const got = await r;
    assert.equal(got.data.toString(), Array.from({ length: 20 }, (_, i) => `tick${i};`).join(''));
  });

  it('closes the downstream when the upstream connect fails and counts upstream_cx_connect_fail', async () => {
    const before = await proxy.stats();
    const s = await openClient(deadPort);
    const r = await collect(s);
    assert.equal(r.data.length, 0);
    const st = await waitUntil(async () => {
      const x = await proxy.stats();
      return (x['cluster.dead.upstream_cx_connect_fail'] ?? 0) > (before['cluster.dead.upstream_cx_connect_fail'] ?? 0) ? x : undefined;
    }, { what: 'cluster.dead.upstream_cx_connect_fail' });
    assert.equal((st['cluster.dead.upstream_cx_total'] ?? 0) - (before['cluster.dead.upstream_cx_total'] ?? 0), 1);
    assert.equal((st['tcp.dead.downstream_cx_total'] ?? 0) - (before['tcp.dead.downstream_cx_total'] ?? 0), 1);
  });

  it('closes the downstream when the cluster does not exist and counts downstream_cx_no_route', async () => {
    const s = await openClient(unknownPort);
    const r = await collect(s);
    assert.equal(r.data.length, 0);
    await waitUntil(async () => ((await proxy.stats())['tcp.unknown.downstream_cx_no_route'] ?? 0) >= 1, { what: 'tcp.unknown.downstream_cx_no_route' });
  });
});
