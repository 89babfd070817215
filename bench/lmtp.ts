/**
 * Issue 12 "Measure": messages per second from mx receipt to LMTP delivery at Dovecot, and the
 * CPU per message of the handover.
 *
 *   lmtp    `postseal serve` (the real CLI as a child: node --import tsx src/cli/main.ts, SQLite
 *           store, fsync before 250) with `--deliver bench.test=lmtp:127.0.0.1:PORT` in front of
 *           Debian's Dovecot (test/helpers/dovecot.ts: own config in a temp dir, LMTP and IMAP on
 *           free 127.0.0.1 ports, Maildir). C parallel plain SMTP connections to the mx listener
 *           send N messages (MAIL, RCPT, DATA, SIZE-byte body) for one Dovecot user; the clock
 *           stops when Dovecot's Maildir of that user holds N files (new/ + cur/, counted every
 *           20 ms). Reported: msgs/s mx receipt → Dovecot (first MAIL to the Nth file), the
 *           receipt rate alone (first MAIL to the last 250), and serve's CPU (utime+stime from
 *           /proc for its process tree) from the first MAIL until 1 s after the Nth file, per message,
 *           and the LMTP connections Dovecot saw (its rawlog: one file per connection).
 *   store   the same serve and load without --deliver (today's built-in store target): receipt
 *           and storage only. lmtp − store CPU per message = the handover's cost (queue pass,
 *           reading the message back, LMTP client, recording the outcome).
 *
 * The queue runner looks for due messages every relay.intervalMs = 100 ms here (the default is
 * 30 s; serve also wakes the runner when mail is queued, where it does so).
 *
 * Loopback only, bounded: N ≤ 20000, each phase gives up after --phase-timeout seconds (default
 * 120) and the whole run is killed after --deadline seconds (default 300). Needs dovecot-core
 * dovecot-lmtpd dovecot-imapd (.ci/run installs them).
 * Usage: node --import tsx bench/lmtp.ts [--messages 1000] [--conns 4] [--size 2048] [--json]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startDovecot, type Dovecot } from '../test/helpers/dovecot.js';
import { WireClient } from '../test/helpers/wire.js';
import { sampleTree } from './lib/proc.js';
import { arg } from './lib/args.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

const N = Number(arg('--messages', '1000'));
const CONNS = Number(arg('--conns', '4'));
const SIZE = Number(arg('--size', '2048'));
const PHASE_TIMEOUT_S = Number(arg('--phase-timeout', '120'));
const DEADLINE_S = Number(arg('--deadline', '300'));
const JSON_OUT = process.argv.includes('--json');
if (!(N > 0 && N <= 20_000 && CONNS > 0 && CONNS <= 100 && SIZE >= 256 && SIZE <= 1 << 20)) throw new Error('--messages 1..20000, --conns 1..100, --size 256..1048576');

const children = new Set<ChildProcess>();
const killer = setTimeout(() => {
  process.stderr.write(`lmtp bench: deadline of ${DEADLINE_S} s reached, giving up\n`);
  for (const c of children) c.kill('SIGKILL');
  process.exit(1);
}, DEADLINE_S * 1000);
killer.unref();

const USER = { address: 'alice@bench.test', password: 'bench-Pw.12' };

/** A SIZE-octet message (CRLF lines, one starting with a dot), without the terminating dot line. */
function message(i: number): string {
  const head = `From: <sender@remote.test>\r\nTo: <${USER.address}>\r\nSubject: lmtp bench ${i}\r\nMessage-ID: <${i}.lmtp@remote.test>\r\n\r\n.dot-stuffed first line\r\n`;
  const line = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmn\r\n';
  let body = '';
  while (head.length + body.length + line.length <= SIZE - 2) body += line;
  body += 'x'.repeat(Math.max(0, SIZE - 2 - head.length - body.length)) + '\r\n';
  // Dot-stuffing for DATA (RFC 5321 §4.5.2).
  return (head + body).replace(/^\./gm, '..');
}

interface Serve {
  child: ChildProcess;
  mxPort: number;
  stderr: () => string;
}

async function startServe(dataDir: string, extra: string[]): Promise<Serve> {
  const config = join(dataDir, 'postseal.json');
  await writeFile(config, JSON.stringify({ relay: { intervalMs: 100 }, log: { level: 'warn' } }));
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'serve', '--config', config, '--data', dataDir, '--mx', '127.0.0.1:0', '--submission', 'off', '--submissions', 'off', '--hostname', 'mx.bench.test', '--domain', 'bench.test', '--catch-all', '--no-auth-verify', '--http', 'off', ...extra], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.on('exit', () => children.delete(child));
  let out = '';
  let err = '';
  child.stderr?.on('data', (b: Buffer) => {
    if (err.length < 1 << 20) err += b.toString();
  });
  const mxPort = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start in 60 s: ${err}`)), 60_000);
    child.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /^listening mx \S+:(\d+) /m.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited ${String(code)}: ${err}`));
    });
  });
  return { child, mxPort, stderr: () => err };
}

async function stopServe(s: Serve): Promise<void> {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => s.child.once('exit', () => resolve()));
  s.child.kill('SIGTERM');
  const t = setTimeout(() => s.child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

/** One connection sends `count` messages in sequence (no PIPELINING); resolves at its last 250. */
async function client(port: number, first: number, count: number): Promise<void> {
  const c = await WireClient.connect(port);
  try {
    const expect = (r: string[], code: string, what: string): void => {
      if (!r[0]?.startsWith(code)) throw new Error(`${what}: ${r.join(' | ')}`);
    };
    expect(await c.readReply(10_000), '220', 'greeting');
    expect(await c.cmd('EHLO client.remote.test', 10_000), '250', 'EHLO');
    for (let i = first; i < first + count; i++) {
      expect(await c.cmd('MAIL FROM:<sender@remote.test>', 10_000), '250', 'MAIL');
      expect(await c.cmd(`RCPT TO:<${USER.address}>`, 10_000), '250', 'RCPT');
      expect(await c.cmd('DATA', 10_000), '354', 'DATA');
      c.write(message(i) + '.\r\n');
      expect(await c.readReply(30_000), '250', 'end of data');
    }
    await c.cmd('QUIT', 5000).catch(() => undefined);
  } finally {
    c.close();
  }
}

async function sendAll(port: number): Promise<void> {
  const per = Math.floor(N / CONNS);
  const jobs: Promise<void>[] = [];
  let first = 0;
  for (let k = 0; k < CONNS; k++) {
    const count = per + (k < N % CONNS ? 1 : 0);
    if (count > 0) jobs.push(client(port, first, count));
    first += count;
  }
  await Promise.all(jobs);
}

async function maildirCount(d: Dovecot): Promise<number> {
  const [local, domain] = [USER.address.split('@')[0] ?? '', USER.address.split('@')[1] ?? ''];
  let n = 0;
  for (const sub of ['new', 'cur']) n += (await readdir(join(d.dir, 'mail', domain, local, sub)).catch(() => [])).length;
  return n;
}

interface PhaseResult {
  phase: 'store' | 'lmtp';
  messages: number;
  conns: number;
  size: number;
  /** First MAIL → last 250 (all N acknowledged). */
  receiptS: number;
  receiptMsgsPerS: number;
  /** First MAIL → Nth message in Dovecot's Maildir (lmtp only). */
  deliveredS: number | null;
  deliveredMsgsPerS: number | null;
  /** serve's process CPU from the first MAIL until 1 s after the end, per message. */
  serveCpuMs: number;
  serveCpuMsPerMsg: number;
  /** LMTP connections Dovecot saw during the measured window (its rawlog files, one per connection; lmtp only). */
  lmtpConnections: number | null;
}

async function phase(kind: 'store' | 'lmtp', d: Dovecot | null): Promise<PhaseResult> {
  const dataDir = await mkdtemp(join(tmpdir(), `postseal-bench-lmtp-${kind}-`));
  let serve: Serve | null = null;
  try {
    serve = await startServe(dataDir, kind === 'lmtp' && d ? ['--deliver', `bench.test=lmtp:127.0.0.1:${d.lmtpPort}`] : []);
    const pid = serve.child.pid ?? 0;
    // A warm-up message each, so start-up compilation (tsx) is not counted.
    await client(serve.mxPort, 1_000_000, 1);
    if (kind === 'lmtp' && d) await waitFor(async () => (await maildirCount(d)) >= 1, 30_000, 'the warm-up message at Dovecot');
    const before = d ? await maildirCount(d) : 0;
    const connsBefore = d ? await rawlogCount(d) : 0;
    await new Promise((r) => setTimeout(r, 500));
    const cpu0 = sampleTree(pid).cpuMs;
    const t0 = performance.now();
    await sendAll(serve.mxPort);
    const tReceipt = performance.now();
    let tDelivered: number | null = null;
    if (kind === 'lmtp' && d) {
      await waitFor(async () => (await maildirCount(d)) - before >= N, PHASE_TIMEOUT_S * 1000, `${N} messages at Dovecot`);
      tDelivered = performance.now();
    }
    // 1 s to settle (the last outcomes recorded), counted: a pass that is still running is part of the cost.
    await new Promise((r) => setTimeout(r, 1000));
    const cpu1 = sampleTree(pid).cpuMs;
    if (kind === 'lmtp' && d && (await maildirCount(d)) - before !== N) throw new Error(`Dovecot holds ${(await maildirCount(d)) - before} messages, expected ${N} (delivered twice?)`);
    const receiptS = (tReceipt - t0) / 1000;
    const deliveredS = tDelivered === null ? null : (tDelivered - t0) / 1000;
    return {
      phase: kind,
      messages: N,
      conns: CONNS,
      size: SIZE,
      receiptS,
      receiptMsgsPerS: N / receiptS,
      deliveredS,
      deliveredMsgsPerS: deliveredS === null ? null : N / deliveredS,
      serveCpuMs: cpu1 - cpu0,
      serveCpuMsPerMsg: (cpu1 - cpu0) / N,
      lmtpConnections: kind === 'lmtp' && d ? (await rawlogCount(d)) - connsBefore : null,
    };
  } finally {
    if (serve) await stopServe(serve);
    await rm(dataDir, { recursive: true, force: true });
  }
}

async function rawlogCount(d: Dovecot): Promise<number> {
  return (await readdir(join(d.dir, 'rawlog')).catch(() => [])).filter((n) => n.endsWith('.in')).length;
}

/** Polls external state (files Dovecot writes) until `check` holds; rejects after `ms`. */
async function waitFor(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** startDovecot reports a missing Dovecot through the test context; here that is an error. */
const context = {
  skip: (why?: string) => {
    throw new Error(`${why ?? 'dovecot missing'}: apt-get install -y dovecot-core dovecot-lmtpd dovecot-imapd`);
  },
} as unknown as TestContext;

async function main(): Promise<void> {
  const d = await startDovecot(context, { users: [USER] });
  if (d === null) throw new Error('dovecot not available');
  const results: PhaseResult[] = [];
  try {
    results.push(await phase('store', null));
    results.push(await phase('lmtp', d));
    const uids = await d.uids(USER);
    if (uids.length !== N + 1) throw new Error(`IMAP sees ${uids.length} messages, expected ${N + 1} (N + the warm-up)`);
  } finally {
    await d.remove();
  }
  const store = results.find((r) => r.phase === 'store');
  const lmtp = results.find((r) => r.phase === 'lmtp');
  const handoverCpuMsPerMsg = store && lmtp ? lmtp.serveCpuMsPerMsg - store.serveCpuMsPerMsg : null;
  if (JSON_OUT) {
    process.stdout.write(JSON.stringify({ results, handoverCpuMsPerMsg }, null, 2) + '\n');
    return;
  }
  const f = (x: number | null, digits = 1): string => (x === null ? '–' : x.toFixed(digits));
  process.stdout.write(`lmtp bench: ${N} messages × ${SIZE} B over ${CONNS} SMTP connections (plain, mx) to postseal serve; Dovecot LMTP on 127.0.0.1\n\n`);
  process.stdout.write('| target | receipt msgs/s (all 250s) | mx → Dovecot msgs/s (Nth file in Maildir) | s to Dovecot | serve CPU ms/msg | LMTP connections |\n|---|---|---|---|---|---|\n');
  for (const r of results) process.stdout.write(`| ${r.phase} | ${f(r.receiptMsgsPerS)} | ${f(r.deliveredMsgsPerS)} | ${f(r.deliveredS, 2)} | ${f(r.serveCpuMsPerMsg, 3)} | ${r.lmtpConnections ?? '–'} |\n`);
  process.stdout.write(`\nhandover CPU per message (lmtp − store): ${f(handoverCpuMsPerMsg, 3)} ms\n`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`lmtp bench failed: ${e instanceof Error ? e.message : String(e)}\n`);
    for (const c of children) c.kill('SIGKILL');
    process.exit(1);
  },
);
