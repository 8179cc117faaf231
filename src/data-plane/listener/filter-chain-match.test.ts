import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lookupMessage, TO_OBJECT_OPTIONS } from '../../xds/protos.ts';
import type { Listener__Output } from '../../xds/gen/envoy/config/listener/v3/Listener.ts';
import { ConfigError } from '../../shared/errors.ts';
import { compileFilterChains, type ConnectionInfo, type FilterChainSelector } from './filter-chain-match.ts';

type Match = Record<string, unknown>;

function listener(chains: Record<string, Match | undefined>, defaultChain?: string): Listener__Output {
  const T = lookupMessage('envoy.config.listener.v3.Listener')!;
  const filter_chains = Object.entries(chains).map(([name, m]) => (m ? { name, filter_chain_match: m } : { name }));
  const obj = { name: 'virtualInbound', filter_chains, ...(defaultChain ? { default_filter_chain: { name: defaultChain } } : {}) };
  return T.toObject(T.fromObject(obj), TO_OBJECT_OPTIONS) as Listener__Output;
}

const base: ConnectionInfo = {
  destinationIp: '10.1.2.3',
  destinationPort: 8080,
  sourceIp: '10.9.9.9',
  sourcePort: 40000,
  directSourceIp: '10.9.9.9',
  transportProtocol: 'raw_buffer',
  applicationProtocols: [],
};

function pick(s: FilterChainSelector, c: Partial<ConnectionInfo>): string | undefined {
  return s.select({ ...base, ...c })?.name;
}

const cidr = (address_prefix: string, prefix_len: number): Match => ({ address_prefix, prefix_len: { value: prefix_len } });

test('destination port is matched first, and a port match never falls back to port-less chains', () => {
  const s = compileFilterChains(
    listener(
      {
        inbound9080: { destination_port: { value: 9080 } },
        inbound9443: { destination_port: { value: 9443 }, transport_protocol: 'tls' },
        catchAll: {},
      },
      'passthrough',
    ),
  );
  assert.equal(pick(s, { destinationPort: 9080 }), 'inbound9080');
  assert.equal(pick(s, { destinationPort: 8000 }), 'catchAll');
  assert.equal(pick(s, { destinationPort: 9443, transportProtocol: 'tls' }), 'inbound9443');
  // Port 9443 picked its branch; plaintext finds nothing there and does NOT go back to catchAll.
  assert.equal(pick(s, { destinationPort: 9443 }), 'passthrough');
});

test('without a default_filter_chain an unmatched connection gets no chain', () => {
  const s = compileFilterChains(listener({ only: { destination_port: { value: 1 } } }));
  assert.equal(s.select(base), undefined);
});

test('destination prefix_ranges: longest matching prefix wins, empty ranges are the fallback', () => {
  const s = compileFilterChains(
    listener({
      wide: { prefix_ranges: [cidr('10.0.0.0', 8)] },
      narrow: { prefix_ranges: [cidr('10.1.0.0', 16), cidr('192.168.0.0', 16)] },
      host: { prefix_ranges: [cidr('10.1.2.3', 32)] },
      v6: { prefix_ranges: [cidr('2001:db8::', 32)] },
      none: {},
    }),
  );
  assert.equal(pick(s, { destinationIp: '10.1.2.3' }), 'host');
  assert.equal(pick(s, { destinationIp: '10.1.9.9' }), 'narrow');
  assert.equal(pick(s, { destinationIp: '192.168.7.7' }), 'narrow');
  assert.equal(pick(s, { destinationIp: '10.200.0.1' }), 'wide');
  assert.equal(pick(s, { destinationIp: '11.0.0.1' }), 'none');
  assert.equal(pick(s, { destinationIp: '2001:db8:1::5' }), 'v6');
  assert.equal(pick(s, { destinationIp: '2001:db9::5' }), 'none');
  // Node reports IPv4 peers of a dual-stack socket as IPv4-mapped IPv6.
  assert.equal(pick(s, { destinationIp: '::ffff:10.1.2.3' }), 'host');
  assert.equal(pick(s, { destinationIp: '::ffff:10.77.0.1' }), 'wide');
  assert.equal(pick(s, { destinationIp: 'not-an-ip' }), 'none');
});

test('host bits of a configured prefix are ignored, as Envoy masks the range', () => {
  const s = compileFilterChains(listener({ a: { prefix_ranges: [cidr('10.1.2.3', 8)] }, b: {} }));
  assert.equal(pick(s, { destinationIp: '10.200.0.1' }), 'a');
});

test('server_names: exact, then the longest wildcard, then chains without server_names', () => {
  const s = compileFilterChains(
    listener({
      exact: { server_names: ['www.example.com'] },
      wildExample: { server_names: ['*.example.com'] },
      wildCom: { server_names: ['*.com'] },
      upper: { server_names: ['API.Example.ORG'] },
      noSni: {},
    }),
  );
  assert.equal(pick(s, { serverName: 'www.example.com' }), 'exact');
  assert.equal(pick(s, { serverName: 'api.example.com' }), 'wildExample');
  assert.equal(pick(s, { serverName: 'a.b.example.com' }), 'wildExample');
  assert.equal(pick(s, { serverName: 'example.com' }), 'wildCom');
  assert.equal(pick(s, { serverName: 'foo.org' }), 'noSni');
  assert.equal(pick(s, { serverName: 'api.example.org' }), 'upper');
  assert.equal(pick(s, {}), 'noSni');
});

test('transport_protocol and application_protocols; ALPN is tried in client order', () => {
  const s = compileFilterChains(
    listener({
      tlsH2: { transport_protocol: 'tls', application_protocols: ['h2'] },
      tlsIstio: { transport_protocol: 'tls', application_protocols: ['istio-peer-exchange', 'istio'] },
      tlsAny: { transport_protocol: 'tls' },
      plainHttp: { transport_protocol: 'raw_buffer', application_protocols: ['http/1.1', 'h2c'] },
      plainAny: { transport_protocol: 'raw_buffer' },
    }),
  );
  assert.equal(pick(s, { transportProtocol: 'tls', applicationProtocols: ['h2', 'http/1.1'] }), 'tlsH2');
  assert.equal(pick(s, { transportProtocol: 'tls', applicationProtocols: ['istio', 'h2'] }), 'tlsIstio');
  assert.equal(pick(s, { transportProtocol: 'tls', applicationProtocols: ['http/1.1'] }), 'tlsAny');
  assert.equal(pick(s, { transportProtocol: 'raw_buffer', applicationProtocols: ['h2c'] }), 'plainHttp');
  assert.equal(pick(s, { transportProtocol: 'raw_buffer', applicationProtocols: [] }), 'plainAny');
  assert.equal(pick(s, { transportProtocol: 'quic' }), undefined);
  assert.equal(s.needsTlsInspection, true);
  assert.equal(s.needsHttpInspection, true);
});

test('source_type: loopback or same-IP peers are SAME_IP_OR_LOOPBACK, others EXTERNAL, ANY is the fallback', () => {
  const s = compileFilterChains(
    listener({
      local: { source_type: 'SAME_IP_OR_LOOPBACK' },
      any: {},
    }),
  );
  assert.equal(pick(s, { sourceIp: '127.0.0.1' }), 'local');
  assert.equal(pick(s, { sourceIp: '::1' }), 'local');
  assert.equal(pick(s, { sourceIp: '::ffff:127.0.0.5' }), 'local');
  assert.equal(pick(s, { sourceIp: '10.1.2.3', destinationIp: '::ffff:10.1.2.3' }), 'local');
  assert.equal(pick(s, { sourceIp: '10.4.4.4' }), 'any');

  const e = compileFilterChains(listener({ external: { source_type: 'EXTERNAL' }, local: { source_type: 'SAME_IP_OR_LOOPBACK' } }));
  assert.equal(pick(e, { sourceIp: '10.4.4.4' }), 'external');
  assert.equal(pick(e, { sourceIp: '127.0.0.1' }), 'local');
});

test('direct source, source prefix and source port, each most specific first', () => {
  const s = compileFilterChains(
    listener(
      {
        directProxy: { direct_source_prefix_ranges: [cidr('172.16.0.0', 12)], source_prefix_ranges: [cidr('10.9.0.0', 16)] },
        directProxyAnySource: { direct_source_prefix_ranges: [cidr('172.16.0.0', 12)] },
        srcNarrow: { source_prefix_ranges: [cidr('10.9.9.0', 24)] },
        srcNarrowPort: { source_prefix_ranges: [cidr('10.9.9.0', 24)], source_ports: [1234, 5678] },
        srcWide: { source_prefix_ranges: [cidr('10.0.0.0', 8)] },
      },
      'default',
    ),
  );
  assert.equal(pick(s, { directSourceIp: '172.16.5.5', sourceIp: '10.9.1.1' }), 'directProxy');
  assert.equal(pick(s, { directSourceIp: '172.16.5.5', sourceIp: '192.0.2.1' }), 'directProxyAnySource');
  assert.equal(pick(s, { sourceIp: '10.9.9.9', sourcePort: 5678 }), 'srcNarrowPort');
  assert.equal(pick(s, { sourceIp: '10.9.9.9', sourcePort: 999 }), 'srcNarrow');
  assert.equal(pick(s, { sourceIp: '10.8.0.1' }), 'srcWide');
  assert.equal(pick(s, { sourceIp: '192.0.2.1' }), 'default');
});

test('a chain without filter_chain_match matches everything not matched more specifically', () => {
  const s = compileFilterChains(listener({ bare: undefined, tls: { transport_protocol: 'tls' } }));
  assert.equal(pick(s, {}), 'bare');
  assert.equal(pick(s, { transportProtocol: 'tls' }), 'tls');
  assert.equal(s.needsTlsInspection, true);
  assert.equal(s.needsHttpInspection, false);
});

test('inspection flags follow what the chains match on', () => {
  assert.equal(compileFilterChains(listener({ a: { destination_port: { value: 80 } } })).needsTlsInspection, false);
  assert.equal(compileFilterChains(listener({ a: { server_names: ['x.com'] } })).needsTlsInspection, true);
  assert.equal(compileFilterChains(listener({ a: { application_protocols: ['h2'] } })).needsTlsInspection, true);
  const plain = compileFilterChains(listener({ a: { transport_protocol: 'raw_buffer', application_protocols: ['http/1.0'] } }));
  assert.equal(plain.needsTlsInspection, false);
  assert.equal(plain.needsHttpInspection, true);
  assert.equal(compileFilterChains(listener({ a: { transport_protocol: 'tls', application_protocols: ['http/1.1'] } })).needsHttpInspection, false);
});

test('identical or overlapping matchers are a ConfigError naming the chain', () => {
  assert.throws(
    () => compileFilterChains(listener({ a: {}, b: undefined })),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.equal(err.code, 'SLOOP_ERR_CONFIG_INVALID');
      assert.equal(err.diagnostics.length, 1);
      assert.equal(err.diagnostics[0].path, 'filter_chains[1].filter_chain_match');
      assert.match(err.diagnostics[0].message, /filter_chains\[1\] and filter_chains\[0\]/);
      assert.match(err.message, /listener "virtualInbound"/);
      return true;
    },
  );
  // Overlap on one of several server names, and CIDRs equal after masking, both collide.
  assert.throws(
    () =>
      compileFilterChains(
        listener({
          a: { server_names: ['a.com', 'b.com'] },
          b: { server_names: ['B.com'] },
          c: { prefix_ranges: [cidr('10.1.0.0', 8)] },
          d: { prefix_ranges: [cidr('10.0.0.0', 8)] },
        }),
      ),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.deepEqual(
        err.diagnostics.map((d) => d.path),
        ['filter_chains[1].filter_chain_match', 'filter_chains[3].filter_chain_match'],
      );
      return true;
    },
  );
  // Different values at the same step are fine.
  assert.doesNotThrow(() => compileFilterChains(listener({ a: { source_ports: [1] }, b: { source_ports: [2] }, c: {} })));
});

test('malformed criteria are all reported with their field paths', () => {
  assert.throws(
    () =>
      compileFilterChains(
        listener({
          a: { prefix_ranges: [cidr('10.0.0.0', 8), cidr('10.0.0.300', 8)] },
          b: { server_names: ['*w.example.com', '*', 'ok.example.com'] },
          c: { source_prefix_ranges: [cidr('10.0.0.0', 33)] },
        }),
      ),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.deepEqual(
        err.diagnostics.map((d) => d.path),
        [
          'filter_chains[0].filter_chain_match.prefix_ranges[1]',
          'filter_chains[1].filter_chain_match.server_names[0]',
          'filter_chains[1].filter_chain_match.server_names[1]',
          'filter_chains[2].filter_chain_match.source_prefix_ranges[0]',
        ],
      );
      return true;
    },
  );
});

test('filter_chain_matcher is rejected as unsupported rather than ignored', () => {
  const l = listener({ a: {} });
  const M = lookupMessage('xds.type.matcher.v3.Matcher')!;
  l.filter_chain_matcher = M.toObject(M.fromObject({}), TO_OBJECT_OPTIONS) as Listener__Output['filter_chain_matcher'];
  assert.throws(
    () => compileFilterChains(l),
    (err: unknown) => err instanceof ConfigError && err.diagnostics[0].code === 'SLOOP_ERR_CONFIG_UNSUPPORTED',
  );
});
