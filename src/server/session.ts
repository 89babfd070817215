/**
 * One SMTP server session: the input pump, the dispatcher and its gates. The verbs' own work is
 * in the command table (commands.ts, auth.ts), the content of a message in message.ts.
 *
 * Invariants:
 * - the phase is explicit; input is consumed only in 'command', 'auth', 'data' and 'bdat', and
 *   only through the connection's input API (inputBuffer/inputStart/consumeTo);
 * - the dispatcher applies the gates in a fixed order before a handler runs: too-long line →
 *   bare-LF line end (bareLineEndings) → not SMTP (HTTP) → unknown verb → TLS required (530) →
 *   EHLO/HELO needed (503) → handler; the error budget is charged for every 4xx/5xx a client earns;
 * - Session facts and the Envelope are separate objects (state.ts); RSET/EHLO replace the
 *   envelope, STARTTLS replaces both (RFC 3207 §4.2);
 * - replies produced while draining pipelined input leave in one write (RFC 2920), and while the
 *   peer leaves 64 KiB of them unread no further command runs (backpressure, transport/);
 * - a command line must end within the command timeout of its first byte.
 */
import type { TLSSocket, TLSSocketOptions } from 'node:tls';
import { LineFramer } from '../protocol/lines.js';
import { parseCommand } from '../protocol/command.js';
import { formatReply, type Reply } from '../protocol/reply.js';
import { ServerConnection, latin1Slice } from '../transport/server-connection.js';
import type { TlsFacts } from '../types.js';
import { COMMANDS } from './commands.js';
import type { AuthLimiter } from './context.js';
import type { BodyBudget } from './body.js';
import { MessageIntake } from './message.js';
import { R, greeting } from './replies.js';
import { newFacts, type AuthStep, type Envelope, type Phase, type SessionApi, type SessionFacts } from './state.js';
import type { ListenerOptions, ServerOptions } from './types.js';

/** What a session needs from the server that owns it. */
export interface ServerContext {
  sessionEnded(session: Session, reason: string): void;
  readonly authLimiter: AuthLimiter;
  /** Body bytes in memory across all sessions (body.ts). */
  readonly bodyBudget: BodyBudget;
}

/** Commands whose refusals count as refused mail (events.rejected). */
const TRANSACTION_VERBS: ReadonlySet<string> = new Set(['MAIL', 'RCPT', 'DATA', 'BDAT']);

/** '550' without allocating for the usual codes. */
function codeText(code: number): string {
  return CODE_TEXT.get(code) ?? String(code);
}
const CODE_TEXT = new Map<number, string>([421, 450, 451, 452, 454, 500, 501, 502, 503, 504, 530, 535, 550, 551, 552, 553, 554, 555].map((c) => [c, String(c)]));

export class Session implements SessionApi {
  phase: Phase = 'greeting';
  facts: SessionFacts;
  envelope: Envelope | null = null;
  authStep: AuthStep | null = null;
  readonly conn: ServerConnection;
  readonly listener: ListenerOptions;
  readonly opts: ServerOptions;
  readonly ctx: ServerContext;
  private readonly framer: LineFramer;
  private readonly intake: MessageIntake;
  errors = 0;
  /** Bytes thrown away at STARTTLS (non-zero: pipelining violation or injection attempt). */
  purgedAtStartTls = 0;
  private closeReason = '';
  readonly startedAt = Date.now();
  /** Set by graceful shutdown: close at the next command boundary. */
  draining = false;
  /** The asynchronous step running in phase 'busy' (store commit, password check, TLS handshake). */
  private inflight: Promise<void> | null = null;
  /**
   * Whether the command being answered is a transaction command (MAIL, RCPT, DATA, BDAT; the
   * content phases keep it): its 4xx/5xx replies are refusals for ServerOptions.events.
   */
  private inTransactionCommand = false;

  constructor(conn: ServerConnection, listener: ListenerOptions, opts: ServerOptions, ctx: ServerContext, tls: TlsFacts | null) {
    this.conn = conn;
    this.listener = listener;
    this.opts = opts;
    this.ctx = ctx;
    this.facts = newFacts(tls);
    this.framer = new LineFramer(opts.limits.maxLineLength, latin1Slice);
    this.intake = new MessageIntake(this);
  }

  // ---- the handlers' API (state.ts SessionApi) and the intake's ----

  get remoteAddress(): string {
    return this.conn.remoteAddress;
  }

  get authLimiter(): AuthLimiter {
    return this.ctx.authLimiter;
  }

  get bodyBudget(): BodyBudget {
    return this.ctx.bodyBudget;
  }

  get active(): boolean {
    return !this.conn.isClosed && this.phase !== 'closed' && !this.draining;
  }

  /** Messages stored in this session. */
  get messages(): number {
    return this.intake.accepted;
  }

  expectAuthLine(step: AuthStep): void {
    this.authStep = step;
    this.phase = 'auth';
  }

  beginData(): void {
    if (this.intake.beginData()) this.phase = 'data';
  }

  beginBdat(size: number, last: boolean, error: Reply | null): void {
    this.intake.beginBdat(size, last, error);
    this.phase = 'bdat';
  }

  /** Drops the envelope and whatever body was being received for it (RSET, EHLO, errors). */
  endTransaction(): void {
    this.envelope = null;
    this.intake.dropBody();
  }

  async upgradeToTls(ready: string, options: TLSSocketOptions): Promise<TLSSocket> {
    const limits = this.opts.limits;
    const { purged, socket } = await this.conn.upgradeToTls(ready, options, limits.handshakeTimeoutMs, limits.commandTimeoutMs);
    this.purgedAtStartTls = purged;
    if (purged > 0) this.opts.logger.warn({ event: 'starttls-purge', client: this.conn.remoteAddress, bytes: purged }, 'discarded bytes pipelined after STARTTLS');
    return socket;
  }

  setTimers(deadline: number, idleMs: number): void {
    this.conn.setDeadline(deadline);
    if (idleMs >= 0) this.conn.setIdleTimeout(idleMs);
  }

  /** Called once the connection is accepted (and, on implicit TLS, secured). */
  start(): void {
    const delay = this.opts.limits.greetingDelayMs;
    if (delay > 0) {
      this.phase = 'greeting';
      this.conn.wantInput(true);
      setTimeout(() => this.sendGreeting(), delay).unref();
    } else {
      this.sendGreeting();
    }
  }

  private sendGreeting(): void {
    // The session may have been closed during the greeting delay (shutdown, timeout).
    if (this.conn.isClosed || this.phase !== 'greeting') return;
    if (this.conn.buffered > 0) {
      // Bytes before the greeting: an early talker (spamware that does not wait for us).
      this.closeWith(R.earlyTalker, 'early talker');
      return;
    }
    this.send(greeting(this.opts.hostname));
    this.phase = 'command';
    this.pump();
  }

  // ---- events from the connection ----

  onInput(): void {
    if (this.phase === 'greeting') {
      this.conn.wantInput(false);
      return;
    }
    this.pump();
  }

  onTimeout(kind: 'idle' | 'deadline'): void {
    if (kind === 'idle') this.closeWith(R.timeout, 'timeout');
    else if (this.phase === 'data' || this.phase === 'bdat') this.closeWith(R.dataTooSlow, 'data too slow');
    else this.closeWith(R.commandTooSlow, 'command line not completed in time');
  }

  onClose(reason: string): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    if (!this.closeReason) this.closeReason = reason;
    this.ended(this.closeReason);
  }

  /**
   * Tell the server the session is over, once. When the peer left while a step was running (a
   * message being committed), wait for it: the session line then counts that message, and a
   * graceful shutdown does not count the session as gone before its commit settled.
   */
  private ended(reason: string): void {
    // A message cut off mid-way gives its memory back and leaves no spool file.
    this.endTransaction();
    const step = this.inflight;
    if (step === null) this.ctx.sessionEnded(this, reason);
    else {
      const done = (): void => this.ctx.sessionEnded(this, reason);
      void step.then(done, done);
    }
  }

  get result(): string {
    return this.closeReason;
  }

  // ---- the pump ----

  pump(): void {
    const c = this.conn;
    // Backpressure: while the peer has not read our replies, its buffered commands wait.
    while (!c.isClosed && !c.blocked) {
      const phase = this.phase;
      if (phase === 'command' || phase === 'auth') {
        if (this.draining && phase === 'command') {
          this.closeWith(R.shuttingDown, 'shutdown');
          return;
        }
        const buf = c.inputBuffer;
        const r = this.framer.scan(buf, c.inputStart, buf.length);
        if (r.kind === 'need') {
          c.consumeTo(r.keepFrom);
          break;
        }
        c.consumeTo(r.end);
        // A complete line stops the clock that its first byte started (lineDeadline).
        if (c.hasDeadline) c.setDeadline(0);
        if (r.kind === 'too-long') {
          this.inTransactionCommand = false;
          if (phase === 'auth') this.authStep = null;
          this.phase = 'command';
          this.send(R.lineTooLong);
          continue;
        }
        // RFC 5321 §2.3.8: CRLF only. With 'reject' a bare-LF line is not run and the session ends
        // (Postfix smtpd_forbid_bare_newline=reject): the peer frames lines unlike us from here on.
        if (r.kind === 'bare-lf' && this.opts.bareLineEndings === 'reject') {
          this.closeWith(R.bareLfCommand, 'bare LF in a command line');
          return;
        }
        // RFC 2920: a command with more input already behind it was pipelined (a fact the sender test reports).
        if (phase === 'command' && c.inputStart < c.inputBuffer.length) this.facts.pipelined = true;
        if (phase === 'auth') this.continueAuth(r.text);
        else this.dispatch(r.text);
      } else if (phase === 'data') {
        const buf = c.inputBuffer;
        const end = this.intake.feedData(buf, c.inputStart);
        if (end === null) break;
        if (end < 0) {
          c.consumeTo(buf.length);
          break;
        }
        c.consumeTo(end);
        this.phase = 'command';
        this.intake.finishData();
      } else if (phase === 'bdat') {
        const { end, done } = this.intake.feedBdat(c.inputBuffer, c.inputStart);
        c.consumeTo(end);
        if (!done) break;
        this.phase = 'command';
        this.intake.finishBdatChunk();
      } else {
        break;
      }
    }
    if (c.isClosed) return;
    if ((this.phase === 'command' || this.phase === 'auth') && !c.hasDeadline) this.lineDeadline();
    c.flush();
    const reading = this.phase === 'command' || this.phase === 'auth' || this.phase === 'data' || this.phase === 'bdat';
    c.wantInput(reading);
  }

  /** Queue a reply; 4xx/5xx replies are charged to the error budget. */
  send(r: Reply): void {
    this.conn.queue(formatReply(r));
    // 452 for recipients past the limit is not a client error: RFC 5321 §4.5.3.1.10 has the
    // client send the rest in a later transaction, so it must not use up the error budget.
    if (r.code >= 400 && this.inTransactionCommand) this.opts.events?.rejected(this.listener.name, r.enhanced ?? codeText(r.code));
    if (r.code >= 400 && r.code !== 421 && r !== R.tooManyRecipients) {
      this.errors++;
      // Error budget (Postfix smtpd_hard_error_limit): a client that keeps failing is cut off.
      if (this.errors >= this.opts.limits.maxErrors) this.closeWith(R.tooManyErrors, 'too many errors');
    }
  }

  closeWith(r: Reply, reason: string): void {
    // Once only: the connection is not marked closed until the socket is, so without the phase
    // check a second call (error budget reached inside send(), then the caller's own closeWith)
    // wrote after end.
    if (this.phase === 'closed' || this.conn.isClosed) return;
    this.closeReason = reason;
    this.conn.queue(formatReply(r));
    this.conn.end();
    this.phase = 'closed';
    this.ended(reason);
  }

  /** Run an asynchronous step: input stops until it settles, then the pump resumes. */
  runAsync(p: Promise<Reply | null>, next: Phase = 'command'): void {
    this.phase = 'busy';
    this.conn.flush();
    this.conn.wantInput(false);
    const settled: Promise<void> = p.then(
      (r) => {
        this.inflight = null;
        if (this.phase !== 'busy') return;
        this.phase = next;
        if (r) this.send(r);
        this.pump();
      },
      (err: unknown) => {
        this.inflight = null;
        this.opts.logger.error({ err: String(err), client: this.conn.remoteAddress }, 'session step failed');
        if (this.phase !== 'busy') return;
        this.phase = 'command';
        this.send(R.storeFailed);
        this.pump();
      },
    );
    this.inflight = settled;
  }

  // ---- deadlines: a trickle of bytes cannot hold a slot forever ----

  /**
   * A command line must be complete within the command timeout counted from its first byte, not
   * from its last one (the idle timer alone restarts on every byte). Called after a pump in the
   * command and auth phases with no deadline armed: a partial line left in the buffer (or an
   * over-long one being skipped) starts the clock; a completed line stops it (pump()).
   */
  private lineDeadline(): void {
    const c = this.conn;
    if (c.buffered > 0 || this.framer.isSkipping) c.setDeadline(Date.now() + this.opts.limits.commandTimeoutMs);
  }

  // ---- the dispatcher ----

  private dispatch(line: string): void {
    const cmd = parseCommand(line);
    this.inTransactionCommand = cmd.kind === 'command' && TRANSACTION_VERBS.has(cmd.verb);
    if (cmd.kind === 'http') {
      // ALPACA / cross-protocol: an HTTP client talking to an SMTP port. Close at once.
      this.closeWith(R.notSmtp, `not smtp (${cmd.word})`);
      return;
    }
    if (cmd.kind !== 'command') {
      this.send(R.unrecognized);
      return;
    }
    const spec = COMMANDS[cmd.verb];
    // RFC 3207 §4: with TLS required, only these commands are allowed before STARTTLS.
    if (this.listener.tls === 'encrypt' && this.facts.tls === null && !spec.beforeTls) {
      this.send(R.mustStartTls);
      return;
    }
    if (spec.needsHelo && this.facts.heloName === null) {
      this.send(R.badSequenceHelo);
      return;
    }
    const r = spec.run(this, cmd.args);
    if (r === null) return;
    if (r instanceof Promise) this.runAsync(r);
    else this.send(r);
  }

  private continueAuth(line: string): void {
    const step = this.authStep;
    this.authStep = null;
    this.phase = 'command';
    if (!step) return;
    const r = step(line);
    if (r === null) return;
    if (r instanceof Promise) this.runAsync(r);
    else this.send(r);
  }
}
