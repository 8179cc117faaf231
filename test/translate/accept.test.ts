/**
 * The proxy accepts what the control plane emits: every case's resources, for every node, go through the data
 * plane's own validation (bootstrap decoding with protoc-gen-validate rules, then ProxyServer's compile of every
 * listener, filter chain, route table and cluster). RDS listeners get their RouteConfiguration inline, EDS
 * clusters their ClusterLoadAssignment as load_assignment (STATIC), and the SDS secrets ISTIO_MUTUAL and the
 * inbound mTLS chains name (`default`, `ROOTCA`) come as static secrets from a test PKI, since a bootstrap has no
 * ADS here. Nothing is tolerated: RBAC, jwt_authn and TLS contexts included, every node must start.
 */
import { after, before, describe, it } from 'node:test';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeTestPki } from '../helpers/certs.ts';
import { staticBootstrap } from '../helpers/static-bootstrap.ts';
import assert from 'node:assert/strict';
import { silentLogger } from '../../src/shared/log.ts';
import { ConfigError, formatDiagnostic } from '../../src/shared/errors.ts';
import { parseBootstrap } from '../../src/data-plane/bootstrap.ts';
import { ProxyServer } from '../../src/data-plane/server.ts';
import { compileRouteConfig } from '../../src/data-plane/http/route/route-table.ts';
import { buildProxyConfig } from '../../src/control-plane/translate/build.ts';
import { CASES, loadCase, toOutput } from '../../src/control-plane/translate/testdata/cases.ts';
import type { RouteConfiguration__Output } from '../../src/xds/gen/envoy/config/route/v3/RouteConfiguration.ts';
import type { Listener__Output } from '../../src/xds/gen/envoy/config/listener/v3/Listener.ts';
import type { HttpConnectionManager__Output } from '../../src/xds/gen/envoy/extensions/filters/network/http_connection_manager/v3/HttpConnectionManager.ts';
import type { ExtAuthz__Output } from '../../src/xds/gen/envoy/extensions/filters/http/ext_authz/v3/ExtAuthz.ts';
import { unpackAny } from '../../src/xds/any.ts';

type Json = Record<string, unknown>;

describe('the proxy accepts the translated resources', () => {
  let secrets: Json[] = [];
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sloop-accept-'));
    const pki = await makeTestPki(dir);
    secrets = [
      { name: 'default', tls_certificate: { certificate_chain: { inline_string: pki.server.cert }, private_key: { inline_string: pki.server.key } } },
      { name: 'ROOTCA', validation_context: { trusted_ca: { inline_string: pki.ca.cert } } },
    ];
  });
  after(() => rm(dir, { recursive: true, force: true }));

  for (const name of CASES) {
    it(`${name}: every node`, () => {
      const c = loadCase(name);
      for (const proxy of c.nodes) {
        const { resources } = buildProxyConfig(c.push, proxy);
        const text = JSON.stringify(staticBootstrap(resources, secrets));
        const { bootstrap } = parseBootstrap(text, `${name}-${proxy.name}.json`);
        let server: ProxyServer;
        try {
          server = new ProxyServer(bootstrap, { log: silentLogger, configPath: `/tmp/${name}.json`, drainTimeMs: 0 });
        } catch (err) {
          // The proxy collects every diagnostic before throwing: show them all.
          if (err instanceof ConfigError) assert.deepEqual(err.diagnostics.map(formatDiagnostic), [], proxy.id);
          throw err;
        }
        assert.equal(server.listeners.length, resources.listeners.filter((l) => l.api_listener === undefined).length);
        server.clusters.close();
        for (const l of server.listeners) l.close();
        // Route tables compile on their own too (proxyless nodes' RDS has no listener to carry it here).
        for (const rc of resources.routes) {
          const compiled = compileRouteConfig(toOutput<RouteConfiguration__Output>('routes', rc));
          assert.deepEqual(compiled.diagnostics.filter((d) => d.severity === 'error'), [], `${proxy.id} ${rc.name}`);
        }
      }
    });
  }

  it('every ext_authz filter (AuthorizationPolicy CUSTOM) calls a cluster of its own node\'s CDS, behind the shadow RBAC', () => {
    let seen = 0;
    for (const name of CASES) {
      const c = loadCase(name);
      for (const proxy of c.nodes) {
        const { resources } = buildProxyConfig(c.push, proxy);
        const clusters = new Set(resources.clusters.map((x) => x.name));
        for (const l of resources.listeners.map((x) => toOutput<Listener__Output>('listeners', x))) {
          for (const chain of [...l.filter_chains, ...(l.default_filter_chain ? [l.default_filter_chain] : [])]) {
            for (const f of chain.filters) {
              if (f.name !== 'envoy.filters.network.http_connection_manager') continue;
              const filters = unpackAny<HttpConnectionManager__Output>(f.typed_config!).http_filters;
              filters.forEach((hf, i) => {
                if (hf.name !== 'envoy.filters.http.ext_authz') return;
                seen++;
                const cfg = unpackAny<ExtAuthz__Output>(hf.typed_config!);
                const cluster = cfg.grpc_service!.envoy_grpc!.cluster_name;
                assert.ok(clusters.has(cluster), `${proxy.id} ${l.name}: ext_authz cluster ${cluster} is not in the node's CDS`);
                assert.equal(filters[i - 1]?.name, 'envoy.filters.http.rbac', 'the shadow RBAC that enables it comes first');
                assert.equal(cfg.filter_enabled_metadata?.filter, 'envoy.filters.http.rbac');
              });
            }
          }
        }
      }
    }
    assert.ok(seen > 0, 'the ext-authz case has ext_authz filters');
  });
});
