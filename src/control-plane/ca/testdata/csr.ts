// Test helper: workload keys and CSRs made with @peculiar/x509, as a sidecar would make them.
import { type webcrypto } from 'node:crypto';
import '../../../shared/identity/reflect-metadata.ts'; // must precede @peculiar/x509: tsyringe checks for it at load time
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(globalThis.crypto);

export interface CsrSpec {
  sans?: { type: 'url' | 'dns' | 'ip'; value: string }[];
  curve?: 'P-256' | 'P-384';
}

export async function makeCsr(spec: CsrSpec): Promise<{ csrPem: string; keys: webcrypto.CryptoKeyPair }> {
  const curve = spec.curve ?? 'P-256';
  const keys = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: curve }, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: { name: 'ECDSA', hash: curve === 'P-256' ? 'SHA-256' : 'SHA-384' } as webcrypto.EcdsaParams,
    extensions: spec.sans ? [new x509.SubjectAlternativeNameExtension(spec.sans)] : [],
  });
  return { csrPem: csr.toString('pem'), keys };
}

/** The same CSR with one bit of its signature flipped. */
export function corruptSignature(csrPem: string): string {
  const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  der[der.length - 1] ^= 0x01;
  return `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
}
