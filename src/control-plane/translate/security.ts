/**
 * Istio's security APIs on the inbound side of a sidecar, and the outbound side's auto mTLS. Pure.
 *
 * - PeerAuthentication (Istio's ComposePeerAuthentication): the workload-selector policy of the workload's
 *   namespace, else the namespace's selector-less one, else the root namespace's selector-less one (mesh-wide);
 *   UNSET inherits from the level above; `portLevelMtls` (workload ports) only on a selector policy; among policies
 *   of one level the oldest (creationTimestamp, then name) wins. Selector policies in the root namespace are ignored,
 *   as Istio documents. Nothing configured: PERMISSIVE.
 * - Which workloads hold mesh certificates: those labelled `security.istio.io/tlsMode: istio` (the label Istio's
 *   injector puts on every pod with a sidecar and the one its EDS reads for `tlsMode`), and WorkloadEntries with a
 *   service account and no such label, as Istio.
 * - RequestAuthentication → the jwt_authn filter (one provider per jwtRule; requests without a token pass with no
 *   identity, a bad token gets 401), and the JWT payload in dynamic metadata for AuthorizationPolicy.
 */
import type { AuthorizationPolicy, ConfigModel, MtlsMode, PeerAuthentication, RequestAuthentication } from '../config/model.ts';
import type { Diagnostic } from '../../shared/errors.ts';
import { selectorMatches } from '../config/hosts.ts';
import type { ProxyInfo } from '../registry/proxy-info.ts';
import type { RegistryEndpoint, RegistryService } from '../registry/registry.ts';
import type { PushContext } from './push-context.ts';
import { ADS_SOURCE, any, diag, durationMs, outboundClusterName } from './util.ts';
import { SDS_ROOT_SECRET, SDS_WORKLOAD_SECRET } from './clusters.ts';

/** Istio's default meshConfig.rootNamespace: policies here without a selector are mesh-wide. */
export const SECURITY_ROOT_NAMESPACE = 'istio-system';
/** Istio's mesh trust domain (SPIFFE IDs `spiffe://cluster.local/ns/NS/sa/SA`). */
export const TRUST_DOMAIN = 'cluster.local';
/** The label marking a workload whose sidecar holds mesh certificates, and its value. */
export const TLS_MODE_LABEL = 'security.istio.io/tlsMode';
export const TLS_MODE_ISTIO = 'istio';
/** Endpoint metadata namespace Envoy's transport_socket_matches reads. */
export const TRANSPORT_SOCKET_MATCH = 'envoy.transport_socket_match';
/** The ALPN values Istio's client sidecars offer for mTLS; the inbound mTLS chain matches any of them. */
export const ISTIO_MTLS_ALPNS = ['istio-peer-exchange', 'istio', 'istio-http/1.0', 'istio-http/1.1', 'istio-h2'];

/** jwt_authn writes each verified token's payload under this key of its dynamic metadata namespace. */
export const JWT_AUTHN_FILTER = 'envoy.filters.http.jwt_authn';
export const JWT_PAYLOAD_METADATA_KEY = 'payload';
const JWT_TYPE = 'type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication';
/** Istio's JWKS cache duration and fetch timeout defaults. */
const JWKS_CACHE_MS = 5 * 60_000;
const JWKS_TIMEOUT_MS = 5_000;

export type EffectiveMtlsMode = Exclude<MtlsMode, 'UNSET'>;

/** A workload's composed PeerAuthentication: its mode and per-workload-port overrides. */
export interface MergedPeerAuthentication {
  mode: EffectiveMtlsMode;
  perPort: ReadonlyMap<number, EffectiveMtlsMode>;
  /** The policies that decided it (mesh, namespace, workload), for diagnostics. */
  from: readonly PeerAuthentication[];
}

/** Istio's config order for "oldest wins": creationTimestamp (absent = oldest), then name, then namespace. */
export function olderFirst<T extends { creationTimestamp?: string; name: string; namespace: string }>(a: T, b: T): number {
  const ta = a.creationTimestamp !== undefined ? Date.parse(a.creationTimestamp) || 0 : 0;
  const tb = b.creationTimestamp !== undefined ? Date.parse(b.creationTimestamp) || 0 : 0;
  return ta - tb || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) || (a.namespace < b.namespace ? -1 : a.namespace > b.namespace ? 1 : 0);
}

function hasSelector(p: { spec: { selector?: { matchLabels?: Readonly<Record<string, string>> } } }): boolean {
  return Object.keys(p.spec.selector?.matchLabels ?? {}).length > 0;
}

const unset = (m: MtlsMode | undefined): boolean => m === undefined || m === 'UNSET';

/** The namespace-level mode of `namespace` (its selector-less policy, else the mesh's, else PERMISSIVE). */
export function namespaceMtlsMode(model: ConfigModel, namespace: string): EffectiveMtlsMode {
  return composePeerAuthentication(model, namespace, undefined).mode;
}

/**
 * Composes the PeerAuthentication of a workload in `namespace` with `labels` (undefined: the namespace level
 * only, as Istio's BestEffortInferServiceMTLSMode). Istio's ComposePeerAuthentication.
 */
export function composePeerAuthentication(model: ConfigModel, namespace: string, labels: Readonly<Record<string, string>> | undefined): MergedPeerAuthentication {
  const index = peerAuthnIndex(model);
  const own = index.byNamespace.get(namespace) ?? [];
  // Without selector policies in the namespace the result does not depend on labels: memoize per namespace.
  const key = labels === undefined || !own.some(hasSelector) ? namespace : undefined;
  if (key !== undefined) {
    const hit = index.memo.get(key);
    if (hit !== undefined) return hit;
  }
  let mesh: PeerAuthentication | undefined;
  let ns: PeerAuthentication | undefined;
  let workload: PeerAuthentication | undefined;
  const older = (cur: PeerAuthentication | undefined, p: PeerAuthentication) => (cur === undefined || olderFirst(p, cur) < 0 ? p : cur);
  for (const p of index.byNamespace.get(SECURITY_ROOT_NAMESPACE) ?? []) if (!hasSelector(p)) mesh = older(mesh, p);
  if (namespace !== SECURITY_ROOT_NAMESPACE) {
    for (const p of own) {
      if (!hasSelector(p)) ns = older(ns, p);
      else if (labels !== undefined && selectorMatches(p.spec.selector!.matchLabels!, labels)) workload = older(workload, p);
    }
  }
  let mode: EffectiveMtlsMode = 'PERMISSIVE';
  const from: PeerAuthentication[] = [];
  for (const p of [mesh, ns]) {
    if (p === undefined) continue;
    from.push(p);
    if (!unset(p.spec.mtls?.mode)) mode = p.spec.mtls!.mode as EffectiveMtlsMode;
  }
  const perPort = new Map<number, EffectiveMtlsMode>();
  if (workload !== undefined) {
    from.push(workload);
    if (!unset(workload.spec.mtls?.mode)) mode = workload.spec.mtls!.mode as EffectiveMtlsMode;
    for (const [port, m] of Object.entries(workload.spec.portLevelMtls ?? {})) perPort.set(Number(port), unset(m.mode) ? mode : (m.mode as EffectiveMtlsMode));
  }
  const merged = { mode, perPort, from };
  if (key !== undefined) index.memo.set(key, merged);
  return merged;
}

interface PeerAuthnIndex {
  byNamespace: Map<string, PeerAuthentication[]>;
  memo: Map<string, MergedPeerAuthentication>;
}

/** PeerAuthentications by namespace, once per model (models are immutable). */
const INDEXES = new WeakMap<ConfigModel, PeerAuthnIndex>();

function peerAuthnIndex(model: ConfigModel): PeerAuthnIndex {
  let index = INDEXES.get(model);
  if (index === undefined) {
    index = { byNamespace: new Map(), memo: new Map() };
    for (const p of model.peerAuthentications) {
      const list = index.byNamespace.get(p.namespace) ?? [];
      list.push(p);
      index.byNamespace.set(p.namespace, list);
    }
    INDEXES.set(model, index);
  }
  return index;
}

/** The mode of one workload port. */
export function portMtlsMode(pa: MergedPeerAuthentication, targetPort: number): EffectiveMtlsMode {
  return pa.perPort.get(targetPort) ?? pa.mode;
}

/** Whether a proxy's workload holds mesh certificates (its labels say `security.istio.io/tlsMode: istio`). */
export function hasMeshCertificates(labels: Readonly<Record<string, string>>): boolean {
  return labels[TLS_MODE_LABEL] === TLS_MODE_ISTIO;
}

/** Istio's tlsMode of an endpoint: the label; WorkloadEntries without it are `istio` when they name a service account. */
export function endpointTlsMode(e: RegistryEndpoint): string {
  const label = e.labels[TLS_MODE_LABEL];
  if (label !== undefined) return label;
  return e.source.startsWith('WorkloadEntry ') && e.serviceAccount !== undefined ? TLS_MODE_ISTIO : 'disabled';
}

/**
 * Whether an endpoint gets the `tlsMode: istio` metadata that makes auto mTLS use TLS to it: its tlsMode is
 * istio and its own PeerAuthentication for the port is not DISABLE (Istio's EDS mTLS checker).
 */
export function endpointUsesMtls(model: ConfigModel, service: RegistryService, e: RegistryEndpoint, targetPort: number): boolean {
  if (endpointTlsMode(e) !== TLS_MODE_ISTIO) return false;
  return portMtlsMode(composePeerAuthentication(model, service.namespace, e.labels), targetPort) !== 'DISABLE';
}

/**
 * Whether auto mTLS applies to clusters of a service (Istio's buildAutoMtlsSettings with
 * BestEffortInferServiceMTLSMode): in-mesh services whose namespace-level mode is not DISABLE.
 */
export function autoMtlsApplies(model: ConfigModel, service: RegistryService): boolean {
  if (service.meshExternal) return false;
  return namespaceMtlsMode(model, service.namespace) !== 'DISABLE';
}

/** The inbound DownstreamTlsContext of an mTLS chain: SDS `default` and `ROOTCA`, client certificates required. */
export function inboundMtlsContext(http: boolean): object {
  return {
    common_tls_context: {
      tls_certificate_sds_secret_configs: [{ name: SDS_WORKLOAD_SECRET, sds_config: ADS_SOURCE }],
      combined_validation_context: {
        default_validation_context: {},
        validation_context_sds_secret_config: { name: SDS_ROOT_SECRET, sds_config: ADS_SOURCE },
      },
      ...(http ? { alpn_protocols: ['h2', 'http/1.1'] } : {}),
    },
    require_client_certificate: { value: true },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Which policies apply to a workload

type Selectable = AuthorizationPolicy | RequestAuthentication;

/**
 * AuthorizationPolicies and RequestAuthentications that apply to a workload (Istio's getConfigsForWorkload):
 * those of its namespace whose selector matches (none: all), and those of the root namespace whose selector
 * matches (none: mesh-wide; a selector there matches workloads of every namespace).
 */
export function policiesFor<T extends Selectable>(list: readonly T[], namespace: string, labels: Readonly<Record<string, string>>): T[] {
  return list.filter((p) => {
    if (p.namespace !== namespace && p.namespace !== SECURITY_ROOT_NAMESPACE) return false;
    return selectorMatches(p.spec.selector?.matchLabels ?? {}, labels);
  });
}

// ---------------------------------------------------------------------------------------------------------------
// RequestAuthentication → jwt_authn

/**
 * The jwt_authn filter for a workload, or undefined when no RequestAuthentication applies. Providers are named by
 * issuer (`-2`, `-3` … when two rules share one); every provider writes the token's payload to dynamic metadata
 * `envoy.filters.http.jwt_authn` / `payload` (what AuthorizationPolicy's request principals and claims read).
 */
export function jwtAuthnFilter(push: PushContext, proxy: ProxyInfo, diagnostics: Diagnostic[]): object | undefined {
  const policies = policiesFor(push.model.requestAuthentications, proxy.namespace, proxy.labels).sort(olderFirst);
  const providers: Record<string, object> = {};
  const names: string[] = [];
  for (const ra of policies) {
    (ra.spec.jwtRules ?? []).forEach((rule, i) => {
      let name = rule.issuer;
      for (let n = 2; providers[name] !== undefined; n++) name = `${rule.issuer}-${n}`;
      const p: Record<string, unknown> = {
        issuer: rule.issuer,
        payload_in_metadata: JWT_PAYLOAD_METADATA_KEY,
      };
      if (rule.audiences?.length) p.audiences = rule.audiences;
      if (rule.forwardOriginalToken) p.forward = true;
      if (rule.outputPayloadToHeader !== undefined) p.forward_payload_header = rule.outputPayloadToHeader;
      if (rule.fromHeaders?.length) p.from_headers = rule.fromHeaders.map((h) => ({ name: h.name, ...(h.prefix !== undefined ? { value_prefix: h.prefix } : {}) }));
      if (rule.fromParams?.length) p.from_params = rule.fromParams;
      if (rule.fromCookies?.length) p.from_cookies = rule.fromCookies;
      if (rule.outputClaimToHeaders?.length) p.claim_to_headers = rule.outputClaimToHeaders.map((c) => ({ header_name: c.header, claim_name: c.claim }));
      const path = `spec.jwtRules[${i}]`;
      const fetched = rule.jwksUri !== undefined ? push.jwks.get(rule.jwksUri) : undefined;
      if (rule.jwks !== undefined) {
        p.local_jwks = { inline_string: rule.jwks };
      } else if (fetched !== undefined) {
        // As istiod by default: the control plane fetched the keys from jwksUri; the proxy needs no route there.
        p.local_jwks = { inline_string: fetched };
      } else {
        const remote = rule.jwksUri !== undefined ? jwksCluster(push, rule.jwksUri) : undefined;
        if (remote !== undefined) {
          p.remote_jwks = {
            http_uri: { uri: rule.jwksUri, cluster: remote, timeout: rule.timeout !== undefined ? { seconds: rule.timeout.seconds, nanos: rule.timeout.nanos } : durationMs(JWKS_TIMEOUT_MS) },
            cache_duration: durationMs(JWKS_CACHE_MS),
          };
        } else {
          // Not fetched (yet) by the control plane and not reachable through a mesh cluster: a key set that
          // verifies no token (fail closed: tokens get 401) until the fetch succeeds and the next push inlines it.
          p.local_jwks = { inline_string: '{"keys":[]}' };
          diagnostics.push(diag(ra, rule.jwksUri !== undefined ? `${path}.jwksUri` : `${path}.issuer`, rule.jwksUri !== undefined
            ? `the control plane has not fetched the keys from jwksUri (yet, or it failed: see its log) and its host is not a service of the mesh, so tokens of issuer "${rule.issuer}" are rejected until it does. A ServiceEntry for the host lets the proxies fetch them, or inline the keys with \`jwks\``
            : `no jwksUri or jwks: Sloop does not discover keys from the issuer (OpenID discovery); tokens of issuer "${rule.issuer}" will be rejected. Set \`jwks\` or \`jwksUri\``));
        }
      }
      providers[name] = p;
      names.push(name);
    });
  }
  if (names.length === 0) return undefined;
  return {
    name: JWT_AUTHN_FILTER,
    typed_config: any(JWT_TYPE, {
      providers,
      rules: [{ match: { prefix: '/' }, requires: { requires_any: { requirements: [...names.map((n) => ({ provider_name: n })), { allow_missing: {} }] } } }],
    }),
  };
}

/** `outbound|PORT||HOST` for a jwksUri whose host is a mesh service with that port, else undefined. */
function jwksCluster(push: PushContext, uri: string): string | undefined {
  const u = new URL(uri);
  const port = u.port !== '' ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
  const svc = push.service(u.hostname);
  if (svc === undefined || !svc.ports.some((p) => p.port === port)) return undefined;
  return outboundClusterName(port, '', svc.hostname);
}
