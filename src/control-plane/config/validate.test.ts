import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { formatPath, parseDocuments } from './documents.ts';
import { loadConfig } from './load.ts';
import { selectServicePortProtocol } from './schema/kubernetes.ts';
import { parseDurationNs } from './schema/common.ts';
import { validateDocuments } from './validate.ts';

const SAMPLES = '/work/shared/istio-samples';
const TESTDATA = new URL('./testdata/', import.meta.url).pathname;

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => {
    const p = join(dir, e);
    return statSync(p).isDirectory() ? yamlFiles(p) : /\.ya?ml$/.test(e) ? [p] : [];
  });
}

function validateText(text: string) {
  const parsed = parseDocuments(text, 'mem.yaml');
  const v = validateDocuments(parsed.documents);
  return { model: v.model, diagnostics: [...parsed.diagnostics, ...v.diagnostics] };
}

test('every Istio sample file loads with no error diagnostics', () => {
  const files = yamlFiles(SAMPLES);
  assert.ok(files.length > 50, `found ${files.length} sample files`);
  for (const file of files) {
    const { diagnostics } = loadConfig([file]);
    const errors = diagnostics.filter((d) => d.severity === 'error');
    assert.deepEqual(errors, [], file);
  }
});

test('bookinfo: kinds land in the model with Istio defaults', () => {
  const { model, diagnostics } = loadConfig([join(SAMPLES, 'bookinfo/platform/kube/bookinfo.yaml'), join(SAMPLES, 'bookinfo/networking/destination-rule-all.yaml'), join(SAMPLES, 'bookinfo/networking/virtual-service-all-v1.yaml')]);
  assert.deepEqual(diagnostics, []);
  assert.deepEqual(model.services.map((s) => s.hostname).sort(), ['details', 'productpage', 'ratings', 'reviews'].map((n) => `${n}.default.svc.cluster.local`));
  const reviews = model.services.find((s) => s.name === 'reviews')!;
  assert.deepEqual(reviews.ports, [{ name: 'http', port: 9080, targetPort: 9080, transportProtocol: 'TCP', protocol: 'HTTP' }]);
  assert.deepEqual(reviews.selector, { app: 'reviews' });
  assert.equal(model.virtualServices.length, 4);
  assert.deepEqual(model.virtualServices[0].gateways, ['mesh']);
  assert.equal(model.virtualServices[0].namespace, 'default');
  assert.equal(model.destinationRules.find((d) => d.name === 'reviews')!.spec.subsets!.length, 3);
  // Deployments are kept as others, and their pod templates are workloads.
  assert.ok(model.workloads.some((w) => w.kind === 'Deployment' && w.labels.app === 'reviews' && w.labels.version === 'v3' && w.serviceAccount === 'bookinfo-reviews'));
  assert.ok(model.others.some((o) => o.kind === 'ServiceAccount'));
  // Every field has a position.
  const vs = model.virtualServices[0];
  assert.equal(vs.origin.file, join(SAMPLES, 'bookinfo/networking/virtual-service-all-v1.yaml'));
  assert.ok(vs.positions['spec.http[0].route[0].destination.host'].line > vs.origin.line);
});

test('broken VirtualService and DestinationRule: every problem with file:line:col, resource and Istio field path', () => {
  const file = join(TESTDATA, 'broken-schema.yaml');
  const { model, diagnostics } = loadConfig([file]);
  const got = diagnostics.map((d) => [`${d.line}:${d.column}`, `${d.kind} ${d.namespace}/${d.name}`, d.path, d.message]);
  assert.deepEqual(got, [
    ['12:9', 'VirtualService default/reviews', 'spec.http[0].match[0].uri.regex', 'invalid RE2 regular expression "/api/(?=v1)": regex "/api/(?=v1)": lookaround is not supported by RE2'],
    ['13:7', 'VirtualService default/reviews', 'spec.http[0].match[0].ignoreUriCase', 'must be a boolean (true or false), found string "yes-please"'],
    ['18:7', 'VirtualService default/reviews', 'spec.http[0].route[0].weight', 'weight must not be negative'],
    ['19:7', 'VirtualService default/reviews', 'spec.http[0].route[1].destination.host', 'missing required field "host"'],
    ['21:7', 'VirtualService default/reviews', 'spec.http[0].route[1].weigth', 'unknown field "weigth"'],
    ['22:5', 'VirtualService default/reviews', 'spec.http[0].timeout', 'invalid duration "10 seconds" (expected a number with a unit such as "1.5s", "300ms", "1m")'],
    ['33:7', 'DestinationRule prod/reviews', 'spec.trafficPolicy.loadBalancer.simple', 'must be one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST, found string "FASTEST"'],
    ['35:5', 'DestinationRule prod/reviews', 'spec.subsets[0].name', 'subset name "V1" is invalid (a DNS-1123 label: lowercase letters, digits and "-")'],
  ]);
  assert.ok(diagnostics.every((d) => d.file === file && d.severity === 'error' && d.code === 'SLOOP_ERR_CONFIG_INVALID'));
  // Resources with errors are left out of the model.
  assert.equal(model.virtualServices.length, 0);
  assert.equal(model.destinationRules.length, 0);
});

test('apiVersions v1, v1beta1 and v1alpha3 are accepted; others, unknown kinds and unknown top-level fields are not', () => {
  const vs = (apiVersion: string, extra = '') => `apiVersion: ${apiVersion}\nkind: VirtualService\nmetadata: {name: a}\n${extra}spec:\n  hosts: [a]\n  http: [{route: [{destination: {host: a}}]}]\n`;
  for (const v of ['v1', 'v1beta1', 'v1alpha3']) assert.deepEqual(validateText(vs(`networking.istio.io/${v}`)).diagnostics, [], v);
  assert.match(validateText(vs('networking.istio.io/v2')).diagnostics[0].message, /unsupported apiVersion "networking.istio.io\/v2"/);
  assert.match(validateText('apiVersion: networking.istio.io/v1\nkind: VirtualSevice\nmetadata: {name: a}\nspec: {}\n').diagnostics[0].message, /unknown kind "VirtualSevice"/);
  const extra = validateText(vs('networking.istio.io/v1', 'specs: {}\n')).diagnostics;
  assert.deepEqual(extra.map((d) => [d.path, d.message, d.line]), [['specs', 'unknown field "specs"', 4]]);
});

test('other Kubernetes kinds are kept without error; telemetry kinds are kept shallowly', () => {
  const { model, diagnostics } = validateText([
    'apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: c, namespace: x}\nspec: {whatever: 1}',
    'apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: deny}\nspec: {action: DENY}',
    'apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {app: a}}\nspec: {containers: [{name: c, ports: [{containerPort: 80, name: http}]}]}',
  ].join('\n---\n'));
  assert.deepEqual(diagnostics, []);
  assert.deepEqual(model.others.map((o) => `${o.kind} ${o.namespace}/${o.name}`), ['Certificate x/c', 'Pod default/p']);
  assert.deepEqual(model.policies.map((p) => [p.kind, p.spec]), [['Telemetry', { action: 'DENY' }]]);
  assert.deepEqual(model.workloads.map((w) => [w.kind, w.labels, w.containerPorts]), [['Pod', { app: 'a' }, [{ containerPort: 80, name: 'http' }]]]);
});

test('Istio rules: hosts, mesh wildcard, route actions, weights, fault, retries, ServiceEntry resolution, Gateway TLS', () => {
  const messages = (text: string) => validateText(text).diagnostics.map((d) => `${d.path}: ${d.message}`);
  const head = (kind: string) => `apiVersion: networking.istio.io/v1\nkind: ${kind}\nmetadata: {name: x}\n`;
  assert.deepEqual(messages(head('VirtualService') + 'spec:\n  hosts: ["*", "Bad_Host"]\n  http:\n  - {}\n'), [
    'spec.hosts[0]: wildcard host * is not allowed for virtual services bound to the mesh gateway',
    'spec.hosts[1]: host "Bad_Host": "Bad_Host" is not a valid DNS label (lowercase letters, digits and "-", at most 63)',
    'spec.http[0]: HTTP route, redirect, directResponse or delegate is required',
  ]);
  assert.deepEqual(messages(head('VirtualService') + 'spec:\n  hosts: ["*"]\n  http:\n  - route: [{destination: {host: a}}]\n'), [
    'spec.hosts[0]: wildcard host * is not allowed for virtual services bound to the mesh gateway',
  ]);
  assert.deepEqual(messages(head('VirtualService') + [
    'spec:', '  hosts: [a]', '  http:', '  - route: [{destination: {host: a}, weight: 0}, {destination: {host: b}}]',
    '    redirect: {uri: /x, redirectCode: 200}',
    '    retries: {attempts: 3, retryOn: "5xx,bogus,503", perTryTimeout: 0.5ms}',
    '    fault: {abort: {httpStatus: 700, percentage: {value: 101}}}',
  ].join('\n')), [
    'spec.http[0].redirect.redirectCode: redirectCode must be a 3xx status',
    'spec.http[0].retries.retryOn: "bogus" is not a valid retryOn policy or HTTP status code',
    'spec.http[0].retries.perTryTimeout: duration "0.5ms" must be at least 1ms',
    'spec.http[0].fault.abort.httpStatus: httpStatus must be in the range 200..599',
    'spec.http[0].fault.abort.percentage.value: percentage must be in the range [0, 100]',
  ]);
  // Rules across a message's fields run once its fields are well-typed (zod skips them otherwise).
  assert.deepEqual(messages(head('VirtualService') + [
    'spec:', '  hosts: [a]', '  http:', '  - route: [{destination: {host: a}, weight: 0}, {destination: {host: b}}]',
    '    redirect: {uri: /x}',
    '    rewrite: {uri: /y}',
    '    headers: {request: {set: {a: b}}}',
  ].join('\n')), [
    'spec.http[0]: only one of route, redirect, directResponse, delegate may be set, found route, redirect',
    'spec.http[0].route: total destination weight is 0; at least one destination needs a weight',
    'spec.http[0].rewrite: rewrite cannot be set with redirect',
  ]);
  const se = messages(head('ServiceEntry') + 'spec:\n  hosts: ["*.example.com"]\n  ports: [{number: 80, name: http, protocol: HTTPX}, {number: 80, name: http}]\n  resolution: DNS\n');
  assert.deepEqual(se.sort(), [
    'spec.hosts[0]: wildcard host "*.example.com" cannot be resolved with DNS when there are no endpoints',
    'spec.ports[0].protocol: unrecognized protocol "HTTPX" (one of HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, TCP, TLS, MYSQL, REDIS, UDP, HTTP_PROXY)',
    'spec.ports[1].name: duplicate port name "http"',
    'spec.ports[1].number: duplicate port number 80',
  ]);
  assert.deepEqual(messages(head('Gateway') + 'spec:\n  servers:\n  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: ["bookinfo/*.example.com", "a/b/c"]\n'), [
    'spec.servers[0].tls: server must have TLS settings for HTTPS protocol',
    'spec.servers[0].hosts[1]: host "a/b/c" must be "namespace/dnsName" or "dnsName"',
  ]);
  assert.deepEqual(messages(head('DestinationRule') + 'spec:\n  host: r\n  subsets: [{name: v1}, {name: v1}]\n  trafficPolicy: {tls: {mode: MUTUAL}}\n'), [
    'spec.subsets[1].name: duplicate subset name "v1"',
    'spec.trafficPolicy.tls.clientCertificate: client certificate required for mutual tls',
    'spec.trafficPolicy.tls.privateKey: private key required for mutual tls',
  ]);
});

test('a Kubernetes Service: unknown fields, multi-port names, protocol selection as Istio', () => {
  const { diagnostics } = validateText('apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports: [{port: 80}, {port: 81, name: b}]\n  selektor: {app: s}\n');
  assert.deepEqual(diagnostics.map((d) => `${d.line}:${d.column} ${d.path}: ${d.message}`), [
    '5:11 spec.ports[0].name: port name is required when a Service has more than one port',
    '6:3 spec.selektor: unknown field "selektor"',
  ]);
  assert.equal(selectServicePortProtocol({ name: 'http-web' }), 'HTTP');
  assert.equal(selectServicePortProtocol({ name: 'grpc-web-x' }), 'GRPC-Web');
  assert.equal(selectServicePortProtocol({ name: 'grpc' }), 'GRPC');
  assert.equal(selectServicePortProtocol({ name: 'HTTP2' }), 'HTTP2');
  assert.equal(selectServicePortProtocol({ name: 'tcp-echo' }), 'TCP');
  assert.equal(selectServicePortProtocol({ name: 'mongo' }), 'Mongo');
  assert.equal(selectServicePortProtocol({ name: 'web' }), 'UnsupportedProtocol');
  assert.equal(selectServicePortProtocol({ name: 'web', appProtocol: 'https' }), 'HTTPS');
  assert.equal(selectServicePortProtocol({ name: 'http', appProtocol: 'kubernetes.io/h2c' }), 'HTTP2');
  assert.equal(selectServicePortProtocol({ name: 'http', protocol: 'UDP' }), 'UDP');
});

test('durations use Go syntax as Istio accepts them', () => {
  assert.equal(parseDurationNs('1.5s'), 1.5e9);
  assert.equal(parseDurationNs('1h30m'), 5400e9);
  assert.equal(parseDurationNs('300ms'), 300e6);
  assert.equal(parseDurationNs('0'), 0);
  assert.equal(parseDurationNs('10'), undefined);
  assert.equal(parseDurationNs('-1s'), undefined);
  const { model } = validateText('apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec:\n  hosts: [a]\n  http: [{route: [{destination: {host: a}}], timeout: 1.5s}]\n');
  assert.deepEqual(model.virtualServices[0].spec.http![0].timeout, { seconds: 1, nanos: 500_000_000 });
});

test('YAML syntax errors and duplicate resources are diagnostics with positions', () => {
  const syntax = validateText('apiVersion: v1\nkind: Service\nmetadata: {name: s\n');
  assert.equal(syntax.diagnostics[0].severity, 'error');
  assert.match(syntax.diagnostics[0].message, /^YAML: /);
  const dup = validateText('apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s\n');
  assert.deepEqual(dup.diagnostics.map((d) => [d.line, d.path, d.message]), [[8, 'metadata.name', 'duplicate Service default/s: first defined at mem.yaml:1']]);
});

test('formatPath spells paths as Istio', () => {
  assert.equal(formatPath(['spec', 'http', 0, 'route', 1, 'destination', 'host']), 'spec.http[0].route[1].destination.host');
  assert.equal(formatPath(['metadata', 'labels', 'app.kubernetes.io/name']), 'metadata.labels["app.kubernetes.io/name"]');
});

test('security kinds: every problem with file:line:col, resource and Istio field path; nothing Istio rejects is kept', () => {
  const file = join(TESTDATA, 'broken-security.yaml');
  const { model, diagnostics } = loadConfig([file]);
  const got = diagnostics.map((d) => [`${d.line}:${d.column}`, `${d.kind} ${d.namespace}/${d.name}`, d.path, d.message]);
  assert.deepEqual(got, [
    ['6:5', 'PeerAuthentication foo/default', 'spec.mtls.mode', 'must be one of UNSET, DISABLE, PERMISSIVE, STRICT, found string "STRICTER"'],
    ['14:3', 'AuthorizationPolicy foo/httpbin', 'spec.targetRef', 'targetRef is not supported by Sloop (it attaches policy to Gateways and waypoints, which Sloop does not run); use selector'],
    ['16:3', 'AuthorizationPolicy foo/httpbin', 'spec.provider', '`provider` must not be with non CUSTOM action'],
    ['19:7', 'AuthorizationPolicy foo/httpbin', 'spec.rules[0].from[0].source', '`from.source` must not be empty'],
    ['20:27', 'AuthorizationPolicy foo/httpbin', 'spec.rules[0].from[1].source.ipBlocks[0]', 'invalid IP address or CIDR "10.0.0.300/8"'],
    ['20:42', 'AuthorizationPolicy foo/httpbin', 'spec.rules[0].from[1].source.principalz', 'unknown field "principalz"'],
    ['22:27', 'AuthorizationPolicy foo/httpbin', 'spec.rules[0].to[0].operation.ports[0]', 'port must be in the range [0, 65535], found "http"'],
    ['22:44', 'AuthorizationPolicy foo/httpbin', 'spec.rules[0].to[0].operation.paths[0]', 'path template "/api/{*}/x" ({*} / {**}) is not supported by Sloop; use exact, "prefix*" or "*suffix" paths'],
    ['24:7', 'AuthorizationPolicy foo/httpbin', 'spec.rules[0].when[0].key', 'unknown attribute: request.auth.claimz'],
    ['26:7', 'AuthorizationPolicy foo/httpbin', 'spec.rules[0].when[1].key', 'invalid IP address or CIDR "not-an-ip"'],
    ['28:7', 'AuthorizationPolicy foo/httpbin', 'spec.rules[0].when[2]', 'at least one of `values` or `notValues` must be set for key request.headers[x-user]'],
    ['36:5', 'RequestAuthentication foo/jwt', 'spec.jwtRules[0].jwksUri', 'jwksUri "ftp://keys.example.com/jwks.json" must use http or https'],
    ['37:5', 'RequestAuthentication foo/jwt', 'spec.jwtRules[0].jwks', 'jwks must be a JSON Web Key Set (JSON with a "keys" list)'],
    ['38:20', 'RequestAuthentication foo/jwt', 'spec.jwtRules[0].fromHeaders[0].name', 'location header name must be non-empty'],
    ['39:5', 'RequestAuthentication foo/jwt', 'spec.jwtRules[0].timeout', 'invalid duration "1 second" (expected a number with a unit such as "1.5s", "300ms", "1m")'],
  ]);
  assert.equal(model.peerAuthentications.length + model.authorizationPolicies.length + model.requestAuthentications.length, 0);
});

test('security kinds: Istio webhook rules across fields, empty specs, v1 and v1beta1', () => {
  const messages = (kind: string, spec: string, version = 'v1') => validateText(`apiVersion: security.istio.io/${version}\nkind: ${kind}\nmetadata: {name: x, namespace: foo}\n${spec}`).diagnostics.map((d) => `${d.path}: ${d.message}`);
  assert.deepEqual(messages('PeerAuthentication', 'spec:\n  mtls: {mode: STRICT}\n  portLevelMtls: {"8080": {mode: DISABLE}}\n'), [
    'spec.portLevelMtls: mesh/namespace peer authentication cannot have port level mTLS (portLevelMtls needs a selector)',
  ]);
  assert.deepEqual(messages('PeerAuthentication', 'spec:\n  selector: {matchLabels: {app: a}}\n  portLevelMtls: {"0": {mode: DISABLE}}\n'), ['spec.portLevelMtls["0"]: port "0" must be a number in the range 1..65535']);
  assert.deepEqual(messages('AuthorizationPolicy', 'spec:\n  action: CUSTOM\n  rules: [{}]\n'), ['spec.provider: must set provider for CUSTOM action']);
  assert.deepEqual(messages('AuthorizationPolicy', 'spec:\n  selector: {matchLabels: {app: a}}\n  targetRefs: [{kind: Service, name: a}]\n'), [
    'spec.targetRefs: only one of targetRefs or workloadSelector can be set',
    'spec.targetRefs: targetRefs is not supported by Sloop (it attaches policy to Gateways and waypoints, which Sloop does not run); use selector',
  ]);
  assert.deepEqual(messages('AuthorizationPolicy', 'spec:\n  rules: [{from: [], to: [{operation: {}}]}]\n'), [
    'spec.rules[0].from: `from` must not be empty, but found empty list',
    'spec.rules[0].to[0].operation: `to.operation` must not be empty',
  ]);
  assert.deepEqual(messages('AuthorizationPolicy', 'spec:\n  rules: [{from: [{source: {serviceAccounts: [sleep], principals: [a]}}]}]\n'), [
    'spec.rules[0].from[0].source: cannot set serviceAccounts and principals',
    'spec.rules[0].from[0].source.serviceAccounts[0]: service account "sleep" must be "namespace/name"',
  ]);
  // A spec-less AuthorizationPolicy is Istio's allow-nothing policy, in both served versions.
  for (const v of ['v1', 'v1beta1']) {
    const { model, diagnostics } = validateText(`apiVersion: security.istio.io/${v}\nkind: AuthorizationPolicy\nmetadata: {name: allow-nothing, namespace: foo}\n`);
    assert.deepEqual(diagnostics, []);
    assert.deepEqual(model.authorizationPolicies.map((p) => [p.name, p.spec]), [['allow-nothing', {}]]);
  }
  const ok = validateText([
    'apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p, namespace: foo, creationTimestamp: "2024-01-01T00:00:00Z"}\nspec: {selector: {matchLabels: {app: a}}, mtls: {mode: UNSET}, portLevelMtls: {"8080": {mode: DISABLE}}}',
    'apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r, namespace: foo}\nspec: {jwtRules: [{issuer: a, jwksUri: "https://a.example.com/keys", fromHeaders: [{name: x-jwt, prefix: "Bearer "}], outputClaimToHeaders: [{header: x-sub, claim: sub}], timeout: 5s}]}',
    'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a, namespace: foo}\nspec: {action: DENY, rules: [{when: [{key: "request.auth.claims[groups][0]", values: [x]}, {key: destination.port, notValues: ["80"]}]}]}',
  ].join('\n---\n'));
  assert.deepEqual(ok.diagnostics, []);
  assert.equal(ok.model.peerAuthentications[0].creationTimestamp, '2024-01-01T00:00:00Z');
  assert.deepEqual(ok.model.requestAuthentications[0].spec.jwtRules![0].timeout, { seconds: 5, nanos: 0 });
});

test('the mesh config ConfigMap istio-system/istio: extensionProviders validated at their file positions, other fields kept', () => {
  const cm = (mesh: string, extra = '') => `apiVersion: v1
kind: ConfigMap
metadata:
  name: istio
  namespace: istio-system
${extra}data:
  meshNetworks: 'networks: {}'
  mesh: |-
${mesh.split('\n').map((l) => `    ${l}`).join('\n')}
`;
  const bad = validateText(cm(`accessLogFile: /dev/stdout
extensionProviders:
- name: ext-authz
  envoyExtAuthzGrpc:
    service: ext-authz.foo.svc.cluster.local
    port: 0
    statusOnError: "499"
    timeoutt: 1s
- name: ext-authz
  envoyExtAuthzHttp: {service: "foo/*.example.com", port: 8000}
- name: nothing
- name: two
  prometheus: {}
  envoyExtAuthzGrpc: {service: a.b, port: 1}`, 'immutable: true\nbogus: 1\n'));
  assert.deepEqual(bad.diagnostics.map((d) => [`${d.line}:${d.column}`, `${d.kind} ${d.namespace}/${d.name}`, d.path, d.message]), [
    ['7:1', 'ConfigMap istio-system/istio', 'bogus', 'unknown field "bogus"'],
    ['16:9', 'ConfigMap istio-system/istio', 'data.mesh.extensionProviders[0].envoyExtAuthzGrpc.port', 'port number must be in the range 1..65535'],
    ['17:9', 'ConfigMap istio-system/istio', 'data.mesh.extensionProviders[0].envoyExtAuthzGrpc.statusOnError', 'statusOnError "499" is not an HTTP status Envoy supports (for example "403", "500", "503")'],
    ['18:9', 'ConfigMap istio-system/istio', 'data.mesh.extensionProviders[0].envoyExtAuthzGrpc.timeoutt', 'unknown field "timeoutt"'],
    ['19:7', 'ConfigMap istio-system/istio', 'data.mesh.extensionProviders[1].name', 'duplicate extension provider name "ext-authz"'],
    ['20:27', 'ConfigMap istio-system/istio', 'data.mesh.extensionProviders[1].envoyExtAuthzHttp.service', 'service "foo/*.example.com": the host may not be a wildcard'],
    ['21:7', 'ConfigMap istio-system/istio', 'data.mesh.extensionProviders[2]', 'extension provider "nothing" needs one provider (envoyExtAuthzGrpc, envoyExtAuthzHttp, …)'],
    ['22:7', 'ConfigMap istio-system/istio', 'data.mesh.extensionProviders[3]', 'extension provider "two" may set only one provider, found envoyExtAuthzGrpc, prometheus'],
  ]);
  const timeout = validateText(cm('extensionProviders:\n- name: a\n  envoyExtAuthzGrpc: {service: a.b, port: 1, timeout: 1.5ms}'));
  assert.deepEqual(timeout.diagnostics.map((d) => [`${d.line}:${d.column}`, d.path, d.message]), [['11:50', 'data.mesh.extensionProviders[0].envoyExtAuthzGrpc.timeout', 'duration "1.5ms" must be whole milliseconds']]);
  assert.equal(bad.model.meshConfigs.length, 0, 'a mesh config with errors is left out');
  const good = validateText(cm('accessLogFile: /dev/stdout\ndefaultConfig: {holdApplicationUntilProxyStarts: true}\nextensionProviders:\n- name: ext-authz\n  envoyExtAuthzGrpc: {service: foo/ext-authz.foo.svc.cluster.local, port: 9000, timeout: 2s, failOpen: true, statusOnError: "503"}\nrootNamespace: istio-config'));
  assert.deepEqual(good.diagnostics.map((d) => [d.severity, `${d.line}:${d.column}`, d.path]), [['warning', '14:5', 'data.mesh.rootNamespace']]);
  const [m] = good.model.meshConfigs;
  assert.deepEqual(m.spec.extensionProviders, [{ name: 'ext-authz', envoyExtAuthzGrpc: { service: 'foo/ext-authz.foo.svc.cluster.local', port: 9000, timeout: { seconds: 2, nanos: 0 }, failOpen: true, statusOnError: '503' } }]);
  assert.deepEqual(m.spec.defaultConfig, { holdApplicationUntilProxyStarts: true }, 'other MeshConfig fields are kept as written');
  assert.deepEqual(m.positions['data.mesh.extensionProviders[0].envoyExtAuthzGrpc'], { line: 13, column: 7 });
  // YAML errors inside the string, a mesh that is not a mapping, a non-string data value, a second copy.
  assert.deepEqual(validateText(cm('extensionProviders: [')).diagnostics.map((d) => `${d.line} ${d.path}`), ['9 data.mesh']);
  assert.match(validateText(cm('- a')).diagnostics[0].message, /mesh config must be a mapping/);
  assert.match(validateText(cm('a: 1').replace("meshNetworks: 'networks: {}'", 'meshNetworks: 3')).diagnostics[0].message, /must be a string/);
  assert.match(validateText(`${cm('a: 1')}---\n${cm('a: 2')}`).diagnostics[0].message, /duplicate ConfigMap istio-system\/istio/);
  // A mesh given as a quoted string: positions fall back to data.mesh; no mesh key: the defaults.
  const quoted = validateText('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata: {mesh: "extensionProviders: [{name: x}]"}\n');
  assert.deepEqual(quoted.diagnostics.map((d) => [`${d.line}:${d.column}`, d.path]), [['4:8', 'data.mesh.extensionProviders[0]']]);
  assert.deepEqual(validateText('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\n').model.meshConfigs[0].spec, {});
  // Other ConfigMaps are not the mesh config.
  const other = validateText('apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio-sidecar-injector, namespace: istio-system}\ndata: {mesh: 3}\n');
  assert.deepEqual([other.diagnostics, other.model.meshConfigs.length, other.model.others.length], [[], 0, 1]);
});

test('a document validated cleanly before gives the very same resources again, unless its name is now taken', () => {
  const vs = parseDocuments('apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: ns}\nspec: {hosts: [r], http: [{route: [{destination: {host: r}}]}]}\n', 'a.yaml').documents;
  const first = validateDocuments(vs);
  const again = validateDocuments(vs);
  assert.equal(again.model.virtualServices[0], first.model.virtualServices[0]);
  assert.deepEqual(again.diagnostics, []);
  // Another file now defines the same VirtualService first: the cached one is validated again and refused.
  const other = parseDocuments('apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: ns}\nspec: {hosts: [r], tcp: [{route: [{destination: {host: r}}]}]}\n', '0.yaml').documents;
  const both = validateDocuments([...other, ...vs]);
  assert.equal(both.model.virtualServices.length, 1);
  assert.match(both.diagnostics[0]?.message ?? '', /duplicate VirtualService ns\/r: first defined at 0\.yaml:1/);
});

test('loadConfig with a cache reads again only files whose size or modification time changed, and trusts a stat only well after the last change', async () => {
  const { mkdtempSync, writeFileSync, utimesSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'sloop-load-'));
  try {
    const file = join(dir, 'svc.yaml');
    const svc = (port: number) => `apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: ns}\nspec: {ports: [{port: ${port}, name: http}]}\n`;
    const old = new Date(Date.now() - 60_000);
    writeFileSync(file, svc(1111));
    utimesSync(file, old, old);
    const cache = new Map();
    assert.equal(loadConfig([dir], cache).model.services[0]?.ports[0]?.port, 1111);
    // Same size, same (old) mtime: the stat says unchanged, so the file is not read again.
    writeFileSync(file, svc(2222));
    utimesSync(file, old, old);
    assert.equal(loadConfig([dir], cache).model.services[0]?.ports[0]?.port, 1111);
    // A fresh mtime: read again.
    const now = new Date();
    utimesSync(file, now, now);
    assert.equal(loadConfig([dir], cache).model.services[0]?.ports[0]?.port, 2222);
    // Changed again within the racy window, same size and the same mtime: not trusted, read again.
    writeFileSync(file, svc(3333));
    utimesSync(file, now, now);
    assert.equal(loadConfig([dir], cache).model.services[0]?.ports[0]?.port, 3333);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
