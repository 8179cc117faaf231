/**
 * Envoy's TLS transport socket (`envoy.transport_sockets.tls`, extensions.transport_sockets.tls.v3) as
 * Node TLS options: DownstreamTlsContext for listeners, UpstreamTlsContext for clusters. Everything is
 * compiled once per config; per connection only the peer check runs.
 *
 * Where Node and BoringSSL differ, Envoy's documented behaviour wins:
 * - Without a validation context an upstream certificate is not verified at all (no CA, no hostname).
 * - With one, only what it configures is checked: the chain against `trusted_ca`, then the SAN matchers
 *   and certificate hashes. Hostnames are never checked implicitly (Node's default checkServerIdentity).
 * - A downstream client certificate is optional unless `require_client_certificate` or a SAN/hash/SPKI
 *   check is configured (common.proto, CertificateValidationContext.trusted_ca).
 * Node has no in-handshake verify callback for servers, so checks OpenSSL cannot express run right
 * after the handshake in `verifyPeer`, before any application byte is read.
 */
import tls from 'node:tls';
import { X509Certificate, createHash, createPrivateKey, constants as cryptoConstants, type KeyObject } from 'node:crypto';
import type { DataSource__Output } from '../../xds/gen/envoy/config/core/v3/DataSource.ts';
import type { Duration__Output } from '../../xds/gen/google/protobuf/Duration.ts';
import type { DownstreamTlsContext__Output } from '../../xds/gen/envoy/extensions/transport_sockets/tls/v3/DownstreamTlsContext.ts';
import type { UpstreamTlsContext__Output } from '../../xds/gen/envoy/extensions/transport_sockets/tls/v3/UpstreamTlsContext.ts';
import type { CommonTlsContext__Output } from '../../xds/gen/envoy/extensions/transport_sockets/tls/v3/CommonTlsContext.ts';
import type { TlsCertificate__Output } from '../../xds/gen/envoy/extensions/transport_sockets/tls/v3/TlsCertificate.ts';
import type { TlsParameters__Output } from '../../xds/gen/envoy/extensions/transport_sockets/tls/v3/TlsParameters.ts';
import type { CertificateValidationContext__Output } from '../../xds/gen/envoy/extensions/transport_sockets/tls/v3/CertificateValidationContext.ts';
import type { SdsSecretConfig__Output } from '../../xds/gen/envoy/extensions/transport_sockets/tls/v3/SdsSecretConfig.ts';
import type { Secret__Output } from '../../xds/gen/envoy/extensions/transport_sockets/tls/v3/Secret.ts';
import type { StringMatcher__Output } from '../../xds/gen/envoy/type/matcher/v3/StringMatcher.ts';
import { ConfigError, type Diagnostic, type ErrorCode } from '../../shared/errors.ts';
import { compileStringMatcher, matchString, type CompiledStringMatcher } from '../http/route/matchers.ts';
import { formatIp, parseIp } from '../listener/cidr-range.ts';

/**
 * Reads a DataSource's bytes; undefined when unset. Throws when a set source cannot be read (the
 * context adds the field path). `(ds) => resolveDataSource(ds, baseDir, env)` from `../data-source.ts` fits.
 */
export type DataSourceReader = (ds: DataSource__Output | null) => Buffer | undefined;

/**
 * The Envoy `ssl.*` counter a refused TLS peer increments (`listener.<addr>.ssl.<stat>`,
 * `cluster.<name>.ssl.<stat>`; see Envoy's "TLS statistics"). Every refusal also counts `connection_error`.
 */
export type PeerFailureStat = 'fail_verify_no_cert' | 'fail_verify_error' | 'fail_verify_san' | 'fail_verify_cert_hash' | 'connection_error';

/** Why a peer was refused: the stat it counts and a message for logs and response details. */
export interface PeerFailure {
  readonly stat: PeerFailureStat;
  readonly message: string;
}

/** Optional inputs for building a TLS context. */
export interface TlsContextOptions {
  /**
   * Resolves an SDS secret by name, for `tls_certificate_sds_secret_configs` and validation contexts
   * delivered by SDS. Without it, SDS references are a config error.
   */
  lookupSecret?: (name: string) => Secret__Output | undefined;
  /**
   * The peer must be an X.509-SVID of this trust domain (set when the validation context is the mesh trust
   * bundle, SDS `ROOTCA` from the workload agent): its leaf carries exactly one URI SAN, a SPIFFE ID in this
   * trust domain, and is not a CA certificate (SPIFFE X509-SVID §2, §4.1; Envoy's SPIFFE validator does the same).
   */
  spiffeTrustDomain?: string;
}

/** A compiled DownstreamTlsContext: what a listener needs to terminate TLS on a filter chain. */
export interface DownstreamTls {
  /** The options the SecureContext was built from (certs, keys, CA, versions, ciphers). */
  readonly secureContextOptions: tls.SecureContextOptions;
  /** Built once; share it across connections. */
  readonly secureContext: tls.SecureContext;
  /** `common_tls_context.alpn_protocols`, in server preference order. */
  readonly alpn: string[];
  /** Ask the client for a certificate (a CA, a peer check or require_client_certificate is configured). */
  readonly requestCert: boolean;
  /** Let OpenSSL fail the handshake on a missing or untrusted client certificate. */
  readonly rejectUnauthorized: boolean;
  /** The client must present a certificate (checked by `verifyPeer` when OpenSSL cannot). */
  readonly requireClientCertificate: boolean;
  /** `require_sni`: connections without SNI are closed by `verifyPeer`. */
  readonly requireSni: boolean;
  /** `session_timeout` in whole seconds, if set (also applied to the SecureContext). */
  readonly sessionTimeoutSeconds: number | undefined;
  /** Options for `tls.createServer` (context options, client certificate policy, ALPN, session timeout). */
  readonly serverOptions: tls.TlsOptions;
  /**
   * ALPN list to offer a client that sent `clientAlpn` (from the TLS inspector): `alpn` if the lists
   * share a protocol, else undefined. Envoy then completes the handshake without ALPN, whereas Node
   * would abort it with no_application_protocol, so leave ALPNProtocols unset in that case.
   */
  selectAlpn(clientAlpn: readonly string[]): string[] | undefined;
  /**
   * Call once the handshake completes, before reading. Given the socket: client-certificate presence and
   * trust, require_sni, SAN matchers, certificate hash/SPKI. Given a certificate: only the last three.
   * Returns why the connection must be closed, or undefined if it may proceed.
   */
  verifyPeer(peer: tls.TLSSocket | tls.PeerCertificate): string | undefined;
  /** `verifyPeer` with the reason classified as the Envoy stat it counts. */
  checkPeer(peer: tls.TLSSocket | tls.PeerCertificate): PeerFailure | undefined;
}

/** A compiled UpstreamTlsContext: what a cluster needs to originate TLS. */
export interface UpstreamTls {
  /**
   * Spread into `tls.connect` with host and port: secureContext, servername (only if `sni` is set: Envoy
   * sends no SNI otherwise), ALPNProtocols, rejectUnauthorized and a checkServerIdentity that applies the
   * SAN matchers instead of hostname verification.
   */
  readonly options: tls.ConnectionOptions;
  readonly secureContextOptions: tls.SecureContextOptions;
  readonly secureContext: tls.SecureContext;
  /** `sni`, or undefined when unset. */
  readonly serverName: string | undefined;
  /** `common_tls_context.alpn_protocols`. */
  readonly alpn: string[];
  /**
   * Call on `secureConnect`: covers what `options` cannot make OpenSSL enforce (SAN/hash checks without a
   * trusted CA, allow_expired_certificate). Returns why to close the connection, or undefined.
   */
  verifyPeer(peer: tls.TLSSocket | tls.PeerCertificate): string | undefined;
  /** `verifyPeer` with the reason classified as the Envoy stat it counts. */
  checkPeer(peer: tls.TLSSocket | tls.PeerCertificate): PeerFailure | undefined;
}

/**
 * Compiles a DownstreamTlsContext.
 * @param readDataSource reads certificate, key and CA DataSources (at config time).
 * @throws ConfigError with every problem, paths relative to the DownstreamTlsContext
 *   (`common_tls_context.tls_certificates[0].certificate_chain.filename`).
 */
export function createDownstreamTls(
  ctx: DownstreamTlsContext__Output,
  readDataSource: DataSourceReader,
  options: TlsContextOptions = {},
): DownstreamTls {
  const diags: Diagnostic[] = [];
  const sessionTimeoutSeconds = ctx.session_timeout ? durationSeconds(ctx.session_timeout) : undefined;
  const common = compileCommon(ctx.common_tls_context, 'common_tls_context', 'downstream', readDataSource, options, diags);
  if (sessionTimeoutSeconds !== undefined) common.contextOptions.sessionTimeout = sessionTimeoutSeconds;
  // Stateless resumption is session tickets (RFC 5077); Envoy's switch maps to OpenSSL's SSL_OP_NO_TICKET.
  if (ctx.disable_stateless_session_resumption) common.contextOptions.secureOptions = cryptoConstants.SSL_OP_NO_TICKET;
  if (ctx.session_ticket_keys_type === 'session_ticket_keys' || ctx.session_ticket_keys_type === 'session_ticket_keys_sds_secret_config') {
    unsupported(diags, ctx.session_ticket_keys_type, 'configured session ticket keys are not supported; Node generates its own');
  }
  if (ctx.ocsp_staple_policy === 'MUST_STAPLE') unsupported(diags, 'ocsp_staple_policy', 'OCSP stapling is not supported');
  if (common.certificateCount === 0 && diags.length === 0) {
    // Envoy: a server context needs a certificate to present.
    invalid(diags, 'common_tls_context.tls_certificates', 'a DownstreamTlsContext needs at least one certificate');
  }
  const secureContext = buildSecureContext(common.contextOptions, diags);
  if (diags.length > 0 || !secureContext) throw new ConfigError(diags, 'DownstreamTlsContext');

  const v = common.validation;
  const requireClientCertificate = ctx.require_client_certificate?.value === true || (v !== undefined && v.hasPeerChecks);
  const requestCert = requireClientCertificate || v !== undefined;
  const rejectUnauthorized = requireClientCertificate && v !== undefined && v.verifyChain && !v.allowExpired;
  const requireSni = ctx.require_sni?.value === true;
  const alpn = common.alpn;
  const verifier = new PeerVerifier(v, requireClientCertificate, requireSni, options.spiffeTrustDomain);
  return {
    secureContextOptions: common.contextOptions,
    secureContext,
    alpn,
    requestCert,
    rejectUnauthorized,
    requireClientCertificate,
    requireSni,
    sessionTimeoutSeconds,
    // tls.Server builds its own SecureContext from these options; it ignores a `secureContext` option.
    serverOptions: {
      ...common.contextOptions,
      requestCert,
      rejectUnauthorized,
      ...(alpn.length > 0 ? { ALPNProtocols: alpn } : {}),
      ...(sessionTimeoutSeconds !== undefined ? { sessionTimeout: sessionTimeoutSeconds } : {}),
    },
    selectAlpn(clientAlpn) {
      if (alpn.length === 0) return undefined;
      if (clientAlpn.length === 0) return alpn;
      for (const p of alpn) if (clientAlpn.includes(p)) return alpn;
      return undefined;
    },
    verifyPeer: (peer) => verifier.verify(peer)?.message,
    checkPeer: (peer) => verifier.verify(peer),
  };
}

/**
 * Compiles an UpstreamTlsContext.
 * @throws ConfigError with every problem, paths relative to the UpstreamTlsContext.
 */
export function createUpstreamTls(
  ctx: UpstreamTlsContext__Output,
  readDataSource: DataSourceReader,
  options: TlsContextOptions = {},
): UpstreamTls {
  const diags: Diagnostic[] = [];
  const common = compileCommon(ctx.common_tls_context, 'common_tls_context', 'upstream', readDataSource, options, diags);
  const secureContext = buildSecureContext(common.contextOptions, diags);
  if (diags.length > 0 || !secureContext) throw new ConfigError(diags, 'UpstreamTlsContext');

  const v = common.validation;
  const verifier = new PeerVerifier(v, v !== undefined && v.hasPeerChecks, false, options.spiffeTrustDomain);
  const serverName = ctx.sni === '' ? undefined : ctx.sni;
  const rejectUnauthorized = v !== undefined && v.verifyChain && !v.allowExpired;
  const checkServerIdentity = (_host: string, cert: tls.PeerCertificate): Error | undefined => {
    // Node calls this only after the chain verified; hostname checks are Envoy's SAN matchers or nothing.
    const why = verifier.verifyCertificate(cert);
    return why === undefined ? undefined : Object.assign(new Error(why.message), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
  };
  return {
    options: {
      secureContext,
      rejectUnauthorized,
      checkServerIdentity,
      ...(serverName !== undefined ? { servername: serverName } : {}),
      ...(common.alpn.length > 0 ? { ALPNProtocols: common.alpn } : {}),
    },
    secureContextOptions: common.contextOptions,
    secureContext,
    serverName,
    alpn: common.alpn,
    verifyPeer: (peer) => verifier.verify(peer)?.message,
    checkPeer: (peer) => verifier.verify(peer),
  };
}

// ---------------------------------------------------------------------------------------------------
// CommonTlsContext

type Side = 'downstream' | 'upstream';

interface CompiledCommon {
  contextOptions: tls.SecureContextOptions;
  validation: CompiledValidation | undefined;
  alpn: string[];
  certificateCount: number;
}

/** Envoy's default TLS 1.0–1.2 cipher list (non-FIPS, same for server and client), in OpenSSL syntax. */
const ENVOY_DEFAULT_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
].join(':');

const NODE_VERSIONS: Readonly<Record<string, tls.SecureVersion>> = {
  TLSv1_0: 'TLSv1',
  TLSv1_1: 'TLSv1.1',
  TLSv1_2: 'TLSv1.2',
  TLSv1_3: 'TLSv1.3',
};
const VERSION_ORDER: readonly tls.SecureVersion[] = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'];

function compileCommon(
  common: CommonTlsContext__Output | null,
  base: string,
  side: Side,
  read: DataSourceReader,
  options: TlsContextOptions,
  diags: Diagnostic[],
): CompiledCommon {
  const contextOptions: tls.SecureContextOptions = {};
  applyTlsParams(common?.tls_params ?? null, `${base}.tls_params`, side, contextOptions, diags);
  if (!common) return { contextOptions, validation: undefined, alpn: [], certificateCount: 0 };

  // Certificates, inline and from SDS. Node picks among them by key type (RSA, ECDSA), as BoringSSL does.
  const certs: Buffer[] = [];
  const keys: { pem: Buffer; passphrase?: string }[] = [];
  const pfx: { buf: Buffer; passphrase?: string }[] = [];
  const addCertificate = (c: TlsCertificate__Output, path: string): void => {
    const loaded = loadCertificate(c, path, read, diags);
    if (!loaded) return;
    if ('pfx' in loaded) pfx.push(loaded.pfx);
    else {
      certs.push(loaded.cert);
      keys.push(loaded.key);
    }
  };
  common.tls_certificates.forEach((c, i) => addCertificate(c, `${base}.tls_certificates[${i}]`));
  common.tls_certificate_sds_secret_configs.forEach((sds, i) => {
    const path = `${base}.tls_certificate_sds_secret_configs[${i}]`;
    const secret = resolveSecret(sds, path, options, diags);
    if (!secret) return;
    if (!secret.tls_certificate) return invalid(diags, path, `SDS secret "${sds.name}" is not a tls_certificate`);
    addCertificate(secret.tls_certificate, `${path}(${sds.name}).tls_certificate`);
  });
  for (const field of [
    'tls_certificate_provider_instance',
    'tls_certificate_certificate_provider',
    'tls_certificate_certificate_provider_instance',
    'custom_handshaker',
  ] as const) {
    if (common[field]) unsupported(diags, `${base}.${field}`, `${field} is not supported`);
  }
  if (certs.length > 0) {
    contextOptions.cert = certs;
    contextOptions.key = keys;
  }
  if (pfx.length > 0) contextOptions.pfx = pfx;

  const vc = validationContextOf(common, base, options, diags);
  const validation = vc ? compileValidation(vc.context, vc.path, read, contextOptions, diags) : undefined;
  return { contextOptions, validation, alpn: [...common.alpn_protocols], certificateCount: certs.length + pfx.length };
}

function applyTlsParams(
  p: TlsParameters__Output | null,
  path: string,
  side: Side,
  out: tls.SecureContextOptions,
  diags: Diagnostic[],
): void {
  // common.proto TlsParameters: minimum TLSv1_2 for both; maximum TLSv1_3 for servers, TLSv1_2 for clients.
  const min = (p && NODE_VERSIONS[p.tls_minimum_protocol_version]) || 'TLSv1.2';
  const max = (p && NODE_VERSIONS[p.tls_maximum_protocol_version]) || (side === 'downstream' ? 'TLSv1.3' : 'TLSv1.2');
  if (VERSION_ORDER.indexOf(min) > VERSION_ORDER.indexOf(max)) {
    invalid(diags, `${path}.tls_minimum_protocol_version`, `minimum version ${min} is above maximum version ${max}`);
  }
  out.minVersion = min;
  out.maxVersion = max;
  // BoringSSL's cipher syntax has equal-preference groups "[A|B]" that OpenSSL lacks; flattening them keeps
  // the same set with the listed order as preference. TLS 1.3 suites are unaffected, as in Envoy.
  const ciphers = p && p.cipher_suites.length > 0 ? p.cipher_suites.flatMap((c) => c.replace(/[[\]]/g, '').split('|')).join(':') : ENVOY_DEFAULT_CIPHERS;
  if (tryContext({ ciphers }, diags, `${path}.cipher_suites`)) out.ciphers = ciphers;
  if (p && p.ecdh_curves.length > 0) {
    const ecdhCurve = p.ecdh_curves.join(':');
    if (tryContext({ ecdhCurve }, diags, `${path}.ecdh_curves`)) out.ecdhCurve = ecdhCurve;
  }
  if (p && p.signature_algorithms.length > 0) {
    const sigalgs = p.signature_algorithms.join(':');
    if (tryContext({ sigalgs }, diags, `${path}.signature_algorithms`)) out.sigalgs = sigalgs;
  }
}

/** Builds a throwaway context to see whether OpenSSL accepts one option, so errors get a precise path. */
function tryContext(o: tls.SecureContextOptions, diags: Diagnostic[], path: string): boolean {
  try {
    tls.createSecureContext(o);
    return true;
  } catch (err) {
    invalid(diags, path, `rejected by OpenSSL: ${(err as Error).message}`);
    return false;
  }
}

type LoadedCertificate = { cert: Buffer; key: { pem: Buffer; passphrase?: string } } | { pfx: { buf: Buffer; passphrase?: string } };

/** Reads one TlsCertificate and checks that the chain parses, the key parses and the two belong together. */
function loadCertificate(c: TlsCertificate__Output, path: string, read: DataSourceReader, diags: Diagnostic[]): LoadedCertificate | undefined {
  if (c.private_key_provider) unsupported(diags, `${path}.private_key_provider`, 'private key providers are not supported');
  const password = readAt(c.password, `${path}.password`, read, diags);
  const passphrase = password?.toString('utf8');
  if (c.pkcs12) {
    const buf = readAt(c.pkcs12, `${path}.pkcs12`, read, diags);
    if (!buf) return undefined;
    return { pfx: passphrase === undefined ? { buf } : { buf, passphrase } };
  }
  const chain = readAt(c.certificate_chain, `${path}.certificate_chain`, read, diags);
  const keyPem = readAt(c.private_key, `${path}.private_key`, read, diags);
  if (!c.certificate_chain?.specifier) invalid(diags, `${path}.certificate_chain`, 'certificate_chain is required');
  if (!c.private_key?.specifier) invalid(diags, `${path}.private_key`, 'private_key is required');
  if (!chain || !keyPem) return undefined;
  let leaf: X509Certificate | undefined;
  try {
    leaf = new X509Certificate(chain);
  } catch (err) {
    invalid(diags, sourcePath(c.certificate_chain, `${path}.certificate_chain`), `${describeSource(c.certificate_chain)} is not a PEM certificate: ${(err as Error).message}`);
  }
  let key: KeyObject | undefined;
  try {
    key = createPrivateKey(passphrase === undefined ? { key: keyPem } : { key: keyPem, passphrase });
  } catch (err) {
    invalid(diags, sourcePath(c.private_key, `${path}.private_key`), `${describeSource(c.private_key)} is not a usable private key: ${(err as Error).message}`);
  }
  if (!leaf || !key) return undefined;
  if (!leaf.checkPrivateKey(key)) {
    invalid(
      diags,
      sourcePath(c.private_key, `${path}.private_key`),
      `${describeSource(c.private_key)} does not match the certificate in ${describeSource(c.certificate_chain)}`,
    );
    return undefined;
  }
  return { cert: chain, key: passphrase === undefined ? { pem: keyPem } : { pem: keyPem, passphrase } };
}

function resolveSecret(sds: SdsSecretConfig__Output, path: string, options: TlsContextOptions, diags: Diagnostic[]): Secret__Output | undefined {
  if (!options.lookupSecret) {
    unsupported(diags, path, `SDS secret "${sds.name}" cannot be resolved: no secret source is configured`);
    return undefined;
  }
  const secret = options.lookupSecret(sds.name);
  if (!secret) invalid(diags, path, `SDS secret "${sds.name}" is unknown`);
  return secret;
}

/** The effective CertificateValidationContext, whichever way it was given. */
function validationContextOf(
  common: CommonTlsContext__Output,
  base: string,
  options: TlsContextOptions,
  diags: Diagnostic[],
): { context: CertificateValidationContext__Output; path: string } | undefined {
  switch (common.validation_context_type) {
    case 'validation_context':
      return common.validation_context ? { context: common.validation_context, path: `${base}.validation_context` } : undefined;
    case 'validation_context_sds_secret_config': {
      const path = `${base}.validation_context_sds_secret_config`;
      const sds = common.validation_context_sds_secret_config;
      const secret = sds ? resolveSecret(sds, path, options, diags) : undefined;
      if (!secret) return undefined;
      if (!secret.validation_context) {
        invalid(diags, path, `SDS secret "${secret.name}" is not a validation_context`);
        return undefined;
      }
      return { context: secret.validation_context, path: `${path}(${secret.name}).validation_context` };
    }
    case 'combined_validation_context': {
      const path = `${base}.combined_validation_context`;
      const combined = common.combined_validation_context;
      if (!combined) return undefined;
      const def = combined.default_validation_context;
      let dynamic: CertificateValidationContext__Output | undefined;
      if (combined.validation_context_sds_secret_config) {
        const secret = resolveSecret(combined.validation_context_sds_secret_config, `${path}.validation_context_sds_secret_config`, options, diags);
        if (secret && !secret.validation_context) {
          invalid(diags, `${path}.validation_context_sds_secret_config`, `SDS secret "${secret.name}" is not a validation_context`);
        }
        dynamic = secret?.validation_context ?? undefined;
      }
      if (combined.validation_context_certificate_provider || combined.validation_context_certificate_provider_instance) {
        unsupported(diags, path, 'certificate providers are not supported');
      }
      if (!def && !dynamic) return undefined;
      if (!def) return { context: dynamic!, path };
      if (!dynamic) return { context: def, path: `${path}.default_validation_context` };
      return { context: mergeValidation(def, dynamic), path };
    }
    case undefined:
      return undefined;
    default:
      unsupported(diags, `${base}.${common.validation_context_type}`, `${common.validation_context_type} is not supported`);
      return undefined;
  }
}

/**
 * common.proto CombinedCertificateValidationContext: the SDS context is merged into the default one
 * (protobuf MergeFrom: set singular fields replace, repeated fields append).
 */
function mergeValidation(
  def: CertificateValidationContext__Output,
  dyn: CertificateValidationContext__Output,
): CertificateValidationContext__Output {
  return {
    ...def,
    trusted_ca: dyn.trusted_ca ?? def.trusted_ca,
    crl: dyn.crl ?? def.crl,
    verify_certificate_hash: [...def.verify_certificate_hash, ...dyn.verify_certificate_hash],
    verify_certificate_spki: [...def.verify_certificate_spki, ...dyn.verify_certificate_spki],
    match_subject_alt_names: [...def.match_subject_alt_names, ...dyn.match_subject_alt_names],
    match_typed_subject_alt_names: [...def.match_typed_subject_alt_names, ...dyn.match_typed_subject_alt_names],
    allow_expired_certificate: def.allow_expired_certificate || dyn.allow_expired_certificate,
    trust_chain_verification: dyn.trust_chain_verification !== 'VERIFY_TRUST_CHAIN' ? dyn.trust_chain_verification : def.trust_chain_verification,
    custom_validator_config: dyn.custom_validator_config ?? def.custom_validator_config,
  };
}

// ---------------------------------------------------------------------------------------------------
// Peer validation

type SanType = 'DNS' | 'URI' | 'EMAIL' | 'IP_ADDRESS';

interface SanMatcher {
  readonly type: SanType;
  readonly matcher: CompiledStringMatcher;
  /** For DNS `exact` matchers: the expected name, lowercased, matched with RFC 6125 wildcard rules. */
  readonly dnsExact: string | undefined;
}

interface CompiledValidation {
  /** trusted_ca is set and trust_chain_verification is VERIFY_TRUST_CHAIN. */
  readonly verifyChain: boolean;
  readonly allowExpired: boolean;
  readonly sanMatchers: readonly SanMatcher[];
  /** Lowercase hex SHA-256 of the DER certificate, colons removed. */
  readonly hashes: ReadonlySet<string>;
  /** Base64 SHA-256 of the DER SubjectPublicKeyInfo. */
  readonly spkis: ReadonlySet<string>;
  /** SAN, hash or SPKI checks are configured, which makes a peer certificate mandatory. */
  readonly hasPeerChecks: boolean;
}

const LEGACY_SAN_TYPES: readonly SanType[] = ['DNS', 'URI', 'EMAIL', 'IP_ADDRESS'];

function compileValidation(
  vc: CertificateValidationContext__Output,
  path: string,
  read: DataSourceReader,
  out: tls.SecureContextOptions,
  diags: Diagnostic[],
): CompiledValidation {
  const ca = readAt(vc.trusted_ca, `${path}.trusted_ca`, read, diags);
  if (ca) {
    try {
      new X509Certificate(ca);
      out.ca = ca;
      // common.proto trusted_ca: X509_V_FLAG_PARTIAL_CHAIN is set, so an intermediate can be the anchor.
      out.allowPartialTrustChain = true;
    } catch (err) {
      invalid(diags, sourcePath(vc.trusted_ca, `${path}.trusted_ca`), `${describeSource(vc.trusted_ca)} holds no PEM certificate: ${(err as Error).message}`);
    }
  }
  const crl = readAt(vc.crl, `${path}.crl`, read, diags);
  if (crl) out.crl = crl;
  if (vc.custom_validator_config) unsupported(diags, `${path}.custom_validator_config`, 'custom certificate validators are not supported');
  if (vc.ca_certificate_provider_instance) unsupported(diags, `${path}.ca_certificate_provider_instance`, 'certificate providers are not supported');

  const sink = { diagnostics: diags };
  const sanMatchers: SanMatcher[] = [];
  const compileSan = (type: SanType, sm: StringMatcher__Output, at: string): void => {
    const matcher = compileStringMatcher(sm, at, sink);
    const dnsExact = type === 'DNS' && sm.match_pattern === 'exact' ? (sm.exact ?? '').toLowerCase() : undefined;
    sanMatchers.push({ type, matcher, dnsExact });
  };
  vc.match_typed_subject_alt_names.forEach((m, i) => {
    const at = `${path}.match_typed_subject_alt_names[${i}]`;
    if (!m.matcher) return invalid(diags, `${at}.matcher`, 'matcher is required');
    if (m.san_type === 'OTHER_NAME') return unsupported(diags, `${at}.san_type`, 'OTHER_NAME SANs are not supported');
    if (m.san_type === 'SAN_TYPE_UNSPECIFIED') return invalid(diags, `${at}.san_type`, 'san_type must be set');
    compileSan(m.san_type, m.matcher, `${at}.matcher`);
  });
  // The deprecated field is ignored when the typed one is set; otherwise each matcher applies to the
  // DNS, URI, email and IP SANs alike, as Envoy's default validator does.
  if (vc.match_typed_subject_alt_names.length === 0) {
    vc.match_subject_alt_names.forEach((sm, i) => {
      for (const type of LEGACY_SAN_TYPES) compileSan(type, sm, `${path}.match_subject_alt_names[${i}]`);
    });
  }
  const hashes = new Set<string>();
  vc.verify_certificate_hash.forEach((h, i) => {
    const hex = h.replace(/:/g, '').toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(hex)) return invalid(diags, `${path}.verify_certificate_hash[${i}]`, `"${h}" is not a hex SHA-256 hash`);
    hashes.add(hex);
  });
  const spkis = new Set<string>();
  vc.verify_certificate_spki.forEach((s, i) => {
    if (Buffer.from(s, 'base64').length !== 32 || s.length !== 44) {
      return invalid(diags, `${path}.verify_certificate_spki[${i}]`, `"${s}" is not a base64 SHA-256 hash`);
    }
    spkis.add(s);
  });
  return {
    verifyChain: ca !== undefined && vc.trust_chain_verification === 'VERIFY_TRUST_CHAIN',
    allowExpired: vc.allow_expired_certificate,
    sanMatchers,
    hashes,
    spkis,
    hasPeerChecks: sanMatchers.length > 0 || hashes.size > 0 || spkis.size > 0,
  };
}

/** The per-connection side: decides whether a handshaken peer is acceptable. */
class PeerVerifier {
  readonly #v: CompiledValidation | undefined;
  readonly #requireCert: boolean;
  readonly #requireSni: boolean;
  readonly #spiffeTrustDomain: string | undefined;

  constructor(v: CompiledValidation | undefined, requireCert: boolean, requireSni: boolean, spiffeTrustDomain?: string) {
    this.#v = v;
    this.#requireCert = requireCert;
    this.#requireSni = requireSni;
    this.#spiffeTrustDomain = v !== undefined ? spiffeTrustDomain : undefined;
  }

  verify(peer: tls.TLSSocket | tls.PeerCertificate): PeerFailure | undefined {
    return peer instanceof tls.TLSSocket ? this.verifySocket(peer) : this.verifyCertificate(peer);
  }

  verifySocket(socket: tls.TLSSocket): PeerFailure | undefined {
    if (this.#requireSni && !(socket as tls.TLSSocket & { servername?: string | false }).servername) {
      return { stat: 'connection_error', message: 'TLS handshake without SNI, and require_sni is set' };
    }
    const v = this.#v;
    if (v === undefined && !this.#requireCert) return undefined;
    const cert = socket.getPeerCertificate();
    if (!cert || !cert.raw) return this.#requireCert ? { stat: 'fail_verify_no_cert', message: 'peer did not present a certificate' } : undefined;
    if (v === undefined) return undefined;
    if (v.verifyChain && !socket.authorized) {
      const reason = String(socket.authorizationError ?? 'unknown error');
      // Node reports only the first verification error; expiry is the one allow_expired_certificate waives.
      if (!(v.allowExpired && reason === 'CERT_HAS_EXPIRED')) return { stat: 'fail_verify_error', message: `verify cert failed: ${reason}` };
    }
    return this.verifyCertificate(cert);
  }

  /** SAN matchers, then certificate hash/SPKI pins, in the order Envoy's default validator applies them. */
  verifyCertificate(cert: tls.PeerCertificate): PeerFailure | undefined {
    const v = this.#v;
    if (v === undefined) return undefined;
    if (this.#spiffeTrustDomain !== undefined) {
      const bad = checkSvid(cert, this.#spiffeTrustDomain);
      if (bad !== undefined) return bad;
    }
    if (v.sanMatchers.length > 0 && !matchesAnySan(v.sanMatchers, parseSubjectAltNames(cert.subjectaltname))) {
      return { stat: 'fail_verify_san', message: 'verify cert failed: SAN matcher' };
    }
    if (v.hashes.size > 0 || v.spkis.size > 0) {
      const hashOk = v.hashes.size > 0 && cert.fingerprint256 !== undefined && v.hashes.has(cert.fingerprint256.replace(/:/g, '').toLowerCase());
      if (!hashOk && !(v.spkis.size > 0 && cert.raw && v.spkis.has(spkiHash(cert.raw)))) {
        return { stat: 'fail_verify_cert_hash', message: 'verify cert failed: cert hash and spki' };
      }
    }
    return undefined;
  }
}

/**
 * Finishes the server side of a handshake on a TLSSocket built with `new tls.TLSSocket(socket, { isServer })`
 * (the listener does this so that each filter chain and connection can pick its context and ALPN list).
 * Only `tls.Server` runs this step itself (lib/_tls_wrap.js onServerSocketSecure), so without it:
 * - `secureConnecting` stays true, and node:http2 waits for a 'secureConnect' that a server socket never
 *   emits: an h2-over-TLS session would never start.
 * - `authorized`/`authorizationError` are never set: Node's OpenSSL verify callback accepts every chain
 *   and leaves the verdict to this step (SSL_get_verify_result).
 * Call it on 'secure', before `checkPeer`.
 */
export function completeServerHandshake(socket: tls.TLSSocket, requestCert: boolean): void {
  const s = socket as tls.TLSSocket & { secureConnecting?: boolean; ssl?: { verifyError?: () => (Error & { code?: string }) | null } };
  s.secureConnecting = false;
  if (!requestCert) return;
  const verifyError = s.ssl?.verifyError?.() ?? null;
  if (verifyError) {
    socket.authorized = false;
    (socket as { authorizationError: Error | string }).authorizationError = verifyError.code ?? verifyError.message;
  } else {
    socket.authorized = true;
  }
}

/**
 * Classifies an error from a failed handshake (a TLSSocket 'error' before 'secure'/'secureConnect') as the
 * Envoy `ssl.*` stat it counts, by OpenSSL/Node error code.
 */
export function handshakeFailureStat(err: Error): PeerFailureStat {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE') return 'fail_verify_no_cert';
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return 'fail_verify_san';
  // Chain errors (Node reports X509_V_ERR_* names): UNABLE_TO_VERIFY_LEAF_SIGNATURE, CERT_HAS_EXPIRED, ...
  if (code.startsWith('UNABLE_TO_') || code.startsWith('CERT_') || code.includes('SELF_SIGNED') || code === 'ERR_SSL_CERTIFICATE_VERIFY_FAILED') {
    return 'fail_verify_error';
  }
  return 'connection_error';
}

/** The peer leaf is an X.509-SVID of `trustDomain`: one URI SAN, `spiffe://<trustDomain>/...`, not a CA. */
export function checkSvid(cert: tls.PeerCertificate, trustDomain: string): PeerFailure | undefined {
  if (cert.ca === true) return { stat: 'fail_verify_error', message: 'verify cert failed: SPIFFE leaf is a CA certificate' };
  const uris = parseSubjectAltNames(cert.subjectaltname).filter((s) => s.type === 'URI');
  if (uris.length !== 1) return { stat: 'fail_verify_san', message: `verify cert failed: an X.509-SVID has exactly one URI SAN (found ${uris.length})` };
  const id = uris[0].value;
  const prefix = `spiffe://${trustDomain}/`;
  if (!id.startsWith(prefix) || id.length === prefix.length) {
    return { stat: 'fail_verify_san', message: `verify cert failed: SPIFFE ID ${JSON.stringify(id)} is not in trust domain ${trustDomain}` };
  }
  return undefined;
}

function spkiHash(der: Buffer): string {
  const spki = new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

interface San {
  readonly type: SanType;
  readonly value: string;
}

/** Node's SAN label → Envoy SAN type. Other names, directory names and registered IDs are not matched. */
const SAN_LABELS: Readonly<Record<string, SanType>> = { DNS: 'DNS', URI: 'URI', email: 'EMAIL', 'IP Address': 'IP_ADDRESS' };

/**
 * Parses Node's `subjectaltname` text: `DNS:a.example, URI:spiffe://td/ns/x/sa/y, IP Address:10.0.0.1`.
 * Node writes a value containing a separator, quote or control character as a JSON string literal
 * (CVE-2021-44532 fix), so quoted values are decoded with JSON.parse. IP addresses are normalised to the
 * text Envoy matches against (dotted IPv4, RFC 5952 IPv6).
 */
export function parseSubjectAltNames(text: string | undefined): San[] {
  const out: San[] = [];
  if (!text) return out;
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const label = text.slice(i, colon);
    let value: string;
    let next: number;
    if (text[colon + 1] === '"') {
      let j = colon + 2;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      try {
        value = JSON.parse(text.slice(colon + 1, j + 1)) as string;
      } catch {
        value = '';
      }
      next = text.indexOf(', ', j);
    } else {
      next = text.indexOf(', ', colon);
      value = text.slice(colon + 1, next < 0 ? text.length : next);
    }
    const type = SAN_LABELS[label];
    if (type === 'IP_ADDRESS') {
      const ip = parseIp(value);
      out.push({ type, value: ip ? formatIp(ip) : value });
    } else if (type !== undefined) {
      out.push({ type, value });
    }
    if (next < 0) break;
    i = next + 2;
  }
  return out;
}

/** match_typed_subject_alt_names: "any" semantics, a SAN of the matcher's type satisfying any matcher. */
function matchesAnySan(matchers: readonly SanMatcher[], sans: readonly San[]): boolean {
  for (const m of matchers) {
    for (const san of sans) {
      if (san.type !== m.type) continue;
      if (m.dnsExact !== undefined ? dnsNameMatch(m.dnsExact, san.value) : matchString(m.matcher, san.value)) return true;
    }
  }
  return false;
}

/**
 * An exact DNS matcher against a certificate DNS SAN, which may be a wildcard: `*.example.com` covers
 * exactly one leading label (RFC 6125 §6.4.3), as the CertificateValidationContext docs describe.
 */
function dnsNameMatch(expected: string, san: string): boolean {
  const name = san.toLowerCase();
  if (name === expected) return true;
  if (!name.startsWith('*.')) return false;
  const dot = expected.indexOf('.');
  return dot > 0 && expected.slice(dot) === name.slice(1);
}

// ---------------------------------------------------------------------------------------------------
// helpers

function buildSecureContext(o: tls.SecureContextOptions, diags: Diagnostic[]): tls.SecureContext | undefined {
  if (diags.length > 0) return undefined;
  try {
    return tls.createSecureContext(o);
  } catch (err) {
    invalid(diags, 'common_tls_context', `OpenSSL rejected the TLS context: ${(err as Error).message}`);
    return undefined;
  }
}

/** Reads a DataSource, recording SLOOP_ERR_CONFIG_UNREADABLE at its path (with the file name) on failure. */
function readAt(ds: DataSource__Output | null, path: string, read: DataSourceReader, diags: Diagnostic[]): Buffer | undefined {
  try {
    return read(ds);
  } catch (err) {
    const code: ErrorCode =
      err instanceof Error && 'code' in err && typeof err.code === 'string' && err.code.startsWith('SLOOP_ERR_') ? (err.code as ErrorCode) : 'SLOOP_ERR_CONFIG_UNREADABLE';
    const message = (err as Error).message;
    const named = ds?.specifier === 'filename' && ds.filename && message.includes(ds.filename);
    diags.push({ severity: 'error', code, path: sourcePath(ds, path), message: named ? message : `cannot read ${describeSource(ds)}: ${message}` });
    return undefined;
  }
}

/** `…certificate_chain.filename` for file sources, so the path names the field that holds the file name. */
function sourcePath(ds: DataSource__Output | null, path: string): string {
  return ds?.specifier ? `${path}.${ds.specifier}` : path;
}

/** A DataSource for messages: the file name for files; never the inline content, which may be a key. */
function describeSource(ds: DataSource__Output | null): string {
  if (ds?.specifier === 'filename') return `file "${ds.filename}"`;
  if (ds?.specifier === 'environment_variable') return `environment variable ${ds.environment_variable}`;
  return ds?.specifier ? `the ${ds.specifier} value` : 'the data source';
}

function durationSeconds(d: Duration__Output): number {
  return Math.floor(Number(d.seconds) + d.nanos / 1e9);
}

function invalid(diags: Diagnostic[], path: string, message: string): void {
  diags.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', path, message });
}

function unsupported(diags: Diagnostic[], path: string, message: string): void {
  diags.push({ severity: 'error', code: 'SLOOP_ERR_CONFIG_UNSUPPORTED', path, message });
}
