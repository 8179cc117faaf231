/**
 * Debouncing config changes before a push, as Istio's pilot does (PILOT_DEBOUNCE_AFTER = 100 ms of quiet,
 * PILOT_DEBOUNCE_MAX = 10 s at most): a burst of edits becomes one push, yet a steady trickle of edits cannot
 * postpone a push forever. At most one flush runs at a time; changes that arrive during a flush are merged and
 * flushed after it, again debounced.
 */

/** Options for {@link createDebouncer}. */
export interface DebounceOptions<T> {
  /** Combines a pending change with a new one (kept bounded: one merged value, never a queue). */
  merge: (pending: T, next: T) => T;
  /** Receives the merged changes. May return a promise; no other flush starts until it settles. */
  flush: (merged: T) => void | Promise<void>;
  /** Quiet time after the last change before flushing. Default 100 ms. */
  quietMs?: number;
  /** Longest time from the first pending change to its flush. Default 10 000 ms. */
  maxDelayMs?: number;
  /** Called when `flush` throws or rejects (the debouncer keeps working). Default: rethrown asynchronously. */
  onError?: (err: unknown) => void;
}

/** A running debouncer. */
export interface Debouncer<T> {
  /** Records a change; the flush happens after `quietMs` of quiet or `maxDelayMs` after the first change. */
  push(change: T): void;
  /** Flushes pending changes now (still one flush at a time). */
  flushNow(): void;
  /** Drops pending changes and timers. A flush already running finishes. */
  cancel(): void;
  /** True while changes wait for a flush. */
  readonly isPending: boolean;
  /** True while a flush runs. */
  readonly isFlushing: boolean;
}

/** Creates a debouncer; see the module comment for the semantics. Timers use the global `setTimeout`. */
export function createDebouncer<T>(opts: DebounceOptions<T>): Debouncer<T> {
  const quietMs = opts.quietMs ?? 100;
  const maxDelayMs = opts.maxDelayMs ?? 10_000;
  const onError =
    opts.onError ??
    ((err: unknown) => {
      queueMicrotask(() => {
        throw err;
      });
    });
  let pending: { value: T } | undefined;
  let quietTimer: NodeJS.Timeout | undefined;
  let maxTimer: NodeJS.Timeout | undefined;
  let flushing = false;
  // A timer fired while a flush was running: flush as soon as it ends.
  let dueAfterFlush = false;

  const clearTimers = (): void => {
    if (quietTimer !== undefined) clearTimeout(quietTimer);
    if (maxTimer !== undefined) clearTimeout(maxTimer);
    quietTimer = maxTimer = undefined;
  };

  const fire = (): void => {
    clearTimers();
    if (pending === undefined) return;
    if (flushing) {
      dueAfterFlush = true;
      return;
    }
    const { value } = pending;
    pending = undefined;
    flushing = true;
    const done = (): void => {
      flushing = false;
      if (dueAfterFlush) {
        dueAfterFlush = false;
        fire();
      }
    };
    let result: void | Promise<void>;
    try {
      result = opts.flush(value);
    } catch (err) {
      onError(err);
      done();
      return;
    }
    if (result instanceof Promise) {
      result.then(done, (err: unknown) => {
        onError(err);
        done();
      });
    } else done();
  };

  return {
    push(change: T): void {
      pending = pending === undefined ? { value: change } : { value: opts.merge(pending.value, change) };
      if (dueAfterFlush) return;
      if (quietTimer !== undefined) clearTimeout(quietTimer);
      quietTimer = setTimeout(fire, quietMs);
      maxTimer ??= setTimeout(fire, maxDelayMs);
    },
    flushNow(): void {
      fire();
    },
    cancel(): void {
      clearTimers();
      pending = undefined;
      dueAfterFlush = false;
    },
    get isPending() {
      return pending !== undefined;
    },
    get isFlushing() {
      return flushing;
    },
  };
}
