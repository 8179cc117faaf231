import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeTestPki } from '../../test/helpers/certs.ts';
import { socketIo } from './socket-io.ts';
import { collectGarbage } from '../shared/heap.ts';
import { tcpPair } from '../../test/helpers/sockets.ts';

function collect(sock: net.Socket): { bytes: () => Buffer } {
  const parts: Buffer[] = [];
  sock.on('data', (d: Buffer) => parts.push(d));
  return { bytes: () => Buffer.concat(parts) };
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`timed out waiting for ${what}`);
}

test('a plain TCP socket reads and writes on its handle, strings as latin1, in order with stream writes', async () => {
  const { accepted: a, client: b, close: done } = await tcpPair();
  try {
    const got: Buffer[] = [];
    const io = socketIo(a, (d) => got.push(d), () => {});
    assert.equal(io.direct, true);
    const peer = collect(b);
    b.write('hello ');
    b.write(Buffer.from([0xe9]));
    await until(() => Buffer.concat(got).length === 7, 'reads');
    assert.deepEqual(Buffer.concat(got), Buffer.from('hello \u00e9', 'latin1'));
    assert.equal(a.bytesRead, 7, 'the handle keeps the byte counter');
    assert.equal(io.write('caf\u00e9 '), true);
    a.write('via-stream ');
    io.write(Buffer.from('end'));
    await until(() => peer.bytes().length === 19, 'writes');
    assert.equal(peer.bytes().toString('latin1'), 'caf\u00e9 via-stream end');
  } finally {
    done();
  }
});

test('bytes unshifted into the stream come before bytes read later from the handle', async () => {
  const { accepted: a, client: b, close: done } = await tcpPair();
  try {
    a.pause();
    a.unshift(Buffer.from('first '));
    const got: Buffer[] = [];
    socketIo(a, (d) => got.push(d), () => {});
    a.resume();
    b.write('second');
    await until(() => Buffer.concat(got).length === 12, 'both');
    assert.equal(Buffer.concat(got).toString(), 'first second');
  } finally {
    done();
  }
});

test('a write the kernel cannot take returns false and onDrain follows once it is out; order holds', async () => {
  const { accepted: a, client: b, close: done } = await tcpPair();
  try {
    let drains = 0;
    const io = socketIo(a, () => {}, () => drains++);
    b.pause();
    const chunk = Buffer.alloc(256 * 1024);
    let i = 0;
    let ok = true;
    // Fill the socket buffers: mark each chunk with its index so the reader can check the order.
    while (ok && i < 400) {
      chunk.fill(i & 0xff);
      ok = io.write(Buffer.from(chunk));
      i++;
    }
    assert.equal(ok, false, 'the kernel buffers filled up');
    // Nothing of ours references the queued Buffers now: a full GC, then fresh allocations that would reuse
    // their memory, must not change what reaches the peer (the write request keeps each Buffer alive).
    collectGarbage({ type: 'major', execution: 'sync' });
    const churn = Array.from({ length: 64 }, () => Buffer.alloc(256 * 1024, 0x55));
    assert.equal(churn.length, 64);
    assert.equal(drains, 0);
    // A stream write while handle writes are queued goes behind them.
    a.write(Buffer.alloc(10, 0xee));
    let received = 0;
    let bad = -1;
    b.on('data', (d: Buffer) => {
      for (let k = 0; k < d.length; k++) {
        const pos = received + k;
        const want = pos < i * chunk.length ? Math.floor(pos / chunk.length) & 0xff : 0xee;
        if (d[k] !== want && bad < 0) bad = pos;
      }
      received += d.length;
    });
    b.resume();
    await until(() => received === i * chunk.length + 10, 'all bytes');
    assert.equal(bad, -1, `byte ${bad} out of order`);
    await until(() => drains > 0, 'onDrain');
  } finally {
    done();
  }
});

test('pause stops reading from the handle, resume starts it again', async () => {
  const { accepted: a, client: b, close: done } = await tcpPair();
  try {
    const got: Buffer[] = [];
    const io = socketIo(a, (d) => got.push(d), () => {});
    io.pause();
    assert.equal(io.isPaused(), true);
    b.write('while paused');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(got.length, 0);
    io.resume();
    assert.equal(io.isPaused(), false);
    await until(() => Buffer.concat(got).toString() === 'while paused', 'data after resume');
  } finally {
    done();
  }
});

for (const pausedFirst of [false, true]) {
  test(`after detach${pausedFirst ? ' while paused (the next owner resumes)' : ''} the stream reads again; EOF still comes through`, async () => {
    const { accepted: a, client: b, close: done } = await tcpPair();
    try {
      const got: Buffer[] = [];
      const onData = (d: Buffer): void => {
        got.push(d);
      };
      const io = socketIo(a, onData, () => {});
      b.write('x');
      await until(() => got.length === 1, 'first read');
      if (pausedFirst) io.pause();
      io.detach();
      a.removeListener('data', onData);
      const later = collect(a);
      b.write('tunnel');
      if (pausedFirst) {
        // A paused socket stays paused for its next owner, and its resume() starts the bytes flowing.
        await new Promise((r) => setTimeout(r, 50));
        assert.equal(a.isPaused(), true);
        assert.equal(later.bytes().length, 0);
        a.resume();
      }
      await until(() => later.bytes().toString() === 'tunnel', 'stream read after detach');
      assert.equal(got.length, 1);
      const ended = once(a, 'end');
      b.end();
      await ended;
    } finally {
      done();
    }
  });
}

test('EOF while reading on the handle emits end, and a peer reset closes the socket', async () => {
  const { accepted: a, client: b, close: done } = await tcpPair();
  try {
    const io = socketIo(a, () => {}, () => {});
    assert.equal(io.direct, true);
    a.on('error', () => {});
    const ended = once(a, 'end');
    b.end('bye');
    await ended;
    // (events.once would reject on the 'error' that comes first.)
    const closed = new Promise((resolve) => a.on('close', resolve));
    b.resetAndDestroy();
    // Writing into a reset connection fails on the handle or later; either way the socket closes.
    for (let i = 0; i < 5 && !a.destroyed; i++) {
      io.write('after reset');
      await new Promise((r) => setTimeout(r, 20));
    }
    await closed;
  } finally {
    done();
  }
});

test('a TLS socket keeps the stream path', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sloop-socket-io-'));
  const pki = await makeTestPki(dir);
  const { key, cert } = pki.server;
  const server = tls.createServer({ key, cert });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = tls.connect({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', rejectUnauthorized: false });
  const [accepted] = (await once(server, 'secureConnection')) as [tls.TLSSocket];
  try {
    const got: Buffer[] = [];
    const io = socketIo(accepted, (d) => got.push(d), () => {});
    assert.equal(io.direct, false);
    client.write('over tls');
    await until(() => Buffer.concat(got).toString() === 'over tls', 'tls read');
  } finally {
    client.destroy();
    accepted.destroy();
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
});
