/**
 * Hostile clients against `postseal serve`, with figures: the server's RSS (from /proc) around
 * each bounded attack, and whether slot-holding tricks end. Loopback only; every attack is
 * bounded in bytes and time. Run it against this tree or against another build to compare:
 *
 *   node --import tsx bench/attack.ts                       # dist/ of this tree (built if missing)
 *   node --import tsx bench/attack.ts --main /tmp/old/dist/cli/main.js
 *
 * Attacks (the rows of issue 8's table):
 *   noop-flood   one connection writes 10,000 NOOPs per write for 5 s and never reads a reply
 *   data-flood   N connections each send M MiB of a DATA that never ends, then leave
 *   trickle      one byte of a command line every 250 ms: is the slot given back?
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { httpOffArgs } from './lib/http-off.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface Options {
  main: string;
  conns: number;
  mib: number;
  seconds: number;
}

function options(argv: string[]): Options {
  const o: Options = { main: join(ROOT, 'dist/cli/main.js'), conns: 100, mib: 16, seconds: 5 };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    switch (argv[i]) {
      case '--main': o.main = v ?? o.main; i++; break;
      case '--conns': o.conns = Math.min(500, Number(v)); i++; break;
      case '--mib': o.mib = Math.min(64, Number(v)); i++; break;
      case '--seconds': o.seconds = Math.min(30, Number(v)); i++; break;
      default: throw new Error(`unknown option ${argv[i]} (--main FILE --conns N --mib M --seconds S)`);
    }
  }
  return o;
}

function rssMb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function serve(main: string, limits: Record<string, number> = { maxConnectionsPerIp: 1000 }): Promise<{ child: ChildProcess; port: number; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'postseal-attack-'));
  // Only keys every version knows: the defaults are what is measured.
  const cfg = join(dir, 'config.json');
  writeFileSync(cfg, JSON.stringify({ dataDir: join(dir, 'data'), listeners: { mx: { address: '127.0.0.1:0' }, submission: 'off', submissions: 'off' }, log: { level: 'error' }, limits }));
  const args = [main, 'serve', '--config', cfg, ...(supportsCatchAll(main) ? ['--catch-all'] : []), ...httpOffArgs(join(main, '..', '..'))];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /^listening mx \S+:(\d+)/m.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`serve exited ${code}`)));
    setTimeout(() => reject(new Error('serve did not start')), 30_000).unref();
  });
  return { child, port, dir };
}

function supportsCatchAll(main: string): boolean {
  const src = main.replace(/dist\/cli\/main\.js$/, 'dist/cli/serve.js');
  return existsSync(src) && readFileSync(src, 'utf8').includes('--catch-all');
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' }, () => resolve(s));
    s.once('error', reject);
  });
}

function waitFor(s: net.Socket, re: RegExp, ms = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`no ${re}`)), ms);
    const on = (b: Buffer): void => {
      text += b.toString('latin1');
      if (re.test(text)) {
        clearTimeout(timer);
        s.off('data', on);
        resolve();
      }
    };
    s.on('data', on);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function noopFlood(o: Options): Promise<string> {
  const srv = await serve(o.main);
  const pid = srv.child.pid ?? 0;
  const s = await connect(srv.port);
  s.on('error', () => undefined);
  s.pause();
  const before = rssMb(pid);
  const chunk = Buffer.from('NOOP\r\n'.repeat(10_000));
  const end = Date.now() + o.seconds * 1000;
  let sent = 0;
  let peak = before;
  while (Date.now() < end && !s.destroyed) {
    if (!s.write(chunk)) await Promise.race([new Promise((r) => s.once('drain', r)), sleep(Math.max(1, end - Date.now()))]);
    else sent += chunk.length;
    peak = Math.max(peak, rssMb(pid));
  }
  await sleep(200);
  peak = Math.max(peak, rssMb(pid));
  s.destroy();
  srv.child.kill('SIGKILL');
  rmSync(srv.dir, { recursive: true, force: true });
  return `noop-flood   ${o.seconds} s, client never reads: server RSS ${before.toFixed(0)} → peak ${peak.toFixed(0)} MB (+${(peak - before).toFixed(0)} MB); client got ${(sent / 1048576).toFixed(1)} MiB accepted by the kernel`;
}

async function dataFlood(o: Options): Promise<string> {
  const srv = await serve(o.main);
  const pid = srv.child.pid ?? 0;
  const socks: net.Socket[] = [];
  for (let i = 0; i < o.conns; i++) {
    const s = await connect(srv.port);
    s.on('error', () => undefined);
    socks.push(s);
    const ready = waitFor(s, /^354 /m);
    s.write('EHLO attacker.test\r\nMAIL FROM:<a@attacker.test>\r\nRCPT TO:<postmaster>\r\nDATA\r\n');
    await ready;
  }
  const before = rssMb(pid);
  const line = Buffer.from(`${'x'.repeat(1022)}\r\n`.repeat(64));
  const total = o.mib * 1048576;
  let peak = before;
  const t0 = Date.now();
  await Promise.all(
    socks.map(async (s) => {
      for (let sent = 0; sent < total && !s.destroyed; sent += line.length) {
        if (!s.write(line)) await new Promise((r) => s.once('drain', r));
      }
    }),
  );
  const ms = Date.now() - t0;
  for (let i = 0; i < 10; i++) {
    peak = Math.max(peak, rssMb(pid));
    await sleep(100);
  }
  for (const s of socks) s.destroy();
  await sleep(2000);
  const afterClose = rssMb(pid);
  srv.child.kill('SIGKILL');
  rmSync(srv.dir, { recursive: true, force: true });
  return `data-flood   ${o.conns} × ${o.mib} MiB unfinished DATA (${((o.conns * o.mib) / 1024).toFixed(2)} GiB in ${(ms / 1000).toFixed(1)} s): server RSS ${before.toFixed(0)} → peak ${peak.toFixed(0)} MB (+${(peak - before).toFixed(0)} MB), ${afterClose.toFixed(0)} MB 2 s after the clients left`;
}

async function trickle(o: Options): Promise<string> {
  // A short command timeout, with a key every version knows.
  const srv = await serve(o.main, { commandTimeoutMs: 2000 });
  const s = await connect(srv.port);
  s.on('error', () => undefined);
  let closedAt = 0;
  let text = '';
  s.on('data', (b: Buffer) => (text += b.toString('latin1')));
  s.on('close', () => (closedAt = Date.now()));
  const t0 = Date.now();
  const limit = 12_000;
  for (let i = 0; Date.now() - t0 < limit && closedAt === 0; i++) {
    s.write('x');
    await sleep(250);
  }
  s.destroy();
  srv.child.kill('SIGKILL');
  rmSync(srv.dir, { recursive: true, force: true });
  const last = text.trim().split('\r\n').at(-1) ?? '';
  return closedAt === 0
    ? `trickle      1 byte / 250 ms, commandTimeoutMs 2000: still open after ${limit / 1000} s (slot held)`
    : `trickle      1 byte / 250 ms, commandTimeoutMs 2000: closed after ${((closedAt - t0) / 1000).toFixed(1)} s with "${last}"`;
}

async function main(): Promise<void> {
  const o = options(process.argv.slice(2));
  if (!existsSync(o.main)) throw new Error(`${o.main} not found: npm run build first`);
  console.log(`postseal serve from ${o.main}`);
  console.log(await noopFlood(o));
  console.log(await dataFlood(o));
  console.log(await trickle(o));
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
