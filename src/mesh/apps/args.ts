/**
 * Command-line flags of the demo apps (`--port 1234 --version v1 ...`). The apps are ordinary programs that know
 * nothing about the mesh: they get their listening port and the service names they call, nothing else.
 */
export function parseAppArgs(argv: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${JSON.stringify(a)}`);
    const eq = a.indexOf('=');
    if (eq > 0) out.set(a.slice(2, eq), a.slice(eq + 1));
    else out.set(a.slice(2), argv[++i] ?? '');
  }
  return out;
}

/** The value of `--name`, or `fallback`; throws when it is required and missing. */
export function arg(args: Map<string, string>, name: string, fallback?: string): string {
  const v = args.get(name) ?? fallback;
  if (v === undefined || v === '') throw new Error(`missing --${name}`);
  return v;
}

/** Headers a sidecar adds on the way in, which the apps echo so the call chain is visible. */
export const PROXY_HEADERS = ['x-request-id', 'x-forwarded-proto', 'x-forwarded-client-cert'] as const;

/**
 * Who called, as the sidecar vouches for it: the `URI=` of the last element of x-forwarded-client-cert (the
 * SPIFFE ID in the caller's certificate, added by this workload's sidecar after an mTLS handshake), or undefined
 * when the call came in plaintext.
 */
export function callerIdentity(seen: Readonly<Record<string, string>>): string | undefined {
  const xfcc = seen['x-forwarded-client-cert'];
  if (xfcc === undefined) return undefined;
  const last = xfcc.split(/,(?=By=|Hash=|URI=|Subject=|DNS=|Cert=|Chain=)/).at(-1) ?? '';
  return /(?:^|;)URI=([^;,]+)/.exec(last)?.[1];
}

/** The proxy-added headers present in `headers` (a node:http header object or gRPC metadata map). */
export function proxyHeadersOf(get: (name: string) => string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of PROXY_HEADERS) {
    const v = get(h);
    if (v !== undefined) out[h] = v;
  }
  return out;
}

/** Runs `stop` once on SIGTERM or SIGINT (the app then ends when its handles close). */
export function onTerminate(stop: () => void): void {
  let done = false;
  const once = (): void => {
    if (done) return;
    done = true;
    stop();
  };
  process.once('SIGTERM', once);
  process.once('SIGINT', once);
}
