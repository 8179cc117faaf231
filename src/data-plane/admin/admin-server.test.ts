import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { silentLogger } from '../../shared/log.ts';
import { SloopError } from '../../shared/errors.ts';
import { StatsStore } from '../stats/store.ts';
import { clusterStats } from '../stats/envoy-stats.ts';
import { startAdminServer, type AdminProvider, type AdminServer, type ConfigDumpOptions, type ServerState } from './admin-server.ts';

/** A provider double that records what the admin server asked for. */
class FakeProvider implements AdminProvider {
  stats = new StatsStore();
  state: ServerState = 'PRE_INITIALIZING';
  healthCheckFailed = false;
  quitCalls = 0;
  private onQuit: (() => void) | undefined;
  /** Resolves on the next quit() call. */
  nextQuit(): Promise<void> {
    return new Promise((resolve) => (this.onQuit = resolve));
  }
  drains: Array<{ graceful: boolean; inboundOnly: boolean; skipExit: boolean }> = [];
  dumpCalls: ConfigDumpOptions[] = [];

  serverState(): ServerState {
    // Envoy reports DRAINING while health checks are failed.
    return this.healthCheckFailed ? 'DRAINING' : this.state;
  }
  configDump(opts: ConfigDumpOptions): unknown {
    this.dumpCalls.push(opts);
    if (opts.mask === 'bad[') throw new Error('invalid field mask');
    if (opts.resource === 'nope') return undefined;
    return { configs: [{ '@type': 'type.googleapis.com/envoy.admin.v3.BootstrapConfigDump', bootstrap: { node: { id: 'n1' } } }] };
  }
  clusters() {
    return [
      {
        name: 'outbound|9080||reviews.default.svc.cluster.local',
        addedViaApi: true,
        hosts: [
          {
            address: '10.0.0.1',
            port: 9080,
            health: 'healthy',
            weight: 1,
            priority: 0,
            region: 'us',
            zone: 'us-a',
            subZone: '',
            stats: { cx_active: 2, cx_total: 5, rq_total: 7 },
          },
        ],
      },
    ];
  }
  listeners() {
    return [
      { name: 'virtualOutbound', address: '0.0.0.0', port: 15001 },
      { name: 'v6', address: '::', port: 80 },
    ];
  }
  serverInfo(): unknown {
    return { version: 'sloop/0.1.0', state: this.serverState(), command_line_options: { concurrency: 2 } };
  }
  quit(): void {
    this.quitCalls++;
    this.onQuit?.();
  }
  drainListeners(opts: { graceful: boolean; inboundOnly: boolean; skipExit: boolean }): void {
    this.drains.push(opts);
  }
  setHealthCheckFailed(failed: boolean): void {
    this.healthCheckFailed = failed;
  }
  memory() {
    return { allocated: 1000, heapSize: 2000, physical: 3000 };
  }
}

let provider: FakeProvider;
let server: AdminServer;
let base: string;

before(async () => {
  provider = new FakeProvider();
  server = await startAdminServer({ address: '127.0.0.1', port: 0 }, provider, silentLogger);
  base = `http://127.0.0.1:${server.port}`;
});
after(() => server.close());

async function get(path: string, method = 'GET'): Promise<{ status: number; body: string; type: string | null }> {
  const res = await fetch(base + path, { method });
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') };
}

test('/ready follows the server state: 503 with the state name, 200 LIVE, DRAINING after /healthcheck/fail', async () => {
  provider.state = 'PRE_INITIALIZING';
  assert.deepEqual(await get('/ready'), { status: 503, body: 'PRE_INITIALIZING\n', type: 'text/plain; charset=UTF-8' });
  provider.state = 'LIVE';
  assert.equal((await get('/ready')).body, 'LIVE\n');
  assert.equal((await get('/ready')).status, 200);
  assert.deepEqual(await get('/healthcheck/fail', 'POST'), { status: 200, body: 'OK\n', type: 'text/plain; charset=UTF-8' });
  assert.equal(provider.healthCheckFailed, true);
  assert.deepEqual(await get('/ready'), { status: 503, body: 'DRAINING\n', type: 'text/plain; charset=UTF-8' });
  assert.equal((await get('/healthcheck/ok', 'POST')).status, 200);
  assert.equal((await get('/ready')).status, 200);
});

test('mutating endpoints require POST and do nothing on GET', async () => {
  for (const path of ['/quitquitquit', '/healthcheck/fail', '/healthcheck/ok', '/drain_listeners', '/reset_counters']) {
    const r = await get(path);
    assert.equal(r.status, 405, path);
    assert.equal(r.body, 'Method GET not allowed, POST required.', path);
  }
  assert.equal(provider.quitCalls, 0);
  assert.equal(provider.drains.length, 0);
  assert.equal((await get('/quitquitquit', 'PUT')).body, 'Method PUT not allowed, POST required.');
});

test('/quitquitquit answers OK, then calls quit', async () => {
  const quitting = provider.nextQuit();
  const r = await get('/quitquitquit', 'POST');
  assert.equal(r.body, 'OK\n');
  await quitting;
  assert.equal(provider.quitCalls, 1);
});

test('/drain_listeners passes graceful and inboundonly; skip_exit needs graceful', async () => {
  assert.equal((await get('/drain_listeners?graceful&inboundonly', 'POST')).body, 'OK\n');
  assert.equal((await get('/drain_listeners', 'POST')).status, 200);
  assert.equal((await get('/drain_listeners?skip_exit', 'POST')).status, 400);
  assert.deepEqual(provider.drains, [
    { graceful: true, inboundOnly: true, skipExit: false },
    { graceful: false, inboundOnly: false, skipExit: false },
  ]);
});

test('/stats text, json, prometheus, filter and usedonly', async () => {
  const c = clusterStats(provider.stats, 'outbound|9080||reviews.default.svc.cluster.local');
  c.upstreamRqTotal.inc(3);
  c.chargeResponse(200);
  const text = await get('/stats?filter=^cluster\\.outbound.*upstream_rq_(total|200)$');
  assert.equal(
    text.body,
    'cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_rq_200: 1\n' +
      'cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_rq_total: 3\n',
  );
  const json = await get('/stats?format=json&filter=upstream_rq_total$&usedonly');
  assert.equal(json.type, 'application/json');
  assert.deepEqual(JSON.parse(json.body), {
    stats: [{ name: 'cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_rq_total', value: 3 }],
  });
  const prom = await get('/stats/prometheus?usedonly');
  assert.ok(
    prom.body.includes(
      '# TYPE envoy_cluster_default_svc_cluster_local_upstream_rq counter\n' +
        'envoy_cluster_default_svc_cluster_local_upstream_rq{envoy_response_code="200",envoy_cluster_name="outbound|9080||reviews"} 1\n',
    ),
    prom.body,
  );
  assert.ok(!prom.body.includes('upstream_rq_timeout'), 'usedonly must hide unused stats');
  assert.equal((await get('/stats?format=prometheus&usedonly')).body.includes('envoy_response_code="200"'), true);
  assert.equal((await get('/stats?filter=(')).status, 400);
  assert.equal((await get('/stats?format=xml')).status, 400);
});

test('admin requests are counted in http.admin.* like Envoy', async () => {
  const total = provider.stats.counter('http.admin.downstream_rq_total');
  const rq4xx = provider.stats.counter('http.admin.downstream_rq_4xx');
  const [total0, rq4xx0] = [total.value, rq4xx.value];
  await get('/ready');
  await get('/nope');
  assert.equal(total.value - total0, 2);
  assert.equal(rq4xx.value - rq4xx0, 1);
  assert.ok(provider.stats.counter('listener.admin.downstream_cx_total').value >= 1);
});

test('/reset_counters zeroes counters', async () => {
  const c = provider.stats.counter('custom.count');
  c.inc(5);
  assert.equal((await get('/reset_counters', 'POST')).body, 'OK\n');
  assert.equal(c.value, 0);
});

test('/clusters text and json', async () => {
  const text = (await get('/clusters')).body;
  const n = 'outbound|9080||reviews.default.svc.cluster.local';
  const h = `${n}::10.0.0.1:9080`;
  assert.equal(
    text,
    [
      `${n}::observability_name::${n}`,
      `${n}::default_priority::max_connections::1024`,
      `${n}::default_priority::max_pending_requests::1024`,
      `${n}::default_priority::max_requests::1024`,
      `${n}::default_priority::max_retries::3`,
      `${n}::high_priority::max_connections::1024`,
      `${n}::high_priority::max_pending_requests::1024`,
      `${n}::high_priority::max_requests::1024`,
      `${n}::high_priority::max_retries::3`,
      `${n}::added_via_api::true`,
      `${h}::cx_active::2`,
      `${h}::cx_total::5`,
      `${h}::rq_total::7`,
      `${h}::hostname::`,
      `${h}::health_flags::healthy`,
      `${h}::weight::1`,
      `${h}::region::us`,
      `${h}::zone::us-a`,
      `${h}::sub_zone::`,
      `${h}::canary::false`,
      `${h}::priority::0`,
      `${h}::success_rate::-1`,
      `${h}::local_origin_success_rate::-1`,
      '',
    ].join('\n'),
  );
  const json = await get('/clusters?format=json');
  assert.equal(json.type, 'application/json');
  const parsed = JSON.parse(json.body) as { cluster_statuses: Array<Record<string, unknown>> };
  assert.deepEqual(parsed.cluster_statuses[0], {
    name: n,
    observability_name: n,
    added_via_api: true,
    host_statuses: [
      {
        address: { socket_address: { address: '10.0.0.1', port_value: 9080 } },
        stats: [
          { value: '5', name: 'cx_total' },
          { value: '7', name: 'rq_total' },
          { type: 'GAUGE', value: '2', name: 'cx_active' },
        ],
        health_status: { eds_health_status: 'HEALTHY' },
        weight: 1,
        locality: { region: 'us', zone: 'us-a' },
      },
    ],
    circuit_breakers: {
      thresholds: [
        { max_connections: 1024, max_pending_requests: 1024, max_requests: 1024, max_retries: 3 },
        { priority: 'HIGH', max_connections: 1024, max_pending_requests: 1024, max_requests: 1024, max_retries: 3 },
      ],
    },
  });
});

test('/listeners text and json', async () => {
  assert.equal((await get('/listeners')).body, 'virtualOutbound::0.0.0.0:15001\nv6::[::]:80\n');
  const json = JSON.parse((await get('/listeners?format=json')).body) as unknown;
  assert.deepEqual(json, {
    listener_statuses: [
      { name: 'virtualOutbound', local_address: { socket_address: { address: '0.0.0.0', port_value: 15001 } } },
      { name: 'v6', local_address: { socket_address: { address: '::', port_value: 80 } } },
    ],
  });
});

test('/config_dump passes resource, mask, include_eds; 404 for unknown resource, 400 for bad mask', async () => {
  const r = await get('/config_dump?resource=dynamic_active_clusters&mask=cluster.name&include_eds');
  assert.equal(r.status, 200);
  assert.equal(r.type, 'application/json');
  assert.deepEqual(provider.dumpCalls.at(-1), { includeEds: true, resource: 'dynamic_active_clusters', mask: 'cluster.name' });
  assert.deepEqual((JSON.parse(r.body) as { configs: unknown[] }).configs.length, 1);
  assert.equal((await get('/config_dump')).status, 200);
  assert.deepEqual(provider.dumpCalls.at(-1), { includeEds: false });
  assert.equal((await get('/config_dump?resource=nope')).status, 404);
  const bad = await get('/config_dump?mask=bad[');
  assert.equal(bad.status, 400);
  assert.equal(bad.body, 'invalid field mask\n');
});

test('/server_info and /memory', async () => {
  provider.state = 'LIVE';
  const info = JSON.parse((await get('/server_info')).body) as Record<string, unknown>;
  assert.equal(info['state'], 'LIVE');
  assert.deepEqual(JSON.parse((await get('/memory')).body), {
    allocated: '1000',
    heap_size: '2000',
    pageheap_unmapped: '0',
    pageheap_free: '0',
    total_thread_cache: '0',
    total_physical_bytes: '3000',
  });
});

test('/help lists commands in path order with (POST) marks; unknown paths get 404 plus help', async () => {
  const help = (await get('/help')).body;
  assert.ok(help.startsWith('admin commands are:\n  /: Admin home page\n  /clusters: upstream cluster status\n'), help);
  assert.ok(help.includes('  /quitquitquit (POST): exit the server\n'));
  assert.ok(help.includes('  /ready: print server state, return 200 if LIVE, otherwise return 503\n'));
  const lines = help.split('\n').filter((l) => l.startsWith('  /'));
  const paths = lines.map((l) => l.slice(2).split(/[: ]/)[0]!);
  assert.deepEqual(paths, [...paths].sort());
  const nf = await get('/stats/nope');
  assert.equal(nf.status, 404);
  assert.ok(nf.body.startsWith('invalid path. admin commands are:\n'));
});

test('listening on a busy port fails with SLOOP_ERR_PROXY_LISTEN_FAILED', async () => {
  await assert.rejects(startAdminServer({ address: '127.0.0.1', port: server.port }, provider, silentLogger), (err: unknown) => {
    assert.ok(err instanceof SloopError);
    assert.equal(err.code, 'SLOOP_ERR_PROXY_LISTEN_FAILED');
    return true;
  });
});
