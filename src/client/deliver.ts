/**
 * deliver(): one delivery attempt to one host at one TLS level — the function the queue runner,
 * `postseal send` and the checker share. It never throws for network or protocol trouble: the
 * result says what happened, per recipient, with the TLS facts and the transcript.
 *
 * Invariants (ARCHITECTURE.md "The STARTTLS upgrade", client side; tls_level.c semantics):
 * - arguments are checked before connecting: a CR/LF/NUL anywhere means no connection at all;
 * - at encrypt/verify, no MAIL, no AUTH and no content is sent unless TLS is up (and, at verify,
 *   the certificate verified); STARTTLS missing or refused, EHLO refused or a failed handshake
 *   end the attempt with a code;
 * - at may, a refused or absent STARTTLS continues in plaintext on the same connection; a failed
 *   handshake (the connection is gone) retries in plaintext on a NEW connection, never when
 *   credentials are to be sent;
 * - STARTTLS at most once per connection; capabilities from the post-TLS EHLO only;
 * - AUTH never travels in plaintext here (RFC 8314): with credentials and no TLS the attempt fails.
 */
import { SmtpClient, type AuthMechanism } from './client.js';
import { SmtpClientError, type ClientErrorCode } from './errors.js';
import { requiresTls, triesTls, verifiesCert, type TlsLevel, type TlsReached } from './levels.js';
import { checkHeloName, checkMailbox, checkParam, assertNoLineBreak, prepareContent, type BareLineEndings } from './message.js';
import type { ConnectOptions, ReplyLimits, Timeouts } from './options.js';
import { replyText, type Reply } from '../protocol/reply.js';
import type { ClientTlsOptions, TlsSessionInfo } from './tls-session.js';
import { Transcript, type TranscriptEntry } from './transcript.js';

export interface DeliverOptions {
  host: string;
  /** Default 25, or 465 with implicitTls. */
  port?: number;
  /** The name we mean to reach (MX host name): SNI and certificate check. Default `host`. */
  serverName?: string;
  implicitTls?: boolean;
  level: TlsLevel;
  /** Our EHLO name. */
  helo: string;
  from: string;
  to: string[];
  message: Uint8Array | string;
  auth?: { user: string; password: string; mechanism?: AuthMechanism };
  tls?: ClientTlsOptions;
  timeouts?: Partial<Timeouts>;
  limits?: Partial<ReplyLimits>;
  bareLineEndings?: BareLineEndings;
  /** BDAT when CHUNKING is offered. */
  chunking?: boolean;
  requireTls?: boolean;
  mailParams?: string[];
  rcptParams?: string[];
  localAddress?: string;
}

export type RecipientStatus = 'delivered' | 'deferred' | 'failed';

export interface RecipientOutcome {
  address: string;
  status: RecipientStatus;
  reply: Reply | null;
  /** Why, when not delivered (the server reply text or the error). */
  reason: string | null;
}

export type Finding =
  | { kind: 'bytes-after-starttls'; bytes: number; action: 'discarded' }
  | { kind: 'starttls-not-offered' }
  | { kind: 'starttls-refused'; reply: Reply }
  | { kind: 'handshake-failed-plaintext-retry'; reason: string }
  | { kind: 'certificate-not-verified'; reason: string };

export interface DeliveryError {
  code: ClientErrorCode;
  message: string;
  reply: Reply | null;
  permanent: boolean;
}

export interface DeliveryResult {
  /** Every recipient delivered. */
  ok: boolean;
  host: string;
  port: number;
  level: TlsLevel;
  /** What the session achieved. */
  reached: TlsReached;
  tls: TlsSessionInfo | null;
  /** Whole-attempt failure (also set when the server rejected the transaction). */
  error: DeliveryError | null;
  recipients: RecipientOutcome[];
  findings: Finding[];
  transcript: TranscriptEntry[];
  /** TCP connections used (2 after a plaintext retry). */
  connections: number;
}

const CONTINUE = Symbol('continue');

export async function deliver(opts: DeliverOptions): Promise<DeliveryResult> {
  const port = opts.port ?? (opts.implicitTls === true ? 465 : 25);
  const transcript = new Transcript();
  const findings: Finding[] = [];
  const result = (error: SmtpClientError | null, recipients: RecipientOutcome[], tls: TlsSessionInfo | null): DeliveryResult => ({
    ok: error === null && recipients.every((r) => r.status === 'delivered'),
    host: opts.host,
    port,
    level: opts.level,
    reached: tls === null ? 'none' : tls.verified ? 'verify' : 'encrypt',
    tls,
    error: error ? { code: error.code, message: error.message, reply: error.reply, permanent: error.permanent } : null,
    recipients,
    findings,
    transcript: transcript.entries,
    connections: transcript.connection,
  });
  const allFailed = (err: SmtpClientError): RecipientOutcome[] =>
    opts.to.map((address) => ({ address, status: err.permanent ? 'failed' : 'deferred', reply: err.reply, reason: `${err.code}: ${err.message}` }));

  // Nothing goes out (not even a SYN) while an argument could inject a command.
  try {
    checkHeloName(opts.helo);
    checkMailbox(opts.from, 'sender', true);
    for (const to of opts.to) checkMailbox(to, 'recipient');
    for (const p of [...(opts.mailParams ?? []), ...(opts.rcptParams ?? [])]) checkParam(p);
    if (opts.auth) assertNoLineBreak(opts.auth.user, 'AUTH user');
    prepareContent(opts.message, opts.bareLineEndings ?? 'reject');
  } catch (err) {
    const e = toClientError(err);
    return result(e, allFailed(e), null);
  }

  let retryPlain = false;
  for (;;) {
    const attempt = await oneConnection(opts, port, transcript, findings, retryPlain);
    if (attempt === CONTINUE) {
      retryPlain = true;
      transcript.connection++;
      continue;
    }
    const { error, recipients, tls } = attempt;
    return result(error, recipients ?? (error ? allFailed(error) : []), tls);
  }
}

type Attempt = { error: SmtpClientError | null; recipients: RecipientOutcome[] | null; tls: TlsSessionInfo | null } | typeof CONTINUE;

async function oneConnection(opts: DeliverOptions, port: number, transcript: Transcript, findings: Finding[], plainRetry: boolean): Promise<Attempt> {
  const level = opts.level;
  const connect: ConnectOptions = {
    host: opts.host,
    port,
    serverName: opts.serverName ?? opts.host,
    implicitTls: opts.implicitTls === true,
    verifyCertificate: verifiesCert(level),
    tls: opts.tls ?? {},
    timeouts: opts.timeouts ?? {},
    limits: opts.limits ?? {},
    transcript,
  };
  if (opts.localAddress !== undefined) connect.localAddress = opts.localAddress;
  let client: SmtpClient | null = null;
  let tlsInfo: TlsSessionInfo | null = null;
  try {
    client = await SmtpClient.connect(connect);
    tlsInfo = client.tls;
    // HELO only where TLS is not required (a HELO session has no STARTTLS, no extensions).
    await client.ehlo(opts.helo, { heloFallback: !requiresTls(level) || client.tls !== null });
    if (client.tls === null && triesTls(level) && !plainRetry) {
      let st;
      try {
        st = await client.startTls();
      } catch (err) {
        const e = toClientError(err);
        // RFC 7435: at may, a failed handshake may fall back to plaintext, but the connection is
        // gone, so on a new one; never with credentials (they would then travel in clear).
        if (e.code === 'TLS_HANDSHAKE_FAILED' && !requiresTls(level) && !opts.auth) {
          findings.push({ kind: 'handshake-failed-plaintext-retry', reason: e.message });
          transcript.event(`TLS handshake failed at level may: retrying in plaintext on a new connection (${e.message})`, 'plaintext');
          return CONTINUE;
        }
        throw e;
      }
      if (st.kind === 'secured') {
        client = st.client;
        tlsInfo = st.tls;
        if (st.discardedBytes > 0) findings.push({ kind: 'bytes-after-starttls', bytes: st.discardedBytes, action: 'discarded' });
        // RFC 3207 §4.2: forget everything learned before TLS; EHLO again.
        await client.ehlo(opts.helo, { heloFallback: true });
      } else if (st.kind === 'not-offered') {
        findings.push({ kind: 'starttls-not-offered' });
        if (requiresTls(level)) throw new SmtpClientError('TLS_REQUIRED_NOT_OFFERED', `TLS level ${level} and ${opts.host} does not offer STARTTLS`);
      } else {
        findings.push({ kind: 'starttls-refused', reply: st.reply });
        if (requiresTls(level)) throw new SmtpClientError('STARTTLS_REFUSED', `TLS level ${level} and STARTTLS was refused: ${replyText(st.reply)}`, { reply: st.reply });
      }
    }
    if (tlsInfo !== null && !tlsInfo.verified) findings.push({ kind: 'certificate-not-verified', reason: tlsInfo.verifyError ?? 'unknown' });
    if (opts.auth) {
      // Never in plaintext from deliver(): RFC 8314 §3, and the "may" downgrade would leak them.
      await client.auth(opts.auth.user, opts.auth.password, opts.auth.mechanism ? { mechanism: opts.auth.mechanism } : {});
    }
    const sendOpts = { bareLineEndings: opts.bareLineEndings ?? 'reject', chunking: opts.chunking === true } as const;
    const env = { from: opts.from, to: opts.to, mailParams: opts.mailParams ?? [], rcptParams: opts.rcptParams ?? [], requireTls: opts.requireTls === true };
    const tx = await client.send(env, opts.message, sendOpts);
    await client.quit();
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
    return { error, recipients, tls: tlsInfo };
  } catch (err) {
    const e = toClientError(err);
    if (client !== null && client.isOpen) {
      // Polite end where the session still works (refused STARTTLS, rejected AUTH); else drop.
      if (e.code === 'TIMEOUT' || e.code === 'PROTOCOL_ERROR') client.destroy();
      else await client.quit();
    }
    return { error: e, recipients: null, tls: e.tls ?? tlsInfo };
  }
}

function toClientError(err: unknown): SmtpClientError {
  if (err instanceof SmtpClientError) return err;
  return new SmtpClientError('PROTOCOL_ERROR', err instanceof Error ? err.message : String(err), { cause: err });
}
