import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { findTypeForUrl, packAny, typeForUrl, unpackAny } from './any.ts';
import type { Cluster__Output } from './gen/envoy/config/cluster/v3/Cluster.ts';
import type { Router__Output } from './gen/envoy/extensions/filters/http/router/v3/Router.ts';
import { lookupMessage, TO_OBJECT_OPTIONS } from './protos.ts';

const CLUSTER_URL = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
const ROUTER_URL = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

describe('packAny / unpackAny', () => {
  it('round-trips a message through bytes into the __Output shape', () => {
    const any = packAny(CLUSTER_URL, { name: 'c', connect_timeout: { seconds: 2 }, lb_policy: 'MAGLEV', per_connection_buffer_limit_bytes: { value: 1024 } });
    assert.equal(any.type_url, CLUSTER_URL);
    assert.ok(Buffer.isBuffer(any.value));
    const c = unpackAny<Cluster__Output>(any);
    const T = lookupMessage(CLUSTER_URL)!;
    assert.deepStrictEqual(c, T.toObject(T.fromObject({ name: 'c', connect_timeout: { seconds: 2 }, lb_policy: 'MAGLEV', per_connection_buffer_limit_bytes: { value: 1024 } }), TO_OBJECT_OPTIONS));
    assert.deepEqual(c.connect_timeout, { seconds: '2', nanos: 0 });
    assert.equal(c.lb_policy, 'MAGLEV');
  });

  it('encodes canonically: an __Output object (defaults filled in) packs to the same bytes as the sparse form', () => {
    const sparse = packAny(CLUSTER_URL, { name: 'c', lb_policy: 'MAGLEV' });
    const full = packAny(CLUSTER_URL, unpackAny<Cluster__Output>(sparse));
    assert.deepStrictEqual(full.value, sparse.value);
    // A proto3 message with only default scalars is zero bytes long, as protoc would write it.
    assert.equal(packAny(ROUTER_URL, { suppress_envoy_headers: false, strict_check_headers: [] }).value.length, 0);
  });

  it('keeps set oneof members and message fields even at their default value', () => {
    const route = packAny('type.googleapis.com/envoy.config.route.v3.RouteMatch', { prefix: '' });
    assert.equal(unpackAny<{ path_specifier?: string }>(route).path_specifier, 'prefix');
    const c = unpackAny<Cluster__Output>(packAny(CLUSTER_URL, { name: 'c', per_connection_buffer_limit_bytes: { value: 0 } }));
    assert.deepEqual(c.per_connection_buffer_limit_bytes, { value: 0 });
  });

  it('accepts any type URL prefix: only the last path segment names the type', () => {
    const any = packAny('example.com/custom/envoy.extensions.filters.http.router.v3.Router', { suppress_envoy_headers: true });
    assert.equal(unpackAny<Router__Output>(any).suppress_envoy_headers, true);
  });

  it('throws SLOOP_ERR_XDS_UNKNOWN_TYPE naming the URL for an unknown type', () => {
    assert.throws(() => unpackAny({ type_url: 'type.googleapis.com/acme.Nope', value: Buffer.alloc(0) }), {
      name: 'SloopError',
      code: 'SLOOP_ERR_XDS_UNKNOWN_TYPE',
      message: 'unknown type URL "type.googleapis.com/acme.Nope"',
    });
    assert.throws(() => packAny('type.googleapis.com/acme.Nope', {}), { code: 'SLOOP_ERR_XDS_UNKNOWN_TYPE' });
    assert.equal(findTypeForUrl('type.googleapis.com/acme.Nope'), undefined);
    // protobufjs alone would resolve these partial names to envoy.extensions.filters.http.router.v3.Router.
    assert.equal(findTypeForUrl('type.googleapis.com/envoy.filters.http.router.v3.Router'), undefined);
    assert.equal(findTypeForUrl('type.googleapis.com/Router'), undefined);
  });

  it('throws SLOOP_ERR_CONFIG_INVALID, keeping the cause, for bytes that are not the message', () => {
    // Field 1 (name), length-delimited, with the length varint missing.
    assert.throws(() => unpackAny({ type_url: CLUSTER_URL, value: Buffer.from([0x0a]) }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'SLOOP_ERR_CONFIG_INVALID');
      assert.match(err.message, /^malformed envoy\.config\.cluster\.v3\.Cluster in Any: /);
      assert.ok(err.cause instanceof Error);
      return true;
    });
  });

  it('caches type lookups per URL', () => {
    assert.equal(typeForUrl(CLUSTER_URL), typeForUrl(CLUSTER_URL));
    assert.equal(typeForUrl(CLUSTER_URL), lookupMessage('envoy.config.cluster.v3.Cluster'));
  });
});
