// `sloop up --mode transparent` end to end (root): every workload in a network namespace of its own, apps on
// their real ports (both reviews versions on 9080) with no proxy settings, sidecars as uid 1337 with Istio's
// iptables interception, the control plane on the host. From the host, curl reaches the frontend at the
// user-facing port; both reviews versions answer; every app sees its sidecar's x-request-id; a VirtualService
// edit shifts traffic; SIGINT removes every process, namespace, veth, route, /etc/netns file and iptables rule.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { curl } from '../helpers/clients.ts';
import { freePorts } from '../helpers/ports.ts';
import { SLOOP_BIN, REPO_ROOT } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/wait.ts';
import { hostInterfaceName } from '../../src/mesh/transparent/workload-netns.ts';

interface Hop {
  service: string;
  version?: string;
  served_by?: string;
  stars?: number;
  seen_headers: Record<string, string>;
}
interface Chain {
  service: string;
  client: string;
  seen_headers: Record<string, string>;
  reviews: Hop & { rating: Hop };
}
interface Row {
  pid: number;
  netns: string;
  ip: string;
  port: number;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', timeout: 15_000 });
}

function netnsList(): string[] {
  const out = sh('ip', ['-j', 'netns', 'list']).trim();
  return out === '' ? [] : (JSON.parse(out) as { name: string }[]).map((n) => n.name);
}

/** The host's routes, nat rules and ip_forward: the mesh may add routes while it runs, never change the rest. */
function hostState(): { routes: string; nat: string; ipForward: string } {
  return {
    routes: sh('ip', ['route', 'show', 'table', 'all']),
    nat: sh('iptables', ['-t', 'nat', '-S']),
    ipForward: readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8'),
  };
}

function environOf(pid: number): Map<string, string> {
  return new Map(readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

describe('sloop up --mode transparent: namespaces, iptables, sidecars as uid 1337', { timeout: 300_000 }, () => {
  let dir: string;
  let up: ChildProcess;
  let out = '';
  let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  let entry: string;
  let prefix: string;
  let hostBefore: ReturnType<typeof hostState>;
  const rows = new Map<string, Row>();

  const chain = async (query = ''): Promise<Chain> => {
    const r = await curl([`${entry}?format=json${query}`]);
    assert.equal(r.status, 200, `${r.status} ${r.text}`);
    return r.json<Chain>();
  };
  const stat = async (sidecar: string, name: string): Promise<number> => {
    const r = await curl([`http://${rows.get(sidecar)!.ip}:15000/stats?filter=${encodeURIComponent(name)}`]);
    const line = r.text.split('\n').find((l) => l.startsWith(`${name}: `));
    return line === undefined ? 0 : Number(line.split(': ')[1]);
  };

  before(async () => {
    assert.equal(process.getuid?.(), 0, 'transparent mode needs root (network namespaces and iptables)');
    hostBefore = hostState();
    dir = await mkdtemp(join(tmpdir(), 'sloop-up-transparent-'));
    const [entryPort, xdsPort] = await freePorts(2);
    entry = `http://127.0.0.1:${entryPort}/`;
    up = spawn(SLOOP_BIN, ['up', '--mode', 'transparent', '--dir', join(dir, 'mesh'), '--port', String(entryPort), '--xds-address', `127.0.0.1:${xdsPort}`, '--ready-timeout-s', '120'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    prefix = `sloop-${up.pid}-`;
    up.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    up.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    exited = new Promise((resolve) => up.once('exit', (code, signal) => resolve({ code, signal })));
    await waitUntil(() => {
      if (up.exitCode !== null) throw new Error(`sloop up exited early:\n${out}`);
      return out.includes('mesh ready') && out.includes('Ctrl-C stops everything');
    }, { what: 'sloop up to report the mesh ready', timeoutMs: 150_000, intervalMs: 100 });
    for (const m of out.matchAll(/^ {2}(\S+)\s+pid (\d+)\s+netns (\S+), (\d+\.\d+\.\d+\.\d+) (?:app :(\d+))?/gm)) {
      rows.set(m[1], { pid: Number(m[2]), netns: m[3], ip: m[4], port: Number(m[5] ?? 0) });
    }
  });

  after(async () => {
    // Whatever happened above: nothing of this run may outlive the test.
    if (up !== undefined && up.exitCode === null && up.signalCode === null) {
      up.kill('SIGINT');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
      if (up.exitCode === null && up.signalCode === null) up.kill('SIGKILL');
    }
    for (const r of rows.values()) if (isAlive(r.pid)) process.kill(r.pid, 'SIGKILL');
    if (prefix !== undefined) {
      for (const ns of netnsList().filter((n) => n.startsWith(prefix)).sort((a, b) => Number(a.endsWith('-node')) - Number(b.endsWith('-node')))) {
        for (const p of sh('ip', ['netns', 'pids', ns]).split('\n').filter(Boolean)) process.kill(Number(p), 'SIGKILL');
        execFileSync('ip', ['netns', 'del', ns]);
        await rm(join('/etc/netns', ns), { recursive: true, force: true });
      }
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('puts every workload in its own namespace: apps on their real ports without proxy settings, sidecars as uid 1337', () => {
    assert.equal(rows.size, 8, out);
    const hostNet = readlinkSync('/proc/self/ns/net');
    const ips = new Set<string>();
    for (const w of ['frontend', 'reviews-v1', 'reviews-v2', 'ratings']) {
      const app = rows.get(w)!;
      const sidecar = rows.get(`${w}-sidecar`)!;
      assert.equal(app.netns, `${prefix}${w}`);
      assert.equal(sidecar.netns, app.netns);
      assert.equal(sidecar.ip, app.ip);
      ips.add(app.ip);
      // Same network namespace for app and sidecar, not the host's.
      const appNet = readlinkSync(`/proc/${app.pid}/ns/net`);
      assert.notEqual(appNet, hostNet);
      assert.equal(readlinkSync(`/proc/${sidecar.pid}/ns/net`), appNet);
      // The sidecar runs as Istio's proxy uid/gid (the owner match exempts its traffic).
      assert.match(readFileSync(`/proc/${sidecar.pid}/status`, 'utf8'), /^Uid:\s+1337\s+1337\s+1337\s+1337$/m);
      assert.match(readFileSync(`/proc/${sidecar.pid}/status`, 'utf8'), /^Gid:\s+1337\s+1337\s+1337\s+1337$/m);
      // No proxy settings reach the app: its traffic is redirected, not proxied.
      const env = environOf(app.pid);
      for (const k of env.keys()) assert.doesNotMatch(k, /^(https?|grpc|all|no)_proxy$|^NODE_USE_ENV_PROXY$/i, `${w} has ${k}`);
      // Istio's rules in the workload's nat table.
      const nat = sh('ip', ['netns', 'exec', app.netns, 'iptables', '-t', 'nat', '-S']).split('\n');
      assert.ok(nat.includes('-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN'), nat.join('\n'));
      assert.ok(nat.includes('-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001'), nat.join('\n'));
      assert.ok(nat.includes('-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006'), nat.join('\n'));
      // Service names resolve through the namespace's /etc/hosts.
      assert.match(readFileSync(`/etc/netns/${app.netns}/hosts`, 'utf8'), /^240\.240\.\d+\.\d+\treviews reviews\.default\.svc\.cluster\.local /m);
    }
    assert.equal(ips.size, 4);
    assert.equal(rows.get('reviews-v1')!.port, 9080);
    assert.equal(rows.get('reviews-v2')!.port, 9080);
    assert.equal(rows.get('ratings')!.port, 9090);
    // reviews v1 listens on 9080 inside its namespace, and the host's 9080 is not taken by it.
    assert.match(sh('ip', ['netns', 'exec', rows.get('reviews-v1')!.netns, 'ss', '-Hltn']), /127\.0\.0\.1:9080\b/);
  });

  it('routes frontend → reviews (both versions) → ratings (gRPC) through the sidecars, which add x-request-id', async () => {
    const versions = new Set<string>();
    for (let i = 0; i < 40 && versions.size < 2; i++) {
      const c = await chain();
      versions.add(c.reviews.version!);
      assert.match(c.seen_headers['x-request-id'], UUID, JSON.stringify(c));
      assert.equal(c.seen_headers['x-forwarded-proto'], 'http');
      assert.match(c.reviews.seen_headers['x-request-id'], UUID);
      assert.equal(c.reviews.seen_headers['x-forwarded-proto'], 'http');
      assert.equal(c.reviews.rating.served_by, 'ratings', JSON.stringify(c));
      assert.equal(c.reviews.rating.stars, 4);
      assert.match(c.reviews.rating.seen_headers['x-request-id'], UUID);
    }
    assert.deepEqual([...versions].sort(), ['v1', 'v2']);
    // The frontend's plain http.get to reviews:9080 was redirected to its sidecar, which routed by the
    // VirtualService to the subsets' clusters.
    const v1 = await stat('frontend-sidecar', 'cluster.outbound|9080|v1|reviews.default.svc.cluster.local.upstream_rq_total');
    const v2 = await stat('frontend-sidecar', 'cluster.outbound|9080|v2|reviews.default.svc.cluster.local.upstream_rq_total');
    assert.ok(v1 > 0 && v2 > 0, `v1 ${v1} v2 ${v2}`);
    // It reached the outbound port listener by the original-destination hand-off, not an HTTP proxy port.
    assert.ok((await stat('frontend-sidecar', 'listener.0.0.0.0_9080.downstream_cx_total')) > 0);
    // Inbound: the reviews sidecars' virtualInbound took the calls.
    const inbound = (await stat('reviews-v1-sidecar', 'listener.0.0.0.0_15006.downstream_cx_total')) + (await stat('reviews-v2-sidecar', 'listener.0.0.0.0_15006.downstream_cx_total'));
    assert.ok(inbound > 0);
    // gRPC to ratings:9090 went through a reviews sidecar's outbound HTTP/2 route.
    const grpc = (await stat('reviews-v1-sidecar', 'cluster.outbound|9090||ratings.default.svc.cluster.local.upstream_rq_total')) + (await stat('reviews-v2-sidecar', 'cluster.outbound|9090||ratings.default.svc.cluster.local.upstream_rq_total'));
    assert.ok(grpc > 0, 'ratings reached through a reviews sidecar');
    // A header match pins v2; fetch() is redirected the same way (no CONNECT tunnel), so it is routed per request.
    for (let i = 0; i < 3; i++) {
      const r = await curl(['-H', 'end-user: jason', `${entry}?format=json`]);
      assert.equal(r.json<Chain>().reviews.version, 'v2');
      const f = await curl(['-H', 'end-user: jason', `${entry}?format=json&client=fetch`]);
      assert.equal(f.json<Chain>().client, 'fetch');
      assert.equal(f.json<Chain>().reviews.version, 'v2');
    }
  });

  it('an edit of the VirtualService file sends everything to v2 within seconds', async () => {
    const file = join(dir, 'mesh', 'reviews-virtualservice.yaml');
    const text = await readFile(file, 'utf8');
    let n = 0;
    const edited = text.replace(/weight: 50/g, () => (n++ === 0 ? 'weight: 0' : 'weight: 100'));
    assert.equal(n, 2);
    await writeFile(file, edited);
    await waitUntil(async () => {
      for (let i = 0; i < 5; i++) if ((await chain()).reviews.version !== 'v2') return false;
      return true;
    }, { what: 'only v2 answering after the edit', timeoutMs: 15_000, intervalMs: 100 });
    for (let i = 0; i < 10; i++) assert.equal((await chain()).reviews.version, 'v2');
  });

  it('SIGINT stops everything and removes the namespaces, veths, routes, hosts files and iptables rules', async () => {
    const nodeIf = hostInterfaceName(`${prefix}node`);
    assert.match(sh('ip', ['-o', 'link', 'show']), new RegExp(`${nodeIf}@`));
    up.kill('SIGINT');
    const exit = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 40_000))]);
    assert.deepEqual(exit, { code: 0, signal: null }, out.slice(-2000));
    assert.match(out, /stopped 9 processes cleanly/);
    for (const [name, r] of rows) assert.equal(existsSync(`/proc/${r.pid}`), false, `${name} (pid ${r.pid}) survived`);
    assert.deepEqual(netnsList().filter((n) => n.startsWith(prefix)), []);
    assert.equal(existsSync('/etc/netns') && sh('ls', ['/etc/netns']).split('\n').some((n) => n.startsWith(prefix)), false);
    assert.doesNotMatch(sh('ip', ['-o', 'link', 'show']), new RegExp(nodeIf));
    // The host is as it was: links, routes, nat rules and ip_forward (other tests' namespaces aside).
    const now = hostState();
    assert.equal(now.ipForward, hostBefore.ipForward);
    assert.equal(now.nat, hostBefore.nat);
    assert.doesNotMatch(now.routes, new RegExp(nodeIf));
  });
});
