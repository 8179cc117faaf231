// `sloop proxy` configured over ADS (bootstrap dynamic_resources): the real proxy process against an in-process
// fake ADS server (test/helpers/fake-ads.ts), with real upstreams. Envoy's xDS protocol and its dynamic
// configuration behaviour are the spec: cluster warming (EDS), listener drain on update, RDS swaps, NACK with
// error_detail keeping the last good config (RELIABILITY row 27), control plane loss (row 28), readiness before
// the first config (row 29), and the delta protocol.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHttpUpstream, type HttpUpstream } from '../helpers/upstreams.ts';
import { startProxy, adsBootstrap as sharedAdsBootstrap, socketAddress, routerFilter, adminRequest, type Json, type ProxyHandle } from '../helpers/proxy.ts';
import { httpRequest } from '../helpers/http-client.ts';
import { freePorts } from '../helpers/ports.ts';
import { waitUntil } from '../helpers/wait.ts';
import { FakeAds, CDS, EDS, LDS, RDS } from '../helpers/fake-ads.ts';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeTestPki, CLIENT_SPIFFE_ID } from '../helpers/certs.ts';

const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';

function adsBootstrap(adminPort: number, adsPort: number, apiType: 'GRPC' | 'DELTA_GRPC' = 'GRPC'): Json {
  const node = { id: 'sidecar~127.0.0.1~reviews-v1.default~default.svc.cluster.local', cluster: 'reviews', metadata: { NAMESPACE: 'default' } };
  return sharedAdsBootstrap({ adminPort, adsPort, node, apiType });
}

function edsCluster(name: string): { name: string; json: unknown } {
  return { name, json: { name, type: 'EDS', connect_timeout: '1s', eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } } } };
}

function assignment(name: string, port: number): { name: string; json: unknown } {
  return { name, json: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: socketAddress(port) } }] }] } };
}

/** A listener whose HCM takes its routes from RDS `routes`; `hcmExtra` changes it (a new listener version). */
function rdsListener(port: number, hcmExtra: Json = {}): { name: string; json: unknown } {
  return {
    name: 'http',
    json: {
      name: 'http',
      address: socketAddress(port),
      filter_chains: [{
        filters: [{
          name: 'envoy.filters.network.http_connection_manager',
          typed_config: { '@type': HCM, stat_prefix: 'inbound', rds: { route_config_name: 'routes', config_source: { ads: {}, resource_api_version: 'V3' } }, http_filters: [routerFilter()], ...hcmExtra },
        }],
      }],
    },
  };
}

function routes(cluster: string, extraRoute: Json = {}): { name: string; json: unknown } {
  return { name: 'routes', json: { name: 'routes', virtual_hosts: [{ name: 'all', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster, timeout: '10s' }, ...extraRoute }] }] } };
}

async function upstreamOf(port: number, path = '/'): Promise<string> {
  const r = await httpRequest(port, path);
  return r.status === 200 ? String(r.headers['x-upstream']) : `status:${r.status}`;
}

describe('xDS client (sloop proxy with dynamic_resources)', () => {
  let a: HttpUpstream;
  let b: HttpUpstream;
  let c: HttpUpstream;
  before(async () => {
    [a, b, c] = await Promise.all([startHttpUpstream({ name: 'a' }), startHttpUpstream({ name: 'b' }), startHttpUpstream({ name: 'c' })]);
  });
  after(async () => {
    await Promise.all([a.close(), b.close(), c.close()]);
  });

  /** A fake control plane holding a full config: clusters svc-a → a and svc-b → b, listener on `port`, routes → `cluster`. */
  function serveAll(ads: FakeAds, port: number, version: string, cluster = 'svc-a'): void {
    ads.set(CDS, version, [edsCluster('svc-a'), edsCluster('svc-b')]);
    ads.set(EDS, version, [assignment('svc-a', a.port), assignment('svc-b', b.port)]);
    ads.set(LDS, version, [rdsListener(port)]);
    ads.set(RDS, version, [routes(cluster)]);
  }

  it('is not ready (503, INITIALIZING) until the first CDS and LDS are applied (row 29)', async (t) => {
    const ads = new FakeAds();
    const adsPort = await ads.start();
    t.after(() => ads.stop());
    const [adminPort, port] = await freePorts(2);
    ads.responding = false;
    serveAll(ads, port, 'v1');
    const starting = startProxy(adsBootstrap(adminPort, adsPort), { t });
    const first = await ads.requests.waitFor((r) => r.typeUrl === CDS, 10_000);
    assert.equal(first.node?.id, 'sidecar~127.0.0.1~reviews-v1.default~default.svc.cluster.local');
    const ready = await waitUntil(async () => (await adminRequest(adminPort, '/ready')).status, { what: 'admin up' });
    assert.equal(ready, 503);
    const info = JSON.parse((await adminRequest(adminPort, '/server_info')).text) as { state: string };
    assert.equal(info.state, 'INITIALIZING');
    ads.responding = true;
    serveAll(ads, port, 'v1');
    const proxy = await starting;
    assert.equal((await proxy.admin('/ready')).status, 200);
    assert.equal(await upstreamOf(port), 'a');
  });

  it('with the control plane down, becomes ready when initial_fetch_timeout passes (row 29)', async (t) => {
    const [adminPort, deadPort] = await freePorts(2);
    const boot = adsBootstrap(adminPort, deadPort);
    const dr = boot.dynamic_resources as Json;
    dr.cds_config = { ads: {}, resource_api_version: 'V3', initial_fetch_timeout: '0.3s' };
    dr.lds_config = { ads: {}, resource_api_version: 'V3', initial_fetch_timeout: '0.3s' };
    const started = performance.now();
    const proxy = await startProxy(boot, { t });
    assert.ok(performance.now() - started >= 600, 'waited for both initial_fetch_timeouts');
    assert.equal((await proxy.stats())['control_plane.connected_state'], 0);
  });

  it('refuses dynamic_resources it cannot use, naming the field', async (t) => {
    const [adminPort] = await freePorts(1);
    const boot = adsBootstrap(adminPort, 1);
    ((boot.dynamic_resources as Json).ads_config as Json).grpc_services = [{ envoy_grpc: { cluster_name: 'not-static' } }];
    const proxy = await startProxy(boot, { t, expectFail: true });
    assert.equal(proxy.exit?.code, 1);
    assert.match(proxy.stderr(), /dynamic_resources\.ads_config\.grpc_services\[0\]\.envoy_grpc\.cluster_name.*not a static cluster/);
  });

  it('SotW: serves LDS/RDS/CDS/EDS config, follows route and endpoint changes, NACKs bad pushes and keeps serving', async (t) => {
    const ads = new FakeAds();
    const adsPort = await ads.start();
    t.after(() => ads.stop());
    const [adminPort, port] = await freePorts(2);
    serveAll(ads, port, 'v1');
    const proxy = await startProxy(adsBootstrap(adminPort, adsPort), { t });
    assert.equal(await upstreamOf(port), 'a');
    for (const type of [CDS, EDS, LDS, RDS]) assert.equal((await ads.answerTo(type, 'v1')).errorDetail, null, `${type} v1 ACKed`);

    // /config_dump shows what came over xDS, with versions.
    const dump = JSON.parse((await proxy.admin('/config_dump?include_eds')).text) as { configs: Json[] };
    const byType = (suffix: string) => dump.configs.find((x) => String(x['@type']).endsWith(suffix)) as Json;
    const clusters = byType('ClustersConfigDump').dynamic_active_clusters as Json[];
    assert.deepEqual(clusters.map((x) => [(x.cluster as Json).name, x.version_info]).sort(), [['svc-a', 'v1'], ['svc-b', 'v1']]);
    assert.ok(clusters[0].last_updated, 'last_updated is set');
    const listeners = byType('ListenersConfigDump').dynamic_listeners as Json[];
    assert.equal(listeners[0].name, 'http');
    assert.equal((listeners[0].active_state as Json).version_info, 'v1');
    assert.equal(((byType('RoutesConfigDump').dynamic_route_configs as Json[])[0].route_config as Json).name, 'routes');
    assert.equal((byType('EndpointsConfigDump').dynamic_endpoint_configs as Json[]).length, 2);

    // RDS: a route change shifts traffic for the next request.
    ads.set(RDS, 'v2', [routes('svc-b')]);
    assert.equal((await ads.answerTo(RDS, 'v2')).errorDetail, null);
    await waitUntil(async () => (await upstreamOf(port)) === 'b', { what: 'traffic on b' });

    // EDS: svc-b's endpoint moves to upstream c.
    ads.set(EDS, 'v2', [assignment('svc-a', a.port), assignment('svc-b', c.port)]);
    await waitUntil(async () => (await upstreamOf(port)) === 'c', { what: 'traffic on c' });

    // Row 27: a bad regex is NACKed with error_detail; traffic is unchanged.
    ads.set(RDS, 'v3', [routes('svc-a', { match: { safe_regex: { regex: '(unclosed' } } })]);
    const nack = await ads.answerTo(RDS, 'v3');
    assert.ok(nack.errorDetail, 'bad regex NACKed');
    assert.equal(nack.versionInfo, 'v2');
    assert.match(nack.errorDetail.message, /RouteConfiguration "routes".*safe_regex/);
    assert.equal(await upstreamOf(port), 'c');
    const stats = await proxy.stats();
    assert.ok(stats['http.inbound.rds.routes.update_rejected'] >= 1);
    assert.ok(stats['http.inbound.rds.routes.update_success'] >= 2);
    // ... and the next valid version is ACKed and applied.
    ads.set(RDS, 'v4', [routes('svc-a')]);
    assert.equal((await ads.answerTo(RDS, 'v4')).errorDetail, null);
    await waitUntil(async () => (await upstreamOf(port)) === 'a', { what: 'traffic back on a' });

    // Row 27: a duplicate listener address is NACKed.
    ads.set(LDS, 'v5', [rdsListener(port), { name: 'http-dup', json: { ...(rdsListener(port).json as Json), name: 'http-dup' } }]);
    const dup = await ads.answerTo(LDS, 'v5');
    assert.match(dup.errorDetail?.message ?? '', /duplicate address/);
    // Row 27: a dangling cluster reference (inline route_config, where validate_clusters defaults to true).
    const dangling = { ...(rdsListener(port).json as Json) };
    const chain = (dangling.filter_chains as Json[])[0];
    const hcm: Json = { ...((chain.filters as Json[])[0].typed_config as Json), route_config: routes('no-such-cluster').json };
    delete hcm.rds;
    dangling.filter_chains = [{ filters: [{ name: 'envoy.filters.network.http_connection_manager', typed_config: hcm }] }];
    ads.set(LDS, 'v6', [{ name: 'http', json: dangling }]);
    const dang = await ads.answerTo(LDS, 'v6');
    assert.match(dang.errorDetail?.message ?? '', /unknown cluster "no-such-cluster"/);
    assert.equal(await upstreamOf(port), 'a');
    const s2 = await proxy.stats();
    assert.ok(s2['listener_manager.lds.update_rejected'] >= 2);
    assert.equal(s2['control_plane.connected_state'], 1);
    // A bad CDS push (unknown lb_policy for the type) keeps the clusters.
    ads.set(CDS, 'v7', [edsCluster('svc-a'), { name: 'svc-b', json: { ...(edsCluster('svc-b').json as Json), lb_policy: 'CLUSTER_PROVIDED' } }]);
    assert.ok((await ads.answerTo(CDS, 'v7')).errorDetail);
    assert.ok((await proxy.stats())['cluster_manager.cds.update_rejected'] >= 1);
    assert.equal(await upstreamOf(port), 'a');

    // A new EDS cluster warms until its first ClusterLoadAssignment: not routable, shown as warming.
    ads.set(CDS, 'v8', [edsCluster('svc-a'), edsCluster('svc-b'), edsCluster('svc-c')]);
    assert.equal((await ads.answerTo(CDS, 'v8')).errorDetail, null);
    assert.equal((await proxy.stats())['cluster_manager.warming_clusters'], 1);
    const warming = JSON.parse((await proxy.admin('/config_dump?resource=dynamic_warming_clusters')).text) as { configs: Json[] };
    assert.deepEqual(warming.configs.map((x) => (x.cluster as Json).name), ['svc-c']);
    ads.set(RDS, 'v9', [routes('svc-c')]);
    assert.equal((await ads.answerTo(RDS, 'v9')).errorDetail, null);
    assert.equal(await upstreamOf(port), 'status:503', 'a route to a warming cluster finds no cluster yet');
    ads.set(EDS, 'v9', [assignment('svc-a', a.port), assignment('svc-b', c.port), assignment('svc-c', c.port)]);
    await waitUntil(async () => (await upstreamOf(port)) === 'c', { what: 'svc-c warm and serving' });
    assert.equal((await proxy.stats())['cluster_manager.warming_clusters'], 0);
  });

  it('a replaced listener takes new connections while the old one finishes its in-flight request', async (t) => {
    const ads = new FakeAds();
    const adsPort = await ads.start();
    t.after(() => ads.stop());
    const [adminPort, port] = await freePorts(2);
    serveAll(ads, port, 'v1');
    const proxy = await startProxy(adsBootstrap(adminPort, adsPort), { t });
    const slow = httpRequest(port, '/slow/delay/1500');
    await a.recorder.waitFor((r) => r.url.includes('/slow/'));
    ads.set(LDS, 'v2', [rdsListener(port, { server_name: 'listener-v2' })]);
    assert.equal((await ads.answerTo(LDS, 'v2')).errorDetail, null);
    await waitUntil(async () => (await httpRequest(port, '/')).headers.server === 'listener-v2', { what: 'the new listener serving' });
    const res = await slow;
    assert.equal(res.status, 200, 'the in-flight request on the old listener finished');
    assert.equal(res.headers.server, 'envoy');
    const stats = await proxy.stats();
    assert.equal(stats['listener_manager.listener_modified'], 1);
    // A changed cluster replaces the old one the same way (in-flight requests finish on the old one).
    const slow2 = httpRequest(port, '/slow2/delay/1000');
    await a.recorder.waitFor((r) => r.url.includes('/slow2/'));
    ads.set(CDS, 'v3', [{ name: 'svc-a', json: { ...(edsCluster('svc-a').json as Json), connect_timeout: '2s' } }, edsCluster('svc-b')]);
    assert.equal((await ads.answerTo(CDS, 'v3')).errorDetail, null);
    await waitUntil(async () => (await proxy.stats())['cluster_manager.cluster_modified'] >= 1, { what: 'cluster svc-a replaced' });
    assert.equal((await slow2).status, 200);
    assert.equal(await upstreamOf(port), 'a', 'the replaced EDS cluster warmed from the cached assignment');
  });

  it('keeps serving when the control plane goes away, reconnects, and applies new config (row 28)', async (t) => {
    const ads = new FakeAds();
    const adsPort = await ads.start();
    const [adminPort, port] = await freePorts(2);
    serveAll(ads, port, 'v1');
    const proxy = await startProxy(adsBootstrap(adminPort, adsPort), { t });
    assert.equal(await upstreamOf(port), 'a');
    ads.stop();
    await waitUntil(async () => (await proxy.stats())['control_plane.connected_state'] === 0, { what: 'disconnected' });
    for (let i = 0; i < 20; i++) assert.equal(await upstreamOf(port), 'a', 'traffic continues on the last config');
    const back = new FakeAds();
    t.after(() => back.stop());
    await back.start(adsPort);
    serveAll(back, port, 'v2', 'svc-b');
    const again = await back.requests.waitFor((r) => r.typeUrl === CDS, 10_000);
    assert.equal(again.versionInfo, 'v1', 'SotW reconnect re-requests with the version it has');
    await waitUntil(async () => (await upstreamOf(port)) === 'b', { what: 'new config after reconnect', timeoutMs: 10_000 });
    assert.equal((await proxy.stats())['control_plane.connected_state'], 1);
  });

  it('delta (DeltaAggregatedResources): config, changes, removals and reconnect with initial_resource_versions', async (t) => {
    const ads = new FakeAds();
    const adsPort = await ads.start();
    const [adminPort, port] = await freePorts(2);
    serveAll(ads, port, 'v1');
    const proxy = await startProxy(adsBootstrap(adminPort, adsPort, 'DELTA_GRPC'), { t });
    assert.equal(await upstreamOf(port), 'a');
    assert.ok((await ads.requests.waitFor((r) => r.typeUrl === CDS)).delta);
    ads.set(RDS, 'v2', [routes('svc-b')]);
    await waitUntil(async () => (await upstreamOf(port)) === 'b', { what: 'traffic on b' });
    // svc-a is removed (delta removed_resources); svc-b stays.
    ads.set(CDS, 'v3', [edsCluster('svc-b')]);
    await waitUntil(async () => !(await proxy.admin('/clusters')).text.includes('svc-a::'), { what: 'svc-a removed' });
    assert.equal(await upstreamOf(port), 'b');
    // NACK in delta carries error_detail too.
    ads.set(RDS, 'v4', [routes('svc-b', { match: { safe_regex: { regex: '(' } } })]);
    assert.ok((await ads.answerTo(RDS, 'v4')).errorDetail);
    assert.equal(await upstreamOf(port), 'b');
    ads.stop();
    const back = new FakeAds();
    t.after(() => back.stop());
    await back.start(adsPort);
    const first = await back.requests.waitFor((r) => r.typeUrl === CDS, 10_000);
    assert.deepEqual(first.initialVersions, { 'svc-b': 'v1' });
  });

  it('VHDS over delta: a route table with vhds gets its virtual hosts as VirtualHost resources; a bad one is NACKed and traffic stays', async (t) => {
    const VHDS = 'type.googleapis.com/envoy.config.route.v3.VirtualHost';
    const ads = new FakeAds();
    const adsPort = await ads.start();
    t.after(() => ads.stop());
    const [adminPort, port] = await freePorts(2);
    serveAll(ads, port, 'v1');
    const vhost = (name: string, domain: string, cluster: string) => ({ name: `routes/${name}`, json: { name, domains: [domain], routes: [{ match: { prefix: '/' }, route: { cluster, timeout: '10s' } }] } });
    ads.set(RDS, 'v1', [{ name: 'routes', json: { name: 'routes', vhds: { config_source: { ads: {}, resource_api_version: 'V3' } } } }]);
    ads.set(VHDS, 'v1', [vhost('all', '*', 'svc-a')]);
    await startProxy(adsBootstrap(adminPort, adsPort, 'DELTA_GRPC'), { t });
    const first = await ads.requests.waitFor((r) => r.node !== null);
    assert.ok(JSON.stringify(first.node).includes('sloop.config.vhds-over-ads'), 'the proxy announces VHDS on its delta stream');
    assert.deepEqual((await ads.requests.waitFor((r) => r.typeUrl === VHDS)).names, ['*']);
    await waitUntil(async () => (await upstreamOf(port)) === 'a', { what: 'traffic on a through the VHDS virtual host' });
    ads.set(VHDS, 'v2', [vhost('all', '*', 'svc-b')]);
    await waitUntil(async () => (await upstreamOf(port)) === 'b', { what: 'traffic on b after the virtual host changed' });
    // A second virtual host with the same domain: the table would not compile, so the update is NACKed.
    ads.set(VHDS, 'v3', [vhost('all', '*', 'svc-b'), vhost('dup', '*', 'svc-a')]);
    const nack = await ads.answerTo(VHDS, 'v3');
    assert.match(nack.errorDetail?.message ?? '', /routes/);
    assert.equal(await upstreamOf(port), 'b');
  });

  it('transport_socket_matches over CDS/EDS: SDS warming survives a cluster update; changed endpoint metadata re-picks the socket', async (t) => {
    const SDS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret';
    const dir = await mkdtemp(join(tmpdir(), 'sloop-xds-tsm-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const pki = await makeTestPki(dir);
    const tlsApp = await startHttpUpstream({ name: 'tls', tls: { key: pki.server.key, cert: pki.server.cert, ca: pki.ca.cert, requestCert: true } });
    t.after(() => tlsApp.close());
    const ads = new FakeAds();
    const adsPort = await ads.start();
    t.after(() => ads.stop());
    const [adminPort, port] = await freePorts(2);
    const cluster = (connectTimeout: string) => ({ name: 'mtls', json: {
      name: 'mtls', type: 'EDS', connect_timeout: connectTimeout, eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' } },
      transport_socket_matches: [
        { name: 'tlsMode-istio', match: { tlsMode: 'istio' }, transport_socket: { name: 'envoy.transport_sockets.tls', typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
          common_tls_context: {
            tls_certificate_sds_secret_configs: [{ name: 'client-cert', sds_config: { ads: {}, resource_api_version: 'V3' } }],
            validation_context: { trusted_ca: { inline_string: pki.ca.cert } },
          },
        } } },
        { name: 'tlsMode-disabled', match: {}, transport_socket: { name: 'envoy.transport_sockets.raw_buffer', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer' } } },
      ],
    } });
    const cla = (labelled: boolean) => ({ name: 'mtls', json: { cluster_name: 'mtls', endpoints: [{ lb_endpoints: [{
      endpoint: { address: socketAddress(tlsApp.port) },
      ...(labelled ? { metadata: { filter_metadata: { 'envoy.transport_socket_match': { tlsMode: 'istio' } } } } : {}),
    }] }] } });
    ads.set(CDS, 'v1', [cluster('1s')]);
    ads.set(EDS, 'v1', [cla(true)]);
    ads.set(LDS, 'v1', [rdsListener(port)]);
    ads.set(RDS, 'v1', [routes('mtls')]);
    const starting = startProxy(adsBootstrap(adminPort, adsPort), { t, readyTimeoutMs: 20_000 });
    await ads.requests.waitFor((r) => r.typeUrl === SDS && r.names.includes('client-cert'), 10_000);
    // A new version of the cluster while the first still waits for its secret: the replaced one must not hold up
    // initialization (Envoy's init manager forgets it) for the SDS initial_fetch_timeout of 15 s.
    ads.set(CDS, 'v2', [cluster('2s')]);
    await ads.answerTo(CDS, 'v2', 10_000);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await adminRequest(adminPort, '/ready')).status, 503, 'the labelled endpoint\'s socket waits for its secret');
    const secretSent = performance.now();
    ads.set(SDS, 'v1', [{ name: 'client-cert', json: { name: 'client-cert', tls_certificate: { certificate_chain: { inline_string: pki.client.cert }, private_key: { inline_string: pki.client.key } } } }]);
    const proxy = await starting;
    assert.ok(performance.now() - secretSent < 8_000, `ready ${Math.round(performance.now() - secretSent)} ms after the secret`);
    assert.equal(await upstreamOf(port, '/tls'), 'tls');
    assert.match(tlsApp.requests.at(-1)!.peerSubjectAltName ?? '', new RegExp(`URI:${CLIENT_SPIFFE_ID}`));
    // EDS drops the label: new connections are plaintext, which the TLS upstream refuses (the pooled TLS
    // connection is not reused for it).
    const served = tlsApp.requests.length;
    ads.set(EDS, 'v2', [cla(false)]);
    await waitUntil(async () => ((await httpRequest(port, '/plain')).status === 503 ? true : undefined), { what: 'plaintext after the EDS update' });
    assert.equal(tlsApp.requests.length, served);
    // And labels it again: TLS with the SDS certificate.
    ads.set(EDS, 'v3', [cla(true)]);
    await waitUntil(async () => ((await upstreamOf(port, '/tls-again')) === 'tls' ? true : undefined), { what: 'the TLS socket after the second EDS update' });
    assert.equal(tlsApp.requests.at(-1)!.url, '/tls-again');
    const stats = await proxy.stats();
    assert.equal(stats['cluster.mtls.tlsMode-istio.total_match_count'], 2);
    assert.equal(stats['cluster.mtls.tlsMode-disabled.total_match_count'], 1);
  });
});
