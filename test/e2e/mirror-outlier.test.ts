// Request mirroring (route request_mirror_policies) and outlier detection (cluster outlier_detection) through
// `sloop proxy`. Issue #4; RELIABILITY row 32: an upstream answering five 5xx in a row is ejected, traffic goes
// to the healthy host, and the ejected host returns after its ejection time.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { startHttpUpstream, echoHandler, type HttpUpstream } from '../helpers/upstreams.ts';
import { startProxy, bootstrapWith, httpListener, staticCluster, virtualHost, prefixRoute, type ProxyHandle } from '../helpers/proxy.ts';
import { httpRequest } from '../helpers/http-client.ts';
import { freePorts } from '../helpers/ports.ts';
import { waitUntil } from '../helpers/wait.ts';

describe('request mirroring and outlier detection', () => {
  let main: HttpUpstream;
  let mirror: HttpUpstream;
  let silent: HttpUpstream;
  let good: HttpUpstream;
  let bad: HttpUpstream;
  let proxy: ProxyHandle;
  let port: number;

  before(async () => {
    main = await startHttpUpstream({ name: 'main' });
    mirror = await startHttpUpstream({ name: 'mirror' });
    // Takes the shadow request and never answers it.
    silent = await startHttpUpstream({ name: 'silent', handler: () => {} });
    good = await startHttpUpstream({ name: 'good' });
    bad = await startHttpUpstream({
      name: 'bad',
      handler: (req, res, rec) => {
        if (rec.url.startsWith('/od/')) {
          (res as ServerResponse).writeHead(503, { 'x-upstream': 'bad' });
          res.end('down');
        } else echoHandler('bad')(req, res, rec);
      },
    });
    const [p, admin] = await freePorts(2);
    port = p;
    proxy = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [
          httpListener({
            name: 'mo',
            port,
            virtualHosts: [
              virtualHost('svc', ['svc.local', 'svc.local:*'], [
                prefixRoute('/mirror/', 'main', { request_mirror_policies: [{ cluster: 'mirror' }] }),
                prefixRoute('/keep-host/', 'main', { request_mirror_policies: [{ cluster: 'mirror', disable_shadow_host_suffix_append: true }] }),
                prefixRoute('/slow-mirror/', 'main', { request_mirror_policies: [{ cluster: 'silent' }], timeout: '5s' }),
                prefixRoute('/dead-mirror/', 'main', { request_mirror_policies: [{ cluster: 'dead' }, { cluster: 'nonexistent' }] }),
                prefixRoute('/never/', 'main', { request_mirror_policies: [{ cluster: 'mirror', runtime_fraction: { default_value: { numerator: 0, denominator: 'HUNDRED' } } }] }),
                prefixRoute('/od/', 'od'),
              ]),
            ],
          }),
        ],
        clusters: [
          staticCluster('main', [['127.0.0.1', main.port]]),
          staticCluster('mirror', [['127.0.0.1', mirror.port]]),
          staticCluster('silent', [['127.0.0.1', silent.port]]),
          staticCluster('dead', [['127.0.0.1', 1]]),
          staticCluster('od', [['127.0.0.1', good.port], ['127.0.0.1', bad.port]], {
            outlier_detection: { consecutive_5xx: 5, interval: '0.1s', base_ejection_time: '1s', max_ejection_percent: 50 },
          }),
        ],
      }),
    );
  });

  after(async () => {
    await proxy?.stop();
    for (const u of [main, mirror, silent, good, bad]) await u?.close();
  });

  const req = (path: string, opts: { method?: string; body?: string; host?: string } = {}) =>
    httpRequest(port, path, { method: opts.method, body: opts.body, headers: [['host', opts.host ?? 'svc.local']] });

  it('mirrors a copy of the request to the mirror cluster with -shadow on the host', async () => {
    const r = await req('/mirror/get?x=1');
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-upstream'], 'main');
    const shadow = await mirror.recorder.waitFor((s) => s.url === '/mirror/get?x=1');
    assert.equal(shadow.headerMap['host'], 'svc.local-shadow');
    assert.equal(shadow.headerMap['x-request-id'], main.requests.at(-1)!.headerMap['x-request-id']);
    // With a port, -shadow goes before it (Envoy's shadow host rewrite).
    await req('/mirror/port', { host: 'svc.local:8080' });
    assert.equal((await mirror.recorder.waitFor((s) => s.url === '/mirror/port')).headerMap['host'], 'svc.local-shadow:8080');
    await req('/keep-host/k');
    assert.equal((await mirror.recorder.waitFor((s) => s.url === '/keep-host/k')).headerMap['host'], 'svc.local');
  });

  it('mirrors the request body', async () => {
    const r = await req('/mirror/post', { method: 'POST', body: 'payload to copy' });
    assert.equal(r.status, 200);
    assert.equal(main.requests.at(-1)!.body.toString(), 'payload to copy');
    const shadow = await mirror.recorder.waitFor((s) => s.url === '/mirror/post');
    assert.equal(shadow.method, 'POST');
    assert.equal(shadow.body.toString(), 'payload to copy');
  });

  it('a mirror that never answers or is down does not affect the main response', async () => {
    const r = await req('/slow-mirror/a');
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-upstream'], 'main');
    await silent.recorder.waitFor((s) => s.url === '/slow-mirror/a');
    const d = await req('/dead-mirror/a', { method: 'POST', body: 'b' });
    assert.equal(d.status, 200);
    assert.equal(d.headers['x-upstream'], 'main');
    assert.equal(main.requests.at(-1)!.body.toString(), 'b');
    await waitUntil(async () => ((await proxy.stats())['cluster.dead.upstream_cx_connect_fail'] ?? 0) >= 1, { what: 'the dead mirror tried' });
  });

  it('runtime_fraction 0 % never mirrors', async () => {
    await req('/never/x');
    // The 100 % route's shadow is sent after the 0 % request finished, on the same path to the same upstream.
    await req('/mirror/after-never');
    await mirror.recorder.waitFor((s) => s.url === '/mirror/after-never');
    assert.equal(mirror.requests.some((s) => s.url === '/never/x'), false);
  });

  it('RELIABILITY row 32: five 5xx in a row eject the host; traffic goes to the healthy one; the host returns', async () => {
    // Round robin alternates, so the bad host sees its fifth consecutive 503 within ten requests.
    let n = 0;
    while (((await proxy.stats())['cluster.od.outlier_detection.ejections_active'] ?? 0) === 0) {
      assert.ok(n < 20, 'ejected within 20 requests');
      const r = await req(`/od/${n++}`);
      assert.equal(r.status, r.headers['x-upstream'] === 'bad' ? 503 : 200);
    }
    const st = await proxy.stats();
    assert.equal(st['cluster.od.outlier_detection.ejections_enforced_consecutive_5xx'], 1);
    assert.equal(st['cluster.od.outlier_detection.ejections_detected_consecutive_5xx'], 1);
    assert.equal(st['cluster.od.outlier_detection.ejections_enforced_total'], 1);
    const badHits = bad.requests.filter((r) => r.url.startsWith('/od/')).length;
    assert.equal(badHits, 5);
    const clusters = (await proxy.admin('/clusters')).text;
    assert.match(clusters, new RegExp(`od::127\\.0\\.0\\.1:${bad.port}::health_flags::/failed_outlier_check`));
    assert.match(clusters, new RegExp(`od::127\\.0\\.0\\.1:${good.port}::health_flags::healthy`));
    // While ejected (1 s, checked every 0.1 s), every request goes to the healthy host. Stop early if the
    // ejection time passes first on a slow machine.
    for (let i = 0; i < 10; i++) {
      const r = await req(`/od/during-${i}`);
      if (((await proxy.stats())['cluster.od.outlier_detection.ejections_active'] ?? 0) === 0) break;
      assert.equal(r.headers['x-upstream'], 'good');
      assert.equal(r.status, 200);
    }
    // After base_ejection_time × 1 the host is back and picked again.
    await waitUntil(async () => (await proxy.stats())['cluster.od.outlier_detection.ejections_active'] === 0, { what: 'the host to return' });
    assert.match((await proxy.admin('/clusters')).text, new RegExp(`od::127\\.0\\.0\\.1:${bad.port}::health_flags::healthy`));
    const seen = new Set<string>();
    for (let i = 0; i < 4; i++) seen.add(String((await req(`/od/after-${i}`)).headers['x-upstream']));
    assert.ok(seen.has('bad') && seen.has('good'), `served by ${[...seen].join(', ')}`);
  });
});
