import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalPath, compilePathNormalization, mergeSlashes, normalizeRequestPath, removeDotSegments, type PathNormalization } from './path-normalize.ts';

const BASE: PathNormalization = { normalize: true, mergeSlashes: false, escapedSlashes: 'KEEP_UNCHANGED' };
const MERGE: PathNormalization = { ...BASE, mergeSlashes: true };
const DECODE: PathNormalization = { ...MERGE, escapedSlashes: 'UNESCAPE_AND_FORWARD' };

test('remove_dot_segments (RFC 3986 §5.2.4 examples for absolute paths)', () => {
  assert.equal(removeDotSegments('/a/b/c/./../../g'), '/a/g');
  assert.equal(removeDotSegments('/a/../admin'), '/admin');
  assert.equal(removeDotSegments('/../../admin'), '/admin');
  assert.equal(removeDotSegments('/a/b/.'), '/a/b/');
  assert.equal(removeDotSegments('/a/b/..'), '/a/');
  assert.equal(removeDotSegments('/..'), '/');
  assert.equal(removeDotSegments('/a//../b'), '/a/b');
  assert.equal(removeDotSegments('/a.b/c..d'), '/a.b/c..d');
});

test('canonicalPath: backslashes, unreserved escapes decoded, others upper-cased, unsafe characters escaped', () => {
  assert.equal(canonicalPath('/%61dmin'), '/admin');
  assert.equal(canonicalPath('/%2e%2E/admin'), '/admin');
  assert.equal(canonicalPath('/x/%2e%2e/admin'), '/admin');
  assert.equal(canonicalPath('/\\admin'), '//admin');
  assert.equal(canonicalPath('/a\\..\\admin'), '/admin');
  assert.equal(canonicalPath('/a%2fb'), '/a%2Fb');
  assert.equal(canonicalPath('/a%3cb%7E'), '/a%3Cb~');
  assert.equal(canonicalPath('/bad%zz%4'), '/bad%zz%4');
  assert.equal(canonicalPath('/caf\u00e9 x'), '/caf%C3%A9%20x');
});

test('merge_slashes', () => {
  assert.equal(mergeSlashes('//admin'), '/admin');
  assert.equal(mergeSlashes('/a///b/'), '/a/b/');
  assert.equal(mergeSlashes('/a/b'), '/a/b');
});

test('normalizeRequestPath: the RELIABILITY bypass variants of /admin', () => {
  assert.deepEqual(normalizeRequestPath('//admin', MERGE), { action: 'forward', path: '/admin' });
  assert.deepEqual(normalizeRequestPath('//admin', BASE), { action: 'forward', path: '//admin' });
  assert.deepEqual(normalizeRequestPath('/a/../admin', BASE), { action: 'forward', path: '/admin' });
  assert.deepEqual(normalizeRequestPath('/%61dmin', BASE), { action: 'forward', path: '/admin' });
  assert.deepEqual(normalizeRequestPath('/\\admin', MERGE), { action: 'forward', path: '/admin' });
  // Escaped slashes, each action.
  assert.deepEqual(normalizeRequestPath('/x%2F..%2Fadmin', BASE), { action: 'forward', path: '/x%2F..%2Fadmin' });
  assert.deepEqual(normalizeRequestPath('/x%2F..%2Fadmin', { ...BASE, escapedSlashes: 'REJECT_REQUEST' }).action, 'reject');
  assert.deepEqual(normalizeRequestPath('/x%2F..%2Fadmin', { ...BASE, escapedSlashes: 'UNESCAPE_AND_REDIRECT' }), { action: 'redirect', path: '/admin' });
  assert.deepEqual(normalizeRequestPath('/x%2f..%2fadmin', DECODE), { action: 'forward', path: '/admin' });
  assert.deepEqual(normalizeRequestPath('/x%5C..%5Cadmin', DECODE), { action: 'forward', path: '/admin' });
  // No escaped slash: UNESCAPE_AND_REDIRECT forwards.
  assert.deepEqual(normalizeRequestPath('/a/./b', { ...BASE, escapedSlashes: 'UNESCAPE_AND_REDIRECT' }), { action: 'forward', path: '/a/b' });
});

test('fragments are rejected with or without normalization; the query string is never touched', () => {
  assert.equal(normalizeRequestPath('/admin#x', undefined).action, 'reject');
  assert.equal(normalizeRequestPath('/ok#', BASE).action, 'reject');
  assert.deepEqual(normalizeRequestPath('/a/../b?x=/../%61//', MERGE), { action: 'forward', path: '/b?x=/../%61//' });
  assert.deepEqual(normalizeRequestPath('/a/../b', undefined), { action: 'forward', path: '/a/../b' });
  assert.deepEqual(normalizeRequestPath('*', BASE), { action: 'forward', path: '*' });
});

test('compilePathNormalization: off unless a field asks for it; IMPLEMENTATION_SPECIFIC_DEFAULT keeps escaped slashes', () => {
  assert.equal(compilePathNormalization({ normalize_path: null, merge_slashes: false, path_with_escaped_slashes_action: 'IMPLEMENTATION_SPECIFIC_DEFAULT' }), undefined);
  assert.equal(compilePathNormalization({ normalize_path: { value: false }, merge_slashes: false, path_with_escaped_slashes_action: 'KEEP_UNCHANGED' }), undefined);
  assert.deepEqual(compilePathNormalization({ normalize_path: { value: true }, merge_slashes: true, path_with_escaped_slashes_action: 'UNESCAPE_AND_FORWARD' }), DECODE);
  assert.deepEqual(compilePathNormalization({ normalize_path: null, merge_slashes: false, path_with_escaped_slashes_action: 'REJECT_REQUEST' }), {
    normalize: false,
    mergeSlashes: false,
    escapedSlashes: 'REJECT_REQUEST',
  });
});
