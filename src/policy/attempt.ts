/**
 * From an engine decision and what the client reports, the MxPlan the client is handed
 * (client/mx-deliver.ts DomainPlan) and the TLS-RPT result of each attempt (RFC 8460 §4.3).
 *
 * Invariants: a host the engine refuses is refused in the plan with the engine's rule as reason;
 * the plan's certificate name is the engine's verifyName (the MX host name), never an address;
 * an attempt is a TLS-RPT failure only for a TLS reason (no STARTTLS, certificate, DANE), never
 * for a refused TCP connection or a receiver's 4xx/5xx.
 */
import type { DeliveryResult, DomainPlan, MxPlan } from '../client/index.js';
import type { Decided } from './decide.js';
import type { MxDecision, PolicyDecision } from './engine.js';
import type { TlsRptEvent, TlsRptFailure } from './types.js';

/** The per-MX hook for deliverBatchToDomain from a decision. */
export function domainPlan(d: Decided): DomainPlan {
  const byHost = new Map(d.decision.mx.map((m) => [m.host, m]));
  return {
    mx: d.mx,
    planFor: (host): MxPlan => {
      const m = byHost.get(host.name);
      if (m === undefined) return { allowed: false, reason: `no policy decision for ${host.name}` };
      return planOf(m);
    },
  };
}

export function planOf(m: MxDecision): MxPlan {
  if (!m.allowed) return { allowed: false, reason: m.rule };
  return {
    allowed: true,
    session: { level: m.level, serverName: m.verifyName, ...(m.level === 'dane' ? { dane: { tlsa: m.tlsa, names: [m.verifyName] } } : {}) },
    ...(m.addresses.length > 0 ? { addresses: m.addresses } : {}),
  };
}

/** RFC 8460 §4.3: the result type of one attempt, or null when it says nothing about TLS. */
export function tlsRptResult(r: DeliveryResult, m: MxDecision | undefined): { result: 'success' | TlsRptFailure; detail: string | null } | null {
  const code = r.error?.code ?? null;
  const authenticated = m !== undefined && (m.level === 'verify' || m.level === 'dane' || m.source === 'mta-sts');
  if (code === 'TLS_DANE_FAILED') return { result: 'tlsa-invalid', detail: r.error?.message ?? null };
  if (r.tls === null) {
    const noTls = r.findings.find((f) => f.kind === 'starttls-not-offered' || f.kind === 'starttls-refused');
    if (noTls !== undefined || code === 'TLS_REQUIRED_NOT_OFFERED' || code === 'STARTTLS_REFUSED') return { result: 'starttls-not-supported', detail: r.error?.message ?? noTls?.kind ?? null };
    if (code === 'TLS_HANDSHAKE_FAILED' || r.findings.some((f) => f.kind === 'handshake-failed-plaintext-retry')) return { result: 'validation-failure', detail: r.error?.message ?? 'TLS handshake failed' };
    return null; // never reached TLS for another reason (connection refused, timeout before STARTTLS)
  }
  if (r.tls.verified || r.reached === 'dane' || !authenticated) return { result: 'success', detail: null };
  // RFC 8460 §4.3.2: which certificate failure.
  const why = r.tls.verifyError ?? '';
  const result: TlsRptFailure = /ALTNAME|hostname|host name|IP: /i.test(why) ? 'certificate-host-mismatch' : /EXPIRED|NOT_YET_VALID/i.test(why) ? 'certificate-expired' : 'certificate-not-trusted';
  return { result, detail: why || null };
}

/** The TLS-RPT events for one destination's delivery: one per host address tried and per refused host. */
export function tlsRptEvents(decision: PolicyDecision, stsFailure: { type: TlsRptFailure; detail: string } | null, attempts: DeliveryResult[], at: number): TlsRptEvent[] {
  const base = { policyDomain: decision.domain, policyType: decision.tlsRpt.policyType, policyStrings: decision.tlsRpt.policyStrings, at };
  const out: TlsRptEvent[] = [];
  if (stsFailure !== null) out.push({ ...base, mxHost: null, receivingIp: null, result: stsFailure.type, detail: stsFailure.detail });
  for (const m of decision.mx) {
    if (!m.allowed && m.failure !== null) out.push({ ...base, mxHost: m.host, receivingIp: null, result: m.failure, detail: m.rule });
  }
  const byHost = new Map(decision.mx.map((m) => [m.host, m]));
  const seen = new Set<string>();
  for (const r of attempts) {
    const m = byHost.get(r.serverName);
    const x = tlsRptResult(r, m);
    if (x === null) continue;
    // One session per address and result in a batch (messages of one connection count once).
    const key = `${r.serverName} ${r.host} ${x.result}`;
    if (seen.has(key)) continue;
    seen.add(key);
    // RFC 8461 §5 testing: a host outside the policy is reported even when delivery went well.
    const result = x.result === 'success' && m?.failure != null ? m.failure : x.result;
    out.push({ ...base, mxHost: r.serverName, receivingIp: r.host, result, detail: result === x.result ? x.detail : m?.rule ?? null });
  }
  return out;
}
