/**
 * The server side of one SMTP connection at the socket level: the receive buffer, batched writes,
 * timeouts, and the STARTTLS upgrade. The only server code that touches net.Socket/tls.TLSSocket.
 *
 * Invariants:
 * - input is read only while the session asks for it (`wantInput`); otherwise the socket is paused,
 *   so a busy session (storing a message, checking a password) holds a bounded amount of input;
 * - the buffer never holds more than one partial command line plus one TCP read: DATA and BDAT
 *   consume input as it arrives;
 * - upgradeToTls() purges every byte received before the handshake (RFC 3207 §4.2 / CVE-2011-0411)
 *   and never writes plaintext once the 220 is out; a failed or stalled handshake closes the socket;
 * - backpressure: replies are handed to the socket in pieces of at most OUT_FLUSH_AT bytes, and
 *   once the socket holds OUT_HIGH_WATER bytes a peer has not read, reading stops (and the session
 *   stops executing buffered commands) until 'drain'. A client that pipelines commands and never
 *   reads the replies therefore costs at most ~OUT_HIGH_WATER + one TCP read, and is cut off by
 *   the idle timeout (no read or write happens while it is blocked);
 * - no Node timer per socket: one server-wide IdleSweeper (an unref'd interval) checks every
 *   connection's last-activity time (set on each read and write), its deadline (an absolute
 *   time set by the session: a command line must end within the command timeout of its first
 *   byte, DATA must keep a minimum rate), its handshake deadline and its close grace. The sweep
 *   period is min(1000, smallest timeout / 4) ms, so a timeout fires between 1× and 1.25× its
 *   value (and never early).
 */
import type { Socket } from 'node:net';
import { TLSSocket, type TLSSocketOptions } from 'node:tls';
import { preselectContext } from './client-hello.js';

const EMPTY = Buffer.alloc(0);
/** After we end a connection, how long a peer that does not close may keep it. */
const CLOSE_GRACE_MS = 5000;
/** Unread reply bytes in the socket above which input stops until the peer reads ('drain'). */
export const OUT_HIGH_WATER = 64 * 1024;
/** Queued reply text is handed to the socket once it reaches this size (pipelined replies). */
const OUT_FLUSH_AT = 16 * 1024;

const nativeLatin1Slice = (Buffer.prototype as unknown as { latin1Slice?: (this: Buffer, start: number, end: number) => string }).latin1Slice;

/**
 * ASCII bytes of a received buffer as a string (for protocol/lines.ts, which stays free of node:*):
 * Buffer's native latin1 slice, the cheapest decode there is for bytes already checked < 0x80.
 */
export function latin1Slice(buf: Uint8Array, start: number, end: number): string {
  if (nativeLatin1Slice !== undefined && buf instanceof Buffer) return nativeLatin1Slice.call(buf, start, end);
  return Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('latin1', start, end);
}

export interface ConnectionEvents {
  /** New bytes are in the buffer, or the peer read our replies and input may be processed again. */
  onInput(): void;
  /** The peer closed, an error happened, or we closed. Called once. */
  onClose(reason: string): void;
  /** No traffic for the idle timeout ('idle'), or the deadline set with setDeadline passed. */
  onTimeout(kind: 'idle' | 'deadline'): void;
}

/** Something the sweeper looks at once per period. */
export interface Sweepable {
  /** Check deadlines against `now` (Date.now()); return false to be dropped from the sweep. */
  sweep(now: number): boolean;
}

/**
 * One interval for every connection of a server instead of a Node timer per socket (a
 * `socket.setTimeout` re-armed on every read and write, a handshake timer, a close grace timer).
 * The interval runs only while something is registered, and is unref'd.
 */
export class IdleSweeper {
  private readonly items = new Set<Sweepable>();
  private timer: NodeJS.Timeout | null = null;
  private periodMs: number;

  constructor(private readonly maxPeriodMs = 1000) {
    this.periodMs = maxPeriodMs;
  }

  /** Register an item with deadlines of `timeoutMs` (or more). Idempotent. */
  add(item: Sweepable, timeoutMs: number): void {
    this.fit(timeoutMs);
    if (this.items.has(item)) return;
    this.items.add(item);
    if (this.timer === null) this.start();
  }

  delete(item: Sweepable): void {
    this.items.delete(item);
    if (this.items.size === 0 && this.timer !== null) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  /** Make sure a timeout of `timeoutMs` is seen within a quarter of its value. */
  fit(timeoutMs: number): void {
    if (!(timeoutMs > 0)) return;
    const want = Math.max(5, Math.min(this.maxPeriodMs, Math.floor(timeoutMs / 4)));
    if (want >= this.periodMs) return;
    this.periodMs = want;
    if (this.timer !== null) {
      clearInterval(this.timer);
      this.start();
    }
  }

  get size(): number {
    return this.items.size;
  }

  private start(): void {
    this.timer = setInterval(this.run, this.periodMs);
    this.timer.unref();
  }

  private readonly run = (): void => {
    const now = Date.now();
    for (const item of this.items) if (!item.sweep(now)) this.delete(item);
  };
}

export class ServerConnection implements Sweepable {
  socket: Socket;
  /** Unread input is buf[pos..buf.length); only consumeTo() and discardInput() move pos. */
  private buf: Buffer = EMPTY;
  private pos = 0;
  readonly remoteAddress: string;
  readonly remotePort: number;
  private out = '';
  /** The idle timeout in force (0: none). */
  private idleMs = 0;
  /** Date.now() at the last read or write (or when the idle timeout was last set). */
  private lastActivity = 0;
  /** While a TLS handshake runs: when it must be over, and how to end it (else 0 / null). */
  private handshakeDeadline = 0;
  private abortHandshake: ((err: Error) => void) | null = null;
  /** After end(): when the socket is destroyed if the peer has not closed (else 0). */
  private closeDeadline = 0;
  private readonly sweeper: IdleSweeper;
  /** An absolute time (Date.now()) by which the session's current step must be over (else 0). */
  private deadline = 0;
  private closed = false;
  /** Whether the session wants input; the socket reads only while this holds and no write is blocked. */
  private reading = true;
  /** The socket holds OUT_HIGH_WATER unread reply bytes: input stops until 'drain'. */
  private writeBlocked = false;
  /** Lifetime totals, for the session line and the memory tests. */
  bytesIn = 0;
  private events: ConnectionEvents;
  private readonly onData = (chunk: Buffer): void => {
    if (this.pos >= this.buf.length) {
      this.buf = chunk;
    } else {
      this.buf = Buffer.concat([this.buf.subarray(this.pos), chunk]);
    }
    this.pos = 0;
    this.bytesIn += chunk.length;
    this.lastActivity = Date.now();
    this.events.onInput();
  };
  private readonly onDrain = (): void => {
    if (!this.writeBlocked || this.closed) return;
    this.writeBlocked = false;
    if (this.reading) this.socket.resume();
    // Buffered commands may wait for the replies to drain: let the session go on with them.
    this.events.onInput();
  };
  private readonly onEnd = (): void => this.finish('peer closed');
  private readonly onError = (err: Error): void => this.finish(`socket error: ${(err as NodeJS.ErrnoException).code ?? err.message}`);

  constructor(socket: Socket, events: ConnectionEvents, idleTimeoutMs: number, sweeper: IdleSweeper) {
    this.socket = socket;
    this.events = events;
    this.sweeper = sweeper;
    this.remoteAddress = normalizeIp(socket.remoteAddress ?? '');
    this.remotePort = socket.remotePort ?? 0;
    socket.setNoDelay(true);
    this.attach(socket);
    this.idleMs = idleTimeoutMs;
    this.lastActivity = Date.now();
    sweeper.add(this, idleTimeoutMs);
  }

  private attach(socket: Socket): void {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
    socket.on('drain', this.onDrain);
  }

  private detach(socket: Socket): void {
    socket.off('drain', this.onDrain);
    socket.off('data', this.onData);
    socket.off('end', this.onEnd);
    socket.off('close', this.onEnd);
    socket.off('error', this.onError);
  }

  /** Called by the IdleSweeper once per period. */
  sweep(now: number): boolean {
    if (this.closed) return false;
    if (this.closeDeadline !== 0) {
      if (now >= this.closeDeadline) {
        // A peer that never reads must not hold the socket.
        this.socket.destroy();
        return false;
      }
      return true;
    }
    if (this.abortHandshake !== null) {
      if (now >= this.handshakeDeadline) this.abortHandshake(Object.assign(new Error('TLS handshake timed out'), { code: 'TLS_HANDSHAKE_TIMEOUT' }));
      return true;
    }
    if (this.deadline !== 0 && now >= this.deadline) {
      this.deadline = 0;
      this.events.onTimeout('deadline');
      return true;
    }
    if (this.idleMs > 0 && now - this.lastActivity >= this.idleMs) {
      // Like Node's socket 'timeout': once, then again only after another idle period.
      this.lastActivity = now;
      this.events.onTimeout('idle');
    }
    return true;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get buffered(): number {
    return this.buf.length - this.pos;
  }

  /** The idle timeout from now on (the sweeper reads it; nothing is armed). */
  setIdleTimeout(ms: number): void {
    if (ms === this.idleMs) return;
    this.idleMs = ms;
    this.sweeper.fit(ms);
  }

  /**
   * An absolute deadline (Date.now() based) for the step in progress; 0 clears it. When it passes
   * the session gets onTimeout('deadline'). Cheap: nothing is armed, the sweeper compares.
   */
  setDeadline(at: number): void {
    this.deadline = at;
  }

  get hasDeadline(): boolean {
    return this.deadline !== 0;
  }

  /** Ask for more input (resume) or stop reading (pause) while the session is busy. */
  wantInput(want: boolean): void {
    if (want === this.reading || this.closed) return;
    this.reading = want;
    if (want) {
      if (!this.writeBlocked) this.socket.resume();
    } else {
      this.socket.pause();
    }
  }

  /**
   * True while the peer has not read OUT_HIGH_WATER bytes of our replies: the session must not
   * execute more commands (each would queue another reply) until onInput() says it drained.
   */
  get blocked(): boolean {
    return this.writeBlocked;
  }

  /** Queue text; it is sent by flush() so pipelined replies leave in one write (RFC 2920 §3.2). */
  queue(text: string): void {
    this.out += text;
    if (this.out.length >= OUT_FLUSH_AT) this.flush();
  }

  flush(): void {
    if (this.out.length === 0 || this.closed) return;
    const text = this.out;
    this.out = '';
    this.lastActivity = Date.now();
    const socket = this.socket;
    socket.write(text, 'latin1');
    // Backpressure: a peer that does not read its replies stops being read (and its buffered
    // commands stop being executed) until the socket drains. Memory per connection stays bounded.
    if (socket.writableLength >= OUT_HIGH_WATER && !this.writeBlocked) {
      this.writeBlocked = true;
      socket.pause();
    }
  }

  /** Write and resolve once the bytes are handed to the kernel. */
  flushAndWait(): Promise<void> {
    const text = this.out;
    this.out = '';
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new Error('connection closed'));
      this.lastActivity = Date.now();
      this.socket.write(text, 'latin1', (err) => (err ? reject(err) : resolve()));
    });
  }

  /**
   * The input API of the session: the unread bytes are inputBuffer[inputStart..inputBuffer.length).
   * Read them in place (no copy); consumeTo() says how far they were used. Each read from the
   * socket is a new Buffer, so views kept from an old inputBuffer stay valid.
   */
  get inputBuffer(): Buffer {
    return this.buf;
  }

  get inputStart(): number {
    return this.pos;
  }

  /** Marks the input before `index` (an offset into inputBuffer, ≥ inputStart) as used. */
  consumeTo(index: number): void {
    if (index >= this.buf.length) {
      this.buf = EMPTY;
      this.pos = 0;
    } else {
      this.pos = index;
    }
  }

  /** Throw away all unread input; returns how many bytes were dropped. */
  discardInput(): number {
    const n = this.buf.length - this.pos;
    this.buf = EMPTY;
    this.pos = 0;
    return n;
  }

  /**
   * STARTTLS, server side (RFC 3207 §4, ARCHITECTURE.md steps 2–7). The caller has already
   * validated the command and stopped consuming input. This writes the 220, purges everything
   * read so far, and hands the raw socket to TLS. Resolves with the number of purged bytes once
   * the handshake completes; rejects (after destroying the socket, with no plaintext written)
   * when the handshake fails or takes longer than handshakeTimeoutMs.
   */
  async upgradeToTls(
    ready: string,
    tlsOptions: TLSSocketOptions,
    handshakeTimeoutMs: number,
    idleTimeoutMs: number,
  ): Promise<{ purged: number; socket: TLSSocket }> {
    const raw = this.socket;
    // Step 2: stop consuming input. Paused, the socket emits no 'data'; bytes that arrive now stay
    // in the stream buffer and reach the TLS layer below, which is the right place for a
    // ClientHello and a harmless one for anything else (the handshake fails).
    raw.pause();
    this.reading = false;
    this.queue(ready);
    // Step 3: write 220 and wait until it is flushed.
    await this.flushAndWait();
    // Step 4: purge whatever was read past the STARTTLS line, partial line included
    // (CVE-2011-0411: such bytes must never be executed inside TLS).
    const purged = this.discardInput();
    this.detach(raw);
    // Step 5: wrap the raw socket; Node feeds bytes the stream already buffered to OpenSSL.
    let secure: TLSSocket;
    try {
      // The handshake deadline is absolute (bytes trickling in do not extend it); the sweeper
      // enforces it through the abort hook secureServerSocket hands back.
      this.handshakeDeadline = Date.now() + handshakeTimeoutMs;
      this.sweeper.fit(handshakeTimeoutMs);
      secure = await secureServerSocket(raw, tlsOptions, 0, (abort) => (this.abortHandshake = abort));
    } catch (err) {
      this.abortHandshake = null;
      // No plaintext reply on a failed handshake: just close (replying in plaintext would hand
      // a man in the middle a readable channel).
      this.finish(`tls handshake failed: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      throw err;
    }
    this.abortHandshake = null;
    this.socket = secure;
    this.attach(secure);
    this.idleMs = idleTimeoutMs;
    this.sweeper.fit(idleTimeoutMs);
    this.lastActivity = Date.now();
    this.reading = true;
    secure.resume();
    return { purged, socket: secure };
  }

  /** Send what is queued, then close the connection. */
  end(): void {
    if (this.closed) return;
    const text = this.out;
    this.out = '';
    this.socket.end(text, 'latin1');
    // A peer that never reads must not hold the socket: destroyed by the sweeper after a short
    // grace (no timer of its own).
    if (this.closeDeadline === 0) this.closeDeadline = Date.now() + CLOSE_GRACE_MS;
  }

  destroy(reason: string): void {
    this.socket.destroy();
    this.finish(reason);
  }

  private finish(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.sweeper.delete(this);
    this.events.onClose(reason);
  }
}

/** "::ffff:127.0.0.1" → "127.0.0.1". */
export function normalizeIp(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

/**
 * Server-side TLS handshake on an accepted socket (STARTTLS upgrade or implicit TLS, RFC 8314):
 * resolves once the handshake is done; on failure or after timeoutMs destroys the socket and
 * rejects. Nothing is ever written in plaintext here. timeoutMs 0: no timer of its own — the
 * caller gets an abort function through `onAbort` and enforces its deadline (the IdleSweeper).
 */
export function secureServerSocket(raw: Socket, tlsOptions: TLSSocketOptions, timeoutMs: number, onAbort?: (abort: (err: Error) => void) => void): Promise<TLSSocket> {
  // Several certificates: the context is chosen from the ClientHello's SNI before OpenSSL sees it
  // (Node's own SNICallback would drop the second key type: see client-hello.ts).
  if (tlsOptions.SNICallback !== undefined) {
    return preselectContext(raw, tlsOptions, timeoutMs, onAbort).then(({ options, remainingMs }) => secureServerSocket(raw, options, remainingMs, onAbort));
  }
  const secure = new TLSSocket(raw, { ...tlsOptions, isServer: true });
  return new Promise<TLSSocket>((resolve, reject) => {
    let done = false;
    const fail = (err: Error): void => {
      if (done) return;
      done = true;
      if (timer !== null) clearTimeout(timer);
      secure.off('secure', ok);
      secure.destroy();
      raw.destroy();
      reject(err);
    };
    const ok = (): void => {
      if (done) return;
      done = true;
      if (timer !== null) clearTimeout(timer);
      secure.off('error', fail);
      secure.off('close', onClose);
      resolve(secure);
    };
    const onClose = (): void => fail(new Error('connection closed during TLS handshake'));
    const timer = timeoutMs > 0 ? setTimeout(() => fail(Object.assign(new Error('TLS handshake timed out'), { code: 'TLS_HANDSHAKE_TIMEOUT' })), timeoutMs) : null;
    onAbort?.(fail);
    secure.once('secure', ok);
    secure.once('error', fail);
    secure.once('close', onClose);
  });
}
