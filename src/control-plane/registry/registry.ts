/**
 * The service registry (Istio's serviceregistry): services with their ports and endpoints, from Kubernetes
 * Services, ServiceEntries, WorkloadEntries and the connected proxies. Pure: built from a config model and the
 * list of connected proxies, no I/O, deterministic (services sorted by hostname, endpoints by address and port).
 *
 * - A Kubernetes Service's endpoints are the workloads its selector matches in its namespace: connected proxies
 *   (their `LABELS`, `INSTANCE_IPS`) and WorkloadEntries. Deployments in the config files are not running
 *   workloads and give no endpoints.
 * - A ServiceEntry gives one service per host. Resolution NONE: no endpoints (original destination);
 *   STATIC: its `endpoints`, or with a `workloadSelector` the WorkloadEntries and proxies it selects;
 *   DNS / DNS_ROUND_ROBIN: its `endpoints` (DNS names or IPs), else the host itself. Names are resolved by the
 *   proxy (STRICT_DNS / LOGICAL_DNS clusters), never here.
 */
import type { ConfigModel, IstioProtocol, KubernetesService, Origin, ServiceEntry, WorkloadEntry } from '../config/model.ts';
import { resolveShortname, selectorMatches } from '../config/hosts.ts';
import type { Diagnostic } from '../../shared/errors.ts';
import type { ProxyInfo } from './proxy-info.ts';

/** How a service's endpoints are found (Istio's model.Resolution, in cluster terms). */
export type Resolution = 'EDS' | 'DNS' | 'DNS_ROUND_ROBIN' | 'PASSTHROUGH';

export interface RegistryPort {
  /** Port name (may be empty for a single-port Service). */
  name: string;
  port: number;
  protocol: IstioProtocol;
  /** Kubernetes `targetPort` (number or container port name); ServiceEntry `targetPort`, else the port. */
  targetPort: number | string;
}

export interface RegistryEndpoint {
  /** IP address, or DNS name for DNS resolution. */
  address: string;
  port: number;
  labels: Readonly<Record<string, string>>;
  /** 1 unless a WorkloadEntry says otherwise. */
  weight: number;
  /** `region/zone/subzone`, or ''. */
  locality: string;
  serviceAccount?: string;
  /** Who this endpoint is: `proxy <id>`, `WorkloadEntry ns/name`, `ServiceEntry ns/name`. */
  source: string;
}

export interface RegistryService {
  /** FQDN (`reviews.default.svc.cluster.local`) or ServiceEntry host (possibly `*.example.com`). */
  hostname: string;
  /** Namespace of the Service or ServiceEntry. */
  namespace: string;
  /** Name of the resource it came from. */
  name: string;
  kind: 'Service' | 'ServiceEntry';
  ports: readonly RegistryPort[];
  resolution: Resolution;
  /** ServiceEntry `addresses` (VIPs/CIDRs); Services have none in a local mesh. */
  addresses: readonly string[];
  /** ServiceEntry location; Services are MESH_INTERNAL. */
  meshExternal: boolean;
  /** `exportTo` as written (`*` when absent). */
  exportTo: readonly string[];
  origin: Origin;
  /** Endpoints per service port number, sorted. */
  endpoints: ReadonlyMap<number, readonly RegistryEndpoint[]>;
}

/** The registry of one push. */
export interface Registry {
  /** Every service, sorted by hostname then namespace. Two resources for one host: both are kept (see byHost). */
  services: readonly RegistryService[];
  /** Services by hostname; when two resources define one host, the first (Services before ServiceEntries, then by namespace) wins. */
  byHost: ReadonlyMap<string, RegistryService>;
  diagnostics: readonly Diagnostic[];
}

const ISTIO_PROTOCOLS: Readonly<Record<string, IstioProtocol>> = {
  HTTP: 'HTTP', HTTPS: 'HTTPS', GRPC: 'GRPC', 'GRPC-WEB': 'GRPC-Web', HTTP2: 'HTTP2', MONGO: 'Mongo', TCP: 'TCP', TLS: 'TLS',
  MYSQL: 'MySQL', REDIS: 'Redis', UDP: 'UDP', HTTP_PROXY: 'HTTP_PROXY',
};

/** Istio's protocol.Parse for ServiceEntry/Gateway/Sidecar port protocols (case-insensitive). */
export function parseIstioProtocol(p: string | undefined): IstioProtocol {
  return (p && ISTIO_PROTOCOLS[p.toUpperCase()]) || 'UnsupportedProtocol';
}

/**
 * Builds the registry from the config model and the proxies connected now. Pure.
 * @param proxies connected proxies (sidecars; proxyless gRPC clients are not endpoints)
 */
export function buildRegistry(model: ConfigModel, proxies: readonly ProxyInfo[]): Registry {
  const diagnostics: Diagnostic[] = [];
  const sidecars = [...proxies].filter((p) => p.type === 'sidecar').sort((a, b) => cmp(a.id, b.id));
  const services: RegistryService[] = [];
  // Selector candidates by namespace and one label, so a Service looks at its workloads only (1,000 Services x 500
  // proxies was most of a push's registry time); the selector is still checked in full.
  const proxiesByLabel = byNamespaceLabel(sidecars, (p) => p.namespace, (p) => p.labels);
  const entriesByLabel = byNamespaceLabel(model.workloadEntries, (w) => w.namespace, (w) => w.spec.labels ?? {});
  for (const svc of model.services) services.push(fromKubernetesService(svc, proxiesByLabel, entriesByLabel));
  for (const se of model.serviceEntries) services.push(...fromServiceEntry(se, sidecars, model.workloadEntries));
  services.sort((a, b) => cmp(a.hostname, b.hostname) || cmp(kindRank(a), kindRank(b)) || cmp(a.namespace, b.namespace) || cmp(a.name, b.name));
  const byHost = new Map<string, RegistryService>();
  for (const s of services) {
    const prior = byHost.get(s.hostname);
    if (prior === undefined) byHost.set(s.hostname, s);
    else {
      diagnostics.push({
        severity: 'warning', code: 'SLOOP_ERR_CONFIG_INVALID', file: s.origin.file, line: s.origin.line, column: s.origin.column,
        kind: s.kind, namespace: s.namespace, name: s.name, path: s.kind === 'Service' ? 'metadata.name' : 'spec.hosts',
        message: `host "${s.hostname}" is already defined by ${prior.kind} ${prior.namespace}/${prior.name}; that one is used`,
      });
    }
  }
  return { services, byHost, diagnostics };
}

function kindRank(s: RegistryService): string {
  return s.kind === 'Service' ? '0' : '1';
}

/** Items by `namespace \0 key \0 value` for each of their labels, in the given order. */
type LabelIndex<T> = ReadonlyMap<string, readonly T[]>;

function byNamespaceLabel<T>(items: readonly T[], ns: (t: T) => string, labels: (t: T) => Readonly<Record<string, string>>): LabelIndex<T> {
  const index = new Map<string, T[]>();
  for (const item of items) {
    for (const [k, v] of Object.entries(labels(item))) {
      const key = `${ns(item)}\0${k}\0${v}`;
      const list = index.get(key);
      if (list === undefined) index.set(key, [item]);
      else list.push(item);
    }
  }
  return index;
}

/** The items of `namespace` that may match a non-empty `selector`: those with its first label. */
function candidates<T>(index: LabelIndex<T>, namespace: string, selector: Readonly<Record<string, string>>): readonly T[] {
  const [k, v] = Object.entries(selector)[0]!;
  return index.get(`${namespace}\0${k}\0${v}`) ?? [];
}

function fromKubernetesService(svc: KubernetesService, proxies: LabelIndex<ProxyInfo>, entries: LabelIndex<WorkloadEntry>): RegistryService {
  const ports: RegistryPort[] = svc.ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol, targetPort: p.targetPort }));
  const endpoints = new Map<number, RegistryEndpoint[]>();
  for (const p of ports) endpoints.set(p.port, []);
  if (svc.selector !== undefined && Object.keys(svc.selector).length > 0) {
    const selector = svc.selector;
    for (const proxy of candidates(proxies, svc.namespace, selector)) {
      if (proxy.namespace !== svc.namespace || !selectorMatches(selector, proxy.labels) || proxy.ips.length === 0) continue;
      for (const p of ports) {
        const target = typeof p.targetPort === 'number' ? p.targetPort : proxy.podPorts.find((pp) => pp.name === p.targetPort)?.containerPort;
        if (target === undefined) continue; // Kubernetes: a named targetPort the pod lacks gives no endpoint.
        endpoints.get(p.port)!.push({
          address: proxy.ips[0], port: proxy.endpointPorts[target] ?? target, labels: proxy.labels, weight: 1, locality: '',
          ...(proxy.serviceAccount !== undefined ? { serviceAccount: proxy.serviceAccount } : {}), source: `proxy ${proxy.id}`,
        });
      }
    }
    for (const we of candidates(entries, svc.namespace, selector)) {
      const labels = we.spec.labels ?? {};
      if (we.namespace !== svc.namespace || !selectorMatches(selector, labels) || !we.spec.address) continue;
      for (const p of ports) {
        // Istio: a WorkloadEntry's `ports` map a port name to its port; otherwise the targetPort.
        const byName = we.spec.ports?.[p.name];
        const target = byName ?? (typeof p.targetPort === 'number' ? p.targetPort : undefined);
        if (target === undefined) continue;
        endpoints.get(p.port)!.push(workloadEntryEndpoint(we.spec, target, `WorkloadEntry ${we.namespace}/${we.name}`));
      }
    }
  }
  return {
    hostname: svc.hostname, namespace: svc.namespace, name: svc.name, kind: 'Service', ports, resolution: 'EDS', addresses: [],
    meshExternal: false, exportTo: exportToOf(svc.annotations['networking.istio.io/exportTo']), origin: svc.origin, endpoints: sortEndpoints(endpoints),
  };
}

function fromServiceEntry(se: ServiceEntry, proxies: readonly ProxyInfo[], entries: readonly WorkloadEntry[]): RegistryService[] {
  const spec = se.spec;
  const ports: RegistryPort[] = (spec.ports ?? []).map((p) => ({ name: p.name ?? '', port: p.number, protocol: parseIstioProtocol(p.protocol), targetPort: p.targetPort ?? p.number }));
  const resolution: Resolution =
    spec.resolution === 'STATIC' ? 'EDS' : spec.resolution === 'DNS' ? 'DNS' : spec.resolution === 'DNS_ROUND_ROBIN' ? 'DNS_ROUND_ROBIN' : 'PASSTHROUGH';
  const out: RegistryService[] = [];
  for (const rawHost of spec.hosts) {
    const hostname = resolveShortname(rawHost, se.namespace);
    const endpoints = new Map<number, RegistryEndpoint[]>();
    for (const p of ports) {
      const list: RegistryEndpoint[] = [];
      endpoints.set(p.port, list);
      if (resolution === 'PASSTHROUGH') continue;
      const target = typeof p.targetPort === 'number' ? p.targetPort : p.port;
      for (const [i, ep] of (spec.endpoints ?? []).entries()) {
        if (!ep.address || ep.address.startsWith('unix://')) continue;
        list.push(workloadEntryEndpoint(ep, ep.ports?.[p.name] ?? target, `ServiceEntry ${se.namespace}/${se.name} spec.endpoints[${i}]`));
      }
      const selector = spec.workloadSelector?.labels;
      if (selector !== undefined) {
        for (const we of entries) {
          if (we.namespace !== se.namespace || !we.spec.address || !selectorMatches(selector, we.spec.labels ?? {})) continue;
          list.push(workloadEntryEndpoint(we.spec, we.spec.ports?.[p.name] ?? target, `WorkloadEntry ${we.namespace}/${we.name}`));
        }
        for (const proxy of proxies) {
          if (proxy.namespace !== se.namespace || proxy.ips.length === 0 || !selectorMatches(selector, proxy.labels)) continue;
          list.push({ address: proxy.ips[0], port: proxy.endpointPorts[target] ?? target, labels: proxy.labels, weight: 1, locality: '', source: `proxy ${proxy.id}` });
        }
      }
      // Istio: DNS resolution without endpoints resolves the host itself.
      if ((resolution === 'DNS' || resolution === 'DNS_ROUND_ROBIN') && (spec.endpoints ?? []).length === 0 && selector === undefined) {
        list.push({ address: hostname, port: target, labels: {}, weight: 1, locality: '', source: `ServiceEntry ${se.namespace}/${se.name} spec.hosts` });
      }
    }
    out.push({
      hostname, namespace: se.namespace, name: se.name, kind: 'ServiceEntry', ports, resolution, addresses: spec.addresses ?? [],
      meshExternal: (spec.location ?? 'MESH_EXTERNAL') === 'MESH_EXTERNAL', exportTo: spec.exportTo ?? ['*'], origin: se.origin,
      endpoints: resolution === 'DNS' || resolution === 'DNS_ROUND_ROBIN' ? endpoints : sortEndpoints(endpoints),
    });
  }
  return out;
}

function workloadEntryEndpoint(w: { address?: string; labels?: Record<string, string>; weight?: number; locality?: string; serviceAccount?: string }, port: number, source: string): RegistryEndpoint {
  return {
    address: w.address ?? '', port, labels: w.labels ?? {}, weight: w.weight && w.weight > 0 ? w.weight : 1, locality: w.locality ?? '',
    ...(w.serviceAccount !== undefined ? { serviceAccount: w.serviceAccount } : {}), source,
  };
}

function exportToOf(annotation: string | undefined): string[] {
  if (annotation === undefined || annotation.trim() === '') return ['*'];
  return annotation.split(',').map((s) => s.trim()).filter((s) => s !== '');
}

// DNS endpoints keep their written order (Envoy's STRICT_DNS resolves each in turn); others are sorted.
function sortEndpoints(m: Map<number, RegistryEndpoint[]>): Map<number, RegistryEndpoint[]> {
  for (const list of m.values()) list.sort((a, b) => cmp(a.address, b.address) || a.port - b.port || cmp(a.source, b.source));
  return m;
}

/** Code-unit string order (locale-independent, so output is byte-for-byte stable). */
export function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
