/**
 * One Logger interface, passed in, never a global. Messages are fixed strings; data goes in fields.
 * The CLI creates the root logger (pino); libraries take a Logger and call `child()` for context.
 */
import { pino } from 'pino';

export interface Logger {
  error(fields: object, msg: string): void;
  warn(fields: object, msg: string): void;
  info(fields: object, msg: string): void;
  debug(fields: object, msg: string): void;
  trace(fields: object, msg: string): void;
  child(fields: object): Logger;
}

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'silent';

/** A pino logger writing JSON lines to stderr (fd 2) so stdout stays for command output. */
export function createLogger(level: LogLevel = 'info'): Logger {
  return pino({ level, base: undefined }, pino.destination({ fd: 2, sync: false }));
}

/** A logger that drops everything: for tests and for components whose caller doesn't log. */
export const silentLogger: Logger = {
  error() {},
  warn() {},
  info() {},
  debug() {},
  trace() {},
  child() {
    return silentLogger;
  },
};
