import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseDocuments } from '../config/documents.ts';
import { validateDocuments } from '../config/validate.ts';
import type { ConfigModel } from '../config/model.ts';
import { buildRegistry } from '../registry/registry.ts';
import { parseProxyInfo } from '../registry/proxy-info.ts';
import { unpackAny } from '../../xds/any.ts';
import { buildProxyConfig } from './build.ts';
import { createPushContext } from './push-context.ts';
import { rbacFilters } from './authz.ts';
import type { Diagnostic } from '../../shared/errors.ts';
import { composePeerAuthentication, endpointTlsMode, portMtlsMode } from './security.ts';

function model(...docs: string[]): ConfigModel {
  const parsed = parseDocuments(docs.join('\n---\n'), 'mem.yaml');
  const v = validateDocuments(parsed.documents);
  assert.deepEqual([...parsed.diagnostics, ...v.diagnostics], []);
  return v.model;
}

const pa = (ns: string, name: string, spec: string, ts?: string) =>
  `apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: ${name}, namespace: ${ns}${ts ? `, creationTimestamp: "${ts}"` : ''}}\nspec: ${spec}`;

describe('PeerAuthentication resolution (Istio ComposePeerAuthentication)', () => {
  const mode = (m: ConfigModel, ns: string, labels: Record<string, string>, port = 80) => portMtlsMode(composePeerAuthentication(m, ns, labels), port);

  it('nothing configured: PERMISSIVE', () => {
    assert.equal(mode(model(), 'foo', { app: 'a' }), 'PERMISSIVE');
  });

  it('workload > namespace > mesh; UNSET inherits from the level above', () => {
    const m = model(
      pa('istio-system', 'mesh', '{mtls: {mode: STRICT}}'),
      pa('foo', 'ns', '{mtls: {mode: DISABLE}}'),
      pa('foo', 'wl', '{selector: {matchLabels: {app: a}}, mtls: {mode: PERMISSIVE}}'),
      pa('bar', 'ns-unset', '{mtls: {mode: UNSET}}'),
      pa('bar', 'wl-unset', '{selector: {matchLabels: {app: a}}}'),
    );
    assert.equal(mode(m, 'foo', { app: 'a' }), 'PERMISSIVE');
    assert.equal(mode(m, 'foo', { app: 'b' }), 'DISABLE');
    assert.equal(mode(m, 'bar', { app: 'a' }), 'STRICT');
    assert.equal(mode(m, 'baz', {}), 'STRICT');
    // The workload level must be in the workload's namespace.
    assert.equal(mode(m, 'baz', { app: 'a' }), 'STRICT');
  });

  it('portLevelMtls: per workload port, UNSET takes the workload mode', () => {
    const m = model(
      pa('foo', 'ns', '{mtls: {mode: STRICT}}'),
      pa('foo', 'wl', '{selector: {matchLabels: {app: a}}, mtls: {mode: UNSET}, portLevelMtls: {"8080": {mode: DISABLE}, "9090": {mode: UNSET}, "7070": {}}}'),
    );
    const merged = composePeerAuthentication(m, 'foo', { app: 'a' });
    assert.deepEqual([80, 8080, 9090, 7070].map((p) => portMtlsMode(merged, p)), ['STRICT', 'DISABLE', 'STRICT', 'STRICT']);
  });

  it('selector policies in the root namespace are ignored', () => {
    const m = model(pa('istio-system', 'sel', '{selector: {matchLabels: {app: a}}, mtls: {mode: DISABLE}}'));
    assert.equal(mode(m, 'foo', { app: 'a' }), 'PERMISSIVE');
    assert.equal(mode(m, 'istio-system', { app: 'a' }), 'PERMISSIVE');
  });

  it('conflicts: the oldest wins (creationTimestamp, then name)', () => {
    const m = model(
      pa('foo', 'b-newer', '{mtls: {mode: DISABLE}}', '2024-02-01T00:00:00Z'),
      pa('foo', 'c-older', '{mtls: {mode: STRICT}}', '2024-01-01T00:00:00Z'),
      pa('bar', 'z', '{mtls: {mode: DISABLE}}'),
      pa('bar', 'a', '{mtls: {mode: STRICT}}'),
      pa('foo', 'wl-2', '{selector: {matchLabels: {app: a}}, mtls: {mode: PERMISSIVE}}', '2024-03-01T00:00:00Z'),
      pa('foo', 'wl-1', '{selector: {matchLabels: {app: a}}, mtls: {mode: DISABLE}}', '2024-02-15T00:00:00Z'),
    );
    assert.equal(mode(m, 'foo', {}), 'STRICT');
    assert.equal(mode(m, 'bar', {}), 'STRICT');
    assert.equal(mode(m, 'foo', { app: 'a' }), 'DISABLE');
  });
});

describe('auto mTLS and the inbound chains', () => {
  const SVC = 'apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: foo}\nspec: {selector: {app: web}, ports: [{name: http, port: 80}, {name: tcp-db, port: 5432}]}';
  const node = (labels: Record<string, string>) => parseProxyInfo({ id: 'sidecar~10.0.0.5~web-1.foo~foo.svc.cluster.local', metadata: { NAMESPACE: 'foo', LABELS: labels, INSTANCE_IPS: '10.0.0.5' } }).proxy;
  const client = parseProxyInfo({ id: 'sidecar~10.0.0.9~c-1.foo~foo.svc.cluster.local', metadata: { NAMESPACE: 'foo', LABELS: { app: 'c' }, INSTANCE_IPS: '10.0.0.9' } }).proxy;
  const build = (m: ConfigModel, server: ReturnType<typeof node>) => {
    const push = createPushContext(m, buildRegistry(m, [server, client]));
    return { server: buildProxyConfig(push, server), client: buildProxyConfig(push, client) };
  };
  const tlsModeOf = (r: ReturnType<typeof build>['client'], cluster: string) =>
    (r.resources.endpoints.find((e) => e.cluster_name === cluster)!.endpoints![0].lb_endpoints![0] as { metadata?: { filter_metadata: Record<string, unknown> } }).metadata?.filter_metadata;

  it('labelled endpoints get tlsMode istio; DISABLE (namespace or port) and unlabelled ones do not', () => {
    const labelled = { app: 'web', 'security.istio.io/tlsMode': 'istio' };
    const plain = build(model(SVC), node(labelled));
    assert.deepEqual(tlsModeOf(plain.client, 'outbound|80||web.foo.svc.cluster.local'), { 'envoy.transport_socket_match': { fields: { tlsMode: { stringValue: 'istio' } } } });
    const cluster = plain.client.resources.clusters.find((c) => c.name === 'outbound|80||web.foo.svc.cluster.local')!;
    assert.deepEqual(cluster.transport_socket_matches!.map((t) => t.name), ['tlsMode-istio', 'tlsMode-disabled']);
    assert.equal(tlsModeOf(build(model(SVC), node({ app: 'web' })).client, 'outbound|80||web.foo.svc.cluster.local'), undefined);
    const portOff = build(model(SVC, pa('foo', 'web', '{selector: {matchLabels: {app: web}}, portLevelMtls: {"5432": {mode: DISABLE}}}')), node(labelled));
    assert.ok(tlsModeOf(portOff.client, 'outbound|80||web.foo.svc.cluster.local'));
    assert.equal(tlsModeOf(portOff.client, 'outbound|5432||web.foo.svc.cluster.local'), undefined);
    const nsOff = build(model(SVC, pa('foo', 'default', '{mtls: {mode: DISABLE}}')), node(labelled));
    assert.equal(nsOff.client.resources.clusters.find((c) => c.name === 'outbound|80||web.foo.svc.cluster.local')!.transport_socket_matches, undefined);
    assert.equal(tlsModeOf(nsOff.client, 'outbound|80||web.foo.svc.cluster.local'), undefined);
    // A DestinationRule's own tls wins over auto mTLS (Istio: user-supplied settings).
    const dr = build(model(SVC, 'apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web, namespace: foo}\nspec: {host: web, trafficPolicy: {tls: {mode: DISABLE}}}'), node(labelled));
    assert.equal(dr.client.resources.clusters.find((c) => c.name === 'outbound|80||web.foo.svc.cluster.local')!.transport_socket_matches, undefined);
  });

  it('WorkloadEntries are istio when they name a service account and carry no tlsMode label (as Istio)', () => {
    const base = { address: '1.1.1.1', port: 80, weight: 1, locality: '' };
    assert.equal(endpointTlsMode({ ...base, labels: {}, serviceAccount: 'sa', source: 'WorkloadEntry foo/a' }), 'istio');
    assert.equal(endpointTlsMode({ ...base, labels: { 'security.istio.io/tlsMode': 'disabled' }, serviceAccount: 'sa', source: 'WorkloadEntry foo/a' }), 'disabled');
    assert.equal(endpointTlsMode({ ...base, labels: {}, serviceAccount: 'sa', source: 'proxy x' }), 'disabled');
  });

  it('inbound chains per mode: STRICT one mTLS chain for everything on the port, PERMISSIVE mTLS/TLS/plaintext, DISABLE plaintext', () => {
    const labelled = { app: 'web', 'security.istio.io/tlsMode': 'istio' };
    const chains = (m: ConfigModel, labels: Record<string, string>) => {
      const vi = build(m, node(labels)).server.resources.listeners.find((l) => l.name === 'virtualInbound')!;
      const d = vi.default_filter_chain!;
      return {
        filters: vi.listener_filters!.map((f) => f.name),
        chains: vi.filter_chains!.map((c) => [c.name, c.filter_chain_match?.transport_protocol ?? '', c.transport_socket !== undefined]),
        passthrough: [d.name, d.transport_socket !== undefined, d.filters!.map((f) => f.name)],
      };
    };
    assert.deepEqual(chains(model(SVC), labelled), {
      filters: ['envoy.filters.listener.original_dst', 'envoy.filters.listener.tls_inspector'],
      chains: [
        ['inbound|80||mtls', 'tls', true], ['inbound|80||tls', 'tls', false], ['inbound|80||', 'raw_buffer', false],
        ['inbound|5432||mtls', 'tls', true], ['inbound|5432||tls', 'tls', false], ['inbound|5432||', 'raw_buffer', false],
        ['InboundPassthroughFilterChainmtls', 'tls', true],
      ],
      passthrough: ['InboundPassthroughFilterChain', false, ['envoy.filters.network.tcp_proxy']],
    });
    // Without mesh certificates PERMISSIVE serves plaintext only (nobody sends it mTLS).
    assert.deepEqual(chains(model(SVC), { app: 'web' }).chains, [['inbound|80||', '', false], ['inbound|5432||', '', false]]);
    const strict = model(SVC, pa('foo', 'default', '{mtls: {mode: STRICT}}'), pa('foo', 'web', '{selector: {matchLabels: {app: web}}, portLevelMtls: {"5432": {mode: DISABLE}}}'));
    assert.deepEqual(chains(strict, labelled).chains, [['inbound|80||', '', true], ['inbound|5432||', '', false]]);
    // Ports no Service declares: the workload's mode (STRICT here) and its AuthorizationPolicies with TCP semantics.
    const denyAll = model(SVC, pa('foo', 'default', '{mtls: {mode: STRICT}}'), 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: none, namespace: foo}\nspec: {}');
    assert.deepEqual(chains(denyAll, labelled).passthrough, ['InboundPassthroughFilterChain', true, ['envoy.filters.network.rbac', 'envoy.filters.network.tcp_proxy']]);
    // A portLevelMtls port that no Service declares gets a passthrough chain of its own with its mode.
    const extra = model(SVC, pa('foo', 'default', '{mtls: {mode: STRICT}}'), pa('foo', 'web', '{selector: {matchLabels: {app: web}}, portLevelMtls: {"9999": {mode: DISABLE}}}'));
    assert.deepEqual(chains(extra, labelled).chains.at(-1), ['InboundPassthroughFilterChain_9999', '', false]);
    // STRICT without certificates still requires mTLS (fails closed) and says why.
    const unlabelled = build(strict, node({ app: 'web' })).server;
    assert.ok(unlabelled.diagnostics.some((d) => d.kind === 'PeerAuthentication' && /has no mesh certificates/.test(d.message)));
  });
});

describe('AuthorizationPolicy → RBAC filters', () => {
  const ap = (spec: string, name = 'p', ns = 'foo') => model(`apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ${name}, namespace: ${ns}}\nspec: ${spec}`).authorizationPolicies;
  const rules = (filters: object[]) => filters.map((f) => {
    const any = (f as { typed_config: { type_url: string; value: Buffer } }).typed_config;
    const out = unpackAny<{ rules: { action: string; policies: Record<string, unknown> } }>(any);
    return [out.rules.action, Object.keys(out.rules.policies)];
  });

  it('ALLOW without rules allows nothing; rules: [{}] allows all; DENY without rules adds nothing', () => {
    assert.deepEqual(rules(rbacFilters(ap('{}'), false, [])), [['ALLOW', []]]);
    assert.deepEqual(rules(rbacFilters(ap('{rules: [{}]}'), false, [])), [['ALLOW', ['ns[foo]-policy[p]-rule[0]']]]);
    assert.deepEqual(rbacFilters(ap('{action: DENY}'), false, []), []);
  });

  it('order CUSTOM (its deny fallback when the provider cannot be used), AUDIT (LOG), DENY, ALLOW', () => {
    const all = [
      ...ap('{action: ALLOW, rules: [{}]}', 'allow'),
      ...ap('{action: DENY, rules: [{to: [{operation: {paths: [/x]}}]}]}', 'deny'),
      ...ap('{action: AUDIT, rules: [{}]}', 'audit'),
      ...ap('{action: CUSTOM, provider: {name: ext}, rules: [{to: [{operation: {paths: [/ext]}}]}]}', 'custom'),
    ];
    const diagnostics: import('../../shared/errors.ts').Diagnostic[] = [];
    assert.deepEqual(rules(rbacFilters(all, false, diagnostics, { provider: undefined })), [
      ['DENY', ['ns[foo]-policy[custom]-rule[0]']], ['LOG', ['ns[foo]-policy[audit]-rule[0]']], ['DENY', ['ns[foo]-policy[deny]-rule[0]']], ['ALLOW', ['ns[foo]-policy[allow]-rule[0]']],
    ]);
    // The reason is resolveCustomProvider's diagnostic (see the CUSTOM tests below), not repeated here.
    assert.deepEqual(diagnostics, []);
  });

  it('TCP: an ALLOW rule with HTTP-only fields is dropped; a DENY rule keeps the rest', () => {
    const allow = ap('{rules: [{to: [{operation: {methods: [GET]}}]}, {to: [{operation: {ports: ["9000"]}}]}]}');
    assert.deepEqual(rules(rbacFilters(allow, true, [])), [['ALLOW', ['ns[foo]-policy[p]-rule[1]']]]);
    const deny = ap('{action: DENY, rules: [{from: [{source: {requestPrincipals: ["*"]}}], to: [{operation: {methods: [GET], ports: ["9000"]}}]}]}');
    const [f] = rbacFilters(deny, true, []);
    const out = unpackAny<{ rules: { policies: Record<string, { permissions: object[]; principals: object[] }> } }>((f as { typed_config: { type_url: string; value: Buffer } }).typed_config);
    const policy = out.rules.policies['ns[foo]-policy[p]-rule[0]'];
    assert.equal(JSON.stringify(policy.permissions).includes('"destination_port":9000'), true);
    assert.equal(JSON.stringify(policy.permissions).includes(':method'), false);
    assert.equal(JSON.stringify(policy.principals).includes('"any":true'), true);
  });
});

describe('AuthorizationPolicy CUSTOM → shadow RBAC + ext_authz (meshConfig.extensionProviders)', () => {
  const SVC = [
    'apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: foo}\nspec: {selector: {app: web}, ports: [{name: http, port: 80}]}',
    'apiVersion: v1\nkind: Service\nmetadata: {name: authz, namespace: sec}\nspec: {selector: {app: authz}, ports: [{name: grpc, port: 9000}]}',
  ];
  const mesh = (providers: string) => `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    extensionProviders:\n${providers.split('\n').map((l) => `    ${l}`).join('\n')}`;
  const GRPC = mesh('- name: authz\n  envoyExtAuthzGrpc: {service: authz.sec.svc.cluster.local, port: 9000}');
  const custom = (provider: string, name = 'ext', extra = '') => `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: ${name}, namespace: foo${extra}}\nspec: {selector: {matchLabels: {app: web}}, action: CUSTOM, provider: {name: ${provider}}, rules: [{to: [{operation: {paths: [/headers]}}]}]}`;
  const web = parseProxyInfo({ id: 'sidecar~10.0.0.5~web-1.foo~foo.svc.cluster.local', metadata: { NAMESPACE: 'foo', LABELS: { app: 'web' }, INSTANCE_IPS: '10.0.0.5', INTERCEPTION_MODE: 'NONE', SLOOP_ENDPOINT_PORTS: { 80: 18080 } } }).proxy;
  type Filter = { name: string; typed_config: { type_url: string; value: Buffer } };
  const build = (...docs: string[]) => {
    const m = model(...docs);
    const built = buildProxyConfig(createPushContext(m, buildRegistry(m, [web])), web);
    const hcm = built.resources.listeners.find((l) => l.name === 'inbound_10.0.0.5_18080')!.filter_chains![0].filters![0] as unknown as Filter;
    const filters = unpackAny<{ http_filters: Filter[] }>(hcm.typed_config).http_filters;
    const config = (name: string) => unpackAny<Record<string, any>>(filters.find((f) => f.name === name)!.typed_config);
    const errors = (d: Diagnostic[]) => d.map((x) => [x.severity, `${x.line}:${x.column}`, `${x.kind} ${x.namespace}/${x.name}`, x.path]);
    return { built, names: filters.map((f) => f.name), config, diagnostics: errors(built.diagnostics), messages: built.diagnostics.map((d) => d.message) };
  };

  it('a gRPC provider: RBAC shadow rules (istio_ext_authz_) before ext_authz, enabled by the shadow policy id; its cluster is in CDS', () => {
    const r = build(...SVC, GRPC, custom('authz'), 'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny, namespace: foo}\nspec: {action: DENY, rules: [{to: [{operation: {paths: [/admin]}}]}]}');
    assert.deepEqual(r.diagnostics, []);
    assert.deepEqual(r.names, ['envoy.filters.http.rbac', 'envoy.filters.http.ext_authz', 'envoy.filters.http.rbac', 'envoy.filters.http.router']);
    const rbac = r.config('envoy.filters.http.rbac');
    assert.equal(rbac.rules, null);
    assert.equal(rbac.shadow_rules.action, 'DENY');
    assert.deepEqual(Object.keys(rbac.shadow_rules.policies), ['istio-ext-authz-ns[foo]-policy[ext]-rule[0]']);
    assert.equal(rbac.shadow_rules_stat_prefix, 'istio_ext_authz_');
    const ext = r.config('envoy.filters.http.ext_authz');
    assert.equal(ext.grpc_service.envoy_grpc.cluster_name, 'outbound|9000||authz.sec.svc.cluster.local');
    assert.deepEqual(ext.grpc_service.timeout, { seconds: '600', nanos: 0 }, "Istio's default 600s");
    assert.equal(ext.failure_mode_allow, false);
    assert.equal(ext.status_on_error, null);
    assert.equal(ext.transport_api_version, 'V3');
    assert.deepEqual(ext.filter_enabled_metadata, {
      filter: 'envoy.filters.http.rbac', path: [{ key: 'istio_ext_authz_shadow_effective_policy_id', segment: 'key' }],
      value: { string_match: { prefix: 'istio-ext-authz', ignore_case: false, match_pattern: 'prefix' }, match_pattern: 'string_match' }, invert: false,
    });
    assert.ok(r.built.resources.clusters.some((c) => c.name === 'outbound|9000||authz.sec.svc.cluster.local'));
    // failOpen, statusOnError, timeout, and a namespace-qualified service.
    const tuned = build(...SVC, mesh('- name: authz\n  envoyExtAuthzGrpc: {service: sec/authz.sec.svc.cluster.local, port: 9000, timeout: 250ms, failOpen: true, statusOnError: "503"}'), custom('authz')).config('envoy.filters.http.ext_authz');
    assert.deepEqual([tuned.failure_mode_allow, tuned.status_on_error.code, tuned.grpc_service.timeout], [true, 'ServiceUnavailable', { seconds: '0', nanos: 250_000_000 }]);
  });

  it('a provider that cannot be used: an error naming the field, and the CUSTOM rules deny what they match', () => {
    const denyOnly = (r: ReturnType<typeof build>) => {
      assert.deepEqual(r.names, ['envoy.filters.http.rbac', 'envoy.filters.http.router']);
      const c = r.config('envoy.filters.http.rbac');
      assert.deepEqual([c.rules.action, Object.keys(c.rules.policies)], ['DENY', ['ns[foo]-policy[ext]-rule[0]']]);
    };
    // Not defined (no mesh config at all, or another name).
    let r = build(...SVC, custom('authz'));
    denyOnly(r);
    assert.deepEqual(r.diagnostics, [['error', '14:72', 'AuthorizationPolicy foo/ext', 'spec.provider.name']]);
    assert.match(r.messages[0], /provider "authz" is not defined in meshConfig.extensionProviders .*denied instead/);
    r = build(...SVC, GRPC, custom('authzz'));
    denyOnly(r);
    assert.match(r.messages[0], /defined: "authz"/);
    // The provider's service or port is not in the registry: the error is on the mesh config's field, at its line.
    r = build(...SVC, mesh('- name: authz\n  envoyExtAuthzGrpc:\n    service: nope.sec.svc.cluster.local\n    port: 9000'), custom('authz'));
    denyOnly(r);
    assert.deepEqual(r.diagnostics, [['error', '19:9', 'ConfigMap istio-system/istio', 'data.mesh.extensionProviders[0].envoyExtAuthzGrpc.service']]);
    r = build(...SVC, mesh('- name: authz\n  envoyExtAuthzGrpc:\n    service: authz.sec.svc.cluster.local\n    port: 9001'), custom('authz'));
    denyOnly(r);
    assert.deepEqual(r.diagnostics, [['error', '20:9', 'ConfigMap istio-system/istio', 'data.mesh.extensionProviders[0].envoyExtAuthzGrpc.port']]);
    assert.match(r.messages[0], /has no port 9001 \(ports: 9000\)/);
    // envoyExtAuthzHttp and non-authorization providers.
    r = build(...SVC, mesh('- name: authz\n  envoyExtAuthzHttp: {service: authz.sec.svc.cluster.local, port: 9000}'), custom('authz'));
    denyOnly(r);
    assert.deepEqual(r.diagnostics.map((d) => d[3]), ['data.mesh.extensionProviders[0].envoyExtAuthzHttp']);
    r = build(...SVC, mesh('- name: authz\n  prometheus: {}'), custom('authz'));
    denyOnly(r);
    // Two providers on one workload (Istio allows one): both policies deny what they match.
    r = build(...SVC, mesh('- name: authz\n  envoyExtAuthzGrpc: {service: authz.sec.svc.cluster.local, port: 9000}\n- name: other\n  envoyExtAuthzGrpc: {service: authz.sec.svc.cluster.local, port: 9000}'),
      custom('authz', 'ext', ', creationTimestamp: "2024-01-01T00:00:00Z"'), custom('other', 'ext2', ', creationTimestamp: "2024-02-01T00:00:00Z"'));
    assert.deepEqual(r.names, ['envoy.filters.http.rbac', 'envoy.filters.http.router']);
    assert.deepEqual(Object.keys(r.config('envoy.filters.http.rbac').rules.policies), ['ns[foo]-policy[ext]-rule[0]', 'ns[foo]-policy[ext2]-rule[0]']);
    assert.match(r.messages[0], /only one CUSTOM provider may apply to a workload .*"authz", "other"/);
  });

  it('a host two namespaces define needs <namespace>/; a provider the Sidecar hides warns; dry-run CUSTOM is not applied', () => {
    const se = (ns: string) => `apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: authz, namespace: ${ns}}\nspec: {hosts: [authz.example.com], location: MESH_INTERNAL, resolution: STATIC, ports: [{number: 9000, name: grpc, protocol: GRPC}], endpoints: [{address: 10.9.9.9}]}`;
    let r = build(...SVC, se('a'), se('b'), mesh('- name: authz\n  envoyExtAuthzGrpc: {service: authz.example.com, port: 9000}'), custom('authz'));
    assert.match(r.messages[0], /defined in namespaces a, b; qualify it as <namespace>\/authz.example.com/);
    r = build(...SVC, se('a'), se('b'), mesh('- name: authz\n  envoyExtAuthzGrpc: {service: a/authz.example.com, port: 9000}'), custom('authz'));
    assert.deepEqual(r.diagnostics, []);
    assert.equal(r.config('envoy.filters.http.ext_authz').grpc_service.envoy_grpc.cluster_name, 'outbound|9000||authz.example.com');
    // A Sidecar whose egress leaves the provider out: built as Istio does, with a warning (every check fails).
    r = build(...SVC, GRPC, custom('authz'), 'apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: foo}\nspec: {egress: [{hosts: ["./*"]}]}');
    assert.deepEqual(r.names, ['envoy.filters.http.rbac', 'envoy.filters.http.ext_authz', 'envoy.filters.http.router']);
    assert.deepEqual(r.diagnostics.map((d) => d.slice(0, 1).concat(d.slice(3))), [['warning', 'data.mesh.extensionProviders[0].envoyExtAuthzGrpc.service']]);
    assert.match(r.messages[0], /not visible to workload foo\/web.*not in the proxy's CDS/);
    assert.ok(!r.built.resources.clusters.some((c) => c.name === 'outbound|9000||authz.sec.svc.cluster.local'));
    // istio.io/dry-run on a CUSTOM policy: not applied, with a warning.
    r = build(...SVC, GRPC, custom('authz', 'ext', ', annotations: {istio.io/dry-run: "true"}'));
    assert.deepEqual(r.names, ['envoy.filters.http.router']);
    assert.deepEqual(r.diagnostics.map((d) => [d[0], d[3]]), [['warning', 'metadata.annotations']]);
  });
});

describe('RequestAuthentication jwksUri: key sets the control plane fetched are inlined', () => {
  const SVC = 'apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: foo}\nspec: {selector: {app: web}, ports: [{name: http, port: 80}]}';
  const RA = 'apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt, namespace: foo}\nspec: {selector: {matchLabels: {app: web}}, jwtRules: [{issuer: "https://issuer.example", jwksUri: "https://issuer.example/jwks.json"}]}';
  const web = parseProxyInfo({ id: 'sidecar~10.0.0.5~web-1.foo~foo.svc.cluster.local', metadata: { NAMESPACE: 'foo', LABELS: { app: 'web' }, INSTANCE_IPS: '10.0.0.5', INTERCEPTION_MODE: 'NONE', SLOOP_ENDPOINT_PORTS: { 80: 18080 } } }).proxy;
  type Filter = { name: string; typed_config: { type_url: string; value: Buffer } };
  const provider = (jwks?: ReadonlyMap<string, string>) => {
    const m = model(SVC, RA);
    const built = buildProxyConfig(createPushContext(m, buildRegistry(m, [web]), undefined, jwks ? { jwks } : {}), web);
    const hcm = built.resources.listeners.find((l) => l.name === 'inbound_10.0.0.5_18080')!.filter_chains![0].filters![0] as unknown as Filter;
    const jwt = unpackAny<{ http_filters: Filter[] }>(hcm.typed_config).http_filters.find((f) => f.name === 'envoy.filters.http.jwt_authn')!;
    const cfg = unpackAny<{ providers: Record<string, { local_jwks: { inline_string: string } | null; remote_jwks: unknown }> }>(jwt.typed_config);
    return { p: Object.values(cfg.providers)[0]!, messages: built.diagnostics.map((d) => d.message) };
  };

  it('inline when fetched; an empty key set (401 for every token) and a warning until then', () => {
    const keys = '{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b","kid":"k1"}]}';
    const fetched = provider(new Map([['https://issuer.example/jwks.json', keys]]));
    assert.equal(fetched.p.local_jwks?.inline_string, keys);
    assert.equal(fetched.p.remote_jwks ?? null, null);
    assert.deepEqual(fetched.messages, []);
    const notYet = provider();
    assert.equal(notYet.p.local_jwks?.inline_string, '{"keys":[]}');
    assert.match(notYet.messages.join('\n'), /has not fetched the keys from jwksUri/);
  });
});

describe('meshConfig.pathNormalization → the inbound HCM', () => {
  const SVC = 'apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: foo}\nspec: {selector: {app: web}, ports: [{name: http, port: 80}]}';
  const mesh = (mode: string) => `apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    pathNormalization: {normalization: ${mode}}`;
  const web = parseProxyInfo({ id: 'sidecar~10.0.0.5~web-1.foo~foo.svc.cluster.local', metadata: { NAMESPACE: 'foo', LABELS: { app: 'web' }, INSTANCE_IPS: '10.0.0.5', INTERCEPTION_MODE: 'NONE', SLOOP_ENDPOINT_PORTS: { 80: 18080 } } }).proxy;
  type Filter = { name: string; typed_config: { type_url: string; value: Buffer } };
  const hcm = (...docs: string[]) => {
    const m = model(...docs);
    const built = buildProxyConfig(createPushContext(m, buildRegistry(m, [web])), web);
    const f = built.resources.listeners.find((l) => l.name === 'inbound_10.0.0.5_18080')!.filter_chains![0].filters![0] as unknown as Filter;
    const h = unpackAny<{ normalize_path: { value: boolean } | null; merge_slashes: boolean; path_with_escaped_slashes_action: string }>(f.typed_config);
    return [h.normalize_path?.value ?? false, h.merge_slashes, h.path_with_escaped_slashes_action];
  };

  it('BASE by default; NONE, MERGE_SLASHES and DECODE_AND_MERGE_SLASHES as Istio maps them', () => {
    assert.deepEqual(hcm(SVC), [true, false, 'KEEP_UNCHANGED']);
    assert.deepEqual(hcm(SVC, mesh('NONE')), [false, false, 'KEEP_UNCHANGED']);
    assert.deepEqual(hcm(SVC, mesh('BASE')), [true, false, 'KEEP_UNCHANGED']);
    assert.deepEqual(hcm(SVC, mesh('MERGE_SLASHES')), [true, true, 'KEEP_UNCHANGED']);
    assert.deepEqual(hcm(SVC, mesh('DECODE_AND_MERGE_SLASHES')), [true, true, 'UNESCAPE_AND_FORWARD']);
  });

  it('an unknown mode is a config error at its field', () => {
    const parsed = parseDocuments(mesh('SOMETIMES'), 'mesh.yaml');
    const v = validateDocuments(parsed.documents);
    assert.match(v.diagnostics.map((d) => `${d.path}: ${d.message}`).join('\n'), /pathNormalization\.normalization/);
  });
});
