/**
 * An example external authorization service for `envoy.filters.http.ext_authz`, in the spirit of Istio's
 * samples/extauthz: it implements envoy.service.auth.v3.Authorization/Check over gRPC and
 * - allows a request that carries `x-ext-authz: allow` (OK, and the upstream request gets
 *   `x-ext-authz-check-result: allowed`),
 * - denies every other request with 403, `x-ext-authz-check-result: denied` and the body
 *   "denied by ext_authz for not found header `x-ext-authz: allow` in the request".
 *
 * Run it: `node examples/ext-authz/authorizer.ts [port]` (default 9000; Node 24 runs TypeScript directly), then
 * point an ext_authz filter's `grpc_service.envoy_grpc.cluster_name` at a STATIC cluster holding 127.0.0.1:<port>
 * (see docs/authn.md). test/e2e/ext-authz.test.ts uses {@link startAuthorizer}.
 */
import * as grpc from '@grpc/grpc-js';
import { fileURLToPath } from 'node:url';
import { authorizationClientClass } from '../../src/data-plane/http/filters/ext-authz.ts';

export const ALLOW_HEADER = 'x-ext-authz';
export const ALLOW_VALUE = 'allow';
export const RESULT_HEADER = 'x-ext-authz-check-result';
export const DENIED_BODY = 'denied by ext_authz for not found header `x-ext-authz: allow` in the request';

interface CheckRequestLike {
  attributes?: { request?: { http?: { headers?: Record<string, string>; path?: string; method?: string } }; source?: { principal?: string } };
}

/** A running authorizer. */
export interface Authorizer {
  port: number;
  /** Every CheckRequest received, as decoded. */
  checks: CheckRequestLike[];
  close(): Promise<void>;
}

/** The Check decision: an envoy.service.auth.v3.CheckResponse (proto field names, enums by name). */
export function decide(req: CheckRequestLike): object {
  const headers = req.attributes?.request?.http?.headers ?? {};
  if (headers[ALLOW_HEADER] === ALLOW_VALUE) {
    return {
      status: { code: 0 },
      ok_response: { headers: [{ header: { key: RESULT_HEADER, value: 'allowed' }, append: { value: false } }] },
    };
  }
  return {
    status: { code: 7 /* PERMISSION_DENIED */, message: 'denied' },
    denied_response: {
      status: { code: 'Forbidden' },
      headers: [{ header: { key: RESULT_HEADER, value: 'denied' }, append: { value: false } }],
      body: DENIED_BODY,
    },
  };
}

/** Starts the authorizer on 127.0.0.1:`port` (0 = any free port). */
export async function startAuthorizer(port = 0): Promise<Authorizer> {
  const server = new grpc.Server();
  const checks: CheckRequestLike[] = [];
  server.addService(authorizationClientClass().service, {
    Check(call: grpc.ServerUnaryCall<CheckRequestLike, object>, callback: grpc.sendUnaryData<object>) {
      checks.push(call.request);
      callback(null, decide(call.request));
    },
  });
  const bound = await new Promise<number>((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  return {
    port: bound,
    checks,
    close: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
        setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1000).unref();
      }),
  };
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const port = Number(process.argv[2] ?? 9000);
  const a = await startAuthorizer(port);
  process.stdout.write(`ext-authz example authorizer on 127.0.0.1:${a.port} (allows requests with "${ALLOW_HEADER}: ${ALLOW_VALUE}")\n`);
}
