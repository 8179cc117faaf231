// envoy.filters.http.jwt_authn through `sloop proxy`: a real JWKS server on loopback (keys made with jose) reached
// through a STATIC cluster, tokens in headers and query parameters, every failure mode with Envoy's 401/403 bodies
// and www-authenticate, Istio's RequestAuthentication shape (requires_any [provider, allow_missing]), an unreachable
// JWKS (401 "Jwks remote fetch is failed", the proxy keeps serving), and the JWKS cache refreshing after
// cache_duration (a rotated key starts to verify). Issue #5.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair, type JWK, type CryptoKey } from 'jose';
import { startHttpUpstream, startGrpcUpstream, grpcClient, type HttpUpstream, type GrpcUpstream } from '../helpers/upstreams.ts';
import { startProxy, bootstrapWith, httpListener, staticCluster, virtualHost, prefixRoute, http2ProtocolOptions, type ProxyHandle } from '../helpers/proxy.ts';
import { httpRequest, type SimpleResponse } from '../helpers/http-client.ts';
import { freePorts, LOOPBACK } from '../helpers/ports.ts';
import { waitUntil } from '../helpers/wait.ts';

const JWT_AUTHN = 'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication';
const ISS = 'https://issuer.example';

interface KeyPair {
  privateKey: CryptoKey;
  jwk: JWK;
}

async function keyPair(kid: string): Promise<KeyPair> {
  const kp = await generateKeyPair('RS256', { extractable: true });
  return { privateKey: kp.privateKey, jwk: { ...(await exportJWK(kp.publicKey)), kid, alg: 'RS256', use: 'sig' } };
}

/** A JWKS server: serves `keys` at /keys, counts fetches. */
interface JwksServer {
  port: number;
  keys: JWK[];
  fetches: number;
  close(): Promise<void>;
}

async function startJwksServer(keys: JWK[]): Promise<JwksServer> {
  const state = { keys, fetches: 0 };
  const server = http.createServer((req, res) => {
    if (req.url !== '/keys') {
      res.writeHead(404).end();
      return;
    }
    state.fetches++;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: state.keys }));
  });
  await new Promise<void>((r) => server.listen(0, LOOPBACK, r));
  return {
    port: (server.address() as AddressInfo).port,
    get keys() {
      return state.keys;
    },
    set keys(k: JWK[]) {
      state.keys = k;
    },
    get fetches() {
      return state.fetches;
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  } as JwksServer;
}

describe('jwt_authn through sloop proxy', () => {
  let upstream: HttpUpstream;
  let grpcUpstream: GrpcUpstream;
  let jwksServer: JwksServer;
  let proxy: ProxyHandle;
  let port: number;
  let k1: KeyPair;
  let k2: KeyPair;
  let stranger: KeyPair;
  let silent: net.Server;
  const silentSockets: net.Socket[] = [];

  async function token(claims: Record<string, unknown> = {}, key: KeyPair = k1, expSec = 3600): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ iss: ISS, sub: 'alice', aud: 'svc', iat: now, exp: now + expSec, ...claims })
      .setProtectedHeader({ alg: 'RS256', kid: key.jwk.kid! })
      .sign(key.privateKey);
  }

  function get(path: string, tok?: string, headers: Array<[string, string]> = []): Promise<SimpleResponse> {
    const h: Array<[string, string]> = [['host', 'svc.local'], ...headers];
    if (tok !== undefined) h.push(['authorization', `Bearer ${tok}`]);
    return httpRequest(port, path, { headers: h });
  }

  const lastUpstream = () => upstream.requests.at(-1)!;

  before(async () => {
    k1 = await keyPair('k1');
    k2 = await keyPair('k2');
    stranger = await keyPair('k1'); // same kid, different key: a forged signature
    upstream = await startHttpUpstream({ name: 'app' });
    grpcUpstream = await startGrpcUpstream({ name: 'g' });
    jwksServer = await startJwksServer([k1.jwk]);
    // Accepts connections and never answers: the fetch must time out, not hang the request.
    silent = net.createServer((s) => silentSockets.push(s));
    await new Promise<void>((r) => silent.listen(0, LOOPBACK, r));
    const [p, admin, deadPort] = await freePorts(3);
    port = p;
    const remote = (cluster: string, cacheSeconds: number) => ({
      http_uri: { uri: 'http://jwks.example/keys', cluster, timeout: '1s' },
      cache_duration: `${cacheSeconds}s`,
    });
    proxy = await startProxy(
      bootstrapWith({
        adminPort: admin,
        clusters: [
          staticCluster('app', [[LOOPBACK, upstream.port]]),
          staticCluster('g', [[LOOPBACK, grpcUpstream.port]], http2ProtocolOptions()),
          staticCluster('jwks', [[LOOPBACK, jwksServer.port]]),
          staticCluster('dead-jwks', [[LOOPBACK, deadPort]], { connect_timeout: '0.5s' }),
          staticCluster('silent-jwks', [[LOOPBACK, (silent.address() as AddressInfo).port]]),
        ],
        listeners: [
          httpListener({
            name: 'in',
            port,
            httpFilters: [
              {
                name: 'envoy.filters.http.jwt_authn',
                typed_config: {
                  '@type': JWT_AUTHN,
                  providers: {
                    main: {
                      issuer: ISS,
                      audiences: ['svc'],
                      remote_jwks: remote('jwks', 3),
                      forward_payload_header: 'x-jwt-payload',
                      claim_to_headers: [{ header_name: 'x-jwt-sub', claim_name: 'sub' }, { header_name: 'x-jwt-team', claim_name: 'org.team' }],
                      payload_in_metadata: 'payload',
                    },
                    query: { issuer: ISS, audiences: ['svc'], remote_jwks: remote('jwks', 2), from_params: ['jwt'] },
                    keep: { issuer: ISS, audiences: ['svc'], remote_jwks: remote('jwks', 2), forward: true },
                    dead: { issuer: 'https://dead.example', remote_jwks: remote('dead-jwks', 60) },
                    silent: { issuer: 'https://silent.example', remote_jwks: { ...remote('silent-jwks', 60), http_uri: { uri: 'http://jwks.example/keys', cluster: 'silent-jwks', timeout: '0.5s' } } },
                  },
                  rules: [
                    { match: { prefix: '/required' }, requires: { provider_name: 'main' } },
                    { match: { prefix: '/optional' }, requires: { requires_any: { requirements: [{ provider_name: 'main' }, { allow_missing: {} }] } } },
                    { match: { prefix: '/query' }, requires: { provider_name: 'query' } },
                    { match: { prefix: '/keep' }, requires: { provider_name: 'keep' } },
                    { match: { prefix: '/dead' }, requires: { provider_name: 'dead' } },
                    { match: { prefix: '/silent' }, requires: { provider_name: 'silent' } },
                    { match: { prefix: '/public' } },
                    { match: { prefix: '/sloop.test.Echo/' }, requires: { provider_name: 'main' } },
                  ],
                },
              },
            ],
            virtualHosts: [virtualHost('svc', ['svc.local'], [prefixRoute('/', 'app')]), virtualHost('grpc', ['grpc.local'], [prefixRoute('/', 'g')])],
          }),
        ],
      }),
    );
  });

  after(async () => {
    await proxy?.stop();
    await upstream?.close();
    await grpcUpstream?.close();
    await jwksServer?.close();
    for (const s of silentSockets) s.destroy();
    await new Promise<void>((r) => (silent ? silent.close(() => r()) : r()));
  });

  it('a valid token passes; the upstream sees the claim headers and the payload, not the token', async () => {
    const r = await get('/required/x', await token({ org: { team: 'blue' } }));
    assert.equal(r.status, 200, r.text);
    const seen = lastUpstream().headerMap;
    assert.equal(seen['x-jwt-sub'], 'alice');
    assert.equal(seen['x-jwt-team'], 'blue');
    assert.equal(seen.authorization, undefined, 'forward: false strips the token header');
    const payload = JSON.parse(Buffer.from(seen['x-jwt-payload']!, 'base64url').toString('utf8')) as Record<string, unknown>;
    assert.equal(payload.iss, ISS);
    assert.equal(payload.sub, 'alice');
  });

  it('a client cannot spoof the headers the filter sets', async () => {
    const r = await get('/required/x', await token(), [['x-jwt-sub', 'mallory'], ['x-jwt-payload', 'forged']]);
    assert.equal(r.status, 200);
    assert.equal(lastUpstream().headerMap['x-jwt-sub'], 'alice');
    assert.notEqual(lastUpstream().headerMap['x-jwt-payload'], 'forged');
  });

  it('every failure mode answers with Envoy status, body and www-authenticate', async () => {
    const noneToken = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify({ iss: ISS, aud: 'svc', sub: 'x' })).toString('base64url')}.`;
    const cases: Array<[string, string | undefined, number, string]> = [
      ['missing', undefined, 401, 'Jwt is missing'],
      ['expired', await token({}, k1, -300), 401, 'Jwt is expired'],
      ['wrong issuer', await token({ iss: 'https://evil.example' }), 401, 'Jwt issuer is not configured'],
      ['wrong audience', await token({ aud: 'someone-else' }), 403, 'Audiences in Jwt are not allowed'],
      ['alg none', noneToken, 401, 'Jwt header [alg] is not supported'],
      ['bad signature', await token({}, stranger), 401, 'Jwt verification fails'],
      ['garbage', 'not-a-jwt', 401, 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections'],
    ];
    const before = upstream.requests.length;
    for (const [what, tok, status, body] of cases) {
      const r = await get('/required/p?q=1', tok);
      assert.equal(r.status, status, what);
      assert.equal(r.text, body, what);
      const www = `Bearer realm="http://svc.local/required/p?q=1"${what === 'missing' ? '' : ', error="invalid_token"'}`;
      assert.equal(r.headers['www-authenticate'], www, what);
    }
    assert.equal(upstream.requests.length, before, 'no failed request reached the upstream');
  });

  it("Istio's shape: no token passes without identity, a bad token is refused, a good one passes", async () => {
    assert.equal((await get('/optional/a')).status, 200);
    assert.equal(lastUpstream().headerMap['x-jwt-sub'], undefined);
    const bad = await get('/optional/a', await token({}, stranger));
    assert.equal(bad.status, 401);
    assert.equal(bad.text, 'Jwt verification fails');
    const good = await get('/optional/a', await token());
    assert.equal(good.status, 200);
    assert.equal(lastUpstream().headerMap['x-jwt-sub'], 'alice');
    assert.equal((await get('/public/a')).status, 200);
  });

  it('a token in a query parameter; forward: true keeps the header', async () => {
    const t = await token();
    assert.equal((await get(`/query/a?jwt=${t}`)).status, 200);
    assert.equal((await get('/query/a')).text, 'Jwt is missing');
    assert.equal((await get('/keep/a', t)).status, 200);
    assert.equal(lastUpstream().headerMap.authorization, `Bearer ${t}`);
  });

  it('an unreachable JWKS fails its tokens with 401 "Jwks remote fetch is failed"; the proxy keeps serving', async () => {
    const now = Math.floor(Date.now() / 1000);
    const t = await new SignJWT({ iss: 'https://dead.example', exp: now + 60 }).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).sign(k1.privateKey);
    const started = Date.now();
    const r = await get('/dead/a', t);
    assert.equal(r.status, 401);
    assert.equal(r.text, 'Jwks remote fetch is failed');
    assert.ok(Date.now() - started < 3000, 'no hang');
    assert.equal((await get('/dead/a', t)).text, 'Jwks remote fetch is failed', 'refetched, failed again');
    const silentToken = await new SignJWT({ iss: 'https://silent.example', exp: now + 60 }).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).sign(k1.privateKey);
    const t0 = Date.now();
    const timedOut = await get('/silent/a', silentToken);
    assert.equal(timedOut.status, 401);
    assert.equal(timedOut.text, 'Jwks remote fetch is failed');
    const took = Date.now() - t0;
    assert.ok(took >= 400 && took < 3000, `the fetch timed out after http_uri.timeout (took ${took} ms)`);
    assert.equal((await get('/required/a', await token())).status, 200);
    const stats = await proxy.stats();
    assert.ok(stats['http.in.jwt_authn.jwks_fetch_failed']! >= 2);
    assert.ok(stats['http.in.jwt_authn.jwks_fetch_success']! >= 1);
    assert.ok(stats['http.in.jwt_authn.allowed']! >= 1);
    assert.ok(stats['http.in.jwt_authn.denied']! >= 9);
  });

  it('the JWKS cache expires after cache_duration: a rotated key verifies after the refetch', async () => {
    // Wait for a refetch, so the cache (k1 only) is fresh for the next 3 s.
    const f0 = jwksServer.fetches;
    const t1 = await token();
    await waitUntil(async () => (await get('/required/a', t1)).status === 200 && jwksServer.fetches > f0, { timeoutMs: 6000, intervalMs: 200, what: 'a JWKS refetch' });
    jwksServer.keys = [k1.jwk, k2.jwk];
    const fetchesBefore = jwksServer.fetches;
    const t2 = await token({}, k2);
    // Until the cached set (without k2) expires, k2's tokens match no key.
    const early = await get('/required/a', t2);
    assert.equal(early.status, 401);
    assert.equal(early.text, "Jwks doesn't have key to match kid or alg from Jwt");
    await waitUntil(async () => (await get('/required/a', t2)).status === 200, { timeoutMs: 6000, intervalMs: 250, what: 'the rotated key to verify' });
    assert.ok(jwksServer.fetches > fetchesBefore, 'the JWKS was fetched again');
  });

  it('gRPC: a missing token is a trailers-only UNAUTHENTICATED; a token in metadata passes with its claims', async () => {
    const c = grpcClient(`127.0.0.1:${port}`, { authority: 'grpc.local' });
    try {
      const denied = await c.echo({ message: 'hi' });
      assert.equal(denied.code, 16);
      assert.equal(denied.details, 'Jwt is missing');
      const ok = await c.echo({ message: 'hi' }, { metadata: { authorization: `Bearer ${await token()}` } });
      assert.equal(ok.code, 0, ok.details);
      assert.equal(grpcUpstream.calls.at(-1)!.metadata['x-jwt-sub'], 'alice');
    } finally {
      c.close();
    }
  });

  it('a config it cannot honour is refused with the field path (filter_state_rules, unknown provider)', async () => {
    const [p, admin] = await freePorts(2);
    const bad = await startProxy(
      bootstrapWith({
        adminPort: admin,
        clusters: [staticCluster('app', [[LOOPBACK, upstream.port]])],
        listeners: [
          httpListener({
            name: 'bad',
            port: p,
            httpFilters: [{ name: 'envoy.filters.http.jwt_authn', typed_config: { '@type': JWT_AUTHN, filter_state_rules: { name: 'x' }, rules: [{ match: { prefix: '/' }, requires: { provider_name: 'nope' } }] } }],
            virtualHosts: [virtualHost('svc', ['svc.local'], [prefixRoute('/', 'app')])],
          }),
        ],
      }),
      { expectFail: true },
    );
    assert.equal(bad.exit?.code, 1);
    const err = bad.stderr();
    assert.match(err, /http_filters\[0\]\.typed_config\.filter_state_rules: filter_state_rules is not supported/);
    assert.match(err, /http_filters\[0\]\.typed_config\.rules\[0\]\.requires\.provider_name: Required provider \['nope'\] is not configured/);
  });
});
