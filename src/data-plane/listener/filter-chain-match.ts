/**
 * Envoy's filter chain matching (listener_components.proto, FilterChainMatch). A connection's properties
 * are compared with the chains' criteria in a fixed order:
 *
 *   1. destination_port            2. prefix_ranges (destination IP)   3. server_names
 *   4. transport_protocol          5. application_protocols           6. direct_source_prefix_ranges
 *   7. source_type                 8. source_prefix_ranges            9. source_ports
 *
 * At each step only the chains whose value matches *most specifically* go on (longest CIDR, exact name
 * before `*.example.com` before `*.com`); a chain that leaves the criterion empty is the fallback used
 * only when no chain names a matching value. There is no backtracking: once a step picked its most
 * specific branch and a later step finds nothing there, the connection gets `default_filter_chain`.
 * This is the "prune the set step by step" reading given in the FilterChainMatch docs and is how Envoy's
 * listener builds its lookup tree, which is what this module builds once per Listener.
 */
import type { Listener__Output } from '../../xds/gen/envoy/config/listener/v3/Listener.ts';
import type { FilterChain__Output } from '../../xds/gen/envoy/config/listener/v3/FilterChain.ts';
import type { FilterChainMatch__Output } from '../../xds/gen/envoy/config/listener/v3/FilterChainMatch.ts';
import type { CidrRange__Output } from '../../xds/gen/envoy/config/core/v3/CidrRange.ts';
import { ConfigError, type Diagnostic } from '../../shared/errors.ts';
import { cidrContains, cidrKey, ipEquals, isLoopback, parseCidrRange, parseIp, type CidrRange } from './cidr-range.ts';

/** What the listener knows about a new connection once its listener filters ran. */
export interface ConnectionInfo {
  /** Local address the connection arrived on (or the original destination). */
  destinationIp: string;
  destinationPort: number;
  /** Downstream address, possibly rewritten by a listener filter such as PROXY protocol. */
  sourceIp: string;
  sourcePort: number;
  /** Address of the directly connected peer (the socket's remote address). */
  directSourceIp: string;
  /** SNI from the TLS inspector, lowercased; undefined if none. */
  serverName?: string;
  /** `tls` if the TLS inspector found a ClientHello, else `raw_buffer` (Envoy's default). */
  transportProtocol: string;
  /** ALPN from the TLS inspector, or the one protocol the HTTP inspector found; may be empty. */
  applicationProtocols: string[];
}

/** A compiled Listener's filter chains. Immutable; build a new one when the Listener changes. */
export interface FilterChainSelector {
  /** The matching chain, else `default_filter_chain`, else undefined (Envoy closes the connection). */
  select(c: ConnectionInfo): FilterChain__Output | undefined;
  /**
   * True if any chain needs what the TLS inspector finds (transport_protocol `tls`, or server_names or
   * application_protocols with no transport_protocol), the rule Envoy used to add the tls_inspector.
   */
  readonly needsTlsInspection: boolean;
  /** True if any non-TLS chain matches on `http/1.0`, `http/1.1` or `h2c`, which the HTTP inspector finds. */
  readonly needsHttpInspection: boolean;
}

const HTTP_INSPECTOR_PROTOCOLS: ReadonlySet<string> = new Set(['http/1.0', 'http/1.1', 'h2c']);

/** One step of the lookup tree. All nodes share one shape so the lookup code stays monomorphic. */
interface MatchNode {
  /** Exact keys: server names (exact or `*.example.com`), transport or application protocols. */
  readonly byName: Map<string, MatchNode>;
  /** destination_port / source_ports. */
  readonly byPort: Map<number, MatchNode>;
  /** Prefix-range steps, most specific (longest prefix) first. */
  readonly cidrs: CidrBranch[];
  /** Source type step: SAME_IP_OR_LOOPBACK and EXTERNAL branches (ANY is `fallback`). */
  local: MatchNode | undefined;
  external: MatchNode | undefined;
  /** The branch of chains that leave this step's criterion empty. */
  fallback: MatchNode | undefined;
  /** Set on leaves (after source_ports). */
  chain: FilterChain__Output | undefined;
}

interface CidrBranch {
  readonly range: CidrRange;
  readonly node: MatchNode;
}

/** Step indexes, in Envoy's order. */
const STEP_DESTINATION_PORT = 0;
const STEP_DESTINATION_IP = 1;
const STEP_SERVER_NAME = 2;
const STEP_TRANSPORT = 3;
const STEP_APPLICATION = 4;
const STEP_DIRECT_SOURCE_IP = 5;
const STEP_SOURCE_TYPE = 6;
const STEP_SOURCE_IP = 7;
const STEP_SOURCE_PORT = 8;
const STEP_COUNT = 9;

/** Key used at every step for "criterion left empty". */
const ANY = '';

/**
 * Compiles a Listener's `filter_chains` and `default_filter_chain` into a selector.
 *
 * @throws ConfigError listing every problem: chains whose matchers overlap (Envoy: "multiple filter chains
 *   with the same matching rules are defined") at `filter_chains[i].filter_chain_match`, malformed CIDR
 *   ranges, partial-wildcard server names, and the unsupported `filter_chain_matcher`.
 */
export function compileFilterChains(listener: Listener__Output): FilterChainSelector {
  const diagnostics: Diagnostic[] = [];
  const error = (path: string, message: string, code: Diagnostic['code'] = 'SLOOP_ERR_CONFIG_INVALID'): void => {
    diagnostics.push({ severity: 'error', code, path, message });
  };
  if (listener.filter_chain_matcher) {
    error('filter_chain_matcher', 'the unified matcher API for filter chains is not supported; use filter_chain_match', 'SLOOP_ERR_CONFIG_UNSUPPORTED');
  }

  const root = newNode();
  const owner = new Map<MatchNode, number>(); // leaf → index of the chain that claimed it
  let needsTlsInspection = false;
  let needsHttpInspection = false;
  listener.filter_chains.forEach((chain, i) => {
    const path = `filter_chains[${i}].filter_chain_match`;
    const m = chain.filter_chain_match;
    if (m) {
      const transport = m.transport_protocol;
      if (transport === 'tls' || (transport === '' && (m.server_names.length > 0 || m.application_protocols.length > 0))) {
        needsTlsInspection = true;
      }
      if (transport !== 'tls' && m.application_protocols.some((p) => HTTP_INSPECTOR_PROTOCOLS.has(p))) needsHttpInspection = true;
    }
    const keys = stepKeys(m, path, error);
    if (!keys) return;
    const overlaps = new Set<number>();
    insert(root, keys, 0, chain, i, owner, overlaps);
    for (const j of overlaps) {
      error(path, `filter_chains[${i}] and filter_chains[${j}] have overlapping matching rules; a connection could match both`);
    }
  });
  if (diagnostics.length > 0) throw new ConfigError(diagnostics, `listener "${listener.name}"`);
  return new CompiledSelector(root, listener.default_filter_chain ?? undefined, needsTlsInspection, needsHttpInspection);
}

function newNode(): MatchNode {
  return { byName: new Map(), byPort: new Map(), cidrs: [], local: undefined, external: undefined, fallback: undefined, chain: undefined };
}

/** A step key: a string (names, CIDR keys, source types) or a port number; cidr carries the parsed range. */
interface StepKey {
  readonly name: string;
  readonly port: number;
  readonly range: CidrRange | undefined;
}

const anyKey: StepKey = { name: ANY, port: 0, range: undefined };

/** The keys a chain contributes at each step (`[anyKey]` where it leaves the criterion empty). */
function stepKeys(
  m: FilterChainMatch__Output | null,
  path: string,
  error: (path: string, message: string) => void,
): StepKey[][] | undefined {
  const keys: StepKey[][] = Array.from({ length: STEP_COUNT }, () => [anyKey]);
  if (!m) return keys;
  let ok = true;
  const ranges = (list: CidrRange__Output[], field: string): StepKey[] => {
    if (list.length === 0) return [anyKey];
    const out = new Map<string, StepKey>();
    list.forEach((r, j) => {
      const parsed = parseCidrRange(r.address_prefix, r.prefix_len?.value ?? 0);
      if (typeof parsed === 'string') {
        error(`${path}.${field}[${j}]`, parsed);
        ok = false;
        return;
      }
      const key = cidrKey(parsed);
      out.set(key, { name: key, port: 0, range: parsed });
    });
    return [...out.values()];
  };
  const names = (list: string[]): StepKey[] =>
    list.length === 0 ? [anyKey] : [...new Set(list)].map((name) => ({ name, port: 0, range: undefined }));
  const ports = (list: number[]): StepKey[] =>
    list.length === 0 ? [anyKey] : [...new Set(list)].map((port) => ({ name: '', port, range: undefined }));

  if (m.destination_port) keys[STEP_DESTINATION_PORT] = ports([m.destination_port.value]);
  keys[STEP_DESTINATION_IP] = ranges(m.prefix_ranges, 'prefix_ranges');
  const serverNames: string[] = [];
  m.server_names.forEach((raw, j) => {
    const name = raw.toLowerCase();
    // listener_components.proto: "partial wildcards are not supported, and values like *w.example.com are
    // invalid. The value * is also not supported".
    if (name.includes('*') && !(name.startsWith('*.') && name.indexOf('*', 1) < 0 && name.length > 2)) {
      error(`${path}.server_names[${j}]`, `"${raw}" is not a valid server name: only a leading "*." wildcard is supported`);
      ok = false;
      return;
    }
    serverNames.push(name);
  });
  keys[STEP_SERVER_NAME] = names(serverNames);
  if (m.transport_protocol !== '') keys[STEP_TRANSPORT] = names([m.transport_protocol]);
  keys[STEP_APPLICATION] = names(m.application_protocols);
  keys[STEP_DIRECT_SOURCE_IP] = ranges(m.direct_source_prefix_ranges, 'direct_source_prefix_ranges');
  keys[STEP_SOURCE_TYPE] = names([m.source_type === 'ANY' ? ANY : m.source_type]);
  keys[STEP_SOURCE_IP] = ranges(m.source_prefix_ranges, 'source_prefix_ranges');
  keys[STEP_SOURCE_PORT] = ports(m.source_ports);
  return ok ? keys : undefined;
}

/** Adds `chain` under every combination of its keys; records chains already owning a combination. */
function insert(
  node: MatchNode,
  keys: StepKey[][],
  step: number,
  chain: FilterChain__Output,
  index: number,
  owner: Map<MatchNode, number>,
  overlaps: Set<number>,
): void {
  if (step === STEP_COUNT) {
    const prior = owner.get(node);
    if (prior !== undefined) {
      overlaps.add(prior);
      return;
    }
    owner.set(node, index);
    node.chain = chain;
    return;
  }
  for (const key of keys[step]) insert(childFor(node, step, key), keys, step + 1, chain, index, owner, overlaps);
}

function childFor(node: MatchNode, step: number, key: StepKey): MatchNode {
  const isAny = key.name === ANY && key.port === 0;
  if (isAny) return (node.fallback ??= newNode());
  switch (step) {
    case STEP_DESTINATION_PORT:
    case STEP_SOURCE_PORT: {
      let child = node.byPort.get(key.port);
      if (!child) node.byPort.set(key.port, (child = newNode()));
      return child;
    }
    case STEP_DESTINATION_IP:
    case STEP_DIRECT_SOURCE_IP:
    case STEP_SOURCE_IP: {
      const range = key.range!;
      const existing = node.cidrs.find((b) => b.range.prefixLen === range.prefixLen && ipEquals(b.range.bytes, range.bytes));
      if (existing) return existing.node;
      const branch: CidrBranch = { range, node: newNode() };
      node.cidrs.push(branch);
      // Most specific first, so the first containing range is the longest-prefix match.
      node.cidrs.sort((a, b) => b.range.prefixLen - a.range.prefixLen);
      return branch.node;
    }
    case STEP_SOURCE_TYPE:
      if (key.name === 'SAME_IP_OR_LOOPBACK') return (node.local ??= newNode());
      return (node.external ??= newNode());
    default: {
      let child = node.byName.get(key.name);
      if (!child) node.byName.set(key.name, (child = newNode()));
      return child;
    }
  }
}

class CompiledSelector implements FilterChainSelector {
  readonly needsTlsInspection: boolean;
  readonly needsHttpInspection: boolean;
  readonly #root: MatchNode;
  readonly #defaultChain: FilterChain__Output | undefined;

  constructor(root: MatchNode, defaultChain: FilterChain__Output | undefined, needsTls: boolean, needsHttp: boolean) {
    this.#root = root;
    this.#defaultChain = defaultChain;
    this.needsTlsInspection = needsTls;
    this.needsHttpInspection = needsHttp;
  }

  select(c: ConnectionInfo): FilterChain__Output | undefined {
    let n: MatchNode | undefined = this.#root;
    n = n.byPort.get(c.destinationPort) ?? n.fallback;
    if (!n) return this.#defaultChain;
    // Parse addresses only where a step has ranges to compare with (per connection, not per request).
    let destination: Uint8Array | undefined;
    if (n.cidrs.length > 0) destination = parseIp(c.destinationIp);
    n = matchCidr(n, destination);
    if (!n) return this.#defaultChain;
    n = matchServerName(n, c.serverName);
    if (!n) return this.#defaultChain;
    n = n.byName.get(c.transportProtocol) ?? n.fallback;
    if (!n) return this.#defaultChain;
    n = matchApplicationProtocols(n, c.applicationProtocols);
    if (!n) return this.#defaultChain;
    n = matchCidr(n, n.cidrs.length > 0 ? parseIp(c.directSourceIp) : undefined);
    if (!n) return this.#defaultChain;
    let source: Uint8Array | undefined;
    if (n.local || n.external) {
      source = parseIp(c.sourceIp);
      destination ??= parseIp(c.destinationIp);
      // FilterChainMatch.ConnectionSourceType: SAME_IP_OR_LOOPBACK is a loopback peer or one whose address
      // equals the local address; everything else is EXTERNAL.
      const isLocal = source
        ? isLoopback(source) || (destination !== undefined && ipEquals(source, destination))
        : c.sourceIp === c.destinationIp;
      n = (isLocal ? n.local : n.external) ?? n.fallback;
    } else {
      n = n.fallback;
    }
    if (!n) return this.#defaultChain;
    if (n.cidrs.length > 0) source ??= parseIp(c.sourceIp);
    n = matchCidr(n, source);
    if (!n) return this.#defaultChain;
    n = n.byPort.get(c.sourcePort) ?? n.fallback;
    return n?.chain ?? this.#defaultChain;
  }
}

/** Longest-prefix branch containing `ip`, else the no-range branch. */
function matchCidr(n: MatchNode, ip: Uint8Array | undefined): MatchNode | undefined {
  if (ip !== undefined) {
    const cidrs = n.cidrs;
    for (let i = 0; i < cidrs.length; i++) if (cidrContains(cidrs[i].range, ip)) return cidrs[i].node;
  }
  return n.fallback;
}

/** Exact name, then `*.example.com`, `*.com` (most specific wildcard first), then no-server_names chains. */
function matchServerName(n: MatchNode, serverName: string | undefined): MatchNode | undefined {
  if (n.byName.size === 0 || !serverName) return n.fallback;
  const exact = n.byName.get(serverName);
  if (exact) return exact;
  // Envoy looks up each suffix starting at a dot after the first character, never the bare "." itself.
  for (let dot = serverName.indexOf('.', 1); dot >= 0 && dot < serverName.length - 1; dot = serverName.indexOf('.', dot + 1)) {
    const wildcard = n.byName.get('*' + serverName.slice(dot));
    if (wildcard) return wildcard;
  }
  return n.fallback;
}

/** The first of the connection's protocols (client preference order) that some chain names. */
function matchApplicationProtocols(n: MatchNode, protocols: string[]): MatchNode | undefined {
  if (n.byName.size > 0) {
    for (let i = 0; i < protocols.length; i++) {
      const hit = n.byName.get(protocols[i]);
      if (hit) return hit;
    }
  }
  return n.fallback;
}
