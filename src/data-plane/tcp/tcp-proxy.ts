/**
 * envoy.filters.network.tcp_proxy: connects each downstream connection to a host of the configured
 * cluster (or a weighted pick among clusters) and copies bytes both ways, with half-close,
 * backpressure, idle timeout and Envoy's tcp stats.
 */
import type { Socket } from 'node:net';
import type { TcpProxy__Output } from '../../xds/gen/envoy/extensions/filters/network/tcp_proxy/v3/TcpProxy.ts';
import { ConfigError } from '../../shared/errors.ts';
import type { Logger } from '../../shared/log.ts';
import type { DownstreamConnectionInfo } from '../http/stream.ts';
import type { NetworkFilter } from '../listener/network-filter.ts';
import type { ClusterManager } from '../upstream/cluster-manager.ts';
import type { ClusterRuntime } from '../upstream/cluster.ts';
import { connectUpstream } from '../upstream/connect.ts';
import { relayBytes } from './splice.ts';
import type { Counter, Gauge, StatsStore } from '../stats/store.ts';
import { durationMs } from '../duration.ts';
import { hashKeysToHash } from '../upstream/lb/xxhash64.ts';

const TCP_COUNTERS = [
  'downstream_cx_total', 'downstream_cx_no_route', 'downstream_cx_tx_bytes_total', 'downstream_cx_rx_bytes_total',
  'downstream_flow_control_paused_reading_total', 'downstream_flow_control_resumed_reading_total', 'idle_timeout',
  'upstream_flush_total', 'max_downstream_connection_duration', 'downstream_cx_overflow',
] as const;
type TcpStats = { [K in (typeof TCP_COUNTERS)[number]]: Counter } & { downstream_cx_tx_bytes_buffered: Gauge; upstream_flush_active: Gauge };

export interface TcpProxyEnv {
  clusters: ClusterManager;
  store: StatsStore;
  log: Logger;
  random: () => number;
}

export class TcpProxyFilter implements NetworkFilter {
  private readonly cfg: TcpProxy__Output;
  private readonly env: TcpProxyEnv;
  private readonly stats: TcpStats;
  private readonly idleTimeoutMs: number;
  private readonly maxAttempts: number;
  private readonly weighted: { name: string; weight: number }[] | undefined;
  private readonly totalWeight: number;
  private readonly conns = new Set<Socket>();

  constructor(cfg: TcpProxy__Output, env: TcpProxyEnv, path: string) {
    this.cfg = cfg;
    this.env = env;
    if (cfg.cluster_specifier !== 'cluster' && cfg.cluster_specifier !== 'weighted_clusters') {
      throw new ConfigError([{ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: `${path}.typed_config`, message: 'tcp_proxy needs cluster or weighted_clusters' }]);
    }
    if (cfg.cluster_specifier === 'weighted_clusters') {
      this.weighted = (cfg.weighted_clusters?.clusters ?? []).map((c) => ({ name: c.name, weight: c.weight }));
      this.totalWeight = this.weighted.reduce((a, c) => a + c.weight, 0);
      if (this.totalWeight === 0) {
        throw new ConfigError([{ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path: `${path}.typed_config.weighted_clusters.clusters`, message: 'weighted clusters need a positive total weight' }]);
      }
    } else this.totalWeight = 0;
    // Envoy: idle_timeout defaults to 1 hour; 0s disables it.
    this.idleTimeoutMs = cfg.idle_timeout === null ? 3600_000 : durationMs(cfg.idle_timeout, 0);
    this.maxAttempts = cfg.max_connect_attempts?.value ?? 1;
    const scope = env.store.scope(`tcp.${cfg.stat_prefix}`);
    const s: Record<string, unknown> = {};
    for (const n of TCP_COUNTERS) s[n] = scope.counter(n);
    s.downstream_cx_tx_bytes_buffered = scope.gauge('downstream_cx_tx_bytes_buffered');
    s.upstream_flush_active = scope.gauge('upstream_flush_active');
    this.stats = s as TcpStats;
  }

  private pickCluster(): string {
    if (this.weighted === undefined) return this.cfg.cluster ?? '';
    let r = Math.floor(this.env.random() * this.totalWeight);
    for (const c of this.weighted) {
      if (r < c.weight) return c.name;
      r -= c.weight;
    }
    return this.weighted[this.weighted.length - 1].name;
  }

  onConnection(down: Socket, info: DownstreamConnectionInfo, head: Buffer): void {
    this.stats.downstream_cx_total.inc();
    const cluster = this.env.clusters.get(this.pickCluster());
    if (cluster === undefined) {
      this.stats.downstream_cx_no_route.inc();
      down.destroy();
      return;
    }
    this.conns.add(down);
    down.once('close', () => this.conns.delete(down));
    down.pause();
    const pending: Buffer[] = head.length > 0 ? [head] : [];
    // Bytes that arrive while connecting are kept (bounded by the socket's own pause).
    this.connect(cluster, down, info, pending, 1);
  }

  private connect(cluster: ClusterRuntime, down: Socket, info: DownstreamConnectionInfo, pending: Buffer[], attempt: number): void {
    const hash = this.cfg.hash_policy.length > 0 && this.cfg.hash_policy[0].source_ip ? hashKeysToHash([info.remoteAddress]) : undefined;
    const host = cluster.chooseHost({ hash, random: this.env.random }, { address: info.originalDstAddress, port: info.originalDstPort });
    if (host === undefined) {
      cluster.stats.upstream_cx_none_healthy.inc();
      down.destroy();
      return;
    }
    if (cluster.resources.connections >= cluster.thresholds.maxConnections) {
      cluster.stats.upstream_cx_overflow.inc();
      down.destroy();
      return;
    }
    cluster.resources.connections++;
    cluster.stats.upstream_cx_total.inc();
    cluster.stats.upstream_cx_active.inc();
    const release = (): void => {
      cluster.resources.connections--;
      cluster.stats.upstream_cx_active.dec();
      cluster.stats.upstream_cx_destroy.inc();
    };
    const onDownGone = (): void => cancel();
    down.once('close', onDownGone);
    const cancel = connectUpstream({ ...cluster.connectOptions(host), allowHalfOpen: true }, (err, up) => {
      down.removeListener('close', onDownGone);
      if (err !== null || up === null) {
        release();
        cluster.stats.upstream_cx_connect_fail.inc();
        if (err?.reason === 'connect-timeout') cluster.stats.upstream_cx_connect_timeout.inc();
        if (attempt < this.maxAttempts && !down.destroyed) this.connect(cluster, down, info, pending, attempt + 1);
        else down.destroy();
        return;
      }
      if (down.destroyed) {
        up.destroy();
        release();
        return;
      }
      this.splice(down, up, pending, cluster, release);
    });
  }

  private splice(down: Socket, up: Socket, pending: Buffer[], cluster: ClusterRuntime, release: () => void): void {
    const st = this.stats;
    up.setNoDelay(true);
    for (const b of pending) up.write(b);
    let idle: NodeJS.Timeout | null = null;
    let lastActiveMs = performance.now();
    const touch = (): void => {
      lastActiveMs = performance.now();
    };
    if (this.idleTimeoutMs > 0) {
      // One timer per connection, re-armed lazily for what is left of the window: cheaper than resetting
      // it on every chunk, and still closes idle_timeout after the last byte (Envoy's TcpProxy idle timer).
      const check = (): void => {
        const left = this.idleTimeoutMs - (performance.now() - lastActiveMs);
        if (left > 0) {
          idle = setTimeout(check, left);
          idle.unref();
          return;
        }
        st.idle_timeout.inc();
        down.destroy();
        up.destroy();
      };
      idle = setTimeout(check, this.idleTimeoutMs);
      idle.unref();
    }
    relayBytes(down, up, {
      onChunk: (fromDown, d) => {
        touch();
        if (fromDown) {
          st.downstream_cx_rx_bytes_total.inc(d.length);
          cluster.stats.upstream_cx_tx_bytes_total.inc(d.length);
        } else {
          st.downstream_cx_tx_bytes_total.inc(d.length);
          cluster.stats.upstream_cx_rx_bytes_total.inc(d.length);
        }
      },
      onPauseA: () => st.downstream_flow_control_paused_reading_total.inc(),
      onResumeA: () => st.downstream_flow_control_resumed_reading_total.inc(),
    });
    // Half-close travels across (TCP semantics); full close tears both down.
    down.on('end', () => up.end());
    up.on('end', () => down.end());
    up.on('error', () => down.destroy());
    down.on('error', () => up.destroy());
    let released = false;
    const done = (): void => {
      if (idle !== null) clearTimeout(idle);
      if (!released) {
        released = true;
        release();
      }
    };
    up.once('close', () => {
      done();
      if (!down.destroyed) down.destroySoon();
    });
    down.once('close', () => {
      done();
      if (!up.destroyed) up.destroySoon();
    });
    down.resume();
  }

  drain(): void {
    // TCP has no in-band drain signal; connections finish on their own or at the drain deadline.
  }

  get activeConnections(): number {
    return this.conns.size;
  }

  close(): void {
    for (const s of this.conns) s.destroy();
  }
}
