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

  it('order CUSTOM (denied, with an error), AUDIT (LOG), DENY, ALLOW', () => {
    const all = [
      ...ap('{action: ALLOW, rules: [{}]}', 'allow'),
      ...ap('{action: DENY, rules: [{to: [{operation: {paths: [/x]}}]}]}', 'deny'),
      ...ap('{action: AUDIT, rules: [{}]}', 'audit'),
      ...ap('{action: CUSTOM, provider: {name: ext}, rules: [{to: [{operation: {paths: [/ext]}}]}]}', 'custom'),
    ];
    const diagnostics: import('../../shared/errors.ts').Diagnostic[] = [];
    assert.deepEqual(rules(rbacFilters(all, false, diagnostics)), [
      ['DENY', ['ns[foo]-policy[custom]-rule[0]']], ['LOG', ['ns[foo]-policy[audit]-rule[0]']], ['DENY', ['ns[foo]-policy[deny]-rule[0]']], ['ALLOW', ['ns[foo]-policy[allow]-rule[0]']],
    ]);
    assert.deepEqual(diagnostics.map((d) => [d.severity, d.code, d.path]), [['error', 'SLOOP_ERR_CONFIG_UNSUPPORTED', 'spec.provider.name']]);
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
