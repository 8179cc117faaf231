/**
 * RE2 regular expressions on V8.
 *
 * Envoy evaluates every `safe_regex` with Google RE2 (type.matcher.v3.RegexMatcher): linear time, no
 * backreferences, no lookaround. We translate RE2 syntax to a JavaScript RegExp once, at config time,
 * and reject what RE2 would reject (or what we cannot express faithfully) with a SloopError.
 *
 * Engine choice: when Node runs with `--enable-experimental-regexp-engine`, V8 accepts the `l` flag and
 * runs the pattern on its linear-time (automaton) engine, so no route regex can backtrack
 * catastrophically, which is the property RE2 gives Envoy. The linear engine refuses some patterns
 * (the `i` and `u` flags, inline modifiers, large counted repetitions); those, and every pattern when the
 * flag is unavailable, run on the normal backtracking engine. Operators who accept untrusted regexes in
 * config should start the sidecar with that flag (or with
 * `--enable-experimental-regexp-engine-on-excessive-backtracks`, which makes V8 fall back to the linear
 * engine after too many backtracks). The price is speed: bench/route-match.bench.ts measures a regex
 * route at ~0.13 µs per match on the backtracking engine and ~1.5 µs on the linear one.
 *
 * Known differences kept on purpose: `\s`, `\w`, `\d` and `\b` use JavaScript's classes (`\s` also matches
 * `\v` and Unicode spaces); RE2 `(?U)` (ungreedy) and flags set mid-pattern are rejected.
 */
import { SloopError } from './errors.ts';

let linearEngine: boolean | undefined;

/** Whether V8's linear-time regexp engine (`l` flag) is usable in this process. Detected once. */
export function isLinearRegexEngineAvailable(): boolean {
  if (linearEngine === undefined) {
    try {
      new RegExp('a', 'l');
      linearEngine = true;
    } catch {
      linearEngine = false;
    }
  }
  return linearEngine;
}

/** Result of translating an RE2 pattern: JavaScript source, flags and number of capture groups. */
export interface Re2Translation {
  source: string;
  flags: string;
  captureGroups: number;
}

// JavaScript RegExp syntax characters: only these may be identity-escaped under the `u` flag.
const JS_SYNTAX = new Set(['^', '$', '\\', '.', '*', '+', '?', '(', ')', '[', ']', '{', '}', '|', '/']);

// RE2 POSIX classes ([[:alpha:]]), expanded to JavaScript class contents.
const POSIX_CLASSES: Record<string, string> = {
  alnum: '0-9A-Za-z',
  alpha: 'A-Za-z',
  ascii: '\\x00-\\x7f',
  blank: '\\t ',
  cntrl: '\\x00-\\x1f\\x7f',
  digit: '0-9',
  graph: '!-~',
  lower: 'a-z',
  print: ' -~',
  punct: '!-\\/:-@\\[-`{-~',
  space: '\\t\\n\\v\\f\\r ',
  upper: 'A-Z',
  word: '0-9A-Za-z_',
  xdigit: '0-9A-Fa-f',
};

// Unicode general categories JavaScript accepts unprefixed in \p{...}; anything else is an RE2 script name.
const GENERAL_CATEGORY = /^(?:C|Cc|Cf|Co|Cs|L|Ll|Lm|Lo|Lt|Lu|M|Mc|Me|Mn|N|Nd|Nl|No|P|Pc|Pd|Pe|Pf|Pi|Po|Ps|S|Sc|Sk|Sm|So|Z|Zl|Zp|Zs|Any)$/;

function unsupported(pattern: string, what: string): SloopError {
  return new SloopError('SLOOP_ERR_CONFIG_UNSUPPORTED', `regex ${JSON.stringify(pattern)}: ${what} is not supported by RE2`);
}

function invalid(pattern: string, what: string): SloopError {
  return new SloopError('SLOOP_ERR_CONFIG_INVALID', `invalid regex ${JSON.stringify(pattern)}: ${what}`);
}

function hexEscape(code: number): string {
  return code <= 0xff ? '\\x' + code.toString(16).padStart(2, '0') : '\\u' + code.toString(16).padStart(4, '0');
}

/** A literal character as JavaScript regex source, escaped when it is syntax. */
function literal(ch: string, inClass: boolean): string {
  if (JS_SYNTAX.has(ch) || (inClass && ch === '-')) return '\\' + ch;
  return ch;
}

/**
 * Translates RE2 syntax to JavaScript regex source. Throws SloopError `SLOOP_ERR_CONFIG_UNSUPPORTED` for
 * constructs RE2 does not have (backreferences, lookaround) or that cannot be expressed faithfully, and
 * `SLOOP_ERR_CONFIG_INVALID` for malformed patterns.
 */
export function translateRe2(pattern: string): Re2Translation {
  let out = '';
  let flags = '';
  let needsUnicode = false;
  let captureGroups = 0;
  let i = 0;
  const n = pattern.length;

  // RE2 flag groups `(?i)` at the very start apply to the whole pattern: map them to RegExp flags.
  while (i < n && pattern.startsWith('(?', i)) {
    const m = /^\(\?([imsU]+)\)/.exec(pattern.slice(i));
    if (!m) break;
    for (const f of m[1]!) {
      if (f === 'U') throw unsupported(pattern, 'the ungreedy flag (?U)');
      if (!flags.includes(f)) flags += f;
    }
    i += m[0].length;
  }

  let inClass = false;
  let classStart = 0; // index in `out` just after the class's `[` or `[^`
  while (i < n) {
    const ch = pattern[i]!;
    if (ch === '\\') {
      if (i + 1 >= n) throw invalid(pattern, 'trailing backslash');
      const e = pattern[i + 1]!;
      i += 2;
      if (e >= '1' && e <= '9') {
        // RE2: a lone non-zero digit is a backreference (unsupported); 2-3 octal digits are a char code.
        const oct = /^[0-7]{1,2}/.exec(pattern.slice(i));
        if (e > '7' || !oct) throw unsupported(pattern, `backreference \\${e}`);
        out += hexEscape(parseInt(e + oct[0], 8));
        i += oct[0].length;
      } else if (e === '0') {
        const oct = /^[0-7]{0,2}/.exec(pattern.slice(i))![0];
        out += hexEscape(parseInt('0' + oct, 8));
        i += oct.length;
      } else if (e === 'A' || e === 'z') {
        if (inClass) throw invalid(pattern, `\\${e} inside a character class`);
        if (flags.includes('m')) throw unsupported(pattern, `\\${e} together with (?m)`);
        out += e === 'A' ? '^' : '$';
      } else if (e === 'Q') {
        const end = pattern.indexOf('\\E', i);
        const lit = end < 0 ? pattern.slice(i) : pattern.slice(i, end);
        for (const c of lit) out += literal(c, inClass);
        i = end < 0 ? n : end + 2;
      } else if (e === 'E') {
        // A stray \E is ignored by RE2.
      } else if (e === 'p' || e === 'P') {
        let name: string;
        if (pattern[i] === '{') {
          const end = pattern.indexOf('}', i);
          if (end < 0) throw invalid(pattern, 'unterminated \\p{');
          name = pattern.slice(i + 1, end);
          i = end + 1;
        } else {
          if (i >= n) throw invalid(pattern, 'missing \\p class name');
          name = pattern[i]!;
          i += 1;
        }
        let negate = e === 'P';
        if (name.startsWith('^')) {
          negate = !negate;
          name = name.slice(1);
        }
        if (!/^[A-Za-z_]+$/.test(name)) throw invalid(pattern, `bad Unicode class ${name}`);
        const prop = GENERAL_CATEGORY.test(name) ? name : `Script=${name}`;
        out += `\\${negate ? 'P' : 'p'}{${prop}}`;
        needsUnicode = true;
      } else if (e === 'x') {
        if (pattern[i] === '{') {
          const end = pattern.indexOf('}', i);
          const hex = end < 0 ? '' : pattern.slice(i + 1, end);
          if (!/^[0-9A-Fa-f]{1,6}$/.test(hex) || parseInt(hex, 16) > 0x10ffff) throw invalid(pattern, 'bad \\x{...} escape');
          const code = parseInt(hex, 16);
          if (code > 0xffff) {
            out += `\\u{${hex}}`;
            needsUnicode = true;
          } else {
            out += hexEscape(code);
          }
          i = end + 1;
        } else {
          const hex = pattern.slice(i, i + 2);
          if (!/^[0-9A-Fa-f]{2}$/.test(hex)) throw invalid(pattern, 'bad \\x escape');
          out += '\\x' + hex;
          i += 2;
        }
      } else if ('dDsSwWtnrfv'.includes(e)) {
        out += '\\' + e;
      } else if (e === 'b' || e === 'B') {
        // Inside a class RE2 has no \b; outside it is a word boundary in both dialects.
        if (inClass) throw invalid(pattern, `\\${e} inside a character class`);
        out += '\\' + e;
      } else if (e === 'a') {
        out += '\\x07';
      } else if (e === 'C') {
        throw unsupported(pattern, '\\C (any byte)');
      } else if (e === 'Z') {
        throw unsupported(pattern, '\\Z');
      } else if (e === 'k' || e === 'g') {
        throw unsupported(pattern, `backreference \\${e}`);
      } else if (e.charCodeAt(0) < 0x80 && !/[A-Za-z0-9]/.test(e)) {
        // RE2 lets any ASCII punctuation be escaped; JavaScript's `u` mode only allows syntax characters.
        out += literal(e, inClass);
      } else {
        throw invalid(pattern, `unknown escape \\${e}`);
      }
      continue;
    }

    if (inClass) {
      if (ch === ']' && out.length > classStart) {
        inClass = false;
        out += ']';
        i += 1;
      } else if (ch === ']') {
        // RE2: `]` first in a class is a literal; in JavaScript `[]` is the empty class.
        out += '\\]';
        i += 1;
      } else if (ch === '[' && pattern[i + 1] === ':') {
        const end = pattern.indexOf(':]', i + 2);
        const name = end < 0 ? '' : pattern.slice(i + 2, end);
        if (name.startsWith('^')) throw unsupported(pattern, `negated POSIX class [:${name}:]`);
        const expansion = POSIX_CLASSES[name];
        if (expansion === undefined) throw invalid(pattern, `unknown POSIX class [:${name}:]`);
        out += expansion;
        i = end + 2;
      } else {
        out += ch === '[' ? '\\[' : ch;
        i += 1;
      }
      continue;
    }

    switch (ch) {
      case '[':
        inClass = true;
        out += '[';
        i += 1;
        if (pattern[i] === '^') {
          out += '^';
          i += 1;
        }
        classStart = out.length;
        break;
      case '(': {
        if (pattern[i + 1] !== '?') {
          captureGroups += 1;
          out += '(';
          i += 1;
          break;
        }
        const rest = pattern.slice(i + 2);
        const named = /^P?<([A-Za-z_][A-Za-z0-9_]*)>/.exec(rest);
        if (named) {
          captureGroups += 1;
          out += `(?<${named[1]}>`;
          i += 2 + named[0].length;
        } else if (rest.startsWith(':')) {
          out += '(?:';
          i += 3;
        } else if (/^(?:=|!|<=|<!)/.test(rest)) {
          throw unsupported(pattern, 'lookaround');
        } else if (rest.startsWith('P=') || rest.startsWith('P>')) {
          throw unsupported(pattern, 'named backreference');
        } else {
          const mod = /^([imsU]*)(?:-([imsU]*))?([:)])/.exec(rest);
          if (!mod) throw invalid(pattern, 'bad (? group');
          if (mod[3] === ')') throw unsupported(pattern, 'flags set in the middle of a pattern');
          if (`${mod[1]}${mod[2] ?? ''}`.includes('U')) throw unsupported(pattern, 'the ungreedy flag (?U)');
          // JavaScript regexp modifiers (?ims-ims:...) have RE2's meaning for a group.
          out += `(?${mod[0]}`;
          i += 2 + mod[0].length;
        }
        break;
      }
      case '{': {
        const rep = /^\{(\d+)(,(\d*))?\}/.exec(pattern.slice(i));
        if (rep) {
          // RE2 rejects counts above 1000 ("bad repetition operator").
          if (Number(rep[1]) > 1000 || (rep[3] !== undefined && rep[3] !== '' && Number(rep[3]) > 1000)) {
            throw invalid(pattern, `repetition count above 1000 in ${rep[0]}`);
          }
          if (rep[3] !== undefined && rep[3] !== '' && Number(rep[3]) < Number(rep[1])) {
            throw invalid(pattern, `bad repetition ${rep[0]}`);
          }
          out += rep[0];
          i += rep[0].length;
        } else {
          out += '\\{'; // RE2 reads a `{` that starts no repetition as a literal.
          i += 1;
        }
        break;
      }
      case '}':
      case ']':
        out += '\\' + ch;
        i += 1;
        break;
      case '/':
        out += '\\/';
        i += 1;
        break;
      default:
        out += ch;
        i += 1;
    }
  }
  if (inClass) throw invalid(pattern, 'missing ]');
  if (needsUnicode) flags += 'u';
  return { source: out, flags, captureGroups };
}

/**
 * Compiles an RE2 pattern to a RegExp. `anchored` makes it a full match (Envoy's RegexMatcher semantics:
 * the whole input must match); otherwise it finds matches anywhere (used by regex_rewrite).
 * `extraFlags` may add `g` (for global replace). Uses V8's linear-time engine when available (see file
 * header). Throws SloopError (`SLOOP_ERR_CONFIG_UNSUPPORTED` or `SLOOP_ERR_CONFIG_INVALID`).
 * The returned RegExp is shared config: callers must not rely on `lastIndex` across calls.
 */
export function compileRe2(pattern: string, anchored: boolean, extraFlags = ''): RegExp {
  const t = translateRe2(pattern);
  let source = t.source;
  let flags = t.flags;
  if (anchored) {
    // `(?m)` must not turn our own anchors into line anchors: scope it to the body with a modifier group.
    if (flags.includes('m')) {
      flags = flags.replace('m', '');
      source = `(?m:${source})`;
    }
    source = `^(?:${source})$`;
  }
  flags += extraFlags;
  if (isLinearRegexEngineAvailable()) {
    try {
      return new RegExp(source, flags + 'l');
    } catch {
      // The linear engine refuses this pattern (see file header); fall through to the normal engine.
    }
  }
  try {
    return new RegExp(source, flags);
  } catch (err) {
    throw new SloopError('SLOOP_ERR_CONFIG_INVALID', `invalid regex ${JSON.stringify(pattern)}: ${(err as Error).message}`, { cause: err });
  }
}

/** An RE2 `RegexMatchAndSubstitute` compiled for JavaScript's `String.prototype.replace`. */
export interface CompiledSubstitution {
  /** Global, unanchored: RE2::GlobalReplace replaces every non-overlapping match. */
  regex: RegExp;
  /** Replacement in JavaScript syntax (`$1`, `$&`, `$$`). */
  replacement: string;
}

/**
 * Compiles Envoy's regex + substitution (RE2 rewrite syntax: `\0`…`\9` capture groups, `\\` a backslash).
 * Throws SloopError `SLOOP_ERR_CONFIG_INVALID` when the substitution names a group the pattern lacks
 * (RE2::CheckRewriteString) or has a bad escape.
 */
export function compileSubstitution(pattern: string, substitution: string): CompiledSubstitution {
  const regex = compileRe2(pattern, false, 'g');
  const groups = translateRe2(pattern).captureGroups;
  let replacement = '';
  for (let i = 0; i < substitution.length; i++) {
    const ch = substitution[i]!;
    if (ch === '$') {
      replacement += '$$';
    } else if (ch !== '\\') {
      replacement += ch;
    } else {
      const next = substitution[i + 1];
      i += 1;
      if (next === '\\') {
        replacement += '\\';
      } else if (next !== undefined && next >= '0' && next <= '9') {
        const g = Number(next);
        if (g > groups) {
          throw new SloopError('SLOOP_ERR_CONFIG_INVALID', `substitution ${JSON.stringify(substitution)} refers to \\${g} but the regex has ${groups} capture group(s)`);
        }
        // `$<n>` could run into a following digit (`\1` then `0`); `$0n` with two digits cannot.
        replacement += g === 0 ? '$&' : `$${String(g).padStart(2, '0')}`;
      } else {
        throw new SloopError('SLOOP_ERR_CONFIG_INVALID', `substitution ${JSON.stringify(substitution)}: invalid rewrite escape \\${next ?? ''}`);
      }
    }
  }
  return { regex, replacement };
}

/** Applies a compiled substitution to every match in `input`. */
export function substitute(s: CompiledSubstitution, input: string): string {
  return input.replace(s.regex, s.replacement);
}
