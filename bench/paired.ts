// Paired A/B of two proxies under the same load at the same time, for changes smaller than the host's drift.
//
// proxy-bench (../shared/bench/proxy-bench) measures targets one after the other, and this host's speed drifts by
// 15–40 % between cells, so it cannot resolve a few per cent. Here both proxies run at once on the proxy CPU, each
// with its own wrk on the client CPU, in front of one nginx upstream: whatever the host does, it does to both.
// Each round prints proxy CPU µs per request (utime + stime of the process tree / requests) for A and B and B/A.
// An A/A pair (the same build twice) agreed within ±1 % in a quiet minute, within ±5 % on a noisy host: run one.
//
//   node bench/paired.ts --a sloop=/tmp/base --b sloop=. --conns 64 --rounds 5 --seconds 6
//   node bench/paired.ts --a nginx --b sloop=.          # nginx as A: B/A is "× nginx" under identical load
//
// A target is `nginx` (the harness's nginx proxy config: 1 worker, upstream keepalive 256), `sloop=<repo dir>`
// (that checkout's bench/proxy-candidate; build it first; --a-flags/--b-flags set its SLOOP_NODE_FLAGS) or
// `cmd=<file>` (any executable that follows proxy-bench's candidate contract). `--h2c` loads both with h2load -c16 -m10 instead of wrk.
// Needs wrk, nginx, h2load and taskset; CPUs with --cpu-client (0) and --cpu-proxy (1).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { cpuTicks, nginxConfig, processTree } from './procs.ts';
import { freePort } from '../test/helpers/ports.ts';

const { values: opt } = parseArgs({
  options: {
    a: { type: 'string', default: 'nginx' },
    b: { type: 'string', default: 'sloop=.' },
    conns: { type: 'string', default: '64' },
    rounds: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '6' },
    warmup: { type: 'string', default: '3' },
    h2c: { type: 'boolean', default: false },
    'a-flags': { type: 'string', default: '' },
    'b-flags': { type: 'string', default: '' },
    'cpu-client': { type: 'string', default: '0' },
    'cpu-proxy': { type: 'string', default: '1' },
  },
});

const TICK_US = 1e6 / Number(spawnSync('getconf', ['CLK_TCK']).stdout.toString().trim() || 100);
const BODY = 'x'.repeat(99) + '\n';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sloop-paired-'));
const procs: ChildProcess[] = [];

function start(name: string, cmd: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  const out = fs.openSync(path.join(dir, `${name}.log`), 'a');
  const p = spawn('taskset', ['-c', opt['cpu-proxy']!, cmd, ...args], {
    stdio: ['ignore', out, out], env: { ...process.env, ...env }, detached: true,
  });
  procs.push(p);
  return p;
}

function nginxConf(name: string, body: string): string {
  const d = path.join(dir, name);
  fs.mkdirSync(d, { recursive: true });
  fs.writeFileSync(path.join(d, 'nginx.conf'), nginxConfig(d, `  ${body}`));
  return d;
}

async function waitReady(port: number): Promise<void> {
  for (let i = 0; i < 300; i++) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/`);
      if (r.status === 200 && (await r.text()) === BODY) return;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing ready on :${port}`);
}

const treeTicks = (root: number): number => cpuTicks(processTree(root));

function load(port: number, h2cPort: number, seconds: number): Promise<number> {
  const args = opt.h2c
    ? ['-c', opt['cpu-client']!, 'h2load', '-c16', '-m10', '-D', String(seconds), `http://127.0.0.1:${h2cPort}/`]
    : ['-c', opt['cpu-client']!, 'wrk', '-t1', `-c${opt.conns}`, `-d${seconds}s`, `http://127.0.0.1:${port}/`];
  return new Promise((resolve, reject) => {
    const p = spawn('taskset', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.on('close', () => {
      const m = opt.h2c ? out.match(/requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded/) : out.match(/(\d+) requests in/);
      if (!m) reject(new Error(`no request count in:\n${out}`));
      else resolve(Number(opt.h2c ? m[2] : m[1]));
    });
  });
}

interface Target { label: string; pid: number; port: number; h2cPort: number }

async function startTarget(label: string, spec: string, upstream: number, upstreamH2: number, nodeFlags: string): Promise<Target> {
  const port = await freePort();
  const h2cPort = await freePort();
  let p: ChildProcess;
  if (spec === 'nginx') {
    const d = nginxConf(label, `upstream app { server 127.0.0.1:${upstream}; keepalive 256; keepalive_requests 10000000; keepalive_timeout 75s; }
  upstream app2 { server 127.0.0.1:${upstreamH2}; keepalive 256; }
  server {
    listen 127.0.0.1:${port} backlog=4096;
    listen 127.0.0.1:${h2cPort} http2 backlog=4096;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }`);
    p = start(label, 'nginx', ['-p', d, '-c', path.join(d, 'nginx.conf'), '-e', path.join(d, 'stderr.log'), '-g', 'daemon off;']);
  } else if (spec.startsWith('sloop=')) {
    const repo = path.resolve(spec.slice('sloop='.length));
    p = start(label, path.join(repo, 'bench/proxy-candidate'), [], {
      CANDIDATE_PORT: String(port), CANDIDATE_H2C_PORT: String(h2cPort), UPSTREAM_PORT: String(upstream), PROXY_BENCH: '1',
      ...(nodeFlags !== '' ? { SLOOP_NODE_FLAGS: nodeFlags } : {}),
    });
  } else if (spec.startsWith('cmd=')) {
    p = start(label, path.resolve(spec.slice('cmd='.length)), [], {
      CANDIDATE_PORT: String(port), CANDIDATE_H2C_PORT: String(h2cPort), UPSTREAM_PORT: String(upstream), PROXY_BENCH: '1',
    });
  } else {
    throw new Error(`unknown target ${spec} (nginx, sloop=<dir> or cmd=<candidate>)`);
  }
  await waitReady(port);
  return { label: `${label} (${spec})`, pid: p.pid!, port, h2cPort };
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

try {
  const up = await freePort();
  const upH2 = await freePort();
  const d = nginxConf('upstream', `server {
    listen 127.0.0.1:${up} backlog=4096;
    listen 127.0.0.1:${upH2} http2 backlog=4096;
    location / { default_type text/plain; return 200 "${BODY.replace('\n', '\\n')}"; }
  }`);
  start('upstream', 'nginx', ['-p', d, '-c', path.join(d, 'nginx.conf'), '-e', path.join(d, 'stderr.log'), '-g', 'daemon off;']);
  await waitReady(up);
  const a = await startTarget('A', opt.a!, up, upH2, opt['a-flags']!);
  const b = await startTarget('B', opt.b!, up, upH2, opt['b-flags']!);
  const what = opt.h2c ? 'h2c c=16 m=10' : `h1 c=${opt.conns}`;
  console.log(`paired ${what}: A = ${a.label}, B = ${b.label}; ${opt.rounds} rounds of ${opt.seconds} s`);
  await Promise.all([load(a.port, a.h2cPort, Number(opt.warmup)), load(b.port, b.h2cPort, Number(opt.warmup))]);
  const ratios: number[] = [];
  const cpuA: number[] = [];
  const cpuB: number[] = [];
  for (let r = 0; r < Number(opt.rounds); r++) {
    const t0 = [treeTicks(a.pid), treeTicks(b.pid)];
    const [na, nb] = await Promise.all([load(a.port, a.h2cPort, Number(opt.seconds)), load(b.port, b.h2cPort, Number(opt.seconds))]);
    const t1 = [treeTicks(a.pid), treeTicks(b.pid)];
    const ua = ((t1[0]! - t0[0]!) * TICK_US) / na;
    const ub = ((t1[1]! - t0[1]!) * TICK_US) / nb;
    cpuA.push(ua);
    cpuB.push(ub);
    ratios.push(ub / ua);
    console.log(`round ${r + 1}: A ${ua.toFixed(1)} µs/req (${na} req)  B ${ub.toFixed(1)} µs/req (${nb} req)  B/A ${(ub / ua).toFixed(3)}`);
  }
  const hwm = (pid: number) => {
    try {
      return (Number(/VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024).toFixed(1);
    } catch {
      return '?';
    }
  };
  console.log(`peak RSS (VmHWM of the first process): A ${hwm(a.pid)} MiB, B ${hwm(b.pid)} MiB`);
  console.log(`median: A ${median(cpuA).toFixed(1)}  B ${median(cpuB).toFixed(1)} µs/req  B/A ${median(ratios).toFixed(3)} (range ${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)})`);
} finally {
  for (const p of procs) {
    try { process.kill(-p.pid!, 'SIGTERM'); } catch { /* gone */ }
  }
}
