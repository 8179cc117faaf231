/**
 * `sloop analyze`'s checks, as `istioctl analyze`: schema problems and cross-resource checks, reported with
 * Istio's analyzer codes, names and levels (istio.io/latest/docs/reference/config/analysis/). Pure: takes what
 * load.ts produced.
 */
import type { Diagnostic } from '../../shared/errors.ts';
import { formatPath, positionOf } from './documents.ts';
import type { PathSegment, SourcePosition } from './documents.ts';
import { formatSelector, hostsMatch, resolveShortname, selectorMatches } from './hosts.ts';
import { resourceName } from './model.ts';
import type { ConfigModel, Destination, HTTPMatchRequest, KubernetesService, ModelResource, ServiceEntry, VirtualService } from './model.ts';

export type AnalysisLevel = 'Error' | 'Warning' | 'Info';

/** The analyzer message types Sloop emits: Istio's code, name and level. */
export const ANALYSIS_MESSAGE_TYPES = {
  ReferencedResourceNotFound: { code: 'IST0101', level: 'Error' },
  SchemaValidationError: { code: 'IST0106', level: 'Error' },
  ConflictingMeshGatewayVirtualServiceHosts: { code: 'IST0109', level: 'Error' },
  ConflictingSidecarWorkloadSelectors: { code: 'IST0110', level: 'Error' },
  MultipleSidecarsWithoutWorkloadSelectors: { code: 'IST0111', level: 'Error' },
  VirtualServiceDestinationPortSelectorRequired: { code: 'IST0112', level: 'Error' },
  NoMatchingWorkloadsFound: { code: 'IST0127', level: 'Warning' },
  PortNameIsNotUnderNamingConvention: { code: 'IST0118', level: 'Info' },
  VirtualServiceUnreachableRule: { code: 'IST0130', level: 'Warning' },
  VirtualServiceIneffectiveMatch: { code: 'IST0131', level: 'Info' },
  VirtualServiceHostNotFoundInGateway: { code: 'IST0132', level: 'Warning' },
  SchemaWarning: { code: 'IST0133', level: 'Warning' },
  // Istio's docs page shows this one as an Error; Sloop reports it as a Warning because Istio's own samples
  // (bookinfo's destination-rule-all.yaml) declare subsets for versions that other files deploy.
  DestinationRuleSubsetNotSelectPods: { code: 'IST0173', level: 'Warning' },
} as const satisfies Record<string, { code: string; level: AnalysisLevel }>;

export type AnalysisMessageType = keyof typeof ANALYSIS_MESSAGE_TYPES;

/** One analyzer finding. */
export interface AnalysisMessage {
  /** `IST0101`. */
  code: string;
  /** `ReferencedResourceNotFound`. */
  type: AnalysisMessageType;
  level: AnalysisLevel;
  message: string;
  /** The resource, `Kind namespace/name`; absent for problems outside any resource (YAML syntax, unreadable files). */
  origin?: string;
  file?: string;
  line?: number;
  column?: number;
  /** Field path in Istio spelling, when the message is about one field. */
  path?: string;
}

/** istioctl's documentation link for a code. */
export function documentationUrl(code: string): string {
  return `https://istio.io/latest/docs/reference/config/analysis/${code.toLowerCase()}/`;
}

/** Input to {@link analyze}: what load.ts returns. */
export interface AnalysisInput {
  model: ConfigModel;
  diagnostics: readonly Diagnostic[];
}

/** Runs every check. Messages are sorted by level (errors first), then file, line, column. */
export function analyze(input: AnalysisInput): AnalysisMessage[] {
  const out: AnalysisMessage[] = [];
  for (const d of input.diagnostics) out.push(fromDiagnostic(d));
  const m = input.model;
  const ctx = new Context(m, out);
  checkVirtualServiceDestinations(ctx);
  checkVirtualServiceGateways(ctx);
  checkMeshGatewayHostConflicts(ctx);
  checkUnreachableRules(ctx);
  checkGatewaySelectors(ctx);
  checkSubsetsSelectPods(ctx);
  checkSidecars(ctx);
  checkPortNames(ctx);
  checkAuthorizationPolicySelectors(ctx);
  const rank: Record<AnalysisLevel, number> = { Error: 0, Warning: 1, Info: 2 };
  const big = Number.MAX_SAFE_INTEGER;
  return out.sort((a, b) =>
    rank[a.level] - rank[b.level] || (a.file ?? '').localeCompare(b.file ?? '') || (a.line ?? big) - (b.line ?? big) || (a.column ?? big) - (b.column ?? big) || a.code.localeCompare(b.code));
}

function fromDiagnostic(d: Diagnostic): AnalysisMessage {
  const type: AnalysisMessageType = d.severity === 'error' ? 'SchemaValidationError' : 'SchemaWarning';
  const t = ANALYSIS_MESSAGE_TYPES[type];
  const detail = `${d.path ? `${d.path}: ` : ''}${d.message}`;
  return {
    code: t.code, type, level: t.level,
    message: d.severity === 'error' ? `Schema validation error: ${detail}` : `Schema validation warning: ${detail}`,
    ...(d.kind && d.name ? { origin: `${d.kind} ${d.namespace ?? 'default'}/${d.name}` } : {}),
    ...(d.file !== undefined ? { file: d.file } : {}),
    ...(d.line !== undefined ? { line: d.line, column: d.column } : {}),
    ...(d.path ? { path: d.path } : {}),
  };
}

class Context {
  readonly model: ConfigModel;
  readonly out: AnalysisMessage[];
  readonly servicesByHost = new Map<string, KubernetesService>();
  readonly serviceEntryHosts: { host: string; se: ServiceEntry }[] = [];

  constructor(model: ConfigModel, out: AnalysisMessage[]) {
    this.model = model;
    this.out = out;
    for (const s of model.services) this.servicesByHost.set(s.hostname, s);
    for (const se of model.serviceEntries) for (const h of se.spec.hosts) this.serviceEntryHosts.push({ host: resolveShortname(h, se.namespace), se });
  }

  report(type: AnalysisMessageType, r: ModelResource, path: readonly PathSegment[], message: string): void {
    const t = ANALYSIS_MESSAGE_TYPES[type];
    const pos: SourcePosition = path.length > 0 ? positionOf({ positions: r.positions, origin: r.origin }, path) : r.origin;
    this.out.push({ code: t.code, type, level: t.level, message, origin: resourceName(r), file: r.origin.file, line: pos.line, column: pos.column, ...(path.length ? { path: formatPath(path) } : {}) });
  }

  /** The ports a host offers: a Kubernetes Service's or a ServiceEntry's; undefined when the host is unknown. */
  lookupHost(fqdn: string): { ports: number[] } | undefined {
    const svc = this.servicesByHost.get(fqdn);
    if (svc !== undefined) return { ports: svc.ports.map((p) => p.port) };
    const se = this.serviceEntryHosts.find((e) => hostsMatch(e.host, fqdn));
    if (se !== undefined) return { ports: (se.se.spec.ports ?? []).map((p) => p.number) };
    return undefined;
  }
}

/** Every destination of a VirtualService with its field path. */
function destinationsOf(vs: VirtualService): { destination: Destination; path: PathSegment[] }[] {
  const out: { destination: Destination; path: PathSegment[] }[] = [];
  vs.spec.http?.forEach((r, i) => {
    r.route?.forEach((d, j) => out.push({ destination: d.destination, path: ['spec', 'http', i, 'route', j, 'destination'] }));
    if (r.mirror) out.push({ destination: r.mirror, path: ['spec', 'http', i, 'mirror'] });
    r.mirrors?.forEach((m, j) => out.push({ destination: m.destination, path: ['spec', 'http', i, 'mirrors', j, 'destination'] }));
  });
  vs.spec.tcp?.forEach((r, i) => r.route.forEach((d, j) => out.push({ destination: d.destination, path: ['spec', 'tcp', i, 'route', j, 'destination'] })));
  vs.spec.tls?.forEach((r, i) => r.route.forEach((d, j) => out.push({ destination: d.destination, path: ['spec', 'tls', i, 'route', j, 'destination'] })));
  return out;
}

/** IST0101 host / host:port / host+subset, IST0112. */
function checkVirtualServiceDestinations(ctx: Context): void {
  for (const vs of ctx.model.virtualServices) {
    for (const { destination: d, path } of destinationsOf(vs)) {
      const fqdn = resolveShortname(d.host, vs.namespace);
      const found = ctx.lookupHost(fqdn);
      if (found === undefined) {
        ctx.report('ReferencedResourceNotFound', vs, [...path, 'host'], `Referenced host not found: ${JSON.stringify(d.host)}`);
        continue;
      }
      const portNumber = d.port?.number;
      if (portNumber === undefined && found.ports.length > 1) {
        ctx.report('VirtualServiceDestinationPortSelectorRequired', vs, [...path, 'host'],
          `This VirtualService routes to a service ${JSON.stringify(d.host)} that exposes multiple ports [${found.ports.join(' ')}]. Specifying a port in the destination is required to disambiguate.`);
      }
      if (portNumber !== undefined && found.ports.length > 0 && !found.ports.includes(portNumber)) {
        ctx.report('ReferencedResourceNotFound', vs, [...path, 'port', 'number'], `Referenced host:port not found: ${JSON.stringify(`${d.host}:${portNumber}`)}`);
      }
      if (d.subset !== undefined) {
        const hasSubset = ctx.model.destinationRules.some((dr) => hostsMatch(resolveShortname(dr.spec.host, dr.namespace), fqdn) && dr.spec.subsets?.some((s) => s.name === d.subset));
        if (!hasSubset) ctx.report('ReferencedResourceNotFound', vs, [...path, 'subset'], `Referenced host+subset in destinationrule not found: ${JSON.stringify(`${d.host}+${d.subset}`)}`);
      }
    }
  }
}

function gatewayKey(ref: string, namespace: string): string {
  return ref.includes('/') ? ref : `${namespace}/${ref}`;
}

/** IST0101 gateway, IST0132. */
function checkVirtualServiceGateways(ctx: Context): void {
  const gateways = new Map(ctx.model.gateways.map((g) => [`${g.namespace}/${g.name}`, g]));
  for (const vs of ctx.model.virtualServices) {
    vs.spec.gateways?.forEach((ref, i) => {
      if (ref === 'mesh') return;
      const gw = gateways.get(gatewayKey(ref, vs.namespace));
      if (gw === undefined) {
        ctx.report('ReferencedResourceNotFound', vs, ['spec', 'gateways', i], `Referenced gateway not found: ${JSON.stringify(ref)}`);
        return;
      }
      const serverHosts = gw.spec.servers.flatMap((s) => s.hosts.map((h) => (h.includes('/') ? h.slice(h.indexOf('/') + 1) : h)));
      const missing = (vs.spec.hosts ?? []).filter((h) => !serverHosts.some((sh) => hostsMatch(sh, resolveShortname(h, vs.namespace)) || hostsMatch(sh, h)));
      if (missing.length > 0) {
        ctx.report('VirtualServiceHostNotFoundInGateway', vs, ['spec', 'gateways', i],
          `one or more host [${missing.join(' ')}] defined in VirtualService ${vs.namespace}/${vs.name} not found in Gateway ${gw.namespace}/${gw.name}.`);
      }
    });
  }
}

/** IST0109: two VirtualServices bound to the mesh gateway for the same host. */
function checkMeshGatewayHostConflicts(ctx: Context): void {
  const byHost = new Map<string, { vs: VirtualService; index: number }[]>();
  for (const vs of ctx.model.virtualServices) {
    if (!vs.gateways.includes('mesh')) continue;
    const hosts = new Set<string>();
    (vs.spec.hosts ?? []).forEach((h, index) => {
      const fqdn = resolveShortname(h, vs.namespace);
      if (hosts.has(fqdn)) return;
      hosts.add(fqdn);
      const list = byHost.get(fqdn) ?? [];
      list.push({ vs, index });
      byHost.set(fqdn, list);
    });
  }
  for (const [host, list] of byHost) {
    if (list.length < 2) continue;
    const names = list.map((e) => `${e.vs.namespace}/${e.vs.name}`).sort().join(',');
    for (const { vs, index } of list) {
      ctx.report('ConflictingMeshGatewayVirtualServiceHosts', vs, ['spec', 'hosts', index],
        `The VirtualServices ${names} associated with mesh gateway define the same host ${host} which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.`);
    }
  }
}

function ruleName(name: string | undefined, index: number): string {
  return name ? JSON.stringify(name) : `#${index}`;
}

function matchKey(m: HTTPMatchRequest): string {
  const { name: _name, ...rest } = m;
  return stableStringify(rest);
}

function stableStringify(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${stableStringify((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/** IST0130 and IST0131: HTTP rules after a catch-all, and matches that repeat an earlier rule's match. */
function checkUnreachableRules(ctx: Context): void {
  for (const vs of ctx.model.virtualServices) {
    const routes = vs.spec.http ?? [];
    const earlier = new Map<string, number>();
    let catchAll: number | undefined;
    routes.forEach((r, i) => {
      if (catchAll !== undefined) {
        ctx.report('VirtualServiceUnreachableRule', vs, ['spec', 'http', i], `VirtualService rule ${ruleName(r.name, i)} not used (only the last rule can have no matches).`);
        return;
      }
      const matches = r.match ?? [];
      if (matches.length === 0) {
        catchAll = i;
        return;
      }
      const dups: { j: number; k: number }[] = [];
      matches.forEach((m, j) => {
        const k = earlier.get(matchKey(m));
        if (k !== undefined) dups.push({ j, k });
      });
      if (dups.length === matches.length) {
        ctx.report('VirtualServiceUnreachableRule', vs, ['spec', 'http', i], `VirtualService rule ${ruleName(r.name, i)} not used (all matches used by prior rules).`);
      } else {
        for (const { j, k } of dups) {
          ctx.report('VirtualServiceIneffectiveMatch', vs, ['spec', 'http', i, 'match', j],
            `VirtualService rule ${ruleName(r.name, i)} match ${ruleName(matches[j].name, j)} is not used (duplicate/overlapping match in rule ${ruleName(routes[k].name, k)}).`);
        }
      }
      matches.forEach((m) => {
        const key = matchKey(m);
        if (!earlier.has(key)) earlier.set(key, i);
      });
    });
  }
}

/** IST0101 selector: a Gateway whose selector matches no workload. */
function checkGatewaySelectors(ctx: Context): void {
  for (const gw of ctx.model.gateways) {
    const selector = gw.spec.selector ?? {};
    if (Object.keys(selector).length === 0) continue;
    // Istio: a Gateway selects gateway workloads in any namespace (PILOT_SCOPE_GATEWAY_TO_NAMESPACE off).
    if (!ctx.model.workloads.some((w) => selectorMatches(selector, w.labels))) {
      ctx.report('ReferencedResourceNotFound', gw, ['spec', 'selector'], `Referenced selector not found: ${JSON.stringify(formatSelector(selector))}`);
    }
  }
}

/** IST0173: a subset of a DestinationRule for a Kubernetes Service whose labels select none of the Service's pods. */
function checkSubsetsSelectPods(ctx: Context): void {
  for (const dr of ctx.model.destinationRules) {
    const svc = ctx.servicesByHost.get(resolveShortname(dr.spec.host, dr.namespace));
    if (svc === undefined || svc.selector === undefined) continue;
    const pods = ctx.model.workloads.filter((w) => w.namespace === svc.namespace && selectorMatches(svc.selector!, w.labels));
    dr.spec.subsets?.forEach((s, i) => {
      if (!pods.some((w) => selectorMatches(s.labels ?? {}, w.labels))) {
        ctx.report('DestinationRuleSubsetNotSelectPods', dr, ['spec', 'subsets', i, 'name'],
          `The Subset ${s.name} defined in the DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream).`);
      }
    });
  }
}

/** IST0101 selector, IST0110, IST0111 for Sidecars. */
function checkSidecars(ctx: Context): void {
  const byNamespace = new Map<string, typeof ctx.model.sidecars[number][]>();
  for (const sc of ctx.model.sidecars) {
    const list = byNamespace.get(sc.namespace) ?? [];
    list.push(sc);
    byNamespace.set(sc.namespace, list);
  }
  for (const [namespace, sidecars] of byNamespace) {
    const noSelector = sidecars.filter((s) => Object.keys(s.spec.workloadSelector?.labels ?? {}).length === 0);
    if (noSelector.length > 1) {
      const names = `[${noSelector.map((s) => s.name).sort().join(' ')}]`;
      for (const s of noSelector) ctx.report('MultipleSidecarsWithoutWorkloadSelectors', s, [], `The Sidecars ${names} in namespace ${JSON.stringify(namespace)} have no workload selector, which can lead to undefined behavior.`);
    }
    const withSelector = sidecars.filter((s) => Object.keys(s.spec.workloadSelector?.labels ?? {}).length > 0);
    const pods = ctx.model.workloads.filter((w) => w.namespace === namespace);
    const reported = new Set<string>();
    for (const s of withSelector) {
      const selector = s.spec.workloadSelector!.labels!;
      if (!pods.some((w) => selectorMatches(selector, w.labels))) {
        ctx.report('ReferencedResourceNotFound', s, ['spec', 'workloadSelector'], `Referenced selector not found: ${JSON.stringify(formatSelector(selector))}`);
      }
    }
    for (const w of pods) {
      const matching = withSelector.filter((s) => selectorMatches(s.spec.workloadSelector!.labels!, w.labels));
      if (matching.length < 2) continue;
      const names = `[${matching.map((s) => s.name).sort().join(' ')}]`;
      for (const s of matching) {
        if (reported.has(`${s.name} ${names}`)) continue;
        reported.add(`${s.name} ${names}`);
        ctx.report('ConflictingSidecarWorkloadSelectors', s, ['spec', 'workloadSelector'], `The Sidecars ${names} in namespace ${JSON.stringify(namespace)} select the same workload pod ${JSON.stringify(w.name)}, which can lead to undefined behavior.`);
      }
    }
  }
}

/** IST0118: Service ports whose protocol Istio cannot tell from the name or appProtocol. */
function checkPortNames(ctx: Context): void {
  for (const svc of ctx.model.services) {
    // Istio skips its own system namespaces.
    if (svc.namespace === 'kube-system' || svc.namespace === 'istio-system') continue;
    svc.ports.forEach((p, i) => {
      if (p.protocol !== 'UnsupportedProtocol' || p.appProtocol !== undefined) return;
      ctx.report('PortNameIsNotUnderNamingConvention', svc, ['spec', 'ports', i],
        `Port name ${p.name} (port: ${p.port}, targetPort: ${p.targetPort}) doesn't follow the naming convention of Istio port.`);
    });
  }
}

/**
 * IST0127: an AuthorizationPolicy whose selector matches no workload (of its namespace; of any namespace for the
 * root namespace `istio-system`, where a selector applies mesh-wide).
 */
function checkAuthorizationPolicySelectors(ctx: Context): void {
  for (const ap of ctx.model.authorizationPolicies) {
    const selector = ap.spec.selector?.matchLabels ?? {};
    if (Object.keys(selector).length === 0) continue;
    const pods = ctx.model.workloads.filter((w) => ap.namespace === 'istio-system' || w.namespace === ap.namespace);
    if (!pods.some((w) => selectorMatches(selector, w.labels))) {
      ctx.report('NoMatchingWorkloadsFound', ap, ['spec', 'selector'], `No matching workloads for this resource with the following labels: ${formatSelector(selector)}`);
    }
  }
}
