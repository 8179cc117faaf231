/**
 * The connection manager's request path normalization (HttpConnectionManager `normalize_path`, `merge_slashes`,
 * `path_with_escaped_slashes_action`), in Envoy's order (ConnectionManagerUtility::maybeNormalizePath):
 * 1. a `#` anywhere in :path rejects the request (400): RFC 3986 §3.5 / RFC 9112 §3.2 forbid a fragment in the
 *    request target, and Envoy rejects it by default (1.16.5+), whatever else is configured;
 * 2. escaped slashes (`%2F`, `%2f`, `%5C`, `%5c`): kept, refused (400), or unescaped to `/` and `\` and then
 *    redirected (307 to the resulting path) or forwarded;
 * 3. `normalize_path`: `\` → `/`, percent-encoded unreserved characters (ALPHA, DIGIT, `-`, `.`, `_`, `~`)
 *    decoded (`%61` → `a`, `%2e` → `.`), other escapes' hex digits upper-cased, characters a path may not carry
 *    (controls, space, `"`, `<`, `>`, `` ` ``, DEL, non-ASCII) percent-encoded, then RFC 3986 §5.2.4
 *    remove_dot_segments (`..` never climbs above `/`);
 * 4. `merge_slashes`: runs of `/` become one.
 * Only the path part is touched; the query string is kept byte for byte. The result is what route matching,
 * the HTTP filters and the upstream see.
 */

export type EscapedSlashesAction = 'KEEP_UNCHANGED' | 'REJECT_REQUEST' | 'UNESCAPE_AND_REDIRECT' | 'UNESCAPE_AND_FORWARD';

/** A connection manager's normalization settings; undefined in HcmConfig when everything is off. */
export interface PathNormalization {
  readonly normalize: boolean;
  readonly mergeSlashes: boolean;
  readonly escapedSlashes: EscapedSlashesAction;
}

/** What to do with the request. `path` is the new :path for `forward` and the Location for `redirect`. */
export interface NormalizeOutcome {
  readonly action: 'forward' | 'reject' | 'redirect';
  readonly path: string;
}

const REJECT: NormalizeOutcome = { action: 'reject', path: '' };

/** The settings of an HttpConnectionManager, or undefined when none applies (the request path is left alone). */
export function compilePathNormalization(cfg: {
  normalize_path: { value: boolean } | null;
  merge_slashes: boolean;
  path_with_escaped_slashes_action: string | number;
}): PathNormalization | undefined {
  const normalize = cfg.normalize_path?.value ?? false;
  const a = cfg.path_with_escaped_slashes_action;
  // IMPLEMENTATION_SPECIFIC_DEFAULT is KEEP_UNCHANGED in Envoy (runtime http_connection_manager.path_with_escaped_slashes_action).
  const escapedSlashes: EscapedSlashesAction =
    a === 'REJECT_REQUEST' || a === 2 ? 'REJECT_REQUEST' : a === 'UNESCAPE_AND_REDIRECT' || a === 3 ? 'UNESCAPE_AND_REDIRECT' : a === 'UNESCAPE_AND_FORWARD' || a === 4 ? 'UNESCAPE_AND_FORWARD' : 'KEEP_UNCHANGED';
  if (!normalize && !cfg.merge_slashes && escapedSlashes === 'KEEP_UNCHANGED') return undefined;
  return { normalize, mergeSlashes: cfg.merge_slashes, escapedSlashes };
}

/**
 * Normalizes a request's :path (origin-form, with query). `cfg` undefined applies only the fragment check.
 * Paths not starting with `/` (`*`, CONNECT's empty path) are left alone.
 */
export function normalizeRequestPath(fullPath: string, cfg: PathNormalization | undefined): NormalizeOutcome {
  if (fullPath.indexOf('#') !== -1) return REJECT;
  if (cfg === undefined || fullPath.charCodeAt(0) !== 0x2f) return { action: 'forward', path: fullPath };
  const q = fullPath.indexOf('?');
  let path = q < 0 ? fullPath : fullPath.slice(0, q);
  const query = q < 0 ? '' : fullPath.slice(q);
  let redirect = false;
  if (cfg.escapedSlashes !== 'KEEP_UNCHANGED') {
    const unescaped = unescapeSlashes(path);
    if (unescaped !== path) {
      if (cfg.escapedSlashes === 'REJECT_REQUEST') return REJECT;
      redirect = cfg.escapedSlashes === 'UNESCAPE_AND_REDIRECT';
      path = unescaped;
    }
  }
  if (cfg.normalize) path = canonicalPath(path);
  if (cfg.mergeSlashes) path = mergeSlashes(path);
  return { action: redirect ? 'redirect' : 'forward', path: path + query };
}

const ESCAPED_SLASH = /%(2f|5c)/gi;

/** `%2F`/`%2f` → `/`, `%5C`/`%5c` → `\` (Envoy's PathUtil::unescapeSlashes). */
export function unescapeSlashes(path: string): string {
  if (path.indexOf('%') === -1) return path;
  return path.replace(ESCAPED_SLASH, (m) => (m[1] === '2' ? '/' : '\\'));
}

/** Collapses runs of `/` (Envoy's PathUtil::mergeSlashes; query excluded by the caller). */
export function mergeSlashes(path: string): string {
  return path.indexOf('//') === -1 ? path : path.replace(/\/{2,}/g, '/');
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

function isUnreserved(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e;
}

/** Characters a canonical path carries percent-encoded. */
function mustEscape(c: number): boolean {
  return c <= 0x20 || c === 0x22 || c === 0x3c || c === 0x3e || c === 0x60 || c === 0x7f;
}

const HEX = '0123456789ABCDEF';

/**
 * `normalize_path`: character canonicalization then remove_dot_segments (see the file comment). The input is
 * the path without query and starts with `/`.
 */
export function canonicalPath(path: string): string {
  let s = '';
  let last = 0;
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    let rep: string | undefined;
    if (c === 0x5c) rep = '/';
    else if (c === 0x25) {
      const hi = i + 2 < path.length ? hexValue(path.charCodeAt(i + 1)) : -1;
      const lo = hi >= 0 ? hexValue(path.charCodeAt(i + 2)) : -1;
      if (lo >= 0) {
        const v = hi * 16 + lo;
        rep = isUnreserved(v) ? String.fromCharCode(v) : '%' + HEX[hi] + HEX[lo];
        s += path.slice(last, i) + rep;
        i += 2;
        last = i + 1;
        continue;
      }
    } else if (c > 0x7f) {
      // A UTF-16 run → its UTF-8 bytes, escaped.
      let j = i;
      while (j < path.length && path.charCodeAt(j) > 0x7f) j++;
      let enc = '';
      for (const b of Buffer.from(path.slice(i, j), 'utf8')) enc += '%' + HEX[b >> 4] + HEX[b & 15];
      s += path.slice(last, i) + enc;
      i = j - 1;
      last = j;
      continue;
    } else if (mustEscape(c)) rep = '%' + HEX[c >> 4] + HEX[c & 15];
    if (rep !== undefined) {
      s += path.slice(last, i) + rep;
      last = i + 1;
    }
  }
  s = last === 0 ? path : s + path.slice(last);
  return removeDotSegments(s);
}

/** RFC 3986 §5.2.4 for an absolute path (`/…`): `.` segments vanish, `..` removes the previous one. */
export function removeDotSegments(path: string): string {
  if (path.indexOf('.') === -1) return path;
  const parts = path.split('/');
  const out: string[] = [];
  for (let i = 1; i < parts.length; i++) {
    const seg = parts[i]!;
    const isLast = i === parts.length - 1;
    if (seg === '.') {
      if (isLast) out.push('');
    } else if (seg === '..') {
      out.pop();
      if (isLast) out.push('');
    } else out.push(seg);
  }
  return '/' + out.join('/');
}
