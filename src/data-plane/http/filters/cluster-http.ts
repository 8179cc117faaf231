/**
 * A small HTTP/1.1 GET through one of the proxy's clusters (Envoy's HttpUri: `uri` + `cluster` + `timeout`), for
 * filters that fetch out of band: jwt_authn's remote JWKS. The cluster's load balancer picks the host and the
 * cluster's connect options apply (connect_timeout, upstream TLS), so a JWKS server behind TLS works as in Envoy;
 * the request carries the uri's host as Host and its path. One connection per fetch, closed afterwards.
 */
import http from 'node:http';
import type { ClusterManager } from '../../upstream/cluster-manager.ts';
import { connectUpstream } from '../../upstream/connect.ts';

export interface ClusterGetResult {
  status: number;
  body: Buffer;
}

/** Bodies larger than this fail the fetch (a JWKS is a few KB). */
const MAX_BODY_BYTES = 4 * 1024 * 1024;

/**
 * GETs `uri` from a host of `clusterName` within `timeoutMs` (0 = no limit).
 * @returns the response, or rejects with an Error naming what failed (unknown cluster, no healthy upstream,
 *   connect failure, timeout, reset, too large).
 */
export function clusterGet(clusters: ClusterManager | undefined, clusterName: string, uri: string, timeoutMs: number, random: () => number): Promise<ClusterGetResult> {
  return new Promise((resolve, reject) => {
    let url: URL;
    try {
      url = new URL(uri);
    } catch {
      reject(new Error(`invalid uri ${JSON.stringify(uri)}`));
      return;
    }
    const cluster = clusters?.get(clusterName);
    if (cluster === undefined) {
      reject(new Error(`cluster ${JSON.stringify(clusterName)} not found`));
      return;
    }
    const host = cluster.chooseHost({ random });
    if (host === undefined) {
      reject(new Error('no healthy upstream'));
      return;
    }
    let done = false;
    let req: http.ClientRequest | undefined;
    let cancelConnect: (() => void) | undefined;
    const finish = (err: Error | null, res?: ClusterGetResult): void => {
      if (done) return;
      done = true;
      if (timer !== undefined) clearTimeout(timer);
      if (err !== null) {
        cancelConnect?.();
        req?.destroy();
        reject(err);
      } else resolve(res!);
    };
    const timer = timeoutMs > 0 ? setTimeout(() => finish(new Error(`timeout after ${timeoutMs} ms`)), timeoutMs) : undefined;
    timer?.unref();
    cancelConnect = connectUpstream(cluster.connectOptions(host), (err, socket) => {
      cancelConnect = undefined;
      if (err !== null || socket === null) {
        cluster.onHostConnectFailure(host);
        finish(new Error(`connect failure: ${err?.detail ?? 'unknown'}`));
        return;
      }
      if (done) {
        socket.destroy();
        return;
      }
      req = http.request({
        createConnection: () => socket,
        method: 'GET',
        path: (url.pathname || '/') + url.search,
        headers: { host: url.host, accept: 'application/json', connection: 'close' },
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_BODY_BYTES) finish(new Error('response too large'));
          else chunks.push(c);
        });
        res.on('end', () => {
          socket.destroy();
          finish(null, { status: res.statusCode ?? 0, body: Buffer.concat(chunks) });
        });
        res.on('error', (e) => finish(e));
      });
      req.on('error', (e) => finish(new Error(`upstream reset: ${e.message}`)));
      req.end();
    });
  });
}
