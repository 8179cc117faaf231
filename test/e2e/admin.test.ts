// The admin interface (`admin.address`) of a real `sloop proxy` process, as Envoy's operations/admin docs
// describe it: /ready, /healthcheck/fail|ok, /stats (text, json, filter, usedonly), /stats/prometheus
// (checked with a Prometheus text-format parser), /config_dump, /clusters, /listeners, /server_info,
// /quitquitquit; Envoy's stat names after known traffic.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHttpUpstream, type HttpUpstream } from '../helpers/upstreams.ts';
import { startProxy, bootstrapWith, httpListener, staticCluster, virtualHost, prefixRoute, type Json, type ProxyHandle } from '../helpers/proxy.ts';
import { curl } from '../helpers/clients.ts';
import { httpRequest } from '../helpers/http-client.ts';
import { freePorts } from '../helpers/ports.ts';
import { waitUntil } from '../helpers/wait.ts';

// ---------------------------------------------------------------------------------------------------------
// A strict parser for the Prometheus text exposition format 0.0.4 (prometheus.io/docs/instrumenting/
// exposition_formats), enough to reject what `promtool check metrics` rejects for syntax and grouping.

interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

interface PromFamily {
  type: string;
  samples: PromSample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const PROM_TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parsePromValue(text: string, line: number): number {
  if (text === '+Inf' || text === 'Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  if (text === 'NaN') return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text)) throw new Error(`line ${line}: bad sample value ${JSON.stringify(text)}`);
  return Number(text);
}

/** The family a sample name belongs to: histogram/summary samples carry _bucket, _sum or _count suffixes. */
function familyOf(name: string, families: Map<string, PromFamily>): string {
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (!name.endsWith(suffix)) continue;
    const base = name.slice(0, -suffix.length);
    const t = families.get(base)?.type;
    if (t === 'histogram' || (t === 'summary' && suffix !== '_bucket')) return base;
  }
  return name;
}

/**
 * Parses exposition text into families. Throws on a syntax error, an unknown TYPE, a TYPE after samples or
 * twice, a family whose lines are not contiguous, a duplicate series, or an inconsistent histogram.
 */
function parsePrometheus(text: string): Map<string, PromFamily> {
  const families = new Map<string, PromFamily>();
  const closed = new Set<string>();
  const series = new Set<string>();
  let current: string | undefined;
  const enter = (family: string, line: number): PromFamily => {
    if (current !== family) {
      if (closed.has(family)) throw new Error(`line ${line}: family ${family} is not contiguous`);
      if (current !== undefined) closed.add(current);
      current = family;
    }
    let f = families.get(family);
    if (!f) families.set(family, (f = { type: 'untyped', samples: [] }));
    return f;
  };
  const lines = text.split('\n');
  if (lines.at(-1) !== '') throw new Error('exposition must end with a newline');
  lines.forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === '') return;
    if (raw.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(raw);
      if (!m) return; // a plain comment
      const [, kind, name, rest] = m;
      if (!METRIC_NAME.test(name)) throw new Error(`line ${line}: bad metric name ${name}`);
      if (kind === 'TYPE') {
        if (!PROM_TYPES.has(rest ?? '')) throw new Error(`line ${line}: bad TYPE ${rest}`);
        if (families.has(name)) throw new Error(`line ${line}: TYPE for ${name} after its samples or twice`);
        enter(name, line).type = rest!;
      } else enter(name, line);
      return;
    }
    const m = /^([^{\s]+)(\{.*\})?\s+(\S+)(?:\s+(-?\d+))?$/.exec(raw);
    if (!m) throw new Error(`line ${line}: not a sample: ${raw}`);
    const [, name, labelText, valueText] = m;
    if (!METRIC_NAME.test(name)) throw new Error(`line ${line}: bad metric name ${name}`);
    const labels: Record<string, string> = {};
    if (labelText) {
      let rest = labelText.slice(1, -1);
      while (rest.length > 0) {
        const lm = /^([^=\s]+)="((?:[^"\\\n]|\\[\\"n])*)"(,?)/.exec(rest);
        if (!lm) throw new Error(`line ${line}: bad labels ${labelText}`);
        const [whole, lname, lvalue, comma] = lm;
        if (!LABEL_NAME.test(lname) || lname.startsWith('__')) throw new Error(`line ${line}: bad label name ${lname}`);
        if (lname in labels) throw new Error(`line ${line}: duplicate label ${lname}`);
        labels[lname] = lvalue.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
        rest = rest.slice(whole.length);
        if (rest.length > 0 && comma !== ',') throw new Error(`line ${line}: labels must be comma-separated: ${labelText}`);
      }
    }
    const key = `${name}{${Object.entries(labels).sort().map(([k, v]) => `${k}=${v}`).join(',')}}`;
    if (series.has(key)) throw new Error(`line ${line}: duplicate series ${key}`);
    series.add(key);
    const family = enter(familyOf(name, families), line);
    family.samples.push({ name, labels, value: parsePromValue(valueText, line) });
  });
  for (const [name, f] of families) {
    if (f.type !== 'histogram') continue;
    // Per label set (minus le): buckets non-decreasing in le, a +Inf bucket equal to _count, and a _sum.
    const groups = new Map<string, { buckets: Array<[number, number]>; count?: number; sum?: number }>();
    for (const s of f.samples) {
      const { le, ...rest } = s.labels;
      const k = JSON.stringify(Object.entries(rest).sort());
      let g = groups.get(k);
      if (!g) groups.set(k, (g = { buckets: [] }));
      if (s.name === `${name}_bucket`) {
        if (le === undefined) throw new Error(`${name}_bucket without le`);
        g.buckets.push([parsePromValue(le, 0), s.value]);
      } else if (s.name === `${name}_count`) g.count = s.value;
      else if (s.name === `${name}_sum`) g.sum = s.value;
      else throw new Error(`histogram ${name} has a stray sample ${s.name}`);
    }
    for (const g of groups.values()) {
      const sorted = [...g.buckets].sort((x, y) => x[0] - y[0]);
      for (let i = 1; i < sorted.length; i++) if (sorted[i][1] < sorted[i - 1][1]) throw new Error(`histogram ${name}: buckets not cumulative`);
      const inf = sorted.at(-1);
      if (!inf || inf[0] !== Infinity) throw new Error(`histogram ${name}: no +Inf bucket`);
      if (g.count === undefined || g.sum === undefined) throw new Error(`histogram ${name}: _count or _sum missing`);
      if (inf[1] !== g.count) throw new Error(`histogram ${name}: +Inf bucket ${inf[1]} != _count ${g.count}`);
    }
  }
  return families;
}

/** The value of the series `name` whose labels equal `labels`, or undefined. */
function promValue(families: Map<string, PromFamily>, name: string, labels: Record<string, string>): number | undefined {
  const want = JSON.stringify(Object.entries(labels).sort());
  for (const f of families.values()) {
    for (const s of f.samples) if (s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === want) return s.value;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------

describe('admin interface', () => {
  let up: HttpUpstream;
  let proxy: ProxyHandle;
  let port: number;
  let adminPort: number;

  before(async () => {
    up = await startHttpUpstream({ name: 'a' });
    [port, adminPort] = await freePorts(2);
    proxy = await startProxy(
      bootstrapWith({
        adminPort,
        listeners: [
          httpListener({
            name: 'ingress',
            port,
            virtualHosts: [
              virtualHost('svc', ['*'], [
                prefixRoute('/retry/', 'a', { retry_policy: { retry_on: '5xx', num_retries: 1 } }),
                prefixRoute('/api/', 'a'),
              ]),
            ],
          }),
        ],
        clusters: [staticCluster('a', [['127.0.0.1', up.port]])],
        // Server gauges (server.state, server.live) are refreshed at each stats flush, as in Envoy.
        extra: { node: { id: 'admin-e2e-node', cluster: 'admin-e2e' }, stats_flush_interval: '0.2s' },
      }),
    );
    // Known traffic: 3 × 2xx, 1 × 404 (no route), 1 × 503 after one retry (2 upstream attempts).
    for (let i = 0; i < 3; i++) assert.equal((await httpRequest(port, `/api/ok/${i}`)).status, 200);
    assert.equal((await httpRequest(port, '/nothing')).status, 404);
    assert.equal((await httpRequest(port, '/retry/status/503')).status, 503);
  });

  after(async () => {
    await proxy?.stop();
    await up?.close();
  });

  it('/ready answers 200 LIVE', async () => {
    const r = await proxy.admin('/ready');
    assert.equal(r.status, 200);
    assert.equal(r.text, 'LIVE\n');
    const cr = await curl([`http://127.0.0.1:${adminPort}/ready`]);
    assert.equal(cr.status, 200);
    assert.equal(cr.text, 'LIVE\n');
  });

  it('/stats (text) has Envoy’s names and exact counts for the traffic sent', async () => {
    const expected: Record<string, number> = {
      'http.ingress.downstream_rq_total': 5,
      'http.ingress.downstream_rq_2xx': 3,
      'http.ingress.downstream_rq_4xx': 1,
      'http.ingress.downstream_rq_5xx': 1,
      'http.ingress.downstream_rq_completed': 5,
      'http.ingress.no_route': 1,
      'cluster.a.upstream_rq_total': 5,
      'cluster.a.upstream_rq_2xx': 3,
      'cluster.a.upstream_rq_200': 3,
      'cluster.a.upstream_rq_5xx': 2,
      'cluster.a.upstream_rq_503': 2,
      'cluster.a.upstream_rq_retry': 1,
      'cluster.a.upstream_rq_active': 0,
      'cluster.a.membership_total': 1,
      'cluster.a.membership_healthy': 1,
    };
    // Counters settle when each stream finishes; poll rather than race the last response.
    const text = await waitUntil(
      async () => {
        const r = await proxy.admin('/stats');
        if (r.status !== 200) return false;
        const values = new Map<string, number>();
        for (const m of r.text.matchAll(/^([^:\s]+): (-?\d+)$/gm)) values.set(m[1], Number(m[2]));
        for (const [k, v] of Object.entries(expected)) if (values.get(k) !== v) throw new Error(`${k} = ${values.get(k)}, want ${v}`);
        return r.text;
      },
      { what: 'the expected counters in /stats' },
    );
    const lines = text.trimEnd().split('\n');
    // Counters and gauges first, one `name: value` per line, sorted by name; histograms after them.
    const plain = lines.filter((l) => /^[^:\s]+: -?\d+$/.test(l)).map((l) => l.slice(0, l.indexOf(':')));
    assert.ok(plain.length > 50, `${plain.length} stats`);
    assert.deepEqual(plain, [...plain].sort(), 'sorted by name');
    assert.ok(lines.every((l) => /^[^:\s]+: /.test(l)), 'every line is name: value');
    const cx = /^cluster\.a\.upstream_cx_active: (\d+)$/m.exec(text);
    const cxTotal = /^cluster\.a\.upstream_cx_total: (\d+)$/m.exec(text);
    assert.ok(cx && cxTotal, 'upstream_cx_active and upstream_cx_total are present');
    // (The upstream may already have closed its idle keep-alive connection on a slow machine.)
    assert.ok(Number(cxTotal[1]) >= 1 && Number(cx[1]) <= Number(cxTotal[1]), `cx_active ${cx[1]} of cx_total ${cxTotal[1]}`);
    assert.match(text, /^http\.ingress\.downstream_rq_time: P0\(/m, 'histograms print quantiles');
    assert.match(text, /^server\.live: 1$/m);
    assert.match(text, /^server\.state: 0$/m);
    // Envoy's listener stats use the bound address as their scope.
    assert.match(text, new RegExp(`^listener\\.127\\.0\\.0\\.1_${port}\\.downstream_cx_total: \\d+$`, 'm'));
  });

  it('/stats?format=json, ?filter= and ?usedonly', async () => {
    const j = await proxy.admin('/stats?format=json');
    assert.equal(j.status, 200);
    assert.match(String(j.headers['content-type']), /application\/json/);
    const doc = JSON.parse(j.text) as { stats: Array<{ name?: string; value?: number; histograms?: unknown }> };
    const byName = new Map(doc.stats.filter((s) => s.name !== undefined).map((s) => [s.name!, s.value]));
    assert.equal(byName.get('cluster.a.upstream_rq_total'), 5);
    assert.equal(byName.get('http.ingress.downstream_rq_2xx'), 3);
    assert.ok(doc.stats.some((s) => s.histograms !== undefined), 'histograms are the last element');

    const filtered = await proxy.admin(`/stats?filter=${encodeURIComponent('^cluster\\.a\\.upstream_rq_')}`);
    const names = filtered.text.trimEnd().split('\n').map((l) => l.slice(0, l.indexOf(':')));
    assert.ok(names.length >= 5);
    assert.ok(names.every((n) => n.startsWith('cluster.a.upstream_rq_')), names.join(' '));

    const all = await proxy.admin('/stats?filter=upstream_rq_timeout');
    assert.match(all.text, /^cluster\.a\.upstream_rq_timeout: 0$/m);
    const used = await proxy.admin('/stats?usedonly&filter=^cluster\\.a\\.');
    assert.doesNotMatch(used.text, /upstream_rq_timeout/, 'never-written stats are left out');
    assert.match(used.text, /^cluster\.a\.upstream_rq_total: 5$/m);

    const bad = await proxy.admin('/stats?format=xml');
    assert.equal(bad.status, 400);
  });

  it('/stats/prometheus is valid Prometheus text with Envoy’s names and labels', async () => {
    const r = await proxy.admin('/stats/prometheus');
    assert.equal(r.status, 200);
    const families = parsePrometheus(r.text);
    assert.equal(families.get('envoy_cluster_upstream_rq_total')?.type, 'counter');
    assert.equal(promValue(families, 'envoy_cluster_upstream_rq_total', { envoy_cluster_name: 'a' }), 5);
    assert.equal(promValue(families, 'envoy_cluster_upstream_rq_retry', { envoy_cluster_name: 'a' }), 1);
    assert.equal(promValue(families, 'envoy_cluster_upstream_rq', { envoy_cluster_name: 'a', envoy_response_code: '503' }), 2);
    assert.equal(promValue(families, 'envoy_cluster_upstream_rq_xx', { envoy_cluster_name: 'a', envoy_response_code_class: '2' }), 3);
    assert.equal(promValue(families, 'envoy_http_downstream_rq_total', { envoy_http_conn_manager_prefix: 'ingress' }), 5);
    assert.equal(promValue(families, 'envoy_http_downstream_rq_xx', { envoy_http_conn_manager_prefix: 'ingress', envoy_response_code_class: '4' }), 1);
    assert.equal(families.get('envoy_cluster_upstream_cx_active')?.type, 'gauge');
    assert.equal(families.get('envoy_http_downstream_rq_time')?.type, 'histogram');
    const rqTime = promValue(families, 'envoy_http_downstream_rq_time_count', { envoy_http_conn_manager_prefix: 'ingress' });
    assert.ok(rqTime !== undefined && rqTime >= 5, `downstream_rq_time count ${rqTime}`);
    // The parser itself rejects broken input (so the checks above can fail).
    assert.throws(() => parsePrometheus('# TYPE x counter\nx 1\ny 2\nx{a="b"} 3\n'), /not contiguous/);
    assert.throws(() => parsePrometheus('x{a="b} 1\n'), /bad labels|not a sample/);
    assert.throws(() => parsePrometheus('x 1\n# TYPE x counter\n'), /TYPE/);
  });

  it('/config_dump returns the bootstrap, static clusters, listeners and routes', async () => {
    const r = await proxy.admin('/config_dump');
    assert.equal(r.status, 200);
    const doc = JSON.parse(r.text) as { configs: Json[] };
    const types = doc.configs.map((c) => String(c['@type']));
    for (const t of ['BootstrapConfigDump', 'ClustersConfigDump', 'ListenersConfigDump']) {
      assert.ok(types.includes(`type.googleapis.com/envoy.admin.v3.${t}`), `${t} in ${types.join(', ')}`);
    }
    const boot = doc.configs.find((c) => c['@type'] === 'type.googleapis.com/envoy.admin.v3.BootstrapConfigDump') as { bootstrap: Json };
    assert.equal((boot.bootstrap.node as Json).id, 'admin-e2e-node');
    const clusters = doc.configs.find((c) => c['@type'] === 'type.googleapis.com/envoy.admin.v3.ClustersConfigDump') as {
      static_clusters: Array<{ cluster: Json }>;
    };
    assert.deepEqual(clusters.static_clusters.map((c) => c.cluster.name), ['a']);
    assert.equal(clusters.static_clusters[0].cluster['@type'], 'type.googleapis.com/envoy.config.cluster.v3.Cluster');
    const listeners = doc.configs.find((c) => c['@type'] === 'type.googleapis.com/envoy.admin.v3.ListenersConfigDump') as {
      static_listeners: Array<{ listener: Json }>;
    };
    assert.deepEqual(listeners.static_listeners.map((l) => l.listener.name), ['ingress']);

    const only = await proxy.admin('/config_dump?resource=static_clusters');
    assert.equal(only.status, 200);
    const onlyDoc = JSON.parse(only.text) as { configs: Array<{ cluster: Json }> };
    assert.deepEqual(onlyDoc.configs.map((c) => c.cluster.name), ['a']);
  });

  it('/clusters (text and json) lists hosts with health and counters', async () => {
    const r = await proxy.admin('/clusters');
    assert.equal(r.status, 200);
    const host = `127.0.0.1:${up.port}`;
    assert.match(r.text, /^a::observability_name::a$/m);
    assert.match(r.text, /^a::default_priority::max_connections::1024$/m);
    assert.match(r.text, /^a::added_via_api::false$/m);
    assert.match(r.text, new RegExp(`^a::${host}::health_flags::healthy$`, 'm'));
    assert.match(r.text, new RegExp(`^a::${host}::weight::1$`, 'm'));
    assert.match(r.text, new RegExp(`^a::${host}::rq_total::5$`, 'm'));
    const j = await proxy.admin('/clusters?format=json');
    const doc = JSON.parse(j.text) as {
      cluster_statuses: Array<{ name: string; host_statuses: Array<{ address: { socket_address: { address: string; port_value: number } } }> }>;
    };
    const a = doc.cluster_statuses.find((c) => c.name === 'a');
    assert.ok(a);
    assert.deepEqual(a.host_statuses.map((h) => h.address.socket_address), [{ address: '127.0.0.1', port_value: up.port }]);
  });

  it('/listeners, /server_info, /help and unknown paths', async () => {
    const l = await proxy.admin('/listeners');
    assert.match(l.text, new RegExp(`^ingress::127\\.0\\.0\\.1:${port}$`, 'm'));
    const si = await proxy.admin('/server_info');
    assert.equal(si.status, 200);
    const info = JSON.parse(si.text) as { state: string; version: string; node: Json; command_line_options: Json; uptime_current_epoch: string };
    assert.equal(info.state, 'LIVE');
    assert.ok(info.version.length > 0);
    assert.equal(info.node.id, 'admin-e2e-node');
    assert.match(info.uptime_current_epoch, /^\d+s$/);
    assert.ok(info.command_line_options && typeof info.command_line_options === 'object');
    const help = await proxy.admin('/help');
    for (const p of ['/clusters', '/config_dump', '/healthcheck/fail (POST)', '/quitquitquit (POST)', '/ready', '/stats/prometheus']) {
      assert.ok(help.text.includes(`  ${p}:`), `${p} in /help`);
    }
    const unknown = await proxy.admin('/no-such-endpoint');
    assert.equal(unknown.status, 404);
  });

  it('/healthcheck/fail turns /ready to 503 DRAINING and drain-closes connections; /healthcheck/ok restores LIVE', async () => {
    const get = await proxy.admin('/healthcheck/fail');
    assert.equal(get.status, 405, 'mutating endpoints need POST');
    assert.equal((await proxy.admin('/ready')).status, 200);

    assert.equal((await proxy.admin('/healthcheck/fail', 'POST')).status, 200);
    const ready = await proxy.admin('/ready');
    assert.equal(ready.status, 503);
    assert.equal(ready.text, 'DRAINING\n');
    assert.equal(JSON.parse((await proxy.admin('/server_info')).text).state, 'DRAINING');
    await waitUntil(async () => {
      const s = await proxy.stats();
      return s['server.state'] === 1 && s['server.live'] === 0;
    }, { what: 'server.state 1 and server.live 0 after a stats flush' });
    // Traffic still flows, but each HTTP/1.1 connection is closed after its response (Envoy drain close).
    // (curl: an HTTP/1.1 client that asks for keep-alive, unlike node:http without an agent.)
    const during = await curl([`http://127.0.0.1:${port}/api/during-fail`]);
    assert.equal(during.status, 200);
    assert.equal(during.headers['connection'], 'close');

    assert.equal((await proxy.admin('/healthcheck/ok', 'POST')).status, 200);
    const back = await proxy.admin('/ready');
    assert.equal(back.status, 200);
    assert.equal(back.text, 'LIVE\n');
    const after = await curl([`http://127.0.0.1:${port}/api/after-ok`]);
    assert.equal(after.status, 200);
    assert.equal(after.headers['connection'], undefined, 'keep-alive again');
    await waitUntil(async () => (await proxy.stats())['server.state'] === 0, { what: 'server.state back to 0' });
  });
});

describe('admin /quitquitquit', () => {
  it('answers 200 and the process exits with code 0', async (t) => {
    const [port, adminPort] = await freePorts(2);
    const proxy = await startProxy(
      bootstrapWith({
        adminPort,
        listeners: [httpListener({ name: 'l', port, virtualHosts: [virtualHost('v', ['*'], [{ match: { prefix: '/' }, direct_response: { status: 200 } }])] })],
        clusters: [],
      }),
      { t },
    );
    assert.equal((await proxy.admin('/quitquitquit')).status, 405, 'GET is refused');
    assert.equal(proxy.exit, undefined);
    const r = await proxy.admin('/quitquitquit', 'POST');
    assert.equal(r.status, 200);
    assert.equal(r.text, 'OK\n');
    const exit = await proxy.exited;
    assert.deepEqual(exit, { code: 0, signal: null });
  });
});
