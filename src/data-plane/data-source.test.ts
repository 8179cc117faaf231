import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { DataSource__Output } from '../xds/gen/envoy/config/core/v3/DataSource.ts';
import { lookupMessage, TO_OBJECT_OPTIONS } from '../xds/protos.ts';
import { resolveDataSource } from './data-source.ts';

const DS = lookupMessage('envoy.config.core.v3.DataSource')!;
const ds = (form: Record<string, unknown>) => DS.toObject(DS.fromObject(form), TO_OBJECT_OPTIONS) as DataSource__Output;

const tmp = mkdtempSync(join(tmpdir(), 'sloop-ds-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('resolveDataSource', () => {
  it('returns undefined for no data source or no specifier', () => {
    assert.equal(resolveDataSource(null), undefined);
    assert.equal(resolveDataSource(ds({})), undefined);
  });

  it('returns inline strings and bytes', () => {
    assert.deepEqual(resolveDataSource(ds({ inline_string: 'héllo' })), Buffer.from('héllo', 'utf8'));
    assert.deepEqual(resolveDataSource(ds({ inline_bytes: Buffer.from([0, 1, 255]) })), Buffer.from([0, 1, 255]));
  });

  it('reads a file, a relative name against baseDir', () => {
    writeFileSync(join(tmp, 'cert.pem'), 'PEM');
    assert.deepEqual(resolveDataSource(ds({ filename: 'cert.pem' }), tmp), Buffer.from('PEM'));
    assert.deepEqual(resolveDataSource(ds({ filename: join(tmp, 'cert.pem') }), '/elsewhere'), Buffer.from('PEM'));
  });

  it('throws SLOOP_ERR_CONFIG_UNREADABLE with the cause for a missing file', () => {
    assert.throws(() => resolveDataSource(ds({ filename: 'nope.pem' }), tmp), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'SLOOP_ERR_CONFIG_UNREADABLE');
      assert.ok(err.message.includes(join(tmp, 'nope.pem')));
      assert.equal((err.cause as { code?: string }).code, 'ENOENT');
      return true;
    });
  });

  it('reads an environment variable from the environment it is given', () => {
    assert.deepEqual(resolveDataSource(ds({ environment_variable: 'KEY' }), undefined, { KEY: 'secret' }), Buffer.from('secret'));
    assert.throws(() => resolveDataSource(ds({ environment_variable: 'KEY' }), undefined, {}), {
      code: 'SLOOP_ERR_CONFIG_INVALID',
      message: 'data source environment variable "KEY" is not set',
    });
    assert.throws(() => resolveDataSource(ds({ environment_variable: 'KEY' })), { code: 'SLOOP_ERR_CONFIG_UNSUPPORTED' });
  });
});
