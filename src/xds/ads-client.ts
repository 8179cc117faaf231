/**
 * The sidecar side of ADS (Envoy's xDS protocol, api/xds_protocol): one gRPC stream to the control plane,
 * state-of-the-world (StreamAggregatedResources) or incremental (DeltaAggregatedResources), carrying every
 * resource type. The client tracks per type what is subscribed, the last accepted version and nonce, and the
 * resources it holds; it hands decoded updates to a handler, which applies them and says whether to ACK or
 * NACK. It knows nothing of listeners or clusters: the data plane is the handler.
 *
 * Protocol rules followed here (xds_protocol "ACK/NACK and resource type instance version", "Resource
 * updates", "Incremental xDS", "Reconnect"):
 * - An ACK repeats the response's version_info and nonce; a NACK repeats the nonce with the last *accepted*
 *   version_info and an error_detail (google.rpc.Status, code INVALID_ARGUMENT).
 * - SotW Listener and Cluster responses carry the whole set, so a name missing from one is removed; for
 *   RouteConfiguration and ClusterLoadAssignment a response carries only what changed.
 * - When the stream breaks the client keeps everything it has (the data plane keeps serving) and reconnects
 *   with exponential backoff and full jitter; on the new stream SotW requests carry the last accepted
 *   versions and delta requests carry initial_resource_versions, so nothing already held is re-sent.
 */
import * as grpc from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import { typeForUrl, unpackAny } from './any.ts';
import { lookupMessage, TO_OBJECT_OPTIONS } from './protos.ts';
import { decodeProtoJson, encodeProtoJson } from './proto-json.ts';
import { formatDiagnostic, SloopError } from '../shared/errors.ts';
import type { Logger } from '../shared/log.ts';

export const LISTENER_TYPE = 'type.googleapis.com/envoy.config.listener.v3.Listener';
export const CLUSTER_TYPE = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
export const ROUTE_TYPE = 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration';
export const ENDPOINT_TYPE = 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment';
/** VHDS over a delta ADS stream (src/xds/vhds.ts). */
export const VIRTUAL_HOST_TYPE = 'type.googleapis.com/envoy.config.route.v3.VirtualHost';

/**
 * Request order on a new stream: clusters before their endpoints, listeners before their routes (make-before-break),
 * virtual hosts (VHDS) before the route tables they complete.
 */
export const TYPE_ORDER: readonly string[] = [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, VIRTUAL_HOST_TYPE, ROUTE_TYPE];

const SOTW_METHOD = '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources';
const DELTA_METHOD = '/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources';
/** google.rpc.Code INVALID_ARGUMENT, as Envoy puts in a NACK's error_detail. */
const INVALID_ARGUMENT = 3;

/** One resource of an update, decoded into the shape of its generated `__Output` type. */
export interface DecodedResource<T = unknown> {
  name: string;
  /** The resource's own version (delta), else the response's version_info. */
  version: string;
  resource: T;
}

/** What a response changed for one type, whichever protocol variant carried it. */
export interface ResourceUpdate {
  typeUrl: string;
  /** SotW version_info, or the delta system_version_info ('' when absent). */
  versionInfo: string;
  /** Resources added or updated. */
  added: DecodedResource[];
  /** Names removed: delta removed_resources, or SotW Listener/Cluster names the new set no longer has. */
  removed: string[];
}

/** The data plane's side: apply updates and learn of connection changes. */
export interface AdsHandler {
  /**
   * Applies an update, all or nothing. Returns undefined to ACK, or the problems (one line each) to NACK with;
   * a NACKed update must leave the previous resources serving.
   */
  onUpdate(update: ResourceUpdate): string[] | undefined;
  /** The stream came up (true) or went away (false). */
  onConnectionState?(connected: boolean): void;
}

export interface AdsClientOptions {
  /** `host:port` of the control plane, asked on every (re)connect; undefined = no address yet (retry later). */
  target: () => string | undefined;
  /** envoy.config.core.v3.Node in `fromObject` form, sent on the first request of each stream. */
  node: object;
  mode: 'sotw' | 'delta';
  handler: AdsHandler;
  log: Logger;
  /** Reconnect backoff: first interval and cap (Envoy's defaults 500 ms and 30 s... see docs/proxy.md). */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  random?: () => number;
}

interface TypeState {
  /** Subscribed names, or undefined for a wildcard subscription. */
  names: Set<string> | undefined;
  /** Whether the type has been asked for on the current stream. */
  requested: boolean;
  /** Last accepted SotW version_info. */
  version: string;
  /** Last nonce received on the current stream. */
  nonce: string;
  /** Resources held, name → version (delta initial_resource_versions; SotW removal of Listener/Cluster). */
  known: Map<string, string>;
  /** Delta: names subscribed/unsubscribed since the last request. */
  pendingSubscribe: Set<string>;
  pendingUnsubscribe: Set<string>;
}

/** Call with the full list, or '*' for a wildcard subscription. */
export type Interest = readonly string[] | '*';

type Stream = grpc.ClientDuplexStream<object, protobuf.Message>;

export class AdsClient {
  private readonly opts: AdsClientOptions;
  private readonly log: Logger;
  private readonly types = new Map<string, TypeState>();
  private readonly requestType: protobuf.Type;
  private readonly responseType: protobuf.Type;
  private client: grpc.Client | undefined;
  private clientTarget = '';
  private stream: Stream | undefined;
  private retryTimer: NodeJS.Timeout | null = null;
  private attempt = 0;
  private closed = false;
  private firstOnStream = true;
  /** True while a stream is open and has received at least one response, or at least was accepted. */
  connected = false;

  /** State of the world or incremental (delta) xDS. */
  get mode(): 'sotw' | 'delta' {
    return this.opts.mode;
  }

  constructor(opts: AdsClientOptions) {
    this.opts = opts;
    this.log = opts.log.child({ component: 'ads' });
    const delta = opts.mode === 'delta';
    const req = lookupMessage(delta ? 'envoy.service.discovery.v3.DeltaDiscoveryRequest' : 'envoy.service.discovery.v3.DiscoveryRequest');
    const res = lookupMessage(delta ? 'envoy.service.discovery.v3.DeltaDiscoveryResponse' : 'envoy.service.discovery.v3.DiscoveryResponse');
    if (req === undefined || res === undefined) throw new SloopError('SLOOP_ERR_XDS_UNKNOWN_TYPE', 'the ADS service messages are not in the loaded Envoy API');
    this.requestType = req;
    this.responseType = res;
  }

  /**
   * Sets what the data plane wants of `typeUrl`: a wildcard (Listener, Cluster) or named resources (the
   * RouteConfigurations its listeners use, the ClusterLoadAssignments of its EDS clusters). Sends a request
   * when the interest changed and the stream is up.
   */
  subscribe(typeUrl: string, interest: Interest): void {
    let st = this.types.get(typeUrl);
    const names = interest === '*' ? undefined : new Set(interest);
    if (st === undefined) {
      // No request for a type until there is something to ask for: an empty first request would be read as
      // a legacy wildcard subscription (xds_protocol "How the client specifies what resources to return").
      if (names !== undefined && names.size === 0) return;
      st = { names, requested: false, version: '', nonce: '', known: new Map(), pendingSubscribe: new Set(names ?? []), pendingUnsubscribe: new Set() };
      this.types.set(typeUrl, st);
    } else {
      if (names !== undefined && st.names !== undefined && sameSet(names, st.names)) return;
      if (names !== undefined && st.names !== undefined) {
        for (const n of names) if (!st.names.has(n)) {
          st.pendingSubscribe.add(n);
          st.pendingUnsubscribe.delete(n);
        }
        for (const n of st.names) if (!names.has(n)) {
          st.pendingUnsubscribe.add(n);
          st.pendingSubscribe.delete(n);
          // Unsubscribed resources are dropped (xds_protocol: the client "no longer cares" about them).
          st.known.delete(n);
        }
      }
      st.names = names;
    }
    if (this.stream !== undefined) this.sendRequest(typeUrl, st);
  }

  /** Opens the stream (and reopens it after failures) until close(). */
  start(): void {
    this.connect();
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.stream?.cancel();
    this.stream = undefined;
    this.client?.close();
  }

  private connect(): void {
    if (this.closed) return;
    const target = this.opts.target();
    if (target === undefined) {
      this.scheduleReconnect('no control plane address');
      return;
    }
    if (this.client === undefined || this.clientTarget !== target) {
      this.client?.close();
      this.client = new grpc.Client(target, grpc.credentials.createInsecure());
      this.clientTarget = target;
    }
    const delta = this.opts.mode === 'delta';
    const reqType = this.requestType;
    const resType = this.responseType;
    const stream = this.client.makeBidiStreamRequest(
      delta ? DELTA_METHOD : SOTW_METHOD,
      (o: object) => Buffer.from(reqType.encode(reqType.fromObject(o)).finish()),
      (b: Buffer) => resType.decode(b),
    ) as Stream;
    this.stream = stream;
    this.firstOnStream = true;
    let gotResponse = false;
    stream.on('data', (m: protobuf.Message) => {
      if (this.stream !== stream) return;
      if (!gotResponse) {
        gotResponse = true;
        this.attempt = 0;
      }
      this.setConnected(true);
      try {
        this.onResponse(resType.toObject(m, TO_OBJECT_OPTIONS));
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'xDS response handling failed');
      }
    });
    stream.on('metadata', () => {
      if (this.stream === stream) this.setConnected(true);
    });
    const onEnd = (err?: Error): void => {
      if (this.stream !== stream) return;
      this.stream = undefined;
      this.setConnected(false);
      const e = new SloopError('SLOOP_ERR_XDS_STREAM_CLOSED', `ADS stream to ${target} closed: ${err?.message ?? 'end of stream'}`, { cause: err });
      this.scheduleReconnect(e.message);
    };
    stream.on('error', (err: Error) => onEnd(err));
    stream.on('end', () => onEnd());
    for (const st of this.types.values()) st.requested = false;
    for (const t of this.orderedTypes()) this.sendRequest(t, this.types.get(t)!);
  }

  private setConnected(up: boolean): void {
    if (this.connected === up) return;
    this.connected = up;
    if (up) this.log.info({ target: this.clientTarget }, 'connected to the control plane');
    this.opts.handler.onConnectionState?.(up);
  }

  private orderedTypes(): string[] {
    const all = [...this.types.keys()];
    return all.sort((a, b) => rank(a) - rank(b));
  }

  /** Exponential backoff with full jitter (Envoy's JitteredExponentialBackOffStrategy): random in [0, min(cap, base·2^n)). */
  private scheduleReconnect(why: string): void {
    if (this.closed || this.retryTimer !== null) return;
    const base = this.opts.backoffBaseMs ?? 500;
    const cap = this.opts.backoffMaxMs ?? 30_000;
    const ceiling = Math.min(cap, base * 2 ** Math.min(this.attempt, 30));
    const delayMs = Math.max(1, Math.floor((this.opts.random ?? Math.random)() * ceiling));
    this.attempt++;
    this.log.warn({ reason: why, retryInMs: delayMs, attempt: this.attempt }, 'control plane unavailable; retrying');
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delayMs);
    this.retryTimer.unref();
  }

  private write(o: Record<string, unknown>): void {
    if (this.firstOnStream) {
      o.node = this.opts.node;
      this.firstOnStream = false;
    }
    this.stream?.write(o);
  }

  private sendRequest(typeUrl: string, st: TypeState, errorDetail?: string): void {
    if (this.stream === undefined) return;
    const error_detail = errorDetail === undefined ? undefined : { code: INVALID_ARGUMENT, message: errorDetail };
    if (this.opts.mode === 'sotw') {
      this.write({ type_url: typeUrl, version_info: st.version, response_nonce: st.nonce, resource_names: st.names ? [...st.names].sort() : [], error_detail });
      st.requested = true;
      return;
    }
    if (!st.requested) {
      // A new stream: say everything once (xds_protocol "Reconnect": initial_resource_versions).
      const initial: Record<string, string> = {};
      for (const [n, v] of st.known) initial[n] = v;
      // A wildcard is an empty list for Listener and Cluster (the legacy form every server knows), `*` otherwise:
      // for other types an empty list subscribes to nothing (xds_protocol "How the client specifies...").
      const subscribe = st.names ? [...st.names].sort() : typeUrl === LISTENER_TYPE || typeUrl === CLUSTER_TYPE ? [] : ['*'];
      this.write({ type_url: typeUrl, resource_names_subscribe: subscribe, initial_resource_versions: initial });
      st.pendingSubscribe.clear();
      st.pendingUnsubscribe.clear();
      st.requested = true;
      return;
    }
    this.write({
      type_url: typeUrl,
      response_nonce: st.nonce,
      resource_names_subscribe: [...st.pendingSubscribe].sort(),
      resource_names_unsubscribe: [...st.pendingUnsubscribe].sort(),
      error_detail,
    });
    st.pendingSubscribe.clear();
    st.pendingUnsubscribe.clear();
  }

  private onResponse(r: Record<string, unknown>): void {
    const typeUrl = r.type_url as string;
    const st = this.types.get(typeUrl);
    if (st === undefined) {
      this.log.warn({ typeUrl }, 'xDS response for a type never subscribed; ignored');
      return;
    }
    st.nonce = r.nonce as string;
    const problems: string[] = [];
    const added: DecodedResource[] = [];
    let removed: string[] = [];
    const delta = this.opts.mode === 'delta';
    const versionInfo = (delta ? r.system_version_info : r.version_info) as string ?? '';
    if (delta) {
      for (const res of r.resources as Array<{ name: string; version: string; resource: { type_url: string; value: Buffer } | null }>) {
        if (res.resource === null) continue;
        decodeInto(res.resource, typeUrl, res.version, res.name, added, problems);
      }
      removed = (r.removed_resources as string[]).filter((n) => st.known.has(n));
    } else {
      for (const any of r.resources as Array<{ type_url: string; value: Buffer }>) decodeInto(any, typeUrl, versionInfo, undefined, added, problems);
      if (typeUrl === LISTENER_TYPE || typeUrl === CLUSTER_TYPE) {
        const present = new Set(added.map((a) => a.name));
        removed = [...st.known.keys()].filter((n) => !present.has(n));
      }
    }
    const seen = new Set<string>();
    for (const a of added) {
      if (seen.has(a.name)) problems.push(`duplicate resource name ${JSON.stringify(a.name)} in one response`);
      seen.add(a.name);
    }
    if (problems.length === 0) {
      try {
        const errs = this.opts.handler.onUpdate({ typeUrl, versionInfo, added, removed });
        if (errs !== undefined && errs.length > 0) problems.push(...errs);
      } catch (err) {
        // A bug while applying must still answer the response, or the control plane waits forever.
        problems.push(`internal error applying the update: ${(err as Error).message}`);
      }
    }
    if (problems.length > 0) {
      this.log.warn({ typeUrl, version: versionInfo, nonce: st.nonce, problems }, 'xDS update rejected');
      this.sendRequest(typeUrl, st, problems.join('\n'));
      return;
    }
    for (const n of removed) st.known.delete(n);
    for (const a of added) st.known.set(a.name, a.version);
    if (!delta) st.version = versionInfo;
    this.log.debug({ typeUrl, version: versionInfo, added: added.length, removed: removed.length }, 'xDS update accepted');
    this.sendRequest(typeUrl, st);
  }
}

function decodeInto(any: { type_url: string; value: Buffer }, typeUrl: string, version: string, name: string | undefined, out: DecodedResource[], problems: string[]): void {
  if (any.type_url !== typeUrl) {
    problems.push(`resource of type ${any.type_url} in a ${typeUrl} response`);
    return;
  }
  try {
    const resource = unpackAny<{ name?: string; cluster_name?: string }>(any);
    // The same checks as a bootstrap gets (protoc-gen-validate rules, known Any types): through proto3 JSON.
    const type = typeForUrl(typeUrl);
    const checked = decodeProtoJson(type, encodeProtoJson(type, resource));
    const errors = checked.diagnostics.filter((d) => d.severity === 'error');
    if (errors.length > 0) {
      const label = name ?? resource.name ?? resource.cluster_name ?? '';
      for (const d of errors) problems.push(`${type.name} ${JSON.stringify(label)}: ${formatDiagnostic(d)}`);
      return;
    }
    // ClusterLoadAssignment is named by cluster_name; every other xDS resource by name.
    out.push({ name: name ?? (typeUrl === ENDPOINT_TYPE ? resource.cluster_name : resource.name) ?? '', version, resource });
  } catch (err) {
    problems.push((err as Error).message);
  }
}

function rank(typeUrl: string): number {
  const i = TYPE_ORDER.indexOf(typeUrl);
  return i < 0 ? TYPE_ORDER.length : i;
}

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}
