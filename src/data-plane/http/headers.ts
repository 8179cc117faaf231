/**
 * Header lists on the proxy's hot path are flat arrays: [name0, value0, name1, value1, …], names
 * lowercased, order kept, repeated names repeated. No Map per request; lookups are short linear
 * scans (a request has ~10 headers) that beat hashing at this size.
 */

/** First value of `name` (lowercase), or undefined. */
export function getHeader(h: readonly string[], name: string): string | undefined {
  for (let i = 0; i < h.length; i += 2) if (h[i] === name) return h[i + 1];
  return undefined;
}

/** All values of `name`, joined with "," as Envoy does when matching a repeated header. */
export function getHeaderJoined(h: readonly string[], name: string): string | undefined {
  let out: string | undefined;
  for (let i = 0; i < h.length; i += 2) if (h[i] === name) out = out === undefined ? h[i + 1] : out + ',' + h[i + 1];
  return out;
}

export function hasHeader(h: readonly string[], name: string): boolean {
  for (let i = 0; i < h.length; i += 2) if (h[i] === name) return true;
  return false;
}

/** Removes every `name` in place. */
export function removeHeader(h: string[], name: string): void {
  let r = 0;
  while (r < h.length && h[r] !== name) r += 2;
  if (r >= h.length) return; // absent (the common case): no writes
  let w = r;
  for (; r < h.length; r += 2) {
    if (h[r] === name) continue;
    if (w !== r) {
      h[w] = h[r];
      h[w + 1] = h[r + 1];
    }
    w += 2;
  }
  h.length = w;
}

/** Replaces every `name` with one `name: value` (kept at the first occurrence's place, or appended). */
export function setHeader(h: string[], name: string, value: string): void {
  for (let i = 0; i < h.length; i += 2) {
    if (h[i] === name) {
      h[i + 1] = value;
      for (let j = i + 2; j < h.length; j += 2) {
        if (h[j] === name) {
          removeHeader(h, name);
          h.push(name, value);
          return;
        }
      }
      return;
    }
  }
  h.push(name, value);
}

/**
 * Connection-specific headers (RFC 9110 §7.6.1, RFC 9113 §8.2.2): never forwarded hop to hop.
 * `te: trailers` is the one allowed TE value on h2 and is kept for gRPC by the codecs.
 */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer', 'http2-settings'];

/** HOP_BY_HOP by name length: a lookup compares a name with at most two of them and hashes nothing. */
const HOP_BY_HOP_BY_LENGTH: readonly (readonly string[] | undefined)[] = (() => {
  const byLen: string[][] = [];
  for (const n of HOP_BY_HOP) (byLen[n.length] ??= []).push(n);
  return byLen;
})();

function isHopByHop(n: string): boolean {
  const cands = HOP_BY_HOP_BY_LENGTH[n.length];
  return cands !== undefined && cands.includes(n);
}

/** Removes hop-by-hop headers, and any header the `connection` header names, in place. */
export function stripHopByHop(h: string[]): void {
  let named: string[] | undefined;
  for (let i = 0; i < h.length; i += 2) {
    if (h[i] === 'connection') {
      const v = h[i + 1];
      // The usual values name no other header: nothing to split.
      if (v === 'keep-alive' || v === 'close' || v === 'upgrade' || v === 'Upgrade' || v === 'Keep-Alive') continue;
      for (const tok of v.split(',')) {
        const t = tok.trim().toLowerCase();
        if (t && t !== 'close' && t !== 'keep-alive' && t !== 'upgrade') (named ??= []).push(t);
      }
    }
  }
  let w = 0;
  for (let r = 0; r < h.length; r += 2) {
    const n = h[r];
    if (isHopByHop(n) || (named !== undefined && named.includes(n))) continue;
    if (w !== r) {
      h[w] = n;
      h[w + 1] = h[r + 1];
    }
    w += 2;
  }
  if (w !== h.length) h.length = w;
}

/** True when the request carries gRPC (content-type application/grpc, +proto, +json, …). */
export function isGrpcContentType(ct: string | undefined): boolean {
  return ct !== undefined && ct.startsWith('application/grpc') && (ct.length === 16 || ct[16] === '+' || ct[16] === ';');
}
