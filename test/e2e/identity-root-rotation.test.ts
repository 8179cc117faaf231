// RELIABILITY row 25, the root half: an operator rotates the mesh root under load. Two `sloop proxy` processes
// with the workload agent talk mTLS (A's cluster → B's listener) with 20 s certificates from `sloop controlplane
// --ca-certs` (Istio's cacerts layout). The rotation is Istio's documented order:
//   1. trust both: root-cert.pem = old + new root, still signing with the old one (control plane restarted);
//   2. sign with the new root, still trusting both (restarted again).
// Between the steps every proxy renews (half life, ~10 s) and picks up the bundle the CA answers with. Requests run
// the whole time, through both control-plane restarts: 0 may fail, and B ends up serving a certificate that
// chains to the new root.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request, Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSelfSignedCa } from '../../src/control-plane/ca/root.ts';
import { startHttpUpstream, type HttpUpstream } from '../helpers/upstreams.ts';
import { startProxy, bootstrapWith, httpListener, prefixRoute, virtualHost, staticCluster, SLOOP_BIN, type Json, type ProxyHandle } from '../helpers/proxy.ts';
import { runProcess } from '../helpers/clients.ts';
import { freePorts } from '../helpers/ports.ts';
import { waitUntil } from '../helpers/wait.ts';

const DOWNSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
const UPSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';
const ADS = { ads: {}, resource_api_version: 'V3' };
const CA_FILES = ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem'] as const;

function sdsCommon(sans: string[]): Json {
  return {
    tls_certificate_sds_secret_configs: [{ name: 'default', sds_config: ADS }],
    combined_validation_context: {
      default_validation_context: sans.length > 0 ? { match_typed_subject_alt_names: sans.map((s) => ({ san_type: 'URI', matcher: { exact: s } })) } : {},
      validation_context_sds_secret_config: { name: 'ROOTCA', sds_config: ADS },
    },
  };
}

function get(port: number, agent: Agent): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/load', agent, timeout: 5_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(0));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(0));
    req.end();
  });
}

async function servedIssuerMatches(port: number, rootPem: string): Promise<boolean> {
  const r = await runProcess('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-showcerts'], { input: '', timeoutMs: 10_000 });
  const pem = r.stdout.toString('utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)?.[0];
  if (!pem) return false;
  return new X509Certificate(pem).verify(new X509Certificate(rootPem).publicKey);
}

const rotations = (p: ProxyHandle): number => (p.stderr().match(/workload certificate rotated/g) ?? []).length;

describe('RELIABILITY row 25: mesh root rotation under load', () => {
  let dir: string;
  let opDir: string;
  let oldDir: string;
  let newDir: string;
  let cfgDir: string;
  let cp: ChildProcess | undefined;
  let cpOut = '';
  let cpPort: number;
  let app: HttpUpstream;
  let proxyA: ProxyHandle;
  let proxyB: ProxyHandle;
  let aPort: number;
  let bPort: number;

  async function startCp(): Promise<void> {
    cpOut = '';
    const child = spawn(SLOOP_BIN, ['controlplane', '--config', cfgDir, '--xds-address', `127.0.0.1:${cpPort}`, '--ca-certs', opDir, '--ca-dir', join(dir, 'state')], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.on('data', (d: Buffer) => (cpOut += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (cpOut += d.toString()));
    cp = child;
    await waitUntil(() => cpOut.includes('control plane ready') || (child.exitCode !== null && `exited: ${cpOut}`), { timeoutMs: 20_000, what: 'control plane ready' });
    assert.equal(child.exitCode, null, cpOut);
  }

  async function stopCp(): Promise<void> {
    const child = cp;
    if (child === undefined || child.exitCode !== null) return;
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }

  async function token(sa: string): Promise<string> {
    const r = await runProcess(SLOOP_BIN, ['token', '--ca-dir', join(dir, 'state'), '--namespace', 'default', '--service-account', sa], { timeoutMs: 20_000 });
    assert.equal(r.exitCode, 0, r.stderr.toString('utf8'));
    const file = join(dir, `${sa}.token`);
    await writeFile(file, r.stdout);
    return file;
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sloop-root-rotation-'));
    opDir = join(dir, 'cacerts');
    oldDir = join(dir, 'old-root');
    newDir = join(dir, 'new-root');
    cfgDir = join(dir, 'config');
    await mkdir(cfgDir);
    await writeFile(join(cfgDir, 'svc.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: { name: b, namespace: default }\nspec:\n  selector: { app: b }\n  ports: [{ name: http, port: 80 }]\n');
    // Two roots in Istio's cacerts layout; the operator directory starts as the old one.
    await createSelfSignedCa(oldDir, { nowMs: () => Date.now() - 3600_000 });
    await createSelfSignedCa(newDir, { nowMs: () => Date.now() - 3600_000 });
    await mkdir(opDir);
    for (const f of [...CA_FILES, 'root-cert.pem']) await copyFile(join(oldDir, f), join(opDir, f));
    let adminA: number, adminB: number;
    [cpPort, aPort, bPort, adminA, adminB] = await freePorts(5);
    await startCp();
    app = await startHttpUpstream({ name: 'app-b' });
    const agentArgs = async (sa: string): Promise<string[]> => ['--ca-address', `127.0.0.1:${cpPort}`, '--token-file', await token(sa), '--namespace', 'default', '--service-account', sa, '--cert-ttl-s', '20'];
    proxyB = await startProxy(
      bootstrapWith({
        adminPort: adminB,
        listeners: [
          httpListener({
            name: 'inbound',
            port: bPort,
            virtualHosts: [virtualHost('app', ['*'], [prefixRoute('/', 'app')])],
            transportSocket: { name: 'envoy.transport_sockets.tls', typed_config: { '@type': DOWNSTREAM_TLS, common_tls_context: sdsCommon(['spiffe://cluster.local/ns/default/sa/a']), require_client_certificate: true } },
          }),
        ],
        clusters: [staticCluster('app', [['127.0.0.1', app.port]])],
      }),
      { args: await agentArgs('b'), readyTimeoutMs: 20_000 },
    );
    proxyA = await startProxy(
      bootstrapWith({
        adminPort: adminA,
        listeners: [httpListener({ name: 'outbound', port: aPort, virtualHosts: [virtualHost('b', ['*'], [prefixRoute('/', 'b')])] })],
        clusters: [
          staticCluster('b', [['127.0.0.1', bPort]], {
            transport_socket: { name: 'envoy.transport_sockets.tls', typed_config: { '@type': UPSTREAM_TLS, common_tls_context: sdsCommon(['spiffe://cluster.local/ns/default/sa/b']) } },
            max_requests_per_connection: 5,
          }),
        ],
      }),
      { args: await agentArgs('a'), readyTimeoutMs: 20_000 },
    );
  });

  after(async () => {
    await proxyA?.stop();
    await proxyB?.stop();
    await app?.close();
    await stopCp();
    await rm(dir, { recursive: true, force: true });
  });

  it('trust both, then sign with the new root: 0 failed requests across both control-plane restarts', async () => {
    const oldRoot = await readFile(join(oldDir, 'root-cert.pem'), 'utf8');
    const newRoot = await readFile(join(newDir, 'root-cert.pem'), 'utf8');
    assert.equal(await servedIssuerMatches(bPort, oldRoot), true);

    const agent = new Agent({ keepAlive: true, maxSockets: 3 });
    const statuses: number[] = [];
    let stop = false;
    const loops = [0, 1].map(async () => {
      while (!stop) {
        statuses.push(await get(aPort, agent));
        await new Promise((r) => setTimeout(r, 25));
      }
    });
    const renewedBoth = async (what: string): Promise<void> => {
      const a0 = rotations(proxyA);
      const b0 = rotations(proxyB);
      await waitUntil(() => rotations(proxyA) > a0 && rotations(proxyB) > b0, { timeoutMs: 30_000, intervalMs: 250, what });
    };
    try {
      // Step 1: the bundle holds both roots; the old one still signs.
      await writeFile(join(opDir, 'root-cert.pem'), `${oldRoot.trim()}\n${newRoot.trim()}\n`);
      await stopCp();
      await startCp();
      await renewedBoth('both proxies to renew with the two-root bundle');
      // Step 2: the new root signs; both stay trusted.
      for (const f of CA_FILES) await copyFile(join(newDir, f), join(opDir, f));
      await stopCp();
      await startCp();
      await renewedBoth('both proxies to renew with certificates of the new root');
      await waitUntil(() => servedIssuerMatches(bPort, newRoot), { timeoutMs: 10_000, intervalMs: 500, what: 'B to serve a certificate of the new root' });
      await new Promise((r) => setTimeout(r, 1_000));
    } finally {
      stop = true;
      await Promise.all(loops);
      agent.destroy();
    }
    const failed = statuses.filter((s) => s !== 200);
    assert.ok(statuses.length > 100, `only ${statuses.length} requests`);
    assert.equal(failed.length, 0, `${failed.length} of ${statuses.length} requests failed: ${[...new Set(failed)]}`);
  });
});
