/**
 * The group committer's backend for PostgreSQL (the WriterBackend of store/writer-backend.ts):
 * one batch of write operations = one transaction on one pooled connection = one WAL flush.
 *
 * Invariants:
 * - A batch of accepts only (the common case: SMTP traffic) is ONE statement in autocommit: no
 *   BEGIN, no COMMIT, one round trip. A single statement is atomic in PostgreSQL (its implicit
 *   transaction commits all its rows or none) and that commit waits for the WAL flush exactly as
 *   COMMIT does. Any other batch (other ops, a NOTIFY to send) is one explicit transaction.
 * - commit() resolves only after the commit returned. A connection lost before or during COMMIT
 *   rejects the whole batch with STORE_UNAVAILABLE: the outcome of an interrupted COMMIT is
 *   unknown, the sender is told 451 and sends again, so a message may exist twice (the
 *   at-least-once side of the contract) but never a 250 for a message that is not committed.
 * - One failing op does not fail the others. The batch first runs without savepoints (runs of
 *   accepts as one statement each: the fast path); if any op fails for a reason of its own (a user
 *   that exists, an alias too long, an id collision the statement could not skip), the
 *   transaction (or the lone statement) is rolled back and the batch runs again in a transaction
 *   with a savepoint around each op, so the failing op alone is rolled back and reported.
 * - A spooled body is read into the insert (nodes do not share the spool disk) before the
 *   transaction starts, and its file is removed only after the commit that stores it.
 * - A batch that changed users or aliases sends NOTIFY (in the transaction: delivered only if it
 *   commits) and reloads this node's replica before resolving, so the writer reads its own write.
 */
import { readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import { PostsealError, type ErrorCode } from '../../errors.js';
import type { WriterBackend } from '../writer-backend.js';
import type { OpResult, WriteOp } from '../writer-protocol.js';
import { checkout, isUnavailable, sqlState, storeError } from './connect.js';
import { changesDirectory, DIRECTORY_CHANNEL, insertMessages, runOp, type AcceptItem } from './ops.js';

type AcceptOp = Extract<WriteOp, { kind: 'accept' }>;

export interface PgWriterContext {
  pool: pg.Pool;
  /** Where spooled bodies are (the store's spool directory). */
  spoolDir: string;
  /** Called after a commit that changed users or aliases; the batch resolves after it settles. */
  onDirectoryChange: () => Promise<void>;
}

function errorCode(op: WriteOp, err: unknown): ErrorCode {
  // A check of our own inside the op (e.g. too many alias targets) keeps its code.
  if (err instanceof PostsealError) return err.code;
  if (sqlState(err) === '23505') {
    if (op.kind === 'addUser') return 'USER_EXISTS';
    if (op.kind === 'createToken') return 'TOKEN_EXISTS';
    if (op.kind === 'accept') return 'STORE_ID_COLLISION';
  }
  return 'STORE_WRITE_FAILED';
}

function failure(op: WriteOp, err: unknown): OpResult {
  return { ok: false, code: errorCode(op, err), message: err instanceof Error ? err.message : String(err) };
}

/** An accept the insert statement ran: stored, or its id was taken (ON CONFLICT skipped it). */
function acceptResult(stored: ReadonlySet<string>, op: AcceptOp): OpResult {
  return stored.has(op.msg.id) ? { ok: true, value: null } : collision(op);
}

function collision(op: AcceptOp): OpResult {
  return { ok: false, code: 'STORE_ID_COLLISION', message: `message id ${op.msg.id} exists` };
}

/** The batch's results, an op that got none (a bug) reported as such. */
function finished(results: ReadonlyArray<OpResult | undefined>): OpResult[] {
  return results.map((r) => r ?? { ok: false, code: 'STORE_WRITER_FAILED', message: 'op not run' });
}

/** Thrown out of the fast path when an op failed on its own: the batch is run again with savepoints. */
class OpFailed extends Error {}

export class PgWriter implements WriterBackend {
  constructor(private readonly ctx: PgWriterContext) {}

  async commit(ops: WriteOp[], buffer: ArrayBuffer): Promise<OpResult[]> {
    const data = new Uint8Array(buffer);
    const results: Array<OpResult | undefined> = new Array<OpResult | undefined>(ops.length).fill(undefined);
    // Bodies first, outside the transaction: no connection is held while the disk is read.
    const bodies = new Map<number, Buffer>();
    const seen = new Set<string>();
    await Promise.all(
      ops.map(async (op, i) => {
        if (op.kind !== 'accept') return;
        const inline = Buffer.from(data.buffer, data.byteOffset + op.offset, op.length);
        if (op.msg.file === null) {
          bodies.set(i, inline);
          return;
        }
        try {
          const file = await readFile(join(this.ctx.spoolDir, op.msg.file));
          if (file.length !== op.msg.fileSize) throw new Error(`${file.length} bytes, the message says ${op.msg.fileSize}`);
          bodies.set(i, Buffer.concat([inline, file]));
        } catch (err) {
          results[i] = { ok: false, code: 'STORE_BODY_MISSING', message: `message ${op.msg.id}: spool file ${op.msg.file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` };
        }
      }),
    );
    // Two messages of one batch with the same id: the second collides (as it would one batch later).
    ops.forEach((op, i) => {
      if (op.kind !== 'accept' || results[i] !== undefined) return;
      if (seen.has(op.msg.id)) results[i] = collision(op);
      seen.add(op.msg.id);
    });

    // Accepts only: one statement, no transaction around it (nothing else to run, no NOTIFY).
    const alone = ops.every((op) => op.kind === 'accept');
    // Nothing left to write (every accept already failed above): no round trip at all.
    if (alone && results.every((r) => r !== undefined)) return results as OpResult[];

    let held: Awaited<ReturnType<typeof checkout>>;
    try {
      held = await checkout(this.ctx.pool);
    } catch (err) {
      throw storeError(err, 'connecting for a commit', 'STORE_UNAVAILABLE');
    }
    const client = held.client;
    let broken = false;
    let done: OpResult[];
    try {
      try {
        done = alone ? await this.runAlone(client, ops, bodies, results) : await this.run(client, ops, bodies, results, false);
      } catch (err) {
        if (!(err instanceof OpFailed)) throw err;
        done = await this.run(client, ops, bodies, results, true);
      }
    } catch (err) {
      broken = true;
      throw storeError(err, 'commit', 'STORE_COMMIT_FAILED');
    } finally {
      // A client that failed mid-transaction is not given back to the pool.
      held.release(broken);
    }
    // Committed: the spool files are now copies of rows; the rows are what count.
    await Promise.all(
      ops.map(async (op, i) => {
        if (op.kind === 'accept' && op.msg.file !== null && done[i]?.ok === true) await unlink(join(this.ctx.spoolDir, op.msg.file)).catch(() => undefined);
      }),
    );
    if (ops.some((op, i) => changesDirectory(op) && done[i]?.ok === true)) await this.ctx.onDirectoryChange().catch(() => undefined);
    return done;
  }

  /**
   * A batch of accepts only, as one statement in autocommit. An accept's own failure (the
   * statement failed, so none of its rows is kept) throws OpFailed: the caller runs the batch
   * again in a transaction with a savepoint per accept. Connection trouble throws as is.
   */
  private async runAlone(
    client: pg.PoolClient,
    ops: WriteOp[],
    bodies: Map<number, Buffer>,
    pre: ReadonlyArray<OpResult | undefined>,
  ): Promise<OpResult[]> {
    const results = [...pre];
    const run: Array<{ index: number; item: AcceptItem }> = [];
    ops.forEach((op, i) => {
      const bytes = bodies.get(i);
      if (op.kind === 'accept' && results[i] === undefined && bytes !== undefined) run.push({ index: i, item: { op, bytes } });
    });
    let stored: Set<string>;
    try {
      // Durability as with COMMIT: the statement's implicit commit waits for the WAL flush
      // (synchronous_commit=on), and the driver resolves only on ReadyForQuery, which the server
      // sends after that commit. A connection lost before it answers rejects the batch
      // (STORE_UNAVAILABLE): the outcome is unknown, as for an interrupted COMMIT.
      stored = await insertMessages(client, run.map((r) => r.item));
    } catch (err) {
      if (isUnavailable(err)) throw err;
      throw new OpFailed(String(err), { cause: err });
    }
    for (const r of run) results[r.index] = acceptResult(stored, r.item.op);
    return finished(results);
  }

  /**
   * One transaction over the batch. careful=false: no savepoints, an op's own failure throws
   * OpFailed (after ROLLBACK). careful=true: a savepoint per op. Connection trouble throws as is.
   */
  private async run(
    client: pg.PoolClient,
    ops: WriteOp[],
    bodies: Map<number, Buffer>,
    pre: ReadonlyArray<OpResult | undefined>,
    careful: boolean,
  ): Promise<OpResult[]> {
    const results = [...pre];
    let notify = false;
    await client.query('BEGIN');
    try {
      let i = 0;
      while (i < ops.length) {
        const op = ops[i] as WriteOp;
        if (results[i] !== undefined) {
          i++;
          continue;
        }
        if (op.kind === 'accept') {
          // A run of accepts (careful: one at a time) as one statement.
          const run: Array<{ index: number; item: AcceptItem }> = [];
          let j = i;
          while (j < ops.length && (careful ? run.length < 1 : true)) {
            const o = ops[j] as WriteOp;
            if (o.kind !== 'accept') break;
            const bytes = bodies.get(j);
            if (results[j] === undefined && bytes !== undefined) run.push({ index: j, item: { op: o as AcceptOp, bytes } });
            j++;
          }
          i = j;
          await this.step(client, careful, async () => {
            const stored = await insertMessages(client, run.map((r) => r.item));
            for (const r of run) results[r.index] = acceptResult(stored, r.item.op);
          }, (err) => {
            for (const r of run) results[r.index] = failure(r.item.op, err);
          });
          continue;
        }
        const index = i;
        await this.step(client, careful, async () => {
          results[index] = { ok: true, value: await runOp(client, op) };
          if (changesDirectory(op)) notify = true;
        }, (err) => {
          results[index] = failure(op, err);
        });
        i++;
      }
      // Delivered to listeners only if this transaction commits (NOTIFY is transactional).
      if (notify) await client.query('SELECT pg_notify($1, $2)', [DIRECTORY_CHANNEL, '']);
      await client.query('COMMIT');
    } catch (err) {
      // After a lost connection ROLLBACK fails too; the client is then discarded by the caller.
      if (!isUnavailable(err)) await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
    return finished(results);
  }

  /** Runs one step: in careful mode inside a savepoint (a failure is the op's alone), else bare. */
  private async step(client: pg.PoolClient, careful: boolean, body: () => Promise<void>, onFail: (err: unknown) => void): Promise<void> {
    if (!careful) {
      try {
        await body();
      } catch (err) {
        if (isUnavailable(err)) throw err;
        throw new OpFailed(String(err), { cause: err });
      }
      return;
    }
    await client.query('SAVEPOINT op');
    try {
      await body();
      await client.query('RELEASE SAVEPOINT op');
    } catch (err) {
      if (isUnavailable(err)) throw err;
      await client.query('ROLLBACK TO SAVEPOINT op');
      onFail(err);
    }
  }

  close(): Promise<void> {
    // The pool belongs to the store, which ends it after the committer has drained.
    return Promise.resolve();
  }
}
