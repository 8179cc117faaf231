/**
 * `ratings`: a gRPC server (`sloop.demo.Ratings/GetRating`) answering a fixed number of stars and the request
 * metadata a proxy added on the way in. Knows nothing about the mesh.
 *   node ratings.ts --port 9090 [--stars 4]
 */
import * as grpc from '@grpc/grpc-js';
import { arg, onTerminate, parseAppArgs, proxyHeadersOf } from './args.ts';
import { loadRatingsService, type RatingReply } from './ratings-proto.ts';

const args = parseAppArgs(process.argv.slice(2));
const port = Number(arg(args, 'port'));
const stars = Number(arg(args, 'stars', '4'));

const server = new grpc.Server();
server.addService(loadRatingsService().service, {
  GetRating(call: grpc.ServerUnaryCall<{ product: string }, RatingReply>, callback: grpc.sendUnaryData<RatingReply>) {
    const seen = proxyHeadersOf((name) => {
      const v = call.metadata.get(name)[0];
      return v === undefined ? undefined : String(v);
    });
    callback(null, { stars, served_by: 'ratings', seen_headers: seen });
  },
});
server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
  if (err) {
    process.stderr.write(`ratings: cannot listen on 127.0.0.1:${port}: ${err.message}\n`);
    process.exitCode = 1;
    return;
  }
  process.stdout.write(`ratings: gRPC on 127.0.0.1:${bound}\n`);
});
onTerminate(() => server.tryShutdown(() => {}));
