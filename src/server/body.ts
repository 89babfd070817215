/**
 * One message body on its way in: held in memory while it is small, written to a spool file as it
 * arrives once it is not, and counted against a server-wide budget of body bytes in memory.
 *
 * Invariants (ARCHITECTURE.md "Bounded resources"):
 * - a session holds at most `threshold` bytes of a body in memory (plus the TCP read being
 *   scanned): past it the bytes go to the spool file in pieces of about `threshold`;
 * - every byte held is counted in the BodyBudget while held and given back when it is written,
 *   handed to the store, or dropped (end(), discard());
 * - when the budget is used up, a session spills at once whatever it holds; with no spool to
 *   spill to (a library server without a store), the message is marked `overBudget`, its bytes
 *   are dropped as they come, and the session answers 452 4.3.1 once the client finished sending;
 * - new DATA/BDAT is refused with 452 4.3.1 while the budget is used up (session.ts);
 * - a spool file that does not become a stored message is removed (discard()).
 */
import { PostsealError } from '../errors.js';
import type { BodySpool, SpoolFile, SpooledBody } from '../store/spool.js';

/** Bytes of message bodies held in memory by every session of one server together. */
export class BodyBudget {
  used = 0;
  constructor(readonly max: number) {}

  get exhausted(): boolean {
    return this.used >= this.max;
  }
}

export class BodyCollector {
  private parts: Uint8Array[] = [];
  /** Bytes in `parts`, all counted in the budget. */
  private held = 0;
  /** Bytes of content taken so far (memory and file). */
  size = 0;
  private file: SpoolFile | null = null;
  /** The budget ran out and there was nowhere to spill: the message cannot be kept. */
  overBudget = false;
  /** Writing the spool file failed: the message cannot be kept (451). */
  ioError: Error | null = null;

  constructor(
    private readonly budget: BodyBudget,
    private readonly spool: BodySpool | null,
    private readonly threshold: number,
    /** The queue id, also the spool file's name. */
    readonly id: string,
  ) {}

  get spooled(): boolean {
    return this.file !== null;
  }

  /** Takes pieces of content (views into received buffers; kept, not copied, while in memory). */
  add(parts: readonly Uint8Array[]): void {
    if (this.overBudget || this.ioError) return;
    let n = 0;
    for (const p of parts) {
      this.parts.push(p);
      n += p.byteLength;
    }
    this.held += n;
    this.size += n;
    this.budget.used += n;
    if (this.held >= this.threshold || this.budget.exhausted) this.spill();
  }

  private spill(): void {
    if (this.spool === null) {
      // Nowhere to put it: keep small messages in memory unless the budget is gone.
      if (this.budget.exhausted) {
        this.overBudget = true;
        this.release();
      }
      return;
    }
    try {
      this.file ??= this.spool.create(this.id);
      this.file.write(this.parts);
    } catch (err) {
      this.ioError = err instanceof Error ? err : new PostsealError('STORE_SPOOL_FAILED', String(err));
      this.file?.discard();
      this.file = null;
    }
    this.release();
  }

  private release(): void {
    this.budget.used -= this.held;
    this.held = 0;
    this.parts = [];
  }

  /** The whole body of a message that stayed in memory (never spooled); gives the memory back. */
  takeInline(): Uint8Array[] {
    const parts = this.parts;
    this.release();
    return parts;
  }

  /**
   * The end of the body: the pieces still in memory (to be stored inline), or, for a spooled
   * body, the fsync'd file (nothing left in memory). Gives the memory back.
   */
  async end(): Promise<{ parts: Uint8Array[]; spooled: SpooledBody | null }> {
    if (this.file === null) {
      const parts = this.parts;
      this.release();
      return { parts, spooled: null };
    }
    if (this.held > 0) this.spill();
    const file = this.file;
    if (this.ioError || file === null) throw this.ioError ?? new PostsealError('STORE_SPOOL_FAILED', 'spool file lost');
    return { parts: [], spooled: await file.finish() };
  }

  /** The message is not kept: give memory back, remove the file. Idempotent. */
  discard(): void {
    this.release();
    this.file?.discard();
    this.file = null;
  }
}
