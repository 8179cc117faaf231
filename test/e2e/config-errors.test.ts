// Bad bootstraps through `sloop proxy -c` and `--mode validate` (as Envoy's --mode validate): the process
// exits non-zero, stderr names the file, line:column, the field path and what was expected, and nothing
// listens. Plus what Envoy accepts on purpose (a tcp_proxy to an unknown cluster: counted, not fatal).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { stringify } from 'yaml';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProxy, bootstrapWith, httpListener, tcpProxyListener, staticCluster, virtualHost, prefixRoute, SLOOP_BIN, type Json } from '../helpers/proxy.ts';
import { rawTcp, runProcess } from '../helpers/clients.ts';
import { freePorts } from '../helpers/ports.ts';
import { waitUntil } from '../helpers/wait.ts';

/** `sloop proxy --mode validate -c <file>` on `doc`: exit code and output. */
async function validate(doc: Json): Promise<{ exitCode: number | null; stdout: string; stderr: string; file: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'sloop-validate-'));
  const file = join(dir, 'bootstrap.yaml');
  try {
    await writeFile(file, stringify(doc));
    const r = await runProcess(SLOOP_BIN, ['proxy', '--mode', 'validate', '-c', file]);
    return { exitCode: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString(), file };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Asserts nothing accepts connections on `port` (the proxy never opened its listener). */
async function assertNothingListens(port: number): Promise<void> {
  await assert.rejects(rawTcp(port, 'x', { timeoutMs: 500 }), /ECONNREFUSED|failed/);
}

interface BadCase {
  name: string;
  /** Builds the bootstrap given a listener port and an admin port. */
  doc: (port: number, admin: number) => Json;
  /** Each must appear in stderr. */
  expect: RegExp[];
}

const listenerOn = (port: number, name = 'l1'): Json => httpListener({ name, port, virtualHosts: [virtualHost('v', ['*'], [prefixRoute('/', 'a')])] });
const clusterA = staticCluster('a', [['127.0.0.1', 9]]);

const CASES: BadCase[] = [
  {
    name: 'unknown field',
    doc: (port, admin) => bootstrapWith({ adminPort: admin, listeners: [listenerOn(port)], clusters: [{ ...clusterA, bogus_field: 1 }] }),
    expect: [/:\d+:\d+ static_resources\.clusters\[0\]\.bogus_field/, /unknown field "bogus_field"/, /envoy\.config\.cluster\.v3\.Cluster/],
  },
  {
    name: 'bad enum value',
    doc: (port, admin) => bootstrapWith({ adminPort: admin, listeners: [listenerOn(port)], clusters: [{ ...clusterA, lb_policy: 'ROUND_ROBINX' }] }),
    expect: [/:\d+:\d+ static_resources\.clusters\[0\]\.lb_policy/, /expected one of .*ROUND_ROBIN/, /ROUND_ROBINX/],
  },
  {
    name: 'bad duration',
    doc: (port, admin) => bootstrapWith({ adminPort: admin, listeners: [listenerOn(port)], clusters: [{ ...clusterA, connect_timeout: '5 seconds' }] }),
    expect: [/:\d+:\d+ static_resources\.clusters\[0\]\.connect_timeout/, /expected a duration/, /5 seconds/],
  },
  {
    name: 'unknown @type',
    doc: (port, admin) => {
      const l = listenerOn(port) as { filter_chains: Array<{ filters: Array<{ typed_config: Json }> }> };
      l.filter_chains[0].filters[0].typed_config['@type'] = 'type.googleapis.com/envoy.extensions.filters.network.nope.v3.Nope';
      return bootstrapWith({ adminPort: admin, listeners: [l as Json], clusters: [clusterA] });
    },
    expect: [/:\d+:\d+ static_resources\.listeners\[0\]\.filter_chains\[0\]\.filters\[0\]\.typed_config/, /envoy\.extensions\.filters\.network\.nope\.v3\.Nope/],
  },
  {
    name: 'field in the wrong message inside typed_config',
    doc: (port, admin) => {
      const l = listenerOn(port) as { filter_chains: Array<{ filters: Array<{ typed_config: Json }> }> };
      l.filter_chains[0].filters[0].typed_config.stream_idle_timout = '1s';
      return bootstrapWith({ adminPort: admin, listeners: [l as Json], clusters: [clusterA] });
    },
    expect: [/typed_config\.stream_idle_timout/, /unknown field "stream_idle_timout"/, /HttpConnectionManager/],
  },
  {
    name: 'duplicate listener names',
    doc: (port, admin) => bootstrapWith({ adminPort: admin, listeners: [listenerOn(port, 'same'), listenerOn(port + 1, 'same')], clusters: [clusterA] }),
    expect: [/:\d+:\d+ static_resources\.listeners\[1\]\.name/, /duplicate listener name "same"/],
  },
  {
    name: 'two listeners on the same address',
    doc: (port, admin) => bootstrapWith({ adminPort: admin, listeners: [listenerOn(port, 'one'), listenerOn(port, 'two')], clusters: [clusterA] }),
    expect: [/:\d+:\d+ static_resources\.listeners\[1\]\.address/, /listener "two" has duplicate address 127\.0\.0\.1:\d+ as existing listener "one"/],
  },
];

describe('bootstrap errors', () => {
  for (const c of CASES) {
    it(`${c.name}: sloop proxy exits 1, names file:line:col, field path and expectation; nothing listens`, async () => {
      const [port, admin] = await freePorts(2);
      const proxy = await startProxy(c.doc(port, admin), { expectFail: true });
      assert.equal(proxy.exit?.code, 1, proxy.stderr());
      const err = proxy.stderr();
      assert.ok(err.includes(proxy.configPath), `stderr names the file:\n${err}`);
      for (const re of c.expect) assert.match(err, re);
      assert.doesNotMatch(err, /^\s+at /m, 'a diagnostic, not a stack trace');
      await assertNothingListens(port);
      await assertNothingListens(admin);
    });

    it(`${c.name}: --mode validate reports the same and exits 1`, async () => {
      const [port, admin] = await freePorts(2);
      const r = await validate(c.doc(port, admin));
      assert.equal(r.exitCode, 1, r.stderr);
      assert.ok(r.stderr.includes(r.file), r.stderr);
      for (const re of c.expect) assert.match(r.stderr, re);
    });
  }

  it('--mode validate accepts a good bootstrap, exits 0 and opens nothing', async () => {
    const [port, admin] = await freePorts(2);
    const r = await validate(bootstrapWith({ adminPort: admin, listeners: [listenerOn(port)], clusters: [clusterA] }));
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stdout, /OK/);
    await assertNothingListens(port);
  });

  it('a YAML syntax error names the line and column', async () => {
    const [admin] = await freePorts(1);
    const proxy = await startProxy(`admin:\n  address: { socket_address: { address: 127.0.0.1, port_value: ${admin} }\nstatic_resources: [\n`, { expectFail: true, adminPort: admin });
    assert.equal(proxy.exit?.code, 1);
    assert.match(proxy.stderr(), /:\d+:\d+/);
    assert.ok(proxy.stderr().includes(proxy.configPath));
  });

  it('tcp_proxy to an unknown cluster is accepted (as Envoy); connections close and count downstream_cx_no_route', async (t) => {
    const [port, admin] = await freePorts(2);
    const proxy = await startProxy(
      bootstrapWith({ adminPort: admin, listeners: [tcpProxyListener({ name: 'tcp', port, cluster: 'missing' })], clusters: [clusterA] }),
      { t },
    );
    const r = await rawTcp(port, 'hello', { waitForClose: true, timeoutMs: 3_000 });
    assert.ok(r.closed, 'closed by the proxy');
    assert.equal(r.data.length, 0);
    await waitUntil(async () => ((await proxy.stats())['tcp.tcp.downstream_cx_no_route'] ?? 0) >= 1 || undefined, { what: 'tcp.tcp.downstream_cx_no_route' });
  });

  it('an HCM route to an unknown cluster is accepted; the request gets 503 and no_cluster is counted', async (t) => {
    const [port, admin] = await freePorts(2);
    const l = httpListener({ name: 'h', port, virtualHosts: [virtualHost('v', ['*'], [prefixRoute('/', 'nowhere')])] });
    const proxy = await startProxy(bootstrapWith({ adminPort: admin, listeners: [l], clusters: [clusterA] }), { t });
    const r = await rawTcp(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n', { until: (d) => d.includes('\r\n\r\n') });
    assert.match(r.text, /^HTTP\/1\.1 503 /);
    assert.equal((await proxy.stats())['http.h.no_cluster'], 1);
  });
});
