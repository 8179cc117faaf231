/**
 * Kubernetes objects Sloop reads: ObjectMeta, core/v1 Service (validated as the API server would, for the fields
 * the mesh uses), and the pod templates of workload kinds (Deployment, StatefulSet, …), read shallowly for their
 * labels. Protocol selection follows Istio's kube.ConvertProtocol.
 */
import { z } from 'zod';
import { isDns1123Label, stringMap } from './common.ts';

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export const objectMeta = z.strictObject({
  name: z.string().superRefine((n, ctx) => {
    if (n.length > 253 || !DNS1123_SUBDOMAIN.test(n)) ctx.addIssue({ code: 'custom', message: `name "${n}" is invalid (lowercase letters, digits, "-" and ".")` });
  }),
  namespace: z.string().superRefine((n, ctx) => {
    if (!isDns1123Label(n)) ctx.addIssue({ code: 'custom', message: `namespace "${n}" is invalid (a DNS-1123 label)` });
  }).optional(),
  labels: stringMap.optional(),
  annotations: stringMap.optional(),
  generateName: z.string().optional(),
  uid: z.string().optional(),
  resourceVersion: z.string().optional(),
  generation: z.number().int().optional(),
  creationTimestamp: z.union([z.string(), z.null()]).optional(),
  deletionTimestamp: z.string().optional(),
  deletionGracePeriodSeconds: z.number().int().optional(),
  ownerReferences: z.array(z.record(z.string(), z.unknown())).optional(),
  finalizers: z.array(z.string()).optional(),
  managedFields: z.array(z.record(z.string(), z.unknown())).optional(),
  selfLink: z.string().optional(),
});
export type ObjectMeta = z.output<typeof objectMeta>;

const servicePort = z.strictObject({
  name: z.string().optional(),
  protocol: z.enum(['TCP', 'UDP', 'SCTP']).optional(),
  appProtocol: z.string().optional(),
  port: z.number().int().min(1, 'port must be in the range 1..65535').max(65535, 'port must be in the range 1..65535'),
  targetPort: z.union([z.number().int().min(1).max(65535), z.string().min(1)]).optional(),
  nodePort: z.number().int().optional(),
});

export const serviceSpec = z.strictObject({
  ports: z.array(servicePort).optional(),
  selector: stringMap.optional(),
  type: z.enum(['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName']).optional(),
  clusterIP: z.string().optional(),
  clusterIPs: z.array(z.string()).optional(),
  externalIPs: z.array(z.string()).optional(),
  externalName: z.string().optional(),
  externalTrafficPolicy: z.enum(['Cluster', 'Local']).optional(),
  internalTrafficPolicy: z.enum(['Cluster', 'Local']).optional(),
  healthCheckNodePort: z.number().int().optional(),
  ipFamilies: z.array(z.enum(['IPv4', 'IPv6'])).optional(),
  ipFamilyPolicy: z.enum(['SingleStack', 'PreferDualStack', 'RequireDualStack']).optional(),
  loadBalancerClass: z.string().optional(),
  loadBalancerIP: z.string().optional(),
  loadBalancerSourceRanges: z.array(z.string()).optional(),
  allocateLoadBalancerNodePorts: z.boolean().optional(),
  publishNotReadyAddresses: z.boolean().optional(),
  sessionAffinity: z.enum(['ClientIP', 'None']).optional(),
  sessionAffinityConfig: z.record(z.string(), z.unknown()).optional(),
  trafficDistribution: z.string().optional(),
}).superRefine((s, ctx) => {
  const ports = s.ports ?? [];
  const names = new Set<string>();
  ports.forEach((p, i) => {
    // Kubernetes: every port of a multi-port Service must be named, and names are unique DNS labels.
    if (ports.length > 1 && !p.name) ctx.addIssue({ code: 'custom', path: ['ports', i, 'name'], message: 'port name is required when a Service has more than one port' });
    if (p.name !== undefined && p.name !== '') {
      if (!isDns1123Label(p.name)) ctx.addIssue({ code: 'custom', path: ['ports', i, 'name'], message: `port name "${p.name}" is invalid (a DNS-1123 label)` });
      if (names.has(p.name)) ctx.addIssue({ code: 'custom', path: ['ports', i, 'name'], message: `duplicate port name "${p.name}"` });
      names.add(p.name);
    }
  });
  if (s.type === 'ExternalName' && !s.externalName) ctx.addIssue({ code: 'custom', path: ['externalName'], message: 'externalName is required for type ExternalName' });
});
export type ServiceSpec = z.output<typeof serviceSpec>;

/** Istio's protocol.Instance names. `UnsupportedProtocol` means Istio sniffs the protocol (HTTP or TCP). */
export type IstioProtocol = 'TCP' | 'UDP' | 'GRPC' | 'GRPC-Web' | 'HTTP' | 'HTTP_PROXY' | 'HTTP2' | 'HTTPS' | 'TLS' | 'Mongo' | 'Redis' | 'MySQL' | 'UnsupportedProtocol';

const BY_NAME: Record<string, IstioProtocol> = {
  tcp: 'TCP', udp: 'UDP', grpc: 'GRPC', 'grpc-web': 'GRPC-Web', http: 'HTTP', http_proxy: 'HTTP_PROXY', http2: 'HTTP2',
  https: 'HTTPS', tls: 'TLS', mongo: 'Mongo', redis: 'Redis', mysql: 'MySQL',
};

/** Istio's protocol.Parse: case-insensitive protocol name (Gateway/ServiceEntry `protocol`, port-name prefixes). */
export function parseProtocol(name: string): IstioProtocol {
  return BY_NAME[name.toLowerCase()] ?? 'UnsupportedProtocol';
}

/**
 * Istio's kube.ConvertProtocol: UDP from `protocol`; else `appProtocol` (with Kubernetes' standard
 * `kubernetes.io/h2c`, `kubernetes.io/ws`, `kubernetes.io/wss`); else the port name up to its first `-`
 * (`http-web` → HTTP, `grpc-web…` → GRPC-Web). Anything else is `UnsupportedProtocol` (sniffed).
 */
export function selectServicePortProtocol(p: { name?: string; protocol?: string; appProtocol?: string }): IstioProtocol {
  if (p.protocol === 'UDP') return 'UDP';
  let name = p.name ?? '';
  if (p.appProtocol !== undefined) {
    name = p.appProtocol;
    if (name === 'kubernetes.io/h2c') return 'HTTP2';
    if (name === 'kubernetes.io/ws') return 'HTTP';
    if (name === 'kubernetes.io/wss') return 'HTTPS';
  }
  if (name.toLowerCase().startsWith('grpc-web')) return 'GRPC-Web';
  const dash = name.indexOf('-');
  return parseProtocol(dash >= 0 ? name.slice(0, dash) : name);
}

/** Kinds whose pod template makes workloads: their labels are what Service, subset and Gateway selectors match. */
export const WORKLOAD_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'ReplicationController', 'Job', 'CronJob', 'Pod']);
