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
 *   and never writes plaintext once the 220 is out; a failed or stalled handshake closes the socket.
 */
import type { Socket } from 'node:net';
import { TLSSocket, type TLSSocketOptions } from 'node:tls';

const EMPTY = Buffer.alloc(0);

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
  /** New bytes are in the buffer. */
  onInput(): void;
  /** The peer closed, an error happened, or we closed. Called once. */
  onClose(reason: string): void;
  /** No traffic for the idle timeout. */
  onTimeout(): void;
}

export class ServerConnection {
  socket: Socket;
  /** Unread input is buf[pos..buf.length). */
  buf: Buffer = EMPTY;
  pos = 0;
  readonly remoteAddress: string;
  readonly remotePort: number;
  private out = '';
  /** The idle timeout in force on the current socket. */
  private idleMs = 0;
  private closed = false;
  private reading = true;
  private events: ConnectionEvents;
  private readonly onData = (chunk: Buffer): void => {
    if (this.pos >= this.buf.length) {
      this.buf = chunk;
    } else {
      this.buf = Buffer.concat([this.buf.subarray(this.pos), chunk]);
    }
    this.pos = 0;
    this.events.onInput();
  };
  private readonly onEnd = (): void => this.finish('peer closed');
  private readonly onError = (err: Error): void => this.finish(`socket error: ${(err as NodeJS.ErrnoException).code ?? err.message}`);
  private readonly onTimeoutEvent = (): void => this.events.onTimeout();

  constructor(socket: Socket, events: ConnectionEvents, idleTimeoutMs: number) {
    this.socket = socket;
    this.events = events;
    this.remoteAddress = normalizeIp(socket.remoteAddress ?? '');
    this.remotePort = socket.remotePort ?? 0;
    socket.setNoDelay(true);
    this.attach(socket, idleTimeoutMs);
  }

  private attach(socket: Socket, idleTimeoutMs: number): void {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
    socket.on('timeout', this.onTimeoutEvent);
    socket.setTimeout(idleTimeoutMs);
    this.idleMs = idleTimeoutMs;
  }

  private detach(socket: Socket): void {
    socket.off('data', this.onData);
    socket.off('end', this.onEnd);
    socket.off('close', this.onEnd);
    socket.off('error', this.onError);
    socket.off('timeout', this.onTimeoutEvent);
    socket.setTimeout(0);
    this.idleMs = 0;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get buffered(): number {
    return this.buf.length - this.pos;
  }

  setIdleTimeout(ms: number): void {
    // Re-arming Node's socket timer costs a timer-list insert; the command and data timeouts are
    // usually equal, so only a different value is passed on.
    if (ms === this.idleMs) return;
    this.idleMs = ms;
    this.socket.setTimeout(ms);
  }

  /** Ask for more input (resume) or stop reading (pause) while the session is busy. */
  wantInput(want: boolean): void {
    if (want === this.reading || this.closed) return;
    this.reading = want;
    if (want) this.socket.resume();
    else this.socket.pause();
  }

  /** Queue text; it is sent by flush() so pipelined replies leave in one write (RFC 2920 §3.2). */
  queue(text: string): void {
    this.out += text;
  }

  flush(): void {
    if (this.out.length === 0 || this.closed) return;
    const text = this.out;
    this.out = '';
    this.socket.write(text, 'latin1');
  }

  /** Write and resolve once the bytes are handed to the kernel. */
  flushAndWait(): Promise<void> {
    const text = this.out;
    this.out = '';
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new Error('connection closed'));
      this.socket.write(text, 'latin1', (err) => (err ? reject(err) : resolve()));
    });
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
      secure = await secureServerSocket(raw, tlsOptions, handshakeTimeoutMs);
    } catch (err) {
      // No plaintext reply on a failed handshake: just close (replying in plaintext would hand
      // a man in the middle a readable channel).
      this.finish(`tls handshake failed: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      throw err;
    }
    this.socket = secure;
    this.attach(secure, idleTimeoutMs);
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
    // A peer that never reads must not hold the socket: destroy after a short grace.
    const s = this.socket;
    setTimeout(() => s.destroy(), 5000).unref();
  }

  destroy(reason: string): void {
    this.socket.destroy();
    this.finish(reason);
  }

  private finish(reason: string): void {
    if (this.closed) return;
    this.closed = true;
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
 * rejects. Nothing is ever written in plaintext here.
 */
export function secureServerSocket(raw: Socket, tlsOptions: TLSSocketOptions, timeoutMs: number): Promise<TLSSocket> {
  const secure = new TLSSocket(raw, { ...tlsOptions, isServer: true });
  return new Promise<TLSSocket>((resolve, reject) => {
    const fail = (err: Error): void => {
      clearTimeout(timer);
      secure.off('secure', ok);
      secure.destroy();
      raw.destroy();
      reject(err);
    };
    const ok = (): void => {
      clearTimeout(timer);
      secure.off('error', fail);
      secure.off('close', onClose);
      resolve(secure);
    };
    const onClose = (): void => fail(new Error('connection closed during TLS handshake'));
    const timer = setTimeout(() => fail(Object.assign(new Error('TLS handshake timed out'), { code: 'TLS_HANDSHAKE_TIMEOUT' })), timeoutMs);
    secure.once('secure', ok);
    secure.once('error', fail);
    secure.once('close', onClose);
  });
}
