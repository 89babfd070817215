/**
 * The PostgreSQL schema and its versioned migrations (the SQLite schema's tables and meanings,
 * store/schema.ts, in PostgreSQL types).
 *
 * Invariants:
 * - `postseal_schema` holds one row: the version. Migrations run in ONE transaction under a
 *   transaction-scoped advisory lock (MIGRATION_LOCK), so nodes starting together migrate once:
 *   the second waits for the first, then finds the version current and does nothing.
 * - A database newer than this code is refused, never modified (STORE_SCHEMA_TOO_NEW); a store
 *   opened read-only never migrates and refuses an older database (STORE_SCHEMA_OLD).
 * - Message bytes live in their own table (message_data), so listing never reads them.
 * - Times: ms since epoch in bigint where SQLite keeps integers (queue, attempts, caches, reports);
 *   timestamptz where SQLite keeps ISO-8601 text (received_at, created_at, last_used_at).
 * - JSON stays text (the same strings SQLite keeps, parsed by the same row mappers; a tlsrpt key
 *   column must compare as text). Keys and sorted text use COLLATE "C": byte order, like SQLite's,
 *   whatever the database's locale.
 */
import pg from 'pg';
import { PostsealError } from '../../errors.js';
import { describePgUrl, inTransaction, poolConfig, storeError, type PgConnectOptions } from './connect.js';

/** Any constant both sides agree on: 'pstseal' in ASCII. */
export const MIGRATION_LOCK = 0x70737473_65616c;

/** A new migration is a new array element; the version is the array's length. */
const MIGRATIONS: readonly string[] = [
  // 0 -> 1: the whole schema of SQLite version 12.
  `
  CREATE TABLE messages (
    seq            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id             text COLLATE "C" NOT NULL UNIQUE,
    received_at    timestamptz NOT NULL,
    mail_from      text NOT NULL,
    recipients     text NOT NULL,              -- JSON array, the envelope as accepted
    size           bigint NOT NULL,
    listener       text NOT NULL,
    client_address text NOT NULL,
    helo_name      text NOT NULL,
    auth_user      text,
    tls            text,                       -- JSON TlsFacts or NULL
    require_tls    boolean NOT NULL,
    body           text,
    smtp_utf8      boolean NOT NULL,
    env_id         text,
    ret            text,
    auth_results   text,                       -- JSON AuthVerdicts or NULL
    quarantine     boolean NOT NULL DEFAULT false
  );
  -- The whole message (a spooled body is read into it at commit: nodes do not share a disk).
  CREATE TABLE message_data (
    seq  bigint PRIMARY KEY REFERENCES messages (seq) ON DELETE CASCADE,
    data bytea NOT NULL
  );
  CREATE TABLE mailbox_entries (
    mailbox text COLLATE "C" NOT NULL,
    seq     bigint NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    PRIMARY KEY (mailbox, seq)
  );
  CREATE INDEX mailbox_entries_seq ON mailbox_entries (seq);
  CREATE TABLE queue (
    seq             bigint NOT NULL REFERENCES messages (seq) ON DELETE CASCADE,
    recipient       text COLLATE "C" NOT NULL,
    domain          text NOT NULL,
    status          text NOT NULL CHECK (status IN ('queued', 'deferred', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at bigint NOT NULL,            -- ms since epoch
    lease_until     bigint,                     -- ms since epoch, NULL when unclaimed
    claimed_by      text,                       -- the node holding the lease (Store.nodeId)
    last_error      text,
    last_tls        text,                       -- JSON TlsOutcome of the last attempt, or NULL
    updated_at      bigint NOT NULL,
    notify          text,                       -- RFC 3461 NOTIFY, comma list, NULL = not given
    orcpt           text,
    target          text,                       -- delivery target spec; NULL = remote SMTP
    PRIMARY KEY (seq, recipient)
  );
  -- The due scan (claimDue: ORDER BY next_attempt_at over waiting rows) and the waiting counts
  -- (queueStats): only waiting rows are in it, so it stays as small as the backlog.
  CREATE INDEX queue_due ON queue (next_attempt_at, status) WHERE status IN ('queued', 'deferred');
  -- queue list --status S.
  CREATE INDEX queue_status ON queue (status, next_attempt_at, seq);
  -- releaseLeases / renewLeases of one node.
  CREATE INDEX queue_leased ON queue (claimed_by) WHERE lease_until IS NOT NULL;
  CREATE TABLE queue_attempts (
    n               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq             bigint NOT NULL,
    recipient       text COLLATE "C" NOT NULL,
    at              bigint NOT NULL,            -- ms since epoch
    outcome         text NOT NULL CHECK (outcome IN ('delivered', 'deferred', 'failed')),
    error           text,
    tls             text,
    next_attempt_at bigint,
    node            text,                       -- the node that made the attempt
    FOREIGN KEY (seq, recipient) REFERENCES queue (seq, recipient) ON DELETE CASCADE
  );
  CREATE INDEX queue_attempts_row ON queue_attempts (seq, recipient, at);
  CREATE TABLE users (
    address       text COLLATE "C" PRIMARY KEY,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL,
    admin         boolean NOT NULL DEFAULT false
  );
  CREATE TABLE user_senders (
    address text COLLATE "C" NOT NULL REFERENCES users (address) ON DELETE CASCADE,
    pattern text COLLATE "C" NOT NULL,
    PRIMARY KEY (address, pattern)
  );
  -- Targets compare case-insensitively (SQLite: COLLATE NOCASE): one row per lower(target).
  CREATE TABLE aliases (
    address    text COLLATE "C" NOT NULL,
    target     text COLLATE "C" NOT NULL,
    created_at timestamptz NOT NULL
  );
  CREATE UNIQUE INDEX aliases_key ON aliases (address, lower(target));
  CREATE TABLE api_tokens (
    id           text COLLATE "C" PRIMARY KEY,
    name         text COLLATE "C" NOT NULL,
    hash         text NOT NULL UNIQUE,          -- sha256 hex; the token itself is not kept
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked      boolean NOT NULL DEFAULT false
  );
  CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE NOT revoked;
  CREATE TABLE mta_sts_policies (
    domain     text COLLATE "C" PRIMARY KEY,
    id         text NOT NULL,
    mode       text NOT NULL CHECK (mode IN ('enforce', 'testing')),
    mx         text NOT NULL,                   -- JSON array
    max_age    bigint NOT NULL,
    fetched_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    text       text NOT NULL
  );
  CREATE TABLE tlsrpt_counts (
    policy_domain  text COLLATE "C" NOT NULL,
    day            text COLLATE "C" NOT NULL,
    policy_type    text COLLATE "C" NOT NULL CHECK (policy_type IN ('sts', 'tlsa', 'no-policy-found')),
    policy_strings text COLLATE "C" NOT NULL,   -- JSON array
    mx_host        text COLLATE "C" NOT NULL,
    receiving_ip   text COLLATE "C" NOT NULL,
    result         text COLLATE "C" NOT NULL,
    count          bigint NOT NULL,
    detail         text,
    PRIMARY KEY (policy_domain, day, policy_type, policy_strings, mx_host, receiving_ip, result)
  );
  CREATE TABLE tlsrpt_reports (
    report_id       text COLLATE "C" PRIMARY KEY,
    policy_domain   text COLLATE "C" NOT NULL,
    day             text NOT NULL,
    start_at        bigint NOT NULL,
    end_at          bigint NOT NULL,
    report          bytea NOT NULL,
    rua             text NOT NULL,              -- JSON array
    attempts        integer NOT NULL,
    next_attempt_at bigint NOT NULL,
    last_error      text,
    created_at      bigint NOT NULL
  );
  `,
];

export const PG_SCHEMA_VERSION = MIGRATIONS.length;

const META = `CREATE TABLE IF NOT EXISTS postseal_schema (
  one     boolean PRIMARY KEY DEFAULT true CHECK (one),
  version integer NOT NULL
)`;

/** The stored version (0 for an empty database). */
async function storedVersion(q: pg.ClientBase): Promise<number> {
  const r = await q.query<{ version: number }>('SELECT version FROM postseal_schema');
  return r.rows[0]?.version ?? 0;
}

function tooNew(where: string, version: number): PostsealError {
  return new PostsealError('STORE_SCHEMA_TOO_NEW', `${where} has schema version ${version}; this postseal knows up to ${PG_SCHEMA_VERSION}`);
}

/** Migrates on a connected client (openPgStore uses its pool's). */
export async function migrateClient(client: pg.ClientBase, where: string, opts: { upgrade?: boolean } = {}): Promise<{ from: number; to: number }> {
  try {
    return await inTransaction(client, async () => {
      // Held to the end of this transaction: a second node starting now waits here, then sees the
      // version this one committed.
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await client.query(META);
      const from = await storedVersion(client);
      if (from > PG_SCHEMA_VERSION) throw tooNew(where, from);
      // upgrade false (one-shot CLI commands): an empty database gets the schema, but an older one
      // that live nodes are using is upgraded only by `store migrate` or a starting serve — an
      // admin's newer CLI must not change the schema under running older nodes.
      if (opts.upgrade === false && from > 0 && from < PG_SCHEMA_VERSION) {
        throw new PostsealError('STORE_SCHEMA_OLD', `${where} has schema version ${from}; run \`postseal store migrate\` (or start a newer serve) to upgrade it`);
      }
      for (let v = from; v < PG_SCHEMA_VERSION; v++) {
        const sql = MIGRATIONS[v];
        if (sql === undefined) throw new PostsealError('STORE_SCHEMA_MISSING', `no migration from version ${v}`);
        await client.query(sql);
      }
      if (from !== PG_SCHEMA_VERSION) {
        await client.query(
          'INSERT INTO postseal_schema (one, version) VALUES (true, $1) ON CONFLICT (one) DO UPDATE SET version = excluded.version',
          [PG_SCHEMA_VERSION],
        );
      }
      return { from, to: PG_SCHEMA_VERSION };
    });
  } catch (err) {
    throw storeError(err, `migrating ${where}`, 'STORE_WRITE_FAILED');
  }
}

/** Checks (never changes) the version: for stores opened read-only. */
export async function checkVersionPg(client: pg.ClientBase, where: string): Promise<void> {
  const exists = await client.query<{ t: string | null }>("SELECT to_regclass('postseal_schema')::text AS t");
  const version = exists.rows[0]?.t == null ? 0 : await storedVersion(client);
  if (version > PG_SCHEMA_VERSION) throw tooNew(where, version);
  if (version < PG_SCHEMA_VERSION) {
    throw new PostsealError('STORE_SCHEMA_OLD', `${where} has schema version ${version}; run \`postseal store migrate\` (or start serve) to migrate`);
  }
}

/**
 * Creates or migrates the schema of the database at `url` (`postseal store migrate`; openPgStore
 * runs the same unless read-only). Safe to run from several nodes at once.
 */
export async function migratePg(url: string, opts: PgConnectOptions = {}): Promise<{ from: number; to: number }> {
  const where = describePgUrl(url);
  const client = new pg.Client(poolConfig(url, { ...opts, readOnly: false }));
  // A dropped connection surfaces through the query that fails; this keeps it from being an
  // unhandled 'error' event meanwhile.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    throw storeError(err, `connecting to ${where}`, 'STORE_UNAVAILABLE');
  }
  try {
    return await migrateClient(client, where);
  } finally {
    await client.end().catch(() => undefined);
  }
}
