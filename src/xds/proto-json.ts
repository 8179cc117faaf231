/**
 * Envoy's JSON/YAML form of its protos (the proto3 JSON mapping), in both directions.
 *
 * `decodeProtoJson` reads config the way Envoy's `MessageUtil::loadFromJson` + `validate()` do: proto3 JSON
 * (https://protobuf.dev/programming-guides/json/) with unknown fields rejected, then the protoc-gen-validate
 * rules the Envoy protos declare, then Envoy's deprecation checks. It collects every problem as a `Diagnostic`
 * with an Envoy-spelled field path, instead of stopping at the first.
 *
 * `encodeProtoJson` writes what Envoy's admin `/config_dump` prints: proto field names, Anys expanded inline.
 */
import type protobuf from 'protobufjs';
import { SloopError } from '../shared/errors.ts';
import type { Diagnostic } from '../shared/errors.ts';
import { encodeMessage, findTypeForUrl } from './any.ts';
import { TO_OBJECT_OPTIONS, typeNameOfUrl } from './protos.ts';

/**
 * A path into the JSON document: object keys as written in the document (so `lbPolicy` if it was written so),
 * array indexes as numbers. Each call gets a fresh array the callee may keep.
 */
export type JsonPath = (string | number)[];

/** 1-based position in a source file. */
export interface SourcePosition {
  line: number;
  column: number;
}

/**
 * Maps a JSON path to a source position. `part` says whether the problem is with the key itself (an unknown
 * or conflicting field) or with its value. For a path that doesn't exist in the document (a required field
 * that is missing) return the position of the nearest enclosing node that does.
 */
export type WhereFn = (path: JsonPath, part?: 'key' | 'value') => SourcePosition | undefined;

export interface DecodeProtoJsonOptions {
  /** Path of `json` inside a larger document, prefixed to every diagnostic path (`static_resources.clusters[0]`). */
  path?: string;
  /** Source positions for diagnostics; paths given to it are relative to `json`. */
  where?: WhereFn;
  /** File name put on every diagnostic. */
  file?: string;
}

export interface DecodeProtoJsonResult<T> {
  /** The decoded message in the shape of the generated `__Output` type; absent if any diagnostic is an error. */
  value?: T;
  /** Every problem found, errors and warnings (deprecated fields), in document order. */
  diagnostics: Diagnostic[];
}

/**
 * Decodes Envoy JSON/YAML (already parsed into plain values) as a message of `type`, with Envoy's rules:
 * proto3 JSON mapping (proto or lowerCamelCase field names, `null` = unset, int64 as number or string, enums by
 * name or number, well-known types in their JSON forms; a Duration may also be a `{seconds, nanos}` object),
 * Anys decoded recursively by `@type` (an `xds.type.v3.TypedStruct` / `udpa.type.v1.TypedStruct` becomes an Any of
 * the type it names), protoc-gen-validate rules, and deprecated / disallowed-by-default fields. Integers may also
 * come as `bigint` (YAML parsed with `intAsBigInt`), so 64-bit values keep their precision.
 *
 * Never throws on bad input: every problem becomes a diagnostic with code `SLOOP_ERR_CONFIG_INVALID`.
 * The caller owns the returned value.
 */
export function decodeProtoJson<T>(type: protobuf.Type, json: unknown, opts: DecodeProtoJsonOptions = {}): DecodeProtoJsonResult<T> {
  const decoder = new Decoder(opts);
  const form = decoder.decodeMessage(infoOf(type), json);
  if (decoder.errorCount > 0 || form === undefined) return { diagnostics: decoder.diagnostics };
  // The decoder builds protobufjs fromObject form; fromObject + toObject gives exactly the __Output shape.
  return { value: type.toObject(type.fromObject(form as Record<string, unknown>), TO_OBJECT_OPTIONS) as T, diagnostics: decoder.diagnostics };
}

/**
 * Encodes a message (in the shape of the generated `__Output` types, i.e. `toObject(…, TO_OBJECT_OPTIONS)`)
 * as Envoy's admin endpoints print it: proto (snake_case) field names, fields at their default value omitted
 * (a set oneof member is always written), Anys expanded as `{"@type": url, ...fields}` (or `{"@type", "value"}`
 * for well-known types), Durations as `"5s"`/`"0.250s"`, wrappers bare, enums by name, 64-bit integers as strings,
 * bytes as base64. `decodeProtoJson(type, encodeProtoJson(type, x))` gives back `x`.
 * @throws SloopError `SLOOP_ERR_XDS_UNKNOWN_TYPE` when an Any holds a type Sloop doesn't know.
 */
export function encodeProtoJson(type: protobuf.Type, value: object): unknown {
  return encodeMessageJson(infoOf(type), value);
}

// ---------------------------------------------------------------------------------------------------------
// Reflection, precomputed once per type.

type ScalarKind =
  | 'double' | 'float' | 'int32' | 'uint32' | 'sint32' | 'fixed32' | 'sfixed32'
  | 'int64' | 'uint64' | 'sint64' | 'fixed64' | 'sfixed64' | 'bool' | 'string' | 'bytes';

/** Well-known types with a special JSON form (proto3 JSON mapping table). Empty is an ordinary `{}`. */
type WellKnown = 'any' | 'duration' | 'timestamp' | 'struct' | 'value' | 'list' | 'fieldmask' | 'wrapper';

const WELL_KNOWN: ReadonlyMap<string, WellKnown> = new Map<string, WellKnown>([
  ['.google.protobuf.Any', 'any'],
  ['.google.protobuf.Duration', 'duration'],
  ['.google.protobuf.Timestamp', 'timestamp'],
  ['.google.protobuf.Struct', 'struct'],
  ['.google.protobuf.Value', 'value'],
  ['.google.protobuf.ListValue', 'list'],
  ['.google.protobuf.FieldMask', 'fieldmask'],
  ['.google.protobuf.DoubleValue', 'wrapper'],
  ['.google.protobuf.FloatValue', 'wrapper'],
  ['.google.protobuf.Int64Value', 'wrapper'],
  ['.google.protobuf.UInt64Value', 'wrapper'],
  ['.google.protobuf.Int32Value', 'wrapper'],
  ['.google.protobuf.UInt32Value', 'wrapper'],
  ['.google.protobuf.BoolValue', 'wrapper'],
  ['.google.protobuf.StringValue', 'wrapper'],
  ['.google.protobuf.BytesValue', 'wrapper'],
]);

/** TypedStruct carries a message as a Struct; Envoy unpacks it by its inner `type_url` (xds/type/v3/typed_struct.proto). */
const TYPED_STRUCT_NAMES: ReadonlySet<string> = new Set(['xds.type.v3.TypedStruct', 'udpa.type.v1.TypedStruct']);

/** What one value of a field is: a scalar, an enum or a message. */
interface ValueType {
  readonly scalar?: ScalarKind;
  readonly enumType?: protobuf.Enum;
  readonly messageType?: protobuf.Type;
}

type Rules = Readonly<Record<string, unknown>>;

interface FieldInfo {
  readonly name: string;
  /** `envoy.config.cluster.v3.Cluster.lb_policy`, as Envoy names fields in deprecation messages. */
  readonly fullName: string;
  readonly vt: ValueType;
  readonly isRepeated: boolean;
  readonly isMap: boolean;
  readonly mapKey: ScalarKind | undefined;
  /** The oneof this field belongs to, if any (proto3 `optional` fields have a one-member synthetic oneof). */
  readonly oneof: string | undefined;
  /** `(validate.rules)`, merged. */
  readonly rules: Rules | undefined;
  readonly isDeprecated: boolean;
  readonly isDisallowed: boolean;
  readonly id: number;
}

interface TypeInfo {
  readonly type: protobuf.Type;
  /** Without the leading dot: `envoy.config.cluster.v3.Cluster`. */
  readonly name: string;
  readonly wellKnown: WellKnown | undefined;
  /** Fields by proto name and by JSON (lowerCamelCase) name. */
  readonly byKey: ReadonlyMap<string, FieldInfo>;
  /** Fields in field-number order, as protobuf's JSON printer writes them. */
  readonly fields: readonly FieldInfo[];
  readonly ruled: readonly FieldInfo[];
  /** Oneofs with `(validate.required) = true`: one member must be set. */
  readonly requiredOneofs: readonly { readonly name: string; readonly members: readonly string[] }[];
}

const infos = new WeakMap<protobuf.Type, TypeInfo>();

function infoOf(type: protobuf.Type): TypeInfo {
  let info = infos.get(type);
  if (info === undefined) {
    info = buildInfo(type);
    infos.set(type, info);
  }
  return info;
}

function buildInfo(type: protobuf.Type): TypeInfo {
  const name = type.fullName.slice(1);
  const byKey = new Map<string, FieldInfo>();
  const fields: FieldInfo[] = [];
  for (const f of type.fieldsArray) {
    f.resolve();
    const map = f.map ? (f as unknown as protobuf.MapField) : undefined;
    const rt = f.resolvedType;
    const vt: ValueType =
      rt !== null && 'fieldsArray' in rt
        ? { messageType: rt as protobuf.Type }
        : rt !== null
          ? { enumType: rt as protobuf.Enum }
          : { scalar: f.type as ScalarKind };
    const options = f.options ?? {};
    const fi: FieldInfo = {
      name: f.name,
      fullName: `${name}.${f.name}`,
      vt,
      isRepeated: f.repeated,
      isMap: map !== undefined,
      mapKey: map ? (map.keyType as ScalarKind) : undefined,
      oneof: f.partOf?.name,
      rules: asRules(mergedOption(f.parsedOptions, '(validate.rules)')),
      isDeprecated: options.deprecated === true,
      isDisallowed: options['(envoy.annotations.disallowed_by_default)'] === true,
      id: f.id,
    };
    fields.push(fi);
    byKey.set(f.name, fi);
    const jsonName = typeof options.json_name === 'string' ? options.json_name : lowerCamel(f.name);
    if (!byKey.has(jsonName)) byKey.set(jsonName, fi);
  }
  fields.sort((a, b) => a.id - b.id);
  const requiredOneofs = type.oneofsArray
    .filter((o) => mergedOption(o.parsedOptions, '(validate.required)') === true || o.options?.['(validate.required)'] === true)
    .map((o) => ({ name: o.name, members: o.oneof.slice() }));
  return {
    type,
    name,
    wellKnown: WELL_KNOWN.get(type.fullName),
    byKey,
    fields,
    ruled: fields.filter((f) => f.rules !== undefined),
    requiredOneofs,
  };
}

/**
 * protobufjs keeps each declared option as its own `{name: value}` entry in `parsedOptions`
 * (`[(validate.rules).string.min_len = 1, (validate.rules).string.max_len = 9]` gives two), so deep-merge them.
 */
function mergedOption(parsed: unknown, key: string): unknown {
  if (!Array.isArray(parsed)) return undefined;
  let out: unknown;
  for (const entry of parsed) {
    if (!isObject(entry) || !(key in entry)) continue;
    const v = entry[key];
    out = isObject(v) && isObject(out) ? deepMerge({ ...out }, v) : v;
  }
  return out;
}

function asRules(v: unknown): Rules | undefined {
  return isObject(v) ? v : undefined;
}

function deepMerge(into: Record<string, unknown>, from: Readonly<Record<string, unknown>>): Record<string, unknown> {
  for (const [k, v] of Object.entries(from)) {
    const cur = into[k];
    into[k] = isObject(cur) && isObject(v) ? deepMerge({ ...cur }, v) : v;
  }
  return into;
}

/** protoc's default json_name: drop each `_` and upper-case the letter after it. */
function lowerCamel(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v);
}

// ---------------------------------------------------------------------------------------------------------
// Decoding.

/** protobufjs/protoc nesting limit (util.recursionLimit); deeper input is rejected rather than overflowing the stack. */
const MAX_DEPTH = 100;

const INT_RANGES: Readonly<Record<string, readonly [bigint, bigint, string]>> = {
  int32: [-(2n ** 31n), 2n ** 31n - 1n, 'a 32-bit integer'],
  sint32: [-(2n ** 31n), 2n ** 31n - 1n, 'a 32-bit integer'],
  sfixed32: [-(2n ** 31n), 2n ** 31n - 1n, 'a 32-bit integer'],
  uint32: [0n, 2n ** 32n - 1n, 'an unsigned 32-bit integer'],
  fixed32: [0n, 2n ** 32n - 1n, 'an unsigned 32-bit integer'],
  int64: [-(2n ** 63n), 2n ** 63n - 1n, 'a 64-bit integer'],
  sint64: [-(2n ** 63n), 2n ** 63n - 1n, 'a 64-bit integer'],
  sfixed64: [-(2n ** 63n), 2n ** 63n - 1n, 'a 64-bit integer'],
  uint64: [0n, 2n ** 64n - 1n, 'an unsigned 64-bit integer'],
  fixed64: [0n, 2n ** 64n - 1n, 'an unsigned 64-bit integer'],
};

const IS_64_BIT: ReadonlySet<string> = new Set(['int64', 'sint64', 'sfixed64', 'uint64', 'fixed64']);

// Proto3 JSON: "Either standard or URL-safe base64 encoding with/without paddings are accepted."
const BASE64_RE = /^[A-Za-z0-9+/\-_]*={0,2}$/;
const INTEGER_RE = /^-?\d+$/;
const NUMBER_RE = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
// Proto3 JSON Duration: seconds with up to 9 fractional digits and an "s" suffix.
const DURATION_RE = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/;
// Proto3 JSON Timestamp: RFC 3339, "Z"-normalized on output, offsets accepted on input.
const TIMESTAMP_RE = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;
// google/protobuf/duration.proto: "Range is approximately +-10,000 years", ±315,576,000,000 s.
const MAX_DURATION_SECONDS = 315_576_000_000n;
// google/protobuf/timestamp.proto: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
const MIN_TIMESTAMP_SECONDS = -62_135_596_800;
const MAX_TIMESTAMP_SECONDS = 253_402_300_799;
const NANOS_PER_SECOND = 1_000_000_000n;

type Form = unknown;

class Decoder {
  readonly diagnostics: Diagnostic[] = [];
  errorCount = 0;
  private readonly raw: (string | number)[] = [];
  private readonly disp: string[] = [];
  private depth = 0;
  private readonly opts: DecodeProtoJsonOptions;

  constructor(opts: DecodeProtoJsonOptions) {
    this.opts = opts;
  }

  private push(raw: string | number, disp: string): void {
    this.raw.push(raw);
    this.disp.push(disp);
  }

  private pop(): void {
    this.raw.pop();
    this.disp.pop();
  }

  private path(): string {
    const body = this.disp.join('');
    if (this.opts.path) return this.opts.path + body;
    return body.startsWith('.') ? body.slice(1) : body;
  }

  report(severity: Diagnostic['severity'], message: string, part: 'key' | 'value' = 'value'): void {
    if (severity === 'error') this.errorCount++;
    const d: Diagnostic = { severity, code: 'SLOOP_ERR_CONFIG_INVALID', path: this.path(), message };
    if (this.opts.file !== undefined) d.file = this.opts.file;
    const pos = this.opts.where?.(this.raw.slice(), part);
    if (pos) {
      d.line = pos.line;
      d.column = pos.column;
    }
    this.diagnostics.push(d);
  }

  private error(message: string, part: 'key' | 'value' = 'value'): undefined {
    this.report('error', message, part);
    return undefined;
  }

  /** Returns the fromObject form of `json`, or undefined after reporting why it can't be decoded. */
  decodeMessage(info: TypeInfo, json: unknown): Form | undefined {
    if (this.depth >= MAX_DEPTH) return this.error(`nested more than ${MAX_DEPTH} levels deep`);
    this.depth++;
    try {
      switch (info.wellKnown) {
        case undefined:
          return this.decodeFields(info, json, undefined);
        case 'any':
          return this.decodeAny(json);
        case 'duration':
          return this.decodeDuration(info, json);
        case 'timestamp':
          return this.decodeTimestamp(info, json);
        case 'wrapper': {
          const inner = info.type.fieldsById[1];
          const v = this.decodeScalar(inner.type as ScalarKind, json);
          return v === undefined ? undefined : { [inner.name]: v };
        }
        case 'struct':
          return this.decodeStruct(info.type, json);
        case 'value':
          return this.decodeValue(info.type, json);
        case 'list':
          return this.decodeList(info.type, json);
        case 'fieldmask':
          return this.decodeFieldMask(json);
      }
    } finally {
      this.depth--;
    }
  }

  /** An ordinary message: a JSON object of fields. `skipKey` is the Any's `@type`, which sits among the fields. */
  private decodeFields(info: TypeInfo, json: unknown, skipKey: string | undefined): Form | undefined {
    if (!isObject(json)) return this.error(`expected an object (${info.name}), got ${describe(json)}`);
    const errorsBefore = this.errorCount;
    const out: Record<string, unknown> = {};
    // Every field written (by the key used), and those written but undecodable (their error is already reported).
    const keyOf = new Map<FieldInfo, string>();
    const failed = new Set<FieldInfo>();
    let oneofMember: Map<string, FieldInfo> | undefined;
    for (const key of Object.keys(json)) {
      if (key === skipKey) continue;
      const f = info.byKey.get(key);
      if (f === undefined) {
        this.push(key, fieldSegment(key));
        this.error(unknownFieldMessage(info, key), 'key');
        this.pop();
        continue;
      }
      const v = json[key];
      this.push(key, '.' + f.name);
      const prevKey = keyOf.get(f);
      if (prevKey !== undefined) {
        this.error(`field "${f.name}" is set twice (as "${prevKey}" and "${key}")`, 'key');
        this.pop();
        continue;
      }
      keyOf.set(f, key);
      // Proto3 JSON: null means "use the default", except for google.protobuf.Value where it is NULL_VALUE.
      if (v === null && !acceptsNull(f)) {
        this.pop();
        continue;
      }
      if (f.oneof !== undefined) {
        oneofMember ??= new Map();
        const other = oneofMember.get(f.oneof);
        if (other !== undefined) {
          this.error(`only one of the oneof "${f.oneof}" may be set, but "${other.name}" is set too`, 'key');
          this.pop();
          continue;
        }
        oneofMember.set(f.oneof, f);
      }
      const decoded = this.decodeField(f, v);
      if (decoded === undefined) failed.add(f);
      else {
        out[f.name] = decoded;
        if (f.isDisallowed) {
          // Envoy rejects these unless runtime key envoy.deprecated_features:<field> is set (docs: "Deprecated").
          this.error(`${f.fullName} is deprecated and disallowed by default`, 'key');
        } else if (f.isDeprecated && !isDefaultForm(f, decoded)) {
          this.report('warning', `${f.fullName} is deprecated`, 'key');
        }
      }
      this.pop();
    }
    this.validate(info, out, keyOf, failed);
    // A message with errors inside is not handed up: its parent's rules would judge a half-decoded value.
    return this.errorCount > errorsBefore ? undefined : out;
  }

  private decodeField(f: FieldInfo, v: unknown): Form | undefined {
    if (f.isMap) {
      if (!isObject(v)) return this.error(`expected an object (map of ${valueTypeName(f.vt)}), got ${describe(v)}`);
      const out: Record<string, unknown> = {};
      let ok = true;
      for (const key of Object.keys(v)) {
        this.push(key, `[${JSON.stringify(key)}]`);
        const k = this.decodeMapKey(f.mapKey!, key);
        const item = v[key];
        const val = item === null && !acceptsNull(f) ? this.error(`expected ${valueTypeName(f.vt)}, got null`) : this.decodeSingle(f.vt, item);
        if (k === undefined || val === undefined) ok = false;
        else out[k] = val;
        this.pop();
      }
      return ok ? out : undefined;
    }
    if (f.isRepeated) {
      if (!Array.isArray(v)) return this.error(`expected an array of ${valueTypeName(f.vt)}, got ${describe(v)}`);
      const out: unknown[] = [];
      let ok = true;
      for (let i = 0; i < v.length; i++) {
        this.push(i, `[${i}]`);
        const item: unknown = v[i];
        const val = item === null && !acceptsNull(f) ? this.error(`expected ${valueTypeName(f.vt)}, got null`) : this.decodeSingle(f.vt, item);
        if (val === undefined) ok = false;
        else out.push(val);
        this.pop();
      }
      return ok ? out : undefined;
    }
    return this.decodeSingle(f.vt, v);
  }

  private decodeSingle(vt: ValueType, v: unknown): Form | undefined {
    if (vt.messageType) return this.decodeMessage(infoOf(vt.messageType), v);
    if (vt.enumType) return this.decodeEnum(vt.enumType, v);
    return this.decodeScalar(vt.scalar!, v);
  }

  private decodeMapKey(kind: ScalarKind, key: string): string | undefined {
    // Proto3 JSON: map keys are always strings; integer and bool keys are their decimal / "true"/"false" text.
    if (kind === 'string') return key;
    if (kind === 'bool') return key === 'true' || key === 'false' ? key : this.error(`expected a map key "true" or "false", got ${JSON.stringify(key)}`);
    const v = this.decodeScalar(kind, key);
    return v === undefined ? undefined : String(v);
  }

  private decodeEnum(type: protobuf.Enum, v: unknown): Form | undefined {
    if (type.fullName === '.google.protobuf.NullValue') {
      if (v === null || v === 'NULL_VALUE' || v === 0) return 0;
    }
    let name: string | undefined;
    if (typeof v === 'string') {
      if (!Object.hasOwn(type.values, v)) return this.error(`expected one of ${Object.keys(type.values).join(', ')}, got ${describe(v)}`);
      name = v;
    } else if ((typeof v === 'number' && Number.isInteger(v)) || typeof v === 'bigint') {
      const n = Number(v);
      if (n < -(2 ** 31) || n > 2 ** 31 - 1) return this.error(`expected one of ${Object.keys(type.values).join(', ')}, got ${describe(v)}`);
      name = type.valuesById[n];
      // Proto3 enums are open: an unknown number is kept (defined_only rejects it where the proto says so).
      if (name === undefined) return n;
    } else {
      return this.error(`expected one of ${Object.keys(type.values).join(', ')}, got ${describe(v)}`);
    }
    const options = type.valuesOptions?.[name];
    if (options !== undefined) {
      const what = `${type.fullName.slice(1)}.${name}`;
      if (options['(envoy.annotations.disallowed_by_default_enum)'] === true) this.error(`${what} is deprecated and disallowed by default`);
      else if (options.deprecated === true) this.report('warning', `${what} is deprecated`);
    }
    return name;
  }

  private decodeScalar(kind: ScalarKind, v: unknown): Form | undefined {
    switch (kind) {
      case 'string':
        return typeof v === 'string' ? v : this.error(`expected a string, got ${describe(v)}`);
      case 'bool':
        return typeof v === 'boolean' ? v : this.error(`expected true or false, got ${describe(v)}`);
      case 'bytes':
        if (typeof v === 'string' && BASE64_RE.test(v)) return Buffer.from(v, 'base64');
        return this.error(`expected base64-encoded bytes, got ${describe(v)}`);
      case 'double':
      case 'float': {
        let n: number | undefined;
        if (typeof v === 'number') n = v;
        else if (typeof v === 'bigint') n = Number(v);
        // Proto3 JSON: numbers may be strings, and "NaN", "Infinity", "-Infinity" are the non-finite values.
        else if (typeof v === 'string' && (NUMBER_RE.test(v) || v === 'NaN' || v === 'Infinity' || v === '-Infinity')) n = Number(v);
        if (n === undefined) return this.error(`expected a number, got ${describe(v)}`);
        if (kind === 'float' && Number.isFinite(n) && Math.abs(n) > 3.4028234663852886e38) {
          return this.error(`expected a 32-bit float, got ${describe(v)} (out of range)`);
        }
        return n;
      }
      default: {
        const range = INT_RANGES[kind];
        let n: bigint | undefined;
        if (typeof v === 'bigint') n = v;
        else if (typeof v === 'number' && Number.isInteger(v)) n = BigInt(v);
        else if (typeof v === 'string' && INTEGER_RE.test(v)) n = BigInt(v);
        // Proto3 JSON accepts exponent notation as long as the value is integral ("1e3").
        else if (typeof v === 'string' && NUMBER_RE.test(v) && Number.isInteger(Number(v))) n = BigInt(Number(v));
        if (n === undefined) return this.error(`expected an integer, got ${describe(v)}`);
        if (n < range[0] || n > range[1]) return this.error(`expected ${range[2]} (${range[0]} to ${range[1]}), got ${describe(v)}`);
        // fromObject takes 64-bit integers as decimal strings (Long.fromValue), which keeps full precision.
        return IS_64_BIT.has(kind) ? n.toString() : Number(n);
      }
    }
  }

  private decodeDuration(info: TypeInfo, json: unknown): Form | undefined {
    if (typeof json === 'string') {
      const m = DURATION_RE.exec(json);
      if (m !== null) {
        const seconds = BigInt(m[2]);
        if (seconds <= MAX_DURATION_SECONDS) {
          const nanos = m[3] === undefined ? 0 : Number(m[3].padEnd(9, '0'));
          const sign = m[1] === '-' ? -1 : 1;
          // duration.proto: seconds and nanos carry the same sign.
          return { seconds: (sign < 0 && seconds > 0n ? -seconds : seconds).toString(), nanos: nanos === 0 ? 0 : sign * nanos };
        }
      }
    } else if (isObject(json)) {
      // Not proto3 JSON, but Envoy's YAML accepts the message form {seconds, nanos}, so configs in the wild use it.
      const form = this.decodeFields(info, json, undefined) as { seconds?: string; nanos?: number } | undefined;
      if (form === undefined) return undefined;
      const seconds = BigInt(form.seconds ?? '0');
      const nanos = form.nanos ?? 0;
      if (seconds > MAX_DURATION_SECONDS || seconds < -MAX_DURATION_SECONDS || Math.abs(nanos) > 999_999_999 || (seconds > 0n && nanos < 0) || (seconds < 0n && nanos > 0)) {
        return this.error(`expected a duration within ±${MAX_DURATION_SECONDS}s with nanos of the same sign as seconds`);
      }
      return form;
    }
    return this.error(`expected a duration like "5s" or "0.250s", got ${describe(json)}`);
  }

  private decodeTimestamp(info: TypeInfo, json: unknown): Form | undefined {
    if (typeof json === 'string') {
      const seconds = parseTimestampSeconds(json);
      if (seconds !== undefined) {
        const frac = TIMESTAMP_RE.exec(json)![7];
        return { seconds: String(seconds), nanos: frac === undefined ? 0 : Number(frac.padEnd(9, '0')) };
      }
    } else if (isObject(json)) {
      return this.decodeFields(info, json, undefined);
    }
    return this.error(`expected an RFC 3339 timestamp like "2024-01-02T03:04:05Z", got ${describe(json)}`);
  }

  private decodeFieldMask(json: unknown): Form | undefined {
    // Proto3 JSON: a FieldMask is one string of comma-separated paths, each in lowerCamelCase.
    if (typeof json !== 'string') return this.error(`expected a field mask like "fooBar,baz.qux", got ${describe(json)}`);
    return { paths: json === '' ? [] : json.split(',').map((p) => p.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase())) };
  }

  private decodeStruct(type: protobuf.Type, json: unknown): Form | undefined {
    if (!isObject(json)) return this.error(`expected an object (google.protobuf.Struct), got ${describe(json)}`);
    const valueType = type.fieldsById[1].resolvedType as protobuf.Type;
    const fields: Record<string, unknown> = {};
    let ok = true;
    for (const key of Object.keys(json)) {
      this.push(key, `[${JSON.stringify(key)}]`);
      const v = this.decodeValue(valueType, json[key]);
      if (v === undefined) ok = false;
      else fields[key] = v;
      this.pop();
    }
    return ok ? { [type.fieldsById[1].name]: fields } : undefined;
  }

  private decodeList(type: protobuf.Type, json: unknown): Form | undefined {
    if (!Array.isArray(json)) return this.error(`expected an array (google.protobuf.ListValue), got ${describe(json)}`);
    const valueType = type.fieldsById[1].resolvedType as protobuf.Type;
    const values: unknown[] = [];
    let ok = true;
    for (let i = 0; i < json.length; i++) {
      this.push(i, `[${i}]`);
      const v = this.decodeValue(valueType, json[i]);
      if (v === undefined) ok = false;
      else values.push(v);
      this.pop();
    }
    return ok ? { [type.fieldsById[1].name]: values } : undefined;
  }

  /** google.protobuf.Value: any JSON value. Field names come from the Type (protobufjs' built-in copy is camelCase). */
  private decodeValue(type: protobuf.Type, json: unknown): Form | undefined {
    if (this.depth >= MAX_DEPTH) return this.error(`nested more than ${MAX_DEPTH} levels deep`);
    const byId = type.fieldsById;
    switch (typeof json) {
      case 'string':
        return { [byId[3].name]: json };
      case 'number':
        return { [byId[2].name]: json };
      case 'bigint':
        return { [byId[2].name]: Number(json) };
      case 'boolean':
        return { [byId[4].name]: json };
      default:
        break;
    }
    if (json === null) return { [byId[1].name]: 0 };
    this.depth++;
    try {
      if (Array.isArray(json)) {
        const list = this.decodeList(byId[6].resolvedType as protobuf.Type, json);
        return list === undefined ? undefined : { [byId[6].name]: list };
      }
      if (isObject(json)) {
        const struct = this.decodeStruct(byId[5].resolvedType as protobuf.Type, json);
        return struct === undefined ? undefined : { [byId[5].name]: struct };
      }
    } finally {
      this.depth--;
    }
    return this.error(`expected a JSON value, got ${describe(json)}`);
  }

  /**
   * Proto3 JSON Any: `{"@type": url, ...fields of the packed message}`, or `{"@type": url, "value": ...}` when the
   * packed type has a special JSON form. The fields are decoded (and validated: Envoy validates every typed_config
   * it unpacks) with the path continuing inside, then encoded to bytes.
   */
  private decodeAny(json: unknown): Form | undefined {
    if (!isObject(json)) return this.error(`expected an object with "@type" (google.protobuf.Any), got ${describe(json)}`);
    const url = json['@type'];
    if (url === undefined) return this.error(`missing "@type": a google.protobuf.Any needs a type URL like "type.googleapis.com/<message name>"`);
    if (typeof url !== 'string' || !url.includes('/')) {
      this.push('@type', '["@type"]');
      this.error(`expected a type URL like "type.googleapis.com/<message name>", got ${describe(url)}`);
      this.pop();
      return undefined;
    }
    if (TYPED_STRUCT_NAMES.has(typeNameOfUrl(url))) return this.decodeTypedStruct(json);
    const inner = findTypeForUrl(url);
    if (inner === undefined) {
      this.push('@type', '["@type"]');
      this.error(`unknown type "${url}": Sloop has no message type ${typeNameOfUrl(url)}`);
      this.pop();
      return undefined;
    }
    const innerInfo = infoOf(inner);
    const errorsBefore = this.errorCount;
    let form: Form | undefined;
    if (innerInfo.wellKnown !== undefined) {
      for (const key of Object.keys(json)) {
        if (key === '@type' || key === 'value') continue;
        this.push(key, fieldSegment(key));
        this.error(`unknown field "${key}" in an Any holding ${innerInfo.name} (its JSON form goes in "value")`, 'key');
        this.pop();
      }
      if (!('value' in json)) return this.error(`missing "value": an Any holding ${innerInfo.name} carries it in "value"`);
      this.push('value', '.value');
      form = this.decodeMessage(innerInfo, json.value);
      this.pop();
    } else {
      form = this.decodeFields(innerInfo, json, '@type');
    }
    if (form === undefined || this.errorCount > errorsBefore) return undefined;
    return { type_url: url, value: encodeMessage(inner, form as object) };
  }

  /**
   * `{"@type": ".../xds.type.v3.TypedStruct", "type_url": url, "value": {...}}`: Envoy converts the Struct to the
   * message `type_url` names before using it (Config::Utility::translateOpaqueConfig), so decode it as that type
   * and hand back an Any of it; consumers then need only one form.
   */
  private decodeTypedStruct(json: Record<string, unknown>): Form | undefined {
    let url: unknown;
    let value: unknown;
    for (const key of Object.keys(json)) {
      if (key === '@type') continue;
      if (key === 'type_url' || key === 'typeUrl') url = json[key];
      else if (key === 'value') value = json[key];
      else {
        this.push(key, fieldSegment(key));
        this.error(`unknown field "${key}" in xds.type.v3.TypedStruct`, 'key');
        this.pop();
      }
    }
    if (typeof url !== 'string' || !url.includes('/')) {
      this.push('type_url', '.type_url');
      this.error(`expected a type URL like "type.googleapis.com/<message name>", got ${describe(url ?? null)}`);
      this.pop();
      return undefined;
    }
    const inner = findTypeForUrl(url);
    if (inner === undefined) {
      this.push('type_url', '.type_url');
      this.error(`unknown type "${url}": Sloop has no message type ${typeNameOfUrl(url)}`);
      this.pop();
      return undefined;
    }
    const errorsBefore = this.errorCount;
    this.push('value', '.value');
    const form = this.decodeFields(infoOf(inner), value ?? {}, undefined);
    this.pop();
    if (form === undefined || this.errorCount > errorsBefore) return undefined;
    return { type_url: url, value: encodeMessage(inner, form as object) };
  }

  // ------------------------------------------------------------------------------------------------------
  // protoc-gen-validate rules (validate/validate.proto), checked as Envoy's generated Validate() does.

  private validate(info: TypeInfo, out: Record<string, unknown>, keyOf: ReadonlyMap<FieldInfo, string>, failed: ReadonlySet<FieldInfo>): void {
    for (const f of info.ruled) {
      if (failed.has(f)) continue;
      const isSet = out[f.name] !== undefined;
      // PGV checks a oneof member's rules only when that member is the one set.
      if (f.oneof !== undefined && !isSet) continue;
      const rules = f.rules!;
      this.push(keyOf.get(f) ?? f.name, '.' + f.name);
      const value = out[f.name];
      if (f.isRepeated && !f.isMap) this.checkRepeated(f, rules, (value as unknown[] | undefined) ?? []);
      else if (f.isMap) this.checkMap(f, rules, (value as Record<string, unknown> | undefined) ?? {});
      else {
        const problem = checkSingle(f.vt, rules, value, isSet);
        if (problem !== undefined) this.error(problem);
      }
      this.pop();
    }
    for (const o of info.requiredOneofs) {
      if (!o.members.some((m) => out[m] !== undefined || [...failed].some((f) => f.name === m))) {
        this.error(`one of ${o.members.join(', ')} is required (oneof ${o.name})`);
      }
    }
  }

  private checkRepeated(f: FieldInfo, rules: Rules, items: readonly unknown[]): void {
    const r = sub(rules, 'repeated');
    if (r === undefined) return;
    if (r.ignore_empty === true && items.length === 0) return;
    const min = num(r.min_items);
    const max = num(r.max_items);
    if (min !== undefined && items.length < min) this.error(min === 1 ? 'must have at least 1 item' : `must have at least ${min} items`);
    if (max !== undefined && items.length > max) this.error(`must have at most ${max} item${max === 1 ? '' : 's'}`);
    const itemRules = sub(r, 'items');
    const seen = r.unique === true ? new Set<unknown>() : undefined;
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      if (seen !== undefined) {
        const k = typeof item === 'object' ? JSON.stringify(item) : item;
        if (seen.has(k)) {
          this.push(i, `[${i}]`);
          this.error(`must be unique, but ${describe(item)} appears more than once`);
          this.pop();
        }
        seen.add(k);
      }
      if (itemRules !== undefined) {
        const problem = checkSingle(f.vt, itemRules, item, true);
        if (problem !== undefined) {
          this.push(i, `[${i}]`);
          this.error(problem);
          this.pop();
        }
      }
    }
  }

  private checkMap(f: FieldInfo, rules: Rules, map: Readonly<Record<string, unknown>>): void {
    const r = sub(rules, 'map');
    if (r === undefined) return;
    const keys = Object.keys(map);
    if (r.ignore_empty === true && keys.length === 0) return;
    const min = num(r.min_pairs);
    const max = num(r.max_pairs);
    if (min !== undefined && keys.length < min) this.error(`must have at least ${min} entr${min === 1 ? 'y' : 'ies'}`);
    if (max !== undefined && keys.length > max) this.error(`must have at most ${max} entr${max === 1 ? 'y' : 'ies'}`);
    const keyRules = sub(r, 'keys');
    const valueRules = sub(r, 'values');
    for (const k of keys) {
      this.push(k, `[${JSON.stringify(k)}]`);
      // Map keys are kept as strings in fromObject form; rules compare them as their own type.
      const keyValue = f.mapKey === 'bool' ? k === 'true' : f.mapKey === 'string' || IS_64_BIT.has(f.mapKey!) ? k : Number(k);
      const keyProblem = keyRules === undefined ? undefined : checkSingle({ scalar: f.mapKey }, keyRules, keyValue, true);
      if (keyProblem !== undefined) this.error(`key ${keyProblem}`, 'key');
      const valueProblem = valueRules === undefined ? undefined : checkSingle(f.vt, valueRules, map[k], true);
      if (valueProblem !== undefined) this.error(valueProblem);
      this.pop();
    }
  }
}

function acceptsNull(f: FieldInfo): boolean {
  return f.vt.messageType?.fullName === '.google.protobuf.Value' || f.vt.enumType?.fullName === '.google.protobuf.NullValue';
}

/** Envoy warns about a deprecated field only when it is set: a proto3 scalar at its default counts as unset. */
function isDefaultForm(f: FieldInfo, v: unknown): boolean {
  if (f.oneof !== undefined) return false;
  if (Array.isArray(v)) return v.length === 0;
  if (f.isMap) return isObject(v) && Object.keys(v).length === 0;
  if (f.vt.messageType) return false;
  if (f.vt.enumType) return v === 0 || v === f.vt.enumType.valuesById[0];
  return v === '' || v === 0 || v === '0' || v === false || (Buffer.isBuffer(v) && v.length === 0);
}

function fieldSegment(key: string): string {
  return /^[A-Za-z_@][\w@]*$/.test(key) ? '.' + key : `[${JSON.stringify(key)}]`;
}

function unknownFieldMessage(info: TypeInfo, key: string): string {
  const suggestion = closestField(info, key);
  return `unknown field "${key}" in ${info.name}${suggestion === undefined ? '' : ` (did you mean "${suggestion}"?)`}`;
}

/** The proto name of the field `key` was most likely meant to be, if any is close enough to suggest. */
function closestField(info: TypeInfo, key: string): string | undefined {
  const squash = (s: string) => s.replace(/_/g, '').toLowerCase();
  const squashed = squash(key);
  for (const f of info.fields) if (squash(f.name) === squashed) return f.name;
  const limit = key.length <= 4 ? 1 : key.length <= 10 ? 2 : 3;
  let best: string | undefined;
  let bestDistance = limit + 1;
  for (const [candidate, f] of info.byKey) {
    const d = editDistance(key, candidate, bestDistance);
    if (d < bestDistance) {
      bestDistance = d;
      best = f.name;
    }
  }
  return best;
}

/** Levenshtein distance, giving up (returning `cap`) once it can't be below `cap`. */
function editDistance(a: string, b: string, cap: number): number {
  if (Math.abs(a.length - b.length) >= cap) return cap;
  let prev = Array.from({ length: b.length + 1 }, (_v, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const v = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      cur.push(v);
      if (v < rowMin) rowMin = v;
    }
    if (rowMin >= cap) return cap;
    prev = cur;
  }
  return Math.min(prev[b.length], cap);
}

function valueTypeName(vt: ValueType): string {
  if (vt.messageType) return vt.messageType.fullName.slice(1);
  if (vt.enumType) return vt.enumType.fullName.slice(1);
  return vt.scalar!;
}

/** How a bad value is shown in a message: strings quoted (and shortened), other scalars as written. */
function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? v.slice(0, 57) + '...' : v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v)) return 'an array';
  if (Buffer.isBuffer(v)) return 'bytes';
  if (typeof v === 'object') return 'an object';
  return typeof v;
}

function parseTimestampSeconds(s: string): number | undefined {
  const m = TIMESTAMP_RE.exec(s);
  if (m === null) return undefined;
  const [year, month, day, hour, minute, second] = [m[1], m[2], m[3], m[4], m[5], m[6]].map(Number);
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(hour, minute, second, 0);
  // Reject dates Date silently rolls over (Feb 30, 25:00).
  if (d.getUTCFullYear() !== year || d.getUTCMonth() !== month - 1 || d.getUTCDate() !== day || d.getUTCHours() !== hour || d.getUTCMinutes() !== minute || second > 59) {
    return undefined;
  }
  let seconds = Math.floor(d.getTime() / 1000);
  if (m[9] !== undefined) seconds -= (m[9] === '-' ? -1 : 1) * (Number(m[10]) * 3600 + Number(m[11]) * 60);
  if (seconds < MIN_TIMESTAMP_SECONDS || seconds > MAX_TIMESTAMP_SECONDS) return undefined;
  return seconds;
}

// ---------------------------------------------------------------------------------------------------------
// Rule checks. Each returns the problem ("must be at least 1") or undefined.

function sub(r: Rules, key: string): Rules | undefined {
  const v = r[key];
  return isObject(v) ? v : undefined;
}

function num(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && v !== '' && !Number.isNaN(Number(v))) return Number(v);
  return undefined;
}

/** PGV `in`/`not_in` lists; protobufjs parses a one-element list written `not_in: 6` as the bare value. */
function list(v: unknown): readonly unknown[] | undefined {
  if (v === undefined) return undefined;
  return Array.isArray(v) ? v : [v];
}

type Comparable = number | bigint;

function toComparable(v: unknown, asBigInt: boolean): Comparable | undefined {
  if (typeof v === 'bigint') return asBigInt ? v : Number(v);
  if (typeof v === 'number') return asBigInt && Number.isInteger(v) ? BigInt(v) : v;
  if (typeof v === 'string' && v !== '') {
    if (asBigInt && INTEGER_RE.test(v)) return BigInt(v);
    const n = Number(v);
    return Number.isNaN(n) ? undefined : n;
  }
  return undefined;
}

function durationNanos(v: unknown): bigint | undefined {
  if (!isObject(v)) return undefined;
  const seconds = v.seconds === undefined ? 0n : BigInt(String(v.seconds));
  const nanos = v.nanos === undefined ? 0n : BigInt(String(v.nanos));
  return seconds * NANOS_PER_SECOND + nanos;
}

/** PGV's numeric rules: const, lt/lte/gt/gte (gt > lt means "outside the range"), in, not_in. */
function rangeProblem(
  cur: Comparable,
  r: Rules,
  conv: (x: unknown) => Comparable | undefined,
  fmt: (x: Comparable) => string,
): string | undefined {
  const constant = r.const === undefined ? undefined : conv(r.const);
  if (constant !== undefined && (cur < constant || cur > constant)) return `must equal ${fmt(constant)}`;
  const gt = r.gt === undefined ? undefined : conv(r.gt);
  const gte = r.gte === undefined ? undefined : conv(r.gte);
  const lt = r.lt === undefined ? undefined : conv(r.lt);
  const lte = r.lte === undefined ? undefined : conv(r.lte);
  const lo = gt ?? gte;
  const hi = lt ?? lte;
  const aboveLo = lo === undefined || (gt !== undefined ? cur > gt : cur >= lo);
  const belowHi = hi === undefined || (lt !== undefined ? cur < lt : cur <= hi);
  if (lo !== undefined && hi !== undefined) {
    const open = gt !== undefined ? '(' : '[';
    const close = lt !== undefined ? ')' : ']';
    if (hi >= lo) {
      if (!(aboveLo && belowHi)) return `must be in range ${open}${fmt(lo)}, ${fmt(hi)}${close}`;
    } else if (!(aboveLo || belowHi)) {
      // validate.proto: "If the value of gt is larger than a specified lt or lte, the range is reversed".
      return `must be outside range ${lt !== undefined ? '[' : '('}${fmt(hi)}, ${fmt(lo)}${gt !== undefined ? ']' : ')'}`;
    }
  } else if (!aboveLo) {
    return gt !== undefined ? `must be greater than ${fmt(gt)}` : `must be at least ${fmt(lo!)}`;
  } else if (!belowHi) {
    return lt !== undefined ? `must be less than ${fmt(lt)}` : `must be at most ${fmt(hi!)}`;
  }
  const listIn = list(r.in)?.map(conv);
  if (listIn !== undefined && listIn.length > 0 && !listIn.some((x) => x !== undefined && !(cur < x || cur > x))) {
    return `must be one of ${listIn.map((x) => (x === undefined ? '?' : fmt(x))).join(', ')}`;
  }
  const notIn = list(r.not_in)?.map(conv);
  if (notIn !== undefined && notIn.some((x) => x !== undefined && !(cur < x || cur > x))) {
    return `must not be ${fmt(cur)}`;
  }
  return undefined;
}

const HEADER_NAME_STRICT_RE = /^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$/;
// RFC 7230 §3.2 field-value: visible characters, SP and HTAB, no other controls.
const HEADER_VALUE_STRICT_RE = /^[^\u0000-\u0008\u000A-\u001F\u007F]*$/;
// validate.proto well_known_regex with strict = false: "only checks that the value has no \r\n\0".
const HEADER_LOOSE_RE = /^[^\u0000\u000A\u000D]*$/;

const patternCache = new Map<string, RegExp | null>();

function compiledPattern(pattern: string): RegExp | null {
  let re = patternCache.get(pattern);
  if (re === undefined) {
    try {
      re = new RegExp(pattern, 'u');
    } catch {
      // An RE2 construct JavaScript can't compile; skip the check rather than reject valid config.
      re = null;
    }
    patternCache.set(pattern, re);
  }
  return re;
}

function stringProblem(s: string, r: Rules): string | undefined {
  if (r.ignore_empty === true && s === '') return undefined;
  if (typeof r.const === 'string' && s !== r.const) return `must equal ${JSON.stringify(r.const)}`;
  const chars = [...s].length;
  const bytes = Buffer.byteLength(s, 'utf8');
  const len = num(r.len);
  if (len !== undefined && chars !== len) return `must be exactly ${len} characters long`;
  const minLen = num(r.min_len);
  if (minLen !== undefined && chars < minLen) return minLen === 1 ? 'must not be empty' : `must be at least ${minLen} characters long`;
  const maxLen = num(r.max_len);
  if (maxLen !== undefined && chars > maxLen) return `must be at most ${maxLen} characters long`;
  const minBytes = num(r.min_bytes);
  if (minBytes !== undefined && bytes < minBytes) return `must be at least ${minBytes} bytes long`;
  const maxBytes = num(r.max_bytes);
  if (maxBytes !== undefined && bytes > maxBytes) return `must be at most ${maxBytes} bytes long`;
  if (typeof r.prefix === 'string' && !s.startsWith(r.prefix)) return `must start with ${JSON.stringify(r.prefix)}`;
  if (typeof r.suffix === 'string' && !s.endsWith(r.suffix)) return `must end with ${JSON.stringify(r.suffix)}`;
  if (typeof r.contains === 'string' && !s.includes(r.contains)) return `must contain ${JSON.stringify(r.contains)}`;
  if (typeof r.not_contains === 'string' && s.includes(r.not_contains)) return `must not contain ${JSON.stringify(r.not_contains)}`;
  const listIn = list(r.in);
  if (listIn !== undefined && listIn.length > 0 && !listIn.includes(s)) return `must be one of ${listIn.map((x) => JSON.stringify(x)).join(', ')}`;
  if (list(r.not_in)?.includes(s)) return `must not be ${JSON.stringify(s)}`;
  if (typeof r.pattern === 'string') {
    const re = compiledPattern(r.pattern);
    if (re !== null && !re.test(s)) return `must match the pattern ${r.pattern}`;
  }
  if (r.well_known_regex === 'HTTP_HEADER_NAME' || r.well_known_regex === 1) {
    if (r.strict === false ? !HEADER_LOOSE_RE.test(s) : !HEADER_NAME_STRICT_RE.test(s)) {
      return r.strict === false ? 'must not contain NUL, CR or LF' : 'must be a valid HTTP header name';
    }
  } else if (r.well_known_regex === 'HTTP_HEADER_VALUE' || r.well_known_regex === 2) {
    if (r.strict === false ? !HEADER_LOOSE_RE.test(s) : !HEADER_VALUE_STRICT_RE.test(s)) {
      return r.strict === false ? 'must not contain NUL, CR or LF' : 'must be a valid HTTP header value';
    }
  }
  return undefined;
}

function bytesProblem(b: Buffer, r: Rules): string | undefined {
  if (r.ignore_empty === true && b.length === 0) return undefined;
  const len = num(r.len);
  if (len !== undefined && b.length !== len) return `must be exactly ${len} bytes long`;
  const minLen = num(r.min_len);
  if (minLen !== undefined && b.length < minLen) return minLen === 1 ? 'must not be empty' : `must be at least ${minLen} bytes long`;
  const maxLen = num(r.max_len);
  if (maxLen !== undefined && b.length > maxLen) return `must be at most ${maxLen} bytes long`;
  return undefined;
}

function scalarProblem(kind: ScalarKind, r: Rules | undefined, v: unknown): string | undefined {
  if (r === undefined) return undefined;
  switch (kind) {
    case 'string':
      return stringProblem(typeof v === 'string' ? v : '', r);
    case 'bytes':
      return bytesProblem(Buffer.isBuffer(v) ? v : Buffer.alloc(0), r);
    case 'bool':
      if (typeof r.const === 'boolean' && (v === true) !== r.const) return `must be ${r.const}`;
      return undefined;
    default: {
      if (r.ignore_empty === true && (v === undefined || v === 0 || v === '0')) return undefined;
      const big = IS_64_BIT.has(kind);
      const cur = toComparable(v ?? 0, big) ?? 0;
      return rangeProblem(cur, r, (x) => toComparable(x, big), String);
    }
  }
}

/** Checks one value (a singular field, or one item of a repeated field) against its PGV rules. */
function checkSingle(vt: ValueType, rules: Rules, value: unknown, isSet: boolean): string | undefined {
  if (vt.scalar !== undefined) return scalarProblem(vt.scalar, sub(rules, vt.scalar), value);
  if (vt.enumType !== undefined) {
    const r = sub(rules, 'enum');
    if (r === undefined) return undefined;
    const type = vt.enumType;
    const n = value === undefined ? 0 : typeof value === 'string' ? type.values[value] : Number(value);
    if (r.defined_only === true && type.valuesById[n] === undefined) {
      return `expected one of ${Object.keys(type.values).join(', ')}, got ${n}`;
    }
    return rangeProblem(n, r, (x) => (typeof x === 'string' ? type.values[x] : toComparable(x, false)), (x) => type.valuesById[Number(x)] ?? String(x));
  }
  const type = vt.messageType!;
  const wellKnown = WELL_KNOWN.get(type.fullName);
  if (!isSet) {
    for (const key of ['message', 'duration', 'timestamp', 'any'] as const) {
      if (sub(rules, key)?.required === true) return 'is required';
    }
    return undefined;
  }
  if (wellKnown === 'duration') {
    const r = sub(rules, 'duration');
    const cur = durationNanos(value);
    if (r === undefined || cur === undefined) return undefined;
    return rangeProblem(cur, r, durationNanos, (x) => formatDuration(BigInt(x)));
  }
  if (wellKnown === 'timestamp') {
    const r = sub(rules, 'timestamp');
    const cur = durationNanos(value);
    if (r === undefined || cur === undefined) return undefined;
    return rangeProblem(cur, r, durationNanos, (x) => formatTimestamp(BigInt(x)));
  }
  if (wellKnown === 'any') {
    const r = sub(rules, 'any');
    const url = isObject(value) && typeof value.type_url === 'string' ? value.type_url : '';
    if (r === undefined) return undefined;
    const listIn = list(r.in);
    if (listIn !== undefined && listIn.length > 0 && !listIn.includes(url)) return `must hold one of ${listIn.join(', ')}, not ${url}`;
    if (list(r.not_in)?.includes(url)) return `must not hold ${url}`;
    return undefined;
  }
  if (wellKnown === 'wrapper') {
    // PGV applies a wrapper field's rules (written for the wrapped scalar) to the wrapped value, when set.
    const inner = type.fieldsById[1];
    const kind = inner.type as ScalarKind;
    return scalarProblem(kind, sub(rules, kind), isObject(value) ? value[inner.name] : undefined);
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Encoding (config_dump).

function encodeMessageJson(info: TypeInfo, value: object): unknown {
  const v = value as Record<string, unknown>;
  switch (info.wellKnown) {
    case 'any':
      return encodeAny(v);
    case 'duration': {
      const nanos = durationNanos(v);
      return nanos === undefined ? undefined : formatDuration(nanos);
    }
    case 'timestamp': {
      const nanos = durationNanos(v);
      return nanos === undefined ? undefined : formatTimestamp(nanos);
    }
    case 'wrapper': {
      const inner = info.type.fieldsById[1];
      return encodeScalar(inner.type as ScalarKind, v[inner.name]);
    }
    case 'struct':
      return encodeStruct(info.type, v);
    case 'value':
      return encodeValue(info.type, v);
    case 'list':
      return encodeList(info.type, v);
    case 'fieldmask': {
      const paths = Array.isArray(v.paths) ? (v.paths as string[]) : [];
      return paths.map((p) => lowerCamel(p)).join(',');
    }
    default:
      break;
  }
  const out: Record<string, unknown> = {};
  for (const f of info.fields) {
    const fv = v[f.name];
    if (fv === undefined || fv === null) continue;
    if (f.isMap) {
      const entries = Object.entries(fv as Record<string, unknown>);
      if (entries.length === 0) continue;
      const m: Record<string, unknown> = {};
      for (const [k, item] of entries) m[k] = encodeSingle(f.vt, item);
      out[f.name] = m;
    } else if (f.isRepeated) {
      const items = fv as unknown[];
      if (items.length === 0) continue;
      out[f.name] = items.map((item) => encodeSingle(f.vt, item));
    } else {
      // A set oneof member (and a proto3 `optional` field) is written even at its default value: presence matters.
      if (f.oneof === undefined && isDefaultOutput(f.vt, fv)) continue;
      const e = encodeSingle(f.vt, fv);
      if (e !== undefined) out[f.name] = e;
    }
  }
  return out;
}

function isDefaultOutput(vt: ValueType, v: unknown): boolean {
  if (vt.messageType) return false;
  if (vt.enumType) return v === 0 || v === vt.enumType.valuesById[0];
  return v === '' || v === 0 || v === '0' || v === false || (Buffer.isBuffer(v) && v.length === 0) || (v instanceof Uint8Array && v.length === 0);
}

function encodeSingle(vt: ValueType, v: unknown): unknown {
  if (vt.messageType) return encodeMessageJson(infoOf(vt.messageType), v as object);
  if (vt.enumType) return typeof v === 'number' ? (vt.enumType.valuesById[v] ?? v) : v;
  return encodeScalar(vt.scalar!, v);
}

function encodeScalar(kind: ScalarKind, v: unknown): unknown {
  switch (kind) {
    case 'bytes':
      return v instanceof Uint8Array ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') : String(v ?? '');
    case 'double':
    case 'float': {
      const n = Number(v);
      // Proto3 JSON writes the non-finite values as strings.
      return Number.isFinite(n) ? n : String(n);
    }
    case 'bool':
    case 'string':
      return v;
    default:
      // Proto3 JSON: 64-bit integers are strings (JavaScript numbers lose precision past 2^53); 32-bit are numbers.
      return IS_64_BIT.has(kind) ? String(v) : Number(v);
  }
}

function encodeAny(v: Record<string, unknown>): unknown {
  const url = typeof v.type_url === 'string' ? v.type_url : '';
  if (url === '') return undefined;
  const type = findTypeForUrl(url);
  if (type === undefined) throw new SloopError('SLOOP_ERR_XDS_UNKNOWN_TYPE', `unknown type URL "${url}" in an Any`);
  const bytes = v.value instanceof Uint8Array ? v.value : Buffer.alloc(0);
  const inner = type.toObject(type.decode(bytes), TO_OBJECT_OPTIONS);
  const info = infoOf(type);
  const encoded = encodeMessageJson(info, inner);
  if (info.wellKnown !== undefined) return { '@type': url, value: encoded };
  return { '@type': url, ...(encoded as Record<string, unknown>) };
}

function encodeStruct(type: protobuf.Type, v: Record<string, unknown>): unknown {
  const valueType = type.fieldsById[1].resolvedType as protobuf.Type;
  const fields = (v[type.fieldsById[1].name] ?? {}) as Record<string, Record<string, unknown>>;
  const out: Record<string, unknown> = {};
  for (const [k, item] of Object.entries(fields)) out[k] = encodeValue(valueType, item);
  return out;
}

function encodeList(type: protobuf.Type, v: Record<string, unknown>): unknown {
  const valueType = type.fieldsById[1].resolvedType as protobuf.Type;
  const values = (v[type.fieldsById[1].name] ?? []) as Record<string, unknown>[];
  return values.map((item) => encodeValue(valueType, item));
}

function encodeValue(type: protobuf.Type, v: Record<string, unknown>): unknown {
  const byId = type.fieldsById;
  if (v[byId[3].name] !== undefined) return v[byId[3].name];
  if (v[byId[2].name] !== undefined) return v[byId[2].name];
  if (v[byId[4].name] !== undefined) return v[byId[4].name];
  const struct = v[byId[5].name];
  if (isObject(struct)) return encodeStruct(byId[5].resolvedType as protobuf.Type, struct);
  const list = v[byId[6].name];
  if (isObject(list)) return encodeList(byId[6].resolvedType as protobuf.Type, list);
  return null;
}

/** Proto3 JSON Duration: "generated output always contains 0, 3, 6, or 9 fractional digits". */
function formatDuration(totalNanos: bigint): string {
  const negative = totalNanos < 0n;
  const abs = negative ? -totalNanos : totalNanos;
  return `${negative ? '-' : ''}${abs / NANOS_PER_SECOND}${fraction(abs % NANOS_PER_SECOND)}s`;
}

/** Proto3 JSON Timestamp: RFC 3339, "Z"-normalized, 0/3/6/9 fractional digits. */
function formatTimestamp(totalNanos: bigint): string {
  let seconds = totalNanos / NANOS_PER_SECOND;
  let nanos = totalNanos % NANOS_PER_SECOND;
  if (nanos < 0n) {
    nanos += NANOS_PER_SECOND;
    seconds -= 1n;
  }
  const iso = new Date(Number(seconds) * 1000).toISOString(); // YYYY-MM-DDTHH:MM:SS.000Z (years 0-9999)
  return `${iso.slice(0, 19)}${fraction(nanos)}Z`;
}

function fraction(nanos: bigint): string {
  if (nanos === 0n) return '';
  const digits = nanos.toString().padStart(9, '0');
  if (nanos % 1_000_000n === 0n) return '.' + digits.slice(0, 3);
  if (nanos % 1_000n === 0n) return '.' + digits.slice(0, 6);
  return '.' + digits;
}
