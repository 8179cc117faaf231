// The generated bootstrap against both of its readers: the proxy's bootstrap decoder and the control plane's node
// metadata parser, and the demo config's Services selecting the workloads it describes.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { loadBootstrap } from '../data-plane/bootstrap.ts';
import { loadConfig } from '../control-plane/config/load.ts';
import { parseProxyInfo } from '../control-plane/registry/proxy-info.ts';
import { buildRegistry } from '../control-plane/registry/registry.ts';
import { ensureMeshConfig } from './mesh-config.ts';
import { buildSidecarBootstrap, sidecarNodeId, type SidecarSpec } from './sidecar-bootstrap.ts';

const base = { namespace: 'default', xdsHost: '127.0.0.1', xdsPort: 15010 };
const specs: SidecarSpec[] = [
  { ...base, name: 'frontend', labels: { app: 'frontend', version: 'v1' }, appPort: { name: 'http', port: 40001 }, inboundPort: 8080, outboundPort: 40101, adminPort: 40201 },
  { ...base, name: 'reviews-v1', labels: { app: 'reviews', version: 'v1' }, appPort: { name: 'http', port: 40002 }, inboundPort: 40302, outboundPort: 40102, adminPort: 40202 },
  { ...base, name: 'reviews-v2', labels: { app: 'reviews', version: 'v2' }, appPort: { name: 'http', port: 40003 }, inboundPort: 40303, outboundPort: 40103, adminPort: 40203 },
  { ...base, name: 'ratings', labels: { app: 'ratings', version: 'v1' }, appPort: { name: 'grpc', port: 40004 }, inboundPort: 40304, outboundPort: 40104, adminPort: 40204 },
];

/** The node as the ADS server hands it to the control plane: metadata as plain JSON. */
function nodeOf(s: SidecarSpec): { id: string; metadata: Record<string, unknown> } {
  const node = buildSidecarBootstrap(s).node as { id: string; metadata: Record<string, unknown> };
  return JSON.parse(JSON.stringify(node)) as { id: string; metadata: Record<string, unknown> };
}

describe('buildSidecarBootstrap', () => {
  it('is a bootstrap sloop proxy accepts without warnings', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sloop-bootstrap-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    for (const s of specs) {
      const file = join(dir, `${s.name}.yaml`);
      writeFileSync(file, stringify(buildSidecarBootstrap(s)));
      const { bootstrap, warnings } = loadBootstrap(file);
      assert.deepEqual(warnings, []);
      assert.equal(bootstrap.node?.id, sidecarNodeId(s));
      assert.equal(bootstrap.admin?.address?.socket_address?.port_value, s.adminPort);
      assert.equal(bootstrap.static_resources?.clusters[0].name, 'xds-grpc');
    }
  });

  it('carries the node metadata the control plane reads for an explicit-mode workload', () => {
    const { proxy, problems } = parseProxyInfo(nodeOf(specs[1]));
    assert.deepEqual(problems, []);
    assert.equal(proxy.name, 'reviews-v1');
    assert.equal(proxy.namespace, 'default');
    assert.deepEqual(proxy.labels, { app: 'reviews', version: 'v1' });
    assert.equal(proxy.interceptionMode, 'NONE');
    assert.deepEqual(proxy.ips, ['127.0.0.1']);
    assert.deepEqual(proxy.podPorts, [{ name: 'http', containerPort: 40002, protocol: 'TCP' }]);
    assert.deepEqual(proxy.endpointPorts, { 40002: 40302 });
    assert.equal(proxy.outboundPort, 40102);
  });

  it('the demo config\'s Services select these workloads at their sidecars\' inbound ports', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'sloop-bootstrap-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    ensureMeshConfig(dir);
    const proxies = specs.map((s) => parseProxyInfo(nodeOf(s)).proxy);
    const registry = buildRegistry(loadConfig([dir]).model, proxies);
    const endpoints = (name: string, port: number): string[] =>
      (registry.services.find((s) => s.hostname === `${name}.default.svc.cluster.local`)?.endpoints.get(port) ?? []).map((e) => `${e.address}:${e.port} ${e.labels.version}`);
    assert.deepEqual(endpoints('frontend', 80), ['127.0.0.1:8080 v1']);
    assert.deepEqual(endpoints('reviews', 9080), ['127.0.0.1:40302 v1', '127.0.0.1:40303 v2']);
    assert.deepEqual(endpoints('ratings', 9090), ['127.0.0.1:40304 v1']);
  });
});
