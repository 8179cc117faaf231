import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { unpackAny } from './any.ts';
import type { Cluster__Output } from './gen/envoy/config/cluster/v3/Cluster.ts';
import { EncodingCache, SnapshotError, createSnapshot, diffTypes } from './snapshot.ts';
import { SnapshotCache, type NodeInfo } from './snapshot-cache.ts';
import { edsCluster, loadAssignment, rdsListener, routeConfig, tcpListener } from './testdata/resources.ts';
import { TYPE_URLS } from './type-urls.ts';

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  assert.fail('expected a throw');
}

const base = () => ({
  clusters: [edsCluster('a'), edsCluster('b', { serviceName: 'b-eds' })],
  endpoints: [loadAssignment('a', [{ port: 1001 }]), loadAssignment('b-eds', [{ port: 1002 }])],
  listeners: [rdsListener('echo.local:8080', 'r1'), tcpListener('tcp', 'a', 9000)],
  routes: [routeConfig('r1', 'echo.local:8080', 'a')],
});

describe('createSnapshot', () => {
  it('takes a type as a shared part plus a node\'s own: same resources, in name order, shared part checked once', () => {
    const cache = new EncodingCache();
    const shared = [edsCluster('a'), edsCluster('c')];
    const endpoints = [loadAssignment('a', [{ port: 1001 }]), loadAssignment('b-eds', [{ port: 1002 }]), loadAssignment('c', [{ port: 1003 }])];
    const layered = (own: ReturnType<typeof edsCluster>[]) =>
      createSnapshot({ ...base(), endpoints, clusters: { shared, own } }, { cache });
    const flat = createSnapshot({ ...base(), endpoints, clusters: [edsCluster('a'), edsCluster('b', { serviceName: 'b-eds' }), edsCluster('c')] });
    const one = layered([edsCluster('b', { serviceName: 'b-eds' })]);
    const got = one.ofType(TYPE_URLS.cluster).resources;
    const want = flat.ofType(TYPE_URLS.cluster).resources;
    assert.deepEqual([...got.keys()], ['a', 'b', 'c']);
    assert.equal(got.size, 3);
    assert.deepEqual([...got.values()].map((r) => r.version), [...want.values()].map((r) => r.version));
    assert.equal(got.get('b')?.version, want.get('b')?.version);
    assert.equal(got.has('c'), true);
    assert.equal(got.has('z'), false);
    // Another node of the class: the shared part's resources are the very same objects.
    const two = layered([edsCluster('d', { serviceName: 'a' })]);
    assert.equal(two.ofType(TYPE_URLS.cluster).resources.get('a'), got.get('a'));
    assert.notEqual(two.version(TYPE_URLS.cluster), one.version(TYPE_URLS.cluster));
    assert.equal(layered([edsCluster('b', { serviceName: 'b-eds' })]).version(TYPE_URLS.cluster), one.version(TYPE_URLS.cluster));
    // No own part: the shared type itself.
    assert.equal(layered([]).version(TYPE_URLS.cluster), createSnapshot({ ...base(), endpoints, clusters: shared }).version(TYPE_URLS.cluster));
  });

  it('refuses a layered type whose own part repeats a shared name or names a missing ClusterLoadAssignment', () => {
    const cache = new EncodingCache();
    const endpoints = [loadAssignment('a', [{ port: 1001 }]), loadAssignment('b-eds', [{ port: 1002 }])];
    const shared = [edsCluster('a')];
    const dup = thrown(() => createSnapshot({ ...base(), endpoints, clusters: { shared, own: [edsCluster('a')] } }, { cache })) as SnapshotError;
    assert.ok(dup instanceof SnapshotError);
    assert.match(dup.message, /clusters\.own\["a"\].*duplicate Cluster name "a" \(also in the shared part\)/);
    const missing = thrown(() => createSnapshot({ ...base(), endpoints, clusters: { shared, own: [edsCluster('x')] } }, { cache })) as SnapshotError;
    assert.match(missing.message, /ClusterLoadAssignment "x" is not in the snapshot/);
    // The shared part's own problem is reported for every node, though it is checked once.
    const bad = [edsCluster('nowhere')];
    for (let i = 0; i < 2; i++) {
      const e = thrown(() => createSnapshot({ ...base(), endpoints, clusters: { shared: bad, own: [edsCluster('b', { serviceName: 'b-eds' })] } }, { cache })) as SnapshotError;
      assert.match(e.message, /ClusterLoadAssignment "nowhere" is not in the snapshot/);
    }
  });

  it('encodes every resource once, by name, with content-hash versions', () => {
    const s = createSnapshot(base());
    const clusters = s.ofType(TYPE_URLS.cluster).resources;
    assert.deepEqual([...clusters.keys()], ['a', 'b']);
    const a = unpackAny<Cluster__Output>(clusters.get('a')!.any);
    assert.equal(a.type, 'EDS');
    assert.equal(s.ofType(TYPE_URLS.endpoint).resources.has('b-eds'), true);
    assert.match(s.version(TYPE_URLS.cluster), /^[0-9a-f]{16}$/);
    assert.deepEqual(s.clustersOfListener('tcp'), ['a']);
  });

  it('gives equal content equal versions whatever the order, and changes only the type that changed', () => {
    const one = createSnapshot(base());
    const reordered = base();
    reordered.clusters.reverse();
    const two = createSnapshot(reordered);
    assert.deepEqual(two.versions(), one.versions());
    const changed = base();
    changed.endpoints[0] = loadAssignment('a', [{ port: 1003 }]);
    const three = createSnapshot(changed);
    assert.notEqual(three.version(TYPE_URLS.endpoint), one.version(TYPE_URLS.endpoint));
    assert.equal(three.version(TYPE_URLS.cluster), one.version(TYPE_URLS.cluster));
    assert.equal(three.version(TYPE_URLS.listener), one.version(TYPE_URLS.listener));
    assert.equal(three.ofType(TYPE_URLS.endpoint).resources.get('b-eds')!.version, one.ofType(TYPE_URLS.endpoint).resources.get('b-eds')!.version);
  });

  it('rejects a listener naming a missing RouteConfiguration and a cluster naming a missing ClusterLoadAssignment, with every diagnostic', () => {
    const r = base();
    r.routes = [];
    r.endpoints = [loadAssignment('a', [{ port: 1 }])];
    const err = thrown(() => createSnapshot(r));
    assert.ok(err instanceof SnapshotError);
    assert.equal(err.code, 'SLOOP_ERR_XDS_SNAPSHOT_INCONSISTENT');
    assert.deepEqual(
      err.diagnostics.map((d) => [d.path, d.message]),
      [
        ['listeners["echo.local:8080"].api_listener.api_listener.rds.route_config_name', 'RouteConfiguration "r1" is not in the snapshot'],
        ['clusters["b"].eds_cluster_config.service_name', 'ClusterLoadAssignment "b-eds" is not in the snapshot'],
      ],
    );
    assert.match(err.message, /RouteConfiguration "r1" is not in the snapshot/);
  });

  it('rejects duplicate and empty names', () => {
    const err = thrown(() => createSnapshot({ clusters: [{ ...edsCluster('a'), type: 'STATIC' }, { ...edsCluster('a'), type: 'STATIC' }], routes: [{ name: '' }] }));
    assert.ok(err instanceof SnapshotError);
    assert.deepEqual(
      err.diagnostics.map((d) => d.path),
      ['clusters[1].name', 'routes[0].name'],
    );
  });

  it('checks listeners on ports too', () => {
    assert.throws(() => createSnapshot({ listeners: [rdsListener('l', 'missing', { port: 8080 })] }), /filter_chains\[0\]\.filters\[0\]\.typed_config\.rds\.route_config_name: RouteConfiguration "missing"/);
  });
});

describe('RouteConfiguration encoding from cached virtual hosts', () => {
  it('gives the very bytes of encoding the whole table, and reuses a virtual host encoded before', () => {
    const rc = {
      name: '8080',
      virtual_hosts: [
        { name: 'a', domains: ['a', 'a:8080'], routes: [{ match: { prefix: '/' }, route: { cluster: 'x', timeout: { seconds: 0 } } }] },
        { name: 'b', domains: ['b'], routes: [{ match: { path: '/p' }, direct_response: { status: 200 } }] },
      ],
      validate_clusters: { value: false },
      request_headers_to_remove: ['x-h'],
      vhds: { config_source: { ads: {} } },
    };
    const cache = new EncodingCache();
    const plain = createSnapshot({ routes: [rc] }).ofType(TYPE_URLS.route).resources.get('8080')!;
    const cached = createSnapshot({ routes: [rc] }, { cache }).ofType(TYPE_URLS.route).resources.get('8080')!;
    assert.deepEqual(cached.any.value, plain.any.value);
    assert.equal(cached.version, plain.version);
    assert.equal(cache.size, 2, 'one entry per virtual host (tables are cached by identity only)');
    createSnapshot({ routes: [{ ...rc, name: '9090' }] }, { cache });
    assert.equal(cache.size, 2, 'the other table reused both virtual hosts');
  });
});

describe('diffTypes', () => {
  const endpoints = ['a', 'b', 'c', 'm', 'x', 'y'].map((n) => loadAssignment(n, [{ port: 1000 }]));
  const clusters = (shared: ReturnType<typeof edsCluster>[], own: ReturnType<typeof edsCluster>[]) =>
    createSnapshot({ endpoints, clusters: { shared, own } }).ofType(TYPE_URLS.cluster);

  it('gives what changed between two layered types, a name moved between the parts counting only if its content changed', () => {
    const prev = clusters([edsCluster('a'), edsCluster('b'), edsCluster('c'), edsCluster('m')], [edsCluster('x')]);
    const next = clusters([edsCluster('a'), edsCluster('b', { connectTimeoutMs: 900 })], [edsCluster('m'), edsCluster('x'), edsCluster('y')]);
    const d = diffTypes(prev, next);
    assert.deepEqual(d.updated.map((r) => r.name), ['b', 'y']);
    assert.deepEqual(d.removed, ['c']);
    assert.deepEqual(diffTypes(next, next), { updated: [], removed: [] });
  });

  it('diffs plain types once per pair of types', () => {
    const prev = createSnapshot({ endpoints: endpoints.slice(0, 2) }).ofType(TYPE_URLS.endpoint);
    const next = createSnapshot({ endpoints: [loadAssignment('a', [{ port: 1001 }]), endpoints[2]!] }).ofType(TYPE_URLS.endpoint);
    const d = diffTypes(prev, next);
    assert.deepEqual(d.updated.map((r) => r.name), ['a', 'c']);
    assert.deepEqual(d.removed, ['b']);
    assert.equal(diffTypes(prev, next), d);
  });
});

describe('SnapshotCache', () => {
  const node: NodeInfo = { id: 'n1', cluster: 'c', metadata: { NAMESPACE: 'default' }, userAgentName: 'test' };

  it('notifies listeners on setSnapshot and keeps the latest per node', () => {
    const cache = new SnapshotCache();
    const seen: string[] = [];
    const off = cache.subscribe((id, s) => seen.push(`${id}:${s.version(TYPE_URLS.cluster)}`));
    const s1 = createSnapshot(base());
    cache.setSnapshot('n1', s1);
    cache.setSnapshot('n1', s1);
    assert.deepEqual(seen, [`n1:${s1.version(TYPE_URLS.cluster)}`]);
    assert.equal(cache.getSnapshot('n1'), s1);
    off();
    cache.setSnapshot('n2', s1);
    assert.equal(seen.length, 1);
    assert.deepEqual(cache.nodeIds().sort(), ['n1', 'n2']);
    cache.clearSnapshot('n2');
    assert.equal(cache.getSnapshot('n2'), undefined);
  });

  it('asks the resolver once for a new node, sharing concurrent calls', async () => {
    const calls: NodeInfo[] = [];
    const snap = createSnapshot(base());
    const cache = new SnapshotCache({
      resolveSnapshot: async (n) => {
        calls.push(n);
        return n.metadata.NAMESPACE === 'default' ? snap : undefined;
      },
    });
    const [a, b] = await Promise.all([cache.snapshotFor(node), cache.snapshotFor(node)]);
    assert.equal(a, snap);
    assert.equal(b, snap);
    assert.equal(calls.length, 1);
    assert.equal(await cache.snapshotFor(node), snap);
    assert.equal(calls.length, 1);
    assert.equal(await cache.snapshotFor({ ...node, id: 'n9', metadata: {} }), undefined);
    assert.equal(cache.getSnapshot('n9'), undefined);
  });
});

describe('EncodingCache', () => {
  it('shares the encoding of equal resources across snapshots, keeps versions and checks, and forgets after two rotations', () => {
    const cache = new EncodingCache();
    const build = () => ({ clusters: [edsCluster('a'), edsCluster('b')], endpoints: [loadAssignment('a', [{ port: 1 }]), loadAssignment('b', [{ port: 2 }])] });
    const s1 = createSnapshot(build(), { cache });
    const s2 = createSnapshot(build(), { cache });
    const plain = createSnapshot(build());
    // Fresh but equal objects: the same encoded resource, and the versions an uncached snapshot has.
    assert.equal(s1.ofType(TYPE_URLS.cluster).resources.get('a'), s2.ofType(TYPE_URLS.cluster).resources.get('a'));
    assert.deepEqual(s1.versions(), plain.versions());
    assert.equal(cache.size, 4);
    // Different content is encoded on its own.
    const s3 = createSnapshot({ ...build(), endpoints: [loadAssignment('a', [{ port: 9 }]), loadAssignment('b', [{ port: 2 }])] }, { cache });
    assert.notEqual(s3.ofType(TYPE_URLS.endpoint).resources.get('a'), s1.ofType(TYPE_URLS.endpoint).resources.get('a'));
    assert.notEqual(s3.version(TYPE_URLS.endpoint), s1.version(TYPE_URLS.endpoint));
    // The consistency check still runs on cached clusters.
    assert.throws(() => createSnapshot({ clusters: [edsCluster('a')] }, { cache }), SnapshotError);
    cache.rotate();
    assert.equal(createSnapshot(build(), { cache }).ofType(TYPE_URLS.cluster).resources.get('a'), s1.ofType(TYPE_URLS.cluster).resources.get('a'));
    cache.rotate();
    cache.rotate();
    assert.equal(cache.size, 0);
  });
});
