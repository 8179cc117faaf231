import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TOKENS_FILE, TokenStore } from './tokens.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sloop-ca-tokens-'));
});
after(() => rm(dir, { recursive: true, force: true }));

const reviews = { namespace: 'default', serviceAccount: 'reviews' };
const ratings = { namespace: 'shop', serviceAccount: 'ratings' };

describe('TokenStore', () => {
  it('mints 256-bit tokens bound to one identity each, and authenticates them', async () => {
    const d = join(dir, 'a');
    const store = await TokenStore.open({ dir: d });
    const t1 = await store.mint(reviews);
    const t2 = await store.mint(ratings);
    assert.match(t1, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(Buffer.from(t1, 'base64url').length, 32);
    assert.notEqual(t1, t2);
    assert.deepEqual(await store.authenticate(t1), reviews);
    assert.deepEqual(await store.authenticate(t2), ratings);
    assert.equal(store.size, 2);
  });

  it('refuses unknown, altered, malformed and missing tokens', async () => {
    const store = await TokenStore.open({ dir: join(dir, 'b') });
    const t = await store.mint(reviews);
    const flipped = (t[0] === 'A' ? 'B' : 'A') + t.slice(1);
    assert.equal(await store.authenticate(flipped), undefined);
    assert.equal(await store.authenticate(t.slice(0, -1)), undefined);
    assert.equal(await store.authenticate(`${t}x`), undefined);
    assert.equal(await store.authenticate(''), undefined);
    assert.equal(await store.authenticate(undefined), undefined);
    assert.equal(await store.authenticate('a'.repeat(43)), undefined);
  });

  it('persists digests only, in a 0600 file, so a restart keeps tokens', async () => {
    const d = join(dir, 'c');
    const store = await TokenStore.open({ dir: d });
    const t = await store.mint(reviews);
    const file = join(d, TOKENS_FILE);
    const st = await stat(file);
    assert.equal(st.mode & 0o777, 0o600);
    assert.equal((await stat(d)).mode & 0o777, 0o700);
    const text = await readFile(file, 'utf8');
    assert.ok(!text.includes(t), 'the token itself is never written');
    const reopened = await TokenStore.open({ dir: d });
    assert.deepEqual(await reopened.authenticate(t), reviews);
  });

  it('sees tokens another process minted, without a restart', async () => {
    const d = join(dir, 'd');
    const running = await TokenStore.open({ dir: d });
    const other = await TokenStore.open({ dir: d });
    const t = await other.mint(ratings);
    assert.deepEqual(await running.authenticate(t), ratings);
    // and minting in the running store keeps the other process's token
    const t2 = await running.mint(reviews);
    const third = await TokenStore.open({ dir: d });
    assert.deepEqual(await third.authenticate(t), ratings);
    assert.deepEqual(await third.authenticate(t2), reviews);
  });

  it('revokes every token of an identity', async () => {
    const store = await TokenStore.open({ dir: join(dir, 'e') });
    const a = await store.mint(reviews);
    const b = await store.mint(reviews);
    const c = await store.mint(ratings);
    assert.equal(await store.revoke(reviews), 2);
    assert.equal(await store.authenticate(a), undefined);
    assert.equal(await store.authenticate(b), undefined);
    assert.deepEqual(await store.authenticate(c), ratings);
  });

  it('refuses identities that cannot form a SPIFFE ID, and corrupt files', async () => {
    const d = join(dir, 'f');
    const store = await TokenStore.open({ dir: d });
    await assert.rejects(store.mint({ namespace: 'a/b', serviceAccount: 'x' }), { code: 'SLOOP_ERR_CA_INVALID_SPIFFE_ID' });
    await mkdir(d, { recursive: true });
    await writeFile(join(d, TOKENS_FILE), '{"version":2}');
    await assert.rejects(TokenStore.open({ dir: d }), { code: 'SLOOP_ERR_CA_ROOT_UNREADABLE' });
  });
});
