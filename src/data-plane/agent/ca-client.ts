/**
 * The client side of `istio.v1.auth.IstioCertificateService/CreateCertificate` (the same .proto as the
 * control plane's service: it is the wire contract between the planes, like Envoy's xDS protos).
 */
import * as grpc from '@grpc/grpc-js';
import { CREATE_CERTIFICATE_METHOD, loadCaServiceDefinition, type CertificateRequestMessage, type CertificateResponseMessage } from '../../shared/identity/ca-api.ts';

export interface CaClientOptions {
  /** `host:port` of the CA (the control plane's gRPC port). */
  address: string;
  /** Per-call deadline. Default 10 s. */
  timeoutMs?: number;
}

/** An error from the CA, with its gRPC status code. */
export class CaCallError extends Error {
  readonly code: grpc.status;
  constructor(code: grpc.status, details: string) {
    super(`CreateCertificate failed: ${grpc.status[code] ?? code}: ${details}`);
    this.code = code;
  }
}

/** One channel to the CA; `createCertificate` may be called any number of times. */
export class CaClient {
  readonly #client: grpc.Client;
  readonly #timeoutMs: number;
  readonly #method: grpc.MethodDefinition<CertificateRequestMessage, CertificateResponseMessage>;

  constructor(o: CaClientOptions) {
    // Plaintext, like istiod's 15010 (docs/identity.md: run the CA port on a trusted network or loopback).
    this.#client = new grpc.Client(o.address, grpc.credentials.createInsecure());
    this.#timeoutMs = o.timeoutMs ?? 10_000;
    this.#method = loadCaServiceDefinition().CreateCertificate as grpc.MethodDefinition<CertificateRequestMessage, CertificateResponseMessage>;
  }

  /** Sends the CSR; resolves with the PEM chain (leaf first, trust bundle last). */
  createCertificate(req: { csrPem: string; validitySeconds: number; token: string; metadata?: Record<string, string> }): Promise<string[]> {
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${req.token}`);
    const fields = Object.fromEntries(Object.entries(req.metadata ?? {}).map(([k, v]) => [k, { string_value: v }]));
    const message: CertificateRequestMessage = { csr: req.csrPem, validity_duration: String(Math.max(0, Math.floor(req.validitySeconds))), metadata: { fields } };
    return new Promise((resolve, reject) => {
      this.#client.makeUnaryRequest(
        CREATE_CERTIFICATE_METHOD,
        this.#method.requestSerialize,
        this.#method.responseDeserialize,
        message,
        md,
        { deadline: Date.now() + this.#timeoutMs },
        (err, res) => {
          if (err) reject(new CaCallError(err.code, err.details));
          else if (!res || res.cert_chain.length < 2) reject(new CaCallError(grpc.status.INTERNAL, 'response carries no certificate chain and trust bundle'));
          else resolve(res.cert_chain);
        },
      );
    });
  }

  close(): void {
    this.#client.close();
  }
}
