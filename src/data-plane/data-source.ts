/**
 * envoy.config.core.v3.DataSource: bytes given inline, in a file, or in an environment variable (TLS
 * certificates and keys, Lua sources, ...). Read at config time, never per request.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { SloopError } from '../shared/errors.ts';
import type { DataSource__Output } from '../xds/gen/envoy/config/core/v3/DataSource.ts';

/**
 * The bytes a DataSource names, or undefined if `ds` is null or sets no specifier.
 *
 * @param baseDir directory a relative `filename` is resolved against (Envoy uses its working directory,
 *   which is the default here too).
 * @param env the process environment, for `environment_variable`. Passed in because only `src/cli/` reads
 *   `process.env`.
 * @returns a Buffer the caller owns.
 * @throws SloopError `SLOOP_ERR_CONFIG_UNREADABLE` when the file can't be read (with `cause`),
 *   `SLOOP_ERR_CONFIG_INVALID` when the environment variable is not set (Envoy: "Environment variable doesn't
 *   exist"), `SLOOP_ERR_CONFIG_UNSUPPORTED` for `environment_variable` when no `env` was given.
 */
export function resolveDataSource(
  ds: DataSource__Output | null | undefined,
  baseDir?: string,
  env?: Readonly<Record<string, string | undefined>>,
): Buffer | undefined {
  if (ds === null || ds === undefined) return undefined;
  switch (ds.specifier) {
    case 'filename': {
      const path = baseDir === undefined ? ds.filename! : resolve(baseDir, ds.filename!);
      try {
        return readFileSync(path);
      } catch (err) {
        throw new SloopError('SLOOP_ERR_CONFIG_UNREADABLE', `cannot read data source file ${path}: ${(err as Error).message}`, { cause: err });
      }
    }
    case 'inline_bytes':
      return Buffer.from(ds.inline_bytes!);
    case 'inline_string':
      return Buffer.from(ds.inline_string!, 'utf8');
    case 'environment_variable': {
      const name = ds.environment_variable!;
      if (env === undefined) {
        throw new SloopError('SLOOP_ERR_CONFIG_UNSUPPORTED', `data source environment variable "${name}" cannot be read: no environment was passed`);
      }
      const value = env[name];
      if (value === undefined) throw new SloopError('SLOOP_ERR_CONFIG_INVALID', `data source environment variable "${name}" is not set`);
      return Buffer.from(value, 'utf8');
    }
    default:
      return undefined;
  }
}
