import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addressString, compileHashPolicy, formatSetCookie } from './hash-policy.ts';
import type { HashContext } from './hash-policy.ts';
import type { CompileSink } from './matchers.ts';
import { xxhash64 } from '../../upstream/lb/xxhash64.ts';
import { request, routeConfig } from './testdata/helpers.ts';

test('generated hash-policy cookie: Envoy value (xxHash64 of remote + local address) and Set-Cookie format', () => {
  const sink: CompileSink = { diagnostics: [] };
  const rc = routeConfig({
    virtual_hosts: [{
      name: 'vh',
      domains: ['*'],
      routes: [{
        match: { prefix: '/' },
        route: {
          cluster: 'c',
          hash_policy: [{ cookie: { name: 'session', ttl: { seconds: 90, nanos: 500_000_000 }, path: '/app', attributes: [{ name: 'SameSite', value: 'Lax' }, { name: 'Secure' }] } }],
        },
      }],
    }],
  });
  const policy = compileHashPolicy(rc.virtual_hosts[0]!.routes[0]!.route!.hash_policy, 'route', sink)!;
  assert.deepEqual(sink.diagnostics, []);
  const ctx: HashContext = { sourceIp: '10.0.0.1', connectionAddresses: `${addressString('10.0.0.1', 40000)}${addressString('::1', 8080)}` };
  const keys = policy.hashKeys(request(), ctx)!;
  const expected = xxhash64('10.0.0.1:40000[::1]:8080').toString(16).padStart(16, '0');
  assert.deepEqual(keys, [expected]);
  assert.equal(ctx.cookieToSet?.value, expected);
  // Http::Utility::makeSetCookieValue: whole seconds, Path, attributes in order, then HttpOnly.
  assert.equal(formatSetCookie(ctx.cookieToSet!), `session="${expected}"; Max-Age=90; Path=/app; SameSite=Lax; Secure; HttpOnly`);
  // A zero ttl is a session cookie (no Max-Age); no path, no Path attribute.
  assert.equal(formatSetCookie({ name: 'c', value: 'v', path: '', ttlMs: 0, attributes: [] }), 'c="v"; HttpOnly');
});
