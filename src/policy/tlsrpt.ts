/**
 * TLS-RPT counting (RFC 8460 §4): the relay calls record(event) after every delivery attempt;
 * this keeps an in-memory aggregate (one counter per policy domain, UTC day, policy type, policy
 * strings, MX host, receiving IP and result) and flushes it to the store periodically as ONE
 * write op through the group committer.
 *
 * Why an aggregate and not one store write per attempt: record() is on the relay's hot path and
 * must not wait for (or add to) an fsync; a busy relay makes thousands of attempts to a handful of
 * (domain, MX, result) keys, so a flush carries a few rows however many attempts there were. The
 * price is that a crash loses at most one flush interval of counts (reports are statistics, not
 * promises; RFC 8460 does not ask for more).
 *
 * Invariants: record() is synchronous, O(1), never throws and never touches the store; memory is
 * bounded (maxKeys distinct counters, then an early flush); a failed flush puts its counts back;
 * close() flushes what is left.
 */
import type { TlsRptCount, TlsRptStoreWrites } from '../store/tlsrpt.js';
import type { TlsRptEvent, TlsRptRecorder } from './types.js';

export interface TlsRptCounterOptions {
  /** How often the aggregate goes to the store (default 60 s). */
  flushMs?: number;
  /** Distinct counters held before an early flush (default 10,000). */
  maxKeys?: number;
  /** Called when a flush fails (the counts are kept for the next one). */
  onError?: (err: unknown) => void;
}

/** UTC day of a timestamp, YYYY-MM-DD (RFC 8460 §4.1: reports cover UTC days). */
export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

function keyOf(c: Omit<TlsRptCount, 'count' | 'detail'>): string {
  return JSON.stringify([c.policyDomain, c.day, c.policyType, c.policyStrings, c.mxHost, c.receivingIp, c.result]);
}

/** The TlsRptRecorder the relay is given: counts in memory, flushes to the store. */
export class TlsRptCounter implements TlsRptRecorder {
  private pendingCounts = new Map<string, TlsRptCount>();
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private readonly flushMs: number;
  private readonly maxKeys: number;

  constructor(
    private readonly store: Pick<TlsRptStoreWrites, 'addTlsRptCounts'>,
    private readonly opts: TlsRptCounterOptions = {},
  ) {
    this.flushMs = opts.flushMs ?? 60_000;
    this.maxKeys = opts.maxKeys ?? 10_000;
  }

  /** Starts the periodic flush (the timer does not keep the process alive). */
  start(): this {
    if (this.timer === null) {
      this.timer = setInterval(() => void this.flush(), this.flushMs);
      this.timer.unref();
    }
    return this;
  }

  record(event: TlsRptEvent): void {
    const base = {
      policyDomain: event.policyDomain.toLowerCase().replace(/\.$/, ''),
      day: utcDay(event.at),
      policyType: event.policyType,
      policyStrings: event.policyStrings,
      mxHost: event.mxHost?.toLowerCase().replace(/\.$/, '') ?? '',
      receivingIp: event.receivingIp ?? '',
      result: event.result,
    };
    const key = keyOf(base);
    const c = this.pendingCounts.get(key);
    if (c !== undefined) {
      c.count++;
      if (event.detail !== null) c.detail = event.detail;
      return;
    }
    this.pendingCounts.set(key, { ...base, count: 1, detail: event.detail });
    if (this.pendingCounts.size >= this.maxKeys) void this.flush();
  }

  /** Counts not flushed yet (for `report tls` in the same process, and tests). */
  pending(): TlsRptCount[] {
    return [...this.pendingCounts.values()].map((c) => ({ ...c }));
  }

  /** Writes the aggregate to the store; resolves when committed. Concurrent calls share a flush. */
  async flush(): Promise<void> {
    while (this.flushing !== null) await this.flushing;
    if (this.pendingCounts.size === 0) return;
    const batch = this.pendingCounts;
    this.pendingCounts = new Map();
    this.flushing = this.store.addTlsRptCounts([...batch.values()]).then(
      () => undefined,
      (err: unknown) => {
        // Put the counts back (summed with what came meanwhile) for the next flush.
        for (const [key, c] of batch) {
          const now = this.pendingCounts.get(key);
          if (now === undefined) this.pendingCounts.set(key, c);
          else now.count += c.count;
        }
        this.opts.onError?.(err);
      },
    );
    try {
      await this.flushing;
    } finally {
      this.flushing = null;
    }
  }

  /** Stops the timer and flushes what is left (call before the store closes). */
  async close(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
  }
}
