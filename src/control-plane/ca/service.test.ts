import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { silentLogger } from '../../shared/log.ts';
import { addCaService, bearerToken, CREATE_CERTIFICATE_METHOD, loadCaServiceDefinition, type CaServiceStats } from './service.ts';
import { createSelfSignedCa, type SigningCa } from './root.ts';
import { TokenStore } from './tokens.ts';
import { makeCsr } from './testdata/csr.ts';
import { CaCallError, CaClient } from '../../data-plane/agent/ca-client.ts';

const H = 3600 * 1000;
const REVIEWS = 'spiffe://cluster.local/ns/default/sa/reviews';

let dir: string;
let ca: SigningCa;
let tokens: TokenStore;
let server: grpc.Server;
let client: CaClient;
let stats: CaServiceStats;
let token: string;
let port: number;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sloop-ca-service-'));
  ca = await createSelfSignedCa(dir, { nowMs: () => Date.now() - H });
  tokens = await TokenStore.open({ dir });
  token = await tokens.mint({ namespace: 'default', serviceAccount: 'reviews' });
  server = new grpc.Server();
  stats = addCaService(server, ca, tokens, { log: silentLogger, maxTtlMs: 48 * H, defaultTtlMs: 24 * H });
  port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  client = new CaClient({ address: `127.0.0.1:${port}` });
});
after(async () => {
  client.close();
  server.forceShutdown();
  await rm(dir, { recursive: true, force: true });
});

async function csrFor(id: string): Promise<string> {
  return (await makeCsr({ sans: [{ type: 'url', value: id }] })).csrPem;
}

async function refusal(p: Promise<unknown>): Promise<CaCallError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof CaCallError, String(err));
    return err;
  }
  assert.fail('expected the CA to refuse');
}

describe('IstioCertificateService/CreateCertificate', () => {
  it('issues an SVID for the token\'s identity: leaf first, trust bundle last, verifying against the root', async () => {
    const before = stats.issued;
    const chain = await client.createCertificate({ csrPem: await csrFor(REVIEWS), validitySeconds: 3600, token, metadata: { WorkloadName: 'reviews-v1' } });
    assert.equal(chain.length, 2);
    const leaf = new X509Certificate(chain[0]);
    const root = new X509Certificate(chain[1]);
    assert.equal(leaf.subjectAltName, `URI:${REVIEWS}`);
    assert.equal(leaf.verify(root.publicKey), true);
    assert.equal(chain[1].trim(), ca.rootsPem[0].trim());
    const ttl = Date.parse(leaf.validTo) - Date.now();
    assert.ok(ttl > 3500 * 1000 && ttl <= 3600 * 1000, `TTL ${ttl} ms is the requested hour`);
    assert.equal(stats.issued, before + 1);
  });

  it('uses the default TTL for validity_duration 0, and clamps a TTL above the maximum', async () => {
    const dflt = new X509Certificate((await client.createCertificate({ csrPem: await csrFor(REVIEWS), validitySeconds: 0, token }))[0]);
    const dfltTtl = Date.parse(dflt.validTo) - Date.now();
    assert.ok(dfltTtl > 23.9 * H && dfltTtl <= 24 * H, `default TTL ${dfltTtl}`);
    const long = new X509Certificate((await client.createCertificate({ csrPem: await csrFor(REVIEWS), validitySeconds: 365 * 24 * 3600, token }))[0]);
    const longTtl = Date.parse(long.validTo) - Date.now();
    assert.ok(longTtl > 47.9 * H && longTtl <= 48 * H, `clamped TTL ${longTtl}`);
  });

  it('refuses a CSR for another identity than the token\'s with PERMISSION_DENIED', async () => {
    const before = stats.refused;
    for (const other of ['spiffe://cluster.local/ns/default/sa/ratings', 'spiffe://cluster.local/ns/prod/sa/reviews', 'spiffe://evil.example/ns/default/sa/reviews']) {
      const err = await refusal(client.createCertificate({ csrPem: await csrFor(other), validitySeconds: 60, token }));
      assert.equal(err.code, grpc.status.PERMISSION_DENIED);
      assert.match(err.message, new RegExp(`CSR asks for ${other.replace(/[.]/g, '\\.')} but .*${REVIEWS}`));
    }
    assert.equal(stats.refused, before + 3);
  });

  it('refuses missing, unknown and malformed bearer tokens with UNAUTHENTICATED', async () => {
    const csrPem = await csrFor(REVIEWS);
    for (const bad of ['A'.repeat(43), 'not-a-token', '']) {
      const err = await refusal(client.createCertificate({ csrPem, validitySeconds: 60, token: bad }));
      assert.equal(err.code, grpc.status.UNAUTHENTICATED, bad);
    }
    // No authorization metadata at all, with a raw grpc client.
    const raw = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const method = loadCaServiceDefinition().CreateCertificate as grpc.MethodDefinition<object, object>;
    const code = await new Promise<grpc.status>((resolve) =>
      raw.makeUnaryRequest(CREATE_CERTIFICATE_METHOD, method.requestSerialize, method.responseDeserialize, { csr: csrPem }, new grpc.Metadata(), (err) => resolve(err?.code ?? grpc.status.OK)),
    );
    raw.close();
    assert.equal(code, grpc.status.UNAUTHENTICATED);
  });

  it('refuses a CSR that is not one (INVALID_ARGUMENT)', async () => {
    const err = await refusal(client.createCertificate({ csrPem: 'garbage', validitySeconds: 60, token }));
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    const p384 = (await makeCsr({ sans: [{ type: 'url', value: REVIEWS }], curve: 'P-384' })).csrPem;
    assert.equal((await refusal(client.createCertificate({ csrPem: p384, validitySeconds: 60, token }))).code, grpc.status.INVALID_ARGUMENT);
  });
});

describe('bearerToken', () => {
  it('takes exactly one `Bearer <token>` value', () => {
    const md = (v?: string[]): grpc.Metadata => {
      const m = new grpc.Metadata();
      for (const x of v ?? []) m.add('authorization', x);
      return m;
    };
    assert.equal(bearerToken(md(['Bearer abc'])), 'abc');
    assert.equal(bearerToken(md(['bearer abc'])), 'abc');
    assert.equal(bearerToken(md([])), undefined);
    assert.equal(bearerToken(md(['Basic abc'])), undefined);
    assert.equal(bearerToken(md(['Bearer a', 'Bearer b'])), undefined);
    assert.equal(bearerToken(md(['Bearer a b'])), undefined);
  });
});
