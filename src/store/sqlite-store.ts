/**
 * The embedded store: one SQLite file `postseal.db` in the data directory. Writes go through the
 * group committer to one writer connection (writer-backend.ts); reads use a separate read-only
 * connection.
 *
 * Invariants: accept() resolves only after the batch holding the message committed with
 * synchronous=FULL in WAL mode (fsync'd); the schema is migrated before any writer or reader
 * starts; close() commits everything already submitted before closing connections.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { hostname } from 'node:os';
import Database from 'better-sqlite3';
import type { IncomingMessage } from '../types.js';
import { PostsealError } from '../errors.js';
import { normalizeAddress } from './address.js';
import { GroupCommitter } from './group-commit.js';
import { hashPassword } from './passwords.js';
import { checkPassword, checkSenders, dataLength, messageRecord } from './records.js';
import { toQueueEntry } from './rows.js';
import { checkVersion, configureReader, configureWriter, DB_FILE, migrate } from './schema.js';
import { checkLimit, mtaStsDomain, SqliteReader } from './sqlite-reader.js';
import type { AttemptRecord, ClaimOptions, QueueEntry, SqliteStore, SqliteStoreOptions, SqliteStoreReader, StoreStats, StoredMtaStsPolicy } from './types.js';
import { openWriterBackend } from './writer-backend.js';
import { BODIES_DIR, FileSpool, fsyncDir, removeOrphans, type BodySpool } from './spool.js';
import type { TlsRptCount, TlsRptStoredReport } from './tlsrpt.js';
import { aliasAddress, aliasTarget } from './aliases.js';
import { newToken, tokenName, type ApiTokenInfo } from './tokens.js';

const DEFAULT_LEASE_MS = 10 * 60 * 1000;

/** The node name when none is configured: this host and process (unique among live processes). */
export function defaultNodeId(): string {
  return `${hostname()}-${process.pid}`;
}

class SqliteStoreImpl extends SqliteReader implements SqliteStore {
  private closing: Promise<void> | null = null;
  /** Where the server writes large bodies as they arrive (`<dataDir>/bodies/`). */
  readonly spool: BodySpool;

  constructor(
    db: Database.Database,
    private readonly committer: GroupCommitter,
    private readonly bodiesDir: string,
    readonly nodeId: string,
  ) {
    super(db);
    this.spool = new FileSpool(bodiesDir);
  }

  /**
   * Removes spool files no message row names (left by a crash between the file's fsync and the
   * row's commit), older than `minAgeMs`. `serve` runs it at start; returns how many went.
   */
  removeOrphanBodies(minAgeMs?: number): number {
    return removeOrphans(this.bodiesDir, (name) => this.isBodyReferenced(name), minAgeMs);
  }

  async accept(msg: IncomingMessage): Promise<{ id: string }> {
    const nowMs = Date.now();
    const record = messageRecord(msg, nowMs);
    await this.committer.submit({ kind: 'accept', msg: record, offset: 0, length: dataLength(msg.data), nowMs }, msg.data);
    return { id: record.id };
  }

  async addUser(address: string, password: string, opts: { senders?: readonly string[]; admin?: boolean } = {}): Promise<void> {
    const a = normalizeAddress(address);
    checkPassword(password);
    const senders = checkSenders(opts.senders ?? []);
    const hash = await hashPassword(password);
    await this.committer.submit({ kind: 'addUser', address: a, hash, createdAt: new Date().toISOString(), senders, admin: opts.admin === true });
  }

  async setAdmin(address: string, admin: boolean): Promise<boolean> {
    return this.committer.submit({ kind: 'setAdmin', address: normalizeAddress(address), admin });
  }

  async createApiToken(name: string): Promise<{ token: string; info: ApiTokenInfo }> {
    const n = tokenName(name);
    const t = newToken(n);
    const createdAt = new Date().toISOString();
    await this.committer.submit({ kind: 'createToken', id: t.id, name: n, hash: t.hash, createdAt });
    return { token: t.token, info: { id: t.id, name: n, createdAt, lastUsedAt: null, revoked: false } };
  }

  async revokeApiToken(nameOrId: string): Promise<number> {
    return this.committer.submit({ kind: 'revokeToken', nameOrId });
  }

  async touchApiToken(id: string, at: Date = new Date()): Promise<void> {
    await this.committer.submit({ kind: 'touchToken', id, at: at.toISOString() });
  }

  async editSenders(address: string, change: { add?: readonly string[]; remove?: readonly string[] }): Promise<boolean> {
    const a = normalizeAddress(address);
    return this.committer.submit({ kind: 'editSenders', address: a, add: checkSenders(change.add ?? []), remove: (change.remove ?? []).map((p) => p.trim().toLowerCase()) });
  }

  async setPassword(address: string, password: string): Promise<boolean> {
    const a = normalizeAddress(address);
    checkPassword(password);
    const hash = await hashPassword(password);
    return this.committer.submit({ kind: 'setPassword', address: a, hash });
  }

  async removeUser(address: string): Promise<boolean> {
    return this.committer.submit({ kind: 'removeUser', address: normalizeAddress(address) });
  }

  async addAlias(address: string, targets: readonly string[]): Promise<number> {
    const a = aliasAddress(address);
    const t = [...new Set(targets.map(aliasTarget))];
    if (t.length === 0) throw new PostsealError('STORE_BAD_ALIAS', `alias ${a}: at least one target`);
    return this.committer.submit({ kind: 'addAlias', address: a, targets: t, createdAt: new Date().toISOString() });
  }

  async removeAlias(address: string, target?: string): Promise<number> {
    return this.committer.submit({ kind: 'removeAlias', address: aliasAddress(address), target: target === undefined ? null : aliasTarget(target) });
  }

  async claimDue(now: Date, limit: number, opts: ClaimOptions = {}): Promise<QueueEntry[]> {
    const n = checkLimit(limit, 100, 10_000);
    const leaseMs = opts.leaseMs ?? DEFAULT_LEASE_MS;
    if (!Number.isInteger(leaseMs) || leaseMs < 1) throw new PostsealError('STORE_BAD_LEASE', `bad lease ${leaseMs}`);
    const rows = await this.committer.submit({ kind: 'claimDue', nowMs: now.getTime(), limit: n, leaseMs, which: opts.kind ?? null, node: this.nodeId });
    return rows.map(toQueueEntry);
  }

  async recordAttempt(a: AttemptRecord): Promise<boolean> {
    const tlsJson = a.tls === null ? null : JSON.stringify(a.tls);
    const base = { kind: 'recordAttempt', id: a.id, recipient: a.recipient, tlsJson, nowMs: Date.now(), node: this.nodeId } as const;
    switch (a.outcome) {
      case 'delivered':
        return this.committer.submit({ ...base, status: 'delivered', error: null, nextAttemptAt: null });
      case 'failed':
        return this.committer.submit({ ...base, status: 'failed', error: a.error, nextAttemptAt: null });
      case 'deferred':
        return this.committer.submit({ ...base, status: 'deferred', error: a.error, nextAttemptAt: a.nextAttemptAt.getTime() });
    }
  }

  async deleteQueued(id: string, recipient?: string): Promise<number> {
    return this.committer.submit({ kind: 'deleteQueued', id, recipient: recipient ?? null });
  }

  async renewLeases(rows: ReadonlyArray<{ id: string; recipient: string }>, leaseMs: number): Promise<number> {
    if (!Number.isInteger(leaseMs) || leaseMs < 1) throw new PostsealError('STORE_BAD_LEASE', `bad lease ${leaseMs}`);
    if (rows.length === 0) return 0;
    return this.committer.submit({ kind: 'renewLeases', rows: rows.map((r) => ({ id: r.id, recipient: r.recipient })), nowMs: Date.now(), leaseMs, node: this.nodeId });
  }

  async releaseLeases(): Promise<number> {
    return this.committer.submit({ kind: 'releaseLeases' });
  }

  async retryQueued(id?: string): Promise<number> {
    return this.committer.submit({ kind: 'retryQueued', id: id ?? null, nowMs: Date.now() });
  }

  async putMtaSts(policy: StoredMtaStsPolicy): Promise<void> {
    const domain = mtaStsDomain(policy.domain);
    if (!Number.isSafeInteger(policy.fetchedAt) || !Number.isSafeInteger(policy.expiresAt) || !Number.isSafeInteger(policy.maxAge)) {
      throw new PostsealError('STORE_BAD_POLICY', `MTA-STS policy for ${domain}: times must be integers`);
    }
    const copy: StoredMtaStsPolicy = { ...policy, domain, mx: [...policy.mx] };
    await this.committer.submit({ kind: 'putMtaSts', policy: copy });
  }

  async addTlsRptCounts(counts: TlsRptCount[]): Promise<void> {
    if (counts.length > 0) await this.committer.submit({ kind: 'tlsRptAdd', counts });
  }

  async makeTlsRptReport(report: TlsRptStoredReport, counts: TlsRptCount[]): Promise<void> {
    await this.committer.submit({ kind: 'tlsRptMakeReport', report, counts });
  }

  async updateTlsRptReport(reportId: string, change: { rua: string[]; attempts: number; nextAttemptAt: number; lastError: string | null }): Promise<boolean> {
    return this.committer.submit({ kind: 'tlsRptUpdateReport', reportId, ...change });
  }

  async dropTlsRptCounts(counts: TlsRptCount[]): Promise<void> {
    if (counts.length > 0) await this.committer.submit({ kind: 'tlsRptDropCounts', counts });
  }

  async forgetMtaSts(domain: string): Promise<boolean> {
    return this.committer.submit({ kind: 'forgetMtaSts', domain: mtaStsDomain(domain) });
  }

  stats(): StoreStats {
    return this.committer.stats();
  }

  override close(): Promise<void> {
    this.closing ??= this.committer.close(() => super.close());
    return this.closing;
  }
}

/** Opens (creating and migrating if needed) `<dataDir>/postseal.db` for reading and writing. */
export async function openSqliteStore(dataDir: string, opts: SqliteStoreOptions = {}): Promise<SqliteStore> {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = join(dataDir, DB_FILE);
  const setup = new Database(file);
  try {
    configureWriter(setup);
    migrate(setup, file);
  } finally {
    setup.close();
  }
  mkdirSync(join(dataDir, BODIES_DIR), { recursive: true, mode: 0o700 });
  // Make the new entries (database, bodies directory) durable too.
  fsyncDir(dataDir);
  const backend = openWriterBackend(file);
  const reader = new Database(file, { readonly: true, fileMustExist: true });
  configureReader(reader);
  const committer = new GroupCommitter(backend, {
    maxBatchOps: opts.maxBatchOps ?? 512,
    maxBatchBytes: opts.maxBatchBytes ?? 32 * 1024 * 1024,
    onCommit: opts.onCommit ?? null,
  });
  return new SqliteStoreImpl(reader, committer, join(dataDir, BODIES_DIR), opts.nodeId ?? defaultNodeId());
}

/** Opens an existing store for reads only (CLI while the server runs). Never migrates or writes. */
export function openSqliteStoreReadOnly(dataDir: string): SqliteStoreReader {
  const file = join(dataDir, DB_FILE);
  let db: Database.Database;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw new PostsealError('STORE_NOT_FOUND', `cannot open ${file}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  try {
    configureReader(db);
    checkVersion(db, file);
  } catch (err) {
    db.close();
    throw err;
  }
  return new SqliteReader(db);
}
