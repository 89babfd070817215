/**
 * The sending-policy engine: for one destination domain and its MX set, what the sender may do
 * with each MX host — use it or not, at which TLS level, against which certificate name, with
 * which TLSA records — and the rule that decided, as a sentence with its RFC section.
 *
 * Precedence, written once (PRECEDENCE below; README "Sending policy" has the same table):
 *   1. the operator's TLS table entry (relay.tlsPolicy, or `send --tls` given explicitly) —
 *      as Postfix smtp_tls_policy_maps;
 *   2. DANE (RFC 7672), when the MX RRset, the host's addresses and its TLSA RRset are all
 *      DNSSEC-secure — it wins over MTA-STS (RFC 8461 §2);
 *   3. MTA-STS (RFC 8461): enforce → only MX hosts matching the policy, TLS verified against the
 *      MX host name (§4.1, §4.2); testing → the default level, failures recorded (§5);
 *   4. the default level.
 *   Then REQUIRETLS mail (RFC 8689 §4.2.1) is raised to a verified level (verify, or dane).
 *
 * Invariants: pure (no I/O, no clock): the same facts give the same decision; a host is never
 * given a level below what its rule asks; a host that may not be used says why; when no host may
 * be used the decision says so with a temporary (4.7.x) reason — never plaintext, never a
 * permanent failure (RFC 8461 §5, RFC 7672 §2.2).
 */
import type { TlsLevel } from '../client/levels.js';
import { tlsaToString } from '../tls/dane.js';
import { matchMxPattern } from './mta-sts.js';
import type { MtaStsLookup, MtaStsPolicy, PolicySource, TlsaLookup, TlsaRecord, TlsRptFailure } from './types.js';

/** A level the engine can hand the client (`dane` arrives in client/levels.ts with DANE). */
export type PolicyLevel = TlsLevel | 'dane';

export type MtaStsMode = MtaStsPolicy['mode'];

/** What DNS said about one MX host. */
export interface MxFacts {
  name: string;
  preference: number;
  /** No MX record: the domain itself is the host (RFC 5321 §5.1). */
  implicit: boolean;
  addresses: string[];
  /** The A/AAAA answers (or their denial) were DNSSEC-validated (RFC 7672 §2.2.2). */
  addressesSecure: boolean;
  /** TLSA for `_PORT._tcp.NAME`; null when not looked up (DANE off, or DNS not secure). */
  tlsa: TlsaLookup | null;
}

/** Everything the engine decides from. */
export interface PolicyInput {
  domain: string;
  /** The MX RRset (or, for an implicit MX, its denial) was DNSSEC-validated (RFC 7672 §2.2.1). */
  mxSecure: boolean;
  mx: MxFacts[];
  /** The operator's entry for this domain (relay.tlsPolicy / `send --tls`), or null. */
  table: PolicyLevel | null;
  defaultLevel: TlsLevel;
  /** DANE switched on (relay.dane.enabled). */
  dane: boolean;
  /** The MTA-STS lookup, or null when MTA-STS is off (relay.mtaSts.enabled). */
  mtaSts: MtaStsLookup | null;
  /** The message asks for REQUIRETLS (RFC 8689). */
  requireTls: boolean;
}

/** The engine's answer for one MX host. */
export interface MxDecision {
  host: string;
  preference: number;
  addresses: string[];
  /** May this host be used at all. */
  allowed: boolean;
  level: PolicyLevel;
  /** The name the certificate must carry (SNI too): the MX host name (RFC 8461 §4.2, RFC 7672 §3.2.2). */
  verifyName: string;
  /** Usable TLSA records (level dane). */
  tlsa: TlsaRecord[];
  source: PolicySource;
  /** The MTA-STS mode in force for the domain, or null without a policy. */
  mode: MtaStsMode | null;
  /** Whether the host matches an `mx:` pattern of the MTA-STS policy (null: no policy). */
  matchesPolicy: boolean | null;
  /** The deciding rule as a sentence, ending with its RFC section. */
  rule: string;
  rfc: string;
  /** A failure known before connecting, for TLS-RPT (RFC 8460 §4.3), or null. */
  failure: TlsRptFailure | null;
}

export interface PolicyDecision {
  domain: string;
  /** The source of the first usable host (by preference), else of the first host. */
  source: PolicySource;
  mode: MtaStsMode | null;
  mx: MxDecision[];
  /** When no host may be used: the temporary reason (4.7.x); else null. */
  deferReason: string | null;
  /** TLS-RPT policy for this domain (RFC 8460 §4.4). */
  tlsRpt: { policyType: 'sts' | 'tlsa' | 'no-policy-found'; policyStrings: string[] };
}

/** The order of the rules, as data: the README table and the tests read it. */
export const PRECEDENCE = [
  { source: 'table', rfc: 'operator (Postfix smtp_tls_policy_maps)', rule: 'the TLS table entry for the destination wins' },
  { source: 'dane', rfc: 'RFC 7672 §2.2, RFC 8461 §2', rule: 'secure TLSA for the MX host: dane (usable) or encrypt (all unusable); bogus or failed lookup: host not used' },
  { source: 'mta-sts', rfc: 'RFC 8461 §4.1, §4.2, §5', rule: 'enforce: only matching MX hosts, verify against the MX name; testing: default level, failures reported' },
  { source: 'default', rfc: 'RFC 7435', rule: 'the default level (relay.defaultTls)' },
] as const satisfies ReadonlyArray<{ source: PolicySource; rfc: string; rule: string }>;

const VERIFIED: ReadonlySet<PolicyLevel> = new Set<PolicyLevel>(['verify', 'dane']);

type Partial0 = Omit<MxDecision, 'host' | 'preference' | 'addresses' | 'mode' | 'matchesPolicy'>;

function use(level: PolicyLevel, source: PolicySource, verifyName: string, rule: string, rfc: string, tlsa: TlsaRecord[] = [], failure: TlsRptFailure | null = null): Partial0 {
  return { allowed: true, level, verifyName, tlsa, source, rule: `${rule} (${rfc})`, rfc, failure };
}

function refuse(level: PolicyLevel, source: PolicySource, verifyName: string, rule: string, rfc: string, failure: TlsRptFailure | null): Partial0 {
  return { allowed: false, level, verifyName, tlsa: [], source, rule: `${rule} (${rfc})`, rfc, failure };
}

/** Rule 1: the operator's table. */
function tableRule(i: PolicyInput, mx: MxFacts, dane: Partial0 | null): Partial0 | null {
  if (i.table === null) return null;
  if (i.table === 'dane') {
    // A table entry of `dane` means DANE is required: without usable secure TLSA the host is not used.
    if (dane?.level === 'dane' && dane.allowed) return { ...dane, source: 'table', rule: `TLS table entry for ${i.domain}: dane, with usable TLSA for ${mx.name} (RFC 7672 §2.2)`, rfc: 'RFC 7672 §2.2' };
    return refuse('dane', 'table', mx.name, `TLS table entry for ${i.domain}: dane, and ${mx.name} has no usable secure TLSA`, 'RFC 7672 §2.2', 'dane-required');
  }
  return use(i.table, 'table', mx.name, `TLS table entry for ${i.domain}: ${i.table}`, 'operator table, as Postfix smtp_tls_policy_maps');
}

/** Rule 2: DANE for this host, or null when DANE does not apply to it. */
function daneRule(i: PolicyInput, mx: MxFacts): Partial0 | null {
  if (!i.dane || mx.tlsa === null) return null;
  // RFC 7672 §2.2.1: an insecure MX RRset means no DANE for any host of it.
  if (!i.mxSecure) return null;
  // RFC 7672 §2.2.2: TLSA is looked up only for hosts whose addresses are secure.
  if (!mx.addressesSecure) return null;
  const t = mx.tlsa;
  switch (t.status) {
    case 'insecure':
      return null;
    case 'bogus':
      // RFC 7672 §2.2: a bogus TLSA answer: the host must not be used (defer, not plaintext).
      return refuse('dane', 'dane', mx.name, `TLSA for ${mx.name} failed DNSSEC validation${t.detail ? ` (${t.detail})` : ''}: host not used`, 'RFC 7672 §2.2', 'dnssec-invalid');
    case 'error':
      // RFC 7672 §2.2: DANE might apply and the lookup failed: not used until it answers.
      return refuse('dane', 'dane', mx.name, `TLSA lookup for ${mx.name} failed${t.detail ? ` (${t.detail})` : ''} while DANE may apply: host not used`, 'RFC 7672 §2.2', 'dnssec-invalid');
    case 'secure':
      if (t.usable.length > 0) return use('dane', 'dane', mx.name, `secure TLSA for ${mx.name}: ${t.usable.length} usable record(s), certificate must match`, 'RFC 7672 §2.2, §3.1', t.usable);
      // RFC 7672 §2.2: secure TLSA, every record unusable: mandatory TLS without authentication.
      if (t.records.length > 0) return use('encrypt', 'dane', mx.name, `secure TLSA for ${mx.name}, all ${t.records.length} record(s) unusable in SMTP: TLS required, not authenticated`, 'RFC 7672 §2.2, §3.1.3');
      return null; // secure denial: no DANE for this host
  }
}

/** Rule 3: MTA-STS, or null without a policy in force. */
function stsRule(i: PolicyInput, mx: MxFacts): Partial0 | null {
  const p = i.mtaSts?.policy ?? null;
  if (p === null || p.mode === 'none') return null;
  const matches = p.mx.some((pat) => matchMxPattern(mx.name, pat));
  if (p.mode === 'enforce') {
    // RFC 8461 §4.1, §5: in enforce mode a non-matching MX is not used.
    if (!matches) return refuse('verify', 'mta-sts', mx.name, `MTA-STS enforce for ${i.domain}: ${mx.name} matches none of ${p.mx.join(', ')}: host not used`, 'RFC 8461 §4.1, §5', 'validation-failure');
    // RFC 8461 §4.2: TLS required, PKIX-valid certificate naming the MX host.
    return use('verify', 'mta-sts', mx.name, `MTA-STS enforce for ${i.domain}: ${mx.name} matches the policy: TLS required, certificate verified for ${mx.name}`, 'RFC 8461 §4.1, §4.2');
  }
  // RFC 8461 §5: testing: deliver as without the policy, report what would have failed.
  return use(
    i.defaultLevel,
    'mta-sts',
    mx.name,
    `MTA-STS testing for ${i.domain}: ${mx.name} ${matches ? 'matches' : 'does not match'} the policy: default level ${i.defaultLevel}, failures reported`,
    'RFC 8461 §5',
    [],
    matches ? null : 'validation-failure',
  );
}

function defaultRule(i: PolicyInput, mx: MxFacts): Partial0 {
  return use(i.defaultLevel, 'default', mx.name, `no table entry, DANE or MTA-STS policy for ${i.domain}: default level ${i.defaultLevel}`, 'RFC 7435');
}

/** RFC 8689 §4.2.1: REQUIRETLS needs a verified peer (PKIX or DANE); the offer is checked on the wire. */
function requireTlsRule(d: Partial0): Partial0 {
  if (!d.allowed || VERIFIED.has(d.level)) return d;
  return { ...d, level: 'verify', rule: `${d.rule}; REQUIRETLS message: raised to verify (RFC 8689 §4.2.1)`, rfc: `${d.rfc}, RFC 8689 §4.2.1` };
}

/** One host: the first rule that applies, in the order of PRECEDENCE. */
export function decideMx(i: PolicyInput, mx: MxFacts): MxDecision {
  const dane = daneRule(i, mx);
  const sts = stsRule(i, mx);
  let d = tableRule(i, mx, dane) ?? dane ?? sts ?? defaultRule(i, mx);
  if (i.requireTls) d = requireTlsRule(d);
  const p = i.mtaSts?.policy ?? null;
  return {
    host: mx.name,
    preference: mx.preference,
    addresses: mx.addresses,
    ...d,
    mode: p?.mode ?? null,
    matchesPolicy: p === null || p.mode === 'none' ? null : p.mx.some((pat) => matchMxPattern(mx.name, pat)),
  };
}

/** The whole MX set. */
export function decidePolicy(i: PolicyInput): PolicyDecision {
  const mx = i.mx.map((m) => decideMx(i, m));
  const first = mx.find((m) => m.allowed) ?? mx[0];
  let deferReason: string | null = null;
  if (mx.length > 0 && !mx.some((m) => m.allowed)) {
    // RFC 8461 §5 / RFC 7672 §2.2: no qualifying MX: defer (4.7.5), never plaintext, never a bounce now.
    deferReason = `4.7.5 no MX host of ${i.domain} may be used: ${mx.map((m) => `${m.host}: ${m.rule}`).join('; ')}`;
  }
  return {
    domain: i.domain,
    source: first?.source ?? (i.table !== null ? 'table' : 'default'),
    mode: i.mtaSts?.policy?.mode ?? null,
    mx,
    deferReason,
    tlsRpt: tlsRptPolicy(i, mx),
  };
}

/** RFC 8460 §4.4: the policy type and strings a report names for this domain. */
function tlsRptPolicy(i: PolicyInput, mx: MxDecision[]): PolicyDecision['tlsRpt'] {
  if (mx.some((m) => m.source === 'dane')) {
    const strings = i.mx.flatMap((m) => (m.tlsa?.status === 'secure' ? m.tlsa.records.map((r) => tlsaToString(r)) : []));
    return { policyType: 'tlsa', policyStrings: [...new Set(strings)] };
  }
  const p = i.mtaSts?.policy ?? null;
  if (p !== null && p.mode !== 'none') return { policyType: 'sts', policyStrings: p.text.split(/\r?\n/).filter((l) => l.trim() !== '') };
  return { policyType: 'no-policy-found', policyStrings: [] };
}
