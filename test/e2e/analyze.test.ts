// `sloop analyze` as a child process: istioctl's one-line messages and -o json|yaml shape, exit code 1 on errors.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { parse } from 'yaml';
import { runProcess } from '../helpers/clients.ts';
import { SLOOP_BIN } from '../helpers/proxy.ts';

const SAMPLES = '/work/shared/istio-samples/bookinfo';
const TESTDATA = new URL('../../src/control-plane/config/testdata/', import.meta.url).pathname;

async function analyze(...args: string[]): Promise<{ exitCode: number | null; stdout: string; stderr: string }> {
  const r = await runProcess(SLOOP_BIN, ['analyze', ...args]);
  return { exitCode: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

describe('sloop analyze', () => {
  it('bookinfo with its DestinationRules and VirtualServices: warnings only, exit code 0', async () => {
    const r = await analyze(join(SAMPLES, 'platform/kube/bookinfo.yaml'), join(SAMPLES, 'networking/destination-rule-all.yaml'), join(SAMPLES, 'networking/virtual-service-all-v1.yaml'));
    assert.equal(r.exitCode, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.ok(lines.length > 0 && lines.every((l) => l.startsWith('Warning [IST0173] (DestinationRule default/')), r.stdout);
  });

  it('a clean config: nothing on stdout, a summary on stderr, exit code 0', async () => {
    const r = await analyze(join(SAMPLES, 'networking/egress-rule-google-apis.yaml'));
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /No validation issues found when analyzing 1 file\(s\)/);
  });

  it('broken config: one istioctl-style line per message, exit code 1', async () => {
    const dir = join(TESTDATA, 'analyze');
    const r = await analyze(dir);
    assert.equal(r.exitCode, 1, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines.length, 12);
    assert.ok(lines.includes(`Error [IST0101] (VirtualService default/reviews ${join(dir, 'routing.yaml')}:27) Referenced host not found: "ratingz"`), r.stdout);
    assert.ok(lines.includes(`Error [IST0101] (VirtualService default/reviews ${join(dir, 'routing.yaml')}:20) Referenced host+subset in destinationrule not found: "reviews+v4"`), r.stdout);
    assert.ok(lines.at(-1)!.startsWith('Info [IST0118] (Service default/legacy'), r.stdout);
  });

  it('-o json and -o yaml: a list of {code, level, message, origin, reference, documentationUrl}', async () => {
    const file = join(TESTDATA, 'broken-schema.yaml');
    const json = await analyze('-o', 'json', file);
    assert.equal(json.exitCode, 1);
    const entries = JSON.parse(json.stdout) as Record<string, string>[];
    assert.equal(entries.length, 8);
    assert.deepEqual(entries[0], {
      code: 'IST0106',
      level: 'Error',
      message: 'Schema validation error: spec.http[0].match[0].uri.regex: invalid RE2 regular expression "/api/(?=v1)": regex "/api/(?=v1)": lookaround is not supported by RE2',
      origin: 'VirtualService default/reviews',
      reference: `${file}:12`,
      documentationUrl: 'https://istio.io/latest/docs/reference/config/analysis/ist0106/',
    });
    const yaml = await analyze('-o', 'yaml', file);
    assert.equal(yaml.exitCode, 1);
    assert.deepEqual(parse(yaml.stdout), entries);
  });

  it('a path that does not exist is an error', async () => {
    const r = await analyze('/nonexistent/sloop-config');
    assert.equal(r.exitCode, 1);
    assert.match(r.stdout, /^Error \[IST0106\] \(\/nonexistent\/sloop-config\) Schema validation error: cannot read: ENOENT/);
  });
});
