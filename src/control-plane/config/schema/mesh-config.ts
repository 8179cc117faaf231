/**
 * Istio's mesh config (istio.mesh.v1alpha1.MeshConfig) as istiod reads it: the YAML string under key `mesh` of the
 * ConfigMap `istio` in namespace `istio-system`. Sloop applies `extensionProviders` (the ext_authz providers that
 * AuthorizationPolicy CUSTOM names) and validates those in full; every other MeshConfig field is kept as written
 * and not applied. Spec: istio.io/latest/docs/reference/config/istio.mesh.v1alpha1/ (MeshConfig.ExtensionProvider)
 * and Istio's ValidateExtensionProviders.
 */
import { z } from 'zod';
import { checkWildcardDomain, duration, isDns1123Label, port, stringMap, uint32 } from './common.ts';

/** Where istiod reads its mesh config from. */
export const MESH_CONFIGMAP_NAMESPACE = 'istio-system';
export const MESH_CONFIGMAP_NAME = 'istio';
export const MESH_CONFIGMAP_KEY = 'mesh';

/** envoy.type.v3.StatusCode values: the codes `statusOnError` may name (Istio parses it into that enum). */
const ENVOY_STATUS_CODES = new Set([
  100, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408,
  409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 423, 424, 426, 428, 429, 431, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
]);

/** `[<Namespace>/]<Hostname>`: a fully qualified host of a Service or ServiceEntry, optionally namespace-qualified. */
const providerService = z.string().superRefine((s, ctx) => {
  const slash = s.indexOf('/');
  const ns = slash >= 0 ? s.slice(0, slash) : undefined;
  const host = slash >= 0 ? s.slice(slash + 1) : s;
  if (ns !== undefined && !isDns1123Label(ns)) ctx.addIssue({ code: 'custom', message: `service "${s}": namespace "${ns}" is invalid (format [<Namespace>/]<Hostname>)` });
  const problem = host.includes('*') ? `service "${s}": the host may not be a wildcard` : checkWildcardDomain(host);
  if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
});

/** `statusOnError`: an HTTP status as a string, one Envoy's StatusCode enum knows. */
const statusOnError = z.string().superRefine((s, ctx) => {
  if (!/^[0-9]+$/.test(s) || !ENVOY_STATUS_CODES.has(Number(s))) ctx.addIssue({ code: 'custom', message: `statusOnError "${s}" is not an HTTP status Envoy supports (for example "403", "500", "503")` });
});

const requestBody = z.strictObject({
  maxRequestBytes: uint32.optional(),
  allowPartialMessage: z.boolean().optional(),
  packAsBytes: z.boolean().optional(),
});

/** MeshConfig.ExtensionProvider.EnvoyExternalAuthorizationGrpcProvider. */
export const envoyExtAuthzGrpc = z.strictObject({
  service: providerService,
  port,
  /** Default 600s (Istio's). */
  timeout: duration().optional(),
  failOpen: z.boolean().optional(),
  statusOnError: statusOnError.optional(),
  includeRequestBodyInCheck: requestBody.optional(),
});
export type EnvoyExtAuthzGrpcProvider = z.output<typeof envoyExtAuthzGrpc>;

/** MeshConfig.ExtensionProvider.EnvoyExternalAuthorizationHttpProvider (validated; translation does not support it). */
export const envoyExtAuthzHttp = z.strictObject({
  service: providerService,
  port,
  timeout: duration().optional(),
  pathPrefix: z.string().optional(),
  failOpen: z.boolean().optional(),
  statusOnError: statusOnError.optional(),
  includeHeadersInCheck: z.array(z.string()).optional(),
  includeRequestHeadersInCheck: z.array(z.string()).optional(),
  includeAdditionalHeadersInCheck: stringMap.optional(),
  includeRequestBodyInCheck: requestBody.optional(),
  headersToUpstreamOnAllow: z.array(z.string()).optional(),
  headersToDownstreamOnDeny: z.array(z.string()).optional(),
  headersToDownstreamOnAllow: z.array(z.string()).optional(),
});
export type EnvoyExtAuthzHttpProvider = z.output<typeof envoyExtAuthzHttp>;

/** The provider kinds of MeshConfig.ExtensionProvider (its `provider` oneof), in Istio's JSON spelling. */
export const EXTENSION_PROVIDER_KINDS = [
  'envoyExtAuthzHttp', 'envoyExtAuthzGrpc', 'zipkin', 'lightstep', 'datadog', 'stackdriver', 'opencensus', 'skywalking', 'opentelemetry',
  'prometheus', 'envoyFileAccessLog', 'envoyHttpAls', 'envoyTcpAls', 'envoyOtelAls',
] as const;

const otherProvider = z.record(z.string(), z.unknown()).optional();

/** MeshConfig.ExtensionProvider: a unique name and exactly one provider. Non-authorization providers are kept as written. */
export const extensionProvider = z.strictObject({
  name: z.string().min(1, 'name must not be empty'),
  envoyExtAuthzGrpc: envoyExtAuthzGrpc.optional(),
  envoyExtAuthzHttp: envoyExtAuthzHttp.optional(),
  zipkin: otherProvider,
  lightstep: otherProvider,
  datadog: otherProvider,
  stackdriver: otherProvider,
  opencensus: otherProvider,
  skywalking: otherProvider,
  opentelemetry: otherProvider,
  prometheus: otherProvider,
  envoyFileAccessLog: otherProvider,
  envoyHttpAls: otherProvider,
  envoyTcpAls: otherProvider,
  envoyOtelAls: otherProvider,
}).superRefine((p, ctx) => {
  const set = EXTENSION_PROVIDER_KINDS.filter((k) => p[k] !== undefined);
  if (set.length === 0) ctx.addIssue({ code: 'custom', message: `extension provider "${p.name}" needs one provider (envoyExtAuthzGrpc, envoyExtAuthzHttp, …)` });
  if (set.length > 1) ctx.addIssue({ code: 'custom', message: `extension provider "${p.name}" may set only one provider, found ${set.join(', ')}` });
});
export type ExtensionProvider = z.output<typeof extensionProvider>;

/** MeshConfig.ProxyPathNormalization: how inbound sidecars normalize request paths (Istio's default BASE). */
export const PATH_NORMALIZATIONS = ['NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'] as const;

/**
 * MeshConfig: `extensionProviders` validated (names unique), `rootNamespace` read, `pathNormalization` applied;
 * every other field kept as written (Sloop does not apply it).
 */
export const meshConfig = z.looseObject({
  extensionProviders: z.array(extensionProvider).optional(),
  rootNamespace: z.string().optional(),
  pathNormalization: z.strictObject({ normalization: z.enum(PATH_NORMALIZATIONS).optional() }).optional(),
}).superRefine((m, ctx) => {
  const seen = new Set<string>();
  (m.extensionProviders ?? []).forEach((p, i) => {
    if (seen.has(p.name)) ctx.addIssue({ code: 'custom', path: ['extensionProviders', i, 'name'], message: `duplicate extension provider name "${p.name}"` });
    seen.add(p.name);
  });
});
export type MeshConfig = z.output<typeof meshConfig>;

/** The ConfigMap's own fields (kubectl's strict field validation); `data` values are strings. */
export const configMapTopLevel = new Set(['apiVersion', 'kind', 'metadata', 'data', 'binaryData', 'immutable']);
export const configMapData = stringMap;
