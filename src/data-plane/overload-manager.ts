/**
 * Envoy's overload manager (bootstrap `overload_manager`), the part Sloop implements: the proactive resource
 * monitor `envoy.resource_monitors.global_downstream_max_connections`, a limit on the downstream connections
 * open across all listeners. Envoy's reactive monitors (heap, cgroup memory, CPU), overload actions and load
 * shed points are refused, so a bootstrap never silently loses protection it asked for.
 */
import type { Bootstrap__Output } from '../xds/gen/envoy/config/bootstrap/v3/Bootstrap.ts';
import type { DownstreamConnectionsConfig__Output } from '../xds/gen/envoy/extensions/resource_monitors/downstream_connections/v3/DownstreamConnectionsConfig.ts';
import type { Diagnostic } from '../shared/errors.ts';
import type { JsonPath } from '../xds/proto-json.ts';
import { typeNameOfUrl } from '../xds/protos.ts';
import { unpackAny } from '../xds/any.ts';

/** Envoy's name for the proactive global connection limit (OverloadProactiveResourceNames). */
export const GLOBAL_DOWNSTREAM_MAX_CONNECTIONS = 'envoy.resource_monitors.global_downstream_max_connections';
export const DOWNSTREAM_CONNECTIONS_CONFIG = 'envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig';

/** Resource monitors Envoy registers that Sloop does not implement (refused as unsupported, not unknown). */
const ENVOY_MONITORS_NOT_IMPLEMENTED: ReadonlySet<string> = new Set([
  'envoy.resource_monitors.fixed_heap',
  'envoy.resource_monitors.injected_resource',
  'envoy.resource_monitors.cgroup_memory',
  'envoy.resource_monitors.cpu_utilization',
]);

/** A problem in `overload_manager`, with its path as a JSON path (snake_case) for source positions. */
export interface OverloadProblem {
  severity: Diagnostic['severity'];
  code: Diagnostic['code'];
  path: JsonPath;
  message: string;
}

/**
 * Checks bootstrap `overload_manager` beyond what the proto rules check. Returns every problem (empty when
 * there is no overload manager): unknown monitor names, duplicates, a global_downstream_max_connections monitor
 * without its DownstreamConnectionsConfig, and the parts Sloop does not implement.
 */
export function validateOverloadManager(b: Bootstrap__Output): OverloadProblem[] {
  const om = b.overload_manager;
  if (om === null || om === undefined) return [];
  const out: OverloadProblem[] = [];
  const at = (path: JsonPath, message: string, code: Diagnostic['code'] = 'SLOOP_ERR_CONFIG_INVALID', severity: Diagnostic['severity'] = 'error'): void => {
    out.push({ severity, code, path: ['overload_manager', ...path], message });
  };
  const seen = new Set<string>();
  om.resource_monitors.forEach((m, i) => {
    const name = m.name;
    if (seen.has(name)) {
      // Envoy's OverloadManagerImpl: "Duplicate resource monitor <name>".
      at(['resource_monitors', i, 'name'], `duplicate resource monitor ${JSON.stringify(name)}`);
      return;
    }
    seen.add(name);
    if (name === GLOBAL_DOWNSTREAM_MAX_CONNECTIONS) {
      const url = m.typed_config?.type_url;
      if (url === undefined) {
        at(['resource_monitors', i], `${GLOBAL_DOWNSTREAM_MAX_CONNECTIONS} needs a typed_config ${DOWNSTREAM_CONNECTIONS_CONFIG} with max_active_downstream_connections > 0`);
      } else if (typeNameOfUrl(url) !== DOWNSTREAM_CONNECTIONS_CONFIG) {
        at(['resource_monitors', i, 'typed_config'], `${GLOBAL_DOWNSTREAM_MAX_CONNECTIONS} takes a ${DOWNSTREAM_CONNECTIONS_CONFIG}, got ${typeNameOfUrl(url)}`);
      }
      return;
    }
    if (ENVOY_MONITORS_NOT_IMPLEMENTED.has(name)) {
      at(['resource_monitors', i, 'name'], `resource monitor ${JSON.stringify(name)} is not implemented (supported: ${GLOBAL_DOWNSTREAM_MAX_CONNECTIONS})`, 'SLOOP_ERR_CONFIG_UNSUPPORTED');
      return;
    }
    // Envoy only treats the monitor as the global connection limit under exactly this name (the extension's
    // own name, envoy.resource_monitors.downstream_connections, is refused there too).
    const hint = m.typed_config !== null && m.typed_config !== undefined && typeNameOfUrl(m.typed_config.type_url) === DOWNSTREAM_CONNECTIONS_CONFIG ? `; the global connection limit (${DOWNSTREAM_CONNECTIONS_CONFIG}) must be named ${GLOBAL_DOWNSTREAM_MAX_CONNECTIONS}` : ` (supported: ${GLOBAL_DOWNSTREAM_MAX_CONNECTIONS})`;
    at(['resource_monitors', i, 'name'], `unknown resource monitor ${JSON.stringify(name)}${hint}`);
  });
  om.actions.forEach((a, i) => {
    at(['actions', i], `overload action ${JSON.stringify(a.name)} is not implemented (the overload manager only enforces ${GLOBAL_DOWNSTREAM_MAX_CONNECTIONS})`, 'SLOOP_ERR_CONFIG_UNSUPPORTED');
  });
  om.loadshed_points.forEach((p, i) => {
    at(['loadshed_points', i], `load shed point ${JSON.stringify(p.name)} is not implemented`, 'SLOOP_ERR_CONFIG_UNSUPPORTED');
  });
  if (om.buffer_factory_config !== null && om.buffer_factory_config !== undefined) {
    // Buffer accounting only classifies streams by memory for overload actions, which Sloop has none of.
    at(['buffer_factory_config'], 'buffer_factory_config is ignored: Sloop has no memory-class accounting', 'SLOOP_ERR_CONFIG_UNSUPPORTED', 'warning');
  }
  return out;
}

/** `overload_manager` as a JSON path string, Envoy's spelling: `overload_manager.resource_monitors[0].name`. */
export function formatJsonPath(path: JsonPath): string {
  let s = '';
  for (const seg of path) s += typeof seg === 'number' ? `[${seg}]` : s === '' ? seg : `.${seg}`;
  return s;
}

/**
 * The global downstream connection limit shared by every listener (Envoy's proactive resource
 * GlobalDownstreamMaxConnections). A listener takes a slot per accepted connection and gives it back when the
 * connection closes; when none is left the new connection is closed at once. Listeners with
 * `ignore_global_conn_limit` neither take nor need a slot (as in Envoy, they are not counted).
 */
export class GlobalConnectionLimit {
  /** max_active_downstream_connections. */
  readonly maxConnections: number;
  private active = 0;

  constructor(maxConnections: number) {
    this.maxConnections = maxConnections;
  }

  /** Takes a slot for a new connection; false when the limit is reached (the caller must close it). */
  tryAllocate(): boolean {
    if (this.active >= this.maxConnections) return false;
    this.active++;
    return true;
  }

  /** Gives back a slot taken by {@link tryAllocate}; call exactly once per successful allocation. */
  release(): void {
    if (this.active > 0) this.active--;
  }

  /** Connections holding a slot now. */
  get activeConnections(): number {
    return this.active;
  }
}

/**
 * The limit a validated bootstrap configures (see {@link validateOverloadManager}), or undefined when it has no
 * global_downstream_max_connections monitor.
 */
export function createGlobalConnectionLimit(b: Bootstrap__Output): GlobalConnectionLimit | undefined {
  const m = b.overload_manager?.resource_monitors.find((r) => r.name === GLOBAL_DOWNSTREAM_MAX_CONNECTIONS);
  if (m?.typed_config === null || m?.typed_config === undefined) return undefined;
  const cfg = unpackAny<DownstreamConnectionsConfig__Output>(m.typed_config);
  // int64 as a decimal string; limits past 2^53 connections are unlimited in practice.
  const max = Number(cfg.max_active_downstream_connections);
  return max > 0 ? new GlobalConnectionLimit(max) : undefined;
}
