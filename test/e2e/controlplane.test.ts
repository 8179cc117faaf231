// The first working mesh: `sloop controlplane` watching a folder of Istio YAML, three `sloop proxy` sidecars
// configured only over ADS (explicit mode: the client's sidecar is its HTTP proxy), two versions of a service
// behind them. Traffic follows the VirtualService; editing it shifts traffic within seconds; an invalid edit is
// rejected and the last good config keeps serving.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { generateKeyPairSync, sign } from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startHttpUpstream, type HttpUpstream } from '../helpers/upstreams.ts';
import { startProxy, adsBootstrap, SLOOP_BIN, REPO_ROOT, type Json, type ProxyHandle } from '../helpers/proxy.ts';
import { curl } from '../helpers/clients.ts';
import { freePorts } from '../helpers/ports.ts';
import { waitUntil } from '../helpers/wait.ts';

const SERVICE = `apiVersion: v1
kind: Service
metadata: { name: hello, namespace: default }
spec:
  selector: { app: hello }
  ports: [{ name: http, port: 80, targetPort: http }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: hello, namespace: default }
spec:
  host: hello
  subsets:
  - { name: v1, labels: { version: v1 } }
  - { name: v2, labels: { version: v2 } }
`;

const virtualService = (v1: number, v2: number): string => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: hello, namespace: default }
spec:
  hosts: [hello]
  http:
  - match: [{ headers: { x-version: { exact: v2 } } }]
    route: [{ destination: { host: hello, subset: v2 } }]
  - route:
    - { destination: { host: hello, subset: v1 }, weight: ${v1} }
    - { destination: { host: hello, subset: v2 }, weight: ${v2} }
`;

interface Sidecar {
  name: string;
  labels: Record<string, string>;
  appPort?: number;
  inboundPort?: number;
  outboundPort: number;
}

function sidecarBootstrap(s: Sidecar, adminPort: number, xdsPort: number): Json {
  const metadata: Json = {
    NAME: s.name,
    NAMESPACE: 'default',
    LABELS: s.labels,
    INSTANCE_IPS: '127.0.0.1',
    INTERCEPTION_MODE: 'NONE',
    SLOOP_OUTBOUND_PORT: String(s.outboundPort),
  };
  if (s.appPort !== undefined) {
    metadata.POD_PORTS = JSON.stringify([{ name: 'http', containerPort: s.appPort, protocol: 'TCP' }]);
    metadata.SLOOP_ENDPOINT_PORTS = { [String(s.appPort)]: s.inboundPort };
  }
  // The client's sidecar speaks delta xDS (and so takes its route tables as VHDS); the services' speak SotW.
  return adsBootstrap({ adminPort, adsPort: xdsPort, maxBackOff: '0.5s', apiType: s.name === 'client' ? 'DELTA_GRPC' : 'GRPC', node: { id: `sidecar~127.0.0.1~${s.name}.default~default.svc.cluster.local`, cluster: s.name, metadata } });
}

describe('sloop controlplane: a mesh of sloop proxies from Istio YAML', () => {
  let dir: string;
  let cp: ChildProcess;
  let cpOut = '';
  let v1: HttpUpstream;
  let v2: HttpUpstream;
  const sidecars: ProxyHandle[] = [];
  let outbound: number;

  /** Requests through the client's sidecar as its HTTP proxy, counting which version answered. */
  const tally = async (n: number, headers: string[] = []): Promise<Record<string, number>> => {
    const counts: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      const r = await curl(['-s', '-x', `http://127.0.0.1:${outbound}`, ...headers.flatMap((h) => ['-H', h]), `http://hello/t${i}`]);
      assert.equal(r.status, 200, `${r.status} ${r.text}`);
      const who = String(r.headers['x-upstream']);
      counts[who] = (counts[who] ?? 0) + 1;
    }
    return counts;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sloop-cp-'));
    await writeFile(join(dir, 'hello.yaml'), SERVICE);
    await writeFile(join(dir, 'hello-vs.yaml'), virtualService(100, 0));
    v1 = await startHttpUpstream({ name: 'v1' });
    v2 = await startHttpUpstream({ name: 'v2' });
    const [xdsPort, out, in1, in2, a0, a1, a2] = await freePorts(7);
    outbound = out;
    cp = spawn(SLOOP_BIN, ['controlplane', '--config', dir, '--xds-address', `127.0.0.1:${xdsPort}`, '-l', 'debug'], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    cp.stdout?.on('data', (d: Buffer) => (cpOut += d.toString()));
    cp.stderr?.on('data', (d: Buffer) => (cpOut += d.toString()));
    await waitUntil(() => (cpOut.includes('control plane ready') ? true : undefined), { what: 'the control plane to listen', timeoutMs: 15_000 });
    const specs: Sidecar[] = [
      { name: 'client', labels: { app: 'client' }, outboundPort: out },
      { name: 'hello-v1', labels: { app: 'hello', version: 'v1' }, appPort: v1.port, inboundPort: in1, outboundPort: out + 0 },
      { name: 'hello-v2', labels: { app: 'hello', version: 'v2' }, appPort: v2.port, inboundPort: in2, outboundPort: out + 0 },
    ];
    const admins = [a0, a1, a2];
    // Only the client's outbound port is used; the services' sidecars get ports of their own so nothing collides.
    const [o1, o2] = await freePorts(2);
    specs[1].outboundPort = o1;
    specs[2].outboundPort = o2;
    for (let i = 0; i < specs.length; i++) sidecars.push(await startProxy(sidecarBootstrap(specs[i], admins[i], xdsPort)));
  });

  after(async () => {
    for (const s of sidecars) await s.stop();
    cp?.kill('SIGTERM');
    await v1?.close();
    await v2?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('routes the client\'s calls through the service sidecars, as the VirtualService says', async () => {
    await waitUntil(async () => {
      const r = await curl(['-s', '-x', `http://127.0.0.1:${outbound}`, 'http://hello/ready']);
      return r.status === 200 ? r : undefined;
    }, { what: `hello reachable through the mesh; control plane log:\n${cpOut.slice(-2000)}`, timeoutMs: 20_000 });
    assert.deepEqual(await tally(6), { v1: 6 });
    assert.deepEqual(await tally(3, ['x-version: v2']), { v2: 3 });
    // The app saw the request through its own sidecar (x-forwarded-proto and a request id added on the way).
    const seen = v1.requests.at(-1)!;
    assert.match(seen.headerMap['x-request-id'] ?? '', /^[0-9a-f-]{36}$/);
  });

  it('an edited VirtualService shifts traffic; an invalid edit is rejected and the last good config keeps serving', async () => {
    await writeFile(join(dir, 'hello-vs.yaml'), virtualService(0, 100));
    await waitUntil(async () => {
      const c = await tally(3);
      return c.v2 === 3 ? c : undefined;
    }, { what: 'all traffic on v2 after the edit', timeoutMs: 15_000 });
    await writeFile(join(dir, 'hello-vs.yaml'), virtualService(0, 100).replace('weight: 100', 'weight: lots'));
    await waitUntil(() => (/config change rejected/.test(cpOut) ? true : undefined), { what: 'the control plane to reject the edit' });
    assert.match(cpOut, /hello-vs\.yaml:\d+:\d+/);
    assert.deepEqual(await tally(3), { v2: 3 });
  });

  it('the delta sidecar gets its route tables as VHDS: tables with `vhds` over ADS, virtual hosts on their own, merged in its config dump', async () => {
    const dump = (await (await fetch(`http://127.0.0.1:${sidecars[0]!.adminPort}/config_dump`)).json()) as { configs: Array<Record<string, unknown>> };
    const routes = dump.configs.find((c) => String(c['@type']).endsWith('RoutesConfigDump')) as { dynamic_route_configs: Array<{ route_config: { name: string; vhds?: { config_source?: { ads?: object } }; virtual_hosts: Array<{ name: string; domains: string[] }> } }> };
    // Explicit mode: the sidecar's outbound HTTP proxy port has the route table `http_proxy` (every service).
    const port80 = routes.dynamic_route_configs.map((d) => d.route_config).find((rc) => rc.name === 'http_proxy');
    assert.ok(port80, 'route table "http_proxy" in the dump');
    assert.ok(port80.vhds?.config_source?.ads, 'the table says its virtual hosts come from VHDS over ADS');
    assert.ok(port80.virtual_hosts.some((vh) => vh.domains.includes('hello.default.svc.cluster.local')), 'the hello virtual host, sent over VHDS, is merged in');
    const stats = await (await fetch(`http://127.0.0.1:${sidecars[0]!.adminPort}/stats`)).text();
    assert.match(stats, /rds\.http_proxy\.config_reload: [1-9]/);
  });

  it('security: AuthorizationPolicy and RequestAuthentication are enforced on the service sidecars\' inbound side', async (t) => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwks = JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), alg: 'RS256', use: 'sig' }] });
    const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const token = (sub: string) => {
      const signed = `${b64({ alg: 'RS256', typ: 'JWT' })}.${b64({ iss: 'https://issuer.test', sub, exp: Math.floor(Date.now() / 1000) + 600 })}`;
      return `${signed}.${sign('sha256', Buffer.from(signed), privateKey).toString('base64url')}`;
    };
    // The issuer's key set is served outside the mesh: the control plane fetches it (as istiod does) and inlines it.
    const issuer = createHttpServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(jwks));
    await new Promise<void>((r) => issuer.listen(0, '127.0.0.1', r));
    const jwksUri = `http://127.0.0.1:${(issuer.address() as AddressInfo).port}/jwks.json`;
    t.after(() => {
      issuer.closeAllConnections();
      issuer.close();
    });
    await writeFile(join(dir, 'hello-vs.yaml'), virtualService(0, 100));
    await writeFile(join(dir, 'security.yaml'), `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-admin, namespace: default }
spec:
  selector: { matchLabels: { app: hello } }
  action: DENY
  rules:
  - to: [{ operation: { paths: ["/admin*"] } }]
  - from: [{ source: { notRequestPrincipals: ["https://issuer.test/alice"] } }]
    to: [{ operation: { paths: ["/secure*"] } }]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: { name: jwt, namespace: default }
spec:
  selector: { matchLabels: { app: hello } }
  jwtRules:
  - issuer: https://issuer.test
    jwksUri: ${jwksUri}
`);
    const get = (path: string, headers: string[] = []) => curl(['-s', '-x', `http://127.0.0.1:${outbound}`, ...headers.flatMap((h) => ['-H', h]), `http://hello${path}`]);
    await waitUntil(async () => ((await get('/admin/x')).status === 403 ? true : undefined), { what: `/admin denied; control plane log:\n${cpOut.slice(-2000)}`, timeoutMs: 15_000 });
    assert.equal((await get('/t')).status, 200);
    assert.equal((await get('/secure')).status, 403, 'no token: no request principal');
    assert.equal((await get('/secure', [`authorization: Bearer ${token('bob')}`])).status, 403, 'a valid token of another principal');
    await waitUntil(async () => ((await get('/secure', [`authorization: Bearer ${token('alice')}`])).status === 200 ? true : undefined), { what: 'the fetched key set verifying alice\'s token', timeoutMs: 15_000 });
    assert.equal((await get('/t', [`authorization: Bearer ${token('alice')}x`])).status, 401, 'a bad token is rejected');
    await unlink(join(dir, 'security.yaml'));
    await waitUntil(async () => ((await get('/admin/x')).status === 200 ? true : undefined), { what: 'policies removed', timeoutMs: 15_000 });
  });
});
