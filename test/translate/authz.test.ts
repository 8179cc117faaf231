/**
 * AuthorizationPolicy semantics end to end through the proxy's own RBAC engine: the control plane's RBAC filters
 * (src/control-plane/translate/authz.ts) are compiled by the data plane (src/data-plane/rbac/engine.ts) and
 * evaluated against requests and peers, so Istio's rules (wildcards, `iss/sub` request principals, hosts with and
 * without a port, claims lists, not-fields, TCP) are checked by behaviour, not by shape.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseDocuments } from '../../src/control-plane/config/documents.ts';
import { validateDocuments } from '../../src/control-plane/config/validate.ts';
import { rbacFilters } from '../../src/control-plane/translate/authz.ts';
import { JWT_AUTHN_FILTER, JWT_PAYLOAD_METADATA_KEY } from '../../src/control-plane/translate/security.ts';
import { unpackAny } from '../../src/xds/any.ts';
import { compileRbac, type RbacContext } from '../../src/data-plane/rbac/engine.ts';
import type { Diagnostic } from '../../src/shared/errors.ts';
import type { RBAC__Output } from '../../src/xds/gen/envoy/config/rbac/v3/RBAC.ts';

interface Req {
  principal?: string;
  ip?: string;
  port?: number;
  method?: string;
  path?: string;
  authority?: string;
  headers?: Record<string, string>;
  jwt?: Record<string, unknown>;
}

/** Whether every RBAC filter of the policies lets the request through (as the chain runs them). */
function allowed(policiesYaml: string, req: Req, tcp = false): boolean {
  const parsed = parseDocuments(policiesYaml, 'mem.yaml');
  const v = validateDocuments(parsed.documents);
  assert.deepEqual([...parsed.diagnostics, ...v.diagnostics], []);
  const filters = rbacFilters(v.model.authorizationPolicies, tcp, []);
  const ctx: RbacContext = {
    conn: {
      remoteAddress: req.ip ?? '10.0.0.1', remotePort: 40000, localAddress: '10.0.0.2', localPort: req.port ?? 80, isTls: req.principal !== undefined, serverName: '',
      originalDstAddress: '10.0.0.2', originalDstPort: req.port ?? 80,
      ...(req.principal !== undefined ? { peerCertificate: { presented: true, validated: true, uriSans: [req.principal], dnsSans: [], subject: '' } } : {}),
    },
    head: tcp ? undefined : {
      method: req.method ?? 'GET', path: req.path ?? '/', authority: req.authority ?? 'httpbin.foo', scheme: 'http',
      headers: Object.entries(req.headers ?? {}).flat(), protocol: 'HTTP/1.1', contentLength: 0, hasBody: false, upgrade: '',
    } as RbacContext['head'],
    metadata: req.jwt !== undefined ? new Map([[JWT_AUTHN_FILTER, { [JWT_PAYLOAD_METADATA_KEY]: req.jwt }]]) : undefined,
  };
  for (const f of filters) {
    const out = unpackAny<{ rules: RBAC__Output | null; shadow_rules: RBAC__Output | null }>((f as { typed_config: { type_url: string; value: Buffer } }).typed_config);
    const diags: Diagnostic[] = [];
    if (out.shadow_rules !== null) compileRbac(out.shadow_rules, 'shadow_rules', diags);
    // No `rules`: the filter only shadows (dry-run) and never denies.
    const engine = out.rules !== null ? compileRbac(out.rules, 'rules', diags) : undefined;
    assert.deepEqual(diags, []);
    if (engine !== undefined && !engine.evaluate(ctx).allowed) return false;
  }
  return true;
}

const policy = (spec: string, action = 'ALLOW') => `apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec:\n  action: ${action}\n${spec}`;

describe('AuthorizationPolicy → RBAC, evaluated by the proxy', () => {
  it('principals with Istio wildcards, namespaces, serviceAccounts; plaintext peers have no principal', () => {
    const p = policy('  rules: [{from: [{source: {principals: ["cluster.local/ns/foo/sa/sleep", "*/sa/admin", "cluster.local/ns/ops/*"]}}, {source: {namespaces: ["team-*"]}}, {source: {serviceAccounts: ["bar/web"]}}]}]');
    assert.equal(allowed(p, { principal: 'spiffe://cluster.local/ns/foo/sa/sleep' }), true);
    assert.equal(allowed(p, { principal: 'spiffe://cluster.local/ns/foo/sa/other' }), false);
    assert.equal(allowed(p, { principal: 'spiffe://cluster.local/ns/x/sa/admin' }), true);
    assert.equal(allowed(p, { principal: 'spiffe://cluster.local/ns/ops/sa/any' }), true);
    assert.equal(allowed(p, { principal: 'spiffe://cluster.local/ns/team-a/sa/x' }), true);
    assert.equal(allowed(p, { principal: 'spiffe://cluster.local/ns/bar/sa/web' }), true);
    assert.equal(allowed(p, {}), false);
    const any = policy('  rules: [{from: [{source: {principals: ["*"]}}]}]');
    assert.equal(allowed(any, { principal: 'spiffe://cluster.local/ns/x/sa/y' }), true);
    assert.equal(allowed(any, {}), false);
  });

  it('operations: methods, paths (exact, prefix*, *suffix), hosts case-insensitive with or without a port, ports, not-fields', () => {
    const p = policy('  rules: [{to: [{operation: {methods: [GET], paths: ["/api/*", "*.png", "/health"], hosts: ["HttpBin.foo"], notPaths: ["/api/admin*"]}}]}]');
    assert.equal(allowed(p, { path: '/api/x' }), true);
    assert.equal(allowed(p, { path: '/api/x?q=1' }), true);
    assert.equal(allowed(p, { path: '/img/a.png', authority: 'httpbin.FOO:8000' }), true);
    assert.equal(allowed(p, { path: '/health', authority: 'httpbin.foo.evil' }), false);
    assert.equal(allowed(p, { path: '/api/admin/x' }), false);
    assert.equal(allowed(p, { path: '/api/x', method: 'POST' }), false);
    assert.equal(allowed(p, { path: '/other' }), false);
    const ports = policy('  rules: [{to: [{operation: {notPorts: ["8080"]}}]}]');
    assert.equal(allowed(ports, { port: 80 }), true);
    assert.equal(allowed(ports, { port: 8080 }), false);
  });

  it('request principals are iss/sub of the verified JWT, exact across issuers that hold "/"', () => {
    const p = policy('  rules: [{from: [{source: {requestPrincipals: ["https://auth.example.com/tenant/alice", "testing@secure.istio.io/*"]}}]}]');
    assert.equal(allowed(p, { jwt: { iss: 'https://auth.example.com/tenant', sub: 'alice' } }), true);
    assert.equal(allowed(p, { jwt: { iss: 'https://auth.example.com', sub: 'tenant/alice' } }), true);
    assert.equal(allowed(p, { jwt: { iss: 'https://auth.example.com/tenant', sub: 'bob' } }), false);
    assert.equal(allowed(p, { jwt: { iss: 'testing@secure.istio.io', sub: 'anyone' } }), true);
    assert.equal(allowed(p, { jwt: { iss: 'testing@secure.istio.io.evil', sub: 'x' } }), false, '"iss/sub" must start with "testing@secure.istio.io/"');
    const issPrefix = policy('  rules: [{from: [{source: {requestPrincipals: ["https://auth.example.com/ten*"]}}]}]');
    assert.equal(allowed(issPrefix, { jwt: { iss: 'https://auth.example.com/tenant', sub: 'x' } }), true);
    assert.equal(allowed(issPrefix, { jwt: { iss: 'https://auth.example.com', sub: 'tenant-7' } }), true);
    assert.equal(allowed(issPrefix, { jwt: { iss: 'https://auth.example.com', sub: 'other' } }), false);
    assert.equal(allowed(p, { jwt: { iss: 'other', sub: 'x' } }), false);
    assert.equal(allowed(p, {}), false);
    const anyToken = policy('  rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]');
    assert.equal(allowed(anyToken, { jwt: { iss: 'a', sub: 'b' } }), true);
    assert.equal(allowed(anyToken, {}), false);
    const suffix = policy('  rules: [{from: [{source: {requestPrincipals: ["*/alice"]}}]}]');
    assert.equal(allowed(suffix, { jwt: { iss: 'https://x', sub: 'alice' } }), true);
    assert.equal(allowed(suffix, { jwt: { iss: 'https://x', sub: 'bob' } }), false);
  });

  it('when: claims (strings and lists), audiences, headers, source.ip, destination.port, notValues', () => {
    const p = policy([
      '  rules:',
      '  - when:',
      '    - {key: "request.auth.claims[groups]", values: [admin]}',
      '    - {key: request.auth.audiences, values: [httpbin]}',
      '    - {key: "request.headers[x-env]", notValues: [prod]}',
      '    - {key: source.ip, values: [10.0.0.0/8]}',
      '    - {key: destination.port, values: ["80"]}',
    ].join('\n'));
    const jwt = { iss: 'i', sub: 's', groups: ['dev', 'admin'], aud: 'httpbin' };
    assert.equal(allowed(p, { jwt }), true);
    assert.equal(allowed(p, { jwt: { ...jwt, groups: 'admin', aud: ['x', 'httpbin'] } }), true);
    assert.equal(allowed(p, { jwt: { ...jwt, groups: ['dev'] } }), false);
    assert.equal(allowed(p, { jwt, headers: { 'x-env': 'prod' } }), false);
    assert.equal(allowed(p, { jwt, ip: '192.168.1.1' }), false);
    assert.equal(allowed(p, { jwt, port: 8080 }), false);
  });

  it('DENY beats ALLOW; ALLOW with no rules denies all', () => {
    const both = [policy('  rules: [{}]'), policy('  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]', 'DENY').replace('name: p', 'name: d')].join('\n---\n');
    assert.equal(allowed(both, { path: '/x' }), true);
    assert.equal(allowed(both, { path: '/admin/x' }), false);
    assert.equal(allowed(policy('  rules: []'), { path: '/x' }), false);
  });

  it('istio.io/dry-run policies are shadowed, never enforced (a dry-run ALLOW alone does not deny everything)', () => {
    const dry = (p: string) => p.replace('metadata: {name: p, namespace: foo}', 'metadata: {name: p, namespace: foo, annotations: {istio.io/dry-run: "true"}}');
    assert.equal(allowed(dry(policy('  rules: [{to: [{operation: {paths: ["/only"]}}]}]')), { path: '/x' }), true);
    assert.equal(allowed(dry(policy('  rules: [{to: [{operation: {paths: ["/x"]}}]}]', 'DENY')), { path: '/x' }), true);
    // Beside an enforced policy of the same action, only the enforced one decides.
    const mixed = [policy('  rules: [{to: [{operation: {paths: ["/a"]}}]}]'), dry(policy('  rules: [{to: [{operation: {paths: ["/b"]}}]}]')).replace('name: p,', 'name: d,')].join('\n---\n');
    assert.equal(allowed(mixed, { path: '/a' }), true);
    assert.equal(allowed(mixed, { path: '/b' }), false);
  });

  it('TCP: HTTP-only ALLOW rules match nothing; HTTP-only DENY fields are ignored (deny broader)', () => {
    const allow = policy('  rules: [{to: [{operation: {methods: [GET]}}]}, {to: [{operation: {ports: ["9000"]}}]}]');
    assert.equal(allowed(allow, { port: 9000 }, true), true);
    assert.equal(allowed(allow, { port: 9001 }, true), false);
    const deny = policy('  rules: [{to: [{operation: {paths: ["/admin"], ports: ["9000"]}}]}]', 'DENY');
    assert.equal(allowed(deny, { port: 9000 }, true), false);
    assert.equal(allowed(deny, { port: 9001 }, true), true);
  });
});
