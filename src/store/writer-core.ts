/**
 * Applies one batch of write operations in ONE immediate transaction on the write connection.
 * The writer backend (writer-backend.ts) runs it for each batch the group committer packs.
 *
 * Invariants:
 * - One batch = one COMMIT = one WAL fsync (synchronous=FULL), whatever its size.
 * - Each op runs in its own savepoint: a failing op (duplicate user, id collision) is rolled
 *   back alone and reported; the others still commit. If the COMMIT itself fails, the whole
 *   batch throws and nothing of it is visible.
 * - A message row, its bytes, its mailbox entries and its queue rows are written in the same
 *   savepoint: never half a message.
 */
import { dirname, join } from 'node:path';
import type { Database, Statement } from 'better-sqlite3';
import { BODIES_DIR, fsyncDir } from './spool.js';
import { domainOf } from './address.js';
import { QUEUE_COLUMNS, type QueueRow } from './rows.js';
import type { ErrorCode } from '../errors.js';
import type { OpResult, OpValues, WriteOp } from './writer-protocol.js';
import { prepareTlsRpt, runTlsRptOp, type TlsRptStatements } from './tlsrpt.js';
import { prepareAliases, runAliasOp, type AliasStatements } from './aliases.js';
import { prepareTokens, runTokenOp, type TokenStatements } from './tokens.js';
import { PostsealError } from '../errors.js';

export type BatchApplier = (ops: WriteOp[], data: Uint8Array) => OpResult[];

interface Statements {
  insertMessage: Statement;
  insertData: Statement;
  insertMailbox: Statement;
  insertQueue: Statement;
  insertUser: Statement;
  updateUser: Statement;
  deleteUser: Statement;
  userExists: Statement;
  insertSender: Statement;
  deleteSender: Statement;
  selectDue: Statement;
  lease: Statement;
  attempt: Statement;
  rowStatus: Statement;
  attemptHistory: Statement;
  deleteQueuedAll: Statement;
  deleteQueuedOne: Statement;
  retryAll: Statement;
  releaseLeases: Statement;
  renewLease: Statement;
  retryOne: Statement;
  putMtaSts: Statement;
  forgetMtaSts: Statement;
  tlsRpt: TlsRptStatements;
  aliases: AliasStatements;
  tokens: TokenStatements;
}

function prepare(db: Database): Statements {
  return {
    insertMessage: db.prepare(`INSERT INTO messages (id, received_at, mail_from, recipients, size, listener,
      client_address, helo_name, auth_user, tls, require_tls, body, smtp_utf8, env_id, ret, auth_results, quarantine)
      VALUES (@id, @receivedAt, @mailFrom, @recipients, @size, @listener, @clientAddress, @heloName,
      @authUser, @tls, @requireTls, @body, @smtpUtf8, @envId, @ret, @authResults, @quarantine)`),
    insertData: db.prepare('INSERT INTO message_data (seq, data, file) VALUES (?, ?, ?)'),
    insertMailbox: db.prepare('INSERT OR IGNORE INTO mailbox_entries (mailbox, seq) VALUES (?, ?)'),
    insertQueue: db.prepare(`INSERT OR IGNORE INTO queue (seq, recipient, domain, status, attempts,
      next_attempt_at, updated_at, notify, orcpt, target) VALUES (?, ?, ?, 'queued', 0, ?, ?, ?, ?, ?)`),
    insertUser: db.prepare('INSERT INTO users (address, password_hash, created_at, admin) VALUES (?, ?, ?, ?)'),
    updateUser: db.prepare('UPDATE users SET password_hash = ? WHERE address = ?'),
    deleteUser: db.prepare('DELETE FROM users WHERE address = ?'),
    userExists: db.prepare('SELECT 1 FROM users WHERE address = ?').pluck(),
    insertSender: db.prepare('INSERT OR IGNORE INTO user_senders (address, pattern) VALUES (?, ?)'),
    deleteSender: db.prepare('DELETE FROM user_senders WHERE address = ? AND pattern = ?'),
    selectDue: db.prepare(`SELECT q.seq AS qseq, ${QUEUE_COLUMNS} FROM queue q JOIN messages m ON m.seq = q.seq
      WHERE q.status IN ('queued', 'deferred') AND q.next_attempt_at <= @now
        AND (q.lease_until IS NULL OR q.lease_until <= @now)
        AND (@which IS NULL OR (@which = 'local') = (q.target IS NOT NULL))
      ORDER BY q.next_attempt_at, q.seq LIMIT @limit`),
    lease: db.prepare('UPDATE queue SET lease_until = ?, claimed_by = ?, updated_at = ? WHERE seq = ? AND recipient = ?'),
    // Only a lease this node still holds: an expired one may have been claimed again elsewhere.
    renewLease: db.prepare(`UPDATE queue SET lease_until = @until WHERE recipient = @recipient AND claimed_by = @node
      AND lease_until > @now AND status IN ('queued', 'deferred') AND seq = (SELECT seq FROM messages WHERE id = @id)`),
    // The same rules as PostgreSQL (store/pg/ops.ts ATTEMPT_SQL): a final outcome stays final — a
    // late 'deferred' (a delivery that outlived its lease, another attempt recorded meanwhile) does
    // not make a delivered or failed row wait again, which would deliver it twice; the lease is
    // cleared only when this node holds it or it has expired (another live lease is another
    // attempt in progress, whose own record follows).
    rowStatus: db.prepare('SELECT status FROM queue WHERE recipient = ? AND seq = (SELECT seq FROM messages WHERE id = ?)').pluck(),
    attempt: db.prepare(`UPDATE queue SET
      status = CASE WHEN status IN ('delivered', 'failed') THEN status ELSE @status END,
      attempts = attempts + 1, last_error = @error, last_tls = @tls,
      next_attempt_at = CASE WHEN status IN ('delivered', 'failed') THEN next_attempt_at ELSE COALESCE(@next, next_attempt_at) END,
      lease_until = CASE WHEN claimed_by IS NOT @node AND lease_until > @now THEN lease_until END,
      claimed_by = CASE WHEN claimed_by IS NOT @node AND lease_until > @now THEN claimed_by END,
      updated_at = @now
      WHERE recipient = @recipient AND seq = (SELECT seq FROM messages WHERE id = @id)`),
    attemptHistory: db.prepare(`INSERT INTO queue_attempts (seq, recipient, at, outcome, error, tls, next_attempt_at, node)
      SELECT seq, @recipient, @now, @status, @error, @tls, @next, @node FROM messages WHERE id = @id`),
    deleteQueuedAll: db.prepare('DELETE FROM queue WHERE seq = (SELECT seq FROM messages WHERE id = ?)'),
    releaseLeases: db.prepare(`UPDATE queue SET lease_until = NULL, claimed_by = NULL WHERE lease_until IS NOT NULL AND status IN ('queued', 'deferred')`),
    // Due now; a live lease stays (that row is being delivered right now: clearing its lease would
    // let a second attempt start beside it). The row is due again once that attempt is recorded.
    retryAll: db.prepare(`UPDATE queue SET next_attempt_at = @now, updated_at = @now,
      claimed_by = CASE WHEN lease_until > @now THEN claimed_by END, lease_until = CASE WHEN lease_until > @now THEN lease_until END
      WHERE status IN ('queued', 'deferred')`),
    retryOne: db.prepare(`UPDATE queue SET next_attempt_at = @now, updated_at = @now,
      claimed_by = CASE WHEN lease_until > @now THEN claimed_by END, lease_until = CASE WHEN lease_until > @now THEN lease_until END
      WHERE status IN ('queued', 'deferred') AND seq = (SELECT seq FROM messages WHERE id = @id)`),
    deleteQueuedOne: db.prepare('DELETE FROM queue WHERE seq = (SELECT seq FROM messages WHERE id = ?) AND recipient = ?'),
    putMtaSts: db.prepare(`INSERT OR REPLACE INTO mta_sts_policies (domain, id, mode, mx, max_age, fetched_at, expires_at, text)
      VALUES (@domain, @id, @mode, @mx, @maxAge, @fetchedAt, @expiresAt, @text)`),
    forgetMtaSts: db.prepare('DELETE FROM mta_sts_policies WHERE domain = ?'),
    tlsRpt: prepareTlsRpt(db),
    aliases: prepareAliases(db),
    tokens: prepareTokens(db),
  };
}

type DueRow = QueueRow & { qseq: number };

function runOp(s: Statements, op: WriteOp, data: Uint8Array): OpValues[WriteOp['kind']] {
  switch (op.kind) {
    case 'accept': {
      const m = op.msg;
      const bytes = Buffer.from(data.buffer, data.byteOffset + op.offset, op.length);
      const info = s.insertMessage.run({
        id: m.id,
        receivedAt: m.receivedAt,
        mailFrom: m.mailFrom,
        recipients: JSON.stringify([...m.localRecipients, ...m.remoteRecipients]),
        size: op.length + m.fileSize,
        listener: m.listener,
        clientAddress: m.clientAddress,
        heloName: m.heloName,
        authUser: m.authUser,
        tls: m.tlsJson,
        requireTls: m.requireTls ? 1 : 0,
        body: m.body,
        smtpUtf8: m.smtpUtf8 ? 1 : 0,
        envId: m.envId,
        ret: m.ret,
        authResults: m.authResultsJson,
        quarantine: m.quarantine ? 1 : 0,
      });
      const seq = info.lastInsertRowid;
      s.insertData.run(seq, bytes, m.file);
      for (const mailbox of m.mailboxes) s.insertMailbox.run(mailbox, seq);
      for (const rcpt of [...m.remoteRecipients, ...m.forwards]) {
        const dsn = Object.hasOwn(m.recipientDsn, rcpt) ? m.recipientDsn[rcpt] : undefined;
        s.insertQueue.run(seq, rcpt, domainOf(rcpt), op.nowMs, op.nowMs, dsn?.notify ?? null, dsn?.orcpt ?? null, null);
      }
      // Handoffs to a delivery target: a queue row each, in this same transaction (no mailbox entry).
      for (const h of m.handoffs) {
        const dsn = Object.hasOwn(m.recipientDsn, h.mailbox) ? m.recipientDsn[h.mailbox] : undefined;
        s.insertQueue.run(seq, h.mailbox, domainOf(h.mailbox), op.nowMs, op.nowMs, dsn?.notify ?? null, dsn?.orcpt ?? null, h.target);
      }
      return null;
    }
    case 'addUser':
      s.insertUser.run(op.address, op.hash, op.createdAt, op.admin === true ? 1 : 0);
      for (const p of op.senders) s.insertSender.run(op.address, p);
      return null;
    case 'editSenders': {
      if (s.userExists.get(op.address) === undefined) return false;
      for (const p of op.remove) s.deleteSender.run(op.address, p);
      for (const p of op.add) s.insertSender.run(op.address, p);
      return true;
    }
    case 'setPassword':
      return s.updateUser.run(op.hash, op.address).changes > 0;
    case 'removeUser':
      return s.deleteUser.run(op.address).changes > 0;
    case 'claimDue': {
      const rows = s.selectDue.all({ now: op.nowMs, limit: op.limit, which: op.which }) as DueRow[];
      const until = op.nowMs + op.leaseMs;
      return rows.map(({ qseq, ...row }) => {
        s.lease.run(until, op.node, op.nowMs, qseq, row.recipient);
        return { ...row, lease_until: until };
      });
    }
    case 'renewLeases': {
      let n = 0;
      for (const r of op.rows) n += s.renewLease.run({ until: op.nowMs + op.leaseMs, now: op.nowMs, node: op.node, recipient: r.recipient, id: r.id }).changes;
      return n;
    }
    case 'recordAttempt': {
      const values = { status: op.status, error: op.error, tls: op.tlsJson, next: op.nextAttemptAt, now: op.nowMs, recipient: op.recipient, id: op.id, node: op.node };
      const before = s.rowStatus.get(op.recipient, op.id) as string | undefined;
      if (before === undefined || s.attempt.run(values).changes === 0) return false;
      // The row keeps the last attempt (for listing); the history keeps every one.
      s.attemptHistory.run(values);
      // Decided here only when the row was still waiting: a row another attempt already finished
      // keeps its outcome (no second bounce, no success DSN for a late answer).
      return before !== 'delivered' && before !== 'failed';
    }
    case 'releaseLeases':
      return s.releaseLeases.run().changes;
    case 'retryQueued':
      return op.id === null ? s.retryAll.run({ now: op.nowMs }).changes : s.retryOne.run({ now: op.nowMs, id: op.id }).changes;
    case 'deleteQueued':
      return op.recipient === null ? s.deleteQueuedAll.run(op.id).changes : s.deleteQueuedOne.run(op.id, op.recipient).changes;
    case 'putMtaSts': {
      const p = op.policy;
      // RFC 8461 §5: a policy of mode none is not kept; it removes the cached one.
      if (p.mode === 'none') s.forgetMtaSts.run(p.domain);
      else s.putMtaSts.run({ ...p, mx: JSON.stringify(p.mx) });
      return null;
    }
    case 'forgetMtaSts':
      return s.forgetMtaSts.run(op.domain).changes > 0;
    case 'tlsRptAdd':
    case 'tlsRptMakeReport':
    case 'tlsRptUpdateReport':
    case 'tlsRptDropCounts':
      return runTlsRptOp(s.tlsRpt, op);
    case 'addAlias':
    case 'removeAlias':
      return runAliasOp(s.aliases, op);
    case 'setAdmin':
    case 'createToken':
    case 'revokeToken':
    case 'touchToken':
      return runTokenOp(s.tokens, op);
  }
}

function errorCode(op: WriteOp, err: unknown): ErrorCode {
  // A check of our own inside the op (e.g. too many alias targets) keeps its code.
  if (err instanceof PostsealError) return err.code;
  const sqliteCode = err !== null && typeof err === 'object' && 'code' in err ? String(err.code) : '';
  if (sqliteCode.startsWith('SQLITE_CONSTRAINT')) {
    if (op.kind === 'addUser') return 'USER_EXISTS';
    if (op.kind === 'createToken') return 'TOKEN_EXISTS';
    if (op.kind === 'accept') return 'STORE_ID_COLLISION';
  }
  return 'STORE_WRITE_FAILED';
}

export function createApplier(db: Database): BatchApplier {
  const s = prepare(db);
  let results: OpResult[] = [];
  const one = db.transaction((op: WriteOp, data: Uint8Array) => runOp(s, op, data));
  const batch = db.transaction((ops: WriteOp[], data: Uint8Array) => {
    results = [];
    for (const op of ops) {
      try {
        // Nested transaction() = SAVEPOINT: a failing op is rolled back alone.
        results.push({ ok: true, value: one(op, data) });
      } catch (err) {
        results.push({ ok: false, code: errorCode(op, err), message: err instanceof Error ? err.message : String(err) });
      }
    }
  });
  const bodies = join(dirname(db.name), BODIES_DIR);
  return (ops, data) => {
    // A spooled message's file was fsync'd by the session; its directory entry must be durable
    // too before the row that names it commits (one directory fsync for the whole batch).
    if (ops.some((op) => op.kind === 'accept' && op.msg.file !== null)) fsyncDir(bodies);
    batch.immediate(ops, data);
    return results;
  };
}
