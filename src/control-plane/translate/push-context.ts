/**
 * PushContext: the indexes of one push (Istio's model.PushContext), built once from the config model and the
 * registry and shared by every proxy's build: services by host, DestinationRules by host, mesh VirtualServices by
 * host, Sidecars by namespace. Pure and immutable after creation.
 */
import type { ConfigModel, DestinationRule, Sidecar, VirtualService } from '../config/model.ts';
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
  readonly #destinationRules: HostIndexed<DestinationRule>[] = [];
  readonly #virtualServices: HostIndexed<VirtualService>[] = [];
  readonly #sidecarsByNamespace = new Map<string, Sidecar[]>();

  constructor(model: ConfigModel, registry: Registry) {
    this.model = model;
    this.registry = registry;
    const diagnostics: Diagnostic[] = [...registry.diagnostics];
    for (const dr of model.destinationRules) this.#destinationRules.push({ host: resolveShortname(dr.spec.host, dr.namespace), resource: dr });
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
        this.#virtualServices.push({ host, resource: vs });
      });
    }
    for (const sc of model.sidecars) {
      const list = this.#sidecarsByNamespace.get(sc.namespace) ?? [];
      list.push(sc);
      this.#sidecarsByNamespace.set(sc.namespace, list);
    }
    this.diagnostics = diagnostics;
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
    const candidates = this.#destinationRules.filter((d) => {
      const sel = d.resource.spec.workloadSelector?.matchLabels;
      if (sel !== undefined && (d.resource.namespace !== proxy.namespace || !selectorMatches(sel, proxy.labels))) return false;
      return d.host === host || (d.host.startsWith('*') && hostsMatch(d.host, host));
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
    let best: HostIndexed<VirtualService> | undefined;
    for (const v of this.#virtualServices) {
      if (v.host === host) return v.resource;
      if (v.host.startsWith('*') && hostsMatch(v.host, host) && (best === undefined || v.host.length > best.host.length)) best = v;
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
    return this.registry.services.filter((s) => {
      if (s.kind !== 'Service' || s.namespace !== proxy.namespace) return false;
      const svc = this.model.services.find((k) => k.hostname === s.hostname && k.namespace === s.namespace);
      const sel = svc?.selector;
      return sel !== undefined && Object.keys(sel).length > 0 && selectorMatches(sel, proxy.labels);
    });
  }
}

function isExportedTo(s: RegistryService, namespace: string): boolean {
  return s.exportTo.some((e) => e === '*' || (e === '.' ? s.namespace === namespace : e === namespace));
}

/** Builds the indexes of one push. */
export function createPushContext(model: ConfigModel, registry: Registry): PushContext {
  return new PushContext(model, registry);
}
