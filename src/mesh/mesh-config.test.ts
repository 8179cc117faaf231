import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../control-plane/config/load.ts';
import { analyze } from '../control-plane/config/analyze.ts';
import { DEFAULT_MESH_CONFIG, ensureMeshConfig, VIRTUAL_SERVICE_FILE } from './mesh-config.ts';
import { callerIdentity } from './apps/args.ts';

describe('ensureMeshConfig', () => {
  it('writes the demo config into a missing folder, then leaves the user\'s edits alone', (t) => {
    const root = mkdtempSync(join(tmpdir(), 'sloop-mesh-config-'));
    t.after(() => rmSync(root, { recursive: true, force: true }));
    const dir = join(root, 'mesh');
    assert.deepEqual(ensureMeshConfig(dir), { created: true });
    assert.deepEqual(readdirSync(dir).sort(), Object.keys(DEFAULT_MESH_CONFIG).sort());
    writeFileSync(join(dir, VIRTUAL_SERVICE_FILE), '# mine\n');
    assert.deepEqual(ensureMeshConfig(dir), { created: false });
    assert.equal(readFileSync(join(dir, VIRTUAL_SERVICE_FILE), 'utf8'), '# mine\n');
  });

  it('fills an empty existing folder', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sloop-mesh-config-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    assert.deepEqual(ensureMeshConfig(dir), { created: true });
    assert.equal(readdirSync(dir).length, Object.keys(DEFAULT_MESH_CONFIG).length);
  });

  it('the demo config loads without errors; offline analysis only misses the running workloads (IST0173)', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sloop-mesh-config-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    ensureMeshConfig(dir);
    const loaded = loadConfig([dir]);
    assert.deepEqual(loaded.diagnostics, []);
    assert.deepEqual(loaded.model.services.map((s) => s.name).sort(), ['frontend', 'ratings', 'reviews']);
    assert.equal(loaded.model.virtualServices.length, 1);
    assert.deepEqual(analyze(loaded).map((m) => m.code), ['IST0173', 'IST0173']);
  });
});

describe('the demo\'s mTLS', () => {
  it('is STRICT mesh-wide with the frontend (the entry) PERMISSIVE', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sloop-mesh-config-'));
    try {
      ensureMeshConfig(dir);
      const pas = loadConfig([dir]).model.peerAuthentications;
      assert.deepEqual(pas.map((p) => [p.namespace, p.name, p.spec.mtls?.mode, p.spec.selector?.matchLabels]).sort(), [
        ['default', 'frontend-entry', 'PERMISSIVE', { app: 'frontend' }],
        ['istio-system', 'default', 'STRICT', undefined],
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('apps read their caller from the last x-forwarded-client-cert element', () => {
    assert.equal(callerIdentity({}), undefined);
    assert.equal(callerIdentity({ 'x-forwarded-client-cert': 'By=spiffe://cluster.local/ns/default/sa/reviews;Hash=ab;Subject="";URI=spiffe://cluster.local/ns/default/sa/frontend' }), 'spiffe://cluster.local/ns/default/sa/frontend');
    assert.equal(callerIdentity({ 'x-forwarded-client-cert': 'By=a;URI=spiffe://x/ns/a/sa/old,By=b;Hash=cd;URI=spiffe://x/ns/a/sa/new' }), 'spiffe://x/ns/a/sa/new');
    assert.equal(callerIdentity({ 'x-forwarded-client-cert': 'By=a;Hash=ab;Subject="CN=x"' }), undefined);
  });
});
