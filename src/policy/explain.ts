/**
 * explainDomain(): what this sender would do for mail to a domain, and why — the facts decide()
 * gathered (MX set and its DNSSEC status, addresses, TLSA and their usability, the MTA-STS
 * policy and where it came from, the table entry), the engine's decision per MX with its rule,
 * and, with `connect`, one TLS session per allowed MX exactly as a delivery would open it (no MAIL).
 * `postseal policy explain` prints it.
 *
 * Invariants: the decision is decide()'s (the relay's and send's); a probe uses the plan the
 * relay would hand the client (planOf), so "would succeed" means the same as a real attempt.
 */
import type { ClientTlsOptions } from '../client/tls-session.js';
import { probeSession, type ProbeResult } from '../client/probe.js';
import type { Timeouts } from '../client/options.js';
import { tlsaToString, tlsaUnusable } from '../tls/dane.js';
import { planOf } from './attempt.js';
import { decide, type PolicyContext } from './decide.js';
import type { PolicyLevel, PolicyDecision } from './engine.js';

export interface ExplainedMx {
  host: string;
  preference: number;
  addresses: string[];
  addressesSecure: boolean;
  tlsa: { status: string; detail: string | null; records: Array<{ record: string; usable: boolean; why: string | null }> } | null;
  matchesPolicy: boolean | null;
  allowed: boolean;
  level: PolicyLevel;
  verifyName: string;
  source: string;
  rule: string;
  rfc: string;
  /** With connect: the TLS session per address (no MAIL) and whether delivery would go ahead. */
  connect: Array<{ address: string; wouldDeliver: boolean; reached: ProbeResult['reached']; protocol: string | null; verified: boolean; verifyError: string | null; error: string | null }> | null;
}

export interface Explanation {
  domain: string;
  mx: { kind: string; secure: boolean };
  mtaSts: { enabled: boolean; from: string | null; id: string | null; mode: string | null; mx: string[]; expiresAt: string | null; failure: string | null };
  dane: { enabled: boolean };
  table: PolicyLevel | null;
  defaultLevel: PolicyLevel;
  source: PolicyDecision['source'];
  hosts: ExplainedMx[];
  /** The verdict in one line: which rule, and defer or deliver. */
  summary: string;
}

export interface ExplainOptions {
  connect?: boolean;
  table?: PolicyLevel | null;
  helo?: string;
  tls?: ClientTlsOptions;
  timeouts?: Partial<Timeouts>;
}

export async function explainDomain(domain: string, ctx: PolicyContext, opts: ExplainOptions = {}): Promise<Explanation> {
  const d = await decide(domain, ctx, opts.table !== undefined ? { table: opts.table } : {});
  const sts = d.input.mtaSts;
  const hosts: ExplainedMx[] = [];
  for (const m of d.decision.mx) {
    const facts = d.input.mx.find((x) => x.name === m.host);
    const t = facts?.tlsa ?? null;
    let connect: ExplainedMx['connect'] = null;
    if (opts.connect === true) {
      connect = [];
      const plan = planOf(m);
      if (plan.allowed) {
        for (const address of m.addresses) {
          const p = await probeSession({ ...plan.session, host: address, port: ctx.port, helo: opts.helo ?? 'localhost', ...(opts.tls ? { tls: opts.tls } : {}), ...(opts.timeouts ? { timeouts: opts.timeouts } : {}) });
          connect.push({ address, wouldDeliver: p.ok, reached: p.reached, protocol: p.tls?.protocol ?? null, verified: p.tls?.verified ?? false, verifyError: p.tls?.verifyError ?? null, error: p.error ? `${p.error.code}: ${p.error.message}` : null });
        }
      }
    }
    hosts.push({
      host: m.host,
      preference: m.preference,
      addresses: m.addresses,
      addressesSecure: facts?.addressesSecure ?? false,
      tlsa: t === null ? null : { status: t.status, detail: t.detail, records: t.records.map((r) => ({ record: tlsaToString(r), usable: t.usable.includes(r), why: tlsaUnusable(r) })) },
      matchesPolicy: m.matchesPolicy,
      allowed: m.allowed,
      level: m.level,
      verifyName: m.verifyName,
      source: m.source,
      rule: m.rule,
      rfc: m.rfc,
      connect,
    });
  }
  const first = d.decision.mx.find((m) => m.allowed);
  let summary: string;
  if (d.mx.kind !== 'hosts') summary = `no delivery: MX lookup says ${d.mx.kind}${d.mx.kind === 'temporary' ? ` (${d.mx.message})` : ''}`;
  else if (d.decision.deferReason !== null) summary = `deferred: ${d.decision.deferReason}`;
  else if (opts.connect === true) {
    const ok = hosts.find((h) => h.connect?.some((c) => c.wouldDeliver));
    summary = ok ? `would deliver to ${ok.host} at ${ok.level}: ${ok.rule}` : 'would be deferred: no allowed MX host completed the TLS session its level asks for';
  } else summary = `first try ${first?.host ?? '?'} at ${first?.level ?? '?'}: ${first?.rule ?? ''}`;
  return {
    domain: d.input.domain,
    mx: { kind: d.mx.kind, secure: d.input.mxSecure },
    mtaSts: {
      enabled: ctx.mtaSts !== null,
      from: sts?.from ?? null,
      id: sts?.policy?.id ?? null,
      mode: sts?.policy?.mode ?? null,
      mx: sts?.policy?.mx ?? [],
      expiresAt: sts?.policy ? new Date(sts.policy.expiresAt).toISOString() : null,
      failure: sts?.failure ? `${sts.failure.type}: ${sts.failure.detail}` : null,
    },
    dane: { enabled: ctx.tlsa !== null },
    table: d.input.table,
    defaultLevel: ctx.defaultLevel,
    source: d.decision.source,
    hosts,
    summary,
  };
}
