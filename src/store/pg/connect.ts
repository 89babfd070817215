/**
 * Connecting to PostgreSQL: the URL check, the password source, the pool settings (timeouts, so
 * that nothing waits forever on a server that is gone), the type parsers, and the mapping of
 * driver errors to our codes.
 *
 * Invariants:
 * - The password never comes from the URL: poolConfig and describePgUrl refuse a URL that carries one (STORE_BAD_URL;
 *   the rule is store/spec.ts parsePostgresUrl's, the check --store and store.url get too). It comes
 *   from PGPASSWORD (read by `pg` itself), ~/.pgpass (also `pg`'s), or the password file named in
 *   the options (read once, trimmed).
 * - Every connection attempt has a deadline (connectTimeoutMs), every statement too, on both sides
 *   (statement_timeout in the server, query_timeout in the client for a server that stopped
 *   answering): an operation on an unreachable server rejects, it never hangs.
 * - A lost connection, a refused one and a timeout all become STORE_UNAVAILABLE: the caller can
 *   only retry later (the SMTP server answers 451 4.3.0).
 * - int8 values (ms timestamps, counts, seq) parse as numbers: every value we store fits in 2^53.
 *   The parsers are this pool's own, the driver's global table is not touched.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { PostsealError, type ErrorCode } from '../../errors.js';
import { describePostgresUrl, parsePostgresUrl } from '../spec.js';

export interface PgConnectOptions {
  /** Connections in the pool (default 10). */
  poolSize?: number;
  /** A file holding the password (read once, trimmed); else PGPASSWORD or ~/.pgpass. */
  passwordFile?: string | null;
  /** Deadline of a connection attempt (default 5000 ms). */
  connectTimeoutMs?: number;
  /** Deadline of one statement (default 30000 ms). */
  statementTimeoutMs?: number;
  /** Every transaction read-only (default_transaction_read_only): the CLI reading a cluster. */
  readOnly?: boolean;
}

const INT8_OID = 20;

/**
 * The URL checked (postgres:// or postgresql://, no password in it; else STORE_BAD_URL) and
 * written for messages, without anything secret.
 */
export function describePgUrl(url: string): string {
  return describePostgresUrl(parsePostgresUrl(url));
}

function readPasswordFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new PostsealError('STORE_BAD_URL', `cannot read the password file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
  }
  return text.trim();
}

function int8(value: string): number {
  return Number(value);
}

/** The pool's type parsers: the driver's, except int8 as a number. */
function typeParsers(): pg.CustomTypesConfig {
  return {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
      if (oid === INT8_OID && format !== 'binary') return int8;
      return pg.types.getTypeParser(oid, format ?? 'text');
    }) as pg.CustomTypesConfig['getTypeParser'],
  };
}

export function poolConfig(url: string, opts: PgConnectOptions): pg.PoolConfig {
  parsePostgresUrl(url);
  const statementTimeoutMs = opts.statementTimeoutMs ?? 30_000;
  const config: pg.PoolConfig = {
    connectionString: url,
    max: opts.poolSize ?? 10,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 5000,
    // The server cancels a statement past this; the client gives up a little later (a server that
    // stopped answering cannot cancel anything).
    statement_timeout: statementTimeoutMs,
    query_timeout: statementTimeoutMs + 2000,
    // A transaction left open by a node that hangs must not hold row locks for long.
    idle_in_transaction_session_timeout: Math.max(statementTimeoutMs * 2, 10_000),
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    // TCP keepalive probes after 10 s idle (the OS default is 2 hours): a peer gone without FIN
    // or RST is noticed by the kernel, not hours later.
    keepAliveInitialDelayMillis: 10_000,
    application_name: 'postseal',
    types: typeParsers(),
  };
  if (opts.passwordFile !== undefined && opts.passwordFile !== null) config.password = readPasswordFile(opts.passwordFile);
  if (opts.readOnly === true) config.options = '-c default_transaction_read_only=on';
  return config;
}

/** SQLSTATEs that mean "the server is not there for us right now". */
const UNAVAILABLE_STATES = new Set([
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up, shutting down, in recovery)
  '57014', // query_canceled: our statement_timeout
  '53300', // too_many_connections
  '53000', // insufficient_resources
  '25P03', // idle_in_transaction_session_timeout
  '40P01', // deadlock_detected: the batch can be tried again
  '40001', // serialization_failure: likewise
]);

const UNAVAILABLE_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOENT']);

/** Whether an error from the driver means the server is unreachable, gone or overloaded. */
export function isUnavailable(err: unknown): boolean {
  if (err === null || typeof err !== 'object') return false;
  const code = 'code' in err && typeof err.code === 'string' ? err.code : '';
  if (code.startsWith('08') || UNAVAILABLE_STATES.has(code) || UNAVAILABLE_ERRNO.has(code)) return true;
  const message = err instanceof Error ? err.message : '';
  // The driver's own messages for a socket that closed, a connect or query deadline, a dead client.
  return /Connection terminated|timeout expired|Query read timeout|not queryable|Client was closed|connection error|Connection ended/i.test(message);
}

/** Our error for a failed driver call: STORE_UNAVAILABLE when the server is not reachable, else `fallback`. */
export function storeError(err: unknown, what: string, fallback: ErrorCode): PostsealError {
  if (err instanceof PostsealError) return err;
  const detail = err instanceof Error ? err.message : String(err);
  if (isUnavailable(err)) return new PostsealError('STORE_UNAVAILABLE', `PostgreSQL unavailable (${what}): ${detail}`, { cause: err });
  return new PostsealError(fallback, `${what}: ${detail}`, { cause: err });
}

/** The SQLSTATE of a driver error ('' when it has none). */
export function sqlState(err: unknown): string {
  return err !== null && typeof err === 'object' && 'code' in err && typeof err.code === 'string' ? err.code : '';
}

/** One transaction on `db`: BEGIN, the work, COMMIT (ROLLBACK on any failure, then the error as is). */
export async function inTransaction<T>(db: pg.ClientBase, work: () => Promise<T>): Promise<T> {
  await db.query('BEGIN');
  try {
    const out = await work();
    await db.query('COMMIT');
    return out;
  } catch (err) {
    await db.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/**
 * A pooled client checked out for a transaction, with an 'error' listener for as long as we hold
 * it: the pool removes its own listener while a client is checked out, and a connection that
 * PostgreSQL drops mid-transaction then emits 'error' — unheard, that event ends the process. The
 * error itself reaches us through the query that was running; the listener only keeps it from
 * being an uncaught event. `release(true)` discards a client that failed mid-transaction.
 */
export async function checkout(pool: pg.Pool): Promise<{ client: pg.PoolClient; release(broken?: boolean): void }> {
  const client = await pool.connect();
  const ignore = (): void => undefined;
  client.on('error', ignore);
  return {
    client,
    release(broken = false) {
      client.off('error', ignore);
      client.release(broken);
    },
  };
}
