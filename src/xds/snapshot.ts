/**
 * Snapshots: an immutable, consistent set of Envoy resources for one node (go-control-plane's model).
 *
 * A snapshot holds the resources of every type Sloop serves, each encoded once as the `Any` that goes on the wire.
 * Its version per type is a hash of that type's content, so publishing the same config again changes no version
 * and pushes nothing. {@link createSnapshot} checks that every RouteConfiguration a listener's HTTP connection
 * manager names over RDS and every ClusterLoadAssignment an EDS cluster names exists, and refuses the snapshot
 * otherwise, so a client never waits on a resource the control plane will not send.
 */
import { createHash } from 'node:crypto';
import protobuf from 'protobufjs';
import { SloopError, formatDiagnostic, type Diagnostic } from '../shared/errors.ts';
import { packAny, unpackAny, type PackedAny } from './any.ts';
import type { Cluster, Cluster__Output } from './gen/envoy/config/cluster/v3/Cluster.ts';
import type { ClusterLoadAssignment } from './gen/envoy/config/endpoint/v3/ClusterLoadAssignment.ts';
import type { FilterChain__Output } from './gen/envoy/config/listener/v3/FilterChain.ts';
import type { Listener, Listener__Output } from './gen/envoy/config/listener/v3/Listener.ts';
import type { RouteConfiguration, RouteConfiguration__Output } from './gen/envoy/config/route/v3/RouteConfiguration.ts';
import type { Secret } from './gen/envoy/extensions/transport_sockets/tls/v3/Secret.ts';
import type { HttpConnectionManager__Output } from './gen/envoy/extensions/filters/network/http_connection_manager/v3/HttpConnectionManager.ts';
import type { TcpProxy__Output } from './gen/envoy/extensions/filters/network/tcp_proxy/v3/TcpProxy.ts';
import { HCM_TYPE_URL, TCP_PROXY_TYPE_URL, TYPE_URLS, type ResourceTypeUrl } from './type-urls.ts';

/**
 * A type's resources in two parts: `shared` by many snapshots (a proxy class's outbound clusters, the same list
 * object for every proxy of the class) and the node's `own` (its inbound clusters). The shared part is checked,
 * encoded and hashed once (by list identity, with an {@link EncodingCache}); each node then costs only its own
 * part. Names must not repeat across the parts.
 */
export interface LayeredList<T> {
  readonly shared: readonly T[];
  readonly own: readonly T[];
}

/** A type's resources: one list, or a {@link LayeredList}. */
export type ResourceList<T> = readonly T[] | LayeredList<T>;

/** The resources of a snapshot, in protobufjs `fromObject` form (the generated input types; `__Output` objects fit too). */
export interface SnapshotResources {
  clusters?: ResourceList<Cluster>;
  endpoints?: ResourceList<ClusterLoadAssignment>;
  listeners?: ResourceList<Listener>;
  routes?: ResourceList<RouteConfiguration>;
  secrets?: ResourceList<Secret>;
}

/** One resource as served: its name, its own content-hash version (delta xDS) and its encoding. */
export interface SnapshotResource {
  readonly name: string;
  /** Hash of the encoded bytes: equal resources have equal versions, on every control plane replica. */
  readonly version: string;
  readonly any: PackedAny;
}

/** All resources of one type in a snapshot. */
export interface TypeSnapshot {
  /** Hash of every (name, resource version) pair of the type, sorted by name. */
  readonly version: string;
  readonly resources: ReadonlyMap<string, SnapshotResource>;
}

/** Thrown by {@link createSnapshot} with every problem found. Code `SLOOP_ERR_XDS_SNAPSHOT_INCONSISTENT`. */
export class SnapshotError extends SloopError {
  readonly diagnostics: readonly Diagnostic[];
  constructor(diagnostics: readonly Diagnostic[]) {
    const errors = diagnostics.filter((d) => d.severity === 'error');
    super('SLOOP_ERR_XDS_SNAPSHOT_INCONSISTENT', `snapshot rejected: ${errors.length} error(s)\n` + errors.map((d) => '  ' + formatDiagnostic(d)).join('\n'));
    this.name = 'SnapshotError';
    this.diagnostics = diagnostics;
  }
}

/** A type with no resources. */
export const EMPTY_TYPE: TypeSnapshot = { version: hashEntries([]), resources: new Map() };

/** An immutable set of resources for one node. Build it with {@link createSnapshot}. */
export class Snapshot {
  readonly #types: ReadonlyMap<ResourceTypeUrl, TypeSnapshot>;
  readonly #listenerClusters: ReadonlyMap<string, readonly string[]>;

  /** @internal Use {@link createSnapshot}, which checks consistency. */
  constructor(types: ReadonlyMap<ResourceTypeUrl, TypeSnapshot>, listenerClusters: ReadonlyMap<string, readonly string[]>) {
    this.#types = types;
    this.#listenerClusters = listenerClusters;
  }

  /** The resources of one type (empty for a type the snapshot has none of, or doesn't know). */
  ofType(typeUrl: string): TypeSnapshot {
    return this.#types.get(typeUrl as ResourceTypeUrl) ?? EMPTY_TYPE;
  }

  /** Content-hash version of one type. */
  version(typeUrl: string): string {
    return this.ofType(typeUrl).version;
  }

  /**
   * Clusters a listener references directly (tcp_proxy `cluster`/`weighted_clusters`, routes of an inline
   * `route_config`), for make-before-break: the ADS server holds such a listener until the client has them.
   */
  clustersOfListener(name: string): readonly string[] {
    return this.#listenerClusters.get(name) ?? [];
  }

  /**
   * Versions of every type a snapshot holds, for logs and debug output (virtual hosts are not among them: VHDS
   * resources are cut from the route tables per client, src/xds/vhds.ts).
   */
  versions(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const k of KINDS) out[k.typeUrl] = this.version(k.typeUrl);
    return out;
  }
}

interface Prepared {
  typeUrl: ResourceTypeUrl;
  field: keyof SnapshotResources;
  nameOf: (r: Record<string, unknown>) => unknown;
  nameField: string;
}

const KINDS: readonly Prepared[] = [
  { typeUrl: TYPE_URLS.cluster, field: 'clusters', nameOf: (r) => r.name, nameField: 'name' },
  { typeUrl: TYPE_URLS.endpoint, field: 'endpoints', nameOf: (r) => r.cluster_name, nameField: 'cluster_name' },
  { typeUrl: TYPE_URLS.listener, field: 'listeners', nameOf: (r) => r.name, nameField: 'name' },
  { typeUrl: TYPE_URLS.route, field: 'routes', nameOf: (r) => r.name, nameField: 'name' },
  { typeUrl: TYPE_URLS.secret, field: 'secrets', nameOf: (r) => r.name, nameField: 'name' },
];

/**
 * Re-uses the encoding of resources equal in content across `createSnapshot` calls. A control plane builds one
 * snapshot per node, and most nodes of a push get the same clusters, endpoints and routes: with a cache each
 * distinct resource is encoded and hashed once per push, and every snapshot holding it shares one Buffer
 * (docs/performance.md "Control plane at scale": encoding was most of a push's CPU, and per-node copies most of its
 * memory). The key is the resource's JSON, so equal content is found whatever object it came in. Bounded by two
 * generations: `rotate()` (after each push) drops whatever neither that push nor the one before it used.
 */
export class EncodingCache {
  #current = new Map<string, SnapshotResource>();
  #previous = new Map<string, SnapshotResource>();
  /**
   * By identity first: a resource object shared by many nodes' builds (a proxy class's, see translate/build.ts)
   * is stringified once, not once per node. Callers must therefore not mutate a resource once it is given.
   */
  #byObject = new WeakMap<object, { typeUrl: string; resource: SnapshotResource }>();
  /** Whole types by list identity: a list shared by many nodes (a class's routes or endpoints) is checked once. */
  #byList = new WeakMap<readonly object[], { typeUrl: string; type: TypeSnapshot }>();

  /** @internal */
  getByObject(typeUrl: string, o: object): SnapshotResource | undefined {
    const hit = this.#byObject.get(o);
    return hit !== undefined && hit.typeUrl === typeUrl ? hit.resource : undefined;
  }

  /** @internal */
  setByObject(typeUrl: string, o: object, resource: SnapshotResource): void {
    this.#byObject.set(o, { typeUrl, resource });
  }

  /** @internal */
  getList(typeUrl: string, list: readonly object[]): TypeSnapshot | undefined {
    const hit = this.#byList.get(list);
    return hit !== undefined && hit.typeUrl === typeUrl ? hit.type : undefined;
  }

  /** @internal */
  setList(typeUrl: string, list: readonly object[], type: TypeSnapshot): void {
    this.#byList.set(list, { typeUrl, type });
  }

  /** @internal */
  get(key: string): SnapshotResource | undefined {
    let hit = this.#current.get(key);
    if (hit === undefined) {
      hit = this.#previous.get(key);
      if (hit !== undefined) this.#current.set(key, hit);
    }
    return hit;
  }

  /** @internal */
  set(key: string, resource: SnapshotResource): void {
    this.#current.set(key, resource);
  }

  /** Starts a new generation; entries unused since the previous `rotate()` are dropped. */
  rotate(): void {
    this.#previous = this.#current;
    this.#current = new Map();
  }

  /** Distinct resources held (both generations). */
  get size(): number {
    return this.#current.size + this.#previous.size;
  }
}

/** RouteConfiguration.virtual_hosts (envoy/config/route/v3/route.proto). */
const RC_VIRTUAL_HOSTS_FIELD = 2;

/**
 * A RouteConfiguration's encoding assembled from its virtual hosts' encodings, each found in the cache by its JSON
 * (a virtual host is about a KiB; a table holds one per service, and a VirtualService edit changes one of them,
 * so re-encoding every table of every proxy class was most of such a push). The bytes are exactly what encoding
 * the whole message gives: fields in number order, the virtual hosts as field 2 in their order.
 */
function packRouteConfiguration(rc: RouteConfiguration, cache: EncodingCache): PackedAny {
  const hosts = rc.virtual_hosts ?? [];
  if (hosts.length === 0) return packAny(TYPE_URLS.route, rc);
  const rest = packAny(TYPE_URLS.route, { ...rc, virtual_hosts: [] }).value;
  const parts: Buffer[] = [];
  // Field 1 (name) comes before the virtual hosts; every other field after them.
  const reader = protobuf.Reader.create(rest);
  let split = 0;
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag >>> 3 > RC_VIRTUAL_HOSTS_FIELD) break;
    reader.skipType(tag & 7);
    split = reader.pos;
  }
  parts.push(rest.subarray(0, split));
  const writer = protobuf.Writer.create();
  for (const vh of hosts) {
    // By identity first: translation keeps a virtual host's object across pushes while nothing it reads changed.
    let encoded = cache.getByObject(TYPE_URLS.virtualHost, vh);
    if (encoded === undefined) {
      const key = `${TYPE_URLS.virtualHost}\n${JSON.stringify(vh)}`;
      encoded = cache.get(key);
      if (encoded === undefined) {
        encoded = snapshotResource('', packAny(TYPE_URLS.virtualHost, vh));
        cache.set(key, encoded);
      }
      cache.setByObject(TYPE_URLS.virtualHost, vh, encoded);
    }
    writer.uint32((RC_VIRTUAL_HOSTS_FIELD << 3) | 2).uint32(encoded.any.value.length);
    parts.push(Buffer.from(writer.finish()), encoded.any.value);
    writer.reset();
  }
  parts.push(rest.subarray(split));
  return { type_url: TYPE_URLS.route, value: Buffer.concat(parts) };
}

/** EDS service names of encoded clusters (null: not EDS), so a cluster shared by many snapshots is decoded once. */
const edsNames = new WeakMap<SnapshotResource, { name: string; field: string } | null>();

function edsNameOf(r: SnapshotResource): { name: string; field: string } | null {
  let found = edsNames.get(r);
  if (found !== undefined) return found;
  const c = unpackAny<Cluster__Output>(r.any);
  found = c.type !== 'EDS' ? null : c.eds_cluster_config?.service_name
    ? { name: c.eds_cluster_config.service_name, field: '.eds_cluster_config.service_name' }
    : { name: c.name, field: '.name' };
  edsNames.set(r, found);
  return found;
}

/**
 * Encodes `resources` into a snapshot after checking them: names present and unique per type, each resource
 * encodable, every RDS name a listener uses and every EDS name a cluster uses present in the snapshot.
 * Resources are read, never kept: callers may build them fresh each time. With `opts.cache`, encodings of equal
 * resources are shared with other snapshots made with the same cache; resource objects and lists given with a cache
 * are also remembered by identity (they may be shared by many nodes), so they must not be mutated afterwards.
 * @throws SnapshotError (`SLOOP_ERR_XDS_SNAPSHOT_INCONSISTENT`) carrying every diagnostic; nothing is published.
 */
export function createSnapshot(resources: SnapshotResources, opts: { cache?: EncodingCache } = {}): Snapshot {
  const cache = opts.cache;
  const diagnostics: Diagnostic[] = [];
  const types = new Map<ResourceTypeUrl, TypeSnapshot>();
  const sharedClusters: { type: TypeSnapshot | undefined } = { type: undefined };
  for (const kind of KINDS) {
    const list = (resources[kind.field] ?? []) as ResourceList<object>;
    if (isLayered(list)) {
      const shared = typeOfList(kind, list.shared, cache, diagnostics, 'shared');
      if (kind.typeUrl === TYPE_URLS.cluster) sharedClusters.type = shared;
      if (list.own.length === 0) {
        types.set(kind.typeUrl, shared);
        continue;
      }
      const own = typeOfList(kind, list.own, cache, diagnostics, 'own');
      for (const name of own.resources.keys()) {
        if (shared.resources.has(name)) diagnostics.push(error(`${kind.field}.own["${name}"]`, `duplicate ${shortKind(kind.typeUrl)} name "${name}" (also in the shared part)`));
      }
      types.set(kind.typeUrl, { version: hashVersions(shared.version, own.version), resources: new LayeredMap(shared.resources, own.resources) });
    } else {
      types.set(kind.typeUrl, typeOfList(kind, list, cache, diagnostics, undefined));
    }
  }

  const listenerClusters = new Map<string, readonly string[]>();
  const routes = types.get(TYPE_URLS.route)!.resources;
  const endpoints = types.get(TYPE_URLS.endpoint)!.resources;
  for (const r of types.get(TYPE_URLS.listener)!.resources.values()) {
    const refs = listenerReferencesOf(r, diagnostics);
    listenerClusters.set(r.name, refs.clusters);
    for (const ref of refs.routes) {
      if (!routes.has(ref.name)) diagnostics.push(error(ref.path, `RouteConfiguration "${ref.name}" is not in the snapshot`));
    }
  }
  const endpointType = types.get(TYPE_URLS.endpoint)!;
  const clusterType = types.get(TYPE_URLS.cluster)!;
  const shared = sharedClusters.type;
  if (shared !== undefined) {
    // The shared part against this endpoint type is checked once (a class's clusters and endpoints are the same
    // TypeSnapshots for every proxy of the class); the node's own part every time.
    let byEndpoints = edsChecks.get(shared);
    if (byEndpoints === undefined) edsChecks.set(shared, (byEndpoints = new WeakMap()));
    let found = byEndpoints.get(endpointType);
    if (found === undefined) byEndpoints.set(endpointType, (found = missingEds(shared.resources.values(), endpoints)));
    diagnostics.push(...found);
    if (clusterType !== shared) diagnostics.push(...missingEds((clusterType.resources as LayeredMap).own.values(), endpoints));
  } else {
    diagnostics.push(...missingEds(clusterType.resources.values(), endpoints));
  }
  if (diagnostics.some((d) => d.severity === 'error')) throw new SnapshotError(diagnostics);
  return new Snapshot(types, listenerClusters);
}

function isLayered<T>(list: ResourceList<T>): list is LayeredList<T> {
  return !Array.isArray(list);
}

/**
 * One list of a type as a TypeSnapshot: names checked, each resource encoded (or found in the cache). `part`
 * names the layer in diagnostic paths. With a cache, a clean list is remembered by identity.
 */
function typeOfList(kind: Prepared, list: readonly object[], cache: EncodingCache | undefined, diagnostics: Diagnostic[], part: 'shared' | 'own' | undefined): TypeSnapshot {
  const listHit = cache?.getList(kind.typeUrl, list);
  if (listHit !== undefined) return listHit;
  const field = part === undefined ? kind.field : `${kind.field}.${part}`;
  const errorsBefore = diagnostics.length;
  const items = new Map<string, SnapshotResource>();
  list.forEach((resource, i) => {
    const path = `${field}[${i}]`;
    const name = kind.nameOf(resource as Record<string, unknown>);
    if (typeof name !== 'string' || name === '') {
      diagnostics.push(error(`${path}.${kind.nameField}`, 'a resource needs a non-empty name'));
      return;
    }
    if (items.has(name)) {
      diagnostics.push(error(`${path}.${kind.nameField}`, `duplicate ${shortKind(kind.typeUrl)} name "${name}"`));
      return;
    }
    const same = cache?.getByObject(kind.typeUrl, resource);
    if (same !== undefined) {
      items.set(name, same);
      return;
    }
    // RouteConfigurations are keyed by identity only: one holds every service's virtual host (a MiB at 1,000
    // services), so its JSON costs as much as encoding it, and an edit of any route changes it anyway.
    const key = cache !== undefined && kind.typeUrl !== TYPE_URLS.route ? `${kind.typeUrl}\n${JSON.stringify(resource)}` : undefined;
    const hit = key !== undefined ? cache!.get(key) : undefined;
    if (hit !== undefined) {
      items.set(name, hit);
      cache!.setByObject(kind.typeUrl, resource, hit);
      return;
    }
    let any: PackedAny;
    try {
      any = kind.typeUrl === TYPE_URLS.route && cache !== undefined
        ? packRouteConfiguration(resource as RouteConfiguration, cache)
        : packAny(kind.typeUrl, resource);
    } catch (err) {
      diagnostics.push(error(path, `cannot encode ${shortKind(kind.typeUrl)} "${name}": ${(err as Error).message}`));
      return;
    }
    const encoded = snapshotResource(name, any);
    items.set(name, encoded);
    if (cache !== undefined) {
      if (key !== undefined) cache.set(key, encoded);
      cache.setByObject(kind.typeUrl, resource, encoded);
    }
  });
  const type = typeSnapshotOf(items.values());
  // Only a clean list is remembered, so a list with problems reports them every time.
  if (cache !== undefined && diagnostics.length === errorsBefore) cache.setList(kind.typeUrl, list, type);
  return type;
}

/**
 * The resources of a layered type: the shared part's map and the node's own, read through without copying the
 * shared one (thousands of clusters per class). Both maps are sorted by name; iteration merges them, so it is
 * sorted by name like a plain type's.
 */
class LayeredMap implements ReadonlyMap<string, SnapshotResource> {
  readonly shared: ReadonlyMap<string, SnapshotResource>;
  readonly own: ReadonlyMap<string, SnapshotResource>;

  constructor(shared: ReadonlyMap<string, SnapshotResource>, own: ReadonlyMap<string, SnapshotResource>) {
    this.shared = shared;
    this.own = own;
  }

  get size(): number {
    return this.shared.size + this.own.size;
  }

  get(key: string): SnapshotResource | undefined {
    return this.own.get(key) ?? this.shared.get(key);
  }

  has(key: string): boolean {
    return this.own.has(key) || this.shared.has(key);
  }

  forEach(fn: (value: SnapshotResource, key: string, map: ReadonlyMap<string, SnapshotResource>) => void): void {
    for (const [k, v] of this.entries()) fn(v, k, this);
  }

  *entries(): MapIterator<[string, SnapshotResource]> {
    const a = this.shared.values();
    const b = this.own.values();
    let x = a.next();
    let y = b.next();
    while (!x.done || !y.done) {
      if (y.done || (!x.done && x.value.name < y.value.name)) {
        yield [x.value!.name, x.value!];
        x = a.next();
      } else {
        yield [y.value.name, y.value];
        y = b.next();
      }
    }
  }

  *keys(): MapIterator<string> {
    for (const [k] of this.entries()) yield k;
  }

  *values(): MapIterator<SnapshotResource> {
    for (const [, v] of this.entries()) yield v;
  }

  [Symbol.iterator](): MapIterator<[string, SnapshotResource]> {
    return this.entries();
  }
}

/** What changed between two versions of a type: resources added or changed, and names gone. */
export interface TypeDiff {
  readonly updated: readonly SnapshotResource[];
  readonly removed: readonly string[];
}

const EMPTY_DIFF: TypeDiff = { updated: [], removed: [] };
const mapDiffs = new WeakMap<ReadonlyMap<string, SnapshotResource>, WeakMap<ReadonlyMap<string, SnapshotResource>, TypeDiff>>();

/**
 * The change from `prev` to `next` (names in order), as a delta stream holding all of `prev` must be sent it. Plain
 * maps are compared once per pair (many streams of a proxy class go from the same type to the same type); for
 * layered types the shared parts are, and each node's own parts are compared on their own (they are small).
 */
export function diffTypes(prev: TypeSnapshot, next: TypeSnapshot): TypeDiff {
  if (prev === next || prev.version === next.version) return EMPTY_DIFF;
  const a = prev.resources;
  const b = next.resources;
  if (!(a instanceof LayeredMap) || !(b instanceof LayeredMap)) return diffMaps(a, b, true);
  // Per part, then checked against the whole types: a name may have moved between the parts.
  const shared = diffMaps(a.shared, b.shared, true);
  const own = diffMaps(a.own, b.own, false);
  const updated = [...shared.updated, ...own.updated].filter((r) => a.get(r.name)?.version !== r.version);
  const removed = [...shared.removed, ...own.removed].filter((n) => !b.has(n));
  return { updated: updated.sort(byName), removed: removed.sort() };
}

function diffMaps(a: ReadonlyMap<string, SnapshotResource>, b: ReadonlyMap<string, SnapshotResource>, cache: boolean): TypeDiff {
  if (a === b) return EMPTY_DIFF;
  let byNext = cache ? mapDiffs.get(a) : undefined;
  const hit = byNext?.get(b);
  if (hit !== undefined) return hit;
  const updated: SnapshotResource[] = [];
  const removed: string[] = [];
  for (const r of b.values()) if (a.get(r.name)?.version !== r.version) updated.push(r);
  for (const name of a.keys()) if (!b.has(name)) removed.push(name);
  const diff: TypeDiff = { updated, removed };
  if (cache) {
    if (byNext === undefined) mapDiffs.set(a, (byNext = new WeakMap()));
    byNext.set(b, diff);
  }
  return diff;
}

/** Orders resources by name (snapshots, diffs and responses list them so). */
export const byName = (x: SnapshotResource, y: SnapshotResource): number => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0);

/** The version of a layered type: a hash of its parts' versions. */
function hashVersions(shared: string, own: string): string {
  return createHash('sha256').update(`layered:${shared}:${own}`).digest('hex').slice(0, 16);
}

interface ListenerRefs {
  routes: { name: string; path: string }[];
  clusters: string[];
}

/** References of encoded listeners, so a listener shared by many snapshots is decoded once. */
const listenerRefs = new WeakMap<SnapshotResource, { refs: ListenerRefs; diagnostics: Diagnostic[] }>();

function listenerReferencesOf(r: SnapshotResource, diagnostics: Diagnostic[]): ListenerRefs {
  let hit = listenerRefs.get(r);
  if (hit === undefined) {
    const own: Diagnostic[] = [];
    hit = { refs: listenerReferences(r, own), diagnostics: own };
    listenerRefs.set(r, hit);
  }
  diagnostics.push(...hit.diagnostics);
  return hit.refs;
}

/** Shared cluster TypeSnapshot → endpoint TypeSnapshot → the EDS names missing (see createSnapshot). */
const edsChecks = new WeakMap<TypeSnapshot, WeakMap<TypeSnapshot, Diagnostic[]>>();

function missingEds(clusters: Iterable<SnapshotResource>, endpoints: ReadonlyMap<string, SnapshotResource>): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const r of clusters) {
    const eds = edsNameOf(r);
    if (eds === null) continue;
    if (!endpoints.has(eds.name)) out.push(error(`clusters["${r.name}"]${eds.field}`, `ClusterLoadAssignment "${eds.name}" is not in the snapshot`));
  }
  return out;
}

function listenerReferences(r: SnapshotResource, diagnostics: Diagnostic[]): ListenerRefs {
  const l = unpackAny<Listener__Output>(r.any);
  const refs: ListenerRefs = { routes: [], clusters: [] };
  const base = `listeners["${l.name}"]`;
  const chains: [FilterChain__Output, string][] = l.filter_chains.map((fc, i) => [fc, `${base}.filter_chains[${i}]`]);
  if (l.default_filter_chain) chains.push([l.default_filter_chain, `${base}.default_filter_chain`]);
  for (const [fc, path] of chains) {
    fc.filters.forEach((f, j) => {
      if (f.typed_config) networkFilterRefs(f.typed_config, `${path}.filters[${j}].typed_config`, refs, diagnostics);
    });
  }
  const api = l.api_listener?.api_listener;
  if (api) networkFilterRefs(api, `${base}.api_listener.api_listener`, refs, diagnostics);
  refs.clusters = [...new Set(refs.clusters)].sort();
  return refs;
}

function networkFilterRefs(any: PackedAny, path: string, refs: ListenerRefs, diagnostics: Diagnostic[]): void {
  // Only the type URL's last segment names the type (any.proto), whatever the prefix.
  const typeName = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
  try {
    if (typeName === HCM_TYPE_URL.slice(HCM_TYPE_URL.lastIndexOf('/') + 1)) {
      const hcm = unpackAny<HttpConnectionManager__Output>(any);
      if (hcm.rds) refs.routes.push({ name: hcm.rds.route_config_name, path: `${path}.rds.route_config_name` });
      if (hcm.route_config) refs.clusters.push(...routeClusters(hcm.route_config));
    } else if (typeName === TCP_PROXY_TYPE_URL.slice(TCP_PROXY_TYPE_URL.lastIndexOf('/') + 1)) {
      const tcp = unpackAny<TcpProxy__Output>(any);
      if (tcp.cluster) refs.clusters.push(tcp.cluster);
      for (const w of tcp.weighted_clusters?.clusters ?? []) refs.clusters.push(w.name);
    }
  } catch (err) {
    diagnostics.push(error(path, `cannot decode ${typeName}: ${(err as Error).message}`));
  }
}

/** Clusters the routes of a RouteConfiguration send to (plain and weighted). */
export function routeClusters(rc: RouteConfiguration__Output): string[] {
  const out: string[] = [];
  for (const vh of rc.virtual_hosts) {
    for (const route of vh.routes) {
      const action = route.route;
      if (!action) continue;
      if (action.cluster) out.push(action.cluster);
      for (const w of action.weighted_clusters?.clusters ?? []) out.push(w.name);
    }
  }
  return out;
}

function error(path: string, message: string): Diagnostic {
  return { severity: 'error', code: 'SLOOP_ERR_XDS_SNAPSHOT_INCONSISTENT', path, message };
}

function shortKind(typeUrl: string): string {
  return typeUrl.slice(typeUrl.lastIndexOf('.') + 1);
}

/** One served resource from its encoding: the version is the hash of the bytes, as createSnapshot computes it. */
export function snapshotResource(name: string, any: PackedAny): SnapshotResource {
  return { name, version: hashBytes(any.value), any };
}

/** A type made of already encoded resources (names unique), sorted and versioned as createSnapshot does. */
export function typeSnapshotOf(resources: Iterable<SnapshotResource>): TypeSnapshot {
  const sorted = [...resources].sort(byName);
  return { version: hashEntries(sorted), resources: new Map(sorted.map((r) => [r.name, r])) };
}

function hashBytes(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 16);
}

function hashEntries(entries: readonly SnapshotResource[]): string {
  const h = createHash('sha256');
  // Over (name, resource version) pairs, each version a hash of the bytes: the same content address as hashing
  // the bytes again, without re-reading every byte of every node's snapshot. Length-prefixed names, so no two
  // different sequences hash the same input.
  for (const e of entries) h.update(`${Buffer.byteLength(e.name)}:${e.name}:${e.version};`);
  return h.digest('hex').slice(0, 16);
}
