import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { analyze, documentationUrl } from './analyze.ts';
import { hostsMatch, resolveShortname } from './hosts.ts';
import { loadConfig } from './load.ts';

const SAMPLES = '/work/shared/istio-samples';
const TESTDATA = new URL('./testdata/', import.meta.url).pathname;

test('bookinfo with its DestinationRules and each virtual-service-*.yaml: no errors', () => {
  for (const vs of ['virtual-service-all-v1.yaml', 'virtual-service-reviews-v3.yaml', 'virtual-service-reviews-jason-v2-v3.yaml', 'virtual-service-reviews-90-10.yaml', 'virtual-service-ratings-test-abort.yaml']) {
    const messages = analyze(loadConfig([join(SAMPLES, 'bookinfo/platform/kube/bookinfo.yaml'), join(SAMPLES, 'bookinfo/networking/destination-rule-all.yaml'), join(SAMPLES, 'bookinfo/networking', vs)]));
    assert.deepEqual(messages.filter((m) => m.level === 'Error'), [], vs);
    // destination-rule-all.yaml declares subsets (ratings v2, details v2, …) whose Deployments live in other files.
    assert.deepEqual([...new Set(messages.map((m) => m.code))], ['IST0173'], vs);
  }
});

test('bookinfo gateway without an ingress gateway workload: Referenced selector not found', () => {
  const messages = analyze(loadConfig([join(SAMPLES, 'bookinfo/platform/kube/bookinfo.yaml'), join(SAMPLES, 'bookinfo/networking/bookinfo-gateway.yaml')]));
  assert.deepEqual(messages.map((m) => [m.code, m.level, m.origin, m.line, m.message]), [
    ['IST0101', 'Error', 'Gateway default/bookinfo-gateway', 8, 'Referenced selector not found: "istio=ingressgateway"'],
  ]);
});

test('broken routing: Istio codes, levels, resources and lines', () => {
  const dir = join(TESTDATA, 'analyze');
  const messages = analyze(loadConfig([dir]));
  const routing = join(dir, 'routing.yaml');
  const mesh = join(dir, 'mesh.yaml');
  const got = messages.map((m) => [m.level, m.code, m.origin, `${m.file === routing ? 'routing' : m.file === mesh ? 'mesh' : m.file}:${m.line}`, m.message]);
  assert.deepEqual(got, [
    ['Error', 'IST0109', 'VirtualService default/reviews', 'routing:8', 'The VirtualServices default/reviews,default/reviews-again associated with mesh gateway define the same host reviews.default.svc.cluster.local which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.'],
    ['Error', 'IST0101', 'VirtualService default/reviews', 'routing:11', 'Referenced gateway not found: "missing-gateway"'],
    ['Error', 'IST0101', 'VirtualService default/reviews', 'routing:20', 'Referenced host+subset in destinationrule not found: "reviews+v4"'],
    ['Error', 'IST0101', 'VirtualService default/reviews', 'routing:27', 'Referenced host not found: "ratingz"'],
    ['Error', 'IST0112', 'VirtualService default/reviews', 'routing:30', 'This VirtualService routes to a service "ratings" that exposes multiple ports [9080 9090]. Specifying a port in the destination is required to disambiguate.'],
    ['Error', 'IST0109', 'VirtualService default/reviews-again', 'routing:42', 'The VirtualServices default/reviews,default/reviews-again associated with mesh gateway define the same host reviews.default.svc.cluster.local which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.'],
    ['Error', 'IST0101', 'VirtualService default/reviews-again', 'routing:48', 'Referenced host:port not found: "reviews:9999"'],
    ['Error', 'IST0101', 'Gateway default/ingress', 'routing:69', 'Referenced selector not found: "istio=ingressgateway"'],
    ['Warning', 'IST0130', 'VirtualService default/reviews', 'routing:21', 'VirtualService rule #1 not used (all matches used by prior rules).'],
    ['Warning', 'IST0130', 'VirtualService default/reviews', 'routing:31', 'VirtualService rule #3 not used (only the last rule can have no matches).'],
    ['Warning', 'IST0173', 'DestinationRule default/reviews', 'routing:60', 'The Subset v9 defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).'],
    ['Info', 'IST0118', 'Service default/legacy', 'mesh:34', 'Port name legacy (port: 7000, targetPort: 7000) doesn\'t follow the naming convention of Istio port.'],
  ]);
});

test('schema errors are IST0106 with the field path; ServiceEntry hosts resolve destinations', () => {
  const messages = analyze(loadConfig([join(TESTDATA, 'broken-schema.yaml')]));
  assert.equal(messages.length, 8);
  assert.ok(messages.every((m) => m.code === 'IST0106' && m.level === 'Error'));
  assert.deepEqual([messages[3].origin, messages[3].line, messages[3].message], ['VirtualService default/reviews', 19, 'Schema validation error: spec.http[0].route[1].destination.host: missing required field "host"']);
  const egress = analyze(loadConfig([join(SAMPLES, 'bookinfo/networking/egress-rule-google-apis.yaml')]));
  assert.deepEqual(egress, []);
});

test('IST0131, Sidecar checks and IST0132', () => {
  const loaded = loadConfig([join(TESTDATA, 'analyze/mesh.yaml'), join(TESTDATA, 'analyze-extra.yaml')]);
  assert.deepEqual(loaded.diagnostics, []);
  const messages = analyze(loaded).filter((m) => m.code !== 'IST0118');
  assert.deepEqual(messages.map((m) => [m.code, m.origin, m.line, m.message]), [
    ['IST0110', 'Sidecar default/a', 18, 'The Sidecars [a b] in namespace "default" select the same workload pod "reviews-v1", which can lead to undefined behavior.'],
    ['IST0110', 'Sidecar default/b', 29, 'The Sidecars [a b] in namespace "default" select the same workload pod "reviews-v1", which can lead to undefined behavior.'],
    ['IST0111', 'Sidecar default/c', 32, 'The Sidecars [c d] in namespace "default" have no workload selector, which can lead to undefined behavior.'],
    ['IST0111', 'Sidecar default/d', 40, 'The Sidecars [c d] in namespace "default" have no workload selector, which can lead to undefined behavior.'],
    ['IST0132', 'VirtualService default/web', 53, 'one or more host [reviews] defined in VirtualService default/web not found in Gateway default/web.'],
    ['IST0131', 'VirtualService default/web', 59, 'VirtualService rule #1 match "again" is not used (duplicate/overlapping match in rule #0).'],
  ]);
});

test('hosts resolve as Istio: short names relative to the namespace, wildcards', () => {
  assert.equal(resolveShortname('reviews', 'default'), 'reviews.default.svc.cluster.local');
  assert.equal(resolveShortname('reviews.default', 'x'), 'reviews.default');
  assert.equal(resolveShortname('*', 'x'), '*');
  assert.equal(resolveShortname('10.0.0.1', 'x'), '10.0.0.1');
  assert.ok(hostsMatch('*.example.com', 'a.b.example.com'));
  assert.ok(!hostsMatch('*.example.com', 'example.com'));
  assert.ok(hostsMatch('*', 'anything'));
  assert.ok(hostsMatch('*.com', '*.example.com'));
  assert.equal(documentationUrl('IST0101'), 'https://istio.io/latest/docs/reference/config/analysis/ist0101/');
});

test('AuthorizationPolicy selectors: IST0127 NoMatchingWorkloadsFound, as istioctl', () => {
  const messages = analyze(loadConfig([join(TESTDATA, 'analyze-security.yaml')]));
  assert.deepEqual(messages.map((m) => [m.level, m.code, m.origin, m.line, m.message]), [
    ['Warning', 'IST0127', 'AuthorizationPolicy foo/httpbin-nopods', 13, 'No matching workloads for this resource with the following labels: app=bogus-label,version=v1'],
    ['Warning', 'IST0127', 'AuthorizationPolicy bar/other-ns', 37, 'No matching workloads for this resource with the following labels: app=httpbin'],
  ]);
});
