// RELIABILITY rows 17 and 18 through `sloop proxy`: request bodies over the retry buffer limit (Envoy's
// per_request_buffer_limit_bytes, else the listener/cluster per_connection_buffer_limit_bytes, default 1 MiB:
// a body over it is streamed, not retried, and counted as retry_or_shadow_abandoned), very large streamed
// bodies over HTTP/1.1 and h2 with the proxy's memory bounded, and a flood of idle connections that must not
// stop new requests nor in-flight streams, with the fd count back to baseline once they go.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import { connect as h2connect } from 'node:http2';
import { connect, type Socket } from 'node:net';
import { startHttpUpstream, type HttpUpstream } from '../helpers/upstreams.ts';
import { startProxy, bootstrapWith, httpListener, staticCluster, virtualHost, prefixRoute, type ProxyHandle } from '../helpers/proxy.ts';
import { curl } from '../helpers/clients.ts';
import { freePorts, LOOPBACK } from '../helpers/ports.ts';
import { waitUntil } from '../helpers/wait.ts';

const MiB = 1024 * 1024;
// Streaming means memory does not follow the body size: a 256 MiB body may not add half of itself. V8's heap
// alone grows by tens of MiB under any load before a major GC, so the slack is not tighter than that.
const RSS_SLACK = 128 * MiB;
/** Streamed body size: four times the RSS slack, so buffering it would fail the bound. */
const STREAM_BYTES = 256 * MiB;

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

function fdCount(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** Samples the proxy's RSS every 50 ms while `work` runs; returns the peak growth over the start value. */
async function peakRssGrowth(pid: number, work: () => Promise<void>): Promise<number> {
  const start = rssBytes(pid);
  let peak = start;
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssBytes(pid));
    } catch {
      // the proxy exited; the work's own assertions say why
    }
  }, 50);
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  return Math.max(peak, rssBytes(pid)) - start;
}

/** An HTTP/1.1 upstream that counts request body bytes without keeping them and answers the count. */
async function startCountingUpstream(): Promise<{ port: number; counts: number[]; close(): Promise<void> }> {
  const counts: number[] = [];
  const server: Server = createServer((req, res) => {
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
    });
    req.on('end', () => {
      counts.push(n);
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(String(n));
    });
  });
  await new Promise<void>((r) => server.listen(0, LOOPBACK, r));
  return {
    port: (server.address() as { port: number }).port,
    counts,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Writes `total` bytes in 64 KiB chunks honouring backpressure (no big buffer in the test process either). */
function pumpBody(w: { write(c: Buffer): boolean; once(ev: 'drain', fn: () => void): unknown; end(): unknown }, total: number): void {
  const chunk = Buffer.alloc(64 * 1024, 's');
  let sent = 0;
  const pump = (): void => {
    while (sent < total) {
      const c = total - sent >= chunk.length ? chunk : chunk.subarray(0, total - sent);
      sent += c.length;
      if (!w.write(c)) {
        w.once('drain', pump);
        return;
      }
    }
    w.end();
  };
  pump();
}

function postH1(port: number, path: string, total: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: LOOPBACK, port, path, method: 'POST', agent: false, headers: { host: 'svc.local', 'content-length': total } }, (res: IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8').on('data', (s: string) => (body += s));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    pumpBody(req, total);
  });
}

function postH2(port: number, path: string, total: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const session = h2connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const req = session.request({ ':method': 'POST', ':path': path, ':authority': 'svc.local' });
    let status = 0;
    let body = '';
    req.on('response', (h) => (status = Number(h[':status'])));
    req.setEncoding('utf8').on('data', (s: string) => (body += s));
    req.on('end', () => {
      session.close();
      resolve({ status, body });
    });
    req.on('error', (e) => {
      session.destroy();
      reject(e);
    });
    pumpBody(req, total);
  });
}

describe('limits: buffering, large bodies, connection floods (RELIABILITY rows 17, 18)', () => {
  let up: HttpUpstream;
  let counting: Awaited<ReturnType<typeof startCountingUpstream>>;
  let proxy: ProxyHandle;
  let port: number;
  let quietPort: number;
  let pid: number;

  before(async () => {
    up = await startHttpUpstream({ name: 'a' });
    counting = await startCountingUpstream();
    const [p, quiet, admin] = await freePorts(3);
    port = p;
    quietPort = quiet;
    const retry = { retry_policy: { retry_on: '5xx', num_retries: 1 } };
    proxy = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [
          httpListener({
            name: 'edge',
            port,
            virtualHosts: [
              virtualHost('svc', ['*'], [
                // Retries buffer the body up to the cluster's per_connection_buffer_limit_bytes (default 1 MiB).
                prefixRoute('/retry/', 'a', retry),
                // ... or the route's per_request_buffer_limit_bytes.
                { match: { prefix: '/retry-small/' }, route: { cluster: 'a', ...retry }, per_request_buffer_limit_bytes: 64 * 1024 },
                prefixRoute('/count-retry/', 'counting', retry),
                prefixRoute('/count/', 'counting'),
                prefixRoute('/', 'a'),
              ]),
            ],
          }),
          // A short connection idle_timeout (Envoy default 1 h) for connections that never send a byte.
          httpListener({
            name: 'quiet',
            port: quietPort,
            virtualHosts: [virtualHost('svc', ['*'], [prefixRoute('/', 'a')])],
            hcmExtra: { common_http_protocol_options: { idle_timeout: '0.5s' } },
          }),
        ],
        clusters: [staticCluster('a', [['127.0.0.1', up.port]]), staticCluster('counting', [['127.0.0.1', counting.port]])],
      }),
    );
    pid = proxy.process.pid!;
  });

  after(async () => {
    await proxy?.stop();
    await up?.close();
    await counting?.close();
  });

  const abandoned = async (): Promise<number> => (await proxy.stats())['cluster.a.retry_or_shadow_abandoned'] ?? 0;

  describe('row 17: a body over the retry buffer limit', () => {
    it('a body under the 1 MiB default limit is buffered and replayed on retry', async () => {
      const n = up.requests.length;
      const body = 'x'.repeat(512 * 1024);
      const r = await curl(['--data-binary', '@-', `http://127.0.0.1:${port}/retry/status/503`], { input: body });
      assert.equal(r.status, 503);
      const got = await up.recorder.waitForCount(n + 2);
      assert.deepEqual(got.slice(n).map((q) => q.body.length), [body.length, body.length], 'both attempts carried the whole body');
    });

    for (const [name, path, size] of [
      ['over the 1 MiB per_connection_buffer_limit_bytes default', '/retry/status/503', 2 * MiB],
      ['over a route per_request_buffer_limit_bytes of 64 KiB', '/retry-small/status/503', 256 * 1024],
    ] as const) {
      for (const proto of ['HTTP/1.1', 'h2'] as const) {
        it(`${proto}: a body ${name} is forwarded once, not retried, counted as retry_or_shadow_abandoned`, async () => {
          const n = up.requests.length;
          const before = await abandoned();
          const args = proto === 'h2' ? ['--http2-prior-knowledge'] : ['--http1.1'];
          const r = await curl([...args, '--data-binary', '@-', `http://127.0.0.1:${port}${path}`], { input: 'y'.repeat(size) });
          assert.equal(r.status, 503, 'the first attempt’s answer');
          await up.recorder.waitForCount(n + 1);
          assert.equal(up.requests[n].body.length, size, 'the whole body was streamed to the upstream');
          // No second attempt (polling window for a retry that would come after the 25 ms base backoff).
          await new Promise((res) => setTimeout(res, 300));
          assert.equal(up.requests.length - n, 1, 'not retried');
          assert.equal((await abandoned()) - before, 1, 'retry_or_shadow_abandoned counted once');
        });
      }
    }
  });

  describe('row 17: large streamed bodies keep memory bounded', () => {
    for (const [proto, post] of [['HTTP/1.1', postH1], ['h2', postH2]] as const) {
      for (const path of ['/count/', '/count-retry/']) {
        it(`${proto}: ${STREAM_BYTES / MiB} MiB through ${path === '/count/' ? 'a plain route' : 'a retry route (buffers only up to its limit)'}`, async () => {
          let result = { status: 0, body: '' };
          const growth = await peakRssGrowth(pid, async () => {
            result = await post(port, `${path}big`, STREAM_BYTES);
          });
          assert.equal(result.status, 200);
          assert.equal(Number(result.body), STREAM_BYTES, 'the upstream counted every byte');
          assert.equal(counting.counts.at(-1), STREAM_BYTES);
          assert.ok(growth < RSS_SLACK, `proxy RSS peaked ${(growth / MiB).toFixed(1)} MiB above its start`);
        });
      }
    }
  });

  describe('row 18: connection flood', () => {
    it('2000 idle connections: in-flight streams finish, new requests are served, fds return to baseline', async () => {
      const fd0 = fdCount(pid);
      const inflight = curl(['--http1.1', `http://127.0.0.1:${port}/delay/1500?inflight=1`]);
      const inflightH2 = curl(['--http2-prior-knowledge', `http://127.0.0.1:${port}/delay/1500?inflight=2`]);
      const idle: Socket[] = [];
      try {
        for (let batch = 0; batch < 20; batch++) {
          await Promise.all(
            Array.from({ length: 100 }, () =>
              new Promise<void>((resolve, reject) => {
                const s = connect({ port, host: LOOPBACK }, () => resolve());
                s.on('error', reject);
                idle.push(s);
              }),
            ),
          );
        }
        await waitUntil(() => fdCount(pid) >= fd0 + 2000, { what: 'the proxy to accept 2000 connections', timeoutMs: 10_000 });
        const [a, b] = await Promise.all([
          curl(['--http1.1', `http://127.0.0.1:${port}/during-flood`]),
          curl(['--http2-prior-knowledge', `http://127.0.0.1:${port}/during-flood-h2`]),
        ]);
        assert.equal(a.status, 200);
        assert.equal(b.status, 200);
        assert.equal((await inflight).status, 200, 'the in-flight h1 request finished');
        assert.equal((await inflightH2).status, 200, 'the in-flight h2 request finished');
        assert.ok(idle.every((s) => !s.destroyed), 'idle connections were not dropped while under the limits');
      } finally {
        for (const s of idle) s.destroy();
      }
      // Small slack: the proxy's own pooled upstream connections may stay open.
      await waitUntil(() => fdCount(pid) <= fd0 + 4, { what: `proxy fd count back near ${fd0} (now ${fdCount(pid)})`, timeoutMs: 10_000 });
      const after = await curl(['--http1.1', `http://127.0.0.1:${port}/after-flood`]);
      assert.equal(after.status, 200);
    });

    it('connections that never send a byte are closed by the connection idle_timeout', async () => {
      const fd0 = fdCount(pid);
      const before = (await proxy.stats())['http.quiet.downstream_cx_idle_timeout'] ?? 0;
      const silent = await Promise.all(
        Array.from({ length: 200 }, () =>
          new Promise<{ closed: Promise<void> }>((resolve, reject) => {
            const s = connect({ port: quietPort, host: LOOPBACK }, () => resolve({ closed: new Promise<void>((r) => s.once('close', () => r())) }));
            s.on('error', () => {});
            s.once('error', reject);
            s.resume();
          }),
        ),
      );
      await Promise.all(silent.map((c) => c.closed));
      await waitUntil(async () => ((await proxy.stats())['http.quiet.downstream_cx_idle_timeout'] ?? 0) - before >= 200, { what: 'downstream_cx_idle_timeout for 200 connections' });
      await waitUntil(() => fdCount(pid) <= fd0 + 4, { what: `proxy fd count back near ${fd0} (now ${fdCount(pid)})` });
    });
  });
});
