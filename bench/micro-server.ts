/**
 * A deterministic-ish micro-benchmark of one server for one scenario: the server (postseal-discard,
 * postseal-durable or the floor peer) runs either natively (server CPU time from /proc, best and
 * median of --rounds) or under `valgrind --tool=callgrind` (user-space instructions executed by
 * the server while the measured load ran: same code, same count, whatever else the machine does).
 * Instructions do not see the kernel (syscalls, loopback delivery): compare syscall counts with
 * --strace, or CPU time natively.
 *
 *   node --import tsx bench/micro-server.ts --scenario handshake --count 400 --callgrind
 *   node --import tsx bench/micro-server.ts --scenario throughput --count 20000 --rounds 5
 *   node --import tsx bench/micro-server.ts --peer floor --scenario handshake --count 400 --callgrind
 *
 * Server pinned to core 1, generator to core 0 (like bench/run.ts). Prints one JSON line per round.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeBenchCert } from './lib/pki.js';
import { httpOffArgs } from './lib/http-off.js';

const ROOT = new URL('..', import.meta.url).pathname;

interface Opts {
  peer: 'discard' | 'durable' | 'floor';
  scenario: 'handshake' | 'throughput' | 'bulk' | 'pipelining';
  count: number;
  conns: number;
  rounds: number;
  callgrind: boolean;
  strace: boolean;
  warmup: number;
  dist: string;
  /** Keep the callgrind profile here (for callgrind_annotate). */
  keep: string | null;
}

function parse(argv: string[]): Opts {
  const o: Opts = { peer: 'discard', scenario: 'handshake', count: 0, conns: 10, rounds: 1, callgrind: false, strace: false, warmup: 2, dist: join(ROOT, 'dist'), keep: null };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1] ?? '';
    switch (k) {
      case '--peer': o.peer = v as Opts['peer']; i++; break;
      case '--scenario': o.scenario = v as Opts['scenario']; i++; break;
      case '--count': o.count = Number(v); i++; break;
      case '--conns': o.conns = Number(v); i++; break;
      case '--rounds': o.rounds = Number(v); i++; break;
      case '--warmup': o.warmup = Number(v); i++; break;
      case '--dist': o.dist = v; i++; break;
      case '--keep': o.keep = v; i++; break;
      case '--callgrind': o.callgrind = true; break;
      case '--strace': o.strace = true; break;
      default: throw new Error(`micro-server: unknown argument ${k}`);
    }
  }
  if (!o.count) o.count = o.scenario === 'handshake' ? 1000 : o.scenario === 'bulk' ? 300 : 20000;
  return o;
}

function lines(cp: ChildProcess, onLine: (l: string) => void): void {
  let buf = '';
  cp.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      onLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  });
}

function ticksOf(file: string): number {
  const s = readFileSync(file, 'latin1');
  const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]);
}
/** [whole process, main thread] user+system ticks. */
function cpuTicks(pid: number): [number, number] {
  return [ticksOf(`/proc/${pid}/stat`), ticksOf(`/proc/${pid}/task/${pid}/stat`)];
}
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

async function round(o: Opts, dir: string, cert: { certFile: string; keyFile: string }, r: number): Promise<Record<string, unknown>> {
  const data = mkdtempSync(join(dir, 'data-'));
  const cgOut = join(dir, `cg-${r}.out`);
  const serverArgs =
    o.peer === 'floor'
      ? ['--import', 'tsx', 'bench/micro-floor-peer.ts', '--cert', cert.certFile, '--key', cert.keyFile]
      : o.peer === 'discard'
        ? ['--import', 'tsx', 'bench/postseal-discard.ts', '--data', data, '--cert', cert.certFile, '--key', cert.keyFile]
        : [join(o.dist, 'cli/main.js'), 'serve', '--data', data, '--cert', cert.certFile, '--key', cert.keyFile, '--hostname', 'bench.localhost', '--listen', '127.0.0.1:0', '--catch-all', ...httpOffArgs(o.dist)];
  const pre = o.callgrind ? ['valgrind', '--tool=callgrind', '--instr-atstart=no', '--separate-threads=yes', `--callgrind-out-file=${cgOut}`, 'node'] : ['node'];
  const server = spawn('taskset', ['-c', '1', ...pre, ...serverArgs], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, POSTSEAL_DIST: o.dist } });
  let serverErr = '';
  server.stderr?.on('data', (d: Buffer) => (serverErr += d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`server did not start: ${serverErr.slice(-2000)}`)), 180_000);
    lines(server, (l) => {
      const m = /listening (\d+)/.exec(l);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    });
    server.once('exit', (c) => reject(new Error(`server exited ${c}: ${serverErr.slice(-2000)}`)));
  });
  // taskset execs the command: the pid is the node (or valgrind) process itself.
  const pid = server.pid ?? 0;
  const sc = o.scenario;
  const genArgs = ['--import', 'tsx', 'bench/loadgen.ts', '--port', String(port), '--conns', String(o.conns), '--msgs-per-conn', sc === 'handshake' ? '1' : '0', '--size', sc === 'bulk' ? String(1024 * 1024) : '2048', '--count', String(o.count), '--duration', '100000', '--warmup', String(o.warmup)];
  if (sc === 'pipelining') genArgs.push('--pipelining');
  const gen = spawn('taskset', ['-c', '0', 'node', ...genArgs], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  let genErr = '';
  gen.stderr?.on('data', (d: Buffer) => (genErr += d.toString()));
  let t0: [number, number] = [0, 0];
  let strace: ChildProcess | null = null;
  let straceOut = '';
  const end = await new Promise<Record<string, unknown>>((resolve, reject) => {
    gen.once('exit', (c) => c !== 0 && reject(new Error(`loadgen exited ${c}: ${genErr.slice(-2000)}`)));
    lines(gen, (l) => {
      const ev = JSON.parse(l) as Record<string, unknown>;
      if (ev.event === 'ready') {
        if (o.callgrind) execFileSync('callgrind_control', ['-i', 'on', String(pid)], { stdio: 'ignore' });
        if (o.strace) {
          strace = spawn('strace', ['-c', '-f', '-p', String(pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
          strace.stderr?.on('data', (d: Buffer) => (straceOut += d.toString()));
        }
        t0 = cpuTicks(pid);
        gen.stdin?.write('go\n');
      } else if (ev.event === 'end') resolve(ev);
    });
  });
  const t1 = cpuTicks(pid);
  const ticks = t1[0] - t0[0];
  const mainTicks = t1[1] - t0[1];
  let instructions: number | null = null;
  let mainInstructions: number | null = null;
  if (o.callgrind) {
    execFileSync('callgrind_control', ['-d', String(pid)], { stdio: 'ignore' });
    // --separate-threads=yes: one file per thread (…-01 is the main thread: JS, libuv, OpenSSL;
    // the others are V8's compiler and GC helpers, counted in the total).
    const f = readdirSync(dir).filter((n) => n.startsWith(`cg-${r}.out`)).sort();
    instructions = 0;
    for (const name of f) {
      const m = /^(?:summary|totals): (\d+)/m.exec(readFileSync(join(dir, name), 'latin1'));
      if (!m) continue;
      instructions += Number(m[1]);
      if (/-0*1$/.test(name)) {
        mainInstructions = Number(m[1]);
        if (o.keep) copyFileSync(join(dir, name), `${o.keep}.${r}`);
      }
    }
  }
  let syscalls: Record<string, number> | null = null;
  if (strace) {
    const s = strace as ChildProcess;
    s.kill('SIGINT');
    await new Promise((res) => s.once('exit', res));
    syscalls = {};
    for (const m of straceOut.matchAll(/^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$/gm)) syscalls[m[2] ?? ''] = Number(m[1]);
  }
  gen.stdin?.end();
  server.kill('SIGTERM');
  await new Promise((res) => server.once('exit', res));
  rmSync(data, { recursive: true, force: true });
  const units = sc === 'handshake' ? Number(end.sessions) : sc === 'bulk' ? Number(end.bytes) / (1024 * 1024) : Number(end.messages);
  const unit = sc === 'handshake' ? 'session' : sc === 'bulk' ? 'MiB' : 'message';
  const out: Record<string, unknown> = {
    peer: o.peer,
    scenario: sc,
    round: r,
    units,
    unit,
    errors: end.errors,
    cpuMsPerUnit: ((ticks / CLK_TCK) * 1000) / units,
    mainThreadCpuMsPerUnit: ((mainTicks / CLK_TCK) * 1000) / units,
    wallMs: end.wallMs,
  };
  if (instructions !== null) out.instructionsPerUnit = Math.round(instructions / units);
  if (mainInstructions !== null) out.mainThreadInstructionsPerUnit = Math.round(mainInstructions / units);
  if (syscalls) out.syscallsPerUnit = Object.fromEntries(Object.entries(syscalls).map(([k, v]) => [k, Math.round((v / units) * 100) / 100]));
  return out;
}

const o = parse(process.argv.slice(2));
const dir = mkdtempSync(join(tmpdir(), 'postseal-micro-'));
try {
  const cert = makeBenchCert(dir, 'ec');
  for (let r = 0; r < o.rounds; r++) process.stdout.write(JSON.stringify(await round(o, dir, cert, r)) + '\n');
} finally {
  rmSync(dir, { recursive: true, force: true });
}
