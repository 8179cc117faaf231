/**
 * The mesh runner behind `sloop up`: a control plane, the demo apps and a `sloop proxy` sidecar beside each, all
 * child processes on 127.0.0.1, supervised until `stop()`.
 *
 * Explicit mode (no root): nothing is redirected. Each app gets its sidecar's outbound port as HTTP_PROXY
 * (Node 24 honours it with NODE_USE_ENV_PROXY=1; @grpc/grpc-js with grpc_proxy), and peers reach each app through
 * its sidecar's inbound port, which the sidecar reports as SLOOP_ENDPOINT_PORTS. Transparent mode (root): each
 * workload in a network namespace of its own with Istio's iptables interception (./transparent/mesh-network.ts),
 * apps on their real ports, sidecars as uid 1337 with INTERCEPTION_MODE REDIRECT; the entry and the control plane
 * are joined to the namespaces by port-forwards. Only placement and the bootstrap differ (`WorkloadPlan`).
 *
 * Every child is its own process group (`detached`), so a terminal's Ctrl-C reaches only `sloop up`, which stops
 * the children in order: sidecars drain first, then the apps, then the control plane.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify as stringifyYaml } from 'yaml';
import { freePorts } from './ports.ts';
import { TokenStore } from '../control-plane/ca/tokens.ts';
import { buildSidecarBootstrap, type SidecarSpec } from './sidecar-bootstrap.ts';
import { createMeshNetwork, deleteMeshNetwork, deleteStaleMeshNetworks, buildHostsFile, TRANSPARENT_ADMIN_PORT, type MeshNetwork, type MeshServiceName } from './transparent/mesh-network.ts';
import { startPortForward, type PortForward } from './transparent/port-forward.ts';
import { workloadCommand, PROXY_UID } from './transparent/workload-netns.ts';

const HOST = '127.0.0.1';
const NAMESPACE = 'default';

/** How traffic reaches the sidecars: HTTP_PROXY (no root), or namespaces + iptables (root; see docs/up.md). */
export type InterceptionMode = 'explicit' | 'transparent';

/** Options for {@link MeshRunner}. The CLI fills them from flags and its own environment. */
export interface MeshRunnerOptions {
  mode: InterceptionMode;
  /** The Istio config folder the control plane watches. */
  configDir: string;
  /** Where bootstraps and per-process logs go (created). */
  runDir: string;
  /** The frontend's entry: its sidecar's inbound port on 127.0.0.1. */
  entryPort: number;
  /** The control plane's ADS address. */
  xdsHost: string;
  xdsPort: number;
  /** The `sloop` launcher (bin/sloop) the control plane and sidecars run from. */
  sloopBin: string;
  /** The Node.js binary the apps run on (Node 24: HTTP_PROXY support). */
  nodeBin: string;
  /** Environment the children start from (proxy variables are removed from it). */
  baseEnv: Readonly<Record<string, string | undefined>>;
  /** Log level of the control plane and sidecars (their logs go to files in `runDir`). */
  logLevel: string;
  /** Sidecars' `--drain-time-s`. */
  drainTimeS: number;
  /** Give up starting after this long. */
  readyTimeoutMs: number;
  /** Progress lines while starting and stopping. */
  progress(line: string): void;
  /** A child exited while the mesh was running (not during `stop()`). */
  onUnexpectedExit(child: ChildInfo, exit: ChildExit): void;
  /** Transparent mode: the services whose names go into every workload's /etc/hosts. */
  services?: readonly MeshServiceName[];
  /** Transparent mode: names this run's network namespaces (`sloop-<id>-…`); `sloop up` passes its pid. */
  meshId?: number;
}

/** How a child process ended. */
export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** One supervised process. */
export interface ChildInfo {
  name: string;
  role: 'controlplane' | 'sidecar' | 'app';
  pid: number;
  logPath: string;
  /** For a sidecar: its admin port, inbound port (if the app serves) and outbound (HTTP proxy) port. */
  adminPort?: number;
  inboundPort?: number;
  outboundPort?: number;
  /** For an app: the port it listens on. */
  appPort?: number;
  /** Transparent mode: the workload's network namespace and IP (the admin port is bound on that IP). */
  netns?: string;
  ip?: string;
}

/** What is running once {@link MeshRunner.start} resolves. */
export interface MeshInfo {
  entryUrl: string;
  xdsAddress: string;
  children: readonly ChildInfo[];
  /** A sample answer from the entry, proving the whole call chain works. */
  sample: string;
}

/** One workload of the demo application: an app and the sidecar beside it. */
interface WorkloadPlan {
  name: string;
  labels: Record<string, string>;
  /** Program under src/mesh/apps/ and its flags (the port is added). */
  program: string;
  args: string[];
  portName: string;
  /** Transparent mode: the app's real port (each workload has its own IP, so reviews v1 and v2 both use 9080). */
  port: number;
  /** Its Kubernetes service account: the identity in its certificate, `spiffe://cluster.local/ns/default/sa/<sa>`. */
  serviceAccount: string;
}

const WORKLOADS: readonly WorkloadPlan[] = [
  { name: 'frontend', labels: { app: 'frontend', version: 'v1' }, program: 'frontend', args: [], portName: 'http', port: 8000, serviceAccount: 'frontend' },
  { name: 'reviews-v1', labels: { app: 'reviews', version: 'v1' }, program: 'reviews', args: ['--version', 'v1'], portName: 'http', port: 9080, serviceAccount: 'reviews' },
  { name: 'reviews-v2', labels: { app: 'reviews', version: 'v2' }, program: 'reviews', args: ['--version', 'v2'], portName: 'http', port: 9080, serviceAccount: 'reviews' },
  { name: 'ratings', labels: { app: 'ratings', version: 'v1' }, program: 'ratings', args: [], portName: 'grpc', port: 9090, serviceAccount: 'ratings' },
];

/**
 * Labels every workload carries besides its own: Istio's injector marks a pod whose sidecar holds mesh
 * certificates with `security.istio.io/tlsMode: istio`; auto mTLS and STRICT inbound key on it.
 */
const MESH_LABELS: Readonly<Record<string, string>> = { 'security.istio.io/tlsMode': 'istio' };

/** Environment variables that would send a child's traffic somewhere we did not choose. */
const PROXY_VARIABLES = /^(https?|grpc|all|no|no_grpc)_proxy$|^NODE_USE_ENV_PROXY$/i;

interface Running {
  info: ChildInfo;
  process: ChildProcess;
  exited: Promise<ChildExit>;
  exit?: ChildExit;
}

/** The app programs sit beside this file (src/mesh/apps/*.ts, or dist/src/mesh/apps/*.js when compiled). */
function appProgram(name: string): string {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return fileURLToPath(new URL(`./apps/${name}${ext}`, import.meta.url));
}

function tcpReachable(port: number, host = HOST): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.setTimeout(500);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

function httpGet(port: number, path: string, timeoutMs = 2000, host = HOST): Promise<{ status: number; body: string } | undefined> {
  return new Promise((resolve) => {
    const req = request({ host, port, path, timeout: timeoutMs, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', () => resolve(undefined));
    });
    req.on('error', () => resolve(undefined));
    req.on('timeout', () => req.destroy());
    req.end();
  });
}

/** The last `lines` lines of a log file, for error messages. */
export function logTail(path: string, lines = 15): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Starts and supervises one local mesh. Not reusable: one `start()`, one `stop()`. */
export class MeshRunner {
  readonly #o: MeshRunnerOptions;
  readonly #children: Running[] = [];
  #stopping = false;
  #startFailure: ((err: Error) => void) | undefined;
  /** Transparent mode: the namespaces (while they exist) and the port-forwards (entry, control plane). */
  #networkCreating: Promise<MeshNetwork> | undefined;
  #networkTeardown: Promise<void> | undefined;
  readonly #forwards: PortForward[] = [];

  constructor(o: MeshRunnerOptions) {
    this.#o = o;
  }

  /** Every child started so far (also after it exited). */
  get children(): readonly ChildInfo[] {
    return this.#children.map((c) => c.info);
  }

  /**
   * Starts the control plane, then every app and sidecar, and resolves once a request to the entry has gone
   * through frontend → reviews → ratings. Rejects (having stopped whatever it started) when a child exits or
   * the mesh is not ready within `readyTimeoutMs`.
   */
  async start(): Promise<MeshInfo> {
    const o = this.#o;
    const logDir = join(o.runDir, 'logs');
    mkdirSync(logDir, { recursive: true });
    const failed = new Promise<never>((_, reject) => (this.#startFailure = reject));
    failed.catch(() => {});
    const deadline = performance.now() + o.readyTimeoutMs;
    try {
      await Promise.race([failed, this.#startAll(logDir, deadline)]);
      const sample = await Promise.race([failed, this.#waitForChain(deadline)]);
      this.#startFailure = undefined;
      return { entryUrl: `http://localhost:${o.entryPort}/`, xdsAddress: `${o.xdsHost}:${o.xdsPort}`, children: this.children, sample };
    } catch (err) {
      this.#startFailure = undefined;
      await this.stop();
      throw err;
    }
  }

  async #startAll(logDir: string, deadline: number): Promise<void> {
    const o = this.#o;
    const env = Object.fromEntries(Object.entries(o.baseEnv).filter(([k, v]) => v !== undefined && !PROXY_VARIABLES.test(k))) as Record<string, string>;

    // The CA (docs/identity.md): its state in the run directory, a bootstrap token per workload minted before the
    // control plane starts, each readable only by its sidecar.
    const caDir = join(o.runDir, 'ca');
    const tokenDir = join(o.runDir, 'tokens');
    mkdirSync(tokenDir, { recursive: true, mode: 0o700 });
    const tokens = await TokenStore.open({ dir: caDir });
    for (const w of WORKLOADS) {
      const token = await tokens.mint({ namespace: NAMESPACE, serviceAccount: w.serviceAccount });
      writeFileSync(join(tokenDir, `${w.name}.token`), token + '\n', { mode: 0o600 });
    }
    o.progress(`starting the control plane on ${o.xdsHost}:${o.xdsPort} (config ${o.configDir}; CA and its workload tokens in ${caDir})`);
    const cp = this.#spawn({ name: 'controlplane', role: 'controlplane', logPath: join(logDir, 'controlplane.log') }, o.sloopBin, ['controlplane', '--config', o.configDir, '--xds-address', `${o.xdsHost}:${o.xdsPort}`, '--ca-dir', caDir, '-l', o.logLevel], env);
    await this.#poll(() => tcpReachable(o.xdsPort, o.xdsHost === '0.0.0.0' ? HOST : o.xdsHost), deadline, `the control plane to listen on ${o.xdsHost}:${o.xdsPort}`, cp.info);
    if (o.mode === 'transparent') return this.#startTransparent(logDir, env, deadline);

    // Per workload: app port, sidecar outbound and admin ports, and (except the frontend's, which is the entry) inbound.
    const ports = await freePorts(WORKLOADS.length * 4 - 1);
    const take = (): number => ports.shift()!;
    const bootDir = join(o.runDir, 'bootstrap');
    mkdirSync(bootDir, { recursive: true });
    const waits: Promise<void>[] = [];
    o.progress(`starting ${WORKLOADS.length} apps and their sidecars (explicit mode: HTTP_PROXY=their sidecar)`);
    for (const w of WORKLOADS) {
      const appPort = take();
      const spec: SidecarSpec = {
        name: w.name,
        namespace: NAMESPACE,
        labels: { ...w.labels, ...MESH_LABELS },
        serviceAccount: w.serviceAccount,
        appPort: { name: w.portName, port: appPort },
        inboundPort: w.name === 'frontend' ? o.entryPort : take(),
        outboundPort: take(),
        adminPort: take(),
        xdsHost: o.xdsHost,
        xdsPort: o.xdsPort,
      };
      const bootstrapPath = join(bootDir, `${w.name}.yaml`);
      writeFileSync(bootstrapPath, `# Generated by sloop up for ${w.name}; rewritten on every run.\n` + stringifyYaml(buildSidecarBootstrap(spec)));
      const sidecar = this.#spawn(
        { name: `${w.name}-sidecar`, role: 'sidecar', logPath: join(logDir, `${w.name}-sidecar.log`), adminPort: spec.adminPort, inboundPort: spec.inboundPort, outboundPort: spec.outboundPort },
        o.sloopBin,
        ['proxy', '-c', bootstrapPath, '--log-level', o.logLevel, '--drain-time-s', String(o.drainTimeS), ...this.#agentArgs(w, `${o.xdsHost === '0.0.0.0' ? HOST : o.xdsHost}:${o.xdsPort}`)],
        env,
      );
      const proxyUrl = `http://${HOST}:${spec.outboundPort}`;
      const appEnv: Record<string, string> = {
        ...env,
        // Node 24: http.get sends absolute-form requests to HTTP_PROXY, fetch tunnels with CONNECT.
        HTTP_PROXY: proxyUrl,
        NODE_USE_ENV_PROXY: '1',
        // @grpc/grpc-js reads grpc_proxy (then https_proxy, http_proxy) and tunnels with CONNECT.
        grpc_proxy: proxyUrl,
        // Loopback is not a service: grpc-js opens its CONNECT with node:http, which must not be proxied itself.
        NO_PROXY: `${HOST},localhost`,
      };
      const app = this.#spawn({ name: w.name, role: 'app', logPath: join(logDir, `${w.name}.log`), appPort }, o.nodeBin, ['--disable-warning=ExperimentalWarning', appProgram(w.program), '--port', String(appPort), ...w.args], appEnv);
      waits.push(this.#poll(() => tcpReachable(appPort), deadline, `${w.name} to listen on ${HOST}:${appPort}`, app.info));
      waits.push(this.#poll(async () => (await httpGet(spec.adminPort, '/ready'))?.status === 200, deadline, `${w.name}'s sidecar to be ready (admin ${HOST}:${spec.adminPort}/ready)`, sidecar.info));
    }
    await Promise.all(waits);
  }

  /**
   * Transparent mode: namespaces and interception first, then per workload the sidecar (uid 1337, REDIRECT) and
   * the app on its real port, both inside the workload's namespace; then the entry port-forward on the host.
   */
  async #startTransparent(logDir: string, env: Record<string, string>, deadline: number): Promise<void> {
    const o = this.#o;
    const removed = await deleteStaleMeshNetworks();
    if (removed.length > 0) o.progress(`removed network namespaces an earlier run left behind: ${removed.join(', ')}`);
    o.progress(`creating a network namespace per workload (veth pairs behind a node namespace, Istio's iptables rules)`);
    this.#networkCreating = createMeshNetwork({ id: o.meshId ?? process.pid, workloads: WORKLOADS.map((w) => w.name), hostsFile: buildHostsFile(o.services ?? [], NAMESPACE) });
    const net = await this.#networkCreating;
    if (this.#stopping) throw new Error('stopped while starting');
    // --xds-address keeps its meaning (the control plane on the host's loopback); the namespaces reach it through
    // a forward on the host's uplink address. A control plane on 0.0.0.0 is reachable there already.
    if (o.xdsHost !== '0.0.0.0') this.#forwards.push(await startPortForward(net.node.hostIp, o.xdsPort, o.xdsHost, o.xdsPort));
    // The sidecars run as uid 1337 and read their bootstraps from here.
    const bootDir = join(o.runDir, 'bootstrap');
    mkdirSync(bootDir, { recursive: true });
    for (const d of [o.runDir, bootDir]) chmodSync(d, 0o755);
    // Each sidecar (uid 1337) reads its own token; the files stay 0600.
    const tokenDir = join(o.runDir, 'tokens');
    chownSync(tokenDir, PROXY_UID, PROXY_UID);
    for (const w of WORKLOADS) chownSync(join(tokenDir, `${w.name}.token`), PROXY_UID, PROXY_UID);
    o.progress(`starting ${WORKLOADS.length} apps and their sidecars (transparent mode: iptables → sidecar :15001/:15006)`);
    const waits: Promise<void>[] = [];
    for (const w of WORKLOADS) {
      const ns = net.workloads.get(w.name)!;
      const spec: SidecarSpec = {
        name: w.name,
        namespace: NAMESPACE,
        labels: { ...w.labels, ...MESH_LABELS },
        serviceAccount: w.serviceAccount,
        appPort: { name: w.portName, port: w.port },
        adminPort: TRANSPARENT_ADMIN_PORT,
        adminHost: ns.workloadIp,
        instanceIp: ns.workloadIp,
        interceptionMode: 'REDIRECT',
        xdsHost: net.node.hostIp,
        xdsPort: o.xdsPort,
      };
      const bootstrapPath = join(bootDir, `${w.name}.yaml`);
      writeFileSync(bootstrapPath, `# Generated by sloop up for ${w.name}; rewritten on every run.\n` + stringifyYaml(buildSidecarBootstrap(spec)), { mode: 0o644 });
      const where = { netns: ns.name, ip: ns.workloadIp };
      const [ipCmd, ...sidecarArgs] = workloadCommand(ns.name, [o.sloopBin, 'proxy', '-c', bootstrapPath, '--log-level', o.logLevel, '--drain-time-s', String(o.drainTimeS), ...this.#agentArgs(w, `${net.node.hostIp}:${o.xdsPort}`)], { uid: PROXY_UID });
      const sidecar = this.#spawn({ name: `${w.name}-sidecar`, role: 'sidecar', logPath: join(logDir, `${w.name}-sidecar.log`), adminPort: spec.adminPort, ...where }, ipCmd, sidecarArgs, env);
      // No proxy settings: the app's connections are redirected to its sidecar by iptables.
      const [, ...appArgs] = workloadCommand(ns.name, [o.nodeBin, '--disable-warning=ExperimentalWarning', appProgram(w.program), '--port', String(w.port), ...w.args]);
      this.#spawn({ name: w.name, role: 'app', logPath: join(logDir, `${w.name}.log`), appPort: w.port, ...where }, ipCmd, appArgs, env);
      // The app's own readiness is not checked from here (its port is reachable only through the sidecar): the
      // end-to-end check after this covers it, and an app that dies is reported as in explicit mode.
      waits.push(this.#poll(async () => (await httpGet(spec.adminPort, '/ready', 2000, ns.workloadIp))?.status === 200, deadline, `${w.name}'s sidecar to be ready (admin ${ns.workloadIp}:${spec.adminPort}/ready)`, sidecar.info));
    }
    await Promise.all(waits);
    // The entry: the host's 127.0.0.1:<entryPort> → the frontend workload's IP and real port, which its namespace
    // redirects to the frontend sidecar's virtualInbound (as traffic from outside a pod reaches it).
    const frontend = WORKLOADS[0];
    const frontendNs = net.workloads.get(frontend.name)!;
    this.#forwards.push(await startPortForward(HOST, o.entryPort, frontendNs.workloadIp, frontend.port));
  }

  /** A sidecar's agent flags: the CA (the control plane's xDS port) and the workload's bootstrap token. */
  #agentArgs(w: WorkloadPlan, caAddress: string): string[] {
    return ['--ca-address', caAddress, '--token-file', join(this.#o.runDir, 'tokens', `${w.name}.token`)];
  }

  /** Deletes the namespaces (after the processes stopped). Memoized: stop() may run more than once. */
  #teardownNetwork(): Promise<void> {
    return (this.#networkTeardown ??= (async () => {
      const net = await this.#networkCreating?.catch(() => undefined); // a failed creation removed its own parts
      if (net === undefined) return;
      this.#o.progress('removing the network namespaces, veth pairs and iptables rules');
      await deleteMeshNetwork(net);
    })());
  }

  /** Waits until the entry answers with a rating that came all the way from ratings. */
  async #waitForChain(deadline: number): Promise<string> {
    this.#o.progress('waiting for frontend → reviews → ratings to answer through the sidecars');
    let sample = '';
    await this.#poll(
      async () => {
        const r = await httpGet(this.#o.entryPort, '/');
        if (r === undefined) return false;
        sample = r.body.trim();
        return r.status === 200 && /ratings: [★☆\d]/.test(sample);
      },
      deadline,
      `http://localhost:${this.#o.entryPort}/ to answer through the mesh (last answer: ${JSON.stringify(sample)})`,
    );
    return sample;
  }

  async #poll(check: () => Promise<boolean>, deadline: number, what: string, child?: ChildInfo): Promise<void> {
    for (;;) {
      if (this.#stopping) throw new Error('stopped while starting');
      if (await check()) return;
      if (performance.now() >= deadline) {
        const hint = child ? `\n--- ${child.logPath} (last lines) ---\n${logTail(child.logPath)}` : '';
        throw new Error(`timed out after ${Math.round(this.#o.readyTimeoutMs / 1000)} s waiting for ${what}${hint}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  #spawn(info: Omit<ChildInfo, 'pid'>, command: string, args: string[], env: Record<string, string>): Running {
    const fd = openSync(info.logPath, 'a');
    let proc: ChildProcess;
    try {
      // A file, not a pipe: a child's logging never blocks on (or dies with) this process's event loop.
      proc = spawn(command, args, { env, stdio: ['ignore', fd, fd], detached: true });
    } finally {
      closeSync(fd);
    }
    if (proc.pid === undefined) throw new Error(`cannot start ${info.name}: ${command} did not spawn`);
    const running: Running = { info: { ...info, pid: proc.pid }, process: proc, exited: undefined as unknown as Promise<ChildExit> };
    running.exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        running.exit = { code, signal };
        resolve(running.exit);
        if (this.#stopping) return;
        const why = `${info.name} (pid ${proc.pid}) exited with ${signal ?? `code ${code}`}\n--- ${info.logPath} (last lines) ---\n${logTail(info.logPath)}`;
        if (this.#startFailure) this.#startFailure(new Error(why));
        else this.#o.onUnexpectedExit(running.info, running.exit);
      });
    });
    proc.once('error', (err) => {
      if (!this.#stopping && this.#startFailure) this.#startFailure(new Error(`cannot start ${info.name}: ${err.message}`));
    });
    this.#children.push(running);
    return running;
  }

  /**
   * Stops everything: sidecars first (they drain, up to `drainTimeS`), then the apps, then the control plane;
   * a child that outlives its grace period is killed. Resolves with every child's exit; `clean` is true when
   * each one exited by itself with code 0. Safe to call more than once.
   */
  async stop(): Promise<{ clean: boolean; exits: Array<{ child: ChildInfo; exit: ChildExit; killed: boolean }> }> {
    this.#stopping = true;
    const exits: Array<{ child: ChildInfo; exit: ChildExit; killed: boolean }> = [];
    // No new traffic from the host while the sidecars drain.
    await Promise.all(this.#forwards.map((f) => f.close()));
    const graceMs = this.#o.drainTimeS * 1000 + 5000;
    for (const role of ['sidecar', 'app', 'controlplane'] as const) {
      const group = this.#children.filter((c) => c.info.role === role);
      if (group.length > 0 && group.some((c) => c.exit === undefined)) this.#o.progress(`stopping ${role === 'sidecar' ? 'sidecars (draining)' : role === 'app' ? 'apps' : 'the control plane'}`);
      await Promise.all(
        group.map(async (c) => {
          let killed = false;
          if (c.exit === undefined) {
            signal(c, 'SIGTERM');
            const timer = setTimeout(() => {
              killed = true;
              signal(c, 'SIGKILL');
            }, graceMs);
            await c.exited;
            clearTimeout(timer);
          }
          exits.push({ child: c.info, exit: await c.exited, killed });
        }),
      );
    }
    let networkOk = true;
    if (this.#networkCreating !== undefined) {
      try {
        await this.#teardownNetwork();
      } catch (err) {
        networkOk = false;
        this.#o.progress(`removing the network namespaces failed: ${(err as Error).message}`);
      }
    }
    const clean = networkOk && exits.every((e) => !e.killed && e.exit.code === 0);
    return { clean, exits };
  }
}

/** Signals the child's process group (it leads one: spawned detached), so nothing it started is left behind. */
function signal(c: Running, sig: NodeJS.Signals): void {
  try {
    process.kill(-c.info.pid, sig);
  } catch {
    try {
      c.process.kill(sig);
    } catch {
      // Already gone.
    }
  }
}
