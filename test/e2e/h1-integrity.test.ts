// Byte integrity of large HTTP/1.1 bodies through the proxy, both ways, under backpressure on both sides.
// The HTTP/1.1 codecs read and write on the TCP handles (src/data-plane/socket-io.ts); writes the kernel cannot take
// at once are finished by libuv later, from the Buffer's memory. This checks, by SHA-256 at both ends, that what
// arrives is what was sent while the proxy's heap churns through tens of MiB (its GCs would reuse a Buffer's memory
// if a queued write did not keep it alive).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import { startProxy, bootstrapWith, httpListener, staticCluster, virtualHost, prefixRoute, type ProxyHandle } from '../helpers/proxy.ts';
import { freePorts, LOOPBACK } from '../helpers/ports.ts';

const MiB = 1024 * 1024;
const TOTAL = 48 * MiB;

/** Echoes the request body back as the response body, after reading nothing for `stallMs` (upstream backpressure). */
async function startEchoUpstream(stallMs: number): Promise<{ port: number; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    req.pause();
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      req.pipe(res);
    }, stallMs);
  });
  await new Promise<void>((r) => server.listen(0, LOOPBACK, r));
  return {
    port: (server.address() as { port: number }).port,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

for (const io of ['handle', 'stream'] as const) describe(`HTTP/1.1 bodies keep every byte through the proxy (${io} reads and writes)`, () => {
  let proxy: ProxyHandle;
  let echo: Awaited<ReturnType<typeof startEchoUpstream>>;
  let port: number;

  before(async () => {
    echo = await startEchoUpstream(300);
    const [p, admin] = await freePorts(2);
    port = p;
    proxy = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [httpListener({ name: 'edge', port, virtualHosts: [virtualHost('svc', ['*'], [prefixRoute('/', 'echo')])] })],
        clusters: [staticCluster('echo', [['127.0.0.1', echo.port]])],
      }),
      // SLOOP_SOCKET_IO=stream: the same codecs through net.Socket streams (docs/architecture.md, Launcher).
      io === 'stream' ? { env: { SLOOP_SOCKET_IO: 'stream' } } : {},
    );
  });

  after(async () => {
    await proxy?.stop();
    await echo?.close();
  });

  for (const framing of ['content-length', 'chunked'] as const) {
    it(`${TOTAL / MiB} MiB of random bytes echoed (${framing}), the client reading nothing for the first 300 ms`, async () => {
      const sentHash = createHash('sha256');
      const gotHash = createHash('sha256');
      let got = 0;
      const status = await new Promise<number>((resolve, reject) => {
        const headers: Record<string, string | number> = { host: 'svc.local' };
        if (framing === 'content-length') headers['content-length'] = TOTAL;
        const req = request({ host: LOOPBACK, port, path: '/echo', method: 'POST', agent: false, headers }, (res: IncomingMessage) => {
          res.pause();
          setTimeout(() => res.resume(), 300);
          res.on('data', (c: Buffer) => {
            got += c.length;
            gotHash.update(c);
          });
          res.on('end', () => resolve(res.statusCode ?? 0));
          res.on('error', reject);
        });
        req.on('error', reject);
        let sent = 0;
        const pump = (): void => {
          while (sent < TOTAL) {
            // Chunks of odd sizes, each fresh, so the proxy's reads and writes don't line up with ours.
            const c = randomBytes(Math.min(TOTAL - sent, 37 * 1024 + (sent % 4093)));
            sent += c.length;
            sentHash.update(c);
            if (!req.write(c)) {
              req.once('drain', pump);
              return;
            }
          }
          req.end();
        };
        pump();
      });
      assert.equal(status, 200);
      assert.equal(got, TOTAL, 'every byte came back');
      assert.equal(gotHash.digest('hex'), sentHash.digest('hex'), 'the same bytes, in order');
    });
  }
});
