/**
 * Gives back the memory start-up used and no longer needs (docs/performance.md, "Memory").
 *
 * Loading the config (YAML, the Envoy reflection, decoding, compiling) allocates fast enough that V8 grows
 * the young generation to its cap (2 x --max-semi-space-size) and the old generation past what stays live;
 * an idle proxy never runs the GC that would shrink them again. One last-resort major GC (what V8 does on a
 * low-memory notification: compacts, shrinks the young generation, releases free pages) took an idle proxy
 * from ~105 to ~87 MiB RSS. It costs one ~20-30 ms pause, once, right after start-up.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

type GcOptions = { type: 'major'; execution: 'sync'; flavor?: 'last-resort' };

/** V8's gc(), without running the process with --expose-gc. */
export function collectGarbage(options: GcOptions): void {
  let gc = (globalThis as { gc?: unknown }).gc as ((o: GcOptions) => void) | undefined;
  if (typeof gc !== 'function') {
    // V8 installs gc() in contexts created while --expose-gc is set; this one is not kept, nor is the flag.
    v8.setFlagsFromString('--expose-gc');
    try {
      gc = vm.runInNewContext('gc') as (o: GcOptions) => void;
    } finally {
      v8.setFlagsFromString('--no-expose-gc');
    }
  }
  gc(options);
}

export function releaseStartupMemory(): void {
  collectGarbage({ type: 'major', execution: 'sync', flavor: 'last-resort' });
}
