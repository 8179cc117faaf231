/**
 * DestinationRule traffic policy as it applies to one cluster (Istio's MergeTrafficPolicy and
 * selectTrafficPolicyComponents): a subset's policy replaces the top-level loadBalancer, connectionPool,
 * outlierDetection and tls field by field (each as a whole, not deep-merged); then the portLevelSettings for the
 * cluster's port replace all four (unset ones included: "port level policies do not inherit"), the top level's
 * before the subset is applied and the subset's after.
 * Pure.
 */
import type { DestinationRule, TrafficPolicy } from '../config/model.ts';

type Policy = NonNullable<TrafficPolicy>;

/** The settings that shape one cluster. */
export interface EffectivePolicy {
  loadBalancer?: Policy['loadBalancer'];
  connectionPool?: Policy['connectionPool'];
  outlierDetection?: Policy['outlierDetection'];
  tls?: Policy['tls'];
  /** Field path of the rule the tls setting came from, for diagnostics. */
  tlsPath?: string;
}

const FIELDS = ['loadBalancer', 'connectionPool', 'outlierDetection', 'tls'] as const;

/** The policy for `port` of the DestinationRule's host, for subset `subset` ('' for the whole service). */
export function effectivePolicy(dr: DestinationRule | undefined, subset: string, port: number): EffectivePolicy {
  if (dr === undefined) return {};
  let out: EffectivePolicy = {};
  const top = dr.spec.trafficPolicy;
  // `replaceAll`: Istio's port-level settings "do not inherit": every field comes from them, unset ones included.
  const apply = (p: Partial<Pick<Policy, (typeof FIELDS)[number]>> | undefined, path: string, replaceAll: boolean): void => {
    if (p === undefined) return;
    if (replaceAll) out = {};
    for (const f of FIELDS) if (p[f] !== undefined) (out as Record<string, unknown>)[f] = p[f];
    if (p.tls !== undefined) out.tlsPath = `${path}.tls`;
  };
  apply(top, 'spec.trafficPolicy', false);
  const topPort = top?.portLevelSettings?.findIndex((p) => p.port?.number === port) ?? -1;
  if (topPort >= 0) apply(top!.portLevelSettings![topPort], `spec.trafficPolicy.portLevelSettings[${topPort}]`, true);
  const subsetIndex = subset === '' ? -1 : (dr.spec.subsets ?? []).findIndex((s) => s.name === subset);
  const sub = subsetIndex < 0 ? undefined : dr.spec.subsets![subsetIndex].trafficPolicy;
  const subPath = `spec.subsets[${subsetIndex}].trafficPolicy`;
  apply(sub, subPath, false);
  const subPort = sub?.portLevelSettings?.findIndex((p) => p.port?.number === port) ?? -1;
  if (subPort >= 0) apply(sub!.portLevelSettings![subPort], `${subPath}.portLevelSettings[${subPort}]`, true);
  return out;
}
