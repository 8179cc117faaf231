import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { unpackAny } from './any.ts';
import type { RouteConfiguration, RouteConfiguration__Output } from './gen/envoy/config/route/v3/RouteConfiguration.ts';
import type { VirtualHost__Output } from './gen/envoy/config/route/v3/VirtualHost.ts';
import { createSnapshot } from './snapshot.ts';
import { TYPE_URLS } from './type-urls.ts';
import { splitRouteConfiguration, vhdsTypes } from './vhds.ts';

const vhost = (name: string, cluster: string) => ({ name, domains: [name, `${name}:80`], routes: [{ match: { prefix: '/' }, route: { cluster, timeout: { seconds: 0 } } }] });
const table = (over: Partial<RouteConfiguration> = {}): RouteConfiguration => ({
  name: '80',
  virtual_hosts: [vhost('a.ns.svc.cluster.local', 'outbound|80||a'), vhost('b.ns.svc.cluster.local', 'outbound|80||b')],
  validate_clusters: { value: false },
  request_headers_to_add: [{ header: { key: 'x-mesh', value: 'sloop' } }],
  ...over,
});
const routesOf = (rcs: RouteConfiguration[]) => createSnapshot({ routes: rcs }).ofType(TYPE_URLS.route);

describe('VHDS split of encoded RouteConfigurations', () => {
  it('serves the table without virtual hosts and with vhds over ADS, every other field kept, and each virtual host on its own', () => {
    const r = routesOf([table()]).resources.get('80')!;
    const split = splitRouteConfiguration(r);
    const rc = unpackAny<RouteConfiguration__Output>(split.route.any);
    assert.equal(rc.name, '80');
    assert.deepEqual(rc.virtual_hosts, []);
    assert.equal(rc.vhds?.config_source?.config_source_specifier, 'ads');
    assert.equal(rc.vhds?.config_source?.resource_api_version, 'V3');
    assert.equal(rc.validate_clusters?.value, false);
    assert.equal(rc.request_headers_to_add[0]?.header?.key, 'x-mesh');
    assert.deepEqual(split.virtualHosts.map((v) => v.name), ['80/a.ns.svc.cluster.local', '80/b.ns.svc.cluster.local']);
    const vh = unpackAny<VirtualHost__Output>(split.virtualHosts[1]!.any);
    assert.equal(split.virtualHosts[1]!.any.type_url, TYPE_URLS.virtualHost);
    assert.deepEqual(vh.domains, ['b.ns.svc.cluster.local', 'b.ns.svc.cluster.local:80']);
    assert.equal(vh.routes[0]?.route?.cluster, 'outbound|80||b');
    assert.equal(splitRouteConfiguration(r), split, 'cached per encoded resource');
  });

  it('gives an edited virtual host a new version and leaves the others and the table as they were', () => {
    const before = vhdsTypes(routesOf([table()]));
    const after = vhdsTypes(routesOf([table({ virtual_hosts: [vhost('a.ns.svc.cluster.local', 'outbound|80||a'), vhost('b.ns.svc.cluster.local', 'outbound|80|v2|b')] })]));
    const v = (t: typeof before, n: string) => t.virtualHosts.resources.get(n)!.version;
    assert.equal(v(after, '80/a.ns.svc.cluster.local'), v(before, '80/a.ns.svc.cluster.local'));
    assert.notEqual(v(after, '80/b.ns.svc.cluster.local'), v(before, '80/b.ns.svc.cluster.local'));
    assert.equal(after.routes.version, before.routes.version, 'the table itself did not change');
    assert.notEqual(after.virtualHosts.version, before.virtualHosts.version);
  });

  it('replaces a vhds the table already had, and leaves a table whose virtual hosts repeat a name whole', () => {
    const withVhds = splitRouteConfiguration(routesOf([table({ vhds: { config_source: { path: '/x' } } })]).resources.get('80')!);
    assert.equal(unpackAny<RouteConfiguration__Output>(withVhds.route.any).vhds?.config_source?.config_source_specifier, 'ads');
    const dup = routesOf([table({ virtual_hosts: [vhost('a', 'x'), vhost('a', 'y')] })]).resources.get('80')!;
    const split = splitRouteConfiguration(dup);
    assert.equal(split.route, dup);
    assert.deepEqual(split.virtualHosts, []);
  });
});
