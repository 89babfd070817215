/**
 * Opening the store a spec names (store/spec.ts): the embedded SQLite store in a data directory,
 * or the PostgreSQL store several nodes share. serve and every CLI command that reads or writes
 * the store come through here, so `--store`, `POSTSEAL_STORE` and `store.url` mean the same
 * everywhere.
 *
 * Invariants: the PostgreSQL driver is loaded only when a postgres:// spec is opened (a SQLite
 * installation never loads it); a reader never migrates and never writes (SQLite: a read-only
 * connection; PostgreSQL: readOnly, every transaction read-only).
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { parseStoreSpec, type StoreSpec } from './spec.js';
import { configureWriter, DB_FILE, migrate, schemaVersion, SCHEMA_VERSION } from './schema.js';
import { defaultNodeId, openSqliteStore, openSqliteStoreReadOnly } from './sqlite-store.js';
import { fsyncDir } from './spool.js';
import type { Store, StoreReader } from './types.js';

export { describeStore, parseStoreSpec, PASSWORD_PLACES, STORE_SYNTAX, type StoreSpec } from './spec.js';

export interface OpenStoreOptions {
  /** Who claims queue rows and records attempts (config node.id); default HOSTNAME-PID. */
  nodeId?: string;
  /** PostgreSQL: connections in the pool (store.poolSize, default 10). */
  poolSize?: number;
  /** PostgreSQL: a file holding the password (store.passwordFile); else PGPASSWORD or ~/.pgpass. */
  passwordFile?: string | null;
  /**
   * PostgreSQL: where this host spools large bodies while they arrive (serve: DATA/bodies). SQLite
   * keeps its spool in its own directory and ignores this. Required to open PostgreSQL read-write.
   */
  spoolDir?: string;
  onCommit?: ((seconds: number, ops: number) => void) | null;
  maxBatchOps?: number;
  maxBatchBytes?: number;
  /** PostgreSQL: false = never upgrade an older schema (the CLI; serve and `store migrate` do). */
  upgrade?: boolean;
  /** PostgreSQL: deadline of a connection attempt (ms). */
  connectTimeoutMs?: number;
  /** PostgreSQL: deadline of one statement (ms). */
  statementTimeoutMs?: number;
}

function specOf(spec: StoreSpec | string): StoreSpec {
  return typeof spec === 'string' ? parseStoreSpec(spec) : spec;
}

/** The PostgreSQL options shared by the writer and the reader. */
function pgOptions(opts: OpenStoreOptions): { poolSize?: number; passwordFile?: string | null; connectTimeoutMs?: number; statementTimeoutMs?: number } {
  return {
    ...(opts.poolSize !== undefined ? { poolSize: opts.poolSize } : {}),
    ...(opts.passwordFile !== undefined ? { passwordFile: opts.passwordFile } : {}),
    ...(opts.connectTimeoutMs !== undefined ? { connectTimeoutMs: opts.connectTimeoutMs } : {}),
    ...(opts.statementTimeoutMs !== undefined ? { statementTimeoutMs: opts.statementTimeoutMs } : {}),
  };
}

/** Opens the store read-write (creating and migrating its schema when needed). */
export async function openStore(spec: StoreSpec | string, opts: OpenStoreOptions = {}): Promise<Store> {
  const s = specOf(spec);
  const nodeId = opts.nodeId ?? defaultNodeId();
  const batch = {
    ...(opts.maxBatchOps !== undefined ? { maxBatchOps: opts.maxBatchOps } : {}),
    ...(opts.maxBatchBytes !== undefined ? { maxBatchBytes: opts.maxBatchBytes } : {}),
    onCommit: opts.onCommit ?? null,
  };
  if (s.kind === 'sqlite') return openSqliteStore(s.dir, { nodeId, ...batch });
  if (opts.spoolDir === undefined) throw new Error('openStore: a PostgreSQL store opened read-write needs spoolDir (this host\'s spool directory)');
  const { openPgStore } = await import('./pg/pg-store.js');
  return openPgStore(s.url, { nodeId, spoolDir: opts.spoolDir, ...pgOptions(opts), ...batch, ...(opts.upgrade !== undefined ? { upgrade: opts.upgrade } : {}) });
}

/** Opens the store for reads only (safe while serve runs; never migrates, never writes). */
export async function openStoreReader(spec: StoreSpec | string, opts: OpenStoreOptions = {}): Promise<StoreReader> {
  const s = specOf(spec);
  if (s.kind === 'sqlite') return openSqliteStoreReadOnly(s.dir);
  const { openPgStore } = await import('./pg/pg-store.js');
  // A reader never spools (every write is refused), but the store wants a directory: a private
  // temporary one, gone again once the store is open.
  const spoolDir = opts.spoolDir ?? mkdtempSync(join(tmpdir(), 'postseal-reader-'));
  try {
    return await openPgStore(s.url, { nodeId: opts.nodeId ?? defaultNodeId(), spoolDir, readOnly: true, ...pgOptions(opts) });
  } finally {
    if (opts.spoolDir === undefined) rmSync(spoolDir, { recursive: true, force: true });
  }
}

/**
 * Creates or migrates the schema (`postseal store migrate`): from the stored version to this
 * code's. SQLite: DIR/postseal.db (created when missing); PostgreSQL: under the advisory lock.
 */
export async function migrateStore(spec: StoreSpec | string, opts: OpenStoreOptions = {}): Promise<{ from: number; to: number }> {
  const s = specOf(spec);
  if (s.kind === 'postgres') {
    const { migratePg } = await import('./pg/schema.js');
    return migratePg(s.url, pgOptions(opts));
  }
  mkdirSync(s.dir, { recursive: true, mode: 0o700 });
  const file = join(s.dir, DB_FILE);
  const db = new Database(file);
  try {
    configureWriter(db);
    const from = schemaVersion(db);
    migrate(db, file);
    return { from, to: SCHEMA_VERSION };
  } finally {
    db.close();
    fsyncDir(s.dir);
  }
}
