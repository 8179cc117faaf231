/**
 * The network of a transparent-mode `sloop up`: a "node" network namespace that stands between the host and
 * the workloads (as a Kubernetes node does between the pods), one namespace per workload with Istio's
 * interception rules, and an /etc/hosts per workload naming every service.
 *
 * ```
 *  host ── veth (uplink /30) ── node namespace (ip_forward=1) ── veth /30 ── workload namespace (eth0), × N
 * ```
 *
 * - The host keeps its own `net.ipv4.ip_forward` untouched: forwarding between workloads happens in the node
 *   namespace. The host gains one veth end and a route per workload /30 through it (both vanish with the node
 *   namespace), so it reaches the workloads (the entry port-forward, admin ports) and they reach it (the control
 *   plane's forward on the uplink address).
 * - Names: every namespace is `sloop-<pid>-<what>` (the pid of `sloop up`), so runs never collide, and what a
 *   killed run left behind is recognised and removed by the next one ({@link deleteStaleMeshNetworks}).
 * - Service names resolve through `/etc/netns/<namespace>/hosts`, which `ip netns exec` bind-mounts over
 *   /etc/hosts for the processes it starts. Each service gets an address of its own from 240.240.0.0/16
 *   (Istio's DNS proxy auto-allocates ServiceEntry addresses from that range): it is never a real
 *   destination, because iptables sends every outbound TCP connection to the sidecar, which routes by the
 *   original destination port and the Host header / :authority, not by that address. resolv.conf names no
 *   reachable server ({@link WORKLOAD_RESOLV_CONF}).
 */
import { mkdirSync, readdirSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCommand, type CommandRunner } from './command.ts';
import {
  createWorkloadNetns,
  deleteWorkloadNetns,
  hostInterfaceName,
  installInterception,
  listNetns,
  pickWorkloadSubnet,
  setIpForwarding,
  DEFAULT_WORKLOAD_RANGE,
  PROXY_UID,
  type WorkloadNetns,
} from './workload-netns.ts';

/** Where `ip netns exec` looks for per-namespace /etc files (iproute2's NETNS_ETC_DIR). */
export const NETNS_ETC_DIR = '/etc/netns';

/** Service addresses in workloads' /etc/hosts come from here (Istio's DNS auto-allocation range). */
export const SERVICE_ADDRESS_RANGE = '240.240.0.0/16';

/** The sidecar's admin port inside each workload namespace (bound on the workload IP, never intercepted). */
export const TRANSPARENT_ADMIN_PORT = 15000;

const NAME_PREFIX = 'sloop-';
const STALE_RE = /^sloop-(\d+)-/;

/** A service whose names go into the workloads' /etc/hosts. */
export interface MeshServiceName {
  name: string;
  namespace: string;
}

/**
 * The /etc/hosts of a workload in `workloadNamespace` (a Kubernetes namespace): localhost, then one line per
 * service with the names Kubernetes DNS would answer (`name.ns`, `name.ns.svc`, `name.ns.svc.cluster.local`,
 * and the bare `name` in the workload's own namespace), addresses from {@link SERVICE_ADDRESS_RANGE} in sorted
 * order. Pure.
 */
export function buildHostsFile(services: readonly MeshServiceName[], workloadNamespace: string): string {
  const lines = ['# Written by sloop up (transparent mode): service names for this workload. Any address works:', '# iptables sends every outbound TCP connection to the sidecar, which routes by port and Host.', '127.0.0.1\tlocalhost', '::1\tlocalhost ip6-localhost ip6-loopback'];
  const unique = [...new Map(services.map((s) => [`${s.namespace}/${s.name}`, s])).values()].sort((a, b) => (a.namespace === b.namespace ? a.name.localeCompare(b.name) : a.namespace.localeCompare(b.namespace)));
  if (unique.length > 65_000) throw new RangeError(`too many services for ${SERVICE_ADDRESS_RANGE}: ${unique.length}`);
  unique.forEach((s, i) => {
    const n = i + 1;
    const ip = `240.240.${n >> 8}.${n & 255}`;
    const names = [`${s.name}.${s.namespace}.svc.cluster.local`, `${s.name}.${s.namespace}.svc`, `${s.name}.${s.namespace}`];
    if (s.namespace === workloadNamespace) names.unshift(s.name);
    lines.push(`${ip}\t${names.join(' ')}`);
  });
  return lines.join('\n') + '\n';
}

/** A created mesh network. */
export interface MeshNetwork {
  /** The node namespace; its `hostIp` is the host's address on the uplink (what workloads dial for the host). */
  node: WorkloadNetns;
  /** Workload name → its namespace (`workloadIp` is its INSTANCE_IPS). */
  workloads: ReadonlyMap<string, WorkloadNetns>;
}

/** Options of {@link createMeshNetwork}. */
export interface CreateMeshNetworkOptions {
  /** Distinguishes this run's namespaces (`sloop-<id>-…`); `sloop up` uses its pid. */
  id: number;
  /** Workload names (the demo's `frontend`, `reviews-v1`, …). */
  workloads: readonly string[];
  /** /etc/hosts for every workload ({@link buildHostsFile}). */
  hostsFile: string;
  /** Inbound ports left unintercepted besides the admin port. */
  excludeInboundPorts?: readonly number[];
  range?: string;
  run?: CommandRunner;
}

function netnsName(id: number, what: string): string {
  return `${NAME_PREFIX}${id}-${what}`;
}

/** Used address ranges in a namespace (undefined = this one): every route's destination. */
async function routedPrefixes(netns: string | undefined, run: CommandRunner): Promise<string[]> {
  const { stdout } = await run([...(netns === undefined ? ['ip'] : ['ip', '-n', netns]), '-j', '-4', 'route', 'show', 'table', 'all']);
  return (stdout.trim() === '' ? [] : (JSON.parse(stdout) as { dst?: string }[]))
    .map((r) => r.dst)
    .filter((d): d is string => d !== undefined && /^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(d));
}

/**
 * Creates the node namespace with its uplink to the host, a namespace per workload behind it with Istio's
 * interception (sidecar uid {@link PROXY_UID}; the admin port {@link TRANSPARENT_ADMIN_PORT} excluded) and its
 * /etc/hosts, and the host routes to the workloads. On failure, removes what it created and throws the first
 * error (`SLOOP_ERR_CLI_INTERCEPTION_FAILED`).
 */
export async function createMeshNetwork(o: CreateMeshNetworkOptions): Promise<MeshNetwork> {
  const run = o.run ?? runCommand;
  const range = o.range ?? DEFAULT_WORKLOAD_RANGE;
  const partial: { node?: WorkloadNetns; workloads: Map<string, WorkloadNetns> } = { workloads: new Map() };
  try {
    const node = await createWorkloadNetns({ name: netnsName(o.id, 'node'), range, run });
    partial.node = node;
    await setIpForwarding(node.name, true, run);
    // Workload /30s avoid what the host routes as well as what the node does (the host routes to them too).
    const used = [...(await routedPrefixes(undefined, run)), ...(await routedPrefixes(node.name, run))];
    for (const w of o.workloads) {
      const { subnet } = pickWorkloadSubnet(range, used);
      used.push(subnet);
      const name = netnsName(o.id, w);
      writeHostsFile(name, o.hostsFile);
      const ns = await createWorkloadNetns({ name, hostNetns: node.name, subnet, run });
      partial.workloads.set(w, ns);
      await run(['ip', 'route', 'add', subnet, 'via', node.workloadIp, 'dev', node.hostInterface]);
      await installInterception(ns.name, { proxyUid: PROXY_UID, excludeInboundPorts: [TRANSPARENT_ADMIN_PORT, ...(o.excludeInboundPorts ?? [])] }, run);
    }
    return { node, workloads: partial.workloads };
  } catch (err) {
    await deleteMeshNetwork(partial, run).catch(() => undefined);
    throw err;
  }
}

/**
 * No DNS server is reachable from the namespaces, so resolv.conf points at the workload's own loopback, where
 * nothing listens: a query fails at once (ICMP port unreachable) instead of waiting out the host's resolver's
 * timeouts. That matters at shutdown: @grpc/grpc-js looks up the target's TXT service config through DNS, and a
 * query in flight keeps the app's event loop alive after SIGTERM.
 */
export const WORKLOAD_RESOLV_CONF = '# Written by sloop up: no DNS inside the mesh; service names come from /etc/hosts.\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n';

function writeHostsFile(netns: string, text: string): void {
  const dir = join(NETNS_ETC_DIR, netns);
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  writeFileSync(join(dir, 'hosts'), text, { mode: 0o644 });
  writeFileSync(join(dir, 'resolv.conf'), WORKLOAD_RESOLV_CONF, { mode: 0o644 });
}

function removeEtcDir(netns: string): void {
  rmSync(join(NETNS_ETC_DIR, netns), { recursive: true, force: true });
  try {
    // /etc/netns is iproute2's, but usually only there because of us: leave it only if something else uses it.
    if (readdirSync(NETNS_ETC_DIR).length === 0) rmdirSync(NETNS_ETC_DIR);
  } catch {
    // Absent, or not empty.
  }
}

/**
 * Deletes a mesh network: every workload namespace (SIGKILLing what still runs in it; its iptables rules go
 * with it), its /etc/netns files, then the node namespace (the uplink veth and the host routes through it go
 * with it). Absent parts are skipped; the first error is thrown after trying everything.
 */
export async function deleteMeshNetwork(net: { node?: WorkloadNetns; workloads: ReadonlyMap<string, WorkloadNetns> }, run: CommandRunner = runCommand): Promise<void> {
  const errors: unknown[] = [];
  const attempt = async (f: () => Promise<void> | void): Promise<void> => {
    try {
      await f();
    } catch (err) {
      errors.push(err);
    }
  };
  for (const ns of net.workloads.values()) {
    await attempt(() => deleteWorkloadNetns(ns, run));
    await attempt(() => removeEtcDir(ns.name));
  }
  if (net.node !== undefined) await attempt(() => deleteWorkloadNetns(net.node!, run));
  if (errors.length > 0) throw errors[0];
}

/**
 * Removes what earlier runs left when they could not clean up (SIGKILL, a crash): namespaces `sloop-<pid>-…`
 * whose pid no longer runs, with their veths and /etc/netns files. Returns the namespaces removed.
 */
export async function deleteStaleMeshNetworks(isAlive: (pid: number) => boolean = pidAlive, run: CommandRunner = runCommand): Promise<string[]> {
  const stale = (await listNetns(run)).filter((n) => {
    const m = STALE_RE.exec(n);
    return m !== null && !isAlive(Number(m[1]));
  });
  // Workloads first: the node namespace holds the other ends of their veths.
  stale.sort((a, b) => Number(a.endsWith('-node')) - Number(b.endsWith('-node')));
  for (const name of stale) {
    const id = Number(STALE_RE.exec(name)![1]);
    const hostNetns = name.endsWith('-node') ? undefined : netnsName(id, 'node');
    await deleteWorkloadNetns({ name, hostNetns, hostInterface: hostInterfaceName(name) }, run);
    removeEtcDir(name);
  }
  // /etc/netns files whose namespace is already gone.
  let etc: string[] = [];
  try {
    etc = readdirSync(NETNS_ETC_DIR);
  } catch {
    // No /etc/netns.
  }
  for (const name of etc) {
    const m = STALE_RE.exec(name);
    if (m !== null && !isAlive(Number(m[1]))) removeEtcDir(name);
  }
  return stale;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
