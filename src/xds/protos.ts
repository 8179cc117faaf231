/**
 * The Envoy v3 API as protobufjs reflection, loaded from the .proto files that @grpc/grpc-js-xds ships
 * (envoy-api, xds, googleapis, protoc-gen-validate). One Root per process, loaded on first use.
 * Field names keep proto case (snake_case), as Envoy's YAML does and as the generated types in gen/ do.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const require = createRequire(import.meta.url);

/** Folders that hold Envoy's protos and their imports, in search order. */
export function protoIncludeDirs(): string[] {
  const deps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
  const dirs = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(deps, d));
  // protobufjs ships google/protobuf/descriptor.proto (for custom options); the well-known types are built in.
  dirs.push(dirname(require.resolve('protobufjs/package.json')));
  return dirs;
}

/** Root .proto files (their imports come along). Kept in one JSON file shared with the type generator. */
export const PROTO_FILES: readonly string[] = (
  JSON.parse(readFileSync(new URL('./proto-files.json', import.meta.url), 'utf8')) as { files: string[] }
).files;

/** Options for `Type.toObject` that give the shape of the generated `__Output` types. */
export const TO_OBJECT_OPTIONS: protobuf.IConversionOptions = {
  longs: String,
  enums: String,
  bytes: Buffer as unknown as typeof String,
  defaults: true,
  oneofs: true,
  arrays: true,
  objects: true,
};

let root: protobuf.Root | undefined;

/**
 * The descriptor `node scripts/build.mjs` writes beside the compiled module (dist/src/xds/): the Root as
 * protobufjs JSON plus what protobufjs' JSON round trip loses and the validation reads (fields' and oneofs'
 * `parsedOptions`, enums' `valuesOptions`). A dist run loads it instead of parsing ~1.3 MB of `.proto` text:
 * less start-up garbage and no retained sources (docs/performance.md, "Memory"). Runs from src/ have no such
 * file and parse the `.proto` files.
 */
const DESCRIPTOR_URL = new URL('./envoy-descriptor.json', import.meta.url);

type ReflectedOptions = NonNullable<protobuf.ReflectionObject['parsedOptions']>;

/** Per type or enum full name, what `Root.fromJSON` does not restore (only entries that have some). */
type DescriptorExtras = Record<string, {
  fields?: Record<string, unknown[]>;
  oneofs?: Record<string, unknown[]>;
  valuesOptions?: protobuf.Enum['valuesOptions'];
}>;

/** What `envoy-descriptor.json` holds. */
export interface EnvoyDescriptor {
  root: protobuf.INamespace;
  extras: DescriptorExtras;
}

/** The shared protobufjs Root with every Envoy type Sloop knows. */
export function envoyRoot(): protobuf.Root {
  if (root) return root;
  const descriptor = fileURLToPath(DESCRIPTOR_URL);
  root = existsSync(descriptor) ? rootFromDescriptor(JSON.parse(readFileSync(descriptor, 'utf8')) as EnvoyDescriptor) : loadEnvoyProtos();
  return root;
}

/** Parses Envoy's `.proto` files (what runs from src/ use, and what the build's descriptor is made from). */
export function loadEnvoyProtos(): protobuf.Root {
  const dirs = protoIncludeDirs();
  const r = new protobuf.Root();
  r.resolvePath = (_origin, target) => {
    if (existsSync(target)) return target;
    for (const dir of dirs) {
      const p = join(dir, target);
      if (existsSync(p)) return p;
    }
    // google/protobuf/*.proto are built into protobufjs (common.ts); returning the bare name lets it use them.
    return target;
  };
  r.loadSync([...PROTO_FILES], { keepCase: true });
  r.resolveAll();
  return r;
}

/** protobufjs' parsedOptions (an array at run time, though declared as a record): set and not empty. */
function hasEntries(po: ReflectedOptions | undefined): po is ReflectedOptions & unknown[] {
  return Array.isArray(po) && po.length > 0;
}

/** The build-time descriptor of a loaded Root (scripts/build.mjs writes it as JSON). */
export function envoyDescriptor(r: protobuf.Root): EnvoyDescriptor {
  const extras: DescriptorExtras = {};
  const walk = (ns: protobuf.NamespaceBase): void => {
    for (const o of ns.nestedArray) {
      if (o instanceof protobuf.Type) {
        const entry: DescriptorExtras[string] = {};
        for (const f of o.fieldsArray) if (hasEntries(f.parsedOptions)) (entry.fields ??= {})[f.name] = f.parsedOptions;
        for (const one of o.oneofsArray) if (hasEntries(one.parsedOptions)) (entry.oneofs ??= {})[one.name] = one.parsedOptions;
        if (entry.fields || entry.oneofs) extras[o.fullName] = entry;
      } else if (o instanceof protobuf.Enum && o.valuesOptions !== undefined) {
        extras[o.fullName] = { valuesOptions: o.valuesOptions };
      }
      if (o instanceof protobuf.Namespace) walk(o);
    }
  };
  walk(r);
  return { root: r.toJSON(), extras };
}

/** A Root from the build-time descriptor (exported for the round-trip test). */
export function rootFromDescriptor(d: EnvoyDescriptor): protobuf.Root {
  const r = protobuf.Root.fromJSON(d.root);
  for (const [name, entry] of Object.entries(d.extras)) {
    if (entry.valuesOptions !== undefined) {
      r.lookupEnum(name).valuesOptions = entry.valuesOptions;
      continue;
    }
    const t = r.lookupType(name);
    for (const [n, po] of Object.entries(entry.fields ?? {})) t.fields[n]!.parsedOptions = po as unknown as ReflectedOptions;
    for (const [n, po] of Object.entries(entry.oneofs ?? {})) t.oneofs[n]!.parsedOptions = po as unknown as ReflectedOptions;
  }
  r.resolveAll();
  return r;
}

/** Full name of a message from its type URL: `type.googleapis.com/envoy.config.listener.v3.Listener`. */
export function typeNameOfUrl(typeUrl: string): string {
  const slash = typeUrl.lastIndexOf('/');
  return slash >= 0 ? typeUrl.slice(slash + 1) : typeUrl;
}

/** The reflected message type for a full name or type URL, or undefined if Sloop doesn't know it. */
export function lookupMessage(nameOrUrl: string): protobuf.Type | undefined {
  const name = typeNameOfUrl(nameOrUrl);
  const full = name.startsWith('.') ? name : '.' + name;
  try {
    // protobufjs resolves partial names ("Router" finds some *.Router): only an exact full name counts.
    const t = envoyRoot().lookupType(full);
    return t.fullName === full ? t : undefined;
  } catch {
    return undefined;
  }
}
