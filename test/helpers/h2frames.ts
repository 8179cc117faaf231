/**
 * A tiny HTTP/2 frame writer and reader for sending what real clients refuse to send (uppercase header names,
 * connection-specific headers, rapid resets). Header blocks use only HPACK "literal header field without
 * indexing — new name" representations (RFC 7541 §6.2.2) with raw (non-Huffman) strings, so any bytes can go
 * on the wire exactly as given and the peer's dynamic table never changes.
 */
import { connect, type Socket } from 'node:net';
import { LOOPBACK } from './ports.ts';

/** Client connection preface (RFC 9113 §3.4). */
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** Frame types (RFC 9113 §6). */
export const FRAME = { DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const;
/** Flags. */
export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;
/** Error codes (RFC 9113 §7). */
export const H2_ERROR: Record<number, string> = {
  0: 'NO_ERROR', 1: 'PROTOCOL_ERROR', 2: 'INTERNAL_ERROR', 3: 'FLOW_CONTROL_ERROR', 4: 'SETTINGS_TIMEOUT', 5: 'STREAM_CLOSED',
  6: 'FRAME_SIZE_ERROR', 7: 'REFUSED_STREAM', 8: 'CANCEL', 9: 'COMPRESSION_ERROR', 10: 'CONNECT_ERROR', 11: 'ENHANCE_YOUR_CALM',
  12: 'INADEQUATE_SECURITY', 13: 'HTTP_1_1_REQUIRED',
};

/** One frame: 9-byte header + payload. */
export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

/** HPACK integer with an `n`-bit prefix whose high bits are `first` (RFC 7541 §5.1). */
function hpackInt(value: number, n: number, first: number): number[] {
  const max = (1 << n) - 1;
  if (value < max) return [first | value];
  const out = [first | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

function hpackString(s: string): Buffer {
  const raw = Buffer.from(s, 'latin1');
  return Buffer.concat([Buffer.from(hpackInt(raw.length, 7, 0)), raw]);
}

/** A header block of literal-without-indexing fields, names and values exactly as given. */
export function headerBlock(fields: ReadonlyArray<readonly [string, string]>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of fields) parts.push(Buffer.from([0x00]), hpackString(name), hpackString(value));
  return Buffer.concat(parts);
}

/** A HEADERS frame carrying `fields` (END_HEADERS set; END_STREAM unless `endStream` is false). */
export function headersFrame(streamId: number, fields: ReadonlyArray<readonly [string, string]>, endStream = true): Buffer {
  return frame(FRAME.HEADERS, FLAG.END_HEADERS | (endStream ? FLAG.END_STREAM : 0), streamId, headerBlock(fields));
}

/** RST_STREAM with `code` (default CANCEL). */
export function rstStreamFrame(streamId: number, code = 8): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(code);
  return frame(FRAME.RST_STREAM, 0, streamId, p);
}

/** An empty SETTINGS frame, or its ACK. */
export function settingsFrame(ack = false): Buffer {
  return frame(FRAME.SETTINGS, ack ? FLAG.ACK : 0, 0);
}

/** SETTINGS identifiers (RFC 9113 §6.5.2). */
export const SETTING = { HEADER_TABLE_SIZE: 1, ENABLE_PUSH: 2, MAX_CONCURRENT_STREAMS: 3, INITIAL_WINDOW_SIZE: 4, MAX_FRAME_SIZE: 5, MAX_HEADER_LIST_SIZE: 6 } as const;

/** A SETTINGS frame carrying `params` as [identifier, value] pairs. */
export function settingsWith(params: ReadonlyArray<readonly [number, number]>): Buffer {
  const p = Buffer.alloc(6 * params.length);
  params.forEach(([id, value], i) => {
    p.writeUInt16BE(id, 6 * i);
    p.writeUInt32BE(value, 6 * i + 2);
  });
  return frame(FRAME.SETTINGS, 0, 0, p);
}

/** A PING frame (8-byte payload), or its ACK. */
export function pingFrame(ack = false, data: Buffer = Buffer.alloc(8)): Buffer {
  return frame(FRAME.PING, ack ? FLAG.ACK : 0, 0, data);
}

/** A PRIORITY frame: `streamId` depends on `dependsOn` with `weight` (1–256). */
export function priorityFrame(streamId: number, dependsOn = 0, weight = 16): Buffer {
  const p = Buffer.alloc(5);
  p.writeUInt32BE(dependsOn & 0x7fffffff);
  p[4] = weight - 1;
  return frame(FRAME.PRIORITY, 0, streamId, p);
}

/** A WINDOW_UPDATE frame on `streamId` (0 = the connection). */
export function windowUpdateFrame(streamId: number, increment: number): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(increment & 0x7fffffff);
  return frame(FRAME.WINDOW_UPDATE, 0, streamId, p);
}

/**
 * HPACK "literal header field with incremental indexing — new name" (RFC 7541 §6.2.1): the field is also
 * inserted into the peer's dynamic table, where {@link hpackIndexed} can then reference it (index 62 is the
 * newest entry, §2.3.3).
 */
export function hpackIndexedLiteral(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x40]), hpackString(name), hpackString(value)]);
}

/** HPACK "indexed header field" (RFC 7541 §6.1): one byte (for index < 127) that decodes to a whole field. */
export function hpackIndexed(index: number): Buffer {
  return Buffer.from(hpackInt(index, 7, 0x80));
}

/**
 * HPACK "literal header field without indexing — indexed name" (RFC 7541 §6.2.2) with a static-table name
 * (e.g. 32 = `cookie`), the compact form a cookie-crumb flood uses.
 */
export function hpackLiteralIndexedName(nameIndex: number, value: string): Buffer {
  return Buffer.concat([Buffer.from(hpackInt(nameIndex, 4, 0x00)), hpackString(value)]);
}

/**
 * A header block split into HEADERS + CONTINUATION frames of at most `maxFrameBytes` payload (default 16384,
 * the SETTINGS_MAX_FRAME_SIZE minimum), END_HEADERS on the last one.
 */
export function headerBlockFrames(streamId: number, block: Buffer, opts: { endStream?: boolean; maxFrameBytes?: number } = {}): Buffer {
  const max = opts.maxFrameBytes ?? 16_384;
  const frames: Buffer[] = [];
  for (let off = 0; off === 0 || off < block.length; off += max) {
    const last = off + max >= block.length;
    const flags = (last ? FLAG.END_HEADERS : 0) | (off === 0 && opts.endStream !== false ? FLAG.END_STREAM : 0);
    frames.push(frame(off === 0 ? FRAME.HEADERS : FRAME.CONTINUATION, flags, streamId, block.subarray(off, off + max)));
  }
  return Buffer.concat(frames);
}

/** The usual request pseudo-headers for a GET on `authority`/`path`. */
export function getRequest(authority: string, path = '/', extra: ReadonlyArray<readonly [string, string]> = []): Array<readonly [string, string]> {
  return [[':method', 'GET'], [':scheme', 'http'], [':authority', authority], [':path', path], ...extra];
}

/** A frame as read back from the server. */
export interface ReadFrame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

/** What the server sent on a raw h2 connection. */
export interface H2RawResult {
  frames: ReadFrame[];
  /** RST_STREAM error code names by stream id. */
  resets: Map<number, string>;
  /** Error code name of the first GOAWAY, if one arrived. */
  goaway?: string;
  /** Stream ids that got a HEADERS frame back (a response). */
  responded: Set<number>;
  /** True if the server closed the connection before the harness gave up. */
  closed: boolean;
}

/** Splits `data` into frames (skipping a trailing partial frame). */
export function parseFrames(data: Buffer): ReadFrame[] {
  const out: ReadFrame[] = [];
  let pos = 0;
  while (pos + 9 <= data.length) {
    const len = data.readUIntBE(pos, 3);
    if (pos + 9 + len > data.length) break;
    out.push({ type: data[pos + 3], flags: data[pos + 4], streamId: data.readUInt32BE(pos + 5) & 0x7fffffff, payload: data.subarray(pos + 9, pos + 9 + len) });
    pos += 9 + len;
  }
  return out;
}

function summarize(data: Buffer, closed: boolean): H2RawResult {
  const frames = parseFrames(data);
  const resets = new Map<number, string>();
  const responded = new Set<number>();
  let goaway: string | undefined;
  for (const f of frames) {
    if (f.type === FRAME.RST_STREAM) resets.set(f.streamId, H2_ERROR[f.payload.readUInt32BE(0)] ?? String(f.payload.readUInt32BE(0)));
    else if (f.type === FRAME.GOAWAY && goaway === undefined) goaway = H2_ERROR[f.payload.readUInt32BE(4)] ?? String(f.payload.readUInt32BE(4));
    else if (f.type === FRAME.HEADERS) responded.add(f.streamId);
  }
  return { frames, resets, goaway, responded, closed };
}

/**
 * Opens a cleartext connection to `port`, writes the preface and an empty SETTINGS, then `frames` (one
 * write each, SETTINGS ACKed as the server's arrive), and collects frames until `until` holds, the server
 * closes, or `timeoutMs` (default 2 s) passes.
 */
export function h2Raw(port: number, frames: ReadonlyArray<Buffer>, opts: { until?: (r: H2RawResult) => boolean; timeoutMs?: number } = {}): Promise<H2RawResult> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let settled = false;
    let connected = false;
    let acked = 0;
    const socket: Socket = connect({ port, host: LOOPBACK });
    const finish = (closed: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(summarize(Buffer.concat(chunks), closed));
    };
    const timer = setTimeout(() => finish(false), opts.timeoutMs ?? 2_000);
    socket.on('connect', () => {
      connected = true;
      socket.write(Buffer.concat([PREFACE, settingsFrame()]));
      for (const f of frames) socket.write(f);
    });
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      const r = summarize(Buffer.concat(chunks), false);
      const settings = r.frames.filter((f) => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0).length;
      for (; acked < settings; acked++) if (!socket.destroyed) socket.write(settingsFrame(true));
      if (opts.until?.(r)) finish(false);
    });
    socket.on('error', (err) => {
      if (!connected) {
        settled = true;
        clearTimeout(timer);
        reject(err);
      }
    });
    socket.on('close', () => finish(true));
  });
}
