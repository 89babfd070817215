/**
 * openSession(): one connection made ready for mail transactions at one TLS level — connect,
 * greeting, EHLO, STARTTLS as the level asks, EHLO again inside TLS, AUTH. deliver() and
 * deliverBatch() share it, so the TLS-level rules live in this one place.
 *
 * Invariants (ARCHITECTURE.md "The STARTTLS upgrade", client side; tls_level.c semantics):
 * - at encrypt/verify/dane, the session is handed out only with TLS up (and, at verify, the
 *   certificate PKIX-verified; at dane, matched by a TLSA record, RFC 7672 §3.1); STARTTLS missing or refused, EHLO refused or a failed handshake end
 *   the attempt with a code, before any MAIL, AUTH or content;
 * - at may, a refused or absent STARTTLS continues in plaintext on the same connection; a failed
 *   handshake (the connection is gone) asks the caller for a NEW plaintext connection
 *   (`retry-plain`), never when credentials are to be sent;
 * - STARTTLS at most once per connection; capabilities from the post-TLS EHLO only;
 * - AUTH never travels in plaintext here (RFC 8314): with credentials and no TLS the attempt fails.
 * It never throws: failures come back as `{ kind: 'failed' }` with the connection closed.
 */
import { SmtpClient, type AuthMechanism } from './client.js';
import { SmtpClientError } from './errors.js';
import { checksPkix, requiresTls, triesTls, usesDane, type TlsLevel } from './levels.js';
import type { ConnectOptions, DaneOptions, ReplyLimits, Timeouts } from './options.js';
import { replyText, type Reply } from '../protocol/reply.js';
import type { ClientTlsOptions, TlsSessionInfo } from './tls-session.js';
import type { Transcript } from './transcript.js';

/** What one connection needs, whatever the messages sent over it. */
export interface SessionOptions {
  host: string;
  /** Default 25, or 465 with implicitTls. */
  port?: number;
  /** The name we mean to reach (MX host name): SNI and certificate check. Default `host`. */
  serverName?: string;
  implicitTls?: boolean;
  level: TlsLevel;
  /**
   * Level dane: the usable TLSA records of this MX host and the DANE-TA reference identifiers
   * (default: serverName). Required at dane (no usable record: TLS_DANE_FAILED, no connection);
   * ignored at the other levels.
   */
  dane?: DaneOptions;
  /** Our EHLO name. */
  helo: string;
  /**
   * An LMTP session (RFC 2033 §4.1): LHLO instead of EHLO, before and after STARTTLS, never HELO.
   * The TLS-level rules are the same.
   */
  lmtp?: boolean;
  /** A Unix domain socket instead of host:port (LMTP); `host` then only names the peer. */
  socketPath?: string;
  auth?: { user: string; password: string; mechanism?: AuthMechanism };
  tls?: ClientTlsOptions;
  timeouts?: Partial<Timeouts>;
  limits?: Partial<ReplyLimits>;
  localAddress?: string;
}

export type DeliveryFinding =
  | { kind: 'bytes-after-starttls'; bytes: number; action: 'discarded' }
  | { kind: 'starttls-not-offered' }
  | { kind: 'starttls-refused'; reply: Reply }
  | { kind: 'handshake-failed-plaintext-retry'; reason: string }
  | { kind: 'certificate-not-verified'; reason: string };

export type SessionAttempt =
  | { kind: 'open'; client: SmtpClient; tls: TlsSessionInfo | null }
  | { kind: 'retry-plain' }
  | { kind: 'failed'; error: SmtpClientError; tls: TlsSessionInfo | null };

export function portOf(opts: SessionOptions): number {
  return opts.port ?? (opts.implicitTls === true ? 465 : 25);
}

export async function openSession(opts: SessionOptions, transcript: Transcript, findings: DeliveryFinding[], plainRetry: boolean): Promise<SessionAttempt> {
  const level = opts.level;
  const connect: ConnectOptions = {
    host: opts.host,
    port: portOf(opts),
    serverName: opts.serverName ?? opts.host,
    implicitTls: opts.implicitTls === true,
    verifyCertificate: checksPkix(level),
    tls: opts.tls ?? {},
    timeouts: opts.timeouts ?? {},
    limits: opts.limits ?? {},
    transcript,
  };
  if (opts.localAddress !== undefined) connect.localAddress = opts.localAddress;
  if (opts.socketPath !== undefined) connect.socketPath = opts.socketPath;
  const verb = opts.lmtp === true ? 'LHLO' : 'EHLO';
  // RFC 7672 §2.2: usable TLSA records make STARTTLS mandatory and the certificate must match them.
  if (usesDane(level)) connect.dane = { tlsa: opts.dane?.tlsa ?? [], names: opts.dane?.names ?? [connect.serverName ?? opts.host] };
  let client: SmtpClient | null = null;
  let tlsInfo: TlsSessionInfo | null = null;
  try {
    client = await SmtpClient.connect(connect);
    tlsInfo = client.tls;
    // HELO only where TLS is not required (a HELO session has no STARTTLS, no extensions).
    await client.ehlo(opts.helo, { heloFallback: !requiresTls(level) || client.tls !== null, verb });
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
          return { kind: 'retry-plain' };
        }
        throw e;
      }
      if (st.kind === 'secured') {
        client = st.client;
        tlsInfo = st.tls;
        if (st.discardedBytes > 0) findings.push({ kind: 'bytes-after-starttls', bytes: st.discardedBytes, action: 'discarded' });
        // RFC 3207 §4.2: forget everything learned before TLS; EHLO again.
        await client.ehlo(opts.helo, { heloFallback: true, verb });
      } else if (st.kind === 'not-offered') {
        findings.push({ kind: 'starttls-not-offered' });
        if (requiresTls(level)) throw new SmtpClientError('TLS_REQUIRED_NOT_OFFERED', `TLS level ${level} and ${opts.host} does not offer STARTTLS`);
      } else {
        findings.push({ kind: 'starttls-refused', reply: st.reply });
        if (requiresTls(level)) throw new SmtpClientError('STARTTLS_REFUSED', `TLS level ${level} and STARTTLS was refused: ${replyText(st.reply)}`, { reply: st.reply });
      }
    }
    if (tlsInfo !== null && !tlsInfo.verified && tlsInfo.dane === null) findings.push({ kind: 'certificate-not-verified', reason: tlsInfo.verifyError ?? 'unknown' });
    if (opts.auth) {
      // Never in plaintext from here: RFC 8314 §3, and the "may" downgrade would leak them.
      await client.auth(opts.auth.user, opts.auth.password, opts.auth.mechanism ? { mechanism: opts.auth.mechanism } : {});
    }
    return { kind: 'open', client, tls: tlsInfo };
  } catch (err) {
    const e = toClientError(err);
    if (client !== null) await endSession(client, e);
    return { kind: 'failed', error: e, tls: e.tls ?? tlsInfo };
  }
}

/** After an error: a polite QUIT where the session still works (refused STARTTLS, rejected AUTH); else drop. */
export async function endSession(client: SmtpClient, e: SmtpClientError): Promise<void> {
  if (!client.isOpen) return;
  if (e.code === 'TIMEOUT' || e.code === 'PROTOCOL_ERROR') client.destroy();
  else await client.quit();
}

export function toClientError(err: unknown): SmtpClientError {
  if (err instanceof SmtpClientError) return err;
  return new SmtpClientError('PROTOCOL_ERROR', err instanceof Error ? err.message : String(err), { cause: err });
}
