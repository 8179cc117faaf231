/**
 * Envoy's local replies: responses the proxy makes itself (404 no route, 503 no healthy upstream,
 * 504 upstream request timeout, …). For gRPC requests they become trailers-only gRPC responses with
 * the status mapped as Envoy's Grpc::Utility::httpToGrpcStatus does.
 */
import type { ServerStream } from './stream.ts';
import { getHeader, isGrpcContentType } from './headers.ts';

/** HTTP status → gRPC status code (Envoy / gRPC's http-grpc-status-mapping.md). */
export function httpToGrpcStatus(status: number): number {
  switch (status) {
    case 400:
      return 13; // INTERNAL
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return 7; // PERMISSION_DENIED
    case 404:
      return 12; // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return 14; // UNAVAILABLE
    default:
      return 2; // UNKNOWN
  }
}

/** gRPC's grpc-message is percent-encoded (PROTOCOL-HTTP2.md). */
function grpcMessageEncode(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    out += b >= 0x20 && b <= 0x7e && b !== 0x25 ? String.fromCharCode(b) : '%' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/**
 * Sends a local reply on `stream` if the response has not started; otherwise resets the stream.
 * `extraHeaders` are added to the reply (e.g. route response_headers_to_add, location). `grpcStatus`
 * replaces the status mapped from `status` in gRPC replies (the fault filter's gRPC aborts).
 */
export function sendLocalReply(stream: ServerStream, status: number, body: string, extraHeaders: string[] | null, serverName: string, grpcStatus?: number): void {
  if (stream.responseStarted) {
    stream.reset();
    return;
  }
  const headers: string[] = [];
  if (isGrpcContentType(getHeader(stream.head.headers, 'content-type'))) {
    headers.push('content-type', 'application/grpc', 'grpc-status', String(grpcStatus ?? httpToGrpcStatus(status)));
    if (body !== '') headers.push('grpc-message', grpcMessageEncode(body));
    if (serverName !== '') headers.push('server', serverName);
    if (extraHeaders !== null) headers.push(...extraHeaders);
    stream.respond(200, headers, true);
    return;
  }
  if (body !== '') headers.push('content-length', String(Buffer.byteLength(body)), 'content-type', 'text/plain');
  if (serverName !== '') headers.push('server', serverName);
  if (extraHeaders !== null) headers.push(...extraHeaders);
  if (body === '') {
    stream.respond(status, headers, true);
  } else {
    stream.respond(status, headers, false);
    stream.write(Buffer.from(body));
    stream.end(null);
  }
}
