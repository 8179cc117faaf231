import { test } from 'node:test';
import assert from 'node:assert/strict';
import { uuidV4 } from './request-id.ts';

test('uuidV4 gives distinct RFC 9562 version-4 UUIDs across pool refills', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 1000; i++) {
    const u = uuidV4();
    assert.match(u, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    seen.add(u);
  }
  assert.equal(seen.size, 1000);
});
