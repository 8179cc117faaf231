#!/usr/bin/env node
// Builds Sloop's native addons (native/*/binding.gyp) with npm's bundled node-gyp, offline: the addons use
// Node-API only (ABI-stable), so the headers of whatever Node is under `nodedir` (npm config, e.g. /usr for
// the distribution's Node) are enough and a build loads in the pinned Node 24 too.
//
// Today there is one addon, native/original-dst (getsockopt SO_ORIGINAL_DST for transparent interception).
// Without a C compiler, make and python3 it is skipped with a warning: everything but transparent mode works.
// With them, a failed build fails the install. SLOOP_SKIP_NATIVE=1 skips it on purpose.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const addons = ['original-dst'];

if (process.env.SLOOP_SKIP_NATIVE === '1') {
  process.stderr.write('build-native: SLOOP_SKIP_NATIVE=1, not building native addons (transparent mode unavailable)\n');
  process.exit(0);
}

const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
const missing = ['make', 'python3'].filter((c) => !has(c));
if (!has('cc') && !has('gcc') && !has('clang')) missing.push('a C compiler (cc/gcc)');
if (missing.length > 0) {
  process.stderr.write(
    `build-native: WARNING: not building native/original-dst: missing ${missing.join(', ')}.\n` +
      '  `sloop up --mode transparent` and the original_dst listener filter need it; install them\n' +
      '  (Debian: apt-get install python3 make g++) and run `npm run build:native`.\n',
  );
  process.exit(0);
}

// npm sets npm_config_node_gyp to its bundled node-gyp for lifecycle scripts; otherwise find npm's copy.
function findNodeGyp() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return fromNpm;
  const candidates = [];
  const npmExec = process.env.npm_execpath;
  if (npmExec) candidates.push(join(dirname(npmExec), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  for (const npmBin of ['/usr/bin/npm', '/usr/local/bin/npm']) {
    if (existsSync(npmBin)) candidates.push(join(dirname(realpathSync(npmBin)), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  }
  return candidates.find((c) => existsSync(c));
}
const nodeGyp = findNodeGyp();
if (nodeGyp === undefined) {
  process.stderr.write('build-native: ERROR: cannot find node-gyp (npm bundles it); run this through `npm run build:native`\n');
  process.exit(1);
}

// Headers: npm's `nodedir` (npm_config_nodedir in lifecycle scripts, else `npm config get nodedir`), else the
// distribution's Node headers under /usr, else node-gyp's default (a download, which needs the network).
function findNodeDir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const r = spawnSync('npm', ['config', 'get', 'nodedir'], { encoding: 'utf8' });
  const v = r.status === 0 ? r.stdout.trim() : '';
  if (v !== '' && v !== 'undefined' && v !== 'null') return v;
  return existsSync('/usr/include/node/node_api.h') ? '/usr' : undefined;
}
const nodeDir = findNodeDir();

for (const name of addons) {
  const dir = join(root, 'native', name);
  try {
    execFileSync(process.execPath, [nodeGyp, 'rebuild', '--loglevel=warn', ...(nodeDir === undefined ? [] : [`--nodedir=${nodeDir}`])], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'] });
  } catch (err) {
    process.stderr.write(`build-native: ERROR: building native/${name} failed (node-gyp exit ${err.status}); see above\n`);
    process.exit(1);
  }
  process.stderr.write(`build-native: built native/${name}/build/Release\n`);
}
