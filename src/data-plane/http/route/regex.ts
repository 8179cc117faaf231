/**
 * RE2 regular expressions on V8. The translator is pure and shared with the control plane (which validates
 * VirtualService regexes with it), so it lives in src/shared/re2.ts; this module keeps the data plane's imports.
 */
export { compileRe2, compileSubstitution, isLinearRegexEngineAvailable, substitute, translateRe2 } from '../../../shared/re2.ts';
export type { CompiledSubstitution, Re2Translation } from '../../../shared/re2.ts';
