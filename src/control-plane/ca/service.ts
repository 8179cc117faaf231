/**
 * Istio's workload certificate service, `istio.v1.auth.IstioCertificateService/CreateCertificate`, on a
 * @grpc/grpc-js server: a workload's agent sends a CSR for the key it keeps to itself, authenticated by a
 * bootstrap token (`authorization: Bearer <token>` gRPC metadata); the CA signs an X.509-SVID for the identity
 * the token is bound to and answers with the chain, leaf first and the trust bundle last (as istiod does).
 *
 * | outcome | gRPC status |
 * |---|---|
 * | no `authorization` metadata, not `Bearer <token>`, or a token the store does not know | UNAUTHENTICATED |
 * | the CSR asks for another identity than the token's (other service account, namespace or trust domain) | PERMISSION_DENIED |
 * | not a usable CSR (format, signature, key type, SANs); a negative validity | INVALID_ARGUMENT |
 * | the CA's own certificate has expired | FAILED_PRECONDITION |
 * A validity above the maximum is clamped, not refused (Istio clamps too).
 */
import * as grpc from '@grpc/grpc-js';
import { SloopError } from '../../shared/errors.ts';
import type { Logger } from '../../shared/log.ts';
import { signWorkloadCsr, type IssuerOptions } from './issue.ts';
import type { SigningCa } from './root.ts';
import { formatWorkloadSpiffeId } from '../../shared/identity/spiffe.ts';
import { loadCaServiceDefinition, type CertificateRequestMessage, type CertificateResponseMessage } from '../../shared/identity/ca-api.ts';
import type { TokenStore } from './tokens.ts';

export { CA_SERVICE_NAME, CREATE_CERTIFICATE_METHOD, loadCaServiceDefinition } from '../../shared/identity/ca-api.ts';
export type { CertificateRequestMessage, CertificateResponseMessage } from '../../shared/identity/ca-api.ts';

/** Counts of requests answered, for logs and tests. */
export interface CaServiceStats {
  issued: number;
  refused: number;
}

export interface CaServiceOptions extends Partial<IssuerOptions> {
  log: Logger;
}

/** The token of an `authorization: Bearer <token>` metadata entry, else undefined. */
export function bearerToken(metadata: grpc.Metadata): string | undefined {
  const values = metadata.get('authorization');
  if (values.length !== 1 || typeof values[0] !== 'string') return undefined;
  const m = /^Bearer[ ]+([^\s]+)\s*$/i.exec(values[0]);
  return m?.[1];
}

function statusOf(err: unknown): grpc.status {
  if (err instanceof SloopError) {
    switch (err.code) {
      case 'SLOOP_ERR_CA_IDENTITY_MISMATCH':
        return grpc.status.PERMISSION_DENIED;
      case 'SLOOP_ERR_CA_INVALID_CSR':
      case 'SLOOP_ERR_CA_INVALID_TTL':
      case 'SLOOP_ERR_CA_INVALID_SPIFFE_ID':
        return grpc.status.INVALID_ARGUMENT;
      case 'SLOOP_ERR_CA_ROOT_INVALID':
        return grpc.status.FAILED_PRECONDITION;
      default:
        break;
    }
  }
  return grpc.status.INTERNAL;
}

/** The CreateCertificate handler itself, separate from registration so it can be called directly. */
export function createCertificateHandler(
  ca: SigningCa,
  tokens: TokenStore,
  opts: CaServiceOptions,
  stats: CaServiceStats = { issued: 0, refused: 0 },
): grpc.handleUnaryCall<CertificateRequestMessage, CertificateResponseMessage> {
  const log = opts.log.child({ component: 'ca' });
  const issuer: IssuerOptions = { nowMs: opts.nowMs ?? Date.now, defaultTtlMs: opts.defaultTtlMs, maxTtlMs: opts.maxTtlMs, backdateMs: opts.backdateMs };
  const refuse = (cb: grpc.sendUnaryData<CertificateResponseMessage>, code: grpc.status, details: string, fields: object): void => {
    stats.refused++;
    log.warn({ ...fields, grpcCode: grpc.status[code], issued: stats.issued, refused: stats.refused }, `certificate refused: ${details}`);
    cb({ code, details });
  };
  return (call, callback) => {
    const peer = call.getPeer();
    const token = bearerToken(call.metadata);
    if (token === undefined) {
      refuse(callback, grpc.status.UNAUTHENTICATED, 'missing bearer token (authorization: Bearer <token>)', { peer });
      return;
    }
    void (async () => {
      const identity = await tokens.authenticate(token);
      if (identity === undefined) {
        refuse(callback, grpc.status.UNAUTHENTICATED, 'unknown bootstrap token', { peer });
        return;
      }
      const expected = formatWorkloadSpiffeId(ca.trustDomain, identity);
      const seconds = Number(call.request.validity_duration ?? 0);
      try {
        const svid = await signWorkloadCsr(ca, { csrPem: call.request.csr ?? '', identity, ttlMs: seconds * 1000 }, issuer);
        stats.issued++;
        log.info(
          { peer, spiffeId: svid.spiffeId, serial: svid.serialNumber, notAfter: svid.notAfter.toISOString(), requestedTtlS: seconds, issued: stats.issued, refused: stats.refused },
          'certificate issued',
        );
        // Istio's answer: the leaf and intermediates, then the whole trust bundle as the last element.
        callback(null, { cert_chain: [...svid.certChainPem.map(withNewline), svid.rootCertsPem.map(withNewline).join('')] });
      } catch (err) {
        const code = statusOf(err);
        const message = err instanceof Error ? err.message : String(err);
        if (code === grpc.status.INTERNAL) log.error({ err }, 'certificate signing failed');
        refuse(callback, code, code === grpc.status.PERMISSION_DENIED ? `${message}; the bootstrap token is bound to ${expected}` : message, { peer, identity: expected });
      }
    })();
  };
}

function withNewline(pem: string): string {
  return pem.endsWith('\n') ? pem : `${pem}\n`;
}

/**
 * Registers IstioCertificateService on `server` (which the caller binds and shuts down, e.g. the same server as
 * ADS: `AdsServer#addTo`). Returns the live counters of issued and refused requests.
 */
export function addCaService(server: grpc.Server, ca: SigningCa, tokens: TokenStore, opts: CaServiceOptions): CaServiceStats {
  const stats: CaServiceStats = { issued: 0, refused: 0 };
  server.addService(loadCaServiceDefinition(), { CreateCertificate: createCertificateHandler(ca, tokens, opts, stats) });
  return stats;
}
