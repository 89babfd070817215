/**
 * The load generator (bench/loadgen.ts) as a child process, driven over its stdin/stdout
 * protocol: one JSON event per stdout line ({"event":"ready"|"end"|"holding",…}), commands
 * ("go", "release") on stdin. Used by bench/run.ts and bench/cluster.ts.
 *
 * Its own process group (detached), killed by stop() and by the bench's cleanup registry.
 * stderr and non-JSON stdout lines are kept for the error message, bounded to the last ERR_KEEP
 * characters.
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onCleanup } from './proc.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
const ERR_KEEP = 4096;

export interface LoadgenProc {
  send(line: string): void;
  /** The first not yet taken event named `event`; rejects when the loadgen exits or after timeoutMs. */
  next(event: string, timeoutMs: number): Promise<Record<string, unknown>>;
  stop(): void;
  exited: Promise<number | null>;
}

/** args: bench/loadgen.ts's arguments; core: pin the loadgen with taskset (null: not pinned). */
export function startLoadgen(args: string[], core: number | null): LoadgenProc {
  const argv = [...(core === null ? [] : ['taskset', '-c', String(core)]), process.execPath, '--import', 'tsx', join(ROOT, 'bench/loadgen.ts'), ...args];
  const child = spawn(argv[0] as string, argv.slice(1), { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
  const pid = child.pid as number;
  const kill = (): void => {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  };
  const unregister = onCleanup(kill);
  let buf = '';
  let err = '';
  const keep = (s: string): void => {
    err += s;
    if (err.length > ERR_KEEP) err = err.slice(-ERR_KEEP);
  };
  const events: Record<string, unknown>[] = [];
  const waiters: Array<() => void> = [];
  child.stdout.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        events.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        keep(line + '\n');
      }
      for (const w of waiters.splice(0)) w();
    }
  });
  child.stderr.on('data', (d: Buffer) => keep(d.toString()));
  const exited = new Promise<number | null>((r) =>
    child.once('exit', (code) => {
      unregister();
      for (const w of waiters.splice(0)) w();
      r(code);
    }),
  );
  return {
    send: (line) => child.stdin.write(line + '\n'),
    async next(event, timeoutMs) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const i = events.findIndex((e) => e.event === event);
        if (i >= 0) return events.splice(i, 1)[0] as Record<string, unknown>;
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`loadgen exited (${child.exitCode ?? child.signalCode}) before "${event}": ${err.slice(-1500)}`);
        if (Date.now() > end) throw new Error(`loadgen: no "${event}" after ${timeoutMs} ms: ${err.slice(-1500)}`);
        await new Promise<void>((r) => {
          const t = setTimeout(r, 250);
          waiters.push(() => {
            clearTimeout(t);
            r();
          });
        });
      }
    },
    stop: kill,
    exited,
  };
}
