/**
 * Building blocks shared by the Istio schemas: Istio's scalar types and rules (durations, percentages, ports,
 * hosts, string matches), written as zod schemas so every problem in a resource is reported, with its path.
 * Spec: Istio's API reference (istio.io/latest/docs/reference/config/networking/) and its validation webhook.
 */
import { z } from 'zod';
import { translateRe2 } from '../../../shared/re2.ts';

/** google.protobuf.Duration as translation consumes it. */
export interface Duration {
  seconds: number;
  nanos: number;
}

const GO_DURATION = /^(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$/;
const UNIT_NS: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, μs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/**
 * Parses a duration as Istio accepts it: Go's syntax (`1.5s`, `300ms`, `1h30m`, also the proto3 JSON form `1.5s`).
 * Returns nanoseconds, or undefined when the text is not a duration.
 */
export function parseDurationNs(text: string): number | undefined {
  if (text === '0') return 0;
  if (!GO_DURATION.test(text)) return undefined;
  let total = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g)) total += Number(m[1]) * UNIT_NS[m[2]];
  return Math.round(total);
}

/** Nanoseconds → Duration. */
export function toDuration(ns: number): Duration {
  const seconds = Math.floor(ns / 1e9);
  return { seconds, nanos: ns - seconds * 1e9 };
}

/**
 * A duration field. Istio's ValidateDuration: at least 1 ms and whole milliseconds; `allowZero` for fields where
 * 0 has a meaning (a route `timeout` of 0s disables it).
 */
export function duration(opts: { allowZero?: boolean } = {}) {
  return z.string().transform((text, ctx): Duration => {
    const ns = parseDurationNs(text);
    if (ns === undefined) {
      ctx.addIssue({ code: 'custom', message: `invalid duration "${text}" (expected a number with a unit such as "1.5s", "300ms", "1m")` });
      return z.NEVER;
    }
    if (ns === 0 && opts.allowZero) return toDuration(0);
    if (ns < 1e6) ctx.addIssue({ code: 'custom', message: `duration "${text}" must be at least 1ms` });
    else if (ns % 1e6 !== 0) ctx.addIssue({ code: 'custom', message: `duration "${text}" must be whole milliseconds` });
    return toDuration(ns);
  });
}

export const uint32 = z.number().int().min(0).max(4294967295);
export const int32 = z.number().int().min(-2147483648).max(2147483647);
export const port = z.number().int().min(1, 'port number must be in the range 1..65535').max(65535, 'port number must be in the range 1..65535');
export const stringMap = z.record(z.string(), z.string());

/** Istio's Percent: a double in [0, 100]. */
export const percent = z.strictObject({ value: z.number().min(0, 'percentage must be in the range [0, 100]').max(100, 'percentage must be in the range [0, 100]').optional() });

export const portSelector = z.strictObject({ number: port.optional() });

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Kubernetes DNS-1123 label (subset names, port names). */
export function isDns1123Label(s: string): boolean {
  return s.length <= 63 && DNS1123_LABEL.test(s);
}

/**
 * Istio's ValidateWildcardDomain: `*`, `*.example.com`, `example.com`, short names (`reviews`) and IP addresses.
 * Returns a problem, or undefined when valid.
 */
export function checkWildcardDomain(host: string): string | undefined {
  if (host.length === 0) return 'host must not be empty';
  if (host.length > 255) return `host "${host}" is longer than 255 characters`;
  if (host === '*') return undefined;
  let rest = host;
  if (host.startsWith('*')) {
    if (!host.startsWith('*.')) return `host "${host}": a wildcard may only be a whole leading label ("*.example.com")`;
    rest = host.slice(2);
  }
  if (rest.includes('*')) return `host "${host}": a wildcard may only be a whole leading label ("*.example.com")`;
  const trimmed = rest.endsWith('.') ? rest.slice(0, -1) : rest;
  for (const label of trimmed.split('.')) {
    if (!isDns1123Label(label)) return `host "${host}": "${label}" is not a valid DNS label (lowercase letters, digits and "-", at most 63)`;
  }
  return undefined;
}

/** A host field (wildcards allowed). */
export const hostname = z.string().superRefine((h, ctx) => {
  const problem = checkWildcardDomain(h);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

/** Checks an RE2 pattern as Envoy will compile it; returns a problem or undefined. */
export function checkRe2(pattern: string): string | undefined {
  try {
    translateRe2(pattern);
    return undefined;
  } catch (err) {
    return `invalid RE2 regular expression ${JSON.stringify(pattern)}: ${(err as Error).message}`;
  }
}

export const regex = z.string().superRefine((r, ctx) => {
  const problem = checkRe2(r);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

/** Istio's StringMatch: exactly one of exact, prefix, regex. */
export const stringMatch = z
  .strictObject({ exact: z.string().optional(), prefix: z.string().optional(), regex: regex.optional() })
  .superRefine((m, ctx) => {
    const set = (['exact', 'prefix', 'regex'] as const).filter((k) => m[k] !== undefined);
    if (set.length > 1) ctx.addIssue({ code: 'custom', message: `only one of exact, prefix, regex may be set, found ${set.join(', ')}` });
  });
export type StringMatch = z.output<typeof stringMatch>;

/** Protocols Istio accepts in Gateway, ServiceEntry and Sidecar ports (case-insensitive, as protocol.Parse). */
export const ISTIO_PROTOCOLS = ['HTTP', 'HTTPS', 'GRPC', 'GRPC-WEB', 'HTTP2', 'MONGO', 'TCP', 'TLS', 'MYSQL', 'REDIS', 'UDP', 'HTTP_PROXY'] as const;

/** Istio's Port (Gateway, ServiceEntry, Sidecar). `nameRequired`: Gateway and ServiceEntry ports must be named. */
export function istioPort(opts: { nameRequired: boolean }) {
  return z
    .strictObject({
      number: port,
      protocol: z.string().optional(),
      name: z.string().optional(),
      targetPort: port.optional(),
    })
    .superRefine((p, ctx) => {
      if (p.protocol !== undefined && !(ISTIO_PROTOCOLS as readonly string[]).includes(p.protocol.toUpperCase())) {
        ctx.addIssue({ code: 'custom', path: ['protocol'], message: `unrecognized protocol "${p.protocol}" (one of ${ISTIO_PROTOCOLS.join(', ')})` });
      }
      if (opts.nameRequired && (p.name === undefined || p.name === '')) ctx.addIssue({ code: 'custom', path: ['name'], message: 'port name must be set' });
    });
}

export const workloadSelector = z.strictObject({ labels: stringMap.optional() });

/** Namespaces a resource is exported to: `.`, `*` or a namespace name. */
export const exportTo = z.array(
  z.string().superRefine((ns, ctx) => {
    if (ns !== '.' && ns !== '*' && !isDns1123Label(ns)) ctx.addIssue({ code: 'custom', message: `exportTo "${ns}" must be ".", "*" or a namespace name` });
  }),
);
