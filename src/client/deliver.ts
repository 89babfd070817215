/**
 * deliver() and deliverBatch(): delivery attempts to one host at one TLS level — the functions
 * the queue runner, `postseal send` and the checker share. They never throw for network or
 * protocol trouble: each message's result says what happened, per recipient, with the TLS facts
 * and the transcript. The TLS-level rules (connect, EHLO, STARTTLS, EHLO, AUTH) are session.ts.
 *
 * deliverBatch() sends several messages over one connection (connection reuse, like Postfix's
 * smtp_connection_cache): one session, then one transaction per message, RSET between when the
 * last one was left half-open, QUIT after at most `maxPerConnection` messages.
 *
 * Invariants:
 * - arguments are checked before connecting: a CR/LF/NUL anywhere means no connection at all
 *   (for one message: that message is failed and never sent; the others go);
 * - every message gets exactly one result, and each of its recipients its own outcome;
 * - a message is sent again on a new connection only when the old one was lost (or answered 421)
 *   before the first octet of its content was written, and only when an earlier message on that
 *   connection went through (so every connection settles at least one message); a message whose
 *   content was under way when the connection was lost is deferred, never counted as delivered;
 * - everything of session.ts: at encrypt/verify nothing of a message leaves without the TLS the
 *   level asks for, on every connection of the batch.
 */
import { SmtpClient } from './client.js';
import { SmtpClientError, type ClientErrorCode } from './errors.js';
import { usesDane, type TlsLevel, type TlsReached } from './levels.js';
import { tlsaUnusable } from '../tls/dane.js';
import { checkHeloName, checkMailbox, checkParam, assertNoLineBreak, prepareContent, type BareLineEndings } from './message.js';
import { replyText, type Reply } from '../protocol/reply.js';
import { endSession, openSession, portOf, toClientError, type DeliveryFinding, type SessionAttempt, type SessionOptions } from './open-session.js';
import type { TlsSessionInfo } from './tls-session.js';
import type { SendEnvelope, TransactionResult } from './transaction.js';
import { Transcript, type TranscriptEntry } from './transcript.js';

export type { DeliveryFinding, SessionOptions } from './open-session.js';

/** What goes with each message rather than with the connection. */
export interface BatchMessage {
  /** Reverse path without brackets; '' is the null sender. */
  from: string;
  to: string[];
  message: Uint8Array | string;
  requireTls?: boolean;
  mailParams?: string[];
  rcptParams?: string[];
  /** RFC 3461 parameters, passed on only to a server that offers DSN (transaction.ts). */
  dsn?: SendEnvelope['dsn'];
}

export interface DeliverOptions extends SessionOptions, BatchMessage {
  bareLineEndings?: BareLineEndings;
  /** BDAT when CHUNKING is offered. */
  chunking?: boolean;
}

export interface BatchOptions extends SessionOptions {
  bareLineEndings?: BareLineEndings;
  /** BDAT when CHUNKING is offered. */
  chunking?: boolean;
  /** Most messages over one connection before QUIT and a new one (default 100). */
  maxPerConnection?: number;
  /**
   * Called once per message as soon as its result is final: after the server's reply to its end
   * of data (or its failure), before anything of the next message (RSET, MAIL FROM) is sent —
   * and awaited, so a caller can commit the outcome to durable storage first (the queue runner
   * does: a node that dies mid-batch then re-sends only the messages it had not recorded). The
   * result is the one deliverBatch() returns for the message, with the transcript as far as it
   * went then. A message sent again on a new connection (lost before its content) is reported
   * once, after that attempt. Should the callback throw, no further message is sent, the
   * connection is closed and deliverBatch() rejects with that error.
   */
  onResult?: (index: number, result: DeliveryResult) => void | Promise<void>;
}

export const DEFAULT_MAX_PER_CONNECTION = 100;

export type RecipientStatus = 'delivered' | 'deferred' | 'failed';

export interface RecipientOutcome {
  address: string;
  status: RecipientStatus;
  reply: Reply | null;
  /** Why, when not delivered (the server reply text or the error). */
  reason: string | null;
}

export interface DeliveryError {
  code: ClientErrorCode;
  message: string;
  reply: Reply | null;
  permanent: boolean;
}

export interface DeliveryResult {
  /** Every recipient delivered. */
  ok: boolean;
  /** The address (or name) connected to. */
  host: string;
  /** The name the host was reached by (the MX name; SNI and certificate check): `serverName ?? host`. */
  serverName: string;
  port: number;
  level: TlsLevel;
  /** What the session achieved. */
  reached: TlsReached;
  tls: TlsSessionInfo | null;
  /** Whole-attempt failure (also set when the server rejected the transaction). */
  error: DeliveryError | null;
  recipients: RecipientOutcome[];
  findings: DeliveryFinding[];
  /** The conversation on the connection(s) this message used (in a batch: with the others' transactions). */
  transcript: TranscriptEntry[];
  /** TCP connections this message used (2 after a plaintext retry or a reconnect; 0 when refused before connecting). */
  connections: number;
  /** The DSN parameters went to the server that answered the transaction (it offers DSN). */
  dsnPassed: boolean;
}

export interface BatchResult {
  /** One per message, in the order given. */
  results: DeliveryResult[];
  /** TCP connections opened for the whole batch. */
  connections: number;
  transcript: TranscriptEntry[];
}

/** One message, one attempt: deliverBatch() with a batch of one. */
export async function deliver(opts: DeliverOptions): Promise<DeliveryResult> {
  const { from, to, message, requireTls, mailParams, rcptParams, dsn, ...session } = opts;
  const b = await deliverBatch({ ...session, maxPerConnection: 1 }, [{ from, to, message, requireTls, mailParams, rcptParams, dsn }]);
  const r = b.results[0];
  if (r === undefined) throw new Error('deliverBatch returned no result for the message');
  return r;
}

/** Errors thrown by a transaction before it wrote anything: the message fails, the connection stays usable. */
const MESSAGE_ONLY: ReadonlySet<ClientErrorCode> = new Set<ClientErrorCode>(['CRLF_INJECTION', 'INVALID_ARGUMENT', 'BARE_LINE_ENDING', 'NOT_SUPPORTED', 'MESSAGE_TOO_BIG', 'REQUIRETLS_NOT_SUPPORTED']);

interface Settled {
  error: SmtpClientError | null;
  recipients: RecipientOutcome[] | null;
  tls: TlsSessionInfo | null;
  findings: DeliveryFinding[];
  conns: number[];
  dsnPassed?: boolean;
}

export async function deliverBatch(opts: BatchOptions, messages: BatchMessage[]): Promise<BatchResult> {
  const port = portOf(opts);
  const transcript = new Transcript();
  const max = Math.max(1, Math.floor(opts.maxPerConnection ?? DEFAULT_MAX_PER_CONNECTION));
  const bare = opts.bareLineEndings ?? 'reject';
  const settled: Array<Settled | null> = messages.map(() => null);
  const settle = (i: number, s: Settled): void => {
    settled[i] = s;
  };
  let connections = 0;
  const resultOf = (m: BatchMessage, i: number): DeliveryResult => {
    const s = settled[i] ?? { error: new SmtpClientError('PROTOCOL_ERROR', 'message not attempted'), recipients: null, tls: null, findings: [], conns: [] };
    const err = s.error;
    const recipients =
      s.recipients ??
      (err ? m.to.map((address): RecipientOutcome => ({ address, status: err.permanent ? 'failed' : 'deferred', reply: err.reply, reason: `${err.code}: ${err.message}` })) : []);
    const entries = transcript.entries;
    return {
      ok: err === null && recipients.every((r) => r.status === 'delivered'),
      host: opts.host,
      serverName: opts.serverName ?? opts.host,
      port,
      level: opts.level,
      reached: s.tls === null ? 'none' : s.tls.dane !== null ? 'dane' : s.tls.verified ? 'verify' : 'encrypt',
      tls: s.tls,
      error: err ? { code: err.code, message: err.message, reply: err.reply, permanent: err.permanent } : null,
      recipients,
      findings: [...s.findings],
      transcript: s.conns.length === connections ? entries : entries.filter((e) => s.conns.includes(e.connection)),
      connections: s.conns.length,
      dsnPassed: s.dsnPassed === true,
    };
  };
  // opts.onResult: each message reported once, in the order its outcome became final; a throw
  // stops the batch (stopped) and is rethrown once the connection is closed.
  const reported: boolean[] = messages.map(() => false);
  // (a cast, not an annotation: the callback sets it, so flow analysis must not narrow it to null)
  let stopped = null as { error: unknown } | null;
  const report = async (i: number): Promise<void> => {
    const m = messages[i];
    if (opts.onResult === undefined || stopped !== null || reported[i] === true || m === undefined) return;
    reported[i] = true;
    const r = resultOf(m, i);
    try {
      // A snapshot: later lines of the same connection (QUIT) are not the message's.
      await opts.onResult(i, { ...r, transcript: [...r.transcript] });
    } catch (err) {
      stopped = { error: err };
    }
  };

  // Nothing goes out (not even a SYN) while an argument could inject a command.
  let shared: SmtpClientError | null = null;
  try {
    checkHeloName(opts.helo);
    if (opts.auth) assertNoLineBreak(opts.auth.user, 'AUTH user');
    // Level dane without a usable TLSA record could authenticate nobody: no connection at all.
    if (usesDane(opts.level) && !(opts.dane?.tlsa ?? []).some((r) => tlsaUnusable(r) === null)) {
      throw new SmtpClientError('TLS_DANE_FAILED', `TLS level dane for ${opts.serverName ?? opts.host} without a usable TLSA record (RFC 7672 §3.1.3)`);
    }
  } catch (err) {
    shared = toClientError(err);
  }
  const pending: number[] = [];
  messages.forEach((m, i) => {
    try {
      if (shared) throw shared;
      checkMailbox(m.from, 'sender', true);
      for (const to of m.to) checkMailbox(to, 'recipient');
      for (const p of [...(m.mailParams ?? []), ...(m.rcptParams ?? [])]) checkParam(p);
      prepareContent(m.message, bare);
      pending.push(i);
    } catch (err) {
      settle(i, { error: toClientError(err), recipients: null, tls: null, findings: [], conns: [] });
    }
  });
  for (let i = 0; i < messages.length; i++) if (settled[i] !== null) await report(i);

  while (pending.length > 0 && stopped === null) {
    // One session: connect, EHLO, STARTTLS at the level, EHLO (session.ts).
    if (connections > 0) transcript.connection++;
    connections++;
    const conns = [transcript.connection];
    const findings: DeliveryFinding[] = [];
    let s: SessionAttempt = await openSession(opts, transcript, findings, false);
    if (s.kind === 'retry-plain') {
      transcript.connection++;
      connections++;
      conns.push(transcript.connection);
      s = await openSession(opts, transcript, findings, true);
    }
    if (s.kind !== 'open') {
      const error = s.kind === 'failed' ? s.error : new SmtpClientError('PROTOCOL_ERROR', 'plaintext retry asked for twice');
      const tls = s.kind === 'failed' ? s.tls : null;
      // The next connection would meet the same fate: every message still waiting gets this outcome.
      const failed = pending.splice(0);
      for (const i of failed) settle(i, { error, recipients: null, tls, findings, conns });
      for (const i of failed) await report(i);
      break;
    }
    const client: SmtpClient = s.client;
    const tls = s.tls;
    let used = 0;
    let needRset = false;
    let lost: SmtpClientError | null = null;
    let lostOnFirst = false;
    while (lost === null && used < max && pending.length > 0 && stopped === null) {
      const i = pending[0];
      const m = i === undefined ? undefined : messages[i];
      if (i === undefined || m === undefined) break;
      let contentStarted = false;
      // Set when this message's outcome is final: reported (awaited) before the next RSET/MAIL.
      let done = false;
      try {
        if (needRset) {
          // RFC 5321 §4.1.1.5: clear what the last transaction left behind before the next MAIL.
          const r = await client.rset();
          needRset = false;
          if (r.code !== 250) {
            lost = new SmtpClientError('REJECTED', `RSET refused: ${replyText(r)}`, { reply: r });
            break;
          }
        }
        const tx = await client.send(
          { from: m.from, to: m.to, mailParams: m.mailParams ?? [], rcptParams: m.rcptParams ?? [], requireTls: m.requireTls === true, ...(m.dsn ? { dsn: m.dsn } : {}) },
          m.message,
          { bareLineEndings: bare, chunking: opts.chunking === true, onContent: () => (contentStarted = true) },
        );
        const closing = serverClosing(tx);
        if (closing !== null) lost = new SmtpClientError('REJECTED', `server closing the connection: ${replyText(closing)}`, { reply: closing });
        // RFC 5321 §3.8: 421 to MAIL on a reused connection: nothing of this message was taken,
        // it goes on the next connection.
        if (closing !== null && tx.mail.code === 421 && used > 0) break;
        lostOnFirst = lost !== null && used === 0;
        pending.shift();
        used++;
        settle(i, { ...outcomeOf(tx), tls, findings, conns, dsnPassed: tx.dsnPassed });
        done = true;
        // After a 2xx end of data the server has reset (RFC 5321 §4.1.1.4); after a refused DATA
        // or BDAT the envelope may still be open. (sendTransaction itself RSETs when no RCPT passed.)
        needRset = tx.mail.code === 250 && tx.data !== null && (tx.data.code < 200 || tx.data.code >= 300);
      } catch (err) {
        const e = toClientError(err);
        if (MESSAGE_ONLY.has(e.code)) {
          pending.shift();
          used++;
          settle(i, { error: e, recipients: null, tls, findings, conns });
          done = true;
        } else {
          lost = e;
          // Lost before any of its content left, after an earlier message got through: next connection.
          if (used > 0 && !contentStarted) break;
          lostOnFirst = used === 0;
          pending.shift();
          used++;
          settle(i, { error: e, recipients: null, tls, findings, conns });
          done = true;
        }
      }
      // Outside the try: the callback's own failure is not the connection's (report catches it).
      if (done) await report(i);
    }
    if (lost === null) {
      await client.quit();
      continue;
    }
    transcript.event(`connection ended after ${used} message(s): ${lost.message}`, client.phase);
    await endSession(client, lost);
    if (lostOnFirst) {
      // Lost on its first transaction: the server is not taking mail now, so the rest wait too
      // (and every connection of a batch settles at least one message: no endless reconnecting).
      const waiting = pending.splice(0);
      for (const i of waiting) settle(i, { error: lost, recipients: null, tls, findings, conns });
      for (const i of waiting) await report(i);
    }
  }
  // Every message has been settled above; one that was not still gets its (final) report.
  for (let i = 0; i < messages.length && stopped === null; i++) await report(i);
  if (stopped !== null) throw stopped.error;

  const results = messages.map((m, i): DeliveryResult => resultOf(m, i));
  return { results, connections, transcript: transcript.entries };
}

/** A 421 anywhere in the transaction: RFC 5321 §3.8, the server is closing the channel. */
function serverClosing(tx: TransactionResult): Reply | null {
  if (tx.mail.code === 421) return tx.mail;
  for (const r of tx.recipients) if (r.reply.code === 421) return r.reply;
  return tx.data !== null && tx.data.code === 421 ? tx.data : null;
}

function outcomeOf(tx: TransactionResult): { error: SmtpClientError | null; recipients: RecipientOutcome[] } {
  const recipients: RecipientOutcome[] = tx.recipients.map((r) => {
    if (r.delivered) return { address: r.address, status: 'delivered', reply: tx.data, reason: null };
    const reply = r.accepted ? (tx.data ?? r.reply) : r.reply;
    return { address: r.address, status: reply.code >= 500 ? 'failed' : 'deferred', reply, reason: replyText(reply) };
  });
  let error: SmtpClientError | null = null;
  if (tx.delivered.length === 0) {
    const reply = tx.mail.code !== 250 ? tx.mail : (tx.data ?? recipients[0]?.reply ?? tx.mail);
    error = new SmtpClientError('REJECTED', `not delivered: ${replyText(reply)}`, { reply });
  }
  return { error, recipients };
}
