/**
 * SQLite schema, its version (PRAGMA user_version) and the connection settings.
 *
 * Invariants:
 * - Every write connection runs WAL with synchronous=FULL: a COMMIT returns only after the WAL
 *   is fsync'd, which is what makes accept()'s promise a durability promise.
 * - Migrations run in one exclusive transaction at open, from the stored version up to
 *   SCHEMA_VERSION; a database newer than this code is refused, never modified.
 * - Message bytes live in their own table so listing never reads blob pages.
 */
import type { Database } from 'better-sqlite3';
import { PostsealError } from '../errors.js';
import { TLSRPT_TABLES } from './tlsrpt.js';
import { ALIAS_TABLE } from './aliases.js';
import { TOKEN_MIGRATION } from './tokens.js';

/** MIGRATIONS.length: a new migration is a new array element, and the version follows. */
export const SCHEMA_VERSION = 12;
export const DB_FILE = 'postseal.db';

const MIGRATIONS: readonly string[] = [
  // 0 -> 1
  `
  CREATE TABLE messages (
    seq            INTEGER PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    received_at    TEXT NOT NULL,
    mail_from      TEXT NOT NULL,
    recipients     TEXT NOT NULL,            -- JSON array, the envelope as accepted
    size           INTEGER NOT NULL,
    listener       TEXT NOT NULL,
    client_address TEXT NOT NULL,
    helo_name      TEXT NOT NULL,
    auth_user      TEXT,
    tls            TEXT,                     -- JSON TlsFacts or NULL
    require_tls    INTEGER NOT NULL,
    body           TEXT,
    smtp_utf8      INTEGER NOT NULL,
    env_id         TEXT,
    ret            TEXT
  );
  CREATE TABLE message_data (
    seq  INTEGER PRIMARY KEY REFERENCES messages(seq) ON DELETE CASCADE,
    data BLOB NOT NULL
  );
  CREATE TABLE mailbox_entries (
    mailbox TEXT NOT NULL,
    seq     INTEGER NOT NULL REFERENCES messages(seq) ON DELETE CASCADE,
    PRIMARY KEY (mailbox, seq)
  ) WITHOUT ROWID;
  CREATE TABLE queue (
    seq             INTEGER NOT NULL REFERENCES messages(seq) ON DELETE CASCADE,
    recipient       TEXT NOT NULL,
    domain          TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'deferred', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,        -- ms since epoch
    lease_until     INTEGER,                 -- ms since epoch, NULL when unclaimed
    last_error      TEXT,
    last_tls        TEXT,                    -- JSON TlsOutcome of the last attempt, or NULL
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (seq, recipient)
  );
  CREATE INDEX queue_due ON queue (next_attempt_at) WHERE status IN ('queued', 'deferred');
  CREATE TABLE users (
    address       TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL
  );
  `,
  // 1 -> 2: the addresses a user may send as besides the login:
  // an exact address, '*@domain' or '*'. Lower-cased, like users.address.
  `
  CREATE TABLE user_senders (
    address TEXT NOT NULL REFERENCES users(address) ON DELETE CASCADE,
    pattern TEXT NOT NULL,
    PRIMARY KEY (address, pattern)
  ) WITHOUT ROWID;
  `,
  // 2 -> 3: a large message's content lives in a spool file (store/spool.ts), named here; the
  // data column then holds only our Received header.
  `
  ALTER TABLE message_data ADD COLUMN file TEXT;
  CREATE INDEX message_data_file ON message_data (file) WHERE file IS NOT NULL;
  `,
  // 3 -> 4: every delivery attempt of a queue row, not only the last (queue show lists them).
  // A row's history goes with the row (queue delete). Rows attempted before this version bring
  // their last attempt, the only one that was kept.
  `
  CREATE TABLE queue_attempts (
    seq             INTEGER NOT NULL,
    recipient       TEXT NOT NULL,
    at              INTEGER NOT NULL,        -- ms since epoch
    outcome         TEXT NOT NULL CHECK (outcome IN ('delivered', 'deferred', 'failed')),
    error           TEXT,
    tls             TEXT,                    -- JSON TlsOutcome or NULL
    next_attempt_at INTEGER,                 -- ms since epoch, for 'deferred'
    FOREIGN KEY (seq, recipient) REFERENCES queue (seq, recipient) ON DELETE CASCADE
  );
  CREATE INDEX queue_attempts_row ON queue_attempts (seq, recipient, at);
  INSERT INTO queue_attempts (seq, recipient, at, outcome, error, tls, next_attempt_at)
    SELECT seq, recipient, updated_at, status, last_error, last_tls,
           CASE WHEN status = 'deferred' THEN next_attempt_at END
    FROM queue WHERE attempts > 0 AND status IN ('delivered', 'deferred', 'failed');
  `,
  // 4 -> 5: the MTA-STS policy cache (RFC 8461 §5.1: it must survive a restart). One row per
  // policy domain; a policy of mode 'none' is never stored (it removes the row).
  `
  CREATE TABLE mta_sts_policies (
    domain     TEXT PRIMARY KEY,           -- lower-case policy domain
    id         TEXT NOT NULL,              -- the TXT record's id at fetch time
    mode       TEXT NOT NULL CHECK (mode IN ('enforce', 'testing')),
    mx         TEXT NOT NULL,              -- JSON array of mx patterns
    max_age    INTEGER NOT NULL,           -- seconds, capped at 31557600
    fetched_at INTEGER NOT NULL,           -- ms since epoch
    expires_at INTEGER NOT NULL,           -- ms since epoch
    text       TEXT NOT NULL               -- the policy body as fetched
  ) WITHOUT ROWID;
  `,
  // 5 -> 6: TLS-RPT (RFC 8460): per-day session counters and the reports made from them that
  // still wait for some rua URI (store/tlsrpt.ts).
  TLSRPT_TABLES,
  // 6 -> 7: verdicts of received-mail authentication (auth/verify.ts): JSON { spf, dkim[], dmarc,
  // arc } or NULL (not verified: submission, verification off, or mail from before this version);
  // quarantine = 1 when DMARC asked for it (RFC 7489 §6.3 p=quarantine) and we kept the message.
  `
  ALTER TABLE messages ADD COLUMN auth_results TEXT;
  ALTER TABLE messages ADD COLUMN quarantine INTEGER NOT NULL DEFAULT 0;
  `,
  // 7 -> 8: RFC 3461 DSN requests per queued recipient: notify = comma list of NEVER|SUCCESS|
  // FAILURE|DELAY, NULL = not given (failure DSNs only); orcpt = 'addr-type;address' (decoded).
  `
  ALTER TABLE queue ADD COLUMN notify TEXT;
  ALTER TABLE queue ADD COLUMN orcpt TEXT;
  `,
  // 8 -> 9: the alias half of the address table (store/aliases.ts; store/resolve.ts resolves):
  // (address, target) rows, '@domain' = the domain's catch-all alias.
  ALIAS_TABLE,
  // 9 -> 10: local delivery targets (issue 12, delivery/): a queue row with a target (spec text
  // such as 'lmtp:127.0.0.1:24', 'maildir:/var/mail', 'webhook:https://…') is a handoff of a local
  // mailbox to that target; NULL = remote SMTP delivery (every row before this version).
  `
  ALTER TABLE queue ADD COLUMN target TEXT;
  `,
  // 10 -> 11: console admins (users.admin) and API tokens (issue 14, store/tokens.ts).
  TOKEN_MIGRATION,
  // 11 -> 12: nodes (issue 13): which node holds a row's lease, and which node made each attempt
  // (Store.nodeId; NULL for rows and attempts from before this version).
  `
  ALTER TABLE queue ADD COLUMN claimed_by TEXT;
  ALTER TABLE queue_attempts ADD COLUMN node TEXT;
  `,
];

/** Settings for the one connection that writes. */
export function configureWriter(db: Database): void {
  const mode: unknown = db.pragma('journal_mode = WAL', { simple: true });
  if (typeof mode !== 'string' || mode.toLowerCase() !== 'wal') {
    throw new PostsealError('STORE_NO_WAL', `${db.name}: cannot switch to WAL journaling (got ${String(mode)})`);
  }
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
}

/** Settings for read connections (same process or another one, e.g. the CLI). */
export function configureReader(db: Database): void {
  db.pragma('busy_timeout = 5000');
}

export function schemaVersion(db: Database): number {
  const v = db.pragma('user_version', { simple: true });
  return typeof v === 'number' ? v : 0;
}

export function checkVersion(db: Database, file: string): void {
  const version = schemaVersion(db);
  if (version > SCHEMA_VERSION) {
    throw new PostsealError('STORE_SCHEMA_TOO_NEW', `${file} has schema version ${version}; this postseal knows up to ${SCHEMA_VERSION}`);
  }
  if (version < SCHEMA_VERSION) {
    throw new PostsealError('STORE_SCHEMA_OLD', `${file} has schema version ${version}; open it read-write once to migrate`);
  }
}

export function migrate(db: Database, file: string): void {
  const run = db.transaction(() => {
    const from = schemaVersion(db);
    if (from > SCHEMA_VERSION) {
      throw new PostsealError('STORE_SCHEMA_TOO_NEW', `${file} has schema version ${from}; this postseal knows up to ${SCHEMA_VERSION}`);
    }
    for (let v = from; v < SCHEMA_VERSION; v++) {
      const sql = MIGRATIONS[v];
      if (sql === undefined) throw new PostsealError('STORE_SCHEMA_MISSING', `no migration from version ${v}`);
      db.exec(sql);
    }
    // user_version is stored in the database header, so it commits with the transaction.
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  });
  run.exclusive();
}
