/**
 * Envoy's tag extraction: turns an elaborated stat name such as
 * `cluster.outbound|9080||reviews.upstream_rq_200` into a tag-extracted name (`cluster.upstream_rq`)
 * plus tags (`envoy.response_code=200`, `envoy.cluster_name=outbound|9080||reviews`).
 *
 * The default extractors mirror Envoy's `source/common/config/well_known_names.cc` (same names, same
 * patterns, same order) and the matching process mirrors `TagProducerImpl::produceTags`: every
 * extractor looks at the ORIGINAL name, the character ranges they claim are removed at the end, and
 * extractors whose pattern starts with a literal first token only run on names with that first token.
 *
 * This runs once per stat, when the stat is created (config time), never per request.
 */

/** One extracted tag, in the order Envoy emits them. */
export interface Tag {
  readonly name: string;
  readonly value: string;
}

/** Result of running the tag extractors over one stat name. */
export interface TagExtractionResult {
  readonly tagExtractedName: string;
  readonly tags: readonly Tag[];
}

/** Envoy's well-known tag names (`Config::TagNames`), spelled exactly as Envoy spells them. */
export const TAG_NAMES = {
  CLUSTER_NAME: 'envoy.cluster_name',
  LISTENER_ADDRESS: 'envoy.listener_address',
  HTTP_CONN_MANAGER_PREFIX: 'envoy.http_conn_manager_prefix',
  HTTP_USER_AGENT: 'envoy.http_user_agent',
  SSL_CIPHER: 'envoy.ssl_cipher',
  SSL_CURVE: 'envoy.ssl_curve',
  SSL_SIGALG: 'envoy.ssl_sigalg',
  SSL_VERSION: 'envoy.ssl_version',
  // Envoy spells this one without the `envoy.` namespace.
  SSL_CIPHER_SUITE: 'cipher_suite',
  CLIENTSSL_PREFIX: 'envoy.clientssl_prefix',
  MONGO_PREFIX: 'envoy.mongo_prefix',
  MONGO_CMD: 'envoy.mongo_cmd',
  MONGO_COLLECTION: 'envoy.mongo_collection',
  MONGO_CALLSITE: 'envoy.mongo_callsite',
  RATELIMIT_PREFIX: 'envoy.ratelimit_prefix',
  LOCAL_HTTP_RATELIMIT_PREFIX: 'envoy.local_http_ratelimit_prefix',
  LOCAL_NETWORK_RATELIMIT_PREFIX: 'envoy.local_network_ratelimit_prefix',
  LOCAL_LISTENER_RATELIMIT_PREFIX: 'envoy.local_listener_ratelimit_prefix',
  DNS_FILTER_PREFIX: 'envoy.dns_filter_prefix',
  TCP_PREFIX: 'envoy.tcp_prefix',
  UDP_PREFIX: 'envoy.udp_prefix',
  FAULT_DOWNSTREAM_CLUSTER: 'envoy.fault_downstream_cluster',
  DYNAMO_OPERATION: 'envoy.dynamo_operation',
  DYNAMO_TABLE: 'envoy.dynamo_table',
  DYNAMO_PARTITION_ID: 'envoy.dynamo_partition_id',
  GRPC_BRIDGE_SERVICE: 'envoy.grpc_bridge_service',
  GRPC_BRIDGE_METHOD: 'envoy.grpc_bridge_method',
  VIRTUAL_HOST: 'envoy.virtual_host',
  VIRTUAL_CLUSTER: 'envoy.virtual_cluster',
  RESPONSE_CODE: 'envoy.response_code',
  RESPONSE_CODE_CLASS: 'envoy.response_code_class',
  ROUTE: 'envoy.route',
  EXT_AUTHZ_PREFIX: 'envoy.ext_authz_prefix',
  RDS_ROUTE_CONFIG: 'envoy.rds_route_config',
  SCOPED_RDS_CONFIG: 'envoy.scoped_rds_config',
  CONNECTION_LIMIT_PREFIX: 'envoy.connection_limit_prefix',
  RBAC_PREFIX: 'envoy.rbac_prefix',
  RBAC_HTTP_PREFIX: 'envoy.rbac_http_prefix',
  RBAC_POLICY_NAME: 'envoy.rbac_policy_name',
  PROXY_PROTOCOL_PREFIX: 'envoy.proxy_protocol_prefix',
  PROXY_PROTOCOL_VERSION: 'envoy.proxy_protocol_version',
  WORKER_ID: 'envoy.worker_id',
  THRIFT_PREFIX: 'envoy.thrift_prefix',
  REDIS_PREFIX: 'envoy.redis_prefix',
} as const;

// Pattern fragments, as in well_known_names.cc's expandRegex().
// IPv4 or bracketed IPv6 (':' already sanitized to '_') followed by `_<port>`.
const ADDRESS = String.raw`(?:(?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[[a-fA-F_\d]+\])_\d+)`;
const CIPHER = String.raw`[\w-]+`;
const TLS_VERSION = String.raw`TLSv\d\.\d`;
// A generic tag value: anything but a dot.
const TAG_VALUE = String.raw`[^\.]+`;
// Route config names may contain dots and slashes (Envoy's tests use `agg/route_config.1-23`).
const ROUTE_CONFIG_NAME = String.raw`[\w./-]+`;
const LISTENER_OR_CLUSTER_WITH_NAME = String.raw`(?:listener|cluster)\..*?`;

type Descriptor =
  | { kind: 'regex'; name: string; regex: string; substr: string; negativeMatch?: string }
  | { kind: 'tokens'; name: string; pattern: string };

const re = (name: string, regex: string, substr = '', negativeMatch?: string): Descriptor => ({
  kind: 'regex',
  name,
  regex,
  substr,
  ...(negativeMatch === undefined ? {} : { negativeMatch }),
});
const tok = (name: string, pattern: string): Descriptor => ({ kind: 'tokens', name, pattern });

const T = TAG_NAMES;

/**
 * Envoy's default regex descriptors, in well_known_names.cc order (the order decides tag order).
 * Capture group 1 is removed from the name; group 2 (if any) is the tag value.
 */
const DEFAULT_REGEX_DESCRIPTORS: readonly Descriptor[] = [
  // *_rq(_<response_code>)
  re(T.RESPONSE_CODE, String.raw`_rq(_(\d{3}))$`, '_rq_'),
  // *_rq_(<response_code_class>)xx
  re(T.RESPONSE_CODE_CLASS, String.raw`_rq_((\d))xx$`, '_rq_'),
  // http.[<stat_prefix>.]dynamodb.table.[<table_name>.]capacity.[<operation_name>.](__partition_id=<id>)
  re(
    T.DYNAMO_PARTITION_ID,
    String.raw`^http\.${TAG_VALUE}\.dynamodb\.table\.${TAG_VALUE}\.capacity\.${TAG_VALUE}(\.__partition_id=(\w{7}))$`,
    '.dynamodb.table.',
  ),
  // http.[<stat_prefix>.]dynamodb.operation.(<operation_name>.)* or ...capacity.(<operation_name>.)
  re(
    T.DYNAMO_OPERATION,
    String.raw`^http\.${TAG_VALUE}\.dynamodb.(?:operation|table\.${TAG_VALUE}\.capacity)(\.(${TAG_VALUE}))(?:\.|$)`,
    '.dynamodb.',
  ),
  // http.[<stat_prefix>.]dynamodb.(table|error).(<table_name>.)*
  re(T.DYNAMO_TABLE, String.raw`^http\.${TAG_VALUE}\.dynamodb.(?:table|error)\.((${TAG_VALUE})\.)`, '.dynamodb.'),
  // listener.[<address>.]ssl.ciphers.(<cipher>)
  re(T.SSL_CIPHER, String.raw`^listener\..*?\.ssl\.ciphers(\.(${CIPHER}))$`, '.ssl.ciphers.'),
  // (listener|cluster).[<name>.]ssl.curves.(<curve>)
  re(T.SSL_CURVE, String.raw`^${LISTENER_OR_CLUSTER_WITH_NAME}\.ssl\.curves(\.(${CIPHER}))$`, '.ssl.curves.'),
  // (listener|cluster).[<name>.]ssl.sigalgs.(<algorithm>)
  re(T.SSL_SIGALG, String.raw`^${LISTENER_OR_CLUSTER_WITH_NAME}\.ssl\.sigalgs(\.(${CIPHER}))$`, '.ssl.sigalgs.'),
  // (listener|cluster).[<name>.]ssl.versions.(<version>)
  re(T.SSL_VERSION, String.raw`^${LISTENER_OR_CLUSTER_WITH_NAME}\.ssl\.versions(\.(${TLS_VERSION}))$`, '.ssl.versions.'),
  // cluster.[<cluster_name>.]ssl.ciphers.(<cipher>)
  re(T.SSL_CIPHER_SUITE, String.raw`^cluster\.${TAG_VALUE}\.ssl\.ciphers(\.(${CIPHER}))$`, '.ssl.ciphers.'),
  // listener.[<address>.]http.(<stat_prefix>.)*
  re(T.HTTP_CONN_MANAGER_PREFIX, String.raw`^listener\..*?\.http\.((${TAG_VALUE})\.)`, '.http.'),
  // listener.<address|stat_prefix>.(worker_<id>.)*, listener_manager.(worker_<id>.)*, server.(worker_<id>.)*
  re(
    T.WORKER_ID,
    String.raw`^(?:listener\.(?:${ADDRESS}|${TAG_VALUE})\.|server\.|listener_manager\.)worker_((\d+)\.)`,
  ),
  // listener.(<address|stat_prefix>.)*, but not the admin listener.
  re(T.LISTENER_ADDRESS, String.raw`^listener\.((${ADDRESS}|${TAG_VALUE})\.)`, '', 'admin'),
  // http.[<stat_prefix>.]rds.(<route_config_name>.)<base_stat>; route config names may contain dots.
  re(T.RDS_ROUTE_CONFIG, String.raw`^http\.${TAG_VALUE}\.rds\.((${ROUTE_CONFIG_NAME})\.)\w+?$`, '.rds.'),
  // http.[<stat_prefix>.]scoped_rds.(<scoped_route_config_name>.)<base_stat>
  re(T.SCOPED_RDS_CONFIG, String.raw`^http\.${TAG_VALUE}\.scoped_rds\.((${ROUTE_CONFIG_NAME})\.)\w+?$`, '.scoped_rds.'),
  // The next four are rebuilt from the cases in Envoy's tag_extractor_impl_test.cc (newer Envoy):
  // http.[<stat_prefix>.]rbac.(<rbac_prefix>.)*, where a `policy` token is not a prefix.
  re(T.RBAC_HTTP_PREFIX, String.raw`^http\.${TAG_VALUE}\.rbac\.((${TAG_VALUE})\.)`, '.rbac.', 'policy'),
  // http.[<stat_prefix>.]rbac.[<rbac_prefix>.]policy.(<policy_name>.)*
  re(T.RBAC_POLICY_NAME, String.raw`^http\.${TAG_VALUE}\.rbac\.(?:${TAG_VALUE}\.)?policy\.((${TAG_VALUE})\.)`, '.policy.'),
  // proxy_proto.[<stat_prefix>.](versions.v<version>.)<base_stat>
  re(T.PROXY_PROTOCOL_VERSION, String.raw`^proxy_proto\.(?:${TAG_VALUE}\.)?(versions\.v(\d)\.)\w+$`, '.versions.'),
  // proxy_proto.(<stat_prefix>.)*, where `versions` is not a prefix.
  re(T.PROXY_PROTOCOL_PREFIX, String.raw`^proxy_proto\.((${TAG_VALUE})\.)`, '', 'versions'),
];

/**
 * Envoy's default tokenized descriptors. `$` is the captured token, `*` one token, `**` any run of
 * tokens (at least one when it ends the pattern).
 */
const DEFAULT_TOKEN_DESCRIPTORS: readonly Descriptor[] = [
  tok(T.MONGO_CALLSITE, 'mongo.*.collection.*.callsite.$.query.**'),
  tok(T.MONGO_COLLECTION, 'mongo.*.collection.$.**.query.*'),
  tok(T.MONGO_CMD, 'mongo.*.cmd.$.**'),
  tok(T.GRPC_BRIDGE_METHOD, 'cluster.*.grpc.*.$.**'),
  tok(T.HTTP_USER_AGENT, 'http.*.user_agent.$.**'),
  tok(T.VIRTUAL_CLUSTER, 'vhost.*.vcluster.$.**'),
  tok(T.FAULT_DOWNSTREAM_CLUSTER, 'http.*.fault.$.**'),
  tok(T.GRPC_BRIDGE_SERVICE, 'cluster.*.grpc.$.**'),
  tok(T.TCP_PREFIX, 'tcp.$.**'),
  tok(T.UDP_PREFIX, 'udp.$.**'),
  tok(T.CLIENTSSL_PREFIX, 'auth.clientssl.$.**'),
  tok(T.RATELIMIT_PREFIX, 'ratelimit.$.**'),
  // Cluster names containing dots are split at the first dot: Envoy issue #5239, kept for parity.
  tok(T.CLUSTER_NAME, 'cluster.$.**'),
  tok(T.EXT_AUTHZ_PREFIX, 'cluster.*.ext_authz.$.**'),
  tok(T.EXT_AUTHZ_PREFIX, 'http.*.ext_authz.$.**'),
  tok(T.HTTP_CONN_MANAGER_PREFIX, 'http.$.**'),
  tok(T.VIRTUAL_HOST, 'vhost.$.**'),
  tok(T.MONGO_PREFIX, 'mongo.$.**'),
  tok(T.ROUTE, 'vhost.*.route.$.**'),
  tok(T.THRIFT_PREFIX, 'thrift.$.**'),
  tok(T.REDIS_PREFIX, 'redis.$.**'),
  tok(T.LOCAL_HTTP_RATELIMIT_PREFIX, '$.http_local_rate_limit.**'),
  tok(T.LOCAL_NETWORK_RATELIMIT_PREFIX, 'local_rate_limit.$.**'),
  tok(T.LOCAL_LISTENER_RATELIMIT_PREFIX, 'listener_local_ratelimit.$.**'),
  tok(T.DNS_FILTER_PREFIX, 'dns_filter.$.**'),
  tok(T.CONNECTION_LIMIT_PREFIX, 'connection_limit.$.**'),
  tok(T.RBAC_PREFIX, '$.rbac.**'),
];

/** Per-name scratch shared by the extractors of one produceTags() call. */
class ExtractionContext {
  readonly name: string;
  private tokenList: string[] | undefined;
  constructor(name: string) {
    this.name = name;
  }
  get tokens(): string[] {
    this.tokenList ??= this.name.split('.');
    return this.tokenList;
  }
}

interface Extractor {
  readonly name: string;
  /** First token a name must have for this extractor to run; '' = run on every name. */
  readonly prefix: string;
  /** Set when two extractors share a tag name: only the first that matches contributes. */
  otherWithSameName: boolean;
  extract(ctx: ExtractionContext, tags: Tag[], remove: Array<[number, number]>): boolean;
}

/**
 * Envoy's TagExtractorImplBase::extractRegexPrefix: a regex anchored with `^word\.` (or `^word$`)
 * only ever matches names whose first token is `word`, which lets the producer skip it otherwise.
 */
function regexPrefix(regex: string): string {
  if (!regex.startsWith('^')) return '';
  for (let i = 1; i < regex.length; i++) {
    const c = regex[i]!;
    if (/[A-Za-z0-9_]/.test(c)) continue;
    if (i > 1) {
      const isLast = i === regex.length - 1;
      const rest = regex.slice(i);
      if ((!isLast && (rest.startsWith('\\.') || rest.startsWith('(?=\\.)'))) || (isLast && c === '$')) {
        return regex.slice(1, i);
      }
    }
    return '';
  }
  return '';
}

class RegexExtractor implements Extractor {
  readonly name: string;
  readonly prefix: string;
  otherWithSameName = false;
  private readonly regex: RegExp;
  private readonly substr: string;
  private readonly negativeMatch: string | undefined;
  private readonly requireNonEmpty: boolean;

  constructor(name: string, regex: string, substr: string, negativeMatch: string | undefined, requireNonEmpty: boolean) {
    this.name = name;
    this.prefix = regexPrefix(regex);
    // `d` gives capture indices, needed to know which characters to remove.
    this.regex = new RegExp(regex, 'd');
    this.substr = substr;
    this.negativeMatch = negativeMatch;
    this.requireNonEmpty = requireNonEmpty;
  }

  extract(ctx: ExtractionContext, tags: Tag[], remove: Array<[number, number]>): boolean {
    const name = ctx.name;
    if (this.substr !== '' && !name.includes(this.substr)) return false;
    const m = this.regex.exec(name);
    if (m === null || m.indices === undefined) return false;
    const removeRange = m.indices[1];
    const removeText = m[1];
    if (removeRange === undefined || removeText === undefined) return false;
    // RE2 path in Envoy: an empty removal group is not a match.
    if (this.requireNonEmpty && removeText === '') return false;
    const value = m[2] !== undefined && m[2] !== '' ? m[2] : removeText;
    if (this.negativeMatch !== undefined && value === this.negativeMatch) return false;
    tags.push({ name: this.name, value });
    remove.push([removeRange[0], removeRange[1]]);
    return true;
  }
}

class TokenExtractor implements Extractor {
  readonly name: string;
  readonly prefix: string;
  otherWithSameName = false;
  private readonly pattern: readonly string[];
  private readonly matchIndex: number;

  constructor(name: string, pattern: string) {
    this.name = name;
    this.pattern = pattern.split('.');
    this.matchIndex = this.pattern.indexOf('$');
    const first = this.pattern[0]!;
    this.prefix = first === '$' || first === '*' || first === '**' ? '' : first;
  }

  extract(ctx: ExtractionContext, tags: Tag[], remove: Array<[number, number]>): boolean {
    const tokens = ctx.tokens;
    const found = this.search(tokens, 0, 0, 0, undefined);
    if (found === undefined) return false;
    const [tokenIndex, charStart] = found;
    const value = tokens[tokenIndex]!;
    let start = charStart;
    let end = start + value.length;
    // Remove the dot that joins the captured token to its neighbour: the following dot when the
    // token is not last ("ab." / "cd."), otherwise the preceding one (".ef").
    if (tokenIndex < tokens.length - 1) end++;
    else if (start > 0) start--;
    tags.push({ name: this.name, value });
    remove.push([start, end]);
    return true;
  }

  /**
   * Returns [captured token index, its character offset] or undefined if the pattern doesn't match.
   * Every pattern holds exactly one `$`, so a full match always has a capture.
   */
  private search(
    tokens: readonly string[],
    input: number,
    pat: number,
    charIndex: number,
    captured: [number, number] | undefined,
  ): [number, number] | undefined {
    for (; input < tokens.length && pat < this.pattern.length; input++, pat++) {
      const want = this.pattern[pat]!;
      if (pat === this.matchIndex) {
        captured = [input, charIndex];
      } else if (want === '**') {
        if (pat === this.pattern.length - 1) return captured; // swallows the (non-empty) rest
        // A `**` mid-pattern may cover any number of tokens: try every split point.
        for (let i = input; i < tokens.length; i++) {
          const found = this.search(tokens, i, pat + 1, charIndex, captured);
          if (found !== undefined) return found;
          charIndex += tokens[i]!.length + 1;
        }
        return undefined;
      } else if (want !== '*' && want !== tokens[input]) {
        return undefined;
      }
      charIndex += tokens[input]!.length + 1;
    }
    return pat === this.pattern.length && input === tokens.length ? captured : undefined;
  }
}

class FixedExtractor implements Extractor {
  readonly name: string;
  readonly prefix = '';
  otherWithSameName = false;
  private readonly value: string;
  constructor(name: string, value: string) {
    this.name = name;
    this.value = value;
  }
  extract(_ctx: ExtractionContext, tags: Tag[]): boolean {
    tags.push({ name: this.name, value: this.value });
    return true;
  }
}

/** Mirrors envoy.config.metrics.v3.TagSpecifier. */
export interface TagSpecifier {
  tagName: string;
  /** ECMAScript regex (Envoy uses std::regex, ECMAScript grammar). Empty/absent = the default of that name. */
  regex?: string;
  fixedValue?: string;
}

/** Mirrors the tag-related fields of envoy.config.metrics.v3.StatsConfig. */
export interface TagProducerConfig {
  /** Default true, as in Envoy. */
  useAllDefaultTags?: boolean;
  statsTags?: readonly TagSpecifier[];
}

/**
 * Produces tags for stat names. Build one per StatsStore (config time); `produceTags` is pure.
 * @throws Error when a TagSpecifier names no default extractor and has no regex, or its regex is invalid.
 */
export class TagProducer {
  private readonly withoutPrefix: Extractor[] = [];
  private readonly byPrefix = new Map<string, Extractor[]>();
  private readonly byName = new Map<string, Extractor>();

  constructor(config: TagProducerConfig = {}) {
    if (config.useAllDefaultTags ?? true) {
      for (const d of DEFAULT_REGEX_DESCRIPTORS) this.add(fromDescriptor(d));
      for (const d of DEFAULT_TOKEN_DESCRIPTORS) this.add(fromDescriptor(d));
    }
    for (const spec of config.statsTags ?? []) {
      if (spec.fixedValue !== undefined) {
        this.add(new FixedExtractor(spec.tagName, spec.fixedValue));
      } else if (spec.regex === undefined || spec.regex === '') {
        const defaults = [...DEFAULT_REGEX_DESCRIPTORS, ...DEFAULT_TOKEN_DESCRIPTORS].filter((d) => d.name === spec.tagName);
        if (defaults.length === 0) {
          throw new Error(`No regex specified for tag specifier and no default regex for name: '${spec.tagName}'`);
        }
        for (const d of defaults) this.add(fromDescriptor(d));
      } else {
        // User regexes go through Envoy's std::regex path: regex_search, the removal group may be empty.
        this.add(new RegexExtractor(spec.tagName, spec.regex, '', undefined, false));
      }
    }
  }

  private add(e: Extractor): void {
    const other = this.byName.get(e.name);
    if (other === undefined) this.byName.set(e.name, e);
    else {
      other.otherWithSameName = true;
      e.otherWithSameName = true;
    }
    if (e.prefix === '') this.withoutPrefix.push(e);
    else {
      const list = this.byPrefix.get(e.prefix);
      if (list === undefined) this.byPrefix.set(e.prefix, [e]);
      else list.push(e);
    }
  }

  /** Envoy's TagProducerImpl::produceTags. */
  produceTags(statName: string): TagExtractionResult {
    const ctx = new ExtractionContext(statName);
    const tags: Tag[] = [];
    const remove: Array<[number, number]> = [];
    const seen = new Set<string>();
    const run = (e: Extractor): void => {
      if (e.otherWithSameName && seen.has(e.name)) return;
      if (e.extract(ctx, tags, remove) && e.otherWithSameName) seen.add(e.name);
    };
    for (const e of this.withoutPrefix) run(e);
    const dot = statName.indexOf('.');
    if (dot !== -1) {
      const list = this.byPrefix.get(statName.slice(0, dot));
      if (list !== undefined) for (const e of list) run(e);
    }
    return { tagExtractedName: removeRanges(statName, remove), tags };
  }
}

function fromDescriptor(d: Descriptor): Extractor {
  return d.kind === 'regex'
    ? new RegexExtractor(d.name, d.regex, d.substr, d.negativeMatch, true)
    : new TokenExtractor(d.name, d.pattern);
}

/** Removes the union of the half-open ranges from `s` (Envoy's StringUtil::removeCharacters). */
function removeRanges(s: string, ranges: ReadonlyArray<readonly [number, number]>): string {
  if (ranges.length === 0) return s;
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  let out = '';
  let pos = 0;
  for (const [start, end] of sorted) {
    if (start > pos) out += s.slice(pos, start);
    if (end > pos) pos = end;
  }
  return out + s.slice(pos);
}
