import { SloopError } from '../errors.ts';

/** Fraction of a certificate's lifetime after which it is renewed (SPIFFE and Istio renew at half life). */
export const RENEW_AT_LIFETIME_FRACTION = 0.5;
/** Default spread of renewal times, as a fraction of the lifetime (±5 %: ±72 min on a 24 h certificate). */
export const DEFAULT_RENEW_JITTER_FRACTION = 0.05;

export interface RenewalOptions {
  /** Uniform random number in [0, 1), injected so tests are deterministic. */
  random: () => number;
  /** Spread around half life, as a fraction of the lifetime, in [0, 0.5). Default 0.05. */
  jitterFraction?: number;
}

/** The validity window of a certificate, in ms since the epoch. */
export interface Validity {
  notBeforeMs: number;
  notAfterMs: number;
}

/**
 * When to renew a certificate: at half its lifetime, moved by up to ±jitterFraction of the lifetime, so that
 * workloads started together do not all renew at the same moment. The result always lies strictly inside the
 * validity window. Throws SloopError `SLOOP_ERR_CA_INVALID_TTL` on an empty window or a jitter outside [0, 0.5).
 */
export function computeRenewalTimeMs(validity: Validity, options: RenewalOptions): number {
  const lifetime = validity.notAfterMs - validity.notBeforeMs;
  if (!(lifetime > 0)) throw new SloopError('SLOOP_ERR_CA_INVALID_TTL', `certificate validity window is empty (${lifetime} ms)`);
  const jitter = options.jitterFraction ?? DEFAULT_RENEW_JITTER_FRACTION;
  if (!(jitter >= 0 && jitter < 0.5)) throw new SloopError('SLOOP_ERR_CA_INVALID_TTL', `renewal jitter ${jitter} is outside [0, 0.5)`);
  const r = options.random();
  const unit = Math.min(Math.max(r, 0), 1); // a misbehaving random source must not push renewal past expiry
  const fraction = RENEW_AT_LIFETIME_FRACTION + jitter * (2 * unit - 1);
  return validity.notBeforeMs + Math.floor(lifetime * fraction);
}

/** Milliseconds from `nowMs` until renewal is due; 0 when it already is. */
export function renewalDelayMs(renewAtMs: number, nowMs: number): number {
  return Math.max(0, renewAtMs - nowMs);
}

/** Whether a certificate renewed at `renewAtMs` is due at `nowMs`. */
export function isRenewalDue(renewAtMs: number, nowMs: number): boolean {
  return nowMs >= renewAtMs;
}
