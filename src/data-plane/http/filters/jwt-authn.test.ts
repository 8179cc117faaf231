import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { SignJWT, exportJWK, generateKeyPair, type JWK, type CryptoKey } from 'jose';
import { compileJwtAuthn, JwtAuthnFilter, JWT_AUTHN_FILTER_TYPE, type JwtAuthnCompileEnv } from './jwt-authn.ts';
import { parseJwt, checkTime, JwtStatus, AudienceCheck, claimAt, claimHeaderValue } from './jwt-authn/jwt.ts';
import { parseJwks } from './jwt-authn/jwks.ts';
import { StatsStore } from '../../stats/store.ts';
import { typeForUrl, packAny } from '../../../xds/any.ts';
import { decodeProtoJson } from '../../../xds/proto-json.ts';
import { ConfigError } from '../../../shared/errors.ts';
import type { FilterEncoder, FilterFactoryContext, FilterRequest } from './types.ts';
import type { JwtAuthentication__Output } from '../../../xds/gen/envoy/extensions/filters/http/jwt_authn/v3/JwtAuthentication.ts';
import type { Logger } from '../../../shared/log.ts';
import type { CompiledRoute } from '../route/route-table.ts';

const noLog = { warn: () => {}, info: () => {} } as unknown as Logger;
const PER_ROUTE = 'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig';

function decode(json: Record<string, unknown>): JwtAuthentication__Output {
  const r = decodeProtoJson<JwtAuthentication__Output>(typeForUrl(JWT_AUTHN_FILTER_TYPE), json);
  if (r.value === undefined) throw new Error(r.diagnostics.map((d) => `${d.path}: ${d.message}`).join('\n'));
  return r.value;
}

interface Outcome {
  kind: 'continue' | 'reply';
  status?: number;
  body?: string;
  responseHeaders?: string[];
}

/** A FilterRequest that records what the filter did; `outcome` settles on continueDecoding or a local reply. */
function fakeRequest(opts: { path?: string; headers?: string[]; method?: string; perRoute?: Record<string, unknown> } = {}) {
  const encoders: FilterEncoder[] = [];
  let settle!: (o: Outcome) => void;
  const outcome = new Promise<Outcome>((r) => (settle = r));
  const log: string[] = [];
  const perRoute = opts.perRoute === undefined ? undefined : packAny(PER_ROUTE, opts.perRoute);
  const req: FilterRequest = {
    head: { method: opts.method ?? 'GET', path: opts.path ?? '/api', authority: 'svc.local', scheme: 'http', headers: opts.headers ?? [], protocol: 'HTTP/1.1', contentLength: -1, hasBody: false, upgrade: '' } as FilterRequest['head'],
    matchedRoute: (perRoute === undefined ? undefined : { perFilterConfig: (n: string) => (n === 'jwt' ? perRoute : undefined) }) as unknown as CompiledRoute,
    matchedVirtualHost: undefined,
    isGrpc: false,
    conn: { remoteAddress: '127.0.0.1', remotePort: 1, localAddress: '127.0.0.1', localPort: 2, isTls: false, serverName: '', originalDstAddress: '127.0.0.1', originalDstPort: 2 },
    dynamicMetadata: new Map(),
    clearRouteCache: () => log.push('clear'),
    continueDecoding: () => settle({ kind: 'continue' }),
    sendLocalReply: (status, body) => {
      const h: string[] = [];
      for (const e of encoders) e.onResponseHeaders?.(status, h);
      settle({ kind: 'reply', status, body, responseHeaders: h });
    },
    respondHeadersOnly: () => {},
    addEncoder: (e) => encoders.push(e),
  };
  return { req, outcome, log };
}

let now = Date.now();

function build(json: Record<string, unknown>, env: Partial<JwtAuthnCompileEnv> = {}) {
  const store = new StatsStore();
  const ctx: FilterFactoryContext = { statPrefix: 'in', store, log: noLog, random: () => 0 };
  const cfg = compileJwtAuthn(decode(json), {
    ctx,
    jwksStats: { fetchSuccess: () => store.counter('http.in.jwt_authn.jwks_fetch_success').inc(), fetchFailed: () => store.counter('http.in.jwt_authn.jwks_fetch_failed').inc() },
    now: () => now,
    ...env,
  });
  const scope = store.scope('http.in.jwt_authn');
  const f = new JwtAuthnFilter('jwt', cfg, ctx, { allowed: scope.counter('allowed'), denied: scope.counter('denied'), corsBypassed: scope.counter('cors_preflight_bypassed') }, () => now);
  return { f, stat: (n: string) => store.counter(`http.in.jwt_authn.${n}`).value };
}

/** Runs one request through the filter: sync continue, or the async outcome. */
async function run(f: JwtAuthnFilter, r: ReturnType<typeof fakeRequest>): Promise<Outcome> {
  if (f.decodeHeaders(r.req)) return { kind: 'continue' };
  return r.outcome;
}

const ISS = 'https://issuer.example';
let jwks: { keys: JWK[] };
let privateKey: CryptoKey;
let otherKey: CryptoKey;

async function token(claims: Record<string, unknown> = {}, opts: { key?: CryptoKey; kid?: string; expSec?: number } = {}): Promise<string> {
  const nowSec = Math.floor(now / 1000);
  return new SignJWT({ iss: ISS, sub: 'alice', aud: 'svc', exp: nowSec + (opts.expSec ?? 3600), iat: nowSec, ...claims })
    .setProtectedHeader({ alg: 'RS256', kid: opts.kid ?? 'k1' })
    .sign(opts.key ?? privateKey);
}

function provider(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { issuer: ISS, audiences: ['svc'], local_jwks: { inline_string: JSON.stringify(jwks) }, ...extra };
}

const bearer = (t: string): string[] => ['authorization', `Bearer ${t}`];

before(async () => {
  const kp = await generateKeyPair('RS256', { extractable: true });
  privateKey = kp.privateKey;
  otherKey = (await generateKeyPair('RS256')).privateKey;
  jwks = { keys: [{ ...(await exportJWK(kp.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' }] };
});

describe('jwt parsing (jwt_verify_lib semantics)', () => {
  it('refuses malformed tokens and alg none with Envoy status strings', () => {
    assert.equal(parseJwt('abc'), JwtStatus.JwtBadFormat);
    assert.equal(parseJwt('!!.e30.'), JwtStatus.JwtHeaderParseErrorBadBase64);
    const b = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
    assert.equal(parseJwt(`${b({ alg: 'none' })}.${b({})}.`), JwtStatus.JwtHeaderNotImplementedAlg);
    assert.equal(parseJwt(`${b({ typ: 'JWT' })}.${b({})}.`), JwtStatus.JwtHeaderBadAlg);
    assert.equal(parseJwt(`${b({ alg: 'RS256' })}.${b({ exp: 'soon' })}.`), JwtStatus.JwtPayloadParseErrorExpNotInteger);
    assert.equal(parseJwt(`${b({ alg: 'RS256' })}.${b({ aud: [1] })}.`), JwtStatus.JwtPayloadParseErrorAudNotString);
    const ok = parseJwt(`${b({ alg: 'ES256', kid: 'a' })}.${b({ iss: 'i', aud: 'x', exp: 100, nbf: 50 })}.c2ln`);
    assert.ok(typeof ok === 'object');
    assert.equal(checkTime(ok, 160, 60), JwtStatus.Ok);
    assert.equal(checkTime(ok, 161, 60), JwtStatus.JwtExpired);
    assert.equal(checkTime(ok, 0, 10), JwtStatus.JwtNotYetValid);
  });

  it('audiences ignore scheme and trailing slash; claims render like Envoy', () => {
    assert.ok(new AudienceCheck(['https://a.example/']).allows(['a.example']));
    assert.ok(!new AudienceCheck(['a']).allows(['b']));
    assert.ok(new AudienceCheck([]).allows([]));
    assert.equal(claimAt({ a: { b: { c: 'x' } } }, 'a.b.c'), 'x');
    assert.equal(claimHeaderValue(42), '42');
    assert.equal(claimHeaderValue(true), 'true');
    assert.equal(claimHeaderValue({}), undefined);
  });

  it('parses JWKS documents with Envoy statuses', () => {
    assert.equal(parseJwks('nope'), JwtStatus.JwksParseError);
    assert.equal(parseJwks('{}'), JwtStatus.JwksNoKeys);
    assert.equal(parseJwks('{"keys":{}}'), JwtStatus.JwksBadKeys);
    assert.equal(parseJwks('{"keys":[{"kty":"RSA"}]}'), JwtStatus.JwksNoValidKeys);
  });
});

describe('jwt_authn filter', () => {
  it('a valid token passes: claim and payload headers, metadata, token removed (forward false)', async () => {
    const { f, stat } = build({
      providers: { p: provider({ forward_payload_header: 'x-jwt-payload', payload_in_metadata: 'my_payload', claim_to_headers: [{ header_name: 'x-sub', claim_name: 'sub' }, { header_name: 'x-team', claim_name: 'org.team' }] }) },
      rules: [{ match: { prefix: '/' }, requires: { provider_name: 'p' } }],
    });
    const t = await token({ org: { team: 'blue' } });
    const r = fakeRequest({ headers: [...bearer(t), 'x-sub', 'spoofed'] });
    const o = await run(f, r);
    assert.equal(o.kind, 'continue');
    const h = r.req.head.headers;
    assert.equal(h.indexOf('authorization'), -1);
    assert.deepEqual(h.filter((_, i) => h[i - 1] === 'x-sub'), ['alice']);
    assert.equal(h[h.indexOf('x-team') + 1], 'blue');
    const payload = JSON.parse(Buffer.from(h[h.indexOf('x-jwt-payload') + 1]!, 'base64url').toString()) as Record<string, unknown>;
    assert.equal(payload.sub, 'alice');
    assert.equal((r.req.dynamicMetadata.get('envoy.filters.http.jwt_authn')?.my_payload as Record<string, unknown>).iss, ISS);
    assert.equal(stat('allowed'), 1);
  });

  it('failures answer 401 (403 for audiences) with Envoy bodies and www-authenticate', async () => {
    const { f, stat } = build({ providers: { p: provider() }, rules: [{ match: { prefix: '/' }, requires: { provider_name: 'p' } }] });
    const cases: Array<[string[], number, string]> = [
      [[], 401, 'Jwt is missing'],
      [bearer(await token({}, { expSec: -120 })), 401, 'Jwt is expired'],
      [bearer(await token({ iss: 'https://evil.example' })), 401, 'Jwt issuer is not configured'],
      [bearer(await token({ aud: 'other' })), 403, 'Audiences in Jwt are not allowed'],
      [bearer(await token({}, { key: otherKey })), 401, 'Jwt verification fails'],
      [bearer(await token({}, { kid: 'unknown' })), 401, "Jwks doesn't have key to match kid or alg from Jwt"],
      [bearer(`${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ iss: ISS, aud: 'svc' })).toString('base64url')}.`), 401, 'Jwt header [alg] is not supported'],
    ];
    for (const [headers, status, body] of cases) {
      const o = await run(f, fakeRequest({ headers: [...headers], path: '/api?x=1' }));
      assert.equal(o.kind, 'reply', body);
      assert.equal(o.status, status, body);
      assert.equal(o.body, body);
      const www = o.responseHeaders![o.responseHeaders!.indexOf('www-authenticate') + 1];
      assert.equal(www, body === 'Jwt is missing' ? 'Bearer realm="http://svc.local/api?x=1"' : 'Bearer realm="http://svc.local/api?x=1", error="invalid_token"');
    }
    assert.equal(stat('denied'), cases.length);
  });

  it("Istio's RequestAuthentication shape: requires_any [provider, allow_missing]", async () => {
    const { f } = build({
      providers: { 'origins-0': provider({ forward: true, payload_in_metadata: ISS }) },
      rules: [{ match: { prefix: '/' }, requires: { requires_any: { requirements: [{ provider_name: 'origins-0' }, { allow_missing: {} }] } } }],
    });
    assert.equal((await run(f, fakeRequest())).kind, 'continue');
    const good = fakeRequest({ headers: bearer(await token()) });
    assert.equal((await run(f, good)).kind, 'continue');
    assert.ok(good.req.dynamicMetadata.get('envoy.filters.http.jwt_authn')?.[ISS]);
    assert.equal(good.req.head.headers[0], 'authorization', 'forward: true keeps the token');
    assert.equal((await run(f, fakeRequest({ headers: bearer(await token({}, { key: otherKey })) }))).body, 'Jwt verification fails');
    assert.equal((await run(f, fakeRequest({ headers: bearer(await token({ iss: 'https://other' })) }))).body, 'Jwt issuer is not configured');
    assert.equal((await run(f, fakeRequest({ headers: bearer(await token({}, { expSec: -600 })) }))).body, 'Jwt is expired');
  });

  it('allow_missing_or_failed passes bad tokens; requires_all needs every provider', async () => {
    const kp2 = await generateKeyPair('ES256', { extractable: true });
    const jwks2 = { keys: [{ ...(await exportJWK(kp2.publicKey)), kid: 'e1' }] };
    const t2 = await new SignJWT({ iss: 'https://two', exp: Math.floor(now / 1000) + 60 }).setProtectedHeader({ alg: 'ES256', kid: 'e1' }).sign(kp2.privateKey);
    const { f } = build({
      providers: {
        p: provider({ forward: true }),
        two: { issuer: 'https://two', local_jwks: { inline_string: JSON.stringify(jwks2) }, from_headers: [{ name: 'x-two' }], forward: true },
      },
      rules: [
        { match: { prefix: '/optional' }, requires: { allow_missing_or_failed: {} } },
        { match: { prefix: '/both' }, requires: { requires_all: { requirements: [{ provider_name: 'p' }, { provider_name: 'two' }] } } },
        { match: { prefix: '/either' }, requires: { requires_any: { requirements: [{ provider_name: 'p' }, { provider_name: 'two' }] } } },
        { match: { prefix: '/public' } },
      ],
    });
    assert.equal((await run(f, fakeRequest({ path: '/optional', headers: bearer('garbage') }))).kind, 'continue');
    assert.equal((await run(f, fakeRequest({ path: '/public' }))).kind, 'continue');
    assert.equal((await run(f, fakeRequest({ path: '/both', headers: [...bearer(await token()), 'x-two', t2] }))).kind, 'continue');
    assert.equal((await run(f, fakeRequest({ path: '/both', headers: bearer(await token()) }))).body, 'Jwt is missing');
    assert.equal((await run(f, fakeRequest({ path: '/either', headers: ['x-two', t2] }))).kind, 'continue');
    assert.equal((await run(f, fakeRequest({ path: '/either' }))).body, 'Jwt is missing');
    assert.equal((await run(f, fakeRequest({ path: '/nomatch' }))).kind, 'continue');
  });

  it('HS256, PS384, ES512 and EdDSA keys verify; a key of the wrong type does not', async () => {
    const secret = new Uint8Array(32).fill(7);
    const ps = await generateKeyPair('PS384', { extractable: true });
    const es = await generateKeyPair('ES512', { extractable: true });
    const ed = await generateKeyPair('EdDSA', { extractable: true, crv: 'Ed25519' });
    const keys = [
      { kty: 'oct', k: Buffer.from(secret).toString('base64url'), kid: 'h', alg: 'HS256' },
      { ...(await exportJWK(ps.publicKey)), kid: 'ps' },
      { ...(await exportJWK(es.publicKey)), kid: 'es' },
      { ...(await exportJWK(ed.publicKey)), kid: 'ed' },
    ];
    const { f } = build({ providers: { p: { issuer: ISS, local_jwks: { inline_string: JSON.stringify({ keys }) } } }, rules: [{ match: { prefix: '/' }, requires: { provider_name: 'p' } }] });
    const sign = (alg: string, kid: string, key: CryptoKey | Uint8Array) => new SignJWT({ iss: ISS, exp: Math.floor(now / 1000) + 60 }).setProtectedHeader({ alg, kid }).sign(key);
    for (const [alg, kid, key] of [['HS256', 'h', secret], ['PS384', 'ps', ps.privateKey], ['ES512', 'es', es.privateKey], ['EdDSA', 'ed', ed.privateKey]] as const) {
      assert.equal((await run(f, fakeRequest({ headers: bearer(await sign(alg, kid, key)) }))).kind, 'continue', alg);
    }
    // An RS256 token naming the HMAC key's kid: kid matches, alg does not → no key.
    assert.equal((await run(f, fakeRequest({ headers: bearer(await token({}, { kid: 'h' })) }))).body, "Jwks doesn't have key to match kid or alg from Jwt");
    // A forged HS256 token signed with another secret.
    assert.equal((await run(f, fakeRequest({ headers: bearer(await sign('HS256', 'h', new Uint8Array(32).fill(8))) }))).body, 'Jwt verification fails');
  });

  it('tokens from query parameters, cookies and custom headers', async () => {
    const { f } = build({
      providers: { q: provider({ from_params: ['jwt'], from_cookies: ['session'], from_headers: [{ name: 'x-token', value_prefix: 'Token ' }] }) },
      rules: [{ match: { prefix: '/' }, requires: { provider_name: 'q' } }],
    });
    const t = await token();
    assert.equal((await run(f, fakeRequest({ path: `/x?a=1&jwt=${t}` }))).kind, 'continue');
    assert.equal((await run(f, fakeRequest({ headers: ['cookie', `a=b; session=${t}`] }))).kind, 'continue');
    assert.equal((await run(f, fakeRequest({ headers: ['x-token', `Token ${t}`] }))).kind, 'continue');
    // The default Authorization location is not used once a provider names its own.
    assert.equal((await run(f, fakeRequest({ headers: bearer(t) }))).body, 'Jwt is missing');
    // Two tokens: both must verify.
    assert.equal((await run(f, fakeRequest({ path: `/x?jwt=${t}`, headers: ['x-token', 'Token bad.bad.bad'] }))).kind, 'reply');
  });

  it('remote JWKS: fetched once, cached for cache_duration, a failed fetch fails with "Jwks remote fetch is failed"', async () => {
    let fetches = 0;
    let failing = false;
    const fetcher = async (): Promise<string> => {
      fetches++;
      if (failing) throw new Error('connect failure');
      return JSON.stringify(jwks);
    };
    const { f, stat } = build(
      {
        providers: { r: { issuer: ISS, remote_jwks: { http_uri: { uri: 'http://jwks.local/keys', cluster: 'jwks', timeout: '1s' }, cache_duration: '60s' } } },
        rules: [{ match: { prefix: '/' }, requires: { provider_name: 'r' } }],
      },
      { fetcher },
    );
    const t = await token();
    const rs = await Promise.all([run(f, fakeRequest({ headers: bearer(t) })), run(f, fakeRequest({ headers: bearer(t) }))]);
    assert.deepEqual(rs.map((o) => o.kind), ['continue', 'continue']);
    assert.equal(fetches, 1, 'concurrent requests share one fetch');
    assert.equal((await run(f, fakeRequest({ headers: bearer(t) }))).kind, 'continue');
    assert.equal(fetches, 1);
    assert.equal(stat('jwks_fetch_success'), 1);
    now += 61_000;
    failing = true;
    const t2 = await token();
    const o = await run(f, fakeRequest({ headers: bearer(t2) }));
    assert.equal(o.status, 401);
    assert.equal(o.body, 'Jwks remote fetch is failed');
    assert.equal(stat('jwks_fetch_failed'), 1);
    failing = false;
    assert.equal((await run(f, fakeRequest({ headers: bearer(t2) }))).kind, 'continue');
    assert.equal(fetches, 3);
  });

  it('async_fetch: the JWKS is fetched before the first request and refreshed in the background', async () => {
    let fetches = 0;
    const fetcher = async (): Promise<string> => {
      fetches++;
      return JSON.stringify(jwks);
    };
    const { f } = build(
      {
        providers: { r: { issuer: ISS, remote_jwks: { http_uri: { uri: 'http://jwks.local/keys', cluster: 'jwks', timeout: '1s' }, cache_duration: '0.1s', async_fetch: {} } } },
        rules: [{ match: { prefix: '/' }, requires: { provider_name: 'r' } }],
      },
      { fetcher },
    );
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(fetches, 1, 'prefetched without a request');
    const t = await token();
    assert.equal((await run(f, fakeRequest({ headers: bearer(t) }))).kind, 'continue');
    assert.equal(fetches, 1, 'the request used the prefetched keys');
    await new Promise((r) => setTimeout(r, 160));
    assert.equal(fetches, 2, 'refreshed after cache_duration because the keys were used');
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(fetches, 2, 'an unused source stops refreshing');
    assert.equal((await run(f, fakeRequest({ headers: bearer(t) }))).kind, 'continue');
  });

  it('normalize_payload_in_metadata splits space-delimited claims; header_in_metadata', async () => {
    const { f } = build({
      providers: { p: provider({ payload_in_metadata: 'pl', header_in_metadata: 'hd', normalize_payload_in_metadata: { space_delimited_claims: ['scope'] } }) },
      rules: [{ match: { prefix: '/' }, requires: { provider_name: 'p' } }],
    });
    const r = fakeRequest({ headers: bearer(await token({ scope: 'read  write' })) });
    assert.equal((await run(f, r)).kind, 'continue');
    const md = r.req.dynamicMetadata.get('envoy.filters.http.jwt_authn')!;
    assert.deepEqual((md.pl as Record<string, unknown>).scope, ['read', 'write']);
    assert.equal((md.hd as Record<string, unknown>).kid, 'k1');
  });

  it('per-route PerRouteConfig: disabled and requirement_name', async () => {
    const { f } = build({ providers: { p: provider() }, requirement_map: { strict: { provider_name: 'p' } }, rules: [{ match: { prefix: '/' }, requires: { provider_name: 'p' } }] });
    assert.equal((await run(f, fakeRequest({ perRoute: { disabled: true } }))).kind, 'continue');
    assert.equal((await run(f, fakeRequest({ perRoute: { requirement_name: 'strict' } }))).body, 'Jwt is missing');
    const o = await run(f, fakeRequest({ perRoute: { requirement_name: 'nope' } }));
    assert.equal(o.status, 403);
    assert.match(o.body!, /^Failed JWT authentication: Wrong requirement_name: nope/);
  });

  it('bypass_cors_preflight lets preflights through', async () => {
    const { f, stat } = build({ providers: { p: provider() }, rules: [{ match: { prefix: '/' }, requires: { provider_name: 'p' } }], bypass_cors_preflight: true });
    assert.equal(f.decodeHeaders(fakeRequest({ method: 'OPTIONS', headers: ['origin', 'https://a', 'access-control-request-method', 'GET'] }).req), true);
    assert.equal(stat('cors_preflight_bypassed'), 1);
  });

  it('config errors: filter_state_rules, unknown providers and requirement names', () => {
    assert.throws(
      () => build({ providers: { p: provider() }, filter_state_rules: { name: 'x' }, rules: [{ match: { prefix: '/' }, requires: { provider_name: 'q' } }, { match: { prefix: '/' }, requirement_name: 'r' }] }),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        const paths = e.diagnostics.map((d) => `${d.code} ${d.path}`);
        assert.deepEqual(paths, ['SLOOP_ERR_CONFIG_UNSUPPORTED filter_state_rules', 'SLOOP_ERR_CONFIG_INVALID rules[0].requires.provider_name', 'SLOOP_ERR_CONFIG_INVALID rules[1].requirement_name']);
        return true;
      },
    );
  });
});
