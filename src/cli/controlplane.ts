/**
 * `sloop controlplane --config <dir> --xds-address <host:port>`: Pilot's job. Watches a folder of Istio YAML,
 * keeps the last good model, and on every change — or when a proxy connects or leaves, since connected proxies
 * are the workloads — rebuilds the registry and every proxy's Envoy resources (pure translation) and publishes
 * them as snapshots on the ADS server. Pushes are debounced as istiod's are (100 ms quiet, 10 s max).
 */
import { ConfigWatcher } from '../control-plane/config/watch.ts';
import type { ConfigModel } from '../control-plane/config/model.ts';
import { parseProxyInfo, type ProxyInfo } from '../control-plane/registry/proxy-info.ts';
import { buildRegistry } from '../control-plane/registry/registry.ts';
import { createPushContext, type PushContext } from '../control-plane/translate/push-context.ts';
import { buildProxyConfig } from '../control-plane/translate/build.ts';
import { AdsServer } from '../xds/ads-server.ts';
import { SnapshotCache, type NodeInfo } from '../xds/snapshot-cache.ts';
import { createSnapshot, EncodingCache, SnapshotError, type Snapshot } from '../xds/snapshot.ts';
import { createDebouncer } from '../xds/debounce.ts';
import { formatDiagnostic, type Diagnostic } from '../shared/errors.ts';
import { createLogger, type Logger, type LogLevel } from '../shared/log.ts';

export interface ControlPlaneCliOptions {
  configDir: string;
  xdsAddress: string;
  logLevel: string;
}

/** Why a push happens; merged while debouncing. */
interface PushReason {
  config: boolean;
  nodes: Set<string>;
}

/** Logs each distinct diagnostic once while it persists, so a push per second doesn't repeat a warning forever. */
function diagnosticReporter(log: Logger): (diags: readonly Diagnostic[]) => void {
  let previous = new Set<string>();
  return (diags) => {
    const now = new Set<string>();
    for (const d of diags) {
      const line = formatDiagnostic(d);
      now.add(line);
      if (previous.has(line)) continue;
      if (d.severity === 'error') log.error({ code: d.code }, line);
      else log.warn({ code: d.code }, line);
    }
    previous = now;
  };
}

/** Runs until SIGTERM/SIGINT; returns the exit code. */
export async function runControlPlane(o: ControlPlaneCliOptions): Promise<number> {
  const log = createLogger((o.logLevel === 'off' ? 'silent' : o.logLevel) as LogLevel).child({ component: 'controlplane' });
  const reportConfig = diagnosticReporter(log);
  const reportPush = diagnosticReporter(log);
  const proxies = new Map<string, ProxyInfo>();
  let model: ConfigModel | undefined;
  // Nodes of one push share most resources: encode each distinct one once (docs/performance.md).
  const encodings = new EncodingCache();
  // The last push's context: a node connecting under the same model is built from it (its own endpoint is in the
  // next, debounced push), and the next push of the same model reuses its endpoint-free builds.
  let last: { model: ConfigModel; push: PushContext } | undefined;

  const snapshotOf = (proxy: ProxyInfo, push: PushContext): Snapshot | undefined => {
    const built = buildProxyConfig(push, proxy);
    reportPush(built.diagnostics);
    try {
      return createSnapshot(built.resources, { cache: encodings });
    } catch (err) {
      // An inconsistent snapshot is a translation bug: keep the node on its previous snapshot.
      if (err instanceof SnapshotError) {
        for (const d of err.diagnostics) log.error({ nodeId: proxy.id, code: d.code }, formatDiagnostic(d));
        return undefined;
      }
      throw err;
    }
  };

  const pushAll = (): void => {
    if (model === undefined) return;
    const started = performance.now();
    const registry = buildRegistry(model, [...proxies.values()]);
    const push = createPushContext(model, registry, last?.push);
    last = { model, push };
    reportPush([...registry.diagnostics, ...push.diagnostics]);
    let published = 0;
    for (const proxy of proxies.values()) {
      const snapshot = snapshotOf(proxy, push);
      if (snapshot === undefined) continue;
      cache.setSnapshot(proxy.id, snapshot);
      published++;
    }
    encodings.rotate();
    log.info({ proxies: proxies.size, published, ms: Math.round(performance.now() - started) }, 'push');
  };

  const debouncer = createDebouncer<PushReason>({
    merge: (a, b) => ({ config: a.config || b.config, nodes: new Set([...a.nodes, ...b.nodes]) }),
    flush: () => pushAll(),
    onError: (err) => log.error({ err }, 'push failed'),
  });

  const addProxy = (node: NodeInfo): ProxyInfo => {
    const { proxy, problems } = parseProxyInfo({ id: node.id, metadata: node.metadata });
    for (const p of problems) log.warn({ nodeId: node.id, key: p.key }, `node metadata: ${p.message}`);
    proxies.set(proxy.id, proxy);
    return proxy;
  };

  const cache = new SnapshotCache({
    // A node that connects gets its config at once; the others are re-pushed (debounced), since a new workload
    // is a new endpoint for the services that select it.
    resolveSnapshot: (node) => {
      const proxy = proxies.get(node.id) ?? addProxy(node);
      if (model === undefined) return undefined;
      if (last === undefined || last.model !== model) {
        last = { model, push: createPushContext(model, buildRegistry(model, [...proxies.values()]), last?.push) };
      }
      return snapshotOf(proxy, last.push);
    },
  });

  const server = new AdsServer({
    cache,
    log,
    onNodeConnected: (node) => {
      addProxy(node);
      debouncer.push({ config: false, nodes: new Set([node.id]) });
    },
    onNodeDisconnected: (nodeId) => {
      proxies.delete(nodeId);
      cache.clearSnapshot(nodeId);
      debouncer.push({ config: false, nodes: new Set([nodeId]) });
    },
  });

  const watcher = new ConfigWatcher({ paths: [o.configDir] });
  watcher.on('model', (m, warnings) => {
    model = m;
    reportConfig(warnings);
    log.info({ dir: o.configDir }, 'config loaded');
    debouncer.push({ config: true, nodes: new Set() });
  });
  watcher.on('invalid', (diags) => {
    reportConfig(diags);
    log.error({ errors: diags.filter((d) => d.severity === 'error').length }, model === undefined ? 'config invalid: serving nothing until it is fixed' : 'config change rejected: the last good config keeps serving');
  });
  watcher.on('error', (err) => log.error({ err }, 'config watch failed'));

  let port: number;
  try {
    port = await server.listen(o.xdsAddress);
  } catch (err) {
    process.stderr.write(`sloop controlplane: cannot listen on ${o.xdsAddress}: ${(err as Error).message}\n`);
    return 1;
  }
  watcher.start();
  log.info({ xds: `${o.xdsAddress.replace(/:\d+$/, '')}:${port}`, config: o.configDir }, 'control plane ready');

  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  log.info({}, 'shutting down');
  debouncer.cancel();
  watcher.close();
  await server.close();
  return 0;
}
