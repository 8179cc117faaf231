/**
 * `frontend`: the demo's entry. `GET /` calls `http://reviews:9080/` by service name and says which reviews
 * version answered and what ratings said. Knows nothing about the mesh: under `sloop up` Node 24 sends its
 * requests to the sidecar because the environment has HTTP_PROXY and NODE_USE_ENV_PROXY=1.
 *   GET /                 one line: frontend → reviews v2 → ratings: ★★★★☆
 *   GET /?format=json     the whole chain as JSON, with the proxy-added headers each hop received
 *   GET /?client=fetch    the same call made with fetch() (a CONNECT tunnel through the proxy) instead of http.get
 *   node frontend.ts --port 8000 [--reviews http://reviews:9080/]
 */
import http from 'node:http';
import { arg, callerIdentity, onTerminate, parseAppArgs, proxyHeadersOf } from './args.ts';

const args = parseAppArgs(process.argv.slice(2));
const port = Number(arg(args, 'port'));
const reviewsUrl = arg(args, 'reviews', 'http://reviews:9080/');

interface Upstream {
  status: number;
  body: string;
}

/** `http.get`: with an env proxy, Node sends `GET http://reviews:9080/ HTTP/1.1` (absolute form) to the proxy. */
function callWithHttpGet(headers: Record<string, string>): Promise<Upstream> {
  return new Promise((resolve, reject) => {
    const req = http.get(reviewsUrl, { headers, timeout: 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

/** `fetch`: with an env proxy, Node's fetch opens `CONNECT reviews:9080` to the proxy and sends the request inside. */
async function callWithFetch(headers: Record<string, string>): Promise<Upstream> {
  const res = await fetch(reviewsUrl, { headers, signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: await res.text() };
}

interface Reviews {
  version?: string;
  seen_headers?: Record<string, string>;
  rating?: { stars?: number; error?: string; seen_headers?: Record<string, string> };
}

function summary(r: Reviews): string {
  const rating = r.rating?.stars !== undefined ? (r.version === 'v1' ? `${r.rating.stars}/5` : '★'.repeat(r.rating.stars) + '☆'.repeat(Math.max(0, 5 - r.rating.stars))) : (r.rating?.error ?? 'no rating');
  const line = `frontend → reviews ${r.version ?? '?'} → ratings: ${rating}`;
  // Who called whom, as each callee's sidecar vouches for it after the mTLS handshake (x-forwarded-client-cert).
  const reviewsCaller = callerIdentity(r.seen_headers ?? {});
  const ratingsCaller = callerIdentity(r.rating?.seen_headers ?? {});
  if (reviewsCaller === undefined && ratingsCaller === undefined) return line;
  return `${line}\n  mTLS: reviews ${r.version ?? '?'} was called by ${reviewsCaller ?? 'a plaintext client'}; ratings by ${ratingsCaller ?? 'a plaintext client'}`;
}

const server = http.createServer((req, res) => {
  req.resume();
  const url = new URL(req.url ?? '/', 'http://frontend');
  const seen = proxyHeadersOf((name) => req.headers[name] as string | undefined);
  const client = url.searchParams.get('client') === 'fetch' ? 'fetch' : 'http.get';
  const json = url.searchParams.get('format') === 'json';
  const headers: Record<string, string> = {};
  if (seen['x-request-id'] !== undefined) headers['x-request-id'] = seen['x-request-id'];
  for (const h of ['end-user', 'x-version']) {
    const v = req.headers[h];
    if (typeof v === 'string') headers[h] = v;
  }
  const send = (status: number, reviews: Upstream | { error: string }): void => {
    let parsed: Reviews | undefined;
    if ('body' in reviews) {
      try {
        parsed = JSON.parse(reviews.body) as Reviews;
      } catch {
        parsed = undefined;
      }
    }
    const text = json
      ? JSON.stringify({ service: 'frontend', client, seen_headers: seen, reviews: parsed ?? reviews }, null, 2) + '\n'
      : parsed
        ? summary(parsed) + '\n'
        : `frontend → reviews failed: ${'error' in reviews ? reviews.error : `${reviews.status} ${reviews.body.trim()}`}\n`;
    res.writeHead(status, { 'content-type': json ? 'application/json' : 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  (client === 'fetch' ? callWithFetch(headers) : callWithHttpGet(headers)).then(
    (r) => send(r.status === 200 ? 200 : 502, r),
    (err: Error) => send(502, { error: err.message }),
  );
});
server.listen(port, '127.0.0.1', () => process.stdout.write(`frontend: HTTP on 127.0.0.1:${port}\n`));
server.on('error', (err) => {
  process.stderr.write(`frontend: ${err.message}\n`);
  process.exitCode = 1;
});
onTerminate(() => {
  server.close();
  server.closeIdleConnections();
});
