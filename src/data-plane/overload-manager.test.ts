import { it } from 'node:test';
import assert from 'node:assert/strict';
import { parseBootstrap } from './bootstrap.ts';
import { ConfigError } from '../shared/errors.ts';
import { createGlobalConnectionLimit, GlobalConnectionLimit } from './overload-manager.ts';

const TYPE = 'type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig';

function diagnosticsOf(yaml: string): string[] {
  try {
    parseBootstrap(yaml, 'b.yaml');
  } catch (err) {
    if (err instanceof ConfigError) return err.diagnostics.map((d) => `${d.line}:${d.column} ${d.code} ${d.path}: ${d.message}`);
    throw err;
  }
  return [];
}

it('a global_downstream_max_connections monitor gives a limit of max_active_downstream_connections', () => {
  const { bootstrap } = parseBootstrap(
    `overload_manager:\n  resource_monitors:\n    - name: envoy.resource_monitors.global_downstream_max_connections\n      typed_config: { "@type": ${TYPE}, max_active_downstream_connections: 3 }\n`,
    'b.yaml',
  );
  const limit = createGlobalConnectionLimit(bootstrap);
  assert.equal(limit?.maxConnections, 3);
  assert.equal(createGlobalConnectionLimit(parseBootstrap('node: { id: x }\n', 'b.yaml').bootstrap), undefined);
});

it('slots are taken up to the maximum and given back', () => {
  const l = new GlobalConnectionLimit(2);
  assert.equal(l.tryAllocate(), true);
  assert.equal(l.tryAllocate(), true);
  assert.equal(l.tryAllocate(), false);
  l.release();
  assert.equal(l.activeConnections, 1);
  assert.equal(l.tryAllocate(), true);
  assert.equal(l.tryAllocate(), false);
});

it('unknown, duplicate and unimplemented monitors, actions and a missing config are errors at their field (camelCase too)', () => {
  const d = diagnosticsOf(
    [
      'overloadManager:',
      '  resourceMonitors:',
      '    - name: envoy.resource_monitors.downstream_connections',
      `      typedConfig: { "@type": ${TYPE}, max_active_downstream_connections: 3 }`,
      '    - name: envoy.resource_monitors.fixed_heap',
      '    - name: envoy.resource_monitors.fixed_heap',
      '    - name: envoy.resource_monitors.global_downstream_max_connections',
      '  actions:',
      '    - name: envoy.overload_actions.shrink_heap',
      '      triggers: [{ name: envoy.resource_monitors.fixed_heap, threshold: { value: 0.9 } }]',
      '',
    ].join('\n'),
  );
  assert.deepEqual(d, [
    `3:13 SLOOP_ERR_CONFIG_INVALID overload_manager.resource_monitors[0].name: unknown resource monitor "envoy.resource_monitors.downstream_connections"; the global connection limit (envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig) must be named envoy.resource_monitors.global_downstream_max_connections`,
    '5:13 SLOOP_ERR_CONFIG_UNSUPPORTED overload_manager.resource_monitors[1].name: resource monitor "envoy.resource_monitors.fixed_heap" is not implemented (supported: envoy.resource_monitors.global_downstream_max_connections)',
    '6:13 SLOOP_ERR_CONFIG_INVALID overload_manager.resource_monitors[2].name: duplicate resource monitor "envoy.resource_monitors.fixed_heap"',
    '7:7 SLOOP_ERR_CONFIG_INVALID overload_manager.resource_monitors[3]: envoy.resource_monitors.global_downstream_max_connections needs a typed_config envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig with max_active_downstream_connections > 0',
    '9:7 SLOOP_ERR_CONFIG_UNSUPPORTED overload_manager.actions[0]: overload action "envoy.overload_actions.shrink_heap" is not implemented (the overload manager only enforces envoy.resource_monitors.global_downstream_max_connections)',
  ]);
});

it('a typed_config of another type is an error', () => {
  const d = diagnosticsOf(
    'overload_manager:\n  resource_monitors:\n    - name: envoy.resource_monitors.global_downstream_max_connections\n      typed_config: { "@type": type.googleapis.com/google.protobuf.Empty }\n',
  );
  assert.equal(d.length, 1);
  assert.match(d[0], /^4:7 SLOOP_ERR_CONFIG_INVALID overload_manager\.resource_monitors\[0\]\.typed_config: .* takes a .*DownstreamConnectionsConfig, got google\.protobuf\.Empty$/);
});
