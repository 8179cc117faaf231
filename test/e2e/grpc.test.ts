// gRPC through `sloop proxy`: @grpc/grpc-js client → sloop (h2c, codec AUTO) → grpc-js upstream (h2c).
// All four RPC kinds, metadata and trailers both ways, failing statuses, deadlines (grpc-timeout honoured
// under max_stream_duration.grpc_timeout_header_max), proxy-generated errors as gRPC statuses (RELIABILITY
// row 35) and `route.match.grpc`.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as h2connect, createServer as h2server, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { status as grpcStatus } from '@grpc/grpc-js';
import { startGrpcUpstream, grpcClient, type GrpcUpstream, type EchoClient } from '../helpers/upstreams.ts';
import { startProxy, bootstrapWith, httpListener, staticCluster, virtualHost, http2ProtocolOptions, type ProxyHandle } from '../helpers/proxy.ts';
import { curl } from '../helpers/clients.ts';
import { freePorts } from '../helpers/ports.ts';

/** One gRPC-framed message (the proxy never parses it; any bytes after the 5-byte prefix will do). */
function grpcFrame(payload: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h.writeUInt32BE(payload.length, 1);
  return Buffer.concat([h, payload]);
}

/**
 * A gRPC request over plain node:http2, for headers a grpc-js client will not send (a grpc-timeout without a
 * client-side deadline). Resolves with the response headers and trailers merged (trailers-only replies carry
 * everything in the headers).
 */
async function rawGrpc(port: number, authority: string, path: string, headers: Record<string, string>, body: Buffer): Promise<{ status: number; headers: IncomingHttpHeaders; trailers: IncomingHttpHeaders }> {
  const session = h2connect(`http://127.0.0.1:${port}`);
  try {
    return await new Promise((resolve, reject) => {
      const req = session.request({ ':method': 'POST', ':path': path, ':authority': authority, 'content-type': 'application/grpc', te: 'trailers', ...headers });
      let resHeaders: IncomingHttpHeaders = {};
      let trailers: IncomingHttpHeaders = {};
      req.on('response', (h) => {
        resHeaders = h;
      });
      req.on('trailers', (t) => {
        trailers = t;
      });
      req.on('end', () => resolve({ status: Number(resHeaders[':status']), headers: resHeaders, trailers }));
      req.on('error', reject);
      req.resume();
      req.end(grpcFrame(body));
    });
  } finally {
    session.close();
  }
}

describe('gRPC proxying', () => {
  let g: GrpcUpstream;
  /** An h2c upstream that takes every stream and never answers (only the proxy can end the call). */
  let hang: Http2Server;
  const hung = new Set<ServerHttp2Stream>();
  let proxy: ProxyHandle;
  let port: number;
  let client: EchoClient;
  const clients: EchoClient[] = [];
  const clientFor = (authority: string): EchoClient => {
    const c = grpcClient(`127.0.0.1:${port}`, { authority });
    clients.push(c);
    return c;
  };

  before(async () => {
    g = await startGrpcUpstream({ name: 'g' });
    hang = h2server();
    hang.on('stream', (s) => {
      hung.add(s);
      s.on('error', () => {});
      s.on('close', () => hung.delete(s));
      s.resume();
    });
    await new Promise<void>((res) => hang.listen(0, '127.0.0.1', res));
    const hangPort = (hang.address() as { port: number }).port;
    const [p, admin] = await freePorts(2);
    port = p;
    const grpcRoute = (extra: Record<string, unknown> = {}) => ({ match: { prefix: '/sloop.test.Echo/' }, route: { cluster: 'grpc', ...extra } });
    proxy = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [
          httpListener({
            name: 'grpc',
            port,
            virtualHosts: [
              virtualHost('echo', ['echo.local'], [grpcRoute()]),
              virtualHost('deadline', ['deadline.local'], [grpcRoute({ max_stream_duration: { grpc_timeout_header_max: '5s' } })]),
              virtualHost('uncapped', ['uncapped.local'], [grpcRoute({ max_stream_duration: { grpc_timeout_header_max: '0s' } })]),
              virtualHost('hang', ['hang.local'], [{ match: { prefix: '/' }, route: { cluster: 'hang', max_stream_duration: { grpc_timeout_header_max: '0s' } } }]),
              virtualHost('down', ['down.local'], [{ match: { prefix: '/' }, route: { cluster: 'dead' } }]),
              virtualHost('grpconly', ['grpconly.local'], [{ match: { prefix: '/', grpc: {} }, route: { cluster: 'grpc' } }]),
            ],
          }),
        ],
        clusters: [
          staticCluster('grpc', [['127.0.0.1', g.port]], http2ProtocolOptions()),
          staticCluster('dead', [['127.0.0.1', 1]], http2ProtocolOptions()),
          staticCluster('hang', [['127.0.0.1', hangPort]], http2ProtocolOptions()),
        ],
      }),
    );
    client = clientFor('echo.local');
  });

  after(async () => {
    for (const c of clients) c.close();
    await proxy?.stop();
    await g?.close();
    for (const s of hung) s.destroy();
    await new Promise((res) => hang?.close(res));
  });

  it('unary: message, metadata both ways, custom trailer', async () => {
    const r = await client.echo({ message: 'hi' }, { metadata: { 'x-md': 'req-value', 'x-trailer': 'custom-trailer', 'x-bin-bin': 'binary\u0001' } });
    assert.equal(r.code, grpcStatus.OK, r.details);
    assert.equal(r.response?.message, 'hi');
    assert.equal(r.response?.upstream, 'g');
    assert.equal(r.headers['x-upstream'], 'g');
    assert.equal(r.headers['server'], 'envoy');
    assert.equal(r.trailers['x-trailer'], 'custom-trailer');
    const call = g.calls.at(-1)!;
    assert.equal(call.path, '/sloop.test.Echo/Echo');
    assert.equal(call.metadata['x-md'], 'req-value');
    assert.equal(Buffer.from(call.metadata['x-bin-bin'], 'base64').toString(), 'binary\u0001');
    assert.equal(call.metadata[':authority'] ?? 'echo.local', 'echo.local');
    assert.match(call.metadata['x-request-id'] ?? '', /^[0-9a-f-]{36}$/);
  });

  it('server streaming', async () => {
    const r = await client.stream({ message: 's', count: 5 }, { metadata: { 'x-trailer': 'st' } });
    assert.equal(r.code, grpcStatus.OK, r.details);
    assert.deepEqual(r.responses.map((m) => m.message), ['s-0', 's-1', 's-2', 's-3', 's-4']);
    assert.equal(r.headers['x-upstream'], 'g');
    assert.equal(r.trailers['x-trailer'], 'st');
  });

  it('client streaming', async () => {
    const r = await client.collect([{ message: 'a' }, { message: 'b' }, { message: 'c' }, { message: 'd' }]);
    assert.equal(r.code, grpcStatus.OK, r.details);
    assert.equal(r.response?.message, 'a,b,c,d');
    assert.equal(g.calls.at(-1)!.requests.length, 4);
  });

  it('bidi streaming', async () => {
    const msgs = ['one', 'two', 'three', 'four', 'five'].map((message) => ({ message }));
    const r = await client.chat(msgs, { metadata: { 'x-trailer': 'bidi' } });
    assert.equal(r.code, grpcStatus.OK, r.details);
    assert.deepEqual(r.responses.map((m) => m.message), ['one', 'two', 'three', 'four', 'five']);
    assert.equal(r.trailers['x-trailer'], 'bidi');
  });

  it('a failing call keeps its status, message and trailers', async () => {
    const r = await client.echo({ message: 'x', fail_code: grpcStatus.NOT_FOUND }, { metadata: { 'x-trailer': 'on-fail' } });
    assert.equal(r.code, grpcStatus.NOT_FOUND);
    assert.equal(r.details, `failed with code ${grpcStatus.NOT_FOUND} as requested`);
    assert.equal(r.trailers['x-trailer'], 'on-fail');
    const s = await client.stream({ message: 'f', count: 2, fail_code: grpcStatus.RESOURCE_EXHAUSTED });
    assert.deepEqual(s.responses.map((m) => m.message), ['f-0', 'f-1']);
    assert.equal(s.code, grpcStatus.RESOURCE_EXHAUSTED);
    const stats = await proxy.stats();
    // gRPC failures ride on HTTP 200.
    assert.equal(stats['cluster.grpc.upstream_rq_5xx'] ?? 0, 0);
  });

  it('route.match.grpc matches gRPC requests only', async () => {
    const r = await clientFor('grpconly.local').echo({ message: 'only' });
    assert.equal(r.code, grpcStatus.OK, r.details);
    assert.equal(r.response?.message, 'only');
    const plain = await curl(['--http2-prior-knowledge', '-H', 'host: grpconly.local', '-d', 'x', `http://127.0.0.1:${port}/sloop.test.Echo/Echo`]);
    assert.equal(plain.status, 404);
    const web = await curl(['--http2-prior-knowledge', '-H', 'content-type: application/grpc-web', '-d', 'x', `http://127.0.0.1:${port}/sloop.test.Echo/Echo`, '-H', 'host: grpconly.local']);
    assert.equal(web.status, 404);
  });

  it('row 35: no route → UNIMPLEMENTED (12), trailers-only, nothing upstream', async () => {
    const n = g.calls.length;
    const r = await clientFor('nowhere.local').echo({ message: 'lost' });
    assert.equal(r.code, grpcStatus.UNIMPLEMENTED);
    assert.equal(g.calls.length, n);
    const raw = await rawGrpc(port, 'nowhere.local', '/sloop.test.Echo/Echo', {}, Buffer.alloc(0));
    assert.equal(raw.status, 200);
    assert.equal(raw.headers['grpc-status'], '12');
    assert.equal(raw.headers['content-type'], 'application/grpc');
  });

  it('row 35: upstream down → UNAVAILABLE (14) with Envoy\'s message', async () => {
    const r = await clientFor('down.local').echo({ message: 'x' });
    assert.equal(r.code, grpcStatus.UNAVAILABLE);
    assert.match(r.details, /^upstream connect error or disconnect\/reset before headers\. reset reason: remote connection failure/);
  });

  it('deadline: grpc-timeout bounds the route timeout (capped by grpc_timeout_header_max)', async () => {
    const dl = clientFor('deadline.local');
    const r = await dl.echo({ message: 'slow', sleep_ms: 3_000 }, { deadlineMs: 300 });
    assert.equal(r.code, grpcStatus.DEADLINE_EXCEEDED);
    const call = await g.recorder.waitFor((c) => c.requests[0]?.message === 'slow');
    const expected = Number(call.metadata['x-envoy-expected-rq-timeout-ms']);
    assert.ok(expected > 0 && expected <= 300, `x-envoy-expected-rq-timeout-ms ${expected}`);
    assert.ok(call.deadlineLeftMs !== undefined && call.deadlineLeftMs <= 300, `grpc-timeout forwarded: upstream deadline ${call.deadlineLeftMs} ms`);
    // A longer grpc-timeout than the cap is capped at 5 s.
    const capped = await dl.echo({ message: 'capped' }, { deadlineMs: 60_000 });
    assert.equal(capped.code, grpcStatus.OK);
    assert.equal(g.calls.at(-1)!.metadata['x-envoy-expected-rq-timeout-ms'], '5000');
    // A route that ignores grpc-timeout keeps its own 15 s timeout.
    await client.echo({ message: 'plain' }, { deadlineMs: 2_000 });
    assert.equal(g.calls.at(-1)!.metadata['x-envoy-expected-rq-timeout-ms'], '15000');
  });

  it('deadline: the proxy enforces grpc-timeout itself and answers with a gRPC status', async () => {
    // Only the proxy can end this call: the client keeps no timer and the upstream never answers. (Before any
    // response header, so the proxy answers trailers-only; after one, Envoy can only reset the stream.)
    const t0 = performance.now();
    const raw = await rawGrpc(port, 'hang.local', '/sloop.test.Echo/Echo', { 'grpc-timeout': '200m' }, Buffer.from([0x10, 0xb8, 0x17]));
    const took = performance.now() - t0;
    assert.equal(raw.status, 200);
    const grpcStatusHeader = raw.headers['grpc-status'] ?? raw.trailers['grpc-status'];
    assert.equal(grpcStatusHeader, String(grpcStatus.UNAVAILABLE), JSON.stringify(raw));
    assert.equal(raw.headers['grpc-message'], 'upstream request timeout');
    assert.ok(took < 2_500, `took ${took} ms`);
    const stats = await proxy.stats();
    assert.ok(stats['cluster.hang.upstream_rq_timeout'] >= 1);
  });

  it('deadline: no grpc-timeout under grpc_timeout_header_max 0 means no timeout at all', async () => {
    const r = await rawGrpc(port, 'uncapped.local', '/sloop.test.Echo/Echo', {}, Buffer.from([0x0a, 0x02, 0x6e, 0x74]) /* message: "nt" */);
    assert.equal(r.status, 200);
    assert.equal(r.trailers['grpc-status'], '0');
    const call = g.calls.at(-1)!;
    assert.equal(call.requests[0]?.message, 'nt');
    assert.equal(call.metadata['x-envoy-expected-rq-timeout-ms'], undefined);
  });
});
