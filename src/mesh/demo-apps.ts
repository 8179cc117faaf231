/**
 * The demo's applications: plain Node servers that know nothing about the mesh. `sloop demo` runs them
 * behind `sloop proxy`; `sloop up` will run them behind sidecars.
 *   hello (v1, v2)  GET → JSON naming the version that answered
 *   echo            any request → JSON of what arrived (method, path, headers, body length)
 *   tcp-echo        raw TCP echo
 */
import http from 'node:http';
import net from 'node:net';

/** A started demo server. */
export interface DemoApp {
  name: string;
  port: number;
  close(): Promise<void>;
}

function listen(server: net.Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

function closer(server: net.Server): () => Promise<void> {
  return () =>
    new Promise((resolve) => {
      server.close(() => resolve());
      if (server instanceof http.Server) server.closeAllConnections();
    });
}

/** `hello-<version>`: answers every request with its name and version. */
export async function startHelloApp(version: string, host: string, port: number): Promise<DemoApp> {
  const server = http.createServer((req, res) => {
    req.resume();
    const body = JSON.stringify({ service: 'hello', version, path: req.url, requestId: req.headers['x-request-id'] ?? null }) + '\n';
    res.writeHead(200, { 'content-type': 'application/json', 'x-version': version, 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  return { name: `hello-${version}`, port: await listen(server, host, port), close: closer(server) };
}

/** `echo`: reflects the request it received, so the proxy's added headers are visible. */
export async function startEchoApp(host: string, port: number): Promise<DemoApp> {
  const server = http.createServer((req, res) => {
    let bytes = 0;
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('end', () => {
      const body = JSON.stringify({ service: 'echo', method: req.method, path: req.url, httpVersion: req.httpVersion, headers: req.headers, bodyBytes: bytes }, null, 2) + '\n';
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  return { name: 'echo', port: await listen(server, host, port), close: closer(server) };
}

/** `tcp-echo`: writes back every byte it reads. */
export async function startTcpEchoApp(host: string, port: number): Promise<DemoApp> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  const close = closer(server);
  return {
    name: 'tcp-echo',
    port: await listen(server, host, port),
    close: () => {
      for (const s of sockets) s.destroy();
      return close();
    },
  };
}
