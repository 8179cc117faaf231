import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError, formatDiagnostic } from '../shared/errors.ts';
import { unpackAny } from '../xds/any.ts';
import type { HttpConnectionManager__Output } from '../xds/gen/envoy/extensions/filters/network/http_connection_manager/v3/HttpConnectionManager.ts';
import { lookupMessage } from '../xds/protos.ts';
import { loadBootstrap, parseBootstrap } from './bootstrap.ts';

const testdata = (name: string) => fileURLToPath(new URL(`./testdata/${name}`, import.meta.url));

/** The formatted diagnostics of the ConfigError `fn` throws. */
function configErrors(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.code, 'SLOOP_ERR_CONFIG_INVALID');
    return err.diagnostics.map(formatDiagnostic);
  }
  assert.fail('expected a ConfigError');
}

const tmp = mkdtempSync(join(tmpdir(), 'sloop-bootstrap-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('loadBootstrap: good bootstraps', () => {
  it('loads a listener with an HTTP connection manager, a static cluster and admin', () => {
    const { bootstrap, warnings } = loadBootstrap(testdata('bootstrap-good.yaml'));
    assert.deepEqual(warnings, []);
    assert.equal(bootstrap.node!.id, 'sidecar~10.1.2.3~reviews-v1.default~default.svc.cluster.local');
    assert.equal(bootstrap.node!.metadata!.fields.LABELS.structValue!.fields.app.stringValue, 'reviews');
    assert.deepEqual(bootstrap.admin!.address!.socket_address!.port_value, 15000);

    const listener = bootstrap.static_resources!.listeners[0];
    assert.equal(listener.name, 'inbound_15006');
    assert.equal(listener.address!.socket_address!.address, '0.0.0.0');
    const filter = listener.filter_chains[0].filters[0];
    assert.equal(filter.typed_config!.type_url, 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager');
    const hcm = unpackAny<HttpConnectionManager__Output>(filter.typed_config!);
    assert.equal(hcm.stat_prefix, 'inbound_http');
    const vh = hcm.route_config!.virtual_hosts[0];
    assert.deepEqual(vh.domains, ['*']);
    assert.equal(vh.routes[0].route!.cluster, 'reviews_v1');
    assert.deepEqual(vh.routes[0].route!.timeout, { seconds: '15', nanos: 0 });
    assert.equal(vh.routes[1].action, 'direct_response');
    assert.equal(hcm.http_filters[0].typed_config!.type_url, 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router');

    const cluster = bootstrap.static_resources!.clusters[0];
    assert.equal(cluster.type, 'STATIC');
    assert.equal(cluster.lb_policy, 'LEAST_REQUEST');
    assert.deepEqual(cluster.connect_timeout, { seconds: '0', nanos: 250_000_000 });
    const endpoints = cluster.load_assignment!.endpoints[0].lb_endpoints;
    assert.deepEqual(endpoints.map((e) => e.endpoint!.address!.socket_address!.port_value), [9080, 9081]);
    assert.deepEqual(endpoints[1].load_balancing_weight, { value: 3 });
  });

  it('loads the same bootstrap from JSON with lowerCamelCase names', () => {
    const yaml = loadBootstrap(testdata('bootstrap-good.yaml'));
    const json = loadBootstrap(testdata('bootstrap-good-camel.json'));
    assert.deepStrictEqual(json, yaml);
  });

  it('loads a binary (.pb) bootstrap, as Envoy does', () => {
    const T = lookupMessage('envoy.config.bootstrap.v3.Bootstrap')!;
    const { bootstrap } = loadBootstrap(testdata('bootstrap-good.yaml'));
    const file = join(tmp, 'bootstrap.pb');
    writeFileSync(file, T.encode(T.fromObject(bootstrap)).finish());
    assert.deepStrictEqual(loadBootstrap(file).bootstrap, bootstrap);
  });

  it('keeps 64-bit integers exact and resolves YAML aliases', () => {
    const { bootstrap } = parseBootstrap(
      [
        'memory_allocator_manager: { bytes_to_release: 18446744073709551615 }',
        'static_resources:',
        '  clusters:',
        '  - &base { name: a, connect_timeout: 1s }',
        '  - *base',
      ].join('\n'),
      'x.yaml',
    );
    assert.equal(bootstrap.memory_allocator_manager!.bytes_to_release, '18446744073709551615');
    assert.deepEqual(bootstrap.static_resources!.clusters.map((c) => c.name), ['a', 'a']);
  });

  it('returns warnings for deprecated fields without rejecting', () => {
    const { bootstrap, warnings } = parseBootstrap(
      ['static_resources:', '  clusters:', '  - name: a', '    connect_timeout: 1s', '    max_requests_per_connection: 5'].join('\n'),
      'w.yaml',
    );
    assert.equal(bootstrap.static_resources!.clusters[0].name, 'a');
    assert.deepEqual(warnings.map(formatDiagnostic), [
      'w.yaml:5:5 static_resources.clusters[0].max_requests_per_connection: envoy.config.cluster.v3.Cluster.max_requests_per_connection is deprecated',
    ]);
    assert.equal(warnings[0].severity, 'warning');
  });
});

describe('loadBootstrap: bad bootstraps', () => {
  it('reports every problem with file:line:col, Envoy field path and what was expected', () => {
    const file = testdata('bootstrap-bad.yaml');
    const hcm = 'static_resources.listeners[0].filter_chains[0].filters[0].typed_config';
    assert.deepEqual(configErrors(() => loadBootstrap(file)), [
      `${file}:8:14 static_resources.listeners[0].address: expected an object (envoy.config.core.v3.Address), got "0.0.0.0:15006"`,
      // Inside the HttpConnectionManager Any: the path continues through typed_config, the position is the value's.
      `${file}:21:48 ${hcm}.route_config.virtual_hosts[0].routes[0].route.timeout: expected a duration like "5s" or "0.250s", got "15 seconds"`,
      `${file}:25:24 ${hcm}.http_filters[0].typed_config["@type"]: unknown type "type.googleapis.com/envoy.filters.http.router.v3.Router": Sloop has no message type envoy.filters.http.router.v3.Router`,
      `${file}:29:5 static_resources.clusters[0].lb_polcy: unknown field "lb_polcy" in envoy.config.cluster.v3.Cluster (did you mean "lb_policy"?)`,
      `${file}:31:22 static_resources.clusters[1].connect_timeout: must be greater than 0s`,
      `${file}:32:16 static_resources.clusters[1].lb_policy: expected one of ROUND_ROBIN, LEAST_REQUEST, RING_HASH, RANDOM, MAGLEV, CLUSTER_PROVIDED, LOAD_BALANCING_POLICY_CONFIG, got "ROUND_ROBBIN"`,
      `${file}:36:5 static_resources.clusters[2].cluster_type: only one of the oneof "cluster_discovery_type" may be set, but "type" is set too`,
      // Warnings ride along in the ConfigError too.
      `${file}:37:5 static_resources.clusters[2].max_requests_per_connection: envoy.config.cluster.v3.Cluster.max_requests_per_connection is deprecated`,
    ]);
  });

  it('says how many errors in the message, listing each', () => {
    assert.throws(() => loadBootstrap(testdata('bootstrap-bad.yaml')), (err: Error) => {
      const lines = err.message.split('\n');
      assert.equal(lines[0], 'invalid bootstrap: 7 error(s)');
      assert.equal(lines.length, 8);
      return true;
    });
  });

  it('points a missing required field at the enclosing node', () => {
    assert.deepEqual(configErrors(() => parseBootstrap(['static_resources:', '  clusters:', '  - connect_timeout: 1s', '    type: STATIC'].join('\n'), 'm.yaml')), [
      'm.yaml:3:5 static_resources.clusters[0].name: must not be empty',
    ]);
  });

  it('rejects YAML syntax errors and duplicate keys with their position', () => {
    assert.deepEqual(configErrors(() => parseBootstrap('admin:\n  address: [1\nnode: {}\n', 's.yaml')), [
      's.yaml:3:1 (root): YAML: Flow sequence in block collection must be sufficiently indented and end with a ]',
    ]);
    assert.deepEqual(configErrors(() => parseBootstrap('node: {}\nadmin: {}\nnode: {}\n', 'd.yaml')), ['d.yaml:3:1 (root): YAML: Map keys must be unique']);
  });

  it('rejects more than one YAML document', () => {
    assert.deepEqual(configErrors(() => parseBootstrap('node: { id: a }\n---\nnode: { id: b }\n', 'two.yaml')), ['two.yaml:2:1 (root): expected one YAML document, found 2']);
  });

  it('rejects an empty file and a document that is not a mapping', () => {
    assert.deepEqual(configErrors(() => parseBootstrap('# nothing\n', 'e.yaml')), ['e.yaml:1:1 (root): the bootstrap is empty']);
    assert.deepEqual(configErrors(() => parseBootstrap('- node\n', 'l.yaml')), ['l.yaml:1:1 (root): expected an object (envoy.config.bootstrap.v3.Bootstrap), got an array']);
  });

  it('validates a binary bootstrap too', () => {
    const T = lookupMessage('envoy.config.bootstrap.v3.Bootstrap')!;
    const file = join(tmp, 'bad.pb');
    writeFileSync(file, T.encode(T.fromObject({ static_resources: { clusters: [{ name: 'c', connect_timeout: { seconds: 0 } }] } })).finish());
    assert.deepEqual(configErrors(() => loadBootstrap(file)), [`${file} static_resources.clusters[0].connect_timeout: must be greater than 0s`]);
  });

  it('refuses protobuf text format (.pb_text) rather than misreading it as YAML', () => {
    const file = join(tmp, 'b.pb_text');
    writeFileSync(file, 'node { id: "a" }\n');
    assert.throws(() => loadBootstrap(file), { code: 'SLOOP_ERR_CONFIG_UNSUPPORTED' });
  });

  it('throws SLOOP_ERR_CONFIG_UNREADABLE for a file it cannot read', () => {
    const file = join(tmp, 'missing.yaml');
    assert.throws(() => loadBootstrap(file), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'SLOOP_ERR_CONFIG_UNREADABLE');
      assert.ok(err.message.startsWith(`cannot read bootstrap ${file}: `));
      assert.equal((err.cause as { code?: string }).code, 'ENOENT');
      return true;
    });
  });
});
