/**
 * Watches config paths and keeps the last good model: a change is reloaded after a quiet period (debounced),
 * validated, and either becomes the new current model (`'model'`) or is reported (`'invalid'`) while the last
 * good model stays current. Bad config never replaces good config.
 */
import { EventEmitter } from 'node:events';
import type { Diagnostic } from '../../shared/errors.ts';
import { loadConfig, watchConfigPaths } from './load.ts';
import type { LoadedConfig, ParseCache } from './load.ts';
import type { ConfigModel } from './model.ts';

export interface ConfigWatcherOptions {
  paths: readonly string[];
  /** Quiet time after the last filesystem event before reloading. Default 100 ms (a change lands well within a second). */
  debounceMs?: number;
}

/** Events of {@link ConfigWatcher}. */
export interface ConfigWatcherEvents {
  /** A new valid config became current. `warnings` are its non-fatal diagnostics. */
  model: [model: ConfigModel, warnings: Diagnostic[], loaded: LoadedConfig];
  /** A change was rejected: `diagnostics` has at least one error. The previous model stays current. */
  invalid: [diagnostics: Diagnostic[], loaded: LoadedConfig];
  /** The filesystem watch itself failed (a watched folder was removed, …). */
  error: [err: Error];
}

/**
 * Config folder watcher. `start()` loads once synchronously-emitting `'model'` or `'invalid'`, then watches.
 * Identical content (same digest) is not re-emitted. Call `close()` to stop.
 */
export class ConfigWatcher extends EventEmitter<ConfigWatcherEvents> {
  readonly #paths: readonly string[];
  readonly #debounceMs: number;
  #current: LoadedConfig | undefined;
  #lastDigest: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stop: (() => void) | undefined;

  readonly #parsed: ParseCache = new Map();

  constructor(o: ConfigWatcherOptions) {
    super();
    this.#paths = o.paths;
    this.#debounceMs = o.debounceMs ?? 100;
  }

  /** The last valid config, or undefined when none has loaded yet. */
  get current(): ConfigModel | undefined {
    return this.#current?.model;
  }

  /** Loads now and starts watching. Returns whether the first load was valid. */
  start(): boolean {
    this.#stop = watchConfigPaths(this.#paths, () => this.#schedule(), (err) => this.emit('error', err));
    return this.reload();
  }

  /**
   * Reloads immediately (also what a change triggers). Returns whether the config now current is from this load
   * (valid or unchanged).
   */
  reload(): boolean {
    const loaded = loadConfig(this.#paths, this.#parsed);
    if (loaded.digest === this.#lastDigest) return this.#current?.digest === loaded.digest;
    this.#lastDigest = loaded.digest;
    if (loaded.diagnostics.some((d) => d.severity === 'error')) {
      this.emit('invalid', loaded.diagnostics, loaded);
      return false;
    }
    this.#current = loaded;
    this.emit('model', loaded.model, loaded.diagnostics, loaded);
    return true;
  }

  /** Stops watching; pending reloads are dropped. */
  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#stop?.();
    this.#stop = undefined;
  }

  #schedule(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.reload();
    }, this.#debounceMs);
  }
}
