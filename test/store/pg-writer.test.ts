/**
 * The PostgreSQL batch writer (src/store/pg/writer.ts) on its own, against a private cluster: which
 * statements a batch sends (seen by a pg.Client subclass that records every query it is given;
 * the queries themselves run on the real server), and the failure rules of the one-statement path
 * for a batch of accepts only — a colliding id fails that message alone, a message that fails the
 * statement for a reason of its own fails alone (the batch runs again with savepoints), a
 * connection lost mid-statement rejects the whole batch with STORE_UNAVAILABLE and keeps the
 * spooled bodies.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { PostsealError } from '../../src/errors.js';
import { poolConfig } from '../../src/store/pg/connect.js';
import { migratePg } from '../../src/store/pg/schema.js';
import { PgWriter } from '../../src/store/pg/writer.js';
import { dataLength, messageRecord } from '../../src/store/records.js';
import type { IncomingMessage } from '../../src/types.js';
import type { OpResult, WriteOp } from '../../src/store/writer-protocol.js';
import { sql, usePostgres } from '../helpers/postgres.js';
import { until } from '../helpers/poll.js';
import { makeMessage } from './helpers.js';

const dirs: string[] = [];
const pools: pg.Pool[] = [];
const { skip, cluster } = usePostgres({
  closeFirst: async () => {
    for (const p of pools.splice(0)) await p.end().catch(() => undefined);
  },
});
after(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

interface Rig {
  url: string;
  writer: PgWriter;
  spoolDir: string;
  /** What the writer's connections were asked to run: the statement's name if it has one, else its text. */
  sent: string[];
}

async function rig(prefix: string): Promise<Rig> {
  const url = await cluster.createDatabase(prefix);
  await migratePg(url);
  const sent: string[] = [];
  class Recording extends pg.Client {
    override query(...args: unknown[]): never {
      const q = args[0] as string | { name?: string; text: string };
      sent.push(typeof q === 'string' ? q : (q.name ?? q.text));
      return (super.query as (...a: unknown[]) => never)(...args);
    }
  }
  const pool = new pg.Pool({ ...poolConfig(url, { connectTimeoutMs: 2000, statementTimeoutMs: 10_000 }), Client: Recording });
  pools.push(pool);
  const spoolDir = mkdtempSync(join(tmpdir(), 'postseal-pgw-spool-'));
  dirs.push(spoolDir);
  return { url, writer: new PgWriter({ pool, spoolDir, onDirectoryChange: () => Promise.resolve() }), spoolDir, sent };
}

/** A batch as the group committer hands it over: the ops and one buffer with every inline body. */
function batch(msgs: IncomingMessage[], extra: WriteOp[] = []): { ops: WriteOp[]; buffer: ArrayBuffer } {
  const nowMs = Date.now();
  const parts: Buffer[] = [];
  let offset = 0;
  const ops: WriteOp[] = msgs.map((msg) => {
    const data = Buffer.concat(Array.isArray(msg.data) ? msg.data : [msg.data as Uint8Array]);
    const length = dataLength(msg.data);
    const op: WriteOp = { kind: 'accept', msg: messageRecord(msg, nowMs), offset, length, nowMs };
    parts.push(data);
    offset += length;
    return op;
  });
  const all = Buffer.concat(parts);
  const buffer = all.buffer.slice(all.byteOffset, all.byteOffset + all.length) as ArrayBuffer;
  return { ops: [...ops, ...extra], buffer };
}

async function stored(url: string, id: string): Promise<{ data: Buffer; queue: number } | null> {
  const rows = await sql<{ data: Buffer; queue: string }>(
    url,
    'SELECT d.data, (SELECT count(*) FROM queue q WHERE q.seq = m.seq) AS queue FROM messages m JOIN message_data d ON d.seq = m.seq WHERE m.id = $1',
    [id],
  );
  const r = rows[0];
  return r === undefined ? null : { data: r.data, queue: Number(r.queue) };
}

function codes(results: OpResult[]): Array<string> {
  return results.map((r) => (r.ok ? 'ok' : r.code));
}

test('a batch of accepts only is one named statement, no BEGIN/COMMIT, the same for 1 and 3 messages; a colliding id fails that message alone', { skip }, async () => {
  const r = await rig('alone');
  const first = makeMessage({ data: Buffer.from('Subject: first\r\n\r\none\r\n') });
  const one = batch([first]);
  assert.deepEqual(codes(await r.writer.commit(one.ops, one.buffer)), ['ok']);
  assert.deepEqual(r.sent, ['postseal_insert_messages_v1'], 'one statement, no transaction around it');

  r.sent.length = 0;
  // A spooled body (read into the row, file removed after the commit) and a colliding spooled one (file kept).
  writeFileSync(join(r.spoolDir, 'spool-b'), Buffer.alloc(70_000, 'b'));
  writeFileSync(join(r.spoolDir, 'spool-dup'), Buffer.alloc(10, 'd'));
  const a = makeMessage({ data: Buffer.from('Subject: a\r\n\r\na\r\n'), remoteRecipients: ['x@r.example', 'y@r.example'] });
  const b = makeMessage({ data: Buffer.from('Received: by us\r\n'), spooled: { file: 'spool-b', size: 70_000 } });
  const dup = makeMessage({ id: messageRecord(first, 0).id, data: Buffer.from('X: y\r\n'), spooled: { file: 'spool-dup', size: 10 } });
  const three = batch([a, dup, b]);
  assert.deepEqual(codes(await r.writer.commit(three.ops, three.buffer)), ['ok', 'STORE_ID_COLLISION', 'ok']);
  assert.deepEqual(r.sent, ['postseal_insert_messages_v1'], 'the same named statement for three messages');

  const ids = three.ops.map((op) => (op.kind === 'accept' ? op.msg.id : ''));
  assert.deepEqual(await stored(r.url, ids[0] as string), { data: Buffer.from('Subject: a\r\n\r\na\r\n'), queue: 2 });
  assert.deepEqual(await stored(r.url, ids[2] as string), { data: Buffer.concat([Buffer.from('Received: by us\r\n'), Buffer.alloc(70_000, 'b')]), queue: 0 });
  // The first message is untouched by the collision.
  assert.deepEqual((await stored(r.url, ids[1] as string))?.data, Buffer.from('Subject: first\r\n\r\none\r\n'));
  assert.equal(existsSync(join(r.spoolDir, 'spool-b')), false, 'committed: the spool file is removed');
  assert.equal(existsSync(join(r.spoolDir, 'spool-dup')), true, 'not stored: its spool file stays');
  const boxes = await sql<{ n: string }>(r.url, "SELECT count(*) AS n FROM mailbox_entries WHERE mailbox = 'alice@example.org'");
  assert.equal(boxes[0]?.n, '3');
});

test('a batch with another op runs in one transaction; an accept failing the one statement for its own reason fails alone', { skip }, async () => {
  const r = await rig('mixed');
  const m = batch([makeMessage()], [{ kind: 'forgetMtaSts', domain: 'example.org' }]);
  assert.deepEqual(codes(await r.writer.commit(m.ops, m.buffer)), ['ok', 'ok']);
  assert.equal(r.sent[0], 'BEGIN');
  assert.equal(r.sent.at(-1), 'COMMIT');

  r.sent.length = 0;
  // A NUL in a text column: PostgreSQL refuses the value, the one statement fails as a whole; the
  // batch runs again in a transaction with a savepoint per accept, and only that message fails.
  const ok1 = makeMessage();
  const bad = makeMessage({ mailFrom: 'a\u0000b@example.net' });
  const ok2 = makeMessage();
  const x = batch([ok1, bad, ok2]);
  const res = await r.writer.commit(x.ops, x.buffer);
  assert.deepEqual(codes(res), ['ok', 'STORE_WRITE_FAILED', 'ok']);
  assert.equal(r.sent[0], 'postseal_insert_messages_v1');
  assert.ok(r.sent.includes('BEGIN') && r.sent.includes('SAVEPOINT op'), r.sent.join(' | '));
  const ids = x.ops.map((op) => (op.kind === 'accept' ? op.msg.id : ''));
  assert.ok(await stored(r.url, ids[0] as string));
  assert.equal(await stored(r.url, ids[1] as string), null);
  assert.ok(await stored(r.url, ids[2] as string));
});

test('the connection lost mid-statement: the whole batch rejects STORE_UNAVAILABLE, nothing of it is stored, spooled bodies stay', { skip }, async () => {
  const r = await rig('lost');
  writeFileSync(join(r.spoolDir, 'spool-l'), Buffer.alloc(1000, 'l'));
  const m1 = makeMessage();
  const m2 = makeMessage({ data: Buffer.from('H: v\r\n'), spooled: { file: 'spool-l', size: 1000 } });
  const x = batch([m1, m2]);
  const ids = x.ops.map((op) => (op.kind === 'accept' ? op.msg.id : ''));
  // Another session inserts m2's id and keeps its transaction open: the writer's statement waits
  // on that row (ON CONFLICT must know whether it commits) until its backend is terminated.
  const blocker = new pg.Client({ connectionString: r.url, connectionTimeoutMillis: 5000 });
  await blocker.connect();
  try {
    await blocker.query('BEGIN');
    await blocker.query(
      `INSERT INTO messages (id, received_at, mail_from, recipients, size, listener, client_address, helo_name, require_tls, smtp_utf8)
       VALUES ($1, now(), 'b@example.net', '[]', 0, 'mx', '192.0.2.9', 'h', false, false)`,
      [ids[1]],
    );
    const commit = r.writer.commit(x.ops, x.buffer);
    const failed = commit.then(
      () => assert.fail('the batch resolved'),
      (err: unknown) => err,
    );
    await until('the writer waits on the row lock', async () => {
      const rows = await sql<{ pid: number }>(r.url, "SELECT pid FROM pg_stat_activity WHERE application_name = 'postseal' AND wait_event_type = 'Lock'");
      if (rows[0] === undefined) return false;
      await sql(r.url, 'SELECT pg_terminate_backend($1)', [rows[0].pid]);
      return true;
    }, 10_000, 50);
    const err = await failed;
    assert.ok(err instanceof PostsealError, String(err));
    assert.equal(err.code, 'STORE_UNAVAILABLE', err.message);
    await blocker.query('ROLLBACK');
  } finally {
    await blocker.end();
  }
  assert.equal(await stored(r.url, ids[0] as string), null, 'the statement was rolled back as a whole');
  assert.equal(existsSync(join(r.spoolDir, 'spool-l')), true, 'not committed: the spool file stays');
  // The pool gives a fresh connection: the same batch commits now.
  assert.deepEqual(codes(await r.writer.commit(x.ops, x.buffer)), ['ok', 'ok']);
  assert.equal(existsSync(join(r.spoolDir, 'spool-l')), false);
});
