import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildHostSet, computePriorityLoad, effectiveLocalityWeight, PriorityBands } from './priority-set.ts';
import { makeHost, makeHosts } from './testing.ts';

/** Priority load for levels of `total` hosts each, given [healthy, degraded] host counts per level. */
function load(levels: [number, number][], options: { total?: number; panic?: number; of?: number } = {}) {
  const total = options.total ?? 100;
  const sets = levels.map(([healthy, degraded], p) => buildHostSet(makeHosts(total, healthy, degraded, p), p));
  return computePriorityLoad(sets, options.of ?? 140, options.panic ?? 50);
}

describe('computePriorityLoad', () => {
  it('matches the two-level table of the priority levels doc (P=1 100% healthy)', () => {
    const rows: [number, number, number][] = [
      [100, 100, 0],
      [72, 100, 0],
      [71, 99, 1],
      [50, 70, 30],
      [25, 35, 65],
      [0, 0, 100],
    ];
    for (const [p0, toP0, toP1] of rows) {
      const l = load([[p0, 0], [100, 0]]);
      assert.deepEqual(l.healthy, [toP0, toP1], `P0 ${p0}% healthy`);
      assert.deepEqual(l.panic, [false, false], 'normalized total health is 100%: no panic');
    }
  });

  it('matches the table where both levels lose hosts', () => {
    assert.deepEqual(load([[72, 0], [72, 0]]).healthy, [100, 0]);
    assert.deepEqual(load([[71, 0], [71, 0]]).healthy, [99, 1]);
    assert.deepEqual(load([[50, 0], [50, 0]]).healthy, [70, 30]);
    assert.deepEqual(load([[25, 0], [100, 0]]).healthy, [35, 65]);
    // 25% / 25%: normalized total 70, both below the panic threshold → total panic, split by host count.
    const both = load([[25, 0], [25, 0]]);
    assert.deepEqual(both.healthy, [50, 50]);
    assert.deepEqual(both.panic, [true, true]);
  });

  it('matches the three-level table', () => {
    assert.deepEqual(load([[100, 0], [100, 0], [100, 0]]).healthy, [100, 0, 0]);
    assert.deepEqual(load([[72, 0], [72, 0], [100, 0]]).healthy, [100, 0, 0]);
    assert.deepEqual(load([[71, 0], [71, 0], [100, 0]]).healthy, [99, 1, 0]);
    assert.deepEqual(load([[50, 0], [50, 0], [100, 0]]).healthy, [70, 30, 0]);
    assert.deepEqual(load([[25, 0], [100, 0], [100, 0]]).healthy, [35, 65, 0]);
    assert.deepEqual(load([[25, 0], [25, 0], [100, 0]]).healthy, [35, 35, 30]);
  });

  it('gives rounding leftovers to the first available priority (Envoy’s own worked example)', () => {
    // load_balancer_impl.cc: health 10/20/10 and degraded 20/10/0 → 16/28/14 healthy and 28/14/0 degraded.
    // 14 hosts: 1 healthy → ⌊140 × 1 / 14⌋ = 10; 2 → 20. Panic off so that the normal split applies.
    const l = load([[1, 2], [2, 1], [1, 0]], { total: 14, panic: 0 });
    assert.deepEqual(l.healthy, [16, 28, 14]);
    assert.deepEqual(l.degraded, [28, 14, 0]);
  });

  it('matches the degraded endpoints table (P=0 healthy/degraded/unhealthy)', () => {
    const rows: [number, number, number, number][] = [
      [100, 0, 100, 0],
      [71, 0, 100, 0],
      [71, 29, 99, 1],
      [25, 65, 35, 65],
      [5, 0, 100, 0], // in panic: all P0 hosts
    ];
    for (const [healthy, degraded, toHealthy, toDegraded] of rows) {
      const l = load([[healthy, degraded]]);
      assert.deepEqual([l.healthy[0], l.degraded[0]], [toHealthy, toDegraded], `${healthy}/${degraded}`);
    }
    assert.deepEqual(load([[5, 0]]).panic, [true]);
  });

  it('puts a priority below the panic threshold in panic only when the total is short (panic doc)', () => {
    // P0 5% healthy, P1 65%: normalized total 7 + 91 = 98 < 100, so P0 (5% < 50%) panics and P1 doesn't.
    // (The doc rounds to 7/93; Envoy's code gives the rounding leftover to P0: 8/92.)
    const l = load([[5, 0], [65, 0]]);
    assert.deepEqual(l.panic, [true, false]);
    assert.deepEqual(l.healthy, [8, 92]);
    // P0 at 10% but P1 fully healthy: the total is 100, so nobody panics.
    assert.deepEqual(load([[10, 0], [100, 0]]).panic, [false, false]);
  });

  it('splits by host count in total panic and sends everything to P0 when panic is disabled', () => {
    const sets = [buildHostSet(makeHosts(30, 0, 0, 0), 0), buildHostSet(makeHosts(10, 0, 0, 1), 1)];
    assert.deepEqual(computePriorityLoad(sets, 140, 50).healthy, [75, 25]);
    const disabled = computePriorityLoad(sets, 140, 0);
    assert.deepEqual(disabled.healthy, [100, 0]);
    assert.deepEqual(disabled.panic, [false, false]);
  });

  it('honours a custom overprovisioning factor', () => {
    // Factor 100: 80% healthy is 80% health, the rest spills to P1.
    assert.deepEqual(load([[80, 0], [100, 0]], { of: 100 }).healthy, [80, 20]);
  });
});

describe('PriorityBands', () => {
  it('maps 1..100 onto healthy bands by priority, then degraded bands, skipping empty ones', () => {
    const bands = new PriorityBands({ healthy: [16, 28, 14], degraded: [28, 14, 0], panic: [false, false, true] }, (p, s) => `${p}/${s}`);
    assert.equal(bands.only, undefined);
    assert.equal(bands.select(1), '0/healthy');
    assert.equal(bands.select(16), '0/healthy');
    assert.equal(bands.select(17), '1/healthy');
    assert.equal(bands.select(58), '2/all');
    assert.equal(bands.select(59), '0/degraded');
    assert.equal(bands.select(100), '1/degraded');
    const single = new PriorityBands({ healthy: [100, 0], degraded: [0, 0], panic: [false, false] }, (p, s) => `${p}/${s}`);
    assert.equal(single.only, '0/healthy');
  });
});

describe('effectiveLocalityWeight', () => {
  it('scales the locality weight by min(1, OF × healthy / total)', () => {
    const hosts = Array.from({ length: 10 }, (_, i) => makeHost(i, { localityWeight: 4, health: i < 5 ? 'healthy' : 'unhealthy' }));
    const [loc] = buildHostSet(hosts, 0).localities;
    assert.equal(effectiveLocalityWeight(loc, 5, 140), 4 * 0.7);
    assert.equal(effectiveLocalityWeight(loc, 8, 140), 4);
    assert.equal(effectiveLocalityWeight(loc, 0, 140), 0);
  });
});
