/**
 * Load generator for bench/mtls.ts, run as its own process (pinned to the client core by the bench). HTTP/1.1
 * `GET /` over plain TCP or over TLS with a client certificate, N loops at once for S seconds, closed loop.
 *
 *   node bench/mtls-load.ts --port P --mode keepalive|new --connections N --seconds S [--tls --cert c --key k --ca ca]
 *     [--pids 1,2] [--upstream-pids 3,4]
 *
 * - keepalive: N connections opened first (their handshakes are outside the window), then each sends the next
 *   request as soon as the previous response is complete.
 * - new: each loop opens a new connection per request (`Connection: close`), so every TLS request is a full
 *   handshake: Node's TLS client keeps no session unless given one, so nothing is resumed.
 * The window's start and end are taken here, and so are the CPU times of `--pids` (the target's process tree)
 * and `--upstream-pids` (utime+stime from /proc/<pid>/stat, as shared/bench/lib/bench.mjs reads them), so the
 * CPU is exactly that of the counted window. Prints one JSON line on stdout.
 *
 * The response parser is the least that is correct for the proxies measured: a status line, headers, and a
 * Content-Length body (a response without one counts as an error and closes the connection).
 */
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { parseArgs } from 'node:util';

const { values: a } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    mode: { type: 'string', default: 'keepalive' },
    connections: { type: 'string', default: '16' },
    seconds: { type: 'string', default: '8' },
    tls: { type: 'boolean', default: false },
    cert: { type: 'string' },
    key: { type: 'string' },
    ca: { type: 'string' },
    pids: { type: 'string', default: '' },
    'upstream-pids': { type: 'string', default: '' },
  },
});
const PORT = Number(a.port);
const HOST = a.host as string;
const MODE = a.mode === 'new' ? 'new' : 'keepalive';
const CONNS = Number(a.connections);
const SECONDS = Number(a.seconds);
const pidList = (s: string | undefined): number[] => (s ? s.split(',').filter(Boolean).map(Number) : []);
const PIDS = pidList(a.pids);
const UP_PIDS = pidList(a['upstream-pids']);
// One client context for every connection (as a real client has), so the client does not parse the key and
// certificates again per handshake. Node keeps no client session unless `session` is passed, so every
// handshake is a full one (counted below: `resumed` must stay 0).
const tlsOptions: tls.ConnectionOptions | undefined = a.tls
  ? {
      host: HOST,
      port: PORT,
      secureContext: tls.createSecureContext({
        cert: a.cert ? readFileSync(a.cert) : undefined,
        key: a.key ? readFileSync(a.key) : undefined,
        ca: a.ca ? readFileSync(a.ca) : undefined,
      }),
      // The server certificate has IP:127.0.0.1, so the default identity check passes; no SNI is sent for an IP.
    }
  : undefined;

const REQ_KEEPALIVE = Buffer.from(`GET / HTTP/1.1\r\nHost: ${HOST}:${PORT}\r\nUser-Agent: sloop-mtls-bench\r\n\r\n`, 'latin1');
const REQ_CLOSE = Buffer.from(`GET / HTTP/1.1\r\nHost: ${HOST}:${PORT}\r\nUser-Agent: sloop-mtls-bench\r\nConnection: close\r\n\r\n`, 'latin1');
const CRLF2 = Buffer.from('\r\n\r\n', 'latin1');

function cpuTicks(pids: readonly number[]): number {
  let t = 0;
  for (const p of pids) {
    try {
      const s = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
      t += Number(f[11]) + Number(f[12]);
    } catch {
      // gone
    }
  }
  return t;
}

/** Busy and total jiffies per CPU (`cpu0`, `cpu1`, ...) from /proc/stat. */
function coreStat(): Record<string, { busy: number; total: number }> {
  const out: Record<string, { busy: number; total: number }> = {};
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^(cpu\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const v = m[2].split(/\s+/).map(Number); // user nice system idle iowait irq softirq steal
    const total = v.slice(0, 8).reduce((x, y) => x + y, 0);
    out[m[1]] = { busy: total - v[3] - v[4], total };
  }
  return out;
}

let measuring = false;
let stopped = false;
let ok = 0;
let non2xx = 0;
let errors = 0;
let connects = 0;
let resumed = 0;
const errorKinds = new Map<string, number>();
const sockets = new Set<net.Socket>();

function noteError(what: string): void {
  if (!measuring || stopped) return;
  errors++;
  errorKinds.set(what, (errorKinds.get(what) ?? 0) + 1);
}

function open(onConnect: (s: net.Socket) => void): net.Socket {
  const s = tlsOptions ? tls.connect(tlsOptions) : net.connect({ host: HOST, port: PORT });
  s.setNoDelay(true);
  sockets.add(s);
  s.once('close', () => sockets.delete(s));
  s.once(tlsOptions ? 'secureConnect' : 'connect', () => {
    if (tlsOptions && (s as tls.TLSSocket).isSessionReused() && measuring) resumed++;
    onConnect(s);
  });
  return s;
}

/**
 * Runs one request/response exchange loop on a socket: calls `done(true)` after each complete response and
 * `done(false)` when the connection fails or the response is unusable.
 */
function attachParser(s: net.Socket, done: (good: boolean) => void): void {
  let buf: Buffer | undefined;
  let need = -1; // total bytes of the current response, once its head is parsed
  s.on('data', (chunk: Buffer) => {
    buf = buf === undefined || buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    while (buf.length > 0) {
      if (need < 0) {
        const end = buf.indexOf(CRLF2);
        if (end < 0) return;
        const head = buf.toString('latin1', 0, end).toLowerCase();
        const m = /\r\ncontent-length:\s*(\d+)/.exec(head);
        if (!m) {
          noteError('no content-length');
          s.destroy();
          done(false);
          return;
        }
        const status = Number(head.slice(9, 12));
        if (status < 200 || status > 399) non2xx += measuring && !stopped ? 1 : 0;
        need = end + 4 + Number(m[1]);
      }
      if (buf.length < need) return;
      buf = buf.subarray(need);
      need = -1;
      done(true);
    }
  });
  s.on('error', (e: NodeJS.ErrnoException) => {
    noteError(e.code ?? e.message);
  });
}

function keepAliveLoop(): void {
  let s: net.Socket;
  const start = (): void => {
    s = open((sock) => {
      ready++;
      sock.write(REQ_KEEPALIVE);
    });
    attachParser(s, (good) => {
      if (stopped) return;
      if (good) {
        if (measuring) ok++;
        s.write(REQ_KEEPALIVE);
      }
    });
    s.once('close', () => {
      if (!stopped) {
        noteError('closed');
        setImmediate(start);
      }
    });
  };
  start();
}

function newConnLoop(): void {
  const once = (): void => {
    if (stopped) return;
    let finished = false;
    const s = open((sock) => {
      if (measuring) connects++;
      sock.write(REQ_CLOSE);
    });
    const next = (): void => {
      if (finished) return;
      finished = true;
      setImmediate(once);
    };
    attachParser(s, (good) => {
      if (good && measuring && !stopped) ok++;
      // One request per connection: close our side (TLS close_notify + FIN) and start the next one.
      s.end();
      next();
    });
    s.once('close', () => {
      if (!finished) noteError('closed before response');
      next();
    });
  };
  once();
}

let ready = 0;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  if (MODE === 'keepalive') {
    for (let i = 0; i < CONNS; i++) keepAliveLoop();
    const deadline = Date.now() + 10_000;
    while (ready < CONNS && Date.now() < deadline) await sleep(5);
    await sleep(200); // let the first requests flow before the window opens
  } else {
    for (let i = 0; i < CONNS; i++) newConnLoop();
    await sleep(300);
  }
  const cpu0 = cpuTicks(PIDS);
  const up0 = cpuTicks(UP_PIDS);
  const cores0 = coreStat();
  const self0 = process.cpuUsage();
  const t0 = performance.now();
  measuring = true;
  await sleep(SECONDS * 1000);
  stopped = true;
  const wall = (performance.now() - t0) / 1000;
  const cpu1 = cpuTicks(PIDS);
  const up1 = cpuTicks(UP_PIDS);
  const self1 = process.cpuUsage(self0);
  const cores1 = coreStat();
  const coreBusyPct: Record<string, number> = {};
  for (const [k, v] of Object.entries(cores1)) {
    const b = cores0[k];
    if (b && v.total > b.total) coreBusyPct[k] = Math.round((1000 * (v.busy - b.busy)) / (v.total - b.total)) / 10;
  }
  for (const s of sockets) s.destroy();
  process.stdout.write(
    JSON.stringify({
      mode: MODE,
      tls: Boolean(tlsOptions),
      connections: CONNS,
      seconds: wall,
      ok,
      non2xx,
      errors,
      errorKinds: Object.fromEntries(errorKinds),
      connects,
      resumed,
      targetTicks: cpu1 - cpu0,
      upstreamTicks: up1 - up0,
      clientCpuPct: Math.round((1000 * (self1.user + self1.system)) / 1e6 / wall) / 10,
      coreBusyPct,
    }) + '\n',
  );
  process.exit(0);
}

await main();
