import { SloopError } from '../errors.ts';

/**
 * SPIFFE IDs, as the SPIFFE ID spec (spiffe/standards SPIFFE-ID.md) defines them, and the Istio/Kubernetes
 * workload form `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>` that Sloop issues.
 */

/** Default trust domain, as in Istio. */
export const DEFAULT_TRUST_DOMAIN = 'cluster.local';

/** A parsed SPIFFE ID. `path` is `''` for a trust domain's own ID, else starts with `/`. */
export interface SpiffeId {
  trustDomain: string;
  path: string;
}

/** A workload's identity inside one trust domain: a Kubernetes-style namespace and service account. */
export interface WorkloadIdentity {
  namespace: string;
  serviceAccount: string;
}

// SPIFFE-ID.md §2.1: trust domain names use only lowercase letters, digits, '.', '-' and '_'.
const TRUST_DOMAIN_RE = /^[a-z0-9._-]+$/;
// SPIFFE-ID.md §2.2: path segments use only letters, digits, '.', '-' and '_'.
const SEGMENT_RE = /^[A-Za-z0-9._-]+$/;
// SPIFFE-ID.md §2.3: IDs are at most 2048 bytes; trust domains at most 255 characters.
const MAX_ID_BYTES = 2048;
const MAX_TRUST_DOMAIN_CHARS = 255;

function invalid(id: string, why: string): SloopError {
  return new SloopError('SLOOP_ERR_CA_INVALID_SPIFFE_ID', `invalid SPIFFE ID ${JSON.stringify(id)}: ${why}`);
}

/**
 * Checks a trust domain name. Throws SloopError `SLOOP_ERR_CA_INVALID_SPIFFE_ID` if it breaks SPIFFE-ID.md §2.1.
 */
export function validateTrustDomain(trustDomain: string): void {
  if (trustDomain.length === 0) throw invalid(trustDomain, 'trust domain is empty');
  if (trustDomain.length > MAX_TRUST_DOMAIN_CHARS) throw invalid(trustDomain, `trust domain is longer than ${MAX_TRUST_DOMAIN_CHARS} characters`);
  if (!TRUST_DOMAIN_RE.test(trustDomain)) throw invalid(trustDomain, 'trust domain may only contain a-z, 0-9, ".", "-" and "_"');
}

function validatePath(id: string, path: string): void {
  if (path === '') return;
  if (!path.startsWith('/')) throw invalid(id, 'path must start with "/"');
  for (const segment of path.slice(1).split('/')) {
    if (segment === '') throw invalid(id, 'path has an empty segment or a trailing "/"');
    if (segment === '.' || segment === '..') throw invalid(id, 'path has a "." or ".." segment');
    if (!SEGMENT_RE.test(segment)) throw invalid(id, `path segment ${JSON.stringify(segment)} may only contain A-Z, a-z, 0-9, ".", "-" and "_"`);
  }
}

/**
 * Parses and validates a SPIFFE ID (`spiffe://trust-domain/path`). Rejects upper-case scheme or trust domain,
 * userinfo, ports, query strings, fragments, percent-encoding, dot segments and empty segments.
 * Throws SloopError `SLOOP_ERR_CA_INVALID_SPIFFE_ID`.
 */
export function parseSpiffeId(id: string): SpiffeId {
  if (Buffer.byteLength(id, 'utf8') > MAX_ID_BYTES) throw invalid(id.slice(0, 64) + '…', `longer than ${MAX_ID_BYTES} bytes`);
  const prefix = 'spiffe://';
  if (!id.startsWith(prefix)) throw invalid(id, 'scheme must be "spiffe://" (lowercase)');
  const rest = id.slice(prefix.length);
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? '' : rest.slice(slash);
  // Checked before the character rules so the message names the actual problem.
  if (trustDomain.includes('@')) throw invalid(id, 'userinfo is not allowed');
  if (trustDomain.includes(':')) throw invalid(id, 'a port is not allowed');
  if (path.includes('?') || path.includes('#') || trustDomain.includes('?') || trustDomain.includes('#')) {
    throw invalid(id, 'query and fragment are not allowed');
  }
  if (trustDomain === '') throw invalid(id, 'trust domain is empty');
  if (trustDomain.length > MAX_TRUST_DOMAIN_CHARS) throw invalid(id, `trust domain is longer than ${MAX_TRUST_DOMAIN_CHARS} characters`);
  if (!TRUST_DOMAIN_RE.test(trustDomain)) throw invalid(id, 'trust domain may only contain a-z, 0-9, ".", "-" and "_"');
  validatePath(id, path);
  return { trustDomain, path };
}

/** Formats a SPIFFE ID after validating both parts. Throws SloopError `SLOOP_ERR_CA_INVALID_SPIFFE_ID`. */
export function formatSpiffeId(id: SpiffeId): string {
  validateTrustDomain(id.trustDomain);
  const out = `spiffe://${id.trustDomain}${id.path}`;
  validatePath(out, id.path);
  return out;
}

/** `spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>`. Throws `SLOOP_ERR_CA_INVALID_SPIFFE_ID`. */
export function formatWorkloadSpiffeId(trustDomain: string, identity: WorkloadIdentity): string {
  for (const [what, value] of [['namespace', identity.namespace], ['service account', identity.serviceAccount]] as const) {
    if (!SEGMENT_RE.test(value) || value === '.' || value === '..') {
      throw new SloopError('SLOOP_ERR_CA_INVALID_SPIFFE_ID', `invalid ${what} ${JSON.stringify(value)} for a SPIFFE ID`);
    }
  }
  return formatSpiffeId({ trustDomain, path: `/ns/${identity.namespace}/sa/${identity.serviceAccount}` });
}

/**
 * Parses a workload SPIFFE ID of the form `spiffe://<td>/ns/<ns>/sa/<sa>` (exactly four path segments).
 * Throws SloopError `SLOOP_ERR_CA_INVALID_SPIFFE_ID`.
 */
export function parseWorkloadSpiffeId(id: string): WorkloadIdentity & { trustDomain: string } {
  const { trustDomain, path } = parseSpiffeId(id);
  const segments = path.split('/').slice(1);
  if (segments.length !== 4 || segments[0] !== 'ns' || segments[2] !== 'sa') {
    throw invalid(id, 'workload IDs have the path /ns/<namespace>/sa/<service-account>');
  }
  return { trustDomain, namespace: segments[1], serviceAccount: segments[3] };
}
