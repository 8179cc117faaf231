import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import protobuf from 'protobufjs';
import { envoyDescriptor, loadEnvoyProtos, rootFromDescriptor, type EnvoyDescriptor } from './protos.ts';

/** What the decoder and encoders read of a reflection object, as plain JSON. */
function shape(o: protobuf.ReflectionObject): unknown {
  let s: unknown = { kind: 'namespace' };
  if (o instanceof protobuf.Type) {
    s = {
      // Extension fields of google.protobuf.*Options come in another order; nothing reads those types.
      fields: o.fieldsArray
        .map((f) => [f.name, f.id, f.type, (f as { rule?: string }).rule, f.repeated, f.map, (f as unknown as { keyType?: string }).keyType, f.options, f.parsedOptions, f.partOf?.name, f.resolve().resolvedType?.fullName, f.defaultValue])
        .sort((a, b) => (a[1] as number) - (b[1] as number)),
      oneofs: o.oneofsArray.map((x) => [x.name, x.oneof, x.options, x.parsedOptions]),
      options: o.options,
    };
  } else if (o instanceof protobuf.Enum) {
    s = { values: o.values, options: o.options, valuesOptions: o.valuesOptions };
  } else if (o instanceof protobuf.Service) {
    s = { methods: Object.keys(o.methods) };
  }
  return JSON.parse(JSON.stringify(s)) as unknown;
}

function objects(r: protobuf.Root): Map<string, protobuf.ReflectionObject> {
  const out = new Map<string, protobuf.ReflectionObject>();
  const walk = (ns: protobuf.NamespaceBase): void => {
    for (const o of ns.nestedArray) {
      out.set(o.fullName, o);
      if (o instanceof protobuf.Namespace) walk(o);
    }
  };
  walk(r);
  return out;
}

describe('envoy descriptor (the build-time JSON dist runs load instead of the .proto files)', () => {
  it('gives the same types, fields, options and enum value options as parsing the .proto files', () => {
    const parsed = loadEnvoyProtos();
    const descriptor = JSON.parse(JSON.stringify(envoyDescriptor(parsed))) as EnvoyDescriptor;
    const fromJson = objects(rootFromDescriptor(descriptor));
    const fromProto = objects(parsed);
    assert.deepEqual([...fromJson.keys()].sort(), [...fromProto.keys()].sort());
    for (const [name, o] of fromProto) assert.deepEqual(shape(fromJson.get(name)!), shape(o), name);
  });
});
