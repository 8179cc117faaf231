import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildWeightedSchedule, createRoundRobinPicker, MAX_SCHEDULE_LENGTH } from './round-robin.ts';
import { makeHost, seededRandom } from './testing.ts';
import type { LbContext } from './types.ts';

const ctx: LbContext = { random: () => { throw new Error('round robin must not draw per pick'); } };

describe('createRoundRobinPicker', () => {
  it('rotates through equal-weight hosts in order, from a random start', () => {
    const hosts = [0, 1, 2, 3].map((i) => makeHost(i));
    const picker = createRoundRobinPicker(hosts, () => 0.5); // start at index 2
    const seq = Array.from({ length: 8 }, () => hosts.indexOf(picker.pick(ctx)!));
    assert.deepEqual(seq, [2, 3, 0, 1, 2, 3, 0, 1]);
    const other = createRoundRobinPicker(hosts, () => 0);
    assert.equal(other.pick(ctx), hosts[0]);
  });

  it('gives weighted hosts exact proportions over whole periods, interleaved', () => {
    const hosts = [makeHost(0, { weight: 1 }), makeHost(1, { weight: 2 }), makeHost(2, { weight: 4 })];
    const picker = createRoundRobinPicker(hosts, seededRandom(3));
    const seq = Array.from({ length: 7000 }, () => hosts.indexOf(picker.pick(ctx)!));
    const counts = [0, 0, 0];
    for (const i of seq) counts[i]++;
    assert.deepEqual(counts, [1000, 2000, 4000]);
    // Smooth: the heaviest host never gets more than 2 picks in a row, the others never 2 in a row.
    let run = 1;
    for (let i = 1; i < seq.length; i++) {
      run = seq[i] === seq[i - 1] ? run + 1 : 1;
      assert.ok(run <= (seq[i] === 2 ? 2 : 1), `run of ${run} for host ${seq[i]} at ${i}`);
    }
  });

  it('weights 5:1 put the light host once in each 6 picks (not a burst of 5 then 1)', () => {
    const hosts = [makeHost(0, { weight: 5 }), makeHost(1, { weight: 1 })];
    const picker = createRoundRobinPicker(hosts, () => 0);
    const seq = Array.from({ length: 60 }, () => hosts.indexOf(picker.pick(ctx)!));
    for (let w = 0; w < 60; w += 6) assert.equal(seq.slice(w, w + 6).filter((i) => i === 1).length, 1);
  });

  it('returns undefined for no hosts', () => {
    assert.equal(createRoundRobinPicker([], Math.random).pick(ctx), undefined);
  });
});

describe('buildWeightedSchedule', () => {
  it('is one EDF period with each host exactly weight / gcd times', () => {
    const schedule = buildWeightedSchedule([300, 100, 200])!;
    assert.equal(schedule.length, 6);
    assert.deepEqual([...schedule].sort(), [0, 0, 0, 1, 2, 2]);
    assert.deepEqual([...schedule], [0, 2, 0, 1, 2, 0]);
  });

  it('falls back to the live EDF heap for long periods or fractional weights', () => {
    assert.equal(buildWeightedSchedule([1, MAX_SCHEDULE_LENGTH]), undefined);
    assert.equal(buildWeightedSchedule([1, 2.5]), undefined);
    const hosts = [makeHost(0, { weight: 1 }), makeHost(1, { weight: 3 * MAX_SCHEDULE_LENGTH })];
    const picker = createRoundRobinPicker(hosts, () => 0);
    let light = 0;
    for (let i = 0; i < (1 + 3 * MAX_SCHEDULE_LENGTH) * 2; i++) if (picker.pick(ctx) === hosts[0]) light++;
    assert.equal(light, 2);
  });
});
