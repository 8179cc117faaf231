// Workload identity end to end (docs/identity.md): `sloop controlplane --ca-dir` runs the CA, `sloop token` mints
// bootstrap tokens, and two `sloop proxy` processes run the workload agent (--ca-address, --token-file): each
// generates its own key, gets an X.509-SVID by CreateCertificate, and serves it to its TLS contexts as the SDS
// secrets `default` and `ROOTCA`. Proxy A's cluster speaks ISTIO_MUTUAL-style mTLS to proxy B's listener, which
// requires client certificates. Then: rotation under load with 0 failed requests, and RELIABILITY rows 24–26.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createPrivateKey, X509Certificate, type webcrypto } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request, Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import '../../src/shared/identity/reflect-metadata.ts';
import * as x509 from '@peculiar/x509';
import { startHttpUpstream, type HttpUpstream } from '../helpers/upstreams.ts';
import { makeTestPki } from '../helpers/certs.ts';
import { startProxy, adsBootstrap, bootstrapWith, httpListener, prefixRoute, virtualHost, staticCluster, SLOOP_BIN, type Json, type ProxyHandle } from '../helpers/proxy.ts';
import { curl, rawTcp, runProcess } from '../helpers/clients.ts';
import { freePorts } from '../helpers/ports.ts';
import { waitUntil } from '../helpers/wait.ts';
import { CaCallError, CaClient } from '../../src/data-plane/agent/ca-client.ts';
import { makeCsr } from '../../src/control-plane/ca/testdata/csr.ts';

x509.cryptoProvider.set(globalThis.crypto);

const DOWNSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
const UPSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';
const ID_A = 'spiffe://cluster.local/ns/default/sa/a';
const ID_B = 'spiffe://cluster.local/ns/default/sa/b';
const ADS = { ads: {}, resource_api_version: 'V3' };
const TTL_S = 20;

/** Istio's inbound mTLS context: SDS `default` + `ROOTCA`, client certificates required; `sans` pins the client. */
function inboundMtls(sans: string[] = []): Json {
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': DOWNSTREAM_TLS,
      common_tls_context: {
        tls_certificate_sds_secret_configs: [{ name: 'default', sds_config: ADS }],
        combined_validation_context: {
          default_validation_context: sans.length > 0 ? { match_typed_subject_alt_names: sans.map((s) => ({ san_type: 'URI', matcher: { exact: s } })) } : {},
          validation_context_sds_secret_config: { name: 'ROOTCA', sds_config: ADS },
        },
      },
      require_client_certificate: true,
    },
  };
}

/** Istio's ISTIO_MUTUAL UpstreamTlsContext (clusters.ts istioMutualContext) pinned to `san`. */
function istioMutual(san: string): Json {
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': UPSTREAM_TLS,
      common_tls_context: {
        tls_certificate_sds_secret_configs: [{ name: 'default', sds_config: ADS }],
        combined_validation_context: {
          default_validation_context: { match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { exact: san } }] },
          validation_context_sds_secret_config: { name: 'ROOTCA', sds_config: ADS },
        },
      },
      sni: 'outbound_.80_._.b.default.svc.cluster.local',
    },
  };
}

interface ServedCert {
  serial: string;
  san: string;
}

/** The certificate a TLS port serves, as `openssl s_client` sees it (no client certificate is offered). */
async function servedCert(port: number): Promise<ServedCert> {
  const r = await runProcess('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-showcerts'], { input: '', timeoutMs: 10_000 });
  const pem = r.stdout.toString('utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)?.[0];
  assert.ok(pem, `s_client saw no certificate: ${r.stderr.toString('utf8')}`);
  const cert = new X509Certificate(pem);
  return { serial: cert.serialNumber, san: cert.subjectAltName ?? '' };
}

/** One HTTP/1.1 GET through `port`; resolves with the status (0 on a transport error). */
function get(port: number, path: string, agent: Agent): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path, agent, timeout: 5_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(0));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(0));
    req.end();
  });
}

describe('workload identity: CA, agent, SDS, mTLS between two sloop proxies', () => {
  let dir: string;
  let caDir: string;
  let cp: ChildProcess;
  let cpOut = '';
  let cpPort: number;
  let app: HttpUpstream;
  let proxyA: ProxyHandle;
  let proxyB: ProxyHandle;
  let aPort: number;
  let bStrictPort: number;
  let bLenientPort: number;

  async function mint(sa: string): Promise<string> {
    const r = await runProcess(SLOOP_BIN, ['token', '--ca-dir', caDir, '--namespace', 'default', '--service-account', sa], { timeoutMs: 20_000 });
    assert.equal(r.exitCode, 0, r.stderr.toString('utf8'));
    const token = r.stdout.toString('utf8').trim();
    assert.match(token, /^[A-Za-z0-9_-]{43}$/);
    return token;
  }

  async function agentArgs(sa: string): Promise<string[]> {
    const tokenFile = join(dir, `${sa}.token`);
    await writeFile(tokenFile, `${await mint(sa)}\n`, { mode: 0o600 });
    return ['--ca-address', `127.0.0.1:${cpPort}`, '--token-file', tokenFile, '--namespace', 'default', '--service-account', sa, '--cert-ttl-s', String(TTL_S)];
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sloop-identity-'));
    caDir = join(dir, 'ca');
    const cfgDir = join(dir, 'config');
    await runProcess('mkdir', ['-p', cfgDir]);
    await writeFile(join(cfgDir, 'svc.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: { name: b, namespace: default }\nspec:\n  selector: { app: b }\n  ports: [{ name: http, port: 80 }]\n');
    let adminA: number, adminB: number;
    [cpPort, aPort, bStrictPort, bLenientPort, adminA, adminB] = await freePorts(6);
    cp = spawn(SLOOP_BIN, ['controlplane', '--config', cfgDir, '--xds-address', `127.0.0.1:${cpPort}`, '--ca-dir', caDir, '--max-cert-ttl-s', '3600', '-l', 'debug'], { stdio: ['ignore', 'pipe', 'pipe'] });
    cp.stdout!.on('data', (d: Buffer) => (cpOut += d.toString()));
    cp.stderr!.on('data', (d: Buffer) => (cpOut += d.toString()));
    await waitUntil(() => cpOut.includes('control plane ready'), { timeoutMs: 20_000, what: 'control plane ready' });
    app = await startHttpUpstream({ name: 'app-b' });

    proxyB = await startProxy(
      bootstrapWith({
        adminPort: adminB,
        listeners: [
          httpListener({ name: 'inbound-strict', port: bStrictPort, virtualHosts: [virtualHost('app', ['*'], [prefixRoute('/', 'app')])], transportSocket: inboundMtls([ID_A]) }),
          httpListener({ name: 'inbound', port: bLenientPort, virtualHosts: [virtualHost('app', ['*'], [prefixRoute('/', 'app')])], transportSocket: inboundMtls() }),
        ],
        clusters: [staticCluster('app', [['127.0.0.1', app.port]])],
      }),
      { args: await agentArgs('b'), readyTimeoutMs: 20_000 },
    );
    proxyA = await startProxy(
      bootstrapWith({
        adminPort: adminA,
        listeners: [
          httpListener({
            name: 'outbound',
            port: aPort,
            virtualHosts: [virtualHost('b', ['*'], [prefixRoute('/lenient', 'b-lenient'), prefixRoute('/', 'b')])],
          }),
        ],
        clusters: [
          // A few requests per connection, so new upstream connections (with the current certificate) keep being made.
          staticCluster('b', [['127.0.0.1', bStrictPort]], { transport_socket: istioMutual(ID_B), max_requests_per_connection: 5 }),
          staticCluster('b-lenient', [['127.0.0.1', bLenientPort]], { transport_socket: istioMutual(ID_B) }),
        ],
      }),
      { args: await agentArgs('a'), readyTimeoutMs: 20_000 },
    );
  });

  after(async () => {
    await proxyA?.stop();
    await proxyB?.stop();
    await app?.close();
    if (cp && cp.exitCode === null) {
      cp.kill('SIGTERM');
      await new Promise((r) => cp.once('exit', r));
    }
    await rm(dir, { recursive: true, force: true });
  });

  it('A reaches B\'s app over mTLS with agent-issued SVIDs; B\'s SAN pin admits A\'s SPIFFE ID', async () => {
    const r = await curl([`http://127.0.0.1:${aPort}/hello`]);
    assert.equal(r.status, 200, `${r.stderr}\n${proxyA.stderr()}`);
    assert.equal(r.json().upstream, 'app-b');
    // B's listener serves B's own SVID, issued by the control plane's root.
    const served = await servedCert(bStrictPort);
    assert.equal(served.san, `URI:${ID_B}`);
    const root = new X509Certificate(await readFile(join(caDir, 'root-cert.pem')));
    const stats = await proxyB.stats();
    assert.ok((stats[`listener.127.0.0.1_${bStrictPort}.ssl.handshake`] ?? 0) >= 1, 'B terminated TLS');
    assert.ok(root.ca);
    assert.match(cpOut, /certificate issued/);
    // /config_dump shows the agent's secrets as Envoy's SecretsConfigDump, the key redacted.
    const dump = JSON.parse((await proxyB.admin('/config_dump?resource=dynamic_active_secrets')).text) as { configs: { name: string; version_info: string; secret: Json }[] };
    const byName = new Map(dump.configs.map((c) => [c.name, c]));
    const workload = byName.get('default')!;
    const tlsCert = workload.secret.tls_certificate as { certificate_chain: { inline_string: string }; private_key: { inline_string: string } };
    assert.equal(workload.version_info.toLowerCase(), served.serial.toLowerCase());
    assert.equal(new X509Certificate(tlsCert.certificate_chain.inline_string).subjectAltName, `URI:${ID_B}`);
    assert.equal(tlsCert.private_key.inline_string, '[redacted]');
    assert.ok(!JSON.stringify(dump).includes('PRIVATE KEY'), 'no private key in the admin output');
    assert.ok(byName.has('ROOTCA'));
  });

  it('B\'s SAN pin refuses a workload with another SPIFFE ID (a valid SVID for sa/c, from the same CA)', async () => {
    const c = await svidFor('c');
    const strict = await curl(['-k', '--cert', c.certPath, '--key', c.keyPath, `https://127.0.0.1:${bStrictPort}/`]);
    assert.notEqual(strict.status, 200);
    const lenient = await curl(['-k', '--cert', c.certPath, '--key', c.keyPath, `https://127.0.0.1:${bLenientPort}/`]);
    assert.equal(lenient.status, 200, 'the same certificate passes where no SAN pin applies');
  });

  /** A real SVID from the running CA for `sa`, with a key this test holds. */
  async function svidFor(sa: string): Promise<{ certPath: string; keyPath: string }> {
    const token = await mint(sa);
    const { csrPem, keys } = await makeCsr({ sans: [{ type: 'url', value: `spiffe://cluster.local/ns/default/sa/${sa}` }] });
    const client = new CaClient({ address: `127.0.0.1:${cpPort}` });
    try {
      const chain = await client.createCertificate({ csrPem, validitySeconds: 600, token });
      return writePair(sa, chain.slice(0, -1).join(''), keys.privateKey);
    } finally {
      client.close();
    }
  }

  async function writePair(name: string, certPem: string, key: webcrypto.CryptoKey): Promise<{ certPath: string; keyPath: string }> {
    const pkcs8 = Buffer.from(await crypto.subtle.exportKey('pkcs8', key));
    const certPath = join(dir, `${name}.crt`);
    const keyPath = join(dir, `${name}.key`);
    await writeFile(certPath, certPem);
    await writeFile(keyPath, createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }));
    return { certPath, keyPath };
  }

  describe('RELIABILITY rows 24–26: what B\'s mTLS listener refuses', () => {
    /** A leaf signed by the mesh root itself (the test reads the CA's key from --ca-dir), varying one property. */
    async function oddCert(name: string, o: { sans?: string[]; notBefore?: Date; notAfter?: Date; ca?: boolean }): Promise<{ certPath: string; keyPath: string }> {
      const rootPem = await readFile(join(caDir, 'ca-cert.pem'), 'utf8');
      const root = new x509.X509Certificate(rootPem);
      const caKeyDer = createPrivateKey(await readFile(join(caDir, 'ca-key.pem'))).export({ type: 'pkcs8', format: 'der' });
      const signingKey = await crypto.subtle.importKey('pkcs8', caKeyDer, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
      const keys = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
      const now = Date.now();
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: `0${Math.floor(Math.random() * 1e9).toString(16)}`,
        subject: '',
        issuer: root.subjectName,
        notBefore: o.notBefore ?? new Date(now - 60_000),
        notAfter: o.notAfter ?? new Date(now + 3600_000),
        publicKey: keys.publicKey,
        signingKey,
        signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as webcrypto.EcdsaParams,
        extensions: [
          new x509.BasicConstraintsExtension(o.ca === true, undefined, true),
          new x509.KeyUsagesExtension(o.ca === true ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.digitalSignature : x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
          new x509.SubjectAlternativeNameExtension((o.sans ?? ['spiffe://cluster.local/ns/default/sa/tester']).map((value) => ({ type: 'url' as const, value })), true),
          await x509.AuthorityKeyIdentifierExtension.create(root.publicKey),
        ],
      });
      return writePair(name, cert.toString('pem') + '\n', keys.privateKey);
    }

    async function statusWith(pair: { certPath: string; keyPath: string }): Promise<number> {
      return (await curl(['-k', '--cert', pair.certPath, '--key', pair.keyPath, `https://127.0.0.1:${bLenientPort}/`])).status;
    }

    it('a well-formed SVID signed by the mesh root is accepted (the control for the rows below)', async () => {
      assert.equal(await statusWith(await oddCert('good', {})), 200);
    });

    it('plaintext to the TLS-required port gets no HTTP answer', async () => {
      const before = app.requests.length;
      const r = await rawTcp(bLenientPort, 'GET / HTTP/1.1\r\nhost: b\r\n\r\n', { timeoutMs: 3_000 });
      assert.ok(!r.data.toString('latin1').startsWith('HTTP/'), r.data.toString('latin1'));
      assert.equal(app.requests.length, before);
    });

    it('no client certificate is refused', async () => {
      assert.notEqual((await curl(['-k', `https://127.0.0.1:${bLenientPort}/`])).status, 200);
    });

    it('another trust domain is refused, though signed by the mesh root', async () => {
      const before = (await proxyB.stats())[`listener.127.0.0.1_${bLenientPort}.ssl.fail_verify_san`] ?? 0;
      assert.notEqual(await statusWith(await oddCert('evil-td', { sans: ['spiffe://evil.example/ns/default/sa/tester'] })), 200);
      assert.equal((await proxyB.stats())[`listener.127.0.0.1_${bLenientPort}.ssl.fail_verify_san`], before + 1);
    });

    it('an expired certificate is refused', async () => {
      const now = Date.now();
      assert.notEqual(await statusWith(await oddCert('expired', { notBefore: new Date(now - 7200_000), notAfter: new Date(now - 3600_000) })), 200);
    });

    it('two URI SANs are refused as a client certificate', async () => {
      assert.notEqual(await statusWith(await oddCert('two-uris', { sans: ['spiffe://cluster.local/ns/default/sa/tester', 'spiffe://cluster.local/ns/default/sa/admin'] })), 200);
    });

    it('a CA certificate as the leaf is refused', async () => {
      assert.notEqual(await statusWith(await oddCert('ca-leaf', { ca: true })), 200);
    });

    it('the CA refuses a CSR for another identity than the token\'s, and clamps a TTL above the maximum', async () => {
      const token = await mint('tester');
      const client = new CaClient({ address: `127.0.0.1:${cpPort}` });
      try {
        const other = await makeCsr({ sans: [{ type: 'url', value: ID_A }] });
        await assert.rejects(client.createCertificate({ csrPem: other.csrPem, validitySeconds: 60, token }), (err: unknown) => {
          assert.ok(err instanceof CaCallError);
          assert.equal(err.code, 7 /* PERMISSION_DENIED */);
          assert.match(err.message, /CSR asks for spiffe:\/\/cluster\.local\/ns\/default\/sa\/a but .*sa\/tester/);
          return true;
        });
        await assert.rejects(client.createCertificate({ csrPem: other.csrPem, validitySeconds: 60, token: 'A'.repeat(43) }), (err: unknown) => err instanceof CaCallError && err.code === 16 /* UNAUTHENTICATED */);
        const mine = await makeCsr({ sans: [{ type: 'url', value: 'spiffe://cluster.local/ns/default/sa/tester' }] });
        const chain = await client.createCertificate({ csrPem: mine.csrPem, validitySeconds: 30 * 24 * 3600, token });
        const ttlMs = Date.parse(new X509Certificate(chain[0]).validTo) - Date.now();
        assert.ok(ttlMs <= 3600_000 && ttlMs > 3500_000, `TTL ${ttlMs} ms is clamped to --max-cert-ttl-s 3600`);
      } finally {
        client.close();
      }
      assert.match(cpOut, /certificate refused/);
    });
  });

  it('SDS over ADS: a proxy without an agent gets `ROOTCA` (the CA\'s trust bundle) from the control plane', async () => {
    // The listener's own certificate is a static secret (any PKI); its trust bundle is only named, sds_config.ads.
    const pki = await makeTestPki(join(dir, 'pki'));
    const [adminC, inC, outC] = await freePorts(3);
    const boot = adsBootstrap({
      adminPort: adminC,
      adsPort: cpPort,
      node: { id: 'sidecar~127.0.0.1~c.default~default.svc.cluster.local', cluster: 'c', metadata: { NAMESPACE: 'default', INTERCEPTION_MODE: 'NONE', INSTANCE_IPS: '127.0.0.1', SLOOP_OUTBOUND_PORT: String(outC) } },
    });
    const staticResources = boot.static_resources as Json;
    staticResources.secrets = [{ name: 'own-cert', tls_certificate: { certificate_chain: { filename: pki.server.certPath }, private_key: { filename: pki.server.keyPath } } }];
    staticResources.clusters = [...(staticResources.clusters as Json[]), staticCluster('app', [['127.0.0.1', app.port]])];
    staticResources.listeners = [
      httpListener({
        name: 'mesh-in',
        port: inC,
        virtualHosts: [virtualHost('app', ['*'], [prefixRoute('/', 'app')])],
        transportSocket: {
          name: 'envoy.transport_sockets.tls',
          typed_config: {
            '@type': DOWNSTREAM_TLS,
            common_tls_context: {
              tls_certificate_sds_secret_configs: [{ name: 'own-cert' }],
              validation_context_sds_secret_config: { name: 'ROOTCA', sds_config: ADS },
            },
            require_client_certificate: true,
          },
        },
      }),
    ];
    const proxyC = await startProxy(boot, { readyTimeoutMs: 25_000 });
    try {
      // A client certificate from the mesh CA is trusted; one from another CA is not.
      const mesh = await svidFor('mesh-client');
      const ok = await curl(['-k', '--cert', mesh.certPath, '--key', mesh.keyPath, `https://127.0.0.1:${inC}/`]);
      assert.equal(ok.status, 200, `${ok.stderr}\n${proxyC.stderr().slice(-3000)}`);
      const foreign = await curl(['-k', '--cert', pki.client.certPath, '--key', pki.client.keyPath, `https://127.0.0.1:${inC}/`]);
      assert.notEqual(foreign.status, 200);
    } finally {
      await proxyC.stop();
    }
  });

  it(`rotation under load: ${TTL_S} s certificates renew at half life, 0 failed requests, the served serial changes`, async () => {
    const first = await servedCert(bStrictPort);
    const agent = new Agent({ keepAlive: true, maxSockets: 4 });
    const statuses: number[] = [];
    let stop = false;
    const loops = [0, 1, 2].map(async () => {
      while (!stop) {
        statuses.push(await get(aPort, '/load', agent));
        await new Promise((r) => setTimeout(r, 20));
      }
    });
    // Half of a 20 s life (±5 %) after issue: B's served certificate changes within ~15 s.
    let rotated: ServedCert | undefined;
    await waitUntil(
      async () => {
        const now = await servedCert(bStrictPort);
        if (now.serial !== first.serial) rotated = now;
        return rotated !== undefined;
      },
      { timeoutMs: 20_000, intervalMs: 500, what: 'B to serve a rotated certificate' },
    );
    // Keep the load on a little past the rotation, so connections made with the new certificates carry traffic too.
    await new Promise((r) => setTimeout(r, 2_000));
    stop = true;
    await Promise.all(loops);
    agent.destroy();
    assert.equal(rotated!.san, `URI:${ID_B}`);
    const failed = statuses.filter((s) => s !== 200);
    assert.ok(statuses.length > 100, `only ${statuses.length} requests`);
    assert.equal(failed.length, 0, `${failed.length} of ${statuses.length} requests failed: ${[...new Set(failed)]}`);
    assert.match(proxyA.stderr() + proxyB.stderr(), /workload certificate rotated/);
  });
});
