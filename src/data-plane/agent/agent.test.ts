import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { silentLogger } from '../../shared/log.ts';
import { addCaService, loadCaServiceDefinition } from '../../control-plane/ca/service.ts';
import { createSelfSignedCa, type SigningCa } from '../../control-plane/ca/root.ts';
import { signWorkloadCsr } from '../../control-plane/ca/issue.ts';
import { TokenStore } from '../../control-plane/ca/tokens.ts';
import { makeCsr } from '../../control-plane/ca/testdata/csr.ts';
import { SecretManager } from '../tls/secrets.ts';
import { ROOT_SECRET, WORKLOAD_SECRET, WorkloadAgent } from './agent.ts';

const ID = 'spiffe://cluster.local/ns/shop/sa/cart';
const identity = { namespace: 'shop', serviceAccount: 'cart' };
let dir: string;
let ca: SigningCa;
let tokens: TokenStore;
let token: string;
const servers: grpc.Server[] = [];

async function serve(register: (s: grpc.Server) => void): Promise<string> {
  const s = new grpc.Server();
  register(s);
  servers.push(s);
  const port = await new Promise<number>((resolve, reject) => s.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  return `127.0.0.1:${port}`;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sloop-agent-'));
  ca = await createSelfSignedCa(dir, { nowMs: () => Date.now() - 3600_000 });
  tokens = await TokenStore.open({ dir });
  token = await tokens.mint(identity);
});
after(async () => {
  for (const s of servers) s.forceShutdown();
  await rm(dir, { recursive: true, force: true });
});

async function until(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('WorkloadAgent', () => {
  it('installs ROOTCA and default with its own key, and renews at half life with a fresh key', async () => {
    const address = await serve((s) => addCaService(s, ca, tokens, { log: silentLogger }));
    const secrets = new SecretManager();
    const agent = new WorkloadAgent({ caAddress: address, token: () => token, trustDomain: 'cluster.local', identity, secrets, log: silentLogger, ttlSeconds: 2 });
    assert.equal(secrets.sourceOf(WORKLOAD_SECRET), 'agent', 'names are reserved before the first certificate');
    const changes: string[] = [];
    secrets.subscribe(WORKLOAD_SECRET, () => changes.push(WORKLOAD_SECRET));
    agent.start();
    try {
      const first = await agent.ready;
      assert.equal(first.spiffeId, ID);
      const cert = secrets.get(WORKLOAD_SECRET)!.tls_certificate!;
      const leaf = new X509Certificate(cert.certificate_chain!.inline_string!);
      assert.equal(leaf.subjectAltName, `URI:${ID}`);
      assert.ok(leaf.checkPrivateKey(createPrivateKey(cert.private_key!.inline_string!)));
      assert.equal(secrets.get(ROOT_SECRET)!.validation_context!.trusted_ca!.inline_string!.trim(), ca.rootsPem[0].trim());
      assert.equal(secrets.spiffeTrustDomain([ROOT_SECRET]), 'cluster.local');
      // 2 s certificate: renewed at half of the life left when it was asked for (±5 %), not at half of the
      // backdated window (the CA sets notBefore 60 s early, which would make renewal due at once).
      const beforeExpiry = first.notAfter.getTime() - first.renewAt.getTime();
      // notAfter has whole-second precision, so the life left was between 1 and 2 s.
      assert.ok(beforeExpiry >= 400 && beforeExpiry < 2000, `renewal ${beforeExpiry} ms before expiry`);
      assert.ok(first.notBefore.getTime() < first.notAfter.getTime() - 60_000, 'backdated notBefore');
      await until(() => agent.counts.issued >= 2, 4000);
      const second = secrets.get(WORKLOAD_SECRET)!.tls_certificate!;
      assert.notEqual(new X509Certificate(second.certificate_chain!.inline_string!).serialNumber, leaf.serialNumber);
      assert.notEqual(second.private_key!.inline_string, cert.private_key!.inline_string, 'a new key per certificate');
      assert.ok(changes.length >= 2);
    } finally {
      agent.close();
    }
  });

  it('retries with backoff while the CA refuses, then succeeds', async () => {
    const address = await serve((s) => addCaService(s, ca, tokens, { log: silentLogger }));
    let calls = 0;
    const agent = new WorkloadAgent({
      caAddress: address,
      token: () => (++calls <= 2 ? 'B'.repeat(43) : token),
      trustDomain: 'cluster.local',
      identity,
      secrets: new SecretManager(),
      log: silentLogger,
      backoffBaseMs: 50,
      backoffMaxMs: 200,
      random: () => 0.5,
    });
    agent.start();
    try {
      await agent.ready;
      assert.equal(agent.counts.failed, 2);
      assert.equal(agent.counts.issued, 1);
    } finally {
      agent.close();
    }
  });

  it('refuses an answer for another identity (and keeps retrying)', async () => {
    // A CA that answers with a valid certificate of someone else.
    const { csrPem } = await makeCsr({ sans: [{ type: 'url', value: 'spiffe://cluster.local/ns/shop/sa/other' }] });
    const foreign = await signWorkloadCsr(ca, { csrPem, identity: { namespace: 'shop', serviceAccount: 'other' } }, { nowMs: Date.now });
    const address = await serve((s) =>
      s.addService(loadCaServiceDefinition(), {
        CreateCertificate: (_call: unknown, cb: grpc.sendUnaryData<{ cert_chain: string[] }>) => cb(null, { cert_chain: [foreign.certChainPem[0], ca.rootsPem[0]] }),
      }),
    );
    const secrets = new SecretManager();
    const agent = new WorkloadAgent({ caAddress: address, token: () => token, trustDomain: 'cluster.local', identity, secrets, log: silentLogger, backoffBaseMs: 50, backoffMaxMs: 100 });
    agent.start();
    try {
      await until(() => agent.counts.failed >= 2, 3000);
      assert.equal(secrets.get(WORKLOAD_SECRET), undefined);
    } finally {
      agent.close();
    }
  });
});
