/**
 * HTTP filters by type URL (DESIGN.md: "a filter is registered under its type URL and configured by that
 * proto message"). The connection manager looks each `http_filters[]` entry up here; an unknown required
 * filter is a config error naming the URL, an unknown optional one is skipped, as in Envoy.
 */
import type { Any__Output } from '../../../xds/gen/google/protobuf/Any.ts';
import type { FilterFactoryContext, HttpFilter } from './types.ts';
import { CORS_FILTER_TYPE, createCorsFilter } from './cors.ts';
import { FAULT_FILTER_TYPE, createFaultFilter } from './fault.ts';
import { RBAC_FILTER_TYPE, createRbacFilter } from './rbac.ts';
import { JWT_AUTHN_FILTER_TYPE, createJwtAuthnFilter } from './jwt-authn.ts';
import { EXT_AUTHZ_FILTER_TYPE, createExtAuthzFilter } from './ext-authz.ts';

/**
 * Builds one filter from its HCM entry. `name` is `http_filters[].name` (the key of per-route configs).
 * @throws ConfigError with paths relative to the typed_config.
 */
export type HttpFilterFactory = (name: string, typedConfig: Any__Output, ctx: FilterFactoryContext) => HttpFilter;

/** Type URL → factory. */
export type HttpFilterRegistry = ReadonlyMap<string, HttpFilterFactory>;

/** The HTTP filters Sloop implements (besides the router, which the connection manager handles itself). */
export function createHttpFilterRegistry(): HttpFilterRegistry {
  return new Map<string, HttpFilterFactory>([
    [FAULT_FILTER_TYPE, createFaultFilter],
    [CORS_FILTER_TYPE, createCorsFilter],
    [RBAC_FILTER_TYPE, createRbacFilter],
    [JWT_AUTHN_FILTER_TYPE, createJwtAuthnFilter],
    [EXT_AUTHZ_FILTER_TYPE, createExtAuthzFilter],
  ]);
}
