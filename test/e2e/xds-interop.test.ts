// Our two halves over the real wire: `sloop proxy` (bootstrap dynamic_resources → ADS client) against Sloop's own
// ADS server (src/xds/ads-server.ts) serving snapshots, in state-of-the-world and delta modes. Traffic follows each
// new snapshot; every type is ACKed; a snapshot the proxy cannot apply is NACKed while traffic keeps flowing.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHttpUpstream, type HttpUpstream } from '../helpers/upstreams.ts';
import { startProxy, adsBootstrap, type Json, type ProxyHandle } from '../helpers/proxy.ts';
import { httpRequest } from '../helpers/http-client.ts';
import { freePorts } from '../helpers/ports.ts';
import { waitUntil } from '../helpers/wait.ts';
import { AdsServer } from '../../src/xds/ads-server.ts';
import { SnapshotCache } from '../../src/xds/snapshot-cache.ts';
import { createSnapshot } from '../../src/xds/snapshot.ts';
import { TYPE_URLS } from '../../src/xds/type-urls.ts';
import { edsCluster, loadAssignment, rdsListener, routeConfig } from '../../src/xds/testdata/resources.ts';
import { silentLogger } from '../../src/shared/log.ts';

const NODE = 'sidecar~127.0.0.1~interop.default~default.svc.cluster.local';

function bootstrap(adminPort: number, adsPort: number, apiType: 'GRPC' | 'DELTA_GRPC'): Json {
  return adsBootstrap({ adminPort, adsPort, apiType, node: { id: NODE, cluster: 'interop' } });
}

for (const mode of ['GRPC', 'DELTA_GRPC'] as const) {
  describe(`sloop proxy ⇄ Sloop's ADS server (${mode === 'GRPC' ? 'state of the world' : 'delta'})`, () => {
    let a: HttpUpstream;
    let b: HttpUpstream;
    let cache: SnapshotCache;
    let server: AdsServer;
    let proxy: ProxyHandle;
    let port: number;

    const snapshot = (opts: { endpoints: number[]; listenerPort: number; weights?: { cluster: string; weight: number }[] }) =>
      createSnapshot({
        clusters: [edsCluster('svc-a'), edsCluster('svc-b')],
        endpoints: [loadAssignment('svc-a', opts.endpoints.map((p) => ({ port: p }))), loadAssignment('svc-b', [{ port: b.port }])],
        listeners: [rdsListener('http', 'routes', { port: opts.listenerPort })],
        routes: [routeConfig('routes', '*', opts.weights ?? 'svc-a')],
      });

    const served = async (n: number): Promise<Record<string, number>> => {
      const counts: Record<string, number> = {};
      for (let i = 0; i < n; i++) {
        const r = await httpRequest(port, `/interop/${i}`);
        assert.equal(r.status, 200, r.text);
        const who = String(r.headers['x-upstream']);
        counts[who] = (counts[who] ?? 0) + 1;
      }
      return counts;
    };

    before(async () => {
      a = await startHttpUpstream({ name: 'a' });
      b = await startHttpUpstream({ name: 'b' });
      const [p, admin] = await freePorts(2);
      port = p;
      cache = new SnapshotCache();
      server = new AdsServer({ cache, log: silentLogger });
      const adsPort = await server.listen('127.0.0.1:0');
      cache.setSnapshot(NODE, snapshot({ endpoints: [a.port], listenerPort: port }));
      proxy = await startProxy(bootstrap(admin, adsPort, mode));
    });

    after(async () => {
      await proxy?.stop();
      await server?.close();
      await a?.close();
      await b?.close();
    });

    it('serves traffic through resources that came from the snapshot, and ACKs every type', async () => {
      assert.deepEqual(await served(4), { a: 4 });
      const acked = await waitUntil(() => {
        const st = server.status(NODE);
        const types = new Set(st.flatMap((s) => s.types.filter((t) => t.ackedVersion !== undefined || Object.keys(t.acked).length > 0).map((t) => t.typeUrl)));
        return [TYPE_URLS.cluster, TYPE_URLS.endpoint, TYPE_URLS.listener, TYPE_URLS.route].every((t) => types.has(t)) ? st : undefined;
      }, { what: 'ACKs for CDS, EDS, LDS and RDS' });
      assert.ok(acked.length >= 1);
      assert.equal(server.counters().total.nacks, 0);
    });

    it('follows a new snapshot: endpoints move, then a weighted split', async () => {
      cache.setSnapshot(NODE, snapshot({ endpoints: [b.port], listenerPort: port }));
      await waitUntil(async () => ((await httpRequest(port, '/probe')).headers['x-upstream'] === 'b' ? true : undefined), { what: 'traffic on b' });
      assert.deepEqual(await served(4), { b: 4 });
      cache.setSnapshot(NODE, snapshot({ endpoints: [a.port], listenerPort: port, weights: [{ cluster: 'svc-a', weight: 1 }, { cluster: 'svc-b', weight: 1 }] }));
      await waitUntil(async () => {
        const c = await served(20);
        return (c.a ?? 0) > 0 && (c.b ?? 0) > 0 ? c : undefined;
      }, { what: 'traffic split over a and b' });
    });

    it('a snapshot the proxy rejects is NACKed, traffic keeps flowing, and the next good one is applied', async () => {
      const nacksBefore = server.counters().total.nacks;
      // A listener on a port already taken by another listener in the same update: Envoy rejects the update.
      const bad = createSnapshot({
        clusters: [edsCluster('svc-a'), edsCluster('svc-b')],
        endpoints: [loadAssignment('svc-a', [{ port: a.port }]), loadAssignment('svc-b', [{ port: b.port }])],
        listeners: [rdsListener('http', 'routes', { port }), rdsListener('http-dup', 'routes', { port })],
        routes: [routeConfig('routes', '*', 'svc-b')],
      });
      cache.setSnapshot(NODE, bad);
      await waitUntil(() => (server.counters().total.nacks > nacksBefore ? true : undefined), { what: 'a NACK' });
      const st = server.status(NODE);
      const nack = st.flatMap((s) => s.types).find((t) => t.lastNack !== undefined);
      assert.match(nack?.lastNack?.errorDetail.message ?? '', /duplicate|address/i, 'NACK carries error_detail');
      await served(3); // every request still answered 200 by the last good config
      cache.setSnapshot(NODE, snapshot({ endpoints: [a.port], listenerPort: port }));
      await waitUntil(async () => {
        const c = await served(6);
        return c.a === 6 ? c : undefined;
      }, { what: 'all traffic back on a' });
    });
  });
}
