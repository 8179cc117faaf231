import { STATUS_CODES } from 'node:http';

/** Reason phrases for status lines, precomputed once ("HTTP/1.1 200 OK\r\n"). */
const STATUS_LINES: string[] = [];
for (let code = 100; code < 600; code++) STATUS_LINES[code] = `HTTP/1.1 ${code} ${STATUS_CODES[code] ?? 'Unknown'}\r\n`;

export function statusLine(code: number): string {
  return STATUS_LINES[code] ?? `HTTP/1.1 ${code} Unknown\r\n`;
}
