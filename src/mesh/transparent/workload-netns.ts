/**
 * A workload's own network namespace, as a Kubernetes pod has one: a veth pair to the host (the host end
 * keeps a private /30 route, the workload end is `eth0` with a default route back), commands run inside it
 * with `ip netns exec`, and Istio's interception rules (./iptables.ts) in its nat table.
 *
 * Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN), iproute2 and iptables. Everything is idempotent: creating a
 * namespace that exists replaces it, deleting one that is gone does nothing. The "host" is the current
 * network namespace, or another named one (tests use a namespace of their own as the host, so nothing
 * outside them changes).
 */
import { SloopError } from '../../shared/errors.ts';
import { runCommand, type CommandRunner } from './command.ts';
import { buildIstioNatRules, ISTIO_CHAINS, ISTIO_JUMPS, type InterceptionOptions } from './iptables.ts';

/** Istio's sidecar uid and gid (istio-proxy); the sidecar runs as it so its own traffic is not redirected. */
export const PROXY_UID = 1337;

/** Where workload /30s are carved from unless told otherwise (RFC 1918, unlikely to be in use). */
export const DEFAULT_WORKLOAD_RANGE = '10.213.0.0/16';

/** A workload's namespace as created. */
export interface WorkloadNetns {
  /** The network namespace name (`ip netns`). */
  name: string;
  /** The host namespace the veth pair connects to; undefined = the one this process runs in. */
  hostNetns: string | undefined;
  /** The veth end in the host namespace. */
  hostInterface: string;
  /** The veth end in the workload (always `eth0`, as in a pod). */
  workloadInterface: string;
  /** The host end's address (the workload's default gateway). */
  hostIp: string;
  /** The workload's address: what peers connect to, and INSTANCE_IPS for its sidecar. */
  workloadIp: string;
  /** The /30 both ends share (`10.213.0.4/30`). */
  subnet: string;
  /** Always 30. */
  prefixLength: number;
}

/** Options of {@link createWorkloadNetns}. */
export interface CreateWorkloadNetnsOptions {
  /** Namespace name: letters, digits, `-`, `_`, `.`; at most 64 characters. */
  name: string;
  /** Host side: another namespace (created if missing) instead of the current one. */
  hostNetns?: string;
  /** The /30 to use (`10.213.0.4/30`); else the first free one of `range`. */
  subnet?: string;
  /** Range to pick a free /30 from (default {@link DEFAULT_WORKLOAD_RANGE}). */
  range?: string;
  run?: CommandRunner;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

function checkName(what: string, name: string): string {
  if (!NAME_RE.test(name)) throw new SloopError('SLOOP_ERR_CLI_INTERCEPTION_FAILED', `${what} ${JSON.stringify(name)}: use letters, digits, "-", "_" or "." (at most 64)`);
  return name;
}

function ipToInt(ip: string): number {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new RangeError(`not an IPv4 address: ${ip}`);
  return ((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]) >>> 0;
}

function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Parses `a.b.c.d/len` into its network (host bits cleared) and length. Throws RangeError. */
export function parseCidr(cidr: string): { base: number; len: number } {
  const [ip, l] = cidr.split('/');
  const len = Number(l);
  if (!Number.isInteger(len) || len < 0 || len > 32) throw new RangeError(`not an IPv4 CIDR: ${cidr}`);
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  return { base: (ipToInt(ip) & mask) >>> 0, len };
}

function overlaps(a: { base: number; len: number }, b: { base: number; len: number }): boolean {
  const len = Math.min(a.len, b.len);
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  return ((a.base & mask) >>> 0) === ((b.base & mask) >>> 0);
}

/**
 * The first /30 of `range` that overlaps none of `used` (CIDRs or plain addresses), as `{ hostIp, workloadIp,
 * subnet }` (.1 the host end, .2 the workload). Pure. Throws SloopError when the range is exhausted.
 */
export function pickWorkloadSubnet(range: string, used: readonly string[]): { subnet: string; hostIp: string; workloadIp: string } {
  const r = parseCidr(range);
  if (r.len > 30) throw new RangeError(`range ${range} is smaller than a /30`);
  const taken = used.map((u) => parseCidr(u.includes('/') ? u : `${u}/32`)).filter((u) => u.len > 0); // a default route overlaps everything
  const count = 2 ** (30 - r.len);
  for (let i = 0; i < count; i++) {
    const s = { base: (r.base + i * 4) >>> 0, len: 30 };
    if (taken.some((t) => overlaps(s, t))) continue;
    return { subnet: `${intToIp(s.base)}/30`, hostIp: intToIp(s.base + 1), workloadIp: intToIp(s.base + 2) };
  }
  throw new SloopError('SLOOP_ERR_CLI_INTERCEPTION_FAILED', `no free /30 left in ${range}`);
}

/** `ip` with `-n NS` when a namespace is named (iproute2 runs the command inside it). */
function ipArgs(netns: string | undefined, ...args: string[]): string[] {
  return netns === undefined ? ['ip', ...args] : ['ip', '-n', netns, ...args];
}

/** Names of the existing network namespaces. */
export async function listNetns(run: CommandRunner = runCommand): Promise<string[]> {
  const { stdout } = await run(['ip', '-j', 'netns', 'list']);
  if (stdout.trim() === '') return [];
  return (JSON.parse(stdout) as { name: string }[]).map((n) => n.name);
}

/** Creates a network namespace (with `lo` up) unless it exists. */
export async function ensureNetns(name: string, run: CommandRunner = runCommand): Promise<void> {
  checkName('network namespace', name);
  if ((await listNetns(run)).includes(name)) return;
  await run(['ip', 'netns', 'add', name]);
  await run(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
}

/**
 * Sets `net.ipv4.ip_forward` in `netns` (undefined = the current namespace; that is host-wide state, so
 * callers do it only on purpose) and returns the previous value. Workloads reach each other through the
 * host, which must forward between their veths.
 */
export async function setIpForwarding(netns: string | undefined, on: boolean, run: CommandRunner = runCommand): Promise<boolean> {
  const inNs = (argv: string[]): string[] => (netns === undefined ? argv : ['ip', 'netns', 'exec', netns, ...argv]);
  const before = (await run(inNs(['sysctl', '-n', 'net.ipv4.ip_forward']))).stdout.trim() === '1';
  if (before !== on) await run(inNs(['sysctl', '-q', '-w', `net.ipv4.ip_forward=${on ? 1 : 0}`]));
  return before;
}

/** The host-side veth name for a namespace: stable, unique per name, within IFNAMSIZ (15). */
export function hostInterfaceName(netns: string): string {
  // FNV-1a, 32 bits: 8 hex digits keep names apart without keeping state.
  let h = 0x811c9dc5;
  for (let i = 0; i < netns.length; i++) h = Math.imul(h ^ netns.charCodeAt(i), 0x01000193) >>> 0;
  return `slw${h.toString(16).padStart(8, '0')}`;
}

/**
 * Creates (or re-creates) the workload's namespace and its veth pair to the host, with a /30 of its own.
 * Throws `SLOOP_ERR_CLI_INTERCEPTION_FAILED` naming the failing command; what was created is removed again.
 */
export async function createWorkloadNetns(opts: CreateWorkloadNetnsOptions): Promise<WorkloadNetns> {
  const run = opts.run ?? runCommand;
  const name = checkName('network namespace', opts.name);
  const host = opts.hostNetns === undefined ? undefined : checkName('host network namespace', opts.hostNetns);
  if (host === name) throw new SloopError('SLOOP_ERR_CLI_INTERCEPTION_FAILED', `workload namespace ${name} cannot be its own host`);
  if (host !== undefined) await ensureNetns(host, run);
  const hostInterface = hostInterfaceName(name);
  await deleteWorkloadNetns({ name, hostNetns: host, hostInterface }, run);
  let addr: { subnet: string; hostIp: string; workloadIp: string };
  if (opts.subnet !== undefined) {
    const s = parseCidr(opts.subnet);
    if (s.len !== 30) throw new RangeError(`subnet ${opts.subnet} is not a /30`);
    addr = { subnet: `${intToIp(s.base)}/30`, hostIp: intToIp(s.base + 1), workloadIp: intToIp(s.base + 2) };
  } else {
    // Anything the host already routes or owns is off limits (other workloads' /30s included).
    const { stdout } = await run(ipArgs(host, '-j', '-4', 'route', 'show', 'table', 'all'));
    const used = (stdout.trim() === '' ? [] : (JSON.parse(stdout) as { dst?: string }[]))
      .map((r) => r.dst)
      .filter((d): d is string => d !== undefined && d !== 'default' && /^\d+\.\d+\.\d+\.\d+(\/\d+)?$/.test(d));
    addr = pickWorkloadSubnet(opts.range ?? DEFAULT_WORKLOAD_RANGE, used);
  }
  const ns: WorkloadNetns = { name, hostNetns: host, hostInterface, workloadInterface: 'eth0', ...addr, prefixLength: 30 };
  try {
    await ensureNetns(name, run);
    // The peer is created straight inside the workload namespace, named eth0 there.
    await run(ipArgs(host, 'link', 'add', hostInterface, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name));
    await run(ipArgs(host, 'addr', 'add', `${ns.hostIp}/30`, 'dev', hostInterface));
    await run(ipArgs(host, 'link', 'set', hostInterface, 'up'));
    await run(['ip', '-n', name, 'addr', 'add', `${ns.workloadIp}/30`, 'dev', 'eth0']);
    await run(['ip', '-n', name, 'link', 'set', 'eth0', 'up']);
    await run(['ip', '-n', name, 'route', 'add', 'default', 'via', ns.hostIp, 'dev', 'eth0']);
  } catch (err) {
    await deleteWorkloadNetns(ns, run).catch(() => undefined); // the first error is the one to report
    throw err;
  }
  return ns;
}

/**
 * Deletes the workload's namespace and the host end of its veth pair, killing what still runs inside it
 * (only processes in this workload's own namespace: a namespace with processes in it outlives `ip netns
 * del`, and so would its veth pair). Does nothing for what is already gone.
 */
export async function deleteWorkloadNetns(ns: Pick<WorkloadNetns, 'name' | 'hostNetns' | 'hostInterface'>, run: CommandRunner = runCommand): Promise<void> {
  await deleteNetns(ns.name, run);
  // Deleting either end of a veth pair deletes both; the host end may survive if the namespace was busy.
  const hostNsGone = ns.hostNetns !== undefined && !(await listNetns(run)).includes(ns.hostNetns);
  if (!hostNsGone) {
    const { stdout } = await run(ipArgs(ns.hostNetns, '-j', 'link', 'show'));
    const links = stdout.trim() === '' ? [] : (JSON.parse(stdout) as { ifname: string }[]);
    if (links.some((l) => l.ifname === ns.hostInterface)) await run(ipArgs(ns.hostNetns, 'link', 'del', ns.hostInterface));
  }
}

/**
 * Deletes a network namespace (a workload's, or one used as a host by {@link CreateWorkloadNetnsOptions.hostNetns}
 * once its workloads are gone), SIGKILLing the processes still inside it first. Does nothing if it is gone.
 */
export async function deleteNetns(name: string, run: CommandRunner = runCommand): Promise<void> {
  checkName('network namespace', name);
  if (!(await listNetns(run)).includes(name)) return;
  const { stdout } = await run(['ip', 'netns', 'pids', name]);
  for (const pid of stdout.split('\n').map((l) => Number(l.trim())).filter((p) => Number.isInteger(p) && p > 0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
  await run(['ip', 'netns', 'del', name]);
}

/** Options of {@link workloadCommand}. */
export interface WorkloadCommandOptions {
  /** Run as this uid (and `gid`, default the same) with no supplementary groups, via setpriv. */
  uid?: number;
  gid?: number;
}

/**
 * The argv that runs `argv` inside the workload's namespace (`ip netns exec`), optionally as another user
 * (`setpriv --reuid --regid --clear-groups`, util-linux; Istio runs its sidecar as uid 1337 so the owner
 * match exempts its traffic). Pure: spawn it as you like.
 */
export function workloadCommand(netns: string, argv: readonly string[], opts: WorkloadCommandOptions = {}): string[] {
  checkName('network namespace', netns);
  if (argv.length === 0) throw new RangeError('workloadCommand: empty command');
  const user = opts.uid === undefined ? [] : ['setpriv', `--reuid=${opts.uid}`, `--regid=${opts.gid ?? opts.uid}`, '--clear-groups', '--'];
  return ['ip', 'netns', 'exec', netns, ...user, ...argv];
}

/**
 * Installs Istio's interception rules in the workload's nat table: removes Sloop's previous rules first, so
 * installing twice leaves one set. Throws `SLOOP_ERR_CLI_INTERCEPTION_FAILED` (or RangeError for bad options).
 */
export async function installInterception(netns: string, opts: InterceptionOptions, run: CommandRunner = runCommand): Promise<void> {
  checkName('network namespace', netns);
  const rules = buildIstioNatRules(opts);
  await removeInterception(netns, run);
  await run(['ip', 'netns', 'exec', netns, 'iptables-restore', '--noflush'], { input: rules });
}

/** Removes the jumps and chains {@link installInterception} added; what is absent is skipped. */
export async function removeInterception(netns: string, run: CommandRunner = runCommand): Promise<void> {
  checkName('network namespace', netns);
  const ipt = (...args: string[]): string[] => ['ip', 'netns', 'exec', netns, 'iptables', '-w', '-t', 'nat', ...args];
  const { stdout } = await run(ipt('-S'));
  const rules = stdout.split('\n');
  for (const j of ISTIO_JUMPS) {
    const spec = `-A ${j.join(' ')}`;
    for (const line of rules) if (line.trim() === spec) await run(ipt('-D', ...j));
  }
  for (const c of ISTIO_CHAINS) {
    if (rules.some((l) => l.trim() === `-N ${c}`)) await run(ipt('-F', c));
  }
  for (const c of ISTIO_CHAINS) {
    if (rules.some((l) => l.trim() === `-N ${c}`)) await run(ipt('-X', c));
  }
}
