/**
 * `reviews`: an HTTP service that asks `ratings` (gRPC, by service name) for a rating and answers JSON naming its
 * version. Two versions run side by side so routing shows. Knows nothing about the mesh: its gRPC client reaches
 * `ratings:9090` however the environment says (`grpc_proxy` under `sloop up`).
 *   node reviews.ts --port 9080 --version v1 [--ratings ratings:9090]
 */
import http from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { arg, onTerminate, parseAppArgs, proxyHeadersOf } from './args.ts';
import { loadRatingsService, type RatingReply } from './ratings-proto.ts';

const args = parseAppArgs(process.argv.slice(2));
const port = Number(arg(args, 'port'));
const version = arg(args, 'version');
const ratingsTarget = arg(args, 'ratings', 'ratings:9090');

const Ratings = loadRatingsService();
const ratings = new Ratings(ratingsTarget, grpc.credentials.createInsecure());

function getRating(requestId: string | undefined): Promise<RatingReply> {
  const md = new grpc.Metadata();
  // Propagating the request id is the one thing a mesh asks of an app (Istio's tracing does the same).
  if (requestId !== undefined) md.set('x-request-id', requestId);
  return new Promise((resolve, reject) => {
    ratings.GetRating({ product: 'sloop' }, md, { deadline: Date.now() + 3000 }, (err: grpc.ServiceError | null, reply: RatingReply) => (err ? reject(err) : resolve(reply)));
  });
}

const server = http.createServer((req, res) => {
  req.resume();
  const seen = proxyHeadersOf((name) => req.headers[name] as string | undefined);
  const answer = (rating: unknown): void => {
    const body = JSON.stringify({ service: 'reviews', version, seen_headers: seen, rating }) + '\n';
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };
  getRating(seen['x-request-id']).then(
    (r) => answer({ stars: r.stars, served_by: r.served_by, seen_headers: r.seen_headers }),
    (err: grpc.ServiceError) => answer({ error: `ratings unavailable: ${err.code} ${err.details}` }),
  );
});
server.listen(port, '127.0.0.1', () => process.stdout.write(`reviews ${version}: HTTP on 127.0.0.1:${port}\n`));
server.on('error', (err) => {
  process.stderr.write(`reviews ${version}: ${err.message}\n`);
  process.exitCode = 1;
  ratings.close();
});
onTerminate(() => {
  server.close();
  server.closeIdleConnections();
  ratings.close();
});
