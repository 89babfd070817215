/**
 * Group commit: callers submit write operations one by one; this queues them and hands the
 * writer backend one batch at a time. Operations submitted while a batch is being packed or
 * committed accumulate and become the next batch, so one fsync covers many messages.
 *
 * Invariants:
 * - Operations commit in submission order; each caller's promise settles only from the writer's
 *   answer for the batch that contained its op (durable on success).
 * - Message bytes of a batch are copied into one ArrayBuffer, the only copy the writer reads.
 * - A batch holds at most maxBatchOps ops and maxBatchBytes bytes (one oversized message alone).
 * - After close() begins, new submissions reject with 'STORE_CLOSED'; already queued ones commit.
 * - After the writer fails, everything queued or submitted later rejects with its error.
 */
import { PostsealError } from '../errors.js';
import type { StoreStats } from './types.js';
import type { WriterBackend } from './writer-backend.js';
import { byteLength, type OpKind, type OpValues, type WriteOp } from './writer-protocol.js';

type Bytes = Uint8Array | readonly Uint8Array[];

interface Pending {
  op: WriteOp;
  data: Bytes | null;
  resolve: (value: OpValues[OpKind]) => void;
  reject: (err: Error) => void;
}

export interface GroupCommitLimits {
  maxBatchOps: number;
  maxBatchBytes: number;
  /**
   * Called after each successful commit with its duration in seconds (the writer's round trip:
   * write and fsync) and its number of ops (metrics, issue 14; the store does not know prom-client).
   */
  onCommit?: ((seconds: number, ops: number) => void) | null;
  /**
   * Bytes an op counts for against maxBatchBytes (default writer-protocol.ts byteLength: the
   * inline bytes). The PostgreSQL writer reads spooled bodies into its batch, so it counts them too.
   */
  opBytes?: ((op: WriteOp) => number) | null;
}

export class GroupCommitter {
  private queue: Pending[] = [];
  private busy = false;
  private scheduled = false;
  private closing = false;
  private failure: PostsealError | null = null;
  private drainWaiters: (() => void)[] = [];
  private readonly counters = { commits: 0, messages: 0, ops: 0, largestBatch: 0 };

  constructor(
    private readonly backend: WriterBackend,
    private readonly limits: GroupCommitLimits,
  ) {}

  /**
   * Queues one op. For 'accept', `data` is the message: it is copied into the batch buffer when
   * the batch is packed, so the caller must not modify it until the promise settles.
   */
  submit<K extends OpKind>(op: Extract<WriteOp, { kind: K }>, data: Bytes | null = null): Promise<OpValues[K]> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new PostsealError('STORE_CLOSED', 'store is closed'));
    return new Promise<OpValues[K]>((resolve, reject) => {
      // The writer answers each op with the value type of its kind (writer-core.ts runOp).
      this.queue.push({ op, data, resolve: resolve as (v: OpValues[OpKind]) => void, reject });
      this.schedule();
    });
  }

  stats(): StoreStats {
    return { ...this.counters };
  }

  /**
   * Commits everything queued, runs `beforeBackendClose` (the store closes its reader there, so
   * that the writer's connection is the last one and SQLite checkpoints and removes the WAL),
   * then closes the backend.
   */
  async close(beforeBackendClose: () => Promise<void> = () => Promise.resolve()): Promise<void> {
    this.closing = true;
    if (this.busy || this.queue.length > 0) {
      await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
    }
    try {
      await beforeBackendClose();
    } finally {
      await this.backend.close();
    }
  }

  private schedule(): void {
    if (this.busy || this.scheduled || this.queue.length === 0) return;
    this.scheduled = true;
    // Let every submission of this event-loop turn join the first batch.
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private take(): Pending[] {
    const batch: Pending[] = [];
    let bytes = 0;
    while (batch.length < this.limits.maxBatchOps) {
      const next = this.queue[0];
      if (next === undefined) break;
      const size = (this.limits.opBytes ?? byteLength)(next.op);
      if (batch.length > 0 && bytes + size > this.limits.maxBatchBytes) break;
      this.queue.shift();
      batch.push(next);
      bytes += size;
    }
    return batch;
  }

  private async flush(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length > 0 && this.failure === null) {
        const batch = this.take();
        await this.commit(batch);
      }
    } finally {
      this.busy = false;
      if (this.failure !== null) this.rejectQueued(this.failure);
      if (this.queue.length === 0) {
        const waiters = this.drainWaiters;
        this.drainWaiters = [];
        for (const w of waiters) w();
      }
    }
  }

  private async commit(batch: Pending[]): Promise<void> {
    let total = 0;
    for (const p of batch) total += byteLength(p.op);
    const buffer = new ArrayBuffer(total);
    const view = new Uint8Array(buffer);
    let offset = 0;
    for (const p of batch) {
      if (p.op.kind === 'accept' && p.data !== null) {
        p.op.offset = offset;
        // The one copy of the message on its way to disk: pieces are joined here.
        if (p.data instanceof Uint8Array) {
          view.set(p.data, offset);
          offset += p.data.byteLength;
        } else {
          for (const part of p.data) {
            view.set(part, offset);
            offset += part.byteLength;
          }
        }
      }
    }
    const ops = batch.map((p) => p.op);
    let results;
    const onCommit = this.limits.onCommit ?? null;
    const started = onCommit === null ? 0 : performance.now();
    try {
      results = await this.backend.commit(ops, buffer);
    } catch (err) {
      const e = err instanceof PostsealError ? err : new PostsealError('STORE_COMMIT_FAILED', String(err), { cause: err });
      for (const p of batch) p.reject(e);
      if (e.code === 'STORE_CLOSED') this.fail(e);
      return;
    }
    this.counters.commits++;
    if (onCommit !== null) onCommit((performance.now() - started) / 1000, batch.length);
    this.counters.largestBatch = Math.max(this.counters.largestBatch, batch.length);
    batch.forEach((p, i) => {
      const r = results[i];
      if (r === undefined) {
        p.reject(new PostsealError('STORE_WRITER_FAILED', 'writer returned too few results'));
      } else if (r.ok) {
        this.counters.ops++;
        if (p.op.kind === 'accept') this.counters.messages++;
        p.resolve(r.value);
      } else {
        p.reject(new PostsealError(r.code, r.message));
      }
    });
  }

  private fail(err: PostsealError): void {
    if (this.failure === null) this.failure = err;
    if (!this.busy) this.rejectQueued(err);
  }

  private rejectQueued(err: PostsealError): void {
    const q = this.queue;
    this.queue = [];
    for (const p of q) p.reject(err);
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const w of waiters) w();
  }
}
