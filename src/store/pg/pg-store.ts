/**
 * The PostgreSQL store: the Store interface over one PostgreSQL database shared by several nodes
 * (issue 13). Writes go through the group committer (store/group-commit.ts) to the batch writer
 * (writer.ts): one transaction per batch; the queue operations are single statements on the pool
 * (claims must not wait behind a batch of messages); reads are queries on the pool, except the
 * address reads, served from the directory replica (directory.ts).
 *
 * Invariants:
 * - accept() resolves only after the COMMIT holding the message returned (durable as the server's
 *   synchronous_commit makes it: `on`, the default, means flushed to the primary's WAL; `remote_*`
 *   adds standbys; `off` breaks the 250 promise on a server crash).
 * - Every operation on an unreachable server rejects with STORE_UNAVAILABLE within the connect or
 *   statement deadline (connect.ts); the pool makes new connections by itself once it is back.
 * - Leases name this node (nodeId): claimDue sets claimed_by, renewLeases and releaseLeases touch
 *   only this node's rows, attempts record it.
 * - close() commits what was submitted, then ends the listener and the pool; later calls reject
 *   with STORE_CLOSED. A store opened readOnly never writes (STORE_READ_ONLY) and never migrates.
 */
import { normalizeAddress } from '../address.js';
import { PostsealError } from '../../errors.js';
import type { IncomingMessage, MessageSummary } from '../../types.js';
import { aliasAddress, aliasTarget, type AliasEntry } from '../aliases.js';
import { GroupCommitter } from '../group-commit.js';
import { hashPassword, verifyPassword } from '../passwords.js';
import { checkPassword, checkSenders, dataLength, messageRecord } from '../records.js';
import { resolveAddress, type RecipientResolution, type ResolveOptions } from '../resolve.js';
import { ATTEMPT_COLUMNS, orNull, toMtaStsPolicy, toQueueAttempt, toQueueEntry, toQueueStats, toSummary, type AttemptRow, type MessageRow, type MtaStsRow, type QueueRow, type QueueStatsRow } from '../rows.js';
import { FileSpool, removeOrphans, type BodySpool } from '../spool.js';
import { checkLimit, mtaStsDomain } from '../sqlite-reader.js';
import { toTlsRptCount, toTlsRptReport, type TlsRptCount, type TlsRptCountRow, type TlsRptReportRow, type TlsRptStoredReport } from '../tlsrpt.js';
import { MAX_TOKEN_LENGTH, newToken, tokenHash, tokenName, TOKEN_PREFIX, type ApiTokenInfo } from '../tokens.js';
import type {
  AttemptRecord,
  ClaimOptions,
  ListMessagesOptions,
  ListQueueOptions,
  QueueAttempt,
  QueueEntry,
  QueueStats,
  Store,
  StoredMessage,
  StoredMtaStsPolicy,
  StoreStats,
} from '../types.js';
import type { OpKind, OpValues, WriteOp } from '../writer-protocol.js';
import pg from 'pg';
import { checkout, describePgUrl, poolConfig, storeError } from './connect.js';
import { DirectoryListener, DirectoryReplica, POLL_MS } from './directory.js';
import { iso, PG_MESSAGE_COLUMNS, PG_QUEUE_COLUMNS, releaseLeases, runOp, type Queryable } from './ops.js';
import { checkVersionPg, migrateClient } from './schema.js';
import { PgWriter } from './writer.js';

const DEFAULT_LEASE_MS = 10 * 60 * 1000;

export interface PgStoreOptions {
  /** Who claims and records attempts (config node.id, default HOSTNAME-PID). */
  nodeId: string;
  /** Connections in the pool (default 10). */
  poolSize?: number;
  /** A file holding the password (read once, trimmed); else PGPASSWORD or ~/.pgpass. */
  passwordFile?: string | null;
  /** Where the server spools large bodies while they arrive (this host's disk). */
  spoolDir: string;
  /** Upper bound on operations per commit (default 512). */
  maxBatchOps?: number;
  /** Upper bound on message bytes per commit, spooled bodies included (default 32 MiB). */
  maxBatchBytes?: number;
  onCommit?: ((seconds: number, ops: number) => void) | null;
  /** Reads only: no migration, every write rejects with STORE_READ_ONLY. */
  readOnly?: boolean;
  /** false: create the schema in an empty database but never upgrade an older one (one-shot CLI commands). Default true. */
  upgrade?: boolean;
  /** Deadline of a connection attempt (default 5000 ms). */
  connectTimeoutMs?: number;
  /** Deadline of one statement (default 30000 ms). */
  statementTimeoutMs?: number;
  /** Full reload of the directory replica besides LISTEN/NOTIFY (default 30 s). */
  directoryPollMs?: number;
}

interface TokenRow {
  id: string;
  name: string;
  created_at: string;
  last_used_at: string | null;
  revoked: boolean;
}

const TOKEN_COLUMNS = `id, name, ${iso('created_at')} AS created_at, ${iso('last_used_at')} AS last_used_at, revoked`;

function tokenInfo(r: TokenRow): ApiTokenInfo {
  return { id: r.id, name: r.name, createdAt: r.created_at, lastUsedAt: r.last_used_at, revoked: r.revoked };
}

function checkLease(leaseMs: number): void {
  if (!Number.isInteger(leaseMs) || leaseMs < 1) throw new PostsealError('STORE_BAD_LEASE', `bad lease ${leaseMs}`);
}

class PgStore implements Store {
  readonly spool: BodySpool;
  private closed = false;
  private closing: Promise<void> | null = null;
  /** Spool files submitted and not yet committed: never orphans. */
  private readonly inFlight = new Set<string>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly committer: GroupCommitter,
    private readonly replica: DirectoryReplica,
    private readonly listener: DirectoryListener,
    private readonly opts: PgStoreOptions,
  ) {
    this.spool = new FileSpool(opts.spoolDir);
  }

  get nodeId(): string {
    return this.opts.nodeId;
  }

  // ---- plumbing

  private async read<R extends pg.QueryResultRow>(what: string, text: string, values?: unknown[]): Promise<R[]> {
    if (this.closed) throw new PostsealError('STORE_CLOSED', 'store is closed');
    try {
      return (await this.pool.query<R>(text, values)).rows;
    } catch (err) {
      throw storeError(err, what, 'STORE_READ_FAILED');
    }
  }

  private writable(): void {
    if (this.closed || this.closing !== null) throw new PostsealError('STORE_CLOSED', 'store is closed');
    if (this.opts.readOnly === true) throw new PostsealError('STORE_READ_ONLY', 'this store was opened read-only');
  }

  private submit<K extends OpKind>(op: Extract<WriteOp, { kind: K }>, data: Uint8Array | readonly Uint8Array[] | null = null): Promise<OpValues[K]> {
    this.writable();
    return this.committer.submit(op, data);
  }

  /** A queue op: one statement on the pool, its own transaction. */
  private async direct<T>(what: string, run: (db: Queryable) => Promise<T>): Promise<T> {
    this.writable();
    try {
      return await run(this.pool);
    } catch (err) {
      throw storeError(err, what, 'STORE_WRITE_FAILED');
    }
  }

  // ---- writes

  async accept(msg: IncomingMessage): Promise<{ id: string }> {
    this.writable();
    const nowMs = Date.now();
    const record = messageRecord(msg, nowMs);
    const file = record.file;
    if (file !== null) this.inFlight.add(file);
    try {
      await this.submit({ kind: 'accept', msg: record, offset: 0, length: dataLength(msg.data), nowMs }, msg.data);
    } finally {
      if (file !== null) this.inFlight.delete(file);
    }
    return { id: record.id };
  }

  removeOrphanBodies(minAgeMs?: number): number {
    // Committed bodies are rows in PostgreSQL and their files are removed after the commit: a file
    // left in the spool is a message that never committed (or a removal a crash interrupted).
    return removeOrphans(this.opts.spoolDir, (name) => this.inFlight.has(name), minAgeMs);
  }

  async addUser(address: string, password: string, opts: { senders?: readonly string[]; admin?: boolean } = {}): Promise<void> {
    this.writable();
    const a = normalizeAddress(address);
    checkPassword(password);
    const senders = checkSenders(opts.senders ?? []);
    const hash = await hashPassword(password);
    await this.submit({ kind: 'addUser', address: a, hash, createdAt: new Date().toISOString(), senders, admin: opts.admin === true });
  }

  async setAdmin(address: string, admin: boolean): Promise<boolean> {
    return this.submit({ kind: 'setAdmin', address: normalizeAddress(address), admin });
  }

  async createApiToken(name: string): Promise<{ token: string; info: ApiTokenInfo }> {
    const n = tokenName(name);
    const t = newToken(n);
    const createdAt = new Date().toISOString();
    await this.submit({ kind: 'createToken', id: t.id, name: n, hash: t.hash, createdAt });
    return { token: t.token, info: { id: t.id, name: n, createdAt, lastUsedAt: null, revoked: false } };
  }

  async revokeApiToken(nameOrId: string): Promise<number> {
    return this.submit({ kind: 'revokeToken', nameOrId });
  }

  async touchApiToken(id: string, at: Date = new Date()): Promise<void> {
    await this.submit({ kind: 'touchToken', id, at: at.toISOString() });
  }

  async editSenders(address: string, change: { add?: readonly string[]; remove?: readonly string[] }): Promise<boolean> {
    const a = normalizeAddress(address);
    return this.submit({ kind: 'editSenders', address: a, add: checkSenders(change.add ?? []), remove: (change.remove ?? []).map((p) => p.trim().toLowerCase()) });
  }

  async setPassword(address: string, password: string): Promise<boolean> {
    this.writable();
    const a = normalizeAddress(address);
    checkPassword(password);
    const hash = await hashPassword(password);
    return this.submit({ kind: 'setPassword', address: a, hash });
  }

  async removeUser(address: string): Promise<boolean> {
    return this.submit({ kind: 'removeUser', address: normalizeAddress(address) });
  }

  async addAlias(address: string, targets: readonly string[]): Promise<number> {
    const a = aliasAddress(address);
    const t = [...new Set(targets.map(aliasTarget))];
    if (t.length === 0) throw new PostsealError('STORE_BAD_ALIAS', `alias ${a}: at least one target`);
    return this.submit({ kind: 'addAlias', address: a, targets: t, createdAt: new Date().toISOString() });
  }

  async removeAlias(address: string, target?: string): Promise<number> {
    return this.submit({ kind: 'removeAlias', address: aliasAddress(address), target: target === undefined ? null : aliasTarget(target) });
  }

  async claimDue(now: Date, limit: number, opts: ClaimOptions = {}): Promise<QueueEntry[]> {
    const n = checkLimit(limit, 100, 10_000);
    const leaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS;
    checkLease(leaseMs);
    const rows = await this.direct('claiming due rows', (db) =>
      runOp(db, { kind: 'claimDue', nowMs: now.getTime(), limit: n, leaseMs, which: opts.kind ?? null, node: this.nodeId }),
    );
    return (rows as QueueRow[]).map(toQueueEntry);
  }

  async renewLeases(rows: ReadonlyArray<{ id: string; recipient: string }>, leaseMs: number): Promise<number> {
    checkLease(leaseMs);
    if (rows.length === 0) return 0;
    const list = rows.map((r) => ({ id: r.id, recipient: r.recipient }));
    const n = await this.direct('renewing leases', (db) => runOp(db, { kind: 'renewLeases', rows: list, nowMs: Date.now(), leaseMs, node: this.nodeId }));
    return n as number;
  }

  async recordAttempt(a: AttemptRecord): Promise<boolean> {
    const tlsJson = a.tls === null ? null : JSON.stringify(a.tls);
    const base = { kind: 'recordAttempt', id: a.id, recipient: a.recipient, tlsJson, nowMs: Date.now(), node: this.nodeId } as const;
    const op: Extract<WriteOp, { kind: 'recordAttempt' }> =
      a.outcome === 'delivered'
        ? { ...base, status: 'delivered', error: null, nextAttemptAt: null }
        : a.outcome === 'failed'
          ? { ...base, status: 'failed', error: a.error, nextAttemptAt: null }
          : { ...base, status: 'deferred', error: a.error, nextAttemptAt: a.nextAttemptAt.getTime() };
    return (await this.direct('recording an attempt', (db) => runOp(db, op))) as boolean;
  }

  async deleteQueued(id: string, recipient?: string): Promise<number> {
    return (await this.direct('deleting queue rows', (db) => runOp(db, { kind: 'deleteQueued', id, recipient: recipient ?? null }))) as number;
  }

  async retryQueued(id?: string): Promise<number> {
    return (await this.direct('retrying queue rows', (db) => runOp(db, { kind: 'retryQueued', id: id ?? null, nowMs: Date.now() }))) as number;
  }

  async releaseLeases(): Promise<number> {
    return this.direct('releasing leases', (db) => releaseLeases(db, this.nodeId));
  }

  async putMtaSts(policy: StoredMtaStsPolicy): Promise<void> {
    const domain = mtaStsDomain(policy.domain);
    if (!Number.isSafeInteger(policy.fetchedAt) || !Number.isSafeInteger(policy.expiresAt) || !Number.isSafeInteger(policy.maxAge)) {
      throw new PostsealError('STORE_BAD_POLICY', `MTA-STS policy for ${domain}: times must be integers`);
    }
    await this.submit({ kind: 'putMtaSts', policy: { ...policy, domain, mx: [...policy.mx] } });
  }

  async forgetMtaSts(domain: string): Promise<boolean> {
    return this.submit({ kind: 'forgetMtaSts', domain: mtaStsDomain(domain) });
  }

  async addTlsRptCounts(counts: TlsRptCount[]): Promise<void> {
    if (counts.length > 0) await this.submit({ kind: 'tlsRptAdd', counts });
  }

  async makeTlsRptReport(report: TlsRptStoredReport, counts: TlsRptCount[]): Promise<void> {
    await this.submit({ kind: 'tlsRptMakeReport', report, counts });
  }

  async updateTlsRptReport(reportId: string, change: { rua: string[]; attempts: number; nextAttemptAt: number; lastError: string | null }): Promise<boolean> {
    return this.submit({ kind: 'tlsRptUpdateReport', reportId, ...change });
  }

  async dropTlsRptCounts(counts: TlsRptCount[]): Promise<void> {
    if (counts.length > 0) await this.submit({ kind: 'tlsRptDropCounts', counts });
  }

  stats(): StoreStats {
    return this.committer.stats();
  }

  // ---- synchronous address reads (the replica)

  hasUser(address: string): boolean {
    const a = orNull(normalizeAddress, address);
    return a !== null && this.replica.isUser(a);
  }

  senderPatterns(address: string): string[] {
    const a = orNull(normalizeAddress, address);
    return a === null ? [] : this.replica.senderPatterns(a);
  }

  aliasTargets(address: string): string[] {
    const a = orNull(aliasAddress, address);
    return a === null ? [] : this.replica.aliasTargets(a);
  }

  resolveRecipient(address: string, opts: ResolveOptions): RecipientResolution {
    return resolveAddress(address, this.replica, opts);
  }

  // ---- reads

  async listMessages(opts: ListMessagesOptions = {}): Promise<MessageSummary[]> {
    const limit = checkLimit(opts.limit, 100, 10_000);
    const rows =
      opts.mailbox !== undefined
        ? await this.read<MessageRow>(
            'listing messages',
            `SELECT ${PG_MESSAGE_COLUMNS} FROM mailbox_entries e JOIN messages m ON m.seq = e.seq WHERE e.mailbox = $1 ORDER BY e.seq DESC LIMIT $2`,
            [normalizeAddress(opts.mailbox), limit],
          )
        : opts.localOnly === true
          ? await this.read<MessageRow>(
              'listing messages',
              `SELECT ${PG_MESSAGE_COLUMNS} FROM messages m WHERE EXISTS (SELECT 1 FROM mailbox_entries e WHERE e.seq = m.seq) ORDER BY m.seq DESC LIMIT $1`,
              [limit],
            )
          : await this.read<MessageRow>('listing messages', `SELECT ${PG_MESSAGE_COLUMNS} FROM messages m ORDER BY m.seq DESC LIMIT $1`, [limit]);
    return rows.map(toSummary);
  }

  async getMessage(id: string): Promise<StoredMessage | null> {
    const rows = await this.read<MessageRow & { data: Buffer }>(
      'reading a message',
      `SELECT ${PG_MESSAGE_COLUMNS}, d.data FROM messages m JOIN message_data d ON d.seq = m.seq WHERE m.id = $1`,
      [id],
    );
    const row = rows[0];
    return row === undefined ? null : { summary: toSummary(row), data: row.data };
  }

  async countMessages(opts: { mailbox?: string } = {}): Promise<number> {
    const rows =
      opts.mailbox === undefined
        ? await this.read<{ n: number }>('counting messages', 'SELECT count(*) AS n FROM messages')
        : await this.read<{ n: number }>('counting messages', 'SELECT count(*) AS n FROM mailbox_entries WHERE mailbox = $1', [normalizeAddress(opts.mailbox)]);
    return rows[0]?.n ?? 0;
  }

  async listUsers(): Promise<string[]> {
    return (await this.read<{ address: string }>('listing users', 'SELECT address FROM users ORDER BY address')).map((r) => r.address);
  }

  async verifyUser(address: string, password: string): Promise<boolean> {
    // A malformed address is just an unknown user: same work, same answer.
    const a = orNull(normalizeAddress, address);
    let stored: string | null = null;
    if (a !== null) {
      const rows = await this.read<{ password_hash: string }>('reading a user', 'SELECT password_hash FROM users WHERE address = $1', [a]);
      stored = rows[0]?.password_hash ?? null;
    }
    return verifyPassword(password, stored);
  }

  async isAdmin(address: string): Promise<boolean> {
    const a = orNull(normalizeAddress, address);
    if (a === null) return false;
    // From PostgreSQL, not the replica: a withdrawn admin right counts at once on every node.
    const rows = await this.read<{ admin: boolean }>('reading a user', 'SELECT admin FROM users WHERE address = $1', [a]);
    return rows[0]?.admin === true;
  }

  async verifyApiToken(token: string): Promise<ApiTokenInfo | null> {
    if (token.length > MAX_TOKEN_LENGTH || !token.startsWith(TOKEN_PREFIX)) return null;
    const rows = await this.read<TokenRow>('reading a token', `SELECT ${TOKEN_COLUMNS} FROM api_tokens WHERE hash = $1`, [tokenHash(token)]);
    const row = rows[0];
    return row === undefined || row.revoked ? null : tokenInfo(row);
  }

  async listApiTokens(): Promise<ApiTokenInfo[]> {
    return (await this.read<TokenRow>('listing tokens', `SELECT ${TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id`)).map(tokenInfo);
  }

  async listAliases(): Promise<AliasEntry[]> {
    const rows = await this.read<{ address: string; target: string }>(
      'listing aliases',
      'SELECT address, target FROM aliases ORDER BY address, created_at, lower(target), target',
    );
    const out: AliasEntry[] = [];
    for (const row of rows) {
      const last = out[out.length - 1];
      if (last !== undefined && last.address === row.address) last.targets.push(row.target);
      else out.push({ address: row.address, targets: [row.target] });
    }
    return out;
  }

  async listQueue(opts: ListQueueOptions = {}): Promise<QueueEntry[]> {
    const limit = checkLimit(opts.limit, 1000, 100_000);
    // NULL parameters match everything: one statement for every filter combination.
    const rows = await this.read<QueueRow>(
      'listing the queue',
      `SELECT ${PG_QUEUE_COLUMNS} FROM queue q JOIN messages m ON m.seq = q.seq
       WHERE ($2::text IS NULL OR q.status = $2) AND ($3::text IS NULL OR m.id = $3)
       ORDER BY q.next_attempt_at, q.seq LIMIT $1`,
      [limit, opts.status ?? null, opts.id ?? null],
    );
    return rows.map(toQueueEntry);
  }

  async queueStats(): Promise<QueueStats> {
    const rows = await this.read<QueueStatsRow>(
      'counting the queue',
      `SELECT q.status, count(*) AS n, ${iso('min(m.received_at)')} AS oldest
       FROM queue q JOIN messages m ON m.seq = q.seq WHERE q.status IN ('queued', 'deferred') GROUP BY q.status`,
    );
    return toQueueStats(rows);
  }

  async listAttempts(id: string): Promise<QueueAttempt[]> {
    const rows = await this.read<AttemptRow>(
      'listing attempts',
      `SELECT ${ATTEMPT_COLUMNS}
       FROM queue_attempts a JOIN messages m ON m.seq = a.seq WHERE m.id = $1 ORDER BY a.at, a.n`,
      [id],
    );
    return rows.map(toQueueAttempt);
  }

  async getMtaSts(domain: string): Promise<StoredMtaStsPolicy | null> {
    const rows = await this.read<MtaStsRow>('reading an MTA-STS policy', 'SELECT * FROM mta_sts_policies WHERE domain = $1', [mtaStsDomain(domain)]);
    const row = rows[0];
    return row === undefined ? null : toMtaStsPolicy(row);
  }

  async listTlsRptCounts(opts: { domain?: string } = {}): Promise<TlsRptCount[]> {
    const rows = await this.read<TlsRptCountRow>(
      'listing TLS-RPT counts',
      `SELECT * FROM tlsrpt_counts WHERE ($1::text IS NULL OR policy_domain = $1)
       ORDER BY policy_domain, day, policy_type, policy_strings, mx_host, receiving_ip, result`,
      [opts.domain?.toLowerCase() ?? null],
    );
    return rows.map(toTlsRptCount);
  }

  async listTlsRptReports(opts: { domain?: string } = {}): Promise<TlsRptStoredReport[]> {
    const rows = await this.read<TlsRptReportRow>(
      'listing TLS-RPT reports',
      'SELECT * FROM tlsrpt_reports WHERE ($1::text IS NULL OR policy_domain = $1) ORDER BY created_at, report_id',
      [opts.domain?.toLowerCase() ?? null],
    );
    return rows.map(toTlsRptReport);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      try {
        await this.committer.close();
      } finally {
        this.closed = true;
        await this.listener.stop();
        await this.pool.end().catch(() => undefined);
      }
    })();
    return this.closing;
  }
}

/**
 * Opens the PostgreSQL store at `url` (postgres://USER@HOST:PORT/DB, no password in it): migrates
 * the schema (unless readOnly: then checks it), loads the directory replica, starts listening.
 * Rejects with STORE_UNAVAILABLE when the server cannot be reached.
 */
export async function openPgStore(url: string, opts: PgStoreOptions): Promise<Store> {
  const where = describePgUrl(url);
  if (opts.nodeId.trim() === '') throw new PostsealError('STORE_BAD_URL', 'a PostgreSQL store needs a node id');
  const config = poolConfig(url, opts);
  const pool = new pg.Pool(config);
  // An idle connection the server dropped: the pool discards it and the next query connects
  // again. Without a listener the event would crash the process.
  pool.on('error', () => undefined);
  const replica = new DirectoryReplica(pool);
  let listener: DirectoryListener | null = null;
  try {
    let held: Awaited<ReturnType<typeof checkout>>;
    try {
      held = await checkout(pool);
    } catch (err) {
      throw storeError(err, `connecting to ${where}`, 'STORE_UNAVAILABLE');
    }
    const client = held.client;
    try {
      if (opts.readOnly === true) await checkVersionPg(client, where);
      else await migrateClient(client, where, { upgrade: opts.upgrade !== false });
    } catch (err) {
      held.release(true);
      throw storeError(err, `opening ${where}`, 'STORE_UNAVAILABLE');
    }
    held.release();
    try {
      await replica.refresh();
    } catch (err) {
      throw storeError(err, `loading the directory of ${where}`, 'STORE_UNAVAILABLE');
    }
    listener = new DirectoryListener(config, replica, opts.directoryPollMs ?? POLL_MS);
    await listener.start();
  } catch (err) {
    await listener?.stop();
    await pool.end().catch(() => undefined);
    throw err;
  }
  const maxBatchBytes = opts.maxBatchBytes ?? 32 * 1024 * 1024;
  const committer = new GroupCommitter(new PgWriter({ pool, spoolDir: opts.spoolDir, onDirectoryChange: () => replica.refresh() }), {
    maxBatchOps: opts.maxBatchOps ?? 512,
    maxBatchBytes,
    onCommit: opts.onCommit ?? null,
    // Spooled bodies are read into the batch here (SQLite leaves them in their files).
    opBytes: (op) => (op.kind === 'accept' ? op.length + op.msg.fileSize : 0),
  });
  return new PgStore(pool, committer, replica, listener, opts);
}
