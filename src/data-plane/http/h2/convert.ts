/** Conversions between flat header lists and node:http2 header objects. */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';

/**
 * Flat list → node:http2 object. Repeated names become arrays (set-cookie), except `cookie`, which
 * RFC 9113 §8.2.3 lets us split or join; joined with "; " it is one field.
 */
export function toH2Headers(out: OutgoingHttpHeaders, h: readonly string[]): OutgoingHttpHeaders {
  for (let i = 0; i < h.length; i += 2) {
    const n = h[i];
    const v = h[i + 1];
    const prev = out[n];
    if (prev === undefined) out[n] = v;
    else if (n === 'cookie') out[n] = prev + '; ' + v;
    else if (Array.isArray(prev)) prev.push(v);
    else out[n] = [String(prev), v];
  }
  return out;
}

/** node:http2 raw header list (`rawHeaders`, names already lowercase) → regular headers, pseudo-headers dropped. */
export function fromH2Raw(raw: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i];
    if (n.charCodeAt(0) === 58 /* : */) continue;
    out.push(n, raw[i + 1]);
  }
  return out;
}

/** node:http2 header object (responses, trailers) → flat list, pseudo-headers dropped. */
export function fromH2Object(obj: IncomingHttpHeaders): string[] {
  const out: string[] = [];
  for (const n in obj) {
    if (n.charCodeAt(0) === 58) continue;
    const v = obj[n];
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) out.push(n, x);
    else out.push(n, v);
  }
  return out;
}

/** RFC 9113 §8.2.2: connection-specific fields must not appear on h2; `te` only as "trailers". */
export function stripForH2(h: string[]): void {
  let w = 0;
  for (let r = 0; r < h.length; r += 2) {
    const n = h[r];
    if (
      n === 'connection' || n === 'keep-alive' || n === 'proxy-connection' || n === 'transfer-encoding' ||
      n === 'upgrade' || n === 'host' || (n === 'te' && h[r + 1].toLowerCase() !== 'trailers')
    ) continue;
    if (w !== r) {
      h[w] = n;
      h[w + 1] = h[r + 1];
    }
    w += 2;
  }
  h.length = w;
}
