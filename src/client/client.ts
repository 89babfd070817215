/**
 * SmtpClient: one SMTP conversation as straight-line async calls (connect → ehlo → startTls →
 * auth → send → quit). Socket work is delegated to transport/client-connection.ts; its errors are
 * turned into SmtpClientError here (same code and message), so callers see one error class.
 *
 * Invariants:
 * - capabilities come only from an EHLO on this object; startTls() returns a *new* client whose
 *   capabilities are empty until it sends EHLO again (RFC 3207 §4.2: forget what was learned
 *   before TLS), and this object then refuses every call (CLIENT_UPGRADED);
 * - STARTTLS is never sent on a TLS session (TLS_ALREADY_ACTIVE), so never twice;
 * - a certificate that fails verification, when verification is asked for (PKIX, or TLSA records
 *   at level dane), ends the connection before any SMTP byte is written inside TLS;
 * - AUTH is refused before TLS unless the caller passes allowPlaintext: true;
 * - no command line is written with a CR, LF or NUL inside an argument (message.ts).
 */
import { ReplyAssembler, replyText, type Reply } from '../protocol/reply.js';
import { authMechanisms, has, parseEhloReply, type Capabilities } from '../protocol/ehlo.js';
import { SmtpClientError } from './errors.js';
import { assertNoLineBreak, checkHeloName } from './message.js';
import { DEFAULT_REPLY_LIMITS, DEFAULT_TIMEOUTS, limitOf, type ConnectOptions, type ReplyLimits, type TimeoutName, type Timeouts } from './options.js';
import { daneTlsOptions, inspectSession, tlsConnectOptions, type ClientTlsOptions, type TlsSessionInfo } from './tls-session.js';
import { Transcript } from './transcript.js';
import type { TlsaRecord } from '../tls/dane.js';
import { connect, ConnectionError, type ClientConnection, type SocketStats } from '../transport/client-connection.js';
import { sendTransaction, type SendEnvelope, type SendOptions, type TransactionResult } from './transaction.js';

export type StartTlsResult =
  | { kind: 'secured'; client: SmtpClient; tls: TlsSessionInfo; discardedBytes: number }
  | { kind: 'refused'; reply: Reply }
  | { kind: 'not-offered' };

export const AUTH_MECHANISMS = ['PLAIN', 'LOGIN'] as const;
export type AuthMechanism = (typeof AUTH_MECHANISMS)[number];

interface Resolved {
  host: string;
  port: number;
  serverName: string;
  verifyCertificate: boolean;
  /** Level dane: the TLSA records and DANE-TA reference identifiers; null otherwise. */
  dane: { tlsa: TlsaRecord[]; names: string[] } | null;
  /** The handshake's TLS options (at dane: no trust anchors, daneTlsOptions). */
  tls: ClientTlsOptions;
  timeouts: Timeouts;
  limits: ReplyLimits;
  options: ConnectOptions;
}

export class SmtpClient {
  private greet: Reply;
  /** TLS facts of this connection, or null in plaintext. */
  readonly tls: TlsSessionInfo | null;
  readonly transcript: Transcript;
  private caps: Capabilities | null = null;
  private state: 'open' | 'upgraded' | 'closed' = 'open';

  private constructor(
    private readonly conn: ClientConnection,
    private readonly cfg: Resolved,
    greeting: Reply,
    tlsInfo: TlsSessionInfo | null,
    transcript: Transcript,
  ) {
    this.greet = greeting;
    this.tls = tlsInfo;
    this.transcript = transcript;
  }

  /** Connects (plain or implicit TLS) and reads the greeting. Throws GREETING_REFUSED on non-220. */
  static async connect(options: ConnectOptions): Promise<SmtpClient> {
    const cfg: Resolved = {
      host: options.host,
      port: options.port,
      serverName: options.serverName ?? options.host,
      // RFC 7672 §3.1.3: at dane the TLSA records authenticate the peer, not PKIX.
      verifyCertificate: options.dane === undefined && (options.verifyCertificate ?? true),
      dane: options.dane === undefined ? null : { tlsa: options.dane.tlsa, names: options.dane.names ?? [options.serverName ?? options.host] },
      tls: options.dane === undefined ? (options.tls ?? {}) : daneTlsOptions(options.tls ?? {}),
      timeouts: { ...DEFAULT_TIMEOUTS, ...options.timeouts },
      limits: { ...DEFAULT_REPLY_LIMITS, ...options.limits },
      options,
    };
    const transcript = options.transcript ?? new Transcript();
    let conn: ClientConnection;
    try {
      conn = await connect({
        host: cfg.host,
        port: cfg.port,
        path: options.socketPath,
        localAddress: options.localAddress,
        // RFC 8314 §3: TLS from the first byte; each step has its own limit.
        implicitTls: options.implicitTls === true ? tlsConnectOptions(cfg.serverName, cfg.tls) : undefined,
        connectLimit: limitOf(cfg.timeouts, 'connectMs'),
        handshakeLimit: limitOf(cfg.timeouts, 'tlsHandshakeMs'),
        maxLineLength: cfg.limits.maxLineLength,
      });
    } catch (e) {
      throw clientError(e);
    }
    const tlsInfo = conn.isTls ? checkVerified(conn, cfg, transcript) : null;
    const client = new SmtpClient(conn, cfg, { code: 0, enhanced: null, lines: [] }, tlsInfo, transcript);
    const greeting = await client.readReply('greetingMs', 'the greeting');
    // RFC 5321 §3.1: 554 (or anything but 220) means "no SMTP service here".
    if (greeting.code !== 220) {
      await client.quit();
      throw new SmtpClientError('GREETING_REFUSED', `server refused the session: ${replyText(greeting)}`, { reply: greeting });
    }
    client.greet = greeting;
    return client;
  }

  /** The 220 greeting (on a client made by startTls: the one read before TLS). */
  get greeting(): Reply {
    return this.greet;
  }

  /** Capabilities from the last EHLO on this object; null before EHLO (or after HELO: empty map). */
  get capabilities(): Capabilities | null {
    return this.caps;
  }

  get phase(): 'plaintext' | 'tls' {
    return this.tls ? 'tls' : 'plaintext';
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  /** The timeouts in force. */
  get timeouts(): Timeouts {
    return this.cfg.timeouts;
  }

  /** Octets queued for sending and received-but-unread on this connection, right now. */
  get stats(): SocketStats {
    return this.conn.stats;
  }

  private usable(): void {
    if (this.state === 'upgraded') throw new SmtpClientError('CLIENT_UPGRADED', 'this client was replaced (STARTTLS or reconnect): use the client it returned');
    if (this.state === 'closed') throw new SmtpClientError('CLIENT_CLOSED', 'this client is closed');
  }

  // --- low-level I/O (used by transaction.ts) ---
  // Timeouts are passed by name (a key of Timeouts): the timer and its TIMEOUT message both come
  // from limitOf(), so the message names the limit that was applied and where it came from.

  /** Reads one whole reply, with the reply line-count limit. */
  async readReply(timeout: TimeoutName, what: string): Promise<Reply> {
    const maxLines = this.cfg.limits.maxReplyLines;
    const asm = new ReplyAssembler(maxLines);
    const limit = limitOf(this.cfg.timeouts, timeout);
    // One deadline for the whole reply: a server trickling "250-" lines cannot stretch it.
    const deadline = Date.now() + limit.ms;
    let lines = 0;
    try {
      for (;;) {
        const line = await this.conn.readLine(limit, what, deadline);
        // An endless "250-" stream ends here, after maxReplyLines lines, not when memory runs out.
        if (++lines > maxLines) throw this.conn.abort('PROTOCOL_ERROR', `reply to ${what} has more than ${maxLines} lines (limits.maxReplyLines)`);
        this.transcript.received(line, this.phase);
        const r = asm.push(line);
        if (r === null) continue;
        if ('error' in r) throw this.conn.abort('PROTOCOL_ERROR', `${r.error} (reading the reply to ${what})`);
        return r;
      }
    } catch (e) {
      throw clientError(e);
    }
  }

  /** Writes command lines in ONE write (RFC 2920 pipelining groups); `shown` are transcript forms. */
  async writeLines(lines: string[], timeout: TimeoutName, shown: string[] = lines): Promise<void> {
    this.usable();
    for (const l of lines) assertNoLineBreak(l, 'command line');
    for (const s of shown) this.transcript.sent(s, this.phase);
    try {
      await this.conn.write(lines.map((l) => l + '\r\n').join(''), limitOf(this.cfg.timeouts, timeout), shown[0]?.split(' ')[0] ?? 'command');
    } catch (e) {
      throw clientError(e);
    }
  }

  /** Writes raw content bytes (message data), recorded as a byte count only; with backpressure. */
  async writeBytes(bytes: Uint8Array, timeout: TimeoutName): Promise<void> {
    this.usable();
    try {
      await this.conn.write(bytes, limitOf(this.cfg.timeouts, timeout), 'message content');
    } catch (e) {
      throw clientError(e);
    }
  }

  async command(line: string, timeout: TimeoutName, shown = line): Promise<Reply> {
    await this.writeLines([line], timeout, [shown]);
    return this.readReply(timeout, shown);
  }

  // --- the conversation ---

  /**
   * EHLO (RFC 5321 §4.1.1.1). On a 5xx, HELO only when `heloFallback` is true (callers allow it
   * only where TLS is not required: a HELO session cannot STARTTLS). Throws EHLO_REFUSED.
   * `verb: 'LHLO'` greets an LMTP server instead (RFC 2033 §4.1: same reply, no HELO fallback).
   */
  async ehlo(name: string, options: { heloFallback?: boolean; verb?: 'EHLO' | 'LHLO' } = {}): Promise<Capabilities> {
    this.usable();
    checkHeloName(name);
    const verb = options.verb ?? 'EHLO';
    const r = await this.command(`${verb} ${name}`, 'commandMs');
    if (r.code === 250) {
      this.caps = parseEhloReply(r);
      return this.caps;
    }
    if (options.heloFallback === true && verb === 'EHLO' && r.code >= 500) {
      const h = await this.command(`HELO ${name}`, 'commandMs');
      if (h.code === 250) {
        this.caps = { greeting: h.lines[0] ?? '', keywords: new Map() };
        return this.caps;
      }
      throw new SmtpClientError('EHLO_REFUSED', `EHLO and HELO refused: ${replyText(h)}`, { reply: h });
    }
    throw new SmtpClientError('EHLO_REFUSED', `${verb} refused: ${replyText(r)}`, { reply: r });
  }

  /**
   * STARTTLS (RFC 3207). `not-offered` and `refused` leave this client usable in plaintext; on
   * `secured` this client is dead and the returned one must send EHLO again. Throws
   * TLS_HANDSHAKE_FAILED (connection gone) or TLS_VERIFY_FAILED (closed before any SMTP in TLS).
   */
  async startTls(): Promise<StartTlsResult> {
    this.usable();
    // RFC 3207 §4.2: never a second STARTTLS, whatever the post-TLS EHLO says.
    if (this.tls) throw new SmtpClientError('TLS_ALREADY_ACTIVE', 'TLS is already active on this connection');
    if (!this.caps) throw new SmtpClientError('PROTOCOL_ERROR', 'EHLO first: STARTTLS is decided from the EHLO reply');
    if (!has(this.caps, 'STARTTLS')) return { kind: 'not-offered' };
    const r = await this.command('STARTTLS', 'commandMs');
    if (r.code !== 220) return { kind: 'refused', reply: r };
    this.state = 'upgraded';
    const up = await this.conn.upgradeToTls(tlsConnectOptions(this.cfg.serverName, this.cfg.tls), limitOf(this.cfg.timeouts, 'tlsHandshakeMs'));
    const discarded = up.discarded.length;
    if (discarded > 0) {
      // Response injection (NO STARTTLS, Exim CVE-2021-38371): bytes after the 220 are never replies.
      this.transcript.event(`discarded ${discarded} octets received after the 220 to STARTTLS, before TLS (never read as replies)`, 'plaintext');
    }
    // A failed handshake is a value for the checker; for a sender it ends the attempt.
    if (up.kind === 'failed') throw clientError(up.error);
    const info = checkVerified(up.conn, this.cfg, this.transcript);
    const client = new SmtpClient(up.conn, this.cfg, this.greeting, info, this.transcript);
    return { kind: 'secured', client, tls: info, discardedBytes: discarded };
  }

  /**
   * AUTH PLAIN (RFC 4616, initial response per RFC 4954 §4) or LOGIN. Default mechanism: PLAIN
   * when offered, else LOGIN. Throws AUTH_NEEDS_TLS, AUTH_NOT_OFFERED, AUTH_FAILED, CRLF_INJECTION.
   */
  async auth(user: string, password: string, options: { mechanism?: AuthMechanism; allowPlaintext?: boolean } = {}): Promise<Reply> {
    this.usable();
    // RFC 8314 §3 / RFC 4954 §4: credentials only inside TLS unless the caller says otherwise.
    if (!this.tls && options.allowPlaintext !== true) throw new SmtpClientError('AUTH_NEEDS_TLS', 'AUTH refused: no TLS on this connection (pass allowPlaintext: true to send credentials in clear)');
    assertNoLineBreak(user, 'AUTH user');
    if (password.includes('\0')) throw new SmtpClientError('CRLF_INJECTION', 'password contains NUL (RFC 4616 separator)');
    if (!this.caps) throw new SmtpClientError('PROTOCOL_ERROR', 'EHLO first: AUTH is decided from the EHLO reply');
    const offered = authMechanisms(this.caps);
    const mech = options.mechanism ?? (offered.includes('PLAIN') ? 'PLAIN' : offered.includes('LOGIN') ? 'LOGIN' : null);
    if (mech === null || !offered.includes(mech)) throw new SmtpClientError('AUTH_NOT_OFFERED', `server does not offer AUTH ${options.mechanism ?? 'PLAIN or LOGIN'} (offered: ${offered.join(' ') || 'none'})`);
    const t = 'commandMs';
    const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
    let r: Reply;
    if (mech === 'PLAIN') {
      r = await this.command(`AUTH PLAIN ${b64(`\0${user}\0${password}`)}`, t, 'AUTH PLAIN [redacted]');
    } else {
      r = await this.command('AUTH LOGIN', t);
      if (r.code === 334) r = await this.command(b64(user), t, '[redacted]');
      if (r.code === 334) r = await this.command(b64(password), t, '[redacted]');
    }
    if (r.code === 334) r = await this.command('*', t); // RFC 4954 §4: cancel an exchange we cannot finish
    if (r.code !== 235) throw new SmtpClientError('AUTH_FAILED', `authentication failed: ${replyText(r)}`, { reply: r });
    return r;
  }

  async mail(from: string, params: string[] = []): Promise<Reply> {
    return this.command(['MAIL FROM:<' + from + '>', ...params].join(' '), 'mailMs');
  }

  async rcpt(to: string, params: string[] = []): Promise<Reply> {
    return this.command(['RCPT TO:<' + to + '>', ...params].join(' '), 'rcptMs');
  }

  async rset(): Promise<Reply> {
    return this.command('RSET', 'commandMs');
  }

  async noop(): Promise<Reply> {
    return this.command('NOOP', 'commandMs');
  }

  /** One mail transaction: MAIL, RCPTs (pipelined when offered), DATA or BDAT. See transaction.ts. */
  async send(envelope: SendEnvelope, content: Uint8Array | string, options: SendOptions = {}): Promise<TransactionResult> {
    this.usable();
    if (!this.caps) throw new SmtpClientError('PROTOCOL_ERROR', 'EHLO first: the transaction depends on the EHLO reply');
    return sendTransaction(this, this.caps, envelope, content, options);
  }

  /** QUIT and close; never throws. */
  async quit(): Promise<void> {
    if (this.state !== 'open') return;
    try {
      await this.command('QUIT', 'quitMs');
    } catch {
      // The session is over either way.
    }
    this.close();
  }

  /** Close without QUIT. */
  close(): void {
    if (this.state === 'closed') return;
    if (this.state === 'open') this.conn.close();
    this.state = 'closed';
  }

  /** Drop the connection at once (error paths). */
  destroy(): void {
    if (this.state === 'open') this.conn.destroy();
    this.state = 'closed';
  }

  toString(): string {
    return `SmtpClient(${this.cfg.host}:${this.cfg.port}, ${this.phase}${this.tls ? (this.tls.dane !== null ? `, dane-${this.tls.dane}` : this.tls.verified ? ', verified' : ', unverified') : ''})`;
  }
}

/** The transport's errors as client errors: same code and message (CONNECTION_DETACHED → CLIENT_UPGRADED). */
function clientError(e: unknown): unknown {
  if (!(e instanceof ConnectionError)) return e;
  return new SmtpClientError(e.code === 'CONNECTION_DETACHED' ? 'CLIENT_UPGRADED' : e.code, e.message, { cause: e.cause });
}

/**
 * After a handshake: record the facts; with verification on, refuse an untrusted peer now; at
 * level dane, refuse a peer that matches no TLSA record now (RFC 7672 §2.2: no mail to it).
 */
function checkVerified(conn: ClientConnection, cfg: Resolved, transcript: Transcript): TlsSessionInfo {
  const secure = conn.tlsSocket;
  if (secure === null) throw new SmtpClientError('PROTOCOL_ERROR', 'no TLS session to inspect');
  const info = inspectSession(secure, cfg.serverName, cfg.dane ?? undefined);
  const what =
    cfg.dane !== null
      ? info.dane !== null
        ? `DANE-${info.dane.toUpperCase()} matched`
        : 'no TLSA record matched: ' + (info.daneError ?? '')
      : info.verified
        ? 'verified'
        : 'not verified: ' + (info.verifyError ?? '');
  transcript.event(`TLS ${info.protocol} ${info.cipher}${info.group ? ' ' + info.group : ''}; certificate ${what} for ${info.checkedName}`, 'tls');
  if (cfg.dane !== null && info.dane === null) {
    // RFC 7672 §3.1: with usable TLSA records the certificate must match one; nothing is sent.
    conn.destroy();
    throw new SmtpClientError('TLS_DANE_FAILED', `certificate of ${cfg.host} (${info.checkedName}) matches no TLSA record: ${info.daneError ?? 'unknown reason'}`, { tls: info });
  }
  if (cfg.verifyCertificate && !info.verified) {
    conn.destroy();
    throw new SmtpClientError('TLS_VERIFY_FAILED', `certificate of ${cfg.host} not trusted for ${info.checkedName}: ${info.verifyError ?? 'unknown reason'}`, { tls: info });
  }
  return info;
}
