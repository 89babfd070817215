/**
 * The load generator: C concurrent SMTP clients over STARTTLS (TLS 1.3, X25519, no verification,
 * no session resumption: every session pays a full handshake).
 *
 * Each worker: connect, greeting, EHLO, STARTTLS, handshake, EHLO, then M messages
 * (MAIL/RCPT/DATA, body S bytes; with --pipelining MAIL+RCPT+DATA go in one write), QUIT, repeat.
 * Bounded by --count (messages) and --duration (seconds), whichever comes first.
 * Mode `idle`: open --idle upgraded sessions, report, hold them until "release" on stdin.
 *
 * Protocol with the harness: JSON lines on stdout: {"event":"start"}, then {"event":"end",...}
 * (or {"event":"holding",...} in idle mode). It measures its own CPU (process.cpuUsage).
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';

interface Args {
  host: string;
  port: number;
  /** --ports P1,P2,…: several servers (nodes of one cluster); worker i connects to ports[i % n]. */
  ports: number[];
  conns: number;
  msgsPerConn: number; // 0 = unlimited (one connection for the whole run)
  size: number;
  count: number;
  durationMs: number;
  pipelining: boolean;
  mode: 'run' | 'idle';
  idle: number;
  /** Source addresses 127.0.0.X to spread idle sessions over (per-IP limits of the peers). */
  perSourceIp: number;
  warmupMs: number;
  /** x: lines of 'x' (the default; very compressible); base64: random base64 lines, like an attachment. */
  body: 'x' | 'base64';
}

function parseArgs(argv: string[]): Args {
  const a: Args = { host: '127.0.0.1', port: 0, ports: [], conns: 50, msgsPerConn: 1, size: 2048, count: 1e9, durationMs: 10_000, pipelining: false, mode: 'run', idle: 1000, perSourceIp: 100, warmupMs: 0, body: 'x' };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1] ?? '';
    switch (k) {
      case '--port': a.port = Number(v); i++; break;
      case '--ports': a.ports = v.split(',').map(Number); i++; break;
      case '--conns': a.conns = Number(v); i++; break;
      case '--msgs-per-conn': a.msgsPerConn = Number(v); i++; break;
      case '--size': a.size = Number(v); i++; break;
      case '--count': a.count = Number(v); i++; break;
      case '--duration': a.durationMs = Number(v) * 1000; i++; break;
      case '--pipelining': a.pipelining = true; break;
      case '--body': a.body = v === 'base64' ? 'base64' : 'x'; i++; break;
      case '--warmup': a.warmupMs = Number(v) * 1000; i++; break;
      case '--mode': a.mode = v === 'idle' ? 'idle' : 'run'; i++; break;
      case '--idle': a.idle = Number(v); i++; break;
      default: throw new Error(`loadgen: unknown argument ${k}`);
    }
  }
  if (!a.ports.length) a.ports = [a.port];
  if (!a.ports.every((p) => Number.isInteger(p) && p > 0 && p < 65536)) throw new Error('loadgen: --port or --ports is required');
  a.port = a.ports[0] as number;
  if (a.host !== '127.0.0.1') throw new Error('loadgen: loopback only');
  return a;
}

/** A message of exactly `size` bytes (headers + 76-char lines, CRLF), then the end-of-data line. */
export function makeBody(size: number, kind: 'x' | 'base64' = 'x'): Buffer {
  const head = 'From: <bench@example.com>\r\nTo: <bench@localhost>\r\nSubject: postseal bench\r\nMessage-ID: <bench@example.com>\r\n\r\n';
  const parts: string[] = [head];
  let len = head.length;
  const line = 'x'.repeat(76) + '\r\n';
  // base64: 57 random bytes per 76-character line (RFC 2045 §6.8), drawn once: a body like an attachment.
  const random = kind === 'base64' ? randomBytes(Math.ceil(size / 76) * 57 + 57) : null;
  let k = 0;
  while (len + line.length <= size) {
    parts.push(random ? random.subarray(57 * k, 57 * ++k).toString('base64') + '\r\n' : line);
    len += line.length;
  }
  if (size - len >= 3) {
    parts.push('y'.repeat(size - len - 2) + '\r\n');
    len = size;
  }
  return Buffer.from(parts.join('') + '.\r\n', 'latin1');
}

class ReplyError extends Error {
  constructor(
    readonly step: string,
    readonly reply: string,
  ) {
    super(`${step}: ${reply.slice(0, 120).replace(/\r\n/g, ' | ')}`);
  }
}

/** Reads SMTP replies off a socket; one pending reader at a time is enough (lock-step client). */
class Wire {
  private buf = '';
  private replies: string[] = [];
  private waiter: { resolve: (r: string) => void; reject: (e: Error) => void } | null = null;
  private failed: Error | null = null;
  sock: net.Socket;
  private readonly onData = (d: Buffer): void => {
    this.buf += d.toString('latin1');
    this.parse();
  };
  private readonly onError = (e: Error): void => this.fail(e);
  private readonly onClose = (): void => this.fail(new Error('connection closed'));

  constructor(sock: net.Socket) {
    this.sock = sock;
    this.attach();
  }

  private attach(): void {
    this.sock.on('data', this.onData);
    this.sock.on('error', this.onError);
    this.sock.on('close', this.onClose);
  }

  detach(): string {
    this.sock.off('data', this.onData);
    this.sock.off('error', this.onError);
    this.sock.off('close', this.onClose);
    const rest = this.buf;
    this.buf = '';
    return rest;
  }

  /** After STARTTLS: read from the TLS socket from now on. */
  switchTo(sock: net.Socket): void {
    this.sock = sock;
    this.attach();
  }

  private fail(e: Error): void {
    if (this.failed) return;
    this.failed = e;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(e);
  }

  private parse(): void {
    for (;;) {
      // A reply ends at a line whose 4th char is a space (or a bare 3-digit line).
      let start = 0;
      let end = -1;
      for (;;) {
        const nl = this.buf.indexOf('\n', start);
        if (nl < 0) break;
        if (nl - start < 4 || this.buf.charCodeAt(start + 3) !== 45 /* '-' */) {
          end = nl + 1;
          break;
        }
        start = nl + 1;
      }
      if (end < 0) return;
      const r = this.buf.slice(0, end);
      this.buf = this.buf.slice(end);
      const w = this.waiter;
      if (w) {
        this.waiter = null;
        w.resolve(r);
      } else this.replies.push(r);
    }
  }

  read(): Promise<string> {
    const r = this.replies.shift();
    if (r !== undefined) return Promise.resolve(r);
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  async expect(code: string, step: string): Promise<string> {
    const r = await this.read();
    if (!r.startsWith(code)) throw new ReplyError(step, r);
    return r;
  }
}

interface Stats {
  messages: number;
  bytes: number;
  sessions: number;
  handshakes: number;
  errors: number;
  errorSamples: Map<string, number>;
  latUs: number[];
  sessionUs: number[];
  /** Messages acknowledged per server port (several with --ports). */
  perPort: Map<number, number>;
}

const stats: Stats = { messages: 0, bytes: 0, sessions: 0, handshakes: 0, errors: 0, errorSamples: new Map(), latUs: [], sessionUs: [], perPort: new Map() };

function noteError(e: unknown): void {
  stats.errors++;
  const msg = e instanceof Error ? e.message : String(e);
  const key = msg.replace(/\d{3,}/g, 'N').slice(0, 160);
  stats.errorSamples.set(key, (stats.errorSamples.get(key) ?? 0) + 1);
}

// One client context for every connection: building one per connection (Node's default when no
// secureContext is given) costs the generator CPU it needs for the handshakes themselves.
const TLS_OPTS: tls.ConnectionOptions = {
  secureContext: tls.createSecureContext({ minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', ecdhCurve: 'X25519' }),
  rejectUnauthorized: false,
  servername: 'bench.localhost',
};

/** greeting, EHLO, STARTTLS, handshake, EHLO; returns the wire on the TLS socket. */
async function openSession(a: Args, localAddress?: string): Promise<{ wire: Wire; tlsSock: tls.TLSSocket; t0: number }> {
  const t0 = performance.now();
  const sock = net.connect({ host: a.host, port: a.port, ...(localAddress ? { localAddress } : {}) });
  sock.setNoDelay(true);
  const wire = new Wire(sock);
  try {
    await wire.expect('220', 'greeting');
    sock.write('EHLO bench.client\r\n');
    const ehlo = await wire.expect('250', 'EHLO');
    if (!/[ -]STARTTLS\r?\n/i.test(ehlo)) throw new ReplyError('EHLO (no STARTTLS)', ehlo);
    sock.write('STARTTLS\r\n');
    await wire.expect('220', 'STARTTLS');
    const extra = wire.detach();
    if (extra.length) throw new Error('bytes after 220 to STARTTLS');
    const tlsSock = tls.connect({ ...TLS_OPTS, socket: sock });
    await new Promise<void>((resolve, reject) => {
      tlsSock.once('secureConnect', resolve);
      tlsSock.once('error', reject);
    });
    stats.handshakes++;
    wire.switchTo(tlsSock);
    tlsSock.write('EHLO bench.client\r\n');
    await wire.expect('250', 'EHLO after TLS');
    return { wire, tlsSock, t0 };
  } catch (e) {
    sock.destroy();
    throw e;
  }
}

let issued = 0;
let stopAt = 0;
function mayIssue(a: Args): boolean {
  if (issued >= a.count || performance.now() >= stopAt) return false;
  issued++;
  return true;
}

const MAIL = 'MAIL FROM:<bench@example.com>\r\n';
const RCPT = 'RCPT TO:<bench@localhost>\r\n';
const DATA = 'DATA\r\n';
const PIPELINED = MAIL + RCPT + DATA;

async function sendMessage(a: Args, wire: Wire, sock: tls.TLSSocket, body: Buffer): Promise<void> {
  const t = performance.now();
  if (a.pipelining) {
    sock.write(PIPELINED);
    await wire.expect('250', 'MAIL');
    await wire.expect('250', 'RCPT');
    await wire.expect('354', 'DATA');
  } else {
    sock.write(MAIL);
    await wire.expect('250', 'MAIL');
    sock.write(RCPT);
    await wire.expect('250', 'RCPT');
    sock.write(DATA);
    await wire.expect('354', 'DATA');
  }
  sock.write(body);
  await wire.expect('250', 'end of data');
  stats.latUs.push((performance.now() - t) * 1000);
  stats.messages++;
  stats.perPort.set(a.port, (stats.perPort.get(a.port) ?? 0) + 1);
  stats.bytes += body.length - 3;
}

async function worker(a: Args, body: Buffer, index = 0): Promise<void> {
  if (a.ports.length > 1) a = { ...a, port: a.ports[index % a.ports.length] as number };
  let consecutiveErrors = 0;
  while (performance.now() < stopAt && issued < a.count) {
    let sess: Awaited<ReturnType<typeof openSession>> | null = null;
    try {
      sess = await openSession(a);
      let n = 0;
      while ((a.msgsPerConn === 0 || n < a.msgsPerConn) && mayIssue(a)) {
        await sendMessage(a, sess.wire, sess.tlsSock, body);
        n++;
        consecutiveErrors = 0;
      }
      sess.tlsSock.write('QUIT\r\n');
      await sess.wire.expect('221', 'QUIT');
      sess.tlsSock.end();
      stats.sessions++;
      stats.sessionUs.push((performance.now() - sess.t0) * 1000);
    } catch (e) {
      noteError(e);
      sess?.tlsSock.destroy();
      if (++consecutiveErrors > 50) return; // a peer refusing everything: do not spin
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

function pct(sorted: number[], p: number): number | null {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? null;
}

function emit(obj: object): void {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

/** Short sessions for warmupMs (JIT, TLS contexts, pools), then forget their numbers. */
async function warmup(a: Args, body: Buffer): Promise<void> {
  if (a.warmupMs <= 0) return;
  stopAt = performance.now() + a.warmupMs;
  await Promise.all(Array.from({ length: Math.max(Math.min(a.conns, 10), a.ports.length) }, (_, i) => worker({ ...a, count: 1e9 }, body, i)));
  issued = 0;
  stats.messages = stats.bytes = stats.sessions = stats.handshakes = stats.errors = 0;
  stats.errorSamples.clear();
  stats.perPort.clear();
  stats.latUs = [];
  stats.sessionUs = [];
}

/** Tell the harness we are ready and wait for "go" (it samples the server in between). */
function readyGo(): Promise<void> {
  emit({ event: 'ready' });
  return new Promise<void>((resolve) => {
    const on = (d: Buffer): void => {
      if (d.toString().includes('go')) {
        process.stdin.off('data', on);
        resolve();
      }
    };
    process.stdin.on('data', on);
  });
}

async function runMode(a: Args): Promise<void> {
  const body = makeBody(a.size, a.body);
  await warmup(a, body);
  await readyGo();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  stopAt = t0 + a.durationMs;
  emit({ event: 'start' });
  await Promise.all(Array.from({ length: a.conns }, (_, i) => worker(a, body, i)));
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const lat = stats.latUs.sort((x, y) => x - y);
  const ses = stats.sessionUs.sort((x, y) => x - y);
  emit({
    event: 'end',
    wallMs,
    messages: stats.messages,
    bytes: stats.bytes,
    sessions: stats.sessions,
    handshakes: stats.handshakes,
    errors: stats.errors,
    errorSamples: Object.fromEntries(stats.errorSamples),
    perPort: Object.fromEntries(stats.perPort),
    latencyMs: { p50: (pct(lat, 50) ?? NaN) / 1000, p99: (pct(lat, 99) ?? NaN) / 1000 },
    sessionMs: { p50: (pct(ses, 50) ?? NaN) / 1000, p99: (pct(ses, 99) ?? NaN) / 1000 },
    loadgenCpuMs: (cpu.user + cpu.system) / 1000,
    loadgenCpuPct: ((cpu.user + cpu.system) / 1000 / wallMs) * 100,
  });
}

async function idleMode(a: Args): Promise<void> {
  await warmup({ ...a, msgsPerConn: 1 }, makeBody(2048));
  await readyGo();
  const open: Array<{ wire: Wire; tlsSock: tls.TLSSocket }> = [];
  let next = 0;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  emit({ event: 'start' });
  // Opened 50 at a time; each source address carries at most perSourceIp sessions.
  await Promise.all(
    Array.from({ length: Math.min(a.conns, a.idle) }, async () => {
      while (next < a.idle) {
        const i = next++;
        const local = `127.0.0.${10 + Math.floor(i / a.perSourceIp)}`;
        try {
          open.push(await openSession(a, local));
        } catch (e) {
          noteError(e);
        }
      }
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  emit({
    event: 'holding',
    open: open.length,
    handshakes: stats.handshakes,
    errors: stats.errors,
    errorSamples: Object.fromEntries(stats.errorSamples),
    wallMs: performance.now() - t0,
    loadgenCpuMs: (cpu.user + cpu.system) / 1000,
  });
  // Hold until the harness has measured (or 120 s at most: bounded even if the harness vanished).
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, 120_000);
    process.stdin.on('data', (d) => {
      if (d.toString().includes('release')) {
        clearTimeout(t);
        resolve();
      }
    });
    process.stdin.on('end', () => {
      clearTimeout(t);
      resolve();
    });
  });
  for (const s of open) {
    s.tlsSock.write('QUIT\r\n');
    s.tlsSock.end();
  }
  await new Promise((r) => setTimeout(r, 200));
  for (const s of open) s.tlsSock.destroy();
  emit({ event: 'end', released: open.length });
}

const args = parseArgs(process.argv.slice(2));
(args.mode === 'idle' ? idleMode(args) : runMode(args)).then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`loadgen: ${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
  },
);
