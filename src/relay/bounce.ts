/**
 * Delivery status notifications (bounces): RFC 3464 message/delivery-status inside an RFC 6522
 * multipart/report, sent from the null reverse-path (RFC 5321 §4.5.5) so a bounce never bounces.
 *
 * Invariants: no bounce for a message whose sender was null; the original message is returned as
 * headers only (text/rfc822-headers, RFC 6522 §4), and whole (message/rfc822) only in a failure DSN
 * for a message sent with RET=FULL (RFC 3461 §4.3) that is no larger than the size limit
 * (Postfix bounce_size_limit; above it headers only, and the text says so); every line ends in
 * CRLF and no header takes a CR or LF from the original (a bounce cannot be used to inject
 * headers). Which recipients get a DSN at all (NOTIFY, RFC 3461 §4.1) is the caller's decision
 * (the runner's for queued recipients, localSuccessReport's for local mailboxes).
 */
import { randomBytes } from 'node:crypto';
import { rfc5322Date } from '../protocol/date.js';

export interface FailedRecipient {
  recipient: string;
  /** RFC 3463 status, e.g. '5.1.1'; '4.4.7' for expiry. */
  status: string;
  /**
   * RFC 3464 §2.3.3: 'failed' for a bounce, 'delayed' for a warning, 'delivered'/'relayed' for a
   * success DSN (relayed: handed to a server that does not take DSN requests on, RFC 3461 §4.1).
   */
  action: 'failed' | 'delayed' | 'delivered' | 'relayed';
  /** RFC 3461 §4.2 ORCPT as 'addr-type;address', or null. */
  orcpt?: string | null;
  /** The remote MTA that answered, by the name it was reached by (the MX host name), if any. */
  remoteMta: string | null;
  /** The SMTP reply text ('550 5.1.1 no such user') or our own reason. */
  diagnostic: string;
  lastAttempt: Date;
}

export interface BounceInput {
  reportingMta: string;
  originalSender: string;
  originalId: string;
  arrivalDate: Date;
  /** The original message bytes (only its header section is returned). */
  original: Uint8Array;
  recipients: FailedRecipient[];
  /** RFC 3461 §4.4 ENVID (decoded), echoed as Original-Envelope-Id. */
  envId?: string | null;
  /** RFC 3461 §4.3: FULL returns the whole original in a failure DSN; otherwise headers only. */
  ret?: 'FULL' | 'HDRS' | null;
  /**
   * Largest original (bytes) returned whole for RET=FULL; a larger one is returned as headers
   * only (config relay.bounceSizeLimit). Absent: BOUNCE_SIZE_LIMIT.
   */
  sizeLimit?: number;
  now?: Date;
}

/** Postfix's bounce_size_limit default: above it a RET=FULL bounce carries the headers only. */
export const BOUNCE_SIZE_LIMIT = 50_000;

function clean(s: string): string {
  return s.replace(/[\r\n\x00]+/g, ' ').slice(0, 998);
}

/** The header section of a message (up to the first empty line), capped at 64 KiB. */
export function headerSection(msg: Uint8Array): string {
  const text = Buffer.from(msg.subarray(0, Math.min(msg.length, 65536))).toString('utf8');
  const end = text.indexOf('\r\n\r\n');
  return end >= 0 ? text.slice(0, end + 2) : text.endsWith('\r\n') ? text : text + '\r\n';
}

/** Returns the bounce message, or null when none may be sent (null sender). */
export function buildBounce(b: BounceInput): { mailFrom: ''; to: string; data: Buffer } | null {
  if (b.originalSender === '') return null; // RFC 5321 §4.5.5: never bounce a bounce
  const now = b.now ?? new Date();
  const boundary = `postseal-${randomBytes(9).toString('base64url')}`;
  const failed = b.recipients.filter((r) => r.action === 'failed');
  const delayed = b.recipients.some((r) => r.action === 'delayed');
  const subject = failed.length > 0 ? 'Undelivered Mail Returned to Sender' : delayed ? 'Delayed Mail (still being retried)' : 'Successful Mail Delivery Report';
  const wantsFull = failed.length > 0 && b.ret === 'FULL';
  // RFC 3461 §4.3 lets the MTA return less than asked; a 30 MiB original would make a 30 MiB
  // bounce, so above the limit the headers are returned (RFC 6522 text/rfc822-headers).
  const tooLarge = wantsFull && b.original.byteLength > (b.sizeLimit ?? BOUNCE_SIZE_LIMIT);
  const full = wantsFull && !tooLarge;
  const lines: string[] = [
    `From: Mail Delivery System <MAILER-DAEMON@${b.reportingMta}>`,
    `To: <${clean(b.originalSender)}>`,
    `Subject: ${subject}`,
    `Date: ${rfc5322Date(now)}`,
    `Message-ID: <${randomBytes(12).toString('hex')}@${b.reportingMta}>`,
    'Auto-Submitted: auto-replied', // RFC 3834 §5
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
    '',
    'This is a MIME-encapsulated message.',
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset=utf-8',
    '',
    `This is the mail system at ${b.reportingMta}.`,
    '',
    failed.length > 0
      ? `Your message could not be delivered to one or more recipients. It has been returned below${full ? '' : ' (headers only)'}.` +
        (tooLarge ? ` The message (${b.original.byteLength} bytes) is larger than the limit of ${b.sizeLimit ?? BOUNCE_SIZE_LIMIT} bytes for returning it whole.` : '')
      : delayed
        ? 'Your message has not been delivered yet to one or more recipients. Delivery will be retried.'
        : 'Your message has been delivered (or relayed onward) to the recipients below.',
    '',
    ...b.recipients.map((r) => `<${clean(r.recipient)}>: ${clean(r.diagnostic)}`),
    '',
    `--${boundary}`,
    'Content-Type: message/delivery-status',
    '',
    // RFC 3464 §2.2: per-message fields.
    `Reporting-MTA: dns; ${b.reportingMta}`,
    // RFC 3464 §2.2.1 / RFC 3461 §4.4: the ENVID, decoded from xtext.
    ...(b.envId ? [`Original-Envelope-Id: ${clean(b.envId)}`] : []),
    `X-Postseal-Queue-ID: ${clean(b.originalId)}`,
    `Arrival-Date: ${rfc5322Date(b.arrivalDate)}`,
  ];
  for (const r of b.recipients) {
    // RFC 3464 §2.3: per-recipient fields, each group preceded by a blank line.
    lines.push('');
    // RFC 3464 §2.3.1 / RFC 3461 §4.2: Original-Recipient from ORCPT ('addr-type; address').
    if (r.orcpt) lines.push(`Original-Recipient: ${clean(r.orcpt.replace(';', '; '))}`);
    lines.push(`Final-Recipient: rfc822; ${clean(r.recipient)}`, `Action: ${r.action}`, `Status: ${clean(r.status)}`);
    // RFC 3464 §2.3.5: Remote-MTA names the MTA; 'dns' type, so the host name, not an address.
    if (r.remoteMta) lines.push(`Remote-MTA: dns; ${clean(r.remoteMta)}`);
    lines.push(`Diagnostic-Code: smtp; ${clean(r.diagnostic)}`, `Last-Attempt-Date: ${rfc5322Date(r.lastAttempt)}`);
  }
  lines.push('', `--${boundary}`, `Content-Type: ${full ? 'message/rfc822' : 'text/rfc822-headers'}`, '');
  const head = Buffer.from(lines.join('\r\n') + '\r\n', 'utf8');
  const returned = full ? withFinalCrlf(b.original) : Buffer.from(headerSection(b.original), 'utf8');
  return { mailFrom: '', to: b.originalSender, data: Buffer.concat([head, returned, Buffer.from(`\r\n--${boundary}--\r\n`, 'utf8')]) };
}

function withFinalCrlf(msg: Uint8Array): Buffer {
  const buf = Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength);
  return buf.length >= 2 && buf[buf.length - 2] === 13 && buf[buf.length - 1] === 10 ? buf : Buffer.concat([buf, Buffer.from('\r\n')]);
}
