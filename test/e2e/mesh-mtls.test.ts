// Istio security through real proxies, from the control plane's own translation: two `sloop proxy` sidecars
// (explicit mode) get the resources `sloop controlplane` would send them, with their workload certificates as the
// SDS secrets `default` / `ROOTCA` (a test PKI: the client's SPIFFE ID is .../sa/client, the server's .../sa/server).
// The server's namespace is STRICT and an AuthorizationPolicy allows only the client's principal on /ok: the
// client's ISTIO_MUTUAL call succeeds, a path the policy does not allow gets 403, and plaintext straight to the
// server's inbound port is refused at the handshake.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDocuments } from '../../src/control-plane/config/documents.ts';
import { validateDocuments } from '../../src/control-plane/config/validate.ts';
import { buildRegistry } from '../../src/control-plane/registry/registry.ts';
import { parseProxyInfo } from '../../src/control-plane/registry/proxy-info.ts';
import { createPushContext } from '../../src/control-plane/translate/push-context.ts';
import { buildProxyConfig } from '../../src/control-plane/translate/build.ts';
import { makeTestPki, type CertKeyPair, type TestPki } from '../helpers/certs.ts';
import { startHttpUpstream, type HttpUpstream } from '../helpers/upstreams.ts';
import { startProxy, adminConfig, adsBootstrap, SLOOP_BIN, REPO_ROOT, type Json, type ProxyHandle } from '../helpers/proxy.ts';
import { staticBootstrap } from '../helpers/static-bootstrap.ts';
import { curl, runProcess } from '../helpers/clients.ts';
import { freePorts } from '../helpers/ports.ts';
import { waitUntil } from '../helpers/wait.ts';

const config = (appPort: number) => `apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec:
  selector: { app: web }
  ports: [{ name: http, port: 80, targetPort: ${appPort} }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: web, namespace: default }
spec:
  host: web
  trafficPolicy: { tls: { mode: ISTIO_MUTUAL } }
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: default }
spec:
  mtls: { mode: STRICT }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: web, namespace: default }
spec:
  selector: { matchLabels: { app: web } }
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/default/sa/client"] } }]
    to: [{ operation: { paths: ["/ok*"] } }]
`;

function secrets(pki: TestPki, own: CertKeyPair): Record<string, unknown>[] {
  return [
    { name: 'default', tls_certificate: { certificate_chain: { inline_string: own.cert }, private_key: { inline_string: own.key } } },
    { name: 'ROOTCA', validation_context: { trusted_ca: { inline_string: pki.ca.cert } } },
  ];
}

describe('mesh security through real proxies: STRICT mTLS, ISTIO_MUTUAL, AuthorizationPolicy principals', () => {
  let dir: string;
  let app: HttpUpstream;
  const proxies: ProxyHandle[] = [];
  let outbound: number;
  let inbound: number;
  let pki: TestPki;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sloop-mtls-'));
    pki = await makeTestPki(dir);
    app = await startHttpUpstream({ name: 'web' });
    const [out, inb, a1, a2, serverOut] = await freePorts(5);
    outbound = out;
    inbound = inb;
    const parsed = parseDocuments(config(app.port), 'mesh.yaml');
    const { model, diagnostics } = validateDocuments(parsed.documents);
    assert.deepEqual([...parsed.diagnostics, ...diagnostics], []);
    const client = parseProxyInfo({ id: 'sidecar~127.0.0.1~client-1.default~default.svc.cluster.local', metadata: {
      NAMESPACE: 'default', LABELS: { app: 'client', 'security.istio.io/tlsMode': 'istio' }, SERVICE_ACCOUNT: 'client', INSTANCE_IPS: '127.0.0.1',
      INTERCEPTION_MODE: 'NONE', SLOOP_OUTBOUND_PORT: String(out),
    } }).proxy;
    const server = parseProxyInfo({ id: 'sidecar~127.0.0.1~web-1.default~default.svc.cluster.local', metadata: {
      NAMESPACE: 'default', LABELS: { app: 'web', 'security.istio.io/tlsMode': 'istio' }, SERVICE_ACCOUNT: 'server', INSTANCE_IPS: '127.0.0.1',
      INTERCEPTION_MODE: 'NONE', SLOOP_OUTBOUND_PORT: String(serverOut), SLOOP_ENDPOINT_PORTS: { [String(app.port)]: inb },
    } }).proxy;
    const push = createPushContext(model, buildRegistry(model, [client, server]));
    for (const [proxy, cert, admin] of [[server, pki.server, a2], [client, pki.client, a1]] as const) {
      const built = buildProxyConfig(push, proxy);
      assert.deepEqual(built.diagnostics, []);
      proxies.push(await startProxy({ ...staticBootstrap(built.resources, secrets(pki, cert)), admin: adminConfig(admin) }));
    }
  });

  after(async () => {
    for (const p of proxies) await p.stop();
    await app?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the client sidecar reaches the STRICT server over mTLS; its principal is allowed on /ok only', async () => {
    const ok = await curl(['-s', '-x', `http://127.0.0.1:${outbound}`, 'http://web/ok/1']);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(app.requests.at(-1)!.url, '/ok/1');
    const denied = await curl(['-s', '-x', `http://127.0.0.1:${outbound}`, 'http://web/admin']);
    assert.equal(denied.status, 403);
    assert.match(denied.text, /RBAC: access denied/);
  });

  it('plaintext to the STRICT inbound port never reaches the app', async () => {
    const before = app.requests.length;
    const plain = await curl(['-s', `http://127.0.0.1:${inbound}/ok/plain`]);
    assert.notEqual(plain.status, 200);
    assert.equal(app.requests.length, before);
  });

  it('TLS straight to the inbound port: a mesh certificate is required (none or another CA\'s is refused)', async () => {
    const https = (extra: string[]) => curl(['-s', '-k', ...extra, `https://127.0.0.1:${inbound}/ok/direct`]);
    assert.notEqual((await https([])).status, 200, 'no client certificate');
    assert.notEqual((await https(['--cert', pki.other.certPath, '--key', pki.other.keyPath])).status, 200, 'a certificate of another CA');
    const ok = await https(['--cert', pki.client.certPath, '--key', pki.client.keyPath]);
    assert.equal(ok.status, 200, ok.text);
    // The server's own identity is not the client's: the policy's principal decides.
    assert.equal((await https(['--cert', pki.server.certPath, '--key', pki.server.keyPath])).status, 403);
  });
});

// Auto mTLS under `sloop controlplane`: no DestinationRule, a STRICT namespace. Both workloads carry
// `security.istio.io/tlsMode: istio` and get their certificates from the control plane's CA through the proxy's
// agent (--ca-address/--token-file). The client's outbound cluster has Istio's transport_socket_matches and the
// server's endpoint the `tlsMode: istio` metadata, so the client's sidecar picks ISTIO_MUTUAL for it by itself.
const autoMtlsConfig = `apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec:
  selector: { app: web }
  ports: [{ name: http, port: 80, targetPort: http }]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: default }
spec:
  mtls: { mode: STRICT }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: web, namespace: default }
spec:
  selector: { matchLabels: { app: web } }
  rules:
  - from: [{ source: { principals: ["cluster.local/ns/default/sa/client"] } }]
`;

describe('auto mTLS under sloop controlplane: STRICT, no DestinationRule, agent-issued certificates', () => {
  let dir: string;
  let cp: ChildProcess;
  let cpOut = '';
  let app: HttpUpstream;
  const sidecars: ProxyHandle[] = [];
  let outbound: number;
  let inbound: number;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sloop-automtls-'));
    const cfgDir = join(dir, 'config');
    const caDir = join(dir, 'ca');
    await mkdir(cfgDir);
    await writeFile(join(cfgDir, 'mesh.yaml'), autoMtlsConfig);
    app = await startHttpUpstream({ name: 'web' });
    const [xdsPort, out, inb, serverOut, a1, a2] = await freePorts(6);
    outbound = out;
    inbound = inb;
    cp = spawn(SLOOP_BIN, ['controlplane', '--config', cfgDir, '--xds-address', `127.0.0.1:${xdsPort}`, '--ca-dir', caDir, '-l', 'debug'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    cp.stdout!.on('data', (d: Buffer) => (cpOut += d.toString()));
    cp.stderr!.on('data', (d: Buffer) => (cpOut += d.toString()));
    await waitUntil(() => (cpOut.includes('control plane ready') ? true : undefined), { what: 'the control plane to listen', timeoutMs: 20_000 });
    const agentArgs = async (sa: string): Promise<string[]> => {
      const r = await runProcess(SLOOP_BIN, ['token', '--ca-dir', caDir, '--namespace', 'default', '--service-account', sa], { timeoutMs: 20_000 });
      assert.equal(r.exitCode, 0, r.stderr.toString('utf8'));
      const tokenFile = join(dir, `${sa}.token`);
      await writeFile(tokenFile, r.stdout.toString('utf8'), { mode: 0o600 });
      return ['--ca-address', `127.0.0.1:${xdsPort}`, '--token-file', tokenFile, '--namespace', 'default', '--service-account', sa];
    };
    const sidecar = (name: string, sa: string, labels: Record<string, string>, outPort: number, admin: number, appPorts?: { app: number; inbound: number }): Json => {
      const metadata: Json = {
        NAME: name, NAMESPACE: 'default', LABELS: labels, SERVICE_ACCOUNT: sa, INSTANCE_IPS: '127.0.0.1',
        INTERCEPTION_MODE: 'NONE', SLOOP_OUTBOUND_PORT: String(outPort),
      };
      if (appPorts !== undefined) {
        metadata.POD_PORTS = JSON.stringify([{ name: 'http', containerPort: appPorts.app, protocol: 'TCP' }]);
        metadata.SLOOP_ENDPOINT_PORTS = { [String(appPorts.app)]: appPorts.inbound };
      }
      return adsBootstrap({ adminPort: admin, adsPort: xdsPort, maxBackOff: '0.5s', node: { id: `sidecar~127.0.0.1~${name}.default~default.svc.cluster.local`, cluster: name, metadata } });
    };
    const mesh = { 'security.istio.io/tlsMode': 'istio' };
    sidecars.push(await startProxy(sidecar('web-1', 'web', { app: 'web', ...mesh }, serverOut, a2, { app: app.port, inbound: inb }), { args: await agentArgs('web'), readyTimeoutMs: 20_000 }));
    sidecars.push(await startProxy(sidecar('client-1', 'client', { app: 'client', ...mesh }, out, a1), { args: await agentArgs('client'), readyTimeoutMs: 20_000 }));
  });

  after(async () => {
    for (const s of sidecars) await s.stop();
    if (cp && cp.exitCode === null) {
      cp.kill('SIGTERM');
      await new Promise((r) => cp.once('exit', r));
    }
    await app?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the client\'s sidecar reaches the STRICT server over auto mTLS; the server sees the client\'s principal', async () => {
    let last = '';
    const r = await waitUntil(async () => {
      const x = await curl(['-s', '-x', `http://127.0.0.1:${outbound}`, 'http://web/hello']);
      last = `${x.status} ${x.text}`;
      return x.status === 200 ? x : undefined;
    }, { what: 'web reachable through the mesh', timeoutMs: 20_000 }).catch(async (err: Error) => {
      const interesting = (st: Record<string, number>): string => Object.entries(st).filter(([k, v]) => v !== 0 && /ssl|rbac|total_match|upstream_cx_total/.test(k)).map(([k, v]) => `${k}=${v}`).join('\n');
      throw new Error(`${err.message}; last response: ${last}\nclient stats:\n${interesting(await sidecars[1].stats())}\nserver stats:\n${interesting(await sidecars[0].stats())}\nclient sidecar log:\n${sidecars[1]?.stderr().slice(-3000)}\nserver sidecar log:\n${sidecars[0]?.stderr().slice(-3000)}`);
    });
    assert.equal(r.headers['x-upstream'], 'web');
    const seen = app.requests.at(-1)!;
    assert.equal(seen.url, '/hello');
    // The server's sidecar forwards the peer it authenticated (the AuthorizationPolicy allowed that principal).
    assert.match(seen.headerMap['x-forwarded-client-cert'] ?? '', /URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/client/);
    const [server, client] = sidecars;
    const cs = await client.stats();
    const cluster = 'cluster.outbound|80||web.default.svc.cluster.local';
    assert.equal(cs[`${cluster}.tlsMode-istio.total_match_count`], 1, 'the endpoint matched tlsMode-istio');
    assert.equal(cs[`${cluster}.tlsMode-disabled.total_match_count`] ?? 0, 0);
    assert.ok(cs[`${cluster}.ssl.handshake`] >= 1, 'the client originated TLS');
    const ss = await server.stats();
    assert.ok((ss[`listener.127.0.0.1_${inbound}.ssl.handshake`] ?? 0) >= 1, 'the server terminated mTLS on its inbound port');
  });

  it('plaintext straight to the STRICT inbound port never reaches the app', async () => {
    const before = app.requests.length;
    const plain = await curl(['-s', `http://127.0.0.1:${inbound}/plain`]);
    assert.notEqual(plain.status, 200);
    assert.equal(app.requests.length, before);
  });
});
