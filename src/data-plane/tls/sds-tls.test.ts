import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, type webcrypto } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../shared/log.ts';
import { ConfigError } from '../../shared/errors.ts';
import { createSelfSignedCa, type SigningCa } from '../../control-plane/ca/root.ts';
import { signWorkloadCsr } from '../../control-plane/ca/issue.ts';
import { makeCsr } from '../../control-plane/ca/testdata/csr.ts';
import { unpackAny, packAny } from '../../xds/any.ts';
import type { DownstreamTlsContext__Output } from '../../xds/gen/envoy/extensions/transport_sockets/tls/v3/DownstreamTlsContext.ts';
import { checkSvid, completeServerHandshake, createDownstreamTls, type DownstreamTls } from './context.ts';
import { SecretManager, tlsCertificateSecret, validationContextSecret } from './secrets.ts';
import { SdsTls, sdsReferences } from './sds-tls.ts';
import { resolveDataSource } from '../data-source.ts';

const ID = 'spiffe://cluster.local/ns/default/sa/web';
let dir: string;
let ca: SigningCa;

async function issue(id = ID): Promise<{ chain: string; key: string; serial: string }> {
  const { csrPem, keys } = await makeCsr({ sans: [{ type: 'url', value: id }] });
  const svid = await signWorkloadCsr(ca, { csrPem, identity: { namespace: 'default', serviceAccount: id.split('/').pop()! } }, { nowMs: Date.now });
  const pkcs8 = Buffer.from(await crypto.subtle.exportKey('pkcs8', (keys as webcrypto.CryptoKeyPair).privateKey));
  const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }) as string;
  return { chain: svid.certChainPem.join('\n'), key, serial: svid.serialNumber };
}

const ADS = { ads: {} };
const ctxJson = {
  common_tls_context: {
    tls_certificate_sds_secret_configs: [{ name: 'default', sds_config: ADS }],
    validation_context_sds_secret_config: { name: 'ROOTCA', sds_config: ADS },
  },
};
const DTC = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
const ctx = unpackAny<DownstreamTlsContext__Output>(packAny(DTC, ctxJson));
const readSource = (ds: Parameters<typeof resolveDataSource>[0]): Buffer | undefined => resolveDataSource(ds);

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sloop-sds-tls-'));
  ca = await createSelfSignedCa(dir, { nowMs: () => Date.now() - 3600_000 });
});
after(() => rm(dir, { recursive: true, force: true }));

describe('SecretManager', () => {
  it('notifies subscribers; the bootstrap wins over other sources; reserved names are not taken by ADS', () => {
    const m = new SecretManager();
    const seen: (string | undefined)[] = [];
    m.subscribe('x', (s) => seen.push(s?.validation_context?.trusted_ca?.inline_string));
    m.set(validationContextSecret('x', 'one'), 'static');
    m.set(validationContextSecret('x', 'two'), 'ads');
    assert.deepEqual(seen, ['one']);
    m.reserve(['default'], 'agent');
    m.set(tlsCertificateSecret('default', 'ads-chain', 'ads-key'), 'ads');
    assert.equal(m.get('default'), undefined);
    m.set(validationContextSecret('default', 'agent'), 'agent', { spiffeTrustDomain: 'cluster.local' });
    assert.equal(m.get('default')?.validation_context?.trusted_ca?.inline_string, 'agent');
    assert.equal(m.spiffeTrustDomain(['x', 'default']), 'cluster.local');
  });

  it('availability: present, pending (reserved, or asked over ADS), unavailable', () => {
    const m = new SecretManager();
    m.set(validationContextSecret('s', 'pem'), 'static');
    m.reserve(['default'], 'agent');
    assert.equal(m.availability({ name: 's', sds_config: null }), 'present');
    assert.equal(m.availability({ name: 'default', sds_config: null }), 'pending');
    const ads = { config_source_specifier: 'ads' } as never;
    assert.equal(m.availability({ name: 'ROOTCA', sds_config: ads }), 'unavailable', 'no ADS stream');
    const asked: string[][] = [];
    m.setAdsRequester((names) => asked.push([...names]));
    assert.equal(m.availability({ name: 'ROOTCA', sds_config: ads }), 'pending');
    assert.equal(m.availability({ name: 'other', sds_config: ads }), 'pending');
    assert.deepEqual(asked, [['ROOTCA'], ['ROOTCA', 'other']]);
  });
});

describe('SecretManager: the control plane\'s ROOTCA over ADS with an agent', () => {
  it('is asked for over ADS and merged with the agent\'s bundle (union of roots); removal restores the agent\'s', async () => {
    const m = new SecretManager();
    const asked: string[][] = [];
    m.setAdsRequester((names) => asked.push([...names]));
    m.reserve(['default', 'ROOTCA'], 'agent');
    const ads = { config_source_specifier: 'ads' } as never;
    assert.equal(m.availability({ name: 'default', sds_config: ads }, 'certificate'), 'pending');
    assert.equal(m.availability({ name: 'ROOTCA', sds_config: ads }, 'validation'), 'pending');
    assert.deepEqual(asked, [['ROOTCA']], 'only the trust bundle is asked of the control plane');
    const otherDir = await mkdtemp(join(tmpdir(), 'sloop-sds-root2-'));
    try {
      const newRoot = (await createSelfSignedCa(otherDir, { nowMs: Date.now })).rootsPem[0];
      m.set(validationContextSecret('ROOTCA', ca.rootsPem[0]), 'agent', { spiffeTrustDomain: 'cluster.local' });
      const seen: number[] = [];
      const count = (): number => (m.get('ROOTCA')!.validation_context!.trusted_ca!.inline_string!.match(/BEGIN CERTIFICATE/g) ?? []).length;
      m.subscribe('ROOTCA', () => seen.push(count()));
      m.set(validationContextSecret('ROOTCA', `${ca.rootsPem[0]}\n${newRoot}`), 'ads'); // old + new root, during a root rotation
      assert.deepEqual(seen, [2], 'each root once');
      assert.equal(m.spiffeTrustDomain(['ROOTCA']), 'cluster.local', 'still the agent\'s SPIFFE bundle');
      m.set(tlsCertificateSecret('default', 'x', 'y'), 'ads');
      assert.equal(m.get('default'), undefined, 'ADS never supplies the agent\'s certificate');
      m.delete('ROOTCA', 'ads');
      assert.deepEqual(seen, [2, 1]);
    } finally {
      await rm(otherDir, { recursive: true, force: true });
    }
  });
});

describe('SdsTls', () => {
  it('sdsReferences lists certificate and validation secrets', () => {
    assert.deepEqual(sdsReferences(ctx.common_tls_context).map((r) => r.name), ['default', 'ROOTCA']);
  });

  it('an unknown secret is still a config error; present secrets build at once', async () => {
    const m = new SecretManager();
    const mk = (): SdsTls<DownstreamTls> =>
      new SdsTls({ common: ctx.common_tls_context, secrets: m, build: (o) => createDownstreamTls(ctx, readSource, o), onUpdate: () => {}, log: silentLogger, where: 'test' });
    assert.throws(mk, (err: unknown) => err instanceof ConfigError && /SDS secret "default" is unknown/.test(err.message));
    const c = await issue();
    m.set(tlsCertificateSecret('default', c.chain, c.key), 'static');
    m.set(validationContextSecret('ROOTCA', ca.rootsPem.join('\n')), 'static');
    const h = mk();
    assert.ok(h.current);
    h.close();
  });

  it('warms until the agent delivers; a bad update keeps the last context', async () => {
    const m = new SecretManager();
    m.reserve(['default', 'ROOTCA'], 'agent');
    const updates: DownstreamTls[] = [];
    const h = new SdsTls({ common: ctx.common_tls_context, secrets: m, build: (o) => createDownstreamTls(ctx, readSource, o), onUpdate: (t) => updates.push(t), log: silentLogger, where: 'test' });
    assert.equal(h.current, undefined);
    assert.equal(await h.waitReady(20), false, 'times out while the secrets are missing');
    const c = await issue();
    m.set(validationContextSecret('ROOTCA', ca.rootsPem.join('\n')), 'agent');
    m.set(tlsCertificateSecret('default', c.chain, c.key), 'agent');
    assert.equal(await h.waitReady(1000), true);
    assert.equal(updates.length, 1, 'two secrets set in one tick: one rebuild');
    const good = h.current;
    const other = await issue();
    m.set(tlsCertificateSecret('default', c.chain, other.key), 'agent'); // key does not match the certificate
    await new Promise((r) => setImmediate(r));
    assert.equal(h.current, good, 'the last good context stays');
    h.close();
  });

  it('rotation: new connections get the new certificate, an open connection keeps working', async () => {
    const m = new SecretManager();
    const first = await issue();
    m.set(validationContextSecret('ROOTCA', ca.rootsPem.join('\n')), 'agent', { spiffeTrustDomain: 'cluster.local' });
    m.set(tlsCertificateSecret('default', first.chain, first.key), 'agent');
    let current: DownstreamTls | undefined;
    const h = new SdsTls({ common: ctx.common_tls_context, secrets: m, build: (o) => createDownstreamTls(ctx, readSource, o), onUpdate: (t) => (current = t), log: silentLogger, where: 'test' });
    current = h.current;
    // A listener's way: a TLSSocket per accepted connection with the context current at accept time.
    const server = net.createServer((raw) => {
      const t = new tls.TLSSocket(raw, { isServer: true, secureContext: current!.secureContext });
      t.on('secure', () => completeServerHandshake(t, false));
      t.on('data', (d) => t.write(d)); // echo
      t.on('error', () => {});
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as net.AddressInfo).port;
    const connect = async (): Promise<tls.TLSSocket> => {
      const c = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
      await once(c, 'secureConnect');
      return c;
    };
    const echo = async (c: tls.TLSSocket, text: string): Promise<string> => {
      c.write(text);
      const [d] = (await once(c, 'data')) as [Buffer];
      return d.toString();
    };
    try {
      const c1 = await connect();
      assert.equal(new X509Certificate(c1.getPeerCertificate().raw).serialNumber.toLowerCase(), first.serial.toLowerCase());
      assert.equal(await echo(c1, 'before'), 'before');
      const second = await issue();
      m.set(tlsCertificateSecret('default', second.chain, second.key), 'agent');
      await new Promise((r) => setImmediate(r));
      const c2 = await connect();
      assert.equal(new X509Certificate(c2.getPeerCertificate().raw).serialNumber.toLowerCase(), second.serial.toLowerCase());
      assert.equal(await echo(c1, 'after'), 'after', 'the connection made before the rotation still works');
      c1.destroy();
      c2.destroy();
    } finally {
      server.close();
      h.close();
    }
  });
});

describe('checkSvid (peers validated with a SPIFFE trust bundle)', () => {
  const peer = (subjectaltname: string, isCa = false): tls.PeerCertificate => ({ subjectaltname, ca: isCa }) as unknown as tls.PeerCertificate;
  it('accepts one URI SAN in the trust domain, whatever DNS names come with it', () => {
    assert.equal(checkSvid(peer(`URI:${ID}`), 'cluster.local'), undefined);
    assert.equal(checkSvid(peer(`DNS:web.example, URI:${ID}`), 'cluster.local'), undefined);
  });
  it('refuses another trust domain, zero or two URI SANs, a bare trust domain ID, and CA certificates', () => {
    assert.equal(checkSvid(peer('URI:spiffe://evil.example/ns/default/sa/web'), 'cluster.local')?.stat, 'fail_verify_san');
    assert.equal(checkSvid(peer('URI:spiffe://cluster.local.evil/ns/a/sa/b'), 'cluster.local')?.stat, 'fail_verify_san');
    assert.equal(checkSvid(peer('URI:spiffe://cluster.local/'), 'cluster.local')?.stat, 'fail_verify_san');
    assert.equal(checkSvid(peer('DNS:web.example'), 'cluster.local')?.stat, 'fail_verify_san');
    assert.match(checkSvid(peer(`URI:${ID}, URI:spiffe://cluster.local/ns/default/sa/admin`), 'cluster.local')!.message, /exactly one URI SAN \(found 2\)/);
    assert.equal(checkSvid(peer(`URI:${ID}`, true), 'cluster.local')?.stat, 'fail_verify_error');
  });
});
