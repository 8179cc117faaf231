// Clusters, load balancing and connection pools through `sloop proxy`, over real traffic, with Envoy's
// semantics (envoy.config.cluster.v3.Cluster, arch_overview/upstream/load_balancing): STATIC, STRICT_DNS,
// LOGICAL_DNS and ORIGINAL_DST discovery; priorities, health_status and locality weights from
// load_assignment; ROUND_ROBIN (weighted), LEAST_REQUEST, RANDOM, RING_HASH and MAGLEV with the route's
// hash_policy; HTTP/1.1 keep-alive reuse and HTTP/2 multiplexing upstream.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { startHttpUpstream, echoHandler, type HttpUpstream } from '../helpers/upstreams.ts';
import {
  startProxy, bootstrapWith, httpListener, staticCluster, virtualHost, prefixRoute, http2ProtocolOptions, socketAddress,
  type Json, type ProxyHandle,
} from '../helpers/proxy.ts';
import { countByUpstream, httpRequest } from '../helpers/http-client.ts';
import { curl } from '../helpers/clients.ts';
import { freePorts } from '../helpers/ports.ts';
import { waitUntil } from '../helpers/wait.ts';

/** An `lb_endpoints` entry for 127.0.0.1:`port` (or `host`:`port`), with extra fields (weight, health). */
function lbEndpoint(port: number, extra: Json = {}, host = '127.0.0.1'): Json {
  return { endpoint: { address: socketAddress(port, host) }, ...extra };
}

/** A `load_assignment` for cluster `name` from LocalityLbEndpoints. */
function assignment(name: string, localities: readonly Json[]): Json {
  return { load_assignment: { cluster_name: name, endpoints: [...localities] } };
}

/** Clusters with a consistent-hash balancer: `ring` (RING_HASH) and `maglev` (MAGLEV). */
const HASHING = ['ring', 'maglev'] as const;

/** A port nothing listens on (never reached when the test passes: such hosts are unhealthy). */
const DEAD_PORT = 1;

describe('clusters and load balancing', () => {
  let e1: HttpUpstream;
  let e2: HttpUpstream;
  let e3: HttpUpstream;
  let h2up: HttpUpstream;
  let proxy: ProxyHandle;
  let port: number;
  /** Requests to `/lr/hold...` on e1/e2 wait here until released. */
  const held: ServerResponse[] = [];
  const holdAware = (name: string) => {
    const echo = echoHandler(name);
    return (req: Parameters<typeof echo>[0], res: Parameters<typeof echo>[1], rec: Parameters<typeof echo>[2]): void => {
      if (rec.url.startsWith('/lr/hold')) {
        held.push(res as ServerResponse);
        return;
      }
      echo(req, res, rec);
    };
  };
  const releaseHeld = (): void => {
    for (const res of held.splice(0)) res.writeHead(200, { 'x-upstream': 'held' }).end('released');
  };

  const count = (n: number, pathFor: (i: number) => string, headersFor?: (i: number) => Array<[string, string]>) =>
    countByUpstream(port, n, pathFor, { headersFor });

  before(async () => {
    // e1 and e2 hold `/lr/hold` requests (LEAST_REQUEST test); every other path echoes.
    e1 = await startHttpUpstream({ name: 'e1', handler: holdAware('e1') });
    e2 = await startHttpUpstream({ name: 'e2', handler: holdAware('e2') });
    e3 = await startHttpUpstream({ name: 'e3' });
    h2up = await startHttpUpstream({ name: 'h2up', h2: true });
    const [p, admin] = await freePorts(2);
    port = p;
    const all: Array<readonly [string, number]> = [['127.0.0.1', e1.port], ['127.0.0.1', e2.port], ['127.0.0.1', e3.port]];
    const clusters: Json[] = [
      staticCluster('rr', all),
      staticCluster('rr-weighted', all, assignment('rr-weighted', [{
        lb_endpoints: [
          lbEndpoint(e1.port, { load_balancing_weight: 1 }),
          lbEndpoint(e2.port, { load_balancing_weight: 2 }),
          lbEndpoint(e3.port, { load_balancing_weight: 3 }),
        ],
      }])),
      // Priority 0's only host is UNHEALTHY: all traffic spills to priority 1.
      staticCluster('prio-spill', [], assignment('prio-spill', [
        { priority: 0, lb_endpoints: [lbEndpoint(DEAD_PORT, { health_status: 'UNHEALTHY' })] },
        { priority: 1, lb_endpoints: [lbEndpoint(e2.port)] },
      ])),
      // Half of priority 0 is healthy: with the default overprovisioning factor 1.4 it takes 70 % of the load.
      staticCluster('prio-partial', [], assignment('prio-partial', [
        { priority: 0, lb_endpoints: [lbEndpoint(e1.port), lbEndpoint(DEAD_PORT, { health_status: 'UNHEALTHY' })] },
        { priority: 1, lb_endpoints: [lbEndpoint(e2.port)] },
      ])),
      staticCluster('locality', [], {
        common_lb_config: { locality_weighted_lb_config: {} },
        ...assignment('locality', [
          { locality: { region: 'r', zone: 'z1' }, load_balancing_weight: 1, lb_endpoints: [lbEndpoint(e1.port)] },
          { locality: { region: 'r', zone: 'z2' }, load_balancing_weight: 3, lb_endpoints: [lbEndpoint(e2.port)] },
        ]),
      }),
      staticCluster('least', [['127.0.0.1', e1.port], ['127.0.0.1', e2.port]], { lb_policy: 'LEAST_REQUEST' }),
      staticCluster('random', all, { lb_policy: 'RANDOM' }),
      staticCluster('ring', all, { lb_policy: 'RING_HASH' }),
      staticCluster('maglev', all, { lb_policy: 'MAGLEV' }),
      {
        name: 'strict-dns',
        type: 'STRICT_DNS',
        connect_timeout: '1s',
        dns_lookup_family: 'V4_ONLY',
        lb_policy: 'ROUND_ROBIN',
        ...assignment('strict-dns', [{ lb_endpoints: [lbEndpoint(e1.port, {}, 'localhost'), lbEndpoint(e2.port, {}, 'localhost')] }]),
      },
      {
        name: 'logical-dns',
        type: 'LOGICAL_DNS',
        connect_timeout: '1s',
        dns_lookup_family: 'V4_ONLY',
        lb_policy: 'ROUND_ROBIN',
        ...assignment('logical-dns', [{ lb_endpoints: [lbEndpoint(e3.port, {}, 'localhost')] }]),
      },
      { name: 'orig', type: 'ORIGINAL_DST', connect_timeout: '1s', lb_policy: 'CLUSTER_PROVIDED', original_dst_lb_config: { use_http_header: true } },
      {
        name: 'orig-named',
        type: 'ORIGINAL_DST',
        connect_timeout: '1s',
        lb_policy: 'CLUSTER_PROVIDED',
        original_dst_lb_config: { use_http_header: true, http_header_name: 'x-dst' },
      },
      staticCluster('pool-h1', [['127.0.0.1', e3.port]]),
      staticCluster('pool-h2', [['127.0.0.1', h2up.port]], http2ProtocolOptions()),
    ];
    const routes: Json[] = [
      prefixRoute('/rr-weighted/', 'rr-weighted'),
      prefixRoute('/rr/', 'rr'),
      prefixRoute('/prio-spill/', 'prio-spill'),
      prefixRoute('/prio-partial/', 'prio-partial'),
      prefixRoute('/locality/', 'locality'),
      prefixRoute('/lr/', 'least'),
      prefixRoute('/random/', 'random'),
      // The hash policy lives on the route; the cluster picks the consistent-hash balancer.
      ...HASHING.flatMap((c) => [
        prefixRoute(`/${c}/header/`, c, { hash_policy: [{ header: { header_name: 'x-user' } }] }),
        prefixRoute(`/${c}/cookie/`, c, { hash_policy: [{ cookie: { name: 'session', ttl: '60s', path: '/' } }] }),
        prefixRoute(`/${c}/source/`, c, { hash_policy: [{ connection_properties: { source_ip: true } }] }),
      ]),
      prefixRoute('/strict-dns/', 'strict-dns'),
      prefixRoute('/logical-dns/', 'logical-dns'),
      prefixRoute('/orig-named/', 'orig-named'),
      prefixRoute('/orig/', 'orig'),
      prefixRoute('/pool-h1/', 'pool-h1'),
      prefixRoute('/pool-h2/', 'pool-h2'),
    ];
    proxy = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [httpListener({ name: 'lb', port, virtualHosts: [virtualHost('all', ['*'], routes)] })],
        clusters,
      }),
    );
  });

  after(async () => {
    releaseHeld();
    await proxy?.stop();
    await Promise.all([e1?.close(), e2?.close(), e3?.close(), h2up?.close()]);
  });

  it('STATIC with several endpoints: ROUND_ROBIN gives each exactly its share over full cycles', async () => {
    const counts = await count(30, (i) => `/rr/${i}`);
    assert.deepEqual(counts, { e1: 10, e2: 10, e3: 10 });
  });

  it('ROUND_ROBIN with load_balancing_weight 1:2:3 is exact over full cycles', async () => {
    const counts = await count(60, (i) => `/rr-weighted/${i}`);
    assert.deepEqual(counts, { e1: 10, e2: 20, e3: 30 });
    const stats = await proxy.stats();
    assert.equal(stats['cluster.rr-weighted.membership_total'], 3);
    assert.equal(stats['cluster.rr-weighted.membership_healthy'], 3);
    assert.equal(stats['cluster.rr-weighted.upstream_rq_total'], 60);
  });

  it('priority 0 hosts with health_status UNHEALTHY spill all traffic to priority 1', async () => {
    const counts = await count(20, (i) => `/prio-spill/${i}`);
    assert.deepEqual(counts, { e2: 20 });
    const stats = await proxy.stats();
    assert.equal(stats['cluster.prio-spill.membership_total'], 2);
    assert.equal(stats['cluster.prio-spill.membership_healthy'], 1);
    assert.equal(stats['cluster.prio-spill.upstream_cx_connect_fail'] ?? 0, 0, 'the unhealthy host is never tried');
  });

  it('a half-healthy priority 0 keeps 70 % of the load (overprovisioning factor 1.4), the rest spills', async () => {
    const n = 200;
    const counts = await count(n, (i) => `/prio-partial/${i}`);
    assert.equal((counts.e1 ?? 0) + (counts.e2 ?? 0), n, JSON.stringify(counts));
    // Binomial(200, 0.7): σ ≈ 6.5, so 140 ± 30 is over 4.5 σ.
    assert.ok(counts.e1 >= 110 && counts.e1 <= 170, `priority 0 got ${counts.e1} of ${n}`);
  });

  it('locality load_balancing_weight 1:3 with locality_weighted_lb_config', async () => {
    // Envoy schedules localities with EDF, so the split is exact over whole cycles of 4.
    const counts = await count(200, (i) => `/locality/${i}`);
    assert.deepEqual(counts, { e1: 50, e2: 150 });
  });

  it('LEAST_REQUEST sends new requests to the host with fewer active requests', async () => {
    // Two hosts and choice_count 2: Envoy scans all hosts and picks the least loaded one.
    const first = httpRequest(port, '/lr/hold/1');
    const heldAt = await waitUntil(() => (e1.requests.some((r) => r.url === '/lr/hold/1') ? 'e1' : e2.requests.some((r) => r.url === '/lr/hold/1') ? 'e2' : false), {
      what: 'the held request to reach an upstream',
    });
    const other = heldAt === 'e1' ? 'e2' : 'e1';
    const counts = await count(10, (i) => `/lr/quick/${i}`);
    assert.deepEqual(counts, { [other]: 10 }, `host ${heldAt} is busy, so ${other} serves everything`);
    releaseHeld();
    assert.equal((await first).status, 200);
    const after = await count(20, (i) => `/lr/after/${i}`);
    assert.ok((after.e1 ?? 0) > 0 && (after.e2 ?? 0) > 0, `both idle hosts serve again: ${JSON.stringify(after)}`);
  });

  it('RANDOM spreads over every host', async () => {
    const n = 300;
    const counts = await count(n, (i) => `/random/${i}`);
    for (const h of ['e1', 'e2', 'e3']) {
      // Binomial(300, 1/3): σ ≈ 8.2; 100 ± 45 is over 5 σ.
      assert.ok((counts[h] ?? 0) >= 55 && (counts[h] ?? 0) <= 145, `${h}: ${JSON.stringify(counts)}`);
    }
  });

  for (const c of HASHING) {
    const lb = c === 'ring' ? 'RING_HASH' : 'MAGLEV';

    it(`${lb} with a header hash_policy: same key → same host, different keys spread`, async () => {
      for (const user of ['alice', 'bob', 'carol']) {
        const counts = await count(10, (i) => `/${c}/header/${i}`, () => [['x-user', user]]);
        assert.equal(Object.keys(counts).length, 1, `${user} always lands on one host: ${JSON.stringify(counts)}`);
        assert.ok(!Object.keys(counts)[0].startsWith('status:'), JSON.stringify(counts));
      }
      const spread = await count(60, (i) => `/${c}/header/spread/${i}`, (i) => [['x-user', `user-${i}`]]);
      assert.deepEqual(Object.keys(spread).sort(), ['e1', 'e2', 'e3'], JSON.stringify(spread));
    });

    it(`${lb} with a cookie hash_policy: generates the cookie (ttl), then sticks to its host`, async () => {
      const first = await httpRequest(port, `/${c}/cookie/first`);
      assert.equal(first.status, 200);
      const setCookie = first.headers['set-cookie'] ?? [];
      assert.equal(setCookie.length, 1, `one Set-Cookie: ${JSON.stringify(first.headers)}`);
      // Envoy's makeSetCookieValue: name="<16 hex digits>"; Max-Age=<ttl s>; Path=<path>; HttpOnly.
      const m = /^session="([0-9a-f]{16})"; Max-Age=60; Path=\/; HttpOnly$/.exec(setCookie[0]);
      assert.ok(m, setCookie[0]);
      const host = String(first.headers['x-upstream']);
      // The cookie as a client sends it back (quotes included) selects the same host every time.
      const again = await count(15, (i) => `/${c}/cookie/again/${i}`, () => [['cookie', `other=1; session="${m[1]}"`]]);
      assert.deepEqual(again, { [host]: 15 });
      const sent = [e1, e2, e3].flatMap((u) => u.requests).filter((r) => r.url.startsWith(`/${c}/cookie/again/`));
      assert.equal(sent.length, 15);
      assert.ok(sent.every((r) => r.headerMap['cookie']?.includes(`session="${m[1]}"`)), 'the cookie is forwarded');
      // A request that carries the cookie gets no new one; quoted and unquoted values are the same key.
      const withCookie = await httpRequest(port, `/${c}/cookie/with`, { headers: [['cookie', `session=${m[1]}`]] });
      assert.equal(withCookie.headers['set-cookie'], undefined);
      assert.equal(withCookie.headers['x-upstream'], host);
      const spread = await count(60, (i) => `/${c}/cookie/spread/${i}`, (i) => [['cookie', `session=s${i}`]]);
      assert.deepEqual(Object.keys(spread).sort(), ['e1', 'e2', 'e3'], JSON.stringify(spread));
    });

    it(`${lb} on connection_properties.source_ip: one source → one host, many sources spread`, async () => {
      // Any 127.0.0.0/8 address is a distinct source on Linux loopback.
      for (const source of ['127.0.0.1', '127.0.0.2']) {
        const counts = await countByUpstream(port, 10, (i) => `/${c}/source/${i}`, { localAddress: source });
        assert.equal(Object.keys(counts).length, 1, `${source}: ${JSON.stringify(counts)}`);
        assert.ok(!Object.keys(counts)[0].startsWith('status:'), JSON.stringify(counts));
      }
      const hosts = new Set<string>();
      for (let i = 2; i < 42; i++) {
        const r = await httpRequest(port, `/${c}/source/many/${i}`, { localAddress: `127.0.0.${i}` });
        assert.equal(r.status, 200);
        hosts.add(String(r.headers['x-upstream']));
      }
      assert.deepEqual([...hosts].sort(), ['e1', 'e2', 'e3']);
    });
  }

  it('STRICT_DNS resolves every endpoint (localhost) and balances over them', async () => {
    const counts = await count(10, (i) => `/strict-dns/${i}`);
    assert.deepEqual(counts, { e1: 5, e2: 5 });
    const stats = await proxy.stats();
    assert.equal(stats['cluster.strict-dns.membership_total'], 2);
    assert.ok(stats['cluster.strict-dns.update_success'] >= 1);
    const clusters = await proxy.admin('/clusters');
    assert.match(clusters.text, new RegExp(`^strict-dns::127\\.0\\.0\\.1:${e1.port}::health_flags::healthy$`, 'm'));
    assert.match(clusters.text, new RegExp(`^strict-dns::127\\.0\\.0\\.1:${e2.port}::health_flags::healthy$`, 'm'));
  });

  it('LOGICAL_DNS resolves its single endpoint (localhost)', async () => {
    const r = await curl([`http://127.0.0.1:${port}/logical-dns/x`]);
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-upstream'], 'e3');
    assert.equal(e3.requests.at(-1)!.url, '/logical-dns/x');
    const stats = await proxy.stats();
    assert.equal(stats['cluster.logical-dns.membership_total'], 1);
  });

  it('ORIGINAL_DST with use_http_header sends each request to the address in the header', async () => {
    const toE2 = await httpRequest(port, '/orig/1', { headers: [['x-envoy-original-dst-host', `127.0.0.1:${e2.port}`]] });
    assert.equal(toE2.status, 200);
    assert.equal(toE2.headers['x-upstream'], 'e2');
    const toE3 = await httpRequest(port, '/orig/2', { headers: [['x-envoy-original-dst-host', `127.0.0.1:${e3.port}`]] });
    assert.equal(toE3.headers['x-upstream'], 'e3');
    const named = await httpRequest(port, '/orig-named/3', { headers: [['x-dst', `127.0.0.1:${e1.port}`]] });
    assert.equal(named.headers['x-upstream'], 'e1');
    // Not an ip:port: counted and refused, never resolved as a name.
    const bad = await httpRequest(port, '/orig/4', { headers: [['x-envoy-original-dst-host', `localhost:${e2.port}`]] });
    assert.equal(bad.status, 503);
    const stats = await proxy.stats();
    assert.equal(stats['cluster.orig.original_dst_host_invalid'], 1);
    assert.equal(stats['cluster.orig.membership_total'], 2);
  });

  it('HTTP/1.1 upstream connections are kept alive and reused across many requests', async () => {
    const before = e3.connections;
    for (let i = 0; i < 25; i++) {
      const r = await httpRequest(port, `/pool-h1/${i}`);
      assert.equal(r.status, 200);
    }
    assert.ok(e3.connections - before <= 1, `upstream saw ${e3.connections - before} new connections for 25 sequential requests`);
    const ports = new Set(e3.requests.filter((r) => r.url.startsWith('/pool-h1/')).map((r) => r.remotePort));
    assert.equal(ports.size, 1);
    const stats = await proxy.stats();
    assert.equal(stats['cluster.pool-h1.upstream_cx_total'], 1);
    assert.equal(stats['cluster.pool-h1.upstream_rq_total'], 25);
  });

  it('an HTTP/2 upstream carries concurrent streams on one connection', async () => {
    const n = 12;
    const results = await Promise.all(Array.from({ length: n }, (_, i) => httpRequest(port, `/pool-h2/${i}/delay/300`)));
    assert.ok(results.every((r) => r.status === 200 && r.headers['x-upstream'] === 'h2up'));
    const seen = h2up.requests.filter((r) => r.url.startsWith('/pool-h2/'));
    assert.equal(seen.length, n);
    assert.ok(seen.every((r) => r.httpVersion === '2.0'));
    assert.equal(new Set(seen.map((r) => r.remotePort)).size, 1, 'one upstream connection');
    assert.equal(h2up.connections, 1);
    const stats = await proxy.stats();
    assert.equal(stats['cluster.pool-h2.upstream_cx_total'], 1);
    assert.equal(stats['cluster.pool-h2.upstream_cx_http2_total'], 1);
    assert.equal(stats['cluster.pool-h2.upstream_rq_total'], n);
  });
});
