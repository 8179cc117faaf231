/**
 * A small in-process ADS server for tests of the proxy's xDS client (STYLE §7: "ADS tests an in-process fake
 * server"). It is deliberately naive and fully scripted: it holds one set of resources per type, serves what a
 * stream subscribes to (SotW: version_info + nonce; delta: per-resource versions, removals, honouring
 * initial_resource_versions), pushes to every open stream when a test calls `set`, and records every request so
 * tests can assert on ACKs and NACKs. It is not the control plane's ADS server (src/xds/ads-server.ts).
 */
import * as grpc from '@grpc/grpc-js';
import { packAny, type PackedAny } from '../../src/xds/any.ts';
import { decodeProtoJson } from '../../src/xds/proto-json.ts';
import { lookupMessage, TO_OBJECT_OPTIONS } from '../../src/xds/protos.ts';
import { formatDiagnostic } from '../../src/shared/errors.ts';
import { Recorder } from './wait.ts';

export const LDS = 'type.googleapis.com/envoy.config.listener.v3.Listener';
export const CDS = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
export const RDS = 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration';
export const EDS = 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment';

/** A request as the fake saw it (snake_case, decoded). */
export interface SeenRequest {
  stream: number;
  delta: boolean;
  typeUrl: string;
  versionInfo: string;
  nonce: string;
  names: string[];
  unsubscribe: string[];
  initialVersions: Record<string, string>;
  errorDetail: { code: number; message: string } | null;
  node: { id?: string; cluster?: string } | null;
}

interface TypeSet {
  version: string;
  /** name → [resource version, packed] */
  resources: Map<string, { version: string; any: PackedAny }>;
}

interface StreamState {
  id: number;
  delta: boolean;
  call: grpc.ServerDuplexStream<Record<string, unknown>, Record<string, unknown>>;
  /** type → subscribed names (undefined = wildcard) */
  subs: Map<string, Set<string> | undefined>;
  /** delta: type → name → version the client holds */
  held: Map<string, Map<string, string>>;
}

/** Packs a resource given in Envoy's YAML/JSON form (`@type` Anys, durations as strings) as an Any. */
export function packJson(typeUrl: string, json: unknown): PackedAny {
  const type = lookupMessage(typeUrl)!;
  const r = decodeProtoJson<object>(type, json);
  if (r.value === undefined) throw new Error(`bad ${typeUrl} in test: ${r.diagnostics.map(formatDiagnostic).join('; ')}`);
  return packAny(typeUrl, r.value);
}

export class FakeAds {
  readonly requests = new Recorder<SeenRequest>('ADS requests');
  private server: grpc.Server | undefined;
  private readonly sets = new Map<string, TypeSet>();
  private readonly streams = new Set<StreamState>();
  private nextStream = 1;
  private nonce = 0;
  /** nonce → what the response with it carried. */
  private readonly sent = new Map<string, { typeUrl: string; version: string }>();
  port = 0;
  /** When false, requests are recorded but nothing is sent (a control plane that accepts and says nothing). */
  responding = true;

  /** Starts listening on 127.0.0.1:`port` (0 = any free port). */
  async start(port = 0): Promise<number> {
    const reqSotw = lookupMessage('envoy.service.discovery.v3.DiscoveryRequest')!;
    const resSotw = lookupMessage('envoy.service.discovery.v3.DiscoveryResponse')!;
    const reqDelta = lookupMessage('envoy.service.discovery.v3.DeltaDiscoveryRequest')!;
    const resDelta = lookupMessage('envoy.service.discovery.v3.DeltaDiscoveryResponse')!;
    const def = (path: string, req: typeof reqSotw, res: typeof resSotw): grpc.MethodDefinition<Record<string, unknown>, Record<string, unknown>> => ({
      path,
      requestStream: true,
      responseStream: true,
      requestSerialize: (o) => Buffer.from(req.encode(req.fromObject(o)).finish()),
      requestDeserialize: (b) => req.toObject(req.decode(b), TO_OBJECT_OPTIONS),
      responseSerialize: (o) => Buffer.from(res.encode(res.fromObject(o)).finish()),
      responseDeserialize: (b) => res.toObject(res.decode(b), TO_OBJECT_OPTIONS),
    });
    const server = new grpc.Server();
    server.addService(
      {
        StreamAggregatedResources: def('/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources', reqSotw, resSotw),
        DeltaAggregatedResources: def('/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources', reqDelta, resDelta),
      },
      {
        StreamAggregatedResources: (call: grpc.ServerDuplexStream<Record<string, unknown>, Record<string, unknown>>) => this.onStream(call, false),
        DeltaAggregatedResources: (call: grpc.ServerDuplexStream<Record<string, unknown>, Record<string, unknown>>) => this.onStream(call, true),
      },
    );
    this.port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.server = server;
    return this.port;
  }

  /** Kills the server and every stream at once (a control plane that died). */
  stop(): void {
    this.server?.forceShutdown();
    this.server = undefined;
    this.streams.clear();
  }

  get openStreams(): number {
    return this.streams.size;
  }

  /**
   * Replaces the resources of `typeUrl` (given in Envoy JSON form, or already packed) under `version`, and
   * pushes the change to every stream subscribed to it.
   */
  set(typeUrl: string, version: string, resources: ReadonlyArray<{ name: string; json: unknown } | { name: string; any: PackedAny }>): void {
    const prev = this.sets.get(typeUrl);
    const map = new Map<string, { version: string; any: PackedAny }>();
    for (const r of resources) {
      // `any`: packed as is, unchecked (to send what a validating encoder would refuse).
      const any = 'any' in r ? r.any : packJson(typeUrl, r.json);
      const old = prev?.resources.get(r.name);
      map.set(r.name, { version: old !== undefined && old.any.value.equals(any.value) ? old.version : version, any });
    }
    this.sets.set(typeUrl, { version, resources: map });
    for (const s of this.streams) if (s.subs.has(typeUrl)) this.send(s, typeUrl);
  }

  private onStream(call: grpc.ServerDuplexStream<Record<string, unknown>, Record<string, unknown>>, delta: boolean): void {
    const s: StreamState = { id: this.nextStream++, delta, call, subs: new Map(), held: new Map() };
    this.streams.add(s);
    call.on('data', (r: Record<string, unknown>) => this.onRequest(s, r));
    call.on('error', () => this.streams.delete(s));
    call.on('end', () => {
      this.streams.delete(s);
      call.end();
    });
  }

  private onRequest(s: StreamState, r: Record<string, unknown>): void {
    const typeUrl = r.type_url as string;
    const seen: SeenRequest = {
      stream: s.id,
      delta: s.delta,
      typeUrl,
      versionInfo: (r.version_info as string) ?? '',
      nonce: r.response_nonce as string,
      names: ((s.delta ? r.resource_names_subscribe : r.resource_names) as string[]) ?? [],
      unsubscribe: (r.resource_names_unsubscribe as string[]) ?? [],
      initialVersions: (r.initial_resource_versions as Record<string, string>) ?? {},
      errorDetail: (r.error_detail as SeenRequest['errorDetail']) ?? null,
      node: (r.node as SeenRequest['node']) ?? null,
    };
    let changed = false;
    if (!s.delta) {
      const names = seen.names.length === 0 && (typeUrl === LDS || typeUrl === CDS) ? undefined : new Set(seen.names);
      const before = s.subs.get(typeUrl);
      changed = !s.subs.has(typeUrl) || !sameNames(before, names);
      s.subs.set(typeUrl, names);
    } else {
      const isFirst = !s.subs.has(typeUrl);
      let subs = s.subs.get(typeUrl);
      if (isFirst) {
        subs = seen.names.length === 0 || seen.names.includes('*') ? undefined : new Set(seen.names);
        s.held.set(typeUrl, new Map(Object.entries(seen.initialVersions)));
        changed = true;
      } else if (subs !== undefined) {
        for (const n of seen.names) if (!subs.has(n)) {
          subs.add(n);
          changed = true;
        }
        for (const n of seen.unsubscribe) {
          subs.delete(n);
          s.held.get(typeUrl)?.delete(n);
        }
      }
      s.subs.set(typeUrl, subs);
    }
    this.requests.push(seen);
    if (changed) this.send(s, typeUrl);
  }

  private send(s: StreamState, typeUrl: string): void {
    if (!this.responding) return;
    const set = this.sets.get(typeUrl);
    if (set === undefined) return;
    const subs = s.subs.get(typeUrl);
    const wanted = [...set.resources].filter(([n]) => subs === undefined || subs.has(n));
    const nonce = String(++this.nonce);
    this.sent.set(nonce, { typeUrl, version: set.version });
    if (!s.delta) {
      s.call.write({ version_info: set.version, type_url: typeUrl, nonce, resources: wanted.map(([, r]) => r.any) });
      return;
    }
    const held = s.held.get(typeUrl) ?? new Map<string, string>();
    s.held.set(typeUrl, held);
    const resources = wanted.filter(([n, r]) => held.get(n) !== r.version).map(([n, r]) => ({ name: n, version: r.version, resource: r.any }));
    const removed = [...held.keys()].filter((n) => !set.resources.has(n) && (subs === undefined || subs.has(n)));
    if (resources.length === 0 && removed.length === 0) return;
    for (const r of resources) held.set(r.name, r.version);
    for (const n of removed) held.delete(n);
    s.call.write({ system_version_info: set.version, type_url: typeUrl, nonce, resources, removed_resources: removed });
  }

  /** Resolves with the ACK or NACK (errorDetail set) that answers a response carrying `version` of `typeUrl`. */
  async answerTo(typeUrl: string, version: string, timeoutMs?: number): Promise<SeenRequest> {
    return this.requests.waitFor((r) => {
      const sent = this.sent.get(r.nonce);
      return r.typeUrl === typeUrl && sent !== undefined && sent.typeUrl === typeUrl && sent.version === version;
    }, timeoutMs);
  }
}

function sameNames(a: Set<string> | undefined, b: Set<string> | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}
