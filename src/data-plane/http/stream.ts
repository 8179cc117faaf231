/**
 * The codec-neutral shape of one HTTP exchange, shared by the HTTP/1.1 and HTTP/2 codecs on both
 * sides of the proxy. Callbacks are plain properties set once by the owner (no EventEmitter and no
 * closure per event on the hot path). Header lists are flat `[name, value, …]` arrays (headers.ts).
 */

export type HttpProtocol = 'HTTP/1.0' | 'HTTP/1.1' | 'HTTP/2';

/** A request as the router sees it, whatever codec it came on. */
export interface RequestHead {
  method: string;
  /** `:path`, origin-form, with the query string. */
  path: string;
  /** `:authority` / Host. */
  authority: string;
  /** `:scheme` (h2) or the connection's scheme (h1). */
  scheme: string;
  /** Regular headers only: no pseudo-headers and no `host`; names lowercased. */
  headers: string[];
  protocol: HttpProtocol;
  /** Declared body length, or -1 when unknown (chunked / h2 without content-length). */
  contentLength: number;
  /** False when the request ended with its headers (GET without body, h2 END_STREAM on HEADERS). */
  hasBody: boolean;
  /** Upgrade token (lowercased, e.g. `websocket`) for HTTP/1.1 Upgrade or h2 extended CONNECT, else ''. */
  upgrade: string;
}

/** Why a stream ended abnormally; the router maps these to retry conditions and local replies. */
export type ResetReason =
  | 'connect-failure'
  | 'connect-timeout'
  | 'remote-reset'
  | 'remote-refused-stream'
  | 'connection-termination'
  | 'protocol-error'
  | 'overflow'
  | 'local-reset';

/** The downstream side of an exchange: the request comes in, the response goes out. */
export interface ServerStream {
  readonly head: RequestHead;
  /** Request body chunk; valid only during the call. */
  onData: (chunk: Buffer) => void;
  /** Request complete, with trailers if any. */
  onEnd: (trailers: string[] | null) => void;
  /** The client went away or reset the stream. */
  onReset: (reason: ResetReason) => void;
  /** The response side can take more data after `write` returned false. */
  onWritable: () => void;

  /** Sends response headers. `headers` excludes pseudo-headers. */
  respond(status: number, headers: string[], endStream: boolean): void;
  /** Sends a response body chunk; false means the peer is slow: wait for onWritable. */
  write(chunk: Buffer): boolean;
  /** Ends the response, with trailers where the codec can carry them. */
  end(trailers: string[] | null): void;
  /** Aborts the exchange (h2 RST_STREAM; h1 closes the connection). */
  reset(): void;
  /** Stops / restarts reading the request body (backpressure towards the client). */
  pauseRequest(): void;
  resumeRequest(): void;
  /** True once response headers went out. */
  readonly responseStarted: boolean;
  /** Connection facts for routing and logging. */
  readonly conn: DownstreamConnectionInfo;
  /** Asks the codec to close the connection after this response (drain). */
  closeAfterResponse(): void;
  /** Writes out anything the codec holds back to coalesce writes (a response head waiting for its body). */
  flush(): void;
}

export interface DownstreamConnectionInfo {
  remoteAddress: string;
  remotePort: number;
  localAddress: string;
  localPort: number;
  isTls: boolean;
  /** SNI the client sent, if TLS. */
  serverName: string;
  /** Original destination (iptables redirect) when known, else local address:port. */
  originalDstAddress: string;
  originalDstPort: number;
  /**
   * TLS connections on a chain that asks for a client certificate: the peer certificate's identity (RBAC
   * `authenticated`), read from the certificate on first access. Absent on plaintext and on chains that request
   * no client certificate.
   */
  peerCertificate?: PeerCertificateInfo;
}

/** What RBAC and logging read of a downstream peer certificate (Envoy's Ssl::ConnectionInfo). */
export interface PeerCertificateInfo {
  /** The peer sent a certificate. */
  readonly presented: boolean;
  /** The certificate chained to the configured trusted CA. */
  readonly validated: boolean;
  readonly uriSans: readonly string[];
  readonly dnsSans: readonly string[];
  /** Subject in RFC 2253 form (`CN=a,O=b`), '' without a certificate. */
  readonly subject: string;
  /** What x-forwarded-client-cert needs besides the above, read on demand; absent in test doubles. */
  readonly details?: () => CertificateDetails;
}

/** Certificate facts for x-forwarded-client-cert (Envoy's Ssl::ConnectionInfo digests and PEMs). */
export interface CertificateDetails {
  /** SHA-256 of the peer certificate's DER, lowercase hex. */
  sha256: string;
  /** The peer certificate as PEM. */
  pem: string;
  /** The peer's chain as PEM, leaf first. */
  chainPem: string;
  /** URI SANs of the certificate this proxy presented. */
  localUriSans: readonly string[];
}

/** The upstream side of an exchange: the router sends the request, the response comes back. */
export interface UpstreamStream {
  onHeaders: (status: number, headers: string[], endStream: boolean) => void;
  onData: (chunk: Buffer) => void;
  onEnd: (trailers: string[] | null) => void;
  onReset: (reason: ResetReason, detail: string) => void;
  onWritable: () => void;
  /** For HTTP/1.1 Upgrade / CONNECT: after a 101 (or 2xx to CONNECT), the raw socket for tunnelling. */
  onUpgrade: ((status: number, headers: string[], socket: import('node:net').Socket, head: Buffer) => void) | null;

  /**
   * Set by the router when the codec delivers reads in batches: after each batch of callbacks (one
   * socket read) the codec calls `flushTarget.flush()`, so a response head and the body bytes that
   * came in the same read leave in one write. Codecs without batching leave it unused.
   */
  flushTarget: { flush(): void } | null;
  readonly batchesReads: boolean;

  sendHeaders(head: RequestHead, endStream: boolean): void;
  write(chunk: Buffer): boolean;
  end(trailers: string[] | null): void;
  reset(): void;
  pauseResponse(): void;
  resumeResponse(): void;
}
