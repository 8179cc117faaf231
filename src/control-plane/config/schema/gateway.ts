/**
 * Gateway (networking.istio.io), as istio.io/latest/docs/reference/config/networking/gateway/, with the rules of
 * Istio's validateGateway / validateServer / validateServerTLS.
 */
import { z } from 'zod';
import { checkWildcardDomain, isDns1123Label, istioPort, stringMap } from './common.ts';

/**
 * `namespace/host` or `host` as Gateway servers and Sidecar egress listeners take them. `extraNamespaces` are
 * the special namespace spellings allowed (`*`, `.`; Sidecar also `~`).
 */
export function namespacedHost(extraNamespaces: readonly string[]) {
  return z.string().superRefine((h, ctx) => {
    const parts = h.split('/');
    if (parts.length > 2) {
      ctx.addIssue({ code: 'custom', message: `host "${h}" must be "namespace/dnsName" or "dnsName"` });
      return;
    }
    if (parts.length === 2 && !extraNamespaces.includes(parts[0]) && !isDns1123Label(parts[0])) {
      ctx.addIssue({ code: 'custom', message: `host "${h}": namespace "${parts[0]}" must be ${extraNamespaces.map((x) => `"${x}"`).join(', ')} or a namespace name` });
    }
    const problem = checkWildcardDomain(parts[parts.length - 1]);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });
}

const tlsVersion = z.enum(['TLS_AUTO', 'TLSV1_0', 'TLSV1_1', 'TLSV1_2', 'TLSV1_3']);

export const serverTlsSettings = z.strictObject({
  httpsRedirect: z.boolean().optional(),
  mode: z.enum(['PASSTHROUGH', 'SIMPLE', 'MUTUAL', 'AUTO_PASSTHROUGH', 'ISTIO_MUTUAL', 'OPTIONAL_MUTUAL']).optional(),
  serverCertificate: z.string().optional(),
  privateKey: z.string().optional(),
  caCertificates: z.string().optional(),
  caCrl: z.string().optional(),
  credentialName: z.string().optional(),
  credentialNames: z.array(z.string()).optional(),
  tlsCertificates: z.array(z.strictObject({ serverCertificate: z.string().optional(), privateKey: z.string().optional(), caCertificates: z.string().optional() })).optional(),
  subjectAltNames: z.array(z.string()).optional(),
  verifyCertificateSpki: z.array(z.string()).optional(),
  verifyCertificateHash: z.array(z.string()).optional(),
  minProtocolVersion: tlsVersion.optional(),
  maxProtocolVersion: tlsVersion.optional(),
  cipherSuites: z.array(z.string()).optional(),
}).superRefine((t, ctx) => {
  const mode = t.mode ?? 'PASSTHROUGH';
  const hasCredential = t.credentialName !== undefined || (t.credentialNames?.length ?? 0) > 0 || (t.tlsCertificates?.length ?? 0) > 0;
  if ((mode === 'SIMPLE' || mode === 'MUTUAL' || mode === 'OPTIONAL_MUTUAL') && !hasCredential) {
    if (!t.serverCertificate) ctx.addIssue({ code: 'custom', path: ['serverCertificate'], message: `${mode} TLS requires a server certificate (serverCertificate or credentialName)` });
    if (!t.privateKey) ctx.addIssue({ code: 'custom', path: ['privateKey'], message: `${mode} TLS requires a private key (privateKey or credentialName)` });
    if (mode !== 'SIMPLE' && !t.caCertificates) ctx.addIssue({ code: 'custom', path: ['caCertificates'], message: `${mode} TLS requires caCertificates (or credentialName)` });
  }
});

const server = z.strictObject({
  port: istioPort({ nameRequired: true }),
  bind: z.string().optional(),
  hosts: z.array(namespacedHost(['*', '.'])).min(1, 'server config must contain at least one host'),
  tls: serverTlsSettings.optional(),
  defaultEndpoint: z.string().optional(),
  name: z.string().optional(),
}).superRefine((s, ctx) => {
  const protocol = s.port.protocol?.toUpperCase();
  if ((protocol === 'HTTPS' || protocol === 'TLS') && s.tls === undefined) ctx.addIssue({ code: 'custom', path: ['tls'], message: `server must have TLS settings for ${protocol} protocol` });
});

export const gatewaySpec = z.strictObject({
  servers: z.array(server).min(1, 'gateway must have at least one server'),
  selector: stringMap.optional(),
}).superRefine((g, ctx) => {
  const names = new Map<string, number>();
  g.servers.forEach((s, i) => {
    if (s.name === undefined) return;
    if (names.has(s.name)) ctx.addIssue({ code: 'custom', path: ['servers', i, 'name'], message: `duplicate server name "${s.name}"` });
    names.set(s.name, i);
  });
});

export type GatewaySpec = z.output<typeof gatewaySpec>;
export type Server = z.output<typeof server>;
