/**
 * `sloop up`: one command to a working mesh on a laptop. Writes (or reuses) a folder of Istio YAML, starts
 * `sloop controlplane` on it, the demo apps (frontend → reviews v1/v2 → ratings over gRPC) and a `sloop proxy`
 * sidecar beside each, waits until a request goes through the whole chain, prints what to try, and stops
 * everything on Ctrl-C. docs/up.md describes what runs where.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { loadConfig } from '../control-plane/config/load.ts';
import { loadOriginalDstAddon } from '../data-plane/listener/original-dst.ts';
import { ensureMeshConfig, VIRTUAL_SERVICE_FILE } from '../mesh/mesh-config.ts';
import { portProblem } from '../mesh/ports.ts';
import { logTail, MeshRunner, type ChildInfo, type InterceptionMode, type MeshInfo } from '../mesh/runner.ts';

export interface UpCliOptions {
  dir: string;
  port: number;
  xdsAddress: string;
  /** `auto`: transparent when {@link transparentProblem} finds nothing missing, else explicit. */
  mode: InterceptionMode | 'auto';
  logLevel: string;
  drainTimeS: number;
  readyTimeoutS: number;
}

/** The package root (this file runs from src/cli/ or from the compiled dist/src/cli/). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

function splitHostPort(address: string): { host: string; port: number } | undefined {
  const m = /^(.+):(\d+)$/.exec(address);
  if (!m) return undefined;
  const port = Number(m[2]);
  return port > 0 && port < 65536 ? { host: m[1], port } : undefined;
}

/**
 * Why transparent mode cannot run here (undefined when it can): root, the original-destination addon, and the
 * tools it runs (iproute2, iptables, util-linux setpriv).
 */
export function transparentProblem(): string | undefined {
  if (process.getuid?.() !== 0) return 'not running as root (network namespaces and iptables need it)';
  try {
    loadOriginalDstAddon();
  } catch (err) {
    return (err as Error).message;
  }
  for (const [tool, pkg] of [['ip', 'iproute2'], ['iptables', 'iptables'], ['iptables-restore', 'iptables'], ['setpriv', 'util-linux']] as const) {
    try {
      execFileSync(tool, ['--version'], { stdio: 'ignore', timeout: 5000 });
    } catch (err) {
      // `ip --version` exits 0; a missing tool is ENOENT. Anything else means it is there.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return `\`${tool}\` is not installed (package ${pkg})`;
    }
  }
  return undefined;
}

function processTable(children: readonly ChildInfo[]): string {
  const rows = children.map((c) => {
    const where =
      c.ip !== undefined
        ? c.role === 'sidecar'
          ? `netns ${c.netns}, ${c.ip} :15001 :15006, admin http://${c.ip}:${c.adminPort}/`
          : `netns ${c.netns}, ${c.ip} app :${c.appPort}`
        : c.role === 'sidecar'
        ? [c.inboundPort !== undefined ? `inbound :${c.inboundPort}` : '', `HTTP proxy :${c.outboundPort}`, `admin http://127.0.0.1:${c.adminPort}/`].filter(Boolean).join(', ')
        : c.role === 'app'
          ? `app :${c.appPort}`
          : 'xDS (ADS)';
    return `  ${c.name.padEnd(20)} pid ${String(c.pid).padEnd(8)} ${where}`;
  });
  return rows.join('\n');
}

function banner(info: MeshInfo, configDir: string, runDir: string, created: boolean, mode: InterceptionMode): string {
  const vs = join(configDir, VIRTUAL_SERVICE_FILE);
  const entry = info.entryUrl;
  const admins = info.children.filter((c) => c.role === 'sidecar');
  const adminUrl = (name: string): string => {
    const c = admins.find((a) => a.name === name);
    return `http://${c?.ip ?? '127.0.0.1'}:${c?.adminPort}`;
  };
  const fetchHint = mode === 'transparent' ? "fetch(): redirected like http.get, routed per request" : 'the same call with fetch(): a CONNECT tunnel';
  return `
sloop up: mesh ready (${mode} mode) — ${entry}
Config ${created ? 'written to' : 'read from'} ${configDir} (watched by the control plane at ${info.xdsAddress})
First answer: ${info.sample}

Processes (logs in ${join(runDir, 'logs')}):
${processTable(info.children)}

Try:
  for i in $(seq 10); do curl -s ${entry}; done           # reviews v1 and v2, 50/50
  curl -s -H 'end-user: jason' ${entry}                   # a header match pins v2
  curl -s '${entry}?format=json'                          # the chain, with what each sidecar added
  curl -s '${entry}?client=fetch'                         # ${fetchHint}
  \${EDITOR:-vi} ${vs}
                                          # set the weights to 0 and 100, save: traffic shifts within a second
  curl -s ${adminUrl('frontend-sidecar')}/stats | grep -E 'outbound.*reviews.*upstream_rq_total'
  curl -s ${adminUrl('reviews-v1-sidecar')}/config_dump | head -40
  bin/sloop analyze ${configDir}

Ctrl-C stops everything (sidecars drain first).
`;
}

/** Runs until SIGINT/SIGTERM/SIGHUP or until a child dies; returns the exit code. */
export async function runUp(o: UpCliOptions): Promise<number> {
  const xds = splitHostPort(o.xdsAddress);
  if (xds === undefined) {
    process.stderr.write(`sloop up: --xds-address must be host:port, got ${JSON.stringify(o.xdsAddress)}\n`);
    return 2;
  }
  if (!Number.isInteger(o.port) || o.port <= 0 || o.port >= 65536) {
    process.stderr.write(`sloop up: --port must be a TCP port, got ${o.port}\n`);
    return 2;
  }
  for (const [what, host, port, flag] of [['the frontend entry', '127.0.0.1', o.port, '--port'], ['the control plane', xds.host, xds.port, '--xds-address']] as const) {
    const problem = await portProblem(host, port);
    if (problem !== undefined) {
      process.stderr.write(`sloop up: ${host}:${port} for ${what} is not available (${problem}); choose another with ${flag}\n`);
      return 1;
    }
  }
  let mode: InterceptionMode;
  if (o.mode === 'explicit') mode = 'explicit';
  else {
    const problem = transparentProblem();
    if (problem !== undefined && o.mode === 'transparent') {
      process.stderr.write(`sloop up: transparent mode is not possible here: ${problem}\n`);
      return 1;
    }
    mode = problem === undefined ? 'transparent' : 'explicit';
    if (o.mode === 'auto') process.stdout.write(`sloop up: --mode auto chose ${mode}${problem === undefined ? '' : ` (${problem})`}\n`);
  }
  const configDir = resolve(o.dir);
  const { created } = ensureMeshConfig(configDir);
  process.stdout.write(`sloop up: ${created ? 'wrote the demo config to' : 'using the config in'} ${configDir}\n`);
  // Transparent mode: apps resolve service names through a per-namespace /etc/hosts, written once at start from
  // the Kubernetes Services in the folder (a Service added later needs a restart to get a name there).
  const services = mode === 'transparent' ? loadConfig([configDir]).model.services.map((s) => ({ name: s.name, namespace: s.namespace })) : [];
  const runDir = mkdtempSync(join(tmpdir(), 'sloop-up-'));
  const root = packageRoot();

  let onEnd: (why: string) => void = () => {};
  const ended = new Promise<string>((r) => (onEnd = r));
  const runner = new MeshRunner({
    mode,
    services,
    meshId: process.pid,
    configDir,
    runDir,
    entryPort: o.port,
    xdsHost: xds.host,
    xdsPort: xds.port,
    sloopBin: join(root, 'bin', 'sloop'),
    nodeBin: process.execPath,
    baseEnv: process.env,
    logLevel: o.logLevel,
    drainTimeS: o.drainTimeS,
    readyTimeoutMs: o.readyTimeoutS * 1000,
    progress: (line) => process.stdout.write(`sloop up: ${line}\n`),
    onUnexpectedExit: (child, exit) => {
      process.stderr.write(`sloop up: ${child.name} (pid ${child.pid}) exited unexpectedly with ${exit.signal ?? `code ${exit.code}`}; shutting the mesh down\n--- ${child.logPath} (last lines) ---\n${logTail(child.logPath)}\n`);
      onEnd('failure');
    },
  });
  const onSignal = (sig: string): void => onEnd(sig);
  process.once('SIGINT', () => onSignal('SIGINT'));
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGHUP', () => onSignal('SIGHUP'));

  let info: MeshInfo;
  try {
    info = await Promise.race([runner.start(), ended.then((why) => Promise.reject(new Error(`interrupted (${why}) while starting`)))]);
  } catch (err) {
    const result = await runner.stop();
    process.stderr.write(`sloop up: ${(err as Error).message}\nsloop up: stopped ${result.exits.length} processes; logs kept in ${join(runDir, 'logs')}\n`);
    return 1;
  }
  process.stdout.write(banner(info, configDir, runDir, created, mode));

  const why = await ended;
  process.stdout.write(`sloop up: ${why === 'failure' ? 'a process died' : `${why} received`}, stopping\n`);
  const result = await runner.stop();
  for (const e of result.exits) {
    if (e.killed || e.exit.code !== 0) process.stderr.write(`sloop up: ${e.child.name} (pid ${e.child.pid}) ended with ${e.killed ? 'SIGKILL after its grace period' : (e.exit.signal ?? `code ${e.exit.code}`)}\n`);
  }
  if (why !== 'failure' && result.clean) {
    rmSync(runDir, { recursive: true, force: true });
    process.stdout.write(`sloop up: stopped ${result.exits.length} processes cleanly\n`);
    return 0;
  }
  process.stdout.write(`sloop up: stopped; logs kept in ${join(runDir, 'logs')}\n`);
  return 1;
}
