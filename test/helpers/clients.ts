/**
 * Real clients for e2e tests: curl, nghttp and h2load run as child processes (third-party HTTP stacks, so the
 * proxy is judged by something other than Node's own parser), plus raw sockets for malformed input and a
 * WebSocket client. Every helper returns a structured result and never throws for a protocol-level failure.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { headerMapOf } from './upstreams.ts';
import { LOOPBACK } from './ports.ts';

/** What a child process produced. */
export interface ProcessResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
  /** True if the harness killed it for exceeding `timeoutMs`. */
  timedOut: boolean;
}

/** Options shared by the process-based clients. */
export interface RunOptions {
  /** Kill the process (SIGKILL) after this long. Default 15 s. */
  timeoutMs?: number;
  /** Written to stdin, which is then closed. */
  input?: string | Buffer;
  /** Added to the inherited environment. */
  env?: Record<string, string>;
}

function collect(stream: NodeJS.ReadableStream | null): Promise<Buffer> {
  if (!stream) return Promise.resolve(Buffer.alloc(0));
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve) => stream.on('end', () => resolve(Buffer.concat(chunks))));
}

/** Runs `command args` to completion and collects its output. Rejects only if it cannot be started. */
export function runProcess(command: string, args: readonly string[], opts: RunOptions = {}): Promise<ProcessResult> {
  const child = spawn(command, args, { stdio: 'pipe', env: opts.env ? { ...process.env, ...opts.env } : process.env });
  const outputs = Promise.all([collect(child.stdout), collect(child.stderr)]);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, opts.timeoutMs ?? 15_000);
  child.stdin.on('error', () => {});
  child.stdin.end(opts.input);
  return new Promise((resolve, reject) => {
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${command}: ${err.message} (is it installed? .ci/run installs it)`, { cause: err }));
    });
    child.once('close', async (exitCode, signal) => {
      clearTimeout(timer);
      const [stdout, stderr] = await outputs;
      resolve({ exitCode, signal, stdout, stderr, timedOut });
    });
  });
}

// ---------------------------------------------------------------------------------------------------------
// curl

/** One header block (`HTTP/x status` line plus fields) from curl's header dump. */
export interface HeaderBlock {
  statusLine: string;
  status: number;
  headers: Array<[string, string]>;
}

/** The result of one curl transfer. */
export interface CurlResult {
  /** Final response status; 0 when no response arrived (see `exitCode`/`stderr`). */
  status: number;
  /** Final response headers, lowercased name → value (repeats joined with ", "). */
  headers: Record<string, string>;
  /** Final response headers as received, in order. */
  rawHeaders: Array<[string, string]>;
  /** Response trailers (curl dumps them after the final header block). */
  trailers: Array<[string, string]>;
  /** Every header block, including 1xx interim responses and redirects followed with `-L`. */
  blocks: HeaderBlock[];
  body: Buffer;
  /** `body` as UTF-8. */
  text: string;
  /** "1.0", "1.1", "2" or "3"; "0" when no response. */
  httpVersion: string;
  /** curl's exit code: 0 ok, 7 connect failed, 28 timeout, 52 empty reply, 56 recv failure, 92 h2 stream error... */
  exitCode: number;
  /** curl's error output, without the harness's write-out data. */
  stderr: string;
  /** curl's `--write-out` variables (`%{json}`): `num_connects`, `time_total`, `remote_port`, `ssl_verify_result`... */
  info: Record<string, unknown>;
  /** Parses `text` as JSON (the echo upstream's body). */
  json<T = EchoBody>(): T;
}

/** Body of the echo upstream's default response (see upstreams.ts `echoHandler`). */
export interface EchoBody {
  upstream: string;
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string;
  httpVersion: string;
}

const WRITE_OUT_MARK = '\n@@sloop-curl-write-out@@';

/**
 * Runs curl with `args` (URL and any options: `-H`, `-d`, `--http2-prior-knowledge`, `--http2`, `-k`,
 * `--resolve`, `--cacert`, `--cert`/`--key`, `-X`, `-L`, `-v`...). The harness adds `-sS`, a header dump to a
 * private temp file, a JSON write-out on stderr, and `--max-time` from `timeoutMs` (default 10 s) unless `-m` or
 * `--max-time` is given. Do not pass `-o`, `-D`, `-w`, `-i` or several URLs. Never rejects for an HTTP or
 * transport error; check `status` and `exitCode`.
 */
export async function curl(args: readonly string[], opts: RunOptions = {}): Promise<CurlResult> {
  const hasMaxTime = args.some((a) => a === '-m' || a === '--max-time');
  const timeoutS = (opts.timeoutMs ?? 10_000) / 1000;
  // The header dump goes to a file: curl cannot open /dev/fd/N when N is the socketpair Node uses for pipes.
  const dir = await mkdtemp(join(tmpdir(), 'sloop-curl-'));
  const headerPath = join(dir, 'headers');
  const full = ['-sS', '-D', headerPath, '-w', `%{stderr}${WRITE_OUT_MARK}%{json}`];
  if (!hasMaxTime) full.push('--max-time', String(timeoutS));
  full.push(...args);
  let r: ProcessResult;
  let dump: string;
  try {
    r = await runProcess('curl', full, { ...opts, timeoutMs: (opts.timeoutMs ?? 10_000) + 5_000 });
    dump = await readFile(headerPath, 'latin1').catch(() => '');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const errText = r.stderr.toString('utf8');
  const mark = errText.lastIndexOf(WRITE_OUT_MARK);
  let info: Record<string, unknown> = {};
  let stderr = errText;
  if (mark >= 0) {
    stderr = errText.slice(0, mark);
    try {
      info = JSON.parse(errText.slice(mark + WRITE_OUT_MARK.length)) as Record<string, unknown>;
    } catch {
      // curl older than 7.70 has no %{json}; status then comes from the header dump alone.
    }
  }
  const { blocks, trailers } = parseHeaderDump(dump);
  const last = blocks.at(-1);
  const body = r.stdout;
  return {
    status: last?.status ?? 0,
    headers: headerMapOf(last?.headers ?? []),
    rawHeaders: last?.headers ?? [],
    trailers,
    blocks,
    body,
    text: body.toString('utf8'),
    httpVersion: typeof info.http_version === 'string' ? info.http_version : (last?.statusLine.match(/^HTTP\/([\d.]+)/)?.[1] ?? '0'),
    exitCode: r.exitCode ?? -1,
    stderr,
    info,
    json<T>(): T {
      return JSON.parse(body.toString('utf8')) as T;
    },
  };
}

/**
 * Splits curl's `-D` output into header blocks. Each block starts with an `HTTP/` status line and ends at a
 * blank line; lines after the last block's blank line are trailers (that is where curl writes them).
 */
export function parseHeaderDump(dump: string): { blocks: HeaderBlock[]; trailers: Array<[string, string]> } {
  const blocks: HeaderBlock[] = [];
  const trailers: Array<[string, string]> = [];
  let current: HeaderBlock | undefined;
  for (const line of dump.split(/\r?\n/)) {
    if (line.startsWith('HTTP/')) {
      const status = Number(line.split(' ')[1]);
      current = { statusLine: line, status: Number.isFinite(status) ? status : 0, headers: [] };
      blocks.push(current);
      continue;
    }
    if (line === '') {
      current = undefined;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const field: [string, string] = [line.slice(0, colon), line.slice(colon + 1).trim()];
    if (current) current.headers.push(field);
    else if (blocks.length > 0) trailers.push(field);
  }
  return { blocks, trailers };
}

// ---------------------------------------------------------------------------------------------------------
// nghttp / h2load

/** One stream's response as `nghttp -v` reported it. */
export interface NghttpStream {
  streamId: number;
  /** `:status`, or 0 if no response headers arrived. */
  status: number;
  /** Response headers, pseudo-headers included, in order (the final, non-1xx block). */
  headers: Array<[string, string]>;
  /** Trailing HEADERS, if any. */
  trailers: Array<[string, string]>;
  /** Error code name of an RST_STREAM received for this stream (`REFUSED_STREAM`, `PROTOCOL_ERROR`...). */
  resetCode?: string;
}

/** The result of one nghttp run. */
export interface NghttpResult {
  exitCode: number;
  /** Streams in the order their responses started. */
  streams: NghttpStream[];
  /** First response's status (0 if none). */
  status: number;
  /** First response's headers as a lowercased map. */
  headers: Record<string, string>;
  /** Error code name of a received GOAWAY (`NO_ERROR`, `PROTOCOL_ERROR`...), if one arrived. */
  goaway?: string;
  /** The SETTINGS the server sent, `SETTINGS_MAX_CONCURRENT_STREAMS` → value. */
  serverSettings: Record<string, number>;
  stdout: string;
  stderr: string;
}

const NGHTTP_HEADER_LINE = /^\[\s*[\d.]+\] recv \(stream_id=(\d+)\) (:?[^:\s]+): (.*)$/;
const NGHTTP_FRAME_LINE = /^\[\s*[\d.]+\] recv (\w+) frame <length=\d+, flags=0x[0-9a-f]+, stream_id=(\d+)>/;
const NGHTTP_ERROR_CODE = /error_code=(\w+)\(/;
const NGHTTP_SETTING = /^\s+\[(SETTINGS_\w+)\(0x[0-9a-f]+\):(\d+)\]/;

/**
 * Runs `nghttp -nv <args>` (`-n` discards bodies; pass URLs and options such as `-H`, `-d`, `-m`) and parses the
 * verbose frame log: per stream status, headers, trailers, RST_STREAM codes, and GOAWAY.
 */
export async function nghttp(args: readonly string[], opts: RunOptions = {}): Promise<NghttpResult> {
  const r = await runProcess('nghttp', ['-nv', ...args], opts);
  const stdout = r.stdout.toString('utf8');
  const streams = new Map<number, NghttpStream>();
  const stream = (id: number): NghttpStream => {
    let s = streams.get(id);
    if (!s) streams.set(id, (s = { streamId: id, status: 0, headers: [], trailers: [] }));
    return s;
  };
  const pending = new Map<number, Array<[string, string]>>();
  let goaway: string | undefined;
  const serverSettings: Record<string, number> = {};
  let frame: string | undefined;
  for (const line of stdout.split('\n')) {
    const h = NGHTTP_HEADER_LINE.exec(line);
    if (h) {
      const id = Number(h[1]);
      const list = pending.get(id) ?? [];
      list.push([h[2], h[3]]);
      pending.set(id, list);
      continue;
    }
    const f = NGHTTP_FRAME_LINE.exec(line);
    if (f) {
      frame = f[1];
      const id = Number(f[2]);
      if (frame === 'HEADERS') {
        // nghttp prints a block's header lines before the HEADERS frame line that carried them.
        const block = pending.get(id) ?? [];
        pending.delete(id);
        const s = stream(id);
        const status = block.find(([n]) => n === ':status');
        if (status) {
          const code = Number(status[1]);
          if (code >= 200 || s.status === 0) {
            s.status = code;
            s.headers = block;
          }
        } else {
          s.trailers = block;
        }
      } else if (frame === 'RST_STREAM') {
        frame = `RST_STREAM:${id}`;
      }
      continue;
    }
    if (line.startsWith('[')) frame = undefined;
    const code = NGHTTP_ERROR_CODE.exec(line);
    if (code && frame === 'GOAWAY') goaway = code[1];
    else if (code && frame?.startsWith('RST_STREAM:')) stream(Number(frame.slice('RST_STREAM:'.length))).resetCode = code[1];
    const setting = NGHTTP_SETTING.exec(line);
    if (setting && frame === 'SETTINGS') serverSettings[setting[1]] = Number(setting[2]);
  }
  const list = [...streams.values()];
  const first = list.find((s) => s.status > 0);
  return {
    exitCode: r.exitCode ?? -1,
    streams: list,
    status: first?.status ?? 0,
    headers: headerMapOf(first?.headers ?? []),
    goaway,
    serverSettings,
    stdout,
    stderr: r.stderr.toString('utf8'),
  };
}

/** Summary of an h2load run. */
export interface H2loadResult {
  exitCode: number;
  total: number;
  started: number;
  done: number;
  succeeded: number;
  failed: number;
  errored: number;
  timeout: number;
  /** Responses by status class. */
  status: { '2xx': number; '3xx': number; '4xx': number; '5xx': number };
  /** Requests per second from the "finished in" line. */
  reqPerSec: number;
  stdout: string;
  stderr: string;
}

/** Runs `h2load <args>` (e.g. `-n 100 -c 4 -m 10 http://127.0.0.1:port/`) and parses its summary. */
export async function h2load(args: readonly string[], opts: RunOptions = {}): Promise<H2loadResult> {
  const r = await runProcess('h2load', args, { timeoutMs: 60_000, ...opts });
  const stdout = r.stdout.toString('utf8');
  const num = (re: RegExp): number => Number(re.exec(stdout)?.[1] ?? 0);
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(stdout);
  const codes = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(stdout);
  const n = (m: RegExpExecArray | null, i: number): number => Number(m?.[i] ?? 0);
  return {
    exitCode: r.exitCode ?? -1,
    total: n(req, 1),
    started: n(req, 2),
    done: n(req, 3),
    succeeded: n(req, 4),
    failed: n(req, 5),
    errored: n(req, 6),
    timeout: n(req, 7),
    status: { '2xx': n(codes, 1), '3xx': n(codes, 2), '4xx': n(codes, 3), '5xx': n(codes, 4) },
    reqPerSec: num(/finished in [^,]+, ([\d.]+) req\/s/),
    stdout,
    stderr: r.stderr.toString('utf8'),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Raw sockets

/** Options for {@link rawTcp}. */
export interface RawTcpOptions {
  /** Wait for the peer to close instead of returning when `until` is satisfied. */
  waitForClose?: boolean;
  /** Return once `until(data)` holds (checked after each chunk). */
  until?: (data: Buffer) => boolean;
  /**
   * Give up after this long and return what arrived (`timedOut: true`); the socket is then destroyed.
   * Default 2 s. A test that expects the peer to keep the connection open relies on this cap.
   */
  timeoutMs?: number;
  /** Half-close (send FIN) after writing. */
  end?: boolean;
  host?: string;
}

/** What came back on a raw connection. */
export interface RawTcpResult {
  data: Buffer;
  /** `data` as latin1 (byte-exact). */
  text: string;
  /** True if the peer closed (FIN or RST) before the harness gave up. */
  closed: boolean;
  /** True if the peer reset the connection (ECONNRESET). */
  reset: boolean;
  /** True if `timeoutMs` elapsed first. */
  timedOut: boolean;
}

/** Connects to `port`, writes `bytes` (an array: one write per element), and collects the reply. */
export function rawTcp(port: number, bytes: string | Buffer | ReadonlyArray<string | Buffer>, opts: RawTcpOptions = {}): Promise<RawTcpResult> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let settled = false;
    let reset = false;
    let connected = false;
    const socket = connect({ port, host: opts.host ?? LOOPBACK });
    const finish = (closed: boolean, timedOut: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const data = Buffer.concat(chunks);
      resolve({ data, text: data.toString('latin1'), closed, reset, timedOut });
    };
    const timer = setTimeout(() => finish(false, true), opts.timeoutMs ?? 2_000);
    socket.on('connect', () => {
      connected = true;
      const parts = typeof bytes === 'string' || Buffer.isBuffer(bytes) ? [bytes] : bytes;
      for (const part of parts) socket.write(part);
      if (opts.end) socket.end();
    });
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (!opts.waitForClose && opts.until?.(Buffer.concat(chunks))) finish(false, false);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected) {
        settled = true;
        clearTimeout(timer);
        reject(new Error(`raw connection to ${port} failed: ${err.message}`, { cause: err }));
        return;
      }
      if (err.code === 'ECONNRESET' || err.code === 'EPIPE') reset = true;
    });
    socket.on('close', () => finish(true, false));
  });
}

/** One HTTP/1.x response parsed from raw bytes. */
export interface RawHttpResponse {
  httpVersion: string;
  status: number;
  reason: string;
  headers: Array<[string, string]>;
  /** Lowercased name → value. */
  headerMap: Record<string, string>;
  /** Body, de-chunked if `transfer-encoding: chunked`. */
  body: Buffer;
  /** Trailer fields of a chunked body. */
  trailers: Array<[string, string]>;
}

/** Options for {@link rawHttp}. */
export interface RawHttpOptions extends Omit<RawTcpOptions, 'until'> {
  /** Return once this many complete responses (1xx not counted) have arrived. Default 1. */
  responses?: number;
  /** The first request is HEAD, so its response has no body whatever its framing headers say (RFC 9110 §9.3.2). */
  head?: boolean;
}

/** {@link RawTcpResult} plus the responses that could be parsed from it. */
export interface RawHttpResult extends RawTcpResult {
  /** Complete responses, in order (interim 1xx included). */
  responses: RawHttpResponse[];
  /** The first final (non-1xx) response, if any. */
  response?: RawHttpResponse;
}

/**
 * Sends raw bytes (possibly malformed) to an HTTP/1 listener and collects the reply. Returns as soon as
 * `responses` complete responses are in (or when the peer closes, or `waitForClose` and it closes, or after
 * `timeoutMs`). Use `waitForClose` to assert the proxy closes the connection after an error response.
 */
export async function rawHttp(port: number, bytes: string | Buffer | ReadonlyArray<string | Buffer>, opts: RawHttpOptions = {}): Promise<RawHttpResult> {
  const want = opts.responses ?? 1;
  const noBody = opts.head ? 1 : 0;
  const result = await rawTcp(port, bytes, {
    ...opts,
    until: (data) => parseHttpResponses(data, noBody).responses.filter((r) => r.status >= 200).length >= want,
  });
  const { responses } = parseHttpResponses(result.data, noBody, result.closed);
  return { ...result, responses, response: responses.find((r) => r.status >= 200) };
}

/**
 * Parses consecutive HTTP/1.x responses from `data` (RFC 9112 §6: content-length, chunked, or until close;
 * 1xx, 204 and 304 have no body). `headCount` says how many leading final responses answer HEAD requests.
 * With `closed`, a response delimited by connection close is complete. Returns complete responses and the
 * unparsed remainder's offset.
 */
export function parseHttpResponses(data: Buffer, headCount = 0, closed = false): { responses: RawHttpResponse[]; consumed: number } {
  const responses: RawHttpResponse[] = [];
  let offset = 0;
  let finals = 0;
  while (offset < data.length) {
    const headerEnd = data.indexOf('\r\n\r\n', offset, 'latin1');
    if (headerEnd < 0) break;
    const lines = data.toString('latin1', offset, headerEnd).split('\r\n');
    const statusLine = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(lines[0]);
    if (!statusLine) break;
    const headers: Array<[string, string]> = [];
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon > 0) headers.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
    }
    const headerMap = headerMapOf(headers);
    const status = Number(statusLine[2]);
    let pos = headerEnd + 4;
    let body: Buffer = Buffer.alloc(0);
    let trailers: Array<[string, string]> = [];
    const isHead = status >= 200 && finals < headCount;
    if (status < 200 || status === 204 || status === 304 || isHead) {
      // no body
    } else if (/\bchunked\b/i.test(headerMap['transfer-encoding'] ?? '')) {
      const chunked = dechunk(data, pos);
      if (!chunked) break;
      ({ body, trailers } = chunked);
      pos = chunked.end;
    } else if (headerMap['content-length'] !== undefined) {
      const length = Number(headerMap['content-length']);
      if (pos + length > data.length) break;
      body = data.subarray(pos, pos + length);
      pos += length;
    } else {
      // RFC 9112 §6.3 rule 8: the body runs until the connection closes.
      if (!closed) break;
      body = data.subarray(pos);
      pos = data.length;
    }
    if (status >= 200) finals++;
    responses.push({ httpVersion: statusLine[1], status, reason: statusLine[3] ?? '', headers, headerMap, body, trailers });
    offset = pos;
  }
  return { responses, consumed: offset };
}

function dechunk(data: Buffer, start: number): { body: Buffer; trailers: Array<[string, string]>; end: number } | undefined {
  const parts: Buffer[] = [];
  let pos = start;
  for (;;) {
    const lineEnd = data.indexOf('\r\n', pos, 'latin1');
    if (lineEnd < 0) return undefined;
    const size = parseInt(data.toString('latin1', pos, lineEnd).split(';')[0].trim(), 16);
    if (!Number.isFinite(size)) return undefined;
    pos = lineEnd + 2;
    if (size === 0) break;
    if (pos + size + 2 > data.length) return undefined;
    parts.push(data.subarray(pos, pos + size));
    pos += size + 2;
  }
  const trailers: Array<[string, string]> = [];
  for (;;) {
    const lineEnd = data.indexOf('\r\n', pos, 'latin1');
    if (lineEnd < 0) return undefined;
    const line = data.toString('latin1', pos, lineEnd);
    pos = lineEnd + 2;
    if (line === '') break;
    const colon = line.indexOf(':');
    if (colon > 0) trailers.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
  }
  return { body: Buffer.concat(parts), trailers, end: pos };
}

// ---------------------------------------------------------------------------------------------------------
// WebSocket

/** Result of {@link wsExchange}. */
export interface WsExchangeResult {
  /** True if the upgrade succeeded (101). */
  ok: boolean;
  /** 101 on success, else the status of the refusal (0 if no HTTP response arrived). */
  status: number;
  /** Response headers of the 101 or of the refusal, lowercased. */
  headers: Record<string, string>;
  /** Messages received; text as string, binary as Buffer. */
  replies: Array<string | Buffer>;
  /** Close code the connection ended with (1000 normal, 1006 abnormal), or 0 if it never opened. */
  closeCode: number;
  /** Error message if the connection failed. */
  error?: string;
}

/**
 * Opens a WebSocket to `url` (`ws://127.0.0.1:<port>/path`), sends `messages` (Buffers as binary frames),
 * waits for `expectReplies` messages (default: one per message sent), then closes normally (1000).
 * Resolves, never rejects, on refusal or failure.
 */
export function wsExchange(
  url: string,
  messages: ReadonlyArray<string | Buffer>,
  opts: { headers?: Record<string, string>; protocols?: string[]; expectReplies?: number; timeoutMs?: number } = {},
): Promise<WsExchangeResult> {
  const expect = opts.expectReplies ?? messages.length;
  return new Promise((resolve) => {
    const replies: Array<string | Buffer> = [];
    let status = 0;
    let headers: Record<string, string> = {};
    let error: string | undefined;
    let opened = false;
    const ws = new WebSocket(url, opts.protocols, { headers: opts.headers });
    const timer = setTimeout(() => {
      error = `timed out with ${replies.length}/${expect} replies`;
      ws.terminate();
    }, opts.timeoutMs ?? 5_000);
    const done = (closeCode: number): void => {
      clearTimeout(timer);
      resolve({ ok: opened, status, headers, replies, closeCode, error });
    };
    ws.on('upgrade', (res) => {
      status = res.statusCode ?? 0;
      headers = headerMapOf(pairsOf(res.rawHeaders));
    });
    ws.on('unexpected-response', (_req, res) => {
      status = res.statusCode ?? 0;
      headers = headerMapOf(pairsOf(res.rawHeaders));
      error = `upgrade refused with ${status}`;
      res.resume();
      ws.terminate();
    });
    ws.on('open', () => {
      opened = true;
      for (const m of messages) ws.send(m, { binary: Buffer.isBuffer(m) });
      if (expect === 0) ws.close(1000);
    });
    ws.on('message', (data, isBinary) => {
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      replies.push(isBinary ? buf : buf.toString('utf8'));
      if (replies.length === expect) ws.close(1000);
    });
    ws.on('error', (err) => {
      error ??= err.message;
    });
    ws.on('close', (code) => done(opened ? code : 0));
  });
}

function pairsOf(raw: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i], raw[i + 1]]);
  return out;
}
