/**
 * The checker's own probe transport: one SMTP connection that records every byte it sees.
 *
 * Unlike the delivery client, a probe must *observe* what a safe client throws away: the bytes that
 * arrived together with (or after) the 220 to STARTTLS, replies to commands the server should
 * never have executed, a handshake that fails. Replies are framed by the protocol core
 * (ReplyAssembler); nothing here knows SMTP semantics beyond "a reply is lines until CODE SP".
 *
 * Invariants: every read has a byte limit (MAX_BUFFER, MAX_LINE) and a timeout; a line written by
 * `send` never contains CR or LF (it cannot smuggle a second command); the transcript labels every
 * entry with whether it travelled inside TLS, so a report can mark what was unauthenticated.
 */
import net from 'node:net';
import tls from 'node:tls';
import { PostsealError } from '../errors.js';
import { ReplyAssembler, type Reply } from '../protocol/reply.js';
import type { TranscriptEntry } from './types.js';

/** RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets; allow generous slack for odd servers. */
const MAX_LINE = 4096;
/** Bytes we hold unread before giving up on a peer that floods us. */
const MAX_BUFFER = 256 * 1024;

export interface ProbeTarget {
  /** Name used for SNI and certificate name checks (may be an IP literal). */
  host: string;
  /** Address actually connected to (defaults to host). */
  address: string;
  port: number;
}

export interface OpenOptions {
  timeoutMs: number;
  /** TLS from the first byte (RFC 8314 implicit TLS); options for tls.connect. */
  implicitTls?: tls.ConnectionOptions;
  /** Shared transcript to append to; omit for probes whose conversation is not shown. */
  transcript?: TranscriptEntry[];
}

export type UpgradeResult =
  | { ok: true; socket: tls.TLSSocket; handshakeMs: number }
  | { ok: false; error: string };

export class ProbeConnection {
  private socket: net.Socket;
  private buf: Buffer = Buffer.alloc(0);
  private closed = false;
  private error: string | null = null;
  private waiter: (() => void) | null = null;
  private readonly assembler = new ReplyAssembler(200);
  private readonly onData = (d: Buffer): void => {
    if (this.buf.length + d.length > MAX_BUFFER) {
      this.error = `peer sent more than ${MAX_BUFFER} unread bytes`;
      this.socket.destroy();
    } else {
      this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    }
    this.wake();
  };
  private readonly onEnd = (): void => {
    this.closed = true;
    this.wake();
  };
  private readonly onError = (e: Error): void => {
    this.error ??= errorText(e);
    this.closed = true;
    this.wake();
  };
  private inTls: boolean;

  private constructor(
    socket: net.Socket,
    readonly timeoutMs: number,
    private readonly transcript: TranscriptEntry[] | undefined,
    tlsFromStart: boolean,
  ) {
    this.socket = socket;
    this.inTls = tlsFromStart;
    this.attach(socket);
  }

  /** Connects (and for implicit TLS, handshakes). Rejects with CHECK_CONNECT on failure. */
  static open(target: ProbeTarget, opts: OpenOptions): Promise<ProbeConnection> {
    return new Promise((resolve, reject) => {
      let done = false;
      const implicit = opts.implicitTls;
      const socket: net.Socket = implicit
        ? tls.connect({ ...implicit, host: target.address, port: target.port })
        : net.connect({ host: target.address, port: target.port });
      const timer = setTimeout(() => fail(new Error(`no connection within ${opts.timeoutMs} ms`)), opts.timeoutMs);
      const fail = (e: Error): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        socket.destroy();
        reject(new PostsealError('CHECK_CONNECT', `cannot connect to ${target.address} port ${target.port}: ${errorText(e)}`));
      };
      socket.once('error', fail);
      socket.once(implicit ? 'secureConnect' : 'connect', () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        socket.off('error', fail);
        const conn = new ProbeConnection(socket, opts.timeoutMs, opts.transcript, implicit !== undefined);
        if (implicit) conn.note('implicit TLS handshake done (RFC 8314 §3)');
        resolve(conn);
      });
    });
  }

  get isTls(): boolean {
    return this.inTls;
  }

  /** Our end's address (for the EHLO address literal), null when unknown. */
  get localAddress(): string | null {
    return this.socket.localAddress ?? null;
  }

  get tlsSocket(): tls.TLSSocket | null {
    return this.socket instanceof tls.TLSSocket ? this.socket : null;
  }

  private attach(s: net.Socket): void {
    s.on('data', this.onData);
    s.on('end', this.onEnd);
    s.on('close', this.onEnd);
    s.on('error', this.onError);
  }

  private detach(s: net.Socket): void {
    s.off('data', this.onData);
    s.off('end', this.onEnd);
    s.off('close', this.onEnd);
    s.off('error', this.onError);
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  note(text: string): void {
    this.transcript?.push({ dir: 'event', tls: this.inTls, text });
  }

  /** Writes one command line; refuses CR/LF inside it (a line must never become two commands). */
  send(line: string): void {
    if (/[\r\n]/.test(line)) throw new PostsealError('CHECK_BAD_COMMAND', 'command line contains CR or LF');
    this.transcript?.push({ dir: 'client', tls: this.inTls, text: line });
    this.socket.write(line + '\r\n');
  }

  /** Writes exact bytes in one write (attack probes: pipelined or partial lines). */
  sendRaw(bytes: string, label: string): void {
    this.transcript?.push({ dir: 'client', tls: this.inTls, text: label });
    this.socket.write(bytes);
  }

  /** Reads one complete reply. Rejects with CHECK_TIMEOUT, CHECK_CLOSED or CHECK_BAD_REPLY. */
  async readReply(timeoutMs = this.timeoutMs): Promise<Reply> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const lf = this.buf.indexOf(0x0a);
      if (lf >= 0) {
        if (lf > MAX_LINE) throw new PostsealError('CHECK_BAD_REPLY', `reply line longer than ${MAX_LINE} bytes`);
        const end = lf > 0 && this.buf[lf - 1] === 0x0d ? lf - 1 : lf;
        const line = this.buf.subarray(0, end).toString('latin1');
        this.buf = this.buf.subarray(lf + 1);
        this.transcript?.push({ dir: 'server', tls: this.inTls, text: line });
        const r = this.assembler.push(line);
        if (r === null) continue;
        if ('error' in r) throw new PostsealError('CHECK_BAD_REPLY', r.error);
        return r;
      }
      if (this.buf.length > MAX_LINE) throw new PostsealError('CHECK_BAD_REPLY', `reply line longer than ${MAX_LINE} bytes`);
      if (this.closed || this.error !== null) {
        throw new PostsealError('CHECK_CLOSED', this.error ?? 'server closed the connection');
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new PostsealError('CHECK_TIMEOUT', `no reply within ${timeoutMs} ms`);
      await this.waitForData(left);
    }
  }

  private waitForData(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.waiter = null;
        resolve();
      }, ms);
      this.waiter = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  /** Sends a command and reads its reply. */
  async command(line: string): Promise<Reply> {
    this.send(line);
    return this.readReply();
  }

  /** Bytes received but not yet consumed as reply lines (and an unfinished reply's lines). */
  takeBuffered(): Buffer {
    const b = this.buf;
    this.buf = Buffer.alloc(0);
    return b;
  }

  /**
   * Starts TLS on the current socket (after a 220 to STARTTLS). Bytes still buffered must have
   * been taken with takeBuffered() first: they arrived in plaintext and are never read as if
   * they came through TLS (RFC 3207 §4.2, response injection).
   */
  upgrade(options: tls.ConnectionOptions): Promise<UpgradeResult> {
    const raw = this.socket;
    this.detach(raw);
    this.buf = Buffer.alloc(0);
    const started = Date.now();
    return new Promise((resolve) => {
      let done = false;
      const s = tls.connect({ ...options, socket: raw });
      const finish = (r: UpgradeResult): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        s.off('error', onErr);
        resolve(r);
      };
      const onErr = (e: Error): void => {
        this.closed = true;
        s.destroy();
        this.note(`TLS handshake failed: ${errorText(e)}`);
        finish({ ok: false, error: errorText(e) });
      };
      const timer = setTimeout(() => onErr(new Error(`no TLS handshake within ${this.timeoutMs} ms`)), this.timeoutMs);
      s.once('error', onErr);
      s.once('secureConnect', () => {
        this.socket = s;
        this.inTls = true;
        this.closed = false;
        this.attach(s);
        this.note(`TLS established: ${s.getProtocol() ?? '?'} ${s.getCipher().name}`);
        finish({ ok: true, socket: s, handshakeMs: Date.now() - started });
      });
    });
  }

  /** Sends QUIT (best effort, not awaited beyond a short read) and closes. */
  async quit(): Promise<void> {
    if (!this.closed && this.error === null) {
      try {
        this.send('QUIT');
        await this.readReply(Math.min(this.timeoutMs, 2000));
      } catch {
        // A server that does not answer QUIT is not a finding; the connection closes either way.
      }
    }
    this.close();
  }

  close(): void {
    this.socket.destroy();
  }
}

export function errorText(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return typeof code === 'string' && !e.message.includes(code) ? `${code}: ${e.message}` : e.message;
  }
  return String(e);
}
