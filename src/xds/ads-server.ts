/**
 * The ADS server: envoy.service.discovery.v3.AggregatedDiscoveryService over gRPC, state of the world
 * (StreamAggregatedResources) and incremental (DeltaAggregatedResources), serving the {@link SnapshotCache}.
 *
 * It follows Envoy's "xDS REST and gRPC protocol" document: per-type subscriptions on one stream, wildcard
 * (legacy empty first request for LDS/CDS, or `*`) and named subscriptions, version_info and nonces, ACK (the
 * nonce of our last response, no error_detail) and NACK (error_detail set; the client keeps its last good
 * version), stale nonces ignored in SotW, LDS/CDS responses carrying every resource and EDS/RDS/SDS responses
 * only those requested that changed, delta responses with per-resource versions and removed_resources,
 * initial_resource_versions on reconnect, and VHDS for delta clients that ask for it (vhds.ts). Every push walks
 * the types in {@link PUSH_ORDER} (CDS, EDS, LDS, VHDS, RDS, SDS) on the one stream, so a client subscribed to CDS
 * always has a Listener's or route's clusters before the Listener. See docs/xds.md.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Logger } from '../shared/log.ts';
import type { DeltaDiscoveryRequest__Output } from './gen/envoy/service/discovery/v3/DeltaDiscoveryRequest.ts';
import type { DeltaDiscoveryResponse } from './gen/envoy/service/discovery/v3/DeltaDiscoveryResponse.ts';
import type { DiscoveryRequest__Output } from './gen/envoy/service/discovery/v3/DiscoveryRequest.ts';
import type { DiscoveryResponse } from './gen/envoy/service/discovery/v3/DiscoveryResponse.ts';
import type { Node__Output } from './gen/envoy/config/core/v3/Node.ts';
import { protoIncludeDirs } from './protos.ts';
import { EMPTY_TYPE, byName, diffTypes, type Snapshot, type SnapshotResource, type TypeSnapshot } from './snapshot.ts';
import type { NodeInfo, SnapshotCache } from './snapshot-cache.ts';
import { PUSH_ORDER, TYPE_URLS, isFullStateType, shortTypeName } from './type-urls.ts';
import { VHDS_CLIENT_FEATURE, vhdsTypes } from './vhds.ts';
import { encodeDeltaDiscoveryResponse, encodeDiscoveryResponse } from './wire.ts';

/** Options for {@link AdsServer}. */
export interface AdsServerOptions {
  cache: SnapshotCache;
  log: Logger;
  /** Clock for the timestamps in {@link NackInfo}. Default `Date.now`. */
  now?: () => number;
  /** A node id got its first open stream (the control plane adds the workload to its registry). */
  onNodeConnected?: (node: NodeInfo) => void;
  /** A node id's last open stream closed. */
  onNodeDisconnected?: (nodeId: string) => void;
  /** Bytes of responses written but not yet taken by the clients, over all streams (see {@link WritePacer}). */
  writeBudgetBytes?: number;
}

/** Counters of one type URL (or of all of them). */
export interface XdsCounters {
  /** Responses sent. */
  pushes: number;
  acks: number;
  nacks: number;
}

/** The last NACK a stream got for one type. */
export interface NackInfo {
  /** Version (SotW) or nonce (delta) the client rejected. */
  rejectedVersion: string;
  nonce: string;
  errorDetail: { code: number; message: string };
  /** Epoch milliseconds. */
  at: number;
}

/** What one stream subscribed to, was sent and ACKed for one type URL. Plain JSON, for debug endpoints and tests. */
export interface TypeStatus {
  typeUrl: string;
  wildcard: boolean;
  /** Explicitly subscribed names, sorted. */
  names: string[];
  /** SotW: version_info of the last response; delta: system_version_info of the last response. */
  sentVersion: string | undefined;
  sentNonce: string | undefined;
  /** Name → version of the resources the client was sent (SotW: in the last response; delta: believed to hold). */
  sent: Record<string, string>;
  /** SotW: version_info of the last ACKed response. Delta: undefined. */
  ackedVersion: string | undefined;
  /** Name → version of what the client ACKed. */
  acked: Record<string, string>;
  lastNack: NackInfo | undefined;
  counters: XdsCounters;
}

/** One ADS stream's state. */
export interface StreamStatus {
  streamId: number;
  mode: 'sotw' | 'delta';
  nodeId: string | undefined;
  peer: string;
  types: TypeStatus[];
}

type SotwCall = grpc.ServerDuplexStream<DiscoveryRequest__Output, DiscoveryResponse>;
type DeltaCall = grpc.ServerDuplexStream<DeltaDiscoveryRequest__Output, DeltaDiscoveryResponse>;

let adsService: grpc.ServiceDefinition | undefined;

/** The AggregatedDiscoveryService definition, loaded with proto-loader from Envoy's protos (once per process). */
export function loadAdsServiceDefinition(): grpc.ServiceDefinition {
  if (adsService) return adsService;
  const def = protoLoader.loadSync('envoy/service/discovery/v3/ads.proto', {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: protoIncludeDirs(),
  });
  const service = def['envoy.service.discovery.v3.AggregatedDiscoveryService'] as grpc.ServiceDefinition;
  // Responses are written already encoded (see wire.ts): a Buffer goes out as is, anything else through protobufjs.
  const passThrough = (serialize: grpc.serialize<unknown>): grpc.serialize<unknown> => (value) => (Buffer.isBuffer(value) ? value : serialize(value));
  adsService = Object.fromEntries(Object.entries(service).map(([name, method]) => [name, { ...method, responseSerialize: passThrough(method.responseSerialize) }]));
  return adsService;
}

/** A delta response naming more resources than this is not shared (its key would cost more than it saves). */
const SHARED_DELTA_MAX_NAMES = 64;

/** Caps the delta in-flight map of a client that never ACKs (it can only ever ACK the newest nonces). */
const MAX_IN_FLIGHT = 32;

/**
 * Serves ADS from a {@link SnapshotCache}; every `setSnapshot` pushes what changed to that node's streams.
 * Create with a cache and a logger; either `listen()` on an address or `addTo()` an existing grpc.Server.
 */
export class AdsServer {
  readonly #cache: SnapshotCache;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #streams = new Set<AdsStream>();
  readonly #byNode = new Map<string, Set<AdsStream>>();
  readonly #totals = new Map<string, XdsCounters>();
  readonly #unsubscribe: () => void;
  readonly #shared = new SharedResponses();
  readonly #pacer: WritePacer;
  #server: grpc.Server | undefined;
  #nextStreamId = 1;

  readonly #onNodeConnected: AdsServerOptions['onNodeConnected'];
  readonly #onNodeDisconnected: AdsServerOptions['onNodeDisconnected'];

  constructor(opts: AdsServerOptions) {
    this.#cache = opts.cache;
    this.#log = opts.log.child({ component: 'ads' });
    this.#now = opts.now ?? Date.now;
    this.#onNodeConnected = opts.onNodeConnected;
    this.#onNodeDisconnected = opts.onNodeDisconnected;
    this.#pacer = new WritePacer(opts.writeBudgetBytes ?? DEFAULT_WRITE_BUDGET_BYTES);
    this.#unsubscribe = this.#cache.subscribe((nodeId, snapshot) => {
      for (const stream of this.#byNode.get(nodeId) ?? []) stream.setSnapshot(snapshot);
    });
  }

  /** Registers the AggregatedDiscoveryService on `server` (which the caller binds, starts and shuts down). */
  addTo(server: grpc.Server): void {
    server.addService(loadAdsServiceDefinition(), {
      StreamAggregatedResources: (call: SotwCall) => this.#open(new SotwStream(this.#context(), call)),
      DeltaAggregatedResources: (call: DeltaCall) => this.#open(new DeltaStream(this.#context(), call)),
    });
  }

  /**
   * Starts a gRPC server (plaintext, like istiod's 15010) on `address` (`host:port`, port 0 for any) serving only
   * ADS. Resolves with the bound port.
   */
  async listen(address: string): Promise<number> {
    const server = new grpc.Server();
    this.addTo(server);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.#server = server;
    this.#log.info({ address, port }, 'ADS server listening');
    return port;
  }

  /** Ends every stream (clients reconnect elsewhere or later) and stops the server `listen()` started. */
  async close(): Promise<void> {
    this.#unsubscribe();
    for (const stream of [...this.#streams]) stream.end();
    const server = this.#server;
    this.#server = undefined;
    if (server === undefined) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, 1_000);
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Counters over every stream since start, in total and per type URL. */
  counters(): { total: XdsCounters; byType: Record<string, XdsCounters>; openStreams: number } {
    const total: XdsCounters = { pushes: 0, acks: 0, nacks: 0 };
    const byType: Record<string, XdsCounters> = {};
    for (const [typeUrl, c] of this.#totals) {
      byType[typeUrl] = { ...c };
      total.pushes += c.pushes;
      total.acks += c.acks;
      total.nacks += c.nacks;
    }
    return { total, byType, openStreams: this.#streams.size };
  }

  /** State of every open stream (of one node, if given). */
  status(nodeId?: string): StreamStatus[] {
    const streams = nodeId === undefined ? this.#streams : (this.#byNode.get(nodeId) ?? new Set<AdsStream>());
    return [...streams].map((s) => s.status());
  }

  #context(): StreamContext {
    return {
      id: this.#nextStreamId++,
      cache: this.#cache,
      log: this.#log,
      now: this.#now,
      shared: this.#shared,
      pacer: this.#pacer,
      count: (typeUrl, what) => {
        let c = this.#totals.get(typeUrl);
        if (c === undefined) this.#totals.set(typeUrl, (c = { pushes: 0, acks: 0, nacks: 0 }));
        c[what]++;
      },
      identified: (stream, nodeId, info) => {
        let set = this.#byNode.get(nodeId);
        if (set === undefined) this.#byNode.set(nodeId, (set = new Set()));
        set.add(stream);
        if (set.size === 1) this.#onNodeConnected?.(info);
      },
      closed: (stream) => {
        this.#streams.delete(stream);
        const nodeId = stream.nodeId;
        if (nodeId === undefined) return;
        const set = this.#byNode.get(nodeId);
        if (set === undefined || !set.delete(stream)) return;
        if (set.size === 0) {
          this.#byNode.delete(nodeId);
          this.#onNodeDisconnected?.(nodeId);
        }
      },
    };
  }

  #open(stream: AdsStream): void {
    this.#streams.add(stream);
    stream.start();
  }
}

/**
 * Encoded SotW responses shared by the wildcard streams that get the same TypeSnapshot in one tick (a push
 * publishes every node's snapshot synchronously, and a proxy class's routes and endpoints are one TypeSnapshot):
 * the response is encoded once and every stream writes the same Buffer, instead of one copy per stream (at 500
 * proxies a VirtualService edit was 564 MiB of per-stream response copies; docs/performance.md). A shared
 * response carries a nonce of its own, `0-<n>` (stream nonces are `<stream id>-<n>`, ids from 1), unique in the
 * process, so it is still unique on each stream as long as a stream doesn't send it twice (see SotwStream.push).
 * Only a TypeSnapshot seen a second time in the tick is encoded here, so per-proxy types (a node's own clusters
 * and listeners) are never held twice; entries are dropped at the end of the tick.
 */
class SharedResponses {
  /** TypeSnapshot → response key → the shared response (null: asked for once, not encoded yet). */
  #responses = new Map<TypeSnapshot, Map<string, { nonce: string; bytes: Buffer } | null>>();
  #seq = 0;
  #clearScheduled = false;

  /**
   * The shared response `key` of `all` (SotW: every resource, key `*`; delta: the updated and removed names),
   * encoded by `encode` with a process-unique nonce, or undefined the first time it is asked for this tick.
   */
  get(all: TypeSnapshot, key: string, encode: (nonce: string) => Buffer): { nonce: string; bytes: Buffer } | undefined {
    let byKey = this.#responses.get(all);
    if (byKey === undefined) this.#responses.set(all, (byKey = new Map()));
    const hit = byKey.get(key);
    if (hit === undefined) {
      this.#scheduleClear();
      byKey.set(key, null);
      return undefined;
    }
    if (hit !== null) return hit;
    const nonce = `0-${++this.#seq}`;
    const shared = { nonce, bytes: encode(nonce) };
    byKey.set(key, shared);
    return shared;
  }

  #scheduleClear(): void {
    if (this.#clearScheduled) return;
    this.#clearScheduled = true;
    setImmediate(() => {
      this.#clearScheduled = false;
      this.#responses.clear();
    });
  }
}

/** Default {@link AdsServerOptions.writeBudgetBytes}. */
export const DEFAULT_WRITE_BUDGET_BYTES = 32 * 1024 * 1024;
/** A write not completed after this long (a client that stopped reading) stops counting against the budget. */
const STALLED_WRITE_MS = 1_000;

/**
 * Paces response writes over all streams: at most `budget` bytes written and not yet taken by their clients
 * (a write completes when HTTP/2 flow control let it out), the rest queued in order. Without it a push to 500
 * proxies hands grpc-js 500 responses at once, and grpc-js frames each into a fresh copy (`serializeMessage`)
 * that lives until the client has read it: 564 MiB of copies on fresh pages for one VirtualService edit at
 * 1,000 services (docs/performance.md). Paced, the copies are few and their memory is reused. A response larger
 * than the budget goes out alone; a write stalled longer than {@link STALLED_WRITE_MS} (a client that stopped
 * reading) stops holding the budget, so one slow client cannot stall every other. Per stream, responses keep
 * their order (one FIFO queue).
 */
class WritePacer {
  readonly #budget: number;
  #inFlight = 0;
  readonly #queue: { call: GenericCall; bytes: Buffer; closed: () => boolean }[] = [];
  #head = 0;

  constructor(budget: number) {
    this.#budget = budget;
  }

  write(call: GenericCall, bytes: Buffer, closed: () => boolean): void {
    if (this.#head === this.#queue.length && this.#fits(bytes.length)) this.#start(call, bytes);
    else this.#queue.push({ call, bytes, closed });
  }

  #fits(n: number): boolean {
    return this.#inFlight === 0 || this.#inFlight + n <= this.#budget;
  }

  #start(call: GenericCall, bytes: Buffer): void {
    const n = bytes.length;
    this.#inFlight += n;
    let held = true;
    const release = (): void => {
      if (!held) return;
      held = false;
      clearTimeout(timer);
      this.#inFlight -= n;
      this.#drain();
    };
    // grpc-js drops a write to a cancelled call without calling back: the timer gives the budget back then too.
    const timer = setTimeout(release, STALLED_WRITE_MS);
    timer.unref();
    call.write(bytes, release);
  }

  #drain(): void {
    const q = this.#queue;
    while (this.#head < q.length) {
      const next = q[this.#head]!;
      if (next.closed()) {
        q[this.#head++] = undefined!;
        continue;
      }
      if (!this.#fits(next.bytes.length)) break;
      q[this.#head++] = undefined!;
      this.#start(next.call, next.bytes);
    }
    if (this.#head === q.length) {
      q.length = 0;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > q.length) {
      q.splice(0, this.#head);
      this.#head = 0;
    }
  }
}

interface StreamContext {
  id: number;
  cache: SnapshotCache;
  log: Logger;
  now: () => number;
  shared: SharedResponses;
  pacer: WritePacer;
  count(typeUrl: string, what: keyof XdsCounters): void;
  identified(stream: AdsStream, nodeId: string, info: NodeInfo): void;
  closed(stream: AdsStream): void;
}

interface GenericCall {
  on(event: 'data', listener: (req: unknown) => void): unknown;
  on(event: 'end' | 'cancelled' | 'close', listener: () => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  write(msg: unknown, cb?: (err?: Error | null) => void): boolean;
  end(): void;
  emit(event: 'error', err: Partial<grpc.StatusObject>): boolean;
  getPeer(): string;
}

/** What both stream kinds share: node identification, the snapshot, ordered flushes, counters and logs. */
abstract class AdsStream {
  readonly ctx: StreamContext;
  readonly call: GenericCall;
  nodeId: string | undefined;
  log: Logger;
  snapshot: Snapshot | undefined;
  #nonce = 0;
  #closed = false;
  readonly counters = new Map<string, XdsCounters>();

  constructor(ctx: StreamContext, call: GenericCall) {
    this.ctx = ctx;
    this.call = call;
    this.log = ctx.log.child({ streamId: ctx.id });
  }

  abstract readonly mode: 'sotw' | 'delta';
  /** Applies one request to the per-type state (subscriptions, ACK/NACK). */
  protected abstract apply(req: unknown): void;
  /** Sends what type `typeUrl` needs, if anything. */
  protected abstract push(typeUrl: string, snapshot: Snapshot): void;
  /** Type URLs this stream has subscription state for. */
  protected abstract typeUrls(): Iterable<string>;
  abstract typeStatus(typeUrl: string): TypeStatus;

  start(): void {
    this.log.debug({ peer: this.call.getPeer(), mode: this.mode }, 'ADS stream opened');
    this.call.on('data', (req) => this.#onRequest(req as { node: Node__Output | null }));
    this.call.on('end', () => this.end());
    this.call.on('cancelled', () => this.#close('cancelled'));
    this.call.on('error', (err) => {
      this.log.debug({ err }, 'ADS stream error');
      this.#close('error');
    });
    this.call.on('close', () => this.#close('closed'));
  }

  /** Ends the stream with OK (the client reconnects). */
  end(): void {
    if (this.#closed) return;
    this.call.end();
    this.#close('ended');
  }

  setSnapshot(snapshot: Snapshot): void {
    if (this.#closed) return;
    this.snapshot = snapshot;
    this.flush();
  }

  /** Pushes every type in make-before-break order: CDS, EDS, LDS, RDS, SDS, then types Sloop doesn't serve. */
  flush(): void {
    const snapshot = this.snapshot;
    if (snapshot === undefined || this.#closed) return;
    const types = new Set(this.typeUrls());
    for (const t of PUSH_ORDER) if (types.has(t)) this.push(t, snapshot);
  }

  /** Writes one encoded response, paced with every other stream's (see {@link WritePacer}). */
  send(response: Buffer): void {
    this.ctx.pacer.write(this.call, response, () => this.#closed);
  }

  nextNonce(): string {
    return `${this.ctx.id}-${++this.#nonce}`;
  }

  count(typeUrl: string, what: keyof XdsCounters): void {
    let c = this.counters.get(typeUrl);
    if (c === undefined) this.counters.set(typeUrl, (c = { pushes: 0, acks: 0, nacks: 0 }));
    c[what]++;
    this.ctx.count(typeUrl, what);
  }

  countersOf(typeUrl: string): XdsCounters {
    return { ...(this.counters.get(typeUrl) ?? { pushes: 0, acks: 0, nacks: 0 }) };
  }

  status(): StreamStatus {
    return {
      streamId: this.ctx.id,
      mode: this.mode,
      nodeId: this.nodeId,
      peer: this.call.getPeer(),
      types: [...this.typeUrls()].sort().map((t) => this.typeStatus(t)),
    };
  }


  #onRequest(req: { node: Node__Output | null }): void {
    if (this.#closed) return;
    if (this.nodeId === undefined) {
      const node = req.node;
      if (!node?.id) {
        // xDS protocol doc: the first request on a stream must identify the node.
        this.log.warn({ peer: this.call.getPeer() }, 'ADS stream without node id refused');
        this.call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: 'the first DiscoveryRequest on a stream must carry node.id' });
        this.#close('refused');
        return;
      }
      this.nodeId = node.id;
      this.log = this.log.child({ nodeId: node.id });
      const info = nodeInfoOf(node);
      this.ctx.identified(this, node.id, info);
      this.log.debug({ cluster: info.cluster, userAgent: info.userAgentName }, 'ADS node connected');
      this.apply(req);
      this.snapshot = this.ctx.cache.getSnapshot(node.id);
      if (this.snapshot !== undefined) this.flush();
      else {
        this.ctx.cache.snapshotFor(info).then(
          (snapshot) => {
            if (snapshot !== undefined && this.snapshot === undefined) this.setSnapshot(snapshot);
          },
          (err: unknown) => this.log.error({ err }, 'computing the snapshot of a new node failed'),
        );
      }
      return;
    }
    this.apply(req);
    this.flush();
  }

  #close(why: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.log.debug({ why }, 'ADS stream closed');
    this.ctx.closed(this);
  }
}

interface SotwTypeState {
  typeUrl: string;
  wildcard: boolean;
  /** Still in legacy wildcard mode (first request had no names): an empty list keeps meaning wildcard. */
  legacyWildcard: boolean;
  names: Set<string>;
  /** The subscription changed (or this is the first request): respond even if the version is unchanged. */
  dirty: boolean;
  sentVersion: string | undefined;
  sentNonce: string | undefined;
  /**
   * The resources of the last response, sorted by name, and of the last ACKed one. Kept as the snapshot's own
   * (shared) objects, not as per-stream maps: thousands per type on each of hundreds of streams.
   */
  sent: readonly SnapshotResource[];
  /**
   * What the client is known to hold, for EDS/RDS/SDS responses that carry only changes: what was sent, or after a
   * NACK what was last ACKed (the rejected resources go again with the next change).
   */
  held: readonly SnapshotResource[];
  ackedVersion: string | undefined;
  acked: readonly SnapshotResource[];
  lastNack: NackInfo | undefined;
}

/** State of the world: every response for a type carries the full set of requested resources. */
class SotwStream extends AdsStream {
  readonly mode = 'sotw' as const;
  readonly #types = new Map<string, SotwTypeState>();

  protected typeUrls(): Iterable<string> {
    return this.#types.keys();
  }

  protected apply(raw: unknown): void {
    const req = raw as DiscoveryRequest__Output;
    const typeUrl = req.type_url;
    if (!typeUrl) {
      this.log.warn({}, 'DiscoveryRequest without type_url ignored (ADS requires one)');
      return;
    }
    let st = this.#types.get(typeUrl);
    // xDS protocol doc: a request whose nonce is not the latest we sent for this type is stale; the client will
    // answer the newer response (with its full subscription) anyway, so the stale one is ignored.
    if (st?.sentNonce !== undefined && req.response_nonce !== '' && req.response_nonce !== st.sentNonce) {
      this.log.debug({ type: shortTypeName(typeUrl), nonce: req.response_nonce, latest: st.sentNonce }, 'stale nonce ignored');
      return;
    }
    const names = req.resource_names;
    if (st === undefined) {
      const legacy = names.length === 0 && isFullStateType(typeUrl);
      st = {
        typeUrl,
        wildcard: legacy || names.includes('*'),
        legacyWildcard: legacy,
        names: new Set(names.filter((n) => n !== '*')),
        dirty: true,
        sentVersion: undefined,
        sentNonce: undefined,
        sent: [],
        held: [],
        ackedVersion: undefined,
        acked: [],
        lastNack: undefined,
      };
      this.#types.set(typeUrl, st);
      return;
    }
    if (req.response_nonce !== '' && req.response_nonce === st.sentNonce) this.#ackOrNack(st, req);
    // Legacy wildcard ends with the first request naming resources; after that an empty list unsubscribes all.
    const wildcard = st.legacyWildcard && names.length === 0 ? true : names.includes('*');
    if (names.length > 0) st.legacyWildcard = false;
    const next = new Set(names.filter((n) => n !== '*'));
    if (wildcard !== st.wildcard || !sameSet(next, st.names)) {
      st.wildcard = wildcard;
      st.names = next;
      st.dirty = true;
    }
  }

  #ackOrNack(st: SotwTypeState, req: DiscoveryRequest__Output): void {
    const fields = { type: shortTypeName(st.typeUrl), version: st.sentVersion, nonce: st.sentNonce };
    if (req.error_detail) {
      const errorDetail = { code: req.error_detail.code, message: req.error_detail.message };
      st.lastNack = { rejectedVersion: st.sentVersion ?? '', nonce: st.sentNonce ?? '', errorDetail, at: this.ctx.now() };
      st.held = st.acked;
      this.count(st.typeUrl, 'nacks');
      // The client keeps (and reports in version_info) its last good version; nothing is resent until the
      // snapshot or the subscription changes.
      this.log.warn({ ...fields, keptVersion: req.version_info, errorDetail }, 'xDS NACK');
    } else {
      st.ackedVersion = st.sentVersion;
      st.acked = st.sent;
      this.count(st.typeUrl, 'acks');
      this.log.debug(fields, 'xDS ACK');
    }
  }

  protected push(typeUrl: string, snapshot: Snapshot): void {
    const st = this.#types.get(typeUrl)!;
    const all = snapshot.ofType(typeUrl);
    // A wildcard subscription already sent this type version has every resource of it (the version hashes every
    // name and resource version): nothing to compare per resource.
    if (st.wildcard && !st.dirty && st.sentVersion === all.version) return;
    const selected: SnapshotResource[] = [];
    if (st.wildcard) selected.push(...all.resources.values());
    else for (const name of [...st.names].sort()) {
      const r = all.resources.get(name);
      if (r !== undefined) selected.push(r);
    }
    const fullState = isFullStateType(typeUrl);
    // EDS/RDS: absence says nothing, so there is nothing to send until a requested resource exists.
    if (!fullState && selected.length === 0) {
      st.dirty = false;
      return;
    }
    const sent = st.sent;
    const unchanged = st.sentVersion !== undefined && selected.length === sent.length && selected.every((r, i) => sent[i]!.name === r.name && sent[i]!.version === r.version);
    if (!st.dirty && unchanged) return;
    // EDS, RDS and SDS responses need not repeat what the client has: absence removes nothing for those types
    // (xDS protocol doc, "Grouping Resources into Responses"), so after the first response of a subscription only
    // the resources whose version changed are sent (Istio's incremental EDS). LDS and CDS carry everything.
    const carried = fullState || st.dirty || st.sentVersion === undefined ? selected : changedSince(st.held, selected);
    // A wildcard stream's response: share its encoding with the other streams given the same TypeSnapshot and the
    // same change, unless this stream already sent that very response (nonces stay unique).
    const key = carried === selected ? '*' : carried.length <= SHARED_DELTA_MAX_NAMES ? carried.map((r) => r.name).join('\n') : undefined;
    const encode = (nonce: string): Buffer => encodeDiscoveryResponse({ version_info: all.version, resources: carried.map((r) => r.any), type_url: typeUrl, nonce });
    const shared = st.wildcard && key !== undefined ? this.ctx.shared.get(all, key, encode) : undefined;
    const nonce = shared !== undefined && shared.nonce !== st.sentNonce ? shared.nonce : this.nextNonce();
    const response = nonce === shared?.nonce ? shared.bytes : encode(nonce);
    st.sentVersion = all.version;
    st.sentNonce = nonce;
    st.sent = selected;
    st.held = selected;
    st.dirty = false;
    this.count(typeUrl, 'pushes');
    this.log.debug({ type: shortTypeName(typeUrl), version: all.version, nonce, resources: carried.length, held: selected.length }, 'xDS push');
    this.send(response);
  }

  typeStatus(typeUrl: string): TypeStatus {
    const st = this.#types.get(typeUrl)!;
    return {
      typeUrl,
      wildcard: st.wildcard,
      names: [...st.names].sort(),
      sentVersion: st.sentVersion,
      sentNonce: st.sentNonce,
      sent: Object.fromEntries(st.sent.map((r) => [r.name, r.version])),
      ackedVersion: st.ackedVersion,
      acked: Object.fromEntries(st.acked.map((r) => [r.name, r.version])),
      lastNack: st.lastNack,
      counters: this.countersOf(typeUrl),
    };
  }
}

interface DeltaTypeState {
  typeUrl: string;
  wildcard: boolean;
  /** Subscribed names. Replaced, never mutated: a response in flight keeps the set it was sent under. */
  names: ReadonlySet<string>;
  /**
   * What the client holds, name → version, while that is not simply {@link held}: from initial_resource_versions
   * on the first request, and after a subscription change until the next push. Undefined otherwise.
   */
  client: Map<string, string> | undefined;
  /**
   * When `client` is undefined: the type whose resources, within the subscription, the client holds (what the
   * last push brought it to). Kept as the snapshot's own shared object instead of a per-stream map of thousands of
   * names, and the next push sends the difference to it, computed once for every stream making the same step.
   */
  held: TypeSnapshot | undefined;
  /** Newly subscribed names: if they don't exist, the next response says so in removed_resources. */
  unanswered: Set<string>;
  /** Nonce → the state that response brings the client to, until ACKed or NACKed. */
  inFlight: Map<string, HeldState>;
  sentVersion: string | undefined;
  sentNonce: string | undefined;
  /** The state the last ACKed response brought the client to. */
  acked: HeldState | undefined;
  lastNack: NackInfo | undefined;
}

/** A type within a subscription: what a client holds after a response. */
interface HeldState {
  type: TypeSnapshot;
  wildcard: boolean;
  names: ReadonlySet<string>;
  /** Resources the response carried and names it removed (for logs). */
  updated: number;
  removed: number;
}

/** name → version of `held` within its subscription. */
function heldVersions(h: { type: TypeSnapshot; wildcard: boolean; names: ReadonlySet<string> } | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (h === undefined) return out;
  if (h.wildcard) for (const r of h.type.resources.values()) out.set(r.name, r.version);
  else for (const name of h.names) {
    const r = h.type.resources.get(name);
    if (r !== undefined) out.set(name, r.version);
  }
  return out;
}

/** Incremental xDS: responses carry only what changed for the client, and removals by name. */
class DeltaStream extends AdsStream {
  readonly mode = 'delta' as const;
  readonly #types = new Map<string, DeltaTypeState>();
  /** The node announced {@link VHDS_CLIENT_FEATURE}: RDS goes out as VHDS (see vhds.ts). Set by its first request. */
  #vhds: boolean | undefined;

  /** A type as this stream serves it: the snapshot's, or for a VHDS client the split route tables and hosts. */
  #typeOf(typeUrl: string, snapshot: Snapshot): TypeSnapshot {
    if (this.#vhds === true && (typeUrl === TYPE_URLS.route || typeUrl === TYPE_URLS.virtualHost)) {
      const split = vhdsTypes(snapshot.ofType(TYPE_URLS.route));
      return typeUrl === TYPE_URLS.route ? split.routes : split.virtualHosts;
    }
    return snapshot.ofType(typeUrl);
  }

  protected typeUrls(): Iterable<string> {
    return this.#types.keys();
  }

  protected apply(raw: unknown): void {
    const req = raw as DeltaDiscoveryRequest__Output;
    if (this.#vhds === undefined && req.node) this.#vhds = (req.node.client_features ?? []).includes(VHDS_CLIENT_FEATURE);
    const typeUrl = req.type_url;
    if (!typeUrl) {
      this.log.warn({}, 'DeltaDiscoveryRequest without type_url ignored (ADS requires one)');
      return;
    }
    let st = this.#types.get(typeUrl);
    const subscribe = req.resource_names_subscribe;
    const unsubscribe = req.resource_names_unsubscribe;
    if (st === undefined) {
      st = {
        typeUrl,
        // xDS protocol doc: for LDS/CDS an empty first subscribe list means wildcard (legacy); `*` always does.
        wildcard: subscribe.length === 0 && isFullStateType(typeUrl),
        names: new Set(),
        // initial_resource_versions is honoured on the first request of a type on a stream only.
        client: new Map(Object.entries(req.initial_resource_versions ?? {})),
        held: undefined,
        unanswered: new Set(),
        inFlight: new Map(),
        sentVersion: undefined,
        sentNonce: undefined,
        acked: undefined,
        lastNack: undefined,
      };
      this.#types.set(typeUrl, st);
    } else if (req.response_nonce !== '') {
      this.#ackOrNack(st, req);
    }
    if (subscribe.length === 0 && unsubscribe.length === 0) return;
    // What the client holds is about to be read against a new subscription: spell it out first.
    st.client ??= heldVersions({ type: st.held ?? EMPTY_TYPE, wildcard: st.wildcard, names: st.names });
    st.held = undefined;
    const names = new Set(st.names);
    for (const name of subscribe) {
      if (name === '*') st.wildcard = true;
      else if (!names.has(name)) {
        names.add(name);
        st.unanswered.add(name);
      }
    }
    for (const name of unsubscribe) {
      if (name === '*') st.wildcard = false;
      else {
        names.delete(name);
        st.unanswered.delete(name);
      }
    }
    st.names = names;
    // The client forgets what it unsubscribed from; anything outside the subscription is not held any more.
    if (!st.wildcard) for (const name of st.client.keys()) if (!names.has(name)) st.client.delete(name);
  }

  #ackOrNack(st: DeltaTypeState, req: DeltaDiscoveryRequest__Output): void {
    const state = st.inFlight.get(req.response_nonce);
    if (state === undefined) {
      this.log.debug({ type: shortTypeName(st.typeUrl), nonce: req.response_nonce }, 'unknown or stale nonce');
      return;
    }
    // Responses are answered in order: older in-flight responses are superseded by this one.
    for (const nonce of [...st.inFlight.keys()]) {
      st.inFlight.delete(nonce);
      if (nonce === req.response_nonce) break;
    }
    const fields = { type: shortTypeName(st.typeUrl), nonce: req.response_nonce, version: state.type.version, updated: state.updated, removed: state.removed };
    if (req.error_detail) {
      const errorDetail = { code: req.error_detail.code, message: req.error_detail.message };
      st.lastNack = { rejectedVersion: req.response_nonce, nonce: req.response_nonce, errorDetail, at: this.ctx.now() };
      this.count(st.typeUrl, 'nacks');
      this.log.warn({ ...fields, errorDetail }, 'xDS NACK');
    } else {
      st.acked = state;
      this.count(st.typeUrl, 'acks');
      this.log.debug(fields, 'xDS ACK');
    }
  }

  protected push(typeUrl: string, snapshot: Snapshot): void {
    const st = this.#types.get(typeUrl)!;
    const type = this.#typeOf(typeUrl, snapshot);
    const version = type.version;
    // Settled: the client already holds this version of the type within its subscription.
    if (st.client === undefined && st.held?.version === version && st.unanswered.size === 0) return;
    const all = type.resources;
    let updated: SnapshotResource[];
    const removed = new Set<string>();
    if (st.client === undefined && st.held !== undefined && st.unanswered.size === 0) {
      // The client holds the last type pushed (within its subscription) and nothing else: send the difference,
      // the same for every stream of a proxy class, instead of comparing thousands of names per stream.
      const diff = diffTypes(st.held, type);
      updated = st.wildcard ? [...diff.updated] : diff.updated.filter((r) => st.names.has(r.name));
      const wasHeld = st.wildcard ? (): boolean => true : (name: string): boolean => st.names.has(name);
      for (const name of diff.removed) if (wasHeld(name)) removed.add(name);
    } else {
      const client = st.client ?? heldVersions({ type: st.held ?? EMPTY_TYPE, wildcard: st.wildcard, names: st.names });
      const scope = st.wildcard ? new Set([...all.keys(), ...st.names]) : st.names;
      updated = [];
      for (const name of scope) {
        const r = all.get(name);
        if (r !== undefined && client.get(name) !== r.version) updated.push(r);
      }
      for (const name of client.keys()) if (!all.has(name)) removed.add(name);
      // xDS protocol doc ("Knowing When a Requested Resource Does Not Exist"): in the incremental variants the
      // server answers a subscription to a resource that does not exist with its name in removed_resources.
      for (const name of st.unanswered) if (!all.has(name)) removed.add(name);
      st.unanswered.clear();
      updated.sort(byName);
    }
    // From here the client holds `type` within its subscription (or will, once it applies this response).
    st.client = undefined;
    st.held = type;
    if (updated.length === 0 && removed.size === 0) return;
    const removedNames = [...removed].sort();
    const encode = (nonce: string): Buffer => encodeDeltaDiscoveryResponse({
      system_version_info: version,
      type_url: typeUrl,
      nonce,
      resources: updated.map((r) => ({ name: r.name, version: r.version, resource: r.any })),
      removed_resources: removedNames,
    });
    // Streams of one proxy class usually get the very same changes: share one encoding (see SharedResponses),
    // unless this stream already sent it (nonces stay unique per stream).
    const key = updated.length + removedNames.length <= SHARED_DELTA_MAX_NAMES
      ? `${updated.map((r) => r.name).join('\n')}\n-\n${removedNames.join('\n')}`
      : undefined;
    const shared = key !== undefined ? this.ctx.shared.get(type, key, encode) : undefined;
    const nonce = shared !== undefined && shared.nonce !== st.sentNonce ? shared.nonce : this.nextNonce();
    st.inFlight.set(nonce, { type, wildcard: st.wildcard, names: st.names, updated: updated.length, removed: removedNames.length });
    if (st.inFlight.size > MAX_IN_FLIGHT) st.inFlight.delete(st.inFlight.keys().next().value!);
    st.sentVersion = version;
    st.sentNonce = nonce;
    const response = nonce === shared?.nonce ? shared.bytes : encode(nonce);
    this.count(typeUrl, 'pushes');
    this.log.debug({ type: shortTypeName(typeUrl), version, nonce, resources: updated.length, removed: removed.size }, 'xDS push');
    this.send(response);
  }

  typeStatus(typeUrl: string): TypeStatus {
    const st = this.#types.get(typeUrl)!;
    const sent = st.client ?? heldVersions(st.held === undefined ? undefined : { type: st.held, wildcard: st.wildcard, names: st.names });
    return {
      typeUrl,
      wildcard: st.wildcard,
      names: [...st.names].sort(),
      sentVersion: st.sentVersion,
      sentNonce: st.sentNonce,
      sent: Object.fromEntries(sent),
      ackedVersion: undefined,
      acked: Object.fromEntries(heldVersions(st.acked)),
      lastNack: st.lastNack,
      counters: this.countersOf(typeUrl),
    };
  }
}

/** The resources of `next` whose name is not in `prev` or whose version differs; both sorted by name. */
function changedSince(prev: readonly SnapshotResource[], next: readonly SnapshotResource[]): SnapshotResource[] {
  const out: SnapshotResource[] = [];
  let i = 0;
  for (const r of next) {
    while (i < prev.length && prev[i]!.name < r.name) i++;
    const p = prev[i];
    if (p === undefined || p.name !== r.name || p.version !== r.version) out.push(r);
  }
  return out;
}

function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}

/** `node` of a DiscoveryRequest as {@link NodeInfo}; `metadata` (google.protobuf.Struct) becomes plain JSON. */
export function nodeInfoOf(node: Node__Output): NodeInfo {
  return {
    id: node.id,
    cluster: node.cluster ?? '',
    metadata: node.metadata ? structToJson(node.metadata as unknown as StructLike) : {},
    userAgentName: node.user_agent_name ?? '',
  };
}

interface StructLike {
  fields?: Record<string, ValueLike>;
}
type ValueLike = Record<string, unknown> & { kind?: string };

function structToJson(s: StructLike): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(s.fields ?? {})) out[k] = valueToJson(v);
  return out;
}

function valueToJson(v: ValueLike): unknown {
  // protobufjs' built-in well-known types use camelCase field names, whatever keepCase says.
  const get = (camel: string, snake: string): unknown => (camel in v ? v[camel] : v[snake]);
  const kind = v.kind;
  if (kind === 'stringValue' || kind === 'string_value') return get('stringValue', 'string_value');
  if (kind === 'numberValue' || kind === 'number_value') return Number(get('numberValue', 'number_value'));
  if (kind === 'boolValue' || kind === 'bool_value') return get('boolValue', 'bool_value');
  if (kind === 'structValue' || kind === 'struct_value') return structToJson(get('structValue', 'struct_value') as StructLike);
  if (kind === 'listValue' || kind === 'list_value') {
    const list = get('listValue', 'list_value') as { values?: ValueLike[] } | null;
    return (list?.values ?? []).map(valueToJson);
  }
  return null;
}
