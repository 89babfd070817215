/**
 * Row shapes as SQLite returns them and their conversion to the public types, shared by both
 * backends (the PostgreSQL store selects the same row shapes: store/pg/ops.ts PG_*_COLUMNS).
 * The SELECT lists live here next to the row types so that a column and its field cannot drift apart.
 *
 * Invariant: rows are plain data (no methods, no Buffers shared with SQLite), safe to hand out.
 */
import type { AuthVerdicts, MessageSummary, TlsFacts, TlsOutcome } from '../types.js';
import { PostsealError } from '../errors.js';
import { parseNotify } from '../protocol/dsn.js';
import { QUEUE_STATUSES, type QueueAttempt, type QueueEntry, type QueueStats, type QueueStatus, type StoredMtaStsPolicy } from './types.js';

export const MESSAGE_COLUMNS = `m.id, m.received_at, m.mail_from, m.recipients, m.size, m.listener,
  m.client_address, m.helo_name, m.auth_user, m.tls, m.require_tls, m.auth_results, m.quarantine`;

export interface MessageRow {
  id: string;
  received_at: string;
  mail_from: string;
  recipients: string;
  size: number;
  listener: string;
  client_address: string;
  helo_name: string;
  auth_user: string | null;
  tls: string | null;
  require_tls: number;
  auth_results: string | null;
  quarantine: number;
}

export const QUEUE_COLUMNS = `m.id, m.mail_from, m.require_tls, q.recipient, q.domain, q.status,
  q.attempts, q.next_attempt_at, q.lease_until, q.last_error, q.last_tls, m.env_id, m.ret, q.notify, q.orcpt, q.target`;

export interface QueueRow {
  id: string;
  mail_from: string;
  require_tls: number;
  recipient: string;
  domain: string;
  status: string;
  attempts: number;
  next_attempt_at: number;
  lease_until: number | null;
  last_error: string | null;
  last_tls: string | null;
  env_id: string | null;
  ret: string | null;
  notify: string | null;
  orcpt: string | null;
  target: string | null;
}

function parseJsonObject<T>(json: string | null): T | null {
  if (json === null) return null;
  const v: unknown = JSON.parse(json);
  return v !== null && typeof v === 'object' ? (v as T) : null;
}

function parseTls(json: string | null): TlsFacts | null {
  return parseJsonObject<TlsFacts>(json);
}

export function parseStringArray(json: string): string[] {
  const v: unknown = JSON.parse(json);
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

/** An address normalized by `f`, or null when it is malformed (a malformed address is just an unknown one). */
export function orNull(f: (raw: string) => string, address: string): string | null {
  try {
    return f(address);
  } catch (err) {
    if (err instanceof PostsealError) return null;
    throw err;
  }
}

function isQueueStatus(s: string): s is QueueStatus {
  return (QUEUE_STATUSES as readonly string[]).includes(s);
}

export function toSummary(row: MessageRow): MessageSummary {
  return {
    id: row.id,
    receivedAt: row.received_at,
    mailFrom: row.mail_from,
    recipients: parseStringArray(row.recipients),
    size: row.size,
    listener: row.listener,
    clientAddress: row.client_address,
    heloName: row.helo_name,
    authUser: row.auth_user,
    tls: parseTls(row.tls),
    requireTls: row.require_tls !== 0,
    authResults: parseJsonObject<AuthVerdicts>(row.auth_results),
    quarantine: row.quarantine !== 0,
  };
}

export const ATTEMPT_COLUMNS = 'a.recipient, a.at, a.outcome, a.error, a.tls, a.next_attempt_at, a.node';

export interface AttemptRow {
  recipient: string;
  at: number;
  outcome: string;
  error: string | null;
  tls: string | null;
  next_attempt_at: number | null;
  node: string | null;
}

export function toQueueAttempt(row: AttemptRow): QueueAttempt {
  const outcome = row.outcome;
  if (outcome !== 'delivered' && outcome !== 'deferred' && outcome !== 'failed') {
    throw new PostsealError('STORE_CORRUPT', `queue attempt for ${row.recipient} has unknown outcome ${JSON.stringify(outcome)}`);
  }
  return {
    recipient: row.recipient,
    at: new Date(row.at).toISOString(),
    outcome,
    error: row.error,
    tls: parseJsonObject<TlsOutcome>(row.tls),
    nextAttemptAt: row.next_attempt_at === null ? null : new Date(row.next_attempt_at).toISOString(),
    node: row.node ?? null,
  };
}

export function toQueueEntry(row: QueueRow): QueueEntry {
  if (!isQueueStatus(row.status)) {
    throw new PostsealError('STORE_CORRUPT', `queue row ${row.id} has unknown status ${JSON.stringify(row.status)}`);
  }
  return {
    id: row.id,
    mailFrom: row.mail_from,
    recipient: row.recipient,
    domain: row.domain,
    status: row.status,
    attempts: row.attempts,
    nextAttemptAt: new Date(row.next_attempt_at).toISOString(),
    lastError: row.last_error,
    lastTls: parseJsonObject<TlsOutcome>(row.last_tls),
    claimedUntil: row.lease_until === null ? null : new Date(row.lease_until).toISOString(),
    requireTls: row.require_tls !== 0,
    target: row.target,
    dsn: {
      envId: row.env_id,
      ret: row.ret === 'FULL' || row.ret === 'HDRS' ? row.ret : null,
      notify: row.notify === null ? null : parseNotify(row.notify),
      orcpt: row.orcpt,
    },
  };
}

/** One row of the queue counts by status (the waiting rows only: queued and deferred). */
export interface QueueStatsRow {
  status: string;
  n: number;
  oldest: string | null;
}

export function toQueueStats(rows: readonly QueueStatsRow[]): QueueStats {
  const out: QueueStats = { queued: 0, deferred: 0, oldestReceivedAt: null };
  for (const r of rows) {
    if (r.status === 'queued') out.queued = r.n;
    else if (r.status === 'deferred') out.deferred = r.n;
    if (r.oldest !== null && (out.oldestReceivedAt === null || r.oldest < out.oldestReceivedAt)) out.oldestReceivedAt = r.oldest;
  }
  return out;
}

export interface MtaStsRow {
  domain: string;
  id: string;
  mode: 'enforce' | 'testing';
  mx: string;
  max_age: number;
  fetched_at: number;
  expires_at: number;
  text: string;
}

export function toMtaStsPolicy(row: MtaStsRow): StoredMtaStsPolicy {
  const mx: unknown = JSON.parse(row.mx);
  if (!Array.isArray(mx) || !mx.every((m): m is string => typeof m === 'string')) {
    throw new PostsealError('STORE_CORRUPT', `mta_sts_policies.mx of ${row.domain} is not a JSON list of strings`);
  }
  return { domain: row.domain, id: row.id, mode: row.mode, mx, maxAge: row.max_age, fetchedAt: row.fetched_at, expiresAt: row.expires_at, text: row.text };
}
