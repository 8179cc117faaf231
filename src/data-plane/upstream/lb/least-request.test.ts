import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createLeastRequestPicker } from './least-request.ts';
import { countPicks, makeHost, seededRandom } from './testing.ts';
import type { LbContext } from './types.ts';

/** A random source that returns the given values in order, then fails. */
function scripted(values: number[]): () => number {
  let i = 0;
  return () => {
    if (i >= values.length) throw new Error('scripted random exhausted');
    return values[i++];
  };
}

describe('createLeastRequestPicker, equal weights (power of N choices)', () => {
  it('takes the sampled host with fewer active requests', () => {
    const hosts = [0, 1, 2, 3].map((i) => makeHost(i, { activeRequests: 5 }));
    hosts[2].activeRequests = 0;
    const picker = createLeastRequestPicker(hosts, { choiceCount: 2, activeRequestBias: 1 }, Math.random);
    // Samples index 0 then 2 → host 2; samples 2 then 1 → host 2; samples 0 then 3 (tie) → the first.
    assert.equal(picker.pick({ random: scripted([0.1, 0.6]) }), hosts[2]);
    assert.equal(picker.pick({ random: scripted([0.6, 0.3]) }), hosts[2]);
    assert.equal(picker.pick({ random: scripted([0.1, 0.9]) }), hosts[0]);
  });

  it('prefers the idle host: it wins whenever it is sampled', () => {
    const hosts = Array.from({ length: 10 }, (_, i) => makeHost(i, { activeRequests: 3 }));
    hosts[7].activeRequests = 0;
    const random = seededRandom(11);
    const picker = createLeastRequestPicker(hosts, { choiceCount: 2, activeRequestBias: 1 }, random);
    const counts = countPicks(10000, () => picker.pick({ random }));
    // P(idle host sampled at least once in 2 draws out of 10) = 1 - 0.9² = 0.19, vs 0.1 for plain random.
    const idle = counts.get(hosts[7])!;
    assert.ok(idle > 1750 && idle < 2050, `idle host picked ${idle} times`);
    // More choices, stronger preference: 1 - 0.9⁵ ≈ 0.41.
    const five = createLeastRequestPicker(hosts, { choiceCount: 5, activeRequestBias: 1 }, random);
    const idle5 = countPicks(10000, () => five.pick({ random })).get(hosts[7])!;
    assert.ok(idle5 > 3900 && idle5 < 4300, `idle host picked ${idle5} times with 5 choices`);
  });

  it('scans all hosts when there are no more than choice_count, breaking ties at random', () => {
    const a = makeHost(0, { activeRequests: 4 });
    const b = makeHost(1, { activeRequests: 1 });
    const random = seededRandom(5);
    const picker = createLeastRequestPicker([a, b], { choiceCount: 2, activeRequestBias: 1 }, random);
    for (let i = 0; i < 100; i++) assert.equal(picker.pick({ random }), b);
    a.activeRequests = 1; // now tied: both should be picked about half of the time
    const counts = countPicks(2000, () => picker.pick({ random }));
    assert.ok(counts.get(a)! > 900 && counts.get(b)! > 900, `tie split ${counts.get(a)} / ${counts.get(b)}`);
  });
});

describe('createLeastRequestPicker, different weights (EDF on weight / (active + 1)^bias)', () => {
  it('follows weights when idle', () => {
    const hosts = [makeHost(0, { weight: 1 }), makeHost(1, { weight: 3 })];
    const picker = createLeastRequestPicker(hosts, { choiceCount: 2, activeRequestBias: 1 }, () => 0);
    const ctx: LbContext = { random: Math.random };
    const counts = countPicks(4000, () => picker.pick(ctx));
    assert.equal(counts.get(hosts[0]), 1000);
    assert.equal(counts.get(hosts[1]), 3000);
  });

  it('scales a host’s weight down by its active requests', () => {
    // Host 1 has weight 3 but 5 requests in flight: effective 3 / 6 = 0.5 against host 0's 1 / 1.
    const hosts = [makeHost(0, { weight: 1 }), makeHost(1, { weight: 3, activeRequests: 5 })];
    const picker = createLeastRequestPicker(hosts, { choiceCount: 2, activeRequestBias: 1 }, () => 0);
    const counts = countPicks(3000, () => picker.pick({ random: Math.random }));
    assert.ok(Math.abs(counts.get(hosts[0])! - 2000) <= 2, `host 0: ${counts.get(hosts[0])}`);
  });

  it('with bias 2 the penalty is squared, with bias 0 it is plain weighted round robin', () => {
    const hosts = [makeHost(0, { weight: 1 }), makeHost(1, { weight: 4, activeRequests: 1 })];
    // bias 2: 4 / 2² = 1 → even split.
    const squared = createLeastRequestPicker(hosts, { choiceCount: 2, activeRequestBias: 2 }, () => 0);
    const c2 = countPicks(2000, () => squared.pick({ random: Math.random }));
    assert.ok(Math.abs(c2.get(hosts[1])! - 1000) <= 2, `bias 2: ${c2.get(hosts[1])}`);
    const flat = createLeastRequestPicker(hosts, { choiceCount: 2, activeRequestBias: 0 }, () => 0);
    const c0 = countPicks(2000, () => flat.pick({ random: Math.random }));
    assert.equal(c0.get(hosts[1]), 1600);
  });
});
