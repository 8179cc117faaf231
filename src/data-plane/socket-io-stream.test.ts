// useStreamIo() is process-wide, so it gets its own test file (node:test runs each file in its own process).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { socketIo, useStreamIo } from './socket-io.ts';
import { tcpPair } from '../../test/helpers/sockets.ts';

test('after useStreamIo() a plain TCP socket reads and writes through net.Socket', async () => {
  useStreamIo();
  const { client, accepted, close } = await tcpPair();
  try {
    const got: Buffer[] = [];
    const io = socketIo(accepted, (d) => got.push(d), () => {});
    assert.equal(io.direct, false);
    client.write('ping');
    const reply = once(client, 'data');
    for (let i = 0; i < 100 && Buffer.concat(got).toString() !== 'ping'; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(Buffer.concat(got).toString(), 'ping');
    assert.equal(io.write('pong'), true);
    assert.equal(String((await reply)[0]), 'pong');
  } finally {
    close();
  }
});
