/**
 * Reads on their own SQLite connection: message listings, message bytes, users, the queue.
 * Used by the read-write store (same process as the writer) and by the read-only store that the
 * CLI opens while a server runs (WAL lets readers and the writer proceed concurrently).
 *
 * Invariants: this connection never writes (opened readonly); every statement sees the last
 * committed state, so an accept() that resolved is visible to the next read; password checks
 * run scrypt asynchronously and spend the same work for unknown users; hasUser() and
 * senderPatterns() are single indexed reads (the server calls hasUser() at every local RCPT).
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Database, Statement } from 'better-sqlite3';
import { BODIES_DIR } from './spool.js';
import type { MessageSummary } from '../types.js';
import { PostsealError } from '../errors.js';
import { normalizeAddress } from './address.js';
import { verifyPassword } from './passwords.js';
import { TlsRptReads, type TlsRptCount, type TlsRptStoredReport } from './tlsrpt.js';
import { AliasReads, aliasAddress, type AliasEntry } from './aliases.js';
import { TokenReads, type ApiTokenInfo } from './tokens.js';
import { resolveAddress, type RecipientResolution, type ResolveOptions } from './resolve.js';
import { ATTEMPT_COLUMNS, MESSAGE_COLUMNS, orNull, QUEUE_COLUMNS, toMtaStsPolicy, toQueueAttempt, toQueueEntry, toQueueStats, toSummary, type AttemptRow, type MessageRow, type MtaStsRow, type QueueRow, type QueueStatsRow } from './rows.js';
import type { ListMessagesOptions, ListQueueOptions, QueueAttempt, QueueStats, QueueEntry, StoredMessage, StoredMtaStsPolicy, SqliteStoreReader } from './types.js';

export function checkLimit(limit: number | undefined, fallback: number, max: number): number {
  if (limit === undefined) return fallback;
  if (!Number.isInteger(limit) || limit < 1 || limit > max) {
    throw new PostsealError('STORE_BAD_LIMIT', `limit must be an integer from 1 to ${max}, got ${limit}`);
  }
  return limit;
}

/** A policy domain as the MTA-STS cache keys it: lower-case, no trailing dot. */
export function mtaStsDomain(domain: string): string {
  const d = domain.trim().toLowerCase().replace(/\.$/, '');
  if (d.length === 0 || d.length > 253 || !/^[a-z0-9._-]+$/.test(d)) {
    throw new PostsealError('STORE_BAD_POLICY', `not a policy domain: ${JSON.stringify(domain.slice(0, 80))}`);
  }
  return d;
}

export class SqliteReader implements SqliteStoreReader {
  private readonly q: {
    list: Statement;
    listLocal: Statement;
    attempts: Statement;
    listMailbox: Statement;
    get: Statement;
    bodyRef: Statement;
    count: Statement;
    countMailbox: Statement;
    users: Statement;
    userHash: Statement;
    userExists: Statement;
    senders: Statement;
    queue: Statement;
    queueStats: Statement;
    mtaSts: Statement;
  };
  private closed = false;
  private readonly tlsRpt: TlsRptReads;
  private readonly aliases: AliasReads;
  private readonly tokens: TokenReads;

  constructor(protected readonly db: Database) {
    this.tlsRpt = new TlsRptReads(db);
    this.aliases = new AliasReads(db);
    this.tokens = new TokenReads(db);
    this.q = {
      list: db.prepare(`SELECT ${MESSAGE_COLUMNS} FROM messages m ORDER BY m.seq DESC LIMIT ?`),
      listLocal: db.prepare(`SELECT ${MESSAGE_COLUMNS} FROM messages m
        WHERE EXISTS (SELECT 1 FROM mailbox_entries e WHERE e.seq = m.seq) ORDER BY m.seq DESC LIMIT ?`),
      attempts: db.prepare(`SELECT ${ATTEMPT_COLUMNS} FROM queue_attempts a JOIN messages m ON m.seq = a.seq
        WHERE m.id = ? ORDER BY a.at, a.rowid`),
      listMailbox: db.prepare(`SELECT ${MESSAGE_COLUMNS} FROM mailbox_entries e JOIN messages m ON m.seq = e.seq
        WHERE e.mailbox = ? ORDER BY e.seq DESC LIMIT ?`),
      get: db.prepare(`SELECT ${MESSAGE_COLUMNS}, d.data, d.file FROM messages m JOIN message_data d ON d.seq = m.seq WHERE m.id = ?`),
      bodyRef: db.prepare('SELECT 1 FROM message_data WHERE file = ?').pluck(),
      count: db.prepare('SELECT count(*) FROM messages').pluck(),
      countMailbox: db.prepare('SELECT count(*) FROM mailbox_entries WHERE mailbox = ?').pluck(),
      users: db.prepare('SELECT address FROM users ORDER BY address').pluck(),
      userHash: db.prepare('SELECT password_hash FROM users WHERE address = ?').pluck(),
      userExists: db.prepare('SELECT 1 FROM users WHERE address = ?').pluck(),
      senders: db.prepare('SELECT pattern FROM user_senders WHERE address = ? ORDER BY pattern').pluck(),
      queue: db.prepare(`SELECT ${QUEUE_COLUMNS} FROM queue q JOIN messages m ON m.seq = q.seq
        WHERE (@status IS NULL OR q.status = @status) AND (@id IS NULL OR m.id = @id) ORDER BY q.next_attempt_at, q.seq LIMIT @limit`),
      // The waiting rows only: the condition is the queue_due partial index's, so SQLite reads
      // that index (a scrape costs the waiting rows, not the queue's whole history).
      queueStats: db.prepare(`SELECT q.status AS status, count(*) AS n, min(m.received_at) AS oldest
        FROM queue q INDEXED BY queue_due JOIN messages m ON m.seq = q.seq
        WHERE q.status IN ('queued', 'deferred') GROUP BY q.status`),
      mtaSts: db.prepare('SELECT domain, id, mode, mx, max_age, fetched_at, expires_at, text FROM mta_sts_policies WHERE domain = ?'),
    };
  }

  listMessages(opts: ListMessagesOptions = {}): MessageSummary[] {
    const limit = checkLimit(opts.limit, 100, 10_000);
    const rows = (
      opts.mailbox !== undefined
        ? this.q.listMailbox.all(normalizeAddress(opts.mailbox), limit)
        : opts.localOnly === true
          ? this.q.listLocal.all(limit)
          : this.q.list.all(limit)
    ) as MessageRow[];
    return rows.map(toSummary);
  }

  getMessage(id: string): StoredMessage | null {
    const row = this.q.get.get(id) as (MessageRow & { data: Buffer; file: string | null }) | undefined;
    if (row === undefined) return null;
    if (row.file === null) return { summary: toSummary(row), data: row.data };
    // A spooled message: our Received header in the row, the content in its file.
    const path = join(dirname(this.db.name), BODIES_DIR, row.file);
    // One buffer of the recorded size (row + file = messages.size): the file is read into it
    // once, never past that size (no second copy by a concat, no growth with the file).
    const out = Buffer.allocUnsafe(Math.max(row.data.length, row.size));
    row.data.copy(out, 0);
    let off = row.data.length;
    let fd: number | null = null;
    try {
      fd = openSync(path, 'r');
      for (let n = 1; off < out.length && n > 0; off += n) n = readSync(fd, out, off, out.length - off, off - row.data.length);
    } catch (err) {
      throw new PostsealError('STORE_BODY_MISSING', `message ${id}: cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
    } finally {
      if (fd !== null) closeSync(fd);
    }
    return { summary: toSummary(row), data: out.subarray(0, off) };
  }

  /** Whether a message row names this spool file. */
  isBodyReferenced(file: string): boolean {
    return this.q.bodyRef.get(file) !== undefined;
  }

  countMessages(opts: { mailbox?: string } = {}): number {
    const n = opts.mailbox === undefined ? this.q.count.get() : this.q.countMailbox.get(normalizeAddress(opts.mailbox));
    return typeof n === 'number' ? n : 0;
  }

  listUsers(): string[] {
    return this.q.users.all().filter((a): a is string => typeof a === 'string');
  }

  async verifyUser(address: string, password: string): Promise<boolean> {
    let stored: string | null = null;
    try {
      const h: unknown = this.q.userHash.get(normalizeAddress(address));
      if (typeof h === 'string') stored = h;
    } catch (err) {
      // A malformed address is just an unknown user: same work, same answer.
      if (!(err instanceof PostsealError)) throw err;
    }
    return verifyPassword(password, stored);
  }

  hasUser(address: string): boolean {
    const a = orNull(normalizeAddress, address);
    return a !== null && this.q.userExists.get(a) !== undefined;
  }

  senderPatterns(address: string): string[] {
    const a = orNull(normalizeAddress, address);
    if (a === null) return [];
    return this.q.senders.all(a).filter((p): p is string => typeof p === 'string');
  }

  isAdmin(address: string): boolean {
    const a = orNull(normalizeAddress, address);
    return a !== null && this.tokens.isAdmin(a);
  }

  verifyApiToken(token: string): ApiTokenInfo | null {
    return this.tokens.verifyApiToken(token);
  }

  listApiTokens(): ApiTokenInfo[] {
    return this.tokens.listApiTokens();
  }

  listAliases(): AliasEntry[] {
    return this.aliases.listAliases();
  }

  aliasTargets(address: string): string[] {
    const a = orNull(aliasAddress, address);
    return a === null ? [] : this.aliases.aliasTargets(a);
  }

  resolveRecipient(address: string, opts: ResolveOptions): RecipientResolution {
    // The resolver hands normalized addresses; these are the two indexed reads it needs.
    const reads = { isUser: (a: string) => this.q.userExists.get(a) !== undefined, aliasTargets: (a: string) => this.aliases.aliasTargets(a) };
    return resolveAddress(address, reads, opts);
  }

  listQueue(opts: ListQueueOptions = {}): QueueEntry[] {
    const limit = checkLimit(opts.limit, 1000, 100_000);
    const rows = this.q.queue.all({ status: opts.status ?? null, id: opts.id ?? null, limit }) as QueueRow[];
    return rows.map(toQueueEntry);
  }

  queueStats(): QueueStats {
    return toQueueStats(this.q.queueStats.all() as QueueStatsRow[]);
  }

  listAttempts(id: string): QueueAttempt[] {
    return (this.q.attempts.all(id) as AttemptRow[]).map(toQueueAttempt);
  }

  getMtaSts(domain: string): StoredMtaStsPolicy | null {
    const row = this.q.mtaSts.get(mtaStsDomain(domain)) as MtaStsRow | undefined;
    return row === undefined ? null : toMtaStsPolicy(row);
  }

  listTlsRptCounts(opts?: { domain?: string }): TlsRptCount[] {
    return this.tlsRpt.listTlsRptCounts(opts);
  }

  listTlsRptReports(opts?: { domain?: string }): TlsRptStoredReport[] {
    return this.tlsRpt.listTlsRptReports(opts);
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.db.close();
    }
    return Promise.resolve();
  }
}
