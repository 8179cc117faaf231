/**
 * Envoy's header, string and query-parameter matchers (route_components.proto HeaderMatcher,
 * QueryParameterMatcher; type.matcher.v3.StringMatcher), compiled at config time into plain data so the
 * per-request check is a switch with no allocation (except `ignore_case` lowercasing and joining repeated
 * headers, both as Envoy does them).
 *
 * Headers are the flat `[name0, value0, name1, value1, …]` array with lowercased names. Pseudo-headers
 * (`:authority`, `:path`, `:method`, `:scheme`) are read from the request's own fields, so the array need
 * not carry them (Istio matches methods and authorities through `:method` / `:authority` HeaderMatchers).
 */
import type { HeaderMatcher__Output } from '../../../xds/gen/envoy/config/route/v3/HeaderMatcher.ts';
import type { QueryParameterMatcher__Output } from '../../../xds/gen/envoy/config/route/v3/QueryParameterMatcher.ts';
import type { StringMatcher__Output } from '../../../xds/gen/envoy/type/matcher/v3/StringMatcher.ts';
import type { Diagnostic } from '../../../shared/errors.ts';
import { SloopError } from '../../../shared/errors.ts';
import { compileRe2 } from './regex.ts';

/** What the router knows about a request. */
export interface RouteRequest {
  /** Host / :authority as received (matching lowercases it). */
  authority: string;
  /** :path as received, including the query string. */
  path: string;
  method: string;
  /** Flat `[name0, value0, …]`, names lowercased, in arrival order; repeated names appear repeatedly. */
  headers: string[];
  /** `http` or `https` (x-forwarded-proto / :scheme). */
  scheme: string;
  isTls: boolean;
  /**
   * Whether the downstream TLS peer presented / had validated a client certificate (RouteMatch
   * tls_context). Absent means no: the router fills these only when the listener has the information.
   */
  isPeerCertPresented?: boolean;
  isPeerCertValidated?: boolean;
}

/** Which request field a header name reads (0 = the headers array). */
export type PseudoHeader = 0 | 1 | 2 | 3 | 4;
const PSEUDO_NONE = 0;
const PSEUDO_AUTHORITY = 1;
const PSEUDO_PATH = 2;
const PSEUDO_METHOD = 3;
const PSEUDO_SCHEME = 4;

/** Maps a lowercased header name to the request field that holds it. */
export function pseudoHeaderOf(name: string): PseudoHeader {
  switch (name) {
    case ':authority':
      return PSEUDO_AUTHORITY;
    case ':path':
      return PSEUDO_PATH;
    case ':method':
      return PSEUDO_METHOD;
    case ':scheme':
      return PSEUDO_SCHEME;
    default:
      return PSEUDO_NONE;
  }
}

/**
 * Every value of header `name` joined with "," (Envoy matches on all values since CVE-2020-25017), or
 * undefined when absent. Allocates only when the header repeats.
 */
export function getHeaderJoined(headers: readonly string[], name: string): string | undefined {
  let v: string | undefined;
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] === name) v = v === undefined ? headers[i + 1]! : v + ',' + headers[i + 1]!;
  }
  return v;
}

/** The first value of header `name`, or undefined. */
export function getHeaderFirst(headers: readonly string[], name: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] === name) return headers[i + 1];
  }
  return undefined;
}

/** A header's (joined) value from a request, pseudo-headers included; `host` falls back to the authority. */
export function requestHeaderValue(req: RouteRequest, name: string, pseudo: PseudoHeader): string | undefined {
  switch (pseudo) {
    case PSEUDO_AUTHORITY:
      return req.authority;
    case PSEUDO_PATH:
      return req.path;
    case PSEUDO_METHOD:
      return req.method;
    case PSEUDO_SCHEME:
      return req.scheme;
    default: {
      const v = getHeaderJoined(req.headers, name);
      // HTTP/1 Host becomes :authority in Envoy, so a `host` matcher sees the authority.
      if (v === undefined && name === 'host' && req.authority !== '') return req.authority;
      return v;
    }
  }
}

const SM_EXACT = 0;
const SM_PREFIX = 1;
const SM_SUFFIX = 2;
const SM_CONTAINS = 3;
const SM_REGEX = 4;

/** A compiled type.matcher.v3.StringMatcher. */
export interface CompiledStringMatcher {
  kind: 0 | 1 | 2 | 3 | 4;
  /** The literal to compare with; lowercased when `ignoreCase`. */
  value: string;
  ignoreCase: boolean;
  regex: RegExp | undefined;
}

/** Collects diagnostics while compiling; `path` is the Envoy field path of the current object. */
export interface CompileSink {
  diagnostics: Diagnostic[];
}

/** Records a SloopError thrown by a compile step as an error diagnostic at `path`. */
export function diagnose(sink: CompileSink, path: string, err: unknown): void {
  if (err instanceof SloopError) {
    sink.diagnostics.push({ severity: 'error', code: err.code, path, message: err.message });
  } else {
    throw err;
  }
}

/** Compiles a regex at `path`, recording a diagnostic (and returning undefined) when it is rejected. */
export function compileRegexAt(sink: CompileSink, path: string, pattern: string, anchored: boolean): RegExp | undefined {
  try {
    return compileRe2(pattern, anchored);
  } catch (err) {
    diagnose(sink, path, err);
    return undefined;
  }
}

/** Compiles a StringMatcher; `path` names it (e.g. `…headers[0].string_match`). */
export function compileStringMatcher(sm: StringMatcher__Output, path: string, sink: CompileSink): CompiledStringMatcher {
  const ignoreCase = sm.ignore_case;
  const lit = (kind: 0 | 1 | 2 | 3, v: string): CompiledStringMatcher => ({ kind, value: ignoreCase ? v.toLowerCase() : v, ignoreCase, regex: undefined });
  switch (sm.match_pattern) {
    case 'exact':
      return lit(SM_EXACT, sm.exact ?? '');
    case 'prefix':
      return lit(SM_PREFIX, sm.prefix ?? '');
    case 'suffix':
      return lit(SM_SUFFIX, sm.suffix ?? '');
    case 'contains':
      return lit(SM_CONTAINS, sm.contains ?? '');
    case 'safe_regex':
      // Envoy: ignore_case has no effect on safe_regex.
      return { kind: SM_REGEX, value: '', ignoreCase: false, regex: compileRegexAt(sink, `${path}.safe_regex.regex`, sm.safe_regex?.regex ?? '', true) };
    default:
      sink.diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_UNSUPPORTED', path: `${path}.${sm.match_pattern ?? 'match_pattern'}`, message: `StringMatcher ${sm.match_pattern ?? '(unset)'} is not supported` });
      return { kind: SM_EXACT, value: '\u0000never', ignoreCase: false, regex: undefined };
  }
}

/** Whether `value` satisfies a compiled StringMatcher. */
export function matchString(m: CompiledStringMatcher, value: string): boolean {
  if (m.kind === SM_REGEX) return m.regex !== undefined && m.regex.test(value);
  const v = m.ignoreCase ? value.toLowerCase() : value;
  switch (m.kind) {
    case SM_EXACT:
      return v === m.value;
    case SM_PREFIX:
      return v.startsWith(m.value);
    case SM_SUFFIX:
      return v.endsWith(m.value);
    default:
      return v.includes(m.value);
  }
}

const HM_STRING = 0;
const HM_PRESENT = 1;
const HM_RANGE = 2;
const HM_LEGACY_EXACT = 3;

/** A compiled route.v3.HeaderMatcher. */
export interface CompiledHeaderMatcher {
  /** Lowercased header name. */
  name: string;
  pseudo: PseudoHeader;
  kind: 0 | 1 | 2 | 3;
  string: CompiledStringMatcher | undefined;
  /** present_match value. */
  present: boolean;
  rangeStart: number;
  rangeEnd: number;
  /** Legacy exact_match literal; empty matches any value (Envoy's HeaderMatchType::Value). */
  exact: string;
  invert: boolean;
  treatMissingAsEmpty: boolean;
}

/**
 * Compiles a HeaderMatcher. Legacy `exact_match`/`prefix_match`/`suffix_match`/`contains_match`/
 * `safe_regex_match` are folded into string matchers (case-sensitive), as Envoy does.
 */
export function compileHeaderMatcher(h: HeaderMatcher__Output, path: string, sink: CompileSink): CompiledHeaderMatcher {
  const name = h.name.toLowerCase();
  const m: CompiledHeaderMatcher = {
    name,
    pseudo: pseudoHeaderOf(name),
    kind: HM_PRESENT,
    string: undefined,
    present: true,
    rangeStart: 0,
    rangeEnd: 0,
    exact: '',
    invert: h.invert_match,
    treatMissingAsEmpty: h.treat_missing_header_as_empty,
  };
  const lit = (kind: 0 | 1 | 2 | 3, value: string): CompiledStringMatcher => ({ kind, value, ignoreCase: false, regex: undefined });
  switch (h.header_match_specifier) {
    case 'string_match':
      m.kind = HM_STRING;
      m.string = compileStringMatcher(h.string_match!, `${path}.string_match`, sink);
      break;
    case 'exact_match':
      m.kind = HM_LEGACY_EXACT;
      m.exact = h.exact_match ?? '';
      break;
    case 'prefix_match':
      m.kind = HM_STRING;
      m.string = lit(SM_PREFIX, h.prefix_match ?? '');
      break;
    case 'suffix_match':
      m.kind = HM_STRING;
      m.string = lit(SM_SUFFIX, h.suffix_match ?? '');
      break;
    case 'contains_match':
      m.kind = HM_STRING;
      m.string = lit(SM_CONTAINS, h.contains_match ?? '');
      break;
    case 'safe_regex_match':
      m.kind = HM_STRING;
      m.string = { kind: SM_REGEX, value: '', ignoreCase: false, regex: compileRegexAt(sink, `${path}.safe_regex_match.regex`, h.safe_regex_match?.regex ?? '', true) };
      break;
    case 'range_match': {
      m.kind = HM_RANGE;
      // Int64 as JS numbers: exact up to 2^53, which covers any header value a range is used for.
      m.rangeStart = Number(h.range_match?.start ?? 0);
      m.rangeEnd = Number(h.range_match?.end ?? 0);
      if (m.rangeEnd <= m.rangeStart) {
        sink.diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: `${path}.range_match`, message: `range [${m.rangeStart}, ${m.rangeEnd}) is empty` });
      }
      break;
    }
    case 'present_match':
      m.kind = HM_PRESENT;
      m.present = h.present_match ?? true;
      break;
    default:
      // No specifier: Envoy treats the matcher as a presence check.
      m.kind = HM_PRESENT;
      m.present = true;
  }
  return m;
}

// absl::SimpleAtoi accepts surrounding ASCII whitespace and a sign.
const INT_RE = /^\s*[+-]?\d+\s*$/;

/**
 * Envoy's HeaderUtility::matchHeaders for one matcher, given the header's joined value (undefined =
 * absent). An absent header (without treat_missing_header_as_empty) matches only a presence check that
 * wants absence, or an inverted presence check that wants presence; `invert_match` does not make other
 * matchers match a missing header.
 */
export function matchHeaderValue(m: CompiledHeaderMatcher, value: string | undefined): boolean {
  if (value === undefined) {
    if (!m.treatMissingAsEmpty) return m.kind === HM_PRESENT && (m.invert ? m.present : !m.present);
    value = '';
  }
  let ok: boolean;
  switch (m.kind) {
    case HM_STRING:
      ok = matchString(m.string!, value);
      break;
    case HM_LEGACY_EXACT:
      ok = m.exact === '' || value === m.exact;
      break;
    case HM_RANGE: {
      if (INT_RE.test(value)) {
        const n = Number(value);
        ok = n >= m.rangeStart && n < m.rangeEnd;
      } else {
        ok = false;
      }
      break;
    }
    default:
      ok = m.present;
  }
  return ok !== m.invert;
}

/** Whether every matcher accepts the request (route match `headers`; empty list matches). */
export function matchRequestHeaders(matchers: readonly CompiledHeaderMatcher[], req: RouteRequest): boolean {
  for (let i = 0; i < matchers.length; i++) {
    const m = matchers[i]!;
    if (!matchHeaderValue(m, requestHeaderValue(req, m.name, m.pseudo))) return false;
  }
  return true;
}

/**
 * Whether a flat header list satisfies the matchers. `any` selects OR (retriable_headers: retry if any
 * matches) instead of AND (retriable_request_headers, route headers).
 */
export function matchHeaderList(matchers: readonly CompiledHeaderMatcher[], headers: readonly string[], any: boolean): boolean {
  for (let i = 0; i < matchers.length; i++) {
    const m = matchers[i]!;
    const ok = matchHeaderValue(m, getHeaderJoined(headers, m.name));
    if (any && ok) return true;
    if (!any && !ok) return false;
  }
  return !any;
}

/** A compiled QueryParameterMatcher. */
export interface CompiledQueryParameterMatcher {
  name: string;
  /** undefined with `present` undefined: a bare presence check. */
  string: CompiledStringMatcher | undefined;
  present: boolean | undefined;
}

/** Compiles a QueryParameterMatcher. */
export function compileQueryParameterMatcher(q: QueryParameterMatcher__Output, path: string, sink: CompileSink): CompiledQueryParameterMatcher {
  if (q.query_parameter_match_specifier === 'string_match') {
    return { name: q.name, string: compileStringMatcher(q.string_match!, `${path}.string_match`, sink), present: undefined };
  }
  if (q.query_parameter_match_specifier === 'present_match') return { name: q.name, string: undefined, present: q.present_match ?? true };
  return { name: q.name, string: undefined, present: undefined };
}

/**
 * The first value of query parameter `name` in `path` (percent-decoded, as Envoy's
 * parseAndDecodeQueryString; keys are decoded only when they contain `%`), '' for a key without `=`, or
 * undefined. Scans in place: no parsing into a map, and allocates only the returned value.
 */
export function findQueryParameter(path: string, name: string): string | undefined {
  const q = path.indexOf('?');
  if (q < 0) return undefined;
  let end = path.indexOf('#', q);
  if (end < 0) end = path.length;
  let i = q + 1;
  while (i <= end) {
    let amp = path.indexOf('&', i);
    if (amp < 0 || amp > end) amp = end;
    let eq = path.indexOf('=', i);
    if (eq < 0 || eq > amp) eq = amp;
    const isMatch = eq - i === name.length ? path.startsWith(name, i) : path.lastIndexOf('%', eq - 1) >= i && percentDecode(path.slice(i, eq)) === name;
    if (isMatch) {
      if (eq === amp) return '';
      const raw = path.slice(eq + 1, amp);
      return raw.includes('%') ? percentDecode(raw) : raw;
    }
    i = amp + 1;
  }
  return undefined;
}

/** Envoy's PercentEncoding::decode: invalid sequences are kept as they are. */
export function percentDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s.replace(/%([0-9A-Fa-f]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
  }
}

/**
 * Envoy's QueryParameterMatcher (first value only): a missing parameter matches only `present_match:
 * false`; `present_match` compares presence; otherwise the string matcher decides.
 */
export function matchQueryParameters(matchers: readonly CompiledQueryParameterMatcher[], path: string): boolean {
  for (let i = 0; i < matchers.length; i++) {
    const m = matchers[i]!;
    const v = findQueryParameter(path, m.name);
    let ok: boolean;
    if (v === undefined) ok = m.present === false;
    else if (m.present !== undefined) ok = m.present;
    else ok = m.string === undefined || matchString(m.string, v);
    if (!ok) return false;
  }
  return true;
}
