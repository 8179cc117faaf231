// The ADS client against an in-process fake ADS server (test/helpers/fake-ads.ts): the xDS protocol's
// ACK/NACK rules, SotW removal of Listener/Cluster, delta subscriptions, and reconnection (xds_protocol).
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { AdsClient, CLUSTER_TYPE, ENDPOINT_TYPE, type ResourceUpdate } from './ads-client.ts';
import { FakeAds, CDS, EDS } from '../../test/helpers/fake-ads.ts';
import { createLogger } from '../shared/log.ts';
import { packAny } from './any.ts';
import { Recorder } from '../../test/helpers/wait.ts';

const log = createLogger('silent');

function cluster(name: string, port = 1): { name: string; json: unknown } {
  return {
    name,
    json: { name, type: 'STATIC', connect_timeout: '1s', load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }] } },
  };
}

function cla(name: string, port: number): { name: string; json: unknown } {
  return { name, json: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }] } };
}

/** A handler that records updates and rejects those `reject` says are bad. */
function recordingHandler(reject: (u: ResourceUpdate) => string[] | undefined = () => undefined) {
  const updates = new Recorder<ResourceUpdate>('updates');
  const states = new Recorder<boolean>('connection states');
  return {
    updates,
    states,
    handler: {
      onUpdate: (u: ResourceUpdate) => {
        const r = reject(u);
        if (r === undefined) updates.push(u);
        return r;
      },
      onConnectionState: (up: boolean) => states.push(up),
    },
  };
}

describe('ADS client', () => {
  const cleanups: Array<() => void> = [];
  afterEach(() => {
    for (const c of cleanups.splice(0)) c();
  });

  async function setup(mode: 'sotw' | 'delta', reject?: (u: ResourceUpdate) => string[] | undefined) {
    const ads = new FakeAds();
    const port = await ads.start();
    const h = recordingHandler(reject);
    let target = `127.0.0.1:${port}`;
    const client = new AdsClient({ target: () => target, node: { id: 'sidecar~1', cluster: 'test' }, mode, handler: h.handler, log, backoffBaseMs: 20, backoffMaxMs: 100 });
    cleanups.push(() => client.close(), () => ads.stop());
    return { ads, client, ...h, retarget: (t: string) => (target = t) };
  }

  it('SotW: sends the node once, ACKs with version and nonce, and removes clusters missing from the next response', async () => {
    const { ads, client, updates } = await setup('sotw');
    ads.set(CDS, 'v1', [cluster('a'), cluster('b')]);
    client.subscribe(CLUSTER_TYPE, '*');
    client.start();
    const first = await ads.requests.waitFor((r) => r.typeUrl === CDS);
    assert.equal(first.node?.id, 'sidecar~1');
    assert.equal(first.versionInfo, '');
    const ack = await ads.answerTo(CDS, 'v1');
    assert.equal(ack.errorDetail, null);
    assert.equal(ack.versionInfo, 'v1');
    assert.equal(ack.node, null, 'node is only on the first request of a stream');
    const u1 = (await updates.waitForCount(1))[0];
    assert.deepEqual(u1.added.map((r) => r.name).sort(), ['a', 'b']);
    assert.deepEqual(u1.removed, []);
    ads.set(CDS, 'v2', [cluster('a', 2)]);
    const u2 = (await updates.waitForCount(2))[1];
    assert.deepEqual(u2.added.map((r) => r.name), ['a']);
    assert.deepEqual(u2.removed, ['b']);
    assert.equal((await ads.answerTo(CDS, 'v2')).versionInfo, 'v2');
  });

  it('SotW: NACKs a rejected update with error_detail and the last accepted version, then ACKs the next good one', async () => {
    const { ads, client, updates } = await setup('sotw', (u) => (u.added.some((r) => r.name === 'bad') ? ['Cluster "bad": lb_policy: nope'] : undefined));
    ads.set(CDS, 'v1', [cluster('a')]);
    client.subscribe(CLUSTER_TYPE, '*');
    client.start();
    await ads.answerTo(CDS, 'v1');
    ads.set(CDS, 'v2', [cluster('a'), cluster('bad')]);
    const nack = await ads.answerTo(CDS, 'v2');
    assert.equal(nack.versionInfo, 'v1', 'a NACK carries the last accepted version');
    assert.equal(nack.errorDetail?.code, 3);
    assert.match(nack.errorDetail?.message ?? '', /Cluster "bad": lb_policy: nope/);
    ads.set(CDS, 'v3', [cluster('a'), cluster('c')]);
    const ack = await ads.answerTo(CDS, 'v3');
    assert.equal(ack.errorDetail, null);
    assert.equal(ack.versionInfo, 'v3');
    assert.equal(updates.items.length, 2);
  });

  it('NACKs a resource that breaks a protoc-gen-validate rule, naming the field', async () => {
    const { ads, client } = await setup('sotw');
    // port_value has `lte: 65535` in Envoy's protos; packed raw, past the fake's own validating encoder.
    const bad = cla('x', 70000);
    ads.set(EDS, 'v1', [{ name: 'x', any: packAny(ENDPOINT_TYPE, bad.json as object) }]);
    client.subscribe(ENDPOINT_TYPE, ['x']);
    client.start();
    const nack = await ads.answerTo(EDS, 'v1');
    assert.ok(nack.errorDetail, 'expected a NACK');
    assert.match(nack.errorDetail.message, /port_value/);
  });

  it('named subscriptions: a new name is requested with the full list (SotW)', async () => {
    const { ads, client, updates } = await setup('sotw');
    ads.set(EDS, 'v1', [cla('x', 1), cla('y', 2)]);
    client.subscribe(ENDPOINT_TYPE, ['x']);
    client.start();
    const u1 = (await updates.waitForCount(1))[0];
    assert.deepEqual(u1.added.map((r) => r.name), ['x']);
    client.subscribe(ENDPOINT_TYPE, ['x', 'y']);
    const req = await ads.requests.waitFor((r) => r.typeUrl === EDS && r.names.length === 2);
    assert.deepEqual(req.names, ['x', 'y']);
    const u2 = (await updates.waitForCount(2))[1];
    assert.deepEqual(u2.added.map((r) => r.name).sort(), ['x', 'y']);
  });

  it('reconnects with backoff after the control plane dies, re-requesting with the versions it has', async () => {
    const { ads, client, updates, states, retarget } = await setup('sotw');
    ads.set(CDS, 'v1', [cluster('a')]);
    client.subscribe(CLUSTER_TYPE, '*');
    client.start();
    await ads.answerTo(CDS, 'v1');
    await states.waitFor((s) => s);
    const port = ads.port;
    ads.stop();
    await states.waitFor((s) => !s);
    assert.equal(client.connected, false);
    const back = new FakeAds();
    cleanups.push(() => back.stop());
    back.set(CDS, 'v1', [cluster('a')]);
    // The same port if it is still free; otherwise point the client at the new one.
    await back.start(port).catch(async () => retarget(`127.0.0.1:${await back.start()}`));
    const again = await back.requests.waitFor((r) => r.typeUrl === CDS, 10_000);
    assert.equal(again.versionInfo, 'v1', 'SotW re-request carries the last accepted version');
    assert.equal(again.node?.id, 'sidecar~1');
    await states.waitForCount(3);
    assert.equal(client.connected, true);
    assert.ok(updates.items.length >= 1);
  });

  it('delta: subscribes, applies added and removed resources, and sends initial_resource_versions on reconnect', async () => {
    const { ads, client, updates, retarget } = await setup('delta');
    ads.set(CDS, 'v1', [cluster('a'), cluster('b')]);
    client.subscribe(CLUSTER_TYPE, '*');
    client.start();
    const u1 = (await updates.waitForCount(1))[0];
    assert.deepEqual(u1.added.map((r) => `${r.name}@${r.version}`).sort(), ['a@v1', 'b@v1']);
    assert.equal((await ads.answerTo(CDS, 'v1')).errorDetail, null);
    ads.set(CDS, 'v2', [cluster('a'), cluster('c')]);
    const u2 = (await updates.waitForCount(2))[1];
    assert.deepEqual(u2.added.map((r) => r.name), ['c'], 'delta carries only what changed');
    assert.deepEqual(u2.removed, ['b']);
    const port = ads.port;
    ads.stop();
    const back = new FakeAds();
    cleanups.push(() => back.stop());
    await back.start(port).catch(async () => retarget(`127.0.0.1:${await back.start()}`));
    const first = await back.requests.waitFor((r) => r.typeUrl === CDS, 10_000);
    assert.deepEqual(first.initialVersions, { a: 'v1', c: 'v2' });
  });
});
