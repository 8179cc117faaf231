/** `sloop proxy`: load and validate the bootstrap, start the proxy, drain on SIGTERM/SIGINT. */
import { readFileSync } from 'node:fs';
import { LineCounter, isNode, parseDocument } from 'yaml';
import { loadBootstrap } from '../data-plane/bootstrap.ts';
import { ProxyServer } from '../data-plane/server.ts';
import { ConfigError, SloopError, formatDiagnostic, type Diagnostic } from '../shared/errors.ts';
import { createLogger, type LogLevel } from '../shared/log.ts';
import { releaseStartupMemory } from '../shared/heap.ts';
import { SecretManager } from '../data-plane/tls/secrets.ts';
import { useStreamIo } from '../data-plane/socket-io.ts';
import type { WorkloadAgent } from '../data-plane/agent/agent.ts';
import { DEFAULT_TRUST_DOMAIN } from '../shared/identity/spiffe.ts';
import type { Bootstrap__Output } from '../xds/gen/envoy/config/bootstrap/v3/Bootstrap.ts';

export interface ProxyCliOptions {
  configPath: string;
  logLevel: string;
  drainTimeS: number;
  mode: 'serve' | 'validate';
  /** The workload agent (docs/identity.md): the CA's `host:port`; without it there is no agent. */
  caAddress?: string;
  /** File holding the bootstrap token (re-read on each certificate request). */
  tokenFile?: string;
  /** Defaults: node metadata TRUST_DOMAIN, else cluster.local. */
  trustDomain?: string;
  /** Defaults: node metadata NAMESPACE and SERVICE_ACCOUNT (Istio's keys). */
  namespace?: string;
  serviceAccount?: string;
  /** HTTP/1.1 reads and writes through net.Socket streams, not the TCP handle (data-plane/socket-io.ts). */
  streamIo?: boolean;
  /** Requested certificate lifetime in seconds (0: the CA's default). */
  certTtlS?: number;
}

/** A string field of the bootstrap's node metadata (google.protobuf.Struct). */
function nodeMetadata(b: Bootstrap__Output, key: string): string | undefined {
  // protobufjs' built-in Struct keeps camelCase field names (stringValue) whatever keepCase says.
  const v = (b.node?.metadata as { fields?: Record<string, { string_value?: string; stringValue?: string; kind?: string }> } | null | undefined)?.fields?.[key];
  const s = v?.kind === 'string_value' ? v.string_value : v?.kind === 'stringValue' ? v.stringValue : undefined;
  return s ? s : undefined;
}

/** The workload agent from flags and node metadata; throws SloopError on a missing identity or token file. */
function createAgent(o: ProxyCliOptions, bootstrap: Bootstrap__Output, secrets: SecretManager, log: ReturnType<typeof createLogger>, Agent: typeof WorkloadAgent): WorkloadAgent {
  const namespace = o.namespace ?? nodeMetadata(bootstrap, 'NAMESPACE');
  const serviceAccount = o.serviceAccount ?? nodeMetadata(bootstrap, 'SERVICE_ACCOUNT');
  if (!namespace || !serviceAccount) {
    throw new SloopError('SLOOP_ERR_CLI_USAGE', '--ca-address needs the workload identity: --namespace and --service-account, or node metadata NAMESPACE and SERVICE_ACCOUNT');
  }
  if (!o.tokenFile) throw new SloopError('SLOOP_ERR_CLI_USAGE', '--ca-address needs --token-file (the bootstrap token the control plane minted)');
  const tokenFile = o.tokenFile;
  const readToken = (): string => readFileSync(tokenFile, 'utf8').trim();
  try {
    readToken();
  } catch (err) {
    throw new SloopError('SLOOP_ERR_CLI_USAGE', `cannot read --token-file ${tokenFile}: ${(err as Error).message}`, { cause: err });
  }
  return new Agent({
    caAddress: o.caAddress!,
    token: readToken,
    trustDomain: o.trustDomain ?? nodeMetadata(bootstrap, 'TRUST_DOMAIN') ?? DEFAULT_TRUST_DOMAIN,
    identity: { namespace, serviceAccount },
    secrets,
    log,
    ttlSeconds: o.certTtlS ?? 0,
    metadata: bootstrap.node?.id ? { WorkloadName: bootstrap.node.id } : undefined,
  });
}

/** Returns the process exit code. */
export async function runProxy(o: ProxyCliOptions): Promise<number> {
  const log = createLogger((o.logLevel === 'off' ? 'silent' : o.logLevel) as LogLevel);
  if (o.streamIo === true) useStreamIo();
  let server: ProxyServer;
  let agent: WorkloadAgent | undefined;
  try {
    const { bootstrap, warnings } = loadBootstrap(o.configPath);
    for (const w of warnings) process.stderr.write(`warning: ${formatDiagnostic(w)}\n`);
    const secrets = new SecretManager();
    // The agent reserves its secret names before the config is compiled, so TLS contexts using them warm.
    // Loaded only when used: a proxy without an agent never loads @peculiar/x509 and its dependencies.
    if (o.caAddress !== undefined) agent = createAgent(o, bootstrap, secrets, log, (await import('../data-plane/agent/agent.ts')).WorkloadAgent);
    server = new ProxyServer(bootstrap, { log, configPath: o.configPath, drainTimeMs: Math.max(0, o.drainTimeS) * 1000, secrets });
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
    agent?.close();
    process.stdout.write(`configuration '${o.configPath}' OK\n`);
    return 0;
  }
  agent?.start();
  try {
    await server.start();
  } catch (err) {
    agent?.close();
    process.stderr.write(`sloop proxy: ${(err as Error).message}\n`);
    return 1;
  }
  log.info({ admin: server.adminPort, listeners: server.listeners.map((l) => `${l.name}:${l.port}`) }, 'proxy live');
  // Start-up (and, with xDS, the first config: start() waited for it) grew the heap well past what stays live.
  releaseStartupMemory();
  const onSignal = (sig: string): void => {
    log.info({ signal: sig }, 'shutting down');
    void server.stop();
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
  await server.done;
  agent?.close();
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
