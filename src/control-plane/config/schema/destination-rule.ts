/**
 * DestinationRule (networking.istio.io), as istio.io/latest/docs/reference/config/networking/destination-rule/,
 * with the rules of Istio's validateDestinationRule / validateTrafficPolicy.
 */
import { z } from 'zod';
import { duration, exportTo, hostname, int32, isDns1123Label, port, portSelector, stringMap, uint32 } from './common.ts';

const consistentHash = z.strictObject({
  httpHeaderName: z.string().optional(),
  httpCookie: z.strictObject({ name: z.string().min(1, 'cookie name is required'), path: z.string().optional(), ttl: duration({ allowZero: true }).optional(), attributes: z.array(z.strictObject({ name: z.string(), value: z.string().optional() })).optional() }).optional(),
  useSourceIp: z.boolean().optional(),
  httpQueryParameterName: z.string().optional(),
  ringHash: z.strictObject({ minimumRingSize: uint32.optional() }).optional(),
  maglev: z.strictObject({ tableSize: uint32.optional() }).optional(),
  minimumRingSize: uint32.optional(),
}).superRefine((h, ctx) => {
  const keys = (['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName'] as const).filter((k) => h[k] !== undefined);
  if (keys.length !== 1) ctx.addIssue({ code: 'custom', message: keys.length === 0 ? 'consistentHash needs one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName' : `only one hash key may be set, found ${keys.join(', ')}` });
  if (h.ringHash !== undefined && h.maglev !== undefined) ctx.addIssue({ code: 'custom', message: 'only one of ringHash and maglev may be set' });
});

const localityLbSetting = z.strictObject({
  distribute: z.array(z.strictObject({ from: z.string().optional(), to: z.record(z.string(), uint32).optional() })).optional(),
  failover: z.array(z.strictObject({ from: z.string().optional(), to: z.string().optional() })).optional(),
  failoverPriority: z.array(z.string()).optional(),
  enabled: z.boolean().optional(),
});

export const loadBalancerSettings = z.strictObject({
  simple: z.enum(['UNSPECIFIED', 'LEAST_CONN', 'RANDOM', 'PASSTHROUGH', 'ROUND_ROBIN', 'LEAST_REQUEST']).optional(),
  consistentHash: consistentHash.optional(),
  localityLbSetting: localityLbSetting.optional(),
  warmupDurationSecs: duration().optional(),
}).superRefine((lb, ctx) => {
  if (lb.simple !== undefined && lb.consistentHash !== undefined) ctx.addIssue({ code: 'custom', message: 'only one of simple and consistentHash may be set' });
});

const positive = int32.refine((n) => n >= 0, 'must not be negative');

export const connectionPoolSettings = z.strictObject({
  tcp: z.strictObject({
    maxConnections: positive.optional(),
    connectTimeout: duration().optional(),
    tcpKeepalive: z.strictObject({ probes: uint32.optional(), time: duration().optional(), interval: duration().optional() }).optional(),
    maxConnectionDuration: duration().optional(),
    idleTimeout: duration().optional(),
  }).optional(),
  http: z.strictObject({
    http1MaxPendingRequests: positive.optional(),
    http2MaxRequests: positive.optional(),
    maxRequestsPerConnection: positive.optional(),
    maxRetries: positive.optional(),
    idleTimeout: duration().optional(),
    h2UpgradePolicy: z.enum(['DEFAULT', 'DO_NOT_UPGRADE', 'UPGRADE']).optional(),
    useClientProtocol: z.boolean().optional(),
    maxConcurrentStreams: positive.optional(),
  }).optional(),
});

const hundred = (what: string) => int32.refine((n) => n >= 0 && n <= 100, `${what} must be in the range 0..100`);

export const outlierDetection = z.strictObject({
  splitExternalLocalOriginErrors: z.boolean().optional(),
  consecutiveLocalOriginFailures: uint32.optional(),
  consecutiveGatewayErrors: uint32.optional(),
  consecutive5xxErrors: uint32.optional(),
  consecutiveErrors: int32.optional(),
  interval: duration().optional(),
  baseEjectionTime: duration().optional(),
  maxEjectionPercent: hundred('maxEjectionPercent').optional(),
  minHealthPercent: hundred('minHealthPercent').optional(),
});

export const clientTlsSettings = z.strictObject({
  mode: z.enum(['DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL']).optional(),
  clientCertificate: z.string().optional(),
  privateKey: z.string().optional(),
  caCertificates: z.string().optional(),
  credentialName: z.string().optional(),
  subjectAltNames: z.array(z.string()).optional(),
  sni: z.string().optional(),
  insecureSkipVerify: z.boolean().optional(),
  caCrl: z.string().optional(),
}).superRefine((t, ctx) => {
  if (t.mode === 'MUTUAL' && t.credentialName === undefined) {
    if (!t.clientCertificate) ctx.addIssue({ code: 'custom', path: ['clientCertificate'], message: 'client certificate required for mutual tls' });
    if (!t.privateKey) ctx.addIssue({ code: 'custom', path: ['privateKey'], message: 'private key required for mutual tls' });
  }
  if (t.mode === 'ISTIO_MUTUAL') {
    for (const k of ['clientCertificate', 'privateKey', 'caCertificates', 'credentialName', 'subjectAltNames'] as const) {
      if (t[k] !== undefined) ctx.addIssue({ code: 'custom', path: [k], message: `${k} cannot be set with ISTIO_MUTUAL (the mesh provides it)` });
    }
  }
});

const portTrafficPolicy = z.strictObject({
  port: portSelector.optional(),
  loadBalancer: loadBalancerSettings.optional(),
  connectionPool: connectionPoolSettings.optional(),
  outlierDetection: outlierDetection.optional(),
  tls: clientTlsSettings.optional(),
}).superRefine((p, ctx) => {
  if (p.port?.number === undefined) ctx.addIssue({ code: 'custom', path: ['port'], message: 'portLevelSettings must specify port.number' });
});

export const trafficPolicy = z.strictObject({
  loadBalancer: loadBalancerSettings.optional(),
  connectionPool: connectionPoolSettings.optional(),
  outlierDetection: outlierDetection.optional(),
  tls: clientTlsSettings.optional(),
  portLevelSettings: z.array(portTrafficPolicy).optional(),
  tunnel: z.strictObject({ protocol: z.string().optional(), targetHost: z.string(), targetPort: port }).optional(),
  proxyProtocol: z.strictObject({ version: z.enum(['V1', 'V2']).optional() }).optional(),
}).superRefine((t, ctx) => {
  const seen = new Map<number, number>();
  t.portLevelSettings?.forEach((p, i) => {
    const n = p.port?.number;
    if (n === undefined) return;
    if (seen.has(n)) ctx.addIssue({ code: 'custom', path: ['portLevelSettings', i, 'port', 'number'], message: `duplicate portLevelSettings for port ${n}` });
    seen.set(n, i);
  });
});

const subset = z.strictObject({
  name: z.string().superRefine((n, ctx) => {
    if (!isDns1123Label(n)) ctx.addIssue({ code: 'custom', message: `subset name "${n}" is invalid (a DNS-1123 label: lowercase letters, digits and "-")` });
  }),
  labels: stringMap.optional(),
  trafficPolicy: trafficPolicy.optional(),
});

export const destinationRuleSpec = z.strictObject({
  host: hostname,
  trafficPolicy: trafficPolicy.optional(),
  subsets: z.array(subset).optional(),
  exportTo: exportTo.optional(),
  workloadSelector: z.strictObject({ matchLabels: stringMap.optional() }).optional(),
}).superRefine((dr, ctx) => {
  const seen = new Set<string>();
  dr.subsets?.forEach((s, i) => {
    if (seen.has(s.name)) ctx.addIssue({ code: 'custom', path: ['subsets', i, 'name'], message: `duplicate subset name "${s.name}"` });
    seen.add(s.name);
  });
});

export type DestinationRuleSpec = z.output<typeof destinationRuleSpec>;
export type TrafficPolicy = z.output<typeof trafficPolicy>;
export type Subset = z.output<typeof subset>;
