// RELIABILITY row 30: SIGTERM under load. `sloop proxy` stops accepting, closes idle keep-alive connections,
// lets the in-flight request finish (HTTP/1.1 answers with `Connection: close`), then exits 0 within
// --drain-time-s (Envoy's drain: listeners stop, in-flight streams complete, the process exits).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { startHttpUpstream } from '../helpers/upstreams.ts';
import { startProxy, bootstrapWith, httpListener, staticCluster, virtualHost, prefixRoute } from '../helpers/proxy.ts';
import { parseHttpResponses, rawHttp } from '../helpers/clients.ts';
import { freePorts } from '../helpers/ports.ts';

/** A raw keep-alive client connection that collects bytes and notes when the proxy closes it. */
function openClient(port: number): Promise<{ socket: Socket; data: () => Buffer; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => {});
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.once('connect', () => resolve({ socket, data: () => Buffer.concat(chunks), closed }));
    socket.once('error', reject);
  });
}

describe('drain on SIGTERM (RELIABILITY row 30)', () => {
  it('in-flight request finishes with Connection: close, idle connections close, new ones are refused, exit 0', async (t) => {
    const up = await startHttpUpstream({ name: 'a' });
    t.after(() => up.close());
    const [port, admin] = await freePorts(2);
    const proxy = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [httpListener({ name: 'ingress', port, virtualHosts: [virtualHost('svc', ['*'], [prefixRoute('/', 'a')])] })],
        clusters: [staticCluster('a', [['127.0.0.1', up.port]])],
      }),
      { args: ['--drain-time-s', '5'], t },
    );

    // An idle keep-alive connection that already served one request.
    const idle = await openClient(port);
    idle.socket.write('GET /warm HTTP/1.1\r\nHost: svc.local\r\n\r\n');
    while (parseHttpResponses(idle.data()).responses.length < 1) await new Promise((r) => setTimeout(r, 10));

    // A long request in flight when SIGTERM arrives.
    const busy = await openClient(port);
    busy.socket.write('GET /delay/800 HTTP/1.1\r\nHost: svc.local\r\n\r\n');
    await up.recorder.waitFor((q) => q.url === '/delay/800');

    const t0 = performance.now();
    proxy.process.kill('SIGTERM');

    // The idle connection is closed promptly, without waiting for the busy one.
    await idle.closed;
    assert.ok(performance.now() - t0 < 700, 'idle keep-alive connection closed before the in-flight request ended');

    // New connections are refused once the listener stopped.
    await new Promise((r) => setTimeout(r, 100));
    await assert.rejects(rawHttp(port, 'GET / HTTP/1.1\r\nHost: svc.local\r\n\r\n'), /ECONNREFUSED|failed/);

    // The in-flight request completes normally, told to close.
    await busy.closed;
    const { responses } = parseHttpResponses(busy.data(), 0, true);
    assert.equal(responses.length, 1);
    assert.equal(responses[0].status, 200);
    assert.equal(responses[0].headerMap['connection'], 'close');
    assert.equal(JSON.parse(responses[0].body.toString()).url, '/delay/800');

    // And the process exits cleanly well within --drain-time-s.
    const exit = await proxy.exited;
    const ms = performance.now() - t0;
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(ms < 4_000, `exited after ${Math.round(ms)} ms`);
  });

  it('a request still running at --drain-time-s is cut off and the process still exits 0', async (t) => {
    const up = await startHttpUpstream({ name: 'a' });
    t.after(() => up.close());
    const [port, admin] = await freePorts(2);
    const proxy = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [httpListener({ name: 'ingress', port, virtualHosts: [virtualHost('svc', ['*'], [prefixRoute('/', 'a')])] })],
        clusters: [staticCluster('a', [['127.0.0.1', up.port]])],
      }),
      { args: ['--drain-time-s', '0.5'], t },
    );
    const busy = await openClient(port);
    busy.socket.write('GET /delay/5000 HTTP/1.1\r\nHost: svc.local\r\n\r\n');
    await up.recorder.waitFor((q) => q.url === '/delay/5000');
    const t0 = performance.now();
    proxy.process.kill('SIGTERM');
    await busy.closed;
    const exit = await proxy.exited;
    const ms = performance.now() - t0;
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(ms >= 400 && ms < 3_000, `exited after ${Math.round(ms)} ms with drain time 0.5 s`);
    assert.equal(parseHttpResponses(busy.data(), 0, true).responses.length, 0, 'no response was invented');
  });
});
