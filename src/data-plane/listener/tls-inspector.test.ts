import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { connect } from 'node:tls';
import { once } from 'node:events';
import { inspectTls, MAX_CLIENT_HELLO_BYTES } from './tls-inspector.ts';

/** Captures the first flight a real Node TLS client sends (its ClientHello), then drops the connection. */
async function captureClientHello(opts: { servername?: string; ALPNProtocols?: string[] }): Promise<Buffer> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const accepted = once(server, 'connection');
  const client = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...opts });
  client.on('error', () => {}); // the server hangs up mid-handshake on purpose
  const [socket] = (await accepted) as [import('node:net').Socket];
  const chunks: Buffer[] = [];
  let total = 0;
  // Read until the record the first header announces is complete.
  for await (const chunk of socket) {
    chunks.push(chunk as Buffer);
    total += (chunk as Buffer).length;
    const all = Buffer.concat(chunks, total);
    if (all.length >= 5 && all.length >= 5 + all.readUInt16BE(3)) break;
  }
  socket.destroy();
  client.destroy();
  server.close();
  const all = Buffer.concat(chunks, total);
  return all.subarray(0, 5 + all.readUInt16BE(3));
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function ext(type: number, body: Buffer): Buffer {
  return Buffer.concat([u16(type), u16(body.length), body]);
}

function sniExt(name: string): Buffer {
  const host = Buffer.from(name, 'latin1');
  const entry = Buffer.concat([Buffer.from([0]), u16(host.length), host]);
  return ext(0, Buffer.concat([u16(entry.length), entry]));
}

function alpnExt(protocols: string[]): Buffer {
  const list = Buffer.concat(protocols.map((p) => Buffer.concat([Buffer.from([p.length]), Buffer.from(p, 'latin1')])));
  return ext(16, Buffer.concat([u16(list.length), list]));
}

/** A ClientHello handshake message (header included) with the given extensions; undefined = no extensions block. */
function helloMessage(extensions: Buffer[] | undefined, padTo = 0): Buffer {
  const parts = [
    Buffer.from([3, 3]),
    Buffer.alloc(32, 7), // random
    Buffer.from([0]), // session id
    u16(2), Buffer.from([0x13, 0x01]), // one cipher suite
    Buffer.from([1, 0]), // null compression
  ];
  if (extensions) {
    let exts = Buffer.concat(extensions);
    if (padTo > exts.length) exts = Buffer.concat([exts, ext(21, Buffer.alloc(padTo - exts.length - 4))]); // RFC 7685 padding
    parts.push(u16(exts.length), exts);
  }
  const body = Buffer.concat(parts);
  const header = Buffer.from([1, (body.length >> 16) & 0xff, (body.length >> 8) & 0xff, body.length & 0xff]);
  return Buffer.concat([header, body]);
}

/** Wraps a handshake message in records of at most `fragment` bytes each. */
function records(message: Buffer, fragment = 1 << 14, version = 0x0301): Buffer {
  const out: Buffer[] = [];
  for (let i = 0; i < message.length; i += fragment) {
    const piece = message.subarray(i, i + fragment);
    out.push(Buffer.from([22, version >> 8, version & 0xff]), u16(piece.length), piece);
  }
  return Buffer.concat(out);
}

test('a real Node ClientHello yields lowercased SNI and ALPN in client order', async () => {
  const hello = await captureClientHello({ servername: 'Reviews.Default.SVC.cluster.local', ALPNProtocols: ['h2', 'http/1.1'] });
  assert.deepEqual(inspectTls(hello), {
    state: 'tls',
    serverName: 'reviews.default.svc.cluster.local',
    alpn: ['h2', 'http/1.1'],
  });
  // Trailing application bytes after the hello do not matter.
  assert.equal(inspectTls(Buffer.concat([hello, Buffer.from('junk')])).state, 'tls');
});

test('every strict prefix of a real ClientHello asks for more bytes', async () => {
  const hello = await captureClientHello({ servername: 'example.com', ALPNProtocols: ['istio', 'h2'] });
  for (let len = 0; len < hello.length; len++) {
    assert.deepEqual(inspectTls(hello.subarray(0, len)), { state: 'need-more' }, `prefix of ${len} bytes`);
  }
});

test('a ClientHello without SNI or ALPN is TLS with neither', async () => {
  const hello = await captureClientHello({});
  assert.deepEqual(inspectTls(hello), { state: 'tls', serverName: undefined, alpn: [] });
  assert.deepEqual(inspectTls(records(helloMessage(undefined))), { state: 'tls', serverName: undefined, alpn: [] });
});

test('non-TLS bytes are rejected from the first byte that rules TLS out', () => {
  assert.deepEqual(inspectTls(Buffer.from('G')), { state: 'not-tls' });
  assert.equal(inspectTls(Buffer.from('GET / HTTP/1.1\r\n')).state, 'not-tls');
  assert.equal(inspectTls(Buffer.from('PRI * HTTP/2.0\r\n')).state, 'not-tls');
  assert.equal(inspectTls(Buffer.from([22, 2])).state, 'not-tls', 'SSL 2 major version');
  assert.equal(inspectTls(Buffer.from([22, 3, 0])).state, 'not-tls', 'SSL 3.0 record version');
  assert.equal(inspectTls(Buffer.from([22, 3, 5])).state, 'not-tls', 'unknown record version');
  assert.equal(inspectTls(Buffer.from([23, 3, 3, 0, 5])).state, 'not-tls', 'application data record');
  assert.equal(inspectTls(Buffer.from([22, 3, 1, 0, 0])).state, 'not-tls', 'empty handshake record');
  assert.equal(inspectTls(Buffer.from([22, 3, 1, 0x40, 0x01])).state, 'not-tls', 'record longer than 2^14');
  assert.equal(inspectTls(Buffer.from([22, 3, 1, 0, 50, 2])).state, 'not-tls', 'ServerHello, not ClientHello');
  assert.equal(inspectTls(Buffer.from([22, 3, 1, 0, 50, 1, 0, 0, 5])).state, 'not-tls', 'hello body too short');
  // Still a possible TLS start: wait.
  assert.equal(inspectTls(Buffer.from([22, 3, 1])).state, 'need-more');
});

test('a ClientHello fragmented over several records is reassembled', () => {
  const message = helloMessage([sniExt('api.example.com'), alpnExt(['h2'])]);
  const expected = { state: 'tls', serverName: 'api.example.com', alpn: ['h2'] };
  for (const fragment of [1, 2, 3, 7, 40, message.length - 1]) {
    const wire = records(message, fragment, 0x0303);
    assert.deepEqual(inspectTls(wire), expected, `fragment ${fragment}`);
    for (let len = 0; len < wire.length; len += 5) {
      assert.equal(inspectTls(wire.subarray(0, len)).state, 'need-more', `fragment ${fragment}, prefix ${len}`);
    }
  }
  // A record of another type in the middle of the hello is not TLS as we know it.
  const wire = records(message, 20);
  const broken = Buffer.from(wire);
  broken[25] = 21; // second record's content type → alert
  assert.equal(inspectTls(broken).state, 'not-tls');
});

test('a ClientHello larger than the limit is TLS without SNI, decided without waiting for it', () => {
  const big = records(helloMessage([sniExt('big.example.com')], 20_000), 1 << 14);
  assert.ok(big.length > MAX_CLIENT_HELLO_BYTES);
  // Only the first handshake header is needed to know it cannot fit.
  assert.deepEqual(inspectTls(big.subarray(0, 9)), { state: 'tls', serverName: undefined, alpn: [] });
  assert.deepEqual(inspectTls(big), { state: 'tls', serverName: undefined, alpn: [] });

  const small = records(helloMessage([sniExt('a.example.com')], 300), 100);
  assert.equal(inspectTls(small).state, 'tls');
  assert.equal((inspectTls(small) as { serverName?: string }).serverName, 'a.example.com');
  assert.deepEqual(inspectTls(small, 200), { state: 'tls', serverName: undefined, alpn: [] });
});

test('malformed extensions are not TLS', () => {
  const ok = helloMessage([sniExt('x.example.com')]);
  const wire = (m: Buffer): Buffer => records(m);

  const trailing = Buffer.concat([ok, Buffer.from([0])]);
  trailing.writeUIntBE(trailing.length - 4, 1, 3);
  assert.equal(inspectTls(wire(trailing)).state, 'not-tls', 'bytes after the extensions block');

  const badListLen = Buffer.from(ok);
  badListLen.writeUInt16BE(0xff, badListLen.length - (2 + 1 + 2 + 13)); // server_name_list length
  assert.equal(inspectTls(wire(badListLen)).state, 'not-tls', 'server_name_list overruns the extension');

  assert.equal(inspectTls(wire(helloMessage([sniExt('x.example.com'), sniExt('y.example.com')]))).state, 'not-tls', 'duplicate SNI');
  assert.equal(inspectTls(wire(helloMessage([sniExt('')]))).state, 'not-tls', 'empty host_name');
  assert.equal(inspectTls(wire(helloMessage([sniExt('a\u0000b')]))).state, 'not-tls', 'NUL in host_name');
  assert.equal(inspectTls(wire(helloMessage([alpnExt(['h2', ''])]))).state, 'not-tls', 'empty ALPN name');
  assert.equal(inspectTls(wire(helloMessage([ext(16, Buffer.from([0, 0]))]))).state, 'not-tls', 'empty ALPN list');
  // Unknown extensions are skipped.
  assert.deepEqual(inspectTls(wire(helloMessage([ext(0xfafa, Buffer.alloc(3)), alpnExt(['http/1.1'])]))), {
    state: 'tls',
    serverName: undefined,
    alpn: ['http/1.1'],
  });
});

test('mutated ClientHellos never throw', async () => {
  const hello = await captureClientHello({ servername: 'fuzz.example.com', ALPNProtocols: ['h2'] });
  // Deterministic xorshift so failures reproduce.
  let seed = 0x9e3779b9;
  const rand = (): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) / 0x100000000;
  };
  const states = new Set<string>();
  for (let round = 0; round < 5000; round++) {
    const b = Buffer.from(hello);
    const flips = 1 + Math.floor(rand() * 4);
    for (let f = 0; f < flips; f++) b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
    const cut = rand() < 0.3 ? Math.floor(rand() * b.length) : b.length;
    const r = inspectTls(b.subarray(0, cut));
    states.add(r.state);
    if (r.state === 'tls') assert.ok(r.serverName === undefined || typeof r.serverName === 'string');
  }
  assert.ok(states.has('not-tls') && states.has('tls'), [...states].join());
});
