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
import { JwksResolver } from '../control-plane/jwks/resolver.ts';
import { buildProxyConfig } from '../control-plane/translate/build.ts';
import { AdsServer } from '../xds/ads-server.ts';
import { SnapshotCache, type NodeInfo } from '../xds/snapshot-cache.ts';
import { createSnapshot, EncodingCache, SnapshotError, type Snapshot } from '../xds/snapshot.ts';
import { createDebouncer } from '../xds/debounce.ts';
import { formatDiagnostic, type Diagnostic } from '../shared/errors.ts';
import { createLogger, type Logger, type LogLevel } from '../shared/log.ts';
import * as grpc from '@grpc/grpc-js';
import { loadCa, type SigningCa } from '../control-plane/ca/root.ts';
import { TokenStore } from '../control-plane/ca/tokens.ts';
import { addCaService } from '../control-plane/ca/service.ts';
import { SloopError } from '../shared/errors.ts';
import type { Secret } from '../xds/gen/envoy/extensions/transport_sockets/tls/v3/Secret.ts';

export interface ControlPlaneCliOptions {
  configDir: string;
  xdsAddress: string;
  logLevel: string;
  /**
   * The CA (docs/identity.md): its state directory (self-signed root, bootstrap tokens). Without it (and without
   * `caCertsDir`) the control plane runs no CA.
   */
  caDir?: string;
  /** An operator's CA in Istio's `cacerts` layout, instead of a self-signed root (tokens still live in caDir). */
  caCertsDir?: string;
  trustDomain?: string;
  /** Longest workload certificate lifetime issued (default 90 days); longer requests are clamped. */
  maxCertTtlS?: number;
  /** Lifetime when a request names none (default 24 h). */
  defaultCertTtlS?: number;
}

/** Istio's SDS name of the mesh trust bundle, which every proxy's ISTIO_MUTUAL contexts validate peers with. */
const ROOT_SECRET_NAME = 'ROOTCA';

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
      const r = built.resources;
      return createSnapshot({ ...built.layers, routes: r.routes, endpoints: r.endpoints, ...(rootSecrets ? { secrets: rootSecrets } : {}) }, { cache: encodings });
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
    const push = createPushContext(model, registry, last?.push, { jwks: jwks.snapshot() });
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
  // RequestAuthentication jwksUri key sets, fetched here as istiod does and inlined by translation.
  const jwks = new JwksResolver({ log: log.child({ component: 'jwks' }), onChange: () => debouncer.push({ config: true, nodes: new Set() }) });

  const addProxy = (node: NodeInfo): ProxyInfo => {
    const { proxy, problems } = parseProxyInfo({ id: node.id, metadata: node.metadata });
    for (const p of problems) log.warn({ nodeId: node.id, key: p.key }, `node metadata: ${p.message}`);
    proxies.set(proxy.id, proxy);
    return proxy;
  };

  // The CA, when configured: issues workload certificates (CreateCertificate, same port as ADS) and serves its
  // trust bundle as the Secret `ROOTCA` in every snapshot, so a root change reaches every proxy over ADS.
  let ca: SigningCa | undefined;
  let tokens: TokenStore | undefined;
  let rootSecrets: Secret[] | undefined;
  if (o.caDir !== undefined || o.caCertsDir !== undefined) {
    const stateDir = o.caDir ?? o.caCertsDir!;
    try {
      ca = await loadCa({ stateDir, operatorCertsDir: o.caCertsDir, trustDomain: o.trustDomain, nowMs: Date.now });
      tokens = await TokenStore.open({ dir: stateDir, trustDomain: ca.trustDomain });
    } catch (err) {
      if (err instanceof SloopError) {
        process.stderr.write(`sloop controlplane: ${err.message}\n`);
        return 1;
      }
      throw err;
    }
    rootSecrets = [{ name: ROOT_SECRET_NAME, validation_context: { trusted_ca: { inline_string: ca.rootsPem.map((p) => (p.endsWith('\n') ? p : `${p}\n`)).join('') } } }];
    log.info({ source: ca.source, trustDomain: ca.trustDomain, dir: stateDir, tokens: tokens.size }, 'CA ready');
  }

  const cache = new SnapshotCache({
    // A node that connects gets its config at once; the others are re-pushed (debounced), since a new workload
    // is a new endpoint for the services that select it.
    resolveSnapshot: (node) => {
      const proxy = proxies.get(node.id) ?? addProxy(node);
      if (model === undefined) return undefined;
      if (last === undefined || last.model !== model) {
        last = { model, push: createPushContext(model, buildRegistry(model, [...proxies.values()]), last?.push, { jwks: jwks.snapshot() }) };
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
    jwks.update(m.requestAuthentications.flatMap((ra) => (ra.spec.jwtRules ?? []).flatMap((r) => (r.jwksUri !== undefined && r.jwks === undefined ? [r.jwksUri] : []))));
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
  // ADS and the CA share one gRPC server and port (istiod serves both on 15012; plaintext here, like 15010).
  const grpcServer = new grpc.Server();
  server.addTo(grpcServer);
  if (ca !== undefined && tokens !== undefined) {
    addCaService(grpcServer, ca, tokens, {
      log,
      nowMs: Date.now,
      maxTtlMs: o.maxCertTtlS !== undefined ? o.maxCertTtlS * 1000 : undefined,
      defaultTtlMs: o.defaultCertTtlS !== undefined ? o.defaultCertTtlS * 1000 : undefined,
    });
  }
  try {
    port = await new Promise<number>((resolve, reject) =>
      grpcServer.bindAsync(o.xdsAddress, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
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
  jwks.close();
  watcher.close();
  await server.close();
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      grpcServer.forceShutdown();
      resolve();
    }, 1_000);
    grpcServer.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
  return 0;
}

/** `sloop token`: mints a bootstrap token into a CA directory's token store and prints it (the only time it is shown). */
export async function runToken(o: { caDir: string; namespace: string; serviceAccount: string }): Promise<number> {
  try {
    const store = await TokenStore.open({ dir: o.caDir });
    process.stdout.write(`${await store.mint({ namespace: o.namespace, serviceAccount: o.serviceAccount })}\n`);
    return 0;
  } catch (err) {
    if (err instanceof SloopError) {
      process.stderr.write(`sloop token: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
