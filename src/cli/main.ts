/** `sloop` — the one CLI. The only place that reads process.env or exits. */
import { Command, Option } from 'commander';

// Each command's module is imported only when that command runs: a sidecar (`sloop proxy`) never loads the
// control plane, its CA (@peculiar/x509), the translator or the demo apps — tens of MiB of code and heap.

const program = new Command('sloop')
  .description('Sloop: a service mesh with Istio\'s API, Envoy\'s xDS v3 protocol and a TypeScript sidecar proxy')
  .version('0.1.0');

program
  .command('proxy')
  .description('run the data-plane proxy from an Envoy v3 bootstrap (YAML or JSON)')
  .requiredOption('-c, --config <bootstrap.yaml>', 'Envoy v3 bootstrap file (alias: --config-path)')
  .addOption(new Option('-l, --log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'off']).default('info'))
  .option('--drain-time-s <seconds>', 'on SIGTERM, how long in-flight requests may take to finish', '30')
  .addOption(new Option('--mode <mode>', 'serve, or validate the bootstrap and exit (as Envoy\'s --mode validate)').choices(['serve', 'validate']).default('serve'))
  .option('--ca-address <host:port>', 'run the workload agent: get and renew this workload\'s certificate (SDS `default`, `ROOTCA`) from this CA')
  .option('--token-file <path>', 'the bootstrap token for --ca-address (`sloop token`)')
  .option('--trust-domain <domain>', 'trust domain of the workload\'s SPIFFE ID (default: node metadata TRUST_DOMAIN, else cluster.local)')
  .option('--namespace <ns>', 'workload namespace (default: node metadata NAMESPACE)')
  .option('--service-account <sa>', 'workload service account (default: node metadata SERVICE_ACCOUNT)')
  .option('--cert-ttl-s <seconds>', 'requested certificate lifetime (default: the CA\'s, 24 h)')
  .action(async (o: { config: string; logLevel: string; drainTimeS: string; mode: string; caAddress?: string; tokenFile?: string; trustDomain?: string; namespace?: string; serviceAccount?: string; certTtlS?: string }) => {
    const { runProxy } = await import('./proxy.ts');
    process.exitCode = await runProxy({
      configPath: o.config,
      logLevel: o.logLevel,
      drainTimeS: Number(o.drainTimeS),
      mode: o.mode as 'serve' | 'validate',
      caAddress: o.caAddress,
      tokenFile: o.tokenFile,
      trustDomain: o.trustDomain,
      namespace: o.namespace,
      serviceAccount: o.serviceAccount,
      certTtlS: o.certTtlS === undefined ? undefined : Number(o.certTtlS),
      // SLOOP_SOCKET_IO=stream: HTTP/1.1 reads and writes through net.Socket streams instead of the TCP handle.
      streamIo: process.env.SLOOP_SOCKET_IO === 'stream',
    });
  });

program
  .command('demo')
  .description('run the data-plane demo: demo services behind `sloop proxy` (examples/demo/bootstrap.yaml) on localhost:10000')
  .addOption(new Option('-l, --log-level <level>', 'proxy log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'off']).default('warn'))
  .option('--drain-time-s <seconds>', 'on Ctrl-C, how long in-flight requests may take to finish', '2')
  .action(async (o: { logLevel: string; drainTimeS: string }) => {
    const { runDemo } = await import('./demo.ts');
    process.exitCode = await runDemo({ logLevel: o.logLevel, drainTimeS: Number(o.drainTimeS) });
  });

program
  .command('analyze')
  .description('validate Istio and Kubernetes config files or folders offline, as istioctl analyze does (exit code 1 on any error)')
  .argument('<paths...>', 'YAML/JSON files or folders (read recursively)')
  .addOption(new Option('-o, --output <format>', 'output format').choices(['log', 'json', 'yaml']).default('log'))
  .action(async (paths: string[], o: { output: 'log' | 'json' | 'yaml' }) => {
    const { runAnalyze } = await import('./analyze.ts');
    process.exitCode = runAnalyze({ paths, output: o.output, write: (t) => process.stdout.write(t), writeInfo: (t) => process.stderr.write(t) });
  });

program
  .command('controlplane')
  .description('serve xDS (ADS, state of the world and delta) to every proxy from a folder of Istio YAML, watched')
  .requiredOption('--config <dir>', 'folder of Istio and Kubernetes YAML/JSON (read recursively, watched)')
  .option('--xds-address <host:port>', 'where the ADS gRPC server listens (istiod\'s plaintext xDS port)', '127.0.0.1:15010')
  .addOption(new Option('-l, --log-level <level>', 'log level').choices(['trace', 'debug', 'info', 'warn', 'error', 'off']).default('info'))
  .option('--ca-dir <dir>', 'run the CA (IstioCertificateService on the xDS port): its state directory — self-signed root (created on first start) and bootstrap tokens')
  .option('--ca-certs <dir>', 'sign with an operator CA in Istio\'s cacerts layout (ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem) instead of a self-signed root')
  .option('--trust-domain <domain>', 'the CA\'s trust domain', 'cluster.local')
  .option('--max-cert-ttl-s <seconds>', 'longest workload certificate lifetime; longer requests are clamped (default 90 days)')
  .option('--default-cert-ttl-s <seconds>', 'workload certificate lifetime when a request names none (default 24 h)')
  .action(async (o: { config: string; xdsAddress: string; logLevel: string; caDir?: string; caCerts?: string; trustDomain: string; maxCertTtlS?: string; defaultCertTtlS?: string }) => {
    const { runControlPlane } = await import('./controlplane.ts');
    process.exitCode = await runControlPlane({
      configDir: o.config,
      xdsAddress: o.xdsAddress,
      logLevel: o.logLevel,
      caDir: o.caDir,
      caCertsDir: o.caCerts,
      trustDomain: o.trustDomain,
      maxCertTtlS: o.maxCertTtlS === undefined ? undefined : Number(o.maxCertTtlS),
      defaultCertTtlS: o.defaultCertTtlS === undefined ? undefined : Number(o.defaultCertTtlS),
    });
  });

program
  .command('token')
  .description('mint a bootstrap token for one workload identity in a CA directory (`sloop proxy --token-file`); prints it once')
  .requiredOption('--ca-dir <dir>', 'the control plane\'s --ca-dir')
  .requiredOption('--namespace <ns>', 'workload namespace')
  .requiredOption('--service-account <sa>', 'workload service account')
  .action(async (o: { caDir: string; namespace: string; serviceAccount: string }) => {
    const { runToken } = await import('./controlplane.ts');
    process.exitCode = await runToken({ caDir: o.caDir, namespace: o.namespace, serviceAccount: o.serviceAccount });
  });

program
  .command('up')
  .description('run a whole mesh locally: control plane, demo apps (HTTP and gRPC) with a sidecar each, and the Istio config folder they follow')
  .option('--dir <dir>', 'Istio config folder (written on first run, reused after; watched)', 'sloop-mesh')
  .option('--port <port>', 'the frontend\'s entry on localhost (its sidecar\'s inbound port)', '8080')
  .option('--xds-address <host:port>', 'where the control plane serves xDS', '127.0.0.1:15010')
  .addOption(new Option('--mode <mode>', 'how traffic reaches the sidecars: explicit = HTTP_PROXY, no root; transparent = a network namespace per workload + iptables (root); auto = transparent when possible').choices(['explicit', 'transparent', 'auto']).default('explicit'))
  .addOption(new Option('-l, --log-level <level>', 'control plane and sidecar log level (logs go to files)').choices(['trace', 'debug', 'info', 'warn', 'error', 'off']).default('info'))
  .option('--drain-time-s <seconds>', 'on Ctrl-C, how long sidecars let in-flight requests finish', '1')
  .option('--ready-timeout-s <seconds>', 'give up if the mesh is not answering after this long', '60')
  .action(async (o: { dir: string; port: string; xdsAddress: string; mode: 'explicit' | 'transparent' | 'auto'; logLevel: string; drainTimeS: string; readyTimeoutS: string }) => {
    const { runUp } = await import('./up.ts');
    process.exitCode = await runUp({ dir: o.dir, port: Number(o.port), xdsAddress: o.xdsAddress, mode: o.mode, logLevel: o.logLevel, drainTimeS: Number(o.drainTimeS), readyTimeoutS: Number(o.readyTimeoutS) });
  });

await program.parseAsync();
