/**
 * ServiceEntry and WorkloadEntry (networking.istio.io), as istio.io/latest/docs/reference/config/networking/service-entry/
 * and .../workload-entry/, with the rules of Istio's ValidateServiceEntry / ValidateWorkloadEntry.
 */
import { z } from 'zod';
import { checkWildcardDomain, exportTo, isDns1123Label, istioPort, stringMap, uint32, workloadSelector } from './common.ts';

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** Whether `s` is an IPv4 or IPv6 address. */
export function isIpAddress(s: string): boolean {
  if (IPV4.test(s)) return true;
  return s.includes(':') && /^[0-9a-fA-F:.]+$/.test(s);
}

function isCidr(s: string): boolean {
  const [ip, bits, extra] = s.split('/');
  if (extra !== undefined || !isIpAddress(ip)) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return Number.isInteger(n) && n >= 0 && n <= (ip.includes(':') ? 128 : 32);
}

export const workloadEntrySpec = z.strictObject({
  address: z.string().optional(),
  ports: z.record(z.string(), uint32.refine((p) => p >= 1 && p <= 65535, 'port number must be in the range 1..65535')).optional(),
  labels: stringMap.optional(),
  network: z.string().optional(),
  locality: z.string().optional(),
  weight: uint32.optional(),
  serviceAccount: z.string().optional(),
}).superRefine((w, ctx) => {
  // Istio: an address is required unless the workload is reached through a network gateway.
  if ((w.address === undefined || w.address === '') && w.network === undefined) ctx.addIssue({ code: 'custom', path: ['address'], message: 'address is required' });
  else if (w.address !== undefined && !w.address.startsWith('unix://') && !isIpAddress(w.address) && checkWildcardDomain(w.address) !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['address'], message: `address "${w.address}" must be an IP address, a DNS name or a unix:// socket` });
  }
});

const serviceEntryPort = istioPort({ nameRequired: true }).superRefine((p, ctx) => {
  if (p.name && !isDns1123Label(p.name)) ctx.addIssue({ code: 'custom', path: ['name'], message: `port name "${p.name}" is invalid (a DNS-1123 label)` });
});

export const serviceEntrySpec = z.strictObject({
  hosts: z.array(z.string()).min(1, 'ServiceEntry must have at least one host'),
  addresses: z.array(z.string()).optional(),
  ports: z.array(serviceEntryPort).optional(),
  location: z.enum(['MESH_EXTERNAL', 'MESH_INTERNAL']).optional(),
  resolution: z.enum(['NONE', 'STATIC', 'DNS', 'DNS_ROUND_ROBIN']).optional(),
  endpoints: z.array(workloadEntrySpec).optional(),
  workloadSelector: workloadSelector.optional(),
  exportTo: exportTo.optional(),
  subjectAltNames: z.array(z.string()).optional(),
}).superRefine((se, ctx) => {
  const resolution = se.resolution ?? 'NONE';
  se.hosts.forEach((h, i) => {
    if (h === '*') ctx.addIssue({ code: 'custom', path: ['hosts', i], message: 'invalid host *' });
    else {
      const problem = checkWildcardDomain(h);
      if (problem) ctx.addIssue({ code: 'custom', path: ['hosts', i], message: problem });
    }
  });
  se.addresses?.forEach((a, i) => {
    if (!isCidr(a)) ctx.addIssue({ code: 'custom', path: ['addresses', i], message: `invalid address "${a}" (an IP or CIDR)` });
  });
  const names = new Set<string>();
  const numbers = new Set<number>();
  se.ports?.forEach((p, i) => {
    if (p.name && names.has(p.name)) ctx.addIssue({ code: 'custom', path: ['ports', i, 'name'], message: `duplicate port name "${p.name}"` });
    if (numbers.has(p.number)) ctx.addIssue({ code: 'custom', path: ['ports', i, 'number'], message: `duplicate port number ${p.number}` });
    if (p.name) names.add(p.name);
    numbers.add(p.number);
  });
  if (se.workloadSelector !== undefined && (se.endpoints?.length ?? 0) > 0) ctx.addIssue({ code: 'custom', path: ['workloadSelector'], message: 'only one of endpoints and workloadSelector may be set' });
  if (resolution === 'NONE' && (se.endpoints?.length ?? 0) > 0) ctx.addIssue({ code: 'custom', path: ['endpoints'], message: 'no endpoints should be provided for resolution type NONE' });
  if (resolution === 'STATIC') {
    if ((se.endpoints?.length ?? 0) === 0 && se.workloadSelector === undefined) ctx.addIssue({ code: 'custom', path: ['endpoints'], message: 'endpoints must be provided for resolution type STATIC' });
    se.endpoints?.forEach((e, i) => {
      if (e.address !== undefined && !isIpAddress(e.address) && !e.address.startsWith('unix://')) ctx.addIssue({ code: 'custom', path: ['endpoints', i, 'address'], message: `endpoint address "${e.address}" must be an IP address for resolution type STATIC` });
    });
  }
  if (resolution === 'DNS' || resolution === 'DNS_ROUND_ROBIN') {
    if ((se.endpoints?.length ?? 0) === 0) {
      se.hosts.forEach((h, i) => {
        if (h.startsWith('*')) ctx.addIssue({ code: 'custom', path: ['hosts', i], message: `wildcard host "${h}" cannot be resolved with DNS when there are no endpoints` });
      });
    }
    if (resolution === 'DNS_ROUND_ROBIN' && (se.endpoints?.length ?? 0) > 1) ctx.addIssue({ code: 'custom', path: ['endpoints'], message: 'DNS_ROUND_ROBIN allows at most one endpoint' });
  }
  se.endpoints?.forEach((e, i) => {
    for (const name of Object.keys(e.ports ?? {})) {
      if (!names.has(name)) ctx.addIssue({ code: 'custom', path: ['endpoints', i, 'ports', name], message: `endpoint port "${name}" is not one of the ServiceEntry's port names` });
    }
  });
});

export type ServiceEntrySpec = z.output<typeof serviceEntrySpec>;
export type WorkloadEntrySpec = z.output<typeof workloadEntrySpec>;
