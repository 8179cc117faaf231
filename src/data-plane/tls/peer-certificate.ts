/**
 * The downstream peer certificate's identity for a TLS connection (DownstreamConnectionInfo.peerCertificate),
 * read from the socket on first access and then kept: connections nobody asks about (no RBAC `authenticated`
 * principal) never parse their peer certificate.
 */
import type tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import type { CertificateDetails, PeerCertificateInfo } from '../http/stream.ts';
import { parseSubjectAltNames } from './context.ts';

interface Facts {
  presented: boolean;
  uriSans: string[];
  dnsSans: string[];
  subject: string;
}

const NONE: Facts = { presented: false, uriSans: [], dnsSans: [], subject: '' };

/**
 * Subject as RFC 2253 text, as Envoy's subjectPeerCertificate() prints it: the RDNs in reverse order of the
 * certificate, comma separated (`CN=client,O=example`), with `,`, `+`, `"`, `\`, `<`, `>`, `;` escaped.
 */
export function rfc2253Subject(cert: X509Certificate): string {
  // An empty subject (X.509-SVIDs, Istio's and our CA's, have none) is `undefined` in Node 24, not ''.
  const lines = (cert.subject ?? '').split('\n').filter((l) => l !== '');
  return lines
    .reverse()
    .map((l) => {
      const eq = l.indexOf('=');
      const v = l.slice(eq + 1).replace(/([,+"\\<>;])/g, '\\$1');
      return `${l.slice(0, eq)}=${v}`;
    })
    .join(',');
}

/** Lazily computed {@link PeerCertificateInfo} of a server-side TLS socket whose handshake completed. */
export class LazyPeerCertificate implements PeerCertificateInfo {
  readonly #socket: tls.TLSSocket;
  #facts: Facts | undefined;

  constructor(socket: tls.TLSSocket) {
    this.#socket = socket;
  }

  #read(): Facts {
    if (this.#facts !== undefined) return this.#facts;
    const s = this.#socket;
    let facts = NONE;
    try {
      const cert = s.getPeerCertificate();
      if (cert && cert.raw) {
        const sans = parseSubjectAltNames(cert.subjectaltname);
        facts = {
          presented: true,
          uriSans: sans.filter((x) => x.type === 'URI').map((x) => x.value),
          dnsSans: sans.filter((x) => x.type === 'DNS').map((x) => x.value),
          subject: rfc2253Subject(new X509Certificate(cert.raw)),
        };
      }
    } catch {
      facts = NONE;
    }
    this.#facts = facts;
    return facts;
  }

  get presented(): boolean {
    return this.#read().presented;
  }

  get validated(): boolean {
    return this.#read().presented && this.#socket.authorized === true;
  }

  get uriSans(): readonly string[] {
    return this.#read().uriSans;
  }

  get dnsSans(): readonly string[] {
    return this.#read().dnsSans;
  }

  get subject(): string {
    return this.#read().subject;
  }

  #details: CertificateDetails | undefined;

  /** Digest, PEMs and the local certificate's URI SANs (x-forwarded-client-cert), computed once. */
  readonly details = (): CertificateDetails => {
    if (this.#details !== undefined) return this.#details;
    const s = this.#socket;
    let details: CertificateDetails = { sha256: '', pem: '', chainPem: '', localUriSans: [] };
    try {
      const leaf = s.getPeerX509Certificate();
      if (leaf !== undefined) {
        const chain: string[] = [];
        const seen = new Set<string>();
        // getPeerCertificate(true) links issuers up to the root (a self-signed root links to itself).
        for (let c: tls.DetailedPeerCertificate | undefined = s.getPeerCertificate(true); c?.raw !== undefined && !seen.has(c.fingerprint256); c = c.issuerCertificate) {
          seen.add(c.fingerprint256);
          chain.push(new X509Certificate(c.raw).toString());
        }
        const local = s.getCertificate();
        const localSans = local !== null && 'subjectaltname' in local ? parseSubjectAltNames(local.subjectaltname) : [];
        details = {
          sha256: leaf.fingerprint256.replaceAll(':', '').toLowerCase(),
          pem: leaf.toString(),
          chainPem: chain.join(''),
          localUriSans: localSans.filter((x) => x.type === 'URI').map((x) => x.value),
        };
      }
    } catch {
      // A socket torn down under us: no details.
    }
    this.#details = details;
    return details;
  };
}
