// Helpers the benches share: an nginx config as the shared proxy-bench harness writes it, and CPU ticks of a
// process tree from /proc.
import { readFileSync, readdirSync } from 'node:fs';

/**
 * nginx.conf text for one worker with its files under `d` and `http` inside the http block (the harness's
 * settings: no access log, keep-alive for 10 M requests). Start it with `-g 'daemon off;'`.
 */
export function nginxConfig(d: string, http: string): string {
  return `${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes 1;
master_process on;
pid ${d}/nginx.pid;
error_log ${d}/error.log warn;
events { worker_connections 8192; }
http {
  client_body_temp_path ${d}/cbt; proxy_temp_path ${d}/pt; fastcgi_temp_path ${d}/ft; uwsgi_temp_path ${d}/ut; scgi_temp_path ${d}/st;
  access_log off;
  server_tokens off;
  keepalive_requests 10000000;
  keepalive_timeout 75s;
${http}
}
`;
}

function readStat(pid: number): { ppid: number; ticks: number } {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
  return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) };
}

/** `root` and every descendant, from /proc. */
export function processTree(root: number): number[] {
  const kids = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const { ppid } = readStat(Number(d));
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid)!.push(Number(d));
    } catch {
      // gone
    }
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) out.push(...(kids.get(out[i]!) ?? []));
  return out;
}

/** utime + stime of `pids`, in clock ticks (processes that are gone count 0). */
export function cpuTicks(pids: readonly number[]): number {
  let t = 0;
  for (const p of pids) {
    try {
      t += readStat(p).ticks;
    } catch {
      // gone
    }
  }
  return t;
}
