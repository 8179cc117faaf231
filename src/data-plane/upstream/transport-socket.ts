/**
 * A cluster's upstream transport sockets: the cluster's own `transport_socket` and those of its
 * `transport_socket_matches` (Envoy's TransportSocketMatcherImpl). Each host is given one socket when it joins
 * the cluster or its metadata changes, never per request: the first match whose `match` fields all equal the
 * host's endpoint metadata under `filter_metadata["envoy.transport_socket_match"]`, then the same over its
 * locality's metadata, else the cluster's `transport_socket` (plaintext when it has none). A match with an empty
 * `match` matches every host. Stats `cluster.<name>.<match name>.total_match_count` and
 * `cluster.<name>.default.total_match_count` count the hosts each was picked for.
 */
import type tls from 'node:tls';
import type { Cluster__Output } from '../../xds/gen/envoy/config/cluster/v3/Cluster.ts';
import type { Metadata__Output } from '../../xds/gen/envoy/config/core/v3/Metadata.ts';
import type { TransportSocket__Output } from '../../xds/gen/envoy/config/core/v3/TransportSocket.ts';
import type { UpstreamTlsContext__Output } from '../../xds/gen/envoy/extensions/transport_sockets/tls/v3/UpstreamTlsContext.ts';
import type { Value__Output } from '../../xds/gen/google/protobuf/Value.ts';
import { unpackAny } from '../../xds/any.ts';
import { ConfigError, type Diagnostic } from '../../shared/errors.ts';
import type { Logger } from '../../shared/log.ts';
import type { Counter, StatsScope } from '../stats/store.ts';
import { createUpstreamTls, handshakeFailureStat, type UpstreamTls } from '../tls/context.ts';
import { SslStats } from '../tls/ssl-stats.ts';
import type { SecretManager } from '../tls/secrets.ts';
import { SdsTls, sdsReferences } from '../tls/sds-tls.ts';
import { resolveDataSource } from '../data-source.ts';

/** The endpoint (and locality) metadata namespace transport socket matches read. */
export const TRANSPORT_SOCKET_MATCH = 'envoy.transport_socket_match';
const UPSTREAM_TLS = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';
const RAW_BUFFER = 'type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer';

export interface TransportEnv {
  log: Logger;
  baseDir: string;
  secrets?: SecretManager;
}

/**
 * One upstream transport socket: plaintext, or TLS from an UpstreamTlsContext (inline or SDS). With SDS, a changed
 * secret replaces `tlsOptions` for new connections; connections already made keep theirs.
 */
export class UpstreamTransport {
  /** The match name (`tlsMode-istio`), or `default` for the cluster's own `transport_socket`. */
  readonly name: string;
  /** `tls.connect` options, or undefined for plaintext. */
  tlsOptions: tls.ConnectionOptions | undefined;
  readonly tlsEnabled: boolean;
  readonly verifyPeer: ((socket: tls.TLSSocket) => string | undefined) | undefined;
  readonly onTlsError: ((err: Error) => void) | undefined;
  /** Set when the UpstreamTlsContext names SDS secrets. */
  readonly sdsTls: SdsTls<UpstreamTls> | undefined;
  /** `<match name>.total_match_count` (only for clusters with transport_socket_matches). */
  matchCount: Counter | undefined;

  /**
   * @param ssl the cluster's `ssl.*` stats (Envoy's upstream TLS sockets of every match count in the cluster's scope).
   * @throws ConfigError with paths relative to the TransportSocket (`typed_config.common_tls_context…`).
   */
  constructor(name: string, ts: TransportSocket__Output | null | undefined, env: TransportEnv, ssl: () => SslStats, where: string) {
    this.name = name;
    const typeUrl = ts?.typed_config?.type_url;
    if (ts == null || typeUrl === undefined || typeUrl === RAW_BUFFER) {
      this.tlsEnabled = false;
      return;
    }
    if (typeUrl !== UPSTREAM_TLS) {
      throw new ConfigError([{ severity: 'error', code: 'SLOOP_ERR_CONFIG_UNSUPPORTED', path: 'typed_config', message: `unsupported upstream transport socket ${JSON.stringify(typeUrl)} (supported: UpstreamTlsContext, RawBuffer)` }], where);
    }
    const ctx = unpackAny<UpstreamTlsContext__Output>(ts.typed_config!);
    const read = (ds: Parameters<typeof resolveDataSource>[0]): Buffer | undefined => resolveDataSource(ds, env.baseDir);
    let u: UpstreamTls | undefined;
    try {
      const refs = env.secrets !== undefined ? sdsReferences(ctx.common_tls_context) : [];
      if (refs.length > 0) {
        // SDS secrets: each change builds a new context for new connections; pooled connections keep theirs.
        this.sdsTls = new SdsTls<UpstreamTls>({
          common: ctx.common_tls_context,
          secrets: env.secrets!,
          build: (tlsOptions) => createUpstreamTls(ctx, read, tlsOptions),
          onUpdate: (next) => {
            u = next;
            this.tlsOptions = next.options;
          },
          log: env.log,
          where,
        });
        u = this.sdsTls.current;
      } else u = createUpstreamTls(ctx, read);
    } catch (err) {
      if (err instanceof ConfigError) throw new ConfigError(err.diagnostics.map((d) => ({ ...d, path: `typed_config.${d.path}` })), where);
      throw err;
    }
    // Until the secrets arrive there is no certificate to offer: a TLS handshake is made (never plaintext) and
    // refused by verifyPeer before any byte of the request is sent.
    this.tlsOptions = u?.options ?? { rejectUnauthorized: false };
    this.tlsEnabled = true;
    const stats = ssl();
    this.verifyPeer = (t) => {
      if (u === undefined) {
        stats.connection_error.inc();
        return 'TLS secrets not available yet (SDS warming)';
      }
      const bad = u.checkPeer(t);
      if (bad === undefined) stats.onHandshake(t);
      else stats.onFailure(bad.stat);
      return bad?.message;
    };
    this.onTlsError = (err) => stats.onFailure(handshakeFailureStat(err));
  }

  close(): void {
    this.sdsTls?.close();
  }
}

interface CompiledMatch {
  transport: UpstreamTransport;
  labels: [string, Value__Output][];
}

/**
 * The cluster's transport sockets and how hosts pick one. Built once per Cluster version; `resolve` runs when a
 * host joins or its metadata changes.
 */
export class TransportSockets {
  /** The cluster's `transport_socket` (or plaintext): hosts that match no entry use it. */
  readonly default: UpstreamTransport;
  readonly #matches: CompiledMatch[] = [];
  /** Every socket, the default first. */
  readonly all: UpstreamTransport[] = [];

  /** @throws ConfigError with paths relative to the Cluster. */
  constructor(config: Cluster__Output, scope: StatsScope, env: TransportEnv) {
    let ssl: SslStats | undefined;
    const sslStats = (): SslStats => (ssl ??= new SslStats(scope));
    const diags: Diagnostic[] = [];
    const build = (name: string, ts: TransportSocket__Output | null, path: string, where: string): UpstreamTransport | undefined => {
      try {
        return new UpstreamTransport(name, ts, env, sslStats, where);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        for (const d of err.diagnostics) diags.push({ ...d, path: `${path}.${d.path}` });
        return undefined;
      }
    };
    const def = build('default', config.transport_socket, 'transport_socket', `cluster ${config.name}`);
    const matches = config.transport_socket_matches ?? [];
    matches.forEach((m, i) => {
      const path = `transport_socket_matches[${i}]`;
      if (!m.name) {
        diags.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: `${path}.name`, message: 'name must not be empty' });
        return;
      }
      const t = build(m.name, m.transport_socket, `${path}.transport_socket`, `cluster ${config.name} transport socket match ${m.name}`);
      if (t === undefined) return;
      t.matchCount = scope.counter(`${m.name}.total_match_count`);
      this.#matches.push({ transport: t, labels: Object.entries(m.match?.fields ?? {}) });
      this.all.push(t);
    });
    if (diags.length > 0 || def === undefined) {
      for (const t of this.all) t.close();
      def?.close();
      throw new ConfigError(diags, `cluster ${config.name}`);
    }
    this.default = def;
    this.all.unshift(def);
    if (matches.length > 0) def.matchCount = scope.counter('default.total_match_count');
  }

  /** Whether hosts can differ in transport socket (the cluster has transport_socket_matches). */
  get hasMatches(): boolean {
    return this.#matches.length > 0;
  }

  /** Envoy's TransportSocketMatcherImpl::resolve: endpoint metadata first, then locality metadata, then the default. */
  resolve(endpoint: Metadata__Output | null | undefined, locality: Metadata__Output | null | undefined): UpstreamTransport {
    if (this.#matches.length === 0) return this.default;
    for (const m of this.#matches) if (labelsMatch(m.labels, endpoint)) return m.transport;
    for (const m of this.#matches) if (labelsMatch(m.labels, locality)) return m.transport;
    return this.default;
  }

  close(): void {
    for (const t of this.all) t.close();
  }
}

/** Envoy's Config::Metadata::metadataLabelMatch (lists compared as values). */
function labelsMatch(labels: [string, Value__Output][], metadata: Metadata__Output | null | undefined): boolean {
  const fields = metadata?.filter_metadata?.[TRANSPORT_SOCKET_MATCH]?.fields;
  if (fields === undefined) return labels.length === 0;
  for (const [k, v] of labels) {
    const have = fields[k];
    if (have === undefined || !valueEquals(have, v)) return false;
  }
  return true;
}

/** Envoy's ValueUtil::equal on google.protobuf.Value. */
export function valueEquals(a: Value__Output, b: Value__Output): boolean {
  const kind = a.kind;
  if (kind !== b.kind) return false;
  switch (kind) {
    case 'stringValue':
      return a.stringValue === b.stringValue;
    case 'numberValue':
      return a.numberValue === b.numberValue;
    case 'boolValue':
      return a.boolValue === b.boolValue;
    case 'nullValue':
      return true;
    case 'structValue': {
      const x = a.structValue?.fields ?? {};
      const y = b.structValue?.fields ?? {};
      const keys = Object.keys(x);
      if (keys.length !== Object.keys(y).length) return false;
      return keys.every((k) => y[k] !== undefined && valueEquals(x[k], y[k]));
    }
    case 'listValue': {
      const x = a.listValue?.values ?? [];
      const y = b.listValue?.values ?? [];
      return x.length === y.length && x.every((v, i) => valueEquals(v, y[i]));
    }
    default:
      return true; // both unset
  }
}
