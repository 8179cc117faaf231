// Upstream failures through `sloop proxy` (RELIABILITY rows 31 and 33): route timeout (504 "upstream request
// timeout"), timeout 0s, a response that stalls mid-body (downstream reset, not a 504), refused / reset /
// unresponsive upstreams with Envoy's exact 503 bodies, and cluster circuit breakers (immediate 503 overflow).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import type { ServerResponse } from 'node:http';
import { echoHandler, startHttpUpstream, type HttpUpstream } from '../helpers/upstreams.ts';
import { startProxy, bootstrapWith, httpListener, staticCluster, virtualHost, prefixRoute, type ProxyHandle } from '../helpers/proxy.ts';
import { curl, rawHttp } from '../helpers/clients.ts';
import { freePorts } from '../helpers/ports.ts';
import { waitUntil } from '../helpers/wait.ts';

/**
 * A TCP port that never completes a handshake: a stopped process listening with backlog 1 (Node treats 0 as
 * its default) and two queued connections, so the kernel drops further SYNs (blackhole addresses are not
 * reliably unroutable in CI sandboxes).
 */
async function startBlackhole(): Promise<{ port: number; close(): void }> {
  const child: ChildProcess = spawn(process.execPath, [
    '-e',
    `const s = require('node:net').createServer({ pauseOnConnect: true }); s.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => { console.log(s.address().port); process.kill(process.pid, 'SIGSTOP'); });`,
  ], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once('exit', () => reject(new Error('blackhole helper exited')));
  });
  // Fill the accept queue: once two connections are queued, new SYNs go unanswered.
  const fillers: Socket[] = [];
  for (let i = 0; i < 3; i++) {
    const s = connect(port, '127.0.0.1');
    s.on('error', () => {});
    fillers.push(s);
  }
  await new Promise((r) => setTimeout(r, 100));
  return {
    port,
    close: () => {
      for (const s of fillers) s.destroy();
      child.kill('SIGKILL');
    },
  };
}

describe('upstream timeouts, failures and circuit breakers', () => {
  let up: HttpUpstream;
  let proxy: ProxyHandle;
  let port: number;
  let deadPort: number;
  let blackhole: Awaited<ReturnType<typeof startBlackhole>> | undefined;
  const get = (path: string, args: string[] = []) => curl(['-H', 'host: svc.local', ...args, `http://127.0.0.1:${port}${path}`]);
  const stat = async (name: string): Promise<number> => (await proxy.stats())[name] ?? 0;

  before(async () => {
    const echo = echoHandler('a');
    up = await startHttpUpstream({
      name: 'a',
      handler: (req, res, rec) => {
        // Headers and part of the body now, the rest never: a response that stalls mid-body.
        if (rec.url.endsWith('/stall-body')) {
          (res as ServerResponse).writeHead(200, { 'content-length': '100', 'x-upstream': 'a' });
          (res as ServerResponse).write('0123456789');
          return;
        }
        echo(req, res, rec);
      },
    });
    blackhole = await startBlackhole();
    const [p, dead, admin] = await freePorts(3);
    port = p;
    deadPort = dead;
    proxy = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [
          httpListener({
            name: 'ingress',
            port,
            virtualHosts: [
              virtualHost('svc', ['*'], [
                prefixRoute('/t300/', 'a', { timeout: '0.3s' }),
                prefixRoute('/notimeout/', 'a', { timeout: '0s' }),
                prefixRoute('/dead/', 'dead'),
                prefixRoute('/hole/', 'hole'),
                prefixRoute('/cb/', 'breaker'),
                prefixRoute('/', 'a'),
              ]),
            ],
          }),
        ],
        clusters: [
          staticCluster('a', [['127.0.0.1', up.port]]),
          staticCluster('dead', [['127.0.0.1', deadPort]]),
          staticCluster('hole', [['127.0.0.1', blackhole.port]], { connect_timeout: '0.25s' }),
          staticCluster('breaker', [['127.0.0.1', up.port]], {
            circuit_breakers: { thresholds: [{ max_connections: 1, max_pending_requests: 1, max_requests: 100 }] },
          }),
        ],
      }),
    );
  });

  after(async () => {
    await proxy?.stop();
    await up?.close();
    blackhole?.close();
  });

  it('route timeout → 504 "upstream request timeout", upstream_rq_timeout, upstream told the deadline', async () => {
    const before = await stat('cluster.a.upstream_rq_timeout');
    const t0 = performance.now();
    const r = await get('/t300/delay/3000');
    const ms = performance.now() - t0;
    assert.equal(r.status, 504);
    assert.equal(r.text, 'upstream request timeout');
    assert.ok(ms < 2_500, `504 after ${Math.round(ms)} ms`);
    assert.equal(await stat('cluster.a.upstream_rq_timeout'), before + 1);
    const seen = up.requests.find((q) => q.url === '/t300/delay/3000');
    assert.equal(seen?.headerMap['x-envoy-expected-rq-timeout-ms'], '300');
    // The next request on the same route is unaffected.
    assert.equal((await get('/t300/fast')).status, 200);
  });

  it('timeout 0s disables the route timeout (and the expected-timeout header)', async () => {
    const r = await get('/notimeout/delay/700');
    assert.equal(r.status, 200);
    const seen = up.requests.find((q) => q.url === '/notimeout/delay/700');
    assert.equal(seen?.headerMap['x-envoy-expected-rq-timeout-ms'], undefined);
  });

  it('response headers sent, body stalls past the route timeout → downstream reset, not a 504', async () => {
    const before = await stat('cluster.a.upstream_rq_timeout');
    const r = await get('/t300/stall-body');
    assert.equal(r.status, 200, 'the upstream status already went out');
    assert.notEqual(r.exitCode, 0, 'curl saw a truncated transfer');
    assert.equal(r.text, '0123456789');
    assert.notEqual(r.exitCode, 28, 'cut by the proxy, not by curl --max-time');
    assert.equal(await stat('cluster.a.upstream_rq_timeout'), before + 1);
    // Raw: the connection is closed after the partial body, no 504 appended.
    const raw = await rawHttp(port, `GET /t300/stall-body HTTP/1.1\r\nHost: svc.local\r\n\r\n`, { waitForClose: true, timeoutMs: 3_000 });
    assert.ok(raw.closed);
    assert.ok(!raw.text.includes('504'), raw.text);
  });

  it('row 31: upstream refuses → 503 with Envoy\'s body; upstream_cx_connect_fail', async () => {
    const before = await stat('cluster.dead.upstream_cx_connect_fail');
    const r = await get('/dead/x');
    assert.equal(r.status, 503);
    assert.equal(
      r.text,
      'upstream connect error or disconnect/reset before headers. reset reason: remote connection failure, transport failure reason: delayed connect error: Connection refused',
    );
    assert.equal(r.headers['content-type'], 'text/plain');
    assert.equal(await stat('cluster.dead.upstream_cx_connect_fail'), before + 1);
  });

  it('row 31: upstream resets before headers → 503 "…reset reason: connection termination"', async () => {
    const seen = up.requests.length;
    const r = await get('/x/reset');
    assert.equal(r.status, 503);
    assert.equal(r.text, 'upstream connect error or disconnect/reset before headers. reset reason: connection termination');
    assert.equal(up.requests.length, seen + 1, 'one attempt: no retry without a retry policy');
    assert.ok((await stat('cluster.a.upstream_rq_rx_reset')) >= 1);
  });

  it('row 31: upstream never completes the handshake → 503 at connect_timeout; upstream_cx_connect_timeout', async () => {
    const t0 = performance.now();
    const r = await get('/hole/x');
    const ms = performance.now() - t0;
    assert.equal(r.status, 503);
    assert.equal(r.text, 'upstream connect error or disconnect/reset before headers. reset reason: connection timeout');
    assert.ok(ms < 3_000, `connect timeout of 0.25 s took ${Math.round(ms)} ms`);
    assert.equal(await stat('cluster.hole.upstream_cx_connect_timeout'), 1);
  });

  it('row 33: beyond max_connections 1 + max_pending_requests 1 → immediate 503 overflow, x-envoy-overloaded', async () => {
    const seen = up.requests.length;
    // One request holds the only connection, one waits in the pending queue, the rest overflow at once.
    // The first must be on the connection before the second is sent: while it is still connecting it is itself
    // the one pending request (as in Envoy), and the second would overflow.
    const first = get('/cb/delay/800');
    await waitUntil(async () => (await stat('cluster.breaker.upstream_rq_active')) >= 1 || undefined, { what: 'an active request' });
    const slow = [first, get('/cb/delay/800')];
    await waitUntil(async () => (await stat('cluster.breaker.upstream_rq_pending_active')) >= 1 || undefined, { what: 'a pending request' });
    const t0 = performance.now();
    const over = await Promise.all([get('/cb/over1'), get('/cb/over2')]);
    const ms = performance.now() - t0;
    for (const r of over) {
      assert.equal(r.status, 503);
      assert.equal(r.text, 'upstream connect error or disconnect/reset before headers. reset reason: overflow');
      assert.equal(r.headers['x-envoy-overloaded'], 'true');
    }
    assert.ok(ms < 700, `overflow replies took ${Math.round(ms)} ms: they waited instead of failing fast`);
    const done = await Promise.all(slow);
    assert.deepEqual(
      done.map((r) => r.status),
      [200, 200],
      'the admitted requests still complete',
    );
    assert.equal(up.requests.length, seen + 2, 'overflowed requests never reached the upstream');
    assert.ok(!up.requests.some((q) => q.url.startsWith('/cb/over')));
    assert.equal(await stat('cluster.breaker.upstream_rq_pending_overflow'), 2);
    assert.equal(await stat('cluster.breaker.upstream_cx_active'), 1, 'never more than one connection');
  });
});
