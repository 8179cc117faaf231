/**
 * Micro-benchmark of upstream load balancing: ns per chooseHost for each lb_policy over 100 hosts, and
 * the cost of hashing a request key. Run: `./node_modules/.bin/node bench/lb.bench.ts`.
 */
import { createLoadBalancer } from '../src/data-plane/upstream/lb/load-balancer.ts';
import type { LbContext, LoadBalancer, UpstreamHost } from '../src/data-plane/upstream/lb/load-balancer.ts';
import { makeCluster, makeHost, seededRandom } from '../src/data-plane/upstream/lb/testing.ts';
import { hashKeysToHash, xxhash64 } from '../src/data-plane/upstream/lb/xxhash64.ts';

const HOSTS = 100;
const ITERATIONS = 2_000_000;

function hosts(weighted: boolean): UpstreamHost[] {
  return Array.from({ length: HOSTS }, (_, i) => makeHost(i, { weight: weighted ? 1 + (i % 5) : 1, activeRequests: i % 7 }));
}

function measure(name: string, run: (i: number) => unknown): void {
  for (let i = 0; i < 200_000; i++) run(i); // warm up the JIT
  let sink = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < ITERATIONS; i++) if (run(i) !== undefined) sink++;
  const ns = Number(process.hrtime.bigint() - start) / ITERATIONS;
  if (sink < 0) console.log(sink);
  console.log(`${name.padEnd(44)} ${ns.toFixed(1).padStart(7)} ns/op`);
}

const random = seededRandom(42);
const ctx: LbContext = { random };
const KEYS = Array.from({ length: 1024 }, (_, i) => xxhash64(`user-${i}`));
const hashCtx: LbContext = { random, hash: 0n };

function bench(policy: string, weighted: boolean, hashed: boolean): void {
  const lb: LoadBalancer = createLoadBalancer(makeCluster({ lb_policy: policy }), [hosts(weighted)], random);
  const label = `${policy}${weighted ? ' (weighted)' : ''}${hashed ? ' with hash' : ''}`;
  if (hashed) {
    measure(label, (i) => {
      hashCtx.hash = KEYS[i & 1023];
      return lb.chooseHost(hashCtx);
    });
  } else {
    measure(label, () => lb.chooseHost(ctx));
  }
}

bench('ROUND_ROBIN', false, false);
bench('ROUND_ROBIN', true, false);
bench('LEAST_REQUEST', false, false);
bench('LEAST_REQUEST', true, false);
bench('RANDOM', false, false);
bench('RANDOM', true, false);
bench('RING_HASH', false, true);
bench('RING_HASH', false, false);
bench('MAGLEV', false, true);
bench('MAGLEV', false, false);

// Two priorities with spill-over: the 1..100 draw picks the band first.
{
  const p0 = Array.from({ length: HOSTS }, (_, i) => makeHost(i, { health: i < 50 ? 'healthy' : 'unhealthy' }));
  const p1 = Array.from({ length: HOSTS }, (_, i) => makeHost(i, { priority: 1 }));
  const lb = createLoadBalancer(makeCluster(), [p0, p1], random);
  measure('ROUND_ROBIN, 2 priorities (70/30)', () => lb.chooseHost(ctx));
}

const header = 'x-user-id: 3f2a9c1e-77b0-4e53';
measure('xxhash64(30-byte header value)', () => xxhash64(header));
measure('hashKeysToHash([header, cookie])', () => hashKeysToHash([header, 'session=abc123']));

{
  const start = process.hrtime.bigint();
  createLoadBalancer(makeCluster({ lb_policy: 'MAGLEV' }), [hosts(false)], random);
  const maglevMs = Number(process.hrtime.bigint() - start) / 1e6;
  const start2 = process.hrtime.bigint();
  createLoadBalancer(makeCluster({ lb_policy: 'RING_HASH' }), [hosts(false)], random);
  const ringMs = Number(process.hrtime.bigint() - start2) / 1e6;
  console.log(`build: MAGLEV (65537 slots) ${maglevMs.toFixed(1)} ms, RING_HASH (1100 entries) ${ringMs.toFixed(1)} ms`);
}
