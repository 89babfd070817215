/**
 * Success DSNs for recipients delivered to a local mailbox (RFC 3461 §5.2.2, RFC 3464): the
 * built-in store delivers when it accepts, so the report is made right then, from the accepted
 * message and its envelope.
 *
 * Invariants: a report only for local recipients whose NOTIFY included SUCCESS (the default,
 * no NOTIFY, asks for failures only: RFC 3461 §4.1) and not forwarded by an alias (its external
 * targets carry the NOTIFY on and are reported by the runner); never one for a null sender (RFC 3461 §6.2,
 * RFC 5321 §4.5.5); one report per message listing every such recipient, with Action: delivered,
 * the ENVID and each ORCPT; the original is returned as headers only (RFC 3461 §4.3: RET applies
 * to failure DSNs); the returned message comes from the null sender and goes to a mailbox when
 * the sender is local, else to the queue; it is DKIM-signed once, when made, like a bounce;
 * RCPTs whose mailboxes are handed to a delivery target (issue 12: LMTP, Maildir, webhook) get
 * no report here: they are not delivered yet, and the runner reports them (Action: delivered)
 * once the target has taken them — one report, never two.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { signedGeneratedMessage, type GeneratedSigner } from '../store/generated.js';
import { domainOf, normalizeAddress } from '../store/index.js';
import type { IncomingMessage } from '../types.js';
import { buildBounce, type FailedRecipient } from './bounce.js';

/** How much of the original a success report needs: its header section (bounce.ts reads 64 KiB). */
const HEAD_BYTES = 65536;

export interface LocalReportContext {
  /** Our name: Reporting-MTA and the From of the report. */
  hostname: string;
  localDomains: readonly string[];
  /** Where spooled bodies live (`<dataDir>/bodies`), to read a large message's header section. */
  spoolDir: string | null;
  /** DKIM-signs the report (auth/dkim-own.ts, as bounces are); absent: unsigned. */
  sign?: GeneratedSigner | null;
  /** RCPTs (normalized) with a mailbox handed to a delivery target: reported by the runner instead. */
  handedOff?: ReadonlySet<string>;
  now?: Date;
}

/**
 * The success report for `msg` (accepted with id `id`), or null when none is owed. The caller
 * stores it before answering 250 to the message, so the report is as durable as the delivery.
 */
export async function localSuccessReport(msg: IncomingMessage, id: string, ctx: LocalReportContext): Promise<IncomingMessage | null> {
  // RFC 3461 §6.2 / RFC 5321 §4.5.5: never a DSN for a message from the null reverse-path.
  if (msg.mailFrom === '' || msg.localRecipients.length === 0) return null;
  const dsn = msg.recipientDsn ?? {};
  // RCPTs an alias expanded to external targets: those targets are queued with this RCPT's
  // NOTIFY and ORCPT (server/commands.ts), so the runner reports them (relayed, or passed on);
  // a 'delivered' report here as well would be a second, contradicting one.
  const forwarded = new Set(Object.values(msg.forwardedFrom ?? {}).map((a) => a.toLowerCase()));
  const now = ctx.now ?? new Date();
  const seen = new Set<string>();
  const delivered: FailedRecipient[] = [];
  for (const rcpt of msg.localRecipients) {
    const d = Object.hasOwn(dsn, rcpt) ? dsn[rcpt] : undefined;
    // RFC 3461 §4.1: SUCCESS asks for a report on successful delivery; NEVER/absent do not.
    if (!d?.notify?.includes('SUCCESS')) continue;
    const key = normalizeAddress(rcpt);
    if (forwarded.has(key)) continue;
    if (ctx.handedOff?.has(key) === true) continue;
    if (seen.has(key)) continue;
    seen.add(key);
    // RFC 3464 §2.3.3: 'delivered' — put in the recipient's mailbox (final delivery).
    delivered.push({ recipient: rcpt, orcpt: d.orcpt, status: '2.0.0', action: 'delivered', remoteMta: null, diagnostic: '250 2.0.0 delivered to mailbox', lastAttempt: now });
  }
  if (delivered.length === 0) return null;
  const b = buildBounce({
    reportingMta: ctx.hostname,
    originalSender: msg.mailFrom,
    originalId: id,
    arrivalDate: msg.receivedAt,
    original: messageHead(msg, ctx.spoolDir),
    recipients: delivered,
    envId: msg.envId,
    ret: msg.ret,
    now,
  });
  if (!b) return null;
  const local = ctx.localDomains.includes(domainOf(b.to));
  return signedGeneratedMessage({ origin: 'dsn', from: '', to: b.to, local, data: b.data, hostname: ctx.hostname, now }, ctx.sign);
}

/** The first HEAD_BYTES of the message: its inline pieces, then (spooled) the start of its file. */
function messageHead(msg: IncomingMessage, spoolDir: string | null): Uint8Array {
  const parts = msg.data instanceof Uint8Array ? [msg.data] : [...msg.data];
  let inline = Buffer.concat(parts);
  if (inline.length >= HEAD_BYTES || !msg.spooled || spoolDir === null) return inline.subarray(0, HEAD_BYTES);
  const want = HEAD_BYTES - inline.length;
  const buf = Buffer.alloc(want);
  let fd: number | null = null;
  try {
    fd = openSync(join(spoolDir, msg.spooled.file), 'r');
    const n = readSync(fd, buf, 0, want, 0);
    inline = Buffer.concat([inline, buf.subarray(0, n)]);
  } catch {
    // The header section of the inline part (our Received header) is still a usable report.
  } finally {
    if (fd !== null) closeSync(fd);
  }
  return inline;
}
