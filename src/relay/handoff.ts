/**
 * The delivery targets the queue runner hands local mailboxes to (issue 12): one DeliveryTarget
 * instance per target spec text (a queue row's `target`), created on first use and reused, with
 * the settings of the config's `delivery` group.
 *
 * Invariants:
 * - a spec that does not parse, or a webhook without a secret, yields no target but a reason, so
 *   the runner records an outcome for every row (never a throw, never a row left leased);
 * - every attempt has a deadline (attemptMs): the runner aborts the call then (each target
 *   turns an abort into `deferred` outcomes), and the runner leases local rows for longer than
 *   the longest deadline (leaseMs), so a row is never claimed twice while an attempt may still run;
 * - what goes back to the sender in a DSN (publicDiagnostic) never carries the target's
 *   internals (a Maildir path, a webhook URL, an LMTP host), only the peer's reply or a plain reason.
 */
import { parseTargetSpec } from '../delivery/target-spec.js';
import { LmtpTarget } from '../delivery/lmtp.js';
import { MaildirTarget } from '../delivery/maildir.js';
import { WebhookTarget } from '../delivery/webhook.js';
import type { DeliveryTarget, TargetSpec } from '../delivery/types.js';
import type { TlsLevel } from '../client/index.js';

export interface HandoffSettings {
  webhook: { secret: string | null; format: 'raw' | 'json'; timeoutMs: number };
  /** level null: lmtp.ts's default (none on loopback and sockets, may elsewhere); ca: PEM text. */
  lmtp: { level: TlsLevel | null; ca: string | null };
}

/** Longest a Maildir delivery may take (local disk; a hung NFS mount is deferred after this). */
export const MAILDIR_ATTEMPT_MS = 120_000;
/** Longest an LMTP delivery may take: the client's 10-minute end-of-data deadline (RFC 5321 §4.5.3.2.6) plus the rest. */
export const LMTP_ATTEMPT_MS = 15 * 60_000;
/** Slack between an attempt's deadline and the lease of its row. */
const LEASE_SLACK_MS = 5_000;

export type Resolved = { ok: true; target: DeliveryTarget; kind: TargetSpec['kind']; attemptMs: number } | { ok: false; kind: string; problem: string };

export class TargetRegistry {
  private readonly cache = new Map<string, Resolved>();

  /** `configured`: the spec texts of the config (delivery.targets); they set the lease. */
  constructor(
    private readonly settings: HandoffSettings,
    configured: readonly string[] = [],
  ) {
    for (const spec of configured) this.get(spec);
  }

  /** The target for a row's spec text (one instance per spec, reused), or why there is none. */
  get(spec: string): Resolved {
    let r = this.cache.get(spec);
    if (r === undefined) {
      r = this.make(spec);
      // Bounded: specs come from the config (and rows queued under an earlier config).
      if (this.cache.size < 1000) this.cache.set(spec, r);
    }
    return r;
  }

  /**
   * How long local rows are leased: longer than the deadline of every configured target's attempt
   * (a short webhook timeout gives a short lease, so rows a crashed process held come back soon).
   */
  leaseMs(): number {
    let longest = 1_000;
    for (const r of this.cache.values()) if (r.ok) longest = Math.max(longest, r.attemptMs);
    return longest + LEASE_SLACK_MS;
  }

  /** The deadline of one attempt to `r`: its own, never past the lease the rows were claimed with. */
  deadlineMs(r: Extract<Resolved, { ok: true }>, leaseMs: number): number {
    return Math.max(1, Math.min(r.attemptMs, leaseMs - LEASE_SLACK_MS));
  }

  private make(text: string): Resolved {
    const p = parseTargetSpec(text);
    if (!p.ok) return { ok: false, kind: 'unknown', problem: `delivery target ${JSON.stringify(text)}: ${p.problem}` };
    const spec = p.spec;
    switch (spec.kind) {
      case 'store':
        return { ok: false, kind: 'store', problem: 'the store target is not a handoff' };
      case 'maildir':
        return { ok: true, kind: 'maildir', target: new MaildirTarget({ dir: spec.dir }), attemptMs: MAILDIR_ATTEMPT_MS };
      case 'lmtp': {
        const l = this.settings.lmtp;
        return { ok: true, kind: 'lmtp', target: new LmtpTarget(spec, { ...(l.level !== null ? { level: l.level } : {}), ...(l.ca !== null ? { ca: l.ca } : {}) }), attemptMs: LMTP_ATTEMPT_MS };
      }
      case 'webhook': {
        const w = this.settings.webhook;
        // Never an unsigned call: serve refuses to start without a secret; a row queued under
        // an earlier config waits (deferred) until one is configured.
        if (w.secret === null || w.secret === '') return { ok: false, kind: 'webhook', problem: 'webhook: delivery.webhook.secret is not set' };
        return { ok: true, kind: 'webhook', target: new WebhookTarget({ url: spec.url, secret: w.secret, format: w.format, timeoutMs: w.timeoutMs }), attemptMs: w.timeoutMs + 1_000 };
      }
    }
  }
}

/** The enhanced status code (RFC 3463) in a target's error text, e.g. an LMTP reply's `5.2.2`. */
export function enhancedOf(error: string): string | null {
  return /\b([245]\.\d{1,3}\.\d{1,3})\b/.exec(error)?.[1] ?? null;
}

/**
 * The Diagnostic-Code text of a DSN for a handoff: the peer's SMTP/LMTP reply or HTTP status when
 * there is one, else a plain reason. The full error (with paths and URLs) stays in the queue's
 * attempt history for the operator; the sender of the mail is told no internals.
 */
export function publicDiagnostic(kind: string, outcome: 'delivered' | 'deferred' | 'failed', error: string | null): string {
  if (outcome === 'delivered') return '250 2.0.0 delivered to mailbox';
  const text = error ?? '';
  const reply = /\b([245]\d\d(?: [245]\.\d{1,3}\.\d{1,3})? .*)$/.exec(text.replace(/[\r\n]+/g, ' '))?.[1];
  if (kind === 'lmtp' && reply !== undefined) return reply.slice(0, 300);
  const http = /: HTTP (\d{3})\b/.exec(text)?.[1];
  if (kind === 'webhook' && http !== undefined) return `the mailbox's application answered HTTP ${http}`;
  return outcome === 'failed' ? 'delivery to the mailbox failed' : 'delivery to the mailbox is delayed';
}
