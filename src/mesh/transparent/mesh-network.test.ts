// The pure parts of the transparent-mode mesh network: workloads' /etc/hosts, and the port-forward that joins
// the host to the namespaces (real sockets on loopback, port 0).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type AddressInfo, type Server } from 'node:net';
import { buildHostsFile, WORKLOAD_RESOLV_CONF } from './mesh-network.ts';
import { startPortForward } from './port-forward.ts';

describe('buildHostsFile', () => {
  it('names every service as Kubernetes DNS would, the bare name only in the workload\'s namespace', () => {
    const text = buildHostsFile(
      [
        { name: 'reviews', namespace: 'default' },
        { name: 'ratings', namespace: 'default' },
        { name: 'db', namespace: 'data' },
        { name: 'reviews', namespace: 'default' },
      ],
      'default',
    );
    const lines = text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    assert.deepEqual(lines, [
      '127.0.0.1\tlocalhost',
      '::1\tlocalhost ip6-localhost ip6-loopback',
      '240.240.0.1\tdb.data.svc.cluster.local db.data.svc db.data',
      '240.240.0.2\tratings ratings.default.svc.cluster.local ratings.default.svc ratings.default',
      '240.240.0.3\treviews reviews.default.svc.cluster.local reviews.default.svc reviews.default',
    ]);
  });

  it('is deterministic whatever the input order', () => {
    const a = [{ name: 'a', namespace: 'x' }, { name: 'b', namespace: 'x' }];
    assert.equal(buildHostsFile(a, 'x'), buildHostsFile([...a].reverse(), 'x'));
  });

  it('points resolv.conf at loopback only, so lookups fail fast instead of timing out', () => {
    assert.match(WORKLOAD_RESOLV_CONF, /^nameserver 127\.0\.0\.1$/m);
    assert.equal(WORKLOAD_RESOLV_CONF.match(/^nameserver /gm)?.length, 1);
  });
});

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

function exchange(port: number, data: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (got += d));
    s.on('end', () => resolve(got));
    s.on('error', reject);
    s.end(data);
  });
}

describe('startPortForward', () => {
  it('pipes bytes both ways, half-close included', async (t) => {
    const target = createServer({ allowHalfOpen: true }, (s) => {
      let got = '';
      s.setEncoding('utf8');
      s.on('data', (d: string) => (got += d));
      s.on('end', () => s.end(`echo:${got}`));
    });
    const targetPort = await listen(target);
    t.after(() => target.close());
    const probe = createServer();
    const port = await listen(probe);
    await new Promise<void>((r) => probe.close(() => r()));
    const forward = await startPortForward('127.0.0.1', port, '127.0.0.1', targetPort);
    t.after(() => forward.close());
    assert.equal(forward.target, `127.0.0.1:${targetPort}`);
    assert.equal(await exchange(port, 'hello'), 'echo:hello');
    assert.equal(await exchange(port, 'x'.repeat(1 << 20)), `echo:${'x'.repeat(1 << 20)}`);
  });

  it('resets the client when the target refuses, and rejects a port already taken', async (t) => {
    const probe = createServer();
    const deadPort = await listen(probe);
    await new Promise<void>((r) => probe.close(() => r()));
    const busy = createServer();
    const busyPort = await listen(busy);
    t.after(() => busy.close());
    await assert.rejects(startPortForward('127.0.0.1', busyPort, '127.0.0.1', deadPort), /EADDRINUSE/);

    const probe2 = createServer();
    const port = await listen(probe2);
    await new Promise<void>((r) => probe2.close(() => r()));
    const forward = await startPortForward('127.0.0.1', port, '127.0.0.1', deadPort);
    t.after(() => forward.close());
    await assert.rejects(exchange(port, 'hello'), /ECONNRESET/);
  });
});
