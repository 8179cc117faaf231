/**
 * A minimal in-process HTTP/1.1 client (node:http) for tests that send many requests: load-balancing
 * distributions, pool reuse. Spawning curl per request is too slow for hundreds of requests on a loaded
 * 2-core box; curl (clients.ts) stays the client for protocol-level assertions.
 */
import { Agent, request, type IncomingHttpHeaders } from 'node:http';
import { LOOPBACK } from './ports.ts';
import type { EchoBody } from './clients.ts';

/** A response read in full. */
export interface SimpleResponse {
  status: number;
  /** Node's lowercased header map (`set-cookie` is an array). */
  headers: IncomingHttpHeaders;
  /** Raw header name/value pairs in arrival order. */
  rawHeaders: Array<[string, string]>;
  text: string;
  /** Parses `text` as JSON (the echo upstream's body). */
  json<T = EchoBody>(): T;
}

/** Options for {@link httpRequest}. */
export interface SimpleRequestOptions {
  method?: string;
  /** Header pairs, sent in order (repeats allowed). */
  headers?: ReadonlyArray<readonly [string, string]>;
  body?: string | Buffer;
  /** Source address to bind (any 127.0.0.0/8 address works on Linux loopback). */
  localAddress?: string;
  /** Reuse connections through this agent; default: a fresh connection per request, closed afterwards. */
  agent?: Agent;
  /** Reject after this long. Default 10 s. */
  timeoutMs?: number;
}

/** One HTTP/1.1 request to 127.0.0.1:`port`. Rejects on connection errors and timeouts only. */
export function httpRequest(port: number, path: string, opts: SimpleRequestOptions = {}): Promise<SimpleResponse> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const flat: string[] = [];
  for (const [k, v] of opts.headers ?? []) flat.push(k, v);
  // node:http sends raw (array) headers as given, without adding Host.
  if (!flat.some((v, i) => i % 2 === 0 && v.toLowerCase() === 'host')) flat.unshift('host', `${LOOPBACK}:${port}`);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: LOOPBACK,
        port,
        path,
        method: opts.method ?? 'GET',
        headers: flat,
        agent: opts.agent ?? false,
        localAddress: opts.localAddress,
        timeout: timeoutMs,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const raw: Array<[string, string]> = [];
          for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) raw.push([res.rawHeaders[i], res.rawHeaders[i + 1]]);
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: raw, text, json: <T>() => JSON.parse(text) as T });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${opts.method ?? 'GET'} ${path} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/**
 * Sends `n` sequential requests (`pathFor(i)`, `headersFor(i)`) and counts responses by the upstream that
 * served them (the echo upstream's `x-upstream` header; `status:<code>` when the proxy answered itself).
 */
export async function countByUpstream(
  port: number,
  n: number,
  pathFor: (i: number) => string,
  opts: Omit<SimpleRequestOptions, 'headers'> & { headersFor?: (i: number) => ReadonlyArray<readonly [string, string]> } = {},
): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const r = await httpRequest(port, pathFor(i), { ...opts, headers: opts.headersFor?.(i) });
    const served = r.headers['x-upstream'];
    const key = typeof served === 'string' ? served : `status:${r.status}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}
