/**
 * `postseal store copy --from sqlite:DIR --to postgres://…`: moves an existing installation from
 * the embedded SQLite store to PostgreSQL, row by row: messages with their bytes (spooled bodies
 * read from DIR/bodies into the row, as the PostgreSQL store keeps them), mailbox entries, queue
 * rows with their attempts and status, users with their password hashes, sender patterns and
 * admin flag, aliases, API tokens (hashes), the MTA-STS cache, TLS-RPT counters and reports.
 *
 * Invariants:
 * - The source is read through a read-only connection inside one read transaction (one
 *   snapshot), under the data directory's owner lock (store/owner.ts): no serve runs on it
 *   meanwhile, and none can start.
 * - Memory is bounded: messages go in transactions of at most `batchMessages` messages and
 *   `batchBytes` bytes (a larger single message goes alone); other tables in chunks of rows.
 *   Nothing reads a whole table into memory.
 * - Idempotent: every insert is ON CONFLICT DO NOTHING and a message is inserted with its bytes,
 *   entries, queue rows and attempts in one transaction, or not at all (its id already there):
 *   a copy interrupted midway is run again (with --append) and adds only what is missing.
 * - A target that already holds messages is refused unless `append`.
 * - Queue leases are not copied: a lease belonged to the SQLite serve (stopped now), so rows are
 *   claimable by the nodes at once; status, attempts and due times are kept.
 * - Verified at the end: for every source table, the rows found in the target under the source's
 *   keys (and the message bytes) are counted and must equal the source's counts.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { PostsealError } from '../../errors.js';
import { lockDataDir } from '../owner.js';
import { checkVersion, configureReader, DB_FILE } from '../schema.js';
import { BODIES_DIR } from '../spool.js';
import { describePgUrl, inTransaction, poolConfig, storeError, type PgConnectOptions } from './connect.js';
import { DIRECTORY_CHANNEL } from './ops.js';
import { migratePg } from './schema.js';

export interface CopyOptions extends Pick<PgConnectOptions, 'passwordFile' | 'connectTimeoutMs' | 'statementTimeoutMs'> {
  /** Copy into a target that already holds messages (adds what is missing). */
  append?: boolean;
  /** Messages per PostgreSQL transaction (default 500). */
  batchMessages?: number;
  /** Message bytes per transaction (default 32 MiB); a larger message goes alone. */
  batchBytes?: number;
  /** Rows per transaction of the other tables (default 1000). */
  chunkRows?: number;
  /** Progress lines (the CLI prints them on stderr). */
  onProgress?: ((line: string) => void) | null;
}

export const COPY_TABLES = [
  'messages',
  'mailbox_entries',
  'queue',
  'queue_attempts',
  'users',
  'user_senders',
  'aliases',
  'api_tokens',
  'mta_sts_policies',
  'tlsrpt_counts',
  'tlsrpt_reports',
] as const;
export type CopyTable = (typeof COPY_TABLES)[number];

export interface TableCopy {
  /** Rows in the source. */
  source: number;
  /** Rows this run inserted (the others were there already). */
  copied: number;
  /** Source rows found in the target afterwards (verification: equals `source`). */
  target: number;
}

export interface CopyResult {
  from: string;
  to: string;
  tables: Record<CopyTable, TableCopy>;
  /** Message bytes in the source and found in the target (bodies, spooled ones included). */
  bytes: { source: number; target: number };
  /** Every table's `target` equals its `source`, and the bytes too. */
  verified: boolean;
}

type Row = Record<string, unknown>;

/** A column copied as is: its PostgreSQL array type for unnest, and the value conversion. */
interface Column {
  name: string;
  type: string;
  conv?: (v: unknown) => unknown;
}

const bool = (v: unknown): boolean => v === 1 || v === true;

/** A table's columns from `{ name: type }`, in that order; a boolean column converts SQLite's 0/1. */
function columns(spec: Record<string, 'text' | 'bigint' | 'integer' | 'boolean' | 'timestamptz' | 'bytea'>): Column[] {
  return Object.entries(spec).map(([name, type]) => (type === 'boolean' ? { name, type, conv: bool } : { name, type }));
}

interface SimpleTable {
  table: CopyTable;
  columns: Column[];
  /** The key columns (verification joins source keys to the target on them). */
  key: string[];
  /** SQL comparing target t to source keys x (default: equality on every key column). */
  keyMatch?: string;
  /** Changes the directory replica of running nodes (NOTIFY in the transaction). */
  directory?: boolean;
}

const SIMPLE_TABLES: readonly SimpleTable[] = [
  {
    table: 'aliases',
    columns: columns({ address: 'text', target: 'text', created_at: 'timestamptz' }),
    key: ['address', 'target'],
    // SQLite compares targets COLLATE NOCASE; PostgreSQL's unique index is on lower(target).
    keyMatch: 't.address = x.address AND lower(t.target) = lower(x.target)',
    directory: true,
  },
  {
    table: 'api_tokens',
    columns: columns({
      id: 'text', name: 'text', hash: 'text', created_at: 'timestamptz', last_used_at: 'timestamptz', revoked: 'boolean',
    }),
    key: ['id'],
  },
  {
    table: 'mta_sts_policies',
    columns: columns({
      domain: 'text', id: 'text', mode: 'text', mx: 'text', max_age: 'bigint', fetched_at: 'bigint', expires_at: 'bigint',
      text: 'text',
    }),
    key: ['domain'],
  },
  {
    table: 'tlsrpt_counts',
    columns: columns({
      policy_domain: 'text', day: 'text', policy_type: 'text', policy_strings: 'text', mx_host: 'text', receiving_ip: 'text',
      result: 'text', count: 'bigint', detail: 'text',
    }),
    key: ['policy_domain', 'day', 'policy_type', 'policy_strings', 'mx_host', 'receiving_ip', 'result'],
  },
  {
    table: 'tlsrpt_reports',
    columns: columns({
      report_id: 'text', policy_domain: 'text', day: 'text', start_at: 'bigint', end_at: 'bigint', report: 'bytea', rua: 'text',
      attempts: 'integer', next_attempt_at: 'bigint', last_error: 'text', created_at: 'bigint',
    }),
    key: ['report_id'],
  },
];

/** unnest($1::T1[], $2::T2[], …) over these columns, and the arrays to pass. */
function unnestOf(columns: readonly Column[], rows: readonly Row[], first = 1): { sql: string; values: unknown[] } {
  const sql = `unnest(${columns.map((c, i) => `$${first + i}::${c.type}[]`).join(', ')})`;
  const values = columns.map((c) => rows.map((r) => (c.conv ? c.conv(r[c.name]) : (r[c.name] ?? null))));
  return { sql, values };
}

function insertSql(table: string, columns: readonly Column[], rows: readonly Row[], returning = ''): { sql: string; values: unknown[] } {
  const u = unnestOf(columns, rows);
  const names = columns.map((c) => c.name).join(', ');
  return { sql: `INSERT INTO ${table} (${names}) SELECT * FROM ${u.sql} AS x(${names}) ON CONFLICT DO NOTHING${returning}`, values: u.values };
}

/** How many of these source rows the target holds (joined on the key). */
async function countInTarget(db: pg.ClientBase, t: { table: string; columns: readonly Column[]; key: readonly string[]; keyMatch?: string }, rows: readonly Row[]): Promise<number> {
  if (rows.length === 0) return 0;
  const keyCols = t.key.map((k) => {
    const c = t.columns.find((col) => col.name === k);
    if (c === undefined) throw new Error(`no key column ${k} in ${t.table}`);
    return c;
  });
  const u = unnestOf(keyCols, rows);
  const match = t.keyMatch ?? t.key.map((k) => `t.${k} = x.${k}`).join(' AND ');
  const r = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${t.table} t JOIN ${u.sql} AS x(${t.key.join(', ')}) ON ${match}`, u.values);
  return r.rows[0]?.n ?? 0;
}

const MESSAGE_COLUMNS: readonly Column[] = columns({
  id: 'text', received_at: 'timestamptz', mail_from: 'text', recipients: 'text', size: 'bigint', listener: 'text',
  client_address: 'text', helo_name: 'text', auth_user: 'text', tls: 'text', require_tls: 'boolean', body: 'text',
  smtp_utf8: 'boolean', env_id: 'text', ret: 'text', auth_results: 'text', quarantine: 'boolean',
});

/** Queue rows as the nodes should find them: no lease (see the header). */
const QUEUE_COLUMNS: readonly Column[] = columns({
  seq: 'bigint', recipient: 'text', domain: 'text', status: 'text', attempts: 'integer', next_attempt_at: 'bigint',
  last_error: 'text', last_tls: 'text', updated_at: 'bigint', notify: 'text', orcpt: 'text', target: 'text',
});

const ENTRY_COLUMNS: readonly Column[] = columns({ mailbox: 'text', seq: 'bigint' });

const ATTEMPT_COLUMNS: readonly Column[] = columns({
  seq: 'bigint', recipient: 'text', at: 'bigint', outcome: 'text', error: 'text', tls: 'text', next_attempt_at: 'bigint',
  node: 'text',
});

const USER_COLUMNS: readonly Column[] = columns({ address: 'text', password_hash: 'text', created_at: 'timestamptz', admin: 'boolean' });

const SENDER_COLUMNS: readonly Column[] = columns({ address: 'text', pattern: 'text' });

/**
 * The message's bytes as the SQLite store returns them (sqlite-reader.ts getMessage): the row's
 * bytes, then the spool file's up to the recorded size. A missing or short file is an error.
 */
function messageBytes(dir: string, id: string, data: Buffer, file: string | null, size: number): Buffer {
  if (file === null) return data;
  const path = join(dir, BODIES_DIR, file);
  const out = Buffer.allocUnsafe(Math.max(data.length, size));
  data.copy(out, 0);
  let off = data.length;
  let fd: number | null = null;
  try {
    fd = openSync(path, 'r');
    for (let n = 1; off < out.length && n > 0; off += n) n = readSync(fd, out, off, out.length - off, off - data.length);
  } catch (err) {
    throw new PostsealError('STORE_BODY_MISSING', `message ${id}: cannot read its spooled body ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
  } finally {
    if (fd !== null) closeSync(fd);
  }
  if (off < out.length) throw new PostsealError('STORE_BODY_MISSING', `message ${id}: its spooled body ${path} has ${off - data.length} bytes, the row records ${size - data.length}`);
  return out;
}

interface MessageRow extends Row {
  seq: number;
  id: string;
  size: number;
  data: Buffer | null;
  file: string | null;
}

function zero(): TableCopy {
  return { source: 0, copied: 0, target: 0 };
}

/**
 * Copies the SQLite store in `dir` into the PostgreSQL database at `url` (created or migrated to
 * the current schema first). Resolves with the counts; rejects with STORE_NOT_EMPTY (target holds
 * messages, no `append`), STORE_LOCKED (a serve runs on `dir`), STORE_SCHEMA_OLD (migrate the
 * source first), STORE_BODY_MISSING, STORE_UNAVAILABLE.
 */
export async function copySqliteToPg(dir: string, url: string, opts: CopyOptions = {}): Promise<CopyResult> {
  const to = describePgUrl(url);
  const batchMessages = opts.batchMessages ?? 500;
  const batchBytes = opts.batchBytes ?? 32 * 1024 * 1024;
  const chunkRows = opts.chunkRows ?? 1000;
  const progress = opts.onProgress ?? (() => {});
  const file = join(dir, DB_FILE);
  const pgOpts: PgConnectOptions = {
    ...(opts.passwordFile !== undefined ? { passwordFile: opts.passwordFile } : {}),
    ...(opts.connectTimeoutMs !== undefined ? { connectTimeoutMs: opts.connectTimeoutMs } : {}),
    ...(opts.statementTimeoutMs !== undefined ? { statementTimeoutMs: opts.statementTimeoutMs } : {}),
  };

  let src: Database.Database;
  try {
    src = new Database(file, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw new PostsealError('STORE_NOT_FOUND', `no SQLite store to copy: cannot open ${file}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  // No serve may write the source while it is read (and none may start): the owner lock.
  let owner: ReturnType<typeof lockDataDir>;
  try {
    configureReader(src);
    try {
      checkVersion(src, file);
    } catch (err) {
      if (err instanceof PostsealError && err.code === 'STORE_SCHEMA_OLD') throw new PostsealError('STORE_SCHEMA_OLD', `${err.message}: run \`postseal store migrate --store sqlite:${dir}\` first`);
      throw err;
    }
    owner = lockDataDir(dir);
  } catch (err) {
    src.close();
    throw err;
  }
  const db = new pg.Client(poolConfig(url, { ...pgOpts, readOnly: false }));
  db.on('error', () => undefined);
  try {
    await migratePg(url, pgOpts);
    try {
      await db.connect();
    } catch (err) {
      throw storeError(err, `connecting to ${to}`, 'STORE_UNAVAILABLE');
    }
    const held = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM messages');
    const already = held.rows[0]?.n ?? 0;
    if (already > 0 && opts.append !== true) {
      throw new PostsealError('STORE_NOT_EMPTY', `${to} already holds ${already} message(s): copy into an empty database, or give --append to add what is missing (messages already there, by id, are skipped)`);
    }
    // One snapshot of the source for the whole copy.
    src.exec('BEGIN');
    const tables = Object.fromEntries(COPY_TABLES.map((t) => [t, zero()])) as Record<CopyTable, TableCopy>;
    const bytes = { source: 0, target: 0 };
    try {
      await copyUsers(src, db, tables, chunkRows);
      progress(`users: ${tables.users.copied} of ${tables.users.source} copied`);
      for (const t of SIMPLE_TABLES) {
        await copySimple(src, db, t, tables[t.table], chunkRows);
        progress(`${t.table}: ${tables[t.table].copied} of ${tables[t.table].source} copied`);
      }
      await copyMessages(src, db, dir, tables, { batchMessages, batchBytes }, progress);
      // Verification: every source row looked up in the target under its key.
      await verifyUsers(src, db, tables, chunkRows);
      for (const t of SIMPLE_TABLES) tables[t.table].target = await verifySimple(src, db, t, chunkRows);
      await verifyMessages(src, db, tables, bytes, batchMessages);
    } finally {
      src.exec('COMMIT');
    }
    const verified = COPY_TABLES.every((t) => tables[t].source === tables[t].target) && bytes.source === bytes.target;
    return { from: `sqlite:${dir}`, to, tables, bytes, verified };
  } catch (err) {
    throw storeError(err, `copying into ${to}`, 'STORE_WRITE_FAILED');
  } finally {
    await db.end().catch(() => undefined);
    src.close();
    owner.release();
  }
}

/** Users and their sender patterns, in chunks; a user's patterns go in the transaction that inserts the user (never onto a user the target had). */
async function copyUsers(src: Database.Database, db: pg.ClientBase, tables: Record<CopyTable, TableCopy>, chunk: number): Promise<void> {
  const page = src.prepare('SELECT address, password_hash, created_at, admin FROM users WHERE address > ? ORDER BY address LIMIT ?');
  const senders = src.prepare('SELECT address, pattern FROM user_senders WHERE address >= ? AND address <= ? ORDER BY address, pattern');
  let after = '';
  for (;;) {
    const users = page.all(after, chunk) as Row[];
    const last = users.at(-1);
    if (last === undefined) break;
    const first = String(users[0]?.address);
    after = String(last.address);
    const pats = senders.all(first, after) as Row[];
    tables.users.source += users.length;
    tables.user_senders.source += pats.length;
    await inTransaction(db, async () => {
      const ins = insertSql('users', USER_COLUMNS, users, ' RETURNING address');
      const added = new Set((await db.query<{ address: string }>(ins.sql, ins.values)).rows.map((r) => r.address));
      tables.users.copied += added.size;
      const mine = pats.filter((p) => added.has(String(p.address)));
      if (mine.length > 0) {
        const s = insertSql('user_senders', SENDER_COLUMNS, mine);
        tables.user_senders.copied += (await db.query(s.sql, s.values)).rowCount ?? 0;
      }
      // Running nodes reload their directory replica (delivered at COMMIT).
      if (added.size > 0) await db.query('SELECT pg_notify($1, $2)', [DIRECTORY_CHANNEL, '']);
    });
  }
}

async function verifyUsers(src: Database.Database, db: pg.ClientBase, tables: Record<CopyTable, TableCopy>, chunk: number): Promise<void> {
  let buf: Row[] = [];
  const flushUsers = async (): Promise<void> => {
    tables.users.target += await countInTarget(db, { table: 'users', columns: USER_COLUMNS, key: ['address'] }, buf);
    buf = [];
  };
  for (const r of src.prepare('SELECT address FROM users ORDER BY address').iterate() as Iterable<Row>) {
    buf.push(r);
    if (buf.length >= chunk) await flushUsers();
  }
  await flushUsers();
  const flushSenders = async (): Promise<void> => {
    tables.user_senders.target += await countInTarget(db, { table: 'user_senders', columns: SENDER_COLUMNS, key: ['address', 'pattern'] }, buf);
    buf = [];
  };
  for (const r of src.prepare('SELECT address, pattern FROM user_senders ORDER BY address, pattern').iterate() as Iterable<Row>) {
    buf.push(r);
    if (buf.length >= chunk) await flushSenders();
  }
  await flushSenders();
}

function selectAll(t: SimpleTable): string {
  return `SELECT ${t.columns.map((c) => c.name).join(', ')} FROM ${t.table}`;
}

async function copySimple(src: Database.Database, db: pg.ClientBase, t: SimpleTable, count: TableCopy, chunk: number): Promise<void> {
  let buf: Row[] = [];
  const flush = async (): Promise<void> => {
    if (buf.length === 0) return;
    const rows = buf;
    buf = [];
    count.source += rows.length;
    await inTransaction(db, async () => {
      const ins = insertSql(t.table, t.columns, rows);
      const n = (await db.query(ins.sql, ins.values)).rowCount ?? 0;
      count.copied += n;
      if (t.directory === true && n > 0) await db.query('SELECT pg_notify($1, $2)', [DIRECTORY_CHANNEL, '']);
    });
  };
  for (const r of src.prepare(selectAll(t)).iterate() as Iterable<Row>) {
    buf.push(r);
    if (buf.length >= chunk) await flush();
  }
  await flush();
}

async function verifySimple(src: Database.Database, db: pg.ClientBase, t: SimpleTable, chunk: number): Promise<number> {
  let found = 0;
  let buf: Row[] = [];
  const flush = async (): Promise<void> => {
    found += await countInTarget(db, t, buf);
    buf = [];
  };
  for (const r of src.prepare(`SELECT ${t.key.join(', ')} FROM ${t.table}`).iterate() as Iterable<Row>) {
    buf.push(r);
    if (buf.length >= chunk) await flush();
  }
  await flush();
  return found;
}

/** Messages in bounded batches, each with its bytes, entries, queue rows and attempts, in one transaction. */
async function copyMessages(
  src: Database.Database,
  db: pg.ClientBase,
  dir: string,
  tables: Record<CopyTable, TableCopy>,
  limits: { batchMessages: number; batchBytes: number },
  progress: (line: string) => void,
): Promise<void> {
  const total = (src.prepare('SELECT count(*) FROM messages').pluck().get() as number | undefined) ?? 0;
  const sizes = src.prepare('SELECT seq, size FROM messages WHERE seq > ? ORDER BY seq LIMIT ?');
  const rows = src.prepare(`SELECT m.seq, ${MESSAGE_COLUMNS.map((c) => `m.${c.name}`).join(', ')}, d.data, d.file
    FROM messages m LEFT JOIN message_data d ON d.seq = m.seq WHERE m.seq > ? AND m.seq <= ? ORDER BY m.seq`);
  const boxes = src.prepare(`SELECT ${ENTRY_COLUMNS.map((c) => c.name).join(', ')} FROM mailbox_entries WHERE seq > ? AND seq <= ?`);
  const queue = src.prepare(`SELECT ${QUEUE_COLUMNS.map((c) => c.name).join(', ')} FROM queue WHERE seq > ? AND seq <= ?`);
  const attempts = src.prepare(`SELECT ${ATTEMPT_COLUMNS.map((c) => c.name).join(', ')} FROM queue_attempts WHERE seq > ? AND seq <= ? ORDER BY rowid`);
  let after = 0;
  let done = 0;
  for (;;) {
    // The batch: up to batchMessages messages and batchBytes bytes (at least one message).
    const next = sizes.all(after, limits.batchMessages) as Array<{ seq: number; size: number }>;
    if (next.length === 0) break;
    let upTo = next[0]?.seq ?? after;
    let sum = 0;
    for (const m of next) {
      if (sum > 0 && sum + m.size > limits.batchBytes) break;
      sum += m.size;
      upTo = m.seq;
    }
    const msgs = rows.all(after, upTo) as MessageRow[];
    const ents = boxes.all(after, upTo) as Row[];
    const qrows = queue.all(after, upTo) as Row[];
    const atts = attempts.all(after, upTo) as Row[];
    after = upTo;
    const datas = msgs.map((m) => {
      if (m.data === null) throw new PostsealError('STORE_CORRUPT', `message ${m.id} has no message_data row in ${dir}`);
      return messageBytes(dir, m.id, m.data, m.file, m.size);
    });
    tables.messages.source += msgs.length;
    tables.mailbox_entries.source += ents.length;
    tables.queue.source += qrows.length;
    tables.queue_attempts.source += atts.length;
    await inTransaction(db, async () => {
      const ins = insertSql('messages', MESSAGE_COLUMNS, msgs, ' RETURNING seq, id');
      const seqOf = new Map<number, number>(); // source seq -> target seq, for messages inserted now
      const inserted = (await db.query<{ seq: number; id: string }>(ins.sql, ins.values)).rows;
      const bySourceId = new Map(msgs.map((m) => [m.id, m.seq]));
      for (const r of inserted) {
        const s = bySourceId.get(r.id);
        if (s !== undefined) seqOf.set(s, r.seq);
      }
      tables.messages.copied += seqOf.size;
      if (seqOf.size === 0) return;
      // The bytes as separate parameters (sent in binary; a bytea[] would travel as hex text).
      const dataValues: unknown[] = [];
      const tuples: string[] = [];
      msgs.forEach((m, i) => {
        const target = seqOf.get(m.seq);
        if (target === undefined) return;
        dataValues.push(target, datas[i]);
        tuples.push(`($${dataValues.length - 1}::bigint, $${dataValues.length}::bytea)`);
      });
      await db.query(`INSERT INTO message_data (seq, data) VALUES ${tuples.join(', ')}`, dataValues);
      // Entries, queue rows and attempts of the messages inserted now, renumbered to the target's seq.
      const remap = (list: Row[]): Row[] => list.flatMap((r) => {
        const s = seqOf.get(Number(r.seq));
        return s === undefined ? [] : [{ ...r, seq: s }];
      });
      const e = remap(ents);
      if (e.length > 0) {
        const q = insertSql('mailbox_entries', ENTRY_COLUMNS, e);
        tables.mailbox_entries.copied += (await db.query(q.sql, q.values)).rowCount ?? 0;
      }
      const qr = remap(qrows);
      if (qr.length > 0) {
        const q = insertSql('queue', QUEUE_COLUMNS, qr);
        tables.queue.copied += (await db.query(q.sql, q.values)).rowCount ?? 0;
      }
      const at = remap(atts);
      if (at.length > 0) {
        // In source order: the target numbers attempts as they are inserted.
        const u = unnestOf(ATTEMPT_COLUMNS, at);
        const names = ATTEMPT_COLUMNS.map((c) => c.name).join(', ');
        const r = await db.query(`INSERT INTO queue_attempts (${names}) SELECT ${names} FROM ${u.sql} WITH ORDINALITY AS x(${names}, ord) ORDER BY ord`, u.values);
        tables.queue_attempts.copied += r.rowCount ?? 0;
      }
    });
    done += msgs.length;
    progress(`messages: ${done} of ${total} read, ${tables.messages.copied} copied`);
  }
}

/** Message counts per batch of source ids: the target's messages, bytes, entries, queue rows and attempts of those ids. */
async function verifyMessages(src: Database.Database, db: pg.ClientBase, tables: Record<CopyTable, TableCopy>, bytes: { source: number; target: number }, batch: number): Promise<void> {
  const page = src.prepare(`SELECT m.seq, m.id, max(length(d.data), m.size) AS bytes,
      (SELECT count(*) FROM mailbox_entries e WHERE e.seq = m.seq) AS boxes,
      (SELECT count(*) FROM queue q WHERE q.seq = m.seq) AS queue,
      (SELECT count(*) FROM queue_attempts a WHERE a.seq = m.seq) AS attempts
    FROM messages m LEFT JOIN message_data d ON d.seq = m.seq WHERE m.seq > ? ORDER BY m.seq LIMIT ?`);
  let after = 0;
  for (;;) {
    const list = page.all(after, batch) as Array<{ seq: number; id: string; bytes: number | null; boxes: number; queue: number; attempts: number }>;
    const last = list.at(-1);
    if (last === undefined) break;
    after = last.seq;
    for (const m of list) bytes.source += m.bytes ?? 0;
    const r = await db.query<{ messages: number; bytes: number; boxes: number; queue: number; attempts: number }>(
      `WITH m AS (SELECT seq FROM messages WHERE id = ANY($1::text[]))
       SELECT (SELECT count(*) FROM m)::int AS messages,
         (SELECT coalesce(sum(octet_length(d.data)), 0) FROM message_data d JOIN m USING (seq))::bigint AS bytes,
         (SELECT count(*) FROM mailbox_entries e JOIN m USING (seq))::int AS boxes,
         (SELECT count(*) FROM queue q JOIN m USING (seq))::int AS queue,
         (SELECT count(*) FROM queue_attempts a JOIN m USING (seq))::int AS attempts`,
      [list.map((m) => m.id)],
    );
    const t = r.rows[0];
    if (t === undefined) continue;
    tables.messages.target += t.messages;
    bytes.target += Number(t.bytes);
    tables.mailbox_entries.target += t.boxes;
    tables.queue.target += t.queue;
    tables.queue_attempts.target += t.attempts;
  }
  // The source side of the per-message counts was summed while copying; cross-check it here too.
  const s = src.prepare('SELECT (SELECT count(*) FROM mailbox_entries) AS boxes, (SELECT count(*) FROM queue) AS queue, (SELECT count(*) FROM queue_attempts) AS attempts').get() as { boxes: number; queue: number; attempts: number };
  if (s.boxes !== tables.mailbox_entries.source || s.queue !== tables.queue.source || s.attempts !== tables.queue_attempts.source) {
    throw new PostsealError('STORE_CORRUPT', `the source has rows that belong to no message (mailbox entries ${s.boxes}, queue ${s.queue}, attempts ${s.attempts}; of messages: ${tables.mailbox_entries.source}, ${tables.queue.source}, ${tables.queue_attempts.source})`);
  }
}
