/** Loopback ports for a local mesh: free ones for everything internal, a check for the fixed user-facing ones. */
import { createServer, type AddressInfo, type Server } from 'node:net';

function listen(host: string, port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => resolve(server));
  });
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/**
 * `n` distinct ports on `host` that were free a moment ago. All are held until every one is known, so none is
 * handed out twice; another process could still take one before its owner binds it (the kernel hands out
 * ephemeral ports round-robin, so that needs a wrap of the range in the meantime).
 */
export async function freePorts(n: number, host = '127.0.0.1'): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < n; i++) servers.push(await listen(host, 0));
    return servers.map((s) => (s.address() as AddressInfo).port);
  } finally {
    await Promise.all(servers.map(close));
  }
}

/** Resolves with `undefined` when `host:port` can be bound now, else with the bind error's message. */
export async function portProblem(host: string, port: number): Promise<string | undefined> {
  try {
    await close(await listen(host, port));
    return undefined;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  }
}
