/**
 * Istio's sidecar interception rules (istio-init / istio-cni, REDIRECT mode), for one network namespace:
 *
 * - inbound: every TCP connection arriving at the workload (nat PREROUTING) → REDIRECT to the sidecar's
 *   inbound port (15006), except the ports excluded (the sidecar's own admin/health ports, as Istio excludes
 *   15090, 15021, 15020);
 * - outbound: every TCP connection the workload opens (nat OUTPUT) → REDIRECT to the sidecar's outbound port
 *   (15001), except connections from the proxy's uid (so the sidecar's own upstream connections leave as
 *   they are: the owner-uid exclusion), to 127.0.0.1, and on loopback unless the proxy is talking to the
 *   workload's own address (Istio sends that back through inbound: ISTIO_IN_REDIRECT).
 *
 * The chain names, order and matches are Istio's (tools/istio-iptables, `iptables-save` of a pod), so
 * `iptables -t nat -S` inside a workload reads like it does in a Kubernetes pod. Built as iptables-restore
 * input, applied atomically.
 */

/** Options of {@link buildIstioNatRules}. */
export interface InterceptionOptions {
  /** The sidecar's uid: its traffic is never redirected (Istio's 1337). */
  proxyUid: number;
  /** The sidecar's gid (Istio matches both; default = proxyUid). */
  proxyGid?: number;
  /** virtualOutbound's port (Istio's 15001). */
  outboundPort?: number;
  /** virtualInbound's port (Istio's 15006). */
  inboundPort?: number;
  /** Inbound destination ports left alone, e.g. the sidecar's admin port (Istio: 15008, 15090, 15021, 15020). */
  excludeInboundPorts?: readonly number[];
  /** Outbound destination ports left alone (Istio's `excludeOutboundPorts` annotation). */
  excludeOutboundPorts?: readonly number[];
}

/** The chains Sloop (as Istio) adds to the nat table. */
export const ISTIO_CHAINS = ['ISTIO_INBOUND', 'ISTIO_REDIRECT', 'ISTIO_IN_REDIRECT', 'ISTIO_OUTPUT'] as const;

/** The jumps from built-in chains into ours (as `iptables -t nat -D` arguments without `-D`). */
export const ISTIO_JUMPS: readonly (readonly string[])[] = [
  ['PREROUTING', '-p', 'tcp', '-j', 'ISTIO_INBOUND'],
  ['OUTPUT', '-p', 'tcp', '-j', 'ISTIO_OUTPUT'],
];

function checkPort(name: string, p: number): number {
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw new RangeError(`${name}: ${p} is not a TCP port`);
  return p;
}

/**
 * iptables-restore input for the nat table (`--noflush`: other tables and chains are left alone; the ISTIO_*
 * chains are declared, hence emptied, first). Pure. Throws RangeError on a bad port or uid.
 */
export function buildIstioNatRules(opts: InterceptionOptions): string {
  const uid = opts.proxyUid;
  const gid = opts.proxyGid ?? uid;
  if (!Number.isInteger(uid) || uid < 0 || !Number.isInteger(gid) || gid < 0) throw new RangeError(`proxy uid/gid must be non-negative integers (got ${uid}/${gid})`);
  const outbound = checkPort('outboundPort', opts.outboundPort ?? 15001);
  const inbound = checkPort('inboundPort', opts.inboundPort ?? 15006);
  const lines = ['*nat'];
  for (const c of ISTIO_CHAINS) lines.push(`:${c} - [0:0]`);
  for (const j of ISTIO_JUMPS) lines.push(`-A ${j.join(' ')}`);
  for (const p of opts.excludeInboundPorts ?? []) lines.push(`-A ISTIO_INBOUND -p tcp --dport ${checkPort('excludeInboundPorts', p)} -j RETURN`);
  lines.push('-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT');
  lines.push(`-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports ${inbound}`);
  lines.push(`-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports ${outbound}`);
  for (const p of opts.excludeOutboundPorts ?? []) lines.push(`-A ISTIO_OUTPUT -p tcp --dport ${checkPort('excludeOutboundPorts', p)} -j RETURN`);
  // Istio's inbound-passthrough source address: the sidecar's connections to the app from 127.0.0.6.
  lines.push('-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN');
  for (const [flag, id] of [['--uid-owner', uid], ['--gid-owner', gid]] as const) {
    // The sidecar calling its own workload's address (not 127.0.0.1) goes through inbound, like a peer would.
    lines.push(`-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner ${flag} ${id} -j ISTIO_IN_REDIRECT`);
    // The app talking to itself over loopback is not intercepted.
    lines.push(`-A ISTIO_OUTPUT -o lo -m owner ! ${flag} ${id} -j RETURN`);
    // The sidecar's own upstream connections leave untouched.
    lines.push(`-A ISTIO_OUTPUT -m owner ${flag} ${id} -j RETURN`);
  }
  lines.push('-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN');
  lines.push('-A ISTIO_OUTPUT -j ISTIO_REDIRECT');
  lines.push('COMMIT', '');
  return lines.join('\n');
}
