/**
 * envoy.filters.network.rbac (extensions.filters.network.rbac.v3.RBAC): the RBAC engine on connection facts
 * (addresses, ports, SNI, peer certificate), as a {@link ConnectionGate} ahead of the chain's terminal filter.
 * - Evaluated once, when the connection is handed to the chain (after TLS). Envoy's ONE_TIME_ON_FIRST_BYTE
 *   evaluates on the first bytes read; every fact it reads is known at connection time, so the verdict is the
 *   same, only earlier (a client that never sends a byte is closed too). CONTINUOUS is refused (unsupported).
 * - Denied: the connection is closed. Stats `<stat_prefix>rbac.allowed|denied` and
 *   `<stat_prefix>rbac.<shadow_rules_stat_prefix>shadow_allowed|shadow_denied` (Envoy concatenates the prefix as
 *   given: Istio's `tcp.` gives `tcp.rbac.allowed`).
 * - No request: header matchers see no headers, url_path and request metadata never match.
 */
import type { RBAC__Output } from '../../xds/gen/envoy/extensions/filters/network/rbac/v3/RBAC.ts';
import type { Any__Output } from '../../xds/gen/google/protobuf/Any.ts';
import { unpackAny } from '../../xds/any.ts';
import { ConfigError, type Diagnostic } from '../../shared/errors.ts';
import type { Logger } from '../../shared/log.ts';
import type { Counter, StatsStore } from '../stats/store.ts';
import type { ConnectionGate } from '../listener/network-filter.ts';
import type { DownstreamConnectionInfo } from '../http/stream.ts';
import { compileRbac, type RbacEngine } from './engine.ts';

export const NETWORK_RBAC_TYPE = 'type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC';

export class NetworkRbacFilter implements ConnectionGate {
  private readonly engine: RbacEngine | undefined;
  private readonly shadow: RbacEngine | undefined;
  private readonly allowed: Counter;
  private readonly denied: Counter;
  private readonly shadowAllowed: Counter;
  private readonly shadowDenied: Counter;
  private readonly log: Logger;

  constructor(engine: RbacEngine | undefined, shadow: RbacEngine | undefined, cfg: RBAC__Output, store: StatsStore, log: Logger) {
    this.engine = engine;
    this.shadow = shadow;
    this.log = log;
    const p = `${cfg.stat_prefix}rbac.`;
    this.allowed = store.counter(`${p}allowed`);
    this.denied = store.counter(`${p}denied`);
    this.shadowAllowed = store.counter(`${p}${cfg.shadow_rules_stat_prefix}shadow_allowed`);
    this.shadowDenied = store.counter(`${p}${cfg.shadow_rules_stat_prefix}shadow_denied`);
  }

  onConnection(conn: DownstreamConnectionInfo): boolean {
    const ctx = { conn, head: undefined, metadata: undefined };
    if (this.shadow !== undefined) (this.shadow.evaluate(ctx).allowed ? this.shadowAllowed : this.shadowDenied).inc();
    if (this.engine === undefined) return true;
    const r = this.engine.evaluate(ctx);
    if (r.allowed) {
      this.allowed.inc();
      return true;
    }
    this.denied.inc();
    this.log.debug({ remote: conn.remoteAddress, policy: r.policyId ?? 'none' }, 'rbac_access_denied_matched_policy');
    return false;
  }
}

/**
 * Builds the filter from its typed_config.
 * @throws ConfigError with paths relative to the typed_config.
 */
export function createNetworkRbacFilter(typedConfig: Any__Output, store: StatsStore, log: Logger): NetworkRbacFilter {
  const cfg = unpackAny<RBAC__Output>(typedConfig);
  const diags: Diagnostic[] = [];
  if (cfg.stat_prefix === '') diags.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: 'stat_prefix', message: 'stat_prefix is required' });
  const et = cfg.enforcement_type as string | number;
  if (et === 'CONTINUOUS' || et === 1) {
    diags.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_UNSUPPORTED', path: 'enforcement_type', message: 'enforcement_type CONTINUOUS is not supported (ONE_TIME_ON_FIRST_BYTE is)' });
  }
  if (cfg.matcher) diags.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_UNSUPPORTED', path: 'matcher', message: 'RBAC `matcher` is not supported; use `rules`' });
  if (cfg.shadow_matcher) diags.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_UNSUPPORTED', path: 'shadow_matcher', message: 'RBAC `shadow_matcher` is not supported; use `shadow_rules`' });
  const engine = cfg.rules ? compileRbac(cfg.rules, 'rules', diags) : undefined;
  const shadow = cfg.shadow_rules ? compileRbac(cfg.shadow_rules, 'shadow_rules', diags) : undefined;
  if (diags.length > 0) throw new ConfigError(diags, 'network RBAC filter');
  return new NetworkRbacFilter(engine, shadow, cfg, store, log);
}
