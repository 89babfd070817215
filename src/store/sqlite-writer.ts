/**
 * Worker-thread entry: owns the only write connection of this process and commits the batches
 * the main thread posts, so fsync never blocks the event loop.
 *
 * Invariants: one batch in flight at a time (the main thread waits for 'done'/'failed' before
 * posting the next); a reply is posted only after COMMIT returned, i.e. after the WAL fsync;
 * 'close' closes the connection (checkpointing the WAL) and then reports 'closed'.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { configureWriter } from './schema.js';
import { createApplier } from './writer-core.js';
import type { FromWriter, ToWriter, WriterInit } from './writer-protocol.js';

function isInit(v: unknown): v is WriterInit {
  return v !== null && typeof v === 'object' && 'file' in v && typeof v.file === 'string';
}

function errorParts(err: unknown): { code: string; message: string } {
  const message = err instanceof Error ? err.message : String(err);
  const code = err !== null && typeof err === 'object' && 'code' in err ? String(err.code) : 'STORE_WRITE_FAILED';
  return { code, message };
}

function start(): void {
  const port = parentPort;
  if (port === null) throw new Error('sqlite-writer must run in a worker thread');
  const post = (m: FromWriter): void => port.postMessage(m);
  if (!isInit(workerData)) {
    post({ kind: 'fatal', code: 'STORE_WORKER_INIT', message: 'missing workerData.file' });
    return;
  }
  let db: Database.Database;
  let apply: ReturnType<typeof createApplier>;
  try {
    db = new Database(workerData.file, { fileMustExist: true });
    configureWriter(db);
    apply = createApplier(db);
  } catch (err) {
    post({ kind: 'fatal', ...errorParts(err) });
    return;
  }
  port.on('message', (m: ToWriter) => {
    if (m.kind === 'close') {
      db.close();
      post({ kind: 'closed' });
      port.close();
      return;
    }
    try {
      const results = apply(m.ops, new Uint8Array(m.buffer));
      post({ kind: 'done', seq: m.seq, results });
    } catch (err) {
      post({ kind: 'failed', seq: m.seq, ...errorParts(err) });
    }
  });
  post({ kind: 'ready' });
}

start();
