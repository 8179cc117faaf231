/**
 * The snapshot cache: the latest {@link Snapshot} per node id, and the seam between the control plane (which
 * sets snapshots) and the ADS server (which is told about every change and pushes it).
 */
import type { Snapshot } from './snapshot.ts';

/** What the ADS server knows about a connected node, from the `node` of its first DiscoveryRequest. */
export interface NodeInfo {
  id: string;
  cluster: string;
  /** `node.metadata` (a google.protobuf.Struct) as plain JSON: Istio's keys (NAMESPACE, LABELS, ...) live here. */
  metadata: Record<string, unknown>;
  /** `user_agent_name` (`envoy`, `gRPC Node Pure JS`, `sloop`...). */
  userAgentName: string;
}

/**
 * Computes the first snapshot of a node the cache has none for, when it connects. Return undefined when there is
 * nothing to serve yet: the node's requests wait until `setSnapshot` is called for it.
 */
export type SnapshotResolver = (node: NodeInfo) => Snapshot | undefined | Promise<Snapshot | undefined>;

/** Called after every `setSnapshot` whose snapshot differs from the node's previous one. */
export type SnapshotListener = (nodeId: string, snapshot: Snapshot) => void;

/** Options for {@link SnapshotCache}. */
export interface SnapshotCacheOptions {
  /** Asked once per node id without a snapshot, when the node first connects. */
  resolveSnapshot?: SnapshotResolver;
}

/** Latest snapshot per node id. Snapshots are consistent by construction (see `createSnapshot`). */
export class SnapshotCache {
  readonly #snapshots = new Map<string, Snapshot>();
  readonly #listeners = new Set<SnapshotListener>();
  readonly #resolving = new Map<string, Promise<Snapshot | undefined>>();
  readonly #resolve: SnapshotResolver | undefined;

  constructor(opts: SnapshotCacheOptions = {}) {
    this.#resolve = opts.resolveSnapshot;
  }

  /** Publishes `snapshot` for `nodeId` and tells listeners (the ADS server pushes what changed). */
  setSnapshot(nodeId: string, snapshot: Snapshot): void {
    const previous = this.#snapshots.get(nodeId);
    this.#snapshots.set(nodeId, snapshot);
    if (previous === snapshot) return;
    for (const listener of this.#listeners) listener(nodeId, snapshot);
  }

  /** The node's current snapshot, if any. */
  getSnapshot(nodeId: string): Snapshot | undefined {
    return this.#snapshots.get(nodeId);
  }

  /** Forgets a node (it disconnected for good). Connected streams keep what they were sent. */
  clearSnapshot(nodeId: string): void {
    this.#snapshots.delete(nodeId);
  }

  /** Node ids that have a snapshot. */
  nodeIds(): string[] {
    return [...this.#snapshots.keys()];
  }

  /**
   * The node's snapshot, asking the resolver for one if there is none yet. Concurrent calls for one node share
   * one resolver call. A resolver that throws is treated as "nothing yet" and the error is rethrown.
   */
  async snapshotFor(node: NodeInfo): Promise<Snapshot | undefined> {
    const existing = this.#snapshots.get(node.id);
    if (existing !== undefined || this.#resolve === undefined) return existing;
    let pending = this.#resolving.get(node.id);
    if (pending === undefined) {
      const resolve = this.#resolve;
      pending = (async () => {
        try {
          const snapshot = await resolve(node);
          // setSnapshot may have been called while the resolver ran: the newer, explicit one wins.
          if (snapshot !== undefined && !this.#snapshots.has(node.id)) this.setSnapshot(node.id, snapshot);
          return this.#snapshots.get(node.id);
        } finally {
          this.#resolving.delete(node.id);
        }
      })();
      this.#resolving.set(node.id, pending);
    }
    return pending;
  }

  /** Registers a listener for snapshot changes; returns a function that removes it. */
  subscribe(listener: SnapshotListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}
