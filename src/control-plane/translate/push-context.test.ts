import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { validateDocuments } from '../config/validate.ts';
import { parseDocuments } from '../config/documents.ts';
import { buildRegistry } from '../registry/registry.ts';
import { parseProxyInfo } from '../registry/proxy-info.ts';
import { buildProxyConfig } from './build.ts';
import { createPushContext, type PushContext } from './push-context.ts';
import { TESTDATA } from './testdata/cases.ts';

const BOOKINFO = readFileSync(join(TESTDATA, 'bookinfo.yaml'), 'utf8');

/** bookinfo.yaml with its TestNodes as connected proxies, one text edit applied, pushed after `previous`. */
function push(edit: (yaml: string) => string, previous?: PushContext): PushContext {
  const documents = parseEach(edit(BOOKINFO));
  const { model } = validateDocuments(documents);
  const nodes = model.others.filter((o) => o.kind === 'TestNode').map((o) => {
    const spec = o.value.spec as { id: string; metadata?: Record<string, unknown> };
    return parseProxyInfo({ id: spec.id, metadata: spec.metadata ?? {} }).proxy;
  });
  return createPushContext(model, buildRegistry(model, nodes), previous);
}

/**
 * The documents of a multi-document text, each parsed as its own file and kept by its text, as the loader's
 * ParseCache keeps unchanged files: an unchanged document is the same object in every push.
 */
const parsed = new Map<string, ReturnType<typeof parseDocuments>['documents']>();
function parseEach(text: string) {
  return text.split(/^---$/m).flatMap((doc, i) => {
    let docs = parsed.get(doc);
    if (docs === undefined) parsed.set(doc, (docs = parseDocuments(doc, `bookinfo-${i}.yaml`).documents));
    return docs;
  });
}

function proxy(p: PushContext) {
  const o = p.model.others.find((x) => x.kind === 'TestNode')!;
  const spec = o.value.spec as { id: string; metadata?: Record<string, unknown> };
  return parseProxyInfo({ id: spec.id, metadata: spec.metadata ?? {} }).proxy;
}

describe('PushContext reuse across pushes', () => {
  it('keeps the clusters of a push whose only change is a VirtualService, and rebuilds them for any other change', () => {
    assert.match(BOOKINFO, /kind: VirtualService/);
    const first = push((y) => y);
    const a = buildProxyConfig(first, proxy(first));
    // A VirtualService edit: routes change, the cluster list is the very same object (no rebuild, no re-encode).
    const vsEdit = push((y) => y.replace('weight: 80', 'weight: 70').replace('weight: 20', 'weight: 30'), first);
    assert.notEqual(vsEdit.model, first.model);
    const b = buildProxyConfig(vsEdit, proxy(vsEdit));
    assert.equal(b.layers.clusters.shared, a.layers.clusters.shared);
    assert.notDeepEqual(b.resources.routes, a.resources.routes);
    // Only the edited VirtualService's host has new virtual hosts; every other one is the same object.
    const vhosts = (c: typeof a) => new Map(c.resources.routes.flatMap((rc) => (rc.virtual_hosts ?? []).map((vh) => [`${rc.name} ${vh.name}`, vh] as const)));
    const [va, vb] = [vhosts(a), vhosts(b)];
    let kept = 0;
    for (const [name, vh] of vb) {
      if (name.includes('reviews.default.svc.cluster.local')) assert.notEqual(vh, va.get(name), name);
      else if (!name.includes('allow_any') && !name.includes('block_all')) {
        assert.equal(vh, va.get(name), name);
        kept++;
      }
    }
    assert.ok(kept > 0);
    // The same text loaded again (a new model object, equal content) keeps them too.
    const again = push((y) => y.replace('weight: 80', 'weight: 70').replace('weight: 20', 'weight: 30'), vsEdit);
    assert.equal(buildProxyConfig(again, proxy(again)).layers.clusters.shared, a.layers.clusters.shared);
    // A DestinationRule edit: clusters are built again.
    assert.match(BOOKINFO, /loadBalancer: \{simple: ROUND_ROBIN\}/);
    const changed = push((y) => y.replace('loadBalancer: {simple: ROUND_ROBIN}', 'loadBalancer: {simple: RANDOM}'), again);
    const c = buildProxyConfig(changed, proxy(changed));
    assert.notEqual(c.layers.clusters.shared, a.layers.clusters.shared);
    assert.notDeepEqual(c.resources.clusters, a.resources.clusters);
  });

  it('keeps routes and outbound listeners when only endpoints change (a WorkloadEntry added), not when a Service does', () => {
    const first = push((y) => y);
    const a = buildProxyConfig(first, proxy(first));
    const workloadEntry = '\n---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: vm-ratings}\nspec: {address: 10.9.9.9, labels: {app: ratings, version: v1}}\n';
    const weAdded = push((y) => y + workloadEntry, first);
    const b = buildProxyConfig(weAdded, proxy(weAdded));
    assert.equal(b.resources.routes, a.resources.routes);
    assert.equal(b.layers.listeners.shared, a.layers.listeners.shared);
    assert.ok(JSON.stringify(b.resources.endpoints).includes('10.9.9.9'), 'the new endpoint is in EDS');
    assert.ok(!JSON.stringify(a.resources.endpoints).includes('10.9.9.9'));
    // Only the service whose endpoints changed has new clusters and endpoints; every other's are the same objects.
    const byName = <T extends { name?: string | null; cluster_name?: string | null }>(list: readonly T[]) => new Map(list.map((x) => [x.name ?? x.cluster_name ?? '', x]));
    const [ea, eb] = [byName(a.resources.endpoints), byName(b.resources.endpoints)];
    const [ca, cb] = [byName(a.resources.clusters), byName(b.resources.clusters)];
    for (const [name, cla] of eb) {
      if (name.endsWith('ratings.default.svc.cluster.local')) assert.notEqual(cla, ea.get(name), name);
      else assert.equal(cla, ea.get(name), name);
    }
    for (const [name, c] of cb) if (name.startsWith('outbound|') && !name.endsWith('ratings.default.svc.cluster.local')) assert.equal(c, ca.get(name), name);
    // A Service's port changes: routes are built again.
    const svcEdit = push((y) => y.replace('ports: [{port: 9080, name: http}]\n  selector: {app: ratings}', 'ports: [{port: 9081, name: http}]\n  selector: {app: ratings}') + workloadEntry, weAdded);
    assert.notEqual(buildProxyConfig(svcEdit, proxy(svcEdit)).resources.routes, a.resources.routes);
  });

  it('keeps a connected proxy\'s inbound listeners and clusters across VirtualService and endpoint changes, not across a policy change', () => {
    // One ProxyInfo object for the connected proxy, as the control plane keeps it while the node stays connected.
    const first = push((y) => y);
    const p = proxy(first);
    const at = (edit: (y: string) => string, previous: PushContext) => {
      const documents = parseEach(edit(BOOKINFO));
      const { model } = validateDocuments(documents);
      return createPushContext(model, buildRegistry(model, [p]), previous);
    };
    const one = at((y) => y, first);
    const a = buildProxyConfig(one, p);
    const vsEdit = at((y) => y.replace('weight: 80', 'weight: 70').replace('weight: 20', 'weight: 30'), one);
    const b = buildProxyConfig(vsEdit, p);
    assert.equal(b.layers.listeners.own, a.layers.listeners.own);
    assert.equal(b.layers.clusters.own, a.layers.clusters.own);
    // Another proxy object (a reconnect) is built afresh, equal in content.
    const c = buildProxyConfig(vsEdit, proxy(vsEdit));
    assert.notEqual(c.layers.listeners.own, a.layers.listeners.own);
    assert.deepEqual(c.layers.listeners.own, a.layers.listeners.own);
    // A mesh-wide AuthorizationPolicy changes every inbound listener: rebuilt.
    const policy = '\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-all, namespace: istio-system}\nspec: {}\n';
    const withPolicy = at((y) => y.replace('weight: 80', 'weight: 70').replace('weight: 20', 'weight: 30') + policy, vsEdit);
    const d = buildProxyConfig(withPolicy, p);
    assert.notEqual(d.layers.listeners.own, a.layers.listeners.own);
    assert.notDeepEqual(d.layers.listeners.own, a.layers.listeners.own);
  });
});
