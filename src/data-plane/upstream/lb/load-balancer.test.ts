import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../../shared/errors.ts';
import { createLoadBalancer, parseLbSettings } from './load-balancer.ts';
import type { UpstreamHost } from './load-balancer.ts';
import { countPicks, makeCluster, makeHost, makeHosts, seededRandom } from './testing.ts';
import { xxhash64 } from './xxhash64.ts';

function configErrorPaths(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err.diagnostics.map((d) => `${d.code} ${d.path}`);
  }
  assert.fail('expected a ConfigError');
}

function sum(counts: Map<UpstreamHost | undefined, number>, hosts: readonly UpstreamHost[]): number {
  let n = 0;
  for (const h of hosts) n += counts.get(h) ?? 0;
  return n;
}

describe('parseLbSettings', () => {
  it('applies Envoy’s defaults', () => {
    const s = parseLbSettings(makeCluster());
    assert.equal(s.policy, 'ROUND_ROBIN');
    assert.equal(s.panicThresholdPercent, 50);
    assert.equal(s.overprovisioningFactor, 140);
    assert.equal(s.localityWeighted, false);
    assert.deepEqual(s.leastRequest, { choiceCount: 2, activeRequestBias: 1 });
    assert.deepEqual(s.ringHash, { minimumRingSize: 1024, maximumRingSize: 8388608, hashFunction: 'XX_HASH', useHostnameForHashing: false });
    assert.deepEqual(s.maglev, { tableSize: 65537, useHostnameForHashing: false });
  });

  it('reads the configured values', () => {
    const s = parseLbSettings(
      makeCluster({
        lb_policy: 'LEAST_REQUEST',
        least_request_lb_config: { choice_count: { value: 3 }, active_request_bias: { default_value: 0.5, runtime_key: 'k' } },
        common_lb_config: { healthy_panic_threshold: { value: 25.4 }, locality_weighted_lb_config: {} },
        load_assignment: { cluster_name: 'test', policy: { overprovisioning_factor: { value: 200 } } },
      }),
    );
    assert.equal(s.policy, 'LEAST_REQUEST');
    assert.deepEqual(s.leastRequest, { choiceCount: 3, activeRequestBias: 0.5 });
    assert.equal(s.panicThresholdPercent, 25);
    assert.equal(s.localityWeighted, true);
    assert.equal(s.overprovisioningFactor, 200);
    assert.equal(parseLbSettings(makeCluster(), { overprovisioningFactor: 120 }).overprovisioningFactor, 120);
  });

  it('rejects a Maglev table size that is not prime or too large', () => {
    assert.deepEqual(configErrorPaths(() => parseLbSettings(makeCluster({ lb_policy: 'MAGLEV', maglev_lb_config: { table_size: { value: 65536 } } }))), [
      'SLOOP_ERR_CONFIG_INVALID maglev_lb_config.table_size.value',
    ]);
    // 5000077 is prime but above Envoy's limit of 5000011.
    assert.equal(configErrorPaths(() => parseLbSettings(makeCluster({ lb_policy: 'MAGLEV', maglev_lb_config: { table_size: { value: 5000077 } } }))).length, 1);
    assert.equal(parseLbSettings(makeCluster({ lb_policy: 'MAGLEV', maglev_lb_config: { table_size: { value: 7 } } })).maglev.tableSize, 7);
  });

  it('collects every problem at once', () => {
    const paths = configErrorPaths(() =>
      createLoadBalancer(
        makeCluster({
          lb_policy: 'RING_HASH',
          ring_hash_lb_config: { minimum_ring_size: { value: 9000000 }, maximum_ring_size: { value: 1024 } },
          common_lb_config: { healthy_panic_threshold: { value: 150 } },
        }),
        [makeHosts(3)],
        Math.random,
      ),
    );
    assert.deepEqual(paths.sort(), [
      'SLOOP_ERR_CONFIG_INVALID common_lb_config.healthy_panic_threshold.value',
      'SLOOP_ERR_CONFIG_INVALID ring_hash_lb_config.minimum_ring_size.value',
      'SLOOP_ERR_CONFIG_INVALID ring_hash_lb_config.minimum_ring_size.value',
    ]);
  });

  it('rejects choice_count below 2 and policies it does not implement', () => {
    assert.deepEqual(configErrorPaths(() => parseLbSettings(makeCluster({ lb_policy: 'LEAST_REQUEST', least_request_lb_config: { choice_count: { value: 1 } } }))), [
      'SLOOP_ERR_CONFIG_INVALID least_request_lb_config.choice_count.value',
    ]);
    assert.deepEqual(configErrorPaths(() => parseLbSettings(makeCluster({ lb_policy: 'CLUSTER_PROVIDED' }))), ['SLOOP_ERR_CONFIG_UNSUPPORTED lb_policy']);
  });
});

describe('createLoadBalancer', () => {
  it('returns undefined when there are no hosts', () => {
    for (const hosts of [[], [[]], [[], []]]) {
      assert.equal(createLoadBalancer(makeCluster(), hosts, Math.random).chooseHost({ random: Math.random }), undefined);
    }
  });

  it('round-robins over healthy hosts only while enough are healthy', () => {
    const hosts = makeHosts(10, 8);
    const lb = createLoadBalancer(makeCluster(), [hosts], seededRandom(1));
    const counts = countPicks(8000, () => lb.chooseHost({ random: Math.random }));
    for (let i = 0; i < 8; i++) assert.equal(counts.get(hosts[i]), 1000);
    assert.equal(counts.get(hosts[8]), undefined);
  });

  it('spills priority 0 traffic to priority 1 as P0 loses hosts (50% healthy → 70/30)', () => {
    const p0 = makeHosts(10, 5, 0, 0);
    const p1 = makeHosts(10, 10, 0, 1);
    const random = seededRandom(2);
    const lb = createLoadBalancer(makeCluster(), [p0, p1], seededRandom(3));
    const counts = countPicks(20000, () => lb.chooseHost({ random }));
    const toP0 = sum(counts, p0) / 20000;
    assert.ok(Math.abs(toP0 - 0.7) < 0.015, `P0 got ${toP0}`);
    assert.equal(sum(counts, p0.slice(5)), 0, 'unhealthy P0 hosts get nothing');
  });

  it('sends degraded hosts only the spill-over (71% healthy / 29% degraded → 99/1)', () => {
    const hosts = makeHosts(100, 71, 29);
    const random = seededRandom(4);
    const lb = createLoadBalancer(makeCluster(), [hosts], seededRandom(5));
    const counts = countPicks(50000, () => lb.chooseHost({ random }));
    const degraded = sum(counts, hosts.slice(71)) / 50000;
    assert.ok(degraded > 0.007 && degraded < 0.013, `degraded got ${degraded}`);
  });

  it('balances across all hosts in panic mode', () => {
    const hosts = makeHosts(10, 3);
    const lb = createLoadBalancer(makeCluster(), [hosts], () => 0);
    const counts = countPicks(1000, () => lb.chooseHost({ random: Math.random }));
    for (const h of hosts) assert.equal(counts.get(h), 100, h.id);
  });

  it('finds no host when panic is disabled and none is healthy', () => {
    const cluster = makeCluster({ common_lb_config: { healthy_panic_threshold: { value: 0 } } });
    const lb = createLoadBalancer(cluster, [makeHosts(5, 0)], Math.random);
    assert.equal(lb.chooseHost({ random: Math.random }), undefined);
    // With 1 of 5 healthy and no panic, only that host is used.
    const some = makeHosts(5, 1);
    const lb2 = createLoadBalancer(cluster, [some], Math.random);
    assert.equal(lb2.chooseHost({ random: Math.random }), some[0]);
  });

  it('uses the overprovisioning factor given by EDS', () => {
    const p0 = makeHosts(10, 8, 0, 0);
    const p1 = makeHosts(10, 10, 0, 1);
    const random = seededRandom(6);
    const lb = createLoadBalancer(makeCluster(), [p0, p1], Math.random, { overprovisioningFactor: 100 });
    const toP0 = sum(countPicks(20000, () => lb.chooseHost({ random })), p0) / 20000;
    assert.ok(Math.abs(toP0 - 0.8) < 0.015, `P0 got ${toP0}`);
  });

  it('splits by locality weight with locality_weighted_lb_config, scaled by locality health', () => {
    const a = Array.from({ length: 10 }, (_, i) => makeHost(i, { locality: 'r/a/', localityWeight: 1 }));
    const b = Array.from({ length: 10 }, (_, i) => makeHost(10 + i, { locality: 'r/b/', localityWeight: 3 }));
    const weighted = makeCluster({ common_lb_config: { locality_weighted_lb_config: {} } });
    const lb = createLoadBalancer(weighted, [[...a, ...b]], () => 0);
    const counts = countPicks(4000, () => lb.chooseHost({ random: Math.random }));
    assert.equal(sum(counts, a), 1000);
    assert.equal(sum(counts, b), 3000);

    // Half of locality b unhealthy: its effective weight is 3 × min(1, 1.4 × 0.5) = 2.1.
    for (const h of b.slice(5)) h.health = 'unhealthy';
    const lb2 = createLoadBalancer(weighted, [[...a, ...b]], () => 0);
    const counts2 = countPicks(31000, () => lb2.chooseHost({ random: Math.random }));
    assert.ok(Math.abs(sum(counts2, a) - 10000) <= 2, `a got ${sum(counts2, a)}`);
    assert.equal(sum(counts2, b.slice(5)), 0);

    // Without the config, locality weights are ignored.
    const plain = createLoadBalancer(makeCluster(), [[...a, ...b.slice(0, 5)]], () => 0);
    assert.equal(sum(countPicks(1500, () => plain.chooseHost({ random: Math.random })), a), 1000);
  });

  it('retries host selection to avoid hosts the retry predicate rejects', () => {
    const hosts = makeHosts(3);
    const lb = createLoadBalancer(makeCluster(), [hosts], () => 0);
    const avoid = (h: UpstreamHost) => h === hosts[0];
    assert.equal(lb.chooseHost({ random: Math.random, shouldSelectAnotherHost: avoid }), hosts[1]);
    assert.equal(lb.chooseHost({ random: Math.random, shouldSelectAnotherHost: avoid }), hosts[2]);
    assert.equal(lb.chooseHost({ random: Math.random, shouldSelectAnotherHost: avoid }), hosts[1]);
    // Everything rejected: 1 + hostSelectionRetryMaxAttempts picks, then the last one stands.
    let calls = 0;
    const rejectAll = () => (calls++, true);
    assert.ok(lb.chooseHost({ random: Math.random, shouldSelectAnotherHost: rejectAll }));
    assert.equal(calls, 1);
    calls = 0;
    lb.chooseHost({ random: Math.random, shouldSelectAnotherHost: rejectAll, hostSelectionRetryMaxAttempts: 4 });
    assert.equal(calls, 4);
  });

  it('LEAST_REQUEST picks the idle host of two', () => {
    const hosts = [makeHost(0, { activeRequests: 3 }), makeHost(1)];
    const lb = createLoadBalancer(makeCluster({ lb_policy: 'LEAST_REQUEST' }), [hosts], Math.random);
    const random = seededRandom(7);
    for (let i = 0; i < 50; i++) assert.equal(lb.chooseHost({ random }), hosts[1]);
  });

  it('RANDOM spreads over healthy hosts', () => {
    const hosts = makeHosts(4, 4);
    const lb = createLoadBalancer(makeCluster({ lb_policy: 'RANDOM' }), [hosts], Math.random);
    const random = seededRandom(8);
    const counts = countPicks(8000, () => lb.chooseHost({ random }));
    for (const h of hosts) assert.ok(Math.abs(counts.get(h)! - 2000) < 200, `${h.id}: ${counts.get(h)}`);
  });

  for (const policy of ['RING_HASH', 'MAGLEV'] as const) {
    describe(policy, () => {
      const cluster = makeCluster({ lb_policy: policy });

      it('sends a hash to the same host every time, and different hashes across hosts', () => {
        const hosts = makeHosts(5);
        const lb = createLoadBalancer(cluster, [hosts], Math.random);
        const seen = new Set<UpstreamHost | undefined>();
        for (let i = 0; i < 200; i++) {
          const hash = xxhash64(`user-${i}`);
          const first = lb.chooseHost({ hash, random: Math.random });
          seen.add(first);
          assert.equal(lb.chooseHost({ hash, random: Math.random }), first);
          // A rebuilt balancer (e.g. after an unrelated health update) agrees.
          assert.equal(createLoadBalancer(cluster, [hosts], Math.random).chooseHost({ hash, random: Math.random }), first);
        }
        assert.equal(seen.size, 5);
      });

      it('picks a random point without a hash', () => {
        const hosts = makeHosts(5);
        const lb = createLoadBalancer(cluster, [hosts], Math.random);
        const random = seededRandom(9);
        const counts = countPicks(5000, () => lb.chooseHost({ random }));
        for (const h of hosts) assert.ok(counts.get(h)! > 500, `${h.id}: ${counts.get(h)}`);
      });

      it('uses the hash to choose the priority too (P0 50% healthy → ≈70% of keys)', () => {
        const p0 = makeHosts(10, 5, 0, 0);
        const p1 = makeHosts(10, 10, 0, 1);
        const lb = createLoadBalancer(cluster, [p0, p1], Math.random);
        let toP0 = 0;
        for (let i = 0; i < 10000; i++) {
          const h = lb.chooseHost({ hash: xxhash64(`k${i}`), random: Math.random })!;
          if (p0.includes(h)) {
            toP0++;
            assert.equal(h.health, 'healthy');
          }
        }
        assert.ok(Math.abs(toP0 / 10000 - 0.7) < 0.02, `P0 got ${toP0 / 10000}`);
      });

      it('chooses the priority as Envoy does: band of (hash mod 100) + 1', () => {
        const p0 = makeHosts(10, 5, 0, 0); // 70 % of the load
        const p1 = makeHosts(10, 10, 0, 1);
        const lb = createLoadBalancer(cluster, [p0, p1], Math.random);
        const base = 0x123456789abcdef0n;
        const withRemainder = (r: bigint) => base + ((r - (base % 100n) + 100n) % 100n);
        for (let i = 0n; i < 20n; i++) {
          const h69 = withRemainder(69n) + 100n * i * 7919n; // draw 70 → P0
          const h70 = withRemainder(70n) + 100n * i * 7919n; // draw 71 → P1
          assert.ok(p0.includes(lb.chooseHost({ hash: h69, random: Math.random })!), `hash ${h69}`);
          assert.ok(p1.includes(lb.chooseHost({ hash: h70, random: Math.random })!), `hash ${h70}`);
        }
      });

      it('shares the table by locality weight with locality_weighted_lb_config', () => {
        const a = [0, 1].map((i) => makeHost(i, { locality: 'r/a/', localityWeight: 1 }));
        const b = [2, 3].map((i) => makeHost(i, { locality: 'r/b/', localityWeight: 3 }));
        const weighted = makeCluster({ lb_policy: policy, common_lb_config: { locality_weighted_lb_config: {} } });
        const lb = createLoadBalancer(weighted, [[...a, ...b]], Math.random);
        let toA = 0;
        for (let i = 0; i < 10000; i++) if (a.includes(lb.chooseHost({ hash: xxhash64(`k${i}`), random: Math.random })!)) toA++;
        assert.ok(Math.abs(toA / 10000 - 0.25) < 0.04, `locality a got ${toA / 10000}`);
      });

      it('sends the degraded band of the priority load to degraded hosts', () => {
        const hosts = makeHosts(10, 5, 5); // health 70, degraded 70 → 70 % healthy, 30 % degraded
        const lb = createLoadBalancer(cluster, [hosts], Math.random);
        let degraded = 0;
        for (let i = 0; i < 10000; i++) if (lb.chooseHost({ hash: xxhash64(`k${i}`), random: Math.random })!.health === 'degraded') degraded++;
        assert.ok(Math.abs(degraded / 10000 - 0.3) < 0.02, `degraded got ${degraded / 10000}`);
      });

      it('moves to another host when the retry predicate rejects the first', () => {
        const hosts = makeHosts(5);
        const lb = createLoadBalancer(cluster, [hosts], Math.random);
        let moved = 0;
        for (let i = 0; i < 100; i++) {
          const hash = xxhash64(`user-${i}`);
          const first = lb.chooseHost({ hash, random: Math.random });
          const retry = lb.chooseHost({ hash, random: Math.random, shouldSelectAnotherHost: (h) => h === first });
          if (retry !== first) moved++;
        }
        assert.ok(moved > 60, `moved ${moved} of 100`);
      });
    });
  }
});
