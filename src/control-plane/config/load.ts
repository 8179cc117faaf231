/**
 * Reads Istio/Kubernetes config from files and folders. The only module of config/ that touches the filesystem:
 * everything else takes text or documents.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, watch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import type { Diagnostic } from '../../shared/errors.ts';
import { parseDocuments } from './documents.ts';
import type { RawDocument } from './documents.ts';
import type { ConfigModel } from './model.ts';
import { validateDocuments } from './validate.ts';

/** File extensions read from folders. A file named explicitly is read whatever its extension. */
export const CONFIG_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

/** The result of reading config: the model of valid resources and every diagnostic. */
export interface LoadedConfig {
  model: ConfigModel;
  /** Syntax, schema and read problems, in file order. Any `error` means some resource was left out. */
  diagnostics: Diagnostic[];
  /** Files read, in the order read. */
  files: string[];
  /** Raw documents, for tools that need the text positions of resources the model left out. */
  documents: RawDocument[];
  /** sha256 of the files' names and contents: equal digests mean equal config. */
  digest: string;
}

/**
 * Lists config files: a file is taken as is; a folder is walked recursively for `.yaml`, `.yml`, `.json`,
 * skipping dot-files and dot-folders (editors' swap files, `.git`). Sorted by path within each folder.
 * Paths that cannot be read are diagnostics (`SLOOP_ERR_CONFIG_UNREADABLE`).
 */
export function listConfigFiles(paths: readonly string[]): { files: string[]; diagnostics: Diagnostic[] } {
  const files: string[] = [];
  const diagnostics: Diagnostic[] = [];
  const walk = (dir: string): void => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch (err) {
      diagnostics.push(unreadable(dir, err));
      return;
    }
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      if (e.name.startsWith('.')) continue;
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && CONFIG_EXTENSIONS.has(extname(e.name).toLowerCase())) files.push(p);
    }
  };
  for (const p of paths) {
    let isDir: boolean;
    try {
      isDir = statSync(p).isDirectory();
    } catch (err) {
      diagnostics.push(unreadable(p, err));
      continue;
    }
    if (isDir) walk(p);
    else files.push(p);
  }
  return { files, diagnostics };
}

type ParsedFile = ReturnType<typeof parseDocuments>;

/**
 * Parsed files by path, with the text they were parsed from: a reload re-parses only files whose text changed
 * (YAML parsing was ~8 % of a push's CPU at 1,000 files when one changed). Parsed documents are never mutated.
 */
export type ParseCache = Map<string, { text: string; parsed: ParsedFile; mtimeMs?: number; size?: number; statAt?: number }>;

/** How long after its last modification a file's stat is trusted to tell it unchanged (see loadConfig). */
const RACY_MS = 2_000;

/**
 * Reads, parses and validates config from files and folders (see {@link listConfigFiles}). Never throws for bad
 * config: problems come back as diagnostics.
 */
export function loadConfig(paths: readonly string[], cache?: ParseCache): LoadedConfig {
  const { files, diagnostics } = listConfigFiles(paths);
  const hash = createHash('sha256');
  const documents: RawDocument[] = [];
  for (const file of files) {
    let text: string;
    let parsed: ParsedFile | undefined;
    const hit = cache?.get(file);
    // With a cache, a file whose size and modification time are unchanged is not read again (editing one file of
    // a thousand re-reads one). As git's "racy clean" rule: a stat is trusted only if the file was last modified
    // well before it was taken (coarse mtime clocks could hide a same-size edit made in the same tick).
    let st: { mtimeMs: number; size: number } | undefined;
    try {
      st = cache !== undefined ? statSync(file) : undefined;
      if (hit !== undefined && st !== undefined && hit.statAt !== undefined && st.mtimeMs === hit.mtimeMs && st.size === hit.size && hit.mtimeMs + RACY_MS < hit.statAt) {
        text = hit.text;
        parsed = hit.parsed;
      } else {
        text = readFileSync(file, 'utf8');
        if (hit !== undefined && hit.text === text) parsed = hit.parsed;
      }
    } catch (err) {
      diagnostics.push(unreadable(file, err));
      continue;
    }
    hash.update(file).update('\0').update(text).update('\0');
    parsed ??= parseDocuments(text, file);
    // The stat taken before the read: if the file changed in between, its next stat differs and it is read again.
    cache?.set(file, { text, parsed, mtimeMs: st?.mtimeMs, size: st?.size, statAt: Date.now() });
    documents.push(...parsed.documents);
    diagnostics.push(...parsed.diagnostics);
  }
  if (cache !== undefined) {
    const present = new Set(files);
    for (const file of cache.keys()) if (!present.has(file)) cache.delete(file);
  }
  const validated = validateDocuments(documents);
  diagnostics.push(...validated.diagnostics);
  return { model: validated.model, diagnostics, files, documents, digest: hash.digest('hex') };
}

/**
 * Calls `onChange` on any filesystem change under `paths` (folders recursively). Events are raw and may repeat;
 * callers debounce. Returns a function that stops watching.
 */
export function watchConfigPaths(paths: readonly string[], onChange: () => void, onError: (err: Error) => void): () => void {
  const watchers: FSWatcher[] = [];
  for (const p of paths) {
    try {
      // A single file is watched through its folder: editors save by renaming over the file, which ends a watch
      // on the file's own inode.
      const isDir = statSync(p).isDirectory();
      const w = isDir
        ? watch(p, { recursive: true, persistent: false }, () => onChange())
        : watch(dirname(p), { persistent: false }, (_event, name) => {
            if (name === null || name === basename(p)) onChange();
          });
      w.on('error', onError);
      watchers.push(w);
    } catch (err) {
      onError(err as Error);
    }
  }
  return () => {
    for (const w of watchers) w.close();
  };
}

function unreadable(path: string, err: unknown): Diagnostic {
  return { severity: 'error', code: 'SLOOP_ERR_CONFIG_UNREADABLE', file: path, path: '', message: `cannot read: ${(err as Error).message}` };
}
