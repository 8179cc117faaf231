/**
 * Ephemeral ports for e2e tests. Tests run in parallel processes, so every listener the harness or the
 * proxy opens must come from the kernel's ephemeral range rather than a fixed number.
 */
import { createServer, type Server } from 'node:net';

/** Host every e2e listener binds to: loopback only, so tests never expose ports. */
export const LOOPBACK = '127.0.0.1';

function listenOnZero(): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, LOOPBACK, () => resolve(server));
  });
}

function portOf(server: Server): number {
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('listener has no TCP address');
  return address.port;
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/**
 * A TCP port on 127.0.0.1 that was free a moment ago (listen on port 0, read the port, close).
 * Use it for ports that must be written into config before the owner binds them (the proxy's listeners and
 * admin). There is an unavoidable window in which another process could take the port; the kernel hands
 * out ephemeral ports round-robin, so a collision needs a full wrap of the range during that window.
 */
export async function freePort(): Promise<number> {
  const server = await listenOnZero();
  const port = portOf(server);
  await close(server);
  return port;
}

/**
 * `n` distinct free ports. All listeners are held open until every port is known, so the kernel cannot hand
 * the same port out twice within one call.
 */
export async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < n; i++) servers.push(await listenOnZero());
    return servers.map(portOf);
  } finally {
    await Promise.all(servers.map(close));
  }
}
