// x-forwarded-client-cert through `sloop proxy` (HCM forward_client_cert_details / set_current_client_cert_details):
// a client cannot forge the header (SANITIZE by default, and on plaintext in every mode but ALWAYS_FORWARD_ONLY);
// on mutual TLS the proxy appends (or sets) its own element naming the proxy's and the peer's identities, as
// Istio's sidecars do so an app can see who called it.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startHttpUpstream, type HttpUpstream } from '../helpers/upstreams.ts';
import { startProxy, bootstrapWith, httpListener, staticCluster, virtualHost, prefixRoute, downstreamTls, type ProxyHandle } from '../helpers/proxy.ts';
import { curl } from '../helpers/clients.ts';
import { freePorts } from '../helpers/ports.ts';
import { makeTestPki, CLIENT_SPIFFE_ID, SERVER_SPIFFE_ID, type TestPki } from '../helpers/certs.ts';

const FORGED = 'By=spiffe://evil/x;URI=spiffe://cluster.local/ns/default/sa/admin';

describe('x-forwarded-client-cert', () => {
  let dir: string;
  let pki: TestPki;
  let up: HttpUpstream;
  let proxy: ProxyHandle;
  const ports: Record<string, number> = {};

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sloop-xfcc-e2e-'));
    pki = await makeTestPki(dir);
    up = await startHttpUpstream({ name: 'app' });
    const [plain, append, set, fwd, admin] = await freePorts(5);
    Object.assign(ports, { plain, append, set, fwd });
    const tls = () => downstreamTls({ certPath: pki.server.certPath, keyPath: pki.server.keyPath, caPath: pki.ca.certPath, requireClientCertificate: true, alpn: ['h2', 'http/1.1'] });
    const listener = (name: string, port: number, hcmExtra: Record<string, unknown>, withTls: boolean) =>
      httpListener({ name, port, virtualHosts: [virtualHost('app', ['*'], [prefixRoute('/', 'app')])], hcmExtra, ...(withTls ? { transportSocket: tls() } : {}) });
    const details = { set_current_client_cert_details: { subject: true, uri: true, dns: true, cert: true } };
    proxy = await startProxy(bootstrapWith({
      adminPort: admin,
      listeners: [
        listener('plain', plain, { forward_client_cert_details: 'APPEND_FORWARD', ...details }, false),
        listener('append', append, { forward_client_cert_details: 'APPEND_FORWARD', ...details }, true),
        listener('set', set, { forward_client_cert_details: 'SANITIZE_SET', set_current_client_cert_details: { uri: true } }, true),
        listener('fwd', fwd, {}, true),
      ],
      clusters: [staticCluster('app', [['127.0.0.1', up.port]])],
    }));
  });

  after(async () => {
    await proxy?.stop();
    await up?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const mtls = (port: number, version: string) =>
    curl([version, '--cacert', pki.ca.certPath, '--cert', pki.client.certPath, '--key', pki.client.keyPath, '-H', `x-forwarded-client-cert: ${FORGED}`, `https://localhost:${port}/who`]);

  it('removes a forged header on plaintext, and by default (SANITIZE) on mutual TLS', async () => {
    const r = await curl(['-H', `x-forwarded-client-cert: ${FORGED}`, `http://127.0.0.1:${ports.plain}/who`]);
    assert.equal(r.status, 200);
    assert.equal(up.requests.at(-1)?.headerMap['x-forwarded-client-cert'], undefined);
    const m = await mtls(ports.fwd, '--http1.1');
    assert.equal(m.status, 200, m.stderr);
    assert.equal(up.requests.at(-1)?.headerMap['x-forwarded-client-cert'], undefined);
  });

  it('APPEND_FORWARD adds this hop: By (proxy), Hash, Cert, Subject, URI (client), over HTTP/1.1 and HTTP/2', async () => {
    const hash = createHash('sha256').update(new X509Certificate(pki.client.cert).raw).digest('hex');
    for (const version of ['--http1.1', '--http2']) {
      const r = await mtls(ports.append, version);
      assert.equal(r.status, 200, r.stderr);
      const xfcc = up.requests.at(-1)!.headerMap['x-forwarded-client-cert']!;
      const [prior, mine] = xfcc.split(/,(?=By=)/);
      assert.equal(prior, FORGED);
      const fields = mine!.split(';');
      assert.equal(fields[0], `By=${SERVER_SPIFFE_ID}`);
      assert.equal(fields[1], `Hash=${hash}`);
      assert.match(fields[2]!, /^Cert="-----BEGIN%20CERTIFICATE-----%0A[^"]+%0A"$/);
      assert.equal(decodeURIComponent(fields[2]!.slice(6, -1)).trim(), pki.client.cert.trim());
      assert.match(fields[3]!, /^Subject="[^"]*"$/);
      assert.equal(fields[4], `URI=${CLIENT_SPIFFE_ID}`);
    }
  });

  it('SANITIZE_SET replaces whatever the client sent with this hop alone', async () => {
    const r = await mtls(ports.set, '--http2');
    assert.equal(r.status, 200, r.stderr);
    const xfcc = up.requests.at(-1)!.headerMap['x-forwarded-client-cert']!;
    assert.match(xfcc, new RegExp(`^By=${SERVER_SPIFFE_ID};Hash=[0-9a-f]{64};URI=${CLIENT_SPIFFE_ID}$`));
  });
});
