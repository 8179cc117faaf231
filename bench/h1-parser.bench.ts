/**
 * Micro-benchmark of the HTTP/1.1 parser (src/data-plane/http/h1/parser.ts): ns per typical request head,
 * response head and small pipelined/body cases, against Node's own llhttp binding for scale.
 *
 *   ./node_modules/.bin/node bench/h1-parser.bench.ts [iterations]
 *
 * Each case reuses one parser (as a connection does) and feeds a whole message per execute() call.
 */
import { createRequire } from 'node:module';
import { H1_KIND_REQUEST, H1_KIND_RESPONSE, H1Parser } from '../src/data-plane/http/h1/parser.ts';

const ITERATIONS = Number(process.argv[2] ?? 2_000_000);

// ~200 bytes, the shape curl/wrk/browsers-lite send through a sidecar.
const REQUEST = Buffer.from(
  'GET /api/v1/reviews/1234?lang=en HTTP/1.1\r\n' +
    'Host: reviews.default.svc.cluster.local:9080\r\n' +
    'User-Agent: curl/8.5.0\r\n' +
    'Accept: application/json\r\n' +
    'Accept-Encoding: gzip, deflate\r\n' +
    'X-Request-Id: 4bf92f35-77b3-4da6-a3ce-929d0e0e4736\r\n' +
    '\r\n',
  'latin1',
);
const RESPONSE = Buffer.from(
  'HTTP/1.1 200 OK\r\n' +
    'Content-Type: application/json\r\n' +
    'Content-Length: 0\r\n' +
    'Date: Tue, 25 Nov 2025 06:00:00 GMT\r\n' +
    'Server: envoy\r\n' +
    'X-Envoy-Upstream-Service-Time: 3\r\n' +
    '\r\n',
  'latin1',
);
const POST = Buffer.from(
  'POST /api/v1/ratings HTTP/1.1\r\nHost: ratings:9080\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{"reviewer":"a","rating":5}',
  'latin1',
);

let sink = 0;

const ROUNDS = 7;

/**
 * Best of ROUNDS, in CPU time (process.cpuUsage) rather than wall time, so other processes sharing the
 * machine skew the result less.
 */
function bench(name: string, input: Buffer, run: (input: Buffer) => void): void {
  for (let i = 0; i < 50_000; i++) run(input); // warm-up: let TurboFan optimise
  const perRound = Math.ceil(ITERATIONS / ROUNDS);
  let best = Infinity;
  for (let r = 0; r < ROUNDS; r++) {
    const start = process.cpuUsage();
    for (let i = 0; i < perRound; i++) run(input);
    const used = process.cpuUsage(start);
    best = Math.min(best, ((used.user + used.system) * 1000) / perRound);
  }
  console.log(`${name.padEnd(44)} ${best.toFixed(0).padStart(5)} ns/op  (${input.length} B)`);
}

function sloop(kind: typeof H1_KIND_REQUEST | typeof H1_KIND_RESPONSE): (input: Buffer) => void {
  const p = new H1Parser(kind);
  p.onRequestHead = (_m, _t, _v, headers) => {
    sink += headers.length;
  };
  p.onResponseHead = (_s, _r, _v, headers) => {
    sink += headers.length;
  };
  p.onBody = (chunk) => {
    sink += chunk.length;
  };
  p.onMessageComplete = () => {
    sink++;
  };
  p.onError = (err) => {
    throw new Error(err.code);
  };
  return (input) => {
    if (kind === H1_KIND_RESPONSE) p.setResponseContext('GET');
    p.execute(input);
  };
}

interface LlhttpParser {
  initialize(type: number, resource: object): void;
  execute(data: Buffer): number | Error;
  [k: number]: ((...args: unknown[]) => unknown) | undefined;
}
interface LlhttpCtor {
  new (): LlhttpParser;
  REQUEST: number;
  RESPONSE: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
}

/** Node's llhttp binding, driven the way node:http drives it (headers arrive in onHeadersComplete). */
function llhttp(kindRequest: boolean): ((input: Buffer) => void) | null {
  try {
    const require = createRequire(import.meta.url);
    const { HTTPParser } = require('_http_common') as { HTTPParser: LlhttpCtor };
    const p = new HTTPParser();
    p.initialize(kindRequest ? HTTPParser.REQUEST : HTTPParser.RESPONSE, {});
    p[HTTPParser.kOnHeadersComplete] = (...args: unknown[]) => {
      sink += (args[2] as string[]).length;
      return 0;
    };
    p[HTTPParser.kOnBody] = (b: unknown) => {
      sink += (b as Buffer).length;
    };
    p[HTTPParser.kOnMessageComplete] = () => {
      sink++;
    };
    return (input) => {
      p.execute(input);
    };
  } catch {
    return null;
  }
}

bench('sloop   request head (GET, 6 headers)', REQUEST, sloop(H1_KIND_REQUEST));
bench('sloop   response head (200, 5 headers)', RESPONSE, sloop(H1_KIND_RESPONSE));
bench('sloop   POST with 27-byte body', POST, sloop(H1_KIND_REQUEST));
const llReq = llhttp(true);
const llRes = llhttp(false);
const llPost = llhttp(true);
if (llReq !== null && llRes !== null && llPost !== null) {
  bench('llhttp  request head (node binding)', REQUEST, llReq);
  bench('llhttp  response head (node binding)', RESPONSE, llRes);
  bench('llhttp  POST with 27-byte body', POST, llPost);
}
if (sink === 42) console.log('');
