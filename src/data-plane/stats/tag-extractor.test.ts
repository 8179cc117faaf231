import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TAG_NAMES as T, TagProducer, type Tag } from './tag-extractor.ts';

const producer = new TagProducer();

/** Asserts the extracted name and the tag set (order-insensitive, as Envoy's own test does). */
function check(name: string, extracted: string, tags: Record<string, string>): void {
  const r = producer.produceTags(name);
  assert.equal(r.tagExtractedName, extracted, name);
  const got = Object.fromEntries(r.tags.map((t) => [t.name, t.value]));
  assert.deepEqual(got, tags, name);
  assert.equal(r.tags.length, Object.keys(tags).length, `${name}: duplicate tags`);
}

// Cases from Envoy's test/common/stats/tag_extractor_impl_test.cc (DefaultTagExtractors).
const ENVOY_CASES: Array<[string, string, Record<string, string>]> = [
  ['cluster.ratelimit.upstream_rq_timeout', 'cluster.upstream_rq_timeout', { [T.CLUSTER_NAME]: 'ratelimit' }],
  ['listener.[__1]_0.ssl.ciphers.AES256-SHA', 'listener.ssl.ciphers', { [T.LISTENER_ADDRESS]: '[__1]_0', [T.SSL_CIPHER]: 'AES256-SHA' }],
  [
    'cluster.ratelimit.ssl.ciphers.ECDHE-RSA-AES128-GCM-SHA256',
    'cluster.ssl.ciphers',
    { [T.CLUSTER_NAME]: 'ratelimit', [T.SSL_CIPHER_SUITE]: 'ECDHE-RSA-AES128-GCM-SHA256' },
  ],
  [
    'listener.[2001_0db8_85a3_0000_0000_8a2e_0370_7334]_3543.ssl.ciphers.AES256-SHA',
    'listener.ssl.ciphers',
    { [T.LISTENER_ADDRESS]: '[2001_0db8_85a3_0000_0000_8a2e_0370_7334]_3543', [T.SSL_CIPHER]: 'AES256-SHA' },
  ],
  ['listener.127.0.0.1_0.ssl.ciphers.AES256-SHA', 'listener.ssl.ciphers', { [T.LISTENER_ADDRESS]: '127.0.0.1_0', [T.SSL_CIPHER]: 'AES256-SHA' }],
  ['listener.my_prefix.ssl.ciphers.AES256-SHA', 'listener.ssl.ciphers', { [T.LISTENER_ADDRESS]: 'my_prefix', [T.SSL_CIPHER]: 'AES256-SHA' }],
  [
    'listener.prefix.notmatching.ssl.ciphers.AES256-SHA',
    'listener.notmatching.ssl.ciphers',
    { [T.LISTENER_ADDRESS]: 'prefix', [T.SSL_CIPHER]: 'AES256-SHA' },
  ],
  // The admin listener is excluded from envoy.listener_address.
  ['listener.admin.ssl.ciphers.AES256-SHA', 'listener.admin.ssl.ciphers', { [T.SSL_CIPHER]: 'AES256-SHA' }],
  ['mongo.mongo_filter.op_reply', 'mongo.op_reply', { [T.MONGO_PREFIX]: 'mongo_filter' }],
  ['mongo.mongo_filter.cmd.foo_cmd.reply_size', 'mongo.cmd.reply_size', { [T.MONGO_PREFIX]: 'mongo_filter', [T.MONGO_CMD]: 'foo_cmd' }],
  [
    'mongo.mongo_filter.collection.bar_collection.query.multi_get',
    'mongo.collection.query.multi_get',
    { [T.MONGO_PREFIX]: 'mongo_filter', [T.MONGO_COLLECTION]: 'bar_collection' },
  ],
  [
    'mongo.mongo_filter.collection.bar_collection.callsite.baz_callsite.query.scatter_get',
    'mongo.collection.callsite.query.scatter_get',
    { [T.MONGO_PREFIX]: 'mongo_filter', [T.MONGO_COLLECTION]: 'bar_collection', [T.MONGO_CALLSITE]: 'baz_callsite' },
  ],
  ['ratelimit.foo_ratelimiter.over_limit', 'ratelimit.over_limit', { [T.RATELIMIT_PREFIX]: 'foo_ratelimiter' }],
  ['foo_ratelimiter.http_local_rate_limit.ok', 'http_local_rate_limit.ok', { [T.LOCAL_HTTP_RATELIMIT_PREFIX]: 'foo_ratelimiter' }],
  ['local_rate_limit.foo_ratelimiter.rate_limited', 'local_rate_limit.rate_limited', { [T.LOCAL_NETWORK_RATELIMIT_PREFIX]: 'foo_ratelimiter' }],
  ['http.egress_dynamodb_iad.downstream_cx_total', 'http.downstream_cx_total', { [T.HTTP_CONN_MANAGER_PREFIX]: 'egress_dynamodb_iad' }],
  [
    'http.egress_dynamodb_iad.dynamodb.operation.Query.upstream_rq_time',
    'http.dynamodb.operation.upstream_rq_time',
    { [T.HTTP_CONN_MANAGER_PREFIX]: 'egress_dynamodb_iad', [T.DYNAMO_OPERATION]: 'Query' },
  ],
  [
    'http.egress_dynamodb_iad.dynamodb.table.bar_table.upstream_rq_time',
    'http.dynamodb.table.upstream_rq_time',
    { [T.HTTP_CONN_MANAGER_PREFIX]: 'egress_dynamodb_iad', [T.DYNAMO_TABLE]: 'bar_table' },
  ],
  [
    'http.egress_dynamodb_iad.dynamodb.table.bar_table.capacity.Query.__partition_id=ABC1234',
    'http.dynamodb.table.capacity',
    {
      [T.HTTP_CONN_MANAGER_PREFIX]: 'egress_dynamodb_iad',
      [T.DYNAMO_TABLE]: 'bar_table',
      [T.DYNAMO_OPERATION]: 'Query',
      [T.DYNAMO_PARTITION_ID]: 'ABC1234',
    },
  ],
  [
    'cluster.grpc_cluster.grpc.grpc_service_1.grpc_method_1.success',
    'cluster.grpc.success',
    { [T.CLUSTER_NAME]: 'grpc_cluster', [T.GRPC_BRIDGE_SERVICE]: 'grpc_service_1', [T.GRPC_BRIDGE_METHOD]: 'grpc_method_1' },
  ],
  [
    'vhost.vhost_1.vcluster.vcluster_1.upstream_rq_2xx',
    'vhost.vcluster.upstream_rq_xx',
    { [T.VIRTUAL_HOST]: 'vhost_1', [T.VIRTUAL_CLUSTER]: 'vcluster_1', [T.RESPONSE_CODE_CLASS]: '2' },
  ],
  [
    'vhost.vhost_1.vcluster.vcluster_1.upstream_rq_200',
    'vhost.vcluster.upstream_rq',
    { [T.VIRTUAL_HOST]: 'vhost_1', [T.VIRTUAL_CLUSTER]: 'vcluster_1', [T.RESPONSE_CODE]: '200' },
  ],
  [
    'listener.127.0.0.1_3012.http.http_prefix.downstream_rq_5xx',
    'listener.http.downstream_rq_xx',
    { [T.HTTP_CONN_MANAGER_PREFIX]: 'http_prefix', [T.LISTENER_ADDRESS]: '127.0.0.1_3012', [T.RESPONSE_CODE_CLASS]: '5' },
  ],
  [
    'http.egress_dynamodb_iad.user_agent.ios.downstream_cx_total',
    'http.user_agent.downstream_cx_total',
    { [T.HTTP_USER_AGENT]: 'ios', [T.HTTP_CONN_MANAGER_PREFIX]: 'egress_dynamodb_iad' },
  ],
  ['auth.clientssl.clientssl_prefix.auth_ip_allowlist', 'auth.clientssl.auth_ip_allowlist', { [T.CLIENTSSL_PREFIX]: 'clientssl_prefix' }],
  [
    'tcp.tcp_prefix.downstream_flow_control_resumed_reading_total',
    'tcp.downstream_flow_control_resumed_reading_total',
    { [T.TCP_PREFIX]: 'tcp_prefix' },
  ],
  [
    'udp.udp_prefix.downstream_flow_control_resumed_reading_total',
    'udp.downstream_flow_control_resumed_reading_total',
    { [T.UDP_PREFIX]: 'udp_prefix' },
  ],
  [
    'http.fault_connection_manager.fault.fault_cluster.aborts_injected',
    'http.fault.aborts_injected',
    { [T.HTTP_CONN_MANAGER_PREFIX]: 'fault_connection_manager', [T.FAULT_DOWNSTREAM_CLUSTER]: 'fault_cluster' },
  ],
  [
    'http.rds_connection_manager.rds.agg/route_config.1-23.update_success',
    'http.rds.update_success',
    { [T.HTTP_CONN_MANAGER_PREFIX]: 'rds_connection_manager', [T.RDS_ROUTE_CONFIG]: 'agg/route_config.1-23' },
  ],
  [
    'http.scoped_rds_connection_manager.scoped_rds.scoped_route_config.123.update_success',
    'http.scoped_rds.update_success',
    { [T.HTTP_CONN_MANAGER_PREFIX]: 'scoped_rds_connection_manager', [T.SCOPED_RDS_CONFIG]: 'scoped_route_config.123' },
  ],
  ['listener_manager.worker_123.dispatcher.loop_duration_us', 'listener_manager.worker_dispatcher.loop_duration_us', { [T.WORKER_ID]: '123' }],
  [
    'listener.127.0.0.1_3012.worker_123.downstream_cx_active',
    'listener.worker_downstream_cx_active',
    { [T.LISTENER_ADDRESS]: '127.0.0.1_3012', [T.WORKER_ID]: '123' },
  ],
  ['listener.myprefix.worker_123.downstream_cx_active', 'listener.worker_downstream_cx_active', { [T.LISTENER_ADDRESS]: 'myprefix', [T.WORKER_ID]: '123' }],
  ['server.worker_123.watchdog_miss', 'server.worker_watchdog_miss', { [T.WORKER_ID]: '123' }],
  ['thrift.thrift_prefix.response', 'thrift.response', { [T.THRIFT_PREFIX]: 'thrift_prefix' }],
  ['redis.my_redis_prefix.response', 'redis.response', { [T.REDIS_PREFIX]: 'my_redis_prefix' }],
  ['dns_filter.my_dns_prefix.local_a_record_answers', 'dns_filter.local_a_record_answers', { [T.DNS_FILTER_PREFIX]: 'my_dns_prefix' }],
  [
    'connection_limit.my_connection_limit_prefix.limited_connections',
    'connection_limit.limited_connections',
    { [T.CONNECTION_LIMIT_PREFIX]: 'my_connection_limit_prefix' },
  ],
  ['my_rbac_prefix.rbac.allowed', 'rbac.allowed', { [T.RBAC_PREFIX]: 'my_rbac_prefix' }],
  ['http.hcm_prefix.rbac.prefix.allowed', 'http.rbac.allowed', { [T.HTTP_CONN_MANAGER_PREFIX]: 'hcm_prefix', [T.RBAC_HTTP_PREFIX]: 'prefix' }],
  [
    'http.hcm_prefix.rbac.policy.my_rbac_policy.allowed',
    'http.rbac.policy.allowed',
    { [T.HTTP_CONN_MANAGER_PREFIX]: 'hcm_prefix', [T.RBAC_POLICY_NAME]: 'my_rbac_policy' },
  ],
  [
    'http.hcm_prefix.rbac.prefix.policy.my_rbac_policy.shadow_denied',
    'http.rbac.policy.shadow_denied',
    { [T.HTTP_CONN_MANAGER_PREFIX]: 'hcm_prefix', [T.RBAC_HTTP_PREFIX]: 'prefix', [T.RBAC_POLICY_NAME]: 'my_rbac_policy' },
  ],
  ['proxy_proto.not_found_disallowed', 'proxy_proto.not_found_disallowed', {}],
  ['proxy_proto.test_stat_prefix.not_found_disallowed', 'proxy_proto.not_found_disallowed', { [T.PROXY_PROTOCOL_PREFIX]: 'test_stat_prefix' }],
  ['proxy_proto.versions.v2.error', 'proxy_proto.error', { [T.PROXY_PROTOCOL_VERSION]: '2' }],
  [
    'proxy_proto.test_stat_prefix.versions.v2.error',
    'proxy_proto.error',
    { [T.PROXY_PROTOCOL_PREFIX]: 'test_stat_prefix', [T.PROXY_PROTOCOL_VERSION]: '2' },
  ],
  ['http.http_prefix.ext_authz.authpfx.denied', 'http.ext_authz.denied', { [T.HTTP_CONN_MANAGER_PREFIX]: 'http_prefix', [T.EXT_AUTHZ_PREFIX]: 'authpfx' }],
  ['cluster.grpc_cluster.ext_authz.authpfx.ok', 'cluster.ext_authz.ok', { [T.CLUSTER_NAME]: 'grpc_cluster', [T.EXT_AUTHZ_PREFIX]: 'authpfx' }],
];

test("default extractors reproduce Envoy's own tag extraction cases", () => {
  for (const [name, extracted, tags] of ENVOY_CASES) check(name, extracted, tags);
});

test('tags come out in extraction order: unprefixed extractors (response code) before cluster name', () => {
  const r = producer.produceTags('cluster.reviews.upstream_rq_503');
  assert.deepEqual(r.tags, [
    { name: 'envoy.response_code', value: '503' },
    { name: 'envoy.cluster_name', value: 'reviews' },
  ] satisfies Tag[]);
  const h = producer.produceTags('http.ingress.downstream_rq_2xx');
  assert.equal(h.tagExtractedName, 'http.downstream_rq_xx');
  assert.deepEqual(
    h.tags.map((t) => t.name),
    ['envoy.response_code_class', 'envoy.http_conn_manager_prefix'],
  );
});

test('Istio cluster names: the tag stops at the first dot, the rest stays in the name (Envoy #5239)', () => {
  const r = producer.produceTags('cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_rq_200');
  assert.equal(r.tagExtractedName, 'cluster.default.svc.cluster.local.upstream_rq');
  assert.deepEqual(r.tags, [
    { name: 'envoy.response_code', value: '200' },
    { name: 'envoy.cluster_name', value: 'outbound|9080||reviews' },
  ]);
  // An inbound cluster name without dots is captured whole, pipes included.
  check('cluster.inbound|9080||.upstream_cx_total', 'cluster.upstream_cx_total', { [T.CLUSTER_NAME]: 'inbound|9080||' });
  check('tcp.outbound|3306||mysql.db.svc.cluster.local.downstream_cx_total', 'tcp.db.svc.cluster.local.downstream_cx_total', {
    [T.TCP_PREFIX]: 'outbound|3306||mysql',
  });
});

test('names without a known prefix keep everything', () => {
  check('server.live', 'server.live', {});
  check('cluster_manager.active_clusters', 'cluster_manager.active_clusters', {});
  // `_rq_` suffix rules apply anywhere, as in Envoy.
  check('another_long_string_rq_2xx', 'another_long_string_rq_xx', { [T.RESPONSE_CODE_CLASS]: '2' });
  // A cluster stat needs a token after the cluster name to yield a tag.
  check('cluster.only', 'cluster.only', {});
});

test('token patterns: a ** in the middle backtracks to a later match', () => {
  // mongo.*.collection.$.**.query.* must let ** swallow `x.query.y` to match the final `query.z`.
  check('mongo.mp.collection.c1.x.query.y.query.z', 'mongo.collection.x.query.y.query.z', {
    [T.MONGO_PREFIX]: 'mp',
    [T.MONGO_COLLECTION]: 'c1',
  });
  // ...and fails when no suffix fits.
  check('mongo.mp.collection.c1.x.query', 'mongo.collection.c1.x.query', { [T.MONGO_PREFIX]: 'mp' });
});

test('custom stats_tags: regex (std::regex semantics), fixed values, and defaults by name', () => {
  const p = new TagProducer({
    useAllDefaultTags: false,
    statsTags: [
      // Istio's bootstrap keeps FQDN cluster names whole.
      { tagName: 'cluster_name', regex: String.raw`^cluster\.((.+?(\..+?\.svc\.cluster\.local)?)\.)` },
      { tagName: 'mesh', fixedValue: 'm1' },
      { tagName: T.RESPONSE_CODE },
    ],
  });
  const r = p.produceTags('cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_rq_200');
  assert.equal(r.tagExtractedName, 'cluster.upstream_rq');
  // Unprefixed extractors (fixed, response code) run before the `^cluster\.`-prefixed regex.
  assert.deepEqual(r.tags, [
    { name: 'mesh', value: 'm1' },
    { name: 'envoy.response_code', value: '200' },
    { name: 'cluster_name', value: 'outbound|9080||reviews.default.svc.cluster.local' },
  ]);
  assert.throws(() => new TagProducer({ statsTags: [{ tagName: 'no_such_default' }] }), /no default regex for name/);
});
