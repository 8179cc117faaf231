import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatSpiffeId, formatWorkloadSpiffeId, parseSpiffeId, parseWorkloadSpiffeId, validateTrustDomain } from './spiffe.ts';

const isCode = (code: string) => (err: unknown) => (err as { code?: string }).code === code;

describe('SPIFFE IDs', () => {
  it('parses and formats a workload ID', () => {
    assert.deepEqual(parseSpiffeId('spiffe://cluster.local/ns/default/sa/bookinfo-reviews'), { trustDomain: 'cluster.local', path: '/ns/default/sa/bookinfo-reviews' });
    assert.deepEqual(parseWorkloadSpiffeId('spiffe://example.org/ns/prod/sa/web'), { trustDomain: 'example.org', namespace: 'prod', serviceAccount: 'web' });
    assert.equal(formatWorkloadSpiffeId('cluster.local', { namespace: 'default', serviceAccount: 'sleep' }), 'spiffe://cluster.local/ns/default/sa/sleep');
    assert.equal(formatSpiffeId({ trustDomain: 'td', path: '' }), 'spiffe://td');
    assert.deepEqual(parseSpiffeId('spiffe://td'), { trustDomain: 'td', path: '' });
  });

  for (const bad of [
    'http://cluster.local/ns/a/sa/b',
    'SPIFFE://cluster.local/ns/a/sa/b',
    'spiffe://Cluster.local/ns/a/sa/b',
    'spiffe:///ns/a/sa/b',
    'spiffe://user@cluster.local/ns/a/sa/b',
    'spiffe://cluster.local:8443/ns/a/sa/b',
    'spiffe://cluster.local/ns/a/sa/b?x=1',
    'spiffe://cluster.local/ns/a/sa/b#frag',
    'spiffe://cluster.local/ns//sa/b',
    'spiffe://cluster.local/ns/a/sa/b/',
    'spiffe://cluster.local/ns/../sa/b',
    'spiffe://cluster.local/ns/a%20b/sa/b',
    `spiffe://cluster.local/${'a'.repeat(2100)}`,
    `spiffe://${'a'.repeat(256)}/x`,
  ]) {
    it(`refuses ${bad.slice(0, 60)}`, () => {
      assert.throws(() => parseSpiffeId(bad), isCode('SLOOP_ERR_CA_INVALID_SPIFFE_ID'));
    });
  }

  it('refuses non-workload paths and bad namespace/service account values', () => {
    assert.throws(() => parseWorkloadSpiffeId('spiffe://td/ns/a/sa'), isCode('SLOOP_ERR_CA_INVALID_SPIFFE_ID'));
    assert.throws(() => parseWorkloadSpiffeId('spiffe://td/ns/a/sa/b/c'), isCode('SLOOP_ERR_CA_INVALID_SPIFFE_ID'));
    assert.throws(() => parseWorkloadSpiffeId('spiffe://td/x/a/sa/b'), isCode('SLOOP_ERR_CA_INVALID_SPIFFE_ID'));
    assert.throws(() => formatWorkloadSpiffeId('td', { namespace: 'a/b', serviceAccount: 'c' }), isCode('SLOOP_ERR_CA_INVALID_SPIFFE_ID'));
    assert.throws(() => formatWorkloadSpiffeId('td', { namespace: 'a', serviceAccount: '' }), isCode('SLOOP_ERR_CA_INVALID_SPIFFE_ID'));
    assert.throws(() => formatWorkloadSpiffeId('TD', { namespace: 'a', serviceAccount: 'b' }), isCode('SLOOP_ERR_CA_INVALID_SPIFFE_ID'));
    assert.throws(() => validateTrustDomain(''), isCode('SLOOP_ERR_CA_INVALID_SPIFFE_ID'));
  });
});
