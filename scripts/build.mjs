#!/usr/bin/env node
// Compiles src/ to dist/ (plain JS, same layout) so the CLI starts without Node's TypeScript
// stripper: ~20 MiB less RSS and a faster start. bin/sloop runs dist/ only while it is newer than
// every file in src/, so a stale build is never used.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
rmSync(join(root, 'dist'), { recursive: true, force: true });
const tsc = join(dirname(require.resolve('typescript/package.json')), 'bin/tsc');
try {
  execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit', cwd: root });
} catch (err) {
  // Type errors still emit JavaScript; `npm run typecheck` is the gate for them, not the build.
  if (err.status !== 2) throw err;
  process.stderr.write('build: type errors above (JavaScript emitted anyway; npm run typecheck fails on them)\n');
}
mkdirSync(join(root, 'dist/src/xds'), { recursive: true });
copyFileSync(join(root, 'src/xds/proto-files.json'), join(root, 'dist/src/xds/proto-files.json'));
// Envoy's API as a protobufjs JSON descriptor, so dist runs don't parse the .proto files at start
// (src/xds/protos.ts envoyRoot; docs/performance.md, "Memory"). Made from the .proto files, in a child
// process: loading them here would make this script's own run heavier for nothing.
execFileSync(process.execPath, ['--input-type=module', '-e', `
  import { writeFileSync } from 'node:fs';
  import { envoyDescriptor, loadEnvoyProtos } from ${JSON.stringify(pathToFileURL(join(root, 'dist/src/xds/protos.js')).href)};
  writeFileSync(${JSON.stringify(join(root, 'dist/src/xds/envoy-descriptor.json'))}, JSON.stringify(envoyDescriptor(loadEnvoyProtos())));
`], { stdio: 'inherit', cwd: root });
// The CA service's own .proto, loaded at run time beside its module (src/shared/identity/ca-api.ts).
mkdirSync(join(root, 'dist/src/shared/identity/proto'), { recursive: true });
copyFileSync(join(root, 'src/shared/identity/proto/ca.proto'), join(root, 'dist/src/shared/identity/proto/ca.proto'));
writeFileSync(join(root, 'dist/.stamp'), new Date().toISOString() + '\n');
