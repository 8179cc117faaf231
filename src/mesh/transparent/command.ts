/**
 * Runs the system tools transparent interception needs (`ip`, `iptables-restore`, `iptables`, `sysctl`) and
 * turns a failure into one coded error naming the command and its stderr.
 */
import { execFile } from 'node:child_process';
import { SloopError } from '../../shared/errors.ts';

/** What a finished command printed. */
export interface CommandResult {
  stdout: string;
  stderr: string;
}

/** Runs an external command with arguments (never through a shell). */
export type CommandRunner = (argv: readonly string[], opts?: { input?: string }) => Promise<CommandResult>;

/**
 * The real runner: spawns `argv[0]` with the rest as arguments, `input` on stdin. Rejects with
 * `SLOOP_ERR_CLI_INTERCEPTION_FAILED` (message: the command line, exit status and stderr) when it exits
 * non-zero or cannot be started; `cause` keeps the child_process error (its `code` is the exit status).
 */
export const runCommand: CommandRunner = (argv, opts = {}) =>
  new Promise((resolve, reject) => {
    const [cmd, ...args] = argv;
    const child = execFile(cmd, args, { encoding: 'utf8', timeout: 30_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err === null) return resolve({ stdout, stderr });
      const how = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found (is iproute2/iptables installed?)' : `failed (${typeof err.code === 'number' ? `exit ${err.code}` : (err.code ?? err.signal ?? 'error')})`;
      reject(new SloopError('SLOOP_ERR_CLI_INTERCEPTION_FAILED', `\`${argv.join(' ')}\` ${how}${stderr.trim() ? `: ${stderr.trim()}` : ''}`, { cause: err }));
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
