import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { effectivePolicy } from './traffic-policy.ts';
import type { DestinationRule } from '../config/model.ts';

const dr = (spec: DestinationRule['spec']): DestinationRule => ({
  kind: 'DestinationRule', apiVersion: 'networking.istio.io/v1', name: 'r', namespace: 'default', labels: {}, annotations: {},
  origin: { file: 'f.yaml', line: 1, column: 1 }, positions: {}, spec,
});

describe('effectivePolicy (Istio MergeTrafficPolicy)', () => {
  const rule = dr({
    host: 'reviews',
    trafficPolicy: {
      loadBalancer: { simple: 'ROUND_ROBIN' },
      outlierDetection: { consecutive5xxErrors: 5 },
      portLevelSettings: [{ port: { number: 9080 }, loadBalancer: { simple: 'RANDOM' } }],
    },
    subsets: [
      { name: 'v1', labels: { version: 'v1' }, trafficPolicy: { connectionPool: { tcp: { maxConnections: 1 } } } },
      { name: 'v2', labels: { version: 'v2' }, trafficPolicy: { portLevelSettings: [{ port: { number: 9080 }, tls: { mode: 'ISTIO_MUTUAL' } }] } },
    ],
  });

  it('top level, then port level replacing every field', () => {
    assert.deepEqual(effectivePolicy(rule, '', 8080), { loadBalancer: { simple: 'ROUND_ROBIN' }, outlierDetection: { consecutive5xxErrors: 5 } });
    // Port-level settings do not inherit: outlierDetection is gone on 9080.
    assert.deepEqual(effectivePolicy(rule, '', 9080), { loadBalancer: { simple: 'RANDOM' } });
  });

  it('a subset overrides field by field, and its port level replaces all', () => {
    assert.deepEqual(effectivePolicy(rule, 'v1', 9080), { loadBalancer: { simple: 'RANDOM' }, connectionPool: { tcp: { maxConnections: 1 } } });
    assert.deepEqual(effectivePolicy(rule, 'v2', 9080), { tls: { mode: 'ISTIO_MUTUAL' }, tlsPath: 'spec.subsets[1].trafficPolicy.portLevelSettings[0].tls' });
  });
});
