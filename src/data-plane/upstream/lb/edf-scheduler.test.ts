import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EdfScheduler } from './edf-scheduler.ts';

function picks(s: EdfScheduler, n: number): number[] {
  return Array.from({ length: n }, () => s.pick());
}

describe('EdfScheduler', () => {
  it('gives each entry exactly its share of every period, smoothly interleaved', () => {
    // Powers of two keep the deadlines exact in binary floating point, so counts are exact.
    const s = new EdfScheduler([1, 2, 4]);
    const seq = picks(s, 7000);
    assert.deepEqual(seq.slice(0, 7), [2, 1, 2, 2, 0, 1, 2]);
    // The schedule repeats with period 7, so every window of 7 consecutive picks has counts 1 / 2 / 4.
    for (let start = 0; start + 7 <= seq.length; start += 1) {
      const counts = [0, 0, 0];
      for (let i = start; i < start + 7; i++) counts[seq[i]]++;
      assert.deepEqual(counts, [1, 2, 4], `window at ${start}`);
    }
  });

  it('serves equal weights in index order', () => {
    assert.deepEqual(picks(new EdfScheduler([3, 3, 3]), 7), [0, 1, 2, 0, 1, 2, 0]);
  });

  it('skips the initial picks it is told to', () => {
    const full = picks(new EdfScheduler([1, 2, 4]), 10);
    assert.deepEqual(picks(new EdfScheduler([1, 2, 4], 3), 7), full.slice(3));
  });

  it('requeues the top with a new weight (least request’s dynamic weights)', () => {
    const s = new EdfScheduler([1, 1]);
    // Entry 0 is due first; requeue it with a tiny weight so that entry 1 is served many times before it.
    assert.equal(s.peek(), 0);
    s.requeueTop(0.1); // next due at 1 + 10 = 11
    const seq = picks(s, 11);
    assert.deepEqual(seq.slice(0, 10), [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
  });
});
