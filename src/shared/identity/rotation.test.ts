import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { computeRenewalTimeMs, isRenewalDue, renewalDelayMs } from './rotation.ts';

const H = 3600 * 1000;
const validity = { notBeforeMs: 1_000_000, notAfterMs: 1_000_000 + 24 * H };

describe('renewal time', () => {
  it('is half life with no jitter spread at random 0.5', () => {
    assert.equal(computeRenewalTimeMs(validity, { random: () => 0.5 }), validity.notBeforeMs + 12 * H);
    assert.equal(computeRenewalTimeMs(validity, { random: () => 0.9, jitterFraction: 0 }), validity.notBeforeMs + 12 * H);
  });

  it('spreads by ±jitter of the lifetime', () => {
    assert.equal(computeRenewalTimeMs(validity, { random: () => 0 }), validity.notBeforeMs + Math.floor(24 * H * 0.45));
    assert.equal(computeRenewalTimeMs(validity, { random: () => 0.75, jitterFraction: 0.1 }), validity.notBeforeMs + Math.floor(24 * H * 0.55));
    const samples = [0, 0.1, 0.3, 0.6, 0.99].map((r) => computeRenewalTimeMs(validity, { random: () => r }));
    assert.equal(new Set(samples).size, samples.length, 'different random values give different times');
    for (const t of samples) assert.ok(t > validity.notBeforeMs + 10.8 * H - 1 && t < validity.notBeforeMs + 13.2 * H);
  });

  it('stays inside the window even with a broken random source', () => {
    const t = computeRenewalTimeMs(validity, { random: () => 7, jitterFraction: 0.49 });
    assert.ok(t < validity.notAfterMs);
  });

  it('refuses an empty window or a jitter that could reach expiry', () => {
    assert.throws(() => computeRenewalTimeMs({ notBeforeMs: 5, notAfterMs: 5 }, { random: () => 0.5 }), { code: 'SLOOP_ERR_CA_INVALID_TTL' });
    assert.throws(() => computeRenewalTimeMs(validity, { random: () => 0.5, jitterFraction: 0.5 }), { code: 'SLOOP_ERR_CA_INVALID_TTL' });
  });

  it('delay and due follow the clock', () => {
    const at = computeRenewalTimeMs(validity, { random: () => 0.5 });
    assert.equal(renewalDelayMs(at, at - 1000), 1000);
    assert.equal(renewalDelayMs(at, at + 1000), 0);
    assert.equal(isRenewalDue(at, at - 1), false);
    assert.equal(isRenewalDue(at, at), true);
  });
});
