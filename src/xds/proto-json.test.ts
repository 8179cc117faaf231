import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type protobuf from 'protobufjs';
import { formatDiagnostic } from '../shared/errors.ts';
import type { Diagnostic } from '../shared/errors.ts';
import { unpackAny } from './any.ts';
import type { Bootstrap__Output } from './gen/envoy/config/bootstrap/v3/Bootstrap.ts';
import type { Cluster__Output } from './gen/envoy/config/cluster/v3/Cluster.ts';
import type { RouteConfiguration__Output } from './gen/envoy/config/route/v3/RouteConfiguration.ts';
import type { HttpConnectionManager__Output } from './gen/envoy/extensions/filters/network/http_connection_manager/v3/HttpConnectionManager.ts';
import { decodeProtoJson, encodeProtoJson } from './proto-json.ts';
import type { JsonPath } from './proto-json.ts';
import { lookupMessage, TO_OBJECT_OPTIONS } from './protos.ts';

const T = (name: string): protobuf.Type => lookupMessage(name)!;
const CLUSTER = T('envoy.config.cluster.v3.Cluster');
const ROUTE_CONFIG = T('envoy.config.route.v3.RouteConfiguration');
const BOOTSTRAP = T('envoy.config.bootstrap.v3.Bootstrap');
const HCM_URL = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
const ROUTER_URL = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

/** What protobufjs itself makes of a fromObject-form object: the shape decode must produce. */
function viaProtobufjs<X>(type: protobuf.Type, form: Record<string, unknown>): X {
  return type.toObject(type.fromObject(form), TO_OBJECT_OPTIONS) as X;
}

function decodeOk<X>(type: protobuf.Type, json: unknown): X {
  const r = decodeProtoJson<X>(type, json);
  assert.deepEqual(r.diagnostics.filter((d) => d.severity === 'error'), []);
  assert.ok(r.value !== undefined);
  return r.value;
}

/** Formatted errors (and warnings) of decoding `json`, in report order. */
function problems(type: protobuf.Type, json: unknown, severity: Diagnostic['severity'] = 'error'): string[] {
  const r = decodeProtoJson(type, json);
  if (severity === 'error') assert.equal(r.value, undefined, 'a decode with errors returns no value');
  return r.diagnostics.filter((d) => d.severity === severity).map(formatDiagnostic);
}

const minimalCluster = { name: 'c', connect_timeout: '1s' };

describe('decodeProtoJson: output shape', () => {
  it('gives exactly what toObject(fromObject(...)) gives, for a route configuration', () => {
    const json = {
      name: 'local',
      virtual_hosts: [
        {
          name: 'vh',
          domains: ['*'],
          routes: [
            { match: { prefix: '/' }, route: { cluster: 'svc', timeout: '1.5s', retry_policy: { retry_on: '5xx', num_retries: 3 } } },
            { match: { path: '/x', headers: [{ name: ':method', string_match: { exact: 'GET' } }] }, direct_response: { status: 204 } },
          ],
        },
      ],
      request_headers_to_add: [{ header: { key: 'x-a', value: 'b' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }],
    };
    const expected = viaProtobufjs<RouteConfiguration__Output>(ROUTE_CONFIG, {
      name: 'local',
      virtual_hosts: [
        {
          name: 'vh',
          domains: ['*'],
          routes: [
            { match: { prefix: '/' }, route: { cluster: 'svc', timeout: { seconds: 1, nanos: 500_000_000 }, retry_policy: { retry_on: '5xx', num_retries: { value: 3 } } } },
            { match: { path: '/x', headers: [{ name: ':method', string_match: { exact: 'GET' } }] }, direct_response: { status: 204 } },
          ],
        },
      ],
      request_headers_to_add: [{ header: { key: 'x-a', value: 'b' }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' }],
    });
    const value = decodeOk<RouteConfiguration__Output>(ROUTE_CONFIG, json);
    assert.deepStrictEqual(value, expected);
    // Spot-check the __Output conventions the rest of Sloop relies on.
    const route = value.virtual_hosts[0].routes[0];
    assert.equal(route.action, 'route');
    assert.equal(route.match!.path_specifier, 'prefix');
    assert.deepEqual(route.route!.timeout, { seconds: '1', nanos: 500_000_000 });
    assert.deepEqual(route.route!.retry_policy!.num_retries, { value: 3 });
    assert.equal(value.virtual_hosts[0].routes[1].redirect, undefined);
  });

  it('accepts lowerCamelCase names as Envoy does, with the same result as proto names', () => {
    const snake = decodeOk(CLUSTER, { name: 'c', connect_timeout: '2s', lb_policy: 'RING_HASH', per_connection_buffer_limit_bytes: 1024, common_lb_config: { healthy_panic_threshold: { value: 40 } } });
    const camel = decodeOk(CLUSTER, { name: 'c', connectTimeout: '2s', lbPolicy: 'RING_HASH', perConnectionBufferLimitBytes: 1024, commonLbConfig: { healthyPanicThreshold: { value: 40 } } });
    assert.deepStrictEqual(camel, snake);
    assert.equal((camel as Cluster__Output).lb_policy, 'RING_HASH');
  });

  it('rejects a field given under both its names', () => {
    assert.deepEqual(problems(CLUSTER, { ...minimalCluster, lb_policy: 'RANDOM', lbPolicy: 'MAGLEV' }), [
      'lb_policy: field "lb_policy" is set twice (as "lb_policy" and "lbPolicy")',
    ]);
  });

  it('treats null as unset (proto3 JSON)', () => {
    const c = decodeOk<Cluster__Output>(CLUSTER, { ...minimalCluster, lb_policy: null, load_assignment: null, health_checks: null });
    assert.equal(c.lb_policy, 'ROUND_ROBIN');
    assert.equal(c.load_assignment, null);
    assert.deepEqual(c.health_checks, []);
  });
});

describe('decodeProtoJson: scalars', () => {
  const SOCKET = T('envoy.config.core.v3.SocketAddress');
  const BUFFER_LIMIT = (v: unknown) => ({ ...minimalCluster, per_connection_buffer_limit_bytes: v });

  it('takes 32-bit integers as numbers, bigints or decimal strings', () => {
    for (const v of [8080, 8080n, '8080', '8.08e3']) {
      assert.equal(decodeOk<{ port_value: number }>(SOCKET, { address: 'a', port_value: v }).port_value, 8080, String(v));
    }
  });

  it('rejects non-integers and out-of-range integers', () => {
    assert.deepEqual(problems(SOCKET, { address: 'a', port_value: 1.5 }), ['port_value: expected an integer, got 1.5']);
    assert.deepEqual(problems(SOCKET, { address: 'a', port_value: -1 }), ['port_value: expected an unsigned 32-bit integer (0 to 4294967295), got -1']);
    assert.deepEqual(problems(SOCKET, { address: 'a', port_value: 'http' }), ['port_value: expected an integer, got "http"']);
  });

  it('keeps 64-bit integers exact, from numbers, strings and bigints', () => {
    const BOOT = BOOTSTRAP;
    const big = '18446744073709551615';
    const fromString = decodeOk<Bootstrap__Output>(BOOT, { memory_allocator_manager: { bytes_to_release: big } });
    assert.equal(fromString.memory_allocator_manager!.bytes_to_release, big);
    const fromBigint = decodeOk<Bootstrap__Output>(BOOT, { memory_allocator_manager: { bytes_to_release: 2n ** 64n - 1n } });
    assert.equal(fromBigint.memory_allocator_manager!.bytes_to_release, big);
    assert.deepEqual(problems(BOOT, { memory_allocator_manager: { bytes_to_release: 2n ** 64n } }), [
      'memory_allocator_manager.bytes_to_release: expected an unsigned 64-bit integer (0 to 18446744073709551615), got 18446744073709551616',
    ]);
  });

  it('takes floats as numbers and the proto3 JSON strings', () => {
    const PRECONNECT = T('envoy.config.cluster.v3.Cluster.PreconnectPolicy');
    assert.deepEqual(decodeOk<{ per_upstream_preconnect_ratio: { value: number } }>(PRECONNECT, { per_upstream_preconnect_ratio: '1.5' }).per_upstream_preconnect_ratio, { value: 1.5 });
    assert.deepEqual(problems(PRECONNECT, { per_upstream_preconnect_ratio: 'lots' }), ['per_upstream_preconnect_ratio: expected a number, got "lots"']);
  });

  it('takes only true/false for bools', () => {
    assert.equal(decodeOk<Cluster__Output>(CLUSTER, { ...minimalCluster, respect_dns_ttl: true }).respect_dns_ttl, true);
    assert.deepEqual(problems(CLUSTER, { ...minimalCluster, respect_dns_ttl: 'yes' }), ['respect_dns_ttl: expected true or false, got "yes"']);
  });

  it('takes bytes as standard or URL-safe base64', () => {
    const DS = T('envoy.config.core.v3.DataSource');
    assert.deepEqual(decodeOk<{ inline_bytes: Buffer }>(DS, { inline_bytes: '+/8=' }).inline_bytes, Buffer.from([0xfb, 0xff]));
    assert.deepEqual(decodeOk<{ inline_bytes: Buffer }>(DS, { inline_bytes: '-_8' }).inline_bytes, Buffer.from([0xfb, 0xff]));
    assert.deepEqual(problems(DS, { inline_bytes: 'not base64!' }), ['inline_bytes: expected base64-encoded bytes, got "not base64!"']);
  });

  it('rejects a number where a string is expected, as Envoy does', () => {
    assert.deepEqual(problems(CLUSTER, { name: 8080, connect_timeout: '1s' }), ['name: expected a string, got 8080']);
  });

  it('takes enums by name or number, and names the choices for a bad one', () => {
    assert.equal(decodeOk<Cluster__Output>(CLUSTER, { ...minimalCluster, lb_policy: 2 }).lb_policy, 'RING_HASH');
    assert.deepEqual(problems(CLUSTER, { ...minimalCluster, lb_policy: 'ROUND_ROBBIN' }), [
      'lb_policy: expected one of ROUND_ROBIN, LEAST_REQUEST, RING_HASH, RANDOM, MAGLEV, CLUSTER_PROVIDED, LOAD_BALANCING_POLICY_CONFIG, got "ROUND_ROBBIN"',
    ]);
    // 4 is a hole in LbPolicy; proto3 enums are open, but the field says defined_only.
    assert.deepEqual(problems(CLUSTER, { ...minimalCluster, lb_policy: 4 }), [
      'lb_policy: expected one of ROUND_ROBIN, LEAST_REQUEST, RING_HASH, RANDOM, MAGLEV, CLUSTER_PROVIDED, LOAD_BALANCING_POLICY_CONFIG, got 4',
    ]);
  });
});

describe('decodeProtoJson: well-known types', () => {
  it('reads Durations in proto3 JSON form and in Envoy\'s {seconds, nanos} form', () => {
    const timeout = (v: unknown) => decodeOk<Cluster__Output>(CLUSTER, { name: 'c', connect_timeout: v }).connect_timeout;
    assert.deepEqual(timeout('5s'), { seconds: '5', nanos: 0 });
    assert.deepEqual(timeout('0.250s'), { seconds: '0', nanos: 250_000_000 });
    assert.deepEqual(timeout('1.000000001s'), { seconds: '1', nanos: 1 });
    assert.deepEqual(timeout({ seconds: 3, nanos: 5 }), { seconds: '3', nanos: 5 });
    const ROUTE_ACTION = T('envoy.config.route.v3.RouteAction');
    assert.deepEqual(decodeOk<{ timeout: unknown }>(ROUTE_ACTION, { cluster: 'c', timeout: '-1.5s' }).timeout, { seconds: '-1', nanos: -500_000_000 });
  });

  it('rejects malformed Durations with an example of the right form', () => {
    assert.deepEqual(problems(CLUSTER, { name: 'c', connect_timeout: '5 seconds' }), [
      'connect_timeout: expected a duration like "5s" or "0.250s", got "5 seconds"',
    ]);
    assert.deepEqual(problems(CLUSTER, { name: 'c', connect_timeout: 5 }), ['connect_timeout: expected a duration like "5s" or "0.250s", got 5']);
    assert.deepEqual(problems(CLUSTER, { name: 'c', connect_timeout: '1.0000000001s' }), [
      'connect_timeout: expected a duration like "5s" or "0.250s", got "1.0000000001s"',
    ]);
    assert.deepEqual(problems(CLUSTER, { name: 'c', connect_timeout: { seconds: 1, nanos: -1 } }), [
      'connect_timeout: expected a duration within ±315576000000s with nanos of the same sign as seconds',
    ]);
    assert.deepEqual(problems(CLUSTER, { name: 'c', connect_timeout: { second: 1 } }), [
      'connect_timeout.second: unknown field "second" in google.protobuf.Duration (did you mean "seconds"?)',
    ]);
  });

  it('reads Timestamps as RFC 3339, honoring offsets', () => {
    const TS = T('google.protobuf.Timestamp');
    assert.deepEqual(decodeOk(TS, '1970-01-01T00:00:10.5Z'), { seconds: '10', nanos: 500_000_000 });
    assert.deepEqual(decodeOk(TS, '1970-01-01T01:00:00+01:00'), { seconds: '0', nanos: 0 });
    assert.deepEqual(problems(TS, '1970-02-30T00:00:00Z'), ['(root): expected an RFC 3339 timestamp like "2024-01-02T03:04:05Z", got "1970-02-30T00:00:00Z"']);
  });

  it('reads wrappers as bare values', () => {
    const c = decodeOk<Cluster__Output>(CLUSTER, { ...minimalCluster, per_connection_buffer_limit_bytes: 32768, ignore_health_on_host_removal: true });
    assert.deepEqual(c.per_connection_buffer_limit_bytes, { value: 32768 });
    assert.deepEqual(problems(CLUSTER, { ...minimalCluster, per_connection_buffer_limit_bytes: { value: 1 } }), [
      'per_connection_buffer_limit_bytes: expected an integer, got an object',
    ]);
  });

  it('reads Struct and Value from any JSON', () => {
    const c = decodeOk<Cluster__Output>(CLUSTER, { ...minimalCluster, metadata: { filter_metadata: { 'envoy.lb': { canary: true, weight: 2n, tags: ['a', null, 1.5], nested: { x: 'y' } } } } });
    const lb = c.metadata!.filter_metadata['envoy.lb'].fields;
    assert.deepEqual(lb.canary, { boolValue: true, kind: 'boolValue' });
    assert.deepEqual(lb.weight, { numberValue: 2, kind: 'numberValue' });
    assert.deepEqual(lb.tags.listValue!.values.map((v) => v.kind), ['stringValue', 'nullValue', 'numberValue']);
    assert.deepEqual(lb.nested.structValue!.fields.x, { stringValue: 'y', kind: 'stringValue' });
  });

  it('rejects absurdly deep nesting instead of overflowing the stack', () => {
    let deep: unknown = 'leaf';
    for (let i = 0; i < 150; i++) deep = { d: deep };
    const errors = problems(CLUSTER, { ...minimalCluster, metadata: { filter_metadata: { x: deep as Record<string, unknown> } } });
    assert.equal(errors.length, 1);
    assert.match(errors[0], /nested more than 100 levels deep$/);
  });
});

describe('decodeProtoJson: Any', () => {
  const FILTER = T('envoy.config.listener.v3.Filter');
  const hcm = {
    '@type': HCM_URL,
    stat_prefix: 'ingress',
    route_config: { name: 'r', virtual_hosts: [{ name: 'vh', domains: ['*'], routes: [{ match: { prefix: '/' }, route: { cluster: 'c' } }] }] },
    http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': ROUTER_URL } }],
  };

  it('decodes the packed message by @type and encodes it to bytes', () => {
    const f = decodeOk<{ typed_config: { type_url: string; value: Buffer } }>(FILTER, { name: 'hcm', typed_config: hcm });
    assert.equal(f.typed_config.type_url, HCM_URL);
    assert.ok(Buffer.isBuffer(f.typed_config.value));
    const inner = unpackAny<HttpConnectionManager__Output>(f.typed_config);
    assert.equal(inner.stat_prefix, 'ingress');
    assert.equal(inner.route_config!.virtual_hosts[0].routes[0].route!.cluster, 'c');
    assert.equal(inner.http_filters[0].typed_config!.type_url, ROUTER_URL);
  });

  it('reports problems inside an Any with the path continuing through it', () => {
    const bad = { ...hcm, route_config: { name: 'r', virtual_hosts: [{ name: 'vh', domains: [], routes: [{ match: { prefix: '/' }, route: { clutser: 'c' } }] }] } };
    assert.deepEqual(problems(FILTER, { name: 'hcm', typed_config: bad }), [
      'typed_config.route_config.virtual_hosts[0].routes[0].route.clutser: unknown field "clutser" in envoy.config.route.v3.RouteAction (did you mean "cluster"?)',
      'typed_config.route_config.virtual_hosts[0].routes[0].route: one of cluster, cluster_header, weighted_clusters, cluster_specifier_plugin, inline_cluster_specifier_plugin is required (oneof cluster_specifier)',
      'typed_config.route_config.virtual_hosts[0].domains: must have at least 1 item',
    ]);
  });

  it('names an unknown type URL, and requires @type', () => {
    assert.deepEqual(problems(FILTER, { name: 'x', typed_config: { '@type': 'type.googleapis.com/acme.Frobnicator', knob: 1 } }), [
      'typed_config["@type"]: unknown type "type.googleapis.com/acme.Frobnicator": Sloop has no message type acme.Frobnicator',
    ]);
    assert.deepEqual(problems(FILTER, { name: 'x', typed_config: { stat_prefix: 'x' } }), [
      'typed_config: missing "@type": a google.protobuf.Any needs a type URL like "type.googleapis.com/<message name>"',
    ]);
    assert.deepEqual(problems(FILTER, { name: 'x', typed_config: { '@type': 'envoy.extensions.filters.http.router.v3.Router' } }), [
      'typed_config["@type"]: expected a type URL like "type.googleapis.com/<message name>", got "envoy.extensions.filters.http.router.v3.Router"',
    ]);
  });

  it('puts a well-known type\'s JSON form in "value"', () => {
    const ANY = T('google.protobuf.Any');
    const any = decodeOk<{ type_url: string; value: Buffer }>(ANY, { '@type': 'type.googleapis.com/google.protobuf.Duration', value: '1.5s' });
    assert.deepEqual(unpackAny(any), { seconds: '1', nanos: 500_000_000 });
    assert.deepEqual(problems(ANY, { '@type': 'type.googleapis.com/google.protobuf.Duration', seconds: 1 }), [
      'seconds: unknown field "seconds" in an Any holding google.protobuf.Duration (its JSON form goes in "value")',
      '(root): missing "value": an Any holding google.protobuf.Duration carries it in "value"',
    ]);
  });

  it('turns a TypedStruct into an Any of the type it names, validating its fields', () => {
    const ts = (value: unknown) => ({ name: 'r', typed_config: { '@type': 'type.googleapis.com/xds.type.v3.TypedStruct', type_url: ROUTER_URL, value } });
    const f = decodeOk<{ typed_config: { type_url: string; value: Buffer } }>(FILTER, ts({ suppress_envoy_headers: true }));
    assert.equal(f.typed_config.type_url, ROUTER_URL);
    assert.equal(unpackAny<{ suppress_envoy_headers: boolean }>(f.typed_config).suppress_envoy_headers, true);
    assert.deepEqual(problems(FILTER, ts({ suppress_envoy_header: true })), [
      'typed_config.value.suppress_envoy_header: unknown field "suppress_envoy_header" in envoy.extensions.filters.http.router.v3.Router (did you mean "suppress_envoy_headers"?)',
    ]);
  });
});

describe('decodeProtoJson: structure errors', () => {
  it('reports unknown fields with a suggestion only when one is close', () => {
    assert.deepEqual(problems(CLUSTER, { ...minimalCluster, lb_polcy: 'RANDOM', zzz: 1, LbPolicy: 'RANDOM' }), [
      'lb_polcy: unknown field "lb_polcy" in envoy.config.cluster.v3.Cluster (did you mean "lb_policy"?)',
      'zzz: unknown field "zzz" in envoy.config.cluster.v3.Cluster',
      'LbPolicy: unknown field "LbPolicy" in envoy.config.cluster.v3.Cluster (did you mean "lb_policy"?)',
    ]);
  });

  it('reports a string where a message is expected, and a scalar where a list is', () => {
    assert.deepEqual(problems(CLUSTER, { ...minimalCluster, load_assignment: 'endpoints' }), [
      'load_assignment: expected an object (envoy.config.endpoint.v3.ClusterLoadAssignment), got "endpoints"',
    ]);
    assert.deepEqual(problems(CLUSTER, { ...minimalCluster, health_checks: {} }), [
      'health_checks: expected an array of envoy.config.core.v3.HealthCheck, got an object',
    ]);
  });

  it('rejects two members of one oneof', () => {
    assert.deepEqual(problems(CLUSTER, { ...minimalCluster, type: 'STATIC', cluster_type: { name: 'x' } }), [
      'cluster_type: only one of the oneof "cluster_discovery_type" may be set, but "type" is set too',
    ]);
  });

  it('collects every problem, not only the first, and keeps document order', () => {
    const errors = problems(BOOTSTRAP, {
      static_resources: {
        clusters: [
          { name: 'a', connect_timeout: 'soon' },
          { name: 'b', connect_timeout: '1s', lb_policy: 'NOPE' },
          { name: '', connect_timeout: '1s' },
        ],
      },
      admin: { adress: {} },
    });
    assert.deepEqual(errors.map((e) => e.split(':')[0]), [
      'static_resources.clusters[0].connect_timeout',
      'static_resources.clusters[1].lb_policy',
      'static_resources.clusters[2].name',
      'admin.adress',
    ]);
  });

  it('asks `where` for positions with the path as written and whether the key or value is at fault', () => {
    const calls: [JsonPath, string | undefined][] = [];
    const r = decodeProtoJson(CLUSTER, { name: 'c', connectTimeout: 'x', lbPolcy: 1 }, {
      file: 'f.yaml',
      path: 'static_resources.clusters[3]',
      where: (path, part) => {
        calls.push([path, part]);
        return { line: calls.length, column: 7 };
      },
    });
    assert.deepEqual(calls, [
      [['connectTimeout'], 'value'],
      [['lbPolcy'], 'key'],
    ]);
    assert.deepEqual(r.diagnostics.map(formatDiagnostic), [
      'f.yaml:1:7 static_resources.clusters[3].connect_timeout: expected a duration like "5s" or "0.250s", got "x"',
      'f.yaml:2:7 static_resources.clusters[3].lbPolcy: unknown field "lbPolcy" in envoy.config.cluster.v3.Cluster (did you mean "lb_policy"?)',
    ]);
  });
});

describe('decodeProtoJson: protoc-gen-validate rules', () => {
  const ROUTE = T('envoy.config.route.v3.Route');
  const VHOST = T('envoy.config.route.v3.VirtualHost');

  it('duration gt: connect_timeout must be > 0', () => {
    assert.deepEqual(problems(CLUSTER, { name: 'c', connect_timeout: '0s' }), ['connect_timeout: must be greater than 0s']);
  });

  it('duration gte/lt: stats_flush_interval in [1ms, 300s)', () => {
    assert.deepEqual(problems(BOOTSTRAP, { stats_flush_interval: '300s' }), ['stats_flush_interval: must be in range [0.001s, 300s)']);
    assert.deepEqual(problems(BOOTSTRAP, { stats_flush_interval: '0.0005s' }), ['stats_flush_interval: must be in range [0.001s, 300s)']);
    decodeOk(BOOTSTRAP, { stats_flush_interval: '0.001s' });
  });

  it('string min_len applies to an absent field too (a proto3 string is never unset)', () => {
    assert.deepEqual(problems(CLUSTER, { connect_timeout: '1s' }), ['name: must not be empty']);
  });

  it('message.required and a required oneof', () => {
    assert.deepEqual(problems(ROUTE, {}), [
      'match: is required',
      '(root): one of route, redirect, direct_response, filter_action, non_forwarding_action is required (oneof action)',
    ]);
  });

  it('uint32 lte on a scalar, and range rules on a wrapper\'s value when it is set', () => {
    const SOCKET = T('envoy.config.core.v3.SocketAddress');
    assert.deepEqual(problems(SOCKET, { address: '::', port_value: 65536 }), ['port_value: must be at most 65535']);
    const H2 = T('envoy.config.core.v3.Http2ProtocolOptions');
    assert.deepEqual(problems(H2, { max_concurrent_streams: 0 }), ['max_concurrent_streams: must be in range [1, 2147483647]']);
    decodeOk(H2, {});
  });

  it('repeated min_items and per-item string rules (header names)', () => {
    assert.deepEqual(problems(VHOST, { name: 'v', domains: ['ok', 'bad\r\nhost'], request_headers_to_remove: ['x-ok', ''] }), [
      'domains[1]: must not contain NUL, CR or LF',
      'request_headers_to_remove[1]: must not be empty',
    ]);
    assert.deepEqual(problems(VHOST, { name: 'v' }), ['domains: must have at least 1 item']);
  });

  it('map key rules: filter_metadata keys must not be empty', () => {
    assert.deepEqual(problems(CLUSTER, { ...minimalCluster, metadata: { filter_metadata: { '': {} } } }), [
      'metadata.filter_metadata[""]: key must not be empty',
    ]);
  });

  it('enum not_in: health checks may not use CONNECT', () => {
    const HTTP_HC = T('envoy.config.core.v3.HealthCheck.HttpHealthCheck');
    assert.deepEqual(problems(HTTP_HC, { path: '/healthz', method: 'CONNECT' }), ['method: must not be CONNECT']);
  });

  it('checks a oneof member\'s rules only when it is the member set', () => {
    const DS = T('envoy.config.core.v3.DataSource');
    assert.deepEqual(problems(DS, { filename: '' }), ['filename: must not be empty']);
    decodeOk(DS, { inline_string: '' });
  });
});

describe('decodeProtoJson: deprecation', () => {
  it('warns about a deprecated field that is set, not one at its default', () => {
    const r = decodeProtoJson(CLUSTER, { ...minimalCluster, max_requests_per_connection: 1, track_timeout_budgets: false });
    assert.ok(r.value !== undefined, 'warnings do not reject');
    assert.deepEqual(r.diagnostics.map(formatDiagnostic), [
      'max_requests_per_connection: envoy.config.cluster.v3.Cluster.max_requests_per_connection is deprecated',
    ]);
    assert.equal(r.diagnostics[0].severity, 'warning');
  });

  it('rejects fields and enum values Envoy disallows by default', () => {
    const ACTION = T('envoy.config.route.v3.RateLimit.Action');
    assert.deepEqual(problems(ACTION, { dynamic_metadata: { descriptor_key: 'k', metadata_key: { key: 'a', path: [{ key: 'b' }] } } }), [
      'dynamic_metadata: envoy.config.route.v3.RateLimit.Action.dynamic_metadata is deprecated and disallowed by default',
    ]);
    const API = T('envoy.config.core.v3.ApiConfigSource');
    assert.deepEqual(problems(API, { api_type: 'DEPRECATED_AND_UNAVAILABLE_DO_NOT_USE' }), [
      'api_type: envoy.config.core.v3.ApiConfigSource.ApiType.DEPRECATED_AND_UNAVAILABLE_DO_NOT_USE is deprecated and disallowed by default',
    ]);
  });
});

describe('encodeProtoJson', () => {
  it('writes Envoy\'s config_dump form', () => {
    const cluster = viaProtobufjs<Cluster__Output>(CLUSTER, {
      name: 'c',
      type: 'STATIC', // the oneof member at enum value 0: still written, because it is set
      connect_timeout: { seconds: 0, nanos: 250_000_000 },
      lb_policy: 'ROUND_ROBIN', // default: omitted
      per_connection_buffer_limit_bytes: { value: 0 }, // a set wrapper, even at 0: written bare
      max_requests_per_connection: null,
      metadata: { filter_metadata: { 'envoy.lb': { fields: { canary: { boolValue: true }, tags: { listValue: { values: [{ stringValue: 'a' }, { nullValue: 0 }] } } } } } },
      typed_extension_protocol_options: {
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
          type_url: 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
          value: T('envoy.extensions.upstreams.http.v3.HttpProtocolOptions').encode({ common_http_protocol_options: { idle_timeout: { seconds: 3600 } }, explicit_http_config: { http2_protocol_options: {} } }).finish(),
        },
      },
      dns_refresh_rate: { seconds: -1, nanos: -1_000_000 },
    });
    assert.deepStrictEqual(encodeProtoJson(CLUSTER, cluster), {
      name: 'c',
      type: 'STATIC',
      connect_timeout: '0.250s',
      per_connection_buffer_limit_bytes: 0,
      dns_refresh_rate: '-1.001s',
      metadata: { filter_metadata: { 'envoy.lb': { canary: true, tags: ['a', null] } } },
      typed_extension_protocol_options: {
        'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
          '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
          common_http_protocol_options: { idle_timeout: '3600s' },
          explicit_http_config: { http2_protocol_options: {} },
        },
      },
    });
  });

  it('writes 64-bit integers as strings, non-finite doubles as strings, bytes as base64, prefix "" when set', () => {
    const boot = viaProtobufjs<Bootstrap__Output>(BOOTSTRAP, { memory_allocator_manager: { bytes_to_release: '18446744073709551615' } });
    assert.deepEqual(encodeProtoJson(BOOTSTRAP, boot), { memory_allocator_manager: { bytes_to_release: '18446744073709551615' } });
    const DS = T('envoy.config.core.v3.DataSource');
    assert.deepEqual(encodeProtoJson(DS, viaProtobufjs(DS, { inline_bytes: Buffer.from([0xfb, 0xff]) })), { inline_bytes: '+/8=' });
    const MATCH = T('envoy.config.route.v3.RouteMatch');
    assert.deepEqual(encodeProtoJson(MATCH, viaProtobufjs(MATCH, { prefix: '' })), { prefix: '' });
    const DV = T('google.protobuf.DoubleValue');
    assert.equal(encodeProtoJson(DV, { value: Number.POSITIVE_INFINITY }), 'Infinity');
  });

  it('throws SLOOP_ERR_XDS_UNKNOWN_TYPE for an Any it cannot expand', () => {
    const FILTER = T('envoy.config.listener.v3.Filter');
    assert.throws(() => encodeProtoJson(FILTER, { name: 'x', typed_config: { type_url: 'type.googleapis.com/acme.X', value: Buffer.alloc(0) } }), { code: 'SLOOP_ERR_XDS_UNKNOWN_TYPE' });
  });

  it('round-trips: decode(encode(x)) deep-equals x', () => {
    const json = {
      node: { id: 'sidecar~10.0.0.1~pod.ns~ns.svc.cluster.local', cluster: 'svc', metadata: { ISTIO_VERSION: '1.22', LABELS: { app: 'x' } } },
      admin: { address: { socket_address: { address: '127.0.0.1', port_value: 15000 } } },
      stats_flush_interval: '5s',
      static_resources: {
        listeners: [
          {
            name: 'in',
            address: { socket_address: { address: '0.0.0.0', port_value: 15006 } },
            filter_chains: [{ filters: [{ name: 'hcm', typed_config: { '@type': HCM_URL, stat_prefix: 'in', codec_type: 'AUTO', route_config: { name: 'r', virtual_hosts: [{ name: 'v', domains: ['*'], routes: [{ match: { prefix: '' }, route: { cluster: 'c', timeout: '0s', retry_policy: { num_retries: 0 } } }] }] }, http_filters: [{ name: 'router', typed_config: { '@type': ROUTER_URL } }] } }] }],
          },
        ],
        clusters: [
          { name: 'c', type: 'STRICT_DNS', connect_timeout: '0.100s', lb_policy: 'LEAST_REQUEST', load_assignment: { cluster_name: 'c', endpoints: [{ priority: 1, lb_endpoints: [{ endpoint: { address: { socket_address: { address: 'b', port_value: 80 } } }, load_balancing_weight: 3 }] }] } },
        ],
      },
    };
    const x = decodeOk<Bootstrap__Output>(BOOTSTRAP, json);
    const encoded = encodeProtoJson(BOOTSTRAP, x);
    assert.deepStrictEqual(decodeOk(BOOTSTRAP, encoded), x);
    // And the JSON survives serialization (no Buffers, bigints or undefined left in it).
    assert.deepStrictEqual(JSON.parse(JSON.stringify(encoded)), encoded);
  });
});
