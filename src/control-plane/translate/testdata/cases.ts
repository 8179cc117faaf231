/**
 * Test helpers for translation: load a testdata case (Istio YAML plus `TestNode` documents describing connected
 * proxies), build its push, and render resources as readable proto3 JSON for golden files.
 */
import { join } from 'node:path';
import { loadConfig } from '../../config/load.ts';
import { formatDiagnostic } from '../../../shared/errors.ts';
import { buildRegistry } from '../../registry/registry.ts';
import { parseProxyInfo, type ProxyInfo } from '../../registry/proxy-info.ts';
import { createPushContext, type PushContext } from '../push-context.ts';
import type { ProxyResources } from '../build.ts';
import { packAny, unpackAny } from '../../../xds/any.ts';
import { encodeProtoJson } from '../../../xds/proto-json.ts';
import { lookupMessage } from '../../../xds/protos.ts';
import { TYPE_URLS } from '../../../xds/type-urls.ts';

export const TESTDATA = import.meta.dirname;
export const CASES = ['bookinfo', 'tcp', 'serviceentry-dns', 'sidecar-scope', 'proxyless', 'explicit', 'security', 'ext-authz'] as const;

export interface TranslateCase {
  push: PushContext;
  /** Every TestNode, in file order. */
  nodes: ProxyInfo[];
  /** The nodes whose resources the golden file pins. */
  golden: ProxyInfo[];
  configDiagnostics: string[];
}

/** Loads `testdata/<name>.yaml`. */
export function loadCase(name: string): TranslateCase {
  const loaded = loadConfig([join(TESTDATA, `${name}.yaml`)]);
  const nodes: ProxyInfo[] = [];
  const golden: ProxyInfo[] = [];
  for (const o of loaded.model.others) {
    if (o.kind !== 'TestNode') continue;
    const spec = o.value.spec as { id: string; golden?: boolean; metadata?: Record<string, unknown> };
    const { proxy, problems } = parseProxyInfo({ id: spec.id, metadata: spec.metadata ?? {} });
    if (problems.length > 0) throw new Error(`TestNode ${o.name}: ${JSON.stringify(problems)}`);
    nodes.push(proxy);
    if (spec.golden) golden.push(proxy);
  }
  const registry = buildRegistry(loaded.model, nodes);
  return { push: createPushContext(loaded.model, registry), nodes, golden, configDiagnostics: loaded.diagnostics.map(formatDiagnostic) };
}

const TYPES = { listeners: TYPE_URLS.listener, routes: TYPE_URLS.route, clusters: TYPE_URLS.cluster, endpoints: TYPE_URLS.endpoint } as const;

/** Round-trips a resource through its wire encoding into the __Output shape. */
export function toOutput<T>(kind: keyof typeof TYPES, resource: object): T {
  return unpackAny<T>(packAny(TYPES[kind], resource));
}

/** Resources as proto3 JSON (Anys expanded), as Envoy's config_dump prints them. */
export function resourcesJson(r: ProxyResources): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  for (const kind of Object.keys(TYPES) as (keyof typeof TYPES)[]) {
    const type = lookupMessage(TYPES[kind])!;
    out[kind] = r[kind].map((x) => encodeProtoJson(type, toOutput<object>(kind, x)));
  }
  return out;
}
