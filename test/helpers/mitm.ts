/**
 * An SMTP attacker in the middle, on 127.0.0.1:0, in front of a real receiver (issue 10, "Tests
 * (real parts)"). Real sockets, real TLS: the client under test connects to `port` as if it were
 * the MX, and the proxy forwards to the receiver at `upstreamPort`.
 *
 * Modes (taken per connection at accept time; `setMode` changes it for the next connections):
 * - `pass`: an honest byte pipe in both directions (STARTTLS goes end to end; the proxy sees
 *   only ciphertext after it);
 * - `strip-starttls`: removes `250-STARTTLS` / `250 STARTTLS` from every multi-line 250 reply
 *   (the last line keeps its `250 ` form, so the reply stays well-formed), and turns a STARTTLS
 *   the client sends anyway into `XXXXXXXX` (the classic stripping attack: the receiver answers 5xx);
 * - `refuse-starttls`: STARTTLS stays advertised, but the proxy answers `454 4.7.0` to STARTTLS
 *   itself (the receiver never sees it);
 * - `wrong-cert`: the proxy terminates the client's STARTTLS itself with `cert` (another name or
 *   another CA), does its own STARTTLS toward the receiver, and relays the decrypted bytes.
 *
 * The record: every byte the client sent, per connection, as raw wire bytes (`wire`) and as what
 * the attacker can read (`readable`: the plaintext before any TLS, plus what it decrypted in
 * `wrong-cert` mode). `saw(marker)` says whether a marker (a message body line) reached the attacker.
 *
 * Invariants: no sleeps; every socket is destroyed by close(); the upstream STARTTLS wait is
 * bounded by `timeoutMs`; a failed client handshake (the client refused the certificate) closes
 * both sides and is recorded as `clientHandshake: 'failed'`.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { PemKeyPair } from './certs.js';

export const MITM_MODES = ['pass', 'strip-starttls', 'refuse-starttls', 'wrong-cert'] as const;
export type MitmMode = (typeof MITM_MODES)[number];

export interface MitmConnection {
  mode: MitmMode;
  /** Raw bytes from the client, as on the wire (ciphertext after an end-to-end STARTTLS). */
  wire: Buffer[];
  /** What the attacker could read of what the client sent. */
  readable: Buffer[];
  /** Client command lines the proxy saw in plaintext (its own TLS included), without CRLF. */
  commands: string[];
  /** STARTTLS seen from the client (and what the proxy did with it). */
  starttls: 'none' | 'forwarded' | 'rewritten' | 'refused' | 'intercepted';
  /** The proxy's own handshake with the client (wrong-cert mode). */
  clientHandshake: 'none' | 'ok' | 'failed';
  /** STARTTLS lines the proxy removed from EHLO replies. */
  stripped: number;
  closed: boolean;
}

export interface MitmOptions {
  upstreamPort: number;
  upstreamHost?: string;
  mode: MitmMode;
  /** The certificate the proxy presents in `wrong-cert` mode. */
  cert?: PemKeyPair;
  /** Bound on the proxy's own STARTTLS toward the receiver. Default 10 s. */
  timeoutMs?: number;
}

export interface Mitm {
  port: number;
  readonly connections: MitmConnection[];
  setMode(mode: MitmMode): void;
  /** Every raw byte every client sent. */
  wire(): Buffer;
  /** Everything the attacker could read of what clients sent. */
  readable(): Buffer;
  /** Whether `marker` crossed the proxy where the attacker could read it. */
  saw(marker: string | Buffer): boolean;
  /** Whether `marker` appears in the raw bytes at all (plaintext on the wire). */
  sawOnWire(marker: string | Buffer): boolean;
  /** Forget what was recorded (between test steps). */
  clear(): void;
  close(): Promise<void>;
}

const CRLF = Buffer.from('\r\n');

/** Splits complete CRLF-or-LF-terminated lines off `buf`; returns [lines (with their ending), rest]. */
function takeLines(buf: Buffer): [Buffer[], Buffer] {
  const lines: Buffer[] = [];
  let start = 0;
  for (;;) {
    const i = buf.indexOf(0x0a, start);
    if (i < 0) break;
    lines.push(buf.subarray(start, i + 1));
    start = i + 1;
  }
  return [lines, buf.subarray(start)];
}

function lineText(line: Buffer): string {
  return line.toString('latin1').replace(/\r?\n$/, '');
}

const isStartTls = (line: Buffer): boolean => /^STARTTLS\s*$/i.test(lineText(line));

/**
 * Removes STARTTLS from one complete reply (its lines, the last one `NNN ` form). Returns the
 * reply rewritten and how many lines went. Only 250 replies are touched.
 */
export function stripStartTls(reply: string[]): { lines: string[]; removed: number } {
  if (reply.length < 2 || !reply.every((l) => l.startsWith('250'))) return { lines: reply, removed: 0 };
  const kept = reply.filter((l) => !/^250[- ]STARTTLS\s*$/i.test(l));
  const removed = reply.length - kept.length;
  if (removed === 0) return { lines: reply, removed: 0 };
  // RFC 5321 §4.2.1: every line but the last is NNN-, the last NNN<SP>.
  const fixed = kept.map((l, i) => (i === kept.length - 1 ? `250 ${l.slice(4)}` : `250-${l.slice(4)}`));
  return { lines: fixed, removed };
}

export async function startMitm(opts: MitmOptions): Promise<Mitm> {
  const cert = opts.cert;
  const needCert = (m: MitmMode): void => {
    if (m === 'wrong-cert' && cert === undefined) throw new Error('mitm: wrong-cert mode needs opts.cert');
  };
  needCert(opts.mode);
  let mode = opts.mode;
  const upstreamHost = opts.upstreamHost ?? '127.0.0.1';
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const connections: MitmConnection[] = [];
  const sockets = new Set<net.Socket>();
  const track = <S extends net.Socket>(s: S): S => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    return s;
  };

  const server = net.createServer((client) => {
    track(client);
    const conn: MitmConnection = { mode, wire: [], readable: [], commands: [], starttls: 'none', clientHandshake: 'none', stripped: 0, closed: false };
    connections.push(conn);
    const upstream = track(net.connect({ host: upstreamHost, port: opts.upstreamPort }));
    const closeBoth = (): void => {
      conn.closed = true;
      client.destroy();
      upstream.destroy();
    };
    client.on('close', closeBoth);
    upstream.on('close', closeBoth);
    client.on('data', (d: Buffer) => conn.wire.push(Buffer.from(d)));

    if (conn.mode === 'pass') {
      client.on('data', (d: Buffer) => {
        // Before the end-to-end handshake the bytes are readable; the first TLS record (0x16)
        // after STARTTLS ends that (the proxy is honest and does not look further).
        if (conn.starttls === 'none') {
          conn.readable.push(Buffer.from(d));
          const [lines] = takeLines(d);
          for (const l of lines) conn.commands.push(lineText(l));
          if (lines.some(isStartTls)) conn.starttls = 'forwarded';
        }
        upstream.write(d);
      });
      upstream.on('data', (d: Buffer) => client.write(d));
      return;
    }

    // The other modes read lines in both directions while in plaintext.
    let fromClient: Buffer = Buffer.alloc(0);
    let fromServer: Buffer = Buffer.alloc(0);
    let reply: string[] = [];
    let intercepting = false;

    const onClientData = (d: Buffer): void => {
      conn.readable.push(Buffer.from(d));
      if (intercepting) return; // a pipelining client after STARTTLS: dropped, as a server would purge
      const [lines, rest] = takeLines(Buffer.concat([fromClient, d]));
      fromClient = rest;
      for (const line of lines) {
        conn.commands.push(lineText(line));
        if (!isStartTls(line)) {
          upstream.write(line);
          continue;
        }
        if (conn.mode === 'strip-starttls') {
          conn.starttls = 'rewritten';
          upstream.write(Buffer.concat([Buffer.from('XXXXXXXX'), CRLF]));
        } else if (conn.mode === 'refuse-starttls') {
          conn.starttls = 'refused';
          client.write('454 4.7.0 TLS not available due to temporary reason\r\n');
        } else {
          conn.starttls = 'intercepted';
          intercepting = true;
          void intercept();
          return;
        }
      }
    };

    const onServerData = (d: Buffer): void => {
      if (conn.mode !== 'strip-starttls') {
        client.write(d);
        return;
      }
      const [lines, rest] = takeLines(Buffer.concat([fromServer, d]));
      fromServer = rest;
      for (const line of lines) {
        const text = lineText(line);
        reply.push(text);
        if (text.length >= 4 && text[3] === '-') continue; // more lines of this reply to come
        const out = stripStartTls(reply);
        conn.stripped += out.removed;
        client.write(out.lines.map((l) => `${l}\r\n`).join(''));
        reply = [];
      }
    };

    client.on('data', onClientData);
    upstream.on('data', onServerData);

    /** wrong-cert: the proxy's own STARTTLS upstream, then its own TLS toward the client. */
    const intercept = async (): Promise<void> => {
      upstream.off('data', onServerData);
      client.off('data', onClientData);
      const up = await upstreamStartTls(upstream, timeoutMs).catch(() => null);
      if (up === null) {
        client.write('454 4.7.0 TLS not available due to temporary reason\r\n');
        closeBoth();
        return;
      }
      track(up);
      up.on('close', closeBoth);
      client.write('220 2.0.0 Ready to start TLS\r\n');
      const secure = track(new tls.TLSSocket(client, { isServer: true, secureContext: tls.createSecureContext({ key: cert?.keyPem, cert: cert?.certPem }) }));
      secure.on('secure', () => {
        conn.clientHandshake = 'ok';
      });
      secure.on('error', () => {
        if (conn.clientHandshake === 'none') conn.clientHandshake = 'failed';
        closeBoth();
        up.destroy();
      });
      secure.on('close', () => up.destroy());
      let pending: Buffer = Buffer.alloc(0);
      secure.on('data', (d: Buffer) => {
        conn.readable.push(Buffer.from(d));
        const [lines, rest] = takeLines(Buffer.concat([pending, d]));
        pending = rest;
        for (const l of lines) conn.commands.push(lineText(l));
        up.write(d);
      });
      up.on('data', (d: Buffer) => secure.write(d));
    };
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  if (addr === null || typeof addr !== 'object') throw new Error('mitm: no port');

  const all = (pick: (c: MitmConnection) => Buffer[]): Buffer => Buffer.concat(connections.flatMap(pick));
  return {
    port: addr.port,
    connections,
    setMode(m) {
      needCert(m);
      mode = m;
    },
    wire: () => all((c) => c.wire),
    readable: () => all((c) => c.readable),
    saw: (marker) => all((c) => c.readable).includes(marker),
    sawOnWire: (marker) => all((c) => c.wire).includes(marker),
    clear() {
      connections.length = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * STARTTLS toward the receiver on `sock` (the client's EHLO already went through it): send
 * STARTTLS, read the complete reply, expect 220, hand back the TLS socket. The receiver's
 * certificate is not checked: the attacker does not care.
 */
function upstreamStartTls(sock: net.Socket, timeoutMs: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => fail(new Error('mitm: upstream STARTTLS timed out')), timeoutMs);
    const fail = (e: Error): void => {
      clearTimeout(timer);
      sock.off('data', onData);
      reject(e);
    };
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      const [lines] = takeLines(buf);
      const last = lines.at(-1);
      if (last === undefined || lineText(last)[3] === '-') return;
      clearTimeout(timer);
      sock.off('data', onData);
      if (!lineText(last).startsWith('220')) {
        reject(new Error(`mitm: upstream refused STARTTLS: ${lineText(last)}`));
        return;
      }
      const up = tls.connect({ socket: sock, rejectUnauthorized: false });
      up.once('secureConnect', () => resolve(up));
      up.once('error', (e) => reject(e));
    };
    sock.on('data', onData);
    sock.write('STARTTLS\r\n');
  });
}
