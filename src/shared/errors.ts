/**
 * Sloop's coded errors. Every code is listed here and documented in docs/errors.md; a test keeps
 * the two lists equal. Codes are never reused. Branch on `err.code`, never on message text.
 */
export const ERROR_CODES = [
  'SLOOP_ERR_CONFIG_INVALID',
  'SLOOP_ERR_CONFIG_UNREADABLE',
  'SLOOP_ERR_CONFIG_UNSUPPORTED',
  'SLOOP_ERR_XDS_UNKNOWN_TYPE',
  'SLOOP_ERR_XDS_STREAM_CLOSED',
  'SLOOP_ERR_XDS_SNAPSHOT_INCONSISTENT',
  'SLOOP_ERR_PROXY_LISTEN_FAILED',
  'SLOOP_ERR_PROXY_NO_ROUTE',
  'SLOOP_ERR_PROXY_NO_HEALTHY_UPSTREAM',
  'SLOOP_ERR_PROXY_UPSTREAM_CONNECT',
  'SLOOP_ERR_PROXY_UPSTREAM_RESET',
  'SLOOP_ERR_PROXY_UPSTREAM_TIMEOUT',
  'SLOOP_ERR_PROXY_UPSTREAM_PROTOCOL',
  'SLOOP_ERR_PROXY_OVERFLOW',
  'SLOOP_ERR_PROXY_DOWNSTREAM_PROTOCOL',
  'SLOOP_ERR_PROXY_ORIGINAL_DST_UNAVAILABLE',
  'SLOOP_ERR_CA_INVALID_SPIFFE_ID',
  'SLOOP_ERR_CA_INVALID_CSR',
  'SLOOP_ERR_CA_IDENTITY_MISMATCH',
  'SLOOP_ERR_CA_INVALID_TTL',
  'SLOOP_ERR_CA_ROOT_UNREADABLE',
  'SLOOP_ERR_CA_ROOT_INVALID',
  'SLOOP_ERR_CLI_USAGE',
  'SLOOP_ERR_CLI_INTERCEPTION_FAILED',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class SloopError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'SloopError';
    this.code = code;
  }
}

/** One problem found in configuration: where it is and what is wrong. */
export interface Diagnostic {
  severity: 'error' | 'warning';
  code: ErrorCode;
  /** File the value came from, if any. */
  file?: string;
  line?: number;
  column?: number;
  /** Path of the field in the document, Envoy/Istio spelling: `static_resources.clusters[2].lb_policy`. */
  path: string;
  message: string;
  /** The resource the problem is in, when the document is a Kubernetes-style resource (`VirtualService`). */
  kind?: string;
  namespace?: string;
  name?: string;
}

/** `file:line:col path: message` — the one-line form used by the CLI, logs and NACK details. */
export function formatDiagnostic(d: Diagnostic): string {
  const where = d.file ? `${d.file}${d.line ? `:${d.line}${d.column ? `:${d.column}` : ''}` : ''} ` : '';
  const resource = d.kind && d.name ? `${d.kind} ${d.namespace ? `${d.namespace}/` : ''}${d.name} ` : '';
  return `${where}${resource}${d.path || '(root)'}: ${d.message}`;
}

/** Thrown when configuration has errors; carries every diagnostic, not only the first. */
export class ConfigError extends SloopError {
  readonly diagnostics: readonly Diagnostic[];
  constructor(diagnostics: readonly Diagnostic[], what = 'configuration') {
    const errors = diagnostics.filter((d) => d.severity === 'error');
    super('SLOOP_ERR_CONFIG_INVALID', `invalid ${what}: ${errors.length} error(s)\n` + errors.map((d) => '  ' + formatDiagnostic(d)).join('\n'));
    this.diagnostics = diagnostics;
  }
}
