/**
 * The write operations in PostgreSQL: the SQL of each WriteOp (writer-protocol.ts) and the one
 * statement that inserts a whole run of accepted messages. Run by the batch writer (writer.ts)
 * inside its transaction, or alone on the pool for the queue operations (one statement each, so
 * autocommit is their transaction).
 *
 * Invariants:
 * - A run of accepts is ONE statement (data-modifying CTEs): messages, their bytes, mailbox
 *   entries and queue rows together. An id already taken is skipped by ON CONFLICT and reported
 *   as STORE_ID_COLLISION for that message alone, without failing the statement. Its text is the
 *   same for any number of messages (arrays + unnest), a named statement prepared once per
 *   connection.
 * - Every queue operation is a single statement: claimDue locks the rows it takes with
 *   FOR UPDATE SKIP LOCKED, so two nodes claiming at the same instant never get the same row, and
 *   neither waits for the other.
 * - Leases compare with the caller's clock (claimDue's `now`, Date.now() elsewhere), as in SQLite:
 *   nodes need clocks in step (NTP) to well below the lease length.
 */
import type pg from 'pg';
import { PostsealError } from '../../errors.js';
import { domainOf } from '../address.js';
import { MAX_TARGETS_PER_ALIAS } from '../aliases.js';
import type { QueueRow } from '../rows.js';
import type { TlsRptCount } from '../tlsrpt.js';
import type { OpValues, WriteOp } from '../writer-protocol.js';

/** A pool or a checked-out client. */
export interface Queryable {
  query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

/** ISO-8601 UTC with milliseconds, exactly what Date.toISOString() gives (the SQLite store's text). */
export function iso(col: string): string {
  return `to_char(${col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
}

/** rows.ts MESSAGE_COLUMNS in PostgreSQL types (booleans as 0/1, times as ISO text). */
export const PG_MESSAGE_COLUMNS = `m.id, ${iso('m.received_at')} AS received_at, m.mail_from, m.recipients, m.size, m.listener,
  m.client_address, m.helo_name, m.auth_user, m.tls, m.require_tls::int AS require_tls, m.auth_results, m.quarantine::int AS quarantine`;

/** rows.ts QUEUE_COLUMNS in PostgreSQL types. */
export const PG_QUEUE_COLUMNS = `m.id, m.mail_from, m.require_tls::int AS require_tls, q.recipient, q.domain, q.status,
  q.attempts, q.next_attempt_at, q.lease_until, q.last_error, q.last_tls, m.env_id, m.ret, q.notify, q.orcpt, q.target`;

/** The channel every change of users or aliases is announced on (directory.ts listens). */
export const DIRECTORY_CHANNEL = 'postseal_directory';

/** Ops that change what the directory replica holds (users, their admin flag and senders, aliases). */
export function changesDirectory(op: WriteOp): boolean {
  switch (op.kind) {
    case 'addUser':
    case 'editSenders':
    case 'removeUser':
    case 'setAdmin':
    case 'addAlias':
    case 'removeAlias':
      return true;
    default:
      return false;
  }
}

/** One accept of a run: its op and the whole message bytes (inline part + spooled file). */
export interface AcceptItem {
  op: Extract<WriteOp, { kind: 'accept' }>;
  bytes: Buffer;
}

/*
 * The statement that inserts a run of messages. Its text does not depend on the run's length
 * (every column travels as one array, unnest() turns them into rows), so it is a named prepared
 * statement: `pg` parses it once per connection and PostgreSQL plans it from then on without
 * parsing again. The bytes of all messages travel as ONE bytea parameter (sent in binary by the
 * driver; a bytea[] would travel as hex text, twice the size, parsed by the server) with each
 * message's offset and length in it; substring() cuts each message out. A named statement lives in
 * its server session: behind a connection pooler that needs session pooling (or PgBouncer >= 1.21
 * with max_prepared_statements set).
 */
const INSERT_MESSAGES_SQL = `
    WITH input AS (
      SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[],
        $8::text[], $9::text[], $10::text[], $11::boolean[], $12::text[], $13::boolean[], $14::text[], $15::text[],
        $16::text[], $17::boolean[], $18::int[], $19::int[], $20::int[])
      AS i(id, received_at, mail_from, recipients, size, listener, client_address, helo_name, auth_user, tls,
        require_tls, body, smtp_utf8, env_id, ret, auth_results, quarantine, ord, data_from, data_len)
    ), m AS (
      INSERT INTO messages (id, received_at, mail_from, recipients, size, listener, client_address, helo_name,
        auth_user, tls, require_tls, body, smtp_utf8, env_id, ret, auth_results, quarantine)
      SELECT id, received_at, mail_from, recipients, size, listener, client_address, helo_name, auth_user, tls,
        require_tls, body, smtp_utf8, env_id, ret, auth_results, quarantine FROM input ORDER BY ord
      ON CONFLICT (id) DO NOTHING
      RETURNING seq, id
    ), d AS (
      INSERT INTO message_data (seq, data)
      SELECT m.seq, substring($30::bytea FROM i.data_from + 1 FOR i.data_len) FROM m JOIN input i ON i.id = m.id
    ), e AS (
      INSERT INTO mailbox_entries (mailbox, seq)
      SELECT x.mailbox, m.seq FROM unnest($21::text[], $22::text[]) AS x(id, mailbox) JOIN m ON m.id = x.id
      ON CONFLICT DO NOTHING
    ), q AS (
      INSERT INTO queue (seq, recipient, domain, status, attempts, next_attempt_at, updated_at, notify, orcpt, target)
      SELECT m.seq, x.recipient, x.domain, 'queued', 0, x.now, x.now, x.notify, x.orcpt, x.target
      FROM unnest($23::text[], $24::text[], $25::text[], $26::bigint[], $27::text[], $28::text[], $29::text[])
        AS x(id, recipient, domain, now, notify, orcpt, target) JOIN m ON m.id = x.id
      ON CONFLICT DO NOTHING
    )
    SELECT id FROM m`;

/** The prepared statement's name (one text per name and connection: `pg` refuses a second text). */
const INSERT_MESSAGES_NAME = 'postseal_insert_messages_v1';

/** `n` empty arrays: the columns of an unnest() parameter list, filled a row at a time. */
function columnArrays(n: number): unknown[][] {
  return Array.from({ length: n }, () => []);
}

/** Appends one row to column arrays; the row has a value for every column, in their order. */
function pushRow(cols: unknown[][], row: readonly unknown[]): void {
  if (row.length !== cols.length) throw new Error(`pushRow: ${row.length} values for ${cols.length} columns`);
  for (let i = 0; i < row.length; i++) (cols[i] as unknown[]).push(row[i]);
}

/**
 * Inserts a run of messages in one statement. Resolves to the ids that were stored (the others
 * collided with an existing id). Ids must be distinct within the run (the caller checks).
 * On its own (autocommit) the statement is its own transaction: all its rows or none.
 */
export async function insertMessages(db: pg.ClientBase | pg.Pool, items: readonly AcceptItem[]): Promise<Set<string>> {
  // The statement's parameters in its order: $1..$20 the input rows, $21..$22 the mailbox entries,
  // $23..$29 the queue rows (one array per column), $30 the bytes. A row lists its values in the
  // order of its unnest() columns in INSERT_MESSAGES_SQL.
  const input = columnArrays(20);
  const entries = columnArrays(2);
  const queue = columnArrays(7);
  let dataBytes = 0;
  items.forEach(({ op, bytes }, ord) => {
    const m = op.msg;
    pushRow(input, [
      m.id, m.receivedAt, m.mailFrom, JSON.stringify([...m.localRecipients, ...m.remoteRecipients]), op.length + m.fileSize,
      m.listener, m.clientAddress, m.heloName, m.authUser, m.tlsJson, m.requireTls, m.body, m.smtpUtf8, m.envId, m.ret,
      m.authResultsJson, m.quarantine, ord, dataBytes, bytes.length,
    ]);
    dataBytes += bytes.length;
    for (const mailbox of m.mailboxes) pushRow(entries, [m.id, mailbox]);
    const row = (rcpt: string, target: string | null): void => {
      const dsn = Object.hasOwn(m.recipientDsn, rcpt) ? m.recipientDsn[rcpt] : undefined;
      pushRow(queue, [m.id, rcpt, domainOf(rcpt), op.nowMs, dsn?.notify ?? null, dsn?.orcpt ?? null, target]);
    };
    for (const rcpt of [...m.remoteRecipients, ...m.forwards]) row(rcpt, null);
    // Handoffs to a delivery target: a queue row each, in this same statement (no mailbox entry).
    for (const h of m.handoffs) row(h.mailbox, h.target);
  });
  // One buffer for the run's bytes: the batch is bounded (maxBatchBytes), so is this copy.
  const data = items.length === 1 ? (items[0] as AcceptItem).bytes : Buffer.concat(items.map((i) => i.bytes), dataBytes);
  const values: unknown[] = [...input, ...entries, ...queue, data];
  const r = await db.query<{ id: string }>({ name: INSERT_MESSAGES_NAME, text: INSERT_MESSAGES_SQL, values });
  return new Set(r.rows.map((row) => row.id));
}

type DueRow = QueueRow & { qseq: number };

function tlsRptKey(c: TlsRptCount): unknown[] {
  return [c.policyDomain.toLowerCase(), c.day, c.policyType, JSON.stringify(c.policyStrings), c.mxHost, c.receivingIp, c.result];
}

const TLSRPT_KEY_WHERE = `policy_domain = $1 AND day = $2 AND policy_type = $3 AND policy_strings = $4
  AND mx_host = $5 AND receiving_ip = $6 AND result = $7`;

async function subtractTlsRpt(db: Queryable, counts: readonly TlsRptCount[]): Promise<void> {
  const days = new Map<string, [string, string]>();
  for (const c of counts) {
    await db.query(`UPDATE tlsrpt_counts SET count = count - $8 WHERE ${TLSRPT_KEY_WHERE}`, [...tlsRptKey(c), c.count]);
    const d = c.policyDomain.toLowerCase();
    days.set(`${d} ${c.day}`, [d, c.day]);
  }
  for (const [d, day] of days.values()) await db.query('DELETE FROM tlsrpt_counts WHERE policy_domain = $1 AND day = $2 AND count <= 0', [d, day]);
}

const CLAIM_SQL = `
  WITH due AS MATERIALIZED (
    SELECT seq, recipient FROM queue
    WHERE status IN ('queued', 'deferred') AND next_attempt_at <= $1
      AND (lease_until IS NULL OR lease_until <= $1)
      AND ($4::text IS NULL OR ($4::text = 'local') = (target IS NOT NULL))
    ORDER BY next_attempt_at, seq
    LIMIT $2
    FOR UPDATE SKIP LOCKED
  )
  UPDATE queue q SET lease_until = $3, claimed_by = $5, updated_at = $1
  FROM due, messages m
  WHERE q.seq = due.seq AND q.recipient = due.recipient AND m.seq = q.seq
  RETURNING q.seq AS qseq, ${PG_QUEUE_COLUMNS}`;

/*
 * recordAttempt across nodes. The attempt happened (a receiver answered), so it is always recorded
 * — in the history, with the node that made it, and on the row — even when this node's lease ran
 * out meanwhile and another node claimed the row again: dropping the record of a delivery would
 * turn it into a second one. Two rules keep that honest:
 * - a final outcome stays: once the row is 'delivered' or 'failed' (recorded by whichever node), a
 *   later answer from a node whose lease had expired — deferred, or a failure that would bounce
 *   delivered mail — changes nothing but the history; the statement returns the status before,
 *   and the caller makes DSNs only for a record that decided the row;
 * - the lease is cleared only when this node holds it or it has expired: another node's live lease
 *   stays (that node is delivering; its own record follows).
 * The at-least-once part that remains: a node that dies after the receiver's 250 and before this
 * record leaves a row that another node delivers again after the lease expires.
 */
const ATTEMPT_SQL = `
  WITH o AS (
    SELECT q.seq, q.status AS before FROM queue q JOIN messages m ON m.seq = q.seq
    WHERE m.id = $1 AND q.recipient = $2 FOR UPDATE OF q
  ), u AS (
    UPDATE queue q SET
      status = CASE WHEN q.status IN ('delivered', 'failed') THEN q.status ELSE $3 END,
      attempts = q.attempts + 1,
      last_error = $4,
      last_tls = $5,
      next_attempt_at = CASE WHEN q.status IN ('delivered', 'failed') THEN q.next_attempt_at ELSE COALESCE($6, q.next_attempt_at) END,
      lease_until = CASE WHEN q.claimed_by IS DISTINCT FROM $8 AND q.lease_until > $7 THEN q.lease_until END,
      claimed_by = CASE WHEN q.claimed_by IS DISTINCT FROM $8 AND q.lease_until > $7 THEN q.claimed_by END,
      updated_at = $7
    FROM o
    WHERE q.seq = o.seq AND q.recipient = $2
    RETURNING q.seq, o.before
  ), h AS (
    INSERT INTO queue_attempts (seq, recipient, at, outcome, error, tls, next_attempt_at, node)
    SELECT seq, $2, $7, $3, $4, $5, $6, $8 FROM u
  )
  SELECT before FROM u`;

/** The value of one op (not 'accept': runs of accepts go through insertMessages). */
export async function runOp(db: Queryable, op: Exclude<WriteOp, { kind: 'accept' }>): Promise<OpValues[WriteOp['kind']]> {
  switch (op.kind) {
    case 'addUser':
      await db.query('INSERT INTO users (address, password_hash, created_at, admin) VALUES ($1, $2, $3, $4)', [op.address, op.hash, op.createdAt, op.admin === true]);
      if (op.senders.length > 0) {
        await db.query('INSERT INTO user_senders (address, pattern) SELECT $1, p FROM unnest($2::text[]) AS p ON CONFLICT DO NOTHING', [op.address, op.senders]);
      }
      return null;
    case 'editSenders': {
      const r = await db.query('SELECT 1 FROM users WHERE address = $1 FOR UPDATE', [op.address]);
      if (r.rowCount === 0) return false;
      if (op.remove.length > 0) await db.query('DELETE FROM user_senders WHERE address = $1 AND pattern = ANY($2::text[])', [op.address, op.remove]);
      if (op.add.length > 0) {
        await db.query('INSERT INTO user_senders (address, pattern) SELECT $1, p FROM unnest($2::text[]) AS p ON CONFLICT DO NOTHING', [op.address, op.add]);
      }
      return true;
    }
    case 'setPassword':
      return ((await db.query('UPDATE users SET password_hash = $1 WHERE address = $2', [op.hash, op.address])).rowCount ?? 0) > 0;
    case 'removeUser':
      return ((await db.query('DELETE FROM users WHERE address = $1', [op.address])).rowCount ?? 0) > 0;
    case 'setAdmin':
      return ((await db.query('UPDATE users SET admin = $1 WHERE address = $2', [op.admin, op.address])).rowCount ?? 0) > 0;
    case 'createToken':
      await db.query('INSERT INTO api_tokens (id, name, hash, created_at) VALUES ($1, $2, $3, $4)', [op.id, op.name, op.hash, op.createdAt]);
      return null;
    case 'revokeToken':
      return (await db.query('UPDATE api_tokens SET revoked = true WHERE NOT revoked AND (name = $1 OR id = $1)', [op.nameOrId])).rowCount ?? 0;
    case 'touchToken':
      await db.query('UPDATE api_tokens SET last_used_at = $1 WHERE id = $2', [op.at, op.id]);
      return null;
    case 'addAlias': {
      const r = await db.query(
        `INSERT INTO aliases (address, target, created_at) SELECT $1, t, $3 FROM unnest($2::text[]) AS t
         ON CONFLICT (address, lower(target)) DO NOTHING`,
        [op.address, op.targets, op.createdAt],
      );
      const n = await db.query<{ n: number }>('SELECT count(*) AS n FROM aliases WHERE address = $1', [op.address]);
      const count = n.rows[0]?.n ?? 0;
      if (count > MAX_TARGETS_PER_ALIAS) {
        // Thrown inside the op's savepoint: nothing of this op is kept.
        throw new PostsealError('STORE_BAD_ALIAS', `alias ${op.address} would have ${count} targets (at most ${MAX_TARGETS_PER_ALIAS})`);
      }
      return r.rowCount ?? 0;
    }
    case 'removeAlias':
      return op.target === null
        ? ((await db.query('DELETE FROM aliases WHERE address = $1', [op.address])).rowCount ?? 0)
        : ((await db.query('DELETE FROM aliases WHERE address = $1 AND lower(target) = lower($2)', [op.address, op.target])).rowCount ?? 0);
    case 'claimDue': {
      const r = await db.query<DueRow>(CLAIM_SQL, [op.nowMs, op.limit, op.nowMs + op.leaseMs, op.which, op.node]);
      // RETURNING has no order: the due order, as SQLite returns it.
      const rows = r.rows.sort((a, b) => a.next_attempt_at - b.next_attempt_at || a.qseq - b.qseq);
      return rows.map(({ qseq: _qseq, ...row }) => row);
    }
    case 'renewLeases': {
      const r = await db.query(
        `UPDATE queue q SET lease_until = $1::bigint + $2::bigint, updated_at = $1
         FROM messages m, unnest($3::text[], $4::text[]) AS r(id, recipient)
         WHERE m.id = r.id AND q.seq = m.seq AND q.recipient = r.recipient
           AND q.claimed_by = $5 AND q.lease_until > $1 AND q.status IN ('queued', 'deferred')`,
        [op.nowMs, op.leaseMs, op.rows.map((x) => x.id), op.rows.map((x) => x.recipient), op.node],
      );
      return r.rowCount ?? 0;
    }
    case 'recordAttempt': {
      // A remote server's reply text may hold a NUL, which a PostgreSQL text column refuses (the
      // record would fail at every attempt): it is dropped from the stored error.
      const error = op.error === null ? null : op.error.replace(/\0/g, '');
      const r = await db.query<{ before: string }>(ATTEMPT_SQL, [op.id, op.recipient, op.status, error, op.tlsJson, op.nextAttemptAt, op.nowMs, op.node]);
      const before = r.rows[0]?.before;
      // Decided here only when the row was still waiting (Store.recordAttempt).
      return before !== undefined && before !== 'delivered' && before !== 'failed';
    }
    case 'releaseLeases':
      throw new PostsealError('STORE_WRITE_FAILED', 'releaseLeases needs the node id (PgStore.releaseLeases)');
    case 'retryQueued': {
      // Due now. A live lease stays: a node is delivering the row right now, and clearing its lease
      // would let a second node deliver it too; the row is due again once that attempt is recorded.
      const set = `next_attempt_at = $1, updated_at = $1,
        claimed_by = CASE WHEN lease_until > $1 THEN claimed_by END, lease_until = CASE WHEN lease_until > $1 THEN lease_until END`;
      const r =
        op.id === null
          ? await db.query(`UPDATE queue SET ${set} WHERE status IN ('queued', 'deferred')`, [op.nowMs])
          : await db.query(`UPDATE queue SET ${set} WHERE status IN ('queued', 'deferred') AND seq = (SELECT seq FROM messages WHERE id = $2)`, [op.nowMs, op.id]);
      return r.rowCount ?? 0;
    }
    case 'deleteQueued': {
      const r =
        op.recipient === null
          ? await db.query('DELETE FROM queue WHERE seq = (SELECT seq FROM messages WHERE id = $1)', [op.id])
          : await db.query('DELETE FROM queue WHERE seq = (SELECT seq FROM messages WHERE id = $1) AND recipient = $2', [op.id, op.recipient]);
      return r.rowCount ?? 0;
    }
    case 'putMtaSts': {
      const p = op.policy;
      // RFC 8461 §5: a policy of mode none is not kept; it removes the cached one.
      if (p.mode === 'none') {
        await db.query('DELETE FROM mta_sts_policies WHERE domain = $1', [p.domain]);
      } else {
        await db.query(
          `INSERT INTO mta_sts_policies (domain, id, mode, mx, max_age, fetched_at, expires_at, text)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (domain) DO UPDATE SET id = excluded.id, mode = excluded.mode, mx = excluded.mx, max_age = excluded.max_age,
             fetched_at = excluded.fetched_at, expires_at = excluded.expires_at, text = excluded.text`,
          [p.domain, p.id, p.mode, JSON.stringify(p.mx), p.maxAge, p.fetchedAt, p.expiresAt, p.text],
        );
      }
      return null;
    }
    case 'forgetMtaSts':
      return ((await db.query('DELETE FROM mta_sts_policies WHERE domain = $1', [op.domain])).rowCount ?? 0) > 0;
    case 'tlsRptAdd':
      // In key order: two nodes flushing overlapping counters lock the rows in the same order, so
      // they wait for each other instead of deadlocking (40P01 would fail the whole batch).
      for (const c of [...op.counts].sort((x, y) => (JSON.stringify(tlsRptKey(x)) < JSON.stringify(tlsRptKey(y)) ? -1 : 1))) {
        if (c.count <= 0) continue;
        await db.query(
          `INSERT INTO tlsrpt_counts (policy_domain, day, policy_type, policy_strings, mx_host, receiving_ip, result, count, detail)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           ON CONFLICT (policy_domain, day, policy_type, policy_strings, mx_host, receiving_ip, result)
           DO UPDATE SET count = tlsrpt_counts.count + excluded.count, detail = COALESCE(excluded.detail, tlsrpt_counts.detail)`,
          [...tlsRptKey(c), c.count, c.detail],
        );
      }
      return null;
    case 'tlsRptMakeReport': {
      const r = op.report;
      await db.query(
        `INSERT INTO tlsrpt_reports (report_id, policy_domain, day, start_at, end_at, report, rua, attempts, next_attempt_at, last_error, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
        [r.reportId, r.policyDomain.toLowerCase(), r.day, r.startAt, r.endAt, r.gz, JSON.stringify(r.rua), r.attempts, r.nextAttemptAt, r.lastError, r.createdAt],
      );
      await subtractTlsRpt(db, op.counts);
      return null;
    }
    case 'tlsRptUpdateReport':
      if (op.rua.length === 0) return ((await db.query('DELETE FROM tlsrpt_reports WHERE report_id = $1', [op.reportId])).rowCount ?? 0) > 0;
      return (
        ((
          await db.query('UPDATE tlsrpt_reports SET rua = $2, attempts = $3, next_attempt_at = $4, last_error = $5 WHERE report_id = $1', [
            op.reportId,
            JSON.stringify(op.rua),
            op.attempts,
            op.nextAttemptAt,
            op.lastError,
          ])
        ).rowCount ?? 0) > 0
      );
    case 'tlsRptDropCounts':
      await subtractTlsRpt(db, op.counts);
      return null;
  }
}

/** releaseLeases of one node (a single statement). */
export async function releaseLeases(db: Queryable, node: string): Promise<number> {
  const r = await db.query(
    `UPDATE queue SET lease_until = NULL, claimed_by = NULL
     WHERE lease_until IS NOT NULL AND claimed_by = $1 AND status IN ('queued', 'deferred')`,
    [node],
  );
  return r.rowCount ?? 0;
}
