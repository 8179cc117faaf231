/**
 * A raw ADS client for tests: one gRPC stream (SotW or delta) whose responses are recorded, so a test writes
 * each DiscoveryRequest by hand and awaits each response in order. It shares no code with the server.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Recorder } from '../../../test/helpers/wait.ts';
import type { DeltaDiscoveryRequest } from '../gen/envoy/service/discovery/v3/DeltaDiscoveryRequest.ts';
import type { DeltaDiscoveryResponse__Output } from '../gen/envoy/service/discovery/v3/DeltaDiscoveryResponse.ts';
import type { DiscoveryRequest } from '../gen/envoy/service/discovery/v3/DiscoveryRequest.ts';
import type { DiscoveryResponse__Output } from '../gen/envoy/service/discovery/v3/DiscoveryResponse.ts';
import { protoIncludeDirs } from '../protos.ts';

type AdsClient = grpc.Client & {
  StreamAggregatedResources(): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse__Output>;
  DeltaAggregatedResources(): grpc.ClientDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse__Output>;
};

let ctor: (new (address: string, creds: grpc.ChannelCredentials) => AdsClient) | undefined;

function clientCtor(): new (address: string, creds: grpc.ChannelCredentials) => AdsClient {
  if (ctor) return ctor;
  const def = protoLoader.loadSync('envoy/service/discovery/v3/ads.proto', {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: protoIncludeDirs(),
  });
  const service = def['envoy.service.discovery.v3.AggregatedDiscoveryService'] as grpc.ServiceDefinition;
  ctor = grpc.makeClientConstructor(service, 'AggregatedDiscoveryService') as unknown as typeof ctor;
  return ctor!;
}

/** One ADS stream under test. */
export class TestAdsStream<Req, Res> {
  readonly responses: Recorder<Res>;
  /** Resolves with the stream's final status. */
  readonly status: Promise<grpc.StatusObject>;
  readonly #call: grpc.ClientDuplexStream<Req, Res>;
  #read = 0;

  constructor(call: grpc.ClientDuplexStream<Req, Res>, what: string) {
    this.#call = call;
    this.responses = new Recorder<Res>(what);
    call.on('data', (r: Res) => this.responses.push(r));
    call.on('error', () => {});
    this.status = new Promise((resolve) => call.on('status', resolve));
  }

  send(req: Req): void {
    this.#call.write(req);
  }

  /** The next response not yet returned by `next`, waiting for it if needed. */
  async next(): Promise<Res> {
    await this.responses.waitForCount(this.#read + 1);
    return this.responses.items[this.#read++]!;
  }

  /** Responses received but not yet returned by `next`. */
  get unread(): number {
    return this.responses.items.length - this.#read;
  }

  close(): void {
    this.#call.cancel();
  }
}

/** A client of the ADS server at `127.0.0.1:port`. */
export function adsClient(port: number): {
  sotw(): TestAdsStream<DiscoveryRequest, DiscoveryResponse__Output>;
  delta(): TestAdsStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse__Output>;
  close(): void;
} {
  const Ctor = clientCtor();
  const client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return {
    sotw: () => new TestAdsStream(client.StreamAggregatedResources(), 'SotW responses'),
    delta: () => new TestAdsStream(client.DeltaAggregatedResources(), 'delta responses'),
    close: () => client.close(),
  };
}
