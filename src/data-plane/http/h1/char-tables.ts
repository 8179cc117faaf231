/**
 * Byte-class lookup tables for the HTTP/1.1 parser, built once at module load. A table lookup per byte
 * is what keeps the parser's inner loops free of branches on ranges and of regular expressions.
 *
 * Every table has 256 entries, so indexing with any byte (or any latin1 char code) is in bounds.
 */

/**
 * RFC 9110 §5.6.2 tchar: `!#$%&'*+-.^_`|~` DIGIT ALPHA. 0 = not a tchar, 1 = tchar that is not an
 * uppercase letter, 2 = uppercase letter (so a name scan can OR the entries together and learn whether
 * the name needs lowercasing without a second pass).
 */
export const TOKEN: Uint8Array = new Uint8Array(256);

/**
 * RFC 9110 §5.5 field-value bytes, including the OWS that may surround and separate them: HTAB, SP,
 * VCHAR (0x21–0x7E) and obs-text (0x80–0xFF). NUL, CR, LF, the other CTLs and DEL are 0.
 */
export const FIELD_VALUE: Uint8Array = new Uint8Array(256);

/**
 * Bytes allowed in a request-target (RFC 9112 §3.2, RFC 3986 §2): visible ASCII 0x21–0x7E. We also
 * refuse obs-text (0x80+) here: the grammar is ASCII-only, conforming clients percent-encode, and a
 * raw high byte is a classic normalisation-confusion vector between a proxy and its upstream.
 */
export const TARGET: Uint8Array = new Uint8Array(256);

/**
 * Bytes allowed in a Host value or CONNECT authority (RFC 3986 §3.2.2 reg-name / IP-literal plus the
 * `:` port separator): unreserved, sub-delims, `%` (pct-encoded), `:`, `[`, `]`. No `@` (RFC 9110
 * §7.2 forbids userinfo in Host), no `/`, `?`, `#`, whitespace or controls.
 */
export const HOST: Uint8Array = new Uint8Array(256);

/** Hex digit value + 0 for `0-9a-fA-F`, -1 for every other byte (RFC 9112 §7.1 chunk-size). */
export const HEX: Int8Array = new Int8Array(256).fill(-1);

/**
 * RFC 9110 §5.6.4 qdtext plus the characters a quoted-pair may escape: HTAB, SP, 0x21, 0x23–0x5B,
 * 0x5D–0x7E, obs-text. `"` and `\` are 0 here because the chunk-extension scanner treats them specially.
 */
export const QDTEXT: Uint8Array = new Uint8Array(256);

function fillTables(): void {
  const tcharSymbols = "!#$%&'*+-.^_`|~";
  for (let c = 0; c < 256; c++) {
    const isDigit = c >= 0x30 && c <= 0x39;
    const isUpper = c >= 0x41 && c <= 0x5a;
    const isLower = c >= 0x61 && c <= 0x7a;
    if (isUpper) TOKEN[c] = 2;
    else if (isDigit || isLower || tcharSymbols.includes(String.fromCharCode(c))) TOKEN[c] = 1;

    if (c === 0x09 || (c >= 0x20 && c <= 0x7e) || c >= 0x80) FIELD_VALUE[c] = 1;
    if (c >= 0x21 && c <= 0x7e) TARGET[c] = 1;
    if (isDigit || isUpper || isLower || "-._~!$&'()*+,;=%:[]".includes(String.fromCharCode(c))) HOST[c] = 1;
    if (isDigit) HEX[c] = c - 0x30;
    else if (c >= 0x41 && c <= 0x46) HEX[c] = c - 0x41 + 10;
    else if (c >= 0x61 && c <= 0x66) HEX[c] = c - 0x61 + 10;
    if ((c === 0x09 || (c >= 0x20 && c <= 0x7e) || c >= 0x80) && c !== 0x22 && c !== 0x5c) QDTEXT[c] = 1;
  }
}
fillTables();
