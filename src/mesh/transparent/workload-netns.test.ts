import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SloopError } from '../../shared/errors.ts';
import type { CommandRunner } from './command.ts';
import { createWorkloadNetns, hostInterfaceName, installInterception, pickWorkloadSubnet, workloadCommand } from './workload-netns.ts';

/** A fake `ip`/`iptables`: records every argv and answers from `reply` (default: empty output). */
function fakeRunner(reply: (argv: readonly string[]) => string | Error = () => ''): { run: CommandRunner; calls: string[] } {
  const calls: string[] = [];
  const run: CommandRunner = async (argv, opts) => {
    calls.push(argv.join(' ') + (opts?.input !== undefined ? ' <<input' : ''));
    const r = reply(argv);
    if (r instanceof Error) throw r;
    return { stdout: r, stderr: '' };
  };
  return { run, calls };
}

describe('pickWorkloadSubnet', () => {
  it('takes the first /30 that overlaps nothing the host routes', () => {
    assert.deepEqual(pickWorkloadSubnet('10.213.0.0/16', []), { subnet: '10.213.0.0/30', hostIp: '10.213.0.1', workloadIp: '10.213.0.2' });
    assert.deepEqual(pickWorkloadSubnet('10.213.0.0/16', ['10.213.0.0/30', '10.213.0.5']), { subnet: '10.213.0.8/30', hostIp: '10.213.0.9', workloadIp: '10.213.0.10' });
    // A covering route (a whole /24 in use) skips past it; a default route (/0) does not count.
    assert.equal(pickWorkloadSubnet('10.213.0.0/16', ['10.213.0.0/24', '0.0.0.0/0']).subnet, '10.213.1.0/30');
  });

  it('fails when the range is used up', () => {
    assert.throws(() => pickWorkloadSubnet('10.213.0.0/29', ['10.213.0.0/30', '10.213.0.4/30']), (e: unknown) => e instanceof SloopError && e.code === 'SLOOP_ERR_CLI_INTERCEPTION_FAILED');
  });
});

describe('workloadCommand', () => {
  it('runs inside the namespace, as the proxy uid with no groups when asked', () => {
    assert.deepEqual(workloadCommand('ns1', ['curl', 'x']), ['ip', 'netns', 'exec', 'ns1', 'curl', 'x']);
    assert.deepEqual(workloadCommand('ns1', ['sloop', 'proxy'], { uid: 1337 }), ['ip', 'netns', 'exec', 'ns1', 'setpriv', '--reuid=1337', '--regid=1337', '--clear-groups', '--', 'sloop', 'proxy']);
  });

  it('refuses names that are not plain namespace names', () => {
    assert.throws(() => workloadCommand('../x', ['true']), SloopError);
    assert.throws(() => workloadCommand('a b', ['true']), SloopError);
  });
});

describe('createWorkloadNetns', () => {
  it('creates the namespace and a veth pair with a free /30, the workload end eth0 with a default route', async () => {
    const { run, calls } = fakeRunner((argv) => (argv.join(' ').includes('route show') ? JSON.stringify([{ dst: '10.213.0.0/30' }, { dst: 'default' }]) : argv.includes('list') ? '[]' : ''));
    const ns = await createWorkloadNetns({ name: 'w1', hostNetns: 'node1', run });
    assert.equal(ns.workloadIp, '10.213.0.6');
    assert.equal(ns.hostIp, '10.213.0.5');
    const veth = hostInterfaceName('w1');
    assert.ok(veth.length <= 15);
    for (const want of [
      'ip netns add node1',
      'ip netns add w1',
      `ip -n node1 link add ${veth} type veth peer name eth0 netns w1`,
      `ip -n node1 addr add 10.213.0.5/30 dev ${veth}`,
      'ip -n w1 addr add 10.213.0.6/30 dev eth0',
      'ip -n w1 route add default via 10.213.0.5 dev eth0',
    ]) {
      assert.ok(calls.includes(want), `missing ${want} in\n${calls.join('\n')}`);
    }
  });

  it('removes what it created when a step fails, and reports the first error', async () => {
    let created = false;
    const { run, calls } = fakeRunner((argv) => {
      const line = argv.join(' ');
      if (line === 'ip netns add w2') created = true;
      if (line.includes('netns list')) return JSON.stringify(created ? [{ name: 'w2' }] : []);
      if (line.includes('addr add 10.213.0.2/30')) return new SloopError('SLOOP_ERR_CLI_INTERCEPTION_FAILED', 'boom');
      return line.includes('link show') ? '[]' : '';
    });
    await assert.rejects(createWorkloadNetns({ name: 'w2', run }), /boom/);
    assert.ok(calls.includes('ip netns del w2'), calls.join('\n'));
  });
});

describe('installInterception', () => {
  it('removes the previous jumps and chains, then restores the rules atomically', async () => {
    const existing = ['-P OUTPUT ACCEPT', '-N ISTIO_OUTPUT', '-A OUTPUT -p tcp -j ISTIO_OUTPUT'].join('\n');
    const { run, calls } = fakeRunner((argv) => (argv.includes('-S') ? existing : ''));
    await installInterception('w3', { proxyUid: 1337 }, run);
    const ipt = 'ip netns exec w3 iptables -w -t nat';
    assert.deepEqual(calls, [`${ipt} -S`, `${ipt} -D OUTPUT -p tcp -j ISTIO_OUTPUT`, `${ipt} -F ISTIO_OUTPUT`, `${ipt} -X ISTIO_OUTPUT`, 'ip netns exec w3 iptables-restore --noflush <<input']);
  });
});
