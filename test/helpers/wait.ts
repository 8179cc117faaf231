/**
 * Waiting without sleeping-and-hoping: recorders resolve waiters the moment a matching item arrives, and
 * `waitUntil` (for state only observable by polling, such as admin stats) fails loudly with what it last saw.
 */

/** Default cap for every wait in the harness; long enough for a loaded 2-core CI box, short enough to fail fast. */
export const DEFAULT_WAIT_MS = 5_000;

interface Waiter<T> {
  match: (items: readonly T[]) => boolean;
  resolve: () => void;
}

/**
 * An append-only list that tests can await on. Upstreams record into one (requests, calls, connections),
 * and tests call `waitFor`/`waitForCount` for traffic that arrives asynchronously (mirrors, retries, health
 * checks), instead of sleeping.
 */
export class Recorder<T> {
  /** Everything recorded so far, oldest first. Tests may read it directly; do not mutate. */
  readonly items: T[] = [];
  readonly #what: string;
  #waiters: Waiter<T>[] = [];

  /** `what` names the items in timeout messages ("requests to upstream a"). */
  constructor(what: string) {
    this.#what = what;
  }

  /** Appends an item and wakes every waiter it satisfies. */
  push(item: T): void {
    this.items.push(item);
    if (this.#waiters.length === 0) return;
    const still: Waiter<T>[] = [];
    for (const w of this.#waiters) {
      if (w.match(this.items)) w.resolve();
      else still.push(w);
    }
    this.#waiters = still;
  }

  /** Resolves with the first item (already recorded or future) for which `predicate` holds. */
  async waitFor(predicate: (item: T) => boolean = () => true, timeoutMs = DEFAULT_WAIT_MS): Promise<T> {
    await this.#wait((items) => items.some(predicate), timeoutMs, 'a matching item');
    return this.items.find(predicate) as T;
  }

  /** Resolves once at least `n` items have been recorded; returns a snapshot of all items. */
  async waitForCount(n: number, timeoutMs = DEFAULT_WAIT_MS): Promise<T[]> {
    await this.#wait((items) => items.length >= n, timeoutMs, `${n} item(s)`);
    return this.items.slice();
  }

  #wait(match: (items: readonly T[]) => boolean, timeoutMs: number, want: string): Promise<void> {
    if (match(this.items)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const waiter: Waiter<T> = {
        match,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${want} in ${this.#what} (have ${this.items.length})`));
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }
}

/** Options for {@link waitUntil}. */
export interface WaitUntilOptions {
  /** Give up after this long. Default {@link DEFAULT_WAIT_MS}. */
  timeoutMs?: number;
  /** Time between checks. Default 25 ms. */
  intervalMs?: number;
  /** Shown in the timeout error. */
  what?: string;
}

/**
 * Polls `check` until it returns a value other than `undefined`/`false`, and returns that value. For state
 * that has no event to wait on (admin stats, files). Throws after `timeoutMs`, including the last error
 * `check` threw, so a failing test says what it was waiting for.
 */
export async function waitUntil<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  opts: WaitUntilOptions = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_WAIT_MS;
  const intervalMs = opts.intervalMs ?? 25;
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    if (performance.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${opts.what ?? 'condition'}`, { cause: lastError });
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
