import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Recorder } from '../../../test/helpers/wait.ts';
import type { Diagnostic } from '../../shared/errors.ts';
import type { ConfigModel } from './model.ts';
import { ConfigWatcher } from './watch.ts';

const vs = (host: string, timeout = '1s') =>
  `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: web\nspec:\n  hosts: [web]\n  http:\n  - route: [{destination: {host: ${host}}}]\n    timeout: ${timeout}\n`;

test('ConfigWatcher: a change becomes the model; an invalid change is reported and the last good model stays', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sloop-watch-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'nested'));
  writeFileSync(join(dir, 'nested', 'vs.yaml'), vs('v1'));
  const watcher = new ConfigWatcher({ paths: [dir], debounceMs: 50 });
  t.after(() => watcher.close());
  const models = new Recorder<ConfigModel>('models');
  const invalid = new Recorder<Diagnostic[]>('invalid configs');
  watcher.on('model', (m) => models.push(m));
  watcher.on('invalid', (d) => invalid.push(d));

  assert.equal(watcher.start(), true);
  assert.equal(models.items.length, 1);
  assert.equal(watcher.current!.virtualServices[0].spec.http![0].route![0].destination.host, 'v1');

  const started = performance.now();
  writeFileSync(join(dir, 'nested', 'vs.yaml'), vs('v2'));
  await models.waitForCount(2);
  assert.ok(performance.now() - started < 1000, 'reloaded within a second');
  assert.equal(watcher.current!.virtualServices[0].spec.http![0].route![0].destination.host, 'v2');

  writeFileSync(join(dir, 'nested', 'vs.yaml'), vs('v3', 'soon'));
  const [diagnostics] = await invalid.waitForCount(1);
  assert.deepEqual(diagnostics.map((d) => [d.file, d.line, d.path, d.kind, d.name]), [[join(dir, 'nested', 'vs.yaml'), 9, 'spec.http[0].timeout', 'VirtualService', 'web']]);
  assert.equal(watcher.current!.virtualServices[0].spec.http![0].route![0].destination.host, 'v2', 'last good model stays current');

  // A new file in a new folder is picked up too.
  mkdirSync(join(dir, 'more'));
  writeFileSync(join(dir, 'nested', 'vs.yaml'), vs('v4'));
  writeFileSync(join(dir, 'more', 'svc.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' }, spec: { ports: [{ port: 80, name: 'http' }] } }));
  await models.waitFor((m) => m.services.length === 1 && m.virtualServices[0]?.spec.http![0].route![0].destination.host === 'v4');
  assert.equal(invalid.items.length, 1);
});

test('ConfigWatcher: an invalid first load leaves no current model', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sloop-watch-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'vs.yaml'), vs('v1', 'never'));
  const watcher = new ConfigWatcher({ paths: [dir] });
  t.after(() => watcher.close());
  const invalid: Diagnostic[][] = [];
  watcher.on('invalid', (d) => invalid.push(d));
  assert.equal(watcher.start(), false);
  assert.equal(watcher.current, undefined);
  assert.equal(invalid.length, 1);
});
