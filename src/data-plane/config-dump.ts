/** Envoy's /config_dump: the bootstrap, static clusters and listeners as envoy.admin.v3 dumps, in Envoy's JSON. */
import { packAny } from '../xds/any.ts';
import { encodeProtoJson } from '../xds/proto-json.ts';
import { lookupMessage } from '../xds/protos.ts';
import type { ProxyServer } from './server.ts';

const T = 'type.googleapis.com/';

export function configDump(server: ProxyServer, opts: { resource?: string; mask?: string; includeEds: boolean }): unknown {
  // With ADS, dynamic resources carry version_info and last_updated (xDS-delivered, as Envoy dumps them).
  const dyn = server.dynamic?.dump(opts.includeEds);
  const staticListenerNames = new Set((server.bootstrap.static_resources?.listeners ?? []).map((l) => l.name));
  const dumps: [string, object][] = [
    ['envoy.admin.v3.BootstrapConfigDump', { bootstrap: server.bootstrap }],
    [
      'envoy.admin.v3.ClustersConfigDump',
      { static_clusters: [...server.clusters.all()].filter((c) => !c.addedViaApi).map((c) => ({ cluster: packAny(T + 'envoy.config.cluster.v3.Cluster', c.config) })), ...dyn?.clusters },
    ],
    [
      'envoy.admin.v3.ListenersConfigDump',
      { static_listeners: server.listeners.filter((l) => staticListenerNames.has(l.name)).map((l) => ({ listener: packAny(T + 'envoy.config.listener.v3.Listener', l.config) })), ...dyn?.listeners },
    ],
  ];
  if (dyn !== undefined) {
    dumps.push(['envoy.admin.v3.RoutesConfigDump', dyn.routes]);
    if (dyn.endpoints !== undefined) dumps.push(['envoy.admin.v3.EndpointsConfigDump', dyn.endpoints]);
  }
  // Secrets (SDS), last as in Envoy: static from the bootstrap, dynamic from the workload agent or ADS; keys redacted.
  const secretAny = (s: object): object => packAny(T + 'envoy.extensions.transport_sockets.tls.v3.Secret', s);
  const ts = (ms: number): object => ({ seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 });
  const secrets = server.secrets.dump();
  dumps.push([
    'envoy.admin.v3.SecretsConfigDump',
    {
      static_secrets: secrets.filter((s) => s.source === 'static' && s.secret).map((s) => ({ name: s.name, last_updated: ts(s.updatedMs), secret: secretAny(s.secret!) })),
      dynamic_active_secrets: secrets.filter((s) => s.source !== 'static' && s.secret).map((s) => ({ name: s.name, version_info: s.version, last_updated: ts(s.updatedMs), secret: secretAny(s.secret!) })),
      dynamic_warming_secrets: secrets.filter((s) => s.secret === undefined).map((s) => ({ name: s.name })),
    },
  ]);
  const configs = dumps.map(([name, obj]) => packAny(T + name, obj));
  const json = encodeProtoJson(lookupMessage('envoy.admin.v3.ConfigDump')!, { configs }) as { configs?: Record<string, unknown>[] };
  if (opts.resource === undefined) return json;
  // ?resource=static_clusters etc.: the entries of that repeated field from whichever dump has it.
  const out: unknown[] = [];
  for (const d of json.configs ?? []) {
    const v = d[opts.resource];
    if (Array.isArray(v)) out.push(...v);
  }
  return { configs: out };
}
