/**
 * google.protobuf.Any packing and unpacking against Sloop's Envoy API (see protos.ts).
 *
 * An Any carries a type URL and the serialized bytes of one message. Only the part after the last `/` names
 * the type (protobuf's any.proto: "the last path segment of the URL must represent the fully qualified name
 * of the type"), so `type.googleapis.com/envoy.config.listener.v3.Listener` and `foo/envoy.config.listener.v3.Listener`
 * unpack the same way.
 */
import type protobuf from 'protobufjs';
import { SloopError } from '../shared/errors.ts';
import { lookupMessage, TO_OBJECT_OPTIONS, typeNameOfUrl } from './protos.ts';

/** An Any as the generated `Any__Output` type has it. */
export interface PackedAny {
  type_url: string;
  value: Buffer;
}

// Keyed by type URL as written. Only hits are cached, so the map is bounded by the number of message types in
// the Root (times the URL prefixes actually seen), never by hostile input.
const typesByUrl = new Map<string, protobuf.Type>();

/** The message type a type URL names, or undefined if Sloop doesn't know it. Cached per URL. */
export function findTypeForUrl(typeUrl: string): protobuf.Type | undefined {
  let type = typesByUrl.get(typeUrl);
  if (type === undefined) {
    type = lookupMessage(typeUrl);
    // protobufjs' lookup also matches partial paths inside nested namespaces ("envoy.filters.http.router.v3.Router"
    // finds envoy.extensions.filters.http.router.v3.Router), but a type URL must name the type exactly.
    if (type === undefined || type.fullName !== '.' + typeNameOfUrl(typeUrl)) return undefined;
    typesByUrl.set(typeUrl, type);
  }
  return type;
}

/**
 * The message type a type URL names.
 * @throws SloopError `SLOOP_ERR_XDS_UNKNOWN_TYPE` naming the URL when Sloop doesn't know the type.
 */
export function typeForUrl(typeUrl: string): protobuf.Type {
  const type = findTypeForUrl(typeUrl);
  if (type === undefined) throw new SloopError('SLOOP_ERR_XDS_UNKNOWN_TYPE', `unknown type URL "${typeUrl}"`);
  return type;
}

/**
 * Decodes the message packed in an Any, in the shape of the generated `__Output` types (snake_case, 64-bit
 * integers as strings, enums by name, defaults filled in). The caller owns the returned object.
 * @throws SloopError `SLOOP_ERR_XDS_UNKNOWN_TYPE` when the type URL names no known message, and
 *   `SLOOP_ERR_CONFIG_INVALID` (with `cause`) when the bytes are not a valid encoding of that message.
 */
export function unpackAny<T>(any: { type_url: string; value: Buffer | Uint8Array }): T {
  const type = typeForUrl(any.type_url);
  let message: protobuf.Message;
  try {
    message = type.decode(any.value);
  } catch (err) {
    throw new SloopError('SLOOP_ERR_CONFIG_INVALID', `malformed ${type.fullName.slice(1)} in Any: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return type.toObject(message, TO_OBJECT_OPTIONS) as T;
}

/**
 * Packs a message into an Any. `object` is in protobufjs `fromObject` form (proto field names; 64-bit integers as
 * numbers or strings; enums by name or number; Buffers or base64 for bytes), which the generated `__Output`
 * shapes also satisfy. Fields the type doesn't have are ignored, as `fromObject` does.
 * @throws SloopError `SLOOP_ERR_XDS_UNKNOWN_TYPE` when the type URL names no known message.
 */
export function packAny(typeUrl: string, object: object): PackedAny {
  const type = typeForUrl(typeUrl);
  return { type_url: typeUrl, value: encodeMessage(type, object) };
}

/**
 * Serializes a `fromObject`-form object of `type` into a Buffer, canonically: proto3 fields without presence are
 * left out at their default value, as protoc-generated encoders do. (protobufjs writes every own property, so an
 * `__Output` object, which has every default filled in, would otherwise encode to different, longer bytes than
 * the same message decoded from YAML; equal messages must give equal bytes for hashing and round-trips.)
 */
export function encodeMessage(type: protobuf.Type, object: object): Buffer {
  const message = type.fromObject(object as Record<string, unknown>);
  dropImplicitDefaults(type, message as unknown as Record<string, unknown>, 0);
  const bytes = type.encode(message).finish();
  // protobufjs hands back a Buffer under Node, but its typing says Uint8Array; don't copy when it already is one.
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

interface CanonicalPlan {
  /** Singular scalar/enum fields without presence (proto3 implicit): dropped when at their default. */
  readonly implicit: readonly string[];
  /** Message-typed fields to recurse into. */
  readonly nested: readonly { readonly name: string; readonly type: protobuf.Type; readonly shape: 'single' | 'repeated' | 'map' }[];
}

const plans = new WeakMap<protobuf.Type, CanonicalPlan>();

function planFor(type: protobuf.Type): CanonicalPlan {
  let plan = plans.get(type);
  if (plan === undefined) {
    const implicit: string[] = [];
    const nested: { name: string; type: protobuf.Type; shape: 'single' | 'repeated' | 'map' }[] = [];
    for (const f of type.fieldsArray) {
      f.resolve();
      const rt = f.resolvedType;
      if (rt !== null && 'fieldsArray' in rt) nested.push({ name: f.name, type: rt as protobuf.Type, shape: f.map ? 'map' : f.repeated ? 'repeated' : 'single' });
      else if (!f.repeated && !f.map && !f.hasPresence) implicit.push(f.name);
    }
    plan = { implicit, nested };
    plans.set(type, plan);
  }
  return plan;
}

function isDefaultScalar(v: unknown): boolean {
  if (v === 0 || v === '' || v === false) return true;
  if (v instanceof Uint8Array) return v.length === 0;
  // Long (64-bit fields): zero is low = high = 0.
  if (typeof v === 'object' && v !== null && 'low' in v && 'high' in v) return (v as { low: number }).low === 0 && (v as { high: number }).high === 0;
  return false;
}

function dropImplicitDefaults(type: protobuf.Type, m: Record<string, unknown>, depth: number): void {
  // protobufjs refuses to encode past util.recursionLimit (100) anyway.
  if (depth > 100) return;
  const plan = planFor(type);
  for (const name of plan.implicit) if (Object.hasOwn(m, name) && isDefaultScalar(m[name])) delete m[name];
  for (const n of plan.nested) {
    const v = m[n.name];
    if (v === null || v === undefined) continue;
    if (n.shape === 'single') dropImplicitDefaults(n.type, v as Record<string, unknown>, depth + 1);
    else if (n.shape === 'repeated') for (const item of v as Record<string, unknown>[]) dropImplicitDefaults(n.type, item, depth + 1);
    else for (const item of Object.values(v as Record<string, Record<string, unknown>>)) dropImplicitDefaults(n.type, item, depth + 1);
  }
}
