/**
 * The wire contract between the CA (control plane, src/control-plane/ca/service.ts) and the workload agent
 * (proxy, src/data-plane/agent/): Istio's `istio.v1.auth.IstioCertificateService`, from our own ca.proto. Shared
 * like the Envoy protos in src/xds/, so neither plane imports the other.
 */
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

export const CA_SERVICE_NAME = 'istio.v1.auth.IstioCertificateService';
export const CREATE_CERTIFICATE_METHOD = `/${CA_SERVICE_NAME}/CreateCertificate`;

/** IstioCertificateRequest as proto-loader hands it over (keepCase, longs as strings). */
export interface CertificateRequestMessage {
  csr: string;
  validity_duration: string | number;
  metadata?: unknown;
}

export interface CertificateResponseMessage {
  cert_chain: string[];
}

let definition: grpc.ServiceDefinition | undefined;

/** The service definition from our ca.proto (loaded once). */
export function loadCaServiceDefinition(): grpc.ServiceDefinition {
  if (definition) return definition;
  const file = fileURLToPath(new URL('./proto/ca.proto', import.meta.url));
  const pkg = protoLoader.loadSync(file, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  definition = pkg[CA_SERVICE_NAME] as grpc.ServiceDefinition;
  return definition;
}
