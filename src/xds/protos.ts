/**
 * The Envoy v3 API as protobufjs reflection, loaded from the .proto files that @grpc/grpc-js-xds ships
 * (envoy-api, xds, googleapis, protoc-gen-validate). One Root per process, loaded on first use.
 * Field names keep proto case (snake_case), as Envoy's YAML does and as the generated types in gen/ do.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
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

/** The shared protobufjs Root with every Envoy type Sloop knows. */
export function envoyRoot(): protobuf.Root {
  if (root) return root;
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
  root = r;
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
