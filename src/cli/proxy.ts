/** `sloop proxy`: load and validate the bootstrap, start the proxy, drain on SIGTERM/SIGINT. */
import { readFileSync } from 'node:fs';
import { LineCounter, isNode, parseDocument } from 'yaml';
import { loadBootstrap } from '../data-plane/bootstrap.ts';
import { ProxyServer } from '../data-plane/server.ts';
import { ConfigError, SloopError, formatDiagnostic, type Diagnostic } from '../shared/errors.ts';
import { createLogger, type LogLevel } from '../shared/log.ts';

export interface ProxyCliOptions {
  configPath: string;
  logLevel: string;
  drainTimeS: number;
  mode: 'serve' | 'validate';
}

/** Returns the process exit code. */
export async function runProxy(o: ProxyCliOptions): Promise<number> {
  const log = createLogger((o.logLevel === 'off' ? 'silent' : o.logLevel) as LogLevel);
  let server: ProxyServer;
  try {
    const { bootstrap, warnings } = loadBootstrap(o.configPath);
    for (const w of warnings) process.stderr.write(`warning: ${formatDiagnostic(w)}\n`);
    server = new ProxyServer(bootstrap, { log, configPath: o.configPath, drainTimeMs: Math.max(0, o.drainTimeS) * 1000 });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`sloop proxy: ${o.configPath}: invalid bootstrap\n`);
      const locate = positionFinder(o.configPath);
      for (const d of err.diagnostics) {
        const withFile: Diagnostic = d.file ? d : { ...d, file: o.configPath };
        const placed = withFile.line === undefined ? { ...withFile, ...locate(d.path) } : withFile;
        process.stderr.write(`  ${d.severity}: ${formatDiagnostic(placed)}\n`);
      }
      return 1;
    }
    if (err instanceof SloopError) {
      process.stderr.write(`sloop proxy: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
  if (o.mode === 'validate') {
    process.stdout.write(`configuration '${o.configPath}' OK\n`);
    return 0;
  }
  try {
    await server.start();
  } catch (err) {
    process.stderr.write(`sloop proxy: ${(err as Error).message}\n`);
    return 1;
  }
  log.info({ admin: server.adminPort, listeners: server.listeners.map((l) => `${l.name}:${l.port}`) }, 'proxy live');
  const onSignal = (sig: string): void => {
    log.info({ signal: sig }, 'shutting down');
    void server.stop();
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
  await server.done;
  return 0;
}

/**
 * Cross-resource checks (duplicate listener names or addresses) run after decoding, where YAML positions are
 * gone; this maps their field path back to the file's line:column so every diagnostic reads file:line:col.
 */
function positionFinder(file: string): (path: string) => { line?: number; column?: number } {
  let lookup: ((path: string) => { line?: number; column?: number }) | undefined;
  return (path) => {
    if (lookup === undefined) {
      try {
        const lineCounter = new LineCounter();
        const doc = parseDocument(readFileSync(file, 'utf8'), { lineCounter });
        lookup = (p) => {
          const keys = [...p.matchAll(/([^.[\]]+)|\[(\d+)\]/g)].map((m) => (m[2] !== undefined ? Number(m[2]) : m[1]));
          const node = doc.getIn(keys, true);
          if (!isNode(node) || node.range == null) return {};
          const pos = lineCounter.linePos(node.range[0]);
          return { line: pos.line, column: pos.col };
        };
      } catch {
        lookup = () => ({}); // binary or unreadable: the path alone still names the field
      }
    }
    return lookup(path);
  };
}
