import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRandomPicker } from './random.ts';
import { countPicks, makeHost, seededRandom } from './testing.ts';

describe('createRandomPicker', () => {
  it('maps the draw uniformly onto equal-weight hosts', () => {
    const hosts = [0, 1, 2, 3].map((i) => makeHost(i));
    const picker = createRandomPicker(hosts);
    assert.equal(picker.pick({ random: () => 0 }), hosts[0]);
    assert.equal(picker.pick({ random: () => 0.26 }), hosts[1]);
    assert.equal(picker.pick({ random: () => 0.999999 }), hosts[3]);
    const random = seededRandom(1);
    const counts = countPicks(40000, () => picker.pick({ random }));
    for (const h of hosts) assert.ok(Math.abs(counts.get(h)! - 10000) < 400, `${h.id}: ${counts.get(h)}`);
  });

  it('draws in proportion to weights when they differ', () => {
    const hosts = [makeHost(0, { weight: 1 }), makeHost(1, { weight: 3 })];
    const picker = createRandomPicker(hosts);
    assert.equal(picker.pick({ random: () => 0.2 }), hosts[0]);
    assert.equal(picker.pick({ random: () => 0.25 }), hosts[1]);
    const random = seededRandom(2);
    const counts = countPicks(40000, () => picker.pick({ random }));
    assert.ok(Math.abs(counts.get(hosts[1])! - 30000) < 500, `heavy host: ${counts.get(hosts[1])}`);
  });

  it('returns undefined for no hosts', () => {
    assert.equal(createRandomPicker([]).pick({ random: Math.random }), undefined);
  });
});
