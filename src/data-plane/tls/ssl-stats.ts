/**
 * Envoy's TLS transport socket statistics ("TLS statistics" in Envoy's docs), rooted at `<scope>.ssl.`:
 * `listener.<addr>.ssl.*` for downstream TLS and `cluster.<name>.ssl.*` for upstream TLS.
 */
import type tls from 'node:tls';
import type { Counter, StatsScope } from '../stats/store.ts';
import type { PeerFailureStat } from './context.ts';

/** Per-value counters (`ssl.versions.*`, `ssl.ciphers.*`) are few and fixed by config; cap them anyway. */
const MAX_NAMED_COUNTERS = 64;

/** The `ssl.*` counters of one listener or cluster. Look them up once; per connection only `inc()` runs. */
export class SslStats {
  readonly handshake: Counter;
  readonly connection_error: Counter;
  readonly no_certificate: Counter;
  readonly session_reused: Counter;
  readonly fail_verify_no_cert: Counter;
  readonly fail_verify_error: Counter;
  readonly fail_verify_san: Counter;
  readonly fail_verify_cert_hash: Counter;
  readonly #scope: StatsScope;
  readonly #named = new Map<string, Counter>();

  /** `scope` is the listener or cluster scope; counters go under its `ssl.` prefix. */
  constructor(scope: StatsScope) {
    this.#scope = scope;
    this.handshake = scope.counter('ssl.handshake');
    this.connection_error = scope.counter('ssl.connection_error');
    this.no_certificate = scope.counter('ssl.no_certificate');
    this.session_reused = scope.counter('ssl.session_reused');
    this.fail_verify_no_cert = scope.counter('ssl.fail_verify_no_cert');
    this.fail_verify_error = scope.counter('ssl.fail_verify_error');
    this.fail_verify_san = scope.counter('ssl.fail_verify_san');
    this.fail_verify_cert_hash = scope.counter('ssl.fail_verify_cert_hash');
  }

  /** A completed and accepted handshake: `handshake`, `session_reused`, `no_certificate`, version and cipher. */
  onHandshake(t: tls.TLSSocket): void {
    this.handshake.inc();
    if (t.isSessionReused()) this.session_reused.inc();
    if (t.getPeerCertificate()?.raw === undefined) this.no_certificate.inc();
    const version = t.getProtocol();
    if (version) this.#countNamed(`ssl.versions.${version}`);
    const cipher = t.getCipher()?.name;
    if (cipher) this.#countNamed(`ssl.ciphers.${cipher}`);
  }

  /** A failed handshake or refused peer: its reason, and Envoy's catch-all `connection_error`. */
  onFailure(stat: PeerFailureStat): void {
    if (stat !== 'connection_error') this[stat].inc();
    this.connection_error.inc();
  }

  #countNamed(name: string): void {
    let c = this.#named.get(name);
    if (c === undefined) {
      if (this.#named.size >= MAX_NAMED_COUNTERS) return;
      this.#named.set(name, (c = this.#scope.counter(name)));
    }
    c.inc();
  }
}
