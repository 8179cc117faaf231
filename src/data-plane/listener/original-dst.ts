/**
 * The original destination of a redirected connection: where the client was connecting before iptables
 * REDIRECT (transparent interception) sent it to the proxy. Linux keeps it in conntrack and hands it out
 * through getsockopt(SO_ORIGINAL_DST) (IP6T_SO_ORIGINAL_DST for IPv6), which Node.js does not expose, so
 * it comes from Sloop's own Node-API addon, native/original-dst (built by `npm run build:native`).
 *
 * The addon is loaded on first use (a listener that needs it), never at import time, so everything else
 * works where it was not built.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Socket } from 'node:net';
import { SloopError } from '../../shared/errors.ts';

/** An IP address (no brackets, IPv4 dotted or IPv6) and a port. */
export interface OriginalDst {
  address: string;
  port: number;
}

interface OriginalDstAddon {
  getOriginalDst(fd: number): OriginalDst | null;
}

const ADDON = 'native/original-dst/build/Release/original_dst.node';
/** This file runs from src/data-plane/listener/ or, compiled, from dist/src/data-plane/listener/. */
const CANDIDATES = ['../../../', '../../../../'].map((up) => fileURLToPath(new URL(up + ADDON, import.meta.url)));

let addon: OriginalDstAddon | undefined;

/**
 * Loads the addon once. Throws SloopError `SLOOP_ERR_PROXY_ORIGINAL_DST_UNAVAILABLE` naming the build step
 * when it is missing or does not load (wrong platform, stale build).
 */
export function loadOriginalDstAddon(): OriginalDstAddon {
  if (addon !== undefined) return addon;
  const path = CANDIDATES.find((p) => existsSync(p));
  if (path === undefined) {
    throw new SloopError(
      'SLOOP_ERR_PROXY_ORIGINAL_DST_UNAVAILABLE',
      `the original-destination addon (${ADDON}) is not built: run \`npm run build:native\` (needs python3, make and a C compiler); it reads SO_ORIGINAL_DST for use_original_dst and the original_dst listener filter`,
    );
  }
  try {
    const loaded = createRequire(import.meta.url)(path) as Partial<OriginalDstAddon>;
    if (typeof loaded.getOriginalDst !== 'function') throw new Error('getOriginalDst is not exported');
    addon = loaded as OriginalDstAddon;
    return addon;
  } catch (err) {
    throw new SloopError(
      'SLOOP_ERR_PROXY_ORIGINAL_DST_UNAVAILABLE',
      `the original-destination addon ${path} does not load (${(err as Error).message}): rebuild it with \`npm run build:native\``,
      { cause: err },
    );
  }
}

/** Node's private TCP handle: `fd` is the file descriptor on Unix (-1 once closed). */
interface HandleWithFd {
  fd?: number;
}

/**
 * The connection's destination before NAT, or undefined when the kernel has none (not redirected and not
 * tracked, a closed socket, not TCP). For a tracked connection that was never redirected this is its own
 * local address, as in Envoy. Throws `SLOOP_ERR_PROXY_ORIGINAL_DST_UNAVAILABLE` if the addon is missing.
 */
export function getOriginalDst(socket: Socket): OriginalDst | undefined {
  const lib = loadOriginalDstAddon();
  const fd = (socket as Socket & { _handle?: HandleWithFd | null })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  const r = lib.getOriginalDst(fd);
  return r === null ? undefined : r;
}
