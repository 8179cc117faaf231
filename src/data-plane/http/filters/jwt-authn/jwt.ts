/**
 * JWT parsing and claim checks with Envoy's jwt_verify_lib semantics and status strings (they are the 401 bodies).
 * Signatures are checked in jwks.ts with `jose`.
 */

/** Envoy's jwt_verify_lib statuses used here, by their response text. */
export const JwtStatus = {
  Ok: 'OK',
  JwtMissed: 'Jwt is missing',
  JwtNotYetValid: 'Jwt not yet valid',
  JwtExpired: 'Jwt is expired',
  JwtBadFormat: 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections',
  JwtHeaderParseErrorBadBase64: 'Jwt header is an invalid Base64url encoded',
  JwtHeaderParseErrorBadJson: 'Jwt header is an invalid JSON',
  JwtHeaderBadAlg: 'Jwt header [alg] field is required and must be a string',
  JwtHeaderNotImplementedAlg: 'Jwt header [alg] is not supported',
  JwtHeaderBadKid: 'Jwt header [kid] field is not a string',
  JwtPayloadParseErrorBadBase64: 'Jwt payload is an invalid Base64url encoded',
  JwtPayloadParseErrorBadJson: 'Jwt payload is an invalid JSON',
  JwtPayloadParseErrorIssNotString: 'Jwt payload [iss] field is not a string',
  JwtPayloadParseErrorSubNotString: 'Jwt payload [sub] field is not a string',
  JwtPayloadParseErrorIatNotInteger: 'Jwt payload [iat] field is not an integer',
  JwtPayloadParseErrorIatOutOfRange: 'Jwt payload [iat] field is not a positive 64 bit integer',
  JwtPayloadParseErrorNbfNotInteger: 'Jwt payload [nbf] field is not an integer',
  JwtPayloadParseErrorNbfOutOfRange: 'Jwt payload [nbf] field is not a positive 64 bit integer',
  JwtPayloadParseErrorExpNotInteger: 'Jwt payload [exp] field is not an integer',
  JwtPayloadParseErrorExpOutOfRange: 'Jwt payload [exp] field is not a positive 64 bit integer',
  JwtPayloadParseErrorJtiNotString: 'Jwt payload [jti] field is not a string',
  JwtPayloadParseErrorAudNotString: 'Jwt payload [aud] field is not a string or string list',
  JwtSignatureParseErrorBadBase64: 'Jwt signature is an invalid Base64url encoded',
  JwtUnknownIssuer: 'Jwt issuer is not configured',
  JwtAudienceNotAllowed: 'Audiences in Jwt are not allowed',
  JwtVerificationFail: 'Jwt verification fails',
  JwksParseError: 'Jwks is an invalid JSON',
  JwksNoKeys: 'Jwks does not have [keys] field',
  JwksBadKeys: '[keys] in Jwks is not an array',
  JwksNoValidKeys: "Jwks doesn't have any valid public key",
  JwksKidAlgMismatch: "Jwks doesn't have key to match kid or alg from Jwt",
  JwksFetchFail: 'Jwks remote fetch is failed',
} as const;

export type JwtStatusText = (typeof JwtStatus)[keyof typeof JwtStatus];

/** The algorithms Envoy's jwt_authn supports; anything else (`none` included) is "not supported". */
export const SUPPORTED_ALGS: ReadonlySet<string> = new Set([
  'ES256', 'ES384', 'ES512', 'HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA',
]);

/** A parsed (not yet verified) JWT. */
export interface ParsedJwt {
  token: string;
  alg: string;
  kid: string;
  header: Record<string, unknown>;
  payload: Record<string, unknown>;
  /** The payload segment as in the token (base64url, unpadded). */
  payloadB64: string;
  iss: string;
  sub: string;
  audiences: string[];
  /** 0 when absent. */
  exp: number;
  nbf: number;
  iat: number;
}

const B64URL = /^[A-Za-z0-9_-]*$/;

function decodeSegment(s: string): unknown {
  if (!B64URL.test(s)) return undefined;
  return Buffer.from(s, 'base64url').toString('utf8');
}

function parseJsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** A numeric date claim: 0 when absent, else a non-negative integer, else the status. */
function intClaim(v: unknown, notInt: JwtStatusText, outOfRange: JwtStatusText): number | JwtStatusText {
  if (v === undefined) return 0;
  if (typeof v !== 'number' || !Number.isFinite(v)) return notInt;
  if (v < 0) return outOfRange;
  return Math.floor(v);
}

/** Parses a compact JWS as jwt_verify_lib's Jwt::parseFromString: a ParsedJwt, or the failing status. */
export function parseJwt(token: string): ParsedJwt | JwtStatusText {
  const parts = token.split('.');
  if (parts.length !== 3) return JwtStatus.JwtBadFormat;
  const [h, p, s] = parts as [string, string, string];
  const headerText = decodeSegment(h);
  if (headerText === undefined) return JwtStatus.JwtHeaderParseErrorBadBase64;
  const header = parseJsonObject(headerText as string);
  if (header === undefined) return JwtStatus.JwtHeaderParseErrorBadJson;
  if (typeof header.alg !== 'string') return JwtStatus.JwtHeaderBadAlg;
  if (!SUPPORTED_ALGS.has(header.alg)) return JwtStatus.JwtHeaderNotImplementedAlg;
  if (header.kid !== undefined && typeof header.kid !== 'string') return JwtStatus.JwtHeaderBadKid;
  const payloadText = decodeSegment(p);
  if (payloadText === undefined) return JwtStatus.JwtPayloadParseErrorBadBase64;
  const payload = parseJsonObject(payloadText as string);
  if (payload === undefined) return JwtStatus.JwtPayloadParseErrorBadJson;
  if (payload.iss !== undefined && typeof payload.iss !== 'string') return JwtStatus.JwtPayloadParseErrorIssNotString;
  if (payload.sub !== undefined && typeof payload.sub !== 'string') return JwtStatus.JwtPayloadParseErrorSubNotString;
  const iat = intClaim(payload.iat, JwtStatus.JwtPayloadParseErrorIatNotInteger, JwtStatus.JwtPayloadParseErrorIatOutOfRange);
  if (typeof iat === 'string') return iat;
  const nbf = intClaim(payload.nbf, JwtStatus.JwtPayloadParseErrorNbfNotInteger, JwtStatus.JwtPayloadParseErrorNbfOutOfRange);
  if (typeof nbf === 'string') return nbf;
  const exp = intClaim(payload.exp, JwtStatus.JwtPayloadParseErrorExpNotInteger, JwtStatus.JwtPayloadParseErrorExpOutOfRange);
  if (typeof exp === 'string') return exp;
  if (payload.jti !== undefined && typeof payload.jti !== 'string') return JwtStatus.JwtPayloadParseErrorJtiNotString;
  let audiences: string[] = [];
  if (typeof payload.aud === 'string') audiences = [payload.aud];
  else if (Array.isArray(payload.aud)) {
    if (!payload.aud.every((a) => typeof a === 'string')) return JwtStatus.JwtPayloadParseErrorAudNotString;
    audiences = payload.aud as string[];
  } else if (payload.aud !== undefined) return JwtStatus.JwtPayloadParseErrorAudNotString;
  if (!B64URL.test(s)) return JwtStatus.JwtSignatureParseErrorBadBase64;
  return {
    token,
    alg: header.alg,
    kid: (header.kid as string | undefined) ?? '',
    header,
    payload,
    payloadB64: p,
    iss: (payload.iss as string | undefined) ?? '',
    sub: (payload.sub as string | undefined) ?? '',
    audiences,
    exp,
    nbf,
    iat,
  };
}

/** jwt_verify_lib verifyTimeConstraint: nbf and exp with the clock skew (seconds). */
export function checkTime(jwt: ParsedJwt, nowSec: number, skewSec: number): JwtStatusText {
  if (jwt.nbf !== 0 && nowSec + skewSec < jwt.nbf) return JwtStatus.JwtNotYetValid;
  if (jwt.exp !== 0 && nowSec > jwt.exp + skewSec) return JwtStatus.JwtExpired;
  return JwtStatus.Ok;
}

/** jwt_verify_lib CheckAudience's normalization: no `http://` / `https://` prefix, no trailing `/`. */
export function sanitizeAudience(a: string): string {
  let s = a;
  if (s.startsWith('http://')) s = s.slice(7);
  else if (s.startsWith('https://')) s = s.slice(8);
  if (s.endsWith('/')) s = s.slice(0, -1);
  return s;
}

/** An audience checker: empty config allows every token; otherwise one of the token's audiences must be listed. */
export class AudienceCheck {
  private readonly allowed: ReadonlySet<string>;

  constructor(audiences: readonly string[]) {
    this.allowed = new Set(audiences.map(sanitizeAudience));
  }

  allows(tokenAudiences: readonly string[]): boolean {
    if (this.allowed.size === 0) return true;
    return tokenAudiences.some((a) => this.allowed.has(sanitizeAudience(a)));
  }
}

/** A claim by dotted path (`a.b.c`), as claim_to_headers reads nested claims. */
export function claimAt(payload: Record<string, unknown>, path: string): unknown {
  let cur: unknown = payload;
  for (const part of path.split('.')) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/** claim_to_headers' rendering: strings as they are, numbers (integers without a fraction), booleans; else undefined. */
export function claimHeaderValue(v: unknown): string | undefined {
  if (typeof v === 'string') return v === '' ? undefined : v;
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number' && Number.isFinite(v)) {
    // Envoy: unsigned integers print as integers, other numbers as std::to_string (6 decimals).
    return Number.isInteger(v) && v >= 0 ? String(v) : v.toFixed(6);
  }
  return undefined;
}
