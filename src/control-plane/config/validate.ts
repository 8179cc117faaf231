/**
 * Documents → validated model. Pure: takes parsed documents (documents.ts), returns the model and every problem
 * found, each naming file:line:col, the resource (`Kind namespace/name`) and the field path in Istio spelling.
 * The ConfigMap `istio-system/istio` is istiod's mesh config: its `data.mesh` YAML is parsed and validated too.
 * Unknown fields are errors (Istio's strict unmarshal, and kubectl's strict field validation for Services). A
 * resource with an error is left out of the model; warnings keep it.
 */
import type { z } from 'zod';
import type { Diagnostic } from '../../shared/errors.ts';
import { formatPath, parseDocuments, positionOf } from './documents.ts';
import { DOMAIN_SUFFIX } from './hosts.ts';
import type { PathSegment, RawDocument, SourcePosition } from './documents.ts';
import { emptyModel, NETWORKING_KINDS, SECURITY_KINDS, SHALLOW_KINDS } from './model.ts';
import type {
  AuthorizationPolicy, ConfigModel, DestinationRule, Gateway, KubernetesService, MeshConfigMap, NetworkingKind, Origin, OtherResource, PeerAuthentication,
  RequestAuthentication, SecurityKind, ServiceEntry, ServicePort, ShallowKind, ShallowResource, Sidecar, VirtualService, Workload, WorkloadEntry,
} from './model.ts';
import { authorizationPolicySpec, peerAuthenticationSpec, requestAuthenticationSpec } from './schema/security.ts';
import { destinationRuleSpec } from './schema/destination-rule.ts';
import { gatewaySpec } from './schema/gateway.ts';
import { objectMeta, selectServicePortProtocol, serviceSpec, WORKLOAD_KINDS } from './schema/kubernetes.ts';
import type { ObjectMeta } from './schema/kubernetes.ts';
import { serviceEntrySpec, workloadEntrySpec } from './schema/service-entry.ts';
import { sidecarSpec } from './schema/sidecar.ts';
import { virtualServiceSpec } from './schema/virtual-service.ts';
import { configMapData, configMapTopLevel, MESH_CONFIGMAP_KEY, MESH_CONFIGMAP_NAME, MESH_CONFIGMAP_NAMESPACE, meshConfig } from './schema/mesh-config.ts';
import type { MeshConfig } from './schema/mesh-config.ts';


/** API versions accepted per Istio group (the served versions of Istio's CRDs). */
const ISTIO_GROUPS: Record<string, { versions: readonly string[]; kinds: readonly string[] }> = {
  'networking.istio.io': { versions: ['v1', 'v1beta1', 'v1alpha3'], kinds: [...NETWORKING_KINDS, 'EnvoyFilter', 'WorkloadGroup', 'ProxyConfig'] },
  'security.istio.io': { versions: ['v1', 'v1beta1'], kinds: ['PeerAuthentication', 'AuthorizationPolicy', 'RequestAuthentication'] },
  'telemetry.istio.io': { versions: ['v1', 'v1alpha1'], kinds: ['Telemetry'] },
  'extensions.istio.io': { versions: ['v1alpha1'], kinds: ['WasmPlugin'] },
};

const SPEC_SCHEMAS: Record<NetworkingKind | SecurityKind, z.ZodType> = {
  PeerAuthentication: peerAuthenticationSpec,
  AuthorizationPolicy: authorizationPolicySpec,
  RequestAuthentication: requestAuthenticationSpec,
  VirtualService: virtualServiceSpec,
  DestinationRule: destinationRuleSpec,
  Gateway: gatewaySpec,
  ServiceEntry: serviceEntrySpec,
  WorkloadEntry: workloadEntrySpec,
  Sidecar: sidecarSpec,
};

const TOP_LEVEL = new Set(['apiVersion', 'kind', 'metadata', 'spec', 'status']);

/** Every list of the model. */
const MODEL_FIELDS = Object.keys(emptyModel()) as (keyof Mutable)[];

interface Mutable {
  virtualServices: VirtualService[];
  destinationRules: DestinationRule[];
  gateways: Gateway[];
  serviceEntries: ServiceEntry[];
  workloadEntries: WorkloadEntry[];
  sidecars: Sidecar[];
  services: KubernetesService[];
  peerAuthentications: PeerAuthentication[];
  authorizationPolicies: AuthorizationPolicy[];
  requestAuthentications: RequestAuthentication[];
  meshConfigs: MeshConfigMap[];
  policies: ShallowResource[];
  workloads: Workload[];
  others: OtherResource[];
}

/**
 * Validates documents and builds the model. Documents are taken in the order given (load.ts sorts files).
 * Two resources of one kind with the same namespace/name are an error on the second.
 */
export function validateDocuments(documents: readonly RawDocument[]): { model: ConfigModel; diagnostics: Diagnostic[] } {
  const model = emptyModel() as Mutable;
  const diagnostics: Diagnostic[] = [];
  const seen = new Map<string, Origin>();
  for (const doc of documents) {
    // A document parsed before (the loader's ParseCache hands back the same object for an unchanged file) that
    // validated cleanly gives the same resources again, as the same objects: a push then finds its kind unchanged
    // by identity instead of comparing every resource's JSON. Unless its name is now taken by an earlier document.
    const hit = validatedDocuments.get(doc);
    if (hit !== undefined && !seen.has(hit.key)) {
      seen.set(hit.key, hit.origin);
      for (const [field, resource] of hit.added) (model[field] as unknown[]).push(resource);
      continue;
    }
    const before = diagnostics.length;
    const lengths = MODEL_FIELDS.map((f) => model[f].length);
    const registered = validateDocument(doc, model, diagnostics, seen);
    if (registered === undefined || diagnostics.length !== before) continue;
    const added: [keyof Mutable, unknown][] = [];
    MODEL_FIELDS.forEach((f, i) => {
      for (const r of model[f].slice(lengths[i])) added.push([f, r]);
    });
    validatedDocuments.set(doc, { key: registered, origin: seen.get(registered)!, added });
  }
  return { model, diagnostics };
}

/** Clean validations by document: the name it registered and the resources it added (see validateDocuments). */
const validatedDocuments = new WeakMap<RawDocument, { key: string; origin: Origin; added: readonly [keyof Mutable, unknown][] }>();

interface ResourceId {
  kind?: string;
  namespace?: string;
  name?: string;
}

function report(diagnostics: Diagnostic[], doc: RawDocument, id: ResourceId, path: readonly PathSegment[], message: string, severity: Diagnostic['severity'] = 'error'): void {
  const pos = positionOf(doc, path);
  diagnostics.push({ severity, code: 'SLOOP_ERR_CONFIG_INVALID', file: doc.file, line: pos.line, column: pos.column, path: formatPath(path), message, ...id });
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Validates one document into `model`; returns the `Kind namespace/name` it registered, if it took the main path. */
function validateDocument(doc: RawDocument, model: Mutable, diagnostics: Diagnostic[], seen: Map<string, Origin>): string | undefined {
  const v = doc.value;
  if (!isRecord(v)) {
    report(diagnostics, doc, {}, [], `a document must be a mapping with apiVersion and kind, found ${typeName(v)}`);
    return;
  }
  const metaIn = isRecord(v.metadata) ? v.metadata : {};
  const id: ResourceId = {
    kind: typeof v.kind === 'string' ? v.kind : undefined,
    name: typeof metaIn.name === 'string' ? metaIn.name : undefined,
    namespace: typeof metaIn.namespace === 'string' ? metaIn.namespace : 'default',
  };
  if (typeof v.apiVersion !== 'string' || typeof v.kind !== 'string') {
    if (typeof v.apiVersion !== 'string') report(diagnostics, doc, id, ['apiVersion'], v.apiVersion === undefined ? 'missing required field "apiVersion"' : `apiVersion must be a string, found ${typeName(v.apiVersion)}`);
    if (typeof v.kind !== 'string') report(diagnostics, doc, id, ['kind'], v.kind === undefined ? 'missing required field "kind"' : `kind must be a string, found ${typeName(v.kind)}`);
    return;
  }
  const apiVersion = v.apiVersion;
  const kind = v.kind;
  const slash = apiVersion.indexOf('/');
  const group = slash >= 0 ? apiVersion.slice(0, slash) : '';
  const version = slash >= 0 ? apiVersion.slice(slash + 1) : apiVersion;
  const origin: Origin = { file: doc.file, ...doc.origin };

  const istio = ISTIO_GROUPS[group];
  if (istio !== undefined) {
    if (!istio.versions.includes(version)) {
      report(diagnostics, doc, id, ['apiVersion'], `unsupported apiVersion "${apiVersion}" for ${kind} (${group} serves ${istio.versions.join(', ')})`);
      return;
    }
    if (!istio.kinds.includes(kind)) {
      report(diagnostics, doc, id, ['kind'], `unknown kind "${kind}" in ${group} (one of ${istio.kinds.join(', ')})`);
      return;
    }
    if (kind === 'EnvoyFilter' && version !== 'v1alpha3') {
      report(diagnostics, doc, id, ['apiVersion'], 'EnvoyFilter is served only as networking.istio.io/v1alpha3');
      return;
    }
  }
  const isNetworking = (group === 'networking.istio.io' && (NETWORKING_KINDS as readonly string[]).includes(kind))
    || (group === 'security.istio.io' && (SECURITY_KINDS as readonly string[]).includes(kind));
  const isShallow = istio !== undefined && (SHALLOW_KINDS as readonly string[]).includes(kind);
  const isService = group === '' && version === 'v1' && kind === 'Service';
  if (group === '' && version === 'v1' && kind === 'ConfigMap' && id.name === MESH_CONFIGMAP_NAME && id.namespace === MESH_CONFIGMAP_NAMESPACE) {
    validateMeshConfigMap(doc, v, id, apiVersion, origin, model, diagnostics, seen);
    return;
  }
  if (!isNetworking && !isShallow && !isService) {
    keepOther(v, apiVersion, kind, id, origin, model);
    return;
  }

  const before = diagnostics.length;
  for (const key of Object.keys(v)) {
    if (!TOP_LEVEL.has(key)) report(diagnostics, doc, id, [key], `unknown field "${key}"`);
  }
  const meta = parseWith(objectMeta, v.metadata, ['metadata'], doc, id, diagnostics);
  const specPath = ['spec'];
  let spec: unknown;
  if (isNetworking) {
    // The security kinds may have an empty spec (`spec: {}` or none): an ALLOW AuthorizationPolicy without rules.
    if (v.spec === undefined && group === 'security.istio.io') spec = parseWith(SPEC_SCHEMAS[kind as SecurityKind], {}, specPath, doc, id, diagnostics);
    else if (v.spec === undefined) report(diagnostics, doc, id, specPath, 'missing required field "spec"');
    else spec = parseWith(SPEC_SCHEMAS[kind as NetworkingKind | SecurityKind], v.spec, specPath, doc, id, diagnostics);
  } else if (isShallow) {
    // Policy kinds are kept for later issues; their spec is only required to be a mapping (docs/config.md).
    if (v.spec !== undefined && !isRecord(v.spec)) report(diagnostics, doc, id, specPath, `spec must be a mapping, found ${typeName(v.spec)}`);
    else spec = v.spec ?? {};
    if (kind === 'EnvoyFilter') report(diagnostics, doc, id, ['kind'], 'EnvoyFilter is not supported by Sloop; it is kept but not applied', 'warning');
  } else {
    spec = parseWith(serviceSpec, v.spec ?? {}, specPath, doc, id, diagnostics);
  }
  // Schemas report a message's own rules after its fields; show a resource's problems in document order.
  diagnostics.splice(before, diagnostics.length - before, ...diagnostics.slice(before).sort(byPosition));
  if (diagnostics.slice(before).some((d) => d.severity === 'error') || meta === undefined || spec === undefined) return;

  const m = meta as ObjectMeta;
  const base = {
    apiVersion,
    name: m.name,
    namespace: m.namespace ?? 'default',
    labels: m.labels ?? {},
    annotations: m.annotations ?? {},
    ...(typeof m.creationTimestamp === 'string' ? { creationTimestamp: m.creationTimestamp } : {}),
    origin,
    positions: doc.positions,
  };
  const key = `${kind} ${base.namespace}/${base.name}`;
  const first = seen.get(key);
  if (first !== undefined) {
    report(diagnostics, doc, id, ['metadata', 'name'], `duplicate ${key}: first defined at ${first.file}:${first.line}`);
    return;
  }
  seen.set(key, origin);

  switch (kind as NetworkingKind | SecurityKind | ShallowKind | 'Service') {
    case 'VirtualService': {
      const s = spec as VirtualService['spec'];
      model.virtualServices.push({ kind: 'VirtualService', ...base, spec: s, gateways: s.gateways?.length ? s.gateways : ['mesh'] });
      break;
    }
    case 'DestinationRule':
      model.destinationRules.push({ kind: 'DestinationRule', ...base, spec: spec as DestinationRule['spec'] });
      break;
    case 'Gateway':
      model.gateways.push({ kind: 'Gateway', ...base, spec: spec as Gateway['spec'] });
      break;
    case 'ServiceEntry':
      model.serviceEntries.push({ kind: 'ServiceEntry', ...base, spec: spec as ServiceEntry['spec'] });
      break;
    case 'WorkloadEntry': {
      const s = spec as WorkloadEntry['spec'];
      model.workloadEntries.push({ kind: 'WorkloadEntry', ...base, spec: s });
      const ports = Object.entries(s.ports ?? {}).map(([name, containerPort]) => ({ name, containerPort }));
      model.workloads.push({ kind: 'WorkloadEntry', name: base.name, namespace: base.namespace, labels: { ...base.labels, ...s.labels }, serviceAccount: s.serviceAccount, containerPorts: ports, origin });
      break;
    }
    case 'Sidecar':
      model.sidecars.push({ kind: 'Sidecar', ...base, spec: spec as Sidecar['spec'] });
      break;
    case 'PeerAuthentication':
      model.peerAuthentications.push({ kind: 'PeerAuthentication', ...base, spec: spec as PeerAuthentication['spec'] });
      break;
    case 'AuthorizationPolicy':
      model.authorizationPolicies.push({ kind: 'AuthorizationPolicy', ...base, spec: spec as AuthorizationPolicy['spec'] });
      break;
    case 'RequestAuthentication':
      model.requestAuthentications.push({ kind: 'RequestAuthentication', ...base, spec: spec as RequestAuthentication['spec'] });
      break;
    case 'Service': {
      const s = spec as KubernetesService['spec'];
      const ports: ServicePort[] = (s.ports ?? []).map((p) => ({
        name: p.name ?? '',
        port: p.port,
        targetPort: p.targetPort ?? p.port,
        transportProtocol: p.protocol ?? 'TCP',
        ...(p.appProtocol !== undefined ? { appProtocol: p.appProtocol } : {}),
        protocol: selectServicePortProtocol(p),
      }));
      model.services.push({
        kind: 'Service', ...base, spec: s, hostname: `${base.name}.${base.namespace}.svc.${DOMAIN_SUFFIX}`, ports,
        ...(s.selector !== undefined ? { selector: s.selector } : {}),
      });
      break;
    }
    default:
      model.policies.push({ kind: kind as ShallowKind, ...base, spec: spec as Record<string, unknown> });
  }
  return key;
}

/**
 * The ConfigMap `istio-system/istio`: istiod's mesh config, a YAML string under `data.mesh`. The ConfigMap's own
 * fields are checked as kubectl would; the mesh config by schema/mesh-config.ts, its problems at their position
 * inside the string (mapped to the file for a literal block scalar) with paths `data.mesh.<field>`.
 */
function validateMeshConfigMap(doc: RawDocument, v: Record<string, unknown>, id: ResourceId, apiVersion: string, origin: Origin, model: Mutable, diagnostics: Diagnostic[], seen: Map<string, Origin>): void {
  const before = diagnostics.length;
  for (const key of Object.keys(v)) {
    if (!configMapTopLevel.has(key)) report(diagnostics, doc, id, [key], `unknown field "${key}"`);
  }
  const meta = parseWith(objectMeta, v.metadata, ['metadata'], doc, id, diagnostics) as ObjectMeta | undefined;
  const data = v.data === undefined ? {} : parseWith(configMapData, v.data, ['data'], doc, id, diagnostics) as Record<string, string> | undefined;
  const positions: Record<string, SourcePosition> = { ...doc.positions };
  let spec: MeshConfig | undefined;
  const text = data?.[MESH_CONFIGMAP_KEY];
  const meshPath: PathSegment[] = ['data', MESH_CONFIGMAP_KEY];
  if (data !== undefined && text === undefined) spec = {};
  else if (text !== undefined) {
    const inner = parseDocuments(text, doc.file);
    const base = doc.blockScalars?.[formatPath(meshPath)];
    const here = positionOf(doc, meshPath);
    // A position inside the string → the file (a literal block scalar maps line for line), else `data.mesh` itself.
    const toFile = (p: SourcePosition): SourcePosition => (base !== undefined ? { line: base.line + p.line - 1, column: base.column + p.column - 1 } : here);
    const prefix = formatPath(meshPath);
    for (const d of inner.diagnostics) {
      const p = toFile({ line: d.line ?? 1, column: d.column ?? 1 });
      diagnostics.push({ ...d, ...id, line: p.line, column: p.column, path: prefix, message: `mesh config: ${d.message}` });
    }
    if (inner.documents.length > 1) report(diagnostics, doc, id, meshPath, 'mesh config must be a single YAML document');
    const meshDoc = inner.documents[0];
    if (meshDoc !== undefined) {
      for (const [k, p] of Object.entries(meshDoc.positions)) {
        if (k !== '') positions[k.startsWith('[') ? `${prefix}${k}` : `${prefix}.${k}`] = toFile(p);
      }
    }
    const withInner: RawDocument = { ...doc, positions };
    if (inner.diagnostics.length === 0 && inner.documents.length <= 1) {
      const value = meshDoc?.value ?? {};
      if (!isRecord(value)) report(diagnostics, withInner, id, meshPath, `mesh config must be a mapping, found ${typeName(value)}`);
      else spec = parseWith(meshConfig, value, meshPath, withInner, id, diagnostics) as MeshConfig | undefined;
    }
    if (spec?.rootNamespace !== undefined && spec.rootNamespace !== MESH_CONFIGMAP_NAMESPACE) {
      report(diagnostics, withInner, id, [...meshPath, 'rootNamespace'], `rootNamespace "${spec.rootNamespace}" is not applied: Sloop's root namespace is ${MESH_CONFIGMAP_NAMESPACE}`, 'warning');
    }
  }
  diagnostics.splice(before, diagnostics.length - before, ...diagnostics.slice(before).sort(byPosition));
  if (diagnostics.slice(before).some((d) => d.severity === 'error') || meta === undefined || spec === undefined) return;
  const key = `ConfigMap ${MESH_CONFIGMAP_NAMESPACE}/${MESH_CONFIGMAP_NAME}`;
  const first = seen.get(key);
  if (first !== undefined) {
    report(diagnostics, doc, id, ['metadata', 'name'], `duplicate ${key}: first defined at ${first.file}:${first.line}`);
    return;
  }
  seen.set(key, origin);
  model.meshConfigs.push({
    kind: 'ConfigMap', apiVersion, name: MESH_CONFIGMAP_NAME, namespace: MESH_CONFIGMAP_NAMESPACE, labels: meta.labels ?? {}, annotations: meta.annotations ?? {},
    ...(typeof meta.creationTimestamp === 'string' ? { creationTimestamp: meta.creationTimestamp } : {}),
    origin, positions, spec,
  });
}

/** Kinds Sloop does not interpret: kept; pod templates of workload kinds become workloads. */
function keepOther(v: Record<string, unknown>, apiVersion: string, kind: string, id: ResourceId, origin: Origin, model: Mutable): void {
  const name = id.name ?? '';
  const namespace = id.namespace ?? 'default';
  model.others.push({ apiVersion, kind, name, namespace, origin, value: v });
  if (!WORKLOAD_KINDS.has(kind)) return;
  let template: unknown = kind === 'Pod' ? v : get(v, 'spec', 'template');
  if (kind === 'CronJob') template = get(v, 'spec', 'jobTemplate', 'spec', 'template');
  const labels = get(template, 'metadata', 'labels');
  const podSpec = get(template, 'spec');
  const serviceAccount = get(podSpec, 'serviceAccountName') ?? get(podSpec, 'serviceAccount');
  const containerPorts: Workload['containerPorts'][number][] = [];
  const containers = get(podSpec, 'containers');
  if (Array.isArray(containers)) {
    for (const c of containers) {
      const ports = get(c, 'ports');
      if (!Array.isArray(ports)) continue;
      for (const p of ports) {
        const containerPort = get(p, 'containerPort');
        if (typeof containerPort !== 'number') continue;
        const pname = get(p, 'name');
        const protocol = get(p, 'protocol');
        containerPorts.push({ containerPort, ...(typeof pname === 'string' ? { name: pname } : {}), ...(typeof protocol === 'string' ? { protocol } : {}) });
      }
    }
  }
  model.workloads.push({
    kind, name, namespace,
    labels: isRecord(labels) ? Object.fromEntries(Object.entries(labels).map(([k, l]) => [k, String(l)])) : {},
    ...(typeof serviceAccount === 'string' ? { serviceAccount } : {}),
    containerPorts,
    origin,
  });
}

function byPosition(a: Diagnostic, b: Diagnostic): number {
  return (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0);
}

function get(v: unknown, ...path: string[]): unknown {
  let cur = v;
  for (const k of path) {
    if (!isRecord(cur)) return undefined;
    cur = cur[k];
  }
  return cur;
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return `string ${JSON.stringify(v)}`;
  return `${typeof v} ${String(v)}`;
}

const TYPE_WORDS: Record<string, string> = { object: 'a mapping', array: 'a list', record: 'a mapping', string: 'a string', number: 'a number', int: 'an integer', boolean: 'a boolean (true or false)' };

/** Runs a schema and turns every issue into a diagnostic at `prefix` + the issue's path. */
function parseWith(schema: z.ZodType, value: unknown, prefix: PathSegment[], doc: RawDocument, id: ResourceId, diagnostics: Diagnostic[]): unknown {
  const result = schema.safeParse(value, { reportInput: true });
  if (result.success) return result.data;
  for (const issue of result.error.issues) {
    const path = [...prefix, ...(issue.path as PathSegment[])];
    switch (issue.code) {
      case 'unrecognized_keys':
        for (const k of issue.keys) report(diagnostics, doc, id, [...path, k], `unknown field "${k}"`);
        break;
      case 'invalid_type':
        if (issue.input === undefined) report(diagnostics, doc, id, path, `missing required field "${String(path[path.length - 1])}"`);
        else report(diagnostics, doc, id, path, `must be ${TYPE_WORDS[issue.expected] ?? issue.expected}, found ${typeName(issue.input)}`);
        break;
      case 'invalid_value':
        report(diagnostics, doc, id, path, `must be one of ${issue.values.map((x) => String(x)).join(', ')}, found ${typeName(issue.input)}`);
        break;
      case 'invalid_union':
        report(diagnostics, doc, id, path, `has an invalid value: ${typeName(issue.input)}`);
        break;
      case 'too_small':
      case 'too_big':
        if (issue.origin === 'number' && !/must|range/.test(issue.message)) {
          report(diagnostics, doc, id, path, `${issue.code === 'too_small' ? 'must be at least' : 'must be at most'} ${String(issue.code === 'too_small' ? issue.minimum : issue.maximum)}, found ${typeName(issue.input)}`);
        } else report(diagnostics, doc, id, path, issue.message);
        break;
      default:
        report(diagnostics, doc, id, path, issue.message);
    }
  }
  return undefined;
}
