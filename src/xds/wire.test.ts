import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { packAny } from './any.ts';
import { lookupMessage } from './protos.ts';
import { encodeDeltaDiscoveryResponse, encodeDiscoveryResponse } from './wire.ts';

const CLUSTER_URL = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
const RESPONSE_URL = 'type.googleapis.com/envoy.service.discovery.v3.DiscoveryResponse';
const DELTA_URL = 'type.googleapis.com/envoy.service.discovery.v3.DeltaDiscoveryResponse';

function protobufjs(url: string, o: object): Buffer {
  const T = lookupMessage(url)!;
  return Buffer.from(T.encode(T.fromObject(o)).finish());
}

// Small, 1-byte and multi-byte varint lengths, a non-ASCII name and an empty value.
const resources = [
  packAny(CLUSTER_URL, { name: 'a' }),
  packAny(CLUSTER_URL, { name: 'é-' + 'x'.repeat(200) }),
  packAny(CLUSTER_URL, { name: 'big', alt_stat_name: 'y'.repeat(20_000) }),
  { type_url: CLUSTER_URL, value: Buffer.alloc(0) },
];

describe('wire encoders', () => {
  it('write a DiscoveryResponse byte for byte as protobufjs does', () => {
    for (const list of [[], resources]) {
      const r = { version_info: 'v1', resources: list, type_url: CLUSTER_URL, nonce: '3-7' };
      assert.deepStrictEqual(encodeDiscoveryResponse(r), protobufjs(RESPONSE_URL, r));
    }
    const empty = { version_info: '', resources: [], type_url: '', nonce: '' };
    assert.deepStrictEqual(encodeDiscoveryResponse(empty), protobufjs(RESPONSE_URL, empty));
  });

  it('write a DeltaDiscoveryResponse byte for byte as protobufjs does', () => {
    const r = {
      system_version_info: 'sv',
      resources: resources.map((any, i) => ({ name: `r${i}-ü`, version: `v${i}`, resource: any })),
      type_url: CLUSTER_URL,
      removed_resources: ['gone', 'ß'],
      nonce: '1-2',
    };
    assert.deepStrictEqual(encodeDeltaDiscoveryResponse(r), protobufjs(DELTA_URL, r));
    const bare = { ...r, resources: [], removed_resources: [] };
    assert.deepStrictEqual(encodeDeltaDiscoveryResponse(bare), protobufjs(DELTA_URL, bare));
  });
});
