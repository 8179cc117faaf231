import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { createDebouncer } from './debounce.ts';

describe('createDebouncer', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }));
  afterEach(() => mock.timers.reset());

  const collect = () => {
    const flushed: string[][] = [];
    const d = createDebouncer<string[]>({ merge: (a, b) => [...a, ...b], flush: (v) => void flushed.push(v) });
    return { d, flushed };
  };

  it('flushes once after 100 ms of quiet, merging a burst', () => {
    const { d, flushed } = collect();
    d.push(['a']);
    mock.timers.tick(60);
    d.push(['b']);
    mock.timers.tick(99);
    assert.deepEqual(flushed, []);
    assert.equal(d.isPending, true);
    mock.timers.tick(1);
    assert.deepEqual(flushed, [['a', 'b']]);
    assert.equal(d.isPending, false);
  });

  it('flushes no later than 10 s after the first change under a steady trickle', () => {
    const { d, flushed } = collect();
    for (let t = 0; t < 9_950; t += 50) {
      d.push([String(t)]);
      mock.timers.tick(50);
    }
    assert.equal(flushed.length, 0);
    d.push(['last']);
    mock.timers.tick(50);
    assert.equal(flushed.length, 1);
    assert.equal(flushed[0]!.length, 200);
    assert.equal(flushed[0]!.at(-1), 'last');
  });

  it('runs one flush at a time and flushes changes made meanwhile after it', async () => {
    const flushed: number[] = [];
    let release!: () => void;
    const d = createDebouncer<number>({
      merge: (a, b) => a + b,
      flush: (v) => {
        flushed.push(v);
        return new Promise<void>((r) => (release = r));
      },
    });
    d.push(1);
    mock.timers.tick(100);
    assert.deepEqual(flushed, [1]);
    assert.equal(d.isFlushing, true);
    d.push(2);
    d.push(3);
    mock.timers.tick(100);
    assert.deepEqual(flushed, [1], 'no second flush while the first runs');
    release();
    await Promise.resolve();
    await Promise.resolve();
    assert.deepEqual(flushed, [1, 5]);
  });

  it('flushNow flushes at once and cancel drops pending changes', () => {
    const { d, flushed } = collect();
    d.push(['x']);
    d.flushNow();
    assert.deepEqual(flushed, [['x']]);
    d.push(['y']);
    d.cancel();
    mock.timers.tick(20_000);
    assert.deepEqual(flushed, [['x']]);
  });

  it('reports a throwing flush and keeps working', () => {
    const errors: unknown[] = [];
    const flushed: number[] = [];
    const d = createDebouncer<number>({
      merge: (a, b) => a + b,
      flush: (v) => {
        flushed.push(v);
        if (v === 1) throw new Error('boom');
      },
      onError: (e) => errors.push(e),
      quietMs: 10,
    });
    d.push(1);
    mock.timers.tick(10);
    d.push(2);
    mock.timers.tick(10);
    assert.deepEqual(flushed, [1, 2]);
    assert.equal(errors.length, 1);
  });
});
