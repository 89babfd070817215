/**
 * The only client code that touches sockets: connect (plain or implicit TLS), read reply lines on
 * demand with a deadline and a length limit, write with a deadline, and the client side of the
 * STARTTLS upgrade.
 *
 * Invariants:
 * - input is kept in one buffer that holds at most one partial line beyond maxLineLength plus
 *   one high-water mark of complete lines (the socket is paused above it);
 * - a line longer than maxLineLength is a PROTOCOL_ERROR, not a memory problem;
 * - upgrade() hands the raw socket to TLS only after taking every byte already received out of
 *   the buffer, partial line included, and returns them to the caller: bytes that came with or
 *   after the 220 are never read as a reply inside TLS (RFC 3207 §4.2, response injection,
 *   Exim CVE-2021-38371); bytes arriving later reach OpenSSL, where they break the handshake;
 * - after upgrade() or destroy() this object refuses every read and write.
 */
import net from 'node:net';
import tls from 'node:tls';
import { SmtpClientError } from './errors.js';

const EMPTY = Buffer.alloc(0);
const HIGH_WATER = 256 * 1024;

export interface LineLimits {
  /** Longest reply line accepted, without CRLF (RFC 5321 §4.5.3.1.5 says 512; we allow more). */
  maxLineLength: number;
}

export class LineSocket {
  private buf: Buffer = EMPTY;
  private waiter: (() => void) | null = null;
  private failure: SmtpClientError | null = null;
  private detached = false;
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

  /** Next line without its CRLF (a bare LF also ends a line). Rejects on timeout, close, overlong. */
  async readLine(timeoutMs: number, what: string): Promise<string> {
    this.usable();
    for (;;) {
      const lf = this.buf.indexOf(0x0a);
      if (lf >= 0) {
        const end = lf > 0 && this.buf[lf - 1] === 0x0d ? lf - 1 : lf;
        if (end > this.limits.maxLineLength) throw this.abort('PROTOCOL_ERROR', `reply line longer than ${this.limits.maxLineLength} octets`);
        const line = this.buf.toString('utf8', 0, end);
        this.buf = this.buf.subarray(lf + 1);
        if (this.socket.isPaused() && this.buf.length < HIGH_WATER) this.socket.resume();
        return line;
      }
      if (this.buf.length > this.limits.maxLineLength + 1) throw this.abort('PROTOCOL_ERROR', `reply line longer than ${this.limits.maxLineLength} octets`);
      if (this.failure) throw this.failure;
      if (this.socket.isPaused()) this.socket.resume();
      await this.waitForInput(timeoutMs, what);
    }
  }

  private waitForInput(timeoutMs: number, what: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(this.abort('TIMEOUT', `no reply to ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiter = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  /** Writes and resolves once the bytes are handed to the kernel; a stalled peer times out. */
  write(data: string | Uint8Array, timeoutMs: number, what: string): Promise<void> {
    this.usable();
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(this.abort('TIMEOUT', `could not send ${what} within ${timeoutMs} ms`)), timeoutMs);
      const cb = (err?: Error | null): void => {
        clearTimeout(timer);
        if (err) reject(new SmtpClientError('CONNECTION_CLOSED', `write failed: ${err.message}`, { cause: err }));
        else resolve();
      };
      if (typeof data === 'string') this.socket.write(data, 'utf8', cb);
      else this.socket.write(data, cb);
    });
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
  async upgrade(options: tls.ConnectionOptions, timeoutMs: number): Promise<{ secure: tls.TLSSocket; discarded: Buffer }> {
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
    const secure = await handshake(() => tls.connect({ ...options, socket: raw }), timeoutMs, raw);
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
function handshake(start: () => tls.TLSSocket, timeoutMs: number, raw: net.Socket | null): Promise<tls.TLSSocket> {
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
    const timer = setTimeout(() => fail(`no handshake within ${timeoutMs} ms`), timeoutMs);
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
export function connectPlain(host: string, port: number, timeoutMs: number, localAddress?: string): Promise<net.Socket> {
  return new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host, port, ...(localAddress ? { localAddress } : {}) });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new SmtpClientError('TIMEOUT', `no TCP connection to ${host}:${port} within ${timeoutMs} ms`));
    }, timeoutMs);
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

/** Implicit TLS (RFC 8314 §3, port 465): TCP connect, then the handshake before any SMTP. */
export async function connectImplicitTls(host: string, port: number, options: tls.ConnectionOptions, timeoutMs: number, localAddress?: string): Promise<tls.TLSSocket> {
  const raw = await connectPlain(host, port, timeoutMs, localAddress);
  return handshake(() => tls.connect({ ...options, socket: raw }), timeoutMs, raw);
}
