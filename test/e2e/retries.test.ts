// Router retries through `sloop proxy` (Envoy's route RetryPolicy and "Router: retry semantics"): retry_on
// conditions, num_retries, per_try_timeout, body replay, host predicates, backoff, the retry circuit breaker,
// and Envoy's retry stats — asserted at the client and at the upstream (RELIABILITY row 31: retry only where safe).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { echoHandler, startHttpUpstream, type HttpUpstream, type RecordedRequest, type UpstreamResponse } from '../helpers/upstreams.ts';
import { startProxy, bootstrapWith, httpListener, staticCluster, virtualHost, prefixRoute, type Json, type ProxyHandle } from '../helpers/proxy.ts';
import { curl } from '../helpers/clients.ts';
import { freePorts } from '../helpers/ports.ts';

/**
 * `/flaky/<key>/<n>/<status>`: the first n requests with that key answer `status` (or, for "drop",
 * drop the connection; for "slow", answer after 3 s), later ones the echo. Keys keep tests independent.
 */
function flakyHandler(name: string) {
  const seen = new Map<string, number>();
  const echo = echoHandler(name);
  return (req: Parameters<ReturnType<typeof echoHandler>>[0], res: UpstreamResponse, rec: RecordedRequest): void => {
    const m = /\/flaky\/([^/]+)\/(\d+)\/([a-z0-9]+)/.exec(rec.url);
    if (m === null) return echo(req, res, rec);
    const count = (seen.get(m[1]) ?? 0) + 1;
    seen.set(m[1], count);
    if (count > Number(m[2])) return echo(req, res, rec);
    if (m[3] === 'drop') {
      req.socket.destroy();
      return;
    }
    if (m[3] === 'slow') {
      const t = setTimeout(() => echo(req, res, rec), 3000);
      res.once('close', () => clearTimeout(t));
      return;
    }
    const body = `attempt ${count} failed`;
    (res as import('node:http').ServerResponse).writeHead(Number(m[3]), { 'x-upstream': name, 'content-length': body.length, 'x-attempt': String(count) });
    res.end(body);
  };
}

// TODO(sloop, #retry-predicates): Envoy's documented form also carries typed_config
// `envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate`, a type Sloop's proto set lacks; the name selects it.
const PREVIOUS_HOSTS = { name: 'envoy.retry_host_predicates.previous_hosts' };

describe('router retries', () => {
  let up: HttpUpstream;
  let proxy: ProxyHandle;
  let port: number;
  let deadPort: number;

  const route = (prefix: string, cluster: string, retry: Json, extra: Json = {}): Json => prefixRoute(prefix, cluster, { retry_policy: retry, ...extra });
  const get = (path: string, args: string[] = []) => curl(['-H', 'host: svc.local', ...args, `http://127.0.0.1:${port}${path}`]);
  const hits = (key: string): RecordedRequest[] => up.requests.filter((r) => r.url.includes(`/flaky/${key}/`));
  const stat = async (name: string): Promise<number> => (await proxy.stats())[name] ?? 0;

  before(async () => {
    up = await startHttpUpstream({ name: 'a', handler: flakyHandler('a') });
    const [p, dead, admin] = await freePorts(3);
    port = p;
    deadPort = dead; // nothing listens here: connection refused
    proxy = await startProxy(
      bootstrapWith({
        adminPort: admin,
        listeners: [
          httpListener({
            name: 'ingress',
            port,
            virtualHosts: [
              virtualHost('svc', ['*'], [
                route('/5xx/', 'a', { retry_on: '5xx', num_retries: 2, retry_back_off: { base_interval: '0.005s' } }),
                route('/gw/', 'a', { retry_on: 'gateway-error', num_retries: 2, retry_back_off: { base_interval: '0.005s' } }),
                route('/4xx/', 'a', { retry_on: 'retriable-4xx', num_retries: 1, retry_back_off: { base_interval: '0.005s' } }),
                route('/codes/', 'a', { retry_on: 'retriable-status-codes', retriable_status_codes: [418], num_retries: 1, retry_back_off: { base_interval: '0.005s' } }),
                route('/reset/', 'a', { retry_on: 'reset', num_retries: 1, retry_back_off: { base_interval: '0.005s' } }),
                route('/pertry/', 'a', { retry_on: '5xx', num_retries: 1, per_try_timeout: '0.3s', retry_back_off: { base_interval: '0.005s' } }, { timeout: '5s' }),
                route('/cf/', 'pair', { retry_on: 'connect-failure', num_retries: 1, retry_host_predicate: [PREVIOUS_HOSTS], host_selection_retry_max_attempts: 3 }),
                route('/overflow/', 'nobudget', { retry_on: '5xx', num_retries: 2 }),
                route('/backoff/', 'a', { retry_on: '5xx', num_retries: 3, retry_back_off: { base_interval: '0.4s', max_interval: '0.5s' } }),
                prefixRoute('/noretry/', 'a'),
              ]),
            ],
          }),
        ],
        clusters: [
          staticCluster('a', [['127.0.0.1', up.port]]),
          staticCluster('pair', [['127.0.0.1', deadPort], ['127.0.0.1', up.port]]),
          staticCluster('nobudget', [['127.0.0.1', up.port]], { circuit_breakers: { thresholds: [{ max_retries: 0 }] } }),
        ],
      }),
    );
  });

  after(async () => {
    await proxy?.stop();
    await up?.close();
  });

  it('retry_on 5xx, num_retries 2: fails twice then succeeds → 200, upstream saw 3 requests; retry stats', async () => {
    const [retry, success] = [await stat('cluster.a.upstream_rq_retry'), await stat('cluster.a.upstream_rq_retry_success')];
    const r = await get('/5xx/flaky/k1/2/503');
    assert.equal(r.status, 200);
    assert.equal(r.json().url, '/5xx/flaky/k1/2/503');
    assert.equal(hits('k1').length, 3);
    // Every attempt carries the same request id (one logical request).
    assert.equal(new Set(hits('k1').map((q) => q.headerMap['x-request-id'])).size, 1);
    assert.equal(await stat('cluster.a.upstream_rq_retry'), retry + 2);
    assert.equal(await stat('cluster.a.upstream_rq_retry_success'), success + 1);
  });

  it('retry limit exceeded: the last upstream response is forwarded; upstream_rq_retry_limit_exceeded', async () => {
    const before = await stat('cluster.a.upstream_rq_retry_limit_exceeded');
    const r = await get('/5xx/flaky/k2/9/503');
    assert.equal(r.status, 503);
    assert.equal(r.text, 'attempt 3 failed', 'the third (last) upstream answer, not a local reply');
    assert.equal(r.headers['x-upstream'], 'a');
    assert.equal(hits('k2').length, 3, '1 try + 2 retries');
    assert.equal(await stat('cluster.a.upstream_rq_retry_limit_exceeded'), before + 1);
  });

  it('gateway-error retries 502/503/504 but not 500', async () => {
    const r500 = await get('/gw/flaky/k3/1/500');
    assert.equal(r500.status, 500);
    assert.equal(hits('k3').length, 1, '500 is not a gateway error');
    for (const [key, code] of [['k4', 502], ['k5', 503], ['k6', 504]] as const) {
      const r = await get(`/gw/flaky/${key}/1/${code}`);
      assert.equal(r.status, 200, `${code} retried`);
      assert.equal(hits(key).length, 2);
    }
  });

  it('5xx does not retry a 4xx; retriable-4xx retries 409 only', async () => {
    const r = await get('/5xx/flaky/k7/1/404');
    assert.equal(r.status, 404);
    assert.equal(hits('k7').length, 1);
    const c = await get('/4xx/flaky/k8/1/409');
    assert.equal(c.status, 200);
    assert.equal(hits('k8').length, 2);
    const n = await get('/4xx/flaky/k9/1/400');
    assert.equal(n.status, 400);
    assert.equal(hits('k9').length, 1);
  });

  it('retriable-status-codes retries exactly the listed codes', async () => {
    const t = await get('/codes/flaky/k10/1/418');
    assert.equal(t.status, 200);
    assert.equal(hits('k10').length, 2);
    const o = await get('/codes/flaky/k11/1/503');
    assert.equal(o.status, 503, '503 is not listed');
    assert.equal(hits('k11').length, 1);
  });

  it('retry_on reset: an upstream that drops the connection is retried → 200', async () => {
    const r = await get('/reset/flaky/k12/1/drop');
    assert.equal(r.status, 200, `${r.text} after ${hits('k12').length} attempts`);
    assert.equal(hits('k12').length, 2);
    // Without a retry policy the reset becomes Envoy's 503.
    const n = await get('/noretry/flaky/k13/1/drop');
    assert.equal(n.status, 503);
    assert.equal(n.text, 'upstream connect error or disconnect/reset before headers. reset reason: connection termination');
  });

  it('POST bodies are replayed byte for byte on every attempt', async () => {
    const body = Buffer.alloc(20_000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff;
    const { writeFile, rm, mkdtemp } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(join(tmpdir(), 'sloop-retry-'));
    const file = join(dir, 'body.bin');
    await writeFile(file, body);
    try {
      const r = await get('/5xx/flaky/k14/2/503', ['-X', 'POST', '--data-binary', `@${file}`, '-H', 'content-type: application/octet-stream']);
      assert.equal(r.status, 200);
      const got = hits('k14');
      assert.equal(got.length, 3);
      for (const q of got) {
        assert.equal(q.method, 'POST');
        assert.ok(q.body.equals(body), `attempt body differs (${q.body.length} bytes)`);
      }
      // And chunked (unknown length) bodies too.
      const c = await get('/5xx/flaky/k15/1/502', ['-X', 'POST', '-H', 'transfer-encoding: chunked', '--data-binary', `@${file}`]);
      assert.equal(c.status, 200);
      assert.ok(hits('k15').every((q) => q.body.equals(body)));
      assert.equal(hits('k15').length, 2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('per_try_timeout: a stalled first try is abandoned and a fast second try wins', async () => {
    const before = await stat('cluster.a.upstream_rq_per_try_timeout');
    const t0 = performance.now();
    const r = await get('/pertry/flaky/k16/1/slow');
    const ms = performance.now() - t0;
    assert.equal(r.status, 200);
    assert.ok(ms < 2_500, `took ${Math.round(ms)} ms: the 3 s first try was not cut at 0.3 s`);
    await up.recorder.waitFor((q) => q.url.includes('/flaky/k16/') && hits('k16').length >= 2);
    assert.equal(hits('k16').length, 2);
    assert.equal(await stat('cluster.a.upstream_rq_per_try_timeout'), before + 1);
  });

  it('connect-failure + previous_hosts: a dead endpoint in a 2-host cluster never fails a request', async () => {
    const before = await stat('cluster.pair.upstream_cx_connect_fail');
    const seen = up.requests.length;
    // Round robin puts the dead host first for one of any two consecutive requests.
    for (let i = 0; i < 4; i++) {
      const r = await get(`/cf/n${i}`);
      assert.equal(r.status, 200, `request ${i}: ${r.text}`);
    }
    assert.equal(up.requests.length - seen, 4);
    assert.ok((await stat('cluster.pair.upstream_cx_connect_fail')) > before, 'the dead endpoint was tried');
    assert.ok((await stat('cluster.pair.upstream_rq_retry')) >= 1);
  });

  it('retry circuit breaker: max_retries 0 → no retry, upstream_rq_retry_overflow', async () => {
    const before = await stat('cluster.nobudget.upstream_rq_retry_overflow');
    const r = await get('/overflow/flaky/k17/1/503');
    assert.equal(r.status, 503);
    assert.equal(r.text, 'attempt 1 failed');
    assert.equal(hits('k17').length, 1);
    assert.equal(await stat('cluster.nobudget.upstream_rq_retry_overflow'), before + 1);
  });

  it('retry_back_off base_interval is honoured (jittered, so only a loose lower bound)', async () => {
    // Envoy: each backoff is uniform in [0, base·(2^n − 1)), capped at max_interval. Three retries at base 0.4 s
    // average ~1 s; all three under 30 ms together has probability ~1e-5.
    const t0 = performance.now();
    const r = await get('/backoff/flaky/k18/3/503');
    const ms = performance.now() - t0;
    assert.equal(r.status, 200);
    assert.equal(hits('k18').length, 4);
    assert.ok(ms >= 30, `three backoffs took only ${Math.round(ms)} ms`);
    assert.ok(ms < 5_000, `three backoffs capped at 0.5 s each took ${Math.round(ms)} ms`);
  });
});
