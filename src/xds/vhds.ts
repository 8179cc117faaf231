/**
 * VHDS over ADS: on a delta stream whose node asks for it, each RouteConfiguration goes out without its virtual
 * hosts and with `vhds` set, and every virtual host goes out as its own `envoy.config.route.v3.VirtualHost`
 * resource, named `<route configuration name>/<virtual host name>` (Envoy's VHDS naming convention).
 *
 * Why: Istio's sidecar route tables are per port and hold every service's virtual host (a MiB per proxy at
 * 1,000 services). One VirtualService edit changes one virtual host, yet plain RDS must resend the whole table to
 * every proxy (564 MiB per edit at 1,000 services and 500 proxies, docs/performance.md). Delta xDS sends only
 * resources whose version changed, so once virtual hosts are resources of their own, an edit sends kilobytes.
 *
 * Envoy's own VHDS is on-demand and requires a separate DELTA_GRPC config source (it refuses `ads`), so this is
 * offered only to nodes that announce {@link VHDS_CLIENT_FEATURE} in `node.client_features` (Sloop's proxy on a
 * delta ADS stream); any other client, and every SotW stream, gets whole RouteConfigurations as Istio sends them.
 * The server sends every virtual host of the route configurations in the node's snapshot proactively (the
 * "initial set" of the VHDS doc is all of them); there is no on-demand lookup by alias.
 *
 * The split is done on the encoded bytes: a RouteConfiguration's `virtual_hosts` (field 2) entries are the
 * VirtualHost encodings themselves, so nothing is decoded or re-encoded, and each split is cached per encoded
 * resource (one per proxy class and push).
 */
import protobuf from 'protobufjs';
import { packAny } from './any.ts';
import { snapshotResource, typeSnapshotOf, type SnapshotResource, type TypeSnapshot } from './snapshot.ts';
import { TYPE_URLS, VHDS_CLIENT_FEATURE } from './type-urls.ts';

export { VHDS_CLIENT_FEATURE };

/** RouteConfiguration field numbers (envoy/config/route/v3/route.proto). */
const RC_VIRTUAL_HOSTS = 2;
const RC_VHDS = 9;
/** VirtualHost.name (envoy/config/route/v3/route_components.proto). */
const VH_NAME = 1;
const LENGTH_DELIMITED = 2;

let vhdsFieldBytes: Buffer | undefined;

/** The encoding of RouteConfiguration field 9, `vhds: { config_source: { ads: {}, resource_api_version: V3 } }`. */
function vhdsField(): Buffer {
  vhdsFieldBytes ??= packAny(TYPE_URLS.route, { vhds: { config_source: { ads: {}, resource_api_version: 'V3' } } }).value;
  return vhdsFieldBytes;
}

/** A RouteConfiguration as VHDS serves it: the table without virtual hosts, and the virtual hosts. */
export interface VhdsSplit {
  readonly route: SnapshotResource;
  readonly virtualHosts: readonly SnapshotResource[];
}

const splits = new WeakMap<SnapshotResource, VhdsSplit>();

/**
 * Splits one encoded RouteConfiguration (cached per resource). A table whose virtual hosts repeat a name, or have
 * a `/` in one, is left whole (no `vhds`): the resource names could not tell its virtual hosts apart (a client
 * finds the table as what comes before the last `/`).
 */
export function splitRouteConfiguration(r: SnapshotResource): VhdsSplit {
  const hit = splits.get(r);
  if (hit !== undefined) return hit;
  const buf = r.any.value;
  const reader = protobuf.Reader.create(buf);
  const kept: Buffer[] = [];
  const bodies: Buffer[] = [];
  while (reader.pos < reader.len) {
    const start = reader.pos;
    const tag = reader.uint32();
    const field = tag >>> 3;
    const wireType = tag & 7;
    if (field === RC_VIRTUAL_HOSTS && wireType === LENGTH_DELIMITED) {
      const len = reader.uint32();
      bodies.push(buf.subarray(reader.pos, reader.pos + len));
      reader.pos += len;
      continue;
    }
    reader.skipType(wireType);
    if (field !== RC_VHDS) kept.push(buf.subarray(start, reader.pos));
  }
  const names = new Set<string>();
  const virtualHosts: SnapshotResource[] = [];
  for (const body of bodies) {
    const host = virtualHostName(body);
    const name = `${r.name}/${host}`;
    if (names.has(name) || host.includes('/')) {
      const whole: VhdsSplit = { route: r, virtualHosts: [] };
      splits.set(r, whole);
      return whole;
    }
    names.add(name);
    virtualHosts.push(snapshotResource(name, { type_url: TYPE_URLS.virtualHost, value: body }));
  }
  kept.push(vhdsField());
  const split: VhdsSplit = { route: snapshotResource(r.name, { type_url: TYPE_URLS.route, value: Buffer.concat(kept) }), virtualHosts };
  splits.set(r, split);
  return split;
}

function virtualHostName(body: Buffer): string {
  const reader = protobuf.Reader.create(body);
  let name = '';
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag >>> 3 === VH_NAME && (tag & 7) === LENGTH_DELIMITED) name = reader.string(); // the last one wins, as in protobuf
    else reader.skipType(tag & 7);
  }
  return name;
}

/** A node's RDS type as VHDS serves it: the route tables without virtual hosts, and every virtual host. */
export interface VhdsTypes {
  readonly routes: TypeSnapshot;
  readonly virtualHosts: TypeSnapshot;
}

const typeSplits = new WeakMap<TypeSnapshot, VhdsTypes>();

/** {@link splitRouteConfiguration} over a whole type, cached per TypeSnapshot (a proxy class shares one). */
export function vhdsTypes(routes: TypeSnapshot): VhdsTypes {
  const hit = typeSplits.get(routes);
  if (hit !== undefined) return hit;
  const tables: SnapshotResource[] = [];
  const hosts: SnapshotResource[] = [];
  for (const r of routes.resources.values()) {
    const s = splitRouteConfiguration(r);
    tables.push(s.route);
    hosts.push(...s.virtualHosts);
  }
  const out: VhdsTypes = { routes: typeSnapshotOf(tables), virtualHosts: typeSnapshotOf(hosts) };
  typeSplits.set(routes, out);
  return out;
}
