/**
 * Loads the sidecar's Envoy v3 Bootstrap (`sloop proxy -c bootstrap.yaml`) the way Envoy's `-c` does: YAML or
 * JSON read with the proto3 JSON mapping (snake_case or lowerCamelCase names, unknown fields rejected), then
 * protoc-gen-validate rules and deprecation checks. Every problem is reported with file:line:col and field path.
 * A `.pb` file is read as a binary-encoded Bootstrap, as Envoy does; Envoy's `.pb_text` (text format) is not supported.
 */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseAllDocuments } from 'yaml';
import type { Document, Node, Pair } from 'yaml';
import { ConfigError, SloopError } from '../shared/errors.ts';
import type { Diagnostic } from '../shared/errors.ts';
import type { Bootstrap__Output } from '../xds/gen/envoy/config/bootstrap/v3/Bootstrap.ts';
import { decodeProtoJson, encodeProtoJson } from '../xds/proto-json.ts';
import type { JsonPath, SourcePosition, WhereFn } from '../xds/proto-json.ts';
import { lookupMessage, TO_OBJECT_OPTIONS } from '../xds/protos.ts';
import { formatJsonPath, validateOverloadManager } from './overload-manager.ts';

/** A decoded Bootstrap and the warnings (deprecated fields) found while loading it. */
export interface LoadedBootstrap {
  bootstrap: Bootstrap__Output;
  warnings: Diagnostic[];
}

const BOOTSTRAP_TYPE = 'envoy.config.bootstrap.v3.Bootstrap';

/**
 * Reads and decodes a bootstrap file (`.yaml`, `.yml`, `.json`, or binary `.pb`).
 * @throws SloopError `SLOOP_ERR_CONFIG_UNREADABLE` if the file can't be read, `SLOOP_ERR_CONFIG_UNSUPPORTED` for
 *   `.pb_text`, and `ConfigError`
 *   (`SLOOP_ERR_CONFIG_INVALID`, carrying every diagnostic) if it has errors.
 */
export function loadBootstrap(file: string): LoadedBootstrap {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    throw new SloopError('SLOOP_ERR_CONFIG_UNREADABLE', `cannot read bootstrap ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (extname(file) === '.pb') return decodeBinaryBootstrap(bytes, file);
  if (extname(file) === '.pb_text') {
    throw new SloopError('SLOOP_ERR_CONFIG_UNSUPPORTED', `cannot read bootstrap ${file}: protobuf text format is not supported; use YAML, JSON or binary .pb`);
  }
  return parseBootstrap(bytes.toString('utf8'), file);
}

/**
 * Decodes bootstrap text (YAML, or JSON, which is YAML too). `file` names the source in diagnostics.
 * @throws ConfigError (`SLOOP_ERR_CONFIG_INVALID`) listing every error: YAML syntax, more than one document,
 *   unknown or invalid fields, validation rules.
 */
export function parseBootstrap(text: string, file: string): LoadedBootstrap {
  const lineCounter = new LineCounter();
  // intAsBigInt keeps 64-bit integers exact; the decoder accepts bigints wherever it accepts numbers.
  const docs = parseAllDocuments(text, { lineCounter, intAsBigInt: true });
  const at = (offset: number): SourcePosition => {
    const p = lineCounter.linePos(offset);
    return { line: p.line, column: p.col };
  };
  const diagnostics: Diagnostic[] = [];
  const syntax = (severity: Diagnostic['severity'], offset: number, message: string) =>
    diagnostics.push({ severity, code: 'SLOOP_ERR_CONFIG_INVALID', file, ...at(offset), path: '', message });

  if (docs.length === 0) {
    syntax('error', 0, 'the bootstrap is empty');
    throw new ConfigError(diagnostics, 'bootstrap');
  }
  for (const doc of docs) {
    // The yaml package appends " at line L, column C:" and a source excerpt; the position is in the diagnostic.
    for (const e of doc.errors) syntax('error', e.pos[0], `YAML: ${firstLine(e.message)}`);
    for (const w of doc.warnings) syntax('warning', w.pos[0], `YAML: ${firstLine(w.message)}`);
  }
  if (docs.length > 1) {
    // Envoy reads exactly one document; a second one is almost always a concatenation mistake.
    syntax('error', docs[1].range[0], `expected one YAML document, found ${docs.length}`);
  }
  if (diagnostics.some((d) => d.severity === 'error')) throw new ConfigError(diagnostics, 'bootstrap');

  const doc = docs[0];
  if (doc.contents === null) {
    syntax('error', 0, 'the bootstrap is empty');
    throw new ConfigError(diagnostics, 'bootstrap');
  }
  const json: unknown = doc.toJS({ maxAliasCount: 1000 });
  const result = decodeProtoJson<Bootstrap__Output>(lookupMessage(BOOTSTRAP_TYPE)!, json, {
    file,
    where: yamlWhere(doc, at),
  });
  if (result.value !== undefined) {
    const where = yamlWhere(doc, at);
    for (const p of validateOverloadManager(result.value)) {
      result.diagnostics.push({ severity: p.severity, code: p.code, file, ...where(keysAsWritten(json, p.path)), path: formatJsonPath(p.path), message: p.message });
    }
  }
  // The decoder reports a message's rule violations after its fields; show everything in document order.
  diagnostics.push(...result.diagnostics.sort(byPosition));
  if (result.value === undefined || diagnostics.some((d) => d.severity === 'error')) throw new ConfigError(diagnostics, 'bootstrap');
  return { bootstrap: result.value, warnings: diagnostics };
}

/**
 * A snake_case field path as the document spells it: proto3 JSON allows lowerCamelCase names too, and the
 * YAML position lookup needs the key that is actually there.
 */
function keysAsWritten(json: unknown, path: JsonPath): JsonPath {
  const out: JsonPath = [];
  let cur = json;
  for (const seg of path) {
    let key: string | number = seg;
    if (typeof seg === 'string' && cur !== null && typeof cur === 'object' && !(seg in cur)) {
      const camel = seg.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
      if (camel in cur) key = camel;
    }
    out.push(key);
    cur = cur !== null && typeof cur === 'object' ? (cur as Record<string | number, unknown>)[key] : undefined;
  }
  return out;
}

/** Binary Bootstrap: decoded, then checked like YAML by validating its JSON form (positions are meaningless there). */
function decodeBinaryBootstrap(bytes: Buffer, file: string): LoadedBootstrap {
  const type = lookupMessage(BOOTSTRAP_TYPE)!;
  let json: unknown;
  try {
    json = encodeProtoJson(type, type.toObject(type.decode(bytes), TO_OBJECT_OPTIONS));
  } catch (err) {
    throw new ConfigError([{ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', file, path: '', message: `not a binary ${BOOTSTRAP_TYPE}: ${(err as Error).message}` }], 'bootstrap');
  }
  const result = decodeProtoJson<Bootstrap__Output>(type, json, { file });
  if (result.value === undefined) throw new ConfigError(result.diagnostics, 'bootstrap');
  for (const p of validateOverloadManager(result.value)) result.diagnostics.push({ severity: p.severity, code: p.code, file, path: formatJsonPath(p.path), message: p.message });
  if (result.diagnostics.some((d) => d.severity === 'error')) throw new ConfigError(result.diagnostics, 'bootstrap');
  return { bootstrap: result.value, warnings: result.diagnostics };
}

function byPosition(a: Diagnostic, b: Diagnostic): number {
  const last = Number.MAX_SAFE_INTEGER;
  return (a.line ?? last) - (b.line ?? last) || (a.column ?? last) - (b.column ?? last);
}

function firstLine(message: string): string {
  return message.split('\n', 1)[0].replace(/ at line \d+, column \d+:?$/, '');
}

type AnyNode = Node | Pair | null | undefined;

/**
 * Maps a JSON path to where it is in the YAML: a key's position for key problems and for values that are
 * collections (a block map starts on the next line, so its key is the clearer place), a scalar's own position
 * otherwise. A path that doesn't exist (a missing required field) maps to the nearest enclosing node that does.
 */
function yamlWhere(doc: Document.Parsed, at: (offset: number) => SourcePosition): WhereFn {
  const posOf = (n: AnyNode): SourcePosition | undefined => {
    const range = n !== null && n !== undefined && 'range' in n ? n.range : undefined;
    return range ? at(range[0]) : undefined;
  };
  const resolve = (n: AnyNode): AnyNode => (isAlias(n) ? (n.resolve(doc) as Node | undefined) : n);
  return (path: JsonPath, part = 'value') => {
    let node: AnyNode = doc.contents;
    let key: AnyNode = undefined;
    for (const seg of path) {
      const cur = resolve(node);
      let next: AnyNode = undefined;
      let nextKey: AnyNode = undefined;
      if (isMap(cur)) {
        const pair = cur.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
        if (pair !== undefined) {
          next = pair.value as AnyNode;
          nextKey = pair.key as AnyNode;
        }
      } else if (isSeq(cur) && typeof seg === 'number') {
        next = cur.items[seg] as AnyNode;
      }
      if (next === undefined && nextKey === undefined) {
        // Missing: point at the enclosing field.
        return posOf(key) ?? posOf(cur);
      }
      node = next;
      key = nextKey;
    }
    const target = resolve(node);
    if (part === 'key' || !isScalar(target)) return posOf(key) ?? posOf(target);
    return posOf(target) ?? posOf(key);
  };
}
