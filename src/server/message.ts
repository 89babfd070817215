/**
 * Receiving one message: DATA content (dot-terminated) and BDAT chunks (RFC 3030), the minimum
 * data rate, and handing the result to the store with its Received header. The session's pump
 * gives it the connection's unread bytes; it says how far it read.
 *
 * Invariants:
 * - DATA/BDAT content must keep limits.minDataRate (the deadline counts from the phase start);
 * - a message body is held in memory only up to the spool threshold (BodyCollector) and counted
 *   in the server-wide body budget; past the budget no new message starts (452 4.3.1);
 * - a message with a bare CR or LF is refused after its end was read under
 *   bareLineEndings=reject (SMTP smuggling), so client and server agree where it ended;
 * - "250 queued" only once the store says the message is on disk (the durability contract).
 */
import { DotReader, LineEndingStream } from '../protocol/data.js';
import type { Reply } from '../protocol/reply.js';
import type { ReceivedProtocol } from '../types.js';
import { newMessageId as newQueueId } from '../store/ids.js';
import type { SpooledBody } from '../store/spool.js';
import { BodyCollector, type BodyBudget } from './body.js';
import { receivedHead, receivedTail, receivedTls } from './received.js';
import { R, chunkOk, queued } from './replies.js';
import type { Envelope, SessionFacts } from './state.js';
import type { ListenerOptions, ServerOptions, VerifierResult } from './types.js';

/** What the intake needs from its session. */
export interface IntakeHost {
  readonly opts: ServerOptions;
  readonly listener: ListenerOptions;
  readonly remoteAddress: string;
  readonly bodyBudget: BodyBudget;
  readonly facts: SessionFacts;
  envelope: Envelope | null;
  send(r: Reply): void;
  /** Runs the store step; the reply it resolves with is sent when it settles. */
  runAsync(p: Promise<Reply | null>): void;
  /** Sets the deadline (0: none) and the idle timeout of the connection. */
  setTimers(deadline: number, idleMs: number): void;
}

export class MessageIntake {
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
  /** Messages stored in this session. */
  accepted = 0;
  /** The session-constant parts of the Received header, and the facts they were built from. */
  private received: { facts: SessionFacts; helo: string | null; auth: string | null; esmtp: boolean; head: string; tls: string } | null = null;

  constructor(private readonly host: IntakeHost) {}

  // ---- DATA ----

  /** Answers DATA; true when content follows (354), false when refused. */
  beginData(): boolean {
    const h = this.host;
    // Bounded resources: past the server-wide budget of body bytes in memory, no new message
    // starts (RFC 5321 §4.2.5 / RFC 3463: 452 4.3.1 insufficient system storage).
    if (h.bodyBudget.exhausted) {
      h.send(R.insufficientStorage);
      return false;
    }
    this.dot = new DotReader({ maxSize: h.opts.limits.maxMessageSize, normalize: h.opts.bareLineEndings === 'normalize' });
    this.body = this.newBody();
    this.startClock();
    h.send(R.startData);
    return true;
  }

  /**
   * Reads DATA content from buf[start..): the index just past the end-of-data line, -1 when all
   * of it was content (read on), null when no DATA is in progress.
   */
  feedData(buf: Buffer, start: number): number | null {
    const dot = this.dot;
    if (!dot) return null;
    const end = dot.feed(buf, start, buf.length);
    if (end < 0) {
      // Bounded memory: the body so far goes to the collector, which spools it when large.
      this.body?.add(dot.take());
      this.keepDataRate(dot.size);
    }
    return end;
  }

  /** The end-of-data line was read: check and store the message. */
  finishData(): void {
    const h = this.host;
    const dot = this.dot;
    this.dot = null;
    this.stopClock();
    const body = this.body;
    this.body = null;
    const env = h.envelope;
    h.envelope = null;
    if (!env || body === null || dot === null) {
      body?.discard();
      h.send(R.needMail);
      return;
    }
    body.add(dot.take());
    if (dot.tooBig) {
      body.discard();
      h.send(R.sizeExceeded);
      return;
    }
    // SMTP smuggling defence: a message with a bare CR or LF is refused after its end was read,
    // so the client and we agree where it ended and nothing of it is read as a command.
    if ((dot.bareCr || dot.bareLf) && h.opts.bareLineEndings === 'reject') {
      body.discard();
      h.send(R.bareLineEnding);
      return;
    }
    this.store(env, body);
  }

  // ---- BDAT (RFC 3030) ----

  beginBdat(size: number, last: boolean, error: Reply | null): void {
    const h = this.host;
    this.bdatRemaining = size;
    this.bdatLast = last;
    this.bdatRead = 0;
    this.startClock();
    const env = h.envelope;
    if (!error && env && !env.bdat) {
      // Bounded resources: no new message past the memory budget (the chunk is still read).
      if (h.bodyBudget.exhausted) error = R.insufficientStorage;
      else {
        env.bdat = { size: 0, lineEndings: new LineEndingStream(h.opts.bareLineEndings === 'normalize') };
        this.body = this.newBody();
      }
    }
    this.bdatError = error;
  }

  /** Reads chunk bytes from buf[start..): the index reached, and whether the chunk is complete. */
  feedBdat(buf: Buffer, start: number): { end: number; done: boolean } {
    const take = Math.min(buf.length - start, this.bdatRemaining);
    if (take > 0) {
      this.bdatBytes(buf.subarray(start, start + take));
      this.bdatRemaining -= take;
      this.bdatRead += take;
    }
    if (this.bdatRemaining > 0) this.keepDataRate(this.bdatRead);
    return { end: start + take, done: this.bdatRemaining === 0 };
  }

  private bdatBytes(bytes: Uint8Array): void {
    // Chunk bytes are content only: they never pass through the command parser.
    const h = this.host;
    const b = h.envelope?.bdat;
    const body = this.body;
    if (this.bdatError || !b || body === null) return;
    b.size += bytes.length;
    if (b.size > h.opts.limits.maxMessageSize) {
      this.bdatError = R.sizeExceeded;
      body.discard();
      this.body = null;
      return;
    }
    // Views into the connection's buffers (each read is a new Buffer), kept without copying
    // while in memory; the collector spools them past its threshold.
    body.add(b.lineEndings.push(bytes));
  }

  /** The chunk was read: answer it, and store the message after the LAST one. */
  finishBdatChunk(): void {
    const h = this.host;
    this.stopClock();
    const env = h.envelope;
    if (this.bdatError) {
      const err = this.bdatError;
      this.bdatError = null;
      // A failed chunk ends the transaction (RFC 3030 §2: the client must RSET or start again).
      if (err === R.sizeExceeded) {
        h.envelope = null;
        this.dropBody();
      }
      h.send(err);
      return;
    }
    const body = this.body;
    if (!env?.bdat || body === null) {
      h.send(R.needMail);
      return;
    }
    const { size, lineEndings } = env.bdat;
    if (!this.bdatLast) {
      h.send(chunkOk(size));
      return;
    }
    h.envelope = null;
    this.body = null;
    body.add(lineEndings.end());
    if (lineEndings.bare && h.opts.bareLineEndings === 'reject') {
      body.discard();
      h.send(R.bareLineEnding);
      return;
    }
    this.store(env, body);
  }

  /** Gives back the memory (and spool file) of a message cut off mid-way. */
  dropBody(): void {
    if (this.body !== null) {
      this.body.discard();
      this.body = null;
    }
  }

  // ---- clocks: a trickle of bytes cannot hold a slot forever ----

  private startClock(): void {
    this.dataStartedAt = Date.now();
    this.host.setTimers(this.rateDeadline(0), this.host.opts.limits.dataTimeoutMs);
  }

  private stopClock(): void {
    this.host.setTimers(0, this.host.opts.limits.commandTimeoutMs);
  }

  /**
   * DATA and BDAT content must arrive at limits.minDataRate bytes/s or better (Postfix
   * smtpd_min_data_rate): the deadline is the phase start plus the data timeout plus the time the
   * bytes received so far buy at that rate. 0 turns the rate rule off (the idle timeout remains).
   */
  private rateDeadline(bytes: number): number {
    const l = this.host.opts.limits;
    return l.minDataRate > 0 ? this.dataStartedAt + l.dataTimeoutMs + (bytes * 1000) / l.minDataRate : 0;
  }

  private keepDataRate(bytes: number): void {
    if (this.host.opts.limits.minDataRate > 0) this.host.setTimers(this.rateDeadline(bytes), -1);
  }

  // ---- storing ----

  /** A body collector for the message about to be received (its id is the spool file's name). */
  private newBody(): BodyCollector {
    this.body?.discard();
    const o = this.host.opts;
    return new BodyCollector(this.host.bodyBudget, o.spool ?? null, o.limits.spoolThreshold, newQueueId());
  }

  /**
   * DKIM signing once, at submission, before the message is stored (RFC 6376 §2.1 signer role):
   * only mail of an authenticated session on a listener that offers AUTH. The signature fields
   * go after our Received header. Without a signer, `accept` itself (no extra tick).
   */
  private signed<T>(mailFrom: string, authUser: string | null, accept: (m: { parts: Uint8Array[]; spooled: SpooledBody | null }) => Promise<T>): (m: { parts: Uint8Array[]; spooled: SpooledBody | null }) => Promise<T> {
    const signer = this.host.opts.signer;
    if (!signer || authUser === null || this.host.listener.auth === 'none') return accept;
    return (m) => signer({ mailFrom, data: m.parts, spooled: m.spooled }).then((sig) => accept(sig ? { parts: [sig, ...m.parts], spooled: m.spooled } : m));
  }

  /**
   * ARC sealing (RFC 8617) of mail that local aliases forward to other hosts, once, at acceptance:
   * mx listener only, after verification (its ARC verdict is the seal's cv=), before the store.
   * The ARC Set goes right after our Received header (before our Authentication-Results).
   * Without a sealer, or nothing forwarded, or not verified: `next` itself.
   */
  private sealed<T>(env: Envelope, received: string, verdicts: () => VerifierResult | null, next: (m: { parts: Uint8Array[]; spooled: SpooledBody | null }) => Promise<T>): (m: { parts: Uint8Array[]; spooled: SpooledBody | null }) => Promise<T> {
    const sealer = this.host.opts.sealer;
    if (!sealer || this.host.listener.name !== 'mx') return next;
    const forwarders = Object.values(env.forwardedFrom);
    if (forwarders.length === 0) return next;
    const domains = forwarders.map((a) => a.slice(a.lastIndexOf('@') + 1));
    return (m) => {
      const v = verdicts();
      if (v === null) return next(m);
      return sealer({ received, data: m.parts, spooled: m.spooled, authResults: v.header, validation: v.verdicts.arc.result, domains }).then((seal) => next(seal ? { parts: [seal, ...m.parts], spooled: m.spooled } : m));
    };
  }

  /**
   * Verification of received mail (auth/verify.ts) on the mx listener only, before the message
   * is stored: our Authentication-Results goes right after our Received header (RFC 8601 §5), the
   * content is the verifier's (forged Authentication-Results removed). A spooled body is verified
   * as a stream from its fsync'd spool file; forged Authentication-Results in its header block are
   * obscured in place (same-length patches, fsync'd again) rather than copying the file. Without
   * a verifier, `next` itself.
   */
  private verified<T>(env: Envelope, m: { parts: Uint8Array[]; spooled: SpooledBody | null }, record: (v: VerifierResult) => void, next: (m: { parts: Uint8Array[]; spooled: SpooledBody | null }) => Promise<T>): Promise<T | Reply> {
    const h = this.host;
    const verifier = h.opts.verifier;
    if (!verifier || h.listener.name !== 'mx') return next(m);
    const spool = h.opts.spool;
    const spooled = m.spooled;
    // A spool that cannot name its files (a library's own BodySpool): stored unverified.
    if (spooled !== null && (typeof spool?.pathOf !== 'function' || typeof spool.patch !== 'function')) return next(m);
    const data = spooled !== null && spool ? { path: spool.pathOf?.(spooled.file) ?? '' } : Buffer.concat(m.parts);
    return verifier({ data, ip: h.remoteAddress, helo: h.facts.heloName ?? '', mailFrom: env.mailFrom }).then(async (v): Promise<T | Reply> => {
      if (v.reject) return v.reject;
      record(v);
      const header = Buffer.from(v.header, 'utf8');
      if (spooled !== null) {
        if (v.patches && v.patches.length > 0) await spool?.patch?.(spooled.file, v.patches);
        return next({ parts: [header], spooled });
      }
      return next({ parts: [header, v.data ?? Buffer.concat(m.parts)], spooled: null });
    });
  }

  private protocol(): ReceivedProtocol {
    const f = this.host.facts;
    if (!f.esmtp) return f.tls ? 'ESMTPS' : 'SMTP';
    if (f.tls) return f.authUser ? 'ESMTPSA' : 'ESMTPS';
    return f.authUser ? 'ESMTPA' : 'ESMTP';
  }

  private store(env: Envelope, body: BodyCollector): void {
    const h = this.host;
    if (body.overBudget || body.ioError) {
      if (body.ioError) h.opts.logger.error({ err: String(body.ioError), client: h.remoteAddress }, 'spool write failed');
      body.discard();
      h.send(body.overBudget ? R.insufficientStorage : R.storeFailed);
      return;
    }
    const id = body.id;
    const receivedAt = new Date();
    const nLocal = env.localRecipients.length;
    const nRcpts = nLocal + env.remoteRecipients.length;
    const recipient = nRcpts === 1 ? ((nLocal === 1 ? env.localRecipients[0] : env.remoteRecipients[0]) ?? null) : null;
    const f = h.facts;
    let rc = this.received;
    if (rc === null || rc.facts !== f || rc.helo !== f.heloName || rc.auth !== f.authUser || rc.esmtp !== f.esmtp) {
      const authenticatedSender = h.opts.received?.showAuthenticatedSender === false ? null : f.authUser;
      const head = receivedHead({ heloName: f.heloName ?? 'unknown', clientAddress: h.remoteAddress, hostname: h.opts.hostname, protocol: this.protocol(), authenticatedSender });
      rc = this.received = { facts: f, helo: f.heloName, auth: f.authUser, esmtp: f.esmtp, head, tls: receivedTls(f.tls) };
    }
    const header = rc.head + id + rc.tls + receivedTail(recipient, receivedAt);
    const size = body.size;
    // No join here: the sink gets the pieces (the store copies them into its batch buffer once),
    // or, for a large message, the fsync'd spool file and our header.
    // Set by the verifier (mx listener) before accept runs: the verdicts stored with the message.
    let auth: VerifierResult | null = null;
    const accept = ({ parts, spooled }: { parts: Uint8Array[]; spooled: SpooledBody | null }): Promise<{ id: string }> =>
      h.opts.sink.accept({
        id,
        mailFrom: env.mailFrom,
        localRecipients: env.localRecipients,
        remoteRecipients: env.remoteRecipients,
        // The address table's final targets (server/commands.ts rcpt): mailbox entries, forwards.
        mailboxes: env.mailboxes,
        forwardedFrom: env.forwardedFrom,
        receivedAt,
        listener: h.listener.name,
        clientAddress: h.remoteAddress,
        heloName: f.heloName ?? '',
        authUser: f.authUser,
        tls: f.tls,
        pipelined: f.pipelined,
        requireTls: env.requireTls,
        body: env.body,
        smtpUtf8: env.smtpUtf8,
        envId: env.envId,
        ret: env.ret,
        recipientDsn: env.recipientDsn,
        authResults: auth?.verdicts ?? null,
        quarantine: auth?.quarantine ?? false,
        spooled,
        data: [Buffer.from(header, 'utf8'), ...parts],
      });
    const signed = this.sealed(env, header, () => auth, this.signed(env.mailFrom, f.authUser, accept));
    const record = (v: VerifierResult): void => {
      auth = v;
    };
    const handed = body.spooled ? body.end().then((m) => this.verified(env, m, record, signed)) : this.verified(env, { parts: body.takeInline(), spooled: null }, record, signed);
    const p = handed
      .catch((err: unknown) => {
        // Not stored: its spool file (if any) goes too. The caller answers 451.
        body.discard();
        throw err;
      })
      .then((res) => {
        // Refused by the verifier's policy (RFC 7489 §6.3 p=reject, or SPF -all): nothing stored.
        if (!('id' in res)) {
          body.discard();
          return res;
        }
        this.accepted++;
        h.opts.events?.messageAccepted(h.listener.name);
        const log = h.opts.logger;
        if (log.isLevelEnabled?.('info') !== false) {
          log.info({ event: 'message', id: res.id, size, rcpts: nRcpts, from: env.mailFrom, listener: h.listener.name, client: h.remoteAddress, tls: f.tls?.protocol ?? null }, 'message accepted');
        }
        return queued(res.id);
      });
    // RFC 5321 §4.1.1.4 + the durability contract: 250 only after the store says it is on disk.
    h.runAsync(p);
  }
}
