/** All clusters of the proxy by name; static ones from the bootstrap, dynamic ones from CDS later. */
import type { Cluster__Output } from '../../xds/gen/envoy/config/cluster/v3/Cluster.ts';
import { ConfigError, type Diagnostic } from '../../shared/errors.ts';
import type { StatsStore } from '../stats/store.ts';
import { ClusterRuntime, type ClusterEnv } from './cluster.ts';

export class ClusterManager {
  private readonly clusters = new Map<string, ClusterRuntime>();
  private readonly store: StatsStore;
  private readonly env: ClusterEnv;

  constructor(store: StatsStore, env: ClusterEnv) {
    this.store = store;
    this.env = env;
  }

  /** Builds every cluster or none: errors carry paths like `static_resources.clusters[2].lb_policy`. */
  addStatic(configs: readonly Cluster__Output[], pathPrefix: string): void {
    const diags: Diagnostic[] = [];
    const built: ClusterRuntime[] = [];
    const seen = new Set<string>();
    configs.forEach((c, i) => {
      if (seen.has(c.name)) {
        diags.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: `${pathPrefix}[${i}].name`, message: `duplicate cluster name ${JSON.stringify(c.name)}` });
        return;
      }
      seen.add(c.name);
      try {
        built.push(new ClusterRuntime(c, this.store.scope(`cluster.${c.name}`), this.env));
      } catch (err) {
        if (err instanceof ConfigError) for (const d of err.diagnostics) diags.push({ ...d, path: `${pathPrefix}[${i}].${d.path}` });
        else throw err;
      }
    });
    if (diags.length > 0) throw new ConfigError(diags, 'clusters');
    for (const c of built) {
      this.clusters.set(c.name, c);
      c.start();
    }
  }

  /** Builds a cluster from CDS without adding it; throws ConfigError (paths relative to the Cluster). */
  build(config: Cluster__Output): ClusterRuntime {
    return new ClusterRuntime(config, this.store.scope(`cluster.${config.name}`), this.env, true);
  }

  /**
   * Makes a built (and warmed) CDS cluster the active one under its name. The cluster it replaces keeps
   * serving the requests that already picked it and closes when they are done (at most `drainMs`).
   */
  activate(c: ClusterRuntime, drainMs: number): void {
    const old = this.clusters.get(c.name);
    this.clusters.set(c.name, c);
    if (old !== undefined && old !== c) old.closeWhenIdle(drainMs);
  }

  /** Removes a CDS cluster; its in-flight requests finish first. Static clusters are never removed. */
  remove(name: string, drainMs: number): void {
    const old = this.clusters.get(name);
    if (old === undefined || !old.addedViaApi) return;
    this.clusters.delete(name);
    old.closeWhenIdle(drainMs);
  }

  get(name: string): ClusterRuntime | undefined {
    return this.clusters.get(name);
  }

  all(): IterableIterator<ClusterRuntime> {
    return this.clusters.values();
  }

  /** Resolves when every cluster has its first host set (DNS clusters resolve asynchronously). */
  async initialized(timeoutMs: number): Promise<void> {
    const t = new Promise<void>((r) => setTimeout(r, timeoutMs).unref());
    await Promise.race([Promise.all([...this.clusters.values()].map((c) => c.initialized)), t]);
  }

  close(): void {
    for (const c of this.clusters.values()) c.close();
  }
}
