/** `sloop` — the one CLI. The only place that reads process.env or exits. */
import { Command } from 'commander';

const program = new Command('sloop').description('Sloop service mesh').version('0.1.0');
program.parse();
