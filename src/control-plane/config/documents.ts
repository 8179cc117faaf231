/**
 * YAML/JSON text → documents with the source position of every field. Pure (no filesystem): load.ts reads files
 * and hands their text here. Positions are kept per field path in Istio spelling (`spec.http[0].route[1]`), as
 * plain data, so every later stage (validation, analyzers, translation diagnostics) can name file:line:col.
 */
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseAllDocuments } from 'yaml';
import type { Document, Node } from 'yaml';
import type { Diagnostic } from '../../shared/errors.ts';

/** 1-based line and column. */
export interface SourcePosition {
  line: number;
  column: number;
}

/** One YAML document of a file: its JSON value and where each of its fields is. */
export interface RawDocument {
  file: string;
  /** 0-based index of the document in its file. */
  index: number;
  value: unknown;
  /** Where the document's content starts. */
  origin: SourcePosition;
  /**
   * Position of every field and list item, keyed by {@link formatPath}: a map entry is located at its key, a
   * list item at the item. `''` is the document itself.
   */
  positions: Readonly<Record<string, SourcePosition>>;
  /**
   * Literal block scalars (`key: |`) by field path: where their content's first line starts (the line after the
   * `|`, at the block's indentation). A position inside the string, line L column C, is at `line + L - 1`,
   * `column + C - 1` in the file: how YAML embedded in a string (the mesh config of the ConfigMap `istio`) gets
   * file positions.
   */
  blockScalars?: Readonly<Record<string, SourcePosition>>;
}

/** A segment of a field path: a map key or a list index. */
export type PathSegment = string | number;

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/**
 * Formats a path the way Istio's messages spell it: `spec.http[0].match[1].headers.end-user`. Keys that are not
 * plain words (label keys such as `app.kubernetes.io/name`) are quoted: `metadata.labels["app.kubernetes.io/name"]`.
 */
export function formatPath(path: readonly PathSegment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (PLAIN_KEY.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

/**
 * The position of `path` in a document, or of its nearest enclosing field that exists (a missing required field
 * is reported where its parent is).
 */
export function positionOf(doc: Pick<RawDocument, 'positions' | 'origin'>, path: readonly PathSegment[]): SourcePosition {
  for (let n = path.length; n >= 0; n--) {
    const p = doc.positions[formatPath(path.slice(0, n))];
    if (p !== undefined) return p;
  }
  return doc.origin;
}

/**
 * Splits text into documents. Empty documents (a trailing `---`, comments only) are skipped, as kubectl does.
 * YAML syntax errors are diagnostics (`SLOOP_ERR_CONFIG_INVALID`, no resource); a document with a syntax error
 * is not returned.
 */
export function parseDocuments(text: string, file: string): { documents: RawDocument[]; diagnostics: Diagnostic[] } {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: false });
  const at = (offset: number): SourcePosition => {
    const p = lineCounter.linePos(offset);
    return { line: p.line, column: p.col };
  };
  const diagnostics: Diagnostic[] = [];
  const documents: RawDocument[] = [];
  // parseAllDocuments returns an EmptyStream (not an array) for empty input.
  if (!Array.isArray(docs)) return { documents, diagnostics };
  docs.forEach((doc, index) => {
    let hasError = false;
    for (const e of doc.errors) {
      hasError = true;
      diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', file, ...at(e.pos[0]), path: '', message: `YAML: ${firstLine(e.message)}` });
    }
    if (hasError || doc.contents === null) return;
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 1000 });
    } catch (err) {
      diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', file, ...at(doc.range[0]), path: '', message: `YAML: ${(err as Error).message}` });
      return;
    }
    if (value === null || value === undefined) return;
    const origin = at(doc.contents.range?.[0] ?? doc.range[0]);
    const positions: Record<string, SourcePosition> = {};
    const blockScalars: Record<string, SourcePosition> = {};
    collectPositions(doc, doc.contents, [], positions, at, 0, { text, out: blockScalars });
    positions[''] = origin;
    documents.push({ file, index, value, origin, positions, ...(Object.keys(blockScalars).length > 0 ? { blockScalars } : {}) });
  });
  return { documents, diagnostics };
}

function collectPositions(
  doc: Document.Parsed,
  node: unknown,
  path: PathSegment[],
  out: Record<string, SourcePosition>,
  at: (offset: number) => SourcePosition,
  depth = 0,
  blocks?: { text: string; out: Record<string, SourcePosition> },
): void {
  // Aliases are followed once for positions of the alias site only; their content was positioned at the anchor.
  if (isAlias(node) || depth > 64) return;
  if (isMap(node)) {
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : undefined;
      if (key === undefined) continue;
      path.push(key);
      const range = (pair.key as Node).range ?? (pair.value as Node | null)?.range;
      if (range) out[formatPath(path)] = at(range[0]);
      if (blocks !== undefined && isScalar(pair.value) && pair.value.type === 'BLOCK_LITERAL' && pair.value.range) {
        const start = blockContentStart(blocks.text, pair.value.range[0], at);
        if (start !== undefined) blocks.out[formatPath(path)] = start;
      }
      collectPositions(doc, pair.value, path, out, at, depth + 1, blocks);
      path.pop();
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => {
      path.push(i);
      const range = (item as Node | null)?.range;
      if (range) out[formatPath(path)] = at(range[0]);
      collectPositions(doc, item, path, out, at, depth + 1, blocks);
      path.pop();
    });
  }
}

/**
 * Where a literal block scalar's content starts: the line after its `|` header, at the indentation of its first
 * non-blank line. Undefined for headers with an explicit indentation indicator (`|2`), where that guess is wrong.
 */
function blockContentStart(text: string, headerOffset: number, at: (offset: number) => SourcePosition): SourcePosition | undefined {
  const nl = text.indexOf('\n', headerOffset);
  if (nl < 0 || !/^\|[+-]?[ \t]*(#.*)?\r?$/.test(text.slice(headerOffset, nl))) return undefined;
  const first = at(nl + 1).line;
  const re = /(?:[ \t]*\r?\n)*( *)\S/y;
  re.lastIndex = nl + 1;
  const m = re.exec(text);
  if (m === null) return undefined;
  return { line: first, column: m[1].length + 1 };
}

function firstLine(message: string): string {
  return message.split('\n', 1)[0].replace(/ at line \d+, column \d+:?$/, '');
}
