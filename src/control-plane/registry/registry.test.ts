import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseProxyInfo } from './proxy-info.ts';

describe('parseProxyInfo', () => {
  it('reads Istio node metadata keys and the Sloop ones', () => {
    const { proxy, problems } = parseProxyInfo({
      id: 'sidecar~10.0.0.1~reviews-v1-abc.default~default.svc.cluster.local',
      metadata: {
        LABELS: { app: 'reviews', version: 'v1' }, SERVICE_ACCOUNT: 'bookinfo-reviews', INSTANCE_IPS: '10.0.0.1,fd00::1',
        POD_PORTS: '[{"name":"http","containerPort":9080}]', SLOOP_ENDPOINT_PORTS: { 9080: 19080 }, INTERCEPTION_MODE: 'NONE', SLOOP_OUTBOUND_PORT: '15101',
      },
    });
    assert.deepEqual(problems, []);
    assert.equal(proxy.type, 'sidecar');
    assert.equal(proxy.name, 'reviews-v1-abc');
    assert.equal(proxy.namespace, 'default');
    assert.deepEqual(proxy.ips, ['10.0.0.1', 'fd00::1']);
    assert.deepEqual(proxy.podPorts, [{ name: 'http', containerPort: 9080 }]);
    assert.deepEqual(proxy.endpointPorts, { 9080: 19080 });
    assert.equal(proxy.interceptionMode, 'NONE');
    assert.equal(proxy.outboundPort, 15101);
    assert.equal(proxy.inboundPort, 15006);
  });

  it('GENERATOR: grpc marks a proxyless client; bad keys are reported, not fatal', () => {
    const { proxy, problems } = parseProxyInfo({ id: 'client', metadata: { GENERATOR: 'grpc', LABELS: 'nope', POD_PORTS: '{', INTERCEPTION_MODE: 'X' } });
    assert.equal(proxy.type, 'grpc');
    assert.equal(proxy.namespace, 'default');
    assert.deepEqual(problems.map((p) => p.key), ['LABELS', 'POD_PORTS', 'INTERCEPTION_MODE']);
  });
});
