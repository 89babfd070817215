/**
 * When to try a deferred recipient again, and when to give up (Postfix's minimal_backoff_time,
 * maximal_backoff_time and maximal_queue_lifetime; RFC 5321 §4.5.4.1 asks for at least 30 minutes
 * between retries to one destination in general and a give-up time of at least 4–5 days).
 */

export interface RetryPolicy {
  /** First retry delay. */
  minBackoffMs: number;
  /** The delay doubles per attempt up to this. */
  maxBackoffMs: number;
  /** A message older than this is bounced instead of retried. */
  maxAgeMs: number;
}

// The defaults (5 min, 4 h, 5 days) are the config schema's relay.minBackoffMs, maxBackoffMs and
// maxQueueAgeMs (src/config/schema.ts): one place, DEFAULT_RELAY.retry in config.ts.

/**
 * The next attempt time after `attempts` failed attempts, or null when the message has been in
 * the queue longer than maxAgeMs and must be bounced. `random` in [0,1) spreads retries (±10%).
 */
export function nextAttempt(policy: RetryPolicy, attempts: number, receivedAt: Date, now: Date, random = Math.random()): Date | null {
  const age = now.getTime() - receivedAt.getTime();
  if (age >= policy.maxAgeMs) return null;
  const exp = Math.min(policy.maxBackoffMs, policy.minBackoffMs * 2 ** Math.max(0, Math.min(30, attempts - 1)));
  const jittered = exp * (0.9 + 0.2 * random);
  const at = now.getTime() + jittered;
  // Never schedule past the give-up time: the last try happens at the deadline.
  return new Date(Math.min(at, receivedAt.getTime() + policy.maxAgeMs));
}
