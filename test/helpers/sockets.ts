import net from 'node:net';
import { once } from 'node:events';
import { LOOPBACK } from './ports.ts';

/** A connected TCP pair on loopback: `client` connected to `accepted`; `close()` destroys both and the server. */
export async function tcpPair(opts: { allowHalfOpen?: boolean } = {}): Promise<{ client: net.Socket; accepted: net.Socket; server: net.Server; close(): void }> {
  const server = net.createServer({ allowHalfOpen: opts.allowHalfOpen ?? false });
  server.listen(0, LOOPBACK);
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const client = net.connect({ port: (server.address() as net.AddressInfo).port, host: LOOPBACK, allowHalfOpen: opts.allowHalfOpen ?? false });
  await once(client, 'connect');
  const [socket] = await accepted;
  return {
    client,
    accepted: socket,
    server,
    close: () => {
      client.destroy();
      socket.destroy();
      server.close();
    },
  };
}
