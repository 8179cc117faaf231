import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatDiagnostic } from '../../shared/errors.ts';
import { createSnapshot } from '../../xds/snapshot.ts';
import { buildProxyConfig } from './build.ts';
import { buildRegistry } from '../registry/registry.ts';
import { CASES, TESTDATA, loadCase, resourcesJson, toOutput } from './testdata/cases.ts';

// Golden files: testdata/<case>.yaml → <case>.xds.json. Regenerate with SLOOP_UPDATE_GOLDEN=1 and review the diff.
const UPDATE = process.env.SLOOP_UPDATE_GOLDEN === '1';

function render(name: string): string {
  const c = loadCase(name);
  const nodes: Record<string, unknown> = {};
  for (const proxy of c.golden) {
    const built = buildProxyConfig(c.push, proxy);
    nodes[proxy.id] = { diagnostics: built.diagnostics.map(formatDiagnostic), ...resourcesJson(built.resources) };
  }
  return JSON.stringify({ configDiagnostics: c.configDiagnostics, pushDiagnostics: c.push.diagnostics.map(formatDiagnostic), nodes }, null, 2) + '\n';
}

describe('translate golden files', () => {
  for (const name of CASES) {
    it(`${name}.yaml → ${name}.xds.json`, () => {
      const file = join(TESTDATA, `${name}.xds.json`);
      const got = render(name).replaceAll(TESTDATA + '/', '');
      if (UPDATE) writeFileSync(file, got);
      assert.equal(got, readFileSync(file, 'utf8'));
    });
  }
});

describe('buildProxyConfig', () => {
  it('is deterministic and every node gets a consistent snapshot', () => {
    for (const name of CASES) {
      const c = loadCase(name);
      for (const proxy of c.nodes) {
        const a = buildProxyConfig(c.push, proxy);
        const b = buildProxyConfig(loadCase(name).push, proxy);
        assert.deepEqual(resourcesJson(a.resources), resourcesJson(b.resources), `${name} ${proxy.id}`);
        const snap = createSnapshot(a.resources);
        assert.deepEqual(snap.versions(), createSnapshot(b.resources).versions());
      }
    }
  });

  it('names clusters and route configurations as Istio does (bookinfo)', () => {
    const c = loadCase('bookinfo');
    const { resources, diagnostics } = buildProxyConfig(c.push, c.golden[0]);
    assert.deepEqual(diagnostics, []);
    const clusters = resources.clusters.map((x) => x.name);
    for (const n of ['outbound|9080||reviews.default.svc.cluster.local', 'outbound|9080|v1|reviews.default.svc.cluster.local', 'outbound|9080|v2|reviews.default.svc.cluster.local', 'outbound|9080|v3|reviews.default.svc.cluster.local', 'inbound|9080||', 'PassthroughCluster', 'BlackHoleCluster']) {
      assert.ok(clusters.includes(n), n);
    }
    assert.deepEqual(resources.routes.map((r) => r.name), ['9080', 'http_proxy']);
    assert.deepEqual(resources.listeners.map((l) => l.name), ['0.0.0.0_9080', 'virtualInbound', 'virtualOutbound']);
    const vh = resources.routes[0].virtual_hosts!.find((v) => v.name === 'reviews.default.svc.cluster.local:9080')!;
    assert.deepEqual(vh.domains, [
      'reviews.default.svc.cluster.local', 'reviews.default.svc.cluster.local:9080', 'reviews', 'reviews:9080',
      'reviews.default.svc', 'reviews.default.svc:9080', 'reviews.default', 'reviews.default:9080',
    ]);
    // Endpoints of reviews v2: only the v2 sidecar.
    const v2 = resources.endpoints.find((e) => e.cluster_name === 'outbound|9080|v2|reviews.default.svc.cluster.local')!;
    assert.deepEqual(v2.endpoints!.flatMap((l) => l.lb_endpoints!.map((e) => e.endpoint!.address!.socket_address!.address)), ['10.0.0.12']);
  });

  it('Sidecar egress hosts and exportTo scope what a proxy sees', () => {
    const c = loadCase('sidecar-scope');
    const [api, billing] = c.golden;
    const hosts = (p: typeof api) => buildProxyConfig(c.push, p).resources.clusters.map((x) => x.name).filter((n) => n!.startsWith('outbound|'));
    assert.deepEqual(hosts(api), ['outbound|8080||api.team-a.svc.cluster.local', 'outbound|8080||auth.shared.svc.cluster.local']);
    assert.deepEqual(hosts(billing), [
      'outbound|8080||api.team-a.svc.cluster.local', 'outbound|8080||auth.shared.svc.cluster.local', 'outbound|8080||billing.team-b.svc.cluster.local', 'outbound|8081||private.team-b.svc.cluster.local',
    ]);
  });

  it('proxyless gRPC nodes get api_listeners named HOST:PORT and EDS clusters only', () => {
    const c = loadCase('proxyless');
    const { resources } = buildProxyConfig(c.push, c.golden[0]);
    assert.deepEqual(resources.listeners.map((l) => l.name), ['echo.default.svc.cluster.local:8080']);
    assert.ok(resources.listeners.every((l) => l.api_listener !== undefined && l.address === undefined));
    assert.deepEqual(resources.routes.map((r) => r.name), ['echo.default.svc.cluster.local:8080']);
    assert.ok(resources.clusters.every((x) => x.type === 'EDS'));
    // Code-unit order: "|v1|" sorts before "||".
    assert.deepEqual(resources.clusters.map((x) => x.name), ['outbound|8080|v1|echo.default.svc.cluster.local', 'outbound|8080|v2|echo.default.svc.cluster.local', 'outbound|8080||echo.default.svc.cluster.local']);
  });

  it('issue #4: proxyless clusters use what grpc-js-xds accepts (ROUND_ROBIN / RING_HASH) and localities are always set', () => {
    const c = loadCase('proxyless');
    const client = c.golden[0];
    const dr = c.push.model.destinationRules.find((d) => d.name === 'echo')!;
    const withLb = (loadBalancer: object) => {
      const changed = { ...dr, spec: { ...dr.spec, trafficPolicy: { loadBalancer } } } as typeof dr;
      const model = { ...c.push.model, destinationRules: c.push.model.destinationRules.map((d) => (d === dr ? changed : d)) };
      return buildProxyConfig(new (c.push.constructor as typeof import('./push-context.ts').PushContext)(model, c.push.registry), client);
    };
    // No policy: Istio's sidecar default LEAST_REQUEST would be NACKed ("unsupported lb_policy"); ROUND_ROBIN is the proto default.
    const plain = buildProxyConfig(c.push, client);
    assert.ok(plain.resources.clusters.every((x) => (x.lb_policy ?? 'ROUND_ROBIN') === 'ROUND_ROBIN'));
    const leastRequest = withLb({ simple: 'LEAST_REQUEST' });
    assert.ok(leastRequest.resources.clusters.every((x) => (x.lb_policy ?? 'ROUND_ROBIN') === 'ROUND_ROBIN'));
    assert.ok(leastRequest.diagnostics.some((d) => d.severity === 'warning' && d.path === 'spec.trafficPolicy.loadBalancer.simple'));
    const hashed = withLb({ consistentHash: { httpHeaderName: 'x-user' } });
    assert.ok(hashed.resources.clusters.every((x) => x.lb_policy === 'RING_HASH'));
    // PASSTHROUGH makes sidecar clusters ORIGINAL_DST; proxyless ones stay EDS with their ClusterLoadAssignments.
    const passthrough = withLb({ simple: 'PASSTHROUGH' });
    assert.ok(passthrough.resources.clusters.every((x) => x.type === 'EDS'));
    createSnapshot(passthrough.resources);
    // grpc-js-xds NACKs "endpoints[0].locality unset": every LocalityLbEndpoints carries one, empty when unknown.
    const eps = toOutput<{ endpoints: { locality: object | null }[] }>('endpoints', plain.resources.endpoints.find((e) => e.cluster_name === 'outbound|8080|v1|echo.default.svc.cluster.local')!);
    assert.equal(eps.endpoints.length, 1);
    assert.notEqual(eps.endpoints[0].locality, null);
  });

  it('issue #4: proxies of one class share their outbound build; labels a selector reads split classes', () => {
    const c = loadCase('bookinfo');
    const node = (name: string) => c.nodes.find((p) => p.name.startsWith(`${name}-`))!;
    // VirtualService ratings reads sourceLabels {app: reviews}: app is a class key, version is not.
    assert.deepEqual(c.push.classLabelKeys, ['app']);
    assert.equal(c.push.proxyClassKey(node('reviews-v1')), c.push.proxyClassKey(node('reviews-v2')));
    assert.notEqual(c.push.proxyClassKey(node('reviews-v1')), c.push.proxyClassKey(node('ratings-v1')));
    const v1 = buildProxyConfig(c.push, node('reviews-v1'));
    const v2 = buildProxyConfig(c.push, node('reviews-v2'));
    assert.equal(v1.resources.routes, v2.resources.routes);
    assert.equal(v1.resources.endpoints, v2.resources.endpoints);
    // Inbound stays per proxy, and a shared build equals one made for the proxy alone in a fresh push.
    assert.deepEqual(resourcesJson(v2.resources), resourcesJson(buildProxyConfig(loadCase('bookinfo').push, node('reviews-v2')).resources));
    // An endpoint-only change (same model, one proxy fewer) reuses routes and listeners, and rebuilds clusters
    // and endpoints; the same model and registry again reuse everything (push-context.test.ts has more).
    const PushContext = c.push.constructor as typeof import('./push-context.ts').PushContext;
    const fewer = buildRegistry(c.push.model, c.nodes.filter((p) => p !== node('reviews-v2')));
    const again = buildProxyConfig(new PushContext(c.push.model, fewer, c.push), node('reviews-v1'));
    assert.equal(again.resources.routes, v1.resources.routes);
    assert.notEqual(again.resources.endpoints, v1.resources.endpoints);
    assert.notDeepEqual(resourcesJson(again.resources).endpoints, resourcesJson(v1.resources).endpoints);
    const same = buildProxyConfig(new PushContext(c.push.model, c.push.registry, c.push), node('reviews-v1'));
    assert.equal(same.resources.endpoints, v1.resources.endpoints);
  });

  it('a bad resource is dropped with a diagnostic and the rest still builds', () => {
    const c = loadCase('bookinfo');
    const dr = c.push.model.destinationRules.find((d) => d.name === 'details')!;
    const broken = { ...dr, spec: { ...dr.spec, trafficPolicy: { tls: { mode: 'SIMPLE' as const, credentialName: 'details-cert' } } } };
    const model = { ...c.push.model, destinationRules: c.push.model.destinationRules.map((d) => (d === dr ? broken : d)) };
    const push = new (c.push.constructor as typeof import('./push-context.ts').PushContext)(model, c.push.registry);
    const { resources, diagnostics } = buildProxyConfig(push, c.golden[0]);
    assert.ok(diagnostics.some((d) => d.severity === 'error' && d.code === 'SLOOP_ERR_CONFIG_UNSUPPORTED' && d.path === 'spec.trafficPolicy.tls.credentialName'));
    assert.ok(!resources.clusters.some((x) => x.name?.endsWith('|details.default.svc.cluster.local')));
    assert.ok(resources.clusters.some((x) => x.name === 'outbound|9080||reviews.default.svc.cluster.local'));
    createSnapshot(resources);
  });
});
