/**
 * A raw SMTP peer for tests: exact bytes out, lines in, a real TLS upgrade on demand. It is
 * deliberately dumb (no SMTP logic), so tests can send what a broken or hostile client would.
 * Every read has a timeout, so a test never hangs.
 */
import net from 'node:net';
import tls from 'node:tls';

export class WireClient {
  private socket: net.Socket;
  private buf = '';
  private raw: Buffer[] = [];
  private closed = false;
  private waiters: Array<() => void> = [];
  constructor(socket: net.Socket) {
    this.socket = socket;
    this.listen(socket);
  }

  static connect(port: number, host = '127.0.0.1'): Promise<WireClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host }, () => {
        s.off('error', reject);
        resolve(new WireClient(s));
      });
      s.once('error', reject);
    });
  }

  static connectTls(port: number, ca: string, extra: tls.ConnectionOptions = {}): Promise<WireClient> {
    return new Promise((resolve, reject) => {
      const s = tls.connect({ port, host: '127.0.0.1', ca, servername: 'localhost', ...extra }, () => {
        s.off('error', reject);
        resolve(new WireClient(s));
      });
      s.once('error', reject);
    });
  }

  private listen(s: net.Socket): void {
    s.on('data', (d: Buffer) => {
      this.raw.push(d);
      this.buf += d.toString('latin1');
      this.wake();
    });
    s.on('close', () => {
      this.closed = true;
      this.wake();
    });
    s.on('error', () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private wait(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      this.waiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Next line without CRLF; throws on timeout or when the connection closes first. */
  async readLine(timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.buf.indexOf('\r\n');
      if (i >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 2);
        return line;
      }
      if (this.closed) throw new Error(`connection closed while waiting for a line (pending: ${JSON.stringify(this.buf)})`);
      const left = deadline - Date.now();
      if (left <= 0 || !(await this.wait(left))) throw new Error(`timed out waiting for a line (pending: ${JSON.stringify(this.buf)})`);
    }
  }

  /** A whole reply (all lines up to "NNN text"). */
  async readReply(timeoutMs = 5000): Promise<string[]> {
    const lines: string[] = [];
    for (;;) {
      const line = await this.readLine(timeoutMs);
      lines.push(line);
      if (!/^\d{3}-/.test(line)) return lines;
    }
  }

  /** Send a command and return its reply. */
  async cmd(line: string, timeoutMs = 5000): Promise<string[]> {
    this.write(line + '\r\n');
    return this.readReply(timeoutMs);
  }

  /** Resolves with whatever arrived before the peer closed; throws if it stays open. */
  async expectClose(timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      const left = deadline - Date.now();
      if (left <= 0 || !(await this.wait(left))) throw new Error(`connection still open (pending: ${JSON.stringify(this.buf)})`);
    }
    const rest = this.buf;
    this.buf = '';
    return rest;
  }

  /** Everything received so far, as bytes. */
  received(): Buffer {
    return Buffer.concat(this.raw);
  }

  /** Client side of STARTTLS: handshake over the same socket. Unread plaintext is discarded. */
  async startTls(ca: string, extra: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    this.buf = '';
    const secure = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({ socket: plain, ca, servername: 'localhost', ...extra }, () => resolve(s));
      s.once('error', reject);
    });
    this.socket = secure;
    this.listen(secure);
    return secure;
  }

  close(): void {
    this.socket.destroy();
  }
}
