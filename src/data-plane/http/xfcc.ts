/**
 * x-forwarded-client-cert, as Envoy's HTTP connection manager handles it (`forward_client_cert_details` and
 * `set_current_client_cert_details`; Envoy's ConnectionManagerUtility::mutateXfccRequestHeader):
 * - SANITIZE (default): the header is removed from every request, so a client cannot claim an identity.
 * - FORWARD_ONLY: kept as sent when the connection is mutual TLS, else removed.
 * - APPEND_FORWARD: on mutual TLS this hop's element is appended (`,`-separated), else removed.
 * - SANITIZE_SET: on mutual TLS the header becomes this hop's element alone, else removed.
 * - ALWAYS_FORWARD_ONLY: always kept as sent.
 * An element is `;`-separated pairs in Envoy's order: `By=` (each URI SAN of this proxy's certificate),
 * `Hash=` (SHA-256 of the peer certificate), then those `set_current_client_cert_details` asks for:
 * `Cert="…"` and `Chain="…"` (URL-encoded PEM), `Subject="…"`, `URI=` and `DNS=` (each SAN of the peer).
 * "Mutual TLS" is a TLS connection whose peer presented a certificate.
 */
import type { HttpConnectionManager__Output } from '../../xds/gen/envoy/extensions/filters/network/http_connection_manager/v3/HttpConnectionManager.ts';
import { getHeader, removeHeader, setHeader } from './headers.ts';
import type { DownstreamConnectionInfo } from './stream.ts';

export const XFCC_HEADER = 'x-forwarded-client-cert';

export type XfccMode = 'SANITIZE' | 'FORWARD_ONLY' | 'APPEND_FORWARD' | 'SANITIZE_SET' | 'ALWAYS_FORWARD_ONLY';

export interface XfccConfig {
  mode: XfccMode;
  cert: boolean;
  chain: boolean;
  subject: boolean;
  uri: boolean;
  dns: boolean;
}

const MODES: readonly XfccMode[] = ['SANITIZE', 'FORWARD_ONLY', 'APPEND_FORWARD', 'SANITIZE_SET', 'ALWAYS_FORWARD_ONLY'];

/** The HCM's XFCC settings. */
export function compileXfcc(cfg: HttpConnectionManager__Output): XfccConfig {
  const raw = cfg.forward_client_cert_details as string | number;
  const mode = typeof raw === 'number' ? (MODES[raw] ?? 'SANITIZE') : ((raw as XfccMode) || 'SANITIZE');
  const d = cfg.set_current_client_cert_details;
  return { mode, cert: d?.cert ?? false, chain: d?.chain ?? false, subject: d?.subject?.value ?? false, uri: d?.uri ?? false, dns: d?.dns ?? false };
}

/** Applies the mode to a request's headers (before routing and filters, as Envoy does). */
export function mutateXfcc(headers: string[], conn: DownstreamConnectionInfo, cfg: XfccConfig): void {
  const mode = cfg.mode;
  if (mode === 'ALWAYS_FORWARD_ONLY') return;
  const peer = conn.isTls ? conn.peerCertificate : undefined;
  if (mode === 'SANITIZE' || peer === undefined || !peer.presented) {
    removeHeader(headers, XFCC_HEADER);
    return;
  }
  if (mode === 'FORWARD_ONLY') return;
  const details = peer.details?.();
  const parts: string[] = [];
  for (const uri of details?.localUriSans ?? []) parts.push(`By=${uri}`);
  if (details !== undefined && details.sha256 !== '') parts.push(`Hash=${details.sha256}`);
  if (cfg.cert) parts.push(`Cert="${encodeURIComponent(details?.pem ?? '')}"`);
  if (cfg.chain) parts.push(`Chain="${encodeURIComponent(details?.chainPem ?? '')}"`);
  if (cfg.subject) parts.push(`Subject="${peer.subject}"`);
  if (cfg.uri) for (const uri of peer.uriSans) parts.push(`URI=${uri}`);
  if (cfg.dns) for (const dns of peer.dnsSans) parts.push(`DNS=${dns}`);
  const element = parts.join(';');
  if (mode === 'APPEND_FORWARD') {
    const prior = getHeader(headers, XFCC_HEADER);
    if (prior !== undefined && prior !== '') {
      setHeader(headers, XFCC_HEADER, `${prior},${element}`);
      return;
    }
  }
  if (element === '') removeHeader(headers, XFCC_HEADER);
  else setHeader(headers, XFCC_HEADER, element);
}
