/**
 * Local delivery targets (issue 12): where mail for a local domain (or one address) goes once it
 * is durably queued. `store` is the built-in mailbox (delivered when accepted); the others hand
 * the message on from the durable queue, with retries, and answer per recipient:
 *   lmtp:HOST:PORT | lmtp:unix:PATH  — RFC 2033, one reply per recipient after DATA;
 *   maildir:DIR                      — DIR/<mailbox>/{tmp,new,cur}, tmp → new rename, fsync'd;
 *   webhook:URL                      — HTTP POST, HMAC-SHA256 signed, 2xx delivered / 4xx failed / else retry.
 *
 * Delivery is at-least-once; the queue id is the idempotency key every target gets (LMTP: in the
 * envelope and our Received header; maildir: in the file name; webhook: a header), so a target
 * can de-duplicate a redelivery after a crash between its "yes" and our record of it.
 */
import type { MessageSummary } from '../types.js';

export type TargetSpec =
  | { kind: 'store' }
  | { kind: 'lmtp'; host: string; port: number }
  | { kind: 'lmtp'; socket: string }
  | { kind: 'maildir'; dir: string }
  | { kind: 'webhook'; url: string };

/** One message handed to a target, for some of its (final, after aliases) local recipients. */
export interface LocalDelivery {
  /** The queue id (message id): the idempotency key. */
  id: string;
  /** Envelope sender ('' for the null sender). */
  mailFrom: string;
  /** Final mailbox addresses, lower-cased; each gets its own outcome. */
  recipients: readonly string[];
  /** The message as stored (our Received header first), CRLF line endings. */
  data: Buffer;
  /** What the store knows of the message (TLS facts, authentication results) for targets that report it. */
  summary: MessageSummary;
}

/** The outcome of one recipient of one delivery attempt. */
export type RecipientOutcome = { recipient: string } & (
  | { outcome: 'delivered' }
  /** Temporary: retried with the queue's backoff. */
  | { outcome: 'deferred'; error: string }
  /** Permanent: bounced to the sender (unless NOTIFY says otherwise). */
  | { outcome: 'failed'; error: string }
);

export interface DeliveryTarget {
  /** Never rejects: every failure is an outcome (one per recipient, in the order given). */
  deliver(msg: LocalDelivery, signal?: AbortSignal): Promise<RecipientOutcome[]>;
}
