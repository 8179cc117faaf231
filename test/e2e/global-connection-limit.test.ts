// RELIABILITY row 18, the global limit: Envoy's overload manager resource monitor
// envoy.resource_monitors.global_downstream_max_connections (DownstreamConnectionsConfig) through `sloop proxy`.
// Over the limit a new downstream connection is closed on accept and counted in
// listener.<address>.downstream_global_cx_overflow; connections already open keep working; a listener with
// ignore_global_conn_limit (and the admin listener with admin.ignore_global_conn_limit) still accepts; once
// connections close, new ones are accepted again. The bootstrap loader refuses unknown resource monitors.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { startHttpUpstream, type HttpUpstream } from '../helpers/upstreams.ts';
import { startProxy, bootstrapWith, httpListener, staticCluster, virtualHost, prefixRoute, type Json, type ProxyHandle } from '../helpers/proxy.ts';
import { freePorts, LOOPBACK } from '../helpers/ports.ts';
import { waitUntil } from '../helpers/wait.ts';

const MAX = 5;

function overloadManager(max: number | string, name = 'envoy.resource_monitors.global_downstream_max_connections'): Json {
  return {
    resource_monitors: [
      {
        name,
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig',
          max_active_downstream_connections: max,
        },
      },
    ],
  };
}

/** A downstream connection with what it received and whether (and when) it closed. */
interface Conn {
  socket: Socket;
  data: Buffer[];
  closed: Promise<void>;
  isClosed(): boolean;
}

function open(port: number): Promise<Conn> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: LOOPBACK });
    const data: Buffer[] = [];
    let closedFlag = false;
    const closed = new Promise<void>((r) =>
      socket.once('close', () => {
        closedFlag = true;
        r();
      }),
    );
    socket.on('data', (d: Buffer) => data.push(d));
    socket.once('error', (err) => {
      // A reset after connect is a close for these tests; only a failed connect is an error.
      if (!socket.connecting) return;
      reject(err);
    });
    socket.once('connect', () => resolve({ socket, data, closed, isClosed: () => closedFlag }));
  });
}

/** Sends one keep-alive GET on the connection and resolves with the status of its response. */
function get(c: Conn, path: string): Promise<number> {
  const start = Buffer.concat(c.data).length;
  c.socket.write(`GET ${path} HTTP/1.1\r\nHost: limit.test\r\n\r\n`);
  return waitUntil(
    () => {
      if (c.isClosed()) throw new Error(`connection closed before the response to ${path}`);
      const text = Buffer.concat(c.data).subarray(start).toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3}) /.exec(text);
      return m !== null && text.includes('\r\n\r\n') ? Number(m[1]) : undefined;
    },
    { what: `response to ${path}` },
  );
}

describe('RELIABILITY row 18: global downstream connection limit (overload manager)', () => {
  let upstream: HttpUpstream;
  let proxy: ProxyHandle;
  let limitedPort: number;
  let exemptPort: number;
  const statName = (port: number, stat: string): string => `listener.${LOOPBACK}_${port}.${stat}`;

  before(async () => {
    upstream = await startHttpUpstream({ name: 'app' });
    let admin: number;
    [limitedPort, exemptPort, admin] = await freePorts(3);
    const routes = [virtualHost('all', ['*'], [prefixRoute('/', 'app')])];
    const bootstrap = bootstrapWith({
      adminPort: admin,
      listeners: [
        httpListener({ name: 'limited', port: limitedPort, virtualHosts: routes }),
        httpListener({ name: 'exempt', port: exemptPort, virtualHosts: routes, listenerExtra: { ignore_global_conn_limit: true } }),
      ],
      clusters: [staticCluster('app', [[LOOPBACK, upstream.port]])],
      extra: { overload_manager: overloadManager(MAX) },
    });
    // The admin listener counts too unless told otherwise (Envoy's admin.ignore_global_conn_limit).
    (bootstrap.admin as Json).ignore_global_conn_limit = true;
    proxy = await startProxy(bootstrap);
  });

  after(async () => {
    await proxy?.stop();
    await upstream?.close();
  });

  it(`with max ${MAX}: the next connection is closed at once, the ${MAX} keep working, an exempt listener accepts, closing frees slots`, async () => {
    const conns: Conn[] = [];
    const extra: Conn[] = [];
    try {
      // A connection on the ignore_global_conn_limit listener takes no slot.
      const exempt = await open(exemptPort);
      extra.push(exempt);
      assert.equal(await get(exempt, '/exempt-first'), 200);
      for (let i = 0; i < MAX; i++) {
        const c = await open(limitedPort);
        conns.push(c);
        assert.equal(await get(c, `/slot-${i}`), 200, `connection ${i + 1} of ${MAX} is served`);
      }

      const over = await open(limitedPort);
      extra.push(over);
      over.socket.write('GET /over HTTP/1.1\r\nHost: limit.test\r\n\r\n');
      await waitUntil(() => over.isClosed(), { what: `connection ${MAX + 1} closed by the proxy`, timeoutMs: 2_000 });
      assert.equal(Buffer.concat(over.data).length, 0, 'the rejected connection got no byte (no HTTP response)');
      assert.ok(!upstream.requests.some((r) => r.url === '/over'), 'nothing from it reached the upstream');

      const stats = await proxy.stats();
      assert.equal(stats[statName(limitedPort, 'downstream_global_cx_overflow')], 1);
      assert.equal(stats[statName(limitedPort, 'downstream_cx_active')], MAX, 'the rejected connection was never counted active');
      assert.equal(stats[statName(exemptPort, 'downstream_global_cx_overflow')] ?? 0, 0);

      for (const [i, c] of conns.entries()) assert.equal(await get(c, `/again-${i}`), 200, `connection ${i + 1} still works`);
      const exempt2 = await open(exemptPort);
      extra.push(exempt2);
      assert.equal(await get(exempt2, '/exempt-at-limit'), 200, 'the ignore_global_conn_limit listener accepts at the limit');

      // Close two: two slots come back once the proxy has seen the closes.
      for (const c of conns.splice(0, 2)) c.socket.destroy();
      await waitUntil(async () => (await proxy.stats())[statName(limitedPort, 'downstream_cx_active')] === MAX - 2, { what: 'the proxy to see two connections close' });
      for (let i = 0; i < 2; i++) {
        const c = await open(limitedPort);
        conns.push(c);
        assert.equal(await get(c, `/reused-${i}`), 200, `a new connection in a freed slot (${i + 1}) is served`);
      }
      const overAgain = await open(limitedPort);
      extra.push(overAgain);
      await waitUntil(() => overAgain.isClosed(), { what: 'a connection over the limit again closed', timeoutMs: 2_000 });
      assert.equal((await proxy.stats())[statName(limitedPort, 'downstream_global_cx_overflow')], 2);
    } finally {
      for (const c of [...conns, ...extra]) c.socket.destroy();
    }
    await waitUntil(async () => (await proxy.stats())[statName(limitedPort, 'downstream_cx_active')] === 0, { what: 'every limited connection closed' });
    // Every slot is free again: MAX connections at once are accepted.
    const again = await Promise.all(Array.from({ length: MAX }, () => open(limitedPort)));
    try {
      for (const [i, c] of again.entries()) assert.equal(await get(c, `/after-${i}`), 200);
    } finally {
      for (const c of again) c.socket.destroy();
    }
  });

  it('/config_dump shows the overload manager as configured', async () => {
    const r = await proxy.admin('/config_dump');
    assert.equal(r.status, 200);
    const dump = JSON.parse(r.text) as { configs: Array<{ bootstrap?: { overload_manager?: { resource_monitors: Array<Record<string, unknown>> } } }> };
    const om = dump.configs[0].bootstrap?.overload_manager;
    assert.deepEqual(om?.resource_monitors, [
      {
        name: 'envoy.resource_monitors.global_downstream_max_connections',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig',
          max_active_downstream_connections: String(MAX),
        },
      },
    ]);
  });
});

describe('the admin listener and the global connection limit', () => {
  it('without admin.ignore_global_conn_limit the admin listener shares the limit (Envoy\'s default)', async () => {
    await using upstream = await startHttpUpstream({ name: 'app' });
    const [admin, port] = await freePorts(2);
    await using p = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [httpListener({ name: 'l', port, virtualHosts: [virtualHost('all', ['*'], [prefixRoute('/', 'app')])] })],
        clusters: [staticCluster('app', [[LOOPBACK, upstream.port]])],
        extra: { overload_manager: overloadManager(2) },
      }),
    );
    const held = [await open(port), await open(port)];
    try {
      for (const c of held) assert.equal(await get(c, '/held'), 200);
      await assert.rejects(p.admin('/ready'), 'the admin connection is closed at the limit');
    } finally {
      for (const c of held) c.socket.destroy();
    }
    // Polling may be refused a few more times until the proxy has seen the two closes.
    const stats = await waitUntil(() => p.stats().catch(() => undefined), { what: 'the admin interface once slots are free' });
    assert.ok((stats['listener.admin.downstream_global_cx_overflow'] ?? 0) >= 1, 'counted in listener.admin.downstream_global_cx_overflow');
  });
});

describe('overload_manager validation', () => {
  it('an unknown resource monitor, an unimplemented one and an overload action are refused with their field paths', async () => {
    const [admin, port] = await freePorts(2);
    const om = overloadManager(10, 'envoy.resource_monitors.global_downstream_max_conections');
    (om.resource_monitors as Json[]).push({ name: 'envoy.resource_monitors.fixed_heap' });
    om.actions = [{ name: 'envoy.overload_actions.stop_accepting_requests', triggers: [{ name: 'envoy.resource_monitors.fixed_heap', threshold: { value: 0.95 } }] }];
    const p = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [httpListener({ name: 'l', port, virtualHosts: [virtualHost('all', ['*'], [prefixRoute('/', 'app')])] })],
        clusters: [staticCluster('app', [[LOOPBACK, 1]])],
        extra: { overload_manager: om },
      }),
      { expectFail: true },
    );
    assert.equal(p.exit?.code, 1);
    const err = p.stderr();
    assert.match(err, /:\d+:\d+ overload_manager\.resource_monitors\[0\]\.name: unknown resource monitor "envoy\.resource_monitors\.global_downstream_max_conections"/);
    assert.match(err, /:\d+:\d+ overload_manager\.resource_monitors\[1\]\.name: resource monitor "envoy\.resource_monitors\.fixed_heap" is not implemented/);
    assert.match(err, /:\d+:\d+ overload_manager\.actions\[0\]: overload action "envoy\.overload_actions\.stop_accepting_requests" is not implemented/);
  });

  it('max_active_downstream_connections must be greater than 0', async () => {
    const [admin, port] = await freePorts(2);
    const p = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [httpListener({ name: 'l', port, virtualHosts: [virtualHost('all', ['*'], [prefixRoute('/', 'app')])] })],
        clusters: [staticCluster('app', [[LOOPBACK, 1]])],
        extra: { overload_manager: overloadManager(0) },
      }),
      { expectFail: true },
    );
    assert.equal(p.exit?.code, 1);
    assert.match(p.stderr(), /overload_manager\.resource_monitors\[0\]\.typed_config\.max_active_downstream_connections: must be greater than 0/);
  });
});
