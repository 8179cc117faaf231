import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERROR_CODES, formatDiagnostic } from './errors.ts';

describe('error codes', () => {
  it('docs/errors.md documents exactly the codes in ERROR_CODES, once each', () => {
    const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
    const documented = [...doc.matchAll(/^\| `(SLOOP_ERR_[A-Z_]+)` \|/gm)].map((m) => m[1]);
    assert.deepEqual([...documented].sort(), [...ERROR_CODES].sort());
    assert.equal(new Set(documented).size, documented.length, 'a code is documented twice');
  });

  it('codes follow SLOOP_ERR_<AREA>_<PROBLEM> with a known area', () => {
    for (const c of ERROR_CODES) assert.match(c, /^SLOOP_ERR_(CONFIG|XDS|CA|PROXY|CLI)_[A-Z_]+$/);
  });

  it('formatDiagnostic reads file:line:col path: message', () => {
    assert.equal(
      formatDiagnostic({ severity: 'error', code: 'SLOOP_ERR_CONFIG_INVALID', file: 'b.yaml', line: 3, column: 7, path: 'static_resources.clusters[0].name', message: 'bad' }),
      'b.yaml:3:7 static_resources.clusters[0].name: bad',
    );
  });
});
