/**
 * One SMTP server session: the input pump, the dispatcher and its gates, DATA and BDAT reading.
 *
 * Invariants:
 * - the phase is explicit; input is consumed only in 'command', 'auth', 'data' and 'bdat';
 * - the dispatcher applies the gates in a fixed order before a handler runs: too-long line →
 *   bare-LF line end (bareLineEndings) → not SMTP (HTTP) → unknown verb → TLS required (530) →
 *   EHLO/HELO needed (503) → handler; the error budget is charged for every 4xx/5xx a client earns;
 * - Session facts (TLS, EHLO name, AUTH identity) and the Envelope (one transaction) are separate
 *   objects; RSET/EHLO replace the envelope, STARTTLS replaces both (RFC 3207 §4.2);
 * - replies produced while draining pipelined input leave in one write (RFC 2920), and while the
 *   peer leaves 64 KiB of them unread no further command runs (backpressure, transport/);
 * - a command line must end within the command timeout of its first byte, DATA/BDAT content must
 *   keep limits.minDataRate; a message body is held in memory only up to the spool threshold
 *   (BodyCollector) and counted in the server-wide body budget.
 */
import { LineFramer } from '../protocol/lines.js';
import { parseCommand } from '../protocol/command.js';
import { DotReader, LineEndingStream } from '../protocol/data.js';
import { formatReply, type Reply } from '../protocol/reply.js';
import { ServerConnection, latin1Slice } from '../transport/server-connection.js';
import type { ReceivedProtocol, TlsFacts } from '../types.js';
import { COMMANDS } from './commands.js';
import { R, chunkOk, greeting, queued } from './replies.js';
import { receivedHead, receivedTail, receivedTls } from './received.js';
import type { ListenerOptions, ServerOptions } from './types.js';
import type { ServerContext } from './context.js';
import { newMessageId as newQueueId } from '../store/ids.js';
import type { SpooledBody } from '../store/spool.js';
import { BodyCollector } from './body.js';

export type Phase = 'greeting' | 'command' | 'auth' | 'data' | 'bdat' | 'busy' | 'closed';

/** Facts about the connection that survive transactions (reset by STARTTLS only). */
export interface SessionFacts {
  heloName: string | null;
  esmtp: boolean;
  authUser: string | null;
  tls: TlsFacts | null;
}

export interface Envelope {
  mailFrom: string;
  localRecipients: string[];
  remoteRecipients: string[];
  requireTls: boolean;
  body: '7BIT' | '8BITMIME' | null;
  smtpUtf8: boolean;
  /** Set once BDAT was used in this transaction (DATA is then refused, RFC 3030 §2). */
  bdat: { size: number; lineEndings: LineEndingStream } | null;
}

export function newFacts(tls: TlsFacts | null): SessionFacts {
  return { heloName: null, esmtp: false, authUser: null, tls };
}

/** Continuation of a multi-step AUTH exchange. */
export type AuthStep = (line: string) => Reply | Promise<Reply | null> | null;

export class Session {
  phase: Phase = 'greeting';
  facts: SessionFacts;
  envelope: Envelope | null = null;
  authStep: AuthStep | null = null;
  readonly conn: ServerConnection;
  readonly listener: ListenerOptions;
  readonly opts: ServerOptions;
  readonly ctx: ServerContext;
  private readonly framer: LineFramer;
  private dot: DotReader | null = null;
  /** The body of the message being received (DATA or BDAT chunks), null between messages. */
  private body: BodyCollector | null = null;
  private bdatRemaining = 0;
  private bdatLast = false;
  private bdatError: Reply | null = null;
  /** Bytes of the current BDAT chunk read so far. */
  private bdatRead = 0;
  /** Date.now() when the current DATA or BDAT chunk began (the minimum-rate deadline's base). */
  private dataStartedAt = 0;
  errors = 0;
  messages = 0;
  /** Bytes thrown away at STARTTLS (non-zero: pipelining violation or injection attempt). */
  purgedAtStartTls = 0;
  private closeReason = '';
  readonly startedAt = Date.now();
  /** Set by graceful shutdown: close at the next command boundary. */
  draining = false;
  /** The asynchronous step running in phase 'busy' (store commit, password check, TLS handshake). */
  private inflight: Promise<void> | null = null;
  /** The session-constant parts of the Received header, and the facts they were built from. */
  private received: { facts: SessionFacts; helo: string | null; auth: string | null; esmtp: boolean; head: string; tls: string } | null = null;

  constructor(conn: ServerConnection, listener: ListenerOptions, opts: ServerOptions, ctx: ServerContext, tls: TlsFacts | null) {
    this.conn = conn;
    this.listener = listener;
    this.opts = opts;
    this.ctx = ctx;
    this.facts = newFacts(tls);
    this.framer = new LineFramer(opts.limits.maxLineLength, latin1Slice);
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
        const r = this.framer.scan(c.buf, c.pos, c.buf.length);
        if (r.kind === 'need') {
          if (r.keepFrom >= c.buf.length) c.discardInput();
          else c.pos = r.keepFrom;
          break;
        }
        c.pos = r.end;
        // A complete line stops the clock that its first byte started (lineDeadline).
        if (c.hasDeadline) c.setDeadline(0);
        if (r.kind === 'too-long') {
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
        if (phase === 'auth') this.continueAuth(r.text);
        else this.dispatch(r.text);
      } else if (phase === 'data') {
        const dot = this.dot;
        if (!dot) break;
        const end = dot.feed(c.buf, c.pos, c.buf.length);
        if (end < 0) {
          c.pos = c.buf.length;
          // Bounded memory: the body so far goes to the collector, which spools it when large.
          this.body?.add(dot.take());
          this.keepDataRate(dot.size);
          break;
        }
        c.pos = end;
        this.finishData(dot);
      } else if (phase === 'bdat') {
        const take = Math.min(c.buf.length - c.pos, this.bdatRemaining);
        if (take > 0) {
          this.bdatBytes(c.buf.subarray(c.pos, c.pos + take));
          c.pos += take;
          this.bdatRemaining -= take;
          this.bdatRead += take;
        }
        if (this.bdatRemaining > 0) {
          this.keepDataRate(this.bdatRead);
          break;
        }
        this.finishBdatChunk();
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

  /**
   * DATA and BDAT content must arrive at limits.minDataRate bytes/s or better (Postfix
   * smtpd_min_data_rate): the deadline is the phase start plus the data timeout plus the time the
   * bytes received so far buy at that rate. 0 turns the rate rule off (the idle timeout remains).
   */
  private keepDataRate(bytes: number): void {
    const rate = this.opts.limits.minDataRate;
    if (rate > 0) this.conn.setDeadline(this.dataStartedAt + this.opts.limits.dataTimeoutMs + (bytes * 1000) / rate);
  }

  // ---- the dispatcher ----

  private dispatch(line: string): void {
    const cmd = parseCommand(line);
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

  // ---- DATA ----

  /** A body collector for the message about to be received (its id is the spool file's name). */
  private newBody(): BodyCollector {
    this.body?.discard();
    const o = this.opts;
    return new BodyCollector(this.ctx.bodyBudget, o.spool ?? null, o.limits.spoolThreshold, newQueueId());
  }

  beginData(): void {
    // Bounded resources: past the server-wide budget of body bytes in memory, no new message
    // starts (RFC 5321 §4.2.5 / RFC 3463: 452 4.3.1 insufficient system storage).
    if (this.ctx.bodyBudget.exhausted) {
      this.send(R.insufficientStorage);
      return;
    }
    this.dot = new DotReader({ maxSize: this.opts.limits.maxMessageSize, normalize: this.opts.bareLineEndings === 'normalize' });
    this.body = this.newBody();
    this.phase = 'data';
    this.dataStartedAt = Date.now();
    this.keepDataRate(0);
    this.conn.setIdleTimeout(this.opts.limits.dataTimeoutMs);
    this.send(R.startData);
  }

  private finishData(dot: DotReader): void {
    this.dot = null;
    this.phase = 'command';
    this.conn.setDeadline(0);
    this.conn.setIdleTimeout(this.opts.limits.commandTimeoutMs);
    const body = this.body;
    this.body = null;
    const env = this.envelope;
    this.envelope = null;
    if (!env || body === null) {
      body?.discard();
      this.send(R.needMail);
      return;
    }
    body.add(dot.take());
    if (dot.tooBig) {
      body.discard();
      this.send(R.sizeExceeded);
      return;
    }
    // SMTP smuggling defence: a message with a bare CR or LF is refused after its end was read,
    // so the client and we agree where it ended and nothing of it is read as a command.
    if ((dot.bareCr || dot.bareLf) && this.opts.bareLineEndings === 'reject') {
      body.discard();
      this.send(R.bareLineEnding);
      return;
    }
    this.storeMessage(env, body);
  }

  // ---- BDAT (RFC 3030) ----

  beginBdat(size: number, last: boolean, error: Reply | null): void {
    this.bdatRemaining = size;
    this.bdatLast = last;
    this.bdatRead = 0;
    this.phase = 'bdat';
    this.dataStartedAt = Date.now();
    this.keepDataRate(0);
    this.conn.setIdleTimeout(this.opts.limits.dataTimeoutMs);
    const env = this.envelope;
    if (!error && env && !env.bdat) {
      // Bounded resources: no new message past the memory budget (the chunk is still read).
      if (this.ctx.bodyBudget.exhausted) error = R.insufficientStorage;
      else {
        env.bdat = { size: 0, lineEndings: new LineEndingStream(this.opts.bareLineEndings === 'normalize') };
        this.body = this.newBody();
      }
    }
    this.bdatError = error;
  }

  private bdatBytes(bytes: Uint8Array): void {
    // Chunk bytes are content only: they never pass through the command parser.
    const b = this.envelope?.bdat;
    const body = this.body;
    if (this.bdatError || !b || body === null) return;
    b.size += bytes.length;
    if (b.size > this.opts.limits.maxMessageSize) {
      this.bdatError = R.sizeExceeded;
      body.discard();
      this.body = null;
      return;
    }
    // Views into the connection's buffers (each read is a new Buffer), kept without copying
    // while in memory; the collector spools them past its threshold.
    body.add(b.lineEndings.push(bytes));
  }

  private finishBdatChunk(): void {
    this.phase = 'command';
    this.conn.setDeadline(0);
    this.conn.setIdleTimeout(this.opts.limits.commandTimeoutMs);
    const env = this.envelope;
    if (this.bdatError) {
      const err = this.bdatError;
      this.bdatError = null;
      // A failed chunk ends the transaction (RFC 3030 §2: the client must RSET or start again).
      if (err === R.sizeExceeded) this.endTransaction();
      this.send(err);
      return;
    }
    const body = this.body;
    if (!env?.bdat || body === null) {
      this.send(R.needMail);
      return;
    }
    const { size, lineEndings } = env.bdat;
    if (!this.bdatLast) {
      this.send(chunkOk(size));
      return;
    }
    this.envelope = null;
    this.body = null;
    body.add(lineEndings.end());
    if (lineEndings.bare && this.opts.bareLineEndings === 'reject') {
      body.discard();
      this.send(R.bareLineEnding);
      return;
    }
    this.storeMessage(env, body);
  }

  /** Drops the envelope and whatever body was being received for it (RSET, EHLO, errors). */
  endTransaction(): void {
    this.envelope = null;
    if (this.body !== null) {
      this.body.discard();
      this.body = null;
    }
  }

  // ---- storing ----

  protocol(): ReceivedProtocol {
    const f = this.facts;
    if (!f.esmtp) return f.tls ? 'ESMTPS' : 'SMTP';
    if (f.tls) return f.authUser ? 'ESMTPSA' : 'ESMTPS';
    return f.authUser ? 'ESMTPA' : 'ESMTP';
  }

  private storeMessage(env: Envelope, body: BodyCollector): void {
    if (body.overBudget || body.ioError) {
      if (body.ioError) this.opts.logger.error({ err: String(body.ioError), client: this.conn.remoteAddress }, 'spool write failed');
      body.discard();
      this.send(body.overBudget ? R.insufficientStorage : R.storeFailed);
      return;
    }
    const id = body.id;
    const receivedAt = new Date();
    const nLocal = env.localRecipients.length;
    const nRcpts = nLocal + env.remoteRecipients.length;
    const recipient = nRcpts === 1 ? ((nLocal === 1 ? env.localRecipients[0] : env.remoteRecipients[0]) ?? null) : null;
    const f = this.facts;
    let rc = this.received;
    if (rc === null || rc.facts !== f || rc.helo !== f.heloName || rc.auth !== f.authUser || rc.esmtp !== f.esmtp) {
      const authenticatedSender = this.opts.received?.showAuthenticatedSender === false ? null : f.authUser;
      const head = receivedHead({ heloName: f.heloName ?? 'unknown', clientAddress: this.conn.remoteAddress, hostname: this.opts.hostname, protocol: this.protocol(), authenticatedSender });
      rc = this.received = { facts: f, helo: f.heloName, auth: f.authUser, esmtp: f.esmtp, head, tls: receivedTls(f.tls) };
    }
    const header = rc.head + id + rc.tls + receivedTail(recipient, receivedAt);
    const size = body.size;
    // No join here: the sink gets the pieces (the store copies them into its batch buffer once),
    // or, for a large message, the fsync'd spool file and our header.
    const accept = ({ parts, spooled }: { parts: Uint8Array[]; spooled: SpooledBody | null }): Promise<{ id: string }> =>
      this.opts.sink.accept({
        id,
        mailFrom: env.mailFrom,
        localRecipients: env.localRecipients,
        remoteRecipients: env.remoteRecipients,
        receivedAt,
        listener: this.listener.name,
        clientAddress: this.conn.remoteAddress,
        heloName: this.facts.heloName ?? '',
        authUser: this.facts.authUser,
        tls: this.facts.tls,
        requireTls: env.requireTls,
        body: env.body,
        smtpUtf8: env.smtpUtf8,
        envId: null,
        ret: null,
        spooled,
        data: [Buffer.from(header, 'utf8'), ...parts],
      });
    const handed = body.spooled ? body.end().then(accept) : accept({ parts: body.takeInline(), spooled: null });
    const p = handed
      .catch((err: unknown) => {
        // Not stored: its spool file (if any) goes too. The caller answers 451.
        body.discard();
        throw err;
      })
      .then((res) => {
        this.messages++;
        const log = this.opts.logger;
        if (log.isLevelEnabled?.('info') !== false) {
          log.info({ event: 'message', id: res.id, size, rcpts: nRcpts, from: env.mailFrom, listener: this.listener.name, client: this.conn.remoteAddress, tls: this.facts.tls?.protocol ?? null }, 'message accepted');
        }
        return queued(res.id);
      });
    // RFC 5321 §4.1.1.4 + the durability contract: 250 only after the store says it is on disk.
    this.runAsync(p);
  }
}
