import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { Listener__Output } from '../../xds/gen/envoy/config/listener/v3/Listener.ts';
import { getOriginalDst, loadOriginalDstAddon } from './original-dst.ts';
import { findListenerByAddress, type ListenerRuntime } from './listener.ts';

describe('original-dst addon', () => {
  it('loads and rejects a bad fd with the errno as code', () => {
    const addon = loadOriginalDstAddon();
    assert.throws(() => addon.getOriginalDst(-1), TypeError);
    assert.throws(() => addon.getOriginalDst(987654), (e: unknown) => (e as NodeJS.ErrnoException).code === 'EBADF');
  });

  it('gives no original destination for a loopback connection nothing redirected', async () => {
    const seen = new Promise<ReturnType<typeof getOriginalDst>>((resolve) => {
      const srv = net.createServer((s) => {
        resolve(getOriginalDst(s));
        s.destroy();
        srv.close();
      });
      srv.listen(0, '127.0.0.1', () => net.connect((srv.address() as net.AddressInfo).port, '127.0.0.1').on('error', () => undefined));
    });
    // Either conntrack does not track it (undefined) or it reports the connection's own destination.
    const r = await seen;
    assert.ok(r === undefined || r.address === '127.0.0.1', JSON.stringify(r));
  });
});

describe('findListenerByAddress (use_original_dst hand-off)', () => {
  const fake = (name: string, address: string, port: number, isDraining = false): ListenerRuntime =>
    ({ name, isDraining, port: 0, config: { name, address: { socket_address: { address, port_value: port } } } as unknown as Listener__Output }) as unknown as ListenerRuntime;
  const exact = fake('exact', '10.0.0.2', 8080);
  const wild = fake('0.0.0.0_8080', '0.0.0.0', 8080);
  const wild6 = fake('[::]_8080', '::', 8080);
  const outbound = fake('virtualOutbound', '0.0.0.0', 15001);

  it('prefers the exact address, then the wildcard of the same family, by port', () => {
    assert.equal(findListenerByAddress([wild, exact, outbound], '10.0.0.2', 8080), exact);
    assert.equal(findListenerByAddress([wild, exact, outbound], '10.0.0.9', 8080), wild);
    assert.equal(findListenerByAddress([wild, wild6], 'fd00::1', 8080), wild6);
    assert.equal(findListenerByAddress([wild, exact, outbound], '10.0.0.2', 9090), undefined);
  });

  it('skips draining listeners', () => {
    assert.equal(findListenerByAddress([fake('old', '0.0.0.0', 8080, true)], '10.0.0.9', 8080), undefined);
  });
});
