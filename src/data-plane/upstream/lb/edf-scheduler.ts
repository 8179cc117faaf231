/**
 * Earliest-deadline-first scheduler over entries `0..n-1`, the scheduler Envoy uses for weighted round
 * robin, weighted least request and locality picking (`EdfScheduler`): an entry of weight w is due every
 * 1/w time units; the entry with the earliest deadline is picked and becomes due again 1/w' later, where
 * w' is its weight at that moment. Ties go to the entry queued first, so equal weights give a plain
 * round robin in index order. This yields a smooth interleaving (weights 3:1 give A A B A, not A A A B).
 *
 * The heap lives in typed arrays: picking allocates nothing and costs O(log n).
 */
export class EdfScheduler {
  private readonly heap: Int32Array;
  private readonly deadline: Float64Array;
  private readonly order: Float64Array;
  private readonly weight: Float64Array;
  private readonly size: number;
  private seq = 0;

  /**
   * @param weights positive, finite weights, one per entry.
   * @param initialPicks picks to make and discard at once; callers pass a random count in [0, n) so that
   *   proxies built from the same config don't all start on the same entry (Envoy does the same).
   */
  constructor(weights: ArrayLike<number>, initialPicks = 0) {
    const n = weights.length;
    this.size = n;
    this.heap = new Int32Array(n);
    this.deadline = new Float64Array(n);
    this.order = new Float64Array(n);
    this.weight = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      this.weight[i] = weights[i];
      this.deadline[i] = 1 / weights[i];
      this.order[i] = this.seq++;
      this.heap[i] = i;
    }
    for (let i = (n >>> 1) - 1; i >= 0; i--) this.siftDown(i);
    for (let i = 0; i < initialPicks; i++) this.pick();
  }

  /** Number of entries. */
  get length(): number {
    return this.size;
  }

  /** The entry that {@link pick} would return next. The scheduler must not be empty. */
  peek(): number {
    return this.heap[0];
  }

  /** Pick the entry with the earliest deadline and requeue it with its current weight. */
  pick(): number {
    const top = this.heap[0];
    this.requeueTop(this.weight[top]);
    return top;
  }

  /**
   * Requeue the entry at the top (see {@link peek}) with a new weight, as Envoy's `pickAndAdd` does for
   * least request, where the weight depends on the host's active requests at pick time.
   */
  requeueTop(weight: number): void {
    const top = this.heap[0];
    this.weight[top] = weight;
    // Envoy's clock advances to the deadline of the entry just served.
    this.deadline[top] += 1 / weight;
    this.order[top] = this.seq++;
    this.siftDown(0);
  }

  private isBefore(a: number, b: number): boolean {
    const da = this.deadline[a];
    const db = this.deadline[b];
    return da < db || (da === db && this.order[a] < this.order[b]);
  }

  private siftDown(start: number): void {
    const heap = this.heap;
    const n = this.size;
    let i = start;
    const entry = heap[i];
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child = right < n && this.isBefore(heap[right], heap[left]) ? right : left;
      if (!this.isBefore(heap[child], entry)) break;
      heap[i] = heap[child];
      i = child;
    }
    heap[i] = entry;
  }
}
