/**
 * The config folder `sloop up` writes on first run: Istio and Kubernetes YAML for the demo application, which
 * the user then edits (the control plane watches it). An existing folder is reused as it is.
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** File name → contents of the first-run config. */
export const DEFAULT_MESH_CONFIG: Readonly<Record<string, string>> = {
  'services.yaml': `# The demo's services. Endpoints are the sidecars \`sloop up\` starts, selected by their labels
# (app, version); targetPort names the app's port as each sidecar reports it (POD_PORTS).
apiVersion: v1
kind: Service
metadata: { name: frontend, namespace: default }
spec:
  selector: { app: frontend }
  ports: [{ name: http, port: 80, targetPort: http }]
---
apiVersion: v1
kind: Service
metadata: { name: reviews, namespace: default }
spec:
  selector: { app: reviews }
  ports: [{ name: http, port: 9080, targetPort: http }]
---
apiVersion: v1
kind: Service
metadata: { name: ratings, namespace: default }
spec:
  selector: { app: ratings }
  ports: [{ name: grpc, port: 9090, targetPort: grpc }]
`,
  'destination-rules.yaml': `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: default }
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: { simple: ROUND_ROBIN }
  subsets:
  - name: v1
    labels: { version: v1 }
  - name: v2
    labels: { version: v2 }
`,
  'reviews-virtualservice.yaml': `# Edit and save: the control plane pushes the change to every sidecar within a second.
# Try weights 0/100, or send \`curl -H 'end-user: jason' ...\` to pin v2.
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews, namespace: default }
spec:
  hosts: [reviews]
  http:
  - name: jason-gets-v2
    match:
    - headers: { end-user: { exact: jason } }
    route:
    - destination: { host: reviews, subset: v2 }
  - name: split
    route:
    - destination: { host: reviews, subset: v1 }
      weight: 50
    - destination: { host: reviews, subset: v2 }
      weight: 50
`,
  'peer-authentication.yaml': `# Mutual TLS between sidecars (docs/identity.md). Every workload's sidecar holds a certificate for its
# service account from the control plane's CA; mesh-wide STRICT refuses plaintext on every inbound port.
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: istio-system }
spec:
  mtls: { mode: STRICT }
---
# The entry: your curl to localhost:8080 has no mesh certificate, so the frontend also takes plaintext
# (PERMISSIVE: one port, both kinds, told apart by the first bytes). Set STRICT here and curl is refused.
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: frontend-entry, namespace: default }
spec:
  selector: { matchLabels: { app: frontend } }
  mtls: { mode: PERMISSIVE }
`,
};

/** The VirtualService file a user edits to shift traffic. */
export const VIRTUAL_SERVICE_FILE = 'reviews-virtualservice.yaml';

/**
 * Makes `dir` a config folder: creates it with {@link DEFAULT_MESH_CONFIG} when it is missing or empty, and
 * leaves it alone otherwise. Returns whether it wrote the files.
 */
export function ensureMeshConfig(dir: string): { created: boolean } {
  if (existsSync(dir) && readdirSync(dir).length > 0) return { created: false };
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(DEFAULT_MESH_CONFIG)) writeFileSync(join(dir, name), text, { flag: 'wx' });
  return { created: true };
}
