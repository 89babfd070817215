/**
 * Process bookkeeping for the bench: spawn peers in their own process group, pinned to a core;
 * read CPU time and memory of a whole process tree from /proc; clean up on every exit path.
 *
 * CPU of a tree = Σ over live members of (utime + stime + cutime + cstime): a child that exits is
 * folded into its parent's cutime/cstime when reaped, so nothing is lost or counted twice (this is
 * what makes Postfix, whose smtpd processes come and go, measurable).
 */
import { spawn, execFileSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();
const PAGE_KB = (() => {
  try {
    return (Number(execFileSync('getconf', ['PAGESIZE']).toString().trim()) || 4096) / 1024;
  } catch {
    return 4;
  }
})();

interface StatRow {
  pid: number;
  ppid: number;
  ticks: number; // utime+stime+cutime+cstime
  rssKb: number;
}

function readStat(pid: number): StatRow | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // comm may contain spaces and parentheses: fields start after the last ')'.
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // rest[0] = state (field 3); field n is rest[n-3]
    const f = (n: number): number => Number(rest[n - 3]);
    return { pid, ppid: f(4), ticks: f(14) + f(15) + f(16) + f(17), rssKb: f(24) * PAGE_KB };
  } catch {
    return null;
  }
}

/** The root and all its live descendants. */
export function treePids(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    const st = readStat(pid);
    if (!st) continue;
    const list = children.get(st.ppid) ?? [];
    list.push(pid);
    children.set(st.ppid, list);
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length) {
    const p = stack.pop() as number;
    out.push(p);
    for (const c of children.get(p) ?? []) stack.push(c);
  }
  return out;
}

export interface TreeSample {
  /** CPU milliseconds consumed by the tree so far. */
  cpuMs: number;
  rssKb: number;
  pssKb: number;
  processes: number;
  at: number;
}

function pssKb(pid: number): number {
  try {
    const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export function sampleTree(root: number, withPss = false): TreeSample {
  let ticks = 0;
  let rss = 0;
  let pss = 0;
  let n = 0;
  for (const pid of treePids(root)) {
    const st = readStat(pid);
    if (!st) continue;
    ticks += st.ticks;
    rss += st.rssKb;
    if (withPss) pss += pssKb(pid);
    n++;
  }
  return { cpuMs: (ticks * 1000) / CLK_TCK, rssKb: rss, pssKb: pss, processes: n, at: performance.now() };
}

// ---------------------------------------------------------------------------------------------
// Cleanup registry: every process group and temp dir is registered and removed on any exit.

type Cleanup = () => void;
const cleanups = new Map<number, Cleanup>();
let nextId = 1;

export function onCleanup(fn: Cleanup): () => void {
  const id = nextId++;
  cleanups.set(id, fn);
  return () => cleanups.delete(id);
}

export function runCleanupsSync(): void {
  const fns = [...cleanups.values()].reverse();
  cleanups.clear();
  for (const fn of fns) {
    try {
      fn();
    } catch {
      /* keep going: clean as much as possible */
    }
  }
}

let installed = false;
export function installExitHandlers(): void {
  if (installed) return;
  installed = true;
  process.on('exit', runCleanupsSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}, cleaning up\n`);
      runCleanupsSync();
      process.exit(130);
    });
  }
}

export function tempDirCleanup(dir: string): () => void {
  return onCleanup(() => rmSync(dir, { recursive: true, force: true }));
}

function killGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    /* gone */
  }
}

export interface Spawned {
  child: ChildProcess;
  pid: number;
  stderr: () => string;
  /** SIGTERM the group, then SIGKILL after graceMs. */
  stop(graceMs?: number): Promise<void>;
}

/** Spawns `cmd args` pinned to `core` (taskset), in a new process group. */
export function spawnPinned(core: number | null, cmd: string, args: string[], opts: SpawnOptions = {}): Spawned {
  const argv = core === null ? [cmd, ...args] : ['taskset', '-c', String(core), cmd, ...args];
  const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], detached: true, ...opts });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not spawn ${cmd}`);
  let err = '';
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
    if (err.length > 20000) err = err.slice(-10000);
  });
  const unregister = onCleanup(() => killGroup(pid, 'SIGKILL'));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    child,
    pid,
    stderr: () => err,
    async stop(graceMs = 3000) {
      if (child.exitCode === null && child.signalCode === null) {
        killGroup(pid, 'SIGTERM');
        const t = setTimeout(() => killGroup(pid, 'SIGKILL'), graceMs);
        await exited;
        clearTimeout(t);
      }
      killGroup(pid, 'SIGKILL'); // stragglers in the group
      unregister();
    },
  };
}

/** Resolves with the first stdout line matching `re`, or rejects on exit/timeout. */
export function waitForLine(sp: Spawned, re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer): void => {
      buf += d.toString();
      const m = re.exec(buf);
      if (m) {
        done();
        resolve(m);
      }
    };
    const onExit = (code: number | null): void => {
      done();
      reject(new Error(`exited (${code}) before ready: ${sp.stderr().slice(-2000) || buf.slice(-2000)}`));
    };
    const t = setTimeout(() => {
      done();
      reject(new Error(`not ready after ${timeoutMs} ms: ${sp.stderr().slice(-2000)}`));
    }, timeoutMs);
    const done = (): void => {
      clearTimeout(t);
      sp.child.stdout?.off('data', onData);
      sp.child.off('exit', onExit);
    };
    sp.child.stdout?.on('data', onData);
    sp.child.once('exit', onExit);
  });
}

/** A free high loopback port (bind 0, read it, release it), for peers that cannot report theirs. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen({ host: '127.0.0.1', port: 0 }, () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Waits until something accepts TCP connections on 127.0.0.1:port. */
export async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function hasCommand(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export function cpuCount(): number {
  try {
    return Number(execFileSync('nproc').toString().trim());
  } catch {
    return 1;
  }
}


export interface CpuTimes {
  busyMs: number;
  stealMs: number;
  totalMs: number;
}

/** Whole-machine CPU counters (all cores), to tell how busy the host was besides the bench. */
export function machineCpu(): CpuTimes {
  const line = readFileSync('/proc/stat', 'latin1').split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = v;
  const k = 1000 / CLK_TCK;
  return { busyMs: (user + nice + system + irq + softirq) * k, stealMs: steal * k, totalMs: (user + nice + system + idle + iowait + irq + softirq + steal) * k };
}
