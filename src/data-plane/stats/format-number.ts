/**
 * Number formatting matching the fmt/printf conversions Envoy's admin output uses, so our text is
 * byte-for-byte comparable with Envoy's.
 */

/**
 * C's `%.<precision>g` (fmt `{:.<precision>g}`): `formatG(3600000, 6)` → `3.6e+06`,
 * `formatG(0.5, 32)` → `0.5`. NaN → `nan`, infinities → `inf` / `-inf`.
 */
export function formatG(x: number, precision = 6): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0' : '0';
  const p = precision === 0 ? 1 : precision;
  const expForm = x.toExponential(p - 1);
  const eAt = expForm.indexOf('e');
  const exp = Number(expForm.slice(eAt + 1));
  if (exp < -4 || exp >= p) {
    const mantissa = stripZeros(expForm.slice(0, eAt));
    const sign = exp < 0 ? '-' : '+';
    return `${mantissa}e${sign}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  return stripZeros(x.toFixed(p - 1 - exp));
}

function stripZeros(s: string): string {
  if (!s.includes('.')) return s;
  let end = s.length;
  while (s[end - 1] === '0') end--;
  if (s[end - 1] === '.') end--;
  return s.slice(0, end);
}

/** fmt's `{}` for a double (shortest round-trip form), with `nan`/`inf` spelled as fmt does. */
export function formatShortest(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  return String(x);
}
