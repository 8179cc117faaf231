/**
 * What the control plane knows about a connected proxy, read from its xDS `node` (id and metadata) with Istio's
 * node metadata keys (pkg/model/context.go NodeMetadata), plus a few Sloop keys for meshes without Kubernetes.
 * Pure: no I/O.
 */

/** How traffic reaches the proxy (Istio's `INTERCEPTION_MODE`). */
export type InterceptionMode = 'REDIRECT' | 'TPROXY' | 'NONE';

/** A container port of the workload (Istio's `POD_PORTS`). */
export interface PodPort {
  name?: string;
  containerPort: number;
  protocol?: string;
}

/**
 * A proxy's identity and workload, as translation and the registry use it. Built by {@link parseProxyInfo} from an
 * xDS node; tests may build it directly.
 */
export interface ProxyInfo {
  /** `node.id` (Istio: `sidecar~IP~POD.NAMESPACE~NAMESPACE.svc.cluster.local`). */
  id: string;
  /** `sidecar` (Envoy or `sloop proxy`) or `grpc` (proxyless gRPC, metadata `GENERATOR: grpc`). */
  type: 'sidecar' | 'grpc';
  /** Workload name: metadata `NAME`, else the pod part of an Istio node id, else the id. */
  name: string;
  /** Metadata `NAMESPACE`, else from an Istio node id, else `default`. */
  namespace: string;
  /** Metadata `LABELS`. */
  labels: Readonly<Record<string, string>>;
  /** Metadata `SERVICE_ACCOUNT`. */
  serviceAccount?: string;
  /** Metadata `INSTANCE_IPS` (comma-separated), else the IP of an Istio node id. May be empty. */
  ips: readonly string[];
  /** Metadata `POD_PORTS` (a JSON string or array): names a Service `targetPort` may refer to. */
  podPorts: readonly PodPort[];
  /** Metadata `INTERCEPTION_MODE`; `REDIRECT` when absent (Istio's default). */
  interceptionMode: InterceptionMode;
  /**
   * Sloop metadata `SLOOP_ENDPOINT_PORTS`: workload (target) port → the port peers dial to reach it, for a local
   * mesh where many workloads share one IP and each sidecar's inbound side listens on a port of its own
   * (`{"9080": 19080}`). A target port not in the map is dialled as is.
   */
  endpointPorts: Readonly<Record<number, number>>;
  /** Sloop metadata `SLOOP_OUTBOUND_PORT`: port of `virtualOutbound` (Istio: 15001). */
  outboundPort: number;
  /** Sloop metadata `SLOOP_INBOUND_PORT`: port of `virtualInbound` (Istio: 15006). */
  inboundPort: number;
}

/** Istio's virtualOutbound and virtualInbound ports. */
export const DEFAULT_OUTBOUND_PORT = 15001;
export const DEFAULT_INBOUND_PORT = 15006;

/** Metadata key of the Sloop endpoint port map (see {@link ProxyInfo.endpointPorts}). */
export const SLOOP_ENDPOINT_PORTS_KEY = 'SLOOP_ENDPOINT_PORTS';

/** A problem found in node metadata; the field is ignored and the rest is used. */
export interface ProxyInfoProblem {
  key: string;
  message: string;
}

/**
 * Reads a proxy's identity from its xDS node (`metadata` as plain JSON, the form SnapshotCache's NodeInfo has).
 * Never throws: unreadable keys are skipped and reported in `problems`.
 */
export function parseProxyInfo(node: { id: string; metadata?: Readonly<Record<string, unknown>> | null }): { proxy: ProxyInfo; problems: ProxyInfoProblem[] } {
  const md = node.metadata ?? {};
  const problems: ProxyInfoProblem[] = [];
  const str = (key: string): string | undefined => {
    const v = md[key];
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v === 'string') return v;
    problems.push({ key, message: `expected a string, got ${typeof v}` });
    return undefined;
  };
  // Istio's node id: TYPE~IP~POD.NAMESPACE~DOMAIN (pkg/model/context.go ParseServiceNodeWithMetadata).
  const parts = node.id.split('~');
  const fromId = parts.length === 4 ? { ip: parts[1], pod: parts[2].split('.')[0], namespace: parts[2].split('.')[1] } : undefined;

  const labels: Record<string, string> = {};
  const rawLabels = md.LABELS;
  if (rawLabels !== undefined && rawLabels !== null) {
    if (typeof rawLabels === 'object' && !Array.isArray(rawLabels)) {
      for (const [k, v] of Object.entries(rawLabels as Record<string, unknown>)) {
        if (typeof v === 'string') labels[k] = v;
        else problems.push({ key: `LABELS.${k}`, message: 'expected a string value' });
      }
    } else problems.push({ key: 'LABELS', message: 'expected an object of string labels' });
  }

  const ips = (str('INSTANCE_IPS') ?? fromId?.ip ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');

  const podPorts: PodPort[] = [];
  const rawPorts = parseMaybeJson(md.POD_PORTS, 'POD_PORTS', problems);
  if (Array.isArray(rawPorts)) {
    for (const p of rawPorts) {
      if (p && typeof p === 'object' && typeof (p as PodPort).containerPort === 'number') {
        const pp = p as PodPort;
        podPorts.push({ containerPort: pp.containerPort, ...(typeof pp.name === 'string' ? { name: pp.name } : {}), ...(typeof pp.protocol === 'string' ? { protocol: pp.protocol } : {}) });
      }
    }
  } else if (rawPorts !== undefined) problems.push({ key: 'POD_PORTS', message: 'expected a list of {name, containerPort, protocol}' });

  const endpointPorts: Record<number, number> = {};
  const rawEp = parseMaybeJson(md[SLOOP_ENDPOINT_PORTS_KEY], SLOOP_ENDPOINT_PORTS_KEY, problems);
  if (rawEp !== undefined) {
    if (rawEp && typeof rawEp === 'object' && !Array.isArray(rawEp)) {
      for (const [k, v] of Object.entries(rawEp as Record<string, unknown>)) {
        const from = Number(k);
        const to = typeof v === 'string' ? Number(v) : v;
        if (isPort(from) && typeof to === 'number' && isPort(to)) endpointPorts[from] = to;
        else problems.push({ key: `${SLOOP_ENDPOINT_PORTS_KEY}.${k}`, message: 'expected port → port' });
      }
    } else problems.push({ key: SLOOP_ENDPOINT_PORTS_KEY, message: 'expected an object of port → port' });
  }

  const mode = str('INTERCEPTION_MODE');
  let interceptionMode: InterceptionMode = 'REDIRECT';
  if (mode === 'REDIRECT' || mode === 'TPROXY' || mode === 'NONE') interceptionMode = mode;
  else if (mode !== undefined) problems.push({ key: 'INTERCEPTION_MODE', message: `unknown mode "${mode}" (REDIRECT, TPROXY or NONE)` });

  const port = (key: string, dflt: number): number => {
    const v = md[key];
    if (v === undefined || v === null || v === '') return dflt;
    const n = typeof v === 'string' ? Number(v) : v;
    if (typeof n === 'number' && isPort(n)) return n;
    problems.push({ key, message: 'expected a port number' });
    return dflt;
  };

  const serviceAccount = str('SERVICE_ACCOUNT');
  const generator = str('GENERATOR');
  const proxy: ProxyInfo = {
    id: node.id,
    type: generator === 'grpc' || node.id.startsWith('grpc~') ? 'grpc' : 'sidecar',
    name: str('NAME') ?? fromId?.pod ?? node.id,
    namespace: str('NAMESPACE') ?? fromId?.namespace ?? 'default',
    labels,
    ...(serviceAccount !== undefined ? { serviceAccount } : {}),
    ips,
    podPorts,
    interceptionMode,
    endpointPorts,
    outboundPort: port('SLOOP_OUTBOUND_PORT', DEFAULT_OUTBOUND_PORT),
    inboundPort: port('SLOOP_INBOUND_PORT', DEFAULT_INBOUND_PORT),
  };
  return { proxy, problems };
}

function isPort(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}

// Istio's metadata carries some structured values as JSON strings (POD_PORTS); accept either form.
function parseMaybeJson(v: unknown, key: string, problems: ProxyInfoProblem[]): unknown {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') return v;
  try {
    return JSON.parse(v) as unknown;
  } catch {
    problems.push({ key, message: 'not valid JSON' });
    return undefined;
  }
}
