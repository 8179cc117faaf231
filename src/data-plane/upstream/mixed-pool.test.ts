// auto_config's mixed pool against a real TLS upstream on loopback whose ALPN choice the test switches: the
// protocol each connection negotiates, the hand-over of a connection (and of the requests waiting for it)
// between the host's HTTP/1.1 and HTTP/2 pools, and the cluster's counters and circuit-breaker counts after it.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import http2 from 'node:http2';
import tls from 'node:tls';
import type { Socket } from 'node:net';
import { lookupMessage } from '../../xds/protos.ts';
import { decodeProtoJson } from '../../xds/proto-json.ts';
import type { Cluster__Output } from '../../xds/gen/envoy/config/cluster/v3/Cluster.ts';
import { silentLogger } from '../../shared/log.ts';
import { StatsStore } from '../stats/store.ts';
import type { UpstreamStream } from '../http/stream.ts';
import { ClusterRuntime } from './cluster.ts';
import type { PoolCallbacks } from './pool-types.ts';
import { H1Pool } from './h1-pool.ts';
import { H2Pool } from './h2-pool.ts';
import type { MixedPool } from './mixed-pool.ts';
import { makeTestPki, type TestPki } from '../../../test/helpers/certs.ts';

const UPSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';
const HPO = 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions';

/** A TLS upstream that selects `mode` by ALPN when offered (else the client's first), then serves HTTP/2 or HTTP/1.1. */
class SwitchingUpstream {
  mode: 'h2' | 'http/1.1' = 'h2';
  /** Delay before an h2 connection gets its SETTINGS (the session is handed to node:http2 late). */
  h2DelayMs = 0;
  readonly versions: string[] = [];
  /** The ALPN list of each handshake. */
  readonly offered: string[][] = [];
  readonly sockets = new Set<Socket>();
  private readonly server: tls.Server;
  port = 0;

  constructor(pki: TestPki) {
    const handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): void => {
      this.versions.push(req.httpVersion);
      (res as http.ServerResponse).end(req.httpVersion);
    };
    const h1 = http.createServer(handler);
    const h2 = http2.createServer(handler);
    this.server = tls.createServer({ key: pki.server.key, cert: pki.server.cert, ALPNCallback: ({ protocols }) => {
      this.offered.push(protocols);
      return protocols.includes(this.mode) ? this.mode : protocols[0];
    } }, (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      if (s.alpnProtocol === 'h2') setTimeout(() => h2.emit('connection', s), this.h2DelayMs);
      else h1.emit('connection', s);
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
  }

  dropConnections(): void {
    for (const s of this.sockets) s.destroy();
  }

  async close(): Promise<void> {
    this.dropConnections();
    await new Promise((r) => this.server.close(r));
  }
}

/** A request that records how it went; `done` resolves with the response body. */
function request(): PoolCallbacks & { ready: boolean; done: Promise<string>; failed?: string } {
  let resolve!: (body: string) => void;
  let reject!: (e: Error) => void;
  const done = new Promise<string>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  const cb = {
    ready: false,
    done,
    failed: undefined as string | undefined,
    onPoolReady(stream: UpstreamStream): void {
      cb.ready = true;
      const chunks: Buffer[] = [];
      stream.onHeaders = () => {};
      stream.onData = (c) => chunks.push(c);
      stream.onEnd = () => resolve(Buffer.concat(chunks).toString());
      stream.onReset = (reason, detail) => reject(new Error(`${reason}: ${detail}`));
      stream.onWritable = () => {};
      stream.sendHeaders({ method: 'GET', path: '/', authority: 'up.example', scheme: 'https', headers: [], protocol: 'HTTP/1.1', contentLength: 0, hasBody: false, upgrade: '' }, true);
    },
    onPoolFailure(reason: string, detail: string): void {
      cb.failed = `${reason}: ${detail}`;
      reject(new Error(cb.failed));
    },
  };
  return cb;
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

let dir: string;
let pki: TestPki;
let up: SwitchingUpstream;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sloop-mixed-'));
  pki = await makeTestPki(dir);
  up = new SwitchingUpstream(pki);
  await up.listen();
});
after(async () => {
  await up?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function autoCluster(alpn?: string[]) {
  const store = new StatsStore();
  const r = decodeProtoJson<Cluster__Output>(lookupMessage('envoy.config.cluster.v3.Cluster')!, {
    name: 'c',
    type: 'STATIC',
    connect_timeout: '2s',
    load_assignment: { cluster_name: 'c', endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: up.port } } } }] }] },
    transport_socket: {
      name: 'envoy.transport_sockets.tls',
      typed_config: { '@type': UPSTREAM_TLS, sni: 'localhost', common_tls_context: { validation_context: { trusted_ca: { filename: pki.ca.certPath } }, ...(alpn ? { alpn_protocols: alpn } : {}) } },
    },
    typed_extension_protocol_options: { [HPO]: { '@type': `type.googleapis.com/${HPO}`, auto_config: {} } },
  });
  assert.deepEqual(r.diagnostics.filter((d) => d.severity === 'error'), []);
  const c = new ClusterRuntime(r.value!, store.scope('cluster.c'), { log: silentLogger, now: Date.now, random: Math.random, baseDir: '.' });
  c.start();
  const host = c.hosts()[0][0];
  const stat = (name: string): number => store.counter(`cluster.c.${name}`).value;
  const gauge = (name: string): number => store.gauge(`cluster.c.${name}`).value;
  const open = (cb: PoolCallbacks): H1Pool | H2Pool => {
    const p = c.newStream(host, false, cb);
    assert.ok(p !== undefined, 'no overflow');
    return p;
  };
  return { c, host, stat, gauge, open };
}

describe('auto_config mixed pool', () => {
  it('probes over HTTP/1.1, moves to HTTP/2 on h2, and back to HTTP/1.1 when the host stops offering h2', async () => {
    up.mode = 'h2';
    up.versions.length = 0;
    up.offered.length = 0;
    const { c, stat, gauge, open } = autoCluster();
    // Three requests before anything is known: one connection each (as Envoy's pool), all negotiate h2.
    const first = [request(), request(), request()];
    const pools = first.map((cb) => open(cb));
    for (const p of pools) assert.ok(p instanceof H1Pool, 'unknown host: the HTTP/1.1 pool queues and probes');
    const mixed = (pools[0] as H1Pool).mixed as MixedPool;
    assert.deepEqual(await Promise.all(first.map((cb) => cb.done)), ['2.0', '2.0', '2.0']);
    assert.equal(mixed.negotiated, 'http2');
    await until(() => stat('upstream_cx_http2_total') === 3, 'three h2 connections');
    assert.equal(stat('upstream_cx_http1_total'), 0);
    assert.equal(stat('upstream_cx_total'), 3);
    assert.equal(stat('upstream_rq_pending_total'), 3);
    assert.equal(gauge('upstream_rq_pending_active'), 0);
    assert.equal(c.resources.pendingRequests, 0);
    assert.equal(c.resources.connections, mixed.h2.activeConnections);
    assert.equal(mixed.h1.activeConnections, 0);

    // Known h2: the next request multiplexes on an existing session.
    const next = request();
    assert.ok(open(next) instanceof H2Pool);
    assert.equal(await next.done, '2.0');
    assert.equal(stat('upstream_cx_total'), 3);

    // The upstream drops its connections and now offers only http/1.1.
    up.mode = 'http/1.1';
    up.dropConnections();
    await until(() => c.resources.connections === 0, 'sessions gone');
    const a = request();
    const b = request();
    assert.ok(open(a) instanceof H2Pool, 'the host last chose h2');
    assert.ok(open(b) instanceof H2Pool);
    // The h2 pool's connection negotiates http/1.1: the HTTP/1.1 pool takes it and both waiting requests.
    assert.deepEqual(await Promise.all([a.done, b.done]), ['1.1', '1.1']);
    assert.equal(mixed.negotiated, 'http1');
    assert.equal(mixed.h2.drained, true);
    assert.ok(stat('upstream_cx_http1_total') >= 1);
    assert.equal(stat('upstream_cx_http2_total'), 3);
    assert.equal(c.resources.pendingRequests, 0);
    assert.equal(gauge('upstream_rq_pending_active'), 0);
    const later = request();
    assert.ok(open(later) instanceof H1Pool);
    assert.equal(await later.done, '1.1');
    assert.deepEqual(up.versions, ['2.0', '2.0', '2.0', '2.0', '1.1', '1.1', '1.1']);
    for (const o of up.offered) assert.deepEqual(o, ['h2', 'http/1.1']);
    c.close();
    await until(() => c.resources.connections === 0, 'pools closed');
  });

  it('a request cancelled after its connection was handed over leaves the pool it moved to', async () => {
    up.mode = 'h2';
    up.h2DelayMs = 300;
    try {
      const { c, stat, gauge, open } = autoCluster();
      const cb = request();
      const pool = open(cb);
      assert.ok(pool instanceof H1Pool);
      const mixed = pool.mixed as MixedPool;
      await until(() => mixed.negotiated === 'http2', 'the handshake');
      // The request now waits in the HTTP/2 pool for SETTINGS; the router still holds the HTTP/1.1 pool.
      pool.cancel(cb);
      assert.equal(c.resources.pendingRequests, 0);
      assert.equal(gauge('upstream_rq_pending_active'), 0);
      assert.equal(stat('upstream_rq_cancelled'), 1);
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(cb.ready, false, 'a cancelled request never gets a stream');
      assert.equal(stat('upstream_cx_http2_total'), 1);
      c.close();
    } finally {
      up.h2DelayMs = 0;
    }
  });

  it("the UpstreamTlsContext's alpn_protocols are offered instead of h2,http/1.1", async () => {
    up.mode = 'h2';
    up.offered.length = 0;
    const { c, stat, open } = autoCluster(['http/1.1']);
    const cb = request();
    open(cb);
    // The upstream prefers h2, which is not offered.
    assert.equal(await cb.done, '1.1');
    assert.deepEqual(up.offered, [['http/1.1']]);
    assert.equal(stat('upstream_cx_http1_total'), 1);
    assert.equal(stat('upstream_cx_http2_total'), 0);
    c.close();
  });
});
