/**
 * The demo's one gRPC API, `sloop.demo.Ratings`, shipped as .proto text and loaded at run time with
 * protobufjs + @grpc/proto-loader (no generated code, no asset files to copy next to the compiled JS).
 */
import * as grpc from '@grpc/grpc-js';
import { fromJSON } from '@grpc/proto-loader';
import protobuf from 'protobufjs';

/** The service definition, as a user would write `ratings.proto`. */
export const RATINGS_PROTO = `syntax = "proto3";
package sloop.demo;

service Ratings {
  rpc GetRating (RatingRequest) returns (RatingReply);
}

message RatingRequest {
  string product = 1;
}

message RatingReply {
  int32 stars = 1;
  string served_by = 2;
  // Request metadata the ratings server received that a proxy adds (x-request-id, x-forwarded-proto).
  map<string, string> seen_headers = 3;
}
`;

/** The fields of a `RatingReply` (keepCase: proto field names as written). */
export interface RatingReply {
  stars: number;
  served_by: string;
  seen_headers: Record<string, string>;
}

/** The `sloop.demo.Ratings` service constructor (client) and definition (server). */
export function loadRatingsService(): grpc.ServiceClientConstructor {
  const root = protobuf.parse(RATINGS_PROTO, { keepCase: true }).root;
  const definition = fromJSON(root.toJSON(), { keepCase: true, defaults: true });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as { sloop: { demo: { Ratings: grpc.ServiceClientConstructor } } };
  return pkg.sloop.demo.Ratings;
}
