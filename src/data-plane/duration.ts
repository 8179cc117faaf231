/** google.protobuf.Duration (`{ seconds: string, nanos }` as decoded) → milliseconds; `dflt` when unset. */
export function durationMs(d: { seconds: string | number; nanos: number } | null | undefined, dflt: number): number {
  if (d === null || d === undefined) return dflt;
  return Number(d.seconds) * 1000 + Math.floor(d.nanos / 1e6);
}
