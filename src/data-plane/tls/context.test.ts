import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { lookupMessage, TO_OBJECT_OPTIONS } from '../../xds/protos.ts';
import type { DownstreamTlsContext__Output } from '../../xds/gen/envoy/extensions/transport_sockets/tls/v3/DownstreamTlsContext.ts';
import type { UpstreamTlsContext__Output } from '../../xds/gen/envoy/extensions/transport_sockets/tls/v3/UpstreamTlsContext.ts';
import type { Secret__Output } from '../../xds/gen/envoy/extensions/transport_sockets/tls/v3/Secret.ts';
import { ConfigError } from '../../shared/errors.ts';
import { resolveDataSource } from '../data-source.ts';
import { createDownstreamTls, createUpstreamTls, parseSubjectAltNames, type DownstreamTls, type UpstreamTls } from './context.ts';

// ---------------------------------------------------------------------------------------------------
// Certificates, generated once per run with the openssl CLI.

let dir = '';
const f = (name: string): string => join(dir, name);
const read = (ds: Parameters<typeof resolveDataSource>[0]): Buffer | undefined => resolveDataSource(ds);

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

let serial = 0x1000;
function issue(name: string, ca: string, san: string): void {
  writeFileSync(f(`${name}.ext`), `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n`);
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
  openssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-set_serial', String(serial++), '-days', '2', '-out', `${name}.pem`, '-extfile', `${name}.ext`);
}

function makeCa(name: string): void {
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`, '-subj', `/CN=${name}`, '-days', '2', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
}

const SERVER_SPIFFE = 'spiffe://cluster.local/ns/default/sa/server';
const CLIENT_SPIFFE = 'spiffe://cluster.local/ns/default/sa/client';

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'sloop-tls-'));
  makeCa('ca');
  makeCa('rogue-ca');
  issue('server', 'ca', `DNS:server.example.com,DNS:*.wild.example.com,URI:${SERVER_SPIFFE},IP:127.0.0.1`);
  issue('client', 'ca', `URI:${CLIENT_SPIFFE},DNS:client.example.com`);
  issue('rogue', 'rogue-ca', `URI:${CLIENT_SPIFFE}`);
  openssl('pkey', '-in', 'client.key', '-aes256', '-passout', 'pass:s3cret', '-out', 'client-enc.key');
});

after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------------
// Config helpers

const file = (name: string): { filename: string } => ({ filename: f(name) });
const certPair = (name: string): Record<string, unknown> => ({ certificate_chain: file(`${name}.pem`), private_key: file(`${name}.key`) });

function downstream(obj: Record<string, unknown>): DownstreamTlsContext__Output {
  const T = lookupMessage('envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext')!;
  return T.toObject(T.fromObject(obj), TO_OBJECT_OPTIONS) as DownstreamTlsContext__Output;
}

function upstream(obj: Record<string, unknown>): UpstreamTlsContext__Output {
  const T = lookupMessage('envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext')!;
  return T.toObject(T.fromObject(obj), TO_OBJECT_OPTIONS) as UpstreamTlsContext__Output;
}

/** A server with the server certificate, trusting `ca`, plus whatever else is given. */
function serverTls(common: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): DownstreamTls {
  return createDownstreamTls(downstream({ common_tls_context: { tls_certificates: [certPair('server')], ...common }, ...extra }), read);
}

// ---------------------------------------------------------------------------------------------------
// Real handshakes over loopback

interface Outcome {
  error?: string;
  alpn?: string | false | null;
  servername?: string | false;
  protocol?: string | null;
  data?: string;
}

async function handshake(
  down: DownstreamTls,
  up: UpstreamTls | tls.ConnectionOptions,
  opts: { wrapWithSelectAlpn?: readonly string[] } = {},
): Promise<{ server: Outcome; client: Outcome }> {
  let resolveServer!: (o: Outcome) => void;
  const serverOutcome = new Promise<Outcome>((r) => (resolveServer = r));
  const onSecure = (s: tls.TLSSocket): void => {
    const bad = down.verifyPeer(s);
    if (bad !== undefined) {
      resolveServer({ error: bad });
      s.destroy();
      return;
    }
    resolveServer({ alpn: s.alpnProtocol, servername: (s as tls.TLSSocket & { servername?: string | false }).servername, protocol: s.getProtocol() });
    s.end('hello');
  };
  let server: import('node:net').Server;
  if (opts.wrapWithSelectAlpn) {
    // How the listener terminates TLS after peeking: a TLSSocket over the accepted socket.
    const clientAlpn = opts.wrapWithSelectAlpn;
    server = createServer((raw) => {
      raw.on('close', () => resolveServer({ error: 'closed' }));
      const alpn = down.selectAlpn(clientAlpn);
      const t = new tls.TLSSocket(raw, {
        isServer: true,
        secureContext: down.secureContext,
        requestCert: down.requestCert,
        rejectUnauthorized: down.rejectUnauthorized,
        ...(alpn ? { ALPNProtocols: alpn } : {}),
      });
      t.on('error', (err: NodeJS.ErrnoException) => resolveServer({ error: err.code ?? err.message }));
      t.on('secure', () => onSecure(t));
    });
  } else {
    const s = tls.createServer(down.serverOptions, onSecure);
    s.on('connection', (raw: import('node:net').Socket) => raw.on('close', () => resolveServer({ error: 'closed' })));
    s.on('tlsClientError', (err: NodeJS.ErrnoException) => resolveServer({ error: err.code ?? err.message }));
    server = s;
  }
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const { port } = server.address() as AddressInfo;

  const connectOptions = 'options' in up ? up.options : up;
  const client = tls.connect({ ...connectOptions, host: '127.0.0.1', port });
  const clientOutcome = new Promise<Outcome>((resolve) => {
    let data = '';
    client.on('secureConnect', () => {
      const bad = 'verifyPeer' in up ? up.verifyPeer(client) : undefined;
      if (bad !== undefined) {
        resolve({ error: bad });
        client.destroy();
        return;
      }
      client.on('data', (d: Buffer) => (data += d.toString()));
      client.on('end', () => resolve({ data, alpn: client.alpnProtocol, protocol: client.getProtocol() }));
    });
    client.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
    client.on('close', () => resolve({ error: 'closed', data }));
  });
  const [serverResult, clientResult] = await Promise.all([serverOutcome, clientOutcome]);
  client.destroy();
  server.close();
  return { server: serverResult, client: clientResult };
}

const clientCommon = (name = 'client'): Record<string, unknown> => ({ tls_certificates: [certPair(name)] });
const trust = (ca = 'ca', more: Record<string, unknown> = {}): Record<string, unknown> => ({ validation_context: { trusted_ca: file(`${ca}.pem`), ...more } });

// ---------------------------------------------------------------------------------------------------

test('mTLS: client certificate required and SAN-checked both ways, ALPN negotiated, SNI sent', async () => {
  const down = serverTls(
    { alpn_protocols: ['h2', 'http/1.1'], ...trust('ca', { match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { exact: CLIENT_SPIFFE } }] }) },
    { require_client_certificate: { value: true } },
  );
  assert.equal(down.requestCert, true);
  assert.equal(down.rejectUnauthorized, true);
  const up = createUpstreamTls(
    upstream({
      sni: 'server.example.com',
      common_tls_context: {
        ...clientCommon(),
        alpn_protocols: ['http/1.1', 'h2'],
        ...trust('ca', { match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { prefix: 'spiffe://cluster.local/ns/default/' } }] }),
      },
    }),
    read,
  );
  const { server, client } = await handshake(down, up);
  assert.deepEqual(server, { alpn: 'h2', servername: 'server.example.com', protocol: 'TLSv1.2' });
  assert.equal(client.data, 'hello');
  assert.equal(client.alpn, 'h2');
});

test('a required client certificate that is missing or from another CA fails the handshake', async () => {
  const down = serverTls(trust(), { require_client_certificate: { value: true } });
  const noCert = await handshake(down, { rejectUnauthorized: false });
  assert.ok(noCert.server.error, 'server refused a client without a certificate');
  assert.notEqual(noCert.client.data, 'hello');

  const rogue = createUpstreamTls(upstream({ common_tls_context: clientCommon('rogue') }), read);
  const wrongCa = await handshake(down, rogue);
  assert.ok(wrongCa.server.error);
  assert.notEqual(wrongCa.client.data, 'hello');
});

test('an optional client certificate may be absent, but one that is presented must verify', async () => {
  const down = serverTls(trust());
  assert.equal(down.requestCert, true);
  assert.equal(down.rejectUnauthorized, false);
  const anonymous = await handshake(down, { rejectUnauthorized: false });
  assert.equal(anonymous.client.data, 'hello');

  const rogue = await handshake(down, createUpstreamTls(upstream({ common_tls_context: clientCommon('rogue') }), read));
  assert.match(rogue.server.error ?? '', /^verify cert failed: /);

  const good = await handshake(down, createUpstreamTls(upstream({ common_tls_context: clientCommon() }), read));
  assert.equal(good.client.data, 'hello');
});

test('a downstream SAN matcher that does not match closes the connection', async () => {
  const down = serverTls(
    trust('ca', { match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { prefix: 'spiffe://cluster.local/ns/other/' } }] }),
  );
  // SAN checks make the client certificate mandatory (common.proto trusted_ca).
  assert.equal(down.requireClientCertificate, true);
  const { server, client } = await handshake(down, createUpstreamTls(upstream({ common_tls_context: clientCommon() }), read));
  assert.equal(server.error, 'verify cert failed: SAN matcher');
  assert.notEqual(client.data, 'hello');
});

test('upstream: no validation context means no verification, and a CA alone checks no hostname', async () => {
  const down = serverTls();
  const unverified = await handshake(down, createUpstreamTls(upstream({ sni: 'whatever.invalid' }), read));
  assert.equal(unverified.client.data, 'hello');

  const caOnly = createUpstreamTls(upstream({ sni: 'unrelated.example.org', common_tls_context: trust() }), read);
  assert.equal(caOnly.options.rejectUnauthorized, true);
  const verified = await handshake(down, caOnly);
  assert.equal(verified.client.data, 'hello');

  const wrongCa = await handshake(down, createUpstreamTls(upstream({ common_tls_context: trust('rogue-ca') }), read));
  assert.ok(wrongCa.client.error && wrongCa.client.error !== 'closed', wrongCa.client.error);
  assert.notEqual(wrongCa.client.data, 'hello');
});

test('upstream SAN matchers replace hostname checks: DNS wildcards, IP and legacy matchers', async () => {
  const down = serverTls();
  const attempt = async (validation: Record<string, unknown>): Promise<Outcome> =>
    (await handshake(down, createUpstreamTls(upstream({ common_tls_context: trust('ca', validation) }), read))).client;

  const dns = (exact: string): Record<string, unknown> => ({ match_typed_subject_alt_names: [{ san_type: 'DNS', matcher: { exact } }] });
  assert.equal((await attempt(dns('server.example.com'))).data, 'hello');
  assert.equal((await attempt(dns('api.wild.example.com'))).data, 'hello', 'one label under *.wild.example.com');
  assert.equal((await attempt(dns('a.b.wild.example.com'))).error, 'ERR_TLS_CERT_ALTNAME_INVALID', 'a wildcard covers one label only');
  assert.equal((await attempt(dns('other.example.com'))).error, 'ERR_TLS_CERT_ALTNAME_INVALID');
  assert.equal(
    (await attempt({ match_typed_subject_alt_names: [{ san_type: 'IP_ADDRESS', matcher: { exact: '127.0.0.1' } }] })).data,
    'hello',
  );
  // A URI matcher is not satisfied by a DNS SAN with the same text.
  assert.equal(
    (await attempt({ match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { exact: 'server.example.com' } }] })).error,
    'ERR_TLS_CERT_ALTNAME_INVALID',
  );
  assert.equal(
    (await attempt({ match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { safe_regex: { regex: 'spiffe://cluster\\.local/ns/[^/]+/sa/server' } } }] })).data,
    'hello',
  );
  // The deprecated field applies to every SAN type and is ignored when the typed one is set.
  assert.equal((await attempt({ match_subject_alt_names: [{ suffix: '/sa/server' }] })).data, 'hello');
  assert.equal(
    (await attempt({ match_subject_alt_names: [{ exact: 'nope' }], match_typed_subject_alt_names: [{ san_type: 'DNS', matcher: { contains: 'example' } }] })).data,
    'hello',
  );
});

test('without a trusted CA, SAN and certificate pins are still enforced after the handshake', async () => {
  const down = serverTls();
  const pem = readFileSync(f('server.pem'));
  const der = execFileSync('openssl', ['x509', '-outform', 'DER'], { input: pem });
  const hash = execFileSync('openssl', ['dgst', '-sha256', '-hex'], { input: der }).toString().trim().split(' ').pop()!;
  const spkiDer = execFileSync('openssl', ['pkey', '-pubin', '-outform', 'DER'], {
    input: execFileSync('openssl', ['x509', '-pubkey', '-noout'], { input: pem }),
  });
  const spki = execFileSync('openssl', ['dgst', '-sha256', '-binary'], { input: spkiDer }).toString('base64');
  const fingerprint = hash.toUpperCase().match(/../g)!.join(':');
  const zero = '0'.repeat(64);

  const attempt = async (validation: Record<string, unknown>): Promise<Outcome> =>
    (await handshake(down, createUpstreamTls(upstream({ common_tls_context: { validation_context: validation } }), read))).client;
  assert.equal((await attempt({ verify_certificate_hash: [hash] })).data, 'hello');
  assert.equal((await attempt({ verify_certificate_hash: [fingerprint] })).data, 'hello', 'colon-separated form');
  assert.equal((await attempt({ verify_certificate_spki: [spki] })).data, 'hello');
  assert.equal((await attempt({ verify_certificate_hash: [zero], verify_certificate_spki: [spki] })).data, 'hello', 'either list may match');
  assert.equal((await attempt({ verify_certificate_hash: [zero] })).error, 'verify cert failed: cert hash and spki');
  assert.equal(
    (await attempt({ match_typed_subject_alt_names: [{ san_type: 'DNS', matcher: { exact: 'nope.example.com' } }] })).error,
    'verify cert failed: SAN matcher',
  );
});

test('TLS versions: Envoy defaults, and a minimum the peer cannot meet fails the handshake', async () => {
  const down13 = serverTls({ tls_params: { tls_minimum_protocol_version: 'TLSv1_3' } });
  assert.equal(down13.secureContextOptions.minVersion, 'TLSv1.3');
  // Upstream defaults to TLS 1.2 at most (common.proto), so it cannot talk to a TLS 1.3-only server.
  const defaultUp = createUpstreamTls(upstream({}), read);
  assert.equal(defaultUp.secureContextOptions.maxVersion, 'TLSv1.2');
  const refused = await handshake(down13, defaultUp);
  assert.ok(refused.client.error && refused.client.data !== 'hello');
  assert.ok(refused.server.error);

  const up13 = createUpstreamTls(upstream({ common_tls_context: { tls_params: { tls_maximum_protocol_version: 'TLSv1_3' } } }), read);
  const ok = await handshake(down13, up13);
  assert.equal(ok.client.protocol, 'TLSv1.3');
  assert.equal(serverTls().secureContextOptions.maxVersion, 'TLSv1.3');
});

test('ALPN: no overlap completes the handshake without ALPN, as Envoy does', async () => {
  const down = serverTls({ alpn_protocols: ['h2'] });
  assert.deepEqual(down.selectAlpn(['h2', 'http/1.1']), ['h2']);
  assert.deepEqual(down.selectAlpn([]), ['h2']);
  assert.equal(down.selectAlpn(['istio']), undefined);
  const up = createUpstreamTls(upstream({ common_tls_context: { alpn_protocols: ['istio'] } }), read);
  const { client, server } = await handshake(down, up, { wrapWithSelectAlpn: ['istio'] });
  assert.equal(client.data, 'hello');
  assert.equal(server.alpn, false);
});

test('require_sni closes connections that sent no SNI', async () => {
  const down = serverTls({}, { require_sni: { value: true } });
  const without = await handshake(down, createUpstreamTls(upstream({}), read));
  assert.match(without.server.error ?? '', /require_sni/);
  const withSni = await handshake(down, createUpstreamTls(upstream({ sni: 'server.example.com' }), read));
  assert.equal(withSni.client.data, 'hello');
});

test('inline certificates, encrypted keys and BoringSSL cipher groups are accepted', async () => {
  const down = createDownstreamTls(
    downstream({
      common_tls_context: {
        tls_certificates: [
          { certificate_chain: { inline_string: readFileSync(f('server.pem'), 'utf8') }, private_key: { inline_bytes: readFileSync(f('server.key')) } },
        ],
        tls_params: { cipher_suites: ['[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]', 'ECDHE-ECDSA-AES256-GCM-SHA384'] },
      },
      session_timeout: { seconds: 300 },
    }),
    read,
  );
  assert.equal(down.secureContextOptions.ciphers, 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384');
  assert.equal(down.sessionTimeoutSeconds, 300);
  const up = createUpstreamTls(
    upstream({
      common_tls_context: {
        tls_certificates: [{ certificate_chain: file('client.pem'), private_key: file('client-enc.key'), password: { inline_string: 's3cret' } }],
      },
    }),
    read,
  );
  const { client } = await handshake(down, up);
  assert.equal(client.data, 'hello');
});

test('SDS secrets resolve through lookupSecret, and are a config error without it', () => {
  const T = lookupMessage('envoy.extensions.transport_sockets.tls.v3.Secret')!;
  const secrets = new Map<string, Secret__Output>([
    ['default', T.toObject(T.fromObject({ name: 'default', tls_certificate: certPair('server') }), TO_OBJECT_OPTIONS) as Secret__Output],
    ['ROOTCA', T.toObject(T.fromObject({ name: 'ROOTCA', validation_context: { trusted_ca: file('ca.pem') } }), TO_OBJECT_OPTIONS) as Secret__Output],
  ]);
  const ctx = downstream({
    common_tls_context: {
      tls_certificate_sds_secret_configs: [{ name: 'default' }],
      combined_validation_context: {
        default_validation_context: { match_typed_subject_alt_names: [{ san_type: 'URI', matcher: { exact: CLIENT_SPIFFE } }] },
        validation_context_sds_secret_config: { name: 'ROOTCA' },
      },
    },
  });
  const down = createDownstreamTls(ctx, read, { lookupSecret: (name) => secrets.get(name) });
  assert.ok(down.secureContextOptions.ca);
  assert.equal(down.requireClientCertificate, true);
  assert.throws(
    () => createDownstreamTls(ctx, read),
    (err: unknown) =>
      err instanceof ConfigError &&
      err.diagnostics.some((d) => d.path === 'common_tls_context.tls_certificate_sds_secret_configs[0]' && d.code === 'SLOOP_ERR_CONFIG_UNSUPPORTED'),
  );
});

test('config errors name the field path and the file, and are all collected', () => {
  assert.throws(
    () =>
      createDownstreamTls(
        downstream({
          common_tls_context: {
            tls_certificates: [
              { certificate_chain: file('missing.pem'), private_key: file('server.key') },
              { certificate_chain: file('server.pem'), private_key: file('client.key') },
            ],
            tls_params: { cipher_suites: ['NOT-A-CIPHER'], tls_minimum_protocol_version: 'TLSv1_3', tls_maximum_protocol_version: 'TLSv1_2' },
            validation_context: { trusted_ca: file('server.key'), verify_certificate_hash: ['abc'] },
          },
        }),
        read,
      ),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      const byPath = new Map(err.diagnostics.map((d) => [d.path, d]));
      const missing = byPath.get('common_tls_context.tls_certificates[0].certificate_chain.filename');
      assert.ok(missing, [...byPath.keys()].join('\n'));
      assert.equal(missing.code, 'SLOOP_ERR_CONFIG_UNREADABLE');
      assert.match(missing.message, /missing\.pem/);
      const mismatch = byPath.get('common_tls_context.tls_certificates[1].private_key.filename');
      assert.ok(mismatch);
      assert.match(mismatch.message, /client\.key.*does not match.*server\.pem/);
      assert.ok(byPath.has('common_tls_context.tls_params.cipher_suites'));
      assert.ok(byPath.has('common_tls_context.tls_params.tls_minimum_protocol_version'));
      assert.ok(byPath.has('common_tls_context.validation_context.trusted_ca.filename'));
      assert.ok(byPath.has('common_tls_context.validation_context.verify_certificate_hash[0]'));
      // Key material never ends up in messages.
      assert.doesNotMatch(err.message, /PRIVATE KEY/);
      return true;
    },
  );
  assert.throws(
    () => createDownstreamTls(downstream({ common_tls_context: {} }), read),
    (err: unknown) => err instanceof ConfigError && err.diagnostics[0].path === 'common_tls_context.tls_certificates',
  );
  assert.throws(
    () =>
      createUpstreamTls(
        upstream({ common_tls_context: { tls_certificates: [{ certificate_chain: file('client.pem'), private_key: file('client-enc.key'), password: { inline_string: 'wrong' } }] } }),
        read,
      ),
    (err: unknown) => err instanceof ConfigError && err.diagnostics[0].path === 'common_tls_context.tls_certificates[0].private_key.filename',
  );
});

test('parseSubjectAltNames reads Node SAN text, quoted values and IPv6 included', () => {
  assert.deepEqual(
    parseSubjectAltNames('DNS:a.example.com, URI:spiffe://td/ns/x/sa/y, IP Address:2001:DB8:0:0:0:0:0:1, email:a@b.c, DNS:"we\\u002cird", othername:1.2.3;x, IP Address:10.0.0.1'),
    [
      { type: 'DNS', value: 'a.example.com' },
      { type: 'URI', value: 'spiffe://td/ns/x/sa/y' },
      { type: 'IP_ADDRESS', value: '2001:db8::1' },
      { type: 'EMAIL', value: 'a@b.c' },
      { type: 'DNS', value: 'we,ird' },
      { type: 'IP_ADDRESS', value: '10.0.0.1' },
    ],
  );
  assert.deepEqual(parseSubjectAltNames(undefined), []);
});
