/**
 * Bootstrap tokens: how a workload's agent proves who it is when it first asks the CA for a certificate
 * (`authorization: Bearer <token>` on CreateCertificate). Each token is 256 random bits bound to exactly one
 * identity (namespace, service account) in the CA's trust domain; the CA signs only CSRs for that identity.
 *
 * The store keeps SHA-256 digests of the tokens, never the tokens themselves, in `tokens.json` in the CA's state
 * directory (mode 0600, written to a temporary name and renamed), so a restart keeps every token valid and a copy
 * of the file does not let anyone authenticate. A token is shown once, when it is minted.
 *
 * Lookups compare digests with `crypto.timingSafeEqual`: the time taken does not depend on how much of a guessed
 * token matches a real one.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SloopError } from '../../shared/errors.ts';
import { formatWorkloadSpiffeId, DEFAULT_TRUST_DOMAIN, type WorkloadIdentity } from '../../shared/identity/spiffe.ts';

/** File name of the token store inside the CA state directory. */
export const TOKENS_FILE = 'tokens.json';
/** Random bytes per token (256 bits). */
const TOKEN_BYTES = 32;
/** Tokens are base64url: 43 characters for 32 bytes. Anything else is refused before hashing. */
const TOKEN_RE = /^[A-Za-z0-9_-]{43}$/;

interface StoredToken {
  /** Lowercase hex SHA-256 of the token's UTF-8 text. */
  sha256: string;
  namespace: string;
  serviceAccount: string;
  /** ISO time the token was minted. */
  created: string;
}

interface TokenFile {
  version: 1;
  tokens: StoredToken[];
}

export interface TokenStoreOptions {
  /** The CA state directory (created 0700 if missing). */
  dir: string;
  /** Trust domain the identities belong to; only used to check that an identity forms a SPIFFE ID. */
  trustDomain?: string;
  nowMs?: () => number;
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

function unreadable(message: string, cause?: unknown): SloopError {
  return new SloopError('SLOOP_ERR_CA_ROOT_UNREADABLE', message, cause === undefined ? undefined : { cause });
}

/**
 * The bootstrap tokens of one CA. `open()` loads the file (or starts empty). `authenticate()` re-reads the file
 * when it changed on disk, so tokens minted by another process (`sloop ca token`) are accepted without a restart.
 */
export class TokenStore {
  readonly path: string;
  readonly #dir: string;
  readonly #trustDomain: string;
  readonly #nowMs: () => number;
  /** hex digest → entry */
  #entries = new Map<string, StoredToken>();
  #mtimeMs = -1;
  #size = -1;

  private constructor(o: TokenStoreOptions) {
    this.#dir = o.dir;
    this.path = join(o.dir, TOKENS_FILE);
    this.#trustDomain = o.trustDomain ?? DEFAULT_TRUST_DOMAIN;
    this.#nowMs = o.nowMs ?? Date.now;
  }

  /** Opens the store in `dir`; a missing file is an empty store. Throws SloopError on an unreadable or corrupt file. */
  static async open(o: TokenStoreOptions): Promise<TokenStore> {
    const store = new TokenStore(o);
    await store.#reload(true);
    return store;
  }

  /** Number of tokens held. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Mints a token bound to `identity` and persists it before returning. The token is returned once and
   * never stored in clear. Throws SloopError `SLOOP_ERR_CA_INVALID_SPIFFE_ID` for an identity that cannot
   * form a SPIFFE ID.
   */
  async mint(identity: WorkloadIdentity): Promise<string> {
    formatWorkloadSpiffeId(this.#trustDomain, identity); // validates namespace and service account
    await this.#reload(false); // keep tokens another process minted
    const token = randomBytes(TOKEN_BYTES).toString('base64url');
    const entry: StoredToken = {
      sha256: digest(token).toString('hex'),
      namespace: identity.namespace,
      serviceAccount: identity.serviceAccount,
      created: new Date(this.#nowMs()).toISOString(),
    };
    this.#entries.set(entry.sha256, entry);
    await this.#save();
    return token;
  }

  /**
   * The identity a token is bound to, or undefined for a malformed or unknown token. Re-reads the file first
   * if it changed on disk. Never throws for bad input.
   */
  async authenticate(token: string | undefined): Promise<WorkloadIdentity | undefined> {
    if (typeof token !== 'string' || !TOKEN_RE.test(token)) return undefined;
    try {
      await this.#reload(false);
    } catch {
      // A file that became unreadable keeps the last good tokens in memory.
    }
    return this.authenticateSync(token);
  }

  /** `authenticate` against the tokens in memory, without looking at the file. */
  authenticateSync(token: string | undefined): WorkloadIdentity | undefined {
    if (typeof token !== 'string' || !TOKEN_RE.test(token)) return undefined;
    const presented = digest(token);
    const entry = this.#entries.get(presented.toString('hex'));
    // The map lookup is keyed by a digest the caller cannot steer; the final comparison is constant-time anyway.
    if (entry === undefined || !timingSafeEqual(presented, Buffer.from(entry.sha256, 'hex'))) return undefined;
    return { namespace: entry.namespace, serviceAccount: entry.serviceAccount };
  }

  /** Removes every token bound to `identity`; returns how many were removed. */
  async revoke(identity: WorkloadIdentity): Promise<number> {
    await this.#reload(false);
    let n = 0;
    for (const [k, e] of this.#entries) {
      if (e.namespace === identity.namespace && e.serviceAccount === identity.serviceAccount) {
        this.#entries.delete(k);
        n++;
      }
    }
    if (n > 0) await this.#save();
    return n;
  }

  async #reload(initial: boolean): Promise<void> {
    let st;
    try {
      st = await stat(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        if (initial) this.#entries = new Map();
        return;
      }
      throw unreadable(`cannot stat token store ${this.path}`, err);
    }
    if (!initial && st.mtimeMs === this.#mtimeMs && st.size === this.#size) return;
    let parsed: TokenFile;
    try {
      parsed = JSON.parse(await readFile(this.path, 'utf8')) as TokenFile;
    } catch (err) {
      throw unreadable(`cannot read token store ${this.path}`, err);
    }
    if (parsed?.version !== 1 || !Array.isArray(parsed.tokens)) throw unreadable(`token store ${this.path} is not a Sloop token file (version 1)`);
    const entries = new Map<string, StoredToken>();
    for (const t of parsed.tokens) {
      if (typeof t?.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(t.sha256) || typeof t.namespace !== 'string' || typeof t.serviceAccount !== 'string') {
        throw unreadable(`token store ${this.path} holds a malformed entry`);
      }
      entries.set(t.sha256, t);
    }
    this.#entries = entries;
    this.#mtimeMs = st.mtimeMs;
    this.#size = st.size;
  }

  async #save(): Promise<void> {
    const body: TokenFile = { version: 1, tokens: [...this.#entries.values()] };
    const tmp = `${this.path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      await mkdir(this.#dir, { recursive: true, mode: 0o700 });
      await writeFile(tmp, JSON.stringify(body, null, 2) + '\n', { mode: 0o600 });
      await chmod(tmp, 0o600); // the umask may have narrowed it further, never widened: make it exact
      await rename(tmp, this.path);
      const st = await stat(this.path);
      this.#mtimeMs = st.mtimeMs;
      this.#size = st.size;
    } catch (err) {
      throw unreadable(`cannot write token store ${this.path}`, err);
    }
  }
}
