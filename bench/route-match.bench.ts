/**
 * Micro-benchmark of compiled route tables: ns per match() on a RouteConfiguration of 20 virtual hosts ×
 * 10 routes (Istio-like domains; prefix, exact, regex and header-matched routes), plus cluster picking
 * and path rewriting. Run: `./node_modules/.bin/node bench/route-match.bench.ts` (add
 * `--enable-experimental-regexp-engine` to measure the linear-time regex engine).
 */
import { lookupMessage, TO_OBJECT_OPTIONS } from '../src/xds/protos.ts';
import type { RouteConfiguration__Output } from '../src/xds/gen/envoy/config/route/v3/RouteConfiguration.ts';
import { compileRouteConfig, rewritePath } from '../src/data-plane/http/route/route-table.ts';
import type { RouteRequest } from '../src/data-plane/http/route/route-table.ts';

const ITERATIONS = 2_000_000;
const VHOSTS = 20;
const ROUTES = 10;

function routesFor(v: number): object[] {
  const routes: object[] = [];
  for (let r = 0; r < ROUTES - 1; r++) {
    const match =
      r % 3 === 0
        ? { prefix: `/api/v${r}/`, headers: [{ name: 'x-version', string_match: { exact: `v${r}` } }] }
        : r % 3 === 1
          ? { path: `/exact/${r}` }
          : { safe_regex: { regex: `/items/[0-9]+/r${r}` } };
    routes.push({ name: `vh${v}-r${r}`, match, route: { cluster: `outbound|8080|r${r}|svc-${v}.ns.svc.cluster.local`, prefix_rewrite: r % 3 === 0 ? '/' : '' } });
  }
  routes.push({
    name: `vh${v}-default`,
    match: { prefix: '/' },
    route: { weighted_clusters: { clusters: [{ name: `svc-${v}-v1`, weight: { value: 90 } }, { name: `svc-${v}-v2`, weight: { value: 10 } }] }, timeout: { seconds: 0 } },
  });
  return routes;
}

const virtualHosts: object[] = [];
for (let v = 0; v < VHOSTS - 1; v++) {
  virtualHosts.push({
    name: `svc-${v}.ns.svc.cluster.local:8080`,
    domains: [`svc-${v}.ns.svc.cluster.local`, `svc-${v}.ns.svc.cluster.local:8080`, `svc-${v}`, `svc-${v}:8080`, `svc-${v}.ns`, `svc-${v}.ns:8080`],
    routes: routesFor(v),
  });
}
virtualHosts.push({ name: 'wildcard', domains: ['*.example.com', '*'], routes: routesFor(VHOSTS - 1) });

const T = lookupMessage('envoy.config.route.v3.RouteConfiguration')!;
const rc = T.toObject(T.fromObject({ name: '8080', virtual_hosts: virtualHosts }), TO_OBJECT_OPTIONS) as RouteConfiguration__Output;
const table = compileRouteConfig(rc);

function req(authority: string, path: string, headers: string[] = []): RouteRequest {
  return {
    authority,
    path,
    method: 'GET',
    headers: ['user-agent', 'wrk', 'accept', '*/*', 'x-request-id', '2f1c0c1e-8a36-4c1b-9d0e-0e3b0c9c2f11', ...headers],
    scheme: 'http',
    isTls: false,
  };
}

function measure(name: string, run: (i: number) => unknown): void {
  for (let i = 0; i < 200_000; i++) run(i); // warm up the JIT
  let sink = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < ITERATIONS; i++) if (run(i) !== undefined) sink++;
  const ns = Number(process.hrtime.bigint() - start) / ITERATIONS;
  if (sink < 0) console.log(sink);
  console.log(`${name.padEnd(52)} ${ns.toFixed(1).padStart(7)} ns/op`);
}

const randoms = Float64Array.from({ length: 1024 }, (_, i) => ((i * 2654435761) % 1024) / 1024);

const first = req('svc-7.ns.svc.cluster.local:8080', '/api/v0/users?id=1', ['x-version', 'v0']);
const fallthrough = req('svc-18:8080', '/index.html');
const exact = req('svc-3.ns', '/exact/7');
const regex = req('svc-12', '/items/12345/r8');
const wildcard = req('shop.example.com', '/items/1/r5');
const defaultHost = req('unknown.host', '/exact/4');
const upper = req('SVC-5.NS.SVC.CLUSTER.LOCAL:8080', '/exact/1');

if (table.match(first, 0)?.route.name !== 'vh7-r0' || table.match(fallthrough, 0)?.route.name !== 'vh18-default') throw new Error('bench setup does not match');

console.log(`route table: ${VHOSTS} virtual hosts × ${ROUTES} routes`);
measure('match: first route (prefix + header)', () => table.match(first, 0.5));
measure('match: last route (9 misses incl. 3 regex)', () => table.match(fallthrough, 0.5));
measure('match: exact path, 8th route', () => table.match(exact, 0.5));
measure('match: regex route', () => table.match(regex, 0.5));
measure('match: suffix wildcard host', () => table.match(wildcard, 0.5));
measure('match: default (*) host', () => table.match(defaultHost, 0.5));
measure('match: upper-case host', () => table.match(upper, 0.5));
const weighted = table.match(fallthrough, 0)!.route.route!;
measure('pickCluster: weighted 90/10', (i) => weighted.pickCluster(fallthrough, randoms[i & 1023]!));
const prefixed = table.match(first, 0)!.route;
measure('rewritePath: prefix_rewrite', () => rewritePath(prefixed, first.path));
