/**
 * The client side of one SMTP connection at the socket level, beside the server side
 * (server-connection.ts): connect (plain or implicit TLS), read lines on demand with a deadline
 * and a length limit, write with backpressure, write exact bytes, and the client side of the
 * STARTTLS upgrade. The delivery client (client/) and every checker probe (check/) use it; neither
 * touches a socket.
 *
 * Invariants:
 * - the receive buffer holds at most HIGH_WATER octets plus one read: above HIGH_WATER the socket
 *   is paused (TCP pushes back on the server) until lines are taken out; a reader waiting for a
 *   line gives up once maxLineLength + 1 octets have no LF (an endless line is a PROTOCOL_ERROR
 *   naming the limit, not a memory problem);
 * - every read waits at most until its deadline; the TIMEOUT message names the limit that was
 *   applied and where it came from (a Limit), never the time that happened to be left;
 * - write() respects backpressure: data goes to Node in pieces of at most WRITE_PIECE octets, and
 *   when socket.write() returns false nothing more is written until 'drain' (each wait with the
 *   write's Limit, RFC 5321 §4.5.3.2.5: the data-block timeout is per send). So the bytes queued
 *   in Node stay below WRITE_PIECE + the stream's high-water mark whatever the size of the message;
 * - writeRaw() hands exact bytes to Node in ONE socket.write (a probe that must put two commands
 *   in one segment gets exactly that); it is for short probe data, not message bodies;
 * - lines may end in a bare LF: the peer's framing is read liberally (RFC 5321 §2.3.8 binds what
 *   servers send; a bare LF in a reply cannot smuggle anything into our own framing). What the
 *   callers write is their business (client/ writes CRLF only; check/ writes exact probe bytes);
 * - upgradeToTls() hands the raw socket to TLS only after taking every byte already received out
 *   of the buffer, partial line included, and returns them as `discarded`: bytes that came with or
 *   after the 220 are never read as a reply inside TLS (RFC 3207 §4.2, response injection, Exim
 *   CVE-2021-38371); bytes arriving later reach OpenSSL, where they break the handshake. A failed
 *   handshake is a value, not an exception (the checker measures it; the client turns it into
 *   its own error);
 * - after upgradeToTls() or destroy() this object refuses every read and write
 *   (CONNECTION_DETACHED); the secured connection is a new object;
 * - the transcript hook, when given, sees every line read, every write (as its label) and every
 *   upgrade event, each marked with whether it travelled inside TLS.
 */
import net from 'node:net';
import tls from 'node:tls';
import { PostsealError } from '../errors.js';

const EMPTY = Buffer.alloc(0);
/** Unread input above which the socket is paused. */
const HIGH_WATER = 256 * 1024;
/** Largest single socket.write() of write(): a message body goes to Node in pieces of this size. */
export const WRITE_PIECE = 64 * 1024;

export const CONNECTION_ERROR_CODES = ['CONNECT_FAILED', 'CONNECTION_CLOSED', 'TIMEOUT', 'PROTOCOL_ERROR', 'TLS_HANDSHAKE_FAILED', 'CONNECTION_DETACHED'] as const;
export type ConnectionErrorCode = (typeof CONNECTION_ERROR_CODES)[number];

export class ConnectionError extends PostsealError {
  override readonly code: ConnectionErrorCode;
  constructor(code: ConnectionErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'ConnectionError';
    this.code = code;
  }
}

/** A time limit and the name of the setting it came from (both go into a TIMEOUT message). */
export interface Limit {
  ms: number;
  name: string;
}

/** What the connection holds right now (tests and diagnostics). */
export interface SocketStats {
  /** Octets handed to Node and not yet to the kernel (socket.writableLength). */
  queuedBytes: number;
  /** Octets received and not yet read as lines. */
  unreadBytes: number;
  /** A write is waiting for 'drain' (the peer is not reading fast enough). */
  waitingForDrain: boolean;
}

export interface TranscriptRecord {
  dir: 'client' | 'server' | 'event';
  /** Whether it travelled (or happened) inside TLS. */
  tls: boolean;
  text: string;
}

export interface LineOptions {
  /** Longest line accepted, without its line ending. */
  maxLineLength: number;
  /** How lines are decoded: 'utf8' (default) or 'latin1' (every octet shown as itself). */
  encoding?: 'utf8' | 'latin1';
  /** Sees every line read, every write and every upgrade event (the checker's transcript). */
  transcript?: (r: TranscriptRecord) => void;
  /**
   * On a read timeout: 'abort' (default) destroys the connection (a sender gives up); 'keep'
   * only rejects, so a probe may wait briefly and go on (what arrives later is still read).
   */
  onTimeout?: 'abort' | 'keep';
}

export interface ConnectOptions extends LineOptions {
  host: string;
  port: number;
  /**
   * A Unix domain socket to connect to instead of host:port (LMTP, RFC 2033 §5: local delivery
   * agents listen on one); host then only names the peer in messages.
   */
  path?: string;
  localAddress?: string;
  /** TLS from the first byte (RFC 8314 §3): options for the handshake. */
  implicitTls?: tls.ConnectionOptions;
  connectLimit: Limit;
  /** Used with implicitTls. */
  handshakeLimit: Limit;
}

export type UpgradeResult =
  | { kind: 'secured'; conn: ClientConnection; socket: tls.TLSSocket; discarded: Buffer; handshakeMs: number }
  /** `reason` is the bare cause (an OpenSSL code and text, or the timeout), for reports. */
  | { kind: 'failed'; error: ConnectionError; reason: string; discarded: Buffer };

export class ClientConnection {
  private buf: Buffer = EMPTY;
  private waiter: (() => void) | null = null;
  private failure: ConnectionError | null = null;
  private detached = false;
  private draining = false;
  private readonly tlsActive: boolean;
  private readonly onData = (chunk: Buffer): void => {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.buf.length > HIGH_WATER) this.socket.pause();
    this.wake();
  };
  private readonly onEnd = (): void => this.fail(new ConnectionError('CONNECTION_CLOSED', 'the server closed the connection'));
  private readonly onError = (err: Error): void =>
    this.fail(new ConnectionError('CONNECTION_CLOSED', `connection error: ${(err as NodeJS.ErrnoException).code ?? err.message}`, { cause: err }));

  constructor(
    private readonly socket: net.Socket,
    private readonly options: LineOptions,
  ) {
    this.tlsActive = socket instanceof tls.TLSSocket;
    socket.setNoDelay(true);
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
  }

  get isTls(): boolean {
    return this.tlsActive;
  }

  /** The TLS socket (for certificate and session facts), or null in plaintext. */
  get tlsSocket(): tls.TLSSocket | null {
    return this.socket instanceof tls.TLSSocket ? this.socket : null;
  }

  /** Our end's address (an EHLO address literal), null when unknown. */
  get localAddress(): string | null {
    return this.socket.localAddress ?? null;
  }

  /** Not failed, closed or detached: reads and writes may still succeed. */
  get isOpen(): boolean {
    return !this.detached && this.failure === null;
  }

  /** Bytes queued for sending and received-but-unread, right now. */
  get stats(): SocketStats {
    return { queuedBytes: this.socket.writableLength, unreadBytes: this.buf.length, waitingForDrain: this.draining };
  }

  /**
   * A copy of the bytes received and not yet read as lines (diagnostics; they stay unread: a
   * STARTTLS caller gets them from upgradeToTls() as `discarded`).
   */
  peekUnread(): Buffer {
    return Buffer.from(this.buf);
  }

  /** Records an event in the transcript (if any), marked plaintext/TLS. */
  note(text: string): void {
    this.options.transcript?.({ dir: 'event', tls: this.tlsActive, text });
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    if (w) w();
  }

  private fail(err: ConnectionError): void {
    if (this.failure === null) this.failure = err;
    this.wake();
  }

  private usable(): void {
    if (this.detached) throw new ConnectionError('CONNECTION_DETACHED', 'this connection was handed to TLS or closed; use the secured connection');
  }

  /**
   * Next line without its line ending (CRLF or bare LF). Rejects with TIMEOUT when nothing ends a
   * line by `deadline` (epoch ms; default now + limit.ms; a whole reply passes one deadline to all
   * its lines), CONNECTION_CLOSED, or PROTOCOL_ERROR (overlong; the socket is destroyed).
   */
  async readLine(limit: Limit, what: string, deadline = Date.now() + limit.ms): Promise<string> {
    this.usable();
    for (;;) {
      const lf = this.buf.indexOf(0x0a);
      if (lf >= 0) {
        const end = lf > 0 && this.buf[lf - 1] === 0x0d ? lf - 1 : lf;
        if (end > this.options.maxLineLength) throw this.overlong();
        const line = this.buf.toString(this.options.encoding ?? 'utf8', 0, end);
        this.buf = this.buf.subarray(lf + 1);
        if (this.socket.isPaused() && this.buf.length < HIGH_WATER) this.socket.resume();
        this.options.transcript?.({ dir: 'server', tls: this.tlsActive, text: line });
        return line;
      }
      // No LF in more than a line's worth: an endless line is cut off here, bounded.
      if (this.buf.length > this.options.maxLineLength + 1) throw this.overlong();
      if (this.failure) throw this.failure;
      if (this.socket.isPaused()) this.socket.resume();
      await this.waitForInput(limit, what, deadline);
    }
  }

  private overlong(): ConnectionError {
    return this.abort('PROTOCOL_ERROR', `reply line longer than ${this.options.maxLineLength} octets (limits.maxLineLength)`);
  }

  private waitForInput(limit: Limit, what: string, deadline: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      // The timer runs for what is left of the deadline; the message names the limit itself.
      const timer = setTimeout(() => {
        this.waiter = null;
        const message = `no complete reply to ${what} within ${limit.ms} ms (${limit.name})`;
        reject(this.options.onTimeout === 'keep' ? new ConnectionError('TIMEOUT', message) : this.abort('TIMEOUT', message));
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
   * Resolves when the last piece is accepted by Node. Rejects with TIMEOUT (the peer stopped
   * reading) or CONNECTION_CLOSED. `label`, when given, is what the transcript shows.
   */
  async write(data: string | Uint8Array, limit: Limit, what: string, label?: string): Promise<void> {
    this.usable();
    if (label !== undefined) this.options.transcript?.({ dir: 'client', tls: this.tlsActive, text: label });
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    for (let off = 0; off < bytes.length; off += WRITE_PIECE) {
      if (this.failure) throw this.failure;
      if (this.socket.destroyed) throw new ConnectionError('CONNECTION_CLOSED', `the connection is gone (sending ${what})`);
      if (!this.socket.write(bytes.subarray(off, off + WRITE_PIECE))) await this.drained(limit, what);
    }
  }

  /**
   * Exact bytes in ONE socket.write, now, without waiting for 'drain' (probe data: a pipelined
   * or partial line that must travel as one segment). A string is written as UTF-8. A write on
   * a closed socket surfaces at the next read.
   */
  writeRaw(data: string | Uint8Array, label: string): void {
    this.usable();
    this.options.transcript?.({ dir: 'client', tls: this.tlsActive, text: label });
    if (!this.socket.destroyed) this.socket.write(data);
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
        reject(this.failure ?? new ConnectionError('CONNECTION_CLOSED', `the server closed the connection while we sent ${what}`));
      };
      const timer = setTimeout(() => {
        settle();
        reject(this.abort('TIMEOUT', `could not send ${what} within ${limit.ms} ms (${limit.name}): the server stopped reading`));
      }, limit.ms);
      s.on('drain', onDrain);
      s.on('close', onClose);
    });
  }

  /** Destroys the socket and returns the error to throw (also what later reads reject with). */
  abort(code: 'PROTOCOL_ERROR' | 'TIMEOUT', message: string): ConnectionError {
    const err = new ConnectionError(code, message);
    this.fail(err);
    this.socket.destroy();
    return err;
  }

  /**
   * Client side of STARTTLS, to call right after reading the 220 (RFC 3207 §4.2): takes every
   * unread byte out of the buffer as `discarded` (they arrived with or after the 220 and before
   * TLS, so a man in the middle may have put them there: the caller records them and never parses
   * them), detaches this object, and runs the TLS handshake on the raw socket with a deadline.
   * Never rejects: a failed handshake is `{ kind: 'failed' }` (the socket is destroyed).
   */
  async upgradeToTls(options: tls.ConnectionOptions, limit: Limit): Promise<UpgradeResult> {
    this.usable();
    const discarded = this.buf;
    this.buf = EMPTY;
    this.detached = true;
    const raw = this.socket;
    raw.off('data', this.onData);
    raw.off('end', this.onEnd);
    raw.off('close', this.onEnd);
    raw.off('error', this.onError);
    if (discarded.length > 0) this.note(`${discarded.length} bytes arrived after the 220, before the handshake; discarded`);
    if (this.failure) {
      raw.destroy();
      const reason = this.failure.message;
      this.note(`TLS handshake failed: ${reason}`);
      return { kind: 'failed', error: new ConnectionError('TLS_HANDSHAKE_FAILED', `connection lost before the TLS handshake: ${reason}`), reason, discarded };
    }
    const started = Date.now();
    const h = await handshake(() => tls.connect({ ...options, socket: raw }), limit, raw);
    if (h.kind === 'failed') {
      this.note(`TLS handshake failed: ${h.reason}`);
      return { ...h, discarded };
    }
    const conn = new ClientConnection(h.socket, this.options);
    conn.note(`TLS established: ${h.socket.getProtocol() ?? '?'} ${h.socket.getCipher().name}`);
    return { kind: 'secured', conn, socket: h.socket, discarded, handshakeMs: Date.now() - started };
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

/** `CODE: message` for a Node/OpenSSL error (the code alone when the message repeats it). */
export function errorText(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return typeof code === 'string' && !e.message.includes(code) ? `${code}: ${e.message}` : e.message;
  }
  return String(e);
}

type Handshake = { kind: 'secured'; socket: tls.TLSSocket } | { kind: 'failed'; error: ConnectionError; reason: string };

/** Runs a TLS client handshake; on error, close or timeout destroys everything: a failed value. */
function handshake(start: () => tls.TLSSocket, limit: Limit, raw: net.Socket): Promise<Handshake> {
  return new Promise<Handshake>((resolve) => {
    const secure = start();
    const fail = (short: string, reason: string, cause?: unknown): void => {
      clearTimeout(timer);
      secure.off('error', onError);
      secure.off('close', onClose);
      // A late error from the destroyed socket must not become an uncaught exception.
      secure.on('error', () => undefined);
      secure.destroy();
      raw.destroy();
      resolve({ kind: 'failed', error: new ConnectionError('TLS_HANDSHAKE_FAILED', `TLS handshake failed: ${short}`, { cause }), reason });
    };
    const onError = (err: Error): void => fail((err as NodeJS.ErrnoException).code ?? err.message, errorText(err), err);
    const onClose = (): void => fail('connection closed during the handshake', 'connection closed during the handshake');
    const timer = setTimeout(() => {
      const text = `no handshake within ${limit.ms} ms (${limit.name})`;
      fail(text, text);
    }, limit.ms);
    secure.once('error', onError);
    secure.once('close', onClose);
    secure.once('secureConnect', () => {
      clearTimeout(timer);
      secure.off('error', onError);
      secure.off('close', onClose);
      resolve({ kind: 'secured', socket: secure });
    });
  });
}

/** TCP (or, with `path`, Unix socket) connect with a deadline; rejects with TIMEOUT or CONNECT_FAILED. */
function connectTcp(host: string, port: number, limit: Limit, localAddress?: string, path?: string): Promise<net.Socket> {
  return new Promise<net.Socket>((resolve, reject) => {
    const s = path !== undefined ? net.connect({ path }) : net.connect({ host, port, ...(localAddress ? { localAddress } : {}) });
    const where = path !== undefined ? `unix:${path}` : `${host}:${port}`;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new ConnectionError('TIMEOUT', `no ${path !== undefined ? 'socket' : 'TCP'} connection to ${where} within ${limit.ms} ms (${limit.name})`));
    }, limit.ms);
    s.once('connect', () => {
      clearTimeout(timer);
      s.off('error', onError);
      resolve(s);
    });
    const onError = (err: Error): void => {
      clearTimeout(timer);
      reject(new ConnectionError('CONNECT_FAILED', `cannot connect to ${where}: ${(err as NodeJS.ErrnoException).code ?? err.message}`, { cause: err }));
    };
    s.once('error', onError);
  });
}

/**
 * Opens one client connection: TCP (connectLimit), then for implicit TLS (RFC 8314 §3, port 465)
 * the handshake before any SMTP (handshakeLimit). Rejects with TIMEOUT, CONNECT_FAILED or
 * TLS_HANDSHAKE_FAILED (its cause is the OpenSSL error).
 */
export async function connect(o: ConnectOptions): Promise<ClientConnection> {
  const raw = await connectTcp(o.host, o.port, o.connectLimit, o.localAddress, o.path);
  const lines: LineOptions = { maxLineLength: o.maxLineLength, encoding: o.encoding, transcript: o.transcript, onTimeout: o.onTimeout };
  const implicit = o.implicitTls;
  if (implicit === undefined) return new ClientConnection(raw, lines);
  const h = await handshake(() => tls.connect({ ...implicit, socket: raw }), o.handshakeLimit, raw);
  if (h.kind === 'failed') throw h.error;
  return new ClientConnection(h.socket, lines);
}
