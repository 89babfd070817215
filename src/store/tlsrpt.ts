/**
 * TLS-RPT storage (RFC 8460): the per-day counters the relay's recorder flushes, and the reports
 * made from them that still wait to be delivered to some of their rua URIs. The SQL and the
 * write ops live here so the shared store files only dispatch to them.
 *
 * Invariants:
 * - A counter row is keyed by (policy domain, UTC day, policy type, policy strings, MX host,
 *   receiving IP, result); adding is an UPSERT that sums counts, so flushes commute.
 * - Making a report subtracts exactly the counts it reported, in the same transaction that stores
 *   the report: counts added meanwhile (a flush racing the builder) stay for the next report.
 * - A report row goes away when its last rua URI has taken it (or when it is given up).
 */
import type { Database, Statement } from 'better-sqlite3';

/** One counter: sessions of one kind on one UTC day (RFC 8460 §4.4 summary / failure-details). */
export interface TlsRptCount {
  policyDomain: string;
  /** UTC day, YYYY-MM-DD. */
  day: string;
  policyType: 'sts' | 'tlsa' | 'no-policy-found';
  policyStrings: string[];
  /** '' when the attempt had no MX host (e.g. the policy fetch failed before any connection). */
  mxHost: string;
  /** '' when unknown. */
  receivingIp: string;
  /** 'success' or an RFC 8460 §4.3 result type (policy/types.ts TLSRPT_FAILURES; the store does not judge). */
  result: string;
  count: number;
  /** The last detail seen for this counter (failure-reason-code in the report), or null. */
  detail: string | null;
}

/** A report made and not yet taken by every rua URI (RFC 8460 §5: retried later on failure). */
export interface TlsRptStoredReport {
  reportId: string;
  policyDomain: string;
  day: string;
  /** ms since epoch: the report's date-range. */
  startAt: number;
  endAt: number;
  /** The gzipped JSON report, the exact bytes every URI gets (same report-id on retries). */
  gz: Buffer;
  /** URIs that have not taken it yet. */
  rua: string[];
  attempts: number;
  nextAttemptAt: number;
  lastError: string | null;
  createdAt: number;
}

export type TlsRptWriteOp =
  | { kind: 'tlsRptAdd'; counts: TlsRptCount[] }
  | { kind: 'tlsRptMakeReport'; report: TlsRptStoredReport; counts: TlsRptCount[] }
  | { kind: 'tlsRptUpdateReport'; reportId: string; rua: string[]; attempts: number; nextAttemptAt: number; lastError: string | null }
  | { kind: 'tlsRptDropCounts'; counts: TlsRptCount[] };

export interface TlsRptOpValues {
  tlsRptAdd: null;
  tlsRptMakeReport: null;
  /** False when there is no such report. */
  tlsRptUpdateReport: boolean;
  tlsRptDropCounts: null;
}

/** What the Store offers for TLS-RPT (writes through the group committer). */
export interface TlsRptStoreWrites {
  /** Adds counts (summing into existing counters). One op, one commit share, whatever the size. */
  addTlsRptCounts(counts: TlsRptCount[]): Promise<void>;
  /** Stores a report and subtracts the counts it covers, in one transaction. */
  makeTlsRptReport(report: TlsRptStoredReport, counts: TlsRptCount[]): Promise<void>;
  /** Records a delivery round; an empty `rua` removes the report (sent). */
  updateTlsRptReport(reportId: string, change: { rua: string[]; attempts: number; nextAttemptAt: number; lastError: string | null }): Promise<boolean>;
  /** Subtracts counts without a report (a domain that publishes no TLS-RPT record, or too old). */
  dropTlsRptCounts(counts: TlsRptCount[]): Promise<void>;
}

export interface TlsRptStoreReads {
  /** Counters, by domain, day, then key; `domain` compared lower-cased. */
  listTlsRptCounts(opts?: { domain?: string }): TlsRptCount[] | Promise<TlsRptCount[]>;
  /** Reports waiting for delivery, oldest first. */
  listTlsRptReports(opts?: { domain?: string }): TlsRptStoredReport[] | Promise<TlsRptStoredReport[]>;
}

export interface TlsRptStatements {
  add: Statement;
  subtract: Statement;
  prune: Statement;
  insertReport: Statement;
  updateReport: Statement;
  deleteReport: Statement;
}

export function prepareTlsRpt(db: Database): TlsRptStatements {
  return {
    add: db.prepare(`INSERT INTO tlsrpt_counts (policy_domain, day, policy_type, policy_strings, mx_host,
      receiving_ip, result, count, detail) VALUES (@d, @day, @type, @strings, @mx, @ip, @result, @count, @detail)
      ON CONFLICT (policy_domain, day, policy_type, policy_strings, mx_host, receiving_ip, result)
      DO UPDATE SET count = count + excluded.count, detail = COALESCE(excluded.detail, detail)`),
    subtract: db.prepare(`UPDATE tlsrpt_counts SET count = count - @count WHERE policy_domain = @d AND day = @day
      AND policy_type = @type AND policy_strings = @strings AND mx_host = @mx AND receiving_ip = @ip AND result = @result`),
    prune: db.prepare('DELETE FROM tlsrpt_counts WHERE policy_domain = ? AND day = ? AND count <= 0'),
    insertReport: db.prepare(`INSERT INTO tlsrpt_reports (report_id, policy_domain, day, start_at, end_at, report, rua,
      attempts, next_attempt_at, last_error, created_at) VALUES (@reportId, @policyDomain, @day, @startAt, @endAt, @gz,
      @rua, @attempts, @nextAttemptAt, @lastError, @createdAt)`),
    updateReport: db.prepare(`UPDATE tlsrpt_reports SET rua = @rua, attempts = @attempts, next_attempt_at = @next,
      last_error = @error WHERE report_id = @id`),
    deleteReport: db.prepare('DELETE FROM tlsrpt_reports WHERE report_id = ?'),
  };
}

function keyParams(c: TlsRptCount): Record<string, string | number | null> {
  return {
    d: c.policyDomain.toLowerCase(),
    day: c.day,
    type: c.policyType,
    strings: JSON.stringify(c.policyStrings),
    mx: c.mxHost,
    ip: c.receivingIp,
    result: c.result,
    count: c.count,
    detail: c.detail,
  };
}

function subtract(s: TlsRptStatements, counts: TlsRptCount[]): void {
  const days = new Set<string>();
  for (const c of counts) {
    s.subtract.run(keyParams(c));
    days.add(`${c.policyDomain.toLowerCase()} ${c.day}`);
  }
  for (const k of days) {
    const [d = '', day = ''] = k.split(' ');
    s.prune.run(d, day);
  }
}

/** Runs one TLS-RPT write op inside the batch's transaction (writer-core.ts runOp). */
export function runTlsRptOp(s: TlsRptStatements, op: TlsRptWriteOp): TlsRptOpValues[TlsRptWriteOp['kind']] {
  switch (op.kind) {
    case 'tlsRptAdd':
      for (const c of op.counts) if (c.count > 0) s.add.run(keyParams(c));
      return null;
    case 'tlsRptMakeReport': {
      const r = op.report;
      s.insertReport.run({ ...r, policyDomain: r.policyDomain.toLowerCase(), rua: JSON.stringify(r.rua) });
      subtract(s, op.counts);
      return null;
    }
    case 'tlsRptUpdateReport':
      if (op.rua.length === 0) return s.deleteReport.run(op.reportId).changes > 0;
      return s.updateReport.run({ id: op.reportId, rua: JSON.stringify(op.rua), attempts: op.attempts, next: op.nextAttemptAt, error: op.lastError }).changes > 0;
    case 'tlsRptDropCounts':
      subtract(s, op.counts);
      return null;
  }
}

/** A tlsrpt_counts row as either backend returns it. */
export interface TlsRptCountRow {
  policy_domain: string;
  day: string;
  policy_type: TlsRptCount['policyType'];
  policy_strings: string;
  mx_host: string;
  receiving_ip: string;
  result: TlsRptCount['result'];
  count: number;
  detail: string | null;
}

/** A tlsrpt_reports row as either backend returns it. */
export interface TlsRptReportRow {
  report_id: string;
  policy_domain: string;
  day: string;
  start_at: number;
  end_at: number;
  report: Buffer;
  rua: string;
  attempts: number;
  next_attempt_at: number;
  last_error: string | null;
  created_at: number;
}

function stringArray(json: string): string[] {
  const v: unknown = JSON.parse(json);
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

export function toTlsRptCount(r: TlsRptCountRow): TlsRptCount {
  return {
    policyDomain: r.policy_domain,
    day: r.day,
    policyType: r.policy_type,
    policyStrings: stringArray(r.policy_strings),
    mxHost: r.mx_host,
    receivingIp: r.receiving_ip,
    result: r.result,
    count: r.count,
    detail: r.detail,
  };
}

export function toTlsRptReport(r: TlsRptReportRow): TlsRptStoredReport {
  return {
    reportId: r.report_id,
    policyDomain: r.policy_domain,
    day: r.day,
    startAt: r.start_at,
    endAt: r.end_at,
    gz: r.report,
    rua: stringArray(r.rua),
    attempts: r.attempts,
    nextAttemptAt: r.next_attempt_at,
    lastError: r.last_error,
    createdAt: r.created_at,
  };
}

/** The read side, on the reader's connection (sqlite-reader.ts). */
export class TlsRptReads implements TlsRptStoreReads {
  private readonly counts: Statement;
  private readonly reports: Statement;

  constructor(db: Database) {
    this.counts = db.prepare(`SELECT * FROM tlsrpt_counts WHERE (@d IS NULL OR policy_domain = @d)
      ORDER BY policy_domain, day, policy_type, policy_strings, mx_host, receiving_ip, result`);
    this.reports = db.prepare(`SELECT * FROM tlsrpt_reports WHERE (@d IS NULL OR policy_domain = @d)
      ORDER BY created_at, report_id`);
  }

  listTlsRptCounts(opts: { domain?: string } = {}): TlsRptCount[] {
    return (this.counts.all({ d: opts.domain?.toLowerCase() ?? null }) as TlsRptCountRow[]).map(toTlsRptCount);
  }

  listTlsRptReports(opts: { domain?: string } = {}): TlsRptStoredReport[] {
    return (this.reports.all({ d: opts.domain?.toLowerCase() ?? null }) as TlsRptReportRow[]).map(toTlsRptReport);
  }
}

/** The migration that creates these tables (schema.ts MIGRATIONS). */
export const TLSRPT_TABLES = `
  CREATE TABLE tlsrpt_counts (
    policy_domain  TEXT NOT NULL,            -- lower-cased
    day            TEXT NOT NULL,            -- UTC YYYY-MM-DD
    policy_type    TEXT NOT NULL CHECK (policy_type IN ('sts', 'tlsa', 'no-policy-found')),
    policy_strings TEXT NOT NULL,            -- JSON array
    mx_host        TEXT NOT NULL,            -- '' when none
    receiving_ip   TEXT NOT NULL,            -- '' when unknown
    result         TEXT NOT NULL,            -- 'success' or an RFC 8460 §4.3 result type
    count          INTEGER NOT NULL,
    detail         TEXT,
    PRIMARY KEY (policy_domain, day, policy_type, policy_strings, mx_host, receiving_ip, result)
  ) WITHOUT ROWID;
  CREATE TABLE tlsrpt_reports (
    report_id       TEXT PRIMARY KEY,
    policy_domain   TEXT NOT NULL,
    day             TEXT NOT NULL,
    start_at        INTEGER NOT NULL,        -- ms since epoch
    end_at          INTEGER NOT NULL,
    report          BLOB NOT NULL,           -- gzipped JSON (RFC 8460 §5.1)
    rua             TEXT NOT NULL,           -- JSON array: URIs that have not taken it yet
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,        -- ms since epoch
    last_error      TEXT,
    created_at      INTEGER NOT NULL
  );
`;
