/**
 * Where a batch is committed: on the main thread, on the write connection (better-sqlite3 is
 * synchronous). One backend only: a worker-thread writer existed beside it and was removed,
 * because the store benchmark (test/store/bench-accept.ts, 5000 × 2 KiB from 50 callers) gave
 * the inline writer 10,326 msg/s against 7,413 for the worker (+39%), with the same batches
 * (avg 50 messages per fsync). The price is event-loop time: a commit blocks the loop for its
 * duration (p99 delay 15 ms against 5 ms with the worker at that load); group commit bounds it
 * to one batch (maxBatchOps, maxBatchBytes) and large bodies are spooled to files before the
 * commit, so a commit never copies a large message.
 *
 * Invariants: at most one commit in flight (the committer guarantees it); a commit's promise
 * settles only after SQLite answered for the whole batch (COMMIT done, fsync'd).
 */
import Database from 'better-sqlite3';
import { PostsealError } from '../errors.js';
import { configureWriter } from './schema.js';
import { createApplier } from './writer-core.js';
import type { OpResult, WriteOp } from './writer-protocol.js';

export interface WriterBackend {
  commit(ops: WriteOp[], buffer: ArrayBuffer): Promise<OpResult[]>;
  close(): Promise<void>;
}

export function openWriterBackend(file: string): WriterBackend {
  const db = new Database(file, { fileMustExist: true });
  configureWriter(db);
  const apply = createApplier(db);
  return {
    commit(ops, buffer) {
      try {
        return Promise.resolve(apply(ops, new Uint8Array(buffer)));
      } catch (err) {
        return Promise.reject(new PostsealError('STORE_COMMIT_FAILED', `commit failed: ${String(err)}`, { cause: err }));
      }
    },
    close() {
      db.close();
      return Promise.resolve();
    },
  };
}
