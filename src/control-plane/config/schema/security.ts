/**
 * Istio's security APIs (security.istio.io v1 / v1beta1): PeerAuthentication, AuthorizationPolicy and
 * RequestAuthentication, as istio.io/latest/docs/reference/config/security/, with the rules of Istio's validation
 * webhook (ValidatePeerAuthentication, ValidateAuthorizationPolicy, ValidateRequestAuthentication) and of the
 * CRDs' own schema checks. Fields Sloop cannot enforce yet (`targetRef`, path templates) are errors that say so:
 * a security policy is never accepted and then silently not applied.
 */
import { z } from 'zod';
import { duration, stringMap } from './common.ts';

const MTLS_MODES = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'] as const;
export type MtlsMode = (typeof MTLS_MODES)[number];

/** Istio's WorkloadSelector for the security kinds (`selector.matchLabels`). */
const policySelector = z.strictObject({
  matchLabels: stringMap.optional(),
}).superRefine((s, ctx) => {
  // The CRDs: keys and values of matchLabels may not contain a wildcard, and a key is not empty.
  for (const [k, v] of Object.entries(s.matchLabels ?? {})) {
    if (k === '') ctx.addIssue({ code: 'custom', path: ['matchLabels'], message: 'label key must not be empty' });
    if (k.includes('*') || v.includes('*')) ctx.addIssue({ code: 'custom', path: ['matchLabels', k], message: 'wildcard is not supported in selector' });
  }
});

const policyTargetReference = z.strictObject({
  group: z.string().optional(),
  kind: z.string(),
  name: z.string(),
  namespace: z.string().optional(),
});

/** `targetRef` / `targetRefs`: attach to Gateways and Services (Istio ambient/gateway); Sloop has neither. */
function rejectTargetRefs(s: { targetRef?: unknown; targetRefs?: unknown[]; selector?: unknown }, ctx: z.RefinementCtx): void {
  if (s.targetRef !== undefined && s.targetRefs !== undefined) ctx.addIssue({ code: 'custom', path: ['targetRefs'], message: 'only one of targetRefs or targetRef can be set' });
  if ((s.targetRef !== undefined || s.targetRefs !== undefined) && s.selector !== undefined) {
    ctx.addIssue({ code: 'custom', path: [s.targetRef !== undefined ? 'targetRef' : 'targetRefs'], message: 'only one of targetRefs or workloadSelector can be set' });
  }
  if (s.targetRef !== undefined) ctx.addIssue({ code: 'custom', path: ['targetRef'], message: 'targetRef is not supported by Sloop (it attaches policy to Gateways and waypoints, which Sloop does not run); use selector' });
  if (s.targetRefs !== undefined) ctx.addIssue({ code: 'custom', path: ['targetRefs'], message: 'targetRefs is not supported by Sloop (it attaches policy to Gateways and waypoints, which Sloop does not run); use selector' });
}

// ---------------------------------------------------------------------------------------------------------------
// PeerAuthentication

const mutualTls = z.strictObject({ mode: z.enum(MTLS_MODES).optional() });

export const peerAuthenticationSpec = z.strictObject({
  selector: policySelector.optional(),
  mtls: mutualTls.optional(),
  // Keys are workload (target) ports; YAML gives them as strings.
  portLevelMtls: z.record(z.string(), mutualTls).optional(),
}).superRefine((pa, ctx) => {
  if (pa.portLevelMtls === undefined) return;
  const hasSelector = Object.keys(pa.selector?.matchLabels ?? {}).length > 0;
  if (!hasSelector) ctx.addIssue({ code: 'custom', path: ['portLevelMtls'], message: 'mesh/namespace peer authentication cannot have port level mTLS (portLevelMtls needs a selector)' });
  if (Object.keys(pa.portLevelMtls).length === 0) ctx.addIssue({ code: 'custom', path: ['portLevelMtls'], message: 'port level mTLS, if defined, must have at least one element' });
  for (const key of Object.keys(pa.portLevelMtls)) {
    const n = /^\d+$/.test(key) ? Number(key) : NaN;
    if (!(n >= 1 && n <= 65535)) ctx.addIssue({ code: 'custom', path: ['portLevelMtls', key], message: `port "${key}" must be a number in the range 1..65535` });
  }
});
export type PeerAuthenticationSpec = z.output<typeof peerAuthenticationSpec>;

// ---------------------------------------------------------------------------------------------------------------
// AuthorizationPolicy

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** An IP address or CIDR, as Istio's security.ValidateIPs. Returns a problem or undefined. */
export function checkIpOrCidr(v: string): string | undefined {
  const [ip, bits, extra] = v.split('/');
  if (extra !== undefined) return `invalid IP address or CIDR "${v}"`;
  const v4 = IPV4.test(ip);
  const v6 = !v4 && isIpv6(ip);
  if (!v4 && !v6) return `invalid IP address or CIDR "${v}"`;
  if (bits !== undefined) {
    const n = /^\d+$/.test(bits) ? Number(bits) : NaN;
    if (!(n >= 0 && n <= (v4 ? 32 : 128))) return `invalid IP address or CIDR "${v}"`;
  }
  return undefined;
}

function isIpv6(s: string): boolean {
  if (!/^[0-9a-fA-F:.]+$/.test(s) || !s.includes(':')) return false;
  const dbl = s.split('::');
  if (dbl.length > 2) return false;
  const groups = (part: string) => (part === '' ? [] : part.split(':'));
  const all = [...groups(dbl[0]), ...(dbl.length === 2 ? groups(dbl[1]) : [])];
  let count = all.length;
  if (all.length > 0 && all[all.length - 1].includes('.')) {
    if (!IPV4.test(all[all.length - 1])) return false;
    count += 1;
    all.pop();
  }
  if (!all.every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return false;
  return dbl.length === 2 ? count < 8 : count === 8;
}

const ipList = z.array(z.string().superRefine((v, ctx) => {
  const p = checkIpOrCidr(v);
  if (p) ctx.addIssue({ code: 'custom', message: p });
}));

/** Operation ports are strings in the API ("8080"); Istio's ValidatePorts. */
const portList = z.array(z.string().superRefine((v, ctx) => {
  const n = /^\d+$/.test(v) ? Number(v) : NaN;
  if (!(n >= 0 && n <= 65535)) ctx.addIssue({ code: 'custom', message: `port must be in the range [0, 65535], found "${v}"` });
}));

/** Paths: Sloop implements Istio's exact, `prefix*`, `*suffix` and `*`; the `{*}` / `{**}` templates are not. */
const pathList = z.array(z.string().superRefine((v, ctx) => {
  if (/\{\*\*?\}/.test(v)) ctx.addIssue({ code: 'custom', message: `path template "${v}" ({*} / {**}) is not supported by Sloop; use exact, "prefix*" or "*suffix" paths` });
}));

const source = z.strictObject({
  principals: z.array(z.string()).optional(),
  notPrincipals: z.array(z.string()).optional(),
  requestPrincipals: z.array(z.string()).optional(),
  notRequestPrincipals: z.array(z.string()).optional(),
  namespaces: z.array(z.string()).optional(),
  notNamespaces: z.array(z.string()).optional(),
  serviceAccounts: z.array(z.string()).optional(),
  notServiceAccounts: z.array(z.string()).optional(),
  ipBlocks: ipList.optional(),
  notIpBlocks: ipList.optional(),
  remoteIpBlocks: ipList.optional(),
  notRemoteIpBlocks: ipList.optional(),
}).superRefine((s, ctx) => {
  if (Object.values(s).every((v) => v === undefined || v.length === 0)) ctx.addIssue({ code: 'custom', message: '`from.source` must not be empty' });
  for (const k of ['serviceAccounts', 'notServiceAccounts'] as const) {
    (s[k] ?? []).forEach((sa, i) => {
      if (sa.split('/').length !== 2 || sa.split('/').some((x) => x === '')) ctx.addIssue({ code: 'custom', path: [k, i], message: `service account "${sa}" must be "namespace/name"` });
    });
  }
  const both = (a: unknown[] | undefined, b: unknown[] | undefined) => (a?.length ?? 0) > 0 && (b?.length ?? 0) > 0;
  if (both(s.serviceAccounts, s.principals) || both(s.serviceAccounts, s.notPrincipals) || both(s.notServiceAccounts, s.principals) || both(s.notServiceAccounts, s.notPrincipals)) {
    ctx.addIssue({ code: 'custom', message: 'cannot set serviceAccounts and principals' });
  }
});

const operation = z.strictObject({
  hosts: z.array(z.string()).optional(),
  notHosts: z.array(z.string()).optional(),
  ports: portList.optional(),
  notPorts: portList.optional(),
  methods: z.array(z.string()).optional(),
  notMethods: z.array(z.string()).optional(),
  paths: pathList.optional(),
  notPaths: pathList.optional(),
}).superRefine((o, ctx) => {
  if (Object.values(o).every((v) => v === undefined || v.length === 0)) ctx.addIssue({ code: 'custom', message: '`to.operation` must not be empty' });
});

/** `when` keys Istio accepts (security.ValidateAttribute). */
const SIMPLE_KEYS = new Set([
  'source.ip', 'remote.ip', 'source.namespace', 'source.principal', 'source.serviceAccount',
  'request.auth.principal', 'request.auth.audiences', 'request.auth.presenter',
  'destination.ip', 'destination.port', 'connection.sni',
]);

/** Checks a `when` key and its values; returns problems (empty when valid). */
export function checkCondition(key: string, values: readonly string[]): string[] {
  if (key.startsWith('experimental.envoy.filters.')) return [`when key "${key}" (experimental Envoy filter metadata) is not supported by Sloop`];
  if (key.startsWith('request.headers[')) {
    if (!/^request\.headers\[[^\[\]]+\]$/.test(key)) return [`invalid header key "${key}" (expected request.headers[Name])`];
    return [];
  }
  if (key.startsWith('request.auth.claims[')) {
    if (!/^request\.auth\.claims(\[[^\[\]]+\])+$/.test(key)) return [`invalid claim key "${key}" (expected request.auth.claims[name] or request.auth.claims[a][b])`];
    return [];
  }
  if (!SIMPLE_KEYS.has(key)) return [`unknown attribute: ${key}`];
  const out: string[] = [];
  if (key === 'source.ip' || key === 'remote.ip' || key === 'destination.ip') {
    for (const v of values) {
      const p = checkIpOrCidr(v);
      if (p) out.push(p);
    }
  }
  if (key === 'destination.port') {
    for (const v of values) {
      const n = /^\d+$/.test(v) ? Number(v) : NaN;
      if (!(n >= 0 && n <= 65535)) out.push(`port must be in the range [0, 65535], found "${v}"`);
    }
  }
  return out;
}

const condition = z.strictObject({
  key: z.string(),
  values: z.array(z.string()).optional(),
  notValues: z.array(z.string()).optional(),
}).superRefine((c, ctx) => {
  if (c.key === '') {
    ctx.addIssue({ code: 'custom', path: ['key'], message: '`key` must not be empty' });
    return;
  }
  if ((c.values?.length ?? 0) === 0 && (c.notValues?.length ?? 0) === 0) {
    ctx.addIssue({ code: 'custom', message: `at least one of \`values\` or \`notValues\` must be set for key ${c.key}` });
    return;
  }
  for (const p of checkCondition(c.key, [...(c.values ?? []), ...(c.notValues ?? [])])) ctx.addIssue({ code: 'custom', path: ['key'], message: p });
});

const rule = z.strictObject({
  from: z.array(z.strictObject({ source })).optional(),
  to: z.array(z.strictObject({ operation })).optional(),
  when: z.array(condition).optional(),
}).superRefine((r, ctx) => {
  if (r.from !== undefined && r.from.length === 0) ctx.addIssue({ code: 'custom', path: ['from'], message: '`from` must not be empty, but found empty list' });
  if (r.to !== undefined && r.to.length === 0) ctx.addIssue({ code: 'custom', path: ['to'], message: '`to` must not be empty, but found empty list' });
});

export const authorizationPolicySpec = z.strictObject({
  selector: policySelector.optional(),
  targetRef: policyTargetReference.optional(),
  targetRefs: z.array(policyTargetReference).optional(),
  rules: z.array(rule).optional(),
  action: z.enum(['ALLOW', 'DENY', 'AUDIT', 'CUSTOM']).optional(),
  provider: z.strictObject({ name: z.string() }).optional(),
}).superRefine((ap, ctx) => {
  rejectTargetRefs(ap, ctx);
  if (ap.action === 'CUSTOM') {
    if (ap.provider === undefined || ap.provider.name === '') ctx.addIssue({ code: 'custom', path: ['provider'], message: 'must set provider for CUSTOM action' });
  } else if (ap.provider !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['provider'], message: '`provider` must not be with non CUSTOM action' });
  }
});
export type AuthorizationPolicySpec = z.output<typeof authorizationPolicySpec>;
export type AuthorizationRule = z.output<typeof rule>;
export type AuthorizationSource = z.output<typeof source>;
export type AuthorizationOperation = z.output<typeof operation>;
export type AuthorizationCondition = z.output<typeof condition>;

// ---------------------------------------------------------------------------------------------------------------
// RequestAuthentication

const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;

function checkJwksUri(uri: string): string | undefined {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    return `jwksUri "${uri}" is not a valid URL`;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return `jwksUri "${uri}" must use http or https`;
  if (u.hostname === '') return `jwksUri "${uri}" has no host`;
  return undefined;
}

const jwtRule = z.strictObject({
  issuer: z.string(),
  audiences: z.array(z.string().min(1, 'audience must be a non-empty string')).optional(),
  jwksUri: z.string().superRefine((u, ctx) => {
    const p = checkJwksUri(u);
    if (p) ctx.addIssue({ code: 'custom', message: p });
  }).optional(),
  jwks: z.string().superRefine((j, ctx) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(j);
    } catch {
      ctx.addIssue({ code: 'custom', message: 'jwks must be a JSON Web Key Set (JSON with a "keys" list)' });
      return;
    }
    if (typeof parsed !== 'object' || parsed === null || !Array.isArray((parsed as { keys?: unknown }).keys)) ctx.addIssue({ code: 'custom', message: 'jwks must be a JSON Web Key Set (JSON with a "keys" list)' });
  }).optional(),
  fromHeaders: z.array(z.strictObject({
    name: z.string().superRefine((n, ctx) => {
      if (n === '') ctx.addIssue({ code: 'custom', message: 'location header name must be non-empty' });
      else if (!HEADER_NAME.test(n)) ctx.addIssue({ code: 'custom', message: `invalid header name "${n}"` });
    }),
    prefix: z.string().optional(),
  })).optional(),
  fromParams: z.array(z.string().min(1, 'location query must be non-empty')).optional(),
  fromCookies: z.array(z.string().min(1, 'cookie name must be non-empty')).optional(),
  outputPayloadToHeader: z.string().superRefine((n, ctx) => {
    if (!HEADER_NAME.test(n)) ctx.addIssue({ code: 'custom', message: `invalid header name "${n}"` });
  }).optional(),
  forwardOriginalToken: z.boolean().optional(),
  outputClaimToHeaders: z.array(z.strictObject({
    header: z.string().superRefine((n, ctx) => {
      if (n === '') ctx.addIssue({ code: 'custom', message: 'outputClaimToHeaders header must be non-empty' });
      else if (!HEADER_NAME.test(n)) ctx.addIssue({ code: 'custom', message: `invalid header name "${n}"` });
    }),
    claim: z.string().min(1, 'outputClaimToHeaders claim must be non-empty'),
  })).optional(),
  timeout: duration().optional(),
}).superRefine((r, ctx) => {
  if (r.issuer === '') ctx.addIssue({ code: 'custom', path: ['issuer'], message: 'issuer must be set' });
});
export type JwtRule = z.output<typeof jwtRule>;

export const requestAuthenticationSpec = z.strictObject({
  selector: policySelector.optional(),
  targetRef: policyTargetReference.optional(),
  targetRefs: z.array(policyTargetReference).optional(),
  jwtRules: z.array(jwtRule).optional(),
}).superRefine((ra, ctx) => rejectTargetRefs(ra, ctx));
export type RequestAuthenticationSpec = z.output<typeof requestAuthenticationSpec>;
