/**
 * checkDomain: every MX host and address of a domain, checked in parallel, plus the domain's
 * policies (MTA-STS, TLS-RPT, DANE, SPF, DMARC, and our DKIM selectors when keys are given),
 * graded for encryption and downgrade resistance.
 *
 * Invariants: all DNS goes through the one resolver given; MX order follows preference; a null
 * MX (RFC 7505) means no host checks; no MX at all means the domain itself is the host
 * (RFC 5321 §5.1); one unreachable address does not stop the others (status 'error' only when the
 * domain could not be looked up or no address at all could be checked); a failed lookup after the
 * MX set (SERVFAIL, timeout) is a finding naming the query, never a crash and never read as
 * "no such record".
 */
import { checkHost, type HostProgress } from './host.js';
import type { DnsResolver } from '../policy/dns.js';
import { finding, sortFindings } from './findings.js';
import { gradeDowngrade, worstGrade, type DowngradeLevel } from './grade.js';
import { fetchStsPolicy, matchMxPattern, parseStsPolicy, parseStsTxt, type StsPolicy } from '../policy/mta-sts.js';
import { lookupDmarc, matchTlsa, parseSpf, parseTlsRpt, type DmarcResult, type SpfResult, type TlsaMatch, type TlsRptResult } from './policies.js';
import { SCHEMA_VERSION, type Finding, type Grade, type HostReport } from './types.js';
import { checkDkimKeys, type DkimCheck, type DkimKeyInfo } from './dkim.js';

export interface CheckDomainOptions {
  resolver: DnsResolver;
  ca?: string[];
  timeoutMs?: number;
  /** SMTP port of every MX (default 25; tests use the port of a local server). */
  port?: number;
  smuggling?: { rcpt: string; from?: string } | null;
  /** Fetch the MTA-STS policy from here instead of mta-sts.DOMAIN:443 (tests). */
  mtaStsEndpoint?: { host: string; port: number } | null;
  /** Addresses checked at once (default 4). */
  concurrency?: number;
  /** One line per started/finished host check (the CLI prints them on stderr). */
  onProgress?: (line: string) => void;
  /** Our DKIM keys for the domain (from a data directory) to look up and compare; absent: not checked. */
  dkim?: { source: string; keys: readonly DkimKeyInfo[] } | null;
  /**
   * Asked for every MX address before it is connected to: null allows it, a string is the reason
   * it is refused (the address is then not contacted and the reason is a host.unreachable finding).
   * The HTTP API refuses private targets with it (SSRF) on the very addresses it connects to.
   */
  refuseAddress?: (address: string) => string | null;
  /** Step-by-step progress of each host check (checkHost's onProgress), with the host's address. */
  onHostProgress?: (address: string, event: HostProgress) => void;
}

export interface MtaStsResult {
  txt: string | null;
  id: string | null;
  policy: StsPolicy | null;
  error: string | null;
  /** Each MX host → the pattern it matched, or null. */
  mxMatches: Array<{ mx: string; pattern: string | null }>;
}

export interface DaneResult {
  mx: string;
  /** TLSA owner name queried, e.g. _25._tcp.mx.example.net. */
  name: string;
  /** Resolver set the AD bit for the TLSA answer. */
  validated: boolean;
  records: Array<TlsaMatch & { address: string }>;
}

export interface DomainReport {
  schemaVersion: typeof SCHEMA_VERSION;
  kind: 'domain';
  domain: string;
  startedAt: string;
  durationMs: number;
  status: 'checked' | 'error';
  error: { code: string; message: string } | null;
  /** Worst encryption grade of the hosts checked; null when none could be checked. */
  grade: Grade | null;
  downgrade: DowngradeLevel;
  findings: Finding[];
  /** `lookupFailed`: the A/AAAA lookup of that MX failed (SERVFAIL, timeout), see dns.lookup-failed. */
  mx: { nullMx: boolean; implicit: boolean; hosts: Array<{ name: string; preference: number; addresses: string[]; lookupFailed: boolean }> };
  hosts: HostReport[];
  mtaSts: MtaStsResult;
  tlsRpt: TlsRptResult;
  dane: DaneResult[];
  spf: SpfResult;
  dmarc: DmarcResult;
  /** Our DKIM selectors against DNS (`--data`); `source: null` when not checked. */
  dkim: DkimCheck;
}

async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.max(1, n) }, async () => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  }));
}

async function mtaSts(domain: string, mxNames: string[], o: CheckDomainOptions): Promise<MtaStsResult> {
  const out: MtaStsResult = { txt: null, id: null, policy: null, error: null, mxMatches: [] };
  const txt = parseStsTxt(await o.resolver.txt(`_mta-sts.${domain}`));
  if (!txt.ok) {
    if (!txt.error.startsWith('no TXT')) out.error = `TXT: ${txt.error}`;
    return out;
  }
  out.txt = txt.value.raw;
  out.id = txt.value.id;
  const body = await fetchStsPolicy(domain, { ca: o.ca ?? [], timeoutMs: o.timeoutMs ?? 15_000, endpoint: o.mtaStsEndpoint ?? null });
  if (!body.ok) {
    out.error = `fetch: ${body.error}`;
    return out;
  }
  const policy = parseStsPolicy(body.value);
  if (!policy.ok) {
    out.error = `policy: ${policy.error}`;
    return out;
  }
  out.policy = policy.value;
  out.mxMatches = mxNames.map((mx) => ({ mx, pattern: policy.value.mx.find((p) => matchMxPattern(mx, p)) ?? null }));
  return out;
}

export async function checkDomain(domainInput: string, o: CheckDomainOptions): Promise<DomainReport> {
  const domain = domainInput.toLowerCase().replace(/\.$/, '');
  const started = Date.now();
  const r: DomainReport = {
    schemaVersion: SCHEMA_VERSION, kind: 'domain', domain, startedAt: new Date(started).toISOString(), durationMs: 0,
    status: 'checked', error: null, grade: null, downgrade: 'none', findings: [],
    mx: { nullMx: false, implicit: false, hosts: [] }, hosts: [],
    mtaSts: { txt: null, id: null, policy: null, error: null, mxMatches: [] },
    tlsRpt: { record: null, rua: [], error: null }, dane: [],
    spf: { record: null, terms: [], all: null, error: null },
    dmarc: { record: null, policy: null, subdomainPolicy: null, rua: null, pct: null, orgRecord: false, error: null },
    dkim: { source: o.dkim?.source ?? null, selectors: [] },
  };
  const port = o.port ?? 25;
  const found: Finding[] = [];
  const add = (id: Parameters<typeof finding>[0], detail: string, where = domain): void => void found.push(finding(id, detail, where));
  const failedLookups = new Set<string>();
  const lookupFailed = (query: string, e: unknown, where = domain): void => {
    failedLookups.add(query);
    add('dns.lookup-failed', `${query}: ${e instanceof Error ? e.message : String(e)}`, where);
  };
  // A lookup that failed (SERVFAIL, timeout) becomes a finding and leaves the default in place.
  const soft = <T>(query: string, p: Promise<T>): Promise<T | null> => p.catch((e: unknown) => {
    lookupFailed(query, e);
    return null;
  });
  try {
    const mx = await o.resolver.mx(domain);
    if (!mx.exists) throw Object.assign(new Error(`${domain} does not exist (NXDOMAIN)`), { code: 'CHECK_DNS' });
    // RFC 7505 §3: a single MX with preference 0 and exchange "." means "no mail".
    if (mx.records.length === 1 && (mx.records[0]?.exchange ?? 'x') === '') {
      r.mx.nullMx = true;
      add('mx.null', 'MX 0 .');
    } else {
      const list = mx.records.length > 0 ? mx.records : [{ preference: 0, exchange: domain }];
      if (mx.records.length === 0) {
        r.mx.implicit = true;
        add('mx.none', `checking ${domain} itself`);
      }
      r.mx.hosts = await Promise.all(list.map(async (m) => {
        const addresses = await o.resolver.addresses(m.exchange).catch((e: unknown) => {
          lookupFailed(`${m.exchange} A/AAAA`, e, m.exchange);
          return null;
        });
        return { name: m.exchange, preference: m.preference, addresses: addresses ?? [], lookupFailed: addresses === null };
      }));
    }
  } catch (e) {
    r.status = 'error';
    r.error = { code: 'CHECK_DNS', message: e instanceof Error ? e.message : String(e) };
    r.durationMs = Date.now() - started;
    return r;
  }
  const names = r.mx.hosts.map((h) => h.name);
  const policyWork = Promise.all([
    soft(`_mta-sts.${domain} TXT`, mtaSts(domain, names, o)).then((m) => void (m !== null && (r.mtaSts = m))),
    soft(`_smtp._tls.${domain} TXT`, o.resolver.txt(`_smtp._tls.${domain}`)).then((t) => void (t !== null && (r.tlsRpt = parseTlsRpt(t)))),
    soft(`${domain} TXT`, o.resolver.txt(domain)).then((t) => void (t !== null && (r.spf = parseSpf(t)))),
    lookupDmarc(domain, o.resolver).then((d) => void (r.dmarc = d)),
    o.dkim ? checkDkimKeys(o.dkim.keys.filter((k) => k.domain === domain), o.resolver).then((s) => void (r.dkim.selectors = s)) : Promise.resolve(),
  ]);
  const tlsa = new Map<string, { ad: boolean; records: Awaited<ReturnType<DnsResolver['tlsa']>>['records'] }>();
  const tlsaFailed = new Map<string, string>();
  const tlsaWork = Promise.all(names.map(async (n) => {
    try {
      tlsa.set(n, await o.resolver.tlsa(`_${port}._tcp.${n}`));
    } catch (e) {
      tlsaFailed.set(n, e instanceof Error ? e.message : String(e));
    }
  }));

  const jobs = r.mx.hosts.flatMap((h) => h.addresses.map((a) => ({ host: h.name, address: a })));
  for (const h of r.mx.hosts) if (h.addresses.length === 0 && !failedLookups.has(`${h.name} A/AAAA`)) add('mx.no-address', `${h.name} has no A or AAAA record`, h.name);
  let doneCount = 0;
  await pool(jobs, o.concurrency ?? 4, async (j) => {
    const refused = o.refuseAddress?.(j.address) ?? null;
    if (refused !== null) {
      doneCount++;
      o.onProgress?.(`[${doneCount}/${jobs.length}] ${j.host} [${j.address}]: not checked (${refused})`);
      add('host.unreachable', `${j.address}:${port}: not checked: ${refused}`, j.host);
      return;
    }
    o.onProgress?.(`checking ${j.host} [${j.address}]:${port} ...`);
    const onHost = o.onHostProgress;
    const rep = await checkHost(j.host, {
      address: j.address, port, ca: o.ca ?? [], timeoutMs: o.timeoutMs ?? 15_000, rcptDomain: domain, smuggling: o.smuggling ?? null,
      ...(onHost ? { onProgress: (ev: HostProgress) => onHost(j.address, ev) } : {}),
    });
    r.hosts.push(rep);
    doneCount++;
    o.onProgress?.(`[${doneCount}/${jobs.length}] ${j.host} [${j.address}]: ${rep.status === 'error' ? `could not check (${rep.error?.message ?? ''})` : `grade ${rep.grade ?? '-'}`}`);
  });
  await Promise.all([policyWork, tlsaWork]);
  // Stable order in the report: MX preference order, then address order.
  r.hosts.sort((a, b) => jobs.findIndex((j) => j.host === a.target.host && j.address === a.target.address) - jobs.findIndex((j) => j.host === b.target.host && j.address === b.target.address));

  for (const h of r.hosts) {
    if (h.status === 'error') add('host.unreachable', `${h.target.address}:${h.target.port}: ${h.error?.message ?? ''}`, h.target.host);
    else {
      found.push(...h.findings);
      r.grade = r.grade === null ? h.grade : h.grade === null ? r.grade : worstGrade(r.grade, h.grade);
    }
  }
  if (!r.mx.nullMx && jobs.length > 0 && r.hosts.every((h) => h.status === 'error')) {
    r.status = 'error';
    r.error = { code: 'CHECK_CONNECT', message: 'no MX address could be checked' };
  }

  // DANE (RFC 7672): TLSA per MX, matched against the chain each address served.
  let danePublished = false;
  let daneAllMatch = true;
  let daneValidated = true;
  for (const [n, error] of tlsaFailed) {
    // RFC 7672 §2.2: a TLSA lookup that fails (SERVFAIL, typically DNSSEC bogus) makes DANE
    // senders treat the MX as unusable and defer: mail does not flow to it.
    daneAllMatch = false;
    add('dane.lookup-failed', `_${port}._tcp.${n} TLSA: ${error}`, n);
  }
  for (const n of names) {
    const t = tlsa.get(n);
    if (!t || t.records.length === 0) {
      daneAllMatch = false;
      continue;
    }
    danePublished = true;
    if (!t.ad) daneValidated = false;
    const dr: DaneResult = { mx: n, name: `_${port}._tcp.${n}`, validated: t.ad, records: [] };
    for (const h of r.hosts.filter((x) => x.target.host === n && x.certificate !== null)) {
      const matches = matchTlsa(t.records, h.certificate?.chainDer ?? []);
      dr.records.push(...matches.map((m) => ({ ...m, address: h.target.address })));
      if (!matches.some((m) => m.result === 'match')) {
        daneAllMatch = false;
        add('dane.mismatch', `${n} [${h.target.address}]: none of ${t.records.length} TLSA records matches the served chain`, n);
      }
      if (matches.some((m) => m.result === 'unusable')) add('dane.unusable', `${n}: usages ${[...new Set(matches.filter((m) => m.result === 'unusable').map((m) => m.usage))].join(', ')}`, n);
    }
    if (!t.ad) add('dane.not-validated', `${dr.name}: no AD bit from the resolver`, n);
    r.dane.push(dr);
  }

  // MTA-STS (RFC 8461 §4): every MX must match a pattern and present a valid certificate for its name.
  const m = r.mtaSts;
  const enforce = m.policy?.mode === 'enforce';
  if (m.error !== null) add(m.error.startsWith('TXT') ? 'mta-sts.txt-invalid' : m.error.startsWith('fetch') ? 'mta-sts.policy-unavailable' : 'mta-sts.policy-invalid', m.error);
  let allMxMatch = true;
  let allCertsValid = true;
  if (m.policy !== null && m.policy.mode !== 'none') {
    if (m.policy.mode === 'testing') add('mta-sts.testing', `max_age ${m.policy.maxAge}`);
    if (m.policy.maxAge < 86_400) add('mta-sts.max-age-short', `max_age ${m.policy.maxAge} s`);
    for (const mm of m.mxMatches) {
      if (mm.pattern === null) {
        allMxMatch = false;
        add('mta-sts.mx-not-covered', `${mm.mx} matches none of: ${m.policy.mx.join(', ')}${enforce ? ' (enforce: senders will not deliver to it)' : ''}`, mm.mx);
      }
    }
    for (const h of r.hosts) {
      const c = h.certificate;
      if (c !== null && (!c.trusted || !c.nameMatches)) {
        allCertsValid = false;
        add('mta-sts.cert-invalid', `${h.target.host} [${h.target.address}]: ${!c.trusted ? c.verifyError ?? 'untrusted' : c.nameError ?? 'name mismatch'}${enforce ? ' (enforce: MTA-STS senders will not deliver to it)' : ''}`, h.target.host);
      }
    }
  }
  r.downgrade = gradeDowngrade({
    mtaSts: m.policy ? { mode: m.policy.mode, valid: true, allMxMatch, allCertsValid } : null,
    dane: { published: danePublished, validated: daneValidated, allMatch: daneAllMatch && danePublished },
  });
  if (!r.mx.nullMx && r.downgrade !== 'dane' && r.downgrade !== 'mta-sts-enforce') add('downgrade.unprotected', `downgrade resistance: ${r.downgrade}`);
  if (failedLookups.has(`_smtp._tls.${domain} TXT`)) {
    // Said by dns.lookup-failed: not "no record".
  } else if (r.tlsRpt.record === null) add('tlsrpt.missing', `no v=TLSRPTv1 TXT at _smtp._tls.${domain}`);
  else if (r.tlsRpt.error) add('tlsrpt.invalid', r.tlsRpt.error);
  if (failedLookups.has(`${domain} TXT`)) {
    // Said by dns.lookup-failed.
  } else if (r.spf.record === null) add('spf.missing', `no v=spf1 TXT at ${domain}`);
  else if (r.spf.error) add('spf.invalid', r.spf.error);
  if (r.dmarc.record === null) add('dmarc.missing', r.dmarc.error ?? `no v=DMARC1 TXT at _dmarc.${domain}`);
  else if (r.dmarc.error) add('dmarc.invalid', r.dmarc.error);
  else if (r.dmarc.policy === 'none') add('dmarc.policy-none', r.dmarc.record);
  if (o.dkim && r.dkim.selectors.length === 0) add('dkim.no-key', `no key for ${domain} in ${o.dkim.source}`);
  for (const d of r.dkim.selectors) {
    const fix = d.fix ? `; publish: ${d.fix}` : '';
    if (d.status === 'lookup-failed') add('dns.lookup-failed', `${d.name} TXT: ${d.detail ?? ''}`);
    else if (d.status === 'missing') add(d.active ? 'dkim.missing' : 'dkim.inactive-missing', `${d.name} (${d.algorithm}${d.active ? ', active' : ''}): ${d.detail ?? ''}${fix}`);
    else if (d.status === 'different-key') add('dkim.mismatch', `${d.name} (${d.algorithm}${d.active ? ', active' : ''}): ${d.detail ?? ''}${fix}`);
    else if (d.status === 'malformed') add('dkim.malformed', `${d.name}: ${d.detail ?? ''}${fix}`);
  }
  r.findings = sortFindings(found);
  r.durationMs = Date.now() - started;
  return r;
}
