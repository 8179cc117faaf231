/**
 * The validated configuration model: what translation and the registry consume. Plain data (no classes, no
 * functions), built by validate.ts from documents that passed validation; every resource keeps where it came from
 * (`origin`) and the position of each of its fields (`positions`, keyed by Istio field path), so later stages can
 * name file:line:col in their own diagnostics.
 *
 * `spec` is the resource's spec as written, with Istio's field names, typed by the schemas in ./schema/; durations
 * are decoded to `{ seconds, nanos }`. Defaults Istio applies when reading (namespace `default`, a Service port's
 * protocol, a VirtualService's `gateways: [mesh]`) are applied here, on the resource, never by rewriting `spec`.
 */
import type { SourcePosition } from './documents.ts';
import type { IstioProtocol, ObjectMeta, ServiceSpec } from './schema/kubernetes.ts';
import type { DestinationRuleSpec } from './schema/destination-rule.ts';
import type { GatewaySpec } from './schema/gateway.ts';
import type { ServiceEntrySpec, WorkloadEntrySpec } from './schema/service-entry.ts';
import type { SidecarSpec } from './schema/sidecar.ts';
import type { AuthorizationPolicySpec, PeerAuthenticationSpec, RequestAuthenticationSpec } from './schema/security.ts';
import type { VirtualServiceSpec } from './schema/virtual-service.ts';
import type { MeshConfig } from './schema/mesh-config.ts';

export type { SourcePosition } from './documents.ts';
export type { Duration, StringMatch } from './schema/common.ts';
export type { IstioProtocol, ObjectMeta, ServiceSpec } from './schema/kubernetes.ts';
export type { DestinationRuleSpec, Subset, TrafficPolicy } from './schema/destination-rule.ts';
export type { GatewaySpec, Server } from './schema/gateway.ts';
export type { ServiceEntrySpec, WorkloadEntrySpec } from './schema/service-entry.ts';
export type { SidecarSpec } from './schema/sidecar.ts';
export type {
  AuthorizationCondition, AuthorizationOperation, AuthorizationPolicySpec, AuthorizationRule, AuthorizationSource, JwtRule, MtlsMode,
  PeerAuthenticationSpec, RequestAuthenticationSpec,
} from './schema/security.ts';
export type { EnvoyExtAuthzGrpcProvider, EnvoyExtAuthzHttpProvider, ExtensionProvider, MeshConfig } from './schema/mesh-config.ts';
export { MESH_CONFIGMAP_KEY, MESH_CONFIGMAP_NAME, MESH_CONFIGMAP_NAMESPACE } from './schema/mesh-config.ts';
export type {
  Destination, Headers, HTTPMatchRequest, HTTPRoute, HTTPRouteDestination, RouteDestination, TCPRoute, TLSRoute, VirtualServiceSpec,
} from './schema/virtual-service.ts';

/** The Istio kinds Sloop validates in full. */
export const NETWORKING_KINDS = ['VirtualService', 'DestinationRule', 'Gateway', 'ServiceEntry', 'WorkloadEntry', 'Sidecar'] as const;
export type NetworkingKind = (typeof NETWORKING_KINDS)[number];

/** The security.istio.io kinds, validated in full and enforced on the inbound side of sidecars. */
export const SECURITY_KINDS = ['PeerAuthentication', 'AuthorizationPolicy', 'RequestAuthentication'] as const;
export type SecurityKind = (typeof SECURITY_KINDS)[number];

/** Istio kinds kept but validated only shallowly (metadata, spec is an object): not applied. */
export const SHALLOW_KINDS = ['Telemetry', 'EnvoyFilter', 'WorkloadGroup', 'ProxyConfig', 'WasmPlugin'] as const;
export type ShallowKind = (typeof SHALLOW_KINDS)[number];

/** Where a resource was read from. */
export interface Origin extends SourcePosition {
  file: string;
}

/** Fields every resource in the model has. */
export interface ResourceBase<K extends string> {
  kind: K;
  apiVersion: string;
  /** `metadata.name`. */
  name: string;
  /** `metadata.namespace`, or `default` when absent (as kubectl applies it). */
  namespace: string;
  labels: Readonly<Record<string, string>>;
  annotations: Readonly<Record<string, string>>;
  /** `metadata.creationTimestamp` when written (RFC 3339): Istio's "oldest wins" between conflicting policies. */
  creationTimestamp?: string;
  origin: Origin;
  /** Field path (`spec.http[0].route[1]`) → position. Keys are formatted by documents.ts `formatPath`. */
  positions: Readonly<Record<string, SourcePosition>>;
}

export interface IstioResource<K extends string, S> extends ResourceBase<K> {
  spec: S;
}

export interface VirtualService extends IstioResource<'VirtualService', VirtualServiceSpec> {
  /** `spec.gateways`, or `['mesh']` when empty (Istio's default). */
  gateways: readonly string[];
}
export type DestinationRule = IstioResource<'DestinationRule', DestinationRuleSpec>;
export type Gateway = IstioResource<'Gateway', GatewaySpec>;
export type ServiceEntry = IstioResource<'ServiceEntry', ServiceEntrySpec>;
export type WorkloadEntry = IstioResource<'WorkloadEntry', WorkloadEntrySpec>;
export type Sidecar = IstioResource<'Sidecar', SidecarSpec>;
export type PeerAuthentication = IstioResource<'PeerAuthentication', PeerAuthenticationSpec>;
export type AuthorizationPolicy = IstioResource<'AuthorizationPolicy', AuthorizationPolicySpec>;
export type RequestAuthentication = IstioResource<'RequestAuthentication', RequestAuthenticationSpec>;
/**
 * The ConfigMap `istio` of namespace `istio-system`: `spec` is the MeshConfig parsed from its `data.mesh` YAML.
 * `positions` hold the ConfigMap's fields and, under `data.mesh.…`, the mesh config's (file positions when `mesh`
 * is a literal block scalar, else the position of `data.mesh`).
 */
export type MeshConfigMap = IstioResource<'ConfigMap', MeshConfig>;
/** A telemetry/extension resource kept as written; its spec is not validated. */
export type ShallowResource = IstioResource<ShallowKind, Readonly<Record<string, unknown>>>;

/** A Kubernetes Service port with Istio's protocol selection applied. */
export interface ServicePort {
  name: string;
  port: number;
  /** `targetPort` as written (a number or a container port name), else the port number (Kubernetes' default). */
  targetPort: number | string;
  /** `TCP` unless set. */
  transportProtocol: 'TCP' | 'UDP' | 'SCTP';
  appProtocol?: string;
  /** Istio's protocol for the port, from `appProtocol` or the name prefix. */
  protocol: IstioProtocol;
}

/** A Kubernetes v1 Service. */
export interface KubernetesService extends IstioResource<'Service', ServiceSpec> {
  /** `name.namespace.svc.cluster.local`. */
  hostname: string;
  ports: readonly ServicePort[];
  /** `spec.selector`; undefined when the Service has none (its endpoints are managed elsewhere). */
  selector?: Readonly<Record<string, string>>;
}

/**
 * A workload read from a Kubernetes object's pod template (Deployment, StatefulSet, Pod, …) or a WorkloadEntry: the
 * labels selectors match. Used by analyzers today; `sloop up` may start them later.
 */
export interface Workload {
  /** Kind it came from (`Deployment`, `WorkloadEntry`, …). */
  kind: string;
  name: string;
  namespace: string;
  labels: Readonly<Record<string, string>>;
  serviceAccount?: string;
  /** Container ports, by name when named. */
  containerPorts: readonly { name?: string; containerPort: number; protocol?: string }[];
  origin: Origin;
}

/** Any other document (Kubernetes kinds other than Service, other APIs): kept, not interpreted. */
export interface OtherResource {
  apiVersion: string;
  kind: string;
  name: string;
  namespace: string;
  origin: Origin;
  /** The whole document as parsed. */
  value: Readonly<Record<string, unknown>>;
}

/** Everything read from a config folder. Lists are in file order, files in sorted path order. */
export interface ConfigModel {
  virtualServices: readonly VirtualService[];
  destinationRules: readonly DestinationRule[];
  gateways: readonly Gateway[];
  serviceEntries: readonly ServiceEntry[];
  workloadEntries: readonly WorkloadEntry[];
  sidecars: readonly Sidecar[];
  services: readonly KubernetesService[];
  peerAuthentications: readonly PeerAuthentication[];
  authorizationPolicies: readonly AuthorizationPolicy[];
  requestAuthentications: readonly RequestAuthentication[];
  /** The mesh config ConfigMap (`istio-system/istio`): none or one. */
  meshConfigs: readonly MeshConfigMap[];
  /** Telemetry, EnvoyFilter, WasmPlugin, …: kept, not validated deeply, not applied. */
  policies: readonly ShallowResource[];
  /** Pod templates of Deployments etc., and WorkloadEntries. */
  workloads: readonly Workload[];
  others: readonly OtherResource[];
}

/** Any resource of the model that has a spec. */
export type ModelResource =
  | VirtualService | DestinationRule | Gateway | ServiceEntry | WorkloadEntry | Sidecar | KubernetesService | ShallowResource
  | PeerAuthentication | AuthorizationPolicy | RequestAuthentication | MeshConfigMap;

/** `Kind namespace/name`, as Istio's messages name a resource. */
export function resourceName(r: { kind: string; namespace: string; name: string }): string {
  return `${r.kind} ${r.namespace}/${r.name}`;
}

/** The mesh config in effect: the ConfigMap `istio-system/istio`'s, else Istio's defaults (no extension providers). */
export function meshConfigOf(model: ConfigModel): { resource: MeshConfigMap | undefined; config: MeshConfig } {
  const resource = model.meshConfigs[0];
  return { resource, config: resource?.spec ?? {} };
}

/** An empty model. */
export function emptyModel(): ConfigModel {
  return { virtualServices: [], destinationRules: [], gateways: [], serviceEntries: [], workloadEntries: [], sidecars: [], services: [], peerAuthentications: [], authorizationPolicies: [], requestAuthentications: [], meshConfigs: [], policies: [], workloads: [], others: [] };
}
