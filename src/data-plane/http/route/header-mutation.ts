/**
 * Route header mutations: `request_headers_to_add/remove` and `response_headers_to_add/remove` at the
 * RouteConfiguration, VirtualHost, Route and WeightedCluster.ClusterWeight levels.
 *
 * Per level, Envoy's HeaderParser::evaluateHeaders order is kept: removals first (so remove-then-add
 * works as users expect), then every value is formatted against the headers as they are after the
 * removals, then overwrites are applied, then appends. Levels are chained by the route table
 * (route → virtual host → route configuration by default; reversed with
 * `most_specific_header_mutations_wins`), so a later level's OVERWRITE wins.
 *
 * Mutations operate IN PLACE on the flat `[name0, value0, …]` array (lowercased names): the router owns
 * that array for the request, and in-place edits avoid copying it at every level. Values are precompiled
 * into parts; a value without `%` operators is a plain string and costs nothing to format.
 *
 * Supported command operators (Envoy "Custom request/response headers"): %DOWNSTREAM_REMOTE_ADDRESS%,
 * %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%, %DOWNSTREAM_LOCAL_ADDRESS%,
 * %DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%, %PROTOCOL%, %REQ(name[?alt])[:maxlen]%, %UPSTREAM_REMOTE_ADDRESS%,
 * %HOSTNAME%, %START_TIME% (ISO 8601 with ms, UTC; also %START_TIME(%s)% for epoch seconds) and `%%`.
 * An operator with no value renders as the empty string (Envoy header formatters do not print `-`).
 */
import type { HeaderValueOption__Output } from '../../../xds/gen/envoy/config/core/v3/HeaderValueOption.ts';
import type { CompileSink } from './matchers.ts';
import { getHeaderJoined } from './matchers.ts';

/** Values the command operators read; built by the router per request (fields, not closures). */
export interface HeaderFormatContext {
  /** `ip:port` (`[v6]:port` for IPv6). */
  downstreamRemoteAddress: string;
  downstreamLocalAddress: string;
  /** `HTTP/1.0`, `HTTP/1.1`, `HTTP/2`, `HTTP/3`. */
  protocol: string;
  /** Upstream host `ip:port`, once known ('' before). */
  upstreamRemoteAddress: string;
  hostname: string;
  /** Request start, ms since the epoch (injected clock). */
  startTimeMs: number;
  /** The request's headers, for %REQ()% (also when mutating response headers). */
  requestHeaders: readonly string[];
}

const OP_LITERAL = 0;
const OP_DOWNSTREAM_REMOTE = 1;
const OP_DOWNSTREAM_REMOTE_NO_PORT = 2;
const OP_DOWNSTREAM_LOCAL = 3;
const OP_DOWNSTREAM_LOCAL_NO_PORT = 4;
const OP_PROTOCOL = 5;
const OP_REQ = 6;
const OP_UPSTREAM_REMOTE = 7;
const OP_HOSTNAME = 8;
const OP_START_TIME = 9;
const OP_START_TIME_SECONDS = 10;

/** One piece of a formatted header value. */
export interface FormatPart {
  op: number;
  /** Literal text (OP_LITERAL) or the header name (OP_REQ). */
  text: string;
  /** OP_REQ fallback header name ('' = none). */
  alt: string;
  /** Truncate to this many characters (-1 = no limit). */
  maxLength: number;
}

/** A precompiled header value: a plain string, or parts with operators. */
export type CompiledValue = string | readonly FormatPart[];

const APPEND_IF_EXISTS_OR_ADD = 0;
const ADD_IF_ABSENT = 1;
const OVERWRITE_IF_EXISTS_OR_ADD = 2;
const OVERWRITE_IF_EXISTS = 3;

/** One header to add. */
export interface CompiledHeaderAdd {
  /** Lowercased. */
  key: string;
  value: CompiledValue;
  /** 0 APPEND_IF_EXISTS_OR_ADD, 1 ADD_IF_ABSENT, 2 OVERWRITE_IF_EXISTS_OR_ADD, 3 OVERWRITE_IF_EXISTS. */
  action: 0 | 1 | 2 | 3;
  keepEmptyValue: boolean;
}

/** One level's mutation (one RouteConfiguration, VirtualHost, Route or ClusterWeight, one direction). */
export interface CompiledHeaderMutation {
  /** Lowercased names whose every occurrence is removed. */
  remove: readonly string[];
  add: readonly CompiledHeaderAdd[];
}

const APPEND_ACTIONS: Record<string, 0 | 1 | 2 | 3> = {
  APPEND_IF_EXISTS_OR_ADD,
  ADD_IF_ABSENT,
  OVERWRITE_IF_EXISTS_OR_ADD,
  OVERWRITE_IF_EXISTS,
};

const SIMPLE_OPS: Record<string, number> = {
  DOWNSTREAM_REMOTE_ADDRESS: OP_DOWNSTREAM_REMOTE,
  DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT: OP_DOWNSTREAM_REMOTE_NO_PORT,
  DOWNSTREAM_LOCAL_ADDRESS: OP_DOWNSTREAM_LOCAL,
  DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT: OP_DOWNSTREAM_LOCAL_NO_PORT,
  PROTOCOL: OP_PROTOCOL,
  UPSTREAM_REMOTE_ADDRESS: OP_UPSTREAM_REMOTE,
  HOSTNAME: OP_HOSTNAME,
  START_TIME: OP_START_TIME,
};

/**
 * Parses a header value with command operators into parts. Returns the plain string when it has none.
 * Throws an Error with a readable message for an unknown or malformed operator.
 */
export function compileHeaderValue(value: string): CompiledValue {
  if (!value.includes('%')) return value;
  const parts: FormatPart[] = [];
  let lit = '';
  let i = 0;
  while (i < value.length) {
    const ch = value[i]!;
    if (ch !== '%') {
      lit += ch;
      i += 1;
      continue;
    }
    if (value[i + 1] === '%') {
      lit += '%';
      i += 2;
      continue;
    }
    // An operator runs to the next `%` that is not inside its (...) argument (START_TIME(%s) has one).
    let j = i + 1;
    let depth = 0;
    while (j < value.length && !(value[j] === '%' && depth === 0)) {
      if (value[j] === '(') depth += 1;
      else if (value[j] === ')') depth -= 1;
      j += 1;
    }
    if (j >= value.length) throw new Error(`unterminated command operator in ${JSON.stringify(value)}`);
    const body = value.slice(i + 1, j);
    if (lit !== '') {
      parts.push({ op: OP_LITERAL, text: lit, alt: '', maxLength: -1 });
      lit = '';
    }
    parts.push(parseOperator(body, value));
    i = j + 1;
  }
  if (lit !== '') parts.push({ op: OP_LITERAL, text: lit, alt: '', maxLength: -1 });
  // Only `%%` escapes: still a plain string.
  if (parts.every((p) => p.op === OP_LITERAL)) return parts.map((p) => p.text).join('');
  return parts;
}

function parseOperator(body: string, whole: string): FormatPart {
  const simple = SIMPLE_OPS[body];
  if (simple !== undefined) return { op: simple, text: '', alt: '', maxLength: -1 };
  if (body === 'START_TIME(%s)') return { op: OP_START_TIME_SECONDS, text: '', alt: '', maxLength: -1 };
  const req = /^REQ\(([^)?]+)(?:\?([^)]+))?\)(?::(\d+))?$/.exec(body);
  if (req) {
    return { op: OP_REQ, text: req[1]!.toLowerCase(), alt: (req[2] ?? '').toLowerCase(), maxLength: req[3] === undefined ? -1 : Number(req[3]) };
  }
  throw new Error(`unsupported command operator %${body}% in ${JSON.stringify(whole)}`);
}

/** Strips `:port` from `ip:port` / `[v6]:port`, returning the bare address (IPv6 without brackets). */
export function addressWithoutPort(addr: string): string {
  if (addr.startsWith('[')) {
    const end = addr.indexOf(']');
    return end < 0 ? addr : addr.slice(1, end);
  }
  const colon = addr.lastIndexOf(':');
  // A bare IPv6 address has several colons and no port.
  return colon < 0 || addr.indexOf(':') !== colon ? addr : addr.slice(0, colon);
}

function partValue(p: FormatPart, ctx: HeaderFormatContext): string {
  let v: string;
  switch (p.op) {
    case OP_LITERAL:
      return p.text;
    case OP_DOWNSTREAM_REMOTE:
      return ctx.downstreamRemoteAddress;
    case OP_DOWNSTREAM_REMOTE_NO_PORT:
      return addressWithoutPort(ctx.downstreamRemoteAddress);
    case OP_DOWNSTREAM_LOCAL:
      return ctx.downstreamLocalAddress;
    case OP_DOWNSTREAM_LOCAL_NO_PORT:
      return addressWithoutPort(ctx.downstreamLocalAddress);
    case OP_PROTOCOL:
      return ctx.protocol;
    case OP_UPSTREAM_REMOTE:
      return ctx.upstreamRemoteAddress;
    case OP_HOSTNAME:
      return ctx.hostname;
    case OP_START_TIME:
      return new Date(ctx.startTimeMs).toISOString();
    case OP_START_TIME_SECONDS:
      return String(Math.floor(ctx.startTimeMs / 1000));
    default: {
      v = getHeaderJoined(ctx.requestHeaders, p.text) ?? (p.alt !== '' ? getHeaderJoined(ctx.requestHeaders, p.alt) : undefined) ?? '';
      return p.maxLength >= 0 && v.length > p.maxLength ? v.slice(0, p.maxLength) : v;
    }
  }
}

/** Renders a compiled value. Plain strings are returned as is. */
export function formatHeaderValue(value: CompiledValue, ctx: HeaderFormatContext): string {
  if (typeof value === 'string') return value;
  let out = '';
  for (let i = 0; i < value.length; i++) out += partValue(value[i]!, ctx);
  return out;
}

/**
 * Envoy's HeaderUtility::isModifiableHeader / isRemovableHeader: `:`-prefixed pseudo-headers and `host`
 * may be neither added nor removed by route configuration.
 */
function isModifiable(key: string): boolean {
  return key !== '' && key[0] !== ':' && key !== 'host';
}

/**
 * Compiles one level's adds and removes. Problems become error diagnostics under `path` with Envoy's
 * field names (`path.request_headers_to_add[2].header.key`). `addField`/`removeField` name the fields.
 * Returns undefined when the level does nothing, so callers can skip it.
 */
export function compileHeaderMutation(
  adds: readonly HeaderValueOption__Output[],
  removes: readonly string[],
  path: string,
  addField: string,
  removeField: string,
  sink: CompileSink,
): CompiledHeaderMutation | undefined {
  if (adds.length === 0 && removes.length === 0) return undefined;
  const prefix = path === '' ? '' : `${path}.`;
  const remove: string[] = [];
  removes.forEach((name, i) => {
    const key = name.toLowerCase();
    if (!isModifiable(key)) {
      sink.diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: `${prefix}${removeField}[${i}]`, message: `${JSON.stringify(name)}: :-prefixed or host headers may not be removed` });
    } else {
      remove.push(key);
    }
  });
  const add: CompiledHeaderAdd[] = [];
  adds.forEach((o, i) => {
    const at = `${prefix}${addField}[${i}]`;
    const key = (o.header?.key ?? '').toLowerCase();
    if (!isModifiable(key)) {
      sink.diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: `${at}.header.key`, message: `${JSON.stringify(o.header?.key ?? '')}: :-prefixed or host headers may not be modified` });
      return;
    }
    let action = APPEND_ACTIONS[o.append_action] ?? APPEND_IF_EXISTS_OR_ADD;
    if (o.append !== null) {
      // Deprecated `append` maps to append/overwrite; Envoy rejects it together with append_action.
      if (action !== APPEND_IF_EXISTS_OR_ADD) {
        sink.diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: `${at}.append`, message: 'append and append_action are both set' });
      }
      action = o.append.value ? APPEND_IF_EXISTS_OR_ADD : OVERWRITE_IF_EXISTS_OR_ADD;
    }
    const raw = o.header?.value !== '' ? (o.header?.value ?? '') : (o.header?.raw_value ?? Buffer.alloc(0)).toString('latin1');
    let value: CompiledValue;
    try {
      value = compileHeaderValue(raw);
    } catch (err) {
      sink.diagnostics.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: `${at}.header.value`, message: (err as Error).message });
      return;
    }
    add.push({ key, value, action, keepEmptyValue: o.keep_empty_value });
  });
  return { remove, add };
}

function hasHeader(headers: readonly string[], key: string): boolean {
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === key) return true;
  return false;
}

function removeAll(headers: string[], key: string): void {
  let w = 0;
  for (let r = 0; r < headers.length; r += 2) {
    if (headers[r] === key) continue;
    if (w !== r) {
      headers[w] = headers[r]!;
      headers[w + 1] = headers[r + 1]!;
    }
    w += 2;
  }
  headers.length = w;
}

/** Replaces every occurrence of `key` with one `key: value` (at the first occurrence's position). */
function setHeader(headers: string[], key: string, value: string): void {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] !== key) continue;
    headers[i + 1] = value;
    let w = i + 2;
    for (let r = i + 2; r < headers.length; r += 2) {
      if (headers[r] === key) continue;
      headers[w] = headers[r]!;
      headers[w + 1] = headers[r + 1]!;
      w += 2;
    }
    headers.length = w;
    return;
  }
  headers.push(key, value);
}

/**
 * Applies one level to `headers` in place. Formatting reads `ctx` (and, for %REQ()%, its
 * requestHeaders, which may be `headers` itself: values are computed before any add is applied, as in
 * Envoy).
 */
export function applyHeaderMutation(headers: string[], m: CompiledHeaderMutation, ctx: HeaderFormatContext): void {
  for (let i = 0; i < m.remove.length; i++) removeAll(headers, m.remove[i]!);
  const adds = m.add;
  if (adds.length === 0) return;
  if (adds.length === 1) {
    // Common case: one header, no need to stage values.
    const a = adds[0]!;
    const v = formatHeaderValue(a.value, ctx);
    if (v === '' && !a.keepEmptyValue) return;
    applyOne(headers, a, v, a.action === ADD_IF_ABSENT || a.action === OVERWRITE_IF_EXISTS ? hasHeader(headers, a.key) : false, PASS_ALL);
    return;
  }
  // Stage: format every value and decide presence against the headers before this level's adds.
  const values: (string | undefined)[] = new Array(adds.length);
  const present: boolean[] = new Array(adds.length);
  for (let i = 0; i < adds.length; i++) {
    const a = adds[i]!;
    const v = formatHeaderValue(a.value, ctx);
    values[i] = v === '' && !a.keepEmptyValue ? undefined : v;
    present[i] = a.action === ADD_IF_ABSENT || a.action === OVERWRITE_IF_EXISTS ? hasHeader(headers, a.key) : false;
  }
  // Envoy applies all overwrites first, then all appends.
  for (let i = 0; i < adds.length; i++) {
    const v = values[i];
    if (v !== undefined) applyOne(headers, adds[i]!, v, present[i]!, PASS_OVERWRITE);
  }
  for (let i = 0; i < adds.length; i++) {
    const v = values[i];
    if (v !== undefined) applyOne(headers, adds[i]!, v, present[i]!, PASS_APPEND);
  }
}

const PASS_ALL = 0;
const PASS_OVERWRITE = 1;
const PASS_APPEND = 2;

/** Applies one add during `pass` (all actions, only overwrites, or only appends). */
function applyOne(headers: string[], a: CompiledHeaderAdd, v: string, wasPresent: boolean, pass: number): void {
  switch (a.action) {
    case APPEND_IF_EXISTS_OR_ADD:
      if (pass !== PASS_OVERWRITE) headers.push(a.key, v);
      return;
    case ADD_IF_ABSENT:
      if (pass !== PASS_OVERWRITE && !wasPresent) headers.push(a.key, v);
      return;
    case OVERWRITE_IF_EXISTS:
      if (wasPresent && pass !== PASS_APPEND) setHeader(headers, a.key, v);
      return;
    default:
      if (pass !== PASS_APPEND) setHeader(headers, a.key, v);
  }
}

/** Applies a chain of levels in order (the route table precomputes the order). */
export function applyHeaderMutations(headers: string[], chain: readonly CompiledHeaderMutation[], ctx: HeaderFormatContext): void {
  for (let i = 0; i < chain.length; i++) applyHeaderMutation(headers, chain[i]!, ctx);
}
