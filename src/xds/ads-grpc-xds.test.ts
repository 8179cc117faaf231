/**
 * A client nobody here wrote: @grpc/grpc-js-xds (proxyless gRPC, state of the world only) resolves
 * `xds:///echo.local:8080` through our ADS server, bootstrapped from a GRPC_XDS_BOOTSTRAP file, calls real
 * grpc-js echo servers, and follows new snapshots (other endpoints, weighted clusters).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { register } from '@grpc/grpc-js-xds';
import { startGrpcUpstream, grpcClient, type GrpcUpstream } from '../../test/helpers/upstreams.ts';
import { waitUntil } from '../../test/helpers/wait.ts';
import { silentLogger } from '../shared/log.ts';
import { AdsServer } from './ads-server.ts';
import { createSnapshot, type Snapshot } from './snapshot.ts';
import { SnapshotCache } from './snapshot-cache.ts';
import { edsCluster, loadAssignment, rdsListener, routeConfig } from './testdata/resources.ts';
import { TYPE_URLS } from './type-urls.ts';

const NODE_ID = 'proxyless~10.0.0.9~echo-client.default~default.svc.cluster.local';
const TARGET = 'echo.local:8080';

describe('@grpc/grpc-js-xds against the ADS server', () => {
  let a: GrpcUpstream;
  let b: GrpcUpstream;
  let cache: SnapshotCache;
  let server: AdsServer;
  let dir: string;

  before(async () => {
    [a, b] = await Promise.all([startGrpcUpstream({ name: 'a' }), startGrpcUpstream({ name: 'b' })]);
    cache = new SnapshotCache();
    server = new AdsServer({ cache, log: silentLogger });
    const port = await server.listen('127.0.0.1:0');
    dir = await mkdtemp(join(tmpdir(), 'sloop-xds-'));
    const bootstrap = {
      xds_servers: [{ server_uri: `127.0.0.1:${port}`, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
      node: { id: NODE_ID, cluster: 'echo-client', metadata: { NAMESPACE: 'default' }, locality: {} },
    };
    await writeFile(join(dir, 'bootstrap.json'), JSON.stringify(bootstrap));
    // grpc-js-xds reads its bootstrap from this file, as Istio's proxyless clients do.
    process.env.GRPC_XDS_BOOTSTRAP = join(dir, 'bootstrap.json');
    register();
  });

  after(async () => {
    await server.close();
    await Promise.all([a.close(), b.close()]);
    await rm(dir, { recursive: true, force: true });
  });

  /** api_listener → RDS → EDS clusters, as istiod serves proxyless gRPC. */
  const snapshot = (route: string | { cluster: string; weight: number }[], endpoints: { 'echo-a': number; 'echo-b': number }): Snapshot =>
    createSnapshot({
      listeners: [rdsListener(TARGET, 'echo-route')],
      routes: [routeConfig('echo-route', TARGET, route)],
      clusters: [edsCluster('echo-a'), edsCluster('echo-b')],
      endpoints: [loadAssignment('echo-a', [{ port: endpoints['echo-a'] }]), loadAssignment('echo-b', [{ port: endpoints['echo-b'] }])],
    });

  it('resolves xds:///echo.local:8080, then follows new endpoints and weighted clusters', async () => {
    cache.setSnapshot(NODE_ID, snapshot('echo-a', { 'echo-a': a.port, 'echo-b': b.port }));
    using client = grpcClient(`xds:///${TARGET}`);
    const first = await client.echo({ message: 'hello' });
    assert.equal(first.code, 0, first.details);
    assert.equal(first.response?.upstream, 'a');
    assert.equal(first.response?.message, 'hello');

    // Every type was ACKed by grpc-js-xds, none NACKed.
    const acked = await waitUntil(() => {
      const types = server.status(NODE_ID).flatMap((s) => s.types);
      return types.length === 4 && types.every((t) => t.ackedVersion !== undefined) ? types : undefined;
    }, { what: 'grpc-js-xds to ACK LDS, RDS, CDS and EDS' });
    assert.deepEqual(acked.map((t) => t.typeUrl).sort(), [TYPE_URLS.cluster, TYPE_URLS.endpoint, TYPE_URLS.listener, TYPE_URLS.route].sort());
    assert.equal(server.counters().total.nacks, 0);
    const lds = acked.find((t) => t.typeUrl === TYPE_URLS.listener)!;
    assert.deepEqual(lds.names, [TARGET], 'grpc-js-xds subscribes to its listener by name');

    // Another endpoint for the same cluster: traffic moves to b.
    cache.setSnapshot(NODE_ID, snapshot('echo-a', { 'echo-a': b.port, 'echo-b': b.port }));
    await waitUntil(async () => (await client.echo({ message: 'x' })).response?.upstream === 'b', { what: 'traffic to follow the new endpoint' });

    // Weighted clusters 1:1 across a and b: both get traffic.
    cache.setSnapshot(NODE_ID, snapshot([{ cluster: 'echo-a', weight: 1 }, { cluster: 'echo-b', weight: 1 }], { 'echo-a': a.port, 'echo-b': b.port }));
    const seen = new Set<string>();
    await waitUntil(async () => {
      const r = await client.echo({ message: 'w' });
      if (r.response) seen.add(r.response.upstream);
      return seen.has('a') && seen.has('b');
    }, { what: 'weighted traffic to reach both clusters' });

    // All weight on echo-a: b stops getting calls.
    cache.setSnapshot(NODE_ID, snapshot([{ cluster: 'echo-a', weight: 100 }], { 'echo-a': a.port, 'echo-b': b.port }));
    await waitUntil(async () => {
      const results = await Promise.all(Array.from({ length: 10 }, () => client.echo({ message: 'z' })));
      return results.every((r) => r.response?.upstream === 'a');
    }, { what: 'all traffic on echo-a' });
    assert.equal(server.counters().total.nacks, 0);
  });
});
