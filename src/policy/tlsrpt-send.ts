/**
 * TLS-RPT reports made and sent (RFC 8460 §3, §5): for each policy domain with counters, look up
 * `_smtp._tls.DOMAIN` TXT, make one report per UTC day, store it (the counters it covers go in the
 * same transaction), then deliver it to every rua URI: `mailto:` as a message through the normal
 * queue (store.accept, remote recipient), `https:` as a POST of application/tlsrpt+gzip (§5.2).
 * A URI that fails is tried again later with the same bytes; the report goes when all took it.
 *
 * Invariants: a report is only made for a domain whose record parsed (§3); a DNS failure keeps
 * the counters for the next run (dropped after keepDays); the HTTPS POST verifies the collector's
 * certificate (PKIX, system roots plus `ca`), follows no redirect, has a timeout and reads at most
 * maxResponseBytes of the answer; nothing here throws for one domain's or one URI's failure.
 */
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { PostsealError } from '../errors.js';
import type { Store, StoreReader } from '../store/index.js';
import type { TlsRptCount, TlsRptStoredReport } from '../store/tlsrpt.js';
import type { TlsRptCounter } from './tlsrpt.js';
import { buildReportMessage, buildTlsRptReport, dayBounds, gzipReport, newReportId, type ReportIdentity, type TlsRptReport } from './tlsrpt-report.js';
import { parseTlsRpt } from './tlsrpt-record.js';
import { signedGeneratedMessage, type GeneratedSigner } from '../store/generated.js';
import { utcDay } from './tlsrpt.js';

export interface TlsRptSendOptions extends ReportIdentity {
  /** Envelope and header sender of mailto: reports. */
  from: string;
  /** TXT records of a name, each joined from its strings; throws when the lookup fails. */
  lookupTxt: (name: string) => Promise<string[]>;
  /** Extra trusted CAs (PEM) for https: collectors, besides the system roots. */
  ca?: string[];
  /** Per POST (default 30 s). */
  httpsTimeoutMs?: number;
  /** Most bytes of a collector's answer read (default 64 KiB). */
  maxResponseBytes?: number;
  /** Counters a domain's record could not be looked up for are dropped after this many days (default 7). */
  keepDays?: number;
  /** A report not taken by all its URIs after this many attempts is given up (default 10). */
  maxAttempts?: number;
  /** DKIM-signs each mailto: report once, before it is queued (auth/dkim-own.ts); absent: unsigned. */
  sign?: GeneratedSigner | null;
}

export interface PlannedReport {
  policyDomain: string;
  day: string;
  startAt: number;
  endAt: number;
  report: TlsRptReport;
  counts: TlsRptCount[];
}

/** What one domain's reporting run did. */
export interface MadeReport {
  policyDomain: string;
  day: string;
  outcome: 'made' | 'no-record' | 'invalid-record' | 'dns-error' | 'dropped';
  reportId: string | null;
  rua: string[];
  detail: string | null;
}

export interface DeliveryRound {
  reportId: string;
  policyDomain: string;
  /** URIs that took the report in this round. */
  sent: string[];
  /** URI → why it failed. */
  failed: Record<string, string>;
  /** 'sent': every URI took it; 'retry': some will be tried again; 'gave-up'. */
  state: 'sent' | 'retry' | 'gave-up';
  /** Message ids of mailto: reports put in the queue. */
  queued: string[];
}

/**
 * The reports the counters make now (no DNS, no writes): per domain and UTC day, days before
 * today, and today up to `now` with includeToday. `report tls` shows these.
 */
export async function planTlsRptReports(store: Pick<StoreReader, 'listTlsRptCounts'>, id: ReportIdentity, now: Date, opts: { domain?: string; includeToday?: boolean } = {}): Promise<PlannedReport[]> {
  const today = utcDay(now.getTime());
  const byDay = new Map<string, TlsRptCount[]>();
  for (const c of (await store.listTlsRptCounts(opts.domain !== undefined ? { domain: opts.domain } : {}))) {
    if (c.day > today || (c.day === today && opts.includeToday !== true)) continue;
    const key = `${c.policyDomain} ${c.day}`;
    const list = byDay.get(key) ?? [];
    list.push(c);
    byDay.set(key, list);
  }
  const out: PlannedReport[] = [];
  for (const [key, counts] of byDay) {
    const [policyDomain = '', day = ''] = key.split(' ');
    const b = dayBounds(day);
    // RFC 8460 §4.1: a day's report; sent early (--send-now) it ends now.
    const endAt = Math.min(b.endAt, Math.ceil(now.getTime() / 1000) * 1000 + 1000);
    const report = buildTlsRptReport({ ...id, policyDomain, startAt: b.startAt, endAt, reportId: newReportId(id.submitter, now.getTime()), counts });
    out.push({ policyDomain, day, startAt: b.startAt, endAt, report, counts });
  }
  return out;
}

/** Looks up the rua of each planned domain, stores the reports, drops what has nowhere to go. */
export async function makeTlsRptReports(store: Store, opts: TlsRptSendOptions, now: Date, plan: { domain?: string; includeToday?: boolean } = {}): Promise<MadeReport[]> {
  const planned = await planTlsRptReports(store, opts, now, plan);
  const records = new Map<string, Promise<{ rua: string[] } | { error: 'no-record' | 'invalid-record' | 'dns-error'; detail: string }>>();
  const lookup = (domain: string): Promise<{ rua: string[] } | { error: 'no-record' | 'invalid-record' | 'dns-error'; detail: string }> => {
    let p = records.get(domain);
    if (p === undefined) {
      // RFC 8460 §3: the policy domain's reporting address is at _smtp._tls.DOMAIN.
      p = opts.lookupTxt(`_smtp._tls.${domain}`).then(
        (txt) => {
          const r = parseTlsRpt(txt);
          if (r.record === null) return { error: 'no-record' as const, detail: `no v=TLSRPTv1 record at _smtp._tls.${domain}` };
          if (r.error !== null) return { error: 'invalid-record' as const, detail: r.error };
          return { rua: r.rua };
        },
        (e: unknown) => ({ error: 'dns-error' as const, detail: e instanceof Error ? e.message : String(e) }),
      );
      records.set(domain, p);
    }
    return p;
  };
  const keepMs = (opts.keepDays ?? 7) * 86_400_000;
  const out: MadeReport[] = [];
  for (const p of planned) {
    const r = await lookup(p.policyDomain);
    if ('error' in r) {
      const stale = now.getTime() - p.endAt > keepMs;
      // A domain without a (valid) record asked for no reports: its counts have nowhere to go.
      // A DNS failure is a maybe: keep the counts until they are keepDays old.
      if (r.error !== 'dns-error' || stale) await store.dropTlsRptCounts(p.counts);
      out.push({ policyDomain: p.policyDomain, day: p.day, outcome: r.error === 'dns-error' && stale ? 'dropped' : r.error, reportId: null, rua: [], detail: r.detail });
      continue;
    }
    const stored: TlsRptStoredReport = {
      reportId: p.report['report-id'],
      policyDomain: p.policyDomain,
      day: p.day,
      startAt: p.startAt,
      endAt: p.endAt,
      gz: gzipReport(p.report),
      rua: r.rua,
      attempts: 0,
      nextAttemptAt: now.getTime(),
      lastError: null,
      createdAt: now.getTime(),
    };
    await store.makeTlsRptReport(stored, p.counts);
    out.push({ policyDomain: p.policyDomain, day: p.day, outcome: 'made', reportId: stored.reportId, rua: r.rua, detail: null });
  }
  return out;
}

/** The address of a mailto: URI (RFC 6068), without its ?query. */
export function mailtoAddress(uri: string): string {
  const addr = decodeURIComponent(uri.slice('mailto:'.length).split('?')[0] ?? '');
  if (!/^[^\s@<>]+@[^\s@<>]+$/.test(addr)) throw new PostsealError('TLSRPT_BAD_URI', `not a mailto: address: ${JSON.stringify(uri.slice(0, 200))}`);
  return addr;
}

export interface PostOptions {
  ca?: string[];
  timeoutMs?: number;
  maxResponseBytes?: number;
  /** The policy domain, sent as the TLS-Report-Domain header field like the mail header (§5.3). */
  policyDomain?: string;
}

/** RFC 8460 §5.2: POST the gzipped report as application/tlsrpt+gzip; 2xx is success. */
export function postTlsRptReport(uri: string, gz: Buffer, opts: PostOptions = {}): Promise<void> {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return Promise.reject(new PostsealError('TLSRPT_BAD_URI', `not a URL: ${JSON.stringify(uri.slice(0, 200))}`));
  }
  if (url.protocol !== 'https:') return Promise.reject(new PostsealError('TLSRPT_BAD_URI', `not an https: URI: ${uri}`));
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const cap = opts.maxResponseBytes ?? 64 * 1024;
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  return new Promise((resolve, reject) => {
    let settled = false;
    const done = (err: Error | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      if (err === null) resolve();
      else reject(err);
    };
    const fail = (msg: string, cause?: unknown): Error => new PostsealError('TLSRPT_POST_FAILED', `${uri}: ${msg}`, { cause });
    const req = https.request(
      {
        host,
        port: url.port === '' ? 443 : Number(url.port),
        // SNI carries host names only (RFC 6066 §3); the certificate is checked against the host either way.
        ...(net.isIP(host) === 0 ? { servername: host } : {}),
        path: `${url.pathname}${url.search}`,
        method: 'POST',
        headers: {
          'content-type': 'application/tlsrpt+gzip',
          'content-length': String(gz.length),
          'user-agent': 'postseal-tlsrpt',
          ...(opts.policyDomain !== undefined ? { 'tls-report-domain': opts.policyDomain } : {}),
        },
        // PKIX: system roots plus the operator's CAs; never rejectUnauthorized: false.
        ca: [...tls.rootCertificates, ...(opts.ca ?? [])],
        agent: false,
      },
      (res) => {
        const status = res.statusCode ?? 0;
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > cap) done(fail(`answer larger than ${cap} bytes`));
        });
        res.on('end', () => done(status >= 200 && status < 300 ? null : fail(`HTTP ${status}${status >= 300 && status < 400 ? ' (redirects are not followed)' : ''}`)));
        res.on('error', (e) => done(fail(e.message, e)));
      },
    );
    const timer = setTimeout(() => done(fail(`no answer within ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (e) => done(fail(e.message, e)));
    req.end(gz);
  });
}

/** Puts a mailto: report in the outbound queue (the relay delivers it like any message). */
export async function queueReportMail(store: Store, opts: TlsRptSendOptions, r: TlsRptStoredReport, uri: string, now: Date): Promise<string> {
  const to = mailtoAddress(uri);
  const data = buildReportMessage({ from: opts.from, to, submitter: opts.submitter, policyDomain: r.policyDomain, reportId: r.reportId, startAt: r.startAt, endAt: r.endAt, gz: r.gz, date: now });
  const { id } = await store.accept(await signedGeneratedMessage({ origin: 'tlsrpt', from: opts.from, to, local: false, data, hostname: opts.submitter, now }, opts.sign));
  return id;
}

function backoffMs(attempts: number): number {
  return Math.min(15 * 60_000 * 2 ** Math.max(0, attempts - 1), 6 * 3_600_000);
}

/** Delivers stored reports that are due (all of them with `force`) to the URIs that still want them. */
export async function deliverTlsRptReports(store: Store, opts: TlsRptSendOptions, now: Date, o: { force?: boolean; domain?: string } = {}): Promise<DeliveryRound[]> {
  const out: DeliveryRound[] = [];
  const maxAttempts = opts.maxAttempts ?? 10;
  for (const r of (await store.listTlsRptReports(o.domain !== undefined ? { domain: o.domain } : {}))) {
    if (o.force !== true && r.nextAttemptAt > now.getTime()) continue;
    const round: DeliveryRound = { reportId: r.reportId, policyDomain: r.policyDomain, sent: [], failed: {}, state: 'sent', queued: [] };
    for (const uri of r.rua) {
      try {
        if (/^mailto:/i.test(uri)) round.queued.push(await queueReportMail(store, opts, r, uri, now));
        else
          await postTlsRptReport(uri, r.gz, {
            ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
            ...(opts.httpsTimeoutMs !== undefined ? { timeoutMs: opts.httpsTimeoutMs } : {}),
            ...(opts.maxResponseBytes !== undefined ? { maxResponseBytes: opts.maxResponseBytes } : {}),
            policyDomain: r.policyDomain,
          });
        round.sent.push(uri);
      } catch (e) {
        round.failed[uri] = e instanceof Error ? e.message : String(e);
      }
    }
    const left = r.rua.filter((u) => !round.sent.includes(u));
    const attempts = r.attempts + 1;
    if (left.length > 0 && attempts >= maxAttempts) round.state = 'gave-up';
    else if (left.length > 0) round.state = 'retry';
    const errors = Object.entries(round.failed).map(([u, e]) => `${u}: ${e}`).join('; ');
    await store.updateTlsRptReport(r.reportId, {
      rua: round.state === 'retry' ? left : [],
      attempts,
      nextAttemptAt: now.getTime() + backoffMs(attempts),
      lastError: errors === '' ? null : errors,
    });
    out.push(round);
  }
  return out;
}

export interface TlsRptReporterOptions extends TlsRptSendOptions {
  /** How often reports are made and due deliveries retried (default 1 h; a day's report is made at the first run after UTC midnight). */
  intervalMs?: number;
  onResult?: (made: MadeReport[], rounds: DeliveryRound[]) => void;
  onError?: (err: unknown) => void;
}

/**
 * The daily job of `serve`: flush the counter, make the reports of finished days, deliver what is
 * due. Runs every intervalMs (the timer does not keep the process alive); one run at a time.
 */
export class TlsRptReporter {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  constructor(
    private readonly store: Store,
    private readonly counter: TlsRptCounter | null,
    private readonly opts: TlsRptReporterOptions,
  ) {}

  start(): this {
    if (this.timer === null) {
      this.timer = setInterval(() => void this.runOnce(), this.opts.intervalMs ?? 3_600_000);
      this.timer.unref();
    }
    return this;
  }

  /** One run; with includeToday the current day is reported too (up to now), as `--send-now` does. */
  async runOnce(now: Date = new Date(), o: { includeToday?: boolean; force?: boolean; domain?: string } = {}): Promise<{ made: MadeReport[]; rounds: DeliveryRound[] }> {
    while (this.running !== null) await this.running;
    let result: { made: MadeReport[]; rounds: DeliveryRound[] } = { made: [], rounds: [] };
    this.running = (async () => {
      try {
        await this.counter?.flush();
        const made = await makeTlsRptReports(this.store, this.opts, now, o);
        const rounds = await deliverTlsRptReports(this.store, this.opts, now, o);
        result = { made, rounds };
        this.opts.onResult?.(made, rounds);
      } catch (e) {
        this.opts.onError?.(e);
      }
    })();
    try {
      await this.running;
    } finally {
      this.running = null;
    }
    return result;
  }

  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    while (this.running !== null) await this.running;
  }
}
