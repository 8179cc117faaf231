/**
 * The Reflect metadata API (`Reflect.defineMetadata`, `getMetadata`, `getOwnMetadata`) that @peculiar/x509's
 * dependency tsyringe demands at load time (its README: "Reflect Polyfill Required"). Only the three functions
 * tsyringe calls are provided, stored per target and property in WeakMaps; nothing is installed if a polyfill
 * (reflect-metadata, core-js) is already present. Import this module before `@peculiar/x509`.
 */
type MetadataTarget = object;
type PropertyKeyOrUndefined = string | symbol | undefined;

interface ReflectMetadata {
  defineMetadata(key: unknown, value: unknown, target: MetadataTarget, property?: string | symbol): void;
  getOwnMetadata(key: unknown, target: MetadataTarget, property?: string | symbol): unknown;
  getMetadata(key: unknown, target: MetadataTarget, property?: string | symbol): unknown;
}

const reflect = Reflect as typeof Reflect & Partial<ReflectMetadata>;

if (typeof reflect.getMetadata !== 'function') {
  const store = new WeakMap<MetadataTarget, Map<PropertyKeyOrUndefined, Map<unknown, unknown>>>();
  const bucket = (target: MetadataTarget, property: PropertyKeyOrUndefined, create: boolean): Map<unknown, unknown> | undefined => {
    let byProperty = store.get(target);
    if (!byProperty) {
      if (!create) return undefined;
      byProperty = new Map();
      store.set(target, byProperty);
    }
    let entries = byProperty.get(property);
    if (!entries && create) {
      entries = new Map();
      byProperty.set(property, entries);
    }
    return entries;
  };
  const getOwnMetadata = (key: unknown, target: MetadataTarget, property?: string | symbol): unknown => bucket(target, property, false)?.get(key);
  const api: ReflectMetadata = {
    defineMetadata(key, value, target, property) {
      bucket(target, property, true)!.set(key, value);
    },
    getOwnMetadata,
    getMetadata(key, target, property) {
      // Like reflect-metadata: walk the prototype chain until a value is found.
      for (let t: MetadataTarget | null = target; t !== null; t = Object.getPrototypeOf(t) as MetadataTarget | null) {
        const entries = bucket(t, property, false);
        if (entries?.has(key)) return entries.get(key);
      }
      return undefined;
    },
  };
  Object.assign(Reflect, api);
}

export {};
