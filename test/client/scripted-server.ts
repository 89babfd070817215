/**
 * A scripted fake SMTP server for client tests (undici style): a raw net.Server on 127.0.0.1:0
 * whose connections are driven by async scripts writing exact bytes, with a real server-side TLS
 * upgrade on demand. It records every byte it receives (plaintext and decrypted), per connection
 * and phase, so a test can assert what the client did NOT send.
 *
 * Invariants: every read has a timeout (a test never hangs); a script that fails (the client
 * closed early, a line did not match) is recorded, not thrown into the event loop; close() ends
 * every connection.
 */
import { after } from 'node:test';
import net from 'node:net';
import tls from 'node:tls';

export interface ReceivedChunk {
  connection: number;
  phase: 'plaintext' | 'tls';
  data: string;
}

export class ScriptPeer {
  private buf = '';
  private closed = false;
  private waiter: (() => void) | null = null;
  phase: 'plaintext' | 'tls' = 'plaintext';
  /** SNI the client sent in the TLS handshake (false when none). */
  servername: string | false = false;
  private readonly onData = (d: Buffer): void => {
    const text = d.toString('latin1');
    this.log.push({ connection: this.index, phase: this.phase, data: text });
    this.buf += text;
    this.wake();
  };
  private readonly onClose = (): void => {
    this.closed = true;
    this.wake();
  };

  constructor(
    private socket: net.Socket,
    readonly index: number,
    private readonly log: ReceivedChunk[],
  ) {
    this.attach(socket);
  }

  private attach(s: net.Socket): void {
    s.on('data', this.onData);
    s.on('close', this.onClose);
    s.on('end', this.onClose);
    s.on('error', this.onClose);
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    if (w) w();
  }

  private wait(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.waiter = null;
        resolve(false);
      }, timeoutMs);
      this.waiter = () => {
        clearTimeout(t);
        resolve(true);
      };
    });
  }

  /** One write of exact bytes; resolves when flushed. */
  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(data, (err) => (err ? reject(err) : resolve())));
  }

  async readLine(timeoutMs = 5000): Promise<string> {
    for (;;) {
      const i = this.buf.indexOf('\r\n');
      if (i >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 2);
        return line;
      }
      if (this.closed) throw new Error(`client closed (pending ${JSON.stringify(this.buf)})`);
      if (!(await this.wait(timeoutMs))) throw new Error(`timeout waiting for a line (pending ${JSON.stringify(this.buf)})`);
    }
  }

  /** Reads a line and checks it starts with `prefix` (case-insensitive). */
  async expect(prefix: string, timeoutMs = 5000): Promise<string> {
    const line = await this.readLine(timeoutMs);
    if (!line.toUpperCase().startsWith(prefix.toUpperCase())) throw new Error(`expected ${prefix}, got ${JSON.stringify(line)}`);
    return line;
  }

  /** Waits for any bytes at all (e.g. a ClientHello) and returns them. */
  async readRaw(timeoutMs = 5000): Promise<string> {
    while (this.buf === '') {
      if (this.closed) throw new Error('client closed');
      if (!(await this.wait(timeoutMs))) throw new Error('timeout waiting for bytes');
    }
    const out = this.buf;
    this.buf = '';
    return out;
  }

  /** Reads DATA content up to the lone "." line; returns the lines (still dot-stuffed). */
  async readData(): Promise<string[]> {
    const lines: string[] = [];
    for (;;) {
      const l = await this.readLine();
      if (l === '.') return lines;
      lines.push(l);
    }
  }

  /** Server side of the TLS handshake on this connection. */
  async startTls(options: tls.TlsOptions): Promise<void> {
    const raw = this.socket;
    raw.off('data', this.onData);
    raw.off('close', this.onClose);
    raw.off('end', this.onClose);
    raw.off('error', this.onClose);
    this.buf = '';
    const secure = new tls.TLSSocket(raw, { ...options, isServer: true });
    await new Promise<void>((resolve, reject) => {
      secure.once('secure', () => resolve());
      secure.once('error', reject);
      secure.once('close', () => reject(new Error('closed during handshake')));
    });
    const sn: unknown = (secure as { servername?: unknown }).servername;
    this.servername = typeof sn === 'string' ? sn : false;
    this.phase = 'tls';
    this.socket = secure;
    this.attach(secure);
  }

  /** Stop reading from the socket: TCP then pushes back on the client (backpressure tests). */
  pause(): void {
    this.socket.pause();
  }

  /** Read again after pause(). */
  resume(): void {
    this.socket.resume();
  }

  /** Resolves when the client has closed (or after timeoutMs). */
  async waitClose(timeoutMs = 5000): Promise<void> {
    while (!this.closed) if (!(await this.wait(timeoutMs))) return;
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export type Script = (peer: ScriptPeer) => Promise<void>;

export interface ScriptedServer {
  port: number;
  /** Connections accepted so far. */
  readonly connections: number;
  log: ReceivedChunk[];
  peers: ScriptPeer[];
  /** Everything received, all connections, as latin1 text. */
  received(filter?: { connection?: number; phase?: 'plaintext' | 'tls' }): string;
  /** Settles once every started script has finished; returns their errors. */
  settled(): Promise<unknown[]>;
  close(): Promise<void>;
}

/** `scripts[i]` drives connection i+1; connections past the list are closed at once. */
export async function startScriptedServer(scripts: Script | Script[]): Promise<ScriptedServer> {
  const list = Array.isArray(scripts) ? scripts : [scripts];
  const log: ReceivedChunk[] = [];
  const peers: ScriptPeer[] = [];
  const runs: Array<Promise<unknown>> = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    const peer = new ScriptPeer(socket, peers.length + 1, log);
    const script = list[peers.length];
    peers.push(peer);
    if (!script) {
      socket.destroy();
      return;
    }
    runs.push(
      script(peer).then(
        () => {
          peer.end();
          return null;
        },
        (err: unknown) => {
          peer.destroy();
          return err;
        },
      ),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return {
    port: addr.port,
    get connections() {
      return peers.length;
    },
    log,
    peers,
    received(filter = {}) {
      return log
        .filter((c) => (filter.connection === undefined || c.connection === filter.connection) && (filter.phase === undefined || c.phase === filter.phase))
        .map((c) => c.data)
        .join('');
    },
    async settled() {
      const results = await Promise.all(runs);
      return results.filter((r) => r !== null);
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** "250-name\r\n250-KW\r\n250 LAST\r\n" */
export function ehloReply(name: string, keywords: string[]): string {
  const lines = [name, ...keywords];
  return lines.map((l, i) => `250${i === lines.length - 1 ? ' ' : '-'}${l}\r\n`).join('');
}

/** Greeting + EHLO with the given keywords. */
export async function greetAndEhlo(p: ScriptPeer, keywords: string[], name = 'fake.test'): Promise<void> {
  await p.write(`220 ${name} ESMTP scripted\r\n`);
  await p.expect('EHLO ');
  await p.write(ehloReply(name, keywords));
}

/** STARTTLS → 220 → handshake → EHLO again with `keywordsAfter`. */
export async function acceptStartTls(p: ScriptPeer, tlsOptions: tls.TlsOptions, keywordsAfter: string[], name = 'fake.test'): Promise<void> {
  await p.expect('STARTTLS');
  await p.write('220 2.0.0 Ready to start TLS\r\n');
  await p.startTls(tlsOptions);
  await p.expect('EHLO ');
  await p.write(ehloReply(name, keywordsAfter));
}

/** MAIL, `n` RCPTs, DATA, content, QUIT, all accepted; returns the content lines. */
export async function acceptMessage(p: ScriptPeer, n = 1): Promise<string[]> {
  await p.expect('MAIL FROM:');
  await p.write('250 2.1.0 ok\r\n');
  for (let i = 0; i < n; i++) {
    await p.expect('RCPT TO:');
    await p.write('250 2.1.5 ok\r\n');
  }
  await p.expect('DATA');
  await p.write('354 go ahead\r\n');
  const lines = await p.readData();
  await p.write('250 2.0.0 queued as FAKE\r\n');
  await p.expect('QUIT');
  await p.write('221 2.0.0 bye\r\n');
  return lines;
}

/** Until the client leaves: 221 to QUIT (then return), 503 to anything else. */
export async function drainUntilQuit(p: ScriptPeer): Promise<void> {
  for (;;) {
    let line: string;
    try {
      line = await p.readLine();
    } catch {
      return;
    }
    if (/^QUIT$/i.test(line)) {
      await p.write('221 2.0.0 bye\r\n');
      return;
    }
    await p.write('503 5.5.1 unexpected command\r\n');
  }
}

/**
 * For one test file: `const serve = scriptedServers();` at the top, then `await serve(script)`
 * starts a scripted server that after() closes.
 */
export function scriptedServers(): (script: (p: ScriptPeer) => Promise<void>) => Promise<ScriptedServer> {
  const servers: ScriptedServer[] = [];
  after(async () => {
    for (const s of servers.splice(0)) await s.close();
  });
  return async (script) => {
    const s = await startScriptedServer(script);
    servers.push(s);
    return s;
  };
}
