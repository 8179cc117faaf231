/**
 * Hand-written wire encoders for the two ADS responses, whose resources are already encoded (each
 * SnapshotResource's `any` holds its bytes). protobufjs would rebuild every Any through `fromObject`, encode it
 * into forked writers and copy everything again in `finish()`, once per stream: at 500 proxies that was most of a
 * push's ADS time (docs/performance.md "Control plane at scale"). Here a response is one allocation and one copy
 * of each resource's bytes. The output is a valid DiscoveryResponse / DeltaDiscoveryResponse (fields in
 * field-number order, byte for byte what protobufjs writes); the ADS server's serializer passes such a Buffer through as is.
 */
import type { PackedAny } from './any.ts';

/** Length-delimited field tags: (field number << 3) | 2. */
const TAG = (field: number): number => (field << 3) | 2;

function varintSize(n: number): number {
  let size = 1;
  while (n > 127) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  while (n > 127) {
    buf[pos++] = (n & 127) | 128;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

/** Size of a length-delimited field (tag < 128) whose payload is `len` bytes. */
const fieldSize = (len: number): number => 1 + varintSize(len) + len;

function writeHeader(buf: Buffer, pos: number, field: number, len: number): number {
  buf[pos++] = TAG(field);
  return writeVarint(buf, pos, len);
}

function writeString(buf: Buffer, pos: number, field: number, s: string, len: number): number {
  pos = writeHeader(buf, pos, field, len);
  return pos + buf.write(s, pos, len, 'utf8');
}

/** Encoded size of a google.protobuf.Any (type_url = 1, value = 2). */
function anySize(any: PackedAny, typeUrlLen: number): number {
  return fieldSize(typeUrlLen) + fieldSize(any.value.length);
}

function writeAny(buf: Buffer, pos: number, any: PackedAny, typeUrlLen: number): number {
  pos = writeString(buf, pos, 1, any.type_url, typeUrlLen);
  pos = writeHeader(buf, pos, 2, any.value.length);
  buf.set(any.value, pos);
  return pos + any.value.length;
}

/** envoy.service.discovery.v3.DiscoveryResponse {version_info, resources, type_url, nonce}. */
export function encodeDiscoveryResponse(r: { version_info: string; resources: readonly PackedAny[]; type_url: string; nonce: string }): Buffer {
  const versionLen = Buffer.byteLength(r.version_info);
  const typeLen = Buffer.byteLength(r.type_url);
  const nonceLen = Buffer.byteLength(r.nonce);
  const urlLens = r.resources.map((a) => Buffer.byteLength(a.type_url));
  const anyLens = r.resources.map((a, i) => anySize(a, urlLens[i]!));
  let size = fieldSize(versionLen) + fieldSize(typeLen) + fieldSize(nonceLen);
  for (const len of anyLens) size += fieldSize(len);
  const buf = Buffer.allocUnsafe(size);
  let pos = writeString(buf, 0, 1, r.version_info, versionLen);
  r.resources.forEach((a, i) => {
    pos = writeHeader(buf, pos, 2, anyLens[i]!);
    pos = writeAny(buf, pos, a, urlLens[i]!);
  });
  pos = writeString(buf, pos, 4, r.type_url, typeLen);
  pos = writeString(buf, pos, 5, r.nonce, nonceLen);
  if (pos !== size) throw new Error(`DiscoveryResponse encoding: wrote ${pos} of ${size} bytes`);
  return buf;
}

/**
 * envoy.service.discovery.v3.DeltaDiscoveryResponse {system_version_info, resources (Resource {name, version,
 * resource}), type_url, removed_resources, nonce}.
 */
export function encodeDeltaDiscoveryResponse(r: {
  system_version_info: string;
  resources: readonly { name: string; version: string; resource: PackedAny }[];
  type_url: string;
  removed_resources: readonly string[];
  nonce: string;
}): Buffer {
  const versionLen = Buffer.byteLength(r.system_version_info);
  const typeLen = Buffer.byteLength(r.type_url);
  const nonceLen = Buffer.byteLength(r.nonce);
  const items = r.resources.map((res) => {
    const nameLen = Buffer.byteLength(res.name);
    const verLen = Buffer.byteLength(res.version);
    const urlLen = Buffer.byteLength(res.resource.type_url);
    const anyLen = anySize(res.resource, urlLen);
    // Resource: version = 1, resource = 2, name = 3.
    return { res, nameLen, verLen, urlLen, anyLen, len: fieldSize(nameLen) + fieldSize(verLen) + fieldSize(anyLen) };
  });
  const removedLens = r.removed_resources.map((n) => Buffer.byteLength(n));
  let size = fieldSize(versionLen) + fieldSize(typeLen) + fieldSize(nonceLen);
  for (const it of items) size += fieldSize(it.len);
  for (const len of removedLens) size += fieldSize(len);
  const buf = Buffer.allocUnsafe(size);
  let pos = writeString(buf, 0, 1, r.system_version_info, versionLen);
  for (const it of items) {
    pos = writeHeader(buf, pos, 2, it.len);
    pos = writeString(buf, pos, 1, it.res.version, it.verLen);
    pos = writeHeader(buf, pos, 2, it.anyLen);
    pos = writeAny(buf, pos, it.res.resource, it.urlLen);
    pos = writeString(buf, pos, 3, it.res.name, it.nameLen);
  }
  pos = writeString(buf, pos, 4, r.type_url, typeLen);
  pos = writeString(buf, pos, 5, r.nonce, nonceLen);
  r.removed_resources.forEach((n, i) => {
    pos = writeString(buf, pos, 6, n, removedLens[i]!);
  });
  if (pos !== size) throw new Error(`DeltaDiscoveryResponse encoding: wrote ${pos} of ${size} bytes`);
  return buf;
}
