/**
 * Real upstream servers for e2e tests: HTTP/1.1 and h2 (cleartext or TLS), gRPC, WebSocket and raw TCP.
 * Each one binds 127.0.0.1 on an ephemeral port, records what it received so tests can assert on the
 * upstream side of the proxy, and closes every connection it holds on `close()`.
 */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import {
  constants as h2constants,
  createSecureServer as createH2SecureServer,
  createServer as createH2Server,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Settings,
} from 'node:http2';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { WebSocketServer, type WebSocket } from 'ws';
import { LOOPBACK } from './ports.ts';
import { Recorder } from './wait.ts';

/** Path of the echo service definition served by {@link startGrpcUpstream}. */
export const ECHO_PROTO_PATH = fileURLToPath(new URL('../fixtures/echo.proto', import.meta.url));

/** Key material for a TLS upstream (PEM). See certs.ts for a ready-made PKI. */
export interface UpstreamTlsOptions {
  key: string | Buffer;
  cert: string | Buffer;
  /** CA bundle that client certificates must chain to. */
  ca?: string | Buffer;
  /** Ask the client for a certificate (mTLS). */
  requestCert?: boolean;
  /** With `requestCert`, refuse handshakes without a valid client certificate. Default true. */
  rejectUnauthorized?: boolean;
}

/** The request object a handler gets: HTTP/1.x or, on an h2 upstream, the http2 compatibility request. */
export type UpstreamRequest = IncomingMessage | Http2ServerRequest;
/** The response object a handler gets. */
export type UpstreamResponse = ServerResponse | Http2ServerResponse;

/** One request as the upstream saw it, recorded once its body has been read in full. */
export interface RecordedRequest {
  method: string;
  /** Request target as received (`/path?query`). */
  url: string;
  /** Header name/value pairs in arrival order, names as sent (on h2: lowercase, pseudo-headers included). */
  headers: Array<[string, string]>;
  /** Lowercased name → value; repeated headers joined with ", " (set-cookie with "; " is not special-cased). */
  headerMap: Record<string, string>;
  /** Request trailers (chunked h1 trailers or h2 trailing HEADERS), as pairs. */
  trailers: Array<[string, string]>;
  body: Buffer;
  /** "1.0", "1.1" or "2.0". */
  httpVersion: string;
  /** Source port of the connection, to tell connections apart (keep-alive reuse). */
  remotePort: number;
  /** ALPN protocol negotiated on TLS upstreams ("h2", "http/1.1"), or undefined on cleartext. */
  alpnProtocol?: string;
  /** Client certificate SANs (`URI:spiffe://..., DNS:...`) when the client presented one. */
  peerSubjectAltName?: string;
  /** Whether the client certificate chained to `tls.ca`. */
  peerAuthorized?: boolean;
  /** SNI the client sent on TLS upstreams, or undefined if none (or cleartext). */
  serverName?: string;
}

/** Options for {@link startHttpUpstream}. */
export interface HttpUpstreamOptions {
  /** Name reported in echo bodies and the `x-upstream` response header. Default `upstream-<port>`. */
  name?: string;
  /**
   * Serve HTTP/2 with node:http2 (h2c with prior knowledge on cleartext, ALPN "h2" on TLS). HTTP/1.1 is
   * still accepted on the same port (`allowHTTP1`).
   */
  h2?: boolean;
  /** HTTP/2 SETTINGS to advertise (e.g. `{ maxConcurrentStreams: 1 }`), with `h2`. */
  h2Settings?: Settings;
  /** Serve TLS with this key material. */
  tls?: UpstreamTlsOptions;
  /**
   * Replaces the default echo handler. Called after the request body has been read and recorded, so the
   * body is in `recorded.body` (the request stream is already consumed). Delegate to {@link echoHandler}
   * for the paths you do not handle.
   */
  handler?: (req: UpstreamRequest, res: UpstreamResponse, recorded: RecordedRequest) => void;
}

/** A running HTTP upstream. */
export interface HttpUpstream {
  port: number;
  name: string;
  /** Every request, in the order their bodies completed. Same array as `recorder.items`. */
  requests: RecordedRequest[];
  /** Await requests that arrive asynchronously (mirroring, retries, health checks). */
  recorder: Recorder<RecordedRequest>;
  /** Number of TCP connections accepted so far (keep-alive reuse keeps this low). */
  readonly connections: number;
  /** Stops listening and destroys every open connection. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

// Special paths of the echo handler. They match the END of the path so they still work behind a route
// that adds or keeps a prefix (`/api/status/503`).
const STATUS_PATH = /\/status\/(\d{3})$/;
const DELAY_PATH = /\/delay\/(\d+)$/;
const BYTES_PATH = /\/bytes\/(\d+)$/;
const STREAM_PATH = /\/stream\/(\d+)$/;

function pairs(raw: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i], raw[i + 1]]);
  return out;
}

/** Lowercased name → value map of header pairs; repeats are joined with ", ". */
export function headerMapOf(headerPairs: ReadonlyArray<readonly [string, string]>): Record<string, string> {
  const map: Record<string, string> = {};
  for (const [name, value] of headerPairs) {
    const key = name.toLowerCase();
    map[key] = key in map ? `${map[key]}, ${value}` : value;
  }
  return map;
}

function splitUrl(url: string): { path: string; query: URLSearchParams } {
  const q = url.indexOf('?');
  return q < 0 ? { path: url, query: new URLSearchParams() } : { path: url.slice(0, q), query: new URLSearchParams(url.slice(q + 1)) };
}

function isH2(req: UpstreamRequest): req is Http2ServerRequest {
  return req.httpVersionMajor === 2;
}

/**
 * The default handler of {@link startHttpUpstream}. Path suffixes select a behaviour; anything else echoes:
 * - (default) 200, JSON `{ upstream, method, url, headers, body, httpVersion }`.
 * - `/status/<code>`: that status, echo body (none for 204/304).
 * - `/delay/<ms>`: echo after `ms` milliseconds (cancelled if the client goes away).
 * - `/bytes/<n>`: `n` bytes of "a" with content-length.
 * - `/stream/<n>`: `n` chunks of `chunk <i>\n` without content-length (chunked on h1), `?interval_ms=` apart
 *   (default: one event-loop turn apart, so they leave as separate writes).
 * - `/trailers`: a body followed by trailers `x-trailer: yes` and `x-upstream-trailer: <name>`.
 * - `/reset`: no response; h1 destroys the connection, h2 resets only the stream (RST_STREAM INTERNAL_ERROR).
 * - `/reset-connection`: no response; destroys the connection (h2: the whole session).
 * Every response carries `x-upstream: <name>`.
 */
export function echoHandler(name: string): (req: UpstreamRequest, res: UpstreamResponse, recorded: RecordedRequest) => void {
  return (req, res, recorded) => {
    const { path, query } = splitUrl(recorded.url);
    const respond = (status: number): void => {
      if (res.destroyed) return;
      const headers: OutgoingHttpHeaders = { 'x-upstream': name };
      if (status === 204 || status === 304) {
        writeHead(res, status, headers);
        res.end();
        return;
      }
      const body = Buffer.from(
        JSON.stringify({
          upstream: name,
          method: recorded.method,
          url: recorded.url,
          headers: recorded.headerMap,
          body: recorded.body.toString('utf8'),
          httpVersion: recorded.httpVersion,
        }),
      );
      headers['content-type'] = 'application/json';
      headers['content-length'] = body.length;
      writeHead(res, status, headers);
      res.end(body);
    };

    if (path.endsWith('/reset-connection')) {
      if (isH2(req)) req.stream.session?.destroy();
      else req.socket.destroy();
      return;
    }
    if (path.endsWith('/reset')) {
      if (isH2(req)) req.stream.close(h2constants.NGHTTP2_INTERNAL_ERROR);
      else req.socket.destroy();
      return;
    }
    let m = STATUS_PATH.exec(path);
    if (m) return respond(Number(m[1]));
    m = DELAY_PATH.exec(path);
    if (m) {
      const timer = setTimeout(() => respond(200), Number(m[1]));
      res.once('close', () => clearTimeout(timer));
      return;
    }
    m = BYTES_PATH.exec(path);
    if (m) {
      const body = Buffer.alloc(Number(m[1]), 'a');
      writeHead(res, 200, { 'x-upstream': name, 'content-type': 'application/octet-stream', 'content-length': body.length });
      res.end(body);
      return;
    }
    m = STREAM_PATH.exec(path);
    if (m) {
      const total = Number(m[1]);
      const intervalMs = Number(query.get('interval_ms') ?? '0');
      writeHead(res, 200, { 'x-upstream': name, 'content-type': 'text/plain' });
      let i = 0;
      const next = (): void => {
        if (res.destroyed) return;
        if (i >= total) {
          res.end();
          return;
        }
        (res as ServerResponse).write(`chunk ${i++}\n`);
        if (intervalMs > 0) setTimeout(next, intervalMs);
        else setImmediate(next);
      };
      next();
      return;
    }
    if (path.endsWith('/trailers')) {
      writeHead(res, 200, { 'x-upstream': name, 'content-type': 'text/plain', trailer: 'x-trailer, x-upstream-trailer' });
      (res as ServerResponse).write('body before trailers\n');
      res.addTrailers({ 'x-trailer': 'yes', 'x-upstream-trailer': name });
      res.end();
      return;
    }
    respond(200);
  };
}

// ServerResponse and Http2ServerResponse have incompatible writeHead/write overload sets, so TypeScript cannot
// call them on the union; both accept (status, headers) and (chunk).
function writeHead(res: UpstreamResponse, status: number, headers: OutgoingHttpHeaders): void {
  (res as ServerResponse).writeHead(status, headers);
}

/** Starts an HTTP upstream (h1 by default; see {@link HttpUpstreamOptions}) on 127.0.0.1:0. */
export async function startHttpUpstream(opts: HttpUpstreamOptions = {}): Promise<HttpUpstream> {
  const recorder = new Recorder<RecordedRequest>('requests to HTTP upstream');
  const sockets = new Set<Socket>();
  let connections = 0;
  let name = opts.name ?? '';
  let handler = opts.handler;

  const onRequest = (req: UpstreamRequest, res: UpstreamResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('error', () => {
      // The client reset mid-body; nothing to record or answer.
    });
    req.on('end', () => {
      const socket = req.socket as Socket & Partial<TLSSocket>;
      const tlsSocket = 'encrypted' in socket && socket.encrypted ? (socket as TLSSocket) : undefined;
      const headerPairs = pairs(req.rawHeaders);
      const recorded: RecordedRequest = {
        method: req.method ?? '',
        url: req.url ?? '',
        headers: headerPairs,
        headerMap: headerMapOf(headerPairs),
        trailers: pairs(req.rawTrailers),
        body: Buffer.concat(chunks),
        httpVersion: req.httpVersion,
        remotePort: socket.remotePort ?? 0,
      };
      if (tlsSocket) {
        recorded.alpnProtocol = tlsSocket.alpnProtocol || undefined;
        const peer = tlsSocket.getPeerCertificate();
        if (peer && peer.subjectaltname) recorded.peerSubjectAltName = peer.subjectaltname;
        recorded.peerAuthorized = tlsSocket.authorized;
        const sni = (tlsSocket as TLSSocket & { servername?: string | false }).servername;
        if (sni) recorded.serverName = sni;
      }
      recorder.push(recorded);
      (handler ?? echoHandler(name))(req, res, recorded);
    });
  };

  const tls = opts.tls;
  const tlsOptions = tls
    ? {
        key: tls.key,
        cert: tls.cert,
        ca: tls.ca,
        requestCert: tls.requestCert ?? false,
        rejectUnauthorized: tls.requestCert ? (tls.rejectUnauthorized ?? true) : false,
      }
    : undefined;
  let server: NetServer;
  // Servers that only parse what `server` hands them (the cleartext h2 case sniffs, then delegates).
  const parsers: NetServer[] = [];
  if (opts.h2 && tlsOptions) {
    // ALPN picks h2 or http/1.1 (RFC 7301), which node:http2 supports natively with allowHTTP1.
    server = createH2SecureServer({ ...tlsOptions, allowHTTP1: true, settings: opts.h2Settings }, onRequest);
    parsers.push(server);
  } else if (opts.h2) {
    // node:http2's cleartext server speaks only h2 (allowHTTP1 is TLS-only), so sniff the first bytes: the
    // h2 connection preface starts "PRI * HTTP/2.0" (RFC 9113 §3.4); anything else goes to an h1 parser.
    const h1 = createHttpServer(onRequest);
    const h2 = createH2Server({ settings: opts.h2Settings }, onRequest);
    parsers.push(h1, h2);
    server = createNetServer((socket) => {
      socket.once('data', (chunk: Buffer) => {
        socket.pause();
        socket.unshift(chunk);
        if (chunk.subarray(0, 3).toString('latin1') === 'PRI') {
          // The h2 session reads bytes already buffered on the socket itself; resuming would drop them.
          h2.emit('connection', socket);
        } else {
          h1.emit('connection', socket);
          socket.resume();
        }
      });
      socket.on('error', () => {});
    });
  } else {
    server = tlsOptions ? createHttpsServer(tlsOptions, onRequest) : createHttpServer(onRequest);
    parsers.push(server);
  }
  server.on('connection', (socket: Socket) => {
    connections++;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  for (const parser of parsers) {
    // Failed handshakes and broken h2 sessions are expected in many tests (node:http's default 'clientError'
    // handling, a 400 then close, is kept on purpose: tests assert on it).
    parser.on('tlsClientError', () => {});
    parser.on('sessionError', () => {});
  }

  const port = await listen(server);
  if (!name) name = `upstream-${port}`;
  handler ??= echoHandler(name);
  const close = once(() => closeServer(server, sockets));
  return {
    port,
    name,
    requests: recorder.items,
    recorder,
    get connections() {
      return connections;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

function listen(server: NetServer): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, LOOPBACK, () => {
      server.off('error', reject);
      const address = server.address();
      if (address === null || typeof address === 'string') reject(new Error('listener has no TCP address'));
      else resolve(address.port);
    });
  });
}

function closeServer(server: NetServer, sockets: Set<Socket>): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    for (const socket of sockets) socket.destroy();
  });
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= fn());
}

// ---------------------------------------------------------------------------------------------------------
// gRPC

/** `sloop.test.EchoRequest` (see test/fixtures/echo.proto). */
export interface EchoRequest {
  message: string;
  sleep_ms: number;
  fail_code: number;
  count: number;
}

/** `sloop.test.EchoResponse`. */
export interface EchoResponse {
  message: string;
  upstream: string;
  metadata: Record<string, string>;
}

/** The four RPCs of the Echo service. */
export type EchoMethod = 'Echo' | 'Stream' | 'Collect' | 'Chat';

/** One call as the gRPC upstream saw it. `requests` grows while a streaming call is in progress. */
export interface RecordedCall {
  method: EchoMethod;
  /** `/sloop.test.Echo/<method>`. */
  path: string;
  /** Request metadata, first value per key; binary (`-bin`) values as base64. */
  metadata: Record<string, string>;
  requests: EchoRequest[];
  /** Peer address as grpc-js reports it (`127.0.0.1:port`). */
  peer: string;
  /**
   * Time left until the call's deadline when it arrived, from the `grpc-timeout` the server received
   * (grpc-js takes that header out of the metadata); undefined when none was sent.
   */
  deadlineLeftMs: number | undefined;
}

/** Options for {@link startGrpcUpstream}. */
export interface GrpcUpstreamOptions {
  /** Name reported in `EchoResponse.upstream` and the `x-upstream` response header. Default `grpc-<port>`. */
  name?: string;
  /** Serve TLS (`ca` + `requestCert` for mTLS: grpc-js then requires and verifies the client certificate). */
  tls?: UpstreamTlsOptions;
}

/** A running gRPC upstream. */
export interface GrpcUpstream {
  port: number;
  name: string;
  /** Every call, recorded when it starts. Same array as `recorder.items`. */
  calls: RecordedCall[];
  recorder: Recorder<RecordedCall>;
  /** Stops the server at once, cancelling calls in flight. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

interface EchoServiceClient extends grpc.Client {
  Echo(req: Partial<EchoRequest>, md: grpc.Metadata, opts: grpc.CallOptions, cb: grpc.requestCallback<EchoResponse>): grpc.ClientUnaryCall;
  Stream(req: Partial<EchoRequest>, md: grpc.Metadata, opts: grpc.CallOptions): grpc.ClientReadableStream<EchoResponse>;
  Collect(md: grpc.Metadata, opts: grpc.CallOptions, cb: grpc.requestCallback<EchoResponse>): grpc.ClientWritableStream<Partial<EchoRequest>>;
  Chat(md: grpc.Metadata, opts: grpc.CallOptions): grpc.ClientDuplexStream<Partial<EchoRequest>, EchoResponse>;
}

interface EchoPackage {
  service: grpc.ServiceDefinition;
  ctor: new (target: string, creds: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => EchoServiceClient;
}

let echoPackage: EchoPackage | undefined;

function loadEcho(): EchoPackage {
  if (echoPackage) return echoPackage;
  // keepCase so messages use the proto's snake_case names, as the rest of Sloop does; defaults so absent
  // scalars read as 0/"" rather than undefined.
  const def = protoLoader.loadSync(ECHO_PROTO_PATH, { keepCase: true, defaults: true, longs: Number, enums: String });
  const loaded = grpc.loadPackageDefinition(def) as unknown as {
    sloop: { test: { Echo: grpc.ServiceClientConstructor } };
  };
  const ctor = loaded.sloop.test.Echo;
  echoPackage = { service: ctor.service, ctor: ctor as unknown as EchoPackage['ctor'] };
  return echoPackage;
}

/** Metadata as a plain record: first value per key, Buffers as base64. */
export function metadataToRecord(md: grpc.Metadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(md.getMap())) out[key] = typeof value === 'string' ? value : value.toString('base64');
  return out;
}

function recordToMetadata(record: Record<string, string> | undefined): grpc.Metadata {
  const md = new grpc.Metadata();
  if (record) for (const [key, value] of Object.entries(record)) md.set(key, key.endsWith('-bin') ? Buffer.from(value) : value);
  return md;
}

function failure(code: number, trailers: grpc.Metadata): Partial<grpc.StatusObject> {
  return { code, details: `failed with code ${code} as requested`, metadata: trailers };
}

/**
 * Starts the `sloop.test.Echo` gRPC service on 127.0.0.1:0 (cleartext h2 unless `tls`). Every call:
 * records its metadata; sends initial metadata `x-upstream: <name>`; ends with trailer `x-trailer` set to
 * the request's `x-trailer` metadata (or the upstream's name); fails with `fail_code` when it is non-zero.
 */
export async function startGrpcUpstream(opts: GrpcUpstreamOptions = {}): Promise<GrpcUpstream> {
  const { service } = loadEcho();
  const recorder = new Recorder<RecordedCall>('calls to gRPC upstream');
  let name = opts.name ?? '';
  const server = new grpc.Server();
  const timers = new Set<NodeJS.Timeout>();
  const later = (ms: number, fn: () => void): void => {
    if (ms <= 0) return fn();
    const timer = setTimeout(() => {
      timers.delete(timer);
      fn();
    }, ms);
    timers.add(timer);
  };

  type AnyCall = grpc.ServerUnaryCall<EchoRequest, EchoResponse> | grpc.ServerReadableStream<EchoRequest, EchoResponse> | grpc.ServerWritableStream<EchoRequest, EchoResponse> | grpc.ServerDuplexStream<EchoRequest, EchoResponse>;
  const begin = (method: EchoMethod, call: AnyCall, first?: EchoRequest) => {
    const metadata = metadataToRecord(call.metadata);
    const deadline = call.getDeadline();
    const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
    const deadlineLeftMs = Number.isFinite(deadlineMs) ? deadlineMs - Date.now() : undefined;
    const rec: RecordedCall = { method, path: call.getPath(), metadata, requests: first ? [first] : [], peer: call.getPeer(), deadlineLeftMs };
    recorder.push(rec);
    const initial = new grpc.Metadata();
    initial.set('x-upstream', name);
    call.sendMetadata(initial);
    const trailers = new grpc.Metadata();
    trailers.set('x-trailer', metadata['x-trailer'] ?? name);
    const reply = (message: string): EchoResponse => ({ message, upstream: name, metadata });
    return { rec, trailers, reply };
  };

  const impl: grpc.UntypedServiceImplementation = {
    Echo: (call: grpc.ServerUnaryCall<EchoRequest, EchoResponse>, callback: grpc.sendUnaryData<EchoResponse>) => {
      const req = call.request;
      const { trailers, reply } = begin('Echo', call, req);
      later(req.sleep_ms, () => {
        if (call.cancelled) return;
        if (req.fail_code) callback(failure(req.fail_code, trailers));
        else callback(null, reply(req.message), trailers);
      });
    },
    Stream: (call: grpc.ServerWritableStream<EchoRequest, EchoResponse>) => {
      const req = call.request;
      const { trailers, reply } = begin('Stream', call, req);
      const count = req.count || 3;
      let i = 0;
      const step = (): void => {
        if (call.cancelled) return;
        if (i < count) {
          call.write(reply(`${req.message}-${i++}`));
          later(req.sleep_ms, step);
        } else if (req.fail_code) {
          call.emit('error', failure(req.fail_code, trailers));
        } else {
          call.end(trailers);
        }
      };
      step();
    },
    Collect: (call: grpc.ServerReadableStream<EchoRequest, EchoResponse>, callback: grpc.sendUnaryData<EchoResponse>) => {
      const { rec, trailers, reply } = begin('Collect', call);
      let failCode = 0;
      call.on('data', (req: EchoRequest) => {
        rec.requests.push(req);
        if (req.fail_code) failCode = req.fail_code;
      });
      call.on('end', () => {
        if (failCode) callback(failure(failCode, trailers));
        else callback(null, reply(rec.requests.map((r) => r.message).join(',')), trailers);
      });
    },
    Chat: (call: grpc.ServerDuplexStream<EchoRequest, EchoResponse>) => {
      const { rec, trailers, reply } = begin('Chat', call);
      let failed = false;
      call.on('data', (req: EchoRequest) => {
        rec.requests.push(req);
        if (failed) return;
        if (req.fail_code) {
          failed = true;
          call.emit('error', failure(req.fail_code, trailers));
        } else {
          call.write(reply(req.message));
        }
      });
      call.on('end', () => {
        if (!failed) call.end(trailers);
      });
    },
  };
  server.addService(service, impl);

  const tls = opts.tls;
  const creds = tls
    ? grpc.ServerCredentials.createSsl(
        tls.ca ? Buffer.from(tls.ca) : null,
        [{ private_key: Buffer.from(tls.key), cert_chain: Buffer.from(tls.cert) }],
        tls.requestCert ?? false,
      )
    : grpc.ServerCredentials.createInsecure();
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${LOOPBACK}:0`, creds, (err, p) => (err ? reject(err) : resolve(p))),
  );
  if (!name) name = `grpc-${port}`;
  const close = once(async () => {
    for (const timer of timers) clearTimeout(timer);
    server.forceShutdown();
  });
  return { port, name, calls: recorder.items, recorder, close, [Symbol.asyncDispose]: close };
}

/** Per-call options for {@link grpcClient} helpers. */
export interface GrpcCallOptions {
  /** Request metadata (custom headers). Keys ending in `-bin` are sent as binary (UTF-8 of the value). */
  metadata?: Record<string, string>;
  /** Deadline relative to now; sent as `grpc-timeout`. Default 10 s so a broken proxy cannot hang a test. */
  deadlineMs?: number;
}

/** Outcome of a unary or client-streaming call. Never rejects for a gRPC status; check `code`. */
export interface GrpcUnaryResult {
  /** gRPC status code (0 = OK; see `grpc.status`). */
  code: number;
  details: string;
  /** The response, when `code` is 0. */
  response?: EchoResponse;
  /** Response initial metadata (headers). */
  headers: Record<string, string>;
  /** Trailing metadata. */
  trailers: Record<string, string>;
}

/** Outcome of a server- or bidi-streaming call: every response received before the status. */
export interface GrpcStreamResult {
  code: number;
  details: string;
  responses: EchoResponse[];
  headers: Record<string, string>;
  trailers: Record<string, string>;
}

/** Promise helpers for the four Echo RPCs over one channel. */
export interface EchoClient {
  echo(req: Partial<EchoRequest>, opts?: GrpcCallOptions): Promise<GrpcUnaryResult>;
  stream(req: Partial<EchoRequest>, opts?: GrpcCallOptions): Promise<GrpcStreamResult>;
  /** Sends every request, half-closes, and returns the single response. */
  collect(reqs: Array<Partial<EchoRequest>>, opts?: GrpcCallOptions): Promise<GrpcUnaryResult>;
  /** Sends every request, half-closes, and returns every response. */
  chat(reqs: Array<Partial<EchoRequest>>, opts?: GrpcCallOptions): Promise<GrpcStreamResult>;
  /** Closes the channel. */
  close(): void;
  [Symbol.dispose](): void;
}

/** Options for {@link grpcClient}. */
export interface GrpcClientOptions {
  /** `:authority` to send (virtual host routing through the proxy). Default: the target. */
  authority?: string;
  /** Use TLS. `servername` overrides the name checked against the server certificate (and sent as SNI). */
  tls?: { ca: string | Buffer; cert?: string | Buffer; key?: string | Buffer; servername?: string };
  /** Extra grpc-js channel options. */
  channelOptions?: grpc.ChannelOptions;
}

interface CallEvents {
  on(event: 'metadata', listener: (md: grpc.Metadata) => void): unknown;
  on(event: 'status', listener: (status: grpc.StatusObject) => void): unknown;
}

function callOptions(opts: GrpcCallOptions | undefined): grpc.CallOptions {
  return { deadline: Date.now() + (opts?.deadlineMs ?? 10_000) };
}

/** Collects the response headers of any call and resolves with them once its status arrives. */
function settle(call: CallEvents): Promise<{ headers: Record<string, string>; status: grpc.StatusObject }> {
  let headers: Record<string, string> = {};
  call.on('metadata', (md) => {
    headers = metadataToRecord(md);
  });
  return new Promise((resolve) => call.on('status', (status) => resolve({ headers, status })));
}

function streamDone(stream: NodeJS.EventEmitter): Promise<void> {
  // A stream ends with 'end' on OK and 'error' on any other status; 'status' can come before the last
  // 'data' event is delivered, so wait for both.
  return new Promise((resolve) => {
    stream.once('end', resolve);
    stream.once('error', () => resolve());
  });
}

/**
 * A client for the Echo service at `target` (`127.0.0.1:<port>`, usually the proxy's listener). The helpers
 * never reject for a non-OK gRPC status; they resolve with `code`, `details`, headers and trailers.
 */
export function grpcClient(target: string, opts: GrpcClientOptions = {}): EchoClient {
  const { ctor } = loadEcho();
  const options: grpc.ChannelOptions = { ...opts.channelOptions };
  if (opts.authority) options['grpc.default_authority'] = opts.authority;
  let creds = grpc.credentials.createInsecure();
  if (opts.tls) {
    const t = opts.tls;
    creds = grpc.credentials.createSsl(Buffer.from(t.ca), t.key ? Buffer.from(t.key) : null, t.cert ? Buffer.from(t.cert) : null);
    if (t.servername) options['grpc.ssl_target_name_override'] = t.servername;
  }
  const client = new ctor(target, creds, options);

  const unary = async (
    start: (cb: grpc.requestCallback<EchoResponse>) => CallEvents,
  ): Promise<GrpcUnaryResult> => {
    let response: EchoResponse | undefined;
    const call = start((err, value) => {
      if (!err) response = value;
    });
    const { headers, status } = await settle(call);
    return { code: status.code, details: status.details, response, headers, trailers: metadataToRecord(status.metadata) };
  };

  const streaming = async (
    call: CallEvents & NodeJS.EventEmitter,
  ): Promise<GrpcStreamResult> => {
    const responses: EchoResponse[] = [];
    call.on('data', (r: EchoResponse) => responses.push(r));
    const [{ headers, status }] = await Promise.all([settle(call), streamDone(call)]);
    return { code: status.code, details: status.details, responses, headers, trailers: metadataToRecord(status.metadata) };
  };

  const close = (): void => client.close();
  return {
    echo: (req, o) => unary((cb) => client.Echo(req, recordToMetadata(o?.metadata), callOptions(o), cb)),
    stream: (req, o) => streaming(client.Stream(req, recordToMetadata(o?.metadata), callOptions(o))),
    collect: (reqs, o) =>
      unary((cb) => {
        const call = client.Collect(recordToMetadata(o?.metadata), callOptions(o), cb);
        for (const r of reqs) call.write(r);
        call.end();
        return call;
      }),
    chat: (reqs, o) => {
      const call = client.Chat(recordToMetadata(o?.metadata), callOptions(o));
      const result = streaming(call);
      for (const r of reqs) call.write(r);
      call.end();
      return result;
    },
    close,
    [Symbol.dispose]: close,
  };
}

// ---------------------------------------------------------------------------------------------------------
// WebSocket

/** An HTTP/1.1 Upgrade request as the WebSocket upstream saw it. */
export interface RecordedUpgrade {
  url: string;
  headers: Array<[string, string]>;
  headerMap: Record<string, string>;
  remotePort: number;
}

/** A running WebSocket echo upstream. */
export interface WsUpstream {
  port: number;
  name: string;
  /** Upgrade requests, in arrival order. Same array as `recorder.items`. */
  upgrades: RecordedUpgrade[];
  recorder: Recorder<RecordedUpgrade>;
  /** Messages received, across all connections; text as string, binary as Buffer. */
  messages: Array<string | Buffer>;
  /** Close frames received from clients (code and reason), in arrival order. */
  closes: Recorder<{ code: number; reason: string }>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts a WebSocket server (the `ws` package) on 127.0.0.1:0 that echoes each message with the same
 * text/binary type, and answers plain HTTP requests with 426 so tests can tell an upgrade from a request.
 * A text message `__close:<code>:<reason>` makes the server close with that code instead of echoing.
 * With `rejectStatus`, every upgrade is refused with that status (recorded in `upgrades` all the same).
 */
export async function startWsUpstream(opts: { name?: string; rejectStatus?: number } = {}): Promise<WsUpstream> {
  const recorder = new Recorder<RecordedUpgrade>('upgrades to WebSocket upstream');
  const messages: Array<string | Buffer> = [];
  const sockets = new Set<Socket>();
  const server = createHttpServer((_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain', connection: 'close' });
    res.end('WebSocket upgrade required\n');
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  const closes = new Recorder<{ code: number; reason: string }>('close frames at WebSocket upstream');
  const record = (req: IncomingMessage): void => {
    const headerPairs = pairs(req.rawHeaders);
    recorder.push({ url: req.url ?? '', headers: headerPairs, headerMap: headerMapOf(headerPairs), remotePort: req.socket.remotePort ?? 0 });
  };
  const rejectStatus = opts.rejectStatus;
  const wss = new WebSocketServer({
    server,
    verifyClient:
      rejectStatus === undefined
        ? undefined
        : (info: { req: IncomingMessage }, cb: (ok: boolean, code?: number, message?: string) => void) => {
            record(info.req);
            cb(false, rejectStatus, 'rejected by test upstream');
          },
  });
  let name = opts.name ?? '';
  wss.on('connection', (ws: WebSocket, req: IncomingMessage) => {
    record(req);
    ws.on('message', (data, isBinary) => {
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      messages.push(isBinary ? buf : buf.toString('utf8'));
      const cmd = isBinary ? null : /^__close:(\d+):(.*)$/s.exec(buf.toString('utf8'));
      if (cmd !== null) ws.close(Number(cmd[1]), cmd[2]);
      else ws.send(buf, { binary: isBinary });
    });
    ws.on('close', (code, reason) => closes.push({ code, reason: reason.toString('utf8') }));
    ws.on('error', () => {});
  });
  const port = await listen(server);
  if (!name) name = `ws-${port}`;
  const close = once(async () => {
    for (const client of wss.clients) client.terminate();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
    await closeServer(server, sockets);
  });
  return { port, name, upgrades: recorder.items, recorder, messages, closes, close, [Symbol.asyncDispose]: close };
}

// ---------------------------------------------------------------------------------------------------------
// TCP

/** One accepted TCP connection of {@link startTcpEcho}. */
export interface TcpConnection {
  remotePort: number;
  /** Chunks received, in order. */
  chunks: Buffer[];
  /** Total bytes received. */
  bytes: number;
  /** True once the connection has closed. */
  closed: boolean;
  /** True if the peer half-closed (sent FIN). */
  ended: boolean;
}

/** A running TCP echo server. */
export interface TcpEcho {
  port: number;
  /** Accepted connections, in order. Same array as `recorder.items`. */
  connections: TcpConnection[];
  recorder: Recorder<TcpConnection>;
  /** Concatenation of everything received on connection `i` (default: the first). */
  received(i?: number): Buffer;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts a TCP server on 127.0.0.1:0 that echoes every byte back. With `banner`, it first writes the banner
 * on each new connection (a server-speaks-first protocol such as SMTP or MySQL). A client FIN is echoed by
 * closing after the echoed bytes are flushed.
 */
export async function startTcpEcho(opts: { banner?: string | Buffer } = {}): Promise<TcpEcho> {
  const recorder = new Recorder<TcpConnection>('connections to TCP echo');
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    sockets.add(socket);
    const conn: TcpConnection = { remotePort: socket.remotePort ?? 0, chunks: [], bytes: 0, closed: false, ended: false };
    recorder.push(conn);
    if (opts.banner !== undefined) socket.write(opts.banner);
    socket.on('data', (chunk) => {
      conn.chunks.push(chunk);
      conn.bytes += chunk.length;
      socket.write(chunk);
    });
    socket.on('end', () => {
      conn.ended = true;
    });
    socket.on('error', () => {});
    socket.once('close', () => {
      conn.closed = true;
      sockets.delete(socket);
    });
  });
  const port = await listen(server);
  const close = once(() => closeServer(server, sockets));
  return {
    port,
    connections: recorder.items,
    recorder,
    received: (i = 0) => Buffer.concat(recorder.items[i]?.chunks ?? []),
    close,
    [Symbol.asyncDispose]: close,
  };
}
