import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildIstioNatRules } from './iptables.ts';

describe('buildIstioNatRules', () => {
  it("emits Istio's nat chains: inbound → 15006, outbound → 15001, owner-uid and loopback exclusions", () => {
    const rules = buildIstioNatRules({ proxyUid: 1337, excludeInboundPorts: [15000, 15021] }).split('\n');
    assert.equal(rules[0], '*nat');
    assert.deepEqual(rules.slice(1, 5), [':ISTIO_INBOUND - [0:0]', ':ISTIO_REDIRECT - [0:0]', ':ISTIO_IN_REDIRECT - [0:0]', ':ISTIO_OUTPUT - [0:0]']);
    const body = rules.slice(5);
    assert.deepEqual(body, [
      '-A PREROUTING -p tcp -j ISTIO_INBOUND',
      '-A OUTPUT -p tcp -j ISTIO_OUTPUT',
      '-A ISTIO_INBOUND -p tcp --dport 15000 -j RETURN',
      '-A ISTIO_INBOUND -p tcp --dport 15021 -j RETURN',
      '-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT',
      '-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006',
      '-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001',
      '-A ISTIO_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN',
      '-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT',
      '-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN',
      '-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN',
      '-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -o lo -m owner --gid-owner 1337 -j ISTIO_IN_REDIRECT',
      '-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN',
      '-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN',
      '-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN',
      '-A ISTIO_OUTPUT -j ISTIO_REDIRECT',
      'COMMIT',
      '',
    ]);
  });

  it('takes other ports, a separate gid and outbound exclusions (before the redirect)', () => {
    const rules = buildIstioNatRules({ proxyUid: 2000, proxyGid: 3000, outboundPort: 16001, inboundPort: 16006, excludeOutboundPorts: [5432] }).split('\n');
    assert.ok(rules.includes('-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 16001'));
    assert.ok(rules.includes('-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports 16006'));
    assert.ok(rules.includes('-A ISTIO_OUTPUT -m owner --uid-owner 2000 -j RETURN'));
    assert.ok(rules.includes('-A ISTIO_OUTPUT -m owner --gid-owner 3000 -j RETURN'));
    assert.ok(rules.indexOf('-A ISTIO_OUTPUT -p tcp --dport 5432 -j RETURN') < rules.indexOf('-A ISTIO_OUTPUT -j ISTIO_REDIRECT'));
  });

  it('rejects bad ports and uids', () => {
    assert.throws(() => buildIstioNatRules({ proxyUid: 1337, outboundPort: 0 }), RangeError);
    assert.throws(() => buildIstioNatRules({ proxyUid: 1337, excludeInboundPorts: [70000] }), RangeError);
    assert.throws(() => buildIstioNatRules({ proxyUid: -1 }), RangeError);
  });
});
