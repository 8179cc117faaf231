// `sloop up` end to end: the real command as a user runs it (a temp --dir and non-default ports, so it runs beside
// other tests). The whole chain — frontend (HTTP) → reviews v1/v2 (HTTP) → ratings (gRPC) — goes through the
// sidecars in explicit mode; the VirtualService split shows; an edit of the VirtualService file shifts traffic;
// SIGINT stops every process it started and it exits 0.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { curl } from '../helpers/clients.ts';
import { freePorts } from '../helpers/ports.ts';
import { SLOOP_BIN, REPO_ROOT } from '../helpers/proxy.ts';
import { waitUntil } from '../helpers/wait.ts';
import { callerIdentity } from '../../src/mesh/apps/args.ts';

const SA = (name: string): string => `spiffe://cluster.local/ns/default/sa/${name}`;

interface Hop {
  service: string;
  version?: string;
  served_by?: string;
  stars?: number;
  error?: string;
  seen_headers: Record<string, string>;
}
interface Chain {
  service: string;
  client: string;
  seen_headers: Record<string, string>;
  reviews: Hop & { rating: Hop };
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

async function withTimeout<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what()}`)), ms)));
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Starts `sloop up` on free ports in `dir`; resolves once it reports the mesh ready. */
async function startUp(dir: string): Promise<{ up: ChildProcess; output: () => string; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>; entry: string; pids: Map<string, number>; admin: Map<string, number> }> {
  const [entryPort, xdsPort] = await freePorts(2);
  const up = spawn(SLOOP_BIN, ['up', '--dir', join(dir, 'mesh'), '--port', String(entryPort), '--xds-address', `127.0.0.1:${xdsPort}`, '--ready-timeout-s', '120'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  up.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  up.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => up.once('exit', (code, signal) => resolve({ code, signal })));
  await waitUntil(() => {
    if (up.exitCode !== null) throw new Error(`sloop up exited early:\n${out}`);
    return out.includes('mesh ready') && out.includes('Ctrl-C stops everything');
  }, { what: 'sloop up to report the mesh ready', timeoutMs: 150_000, intervalMs: 100 });
  const pids = new Map<string, number>();
  const admin = new Map<string, number>();
  for (const m of out.matchAll(/^ {2}(\S+)\s+pid (\d+)\s+(.*)$/gm)) {
    pids.set(m[1], Number(m[2]));
    const a = /admin http:\/\/127\.0\.0\.1:(\d+)\//.exec(m[3]);
    if (a) admin.set(m[1], Number(a[1]));
  }
  return { up, output: () => out, exited, entry: `http://127.0.0.1:${entryPort}/`, pids, admin };
}

describe('sloop up: a whole mesh from one command (explicit mode)', { timeout: 240_000 }, () => {
  let dir: string;
  let up: ChildProcess;
  let output: () => string = () => '';
  let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  let entry: string;
  let pids: number[] = [];
  const admin = new Map<string, number>();

  const chain = async (query = ''): Promise<Chain> => {
    const r = await curl([`${entry}?format=json${query}`]);
    assert.equal(r.status, 200, `${r.status} ${r.text}`);
    return r.json<Chain>();
  };
  const stat = async (sidecar: string, name: string): Promise<number> => {
    const r = await curl([`http://127.0.0.1:${admin.get(sidecar)}/stats?filter=${encodeURIComponent(name)}`]);
    const line = r.text.split('\n').find((l) => l.startsWith(`${name}: `));
    return line === undefined ? 0 : Number(line.split(': ')[1]);
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sloop-up-test-'));
    const started = await startUp(dir);
    up = started.up;
    exited = started.exited;
    entry = started.entry;
    pids = [...started.pids.values()];
    for (const [k, v] of started.admin) admin.set(k, v);
    output = started.output;
  });

  after(async () => {
    if (up !== undefined && up.exitCode === null && up.signalCode === null) up.kill('SIGKILL');
    for (const pid of pids) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('writes the config folder and reports every process it started', async () => {
    for (const f of ['services.yaml', 'destination-rules.yaml', 'reviews-virtualservice.yaml', 'peer-authentication.yaml']) assert.ok(existsSync(join(dir, 'mesh', f)), f);
    // control plane + 4 apps + 4 sidecars
    assert.equal(pids.length, 9, output());
    assert.equal(admin.size, 4, output());
    for (const pid of pids) assert.ok(isAlive(pid), `pid ${pid} alive`);
    assert.match(output(), /reviews-virtualservice\.yaml/);
  });

  it('routes frontend → reviews (both versions under the 50/50 split) → ratings over gRPC, every hop through a sidecar', async () => {
    const versions = new Set<string>();
    for (let i = 0; i < 40 && versions.size < 2; i++) {
      const c = await chain();
      versions.add(c.reviews.version!);
      // Each app saw the headers its own sidecar's inbound HCM adds, and the request id the apps propagate.
      assert.match(c.seen_headers['x-request-id'], UUID);
      assert.equal(c.seen_headers['x-forwarded-proto'], 'http');
      assert.equal(c.reviews.seen_headers['x-forwarded-proto'], 'http');
      assert.match(c.reviews.seen_headers['x-request-id'], UUID);
      assert.equal(c.reviews.rating.served_by, 'ratings', JSON.stringify(c));
      assert.equal(c.reviews.rating.stars, 4);
      // The gRPC call crossed the reviews sidecar in a CONNECT tunnel (no HCM there), so the first HCM it meets is
      // the ratings sidecar's inbound one, on an mTLS connection: https, as Envoy sets it.
      assert.equal(c.reviews.rating.seen_headers['x-forwarded-proto'], 'https');
      assert.match(c.reviews.rating.seen_headers['x-request-id'], UUID);
    }
    assert.deepEqual([...versions].sort(), ['v1', 'v2']);
    // Mutual TLS between the sidecars (STRICT mesh-wide in the demo config): each callee's sidecar vouches for the
    // caller's certificate in x-forwarded-client-cert; the entry (curl, plaintext under PERMISSIVE) has none.
    const c = await chain();
    assert.equal(c.seen_headers['x-forwarded-client-cert'], undefined);
    assert.equal(callerIdentity(c.reviews.seen_headers), SA('frontend'), JSON.stringify(c));
    assert.equal(callerIdentity(c.reviews.rating.seen_headers), SA('reviews'), JSON.stringify(c));
    assert.match(output(), /mTLS: reviews v[12] was called by spiffe:\/\/cluster\.local\/ns\/default\/sa\/frontend; ratings by spiffe:\/\/cluster\.local\/ns\/default\/sa\/reviews/);
    // http.get went through the frontend's sidecar, routed by the VirtualService to the subsets' clusters.
    const v1 = await stat('frontend-sidecar', 'cluster.outbound|9080|v1|reviews.default.svc.cluster.local.upstream_rq_total');
    const v2 = await stat('frontend-sidecar', 'cluster.outbound|9080|v2|reviews.default.svc.cluster.local.upstream_rq_total');
    assert.ok(v1 > 0 && v2 > 0, `v1 ${v1} v2 ${v2}`);
    // The gRPC client's CONNECT tunnel to ratings went through its own sidecar (reviews-v1 or -v2 answered).
    const ratingsCx = (await stat('reviews-v1-sidecar', 'cluster.outbound|9090||ratings.default.svc.cluster.local.upstream_cx_total')) +
      (await stat('reviews-v2-sidecar', 'cluster.outbound|9090||ratings.default.svc.cluster.local.upstream_cx_total'));
    assert.ok(ratingsCx > 0, 'ratings reached through a reviews sidecar');
    // A header match in the VirtualService pins v2.
    for (let i = 0; i < 3; i++) {
      const r = await curl(['-H', 'end-user: jason', `${entry}?format=json`]);
      assert.equal(r.json<Chain>().reviews.version, 'v2');
    }
  });

  it('STRICT: a plaintext client is refused at a sidecar\'s inbound port, and no bytes reach the app', async () => {
    const inbound = /reviews-v1-sidecar\s+pid \d+\s+inbound :(\d+)/.exec(output())?.[1];
    assert.ok(inbound, output());
    const r = await curl(['--max-time', '5', `http://127.0.0.1:${inbound}/`]);
    assert.notEqual(r.status, 200, r.text);
    assert.equal(r.status, 0, `plaintext answered: ${r.status} ${r.text}`);
  });

  it('fetch() through HTTP_PROXY: a CONNECT tunnel through the frontend\'s sidecar to the reviews service', async () => {
    const before = await stat('frontend-sidecar', 'cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_cx_total');
    const c = await chain('&client=fetch');
    assert.equal(c.client, 'fetch');
    assert.equal(c.reviews.rating.served_by, 'ratings');
    // The reviews app still sees its sidecar's inbound headers: the tunnel ends at that sidecar's inbound port,
    // over mTLS (so x-forwarded-proto is https there), and the caller is still the frontend's identity.
    assert.equal(c.reviews.seen_headers['x-forwarded-proto'], 'https');
    assert.equal(callerIdentity(c.reviews.seen_headers), SA('frontend'));
    const after = await stat('frontend-sidecar', 'cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_cx_total');
    // http.get uses the subsets' clusters; only a CONNECT tunnel uses the service's own cluster.
    assert.ok(after > before, `tunnel connections to the reviews cluster: ${before} → ${after}`);
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

  it('an AuthorizationPolicy on ratings admits only the principals it names (by their certificates)', async () => {
    const file = join(dir, 'mesh', 'ratings-authz.yaml');
    const policy = (principal: string): string => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ratings, namespace: default }
spec:
  selector: { matchLabels: { app: ratings } }
  action: ALLOW
  rules:
  - from: [{ source: { principals: [${principal}] } }]
`;
    await writeFile(file, policy('cluster.local/ns/default/sa/frontend'));
    await waitUntil(async () => /ratings unavailable: 7 /.test((await chain()).reviews.rating.error ?? ''), { what: 'ratings denied (gRPC 7) for reviews\' identity', timeoutMs: 15_000, intervalMs: 200 });
    await writeFile(file, policy('cluster.local/ns/default/sa/reviews'));
    await waitUntil(async () => (await chain()).reviews.rating.stars === 4, { what: 'ratings allowed again for reviews\' identity', timeoutMs: 15_000, intervalMs: 200 });
    await rm(file);
  });

  it('SIGINT stops every process it started and exits 0', async () => {
    up.kill('SIGINT');
    const exit = await withTimeout(exited, 30_000, () => `sloop up to exit after SIGINT; output:\n${output().slice(-1500)}`);
    assert.deepEqual(exit, { code: 0, signal: null }, output().slice(-2000));
    assert.match(output(), /stopped 9 processes cleanly/);
    for (const pid of pids) assert.equal(existsSync(`/proc/${pid}`), false, `pid ${pid} survived`);
  });
});

describe('sloop up: a process that dies takes the mesh down cleanly', { timeout: 240_000 }, () => {
  it('reports the dead child, stops the others and exits 1 with nothing left running', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'sloop-up-test-'));
    const { up, output, exited, pids } = await startUp(dir);
    t.after(async () => {
      if (up.exitCode === null && up.signalCode === null) up.kill('SIGKILL');
      for (const pid of pids.values()) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
      await rm(dir, { recursive: true, force: true });
    });
    const ratings = pids.get('ratings')!;
    process.kill(ratings, 'SIGKILL');
    const exit = await withTimeout(exited, 30_000, () => `sloop up to exit after ratings died; output:\n${output().slice(-1500)}`);
    assert.deepEqual(exit, { code: 1, signal: null }, output().slice(-2000));
    assert.match(output(), new RegExp(`ratings \\(pid ${ratings}\\) exited unexpectedly with SIGKILL`));
    assert.equal(pids.size, 9);
    for (const [name, pid] of pids) assert.equal(existsSync(`/proc/${pid}`), false, `${name} (pid ${pid}) survived`);
  });
});
