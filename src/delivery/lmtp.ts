/**
 * The `lmtp` delivery target (issue 12): hands a queued message to an LMTP server (RFC 2033),
 * e.g. Dovecot's lmtp service, over `HOST:PORT` or a Unix socket, through our own SMTP client
 * (client/: reply reading with limits and deadlines, STARTTLS at a TLS level, pipelining,
 * dot-stuffing). LMTP is SMTP with LHLO instead of EHLO and one reply per accepted recipient
 * after the end of data; those replies become the per-recipient outcomes.
 *
 * Invariants:
 * - deliver() never rejects: every failure is a RecipientOutcome, one per recipient, in order;
 * - outcomes come from this recipient's own reply: its RCPT reply when refused there, else its
 *   own end-of-data reply (RFC 2033 §4.2), so one recipient's failure is never the others'
 *   (2xx delivered, 4xx deferred, 5xx failed); a recipient the server answered before the
 *   connection broke keeps that answer, the rest are deferred;
 * - a connection, greeting, LHLO or TLS problem defers every recipient with the reason; an
 *   envelope or message the server can never take (a UTF-8 address without SMTPUTF8, 8-bit content
 *   without 8BITMIME, over SIZE) fails every recipient without a byte of the transaction sent;
 * - every read has a deadline and every reply a size limit (client/options.ts; the end-of-data
 *   replies get the DATA-termination timeout each, 10 min by default, RFC 5321 §4.5.3.2.6);
 * - TLS level (client/levels.ts): default `none` for a Unix socket and a loopback host (the bytes
 *   never leave the machine; Dovecot's lmtp usually has no certificate there), `may` for any other
 *   host; at encrypt/verify no MAIL is sent unless TLS is up (and verified at verify);
 * - idempotency: the queue id is in our Received header (the first line of the data), and is sent
 *   as ENVID= (RFC 3461 §4.4) when the server offers DSN. Dovecot 2.3.19's LMTP does not offer DSN
 *   (LHLO: 8BITMIME CHUNKING ENHANCEDSTATUSCODES PIPELINING) and answers an ENVID= with
 *   `555 5.5.4 Unsupported parameters`, so to Dovecot the id travels in the Received header only.
 */
import { hostname } from 'node:os';
import { isIP } from 'node:net';
import { endSession, openSession, toClientError, Transcript, type ClientTlsOptions, type DeliveryFinding, type ReplyLimits, type SessionOptions, type Timeouts, type TlsLevel } from '../client/index.js';
import type { Reply } from '../protocol/reply.js';
import { replyText } from '../protocol/reply.js';
import { xtext } from '../protocol/dsn.js';
import { isValidHeloName } from '../protocol/command.js';
import type { DeliveryTarget, LocalDelivery, RecipientOutcome, TargetSpec } from './types.js';

export type LmtpSpec = Extract<TargetSpec, { kind: 'lmtp' }>;

export interface LmtpOptions {
  /** TLS level toward the server; default: see defaultLmtpLevel(). */
  level?: TlsLevel;
  /** Trust anchors (PEM) for level verify; replaces the system roots when given. */
  ca?: ClientTlsOptions['ca'];
  /** The name the certificate must carry (and SNI). Default: the host. */
  servername?: string;
  /** Our LHLO name. Default: this machine's host name (or `localhost` if it is not a valid one). */
  lhloName?: string;
  timeouts?: Partial<Timeouts>;
  limits?: Partial<ReplyLimits>;
}

/** What the last deliver() call saw (diagnostics and tests). */
export interface LmtpAttemptInfo {
  transcript: Transcript;
  findings: DeliveryFinding[];
  /** The server offered DSN and the queue id went as ENVID=. */
  envIdSent: boolean;
}

/** `none` for a Unix socket or a loopback host (mail never leaves the machine), `may` otherwise. */
export function defaultLmtpLevel(spec: LmtpSpec): TlsLevel {
  if ('socket' in spec) return 'none';
  return isLoopback(spec.host) ? 'none' : 'may';
}

function isLoopback(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h === '::1' || h === '0:0:0:0:0:0:0:1';
}

/** Errors raised before any byte of the transaction is written that no retry can cure. */
const PERMANENT = new Set(['NOT_SUPPORTED', 'MESSAGE_TOO_BIG', 'INVALID_ARGUMENT', 'CRLF_INJECTION']);

export class LmtpTarget implements DeliveryTarget {
  /** The last attempt's transcript and findings (tests, `postseal queue` details). */
  last: LmtpAttemptInfo | null = null;
  private readonly where: string;
  private readonly level: TlsLevel;
  private readonly helo: string;

  constructor(
    private readonly spec: LmtpSpec,
    private readonly options: LmtpOptions = {},
  ) {
    this.where = 'socket' in spec ? `lmtp:unix:${spec.socket}` : `lmtp:${spec.host.includes(':') ? `[${spec.host}]` : spec.host}:${spec.port}`;
    this.level = options.level ?? defaultLmtpLevel(spec);
    const h = options.lhloName ?? hostname();
    this.helo = isValidHeloName(h) ? h : 'localhost';
  }

  async deliver(msg: LocalDelivery, signal?: AbortSignal): Promise<RecipientOutcome[]> {
    const transcript = new Transcript();
    const findings: DeliveryFinding[] = [];
    const info: LmtpAttemptInfo = { transcript, findings, envIdSent: false };
    this.last = info;
    const all = (outcome: 'deferred' | 'failed', error: string): RecipientOutcome[] => msg.recipients.map((recipient) => ({ recipient, outcome, error }));
    if (msg.recipients.length === 0) return [];
    if (signal?.aborted === true) return all('deferred', `${this.where}: delivery aborted before connecting`);

    const session: SessionOptions = {
      host: 'socket' in this.spec ? 'localhost' : this.spec.host,
      port: 'socket' in this.spec ? 0 : this.spec.port,
      level: this.level,
      helo: this.helo,
      lmtp: true,
      tls: this.options.ca !== undefined ? { ca: this.options.ca } : {},
      timeouts: this.options.timeouts ?? {},
      limits: this.options.limits ?? {},
    };
    if ('socket' in this.spec) session.socketPath = this.spec.socket;
    if (this.options.servername !== undefined) session.serverName = this.options.servername;

    let open = await openSession(session, transcript, findings, false);
    if (open.kind === 'retry-plain') {
      // Level may, failed handshake: plaintext on a new connection (RFC 7435), as for SMTP.
      transcript.connection += 1;
      open = await openSession(session, transcript, findings, true);
    }
    if (open.kind !== 'open') {
      const why = open.kind === 'failed' ? `${open.error.code}: ${open.error.message}` : 'TLS handshake failed twice';
      return all('deferred', `${this.where}: ${why}`);
    }
    const client = open.client;
    const onAbort = (): void => client.destroy();
    signal?.addEventListener('abort', onAbort, { once: true });

    // Replies to the end of data, as they arrive: they survive a connection lost halfway.
    const answered = new Map<string, Reply>();
    let contentStarted = false;
    try {
      const r = await client.send(
        // RFC 3461 §4.4: ENVID carries the queue id; sent only when DSN is offered (transaction.ts).
        { from: msg.mailFrom, to: [...msg.recipients], dsn: { mailParams: [`ENVID=${xtext(msg.id)}`], rcptParams: {} } },
        msg.data,
        {
          lmtp: true,
          // Our stored messages are CRLF already; anything else is fixed rather than bounced at final delivery.
          bareLineEndings: 'normalize',
          onContent: () => {
            contentStarted = true;
          },
          onRecipientData: (address, reply) => answered.set(address, reply),
        },
      );
      info.envIdSent = r.dsnPassed;
      await client.quit();
      return r.recipients.map((rr) => {
        if (rr.accepted && rr.dataReply !== undefined) return fromReply(rr.address, rr.dataReply, `${this.where}: end of data:`);
        if (rr.accepted) return { recipient: rr.address, outcome: 'deferred', error: `${this.where}: no reply to the end of data` };
        const stage = r.mail.code !== 250 ? 'MAIL refused:' : r.recipients.some((x) => x.accepted) ? 'RCPT refused:' : 'RCPT refused (no recipient accepted):';
        return fromReply(rr.address, rr.reply, `${this.where}: ${stage}`);
      });
    } catch (err) {
      const e = toClientError(err);
      await endSession(client, e);
      if (isAborted(signal)) return withAnswers(msg.recipients, answered, this.where, `${this.where}: delivery aborted`);
      if (PERMANENT.has(e.code) && !contentStarted) return all('failed', `${this.where}: ${e.code}: ${e.message}`);
      // After the first octet of content the server may have delivered: deferred (at-least-once;
      // the queue id in our Received header lets the mailbox side de-duplicate).
      const stage = contentStarted ? 'during or after the message content (may have been delivered)' : 'before the message content';
      return withAnswers(msg.recipients, answered, this.where, `${this.where}: ${e.code} ${stage}: ${e.message}`);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }
}

export function createLmtpTarget(spec: LmtpSpec, options: LmtpOptions = {}): LmtpTarget {
  return new LmtpTarget(spec, options);
}

/** Read through a function: TypeScript would keep the narrowing from before the awaits. */
function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted ?? false;
}

/** 2xx delivered, 4xx deferred, 5xx failed (RFC 5321 §4.2.1; RFC 2033 §4.2 per recipient). */
function fromReply(recipient: string, reply: Reply, prefix: string): RecipientOutcome {
  const error = `${prefix} ${replyText(reply)}`;
  if (reply.code >= 200 && reply.code < 300) return { recipient, outcome: 'delivered' };
  if (reply.code >= 500 && reply.code < 600) return { recipient, outcome: 'failed', error };
  return { recipient, outcome: 'deferred', error };
}

/** Recipients answered before the break keep their answer; the others are deferred with `error`. */
function withAnswers(recipients: readonly string[], answered: Map<string, Reply>, where: string, error: string): RecipientOutcome[] {
  return recipients.map((recipient) => {
    const reply = answered.get(recipient);
    return reply !== undefined ? fromReply(recipient, reply, `${where}: end of data:`) : { recipient, outcome: 'deferred', error };
  });
}
