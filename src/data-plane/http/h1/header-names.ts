/**
 * Interned lowercase names of the header fields a mesh sees on nearly every message. The parser returns
 * these constants instead of slicing and lowercasing each name: no allocation per field, and later
 * comparisons against literals are pointer-fast. Unknown names fall back to slice + toLowerCase.
 */

/** Field names worth interning (lowercase; letters, digits and '-' only, which `lookupHeaderName` relies on). */
export const COMMON_HEADER_NAMES: readonly string[] = [
  // request
  'host', 'user-agent', 'accept', 'accept-encoding', 'accept-language', 'accept-charset', 'connection',
  'content-length', 'content-type', 'content-encoding', 'cookie', 'authorization', 'referer', 'origin',
  'cache-control', 'pragma', 'upgrade', 'transfer-encoding', 'te', 'trailer', 'keep-alive', 'expect', 'range',
  'if-none-match', 'if-modified-since', 'if-match', 'if-unmodified-since', 'proxy-authorization',
  'proxy-connection', 'forwarded', 'via', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host',
  'x-forwarded-port', 'x-forwarded-client-cert', 'x-real-ip', 'x-request-id', 'x-client-trace-id',
  'traceparent', 'tracestate', 'baggage', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled',
  'x-b3-flags', 'b3', 'x-ot-span-context', 'x-cloud-trace-context', 'grpc-timeout', 'grpc-encoding',
  'grpc-accept-encoding', 'sec-websocket-key', 'sec-websocket-version', 'sec-websocket-extensions',
  'sec-websocket-protocol', 'sec-websocket-accept', 'x-envoy-attempt-count', 'x-envoy-expected-rq-timeout-ms',
  'x-envoy-original-path', 'x-envoy-decorator-operation', 'x-envoy-peer-metadata', 'x-envoy-peer-metadata-id',
  // response
  'date', 'server', 'etag', 'last-modified', 'location', 'set-cookie', 'vary', 'expires', 'age',
  'accept-ranges', 'content-range', 'content-disposition', 'content-language', 'access-control-allow-origin',
  'strict-transport-security', 'www-authenticate', 'retry-after', 'alt-svc', 'x-envoy-upstream-service-time',
  'x-envoy-overloaded', 'x-envoy-ratelimited', 'x-content-type-options', 'grpc-status', 'grpc-message',
];

const MAX_LEN = 40;

/** Buckets keyed by `length * 32 + (first char & 31)`: a handful of candidates at most per key. */
const BUCKETS: (string[] | undefined)[] = new Array<string[] | undefined>((MAX_LEN + 1) * 32).fill(undefined);
for (const name of COMMON_HEADER_NAMES) {
  const key = name.length * 32 + (name.charCodeAt(0) & 31);
  (BUCKETS[key] ??= []).push(name);
}

/**
 * Returns the interned lowercase constant for the token `s[start, end)` compared case-insensitively, or
 * undefined. The caller guarantees the range holds only tchars (RFC 9110 §5.6.2): then `c | 0x20` equals a
 * candidate char (a-z, 0-9, '-') only when `c` is that char or its uppercase form.
 */
export function lookupHeaderName(s: string, start: number, end: number): string | undefined {
  const len = end - start;
  if (len > MAX_LEN) return undefined;
  const bucket = BUCKETS[len * 32 + (s.charCodeAt(start) & 31)];
  if (bucket === undefined) return undefined;
  for (let b = 0; b < bucket.length; b++) {
    const cand = bucket[b];
    let k = 0;
    while (k < len && (s.charCodeAt(start + k) | 0x20) === cand.charCodeAt(k)) k++;
    if (k === len) return cand;
  }
  return undefined;
}
