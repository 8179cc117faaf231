/**
 * Sidecar (networking.istio.io), as istio.io/latest/docs/reference/config/networking/sidecar/, with the rules of
 * Istio's ValidateSidecar.
 */
import { z } from 'zod';
import { connectionPoolSettings } from './destination-rule.ts';
import { istioPort, workloadSelector } from './common.ts';
import { namespacedHost, serverTlsSettings } from './gateway.ts';

const captureMode = z.enum(['DEFAULT', 'IPTABLES', 'NONE']);

const ingressListener = z.strictObject({
  port: istioPort({ nameRequired: false }),
  bind: z.string().optional(),
  captureMode: captureMode.optional(),
  defaultEndpoint: z.string().optional(),
  tls: serverTlsSettings.optional(),
  connectionPool: connectionPoolSettings.optional(),
});

const egressListener = z.strictObject({
  port: istioPort({ nameRequired: false }).optional(),
  bind: z.string().optional(),
  captureMode: captureMode.optional(),
  hosts: z.array(namespacedHost(['*', '.', '~'])).min(1, 'egress listener must contain at least one host'),
});

export const sidecarSpec = z.strictObject({
  workloadSelector: workloadSelector.optional(),
  ingress: z.array(ingressListener).optional(),
  egress: z.array(egressListener).optional(),
  inboundConnectionPool: connectionPoolSettings.optional(),
  outboundTrafficPolicy: z.strictObject({
    mode: z.enum(['REGISTRY_ONLY', 'ALLOW_ANY']).optional(),
    egressProxy: z.strictObject({ host: z.string(), subset: z.string().optional(), port: z.strictObject({ number: z.number().int() }).optional() }).optional(),
  }).optional(),
}).superRefine((s, ctx) => {
  // Istio: only the last egress listener may omit its port (the catch-all).
  s.egress?.forEach((e, i) => {
    if (e.port === undefined && i !== s.egress!.length - 1) ctx.addIssue({ code: 'custom', path: ['egress', i, 'port'], message: 'only the last egress listener may have no port' });
  });
});

export type SidecarSpec = z.output<typeof sidecarSpec>;
