/** `sloop` — the one CLI. The only place that reads process.env or exits. */
import { Command, Option } from 'commander';
import { runProxy } from './proxy.ts';

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
  .action(async (o: { config: string; logLevel: string; drainTimeS: string; mode: string }) => {
    process.exitCode = await runProxy({ configPath: o.config, logLevel: o.logLevel, drainTimeS: Number(o.drainTimeS), mode: o.mode as 'serve' | 'validate' });
  });

await program.parseAsync();
