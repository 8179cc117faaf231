/**
 * `sloop demo`: the data plane on its own, before the control plane exists. Starts the demo apps on
 * 127.0.0.1:18081-18084, runs `sloop proxy -c examples/demo/bootstrap.yaml` as a child process (the
 * proxy is its own process, as a sidecar is), waits until it is ready and prints what to try.
 * Ctrl-C drains the proxy and stops everything.
 */
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEchoApp, startHelloApp, startTcpEchoApp, type DemoApp } from '../mesh/demo-apps.ts';

const HOST = '127.0.0.1';

/** The package root (this file runs from src/cli/ or from the compiled dist/src/cli/). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}
const ROOT = packageRoot();
const BOOTSTRAP = join(ROOT, 'examples/demo/bootstrap.yaml');
const SLOOP_BIN = join(ROOT, 'bin/sloop');

function adminReady(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ host: HOST, port, path: '/ready', timeout: 500 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

const TRY = `
Sloop demo is running: sloop proxy (pid %PID%) in front of hello v1/v2, echo and a TCP echo.
Config: %BOOTSTRAP%

Try:
  curl -s localhost:10000/hello                      # 80% v1, 20% v2 (weighted_clusters)
  for i in $(seq 20); do curl -s localhost:10000/hello; done | grep -o '"v[12]"' | sort | uniq -c
  curl -s -H 'x-version: v2' localhost:10000/hello    # header match pins v2
  curl -s localhost:10000/echo                       # what the app received: x-request-id, x-forwarded-proto, …
  curl -s --http2-prior-knowledge localhost:10000/echo   # the same port speaks h2c
  curl -si localhost:10000/old-page                  # redirect;  curl -si localhost:10000/nope → 404
  echo hello | curl -s --max-time 1 telnet://localhost:10001   # TCP proxy to the echo app
  curl -s localhost:9901/stats | grep -E 'downstream_rq_2xx|upstream_rq_total'
  curl -s localhost:9901/clusters | head;  curl -s localhost:9901/stats/prometheus | head

Ctrl-C stops it (the proxy drains first).
`;

/** Runs until SIGINT/SIGTERM; returns the exit code. */
export async function runDemo(o: { drainTimeS: number; logLevel: string }): Promise<number> {
  const apps: DemoApp[] = [];
  try {
    apps.push(await startHelloApp('v1', HOST, 18081), await startHelloApp('v2', HOST, 18082), await startEchoApp(HOST, 18083), await startTcpEchoApp(HOST, 18084));
  } catch (err) {
    process.stderr.write(`sloop demo: cannot start the demo apps on ${HOST}:18081-18084: ${(err as Error).message}\n`);
    await Promise.all(apps.map((a) => a.close()));
    return 1;
  }
  const proxy = spawn(SLOOP_BIN, ['proxy', '-c', BOOTSTRAP, '--log-level', o.logLevel, '--drain-time-s', String(o.drainTimeS)], { stdio: ['ignore', 'inherit', 'inherit'] });
  const exited = new Promise<number>((resolve) => proxy.once('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0))));
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    proxy.kill('SIGTERM');
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  let ready = false;
  for (let i = 0; i < 100 && !ready && proxy.exitCode === null; i++) {
    ready = await adminReady(9901);
    if (!ready) await new Promise((r) => setTimeout(r, 100));
  }
  if (ready) process.stdout.write(TRY.replace('%PID%', String(proxy.pid)).replace('%BOOTSTRAP%', BOOTSTRAP));
  else if (proxy.exitCode === null) {
    process.stderr.write('sloop demo: the proxy did not become ready in 10 s\n');
    stop();
  }
  const code = await exited;
  await Promise.all(apps.map((a) => a.close()));
  return stopping ? 0 : code || 1;
}
