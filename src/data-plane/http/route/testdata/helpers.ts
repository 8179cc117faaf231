/** Test helpers: build RouteConfiguration__Output objects through protobufjs, and requests. */
import type { RouteConfiguration__Output } from '../../../../xds/gen/envoy/config/route/v3/RouteConfiguration.ts';
import { lookupMessage, TO_OBJECT_OPTIONS } from '../../../../xds/protos.ts';
import type { RouteRequest } from '../matchers.ts';

/** A RouteConfiguration__Output from Envoy-YAML-shaped JSON (snake_case, Durations as { seconds }). */
export function routeConfig(obj: object): RouteConfiguration__Output {
  const T = lookupMessage('envoy.config.route.v3.RouteConfiguration')!;
  return T.toObject(T.fromObject(obj), TO_OBJECT_OPTIONS) as RouteConfiguration__Output;
}

/** A GET request for `/` on host `example.com` over plain HTTP, with overrides. */
export function request(over: Partial<RouteRequest> = {}): RouteRequest {
  return { authority: 'example.com', path: '/', method: 'GET', headers: [], scheme: 'http', isTls: false, ...over };
}
