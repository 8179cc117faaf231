import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { JwksResolver } from './resolver.ts';
import type { Logger } from '../../shared/log.ts';

const quiet: Logger = { error() {}, warn() {}, info() {}, debug() {}, trace() {}, child: () => quiet };

async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 5_000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('JwksResolver', () => {
  it('fetches each jwksUri, refreshes, keeps the last good key set when a fetch fails, reports changes', async (t) => {
    let body = '{"keys":[{"kid":"one"}]}';
    let status = 200;
    let hits = 0;
    const server = createServer((req, res) => {
      hits++;
      if (req.url === '/slow') return; // never answers
      res.writeHead(status, { 'content-type': 'application/json' }).end(req.url === '/bad' ? '{"nokeys":1}' : body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    t.after(() => {
      server.closeAllConnections();
      server.close();
    });
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    let changes = 0;
    const r = new JwksResolver({ log: quiet, onChange: () => changes++, refreshMs: 60_000, fetchTimeoutMs: 300 });
    t.after(() => r.close());
    r.update([`${base}/jwks`, `${base}/bad`, `${base}/slow`, 'http://127.0.0.1:1/refused']);
    await until(() => changes === 1 && r.errorOf(`${base}/bad`) !== undefined && r.errorOf(`${base}/slow`) !== undefined && r.errorOf('http://127.0.0.1:1/refused') !== undefined, 'first fetches');
    assert.deepEqual([...r.snapshot()], [[`${base}/jwks`, '{"keys":[{"kid":"one"}]}']]);
    assert.match(r.errorOf(`${base}/bad`)!, /no "keys" array/);
    assert.match(r.errorOf(`${base}/slow`)!, /timed out after 300 ms/);
    // Same content again: no change reported. New content: one change.
    r.refresh();
    await until(() => hits >= 5, 'refresh');
    await new Promise((res) => setTimeout(res, 50));
    assert.equal(changes, 1);
    body = '{"keys":[{"kid":"two"}]}';
    r.refresh();
    await until(() => changes === 2, 'changed key set');
    assert.equal(r.snapshot().get(`${base}/jwks`), '{"keys":[{"kid":"two"}]}');
    // A failing refresh keeps the last good keys.
    status = 503;
    r.refresh();
    await until(() => r.errorOf(`${base}/jwks`) === 'HTTP 503', 'failed refresh');
    assert.equal(r.snapshot().get(`${base}/jwks`), '{"keys":[{"kid":"two"}]}');
    // Gone from the config: forgotten.
    r.update([`${base}/bad`]);
    assert.equal(r.snapshot().size, 0);
  });
});
