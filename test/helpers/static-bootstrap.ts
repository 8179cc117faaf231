/**
 * A control plane's translated resources as one static Envoy bootstrap, for tests that feed the proxy what
 * `sloop controlplane` would send over ADS: RDS inlined into the connection managers, EDS clusters made STATIC
 * with their ClusterLoadAssignment, SDS secrets given as static_resources.secrets.
 */
import assert from 'node:assert/strict';
import type { ProxyResources } from '../../src/control-plane/translate/build.ts';
import { resourcesJson } from '../../src/control-plane/translate/testdata/cases.ts';

type Json = Record<string, unknown>;
const HCM = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';

/**
 * The resources as one static bootstrap: RDS inlined, EDS clusters made STATIC with their endpoints, `secrets`
 * (Envoy Secret messages) as static_resources.secrets.
 */
export function staticBootstrap(r: ProxyResources, secrets: Json[] = []): Json {
  const json = resourcesJson(r) as Record<string, Json[]>;
  const routes = new Map(json.routes.map((x) => [x.name as string, x]));
  const cla = new Map(json.endpoints.map((x) => [x.cluster_name as string, x]));
  const inlineRds = (chain: Json | undefined): void => {
    for (const f of (chain?.filters as Json[] | undefined) ?? []) {
      const tc = f.typed_config as Json;
      if (tc['@type'] !== HCM || tc.rds === undefined) continue;
      const name = (tc.rds as Json).route_config_name as string;
      assert.ok(routes.has(name), `route config ${name}`);
      delete tc.rds;
      tc.route_config = routes.get(name);
    }
  };
  const listeners = json.listeners.filter((l) => l.api_listener === undefined);
  for (const l of listeners) {
    for (const c of (l.filter_chains as Json[] | undefined) ?? []) inlineRds(c);
    inlineRds(l.default_filter_chain as Json | undefined);
  }
  const clusters = json.clusters.map((c) => {
    if (c.type !== 'EDS') return c;
    const { eds_cluster_config: _eds, ...rest } = c;
    const name = c.name as string;
    assert.ok(cla.has(name), `ClusterLoadAssignment ${name}`);
    return { ...rest, type: 'STATIC', load_assignment: cla.get(name) };
  });
  return { static_resources: { listeners, clusters, ...(secrets.length > 0 ? { secrets } : {}) } };
}

