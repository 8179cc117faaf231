import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SloopError } from '../../../shared/errors.ts';
import { compileRe2, compileSubstitution, isLinearRegexEngineAvailable, substitute, translateRe2 } from './regex.ts';

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof SloopError, `expected SloopError, got ${String(err)}`);
    return err.code;
  }
  assert.fail('expected a throw');
}

test('anchored regex is a full match, unanchored finds a substring', () => {
  const full = compileRe2('/api/v[0-9]+', true);
  assert.equal(full.test('/api/v1'), true);
  assert.equal(full.test('/api/v1/users'), false);
  assert.equal(full.test('x/api/v1'), false);
  assert.equal(compileRe2('v[0-9]+', false).test('/api/v1/users'), true);
});

test('full match prefers the longest alternative, as RE2 full match does', () => {
  assert.equal(compileRe2('a|ab', true).test('ab'), true);
});

test('RE2 named groups (?P<name>) translate to JavaScript named groups', () => {
  const re = compileRe2('/users/(?P<id>[0-9]+)', true);
  assert.equal(re.exec('/users/42')?.groups?.['id'], '42');
});

test('backreferences and lookaround are rejected as unsupported', () => {
  assert.equal(code(() => compileRe2('(a)\\1', true)), 'SLOOP_ERR_CONFIG_UNSUPPORTED');
  assert.equal(code(() => compileRe2('foo(?=bar)', true)), 'SLOOP_ERR_CONFIG_UNSUPPORTED');
  assert.equal(code(() => compileRe2('(?<!x)y', true)), 'SLOOP_ERR_CONFIG_UNSUPPORTED');
  assert.equal(code(() => compileRe2('(?P<n>a)(?P=n)', true)), 'SLOOP_ERR_CONFIG_UNSUPPORTED');
  assert.equal(code(() => compileRe2('a(?i)b', true)), 'SLOOP_ERR_CONFIG_UNSUPPORTED');
});

test('malformed patterns are invalid', () => {
  assert.equal(code(() => compileRe2('[a-', true)), 'SLOOP_ERR_CONFIG_INVALID');
  assert.equal(code(() => compileRe2('(abc', true)), 'SLOOP_ERR_CONFIG_INVALID');
  assert.equal(code(() => compileRe2('a{1001}', true)), 'SLOOP_ERR_CONFIG_INVALID');
  assert.equal(code(() => compileRe2('\\y', true)), 'SLOOP_ERR_CONFIG_INVALID');
});

test('leading flag groups become RegExp flags; (?m) does not weaken full-match anchors', () => {
  assert.equal(compileRe2('(?i)/API', true).test('/api'), true);
  const m = compileRe2('(?m)^b$', true);
  assert.equal(m.test('a\nb'), false);
  assert.equal(m.test('b'), true);
  assert.equal(compileRe2('(?s)a.b', true).test('a\nb'), true);
  assert.equal(compileRe2('a.b', true).test('a\nb'), false);
});

test('RE2-only syntax: POSIX classes, \\Q..\\E, \\z, \\x{..}, leading ] in a class, literal braces', () => {
  assert.equal(compileRe2('[[:digit:]]+', true).test('123'), true);
  assert.equal(compileRe2('[[:digit:]]+', true).test('12a'), false);
  assert.equal(compileRe2('\\Qa.b*\\E', true).test('a.b*'), true);
  assert.equal(compileRe2('\\Qa.b*\\E', true).test('axb'), false);
  assert.equal(compileRe2('\\Aab\\z', false).test('ab'), true);
  assert.equal(compileRe2('\\x{41}', true).test('A'), true);
  assert.equal(compileRe2('[]a]+', true).test(']a]'), true);
  assert.equal(compileRe2('a{,2}', true).test('a{,2}'), true);
  assert.equal(compileRe2('\\pL+', true).test('héllo'), true);
  assert.equal(compileRe2('\\p{Greek}', true).test('α'), true);
  assert.equal(compileRe2('\\#\\:', true).test('#:'), true);
});

test('counts capture groups, including named ones but not (?:)', () => {
  assert.equal(translateRe2('(a)(?:b)(?P<c>c)').captureGroups, 2);
});

test('uses the linear-time engine when the process has it, for patterns it accepts', () => {
  const re = compileRe2('^(a|b)*c', false);
  assert.equal(re.flags.includes('l'), isLinearRegexEngineAvailable());
  // Patterns the linear engine refuses still compile (on the backtracking engine).
  assert.equal(compileRe2('(?i)abc', true).test('ABC'), true);
});

test('substitution uses RE2 rewrite syntax: \\1 groups, \\0 whole match, \\\\ backslash; $ is literal', () => {
  const s = compileSubstitution('^/service/([^/]+)(/.*)$', '\\2/instance/\\1');
  assert.equal(substitute(s, '/service/foo/v1/api'), '/v1/api/instance/foo');
  assert.equal(substitute(compileSubstitution('o', '[\\0]'), 'foo'), 'f[o][o]');
  assert.equal(substitute(compileSubstitution('x', '$1\\\\'), 'axb'), 'a$1\\b');
  // \1 followed by a literal digit must not read as group 10.
  assert.equal(substitute(compileSubstitution('(a)', '\\10'), 'a'), 'a0');
});

test('substitution referring to a missing group is invalid', () => {
  assert.equal(code(() => compileSubstitution('(a)', '\\2')), 'SLOOP_ERR_CONFIG_INVALID');
  assert.equal(code(() => compileSubstitution('(a)', '\\q')), 'SLOOP_ERR_CONFIG_INVALID');
});
