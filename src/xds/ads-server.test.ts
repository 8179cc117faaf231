import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../shared/log.ts';
import { AdsServer } from './ads-server.ts';
import { unpackAny } from './any.ts';
import type { Cluster__Output } from './gen/envoy/config/cluster/v3/Cluster.ts';
import type { DiscoveryResponse__Output } from './gen/envoy/service/discovery/v3/DiscoveryResponse.ts';
import { createSnapshot, type Snapshot, type SnapshotResources } from './snapshot.ts';
import { SnapshotCache } from './snapshot-cache.ts';
import { waitUntil } from '../../test/helpers/wait.ts';
import { adsClient } from './testdata/ads-test-client.ts';
import { edsCluster, loadAssignment, rdsListener, routeConfig, tcpListener } from './testdata/resources.ts';
import { TYPE_URLS } from './type-urls.ts';
import { VHDS_CLIENT_FEATURE } from './vhds.ts';
import type { RouteConfiguration__Output } from './gen/envoy/config/route/v3/RouteConfiguration.ts';
import type { VirtualHost__Output } from './gen/envoy/config/route/v3/VirtualHost.ts';

const { cluster: CDS, endpoint: EDS, listener: LDS, route: RDS, virtualHost: VHDS } = TYPE_URLS;
const NODE = { id: 'node-1', cluster: 'test', user_agent_name: 'raw-test' };

type Mutable = { [K in 'clusters' | 'endpoints' | 'listeners' | 'routes']-?: Extract<NonNullable<SnapshotResources[K]>, readonly unknown[]>[number][] };

function base(): Mutable {
  return {
    clusters: [edsCluster('a'), edsCluster('b')],
    endpoints: [loadAssignment('a', [{ port: 1001 }]), loadAssignment('b', [{ port: 1002 }])],
    listeners: [rdsListener('http', 'r1', { port: 8080 }), tcpListener('tcp', 'a', 9000)],
    routes: [routeConfig('r1', 'echo.local', 'a')],
  };
}

function snap(edit: (r: ReturnType<typeof base>) => void = () => {}): Snapshot {
  const r = base();
  edit(r);
  return createSnapshot(r);
}

interface LogLine {
  level: string;
  fields: Record<string, unknown>;
  msg: string;
}

function recordingLogger(lines: LogLine[], bound: Record<string, unknown> = {}): Logger {
  const at = (level: string) => (fields: object, msg: string) => lines.push({ level, fields: { ...bound, ...fields }, msg });
  return {
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    trace: at('trace'),
    child: (fields) => recordingLogger(lines, { ...bound, ...fields }),
  };
}

async function setup(t: TestContext, opts: { cache?: SnapshotCache; log?: Logger } = {}) {
  const cache = opts.cache ?? new SnapshotCache();
  const lines: LogLine[] = [];
  const server = new AdsServer({ cache, log: opts.log ?? recordingLogger(lines), now: () => 1234 });
  const port = await server.listen('127.0.0.1:0');
  const client = adsClient(port);
  t.after(async () => {
    client.close();
    await server.close();
  });
  return { cache, server, client, lines };
}

const names = (r: DiscoveryResponse__Output) => r.resources.map((any) => unpackAny<{ name?: string; cluster_name?: string }>(any)).map((m) => m.name || m.cluster_name);

describe('ADS server, state of the world', () => {
  it('serves wildcard CDS, records the ACK, never re-pushes unchanged config, pushes changes, and keeps a NACKed version unsent', async (t) => {
    const { cache, server, client, lines } = await setup(t);
    const s1 = snap();
    cache.setSnapshot('node-1', s1);
    const stream = client.sotw();
    stream.send({ node: NODE, type_url: CDS, resource_names: [] });
    const r1 = await stream.next();
    assert.equal(r1.type_url, CDS);
    assert.equal(r1.version_info, s1.version(CDS));
    assert.notEqual(r1.nonce, '');
    assert.deepEqual(names(r1), ['a', 'b']);
    stream.send({ type_url: CDS, version_info: r1.version_info, response_nonce: r1.nonce });

    // Same content, new snapshot object: nothing to push. The EDS answer coming next proves no CDS came between.
    cache.setSnapshot('node-1', snap());
    stream.send({ type_url: EDS, resource_names: ['a'] });
    const e1 = await stream.next();
    assert.equal(e1.type_url, EDS);
    assert.deepEqual(names(e1), ['a'], 'EDS carries only the requested resources');
    stream.send({ type_url: EDS, resource_names: ['a'], version_info: e1.version_info, response_nonce: e1.nonce });

    let cds = server.status('node-1')[0]!.types.find((x) => x.typeUrl === CDS)!;
    assert.equal(cds.ackedVersion, s1.version(CDS));
    assert.deepEqual(Object.keys(cds.acked), ['a', 'b']);

    const s2 = snap((r) => {
      r.clusters.push(edsCluster('c'));
      r.endpoints.push(loadAssignment('c', [{ port: 1003 }]));
    });
    cache.setSnapshot('node-1', s2);
    const r2 = await stream.next();
    assert.equal(r2.type_url, CDS, 'EDS for "a" did not change, so only CDS is pushed');
    assert.equal(r2.version_info, s2.version(CDS));
    assert.deepEqual(names(r2), ['a', 'b', 'c']);
    assert.notEqual(r2.nonce, r1.nonce);

    // NACK: version_info stays at the last good version, error_detail says why.
    stream.send({ type_url: CDS, version_info: r1.version_info, response_nonce: r2.nonce, error_detail: { code: 3, message: 'cluster c: bad' } });
    stream.send({ type_url: LDS, resource_names: [] });
    const l1 = await stream.next();
    assert.equal(l1.type_url, LDS, 'the NACKed CDS version is not sent again');
    assert.deepEqual(names(l1), ['http', 'tcp'], 'LDS wildcard carries every listener');

    cds = server.status('node-1')[0]!.types.find((x) => x.typeUrl === CDS)!;
    assert.equal(cds.ackedVersion, s1.version(CDS), 'the ACKed version is still the last good one');
    assert.equal(cds.sentVersion, s2.version(CDS));
    assert.deepEqual(cds.lastNack, { rejectedVersion: s2.version(CDS), nonce: r2.nonce, errorDetail: { code: 3, message: 'cluster c: bad' }, at: 1234 });
    assert.deepEqual(cds.counters, { pushes: 2, acks: 1, nacks: 1 });
    assert.deepEqual(server.counters().total, { pushes: 4, acks: 2, nacks: 1 });
    const nack = lines.find((l) => l.msg === 'xDS NACK')!;
    assert.equal(nack.level, 'warn');
    assert.deepEqual(
      { nodeId: nack.fields.nodeId, type: nack.fields.type, version: nack.fields.version, nonce: nack.fields.nonce, errorDetail: nack.fields.errorDetail },
      { nodeId: 'node-1', type: 'CDS', version: s2.version(CDS), nonce: r2.nonce, errorDetail: { code: 3, message: 'cluster c: bad' } },
    );
    assert.ok(lines.some((l) => l.msg === 'xDS ACK' && l.fields.nodeId === 'node-1' && l.fields.version === s1.version(CDS)));

    const s3 = snap((r) => r.clusters.push(edsCluster('d', { serviceName: 'a' })));
    cache.setSnapshot('node-1', s3);
    const r3 = await stream.next();
    assert.equal(r3.type_url, CDS);
    assert.deepEqual(names(r3), ['a', 'b', 'd']);
  });

  it('holds a named EDS subscription for a missing resource until it appears; legacy wildcard LDS becomes named, then empty', async (t) => {
    const { cache, client } = await setup(t);
    cache.setSnapshot('node-1', snap());
    const stream = client.sotw();
    stream.send({ node: NODE, type_url: EDS, resource_names: ['a', 'later'] });
    const e1 = await stream.next();
    assert.deepEqual(names(e1), ['a']);
    stream.send({ type_url: EDS, resource_names: ['a', 'later'], version_info: e1.version_info, response_nonce: e1.nonce });
    const s2 = snap((r) => {
      r.clusters.push(edsCluster('later'));
      r.endpoints.push(loadAssignment('later', [{ port: 2000 }]));
    });
    cache.setSnapshot('node-1', s2);
    const e2 = await stream.next();
    assert.equal(e2.type_url, EDS);
    assert.deepEqual(names(e2), ['later'], 'EDS responses carry what changed: the client keeps "a" (absence removes nothing)');
    assert.equal(e2.version_info, s2.version(EDS));

    stream.send({ type_url: LDS, resource_names: [] });
    const l1 = await stream.next();
    assert.deepEqual(names(l1), ['http', 'tcp']);
    stream.send({ type_url: LDS, resource_names: ['tcp'], version_info: l1.version_info, response_nonce: l1.nonce });
    const l2 = await stream.next();
    assert.deepEqual(names(l2), ['tcp'], 'naming resources ends the legacy wildcard');
    stream.send({ type_url: LDS, resource_names: [], version_info: l2.version_info, response_nonce: l2.nonce });
    const l3 = await stream.next();
    assert.deepEqual(names(l3), [], 'an empty list now unsubscribes from everything');
    stream.send({ type_url: LDS, resource_names: ['*', 'nonexistent'], version_info: l3.version_info, response_nonce: l3.nonce });
    const l4 = await stream.next();
    assert.deepEqual(names(l4), ['http', 'tcp'], '"*" subscribes to the wildcard again');
  });

  it('sends EDS changes only, and after a NACK sends the rejected resources again with the next change', async (t) => {
    const { cache, server, client } = await setup(t);
    const at = (a: number, b: number) => snap((r) => (r.endpoints = [loadAssignment('a', [{ port: a }]), loadAssignment('b', [{ port: b }])]));
    cache.setSnapshot('node-1', at(1001, 1002));
    const stream = client.sotw();
    stream.send({ node: NODE, type_url: EDS, resource_names: ['a', 'b'] });
    const e1 = await stream.next();
    assert.deepEqual(names(e1), ['a', 'b']);
    stream.send({ type_url: EDS, resource_names: ['a', 'b'], version_info: e1.version_info, response_nonce: e1.nonce });
    cache.setSnapshot('node-1', at(2001, 1002));
    const e2 = await stream.next();
    assert.deepEqual(names(e2), ['a'], 'only the changed ClusterLoadAssignment');
    stream.send({ type_url: EDS, resource_names: ['a', 'b'], version_info: e1.version_info, response_nonce: e2.nonce, error_detail: { code: 3, message: 'no' } });
    await waitUntil(() => server.status('node-1')[0]?.types.find((x) => x.typeUrl === EDS)?.lastNack, { what: 'the NACK recorded' });
    cache.setSnapshot('node-1', at(2001, 2002));
    const e3 = await stream.next();
    assert.deepEqual(names(e3), ['a', 'b'], 'the rejected "a" goes again with the change of "b"');
  });

  it('ignores a request carrying a stale nonce', async (t) => {
    const { cache, server, client } = await setup(t);
    cache.setSnapshot('node-1', snap());
    const stream = client.sotw();
    stream.send({ node: NODE, type_url: CDS });
    const r1 = await stream.next();
    const s2 = snap((r) => r.clusters.pop());
    cache.setSnapshot('node-1', s2);
    const r2 = await stream.next();
    assert.deepEqual(names(r2), ['a']);
    // An ACK of r1 sent before r2 arrived, naming a different subscription: stale, so ignored.
    stream.send({ type_url: CDS, resource_names: ['b'], version_info: r1.version_info, response_nonce: r1.nonce });
    stream.send({ type_url: RDS, resource_names: ['r1'] });
    const rr = await stream.next();
    assert.equal(rr.type_url, RDS);
    let cds = server.status('node-1')[0]!.types.find((x) => x.typeUrl === CDS)!;
    assert.equal(cds.ackedVersion, undefined);
    assert.equal(cds.wildcard, true);
    stream.send({ type_url: CDS, version_info: r2.version_info, response_nonce: r2.nonce });
    stream.send({ type_url: RDS, resource_names: ['r1'], version_info: rr.version_info, response_nonce: rr.nonce });
    await waitForAck(server, CDS);
    cds = server.status('node-1')[0]!.types.find((x) => x.typeUrl === CDS)!;
    assert.equal(cds.ackedVersion, s2.version(CDS));
  });

  it('pushes a change to every type in the order CDS, EDS, LDS, RDS', async (t) => {
    const { cache, client } = await setup(t);
    cache.setSnapshot('node-1', snap());
    const stream = client.sotw();
    const subs: [string, string[]][] = [
      [RDS, ['r1']],
      [LDS, []],
      [EDS, ['a']],
      [CDS, []],
    ];
    subs.forEach(([type_url, resource_names], i) => stream.send({ ...(i === 0 ? { node: NODE } : {}), type_url, resource_names }));
    for (const [type_url, resource_names] of subs) {
      const r = await stream.next();
      assert.equal(r.type_url, type_url, 'first answers follow the requests');
      stream.send({ type_url, resource_names, version_info: r.version_info, response_nonce: r.nonce });
    }
    cache.setSnapshot(
      'node-1',
      snap((r) => {
        r.clusters[0] = edsCluster('a', { connectTimeoutMs: 700 });
        r.endpoints[0] = loadAssignment('a', [{ port: 3001 }]);
        r.listeners[1] = tcpListener('tcp', 'a', 9001);
        r.routes[0] = routeConfig('r1', 'echo.local', 'b');
      }),
    );
    const order = [];
    for (let i = 0; i < 4; i++) order.push((await stream.next()).type_url);
    assert.deepEqual(order, [CDS, EDS, LDS, RDS]);
  });

  it('refuses a stream whose first request has no node id', async (t) => {
    const { cache, client } = await setup(t);
    cache.setSnapshot('node-1', snap());
    const stream = client.sotw();
    stream.send({ type_url: CDS });
    const status = await stream.status;
    assert.equal(status.code, grpc.status.INVALID_ARGUMENT);
    assert.match(status.details, /node\.id/);
  });

  it('sends streams given the same TypeSnapshot in one push one shared encoding, with a nonce each can ACK', async (t) => {
    const { cache, server, client } = await setup(t);
    const s1 = snap();
    const ids = ['node-1', 'node-2', 'node-3'];
    for (const id of ids) cache.setSnapshot(id, s1);
    const streams = ids.map((id) => {
      const stream = client.sotw();
      stream.send({ node: { ...NODE, id }, type_url: CDS, resource_names: ['*'] });
      return stream;
    });
    const first = await Promise.all(streams.map((s) => s.next()));
    first.forEach((r, i) => streams[i]!.send({ type_url: CDS, version_info: r.version_info, response_nonce: r.nonce, resource_names: ['*'] }));
    await waitUntil(() => ids.every((id) => server.status(id)[0]?.types[0]?.ackedVersion === s1.version(CDS)));
    // One push: every node gets the same new snapshot in one tick.
    const s2 = snap((r) => r.clusters.push(edsCluster('c')) && r.endpoints.push(loadAssignment('c', [{ port: 1003 }])));
    for (const id of ids) cache.setSnapshot(id, s2);
    const second = await Promise.all(streams.map((s) => s.next()));
    for (const r of second) {
      assert.equal(r.version_info, s2.version(CDS));
      assert.deepEqual(names(r), ['a', 'b', 'c']);
    }
    // The streams after the first share one response; each nonce still differs from that stream's previous one.
    assert.equal(second[1]!.nonce, second[2]!.nonce);
    second.forEach((r, i) => assert.notEqual(r.nonce, first[i]!.nonce));
    second.forEach((r, i) => streams[i]!.send({ type_url: CDS, version_info: r.version_info, response_nonce: r.nonce, resource_names: ['*'] }));
    await waitUntil(() => ids.every((id) => server.status(id)[0]?.types[0]?.ackedVersion === s2.version(CDS)));
  });

  it('computes the snapshot of a newly connected node from its node metadata', async (t) => {
    const seen: unknown[] = [];
    const cache = new SnapshotCache({
      resolveSnapshot: (node) => {
        seen.push(node.metadata);
        return node.metadata.NAMESPACE === 'prod' ? snap((r) => r.clusters.splice(1)) : undefined;
      },
    });
    const { server, client } = await setup(t, { cache });
    const stream = client.sotw();
    stream.send({
      node: { ...NODE, id: 'sidecar~10.0.0.1~app.prod~prod.svc.cluster.local', metadata: { fields: { NAMESPACE: { stringValue: 'prod' }, LABELS: { structValue: { fields: { app: { stringValue: 'x' } } } } } } },
      type_url: CDS,
    });
    const r = await stream.next();
    assert.deepEqual(names(r), ['a']);
    assert.deepEqual(seen, [{ NAMESPACE: 'prod', LABELS: { app: 'x' } }]);
    assert.ok(cache.getSnapshot('sidecar~10.0.0.1~app.prod~prod.svc.cluster.local'));
    assert.equal(server.status('sidecar~10.0.0.1~app.prod~prod.svc.cluster.local')[0]!.mode, 'sotw');
  });
});

async function waitForAck(server: AdsServer, typeUrl: string): Promise<void> {
  await waitUntil(() => server.status('node-1')[0]?.types.find((x) => x.typeUrl === typeUrl)?.ackedVersion !== undefined, { what: 'ACK recorded' });
}

describe('ADS server, delta', () => {
  it('serves RDS as VHDS to a node announcing sloop.config.vhds-over-ads: route tables without virtual hosts, each virtual host its own resource, an edit sends only it', async (t) => {
    const { cache, client } = await setup(t);
    const two = (cluster: string) => [routeConfig('r1', 'echo.local', 'a'), { ...routeConfig('r2', 'two.local', cluster) }];
    cache.setSnapshot('node-1', snap((r) => (r.routes = two('a'))));
    cache.setSnapshot('node-2', snap((r) => (r.routes = two('a'))));
    const vhds = client.delta();
    vhds.send({ node: { ...NODE, client_features: [VHDS_CLIENT_FEATURE] }, type_url: VHDS, resource_names_subscribe: ['*'] });
    const v1 = await vhds.next();
    assert.equal(v1.type_url, VHDS);
    assert.deepEqual(v1.resources.map((r) => r.name), ['r1/echo.local', 'r2/two.local']);
    vhds.send({ type_url: VHDS, response_nonce: v1.nonce });
    vhds.send({ type_url: RDS, resource_names_subscribe: ['r1', 'r2'] });
    const r1 = await vhds.next();
    assert.equal(r1.type_url, RDS);
    for (const r of r1.resources) {
      const rc = unpackAny<RouteConfiguration__Output>(r.resource!);
      assert.deepEqual(rc.virtual_hosts, []);
      assert.equal(rc.vhds?.config_source?.config_source_specifier, 'ads');
    }
    vhds.send({ type_url: RDS, response_nonce: r1.nonce });
    // A plain delta client (no feature) gets whole tables.
    const plain = client.delta();
    plain.send({ node: { ...NODE, id: 'node-2' }, type_url: RDS, resource_names_subscribe: ['r1', 'r2'] });
    const p1 = await plain.next();
    assert.deepEqual(p1.resources.map((r) => unpackAny<RouteConfiguration__Output>(r.resource!).virtual_hosts.length), [1, 1]);
    // An edit of one virtual host: only it is sent, RDS is unchanged.
    cache.setSnapshot('node-1', snap((r) => (r.routes = two('b'))));
    const v2 = await vhds.next();
    assert.equal(v2.type_url, VHDS);
    assert.deepEqual(v2.resources.map((r) => r.name), ['r2/two.local']);
    assert.equal(unpackAny<VirtualHost__Output>(v2.resources[0]!.resource!).routes[0]?.route?.cluster, 'b');
    vhds.send({ type_url: VHDS, response_nonce: v2.nonce });
    // Nothing else follows for RDS: the next response is the one a new subscription asks for.
    vhds.send({ type_url: CDS, resource_names_subscribe: ['*'] });
    assert.equal((await vhds.next()).type_url, CDS);
  });

  it('sends streams that get the same changes in one push one shared encoding, with a nonce each can ACK', async (t) => {
    const { cache, server, client } = await setup(t);
    const s1 = snap();
    const ids = ['node-1', 'node-2', 'node-3'];
    for (const id of ids) cache.setSnapshot(id, s1);
    const streams = ids.map((id) => {
      const stream = client.delta();
      stream.send({ node: { ...NODE, id }, type_url: CDS, resource_names_subscribe: ['*'] });
      return stream;
    });
    const first = await Promise.all(streams.map((s) => s.next()));
    first.forEach((r, i) => streams[i]!.send({ type_url: CDS, response_nonce: r.nonce }));
    await waitUntil(() => ids.every((id) => Object.keys(server.status(id)[0]?.types[0]?.acked ?? {}).length === 2));
    const s2 = snap((r) => r.clusters.push(edsCluster('c')) && r.endpoints.push(loadAssignment('c', [{ port: 1003 }])));
    for (const id of ids) cache.setSnapshot(id, s2);
    const second = await Promise.all(streams.map((s) => s.next()));
    for (const r of second) {
      assert.deepEqual(r.resources.map((x) => x.name), ['c'], 'only the new cluster');
      assert.equal(r.system_version_info, s2.version(CDS));
    }
    assert.equal(second[1]!.nonce, second[2]!.nonce);
    second.forEach((r, i) => assert.notEqual(r.nonce, first[i]!.nonce));
    second.forEach((r, i) => streams[i]!.send({ type_url: CDS, response_nonce: r.nonce }));
    await waitUntil(() => ids.every((id) => 'c' in (server.status(id)[0]?.types[0]?.acked ?? {})), { what: 'every stream ACKed the shared response' });
    // The same version again is settled: nothing is compared or sent (the next response is for another type).
    for (const id of ids) cache.setSnapshot(id, snap((r) => r.clusters.push(edsCluster('c')) && r.endpoints.push(loadAssignment('c', [{ port: 1003 }]))));
    streams[0]!.send({ type_url: LDS, resource_names_subscribe: ['*'] });
    assert.equal((await streams[0]!.next()).type_url, LDS);
  });

  it('serves wildcard CDS with per-resource versions, removes what is gone, answers missing names with removed_resources, and honours unsubscribe', async (t) => {
    const { cache, server, client } = await setup(t);
    const s1 = snap();
    cache.setSnapshot('node-1', s1);
    const stream = client.delta();
    stream.send({ node: NODE, type_url: CDS });
    const c1 = await stream.next();
    assert.equal(c1.type_url, CDS);
    assert.equal(c1.system_version_info, s1.version(CDS));
    const v1 = Object.fromEntries(c1.resources.map((r) => [r.name, r.version]));
    assert.deepEqual(v1, { a: s1.ofType(CDS).resources.get('a')!.version, b: s1.ofType(CDS).resources.get('b')!.version });
    assert.equal(unpackAny<Cluster__Output>(c1.resources[0]!.resource!).name, 'a');
    assert.deepEqual(c1.removed_resources, []);
    stream.send({ type_url: CDS, response_nonce: c1.nonce });

    stream.send({ type_url: EDS, resource_names_subscribe: ['a', 'nope'] });
    const e1 = await stream.next();
    assert.deepEqual(e1.resources.map((r) => r.name), ['a']);
    assert.deepEqual(e1.removed_resources, ['nope'], 'a subscription to a resource that does not exist is answered in removed_resources');
    stream.send({ type_url: EDS, response_nonce: e1.nonce });

    const s2 = snap((r) => {
      r.clusters = [edsCluster('a', { connectTimeoutMs: 900 })];
      r.endpoints = [loadAssignment('a', [{ port: 1001 }])];
      r.listeners = [rdsListener('http', 'r1', { port: 8080 })];
    });
    cache.setSnapshot('node-1', s2);
    const c2 = await stream.next();
    assert.equal(c2.type_url, CDS);
    assert.deepEqual(c2.resources.map((r) => r.name), ['a'], 'only the changed cluster');
    assert.notEqual(c2.resources[0]!.version, v1.a);
    assert.deepEqual(c2.removed_resources, ['b']);
    stream.send({ type_url: CDS, response_nonce: c2.nonce });

    // Unsubscribed: a change to "a" is not pushed; the LDS answer that comes next proves it.
    stream.send({ type_url: EDS, resource_names_unsubscribe: ['a'] });
    // setSnapshot acts at once, in process; the request travels over the socket first.
    await waitUntil(() => server.status('node-1')[0]!.types.find((x) => x.typeUrl === EDS)!.names.join() === 'nope', { what: 'unsubscribe applied' });
    cache.setSnapshot('node-1', snap((r) => {
      r.clusters = [edsCluster('a', { connectTimeoutMs: 900 })];
      r.endpoints = [loadAssignment('a', [{ port: 4444 }])];
      r.listeners = [rdsListener('http', 'r1', { port: 8080 })];
    }));
    stream.send({ type_url: LDS, resource_names_subscribe: ['*'] });
    const l1 = await stream.next();
    assert.equal(l1.type_url, LDS);
    assert.deepEqual(l1.resources.map((r) => r.name), ['http']);
    // NACK the listener.
    stream.send({ type_url: LDS, response_nonce: l1.nonce, error_detail: { code: 3, message: 'no such filter' } });

    cache.setSnapshot('node-1', snap((r) => {
      r.clusters = [edsCluster('a', { connectTimeoutMs: 900 }), edsCluster('nope')];
      r.endpoints = [loadAssignment('a', [{ port: 4444 }]), loadAssignment('nope', [{ port: 5555 }])];
      r.listeners = [rdsListener('http', 'r1', { port: 8080 })];
    }));
    const c3 = await stream.next();
    assert.equal(c3.type_url, CDS);
    assert.deepEqual(c3.resources.map((r) => r.name), ['nope']);
    const e2 = await stream.next();
    assert.equal(e2.type_url, EDS);
    assert.deepEqual(e2.resources.map((r) => r.name), ['nope'], 'the missing resource is sent once it exists');

    await waitUntil(() => server.status('node-1')[0]!.types.find((x) => x.typeUrl === LDS)!.lastNack, { what: 'NACK recorded' });
    const status = server.status('node-1')[0]!;
    assert.equal(status.mode, 'delta');
    const cds = status.types.find((x) => x.typeUrl === CDS)!;
    assert.deepEqual(Object.keys(cds.acked), ['a'], 'ACKed: "a" (b was removed and that removal ACKed)');
    const lds = status.types.find((x) => x.typeUrl === LDS)!;
    assert.equal(lds.lastNack?.errorDetail.message, 'no such filter');
    assert.deepEqual(lds.counters, { pushes: 1, acks: 0, nacks: 1 });
    const eds = status.types.find((x) => x.typeUrl === EDS)!;
    assert.deepEqual(eds.names, ['nope']);
  });

  it('on reconnect with initial_resource_versions sends only what changed and removes what is gone', async (t) => {
    const { cache, client } = await setup(t);
    const s1 = snap();
    cache.setSnapshot('node-1', s1);
    const first = client.delta();
    first.send({ node: NODE, type_url: CDS });
    const c1 = await first.next();
    const held = Object.fromEntries(c1.resources.map((r) => [r.name, r.version]));
    first.close();

    const s2 = snap((r) => {
      r.clusters = [edsCluster('a', { connectTimeoutMs: 800 }), edsCluster('b'), edsCluster('c')];
      r.endpoints.push(loadAssignment('c', [{ port: 1003 }]));
    });
    cache.setSnapshot('node-1', s2);
    const again = client.delta();
    again.send({ node: NODE, type_url: CDS, initial_resource_versions: { ...held, gone: 'v0' } });
    const c2 = await again.next();
    assert.deepEqual(c2.resources.map((r) => r.name), ['a', 'c'], '"b" is unchanged and not resent');
    assert.deepEqual(c2.removed_resources, ['gone']);
    again.send({ type_url: CDS, response_nonce: c2.nonce });

    // Named EDS with the current version already held: nothing to send; the RDS answer comes next.
    again.send({ type_url: EDS, resource_names_subscribe: ['a'], initial_resource_versions: { a: s2.ofType(EDS).resources.get('a')!.version } });
    again.send({ type_url: RDS, resource_names_subscribe: ['r1'] });
    const r1 = await again.next();
    assert.equal(r1.type_url, RDS);
    assert.deepEqual(r1.resources.map((r) => r.name), ['r1']);
  });
});
