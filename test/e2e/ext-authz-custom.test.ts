// AuthorizationPolicy CUSTOM end to end, as Istio's "External Authorization" task: `sloop controlplane` reads the
// mesh config ConfigMap istio-system/istio (meshConfig.extensionProviders: an envoyExtAuthzGrpc provider), the
// example authorizer (examples/ext-authz/authorizer.ts) runs as a mesh service (a Service plus a WorkloadEntry),
// and a CUSTOM policy on `paths: [/headers]` makes the service's sidecar ask it — through the shadow RBAC's
// metadata and ext_authz's filter_enabled_metadata — about /headers only: 403 from the authorizer without
// `x-ext-authz: allow`, 200 with it, and other paths never reach the authorizer. A provider name the mesh config
// does not define makes the policy deny what it matches, as Istio does.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startHttpUpstream, type HttpUpstream } from '../helpers/upstreams.ts';
import { startProxy, adsBootstrap, fetchStats, SLOOP_BIN, REPO_ROOT, type Json, type ProxyHandle } from '../helpers/proxy.ts';
import { curl } from '../helpers/clients.ts';
import { freePorts } from '../helpers/ports.ts';
import { waitUntil } from '../helpers/wait.ts';
import { startAuthorizer, ALLOW_HEADER, ALLOW_VALUE, DENIED_BODY, RESULT_HEADER, type Authorizer } from '../../examples/ext-authz/authorizer.ts';

const services = (authorizerPort: number): string => `apiVersion: v1
kind: Service
metadata: { name: httpbin, namespace: default }
spec:
  selector: { app: httpbin }
  ports: [{ name: http, port: 8000, targetPort: http }]
---
apiVersion: v1
kind: Service
metadata: { name: ext-authz, namespace: default }
spec:
  selector: { app: ext-authz }
  ports: [{ name: grpc, port: 9000 }]
---
# The example authorizer, a workload outside Kubernetes: its gRPC port is where it listens.
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ext-authz, namespace: default }
spec:
  address: 127.0.0.1
  labels: { app: ext-authz }
  ports: { grpc: ${authorizerPort} }
---
# These sidecars hold no mesh certificates: plaintext between them (no auto mTLS transport_socket_matches).
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: default }
spec:
  mtls: { mode: DISABLE }
`;

const meshConfig = (provider: string): string => `apiVersion: v1
kind: ConfigMap
metadata:
  name: istio
  namespace: istio-system
data:
  mesh: |-
    extensionProviders:
    - name: ${provider}
      envoyExtAuthzGrpc:
        service: ext-authz.default.svc.cluster.local
        port: 9000
        timeout: 5s
`;

const POLICY = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ext-authz, namespace: default }
spec:
  selector: { matchLabels: { app: httpbin } }
  action: CUSTOM
  provider: { name: sample-ext-authz-grpc }
  rules:
  - to: [{ operation: { paths: ["/headers"] } }]
`;

function sidecarBootstrap(name: string, labels: Record<string, string>, ports: { admin: number; xds: number; outbound: number; app?: number; inbound?: number }): Json {
  const metadata: Json = {
    NAME: name,
    NAMESPACE: 'default',
    LABELS: labels,
    INSTANCE_IPS: '127.0.0.1',
    INTERCEPTION_MODE: 'NONE',
    SLOOP_OUTBOUND_PORT: String(ports.outbound),
  };
  if (ports.app !== undefined) {
    metadata.POD_PORTS = JSON.stringify([{ name: 'http', containerPort: ports.app, protocol: 'TCP' }]);
    metadata.SLOOP_ENDPOINT_PORTS = { [String(ports.app)]: ports.inbound };
  }
  return adsBootstrap({ adminPort: ports.admin, adsPort: ports.xds, maxBackOff: '0.5s', node: { id: `sidecar~127.0.0.1~${name}.default~default.svc.cluster.local`, cluster: name, metadata } });
}

describe('AuthorizationPolicy CUSTOM: sloop controlplane + sidecars + an ext_authz provider from the mesh config', () => {
  let dir: string;
  let cp: ChildProcess;
  let cpOut = '';
  let app: HttpUpstream;
  let authorizer: Authorizer;
  const sidecars: ProxyHandle[] = [];
  let outbound: number;
  let serverAdmin: number;

  const get = (path: string, headers: string[] = []) => curl(['-s', '-x', `http://127.0.0.1:${outbound}`, ...headers.flatMap((h) => ['-H', h]), `http://httpbin:8000${path}`]);
  const stat = async (name: string): Promise<number> => (await fetchStats(serverAdmin))[name] ?? 0;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sloop-custom-'));
    app = await startHttpUpstream({ name: 'httpbin' });
    authorizer = await startAuthorizer();
    await writeFile(join(dir, 'services.yaml'), services(authorizer.port));
    await writeFile(join(dir, 'mesh.yaml'), meshConfig('sample-ext-authz-grpc'));
    await writeFile(join(dir, 'policy.yaml'), POLICY);
    const [xds, out, inbound, a0, a1, o1] = await freePorts(6);
    outbound = out;
    serverAdmin = a1;
    cp = spawn(SLOOP_BIN, ['controlplane', '--config', dir, '--xds-address', `127.0.0.1:${xds}`, '-l', 'debug'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    cp.stdout?.on('data', (d: Buffer) => (cpOut += d.toString()));
    cp.stderr?.on('data', (d: Buffer) => (cpOut += d.toString()));
    await waitUntil(() => (cpOut.includes('control plane ready') ? true : undefined), { what: 'the control plane to listen', timeoutMs: 15_000 });
    sidecars.push(await startProxy(sidecarBootstrap('sleep', { app: 'sleep' }, { admin: a0, xds, outbound: out })));
    sidecars.push(await startProxy(sidecarBootstrap('httpbin', { app: 'httpbin' }, { admin: a1, xds, outbound: o1, app: app.port, inbound })));
  });

  after(async () => {
    for (const s of sidecars) await s.stop();
    cp?.kill('SIGTERM');
    await app?.close();
    await authorizer?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('/headers is decided by the authorizer (403 without x-ext-authz: allow, 200 with it); other paths never reach it', async () => {
    await waitUntil(async () => {
      const r = await get('/ip');
      return r.status === 200 ? r : undefined;
    }, { what: `httpbin reachable through the mesh; control plane log:\n${cpOut.slice(-3000)}`, timeoutMs: 20_000 });
    // The inbound listener with the CUSTOM filters may land a moment after the route: wait for the authorizer's verdict.
    let last: Awaited<ReturnType<typeof get>> | undefined;
    const denied = await waitUntil(async () => {
      const r = (last = await get('/headers'));
      return r.status === 403 && r.text === DENIED_BODY ? r : undefined;
    }, { what: '/headers denied by the authorizer', timeoutMs: 15_000 }).catch((err: Error) => {
      throw new Error(`${err.message} (last answer: ${last?.status} ${last?.text}); httpbin sidecar:\n${sidecars[1].stderr().slice(-3000)}`);
    });
    assert.equal(denied.headers[RESULT_HEADER], 'denied', 'the authorizer\'s denied_response headers reach the client');
    const checksBefore = authorizer.checks.length;
    assert.ok(checksBefore >= 1);
    const upstreamBefore = app.requests.length;

    const allowed = await get('/headers', [`${ALLOW_HEADER}: ${ALLOW_VALUE}`]);
    assert.equal(allowed.status, 200, allowed.text);
    assert.equal(authorizer.checks.length, checksBefore + 1);
    const seen = app.requests.at(-1)!;
    assert.equal(seen.url, '/headers');
    assert.equal(seen.headerMap[RESULT_HEADER], 'allowed', 'the authorizer\'s ok_response headers reach the app');
    const check = authorizer.checks.at(-1)!;
    assert.equal(check.attributes?.request?.http?.path, '/headers');
    assert.equal(check.attributes?.request?.http?.headers?.[ALLOW_HEADER], ALLOW_VALUE);

    // Paths no CUSTOM rule matches: straight to the app, the authorizer is not called.
    for (const path of ['/ip', '/get?x=1', '/headers/more', '/status/200']) {
      const r = await get(path);
      assert.equal(r.status, 200, `${path}: ${r.text}`);
    }
    assert.equal(authorizer.checks.length, checksBefore + 1, 'no Check call for paths the policy does not select');
    assert.equal(app.requests.length, upstreamBefore + 5);
    // Envoy's stats on the server sidecar: the shadow RBAC's verdicts and ext_authz's.
    const prefix = 'http.inbound_0.0.0.0_' + String(app.port);
    assert.ok(await stat(`${prefix}.ext_authz.ok`) >= 1);
    assert.ok(await stat(`${prefix}.ext_authz.denied`) >= 1);
    assert.ok(await stat(`${prefix}.ext_authz.disabled`) >= 4);
    assert.ok(await stat(`${prefix}.rbac.istio_ext_authz_shadow_denied`) >= 2);
    assert.ok(await stat(`${prefix}.rbac.istio_ext_authz_shadow_allowed`) >= 4);
  });

  it('a provider name the mesh config does not define: the policy denies what it matches (RBAC), with an error', async () => {
    await writeFile(join(dir, 'mesh.yaml'), meshConfig('another-provider'));
    await waitUntil(async () => {
      const r = await get('/headers', [`${ALLOW_HEADER}: ${ALLOW_VALUE}`]);
      return r.status === 403 && r.text === 'RBAC: access denied' ? r : undefined;
    }, { what: `/headers denied by RBAC; control plane log:\n${cpOut.slice(-3000)}`, timeoutMs: 15_000 });
    assert.match(cpOut, /policy\.yaml:\d+:\d+ AuthorizationPolicy default\/ext-authz spec\.provider\.name: provider \W*sample-ext-authz-grpc\W* is not defined in meshConfig\.extensionProviders/);
    const checks = authorizer.checks.length;
    assert.equal((await get('/ip')).status, 200);
    assert.equal((await get('/headers')).status, 403);
    assert.equal(authorizer.checks.length, checks, 'the authorizer is not asked');
    // Back to the defined provider: the authorizer decides again.
    await writeFile(join(dir, 'mesh.yaml'), meshConfig('sample-ext-authz-grpc'));
    await waitUntil(async () => {
      const r = await get('/headers', [`${ALLOW_HEADER}: ${ALLOW_VALUE}`]);
      return r.status === 200 ? r : undefined;
    }, { what: '/headers allowed by the authorizer again', timeoutMs: 15_000 });
    assert.equal(authorizer.checks.length, checks + 1);
  });
});
