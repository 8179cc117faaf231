import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { OutlierDetector, compileOutlierDetection, type OutlierConfig } from './outlier.ts';
import { StatsStore } from '../stats/store.ts';
import type { UpstreamHost } from './lb/types.ts';

function host(id: string): UpstreamHost {
  return { id, address: '127.0.0.1', port: Number(id), weight: 1, priority: 0, locality: '', localityWeight: 0, health: 'healthy', activeRequests: 0 };
}

function setup(over: Partial<OutlierConfig> = {}, n = 2, random = () => 0) {
  const hosts = Array.from({ length: n }, (_, i) => host(String(1000 + i)));
  let now = 0;
  let changes = 0;
  const store = new StatsStore();
  const cfg = { ...compileOutlierDetection({} as never), ...over };
  const d = new OutlierDetector(cfg, {
    now: () => now,
    random,
    scope: store.scope('cluster.c.outlier_detection'),
    hostCount: () => hosts.length,
    onChange: () => changes++,
  });
  const stat = (name: string): number => store.counter(`cluster.c.outlier_detection.${name}`).value;
  return { d, hosts, store, stat, advance: (ms: number) => (now += ms), changes: () => changes, gauge: () => store.gauge('cluster.c.outlier_detection.ejections_active').value };
}

describe('outlier detection', () => {
  it('has Envoy defaults', () => {
    const c = compileOutlierDetection({} as never);
    assert.deepEqual([c.consecutive5xx, c.consecutiveGatewayFailure, c.intervalMs, c.baseEjectionTimeMs, c.maxEjectionPercent, c.enforcingConsecutive5xx, c.enforcingConsecutiveGatewayFailure], [5, 5, 10_000, 30_000, 10, 100, 0]);
  });

  it('ejects after five consecutive 5xx, not when a success interrupts them', () => {
    const { d, hosts, stat, gauge, changes } = setup({ maxEjectionPercent: 50 });
    const [h] = hosts;
    for (let i = 0; i < 4; i++) d.putHttpStatus(h!, 500);
    d.putHttpStatus(h!, 200);
    for (let i = 0; i < 4; i++) d.putHttpStatus(h!, 503);
    assert.equal(h!.outlierEjected, undefined);
    d.putHttpStatus(h!, 502);
    assert.equal(h!.outlierEjected, true);
    assert.equal(d.isEjected(h!), true);
    assert.equal(stat('ejections_enforced_consecutive_5xx'), 1);
    assert.equal(gauge(), 1);
    assert.equal(changes(), 1);
  });

  it('start() runs the interval check on a timer', (t) => {
    t.mock.timers.enable({ apis: ['setInterval'] });
    const s = setup({ maxEjectionPercent: 50, baseEjectionTimeMs: 1000, intervalMs: 100 });
    s.d.start();
    const h = s.hosts[0]!;
    for (let i = 0; i < 5; i++) s.d.putHttpStatus(h, 500);
    s.advance(1000);
    t.mock.timers.tick(100);
    assert.equal(h.outlierEjected, false);
    assert.equal(s.changes(), 2);
    s.d.close();
  });

  it('unejects after the ejection time; a second ejection lasts twice as long', () => {
    const s = setup({ maxEjectionPercent: 50, baseEjectionTimeMs: 1000, intervalMs: 100 });
    const h = s.hosts[0]!;
    const eject = () => { for (let i = 0; i < 5; i++) s.d.putHttpStatus(h, 500); };
    eject();
    s.advance(999);
    s.d.onInterval();
    assert.equal(h.outlierEjected, true);
    s.advance(1);
    s.d.onInterval();
    assert.equal(h.outlierEjected, false);
    assert.equal(s.gauge(), 0);
    eject();
    s.advance(1000);
    s.d.onInterval();
    assert.equal(h.outlierEjected, true, 'second ejection: 2 × base');
    s.advance(1000);
    s.d.onInterval();
    assert.equal(h.outlierEjected, false);
  });

  it('max_ejection_percent caps ejections (ejections_overflow)', () => {
    const { d, hosts, stat } = setup({}, 2); // default 10 %: one of two hosts is 50 %
    for (let i = 0; i < 5; i++) d.putHttpStatus(hosts[0]!, 500);
    assert.equal(hosts[0]!.outlierEjected, true, 'the first ejection is allowed (0 % ejected < 10 %)');
    for (let i = 0; i < 5; i++) d.putHttpStatus(hosts[1]!, 500);
    assert.notEqual(hosts[1]!.outlierEjected, true);
    assert.equal(stat('ejections_overflow'), 1);
  });

  it('gateway failures are detected but not enforced by default; local-origin failures count as 5xx', () => {
    const { d, hosts, stat } = setup({ maxEjectionPercent: 100, consecutive5xx: 100 });
    for (let i = 0; i < 5; i++) d.putHttpStatus(hosts[0]!, 504);
    assert.equal(stat('ejections_detected_consecutive_gateway_failure'), 1);
    assert.equal(stat('ejections_enforced_consecutive_gateway_failure'), 0);
    assert.notEqual(hosts[0]!.outlierEjected, true);
    const s2 = setup({ maxEjectionPercent: 100 });
    for (let i = 0; i < 5; i++) s2.d.putLocalOrigin(s2.hosts[1]!, 'connect-failure');
    assert.equal(s2.hosts[1]!.outlierEjected, true);
  });

  it('enforcing percentage is sampled', () => {
    const { d, hosts, stat } = setup({ maxEjectionPercent: 100, enforcingConsecutive5xx: 50 }, 2, () => 0.7);
    for (let i = 0; i < 5; i++) d.putHttpStatus(hosts[0]!, 500);
    assert.equal(stat('ejections_detected_consecutive_5xx'), 1);
    assert.notEqual(hosts[0]!.outlierEjected, true);
  });

  it('a removed host no longer counts as ejected', () => {
    const { d, hosts, gauge } = setup({ maxEjectionPercent: 50 });
    for (let i = 0; i < 5; i++) d.putHttpStatus(hosts[0]!, 500);
    d.removeHost(hosts[0]!);
    assert.equal(gauge(), 0);
  });
});
