/** `sloop analyze [-o json|yaml] <files or dirs…>`: validates config offline, as `istioctl analyze` does. */
import { stringify } from 'yaml';
import { analyze, documentationUrl } from '../control-plane/config/analyze.ts';
import type { AnalysisMessage } from '../control-plane/config/analyze.ts';
import { loadConfig } from '../control-plane/config/load.ts';

export interface AnalyzeOptions {
  paths: readonly string[];
  output: 'log' | 'json' | 'yaml';
  /** Where results go (stdout). */
  write: (text: string) => void;
  /** Where the summary line of a clean run goes (stderr), so `-o json` output stays parseable. */
  writeInfo: (text: string) => void;
}

/** One message in istioctl's `-o json|yaml` shape. */
export interface AnalysisOutputEntry {
  code: string;
  level: string;
  message: string;
  origin: string;
  reference: string;
  documentationUrl: string;
}

function reference(m: AnalysisMessage): string {
  return m.file === undefined ? '' : m.line === undefined ? m.file : `${m.file}:${m.line}`;
}

/** `Error [IST0101] (VirtualService default/reviews mesh/reviews.yaml:12) Referenced host not found: "ratings"`. */
export function formatAnalysisMessage(m: AnalysisMessage): string {
  const where = [m.origin, reference(m)].filter((x) => x !== undefined && x !== '').join(' ');
  return `${m.level} [${m.code}]${where ? ` (${where})` : ''} ${m.message}`;
}

/** Runs the analysis and prints it. Returns the exit code: 1 when any message is an Error, else 0. */
export function runAnalyze(o: AnalyzeOptions): number {
  const loaded = loadConfig(o.paths);
  const messages = analyze(loaded);
  if (o.output === 'log') {
    for (const m of messages) o.write(formatAnalysisMessage(m) + '\n');
    if (messages.length === 0) o.writeInfo(`\u2714 No validation issues found when analyzing ${loaded.files.length} file(s).\n`);
  } else {
    const entries: AnalysisOutputEntry[] = messages.map((m) => ({
      code: m.code,
      level: m.level,
      message: m.message,
      origin: m.origin ?? '',
      reference: reference(m),
      documentationUrl: documentationUrl(m.code),
    }));
    o.write(o.output === 'json' ? JSON.stringify(entries, null, 2) + '\n' : stringify(entries));
  }
  return messages.some((m) => m.level === 'Error') ? 1 : 0;
}
