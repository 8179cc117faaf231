/**
 * mTLS bench (issue #5): the CPU mTLS adds per request, and new mTLS handshakes per second per core, for
 * `sloop proxy` beside nginx terminating the same TLS.
 *
 * Run: `node bench/mtls.ts [--seconds 8] [--connections 16] [--rounds 2] [--warmup 2] [--json out.json]
 *        [--no-pin] [--no-s-time]`   (with the repo's Node 24: `export PATH=$PWD/node_modules/.bin:$PATH`)
 *
 * Upstream: nginx, 1 worker, `GET /` → 200 with a fixed 100-byte body (as shared/bench/proxy-bench's, and
 * cheaper per request than a node:http server), the same process for every target. Targets, each its own
 * process on its own loopback port, each proxying to that upstream over keep-alive HTTP/1.1:
 *   sloop-plain  `sloop proxy`, plaintext HTTP listener
 *   sloop-mtls   `sloop proxy`, DownstreamTlsContext with require_client_certificate and a trusted_ca
 *   nginx-plain  nginx (1 worker) proxy_pass to an upstream block with keepalive
 *   nginx-mtls   the same with `ssl_verify_client on`
 * Both TLS targets: the SPIFFE test PKI of test/helpers/certs.ts (ECDSA P-256 CA, server and client certs),
 * TLS 1.3 only, key exchange group X25519, default TLS 1.3 cipher suites (the negotiated parameters are checked
 * with `openssl s_client` and printed).
 *
 * Loads (bench/mtls-load.ts, a separate Node process; plain TCP or TLS with the client certificate):
 *   keep-alive  N connections, closed loop, S seconds: requests/s and the target's CPU µs per request
 *   new conn    N loops each opening a new connection per request (`Connection: close`; for TLS a full mTLS
 *               handshake, no resumption): connections/s and the target's CPU µs per connection
 *   s_time      `openssl s_time -new -www /` with the client certificate (one connection at a time, an outside
 *               TLS client; TLS targets only)
 * Target CPU = utime+stime of the target's process tree from /proc/<pid>/stat over the measured window (as
 * shared/bench/lib/bench.mjs measures it). Handshakes per second per core = 1e6 / (CPU µs per handshake).
 * Pinning (as proxy-bench): load generator + this orchestrator on CPU 0, targets and the upstream on CPU 1.
 * Targets are interleaved and their order rotated per round; values are the median over rounds, ±% is
 * (max−min)/median of the rate across rounds; differences (mTLS − plain) are taken within each round.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { makeTestPki, type TestPki } from '../test/helpers/certs.ts';
import { freePort } from '../test/helpers/ports.ts';
import { cpuTicks, nginxConfig, processTree } from './procs.ts';
import {
  bootstrapWith,
  downstreamTls,
  httpListener,
  SLOOP_BIN,
  startProxy,
  staticCluster,
  type Json,
  type ProxyHandle,
} from '../test/helpers/proxy.ts';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '8' },
    connections: { type: 'string', default: '16' },
    rounds: { type: 'string', default: '2' },
    warmup: { type: 'string', default: '2' },
    json: { type: 'string' },
    'no-pin': { type: 'boolean', default: false },
    'no-s-time': { type: 'boolean', default: false },
    'cpu-client': { type: 'string', default: '0' },
    'cpu-server': { type: 'string', default: '1' },
    keep: { type: 'boolean', default: false },
  },
});
const SECONDS = Number(args.seconds);
const CONNS = Number(args.connections);
const ROUNDS = Number(args.rounds);
const WARMUP = Number(args.warmup);
const PIN = !args['no-pin'] && cpus().length > 1;
const CPU_CLIENT = args['cpu-client'] as string;
const CPU_SERVER = args['cpu-server'] as string;
const CLK_TCK = 100; // getconf CLK_TCK on Linux x86-64
const BODY = 'x'.repeat(99) + '\n';
const HERE = fileURLToPath(new URL('./', import.meta.url));
const LOADGEN = join(HERE, 'mtls-load.ts');

const log = (s: string): void => void process.stderr.write(`[mtls] ${s}\n`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const pinned = (cpu: string, cmd: string[]): string[] => (PIN ? ['taskset', '-c', cpu, ...cmd] : cmd);

// ---------------------------------------------------------------- processes and CPU (/proc)

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});
function startChild(name: string, cmd: string[], logFile: string): ChildProcess {
  const out = [] as string[];
  const child = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const keep = (b: Buffer): void => void out.push(b.toString());
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  child.once('exit', (code, sig) => {
    writeFileSync(logFile, out.join(''));
    if (!stopping) log(`${name} exited (${code ?? sig}); log ${logFile}`);
  });
  return child;
}
let stopping = false;
async function stopChild(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise((r) => c.once('exit', r));
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(t);
}

// ---------------------------------------------------------------- nginx

function ensureNginx(): void {
  if (spawnSync('sh', ['-c', 'command -v nginx'], { stdio: 'ignore' }).status === 0) return;
  log('nginx missing: apt-get install -y nginx (a policy-rc.d guard keeps Debian from starting its service)');
  const sudo = process.getuid?.() === 0 ? '' : 'sudo ';
  execFileSync(
    'sh',
    [
      '-c',
      `made=0; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\\nexit 101\\n' | ${sudo}tee /usr/sbin/policy-rc.d >/dev/null; ${sudo}chmod 755 /usr/sbin/policy-rc.d; made=1; fi; ` +
        `rc=0; { ${sudo}apt-get update -qq && DEBIAN_FRONTEND=noninteractive ${sudo}apt-get install -y -qq --no-install-recommends nginx; } >&2 || rc=$?; ` +
        `[ "$made" = 1 ] && ${sudo}rm -f /usr/sbin/policy-rc.d; exit $rc`,
    ],
    { stdio: 'inherit' },
  );
}

function startNginx(dir: string, name: string, cpu: string, http: string): ChildProcess {
  const d = join(dir, name);
  mkdirSync(d, { recursive: true });
  const conf = nginxConfig(d, http);
  writeFileSync(join(d, 'nginx.conf'), conf);
  return startChild(name, pinned(cpu, ['nginx', '-p', d, '-c', join(d, 'nginx.conf'), '-e', join(d, 'stderr.log'), '-g', 'daemon off;']), join(d, 'out.log'));
}

function nginxProxyServer(port: number, upstreamPort: number, tls?: TestPki): string {
  const ssl = tls
    ? `    ssl_certificate ${tls.server.certPath};
    ssl_certificate_key ${tls.server.keyPath};
    ssl_client_certificate ${tls.ca.certPath};
    ssl_verify_client on;
    ssl_protocols TLSv1.3;
    ssl_ecdh_curve X25519;
`
    : '';
  return `  upstream app {
    server 127.0.0.1:${upstreamPort};
    keepalive 256;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
  }
  server {
    listen 127.0.0.1:${port}${tls ? ' ssl' : ''} backlog=4096;
${ssl}    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }`;
}

// ---------------------------------------------------------------- sloop

async function startSloop(port: number, upstreamPort: number, tls?: TestPki): Promise<ProxyHandle> {
  let transportSocket: Json | undefined;
  if (tls) {
    transportSocket = downstreamTls({ certPath: tls.server.certPath, keyPath: tls.server.keyPath, caPath: tls.ca.certPath, requireClientCertificate: true });
    const ctx = (transportSocket.typed_config as Json).common_tls_context as Json;
    ctx.tls_params = { tls_minimum_protocol_version: 'TLSv1_3', tls_maximum_protocol_version: 'TLSv1_3', ecdh_curves: ['X25519'] };
  }
  const bootstrap = bootstrapWith({
    adminPort: await freePort(),
    listeners: [
      httpListener({
        name: tls ? 'mtls' : 'plain',
        port,
        virtualHosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'upstream' } }] }],
        transportSocket,
      }),
    ],
    clusters: [staticCluster('upstream', [['127.0.0.1', upstreamPort]])],
  });
  return startProxy(bootstrap, {
    command: (c) => pinned(CPU_SERVER, [SLOOP_BIN, 'proxy', '-c', c]),
    args: ['--log-level', 'warn'],
  });
}

// ---------------------------------------------------------------- readiness and TLS parameters

function getOnce(port: number, pki?: TestPki): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const opts = { host: '127.0.0.1', port, path: '/', agent: false as const, timeout: 2000 };
    const cb = (res: import('node:http').IncomingMessage): void => {
      let body = '';
      res.setEncoding('latin1').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    };
    const req = pki
      ? httpsRequest({ ...opts, cert: pki.client.cert, key: pki.client.key, ca: pki.ca.cert }, cb)
      : httpRequest(opts, cb);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}
async function waitReady(name: string, port: number, pki?: TestPki): Promise<void> {
  let last = '';
  for (let i = 0; i < 200; i++) {
    try {
      const r = await getOnce(port, pki);
      if (r.status === 200 && r.body === BODY) return;
      last = `status ${r.status}, body ${JSON.stringify(r.body.slice(0, 80))}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await sleep(50);
  }
  throw new Error(`${name} on port ${port} not ready: ${last}`);
}

/** What `openssl s_client -brief` reports for a handshake with the client certificate. */
function tlsParams(port: number, pki: TestPki): Record<string, string> {
  const r = spawnSync(
    'openssl',
    ['s_client', '-connect', `127.0.0.1:${port}`, '-brief', '-cert', pki.client.certPath, '-key', pki.client.keyPath, '-CAfile', pki.ca.certPath],
    { input: '', encoding: 'utf8', timeout: 5000 },
  );
  const out: Record<string, string> = {};
  for (const line of `${r.stdout}\n${r.stderr}`.split('\n')) {
    const m = /^(Protocol version|Ciphersuite|Peer signature type|Server Temp Key|Negotiated TLS1.3 group|Verification):\s*(.*)$/.exec(line.trim());
    if (m) out[m[1]] = m[2];
  }
  return out;
}

// ---------------------------------------------------------------- loads

interface Target {
  name: string;
  port: number;
  tls: boolean;
  pids: number[];
}
interface Cell {
  round: number;
  target: string;
  load: 'keepalive' | 'new' | 's_time';
  /** Requests (keep-alive) or connections (new, s_time) completed in the window. */
  count: number;
  seconds: number;
  rate: number;
  cpuUsPer: number | null;
  upstreamCpuUsPer: number | null;
  errors: number;
  /** The load generator's own CPU over the window, % of one core (keep-alive and new-connection loads). */
  clientCpuPct?: number;
  /** How busy the targets' core was over the window (all processes on it, the other workers' too), %. */
  serverCoreBusyPct?: number | null;
  detail?: unknown;
}

function runProcess(cmd: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(c);
    let stdout = '';
    let stderr = '';
    c.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    c.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    c.once('close', (code) => {
      children.delete(c);
      resolve({ code, stdout, stderr });
    });
  });
}

async function loadCell(t: Target, mode: 'keepalive' | 'new', seconds: number, pki: TestPki, upPids: number[], round: number): Promise<Cell> {
  const cmd = [process.execPath, '--disable-warning=ExperimentalWarning', LOADGEN, '--port', String(t.port), '--mode', mode, '--connections', String(CONNS), '--seconds', String(seconds), '--pids', t.pids.join(','), '--upstream-pids', upPids.join(',')];
  if (t.tls) cmd.push('--tls', '--cert', pki.client.certPath, '--key', pki.client.keyPath, '--ca', pki.ca.certPath);
  const r = await runProcess(pinned(CPU_CLIENT, cmd));
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  let j: {
    ok: number;
    seconds: number;
    errors: number;
    non2xx: number;
    errorKinds: Record<string, number>;
    targetTicks: number;
    upstreamTicks: number;
    clientCpuPct: number;
    coreBusyPct: Record<string, number>;
    resumed: number;
  };
  try {
    j = JSON.parse(line);
  } catch {
    throw new Error(`load generator failed on ${t.name} (${mode}, exit ${r.code}): ${r.stderr.slice(-2000)}`);
  }
  return {
    round,
    target: t.name,
    load: mode,
    count: j.ok,
    seconds: j.seconds,
    rate: j.ok / j.seconds,
    cpuUsPer: j.ok ? (1e6 * j.targetTicks) / CLK_TCK / j.ok : null,
    upstreamCpuUsPer: j.ok ? (1e6 * j.upstreamTicks) / CLK_TCK / j.ok : null,
    // A resumed TLS session would not be a full handshake: count it as an error so it cannot pass unseen.
    errors: j.errors + j.non2xx + j.resumed,
    clientCpuPct: j.clientCpuPct,
    serverCoreBusyPct: PIN ? (j.coreBusyPct[`cpu${CPU_SERVER}`] ?? null) : null,
    detail: { errorKinds: j.errorKinds, non2xx: j.non2xx, resumed: j.resumed, coreBusyPct: j.coreBusyPct },
  };
}

async function sTimeCell(t: Target, seconds: number, pki: TestPki, upPids: number[], round: number): Promise<Cell> {
  const cmd = ['openssl', 's_time', '-connect', `127.0.0.1:${t.port}`, '-new', '-www', '/', '-cert', pki.client.certPath, '-key', pki.client.keyPath, '-CAfile', pki.ca.certPath, '-time', String(seconds)];
  const c0 = cpuTicks(t.pids);
  const u0 = cpuTicks(upPids);
  const w0 = performance.now();
  const r = await runProcess(pinned(CPU_CLIENT, cmd));
  const wall = (performance.now() - w0) / 1000;
  const c1 = cpuTicks(t.pids);
  const u1 = cpuTicks(upPids);
  // "1234 connections in 2.34s; 527.35 connections/user sec, bytes read 567890" then
  // "1234 connections in 9 real seconds, 460 bytes read per connection"
  const m = /(\d+) connections in (\d+) real seconds, (\d+) bytes read per connection/.exec(r.stdout);
  if (!m) throw new Error(`openssl s_time on ${t.name} printed no result (exit ${r.code}):\n${r.stdout.slice(-1000)}\n${r.stderr.slice(-1000)}`);
  const n = Number(m[1]);
  const bytesPerConn = Number(m[3]);
  return {
    round,
    target: t.name,
    load: 's_time',
    count: n,
    // s_time loops until -time seconds have passed; the process's own start-up (reading keys) is outside that.
    seconds: Math.min(wall, seconds),
    rate: n / Math.min(wall, seconds),
    cpuUsPer: n ? (1e6 * (c1 - c0)) / CLK_TCK / n : null,
    upstreamCpuUsPer: n ? (1e6 * (u1 - u0)) / CLK_TCK / n : null,
    errors: bytesPerConn < BODY.length ? 1 : 0,
    detail: { wall, bytesPerConn, exit: r.code, userLine: /connections\/user sec.*/.exec(r.stdout)?.[0] },
  };
}

// ---------------------------------------------------------------- aggregation and report

const median = (xs: number[]): number => {
  const s = [...xs].sort((x, y) => x - y);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};
const spreadPct = (xs: number[]): number => (xs.length < 2 ? 0 : (100 * (Math.max(...xs) - Math.min(...xs))) / Math.abs(median(xs)));
const f0 = (x: number): string => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '—');
const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : '—');
const f2 = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : '—');

interface Agg {
  rate: number;
  ratePct: number;
  us: number;
  usPct: number;
  upUs: number;
  errors: number;
  n: number;
  clientPct: number;
  serverPct: number;
}
function agg(cells: Cell[], target: string, load: Cell['load']): Agg | undefined {
  const cs = cells.filter((c) => c.target === target && c.load === load);
  if (cs.length === 0) return undefined;
  const us = cs.map((c) => c.cpuUsPer ?? NaN);
  return {
    rate: median(cs.map((c) => c.rate)),
    ratePct: spreadPct(cs.map((c) => c.rate)),
    us: median(us),
    usPct: spreadPct(us),
    upUs: median(cs.map((c) => c.upstreamCpuUsPer ?? NaN)),
    errors: cs.reduce((s, c) => s + c.errors, 0),
    n: cs.length,
    clientPct: median(cs.map((c) => c.clientCpuPct ?? NaN)),
    serverPct: median(cs.map((c) => c.serverCoreBusyPct ?? NaN)),
  };
}
/** mTLS − plain CPU µs, per round (so drift between rounds cancels), then the median and spread. */
function added(cells: Cell[], tlsName: string, plainName: string, load: Cell['load']): { us: number; pct: number; perRound: number[] } {
  const perRound: number[] = [];
  for (let r = 1; r <= ROUNDS; r++) {
    const a = cells.find((c) => c.round === r && c.target === tlsName && c.load === load)?.cpuUsPer;
    const b = cells.find((c) => c.round === r && c.target === plainName && c.load === load)?.cpuUsPer;
    if (a != null && b != null) perRound.push(a - b);
  }
  return { us: median(perRound), pct: perRound.length > 1 ? spreadPct(perRound) : 0, perRound };
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  if (PIN) execFileSync('taskset', ['-cp', CPU_CLIENT, String(process.pid)], { stdio: 'ignore' });
  ensureNginx();
  const dir = mkdtempSync(join(tmpdir(), 'sloop-mtls-bench-'));
  log(`run folder ${dir}`);
  const pki = await makeTestPki(join(dir, 'pki'));
  const [upPort, pSloopPlain, pSloopMtls, pNginxPlain, pNginxMtls] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);

  const upstream = startNginx(
    dir,
    'upstream',
    CPU_SERVER,
    `  server {
    listen 127.0.0.1:${upPort} backlog=4096;
    location / { default_type text/plain; return 200 "${BODY.replace('\n', '\\n')}"; }
  }`,
  );
  const nginxPlain = startNginx(dir, 'nginx-plain', CPU_SERVER, nginxProxyServer(pNginxPlain, upPort));
  const nginxMtls = startNginx(dir, 'nginx-mtls', CPU_SERVER, nginxProxyServer(pNginxMtls, upPort, pki));
  const sloops: ProxyHandle[] = [];
  const cleanup = async (): Promise<void> => {
    stopping = true;
    await Promise.all([...sloops.map((s) => s.stop()), stopChild(nginxPlain), stopChild(nginxMtls), stopChild(upstream)]);
    if (!args.keep) rmSync(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    await waitReady('upstream', upPort);
    sloops.push(await startSloop(pSloopPlain, upPort), await startSloop(pSloopMtls, upPort, pki));
    const targets: Target[] = [
      { name: 'sloop-plain', port: pSloopPlain, tls: false, pids: processTree(sloops[0].process.pid!) },
      { name: 'sloop-mtls', port: pSloopMtls, tls: true, pids: processTree(sloops[1].process.pid!) },
      { name: 'nginx-plain', port: pNginxPlain, tls: false, pids: [] },
      { name: 'nginx-mtls', port: pNginxMtls, tls: true, pids: [] },
    ];
    for (const t of targets) await waitReady(t.name, t.port, t.tls ? pki : undefined);
    targets[2].pids = processTree(nginxPlain.pid!);
    targets[3].pids = processTree(nginxMtls.pid!);
    const upPids = processTree(upstream.pid!);
    // The mTLS targets must refuse a TLS client that sends no certificate.
    const negotiated: Record<string, Record<string, string>> = {};
    for (const t of targets.filter((x) => x.tls)) {
      negotiated[t.name] = tlsParams(t.port, pki);
      log(`${t.name}: ${JSON.stringify(negotiated[t.name])}`);
      const noCert = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${t.port}`, '-CAfile', pki.ca.certPath], {
        input: 'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
        encoding: 'utf8',
        timeout: 5000,
      });
      const refused = !/HTTP\/1\.[01] 200/.test(noCert.stdout);
      log(`${t.name}: a client without a certificate is ${refused ? 'refused' : 'SERVED (mTLS not enforced!)'}`);
      negotiated[t.name].refusesNoClientCert = String(refused);
    }

    const withSTime = !args['no-s-time'];
    log(`warm-up ${WARMUP}s per target and load`);
    for (const t of targets) {
      if (WARMUP > 0) {
        await loadCell(t, 'keepalive', WARMUP, pki, upPids, 0);
        await loadCell(t, 'new', WARMUP, pki, upPids, 0);
      }
    }
    const cells: Cell[] = [];
    for (let r = 1; r <= ROUNDS; r++) {
      const order = targets.map((_, i) => targets[(i + r - 1) % targets.length]);
      for (const load of ['keepalive', 'new', 's_time'] as const) {
        for (const t of order) {
          if (load === 's_time' && (!withSTime || !t.tls)) continue;
          const c = load === 's_time' ? await sTimeCell(t, SECONDS, pki, upPids, r) : await loadCell(t, load, SECONDS, pki, upPids, r);
          cells.push(c);
          const busy = c.clientCpuPct !== undefined ? `  client ${f0(c.clientCpuPct)} %, server core ${f0(c.serverCoreBusyPct ?? NaN)} %` : '';
          log(`round ${r} ${load.padEnd(9)} ${t.name.padEnd(11)} ${f0(c.rate).padStart(7)}/s  ${f1(c.cpuUsPer ?? NaN).padStart(6)} µs  errors ${c.errors}${busy}`);
          await sleep(200);
        }
      }
    }

    // ---------------- report
    const env = {
      date: new Date().toISOString(),
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
      node: process.version,
      nodeOpenssl: process.versions.openssl,
      nginx: spawnSync('nginx', ['-v'], { encoding: 'utf8' }).stderr.trim(),
      openssl: spawnSync('openssl', ['version'], { encoding: 'utf8' }).stdout.trim(),
      loadavgAtEnd: readFileSync('/proc/loadavg', 'utf8').trim(),
    };
    const A = (t: string, l: Cell['load']): Agg | undefined => agg(cells, t, l);
    const L: string[] = [];
    L.push(`# mTLS bench — ${env.date}`, '');
    L.push(`- Host: ${env.cpus} × ${env.cpuModel}, Linux ${env.kernel}, Node ${env.node} (OpenSSL ${env.nodeOpenssl}), ${env.nginx.replace('nginx version: ', '')} (system ${env.openssl.replace(/ \(Library.*$/, '')}); load average at the end ${env.loadavgAtEnd}`);
    L.push(`- Pinning: ${PIN ? `load generator + orchestrator on CPU ${CPU_CLIENT}; targets and upstream on CPU ${CPU_SERVER}` : 'none'}`);
    L.push(`- ${ROUNDS} round(s) × ${SECONDS}s per cell, targets interleaved (order rotated per round), ${WARMUP}s warm-up per target and load; ${CONNS} connections (keep-alive) / ${CONNS} loops (new connection per request)`);
    L.push(`- Upstream: nginx (1 worker), 200 with a ${BODY.length}-byte body; TLS: ${Object.entries(negotiated).map(([k, v]) => `${k} ${v['Protocol version']} ${v.Ciphersuite} ${v['Negotiated TLS1.3 group'] ?? v['Server Temp Key'] ?? ''}, client without a certificate refused: ${v.refusesNoClientCert}`).join('; ')}; ECDSA P-256 certificates (the SPIFFE test PKI of test/helpers/certs.ts)`);
    L.push('');
    const kaAdd = { sloop: added(cells, 'sloop-mtls', 'sloop-plain', 'keepalive'), nginx: added(cells, 'nginx-mtls', 'nginx-plain', 'keepalive') };
    const newAdd = { sloop: added(cells, 'sloop-mtls', 'sloop-plain', 'new'), nginx: added(cells, 'nginx-mtls', 'nginx-plain', 'new') };
    L.push('| target | rps (keep-alive) | ±% | CPU µs/req | added by mTLS µs/req | handshakes/s | ±% | CPU µs/handshake | handshakes/s per core | CPU % client/server core | errors |');
    L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const t of targets) {
      const ka = A(t.name, 'keepalive');
      const nw = A(t.name, 'new');
      const add = t.name === 'sloop-mtls' ? kaAdd.sloop : t.name === 'nginx-mtls' ? kaAdd.nginx : undefined;
      const hs = t.tls ? nw : undefined;
      L.push(
        `| ${t.name} | ${f0(ka?.rate ?? NaN)} | ${f1(ka?.ratePct ?? NaN)} | ${f1(ka?.us ?? NaN)} | ${add ? `${f1(add.us)} (±${f0(add.pct)} %)` : '—'} | ` +
          `${hs ? f0(hs.rate) : '—'} | ${hs ? f1(hs.ratePct) : '—'} | ${hs ? f1(hs.us) : '—'} | ${hs ? f0(1e6 / hs.us) : '—'} | ${f0(ka?.clientPct ?? NaN)}/${f0(ka?.serverPct ?? NaN)}${hs ? ` (hs ${f0(hs.clientPct)}/${f0(hs.serverPct)})` : ''} | ${(ka?.errors ?? 0) + (hs?.errors ?? 0)} |`,
      );
    }
    L.push('');
    L.push('Handshakes: a new connection per request (full mTLS handshake, no resumption, + one proxied request), ' + `${CONNS} loops. CPU µs/handshake is that whole connection's cost.`);
    L.push('');
    L.push('New connection per request, all targets (plain rows: TCP connect + one request; "added by mTLS" = the mTLS handshake alone):');
    L.push('');
    L.push('| target | conns/s | ±% | CPU µs/conn | added by mTLS µs/conn | mTLS handshakes/s per core (handshake alone) | CPU % client/server core | errors |');
    L.push('|---|---:|---:|---:|---:|---:|---:|---:|');
    for (const t of targets) {
      const nw = A(t.name, 'new');
      const add = t.name === 'sloop-mtls' ? newAdd.sloop : t.name === 'nginx-mtls' ? newAdd.nginx : undefined;
      L.push(`| ${t.name} | ${f0(nw?.rate ?? NaN)} | ${f1(nw?.ratePct ?? NaN)} | ${f1(nw?.us ?? NaN)} | ${add ? `${f1(add.us)} (±${f0(add.pct)} %)` : '—'} | ${add ? f0(1e6 / add.us) : '—'} | ${f0(nw?.clientPct ?? NaN)}/${f0(nw?.serverPct ?? NaN)} | ${nw?.errors ?? 0} |`);
    }
    if (withSTime) {
      L.push('');
      L.push('`openssl s_time -new -www /` with the client certificate (one connection at a time; an outside TLS client):');
      L.push('');
      L.push('| target | handshakes/s | ±% | CPU µs/handshake | handshakes/s per core | errors |');
      L.push('|---|---:|---:|---:|---:|---:|');
      for (const t of targets.filter((x) => x.tls)) {
        const s = A(t.name, 's_time');
        L.push(`| ${t.name} | ${f0(s?.rate ?? NaN)} | ${f1(s?.ratePct ?? NaN)} | ${f1(s?.us ?? NaN)} | ${f0(1e6 / (s?.us ?? NaN))} | ${s?.errors ?? 0} |`);
      }
    }
    const hsS = A('sloop-mtls', 'new');
    const hsN = A('nginx-mtls', 'new');
    const stS = A('sloop-mtls', 's_time');
    const stN = A('nginx-mtls', 's_time');
    const ratios = {
      mtlsAddedCpuPerRequest: kaAdd.sloop.us / kaAdd.nginx.us,
      handshakesPerCore: hsS && hsN ? hsN.us / hsS.us : NaN,
      handshakeAloneCpu: newAdd.sloop.us / newAdd.nginx.us,
      handshakesPerCoreSTime: stS && stN ? stN.us / stS.us : NaN,
    };
    L.push('');
    L.push(`**sloop / nginx**: mTLS-added CPU per keep-alive request ${f2(ratios.mtlsAddedCpuPerRequest)}× ` + `(sloop +${f1(kaAdd.sloop.us)} µs, nginx +${f1(kaAdd.nginx.us)} µs); ` + `mTLS handshakes per second per core ${f2(ratios.handshakesPerCore)}× (new connection per request)` + (withSTime ? `, ${f2(ratios.handshakesPerCoreSTime)}× with s_time` : '') + `; CPU of the handshake alone ${f2(ratios.handshakeAloneCpu)}× nginx's.`);
    const report = L.join('\n');
    process.stdout.write(report + '\n');
    if (args.json) {
      writeFileSync(
        args.json,
        JSON.stringify({ config: { seconds: SECONDS, connections: CONNS, rounds: ROUNDS, warmup: WARMUP, pin: PIN, cpuClient: CPU_CLIENT, cpuServer: CPU_SERVER, bodyBytes: BODY.length }, environment: env, negotiated, ratios, added: { keepalive: kaAdd, newConnection: newAdd }, cells }, null, 2) + '\n',
      );
      log(`JSON written to ${args.json}`);
    }
  } finally {
    await cleanup();
  }
}

await main();
