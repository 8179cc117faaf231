import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spliceSockets } from './splice.ts';
import { tcpPair } from '../../../test/helpers/sockets.ts';

it('relays bytes and half-close both ways, then reports close once', async () => {
  const { client, accepted: downSide, server: s1 } = await tcpPair({ allowHalfOpen: true });
  const { client: upSide, accepted: upstream, server: s2 } = await tcpPair({ allowHalfOpen: true });
  let closed = 0;
  const allClosed = new Promise<void>((resolve) => spliceSockets(downSide, upSide, () => { closed++; resolve(); }));
  const got: Buffer[] = [];
  upstream.on('data', (d: Buffer) => got.push(d));
  // Client half-closes; the upstream sees FIN and still answers.
  client.end('request');
  await new Promise<void>((resolve) => upstream.once('end', () => resolve()));
  assert.equal(Buffer.concat(got).toString(), 'request');
  const back: Buffer[] = [];
  client.on('data', (d: Buffer) => back.push(d));
  const clientEnded = new Promise<void>((resolve) => client.once('end', () => resolve()));
  upstream.end('answer after FIN');
  await clientEnded;
  assert.equal(Buffer.concat(back).toString(), 'answer after FIN');
  await allClosed;
  assert.equal(closed, 1);
  s1.close();
  s2.close();
});

it('a reset on one side destroys the other', async () => {
  const { client, accepted: downSide, server: s1 } = await tcpPair({ allowHalfOpen: true });
  const { client: upSide, accepted: upstream, server: s2 } = await tcpPair({ allowHalfOpen: true });
  const done = new Promise<void>((resolve) => spliceSockets(downSide, upSide, resolve));
  upstream.on('error', () => {});
  const upstreamEnded = new Promise<void>((resolve) => upstream.once('end', () => resolve()));
  client.resetAndDestroy();
  await done;
  await upstreamEnded; // the upstream sees the connection go away
  assert.equal(upSide.destroyed, true);
  upstream.destroy();
  s1.close();
  s2.close();
});
