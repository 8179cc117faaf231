/**
 * LDS for one proxy (Istio's pilot/pkg/networking/core/listener*.go).
 *
 * Sidecar, transparent interception (INTERCEPTION_MODE REDIRECT or TPROXY, Istio's layout):
 * - `virtualOutbound` on 0.0.0.0:15001 with `use_original_dst`: captured connections are handed to the listener
 *   of their original destination port. Sloop adds one filter chain Istio keeps elsewhere: plain HTTP (found by
 *   http_inspector) goes to an HTTP connection manager with the `http_proxy` route configuration, so an app using
 *   the sidecar as its HTTP_PROXY (explicit mode) is routed by Host exactly as the port listeners route. Anything
 *   else goes to PassthroughCluster (ALLOW_ANY) or BlackHoleCluster (REGISTRY_ONLY).
 * - `0.0.0.0_PORT` per outbound port, `bind_to_port: false`: HTTP ports an HCM over RDS `"PORT"`; TLS ports one
 *   chain per SNI host; TCP ports tcp_proxy. Without ClusterIPs a TCP port can tell services apart only by a
 *   ServiceEntry address; otherwise the first service (by hostname) owns the port and the rest are diagnosed.
 * - `virtualInbound` on 0.0.0.0:15006 (original_dst listener filter): a chain per target port of the workload's
 *   services (`destination_port`), HTTP to an HCM routing to `inbound|PORT||`, TCP to tcp_proxy.
 * Sidecar, explicit mode (INTERCEPTION_MODE NONE): nothing is redirected, so there are no port listeners and no
 * virtualInbound; `virtualOutbound` on 127.0.0.1:15001 is the HTTP proxy only.
 * Either mode: for each target port that `SLOOP_ENDPOINT_PORTS` maps to another port, a listener
 * `inbound_IP_PORT` bound there with that port's inbound chain (a local mesh's per-sidecar inbound port).
 * Proxyless gRPC: an `api_listener` named `HOST:PORT` per service port, HCM over RDS `HOST:PORT`.
 * Pure.
 */
import { meshConfigOf } from '../config/model.ts';
import type { Listener } from '../../xds/gen/envoy/config/listener/v3/Listener.ts';
import type { FilterChain } from '../../xds/gen/envoy/config/listener/v3/FilterChain.ts';
import type { Diagnostic } from '../../shared/errors.ts';
import type { ProxyInfo } from '../registry/proxy-info.ts';
import type { RegistryPort, RegistryService } from '../registry/registry.ts';
import type { PushContext } from './push-context.ts';
import type { RouteDestination, VirtualService } from '../config/model.ts';
import { hostsMatch, resolveShortname } from '../config/hosts.ts';
import { inboundPorts } from './clusters.ts';
import { matchApplies } from './routes.ts';
import { rbacFilters, resolveCustomProvider } from './authz.ts';
import {
  ISTIO_MTLS_ALPNS, TLS_MODE_ISTIO, TLS_MODE_LABEL, type EffectiveMtlsMode, composePeerAuthentication, hasMeshCertificates, inboundMtlsContext, jwtAuthnFilter, policiesFor,
  portMtlsMode,
} from './security.ts';
import {
  ADS_SOURCE, BLACKHOLE_CLUSTER, FILTER, HTTP_PROXY_ROUTE_NAME, INBOUND_PASSTHROUGH_CLUSTER, PASSTHROUGH_CLUSTER, TYPE, any, diag,
  inboundClusterName, isHttpProtocol, isTlsProtocol, outboundClusterName, sortByName,
} from './util.ts';

/** The HTTP filters of outbound connection managers: cors and fault (for per-route configs), then the router. */
function outboundHttpFilters(): object[] {
  // is_optional: a proxy that lacks the filter (Sloop's, today) skips it instead of rejecting the listener; Envoy
  // runs it. Istio's order: cors, fault, router.
  return [
    { name: FILTER.cors, typed_config: any(TYPE.cors, {}), is_optional: true },
    { name: FILTER.fault, typed_config: any(TYPE.fault, {}), is_optional: true },
    { name: FILTER.router, typed_config: any(TYPE.router, {}) },
  ];
}

function rdsHcm(statPrefix: string, routeName: string, extra: Record<string, unknown> = {}): object {
  return {
    name: 'envoy.filters.network.http_connection_manager',
    typed_config: any(TYPE.hcm, {
      stat_prefix: statPrefix,
      rds: { config_source: ADS_SOURCE, route_config_name: routeName },
      http_filters: outboundHttpFilters(),
      upgrade_configs: [{ upgrade_type: 'websocket' }],
      ...extra,
    }),
  };
}

function tcpProxy(statPrefix: string, target: string | { name: string; weight: number }[]): object {
  const body = typeof target === 'string' ? { cluster: target } : { weighted_clusters: { clusters: target.map((t) => ({ name: t.name, weight: t.weight })) } };
  return { name: 'envoy.filters.network.tcp_proxy', typed_config: any(TYPE.tcpProxy, { stat_prefix: statPrefix, ...body }) };
}

function socketAddress(address: string, port: number): Listener['address'] {
  return { socket_address: { address, port_value: port } };
}

/** Builds the proxy's listeners, sorted by name. */
export function buildListeners(push: PushContext, proxy: ProxyInfo, services: readonly RegistryService[], diagnostics: Diagnostic[]): Listener[] {
  return sortByName([...buildOutboundListeners(push, proxy, services, diagnostics), ...buildInboundListeners(push, proxy, diagnostics)], (l) => l.name ?? '');
}

/**
 * The listeners every proxy of the class gets (virtualOutbound, the outbound port listeners, a proxyless
 * client's api_listeners), sorted by name: they read of the proxy only what PushContext.proxyClassKey covers.
 */
export function buildOutboundListeners(push: PushContext, proxy: ProxyInfo, services: readonly RegistryService[], diagnostics: Diagnostic[]): Listener[] {
  if (proxy.type === 'grpc') return sortByName(proxylessListeners(services), (l) => l.name ?? '');
  const out: Listener[] = [];
  const transparent = proxy.interceptionMode !== 'NONE';
  const passthrough = push.outboundTrafficMode(proxy) === 'REGISTRY_ONLY' ? BLACKHOLE_CLUSTER : PASSTHROUGH_CLUSTER;
  const httpProxyHcm = rdsHcm('outbound_http_proxy', HTTP_PROXY_ROUTE_NAME, { upgrade_configs: [{ upgrade_type: 'websocket' }, { upgrade_type: 'CONNECT' }] });
  if (transparent) {
    out.push({
      name: 'virtualOutbound',
      address: socketAddress('0.0.0.0', proxy.outboundPort),
      use_original_dst: { value: true },
      listener_filters: [{ name: 'envoy.filters.listener.http_inspector', typed_config: any(TYPE.httpInspector, {}) }],
      filter_chains: [{ name: 'http_proxy', filter_chain_match: { application_protocols: ['http/1.0', 'http/1.1', 'h2c'] }, filters: [httpProxyHcm] }],
      default_filter_chain: { name: 'PassthroughFilterChain', filters: [tcpProxy(passthrough, passthrough)] },
      traffic_direction: 'OUTBOUND',
    });
    out.push(...outboundPortListeners(push, proxy, services, diagnostics));
  } else {
    out.push({ name: 'virtualOutbound', address: socketAddress('127.0.0.1', proxy.outboundPort), filter_chains: [{ name: 'http_proxy', filters: [httpProxyHcm] }], traffic_direction: 'OUTBOUND' });
  }
  return sortByName(out, (l) => l.name ?? '');
}

/**
 * The listeners of the proxy's own workload (virtualInbound, `inbound_IP_PORT`), sorted by name, with Istio's
 * security on every inbound chain (security.ts, authz.ts):
 * - mTLS per workload port from PeerAuthentication. STRICT: one chain for the port whose transport socket
 *   requires TLS with a mesh client certificate (no transport_protocol match, so plaintext on a STRICT port fails
 *   the handshake instead of falling through to the passthrough chain). PERMISSIVE (the default): an mTLS chain
 *   (`transport_protocol: tls`, Istio's mTLS ALPNs), a chain for other TLS (passed to the app as bytes, as
 *   Istio) and a plaintext chain (`raw_buffer`); the listener gets tls_inspector. DISABLE: plaintext only. A
 *   workload without mesh certificates (no `security.istio.io/tlsMode: istio` label) serves PERMISSIVE ports in
 *   plaintext only, since no peer sends it mTLS (auto mTLS reads the same label); STRICT still requires mTLS.
 * - HTTP chains: jwt_authn (RequestAuthentication), the RBAC and ext_authz filters (AuthorizationPolicy; CUSTOM
 *   through meshConfig.extensionProviders), the router; Istio's BASE path normalization (`normalize_path`, no
 *   slash merging, escaped slashes kept). TCP chains: network RBAC before tcp_proxy.
 */
export function buildInboundListeners(push: PushContext, proxy: ProxyInfo, diagnostics: Diagnostic[] = []): Listener[] {
  if (proxy.type === 'grpc') return [];
  const out: Listener[] = [];
  const transparent = proxy.interceptionMode !== 'NONE';
  const inbound = inboundPorts(push, proxy);
  const peerAuthn = composePeerAuthentication(push.model, proxy.namespace, proxy.labels);
  const certs = hasMeshCertificates(proxy.labels);
  const authz = policiesFor(push.model.authorizationPolicies, proxy.namespace, proxy.labels);
  const anyHttp = inbound.some((i) => isHttpProtocol(i.port.protocol));
  const jwt = anyHttp ? jwtAuthnFilter(push, proxy, diagnostics) : undefined;
  // Built once per proxy and shared by its chains (filter objects are read-only once built). CUSTOM policies'
  // provider is resolved once (its diagnostics once); TCP chains' CUSTOM warning only where TCP chains carry
  // traffic: a TCP port, the passthrough (transparent mode), or the non-mesh TLS chain of a PERMISSIVE workload.
  const custom = resolveCustomProvider(push, proxy, authz, diagnostics);
  const httpRbac = anyHttp ? rbacFilters(authz, false, diagnostics, custom) : [];
  const tcpChains = transparent || certs || inbound.some((i) => !isHttpProtocol(i.port.protocol));
  const tcpRbac = rbacFilters(authz, true, tcpChains ? diagnostics : undefined, custom);
  const inboundChains = (port: RegistryPort, targetPort: number, matchPort: boolean): FilterChain[] => {
    const cluster = inboundClusterName(targetPort);
    const statPrefix = `inbound_0.0.0.0_${targetPort}`;
    const http = isHttpProtocol(port.protocol);
    const filters = http
      ? [{
        name: 'envoy.filters.network.http_connection_manager',
        typed_config: any(TYPE.hcm, {
          stat_prefix: statPrefix,
          route_config: {
            name: cluster,
            validate_clusters: { value: false },
            virtual_hosts: [{ name: `inbound|http|${port.port}`, domains: ['*'], routes: [{ name: 'default', match: { prefix: '/' }, route: { cluster, timeout: { seconds: 0, nanos: 0 } } }] }],
          },
          http_filters: [...(jwt !== undefined ? [jwt] : []), ...httpRbac, { name: FILTER.router, typed_config: any(TYPE.router, {}) }],
          upgrade_configs: [{ upgrade_type: 'websocket' }],
          // meshConfig.pathNormalization (default BASE), on inbound where authorization reads the path.
          ...pathNormalizationFields(meshConfigOf(push.model).config.pathNormalization?.normalization ?? 'BASE'),
          // Istio's sidecar inbound: the app learns its caller's identity from x-forwarded-client-cert, and a
          // plaintext client's forged header is removed.
          forward_client_cert_details: 'APPEND_FORWARD',
          set_current_client_cert_details: { subject: { value: true }, dns: true, uri: true },
        }),
      }]
      : [...tcpRbac, tcpProxy(cluster, cluster)];
    const mode = portMtlsMode(peerAuthn, targetPort);
    if (mode === 'STRICT' && !certs) {
      const pa = peerAuthn.from[peerAuthn.from.length - 1];
      if (pa !== undefined) diagnostics.push(diag(pa, 'spec.mtls.mode', `workload ${proxy.namespace}/${proxy.name} has no mesh certificates (label ${TLS_MODE_LABEL}: ${TLS_MODE_ISTIO}), yet its port ${targetPort} is STRICT: every connection to it will fail the mTLS handshake`));
    }
    // TLS that is not the mesh's (the app's own TLS) goes to the app as bytes, under the TCP authorization rules.
    const tlsFilters = http ? [...tcpRbac, tcpProxy(cluster, cluster)] : filters;
    return securedChains(cluster, filters, tlsFilters, http, mode, certs, matchPort ? targetPort : undefined);
  };
  const passthroughFilters = [...tcpRbac, tcpProxy(INBOUND_PASSTHROUGH_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER)];
  // tls_inspector where a chain matches on the transport or terminates TLS: it also gives the proxy the client's
  // ALPN list, so a handshake whose ALPN does not overlap ours (a mesh client offers `istio`) completes without
  // ALPN, as in Envoy, instead of failing.
  const inspect = (chains: FilterChain[]) => (chains.some((c) => c.filter_chain_match?.transport_protocol || c.transport_socket !== undefined)
    ? [{ name: 'envoy.filters.listener.tls_inspector', typed_config: any(TYPE.tlsInspector, {}) }]
    : []);
  if (transparent) {
    const chains = inbound.flatMap((i) => inboundChains(i.port, i.targetPort, true));
    // Ports no Service declares go to the app as they came (InboundPassthroughClusterIpv4), under the same
    // policies as Istio's passthrough chains: the workload's mTLS mode (portLevelMtls ports get chains of their
    // own) and its AuthorizationPolicies with TCP semantics.
    const known = new Set(inbound.map((i) => i.targetPort));
    for (const [port, mode] of [...peerAuthn.perPort].sort((a, b) => a[0] - b[0])) {
      if (!known.has(port)) chains.push(...securedChains(`InboundPassthroughFilterChain_${port}`, passthroughFilters, passthroughFilters, false, mode, certs, port));
    }
    const fallback = securedChains('InboundPassthroughFilterChain', passthroughFilters, passthroughFilters, false, peerAuthn.mode, certs, undefined);
    // The catch-all is the default chain (no match); a PERMISSIVE workload's istio-mTLS passthrough is a chain.
    const defaultChain = fallback.find((c) => c.filter_chain_match == null || c.filter_chain_match.transport_protocol === 'raw_buffer')!;
    chains.push(...fallback.filter((c) => c !== defaultChain && c.transport_socket !== undefined));
    const { filter_chain_match: _m, ...dflt } = defaultChain;
    out.push({
      name: 'virtualInbound',
      address: socketAddress('0.0.0.0', proxy.inboundPort),
      listener_filters: [{ name: 'envoy.filters.listener.original_dst', typed_config: any(TYPE.originalDst, {}) }, ...inspect([...chains, defaultChain])],
      filter_chains: chains,
      default_filter_chain: dflt,
      traffic_direction: 'INBOUND',
    });
  }
  for (const i of inbound) {
    const p = proxy.endpointPorts[i.targetPort];
    if (p === undefined || p === i.targetPort) continue;
    const ip = proxy.ips[0] ?? '0.0.0.0';
    const chains = inboundChains(i.port, i.targetPort, false);
    const filters = inspect(chains);
    out.push({ name: `inbound_${ip}_${p}`, address: socketAddress(ip, p), ...(filters.length > 0 ? { listener_filters: filters } : {}), filter_chains: chains, traffic_direction: 'INBOUND' });
  }
  return sortByName(out, (l) => l.name ?? '');
}

/**
 * The filter chains of one inbound port (or, with `port` undefined, of the passthrough) for its mTLS mode. STRICT:
 * one chain, no transport match, TLS required. PERMISSIVE with certificates: istio-mTLS, other TLS (`tlsFilters`:
 * bytes to the app), plaintext. Otherwise plaintext only.
 */
function securedChains(name: string, filters: object[], tlsFilters: object[], http: boolean, mode: EffectiveMtlsMode, certs: boolean, port: number | undefined): FilterChain[] {
  const portMatch = port !== undefined ? { destination_port: { value: port } } : {};
  const withMatch = (extra: Record<string, unknown>) => (Object.keys({ ...portMatch, ...extra }).length > 0 ? { filter_chain_match: { ...portMatch, ...extra } } : {});
  const mtls = { name: 'envoy.transport_sockets.tls', typed_config: any(TYPE.downstreamTls, inboundMtlsContext(http)) };
  if (mode === 'STRICT') return [{ name, ...withMatch({}), filters, transport_socket: mtls }];
  if (mode === 'DISABLE' || !certs) return [{ name, ...withMatch({}), filters }];
  return [
    { name: `${name}mtls`, ...withMatch({ transport_protocol: 'tls', application_protocols: ISTIO_MTLS_ALPNS }), filters, transport_socket: mtls },
    { name: `${name}tls`, ...withMatch({ transport_protocol: 'tls' }), filters: tlsFilters },
    { name, ...withMatch({ transport_protocol: 'raw_buffer' }), filters },
  ];
}

function outboundPortListeners(push: PushContext, proxy: ProxyInfo, services: readonly RegistryService[], diagnostics: Diagnostic[]): Listener[] {
  const byPort = new Map<number, { service: RegistryService; port: RegistryPort }[]>();
  for (const service of services) {
    for (const port of service.ports) {
      if (port.protocol === 'UDP') continue;
      const list = byPort.get(port.port) ?? [];
      list.push({ service, port });
      byPort.set(port.port, list);
    }
  }
  const out: Listener[] = [];
  for (const portNumber of [...byPort.keys()].sort((a, b) => a - b)) {
    const entries = byPort.get(portNumber)!;
    const name = `0.0.0.0_${portNumber}`;
    const base = { name, address: socketAddress('0.0.0.0', portNumber), bind_to_port: { value: false }, traffic_direction: 'OUTBOUND' as const };
    const http = entries.filter((e) => isHttpProtocol(e.port.protocol));
    const others = entries.filter((e) => !isHttpProtocol(e.port.protocol));
    if (http.length > 0) {
      for (const e of others) {
        diagnostics.push(diag(resourceOf(push, e.service), 'spec.ports', `port ${portNumber} of ${e.service.hostname} (${e.port.protocol}) shares an outbound port with HTTP services and cannot be told apart without a service address; it is reachable only through its cluster`));
      }
      out.push({ ...base, filter_chains: [{ filters: [rdsHcm(`outbound_0.0.0.0_${portNumber}`, String(portNumber))] }] });
      continue;
    }
    const chains: FilterChain[] = [];
    let defaultChain: FilterChain | undefined;
    let needsTlsInspector = false;
    for (const e of others) {
      const vs = push.virtualService(e.service.hostname);
      if (isTlsProtocol(e.port.protocol)) {
        needsTlsInspector = true;
        chains.push(...tlsChains(push, proxy, vs, e.service, portNumber, diagnostics));
        continue;
      }
      const target = tcpTarget(push, proxy, vs, e.service, portNumber, diagnostics);
      const ipRanges = e.service.addresses.map((a) => {
        const [ip, bits] = a.split('/');
        return { address_prefix: ip, prefix_len: { value: bits !== undefined ? Number(bits) : ip.includes(':') ? 128 : 32 } };
      });
      const chain: FilterChain = { name: `${e.service.hostname}:${portNumber}`, filters: [tcpProxy(`outbound|${portNumber}||${e.service.hostname}`, target)] };
      if (ipRanges.length > 0) chains.push({ ...chain, filter_chain_match: { prefix_ranges: ipRanges } });
      else if (defaultChain === undefined) defaultChain = chain;
      else {
        diagnostics.push(diag(resourceOf(push, e.service), 'spec.ports', `TCP port ${portNumber} of ${e.service.hostname} is also used by ${defaultChain.name!.split(':')[0]}, and without a service address the two cannot be told apart; ${defaultChain.name!.split(':')[0]} gets the port`));
      }
    }
    // Filter chains must be unique by match: keep the first chain per SNI set.
    const seen = new Set<string>();
    const unique = chains.filter((c) => {
      const key = JSON.stringify(c.filter_chain_match ?? {});
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
    out.push({
      ...base,
      ...(needsTlsInspector ? { listener_filters: [{ name: 'envoy.filters.listener.tls_inspector', typed_config: any(TYPE.tlsInspector, {}) }] } : {}),
      filter_chains: unique,
      ...(defaultChain !== undefined ? { default_filter_chain: defaultChain } : {}),
    });
  }
  return out;
}

/** The service's config resource, for diagnostics. */
function resourceOf(push: PushContext, s: RegistryService) {
  const found = s.kind === 'Service'
    ? push.model.services.find((k) => k.hostname === s.hostname && k.namespace === s.namespace)
    : push.model.serviceEntries.find((e) => e.namespace === s.namespace && e.name === s.name);
  return found!;
}

function weighted(push: PushContext, vs: VirtualService, route: readonly RouteDestination[], port: number): string | { name: string; weight: number }[] {
  const dests = route.filter((d) => route.length === 1 || (d.weight ?? 0) > 0);
  const names = dests.map((d) => {
    const host = resolveShortname(d.destination.host, vs.namespace);
    const svc = push.service(host);
    const p = d.destination.port?.number ?? (svc !== undefined && svc.ports.length === 1 ? svc.ports[0].port : port);
    return { name: outboundClusterName(p, d.destination.subset ?? '', host), weight: d.weight ?? 0 };
  });
  return names.length === 1 ? names[0].name : names;
}

/** The tcp_proxy target of a TCP service port: the first applicable VirtualService `tcp` route, else its cluster. */
function tcpTarget(push: PushContext, proxy: ProxyInfo, vs: VirtualService | undefined, service: RegistryService, port: number, _diagnostics: Diagnostic[]): string | { name: string; weight: number }[] {
  for (const r of vs?.spec.tcp ?? []) {
    const applies = (r.match ?? []).length === 0 || r.match!.some((m) => matchApplies(m, proxy, port));
    if (applies) return weighted(push, vs!, r.route, port);
  }
  return outboundClusterName(port, '', service.hostname);
}

/** SNI filter chains of a TLS service port: the VirtualService's `tls` routes, then the host itself. */
function tlsChains(push: PushContext, proxy: ProxyInfo, vs: VirtualService | undefined, service: RegistryService, port: number, _diagnostics: Diagnostic[]): FilterChain[] {
  const out: FilterChain[] = [];
  for (const r of vs?.spec.tls ?? []) {
    for (const m of r.match) {
      if (!matchApplies(m, proxy, port)) continue;
      const sni = m.sniHosts.map((h) => resolveShortname(h, vs!.namespace)).filter((h) => hostsMatch(h, service.hostname)).sort();
      if (sni.length === 0) continue;
      out.push({ name: `${service.hostname}:${port}|${sni.join(',')}`, filter_chain_match: { server_names: sni, transport_protocol: 'tls' }, filters: [tcpProxy(`outbound|${port}||${service.hostname}`, weighted(push, vs!, r.route, port))] });
    }
  }
  out.push({
    name: `${service.hostname}:${port}`,
    filter_chain_match: { server_names: [service.hostname], transport_protocol: 'tls' },
    filters: [tcpProxy(`outbound|${port}||${service.hostname}`, outboundClusterName(port, '', service.hostname))],
  });
  return out;
}

function proxylessListeners(services: readonly RegistryService[]): Listener[] {
  const out: Listener[] = [];
  for (const s of services) {
    if (s.resolution !== 'EDS') continue;
    for (const p of s.ports) {
      if (p.protocol === 'UDP') continue;
      const name = `${s.hostname}:${p.port}`;
      out.push({
        name,
        api_listener: {
          api_listener: any(TYPE.hcm, {
            rds: { config_source: ADS_SOURCE, route_config_name: name },
            http_filters: [{ name: FILTER.router, typed_config: any(TYPE.router, {}) }],
          }),
        },
      });
    }
  }
  return out;
}

/**
 * Istio's MeshConfig.ProxyPathNormalization as the HCM's fields (docs/authz.md): NONE leaves the path alone; BASE
 * normalizes it (RFC 3986 dot segments, backslashes, unreserved escapes); MERGE_SLASHES also merges `//`;
 * DECODE_AND_MERGE_SLASHES also decodes escaped slashes (`%2F`, `%5C`) before forwarding.
 */
function pathNormalizationFields(mode: 'NONE' | 'BASE' | 'MERGE_SLASHES' | 'DECODE_AND_MERGE_SLASHES'): Record<string, unknown> {
  return {
    normalize_path: { value: mode !== 'NONE' },
    merge_slashes: mode === 'MERGE_SLASHES' || mode === 'DECODE_AND_MERGE_SLASHES',
    path_with_escaped_slashes_action: mode === 'DECODE_AND_MERGE_SLASHES' ? 'UNESCAPE_AND_FORWARD' : 'KEEP_UNCHANGED',
  };
}
