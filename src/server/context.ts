/**
 * What a session needs from the server that owns it: bookkeeping when it ends, and the
 * per-client-IP AUTH failure limiter (shared by all sessions).
 */
import type { Session } from './session.js';

export interface ServerContext {
  sessionEnded(session: Session, reason: string): void;
  readonly authLimiter: AuthLimiter;
}

/**
 * Failed AUTH attempts per client IP in a sliding window. Past the limit the client gets 421 and
 * the connection closes, so password guessing costs a reconnect and is slowed to the window.
 */
export class AuthLimiter {
  private readonly failures = new Map<string, number[]>();
  constructor(private readonly max: number, private readonly windowMs: number) {}

  blocked(ip: string, now = Date.now()): boolean {
    return this.recent(ip, now).length >= this.max;
  }

  fail(ip: string, now = Date.now()): void {
    const list = this.recent(ip, now);
    list.push(now);
    this.failures.set(ip, list);
    if (this.failures.size > 100_000) this.prune(now);
  }

  private recent(ip: string, now: number): number[] {
    const list = this.failures.get(ip);
    if (!list) return [];
    const kept = list.filter((t) => now - t < this.windowMs);
    if (kept.length === 0) this.failures.delete(ip);
    else this.failures.set(ip, kept);
    return kept;
  }

  private prune(now: number): void {
    for (const ip of [...this.failures.keys()]) this.recent(ip, now);
  }
}
