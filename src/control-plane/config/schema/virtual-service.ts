/**
 * VirtualService (networking.istio.io), field for field as istio.io/latest/docs/reference/config/networking/virtual-service/,
 * with the rules of Istio's validation webhook (pkg/config/validation: validateVirtualService and friends).
 */
import { z } from 'zod';
import { duration, exportTo, hostname, int32, percent, port, portSelector, regex, stringMap, stringMatch, uint32 } from './common.ts';

export const destination = z.strictObject({
  host: hostname,
  subset: z.string().optional(),
  port: portSelector.optional(),
}).superRefine((d, ctx) => {
  if (d.subset !== undefined && !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(d.subset)) {
    ctx.addIssue({ code: 'custom', path: ['subset'], message: `subset name "${d.subset}" is invalid (a DNS-1123 label)` });
  }
});

const headerOperations = z.strictObject({ set: stringMap.optional(), add: stringMap.optional(), remove: z.array(z.string()).optional() });
export const headers = z.strictObject({ request: headerOperations.optional(), response: headerOperations.optional() });

const httpMatchRequest = z.strictObject({
  name: z.string().optional(),
  uri: stringMatch.optional(),
  scheme: stringMatch.optional(),
  method: stringMatch.optional(),
  authority: stringMatch.optional(),
  headers: z.record(z.string(), stringMatch).optional(),
  port: port.optional(),
  sourceLabels: stringMap.optional(),
  gateways: z.array(z.string()).optional(),
  queryParams: z.record(z.string(), stringMatch).optional(),
  ignoreUriCase: z.boolean().optional(),
  withoutHeaders: z.record(z.string(), stringMatch).optional(),
  sourceNamespace: z.string().optional(),
  statPrefix: z.string().optional(),
}).superRefine((m, ctx) => {
  // Istio: header names in matches must be lowercase (Envoy compares lowercased names).
  for (const field of ['headers', 'withoutHeaders'] as const) {
    for (const k of Object.keys(m[field] ?? {})) {
      if (k === '') ctx.addIssue({ code: 'custom', path: [field], message: 'header name must not be empty' });
      else if (k !== k.toLowerCase()) ctx.addIssue({ code: 'custom', path: [field, k], message: `header name "${k}" must be lowercase` });
    }
  }
});

const weight = int32.refine((w) => w >= 0, 'weight must not be negative');

const httpRouteDestination = z.strictObject({ destination, weight: weight.optional(), headers: headers.optional() });
const routeDestination = z.strictObject({ destination, weight: weight.optional() });

const httpRedirect = z.strictObject({
  uri: z.string().optional(),
  authority: z.string().optional(),
  port: port.optional(),
  derivePort: z.enum(['FROM_PROTOCOL_DEFAULT', 'FROM_REQUEST_PORT']).optional(),
  scheme: z.string().optional(),
  redirectCode: uint32.refine((c) => c >= 300 && c <= 399, 'redirectCode must be a 3xx status').optional(),
}).superRefine((r, ctx) => {
  if (r.port !== undefined && r.derivePort !== undefined) ctx.addIssue({ code: 'custom', message: 'only one of port and derivePort may be set' });
});

const httpDirectResponse = z.strictObject({
  status: uint32.refine((s) => s >= 200 && s <= 599, 'status must be in the range 200..599'),
  body: z.strictObject({ string: z.string().optional(), bytes: z.string().optional() }).optional(),
});

const httpRewrite = z.strictObject({
  uri: z.string().optional(),
  authority: z.string().optional(),
  uriRegexRewrite: z.strictObject({ match: regex, rewrite: z.string() }).optional(),
}).superRefine((r, ctx) => {
  if (r.uri !== undefined && r.uriRegexRewrite !== undefined) ctx.addIssue({ code: 'custom', message: 'only one of uri and uriRegexRewrite may be set' });
});

/** Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on policies, which Istio's retryOn accepts (plus status codes). */
export const RETRY_ON = new Set([
  '5xx', 'gateway-error', 'reset', 'reset-before-request', 'connect-failure', 'envoy-ratelimited', 'retriable-4xx', 'refused-stream',
  'retriable-status-codes', 'retriable-headers', 'http3-post-connect-failure',
  'cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable',
]);

const httpRetry = z.strictObject({
  attempts: int32.refine((a) => a >= 0, 'attempts must not be negative').optional(),
  perTryTimeout: duration().optional(),
  retryOn: z.string().superRefine((s, ctx) => {
    for (const p of s.split(',').map((x) => x.trim())) {
      if (!RETRY_ON.has(p) && !/^[1-5]\d\d$/.test(p)) ctx.addIssue({ code: 'custom', message: `"${p}" is not a valid retryOn policy or HTTP status code` });
    }
  }).optional(),
  retryRemoteLocalities: z.boolean().optional(),
  retryIgnorePreviousHosts: z.boolean().optional(),
  backoff: duration().optional(),
});

const httpFaultInjection = z.strictObject({
  delay: z.strictObject({
    fixedDelay: duration().optional(),
    exponentialDelay: duration().optional(),
    percentage: percent.optional(),
    percent: int32.refine((p) => p >= 0 && p <= 100, 'percent must be in the range 0..100').optional(),
  }).superRefine((d, ctx) => {
    if (d.fixedDelay === undefined && d.exponentialDelay === undefined) ctx.addIssue({ code: 'custom', message: 'delay needs fixedDelay' });
    if (d.exponentialDelay !== undefined) ctx.addIssue({ code: 'custom', path: ['exponentialDelay'], message: 'exponentialDelay is not supported yet (as in Istio)' });
  }).optional(),
  abort: z.strictObject({
    httpStatus: int32.refine((s) => s >= 200 && s <= 599, 'httpStatus must be in the range 200..599').optional(),
    grpcStatus: z.string().optional(),
    http2Error: z.string().optional(),
    percentage: percent.optional(),
  }).superRefine((a, ctx) => {
    const set = (['httpStatus', 'grpcStatus', 'http2Error'] as const).filter((k) => a[k] !== undefined);
    if (set.length !== 1) ctx.addIssue({ code: 'custom', message: set.length === 0 ? 'abort needs one of httpStatus, grpcStatus' : `only one of httpStatus, grpcStatus, http2Error may be set, found ${set.join(', ')}` });
  }).optional(),
}).superRefine((f, ctx) => {
  if (f.delay === undefined && f.abort === undefined) ctx.addIssue({ code: 'custom', message: 'fault needs delay or abort' });
});

const HTTP_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']);

const corsPolicy = z.strictObject({
  allowOrigins: z.array(stringMatch).optional(),
  allowOrigin: z.array(z.string()).optional(),
  allowMethods: z.array(z.string().refine((m) => HTTP_METHODS.has(m), { error: (iss) => `"${String(iss.input)}" is not a valid HTTP method` })).optional(),
  allowHeaders: z.array(z.string()).optional(),
  exposeHeaders: z.array(z.string()).optional(),
  maxAge: duration().optional(),
  allowCredentials: z.boolean().optional(),
  unmatchedPreflights: z.enum(['UNSPECIFIED', 'FORWARD', 'IGNORE']).optional(),
});

const httpMirrorPolicy = z.strictObject({ destination, percentage: percent.optional() });

const delegate = z.strictObject({ name: z.string().optional(), namespace: z.string().optional() });

const httpRoute = z.strictObject({
  name: z.string().optional(),
  match: z.array(httpMatchRequest).optional(),
  route: z.array(httpRouteDestination).optional(),
  redirect: httpRedirect.optional(),
  directResponse: httpDirectResponse.optional(),
  delegate: delegate.optional(),
  rewrite: httpRewrite.optional(),
  timeout: duration({ allowZero: true }).optional(),
  retries: httpRetry.optional(),
  fault: httpFaultInjection.optional(),
  mirror: destination.optional(),
  mirrors: z.array(httpMirrorPolicy).optional(),
  mirrorPercent: uint32.refine((p) => p <= 100, 'mirrorPercent must be in the range 0..100').optional(),
  mirrorPercentage: percent.optional(),
  corsPolicy: corsPolicy.optional(),
  headers: headers.optional(),
}).superRefine((r, ctx) => {
  const actions = (['route', 'redirect', 'directResponse', 'delegate'] as const).filter((k) => r[k] !== undefined && !(k === 'route' && r.route!.length === 0));
  if (actions.length === 0) ctx.addIssue({ code: 'custom', message: 'HTTP route, redirect, directResponse or delegate is required' });
  if (actions.length > 1) ctx.addIssue({ code: 'custom', message: `only one of route, redirect, directResponse, delegate may be set, found ${actions.join(', ')}` });
  if (r.redirect !== undefined || r.directResponse !== undefined) {
    for (const k of ['rewrite', 'mirror', 'mirrors'] as const) {
      if (r[k] !== undefined) ctx.addIssue({ code: 'custom', path: [k], message: `${k} cannot be set with ${r.redirect ? 'redirect' : 'directResponse'}` });
    }
  }
  if (r.mirror !== undefined && r.mirrors !== undefined) ctx.addIssue({ code: 'custom', path: ['mirrors'], message: 'only one of mirror and mirrors may be set' });
  checkWeights(r.route, ctx);
});

function checkWeights(route: readonly { weight?: number }[] | undefined, ctx: z.RefinementCtx): void {
  if (route === undefined || route.length < 2) return;
  const total = route.reduce((s, d) => s + (d.weight ?? 0), 0);
  if (total === 0) ctx.addIssue({ code: 'custom', path: ['route'], message: 'total destination weight is 0; at least one destination needs a weight' });
}

const tlsMatch = z.strictObject({
  sniHosts: z.array(hostname).min(1, 'sniHosts must have at least one host'),
  destinationSubnets: z.array(z.string()).optional(),
  port: port.optional(),
  sourceLabels: stringMap.optional(),
  gateways: z.array(z.string()).optional(),
  sourceNamespace: z.string().optional(),
});

const l4Match = z.strictObject({
  destinationSubnets: z.array(z.string()).optional(),
  port: port.optional(),
  sourceSubnet: z.string().optional(),
  sourceLabels: stringMap.optional(),
  gateways: z.array(z.string()).optional(),
  sourceNamespace: z.string().optional(),
});

const tlsRoute = z.strictObject({
  match: z.array(tlsMatch).min(1, 'TLS route must have at least one match'),
  route: z.array(routeDestination).min(1, 'TLS route is required'),
}).superRefine((r, ctx) => checkWeights(r.route, ctx));

const tcpRoute = z.strictObject({
  match: z.array(l4Match).optional(),
  route: z.array(routeDestination).min(1, 'TCP route is required'),
}).superRefine((r, ctx) => checkWeights(r.route, ctx));

export const virtualServiceSpec = z.strictObject({
  hosts: z.array(hostname).optional(),
  gateways: z.array(z.string().min(1)).optional(),
  http: z.array(httpRoute).optional(),
  tls: z.array(tlsRoute).optional(),
  tcp: z.array(tcpRoute).optional(),
  exportTo: exportTo.optional(),
}).superRefine((vs, ctx) => {
  const hosts = vs.hosts ?? [];
  const isDelegate = hosts.length === 0;
  // Istio: a VirtualService without hosts is a delegate; it is bound to no gateway and may not delegate further.
  if (isDelegate && (vs.gateways?.length ?? 0) > 0) ctx.addIssue({ code: 'custom', path: ['hosts'], message: 'virtual service must have at least one host (a delegate VirtualService has neither hosts nor gateways)' });
  if (isDelegate) vs.http?.forEach((r, i) => r.delegate && ctx.addIssue({ code: 'custom', path: ['http', i, 'delegate'], message: 'a delegate VirtualService cannot delegate further' }));
  if (!vs.http?.length && !vs.tcp?.length && !vs.tls?.length) ctx.addIssue({ code: 'custom', message: 'http, tcp or tls must be provided in virtual service' });
  const gateways = vs.gateways ?? [];
  const appliesToMesh = gateways.length === 0 || gateways.includes('mesh');
  hosts.forEach((h, i) => {
    if (appliesToMesh && h === '*') ctx.addIssue({ code: 'custom', path: ['hosts', i], message: 'wildcard host * is not allowed for virtual services bound to the mesh gateway' });
  });
  // Istio: every SNI host of a TLS match must be matched by one of the VirtualService's hosts.
  vs.tls?.forEach((r, i) => r.match.forEach((m, j) => m.sniHosts.forEach((sni, k) => {
    if (!hosts.some((h) => hostMatchesWildcard(h, sni) || hostMatchesWildcard(sni, h))) {
      ctx.addIssue({ code: 'custom', path: ['tls', i, 'match', j, 'sniHosts', k], message: `the SNI host "${sni}" is not a match for any host in the virtual service` });
    }
  })));
});

function hostMatchesWildcard(pattern: string, host: string): boolean {
  if (pattern === '*') return true;
  if (pattern.startsWith('*.')) return host.endsWith(pattern.slice(1)) || host === pattern;
  return pattern === host;
}

export type VirtualServiceSpec = z.output<typeof virtualServiceSpec>;
export type HTTPRoute = z.output<typeof httpRoute>;
export type HTTPMatchRequest = z.output<typeof httpMatchRequest>;
export type HTTPRouteDestination = z.output<typeof httpRouteDestination>;
export type RouteDestination = z.output<typeof routeDestination>;
export type Destination = z.output<typeof destination>;
export type TLSRoute = z.output<typeof tlsRoute>;
export type TCPRoute = z.output<typeof tcpRoute>;
export type Headers = z.output<typeof headers>;
