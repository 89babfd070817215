/**
 * The checker's public API: `checkHost` for one server, `checkDomain` for a domain's MX set,
 * the grading and rendering functions, and the report types (JSON schema: SCHEMA.md).
 */
export { checkHost, type CheckHostOptions, type HostProgress } from './host.js';
export { checkDomain, type CheckDomainOptions, type DomainReport, type MtaStsResult, type DaneResult } from './domain.js';
export { DnsResolver } from '../policy/dns.js';
export { gradeFromFindings, gradeHost, gradeDowngrade, DOWNGRADE_LEVELS, type DowngradeLevel } from './grade.js';
export { FINDING_RULES, type FindingId } from './findings.js';
export { renderHostReport } from './render-text.js';
export { renderDomainReport } from './render-domain.js';
export { parseStsPolicy, parseStsTxt, matchMxPattern } from '../policy/mta-sts.js';
export { matchTlsa, parseSpf, parseTlsRpt } from './policies.js';
export * from './types.js';
