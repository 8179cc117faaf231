/**
 * Test helpers for the HTTP/1.1 parser: a recorder that turns callbacks into a flat, comparable event list.
 * Used by parser.test.ts and parser.fuzz.test.ts; not imported by production code.
 */
import { H1Parser, type BodyKind, type H1Kind, type H1Limits, type H1ParseError } from './parser.ts';

/** One parser callback, recorded. Body chunks are copied (the parser lends them only for the call). */
export type H1Event =
  | {
      type: 'request';
      method: string;
      target: string;
      versionMinor: 0 | 1;
      headers: string[];
      bodyKind: BodyKind;
      contentLength: number;
      keepAlive: boolean;
      upgrade: boolean;
    }
  | {
      type: 'response';
      status: number;
      reason: string;
      versionMinor: 0 | 1;
      headers: string[];
      bodyKind: BodyKind;
      contentLength: number;
      keepAlive: boolean;
      upgrade: boolean;
    }
  | { type: 'body'; data: string }
  | { type: 'complete'; trailers: string[] | null }
  | { type: 'error'; status: number; code: string };

/** A parser wired to an event list. */
export interface Recorder {
  parser: H1Parser;
  events: H1Event[];
  /** Number of onError calls (must never exceed 1). */
  errors: number;
  /** Events delivered after onError (must stay 0). */
  eventsAfterError: number;
  /** Called for every event after it is recorded, e.g. to pause. */
  hook: ((e: H1Event) => void) | null;
}

/** Creates a parser whose callbacks record into `events`. */
export function createRecorder(kind: H1Kind, limits?: Partial<H1Limits>): Recorder {
  const parser = new H1Parser(kind, limits);
  const rec: Recorder = { parser, events: [], errors: 0, eventsAfterError: 0, hook: null };
  const push = (e: H1Event): void => {
    if (rec.errors > 0) rec.eventsAfterError++;
    rec.events.push(e);
    if (rec.hook !== null) rec.hook(e);
  };
  parser.onRequestHead = (method, target, versionMinor, headers, bodyKind, contentLength, keepAlive, upgrade) =>
    push({ type: 'request', method, target, versionMinor, headers, bodyKind, contentLength, keepAlive, upgrade });
  parser.onResponseHead = (status, reason, versionMinor, headers, bodyKind, contentLength, keepAlive, upgrade) =>
    push({ type: 'response', status, reason, versionMinor, headers, bodyKind, contentLength, keepAlive, upgrade });
  parser.onBody = (chunk) => push({ type: 'body', data: chunk.toString('latin1') });
  parser.onMessageComplete = (trailers) => push({ type: 'complete', trailers });
  parser.onError = (err: H1ParseError) => {
    push({ type: 'error', status: err.status, code: err.code });
    rec.errors++;
  };
  return rec;
}

/** Merges adjacent body events, so event lists from differently split inputs compare equal. */
export function mergeBodies(events: readonly H1Event[]): H1Event[] {
  const out: H1Event[] = [];
  for (const e of events) {
    const last = out[out.length - 1];
    if (e.type === 'body' && last !== undefined && last.type === 'body') {
      out[out.length - 1] = { type: 'body', data: last.data + e.data };
    } else {
      out.push(e);
    }
  }
  return out;
}

/**
 * Feeds `input` split at the given cut points (ascending offsets), re-feeding unconsumed bytes only when the
 * parser was paused by the caller. Returns the offset where parsing stopped (input length if all consumed).
 */
export function feed(rec: Recorder, input: Buffer, cuts: readonly number[] = []): number {
  let start = 0;
  const bounds = [...cuts.filter((c) => c > 0 && c < input.length), input.length];
  for (const stop of bounds) {
    if (stop <= start) continue;
    const chunk = input.subarray(start, stop);
    const n = rec.parser.execute(chunk);
    start += n;
    if (n < chunk.length) return start; // upgraded, dead, or paused: the caller owns the rest
  }
  return start;
}
