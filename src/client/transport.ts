/**
 * The only client code that touches sockets: connect (plain or implicit TLS), read reply lines on
 * demand with a deadline and a length limit, write with backpressure and a deadline, and the
 * client side of the STARTTLS upgrade.
 *
 * Invariants:
 * - the receive buffer holds at most HIGH_WATER octets plus one read: above HIGH_WATER the socket
 *   is paused (TCP pushes back on the server) until lines are taken out; a reader waiting for a
 *   line gives up once maxLineLength + 1 octets have no LF (an endless reply line is a
 *   PROTOCOL_ERROR naming the limit, not a memory problem);
 * - every read waits at most until its deadline; the TIMEOUT message names the limit that was
 *   applied and the setting it came from (a Limit), never the time that happened to be left;
 * - writes respect backpressure: data goes to Node in pieces of at most WRITE_PIECE octets, and
 *   when socket.write() returns false nothing more is written until 'drain' (each wait with the
 *   write's Limit, RFC 5321 §4.5.3.2.5: the data-block timeout is per send). So the bytes queued
 *   in Node (socket.writableLength) stay below WRITE_PIECE + the stream's high-water mark whatever
 *   the size of the message, and a server that stops reading stalls the sender, not its memory;
 * - replies may end in a bare LF: we are liberal in what we accept from servers (RFC 5321 §2.3.8
 *   binds what they send; a bare LF in a *reply* cannot smuggle anything into our own framing,
 *   and every line still counts against maxLineLength and maxReplyLines). Our own output is CRLF
 *   only (client.ts, message.ts);
 * - upgrade() hands the raw socket to TLS only after taking every byte already received out of
 *   the buffer, partial line included, and returns them to the caller: bytes that came with or
 *   after the 220 are never read as a reply inside TLS (RFC 3207 §4.2, response injection,
 *   Exim CVE-2021-38371); bytes arriving later reach OpenSSL, where they break the handshake;
 * - after upgrade() or destroy() this object refuses every read and write.
 */
import net from 'node:net';
import tls from 'node:tls';
import { SmtpClientError } from './errors.js';
import type { Limit } from './options.js';

const EMPTY = Buffer.alloc(0);
/** Unread input above which the socket is paused. */
const HIGH_WATER = 256 * 1024;
/** Largest single socket.write(): a message body goes to Node in pieces of this size. */
export const WRITE_PIECE = 64 * 1024;

/** What the connection holds right now (tests and diagnostics). */
export interface SocketStats {
  /** Octets handed to Node and not yet to the kernel (socket.writableLength). */
  queuedBytes: number;
  /** Octets received and not yet read as lines. */
  unreadBytes: number;
  /** A write is waiting for 'drain' (the server is not reading fast enough). */
  waitingForDrain: boolean;
}

export interface LineLimits {
  /** Longest reply line accepted, without CRLF (RFC 5321 §4.5.3.1.5 says 512; we allow more). */
  maxLineLength: number;
}

export class LineSocket {
  private buf: Buffer = EMPTY;
  private waiter: (() => void) | null = null;
  private failure: SmtpClientError | null = null;
  private detached = false;
  private draining = false;
  private readonly onData = (chunk: Buffer): void => {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.buf.length > HIGH_WATER) this.socket.pause();
    this.wake();
  };
  private readonly onEnd = (): void => this.fail(new SmtpClientError('CONNECTION_CLOSED', 'the server closed the connection'));
  private readonly onError = (err: Error): void =>
    this.fail(new SmtpClientError('CONNECTION_CLOSED', `connection error: ${(err as NodeJS.ErrnoException).code ?? err.message}`, { cause: err }));

  constructor(
    readonly socket: net.Socket,
    private readonly limits: LineLimits,
  ) {
    socket.setNoDelay(true);
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
  }

  get isTls(): boolean {
    return this.socket instanceof tls.TLSSocket;
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    if (w) w();
  }

  private fail(err: SmtpClientError): void {
    if (this.failure === null) this.failure = err;
    this.wake();
  }

  private usable(): void {
    if (this.detached) throw new SmtpClientError('CLIENT_UPGRADED', 'this connection was handed to TLS; use the secured client');
  }

  /**
   * Next line without its CRLF (a bare LF also ends a reply line, see the header). Rejects with
   * TIMEOUT when nothing ends a line by `deadline` (epoch ms; default now + limit.ms; a whole
   * reply passes one deadline to all its lines), CONNECTION_CLOSED, or PROTOCOL_ERROR (overlong).
   */
  async readLine(limit: Limit, what: string, deadline = Date.now() + limit.ms): Promise<string> {
    this.usable();
    for (;;) {
      const lf = this.buf.indexOf(0x0a);
      if (lf >= 0) {
        const end = lf > 0 && this.buf[lf - 1] === 0x0d ? lf - 1 : lf;
        if (end > this.limits.maxLineLength) throw this.overlong();
        const line = this.buf.toString('utf8', 0, end);
        this.buf = this.buf.subarray(lf + 1);
        if (this.socket.isPaused() && this.buf.length < HIGH_WATER) this.socket.resume();
        return line;
      }
      // No LF in more than a line's worth: an endless reply line is cut off here, bounded.
      if (this.buf.length > this.limits.maxLineLength + 1) throw this.overlong();
      if (this.failure) throw this.failure;
      if (this.socket.isPaused()) this.socket.resume();
      await this.waitForInput(limit, what, deadline);
    }
  }

  private overlong(): SmtpClientError {
    return this.abort('PROTOCOL_ERROR', `reply line longer than ${this.limits.maxLineLength} octets (limits.maxLineLength)`);
  }

  private waitForInput(limit: Limit, what: string, deadline: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      // The timer runs for what is left of the deadline; the message names the limit itself.
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(this.abort('TIMEOUT', `no complete reply to ${what} within ${limit.ms} ms (${limit.name})`));
      }, Math.max(0, deadline - Date.now()));
      this.waiter = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /**
   * Writes with backpressure (see the header): pieces of at most WRITE_PIECE octets, and after a
   * write() that returns false, a wait for 'drain' of at most limit.ms before the next piece.
   * Resolves when the last piece is accepted by Node (queued below the high-water mark, or after
   * its drain). Rejects with TIMEOUT (the server stopped reading) or CONNECTION_CLOSED.
   */
  async write(data: string | Uint8Array, limit: Limit, what: string): Promise<void> {
    this.usable();
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    for (let off = 0; off < bytes.length; off += WRITE_PIECE) {
      if (this.failure) throw this.failure;
      if (this.socket.destroyed) throw new SmtpClientError('CONNECTION_CLOSED', `the connection is gone (sending ${what})`);
      if (!this.socket.write(bytes.subarray(off, off + WRITE_PIECE))) await this.drained(limit, what);
    }
  }

  private drained(limit: Limit, what: string): Promise<void> {
    const s = this.socket;
    this.draining = true;
    return new Promise<void>((resolve, reject) => {
      const settle = (): void => {
        this.draining = false;
        clearTimeout(timer);
        s.off('drain', onDrain);
        s.off('close', onClose);
      };
      const onDrain = (): void => {
        settle();
        resolve();
      };
      // onEnd/onError (registered first) have set this.failure by the time this runs.
      const onClose = (): void => {
        settle();
        reject(this.failure ?? new SmtpClientError('CONNECTION_CLOSED', `the server closed the connection while we sent ${what}`));
      };
      const timer = setTimeout(() => {
        settle();
        reject(this.abort('TIMEOUT', `could not send ${what} within ${limit.ms} ms (${limit.name}): the server stopped reading`));
      }, limit.ms);
      s.on('drain', onDrain);
      s.on('close', onClose);
    });
  }

  /** Bytes queued for sending and received-but-unread, right now. */
  get stats(): SocketStats {
    return { queuedBytes: this.socket.writableLength, unreadBytes: this.buf.length, waitingForDrain: this.draining };
  }

  /** Destroys the socket and returns the error to throw. */
  abort(code: 'PROTOCOL_ERROR' | 'TIMEOUT', message: string): SmtpClientError {
    const err = new SmtpClientError(code, message);
    this.fail(err);
    this.socket.destroy();
    return err;
  }

  /** Bytes received and not yet read as lines (partial line included). */
  get unread(): number {
    return this.buf.length;
  }

  /**
   * Client side of STARTTLS (RFC 3207 §4.2): takes every unread byte out of the buffer (the
   * caller records them as a finding: they arrived with or after the 220 and before TLS, so a
   * man in the middle may have put them there), detaches, and runs the TLS handshake on the raw
   * socket. Resolves with the secured socket; rejects with TLS_HANDSHAKE_FAILED.
   */
  async upgrade(options: tls.ConnectionOptions, limit: Limit): Promise<{ secure: tls.TLSSocket; discarded: Buffer }> {
    this.usable();
    const discarded = this.buf;
    this.buf = EMPTY;
    this.detached = true;
    const raw = this.socket;
    raw.off('data', this.onData);
    raw.off('end', this.onEnd);
    raw.off('close', this.onEnd);
    raw.off('error', this.onError);
    if (this.failure) {
      raw.destroy();
      throw new SmtpClientError('TLS_HANDSHAKE_FAILED', `connection lost before the TLS handshake: ${this.failure.message}`);
    }
    const secure = await handshake(() => tls.connect({ ...options, socket: raw }), limit, raw);
    return { secure, discarded };
  }

  /** Half-close politely (after QUIT) and make sure the socket goes away. */
  close(): void {
    if (this.detached) return;
    this.detached = true;
    const s = this.socket;
    s.end();
    // A peer that never closes its side must not hold the socket: destroy after a short grace.
    setTimeout(() => s.destroy(), 2000).unref();
  }

  destroy(): void {
    this.detached = true;
    this.socket.destroy();
  }
}

/** Runs a TLS client handshake; on error, close or timeout destroys everything and rejects. */
function handshake(start: () => tls.TLSSocket, limit: Limit, raw: net.Socket | null): Promise<tls.TLSSocket> {
  return new Promise<tls.TLSSocket>((resolve, reject) => {
    const secure = start();
    const fail = (reason: string, cause?: unknown): void => {
      clearTimeout(timer);
      secure.destroy();
      raw?.destroy();
      reject(new SmtpClientError('TLS_HANDSHAKE_FAILED', `TLS handshake failed: ${reason}`, { cause }));
    };
    const onError = (err: Error): void => fail((err as NodeJS.ErrnoException).code ?? err.message, err);
    const onClose = (): void => fail('connection closed during the handshake');
    const timer = setTimeout(() => fail(`no handshake within ${limit.ms} ms (${limit.name})`), limit.ms);
    secure.once('error', onError);
    secure.once('close', onClose);
    secure.once('secureConnect', () => {
      clearTimeout(timer);
      secure.off('error', onError);
      secure.off('close', onClose);
      resolve(secure);
    });
  });
}

/** Plain TCP connect with a deadline. */
export function connectPlain(host: string, port: number, limit: Limit, localAddress?: string): Promise<net.Socket> {
  return new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host, port, ...(localAddress ? { localAddress } : {}) });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new SmtpClientError('TIMEOUT', `no TCP connection to ${host}:${port} within ${limit.ms} ms (${limit.name})`));
    }, limit.ms);
    s.once('connect', () => {
      clearTimeout(timer);
      s.off('error', onError);
      resolve(s);
    });
    const onError = (err: Error): void => {
      clearTimeout(timer);
      reject(new SmtpClientError('CONNECT_FAILED', `cannot connect to ${host}:${port}: ${(err as NodeJS.ErrnoException).code ?? err.message}`, { cause: err }));
    };
    s.once('error', onError);
  });
}

/**
 * Implicit TLS (RFC 8314 §3, port 465): TCP connect, then the handshake before any SMTP. Each step
 * has its own limit (the handshake used to run on the connect timeout).
 */
export async function connectImplicitTls(host: string, port: number, options: tls.ConnectionOptions, limits: { connect: Limit; handshake: Limit }, localAddress?: string): Promise<tls.TLSSocket> {
  const raw = await connectPlain(host, port, limits.connect, localAddress);
  return handshake(() => tls.connect({ ...options, socket: raw }), limits.handshake, raw);
}
