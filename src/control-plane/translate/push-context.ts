/**
 * PushContext: the indexes of one push (Istio's model.PushContext), built once from the config model and the
 * registry and shared by every proxy's build: services by host, DestinationRules by host, mesh VirtualServices by
 * host, Sidecars by namespace. Pure: its indexes are fixed at creation, and per-class builds are memoized in it
 * (memoByClass), which only saves work, never changes a result.
 */
import type { ConfigModel, DestinationRule, KubernetesService, Sidecar, VirtualService } from '../config/model.ts';
import { hostsMatch, resolveShortname, selectorMatches } from '../config/hosts.ts';
import type { Diagnostic } from '../../shared/errors.ts';
import type { Registry, RegistryService } from '../registry/registry.ts';
import type { ProxyInfo } from '../registry/proxy-info.ts';
import { diag } from './util.ts';

/** Namespace whose selector-less Sidecar is the mesh default (Istio's root namespace). */
export const ROOT_NAMESPACE = 'istio-system';

interface HostIndexed<T> {
  /** Host as resolved in the resource's namespace. */
  host: string;
  resource: T;
}

export class PushContext {
  readonly model: ConfigModel;
  readonly registry: Registry;
  /** Problems found while indexing (conflicting VirtualServices, …); per-proxy builds add their own. */
  readonly diagnostics: readonly Diagnostic[];
  /** DestinationRules by exact host, and the wildcard ones, each with its place in model order (ties keep it). */
  readonly #destinationRulesByHost = new Map<string, (HostIndexed<DestinationRule> & { order: number })[]>();
  readonly #wildcardDestinationRules: (HostIndexed<DestinationRule> & { order: number })[] = [];
  /** Kubernetes-kind registry services by namespace, in registry order (servicesOf's candidates). */
  readonly #servicesByNamespace = new Map<string, RegistryService[]>();
  readonly #sidecarsByNamespace = new Map<string, Sidecar[]>();
  /** Mesh VirtualServices by exact host (the first VirtualService per host is used) and the wildcard ones. */
  readonly #virtualServiceByHost = new Map<string, VirtualService>();
  readonly #wildcardVirtualServices: HostIndexed<VirtualService>[] = [];
  /** Kubernetes Services by `namespace/hostname` (the first of each, as model order gives them). */
  readonly #kubernetesServices = new Map<string, KubernetesService>();
  /**
   * Label keys any selector of translation reads (Sidecar and DestinationRule workloadSelectors, VirtualService
   * match sourceLabels), sorted: a proxy's outbound config depends on its labels only through these.
   */
  readonly classLabelKeys: readonly string[];
  /** Per-class builds of this push (see {@link memoByClass}). */
  readonly #byClass: Map<string, unknown>;
  /** Per-class builds that depend on the model and the registry's services but not on endpoints. */
  readonly #byClassEndpointFree: Map<string, unknown>;
  /** Per-proxy inbound builds (see {@link memoInbound}), by the connected proxy's own object. */
  readonly #inbound: WeakMap<ProxyInfo, unknown>;
  /** Per class and service builds (see {@link memoByService}), each with the endpoints it was built from. */
  readonly #byService: KeptBuilds;
  readonly #endpointKeys = new WeakMap<RegistryService, string>();
  /** Virtual hosts (see {@link memoVirtualHost}), each with the VirtualService it was built from. */
  readonly #virtualHosts: KeptBuilds;
  /** servicesOf per proxy, within this push. */
  readonly #servicesOf = new WeakMap<ProxyInfo, RegistryService[]>();
  /** Key sets the control plane fetched, by RequestAuthentication jwksUri (control-plane/jwks/resolver.ts). */
  readonly jwks: ReadonlyMap<string, string>;

  /**
   * @param previous the last push, if any: what it built is reused wherever this push's inputs differ only in what
   *   that build does not read (each rule below says what that is).
   */
  constructor(model: ConfigModel, registry: Registry, previous?: PushContext, inputs: PushInputs = {}) {
    this.model = model;
    this.registry = registry;
    this.jwks = inputs.jwks ?? new Map();
    // Which kinds of the model differ from the previous push's (compared once, then read by each reuse rule).
    const changed = previous === undefined ? undefined : previous.model === model ? new Set<keyof ConfigModel>() : changedKinds(previous.model, model);
    const onlyChanged = (allowed: readonly (keyof ConfigModel)[]): boolean => changed !== undefined && [...changed].every((k) => allowed.includes(k));
    // The registry's services, ports and hosts come from the model alone (registry.ts); only endpoints may differ.
    const sameServicesAsBefore = previous !== undefined && sameServices(previous.registry, registry);
    // Routes and outbound listeners read no endpoint and no WorkloadEntry: after a change of endpoints only (a
    // proxy came or went, a WorkloadEntry was added or edited) they are still right.
    const endpointsOnly = sameServicesAsBefore && onlyChanged(ENDPOINT_KINDS);
    this.#byClassEndpointFree = endpointsOnly ? previous!.#byClassEndpointFree : new Map();
    // Clusters and endpoints read no VirtualService: after an edit of VirtualServices only (the commonest
    // change), with the same registry, the previous push's are still right, and their objects (already encoded,
    // found by identity in the EncodingCache) are reused instead of rebuilt for every class.
    this.#byClass = previous !== undefined && onlyChanged(['virtualServices']) && sameRegistry(previous.registry, registry) ? previous.#byClass : new Map();
    // Per-service clusters and endpoints: after a change of endpoints only, a service whose endpoints are the same
    // keeps its previous ones (a WorkloadEntry added rebuilds one service's, not every class's thousands). When the
    // class builds were reused whole, so are their parts (the next endpoint-only push starts from them).
    this.#byService = new KeptBuilds(previous === undefined ? undefined : previous.#byService, { share: previous !== undefined && previous.#byClass === this.#byClass, reuse: endpointsOnly });
    // Virtual hosts read the services, DestinationRules and the one VirtualService of their host: after a change
    // of VirtualServices (or endpoints) only, one whose VirtualService is the same object is still right.
    const virtualServicesOrEndpointsOnly = sameServicesAsBefore && onlyChanged([...ENDPOINT_KINDS, 'virtualServices']);
    this.#virtualHosts = new KeptBuilds(previous === undefined ? undefined : previous.#virtualHosts, { share: previous !== undefined && previous.#byClassEndpointFree === this.#byClassEndpointFree, reuse: virtualServicesOrEndpointsOnly });
    // A proxy's inbound listeners and clusters read its workload's services (not their endpoints) and the
    // security, telemetry and mesh config, never a VirtualService or an endpoint: after a change of only those,
    // with the same fetched key sets, each connected proxy's are still right.
    this.#inbound = virtualServicesOrEndpointsOnly && sameMap(previous!.jwks, this.jwks) ? previous!.#inbound : new WeakMap();
    const diagnostics: Diagnostic[] = [...registry.diagnostics];
    for (const [order, dr] of model.destinationRules.entries()) {
      const indexed = { host: resolveShortname(dr.spec.host, dr.namespace), resource: dr, order };
      if (indexed.host.startsWith('*')) this.#wildcardDestinationRules.push(indexed);
      else {
        const list = this.#destinationRulesByHost.get(indexed.host);
        if (list === undefined) this.#destinationRulesByHost.set(indexed.host, [indexed]);
        else list.push(indexed);
      }
    }
    for (const s of registry.services) {
      if (s.kind !== 'Service') continue;
      const list = this.#servicesByNamespace.get(s.namespace);
      if (list === undefined) this.#servicesByNamespace.set(s.namespace, [s]);
      else list.push(s);
    }
    const seen = new Map<string, VirtualService>();
    for (const vs of model.virtualServices) {
      if (!vs.gateways.includes('mesh')) continue;
      (vs.spec.hosts ?? []).forEach((h, i) => {
        const host = resolveShortname(h, vs.namespace);
        const prior = seen.get(host);
        if (prior !== undefined) {
          // Istio (IST0109): only one VirtualService per host is used for the mesh gateway; the first wins.
          diagnostics.push(diag(vs, `spec.hosts[${i}]`, `host "${host}" is also routed by VirtualService ${prior.namespace}/${prior.name}; that one is used for the mesh`));
          return;
        }
        seen.set(host, vs);
        if (host.startsWith('*')) this.#wildcardVirtualServices.push({ host, resource: vs });
        else this.#virtualServiceByHost.set(host, vs);
      });
    }
    for (const sc of model.sidecars) {
      const list = this.#sidecarsByNamespace.get(sc.namespace) ?? [];
      list.push(sc);
      this.#sidecarsByNamespace.set(sc.namespace, list);
    }
    for (const k of model.services) {
      const key = `${k.namespace}/${k.hostname}`;
      if (!this.#kubernetesServices.has(key)) this.#kubernetesServices.set(key, k);
    }
    this.classLabelKeys = selectorLabelKeys(model);
    this.diagnostics = diagnostics;
  }

  /**
   * The proxy's class: everything its outbound config (clusters, endpoints, routes, outbound listeners) depends
   * on. Proxies of one class get the same outbound resources, so they are built once per class (Istio shares a
   * SidecarScope the same way). Conservative: type, namespace, interception mode, virtualOutbound port, the
   * Sidecar that applies and the values (or absence) of every label key a selector reads.
   */
  proxyClassKey(proxy: ProxyInfo): string {
    const sidecar = this.sidecarFor(proxy);
    return JSON.stringify([
      proxy.type, proxy.namespace, proxy.interceptionMode, proxy.outboundPort,
      sidecar === undefined ? null : `${sidecar.namespace}/${sidecar.name}`,
      this.classLabelKeys.map((k) => proxy.labels[k] ?? null),
    ]);
  }

  /**
   * The proxy as its class sees it: the fields of {@link proxyClassKey} kept, labels narrowed to the keys
   * selectors read, and the per-workload fields (id, name, addresses, ports) neutral. A builder given it can only
   * produce what every proxy of the class shares.
   */
  classProxy(proxy: ProxyInfo): ProxyInfo {
    const labels: Record<string, string> = {};
    for (const k of this.classLabelKeys) if (proxy.labels[k] !== undefined) labels[k] = proxy.labels[k];
    return {
      id: '', type: proxy.type, name: '', namespace: proxy.namespace, labels, ips: [], podPorts: [], interceptionMode: proxy.interceptionMode,
      endpointPorts: {}, outboundPort: proxy.outboundPort, inboundPort: 0,
    };
  }

  /**
   * Memoizes a proxy's inbound build (its own listeners and clusters), kept across pushes that change nothing it
   * reads (see the constructor) while the proxy stays connected (the same ProxyInfo object).
   */
  memoInbound<T>(proxy: ProxyInfo, build: () => T): T {
    return memoIn(this.#inbound, proxy, build);
  }

  /**
   * Memoizes a build for one service within a class (`what` names the build): the first call in this push builds,
   * or takes the previous push's if only endpoints changed since and this service's are equal.
   */
  memoByService<T>(classKey: string, what: string, service: RegistryService, build: () => T): T {
    let endpoints = this.#endpointKeys.get(service);
    if (endpoints === undefined) this.#endpointKeys.set(service, (endpoints = JSON.stringify([...service.endpoints])));
    return this.#byService.get(`${classKey}\n${what}\n${service.namespace}/${service.hostname}`, endpoints, build);
  }

  /**
   * Memoizes a virtual host (key: class, route table kind, port and service): built once per push, or taken from
   * the previous push when that allows it (see the constructor) and `vs`, the VirtualService of its host, is the
   * very object it was built from.
   */
  memoVirtualHost<T>(key: string, vs: unknown, build: () => T): T {
    return this.#virtualHosts.get(key, vs, build);
  }

  /**
   * Memoizes a per-class build for this push: the first call for `key` builds, later ones return the same value,
   * which callers share and must not mutate. `endpointFree` builds (they read no endpoint) may come from the
   * previous push of the same model (see the constructor).
   */
  memoByClass<T>(key: string, build: () => T, opts: { endpointFree?: boolean } = {}): T {
    return memoIn(opts.endpointFree === true ? this.#byClassEndpointFree : this.#byClass, key, build);
  }

  /** The service for a host, if any. */
  service(host: string): RegistryService | undefined {
    return this.registry.byHost.get(host);
  }

  /**
   * The DestinationRule for `host` as seen from `proxy`: an exact host match before a wildcard one (the most
   * specific wildcard first); among equals, one in the proxy's namespace, then the service's, then the first.
   * DestinationRules with a workloadSelector apply only to the proxies they select.
   */
  destinationRule(proxy: ProxyInfo, host: string, serviceNamespace: string): DestinationRule | undefined {
    // Candidates in model order (equal ranks keep the first): the host's own, then wildcards that match it.
    const exact = this.#destinationRulesByHost.get(host) ?? [];
    const wild = this.#wildcardDestinationRules.filter((d) => hostsMatch(d.host, host));
    const candidates = (wild.length === 0 ? exact : [...exact, ...wild].sort((a, b) => a.order - b.order)).filter((d) => {
      const sel = d.resource.spec.workloadSelector?.matchLabels;
      return sel === undefined || (d.resource.namespace === proxy.namespace && selectorMatches(sel, proxy.labels));
    });
    if (candidates.length === 0) return undefined;
    const rank = (d: HostIndexed<DestinationRule>): number =>
      (d.host === host ? 0 : 1000 - d.host.length) * 10 + (d.resource.namespace === proxy.namespace ? 0 : d.resource.namespace === serviceNamespace ? 1 : 2);
    let best = candidates[0];
    for (const c of candidates) if (rank(c) < rank(best)) best = c;
    return best.resource;
  }

  /** The mesh VirtualService routing `host`: exact host first, else the most specific wildcard. */
  virtualService(host: string): VirtualService | undefined {
    const exact = this.#virtualServiceByHost.get(host);
    if (exact !== undefined) return exact;
    let best: HostIndexed<VirtualService> | undefined;
    for (const v of this.#wildcardVirtualServices) {
      if (v.host === host) return v.resource;
      if (hostsMatch(v.host, host) && (best === undefined || v.host.length > best.host.length)) best = v;
    }
    return best?.resource;
  }

  /**
   * The Sidecar that applies to a proxy (Istio's precedence): one in its namespace whose workloadSelector matches
   * it, else the selector-less one of its namespace, else the selector-less one of the root namespace.
   */
  sidecarFor(proxy: ProxyInfo): Sidecar | undefined {
    const own = this.#sidecarsByNamespace.get(proxy.namespace) ?? [];
    const selected = own.find((s) => s.spec.workloadSelector?.labels !== undefined && selectorMatches(s.spec.workloadSelector.labels, proxy.labels));
    if (selected) return selected;
    const dflt = own.find((s) => s.spec.workloadSelector?.labels === undefined);
    if (dflt) return dflt;
    return (this.#sidecarsByNamespace.get(ROOT_NAMESPACE) ?? []).find((s) => s.spec.workloadSelector?.labels === undefined);
  }

  /**
   * Services a proxy sees, sorted by hostname: those exported to its namespace (`exportTo`), narrowed by its
   * Sidecar's egress hosts (`ns/host`: `*` any namespace, `.` the Sidecar's own, `~` none; host `*`, a wildcard
   * or an exact name). Without a Sidecar, every exported service (Istio's all-namespaces, all-hosts default). Only the first service per
   * host is used (see Registry.byHost).
   */
  servicesVisibleTo(proxy: ProxyInfo): RegistryService[] {
    const sidecar = this.sidecarFor(proxy);
    const egress = sidecar?.spec.egress?.flatMap((e) => e.hosts) ?? ['*/*'];
    const sidecarNs = sidecar?.namespace ?? proxy.namespace;
    return this.registry.services.filter((s) => {
      if (this.registry.byHost.get(s.hostname) !== s) return false;
      if (!isExportedTo(s, proxy.namespace)) return false;
      return egress.some((e) => {
        const slash = e.indexOf('/');
        const ns = slash < 0 ? '*' : e.slice(0, slash);
        const host = slash < 0 ? e : e.slice(slash + 1);
        if (ns === '~') return false;
        if (ns !== '*' && (ns === '.' ? sidecarNs : ns) !== s.namespace) return false;
        return host === '*' || hostsMatch(host, s.hostname);
      });
    });
  }

  /** The Sidecar's outbound traffic policy mode (Istio's default ALLOW_ANY). */
  outboundTrafficMode(proxy: ProxyInfo): 'ALLOW_ANY' | 'REGISTRY_ONLY' {
    return this.sidecarFor(proxy)?.spec.outboundTrafficPolicy?.mode ?? 'ALLOW_ANY';
  }

  /** Services whose selector selects the proxy's workload (its inbound side), sorted by hostname. */
  servicesOf(proxy: ProxyInfo): RegistryService[] {
    let found = this.#servicesOf.get(proxy);
    if (found === undefined) this.#servicesOf.set(proxy, (found = this.#findServicesOf(proxy)));
    return found;
  }

  #findServicesOf(proxy: ProxyInfo): RegistryService[] {
    return (this.#servicesByNamespace.get(proxy.namespace) ?? []).filter((s) => {
      const svc = this.#kubernetesServices.get(`${s.namespace}/${s.hostname}`);
      const sel = svc?.selector;
      return sel !== undefined && Object.keys(sel).length > 0 && selectorMatches(sel, proxy.labels);
    });
  }
}

/** Label keys read by the selectors translation evaluates against a proxy's labels, sorted. */
function selectorLabelKeys(model: ConfigModel): string[] {
  const keys = new Set<string>();
  const add = (sel: Readonly<Record<string, string>> | undefined): void => {
    for (const k of Object.keys(sel ?? {})) keys.add(k);
  };
  for (const sc of model.sidecars) add(sc.spec.workloadSelector?.labels);
  for (const dr of model.destinationRules) add(dr.spec.workloadSelector?.matchLabels);
  for (const vs of model.virtualServices) {
    for (const r of vs.spec.http ?? []) for (const m of r.match ?? []) add(m.sourceLabels);
    for (const r of vs.spec.tcp ?? []) for (const m of r.match ?? []) add(m.sourceLabels);
    for (const r of vs.spec.tls ?? []) for (const m of r.match) add(m.sourceLabels);
  }
  return [...keys].sort();
}

/** Model kinds that only give endpoints (a WorkloadEntry is both in `workloadEntries` and in `workloads`). */
const ENDPOINT_KINDS: readonly (keyof ConfigModel)[] = ['workloadEntries', 'workloads'];

/**
 * Builds by key, each with the input it was built from (`token`, compared by identity), kept across pushes: a
 * push's build is taken from the previous push's when `reuse` allows it and the token is the same. `share` keeps
 * the previous push's very map (its builds are all still right, as when the builds made of them were reused whole).
 */
class KeptBuilds {
  readonly #entries: Map<string, { token: unknown; value: unknown }>;
  readonly #previous: ReadonlyMap<string, { token: unknown; value: unknown }> | undefined;

  constructor(previous: KeptBuilds | undefined, opts: { share: boolean; reuse: boolean }) {
    this.#entries = previous !== undefined && opts.share ? previous.#entries : new Map();
    this.#previous = previous !== undefined && opts.reuse ? previous.#entries : undefined;
  }

  get<T>(key: string, token: unknown, build: () => T): T {
    const mine = this.#entries.get(key);
    if (mine !== undefined) return mine.value as T;
    const before = this.#previous?.get(key);
    const entry = before !== undefined && before.token === token ? before : { token, value: build() };
    this.#entries.set(key, entry);
    return entry.value as T;
  }
}

/** `build()` once per key of `memo`. */
function memoIn<K, T>(memo: { has(k: K): boolean; get(k: K): unknown; set(k: K, v: unknown): unknown }, key: K, build: () => T): T {
  if (memo.has(key)) return memo.get(key) as T;
  const value = build();
  memo.set(key, value);
  return value;
}

/** The kinds (model keys) whose resources differ between two models. */
function changedKinds(a: ConfigModel, b: ConfigModel): Set<keyof ConfigModel> {
  const out = new Set<keyof ConfigModel>();
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)]) as Set<keyof ConfigModel>) {
    const x = a[k];
    const y = b[k];
    if (x === y) continue;
    if (x === undefined || y === undefined || x.length !== y.length) out.add(k);
    // Unchanged documents validate to the same objects (config/validate.ts): only the others are compared by content.
    else if (!(x as readonly unknown[]).every((r, i) => r === (y as readonly unknown[])[i] || JSON.stringify(r) === JSON.stringify((y as readonly unknown[])[i]))) out.add(k);
  }
  return out;
}

function sameMap(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean {
  if (a === b) return true;
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

/** Equal registries: the same services, ports and endpoints (compared as JSON). */
function sameRegistry(a: Registry, b: Registry): boolean {
  return a === b || (a.services.length === b.services.length && JSON.stringify(a.services, mapsAsEntries) === JSON.stringify(b.services, mapsAsEntries));
}

/** JSON.stringify replacer: a Map (a service's endpoints per port) as its entries, not `{}`. */
function mapsAsEntries(_key: string, value: unknown): unknown {
  return value instanceof Map ? [...value] : value;
}

/** Whether two registries have the same services (hosts, in order): then they differ at most in endpoints. */
function sameServices(a: Registry, b: Registry): boolean {
  if (a.services.length !== b.services.length) return false;
  for (let i = 0; i < a.services.length; i++) {
    const x = a.services[i];
    const y = b.services[i];
    if (x.hostname !== y.hostname || x.namespace !== y.namespace || x.kind !== y.kind || x.ports.length !== y.ports.length) return false;
  }
  return true;
}

function isExportedTo(s: RegistryService, namespace: string): boolean {
  return s.exportTo.some((e) => e === '*' || (e === '.' ? s.namespace === namespace : e === namespace));
}

/** What a push reads besides config and registry: results of the control plane's own I/O. */
export interface PushInputs {
  /** jwksUri → the key set (JSON text) the control plane fetched. */
  jwks?: ReadonlyMap<string, string>;
}

export function createPushContext(model: ConfigModel, registry: Registry, previous?: PushContext, inputs?: PushInputs): PushContext {
  return new PushContext(model, registry, previous, inputs);
}
