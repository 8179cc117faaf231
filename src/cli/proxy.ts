/** `sloop proxy`: load and validate the bootstrap, start the proxy, drain on SIGTERM/SIGINT. */
import { loadBootstrap } from '../data-plane/bootstrap.ts';
import { ProxyServer } from '../data-plane/server.ts';
import { ConfigError, SloopError, formatDiagnostic } from '../shared/errors.ts';
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
      for (const d of err.diagnostics) {
        const withFile = d.file ? d : { ...d, file: o.configPath };
        process.stderr.write(`  ${d.severity}: ${formatDiagnostic(withFile)}\n`);
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
