/**
 * The two places a batch can be committed: a worker thread that owns the write connection
 * (default), or the main thread itself (inline fallback, used when the worker module cannot be
 * loaded, or on request).
 *
 * Worker module resolution: compiled (dist/) the sibling `sqlite-writer.js` exists and is
 * started directly. From source under tsx, Node 20 does not apply tsx's loader hooks inside
 * worker threads (tsx registers only on the main thread there), so the worker is started from a
 * tiny eval bootstrap that registers tsx (`tsx/esm/api`) in the worker and then imports
 * `sqlite-writer.ts`.
 *
 * Invariants: at most one commit in flight per backend (the committer guarantees it); a commit's
 * promise settles only after the writer answered for that batch; if the worker dies, the batch
 * in flight rejects and every later commit rejects with 'STORE_WRITER_FAILED'.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { PostsealError } from '../errors.js';
import { configureWriter } from './schema.js';
import { createApplier } from './writer-core.js';
import type { FromWriter, OpResult, ToWriter, WriteOp, WriterInit } from './writer-protocol.js';

export interface WriterBackend {
  readonly mode: 'worker' | 'inline';
  commit(ops: WriteOp[], buffer: ArrayBuffer): Promise<OpResult[]>;
  close(): Promise<void>;
  /** Called once if the backend dies outside of a commit. */
  onFatal: ((err: PostsealError) => void) | null;
}

export function openInlineBackend(file: string): WriterBackend {
  const db = new Database(file, { fileMustExist: true });
  configureWriter(db);
  const apply = createApplier(db);
  return {
    mode: 'inline',
    onFatal: null,
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

/** Starts the writer worker from dist (.js) or from source via tsx (.ts); null if neither works. */
function spawnWriter(init: WriterInit): Worker | null {
  const js = new URL('./sqlite-writer.js', import.meta.url);
  if (existsSync(fileURLToPath(js))) return new Worker(js, { workerData: init });
  const ts = new URL('./sqlite-writer.ts', import.meta.url);
  if (!existsSync(fileURLToPath(ts))) return null;
  let tsxApi: string;
  try {
    tsxApi = import.meta.resolve('tsx/esm/api');
  } catch {
    return null;
  }
  const bootstrap = `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(ts.href)}); });`;
  return new Worker(bootstrap, { eval: true, workerData: init });
}

type Waiter = { seq: number; resolve: (r: OpResult[]) => void; reject: (e: Error) => void };

export function openWorkerBackend(file: string): Promise<WriterBackend> | null {
  const worker = spawnWriter({ file });
  if (worker === null) return null;
  const w = worker;
  let seq = 0;
  let current: Waiter | null = null;
  let dead: PostsealError | null = null;
  let closing: { resolve: () => void } | null = null;
  let readyWaiter: { resolve: () => void; reject: (e: Error) => void } | null = null;

  const backend: WriterBackend = {
    mode: 'worker',
    onFatal: null,
    commit(ops, buffer) {
      if (dead !== null) return Promise.reject(dead);
      if (current !== null) return Promise.reject(new PostsealError('STORE_BUSY', 'a commit is already in flight'));
      seq++;
      const s = seq;
      return new Promise<OpResult[]>((resolve, reject) => {
        current = { seq: s, resolve, reject };
        // Keep the process alive while a commit is in flight; let it exit when idle.
        w.ref();
        const msg: ToWriter = { kind: 'batch', seq: s, ops, buffer };
        w.postMessage(msg, [buffer]);
      });
    },
    close() {
      if (dead !== null) return Promise.resolve();
      return new Promise<void>((resolve) => {
        closing = { resolve };
        w.ref();
        const msg: ToWriter = { kind: 'close' };
        w.postMessage(msg);
      });
    },
  };

  function die(err: PostsealError): void {
    if (dead !== null) return;
    dead = err;
    void w.terminate();
    const c = current;
    current = null;
    c?.reject(err);
    readyWaiter?.reject(err);
    readyWaiter = null;
    if (closing !== null) {
      closing.resolve();
      closing = null;
    } else {
      backend.onFatal?.(err);
    }
  }

  w.on('message', (m: FromWriter) => {
    switch (m.kind) {
      case 'ready':
        readyWaiter?.resolve();
        readyWaiter = null;
        w.unref();
        return;
      case 'done':
      case 'failed': {
        const c = current;
        if (c === null || c.seq !== m.seq) {
          die(new PostsealError('STORE_WRITER_FAILED', `writer answered batch ${m.seq}, none pending`));
          return;
        }
        current = null;
        w.unref();
        if (m.kind === 'done') c.resolve(m.results);
        else c.reject(new PostsealError('STORE_COMMIT_FAILED', `commit failed (${m.code}): ${m.message}`));
        return;
      }
      case 'closed':
        closing?.resolve();
        closing = null;
        dead = new PostsealError('STORE_CLOSED', 'store is closed');
        return;
      case 'fatal':
        die(new PostsealError('STORE_WRITER_FAILED', `writer failed (${m.code}): ${m.message}`));
        return;
    }
  });
  w.on('error', (err) => die(new PostsealError('STORE_WRITER_FAILED', `writer thread error: ${err.message}`, { cause: err })));
  w.on('exit', (code) => {
    if (dead === null || closing !== null) die(new PostsealError('STORE_WRITER_FAILED', `writer thread exited (code ${code})`));
  });

  return new Promise<WriterBackend>((resolve, reject) => {
    readyWaiter = { resolve: () => resolve(backend), reject };
  });
}
