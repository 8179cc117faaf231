/**
 * Control plane at scale (issue #4 "Measured"): `sloop controlplane` on a generated config of N services
 * (Kubernetes Services, DestinationRules with subsets, VirtualServices with weights and header matches) with P
 * simulated sidecars connected over loopback, each its own gRPC connection, node metadata making it a workload of
 * one service. Then config changes are written to the folder and measured:
 *   - convergence: time from the file write to each client's ACK of the response carrying the change (p50/p99/max);
 *   - control-plane CPU (utime+stime from /proc/<pid>/stat) per change and in total, RSS (VmHWM, VmRSS);
 *   - bytes pushed per change: the sum of the serialized DiscoveryResponse / DeltaDiscoveryResponse sizes received.
 * Both xDS variants are run (state of the world, then delta), each against a fresh control plane.
 *
 * Run: `./node_modules/.bin/node bench/controlplane-scale.ts [--services 1000] [--proxies 500] [--namespaces 10]
 *        [--changes 4] [--mode both|sotw|delta] [--batch 50] [--cpu-prof <dir>] [--vhds on|off]`
 * The clients subscribe with `*` for all four types (the names an Envoy would ask for are exactly the snapshot's:
 * translation emits a ClusterLoadAssignment per EDS cluster and a RouteConfiguration per RDS reference) and ACK
 * every response at once, decoding no resource (an Any stays bytes), so the bench costs the control plane's
 * machine little beyond the sockets.
 */
import { parseArgs } from 'node:util';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { lookupMessage } from '../src/xds/protos.ts';
import { TYPE_URLS, VHDS_CLIENT_FEATURE } from '../src/xds/type-urls.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const { values: args } = parseArgs({
  options: {
    services: { type: 'string', default: '1000' },
    proxies: { type: 'string', default: '500' },
    namespaces: { type: 'string', default: '10' },
    changes: { type: 'string', default: '4' },
    mode: { type: 'string', default: 'both' },
    batch: { type: 'string', default: '50' },
    'cpu-prof': { type: 'string' },
    vhds: { type: 'string', default: 'on' },
  },
});
const SERVICES = Number(args.services);
const PROXIES = Number(args.proxies);
const NAMESPACES = Number(args.namespaces);
const CHANGES = Number(args.changes);
const BATCH = Number(args.batch);
const MODES = args.mode === 'both' ? (['sotw', 'delta'] as const) : ([args.mode] as ('sotw' | 'delta')[]);
const CLK_TCK = 100; // getconf CLK_TCK on Linux x86-64
/** Delta clients announce VHDS as Sloop's proxy does (src/xds/vhds.ts) unless `--vhds off`. */
const VHDS = args.vhds !== 'off';
const TYPES = [TYPE_URLS.cluster, TYPE_URLS.endpoint, TYPE_URLS.listener, TYPE_URLS.route] as const;
const typesOf = (mode: 'sotw' | 'delta'): readonly string[] => (mode === 'delta' && VHDS ? [...TYPES, TYPE_URLS.virtualHost] : TYPES);

// ---------------------------------------------------------------- config

const ns = (i: number): string => `ns-${i % NAMESPACES}`;
const hasGrpc = (i: number): boolean => i % 5 === 0;
const hasDr = (i: number): boolean => i % 5 < 3; // 60 %
const hasVs = (i: number): boolean => i % 10 < 3; // 30 %, all of them with a DestinationRule (i % 5 < 3)

function serviceYaml(i: number, v2Weight = 10): string {
  const docs: string[] = [];
  const ports = [`{ name: http, port: 8080, targetPort: 8080 }`];
  if (hasGrpc(i)) ports.push(`{ name: grpc, port: 9090, targetPort: 9090 }`);
  docs.push(`apiVersion: v1
kind: Service
metadata: { name: svc-${i}, namespace: ${ns(i)} }
spec:
  selector: { app: svc-${i} }
  ports: [${ports.join(', ')}]
`);
  if (hasDr(i)) {
    const policy = i % 3 === 0
      ? `  trafficPolicy:
    connectionPool: { tcp: { maxConnections: 100 }, http: { http2MaxRequests: 1000, maxRetries: 3 } }
    outlierDetection: { consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s }
`
      : '';
    docs.push(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: svc-${i}, namespace: ${ns(i)} }
spec:
  host: svc-${i}
${policy}  subsets:
  - { name: v1, labels: { version: v1 } }
  - { name: v2, labels: { version: v2 } }
`);
  }
  if (hasVs(i)) {
    docs.push(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: svc-${i}, namespace: ${ns(i)} }
spec:
  hosts: [svc-${i}]
  http:
  - match: [{ headers: { x-canary: { exact: "true" } } }]
    route: [{ destination: { host: svc-${i}, subset: v2 } }]
  - route:
    - { destination: { host: svc-${i}, subset: v1 }, weight: ${100 - v2Weight} }
    - { destination: { host: svc-${i}, subset: v2 }, weight: ${v2Weight} }
    timeout: 5s
    retries: { attempts: 3, perTryTimeout: 2s }
`);
  }
  return docs.join('---\n');
}

/** A workload of service i without a sidecar: one more endpoint for it (an EDS-only change). */
function workloadEntryYaml(i: number): string {
  return `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: extra-${i}, namespace: ${ns(i)} }
spec:
  address: 10.200.0.1
  labels: { app: svc-${i}, version: v1 }
`;
}

async function writeConfig(dir: string): Promise<void> {
  for (let i = 0; i < SERVICES; i++) await writeFile(join(dir, `svc-${i}.yaml`), serviceYaml(i));
}

/** Proxy j is a workload of service (j * SERVICES / PROXIES): distinct services, every namespace. */
function nodeOf(j: number): { id: string; metadata: Record<string, unknown> } {
  const svc = Math.floor((j * SERVICES) / PROXIES);
  const ip = `10.${1 + (j >> 16)}.${(j >> 8) & 255}.${j & 255}`;
  return {
    id: `sidecar~${ip}~svc-${svc}-${j}.${ns(svc)}~${ns(svc)}.svc.cluster.local`,
    metadata: { NAME: `svc-${svc}-${j}`, NAMESPACE: ns(svc), LABELS: { app: `svc-${svc}`, version: j % 2 === 0 ? 'v1' : 'v2' }, INSTANCE_IPS: ip },
  };
}

// ---------------------------------------------------------------- protocol

const DiscoveryRequest = lookupMessage('envoy.service.discovery.v3.DiscoveryRequest')!;
const DiscoveryResponse = lookupMessage('envoy.service.discovery.v3.DiscoveryResponse')!;
const DeltaRequest = lookupMessage('envoy.service.discovery.v3.DeltaDiscoveryRequest')!;
const DeltaResponse = lookupMessage('envoy.service.discovery.v3.DeltaDiscoveryResponse')!;

interface Received {
  typeUrl: string;
  bytes: number;
  /** SotW version_info, or delta system_version_info. */
  version: string;
  nonce: string;
  resources: number;
}

const SERVICE_PATH = '/envoy.service.discovery.v3.AggregatedDiscoveryService/';
const decodeSotw = (buf: Buffer): Received => {
  const m = DiscoveryResponse.decode(buf) as unknown as { type_url: string; version_info: string; nonce: string; resources: unknown[] };
  return { typeUrl: m.type_url, bytes: buf.length, version: m.version_info, nonce: m.nonce, resources: m.resources.length };
};
const decodeDelta = (buf: Buffer): Received => {
  const m = DeltaResponse.decode(buf) as unknown as { type_url: string; system_version_info: string; nonce: string; resources: unknown[]; removed_resources: string[] };
  return { typeUrl: m.type_url, bytes: buf.length, version: m.system_version_info, nonce: m.nonce, resources: m.resources.length + m.removed_resources.length };
};
const encodeWith = (type: typeof DiscoveryRequest) => (o: object): Buffer => Buffer.from(type.encode(type.fromObject(o)).finish());

const ENVOY_WINDOW_BYTES = 256 * 1024 * 1024;

/** One simulated proxy: its own connection and ADS stream; ACKs every response as it arrives. */
class SimProxy {
  readonly node: { id: string; metadata: Record<string, unknown> };
  readonly #mode: 'sotw' | 'delta';
  readonly #client: grpc.Client;
  #call: grpc.ClientDuplexStream<object, Received> | undefined;
  readonly seen = new Set<string>();
  onResponse: ((p: SimProxy, r: Received, at: number) => void) | undefined;
  #synced: (() => void) | undefined;
  readonly synced: Promise<void>;
  error: Error | undefined;

  constructor(port: number, j: number, mode: 'sotw' | 'delta') {
    this.node = nodeOf(j);
    this.#mode = mode;
    // A connection of its own per proxy, as real sidecars have (grpc-js would share one subchannel otherwise).
    // HTTP/2 windows as Envoy's xDS client has them (initial_stream_window_size and initial_connection_window_size
    // default to 256 MiB): grpc-js' default 64 KiB window would make every response wait ~17 round trips.
    this.#client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
      'grpc.use_local_subchannel_pool': 1,
      'grpc.max_receive_message_length': -1,
      'grpc-node.flow_control_window': ENVOY_WINDOW_BYTES,
    });
    this.synced = new Promise((resolve) => (this.#synced = resolve));
  }

  start(): void {
    const delta = this.#mode === 'delta';
    const call = this.#client.makeBidiStreamRequest<object, Received>(
      SERVICE_PATH + (delta ? 'DeltaAggregatedResources' : 'StreamAggregatedResources'),
      encodeWith(delta ? DeltaRequest : DiscoveryRequest),
      delta ? decodeDelta : decodeSotw,
    );
    this.#call = call;
    call.on('data', (r: Received) => {
      const at = performance.now();
      // ACK at once: SotW repeats the subscription with the version and nonce; delta names the nonce.
      call.write(delta ? { type_url: r.typeUrl, response_nonce: r.nonce } : { type_url: r.typeUrl, version_info: r.version, response_nonce: r.nonce, resource_names: ['*'] });
      this.seen.add(r.typeUrl);
      this.onResponse?.(this, r, at);
      if (this.seen.size === typesOf(this.#mode).length) this.#synced?.();
    });
    call.on('error', (err: Error) => {
      if ((err as { code?: number }).code !== grpc.status.CANCELLED) this.error = err;
    });
    typesOf(this.#mode).forEach((typeUrl, i) => {
      const features = delta && VHDS ? [VHDS_CLIENT_FEATURE] : [];
      const node = i === 0 ? { node: { id: this.node.id, cluster: 'bench', metadata: this.node.metadata, client_features: features } } : {};
      call.write(delta ? { ...node, type_url: typeUrl, resource_names_subscribe: ['*'] } : { ...node, type_url: typeUrl, resource_names: ['*'] });
    });
  }

  close(): void {
    this.#call?.cancel();
    this.#client.close();
  }
}

// ---------------------------------------------------------------- measurement

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function cpuTicks(pid: number): Promise<number> {
  const { user, system } = await cpuTicksSplit(pid);
  return user + system;
}

async function cpuTicksSplit(pid: number): Promise<{ user: number; system: number }> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(f[11]), system: Number(f[12]) }; // utime, stime (fields 14 and 15)
}

async function memory(pid: number): Promise<{ hwmMiB: number; rssMiB: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => Number(/\s(\d+) kB/.exec(status.split('\n').find((l) => l.startsWith(key)) ?? '')?.[1] ?? NaN);
  return { hwmMiB: kb('VmHWM:') / 1024, rssMiB: kb('VmRSS:') / 1024 };
}

const quantile = (sorted: number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
const mib = (n: number): string => (n >= 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`);

interface ChangeResult {
  kind: string;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  bytes: number;
  responses: number;
  unexpected: number;
  cpuMs: number;
  pushLogMs: number[];
}

async function runMode(mode: 'sotw' | 'delta'): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'sloop-cp-scale-'));
  await writeConfig(dir);
  const port = await freePort();
  const flags = args['cpu-prof'] ? `--cpu-prof --cpu-prof-dir=${args['cpu-prof']} --cpu-prof-name=controlplane-${mode}.cpuprofile` : '';
  const cp: ChildProcess = spawn(join(ROOT, 'bin', 'sloop'), ['controlplane', '--config', dir, '--xds-address', `127.0.0.1:${port}`, '-l', 'info'], {
    cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SLOOP_NODE_FLAGS: flags },
  });
  let log = '';
  const pushes: { at: number; ms: number; published: number }[] = [];
  const onLine = (line: string): void => {
    if (!line.includes('"msg":"push"')) return;
    const m = JSON.parse(line) as { ms: number; published: number };
    pushes.push({ at: performance.now(), ms: m.ms, published: m.published });
  };
  // The logger writes JSON lines to stderr; the push line carries how long the rebuild took.
  let partial = '';
  const onData = (d: Buffer): void => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop()!;
    for (const l of lines) onLine(l);
    log = (log + d.toString()).slice(-20_000);
  };
  cp.stdout!.on('data', onData);
  cp.stderr!.on('data', onData);
  await waitFor(() => log.includes('control plane ready') && log.includes('config loaded'), 60_000, () => `control plane start:\n${log}`);

  // Connect in batches, each batch fully synced before the next, as a rolling start of sidecars would.
  const proxies: SimProxy[] = [];
  const connectStart = performance.now();
  let initialBytes = 0;
  for (let j = 0; j < PROXIES; j += BATCH) {
    const batch: SimProxy[] = [];
    for (let k = j; k < Math.min(PROXIES, j + BATCH); k++) {
      const p = new SimProxy(port, k, mode);
      p.onResponse = (_p, r) => (initialBytes += r.bytes);
      p.start();
      batch.push(p);
    }
    await withTimeout(Promise.all(batch.map((p) => p.synced)), Number(process.env.BENCH_SYNC_MS ?? 300_000), () => `initial sync of proxies ${j}..${j + batch.length - 1}: ${batch.find((p) => p.error)?.error?.message ?? ''}\n${log.slice(-3000)}`);
    proxies.push(...batch);
  }
  const connectMs = performance.now() - connectStart;
  // The connects trigger debounced full pushes; wait until the control plane has published to every proxy.
  await waitFor(() => pushes.some((p) => p.published === PROXIES), Number(process.env.BENCH_SYNC_MS ?? 300_000), () => `a push to all ${PROXIES} proxies:\n${log.slice(-3000)}`);
  const pid = cp.pid!;
  const cpuBefore = await cpuTicks(pid);
  const memAfterSync = await memory(pid);
  console.log(`[${mode}] ${PROXIES} proxies synced in ${(connectMs / 1000).toFixed(1)} s, ${mib(initialBytes)} received; control plane RSS ${memAfterSync.rssMiB.toFixed(0)} MiB (peak ${memAfterSync.hwmMiB.toFixed(0)} MiB)`);

  const results: ChangeResult[] = [];
  const vsServices = Array.from({ length: SERVICES }, (_, i) => i).filter(hasVs);
  for (let c = 0; c < CHANGES; c++) {
    // Alternate: a VirtualService weight edit (RDS for every proxy) and a new endpoint (EDS for every proxy).
    const kind = c % 2 === 0 ? 'VirtualService edit' : 'WorkloadEntry added';
    // With VHDS a VirtualService edit is a VirtualHost update (the route tables themselves do not change).
    const expected = c % 2 === 1 ? TYPE_URLS.endpoint : mode === 'delta' && VHDS ? TYPE_URLS.virtualHost : TYPE_URLS.route;
    // A service not touched before, so every write is a real change.
    const svc = vsServices[Math.floor(c / 2) % vsServices.length];
    const converged = new Map<SimProxy, number>();
    let bytes = 0;
    let responses = 0;
    let unexpected = 0;
    let done: () => void = () => {};
    const all = new Promise<void>((resolve) => (done = resolve));
    let t0 = 0;
    for (const p of proxies) {
      p.onResponse = (proxy, r, at) => {
        bytes += r.bytes;
        responses++;
        if (r.typeUrl !== expected) unexpected++;
        else if (!converged.has(proxy)) {
          converged.set(proxy, at - t0);
          if (converged.size === proxies.length) done();
        }
      };
    }
    const pushesBefore = pushes.length;
    const ticksBefore = await cpuTicks(pid);
    const systemBefore = (await cpuTicksSplit(pid)).system;
    const benchCpuBefore = process.cpuUsage();
    t0 = performance.now();
    if (c % 2 === 0) await writeFile(join(dir, `svc-${svc}.yaml`), serviceYaml(svc, 50));
    else await writeFile(join(dir, `extra-${svc}.yaml`), workloadEntryYaml(svc));
    await withTimeout(all, 120_000, () => `${kind}: ${converged.size}/${proxies.length} proxies converged\n${log.slice(-3000)}`);
    // The push's own log line comes after every snapshot is set; responses after it would be a second push.
    await waitFor(() => pushes.length > pushesBefore, 60_000, () => 'the push log line');
    const cpuMs = ((await cpuTicks(pid)) - ticksBefore) * (1000 / CLK_TCK);
    const systemMs = ((await cpuTicksSplit(pid)).system - systemBefore) * (1000 / CLK_TCK);
    const benchCpu = process.cpuUsage(benchCpuBefore);
    const clientsCpuMs = (benchCpu.user + benchCpu.system) / 1000;
    const times = [...converged.values()].sort((a, b) => a - b);
    results.push({
      kind, p50Ms: quantile(times, 0.5), p99Ms: quantile(times, 0.99), maxMs: times.at(-1)!, bytes, responses, unexpected, cpuMs,
      pushLogMs: pushes.slice(pushesBefore).map((p) => p.ms),
    });
    const r = results.at(-1)!;
    console.log(`[${mode}] ${kind.padEnd(20)} p50 ${r.p50Ms.toFixed(0).padStart(5)} ms  p99 ${r.p99Ms.toFixed(0).padStart(5)} ms  max ${r.maxMs.toFixed(0).padStart(5)} ms  ${mib(bytes).padStart(10)} in ${responses} responses (${unexpected} of other types)  control-plane CPU ${cpuMs.toFixed(0)} ms (kernel ${systemMs.toFixed(0)})  clients CPU ${clientsCpuMs.toFixed(0)} ms  push ${r.pushLogMs.join('+')} ms`);
  }
  const cpuTotalMs = ((await cpuTicks(pid)) - cpuBefore) * (1000 / CLK_TCK);
  const mem = await memory(pid);
  console.log(`[${mode}] control plane: RSS ${mem.rssMiB.toFixed(0)} MiB, peak (VmHWM) ${mem.hwmMiB.toFixed(0)} MiB; CPU over the ${CHANGES} changes ${cpuTotalMs.toFixed(0)} ms; errors: ${proxies.filter((p) => p.error).length}`);
  for (const p of proxies) p.close();
  const exited = new Promise((resolve) => cp.once('exit', resolve));
  cp.kill('SIGTERM');
  await exited;
  await rm(dir, { recursive: true, force: true });
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what()}`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

async function waitFor(check: () => boolean, ms: number, what: () => string): Promise<true> {
  const deadline = performance.now() + ms;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

console.log(`control plane at scale (delta clients ${VHDS ? 'take VHDS' : 'take whole route tables'}): ${SERVICES} services in ${NAMESPACES} namespaces (${Array.from({ length: SERVICES }, (_, i) => i).filter(hasDr).length} DestinationRules, ${Array.from({ length: SERVICES }, (_, i) => i).filter(hasVs).length} VirtualServices), ${PROXIES} proxies, ${CHANGES} changes per mode`);
for (const mode of MODES) await runMode(mode);
