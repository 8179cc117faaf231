/**
 * HTTP filters that run before the router (envoy.filters.http.*): the contract between a filter and the
 * request it decodes. A filter is built once per connection manager from its typed_config (registry.ts);
 * per-request state lives in whatever the filter hands to {@link FilterRequest.addEncoder}.
 *
 * Envoy's decoder filters return Continue or StopIteration from decodeHeaders; a stopped filter later calls
 * continueDecoding() or sends a local reply. Here `decodeHeaders` returns true for Continue and false for
 * StopIteration, and the request (router.ts ActiveRequest) plays Envoy's StreamDecoderFilterCallbacks.
 */
import type { DownstreamConnectionInfo, RequestHead } from '../stream.ts';
import type { CompiledRoute, CompiledVirtualHost } from '../route/route-table.ts';
import type { StatsStore } from '../../stats/store.ts';
import type { Logger } from '../../../shared/log.ts';

/** What a filter sees of the request and how it steers it (Envoy's StreamDecoderFilterCallbacks). */
export interface FilterRequest {
  /** The downstream request head. Filters may read it; header edits reach the upstream. */
  readonly head: RequestHead;
  /** The matched route, or undefined when no route matched (the router will answer 404). */
  readonly matchedRoute: CompiledRoute | undefined;
  readonly matchedVirtualHost: CompiledVirtualHost | undefined;
  /** content-type application/grpc*. */
  readonly isGrpc: boolean;
  /** The downstream connection (addresses, TLS, SNI, original destination). */
  readonly conn: DownstreamConnectionInfo;
  /**
   * Envoy's per-request dynamic metadata: filter namespace (`envoy.filters.http.jwt_authn`, `istio_authn`, …)
   * → a JSON object (a google.protobuf.Struct as plain JSON). Filters write it for later filters to read
   * (jwt_authn's payload_in_metadata for RBAC's metadata matchers). Created on first write.
   */
  readonly dynamicMetadata: Map<string, Record<string, unknown>>;
  /**
   * Matches the route again from the request head as it is now (Envoy's clearRouteCache after a filter edited
   * headers the route table reads); `matchedRoute` and `matchedVirtualHost` follow.
   */
  clearRouteCache(): void;
  /** Resumes the filter chain after this filter's decodeHeaders returned false. */
  continueDecoding(): void;
  /**
   * Answers the request from the proxy (the filters after this one and the router never run). gRPC requests
   * get a trailers-only reply whose grpc-status is `grpcStatus` when given, else mapped from `status`.
   */
  sendLocalReply(status: number, body: string, grpcStatus?: number): void;
  /** Answers with a header-only response (a CORS preflight): `headers` plus the proxy's own (server, …). */
  respondHeadersOnly(status: number, headers: string[]): void;
  /** Registers per-request hooks for the response and the end of the request. */
  addEncoder(e: FilterEncoder): void;
}

/** Per-request response-side hooks (Envoy's encoder filter plus onDestroy). */
export interface FilterEncoder {
  /** Response headers (upstream or local reply) before they are sent downstream; may edit `headers`. */
  onResponseHeaders?(status: number, headers: string[]): void;
  /** The request finished (completed, reset or answered locally). Release timers and counters here. */
  onDone?(): void;
}

/** One configured HTTP filter of a connection manager. */
export interface HttpFilter {
  /** http_filters[].name: the key of this filter's typed_per_filter_config on routes. */
  readonly name: string;
  /** Envoy's decodeHeaders: true = continue to the next filter, false = stopped (see FilterRequest). */
  decodeHeaders(req: FilterRequest): boolean;
}

/** What a filter factory may use. */
export interface FilterFactoryContext {
  /** The connection manager's stat_prefix: filter stats live under `http.<statPrefix>.`. */
  statPrefix: string;
  store: StatsStore;
  log: Logger;
  /** Uniform in [0, 1); injected so tests are deterministic. */
  random: () => number;
  /**
   * The connection manager's `use_remote_address` and `xff_num_trusted_hops`: how Envoy derives the client address
   * from x-forwarded-for (RBAC `remote_ip`). Absent means use_remote_address false, 0 trusted hops.
   */
  xff?: { readonly useRemoteAddress: boolean; readonly numTrustedHops: number };
  /** The proxy's clusters, for filters that call out (jwt_authn's remote JWKS, ext_authz); absent in unit tests. */
  clusters?: import('../../upstream/cluster-manager.ts').ClusterManager;
  /** Directory relative DataSource `filename`s resolve against. */
  baseDir?: string;
}
