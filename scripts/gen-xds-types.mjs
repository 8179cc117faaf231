#!/usr/bin/env node
// Generates TypeScript types for the Envoy v3 messages Sloop uses, from the .proto files that
// @grpc/grpc-js-xds ships in deps/ (envoy-api, xds, googleapis, protoc-gen-validate).
// Output: src/xds/gen/ (never hand-edited, not committed; `npm install` runs this via `prepare`).
// The list of roots lives in src/xds/proto-files.json so runtime loading and types agree.
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const deps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
const { files } = JSON.parse(readFileSync(join(root, 'src/xds/proto-files.json'), 'utf8'));
const out = join(root, 'src/xds/gen');
rmSync(out, { recursive: true, force: true });
const bin = join(dirname(require.resolve('@grpc/proto-loader/package.json')), 'build/bin/proto-loader-gen-types.js');
execFileSync(process.execPath, [bin, '--keepCase', '--longs', 'String', '--enums', 'String', '--defaults', '--oneofs',
  '--includeDirs', ...['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(deps, d)),
  '-O', out, '--grpcLib', '@grpc/grpc-js', ...files], { stdio: ['ignore', 'ignore', 'inherit'] });
