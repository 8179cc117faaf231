import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeProtoJson } from '../../xds/proto-json.ts';
import { typeForUrl } from '../../xds/any.ts';
import type { RBAC__Output } from '../../xds/gen/envoy/config/rbac/v3/RBAC.ts';
import type { Diagnostic } from '../../shared/errors.ts';
import type { DownstreamConnectionInfo, PeerCertificateInfo, RequestHead } from '../http/stream.ts';
import { compileRbac, trustedClientAddress, type RbacContext } from './engine.ts';

function rbac(json: unknown): RBAC__Output {
  const r = decodeProtoJson<RBAC__Output>(typeForUrl('type.googleapis.com/envoy.config.rbac.v3.RBAC'), json);
  assert.ok(r.value, JSON.stringify(r.diagnostics));
  return r.value;
}

function engine(json: unknown) {
  const diags: Diagnostic[] = [];
  const e = compileRbac(rbac(json), 'rules', diags);
  assert.deepEqual(diags, []);
  return e;
}

function conn(over: Partial<DownstreamConnectionInfo> = {}): DownstreamConnectionInfo {
  return { remoteAddress: '10.1.2.3', remotePort: 5555, localAddress: '192.168.0.10', localPort: 8080, isTls: false, serverName: '', originalDstAddress: '192.168.0.10', originalDstPort: 8080, ...over };
}

function head(path: string, headers: string[] = [], authority = 'httpbin.foo'): RequestHead {
  return { method: 'GET', path, authority, scheme: 'http', headers, protocol: 'HTTP/1.1', contentLength: -1, hasBody: false, upgrade: '' };
}

function ctx(h: RequestHead | undefined, c = conn(), metadata?: Map<string, Record<string, unknown>>): RbacContext {
  return { conn: c, head: h, metadata };
}

const ANY_P = [{ any: true }];
const peer = (p: Partial<PeerCertificateInfo>): PeerCertificateInfo => ({ presented: true, validated: true, uriSans: [], dnsSans: [], subject: '', ...p });

describe('RBAC engine', () => {
  it('ALLOW: allowed only when a policy matches (any permission AND any principal); first policy by name', () => {
    const e = engine({
      action: 'ALLOW',
      policies: {
        'b-get': { permissions: [{ header: { name: ':method', string_match: { exact: 'GET' } } }], principals: [{ any: true }] },
        'a-admin': { permissions: [{ url_path: { path: { prefix: '/admin' } } }, { destination_port: 9999 }], principals: [{ direct_remote_ip: { address_prefix: '10.0.0.0', prefix_len: 8 } }] },
      },
    });
    assert.deepEqual(e.evaluate(ctx(head('/admin/x?q=1'))), { allowed: true, policyId: 'a-admin' });
    assert.deepEqual(e.evaluate(ctx(head('/other'))), { allowed: true, policyId: 'b-get' });
    const post = { ...head('/other'), method: 'POST' };
    assert.deepEqual(e.evaluate(ctx(post)), { allowed: false, policyId: undefined });
    // a-admin's principal fails for another source; its permission alone is not enough.
    assert.deepEqual(e.evaluate(ctx({ ...head('/admin'), method: 'POST' }, conn({ remoteAddress: '11.0.0.1' }))), { allowed: false, policyId: undefined });
  });

  it('DENY: denied only when a policy matches; empty policies allow everything, empty ALLOW denies everything', () => {
    const deny = engine({ action: 'DENY', policies: { admin: { permissions: [{ url_path: { path: { exact: '/admin' } } }], principals: [{ any: true }] } } });
    assert.deepEqual(deny.evaluate(ctx(head('/admin?x'))), { allowed: false, policyId: 'admin' });
    assert.equal(deny.evaluate(ctx(head('/admin/'))).allowed, true);
    assert.equal(engine({ action: 'DENY' }).evaluate(ctx(head('/'))).allowed, true);
    assert.equal(engine({ action: 'ALLOW' }).evaluate(ctx(head('/'))).allowed, false);
    assert.equal(engine({ action: 'LOG', policies: { p: { permissions: [{ any: true }], principals: [{ any: true }] } } }).evaluate(ctx(head('/'))).allowed, true);
  });

  it('and/or/not, port ranges, destination ip, SNI', () => {
    const e = engine({
      action: 'ALLOW',
      policies: {
        p: {
          permissions: [
            {
              and_rules: {
                rules: [
                  { destination_port_range: { start: 8000, end: 8081 } },
                  { destination_ip: { address_prefix: '192.168.0.0', prefix_len: 16 } },
                  { not_rule: { requested_server_name: { exact: 'evil.example' } } },
                  { or_rules: { rules: [{ header: { name: 'x-a', present_match: true } }, { header: { name: 'x-b', string_match: { exact: 'yes' } } }] } },
                ],
              },
            },
          ],
          principals: [{ not_id: { remote_ip: { address_prefix: '10.9.0.0', prefix_len: 16 } } }],
        },
      },
    });
    assert.equal(e.evaluate(ctx(head('/', ['x-a', '1']))).allowed, true);
    assert.equal(e.evaluate(ctx(head('/', ['x-b', 'yes']))).allowed, true);
    assert.equal(e.evaluate(ctx(head('/', ['x-b', 'no']))).allowed, false);
    assert.equal(e.evaluate(ctx(head('/', ['x-a', '1']), conn({ localPort: 8081 }))).allowed, false);
    assert.equal(e.evaluate(ctx(head('/', ['x-a', '1']), conn({ localAddress: '10.0.0.1' }))).allowed, false);
    assert.equal(e.evaluate(ctx(head('/', ['x-a', '1']), conn({ serverName: 'evil.example' }))).allowed, false);
    assert.equal(e.evaluate(ctx(head('/', ['x-a', '1']), conn({ remoteAddress: '10.9.1.1' }))).allowed, false);
  });

  it('repeated headers are matched joined with ","', () => {
    const e = engine({ action: 'DENY', policies: { p: { permissions: [{ header: { name: 'x-role', string_match: { exact: 'user,admin' } } }], principals: [{ any: true }] } } });
    assert.equal(e.evaluate(ctx(head('/', ['x-role', 'user', 'x-role', 'admin']))).allowed, false);
    assert.equal(e.evaluate(ctx(head('/', ['x-role', 'admin']))).allowed, true);
  });

  it('host rules as Istio writes them: case-insensitive, with or without port (Host: HTTPBIN.Foo:80 = httpbin.foo)', () => {
    // Istio's `hosts: [httpbin.foo]`: :authority exact (ignore_case) or prefix "httpbin.foo:" (ignore_case).
    const e = engine({
      action: 'DENY',
      policies: {
        host: {
          permissions: [
            {
              or_rules: {
                rules: [
                  { header: { name: ':authority', string_match: { exact: 'httpbin.foo', ignore_case: true } } },
                  { header: { name: ':authority', string_match: { prefix: 'httpbin.foo:', ignore_case: true } } },
                ],
              },
            },
          ],
          principals: [{ any: true }],
        },
      },
    });
    for (const authority of ['httpbin.foo', 'HTTPBIN.Foo:80', 'httpbin.foo:8000', 'HttpBin.FOO']) {
      assert.equal(e.evaluate(ctx(head('/', [], authority))).allowed, false, authority);
    }
    assert.equal(e.evaluate(ctx(head('/', [], 'httpbin.foo.evil'))).allowed, true);
    // `host` names the same header as :authority.
    const h = engine({ action: 'DENY', policies: { p: { permissions: [{ header: { name: 'host', string_match: { exact: 'a.b', ignore_case: true } } }], principals: [{ any: true }] } } });
    assert.equal(h.evaluate(ctx(head('/', [], 'A.B'))).allowed, false);
  });

  it('authenticated: URI SAN, then DNS SAN, then subject; no principal_name = any TLS connection; plaintext never', () => {
    const spiffe = 'spiffe://cluster.local/ns/default/sa/client';
    const e = engine({ action: 'ALLOW', policies: { p: { permissions: [{ any: true }], principals: [{ authenticated: { principal_name: { exact: spiffe } } }] } } });
    assert.equal(e.evaluate(ctx(head('/'), conn({ isTls: true, peerCertificate: peer({ uriSans: [spiffe] }) }))).allowed, true);
    assert.equal(e.evaluate(ctx(head('/'), conn({ isTls: true, peerCertificate: peer({ uriSans: ['spiffe://x/other'], dnsSans: [spiffe] }) }))).allowed, true);
    assert.equal(e.evaluate(ctx(head('/'), conn({ isTls: true, peerCertificate: peer({ subject: spiffe }) }))).allowed, true);
    assert.equal(e.evaluate(ctx(head('/'), conn({ isTls: true, peerCertificate: peer({ uriSans: ['spiffe://x/other'] }) }))).allowed, false);
    assert.equal(e.evaluate(ctx(head('/'), conn({ isTls: false, peerCertificate: peer({ uriSans: [spiffe] }) }))).allowed, false);
    assert.equal(e.evaluate(ctx(head('/'), conn({ isTls: true }))).allowed, false);
    // Istio's notPrincipals DENY: a plaintext client has no principal, so `not authenticated(X)` matches it.
    const notPrincipal = engine({ action: 'DENY', policies: { p: { permissions: [{ any: true }], principals: [{ not_id: { authenticated: { principal_name: { exact: spiffe } } } }] } } });
    assert.equal(notPrincipal.evaluate(ctx(head('/'), conn())).allowed, false);
    assert.equal(notPrincipal.evaluate(ctx(head('/'), conn({ isTls: true, peerCertificate: peer({ uriSans: [spiffe] }) }))).allowed, true);
    const anyTls = engine({ action: 'ALLOW', policies: { p: { permissions: [{ any: true }], principals: [{ authenticated: {} }] } } });
    assert.equal(anyTls.evaluate(ctx(head('/'), conn({ isTls: true }))).allowed, true);
    assert.equal(anyTls.evaluate(ctx(head('/'), conn())).allowed, false);
  });

  it('metadata matchers read dynamic metadata; url_path ignores the query; the network context never has a path', () => {
    const e = engine({
      action: 'ALLOW',
      policies: {
        jwt: {
          permissions: [{ url_path: { path: { exact: '/api' } } }],
          principals: [
            {
              metadata: {
                filter: 'envoy.filters.http.jwt_authn',
                path: [{ key: 'payload' }, { key: 'iss' }],
                value: { string_match: { exact: 'issuer-a' } },
              },
            },
            { metadata: { filter: 'istio_authn', path: [{ key: 'groups' }], value: { list_match: { one_of: { string_match: { exact: 'admins' } } } } } },
          ],
        },
      },
    });
    assert.equal(e.readsMetadata, true);
    assert.equal(engine({ action: 'DENY', policies: { p: { permissions: ANY_P, principals: [{ any: true }] } } }).readsMetadata, false);
    const md = (o: Record<string, Record<string, unknown>>) => new Map(Object.entries(o));
    assert.equal(e.evaluate(ctx(head('/api?x=1'), conn(), md({ 'envoy.filters.http.jwt_authn': { payload: { iss: 'issuer-a' } } }))).allowed, true);
    assert.equal(e.evaluate(ctx(head('/api'), conn(), md({ 'envoy.filters.http.jwt_authn': { payload: { iss: 'issuer-b' } } }))).allowed, false);
    assert.equal(e.evaluate(ctx(head('/api'), conn(), md({ istio_authn: { groups: ['users', 'admins'] } }))).allowed, true);
    assert.equal(e.evaluate(ctx(head('/api'), conn())).allowed, false);
    assert.equal(e.evaluate(ctx(undefined, conn(), md({ istio_authn: { groups: ['admins'] } }))).allowed, false);
    const present = engine({ action: 'DENY', policies: { p: { permissions: [{ metadata: { filter: 'f', path: [{ key: 'k' }], value: { present_match: true }, invert: true } }], principals: [{ any: true }] } } });
    assert.equal(present.evaluate(ctx(head('/'))).allowed, false);
    assert.equal(present.evaluate(ctx(head('/'), conn(), md({ f: { k: 1 } }))).allowed, true);
  });

  it('remote_ip is the x-forwarded-for client address (HCM rules); direct_remote_ip and source_ip the peer', () => {
    const h = head('/', ['x-forwarded-for', '1.1.1.1, 2.2.2.2', 'x-forwarded-for', '3.3.3.3']);
    const peer = '10.0.0.9';
    assert.equal(trustedClientAddress(h, peer, { useRemoteAddress: false, numTrustedHops: 0 }), '3.3.3.3');
    assert.equal(trustedClientAddress(h, peer, { useRemoteAddress: false, numTrustedHops: 1 }), '2.2.2.2');
    assert.equal(trustedClientAddress(h, peer, { useRemoteAddress: false, numTrustedHops: 3 }), peer);
    assert.equal(trustedClientAddress(h, peer, { useRemoteAddress: true, numTrustedHops: 0 }), peer);
    assert.equal(trustedClientAddress(h, peer, { useRemoteAddress: true, numTrustedHops: 1 }), '3.3.3.3');
    assert.equal(trustedClientAddress(head('/', ['x-forwarded-for', 'junk']), peer, { useRemoteAddress: false, numTrustedHops: 0 }), peer);
    assert.equal(trustedClientAddress(head('/'), peer, { useRemoteAddress: false, numTrustedHops: 0 }), peer);
    const rule = (id: string) => engine({ action: 'ALLOW', policies: { p: { permissions: [{ any: true }], principals: [{ [id]: { address_prefix: '3.3.3.0', prefix_len: 24 } }] } } });
    const c = conn({ remoteAddress: peer });
    const xff = { useRemoteAddress: false, numTrustedHops: 0 };
    assert.equal(rule('remote_ip').evaluate({ conn: c, head: h, metadata: undefined, xff }).allowed, true);
    assert.equal(rule('direct_remote_ip').evaluate({ conn: c, head: h, metadata: undefined, xff }).allowed, false);
    assert.equal(rule('source_ip').evaluate({ conn: c, head: h, metadata: undefined, xff }).allowed, false);
    assert.equal(rule('remote_ip').evaluate({ conn: c, head: h, metadata: undefined, xff: { useRemoteAddress: true, numTrustedHops: 0 } }).allowed, false);
    // The network filter has no request: the peer.
    assert.equal(rule('remote_ip').evaluate({ conn: conn({ remoteAddress: '3.3.3.3' }), head: undefined, metadata: undefined }).allowed, true);
  });

  it('unsupported pieces are config errors naming the field', () => {
    const diags: Diagnostic[] = [];
    compileRbac(
      rbac({
        action: 'ALLOW',
        policies: {
          p: {
            permissions: [{ any: true }, { uri_template: { name: 'x', typed_config: { '@type': 'type.googleapis.com/google.protobuf.Empty' } } }],
            principals: [{ filter_state: { key: 'k', string_match: { exact: 'v' } } }],
          },
        },
      }),
      'rules',
      diags,
    );
    assert.deepEqual(
      diags.map((d) => [d.code, d.path]),
      [
        ['SLOOP_ERR_CONFIG_UNSUPPORTED', 'rules.policies["p"].permissions[1].uri_template'],
        ['SLOOP_ERR_CONFIG_UNSUPPORTED', 'rules.policies["p"].principals[0].filter_state'],
      ],
    );
  });
});
