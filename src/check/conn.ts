/**
 * The checker's view of one SMTP connection: transport/client-connection.ts (which owns the socket,
 * the limits and the STARTTLS upgrade) plus reply framing (ReplyAssembler), the checker's error
 * codes and its transcript. No socket code here.
 *
 * Unlike the delivery client, a probe must *observe* what a safe client throws away: the bytes that
 * arrived together with (or after) the 220 to STARTTLS (upgrade() returns them as `discarded`),
 * replies to commands the server should never have executed, a handshake that fails (a value).
 *
 * Invariants: every read has a byte limit (MAX_LINE; unread input is bounded by the transport)
 * and a timeout; a line written by `send` never contains CR or LF (it cannot smuggle a second
 * command); the transcript labels every entry with whether it travelled inside TLS; a reply is
 * never assembled from lines on both sides of the upgrade.
 */
import type tls from 'node:tls';
import { PostsealError } from '../errors.js';
import { ReplyAssembler, type Reply } from '../protocol/reply.js';
import { connect, ConnectionError, errorText, type ClientConnection, type Limit } from '../transport/client-connection.js';
import type { TranscriptEntry } from './types.js';

export { errorText };

/** RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets; allow generous slack for odd servers. */
const MAX_LINE = 4096;
const MAX_REPLY_LINES = 200;

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
  | { ok: true; socket: tls.TLSSocket; handshakeMs: number; discarded: Buffer }
  | { ok: false; error: string; discarded: Buffer };

function limit(ms: number): Limit {
  return { ms, name: 'timeoutMs' };
}

/** Transport errors as the checker's codes (CHECK_TIMEOUT, CHECK_CLOSED, CHECK_BAD_REPLY). */
function checkError(e: unknown, timeoutMs: number): unknown {
  if (!(e instanceof ConnectionError)) return e;
  switch (e.code) {
    case 'TIMEOUT':
      return new PostsealError('CHECK_TIMEOUT', `no reply within ${timeoutMs} ms`, { cause: e });
    case 'PROTOCOL_ERROR':
      return new PostsealError('CHECK_BAD_REPLY', e.message, { cause: e });
    case 'CONNECTION_CLOSED':
      return new PostsealError('CHECK_CLOSED', e.cause !== undefined ? errorText(e.cause) : 'server closed the connection', { cause: e });
    default:
      return new PostsealError('CHECK_CLOSED', e.message, { cause: e });
  }
}

export class ProbeConnection {
  private assembler = new ReplyAssembler(MAX_REPLY_LINES);

  private constructor(
    private conn: ClientConnection,
    readonly timeoutMs: number,
  ) {}

  /** Connects (and for implicit TLS, handshakes). Rejects with CHECK_CONNECT on failure. */
  static async open(target: ProbeTarget, opts: OpenOptions): Promise<ProbeConnection> {
    const transcript = opts.transcript;
    let conn: ClientConnection;
    try {
      conn = await connect({
        host: target.address,
        port: target.port,
        implicitTls: opts.implicitTls,
        connectLimit: limit(opts.timeoutMs),
        handshakeLimit: limit(opts.timeoutMs),
        maxLineLength: MAX_LINE,
        // Every octet shown as itself in evidence, whatever the server sends.
        encoding: 'latin1',
        onTimeout: 'keep',
        transcript: transcript ? (r) => transcript.push(r) : undefined,
      });
    } catch (e) {
      // The cause (an OpenSSL alert for a refused implicit handshake) stays reachable: reachTls
      // tells a refused handshake from an unreachable host by it.
      const why = e instanceof ConnectionError && e.cause !== undefined ? errorText(e.cause) : errorText(e);
      throw new PostsealError('CHECK_CONNECT', `cannot connect to ${target.address} port ${target.port}: ${why}`, { cause: e });
    }
    if (opts.implicitTls) conn.note('implicit TLS handshake done (RFC 8314 §3)');
    return new ProbeConnection(conn, opts.timeoutMs);
  }

  get isTls(): boolean {
    return this.conn.isTls;
  }

  /** Our end's address (for the EHLO address literal), null when unknown. */
  get localAddress(): string | null {
    return this.conn.localAddress;
  }

  get tlsSocket(): tls.TLSSocket | null {
    return this.conn.tlsSocket;
  }

  note(text: string): void {
    this.conn.note(text);
  }

  /** Writes one command line; refuses CR/LF inside it (a line must never become two commands). */
  send(line: string): void {
    if (/[\r\n]/.test(line)) throw new PostsealError('CHECK_BAD_COMMAND', 'command line contains CR or LF');
    this.raw(line + '\r\n', line);
  }

  /** Writes exact bytes in one write (attack probes: pipelined or partial lines). */
  sendRaw(bytes: string, label: string): void {
    this.raw(bytes, label);
  }

  private raw(bytes: string, label: string): void {
    try {
      this.conn.writeRaw(bytes, label);
    } catch (e) {
      throw checkError(e, this.timeoutMs);
    }
  }

  /** Reads one complete reply. Rejects with CHECK_TIMEOUT, CHECK_CLOSED or CHECK_BAD_REPLY. */
  async readReply(timeoutMs = this.timeoutMs): Promise<Reply> {
    const lim = limit(timeoutMs);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let line: string;
      try {
        line = await this.conn.readLine(lim, 'a command', deadline);
      } catch (e) {
        throw checkError(e, timeoutMs);
      }
      const r = this.assembler.push(line);
      if (r === null) continue;
      if ('error' in r) throw new PostsealError('CHECK_BAD_REPLY', r.error);
      return r;
    }
  }

  /** Sends a command and reads its reply. */
  async command(line: string): Promise<Reply> {
    this.send(line);
    return this.readReply();
  }

  /** Whether bytes arrived that were not read as replies (a partial line: the server is talking). */
  hasUnread(): boolean {
    return this.conn.peekUnread().length > 0;
  }

  /**
   * Starts TLS on this connection (after a 220 to STARTTLS) through the transport's one upgrade:
   * every byte still unread comes back as `discarded` and is never read as a reply (RFC 3207
   * §4.2, response injection). A failed handshake is a value; the connection is then closed.
   */
  async upgrade(options: tls.ConnectionOptions): Promise<UpgradeResult> {
    let up;
    try {
      up = await this.conn.upgradeToTls(options, limit(this.timeoutMs));
    } catch (e) {
      throw checkError(e, this.timeoutMs);
    }
    // No reply is glued together from plaintext and TLS lines.
    this.assembler = new ReplyAssembler(MAX_REPLY_LINES);
    if (up.kind === 'failed') return { ok: false, error: up.reason, discarded: up.discarded };
    this.conn = up.conn;
    return { ok: true, socket: up.socket, handshakeMs: up.handshakeMs, discarded: up.discarded };
  }

  /** Sends QUIT (best effort, not awaited beyond a short read) and closes. */
  async quit(): Promise<void> {
    if (this.conn.isOpen) {
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
    this.conn.destroy();
  }
}
