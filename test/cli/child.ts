/**
 * Runs the real `postseal` CLI (src/cli/main.ts through tsx) as a child process for tests:
 * one-shot commands (`runCli`) and a long-running `serve` (`startServeChild`) whose listening
 * ports are parsed from its stdout. Every child has a deadline and is tracked, so `killAll()`
 * in after() never leaves one behind. No fixed ports: listeners are given 127.0.0.1:0.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import tls from 'node:tls';
import { WireClient } from '../helpers/wire.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const MAIN = join(ROOT, 'src/cli/main.ts');

const children = new Set<ChildProcess>();

/** SIGKILL every child still running (call from after()). */
export function killAll(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children.clear();
}

/** Temp directories, removed by cleanup(). */
export function tempDirs(): { make(prefix?: string): string; cleanup(): void } {
  const made: string[] = [];
  return {
    make(prefix = 'postseal-cli-') {
      const d = mkdtempSync(join(tmpdir(), prefix));
      made.push(d);
      return d;
    },
    cleanup() {
      for (const d of made) rmSync(d, { recursive: true, force: true });
    },
  };
}

/**
 * The CLI a test runs: the build of the current sources that scripts/run-tests.mjs makes before
 * the tests (POSTSEAL_TEST_CLI: node starts it in ~0.6 s), else the sources through tsx (~1.5 s).
 */
const BUILT_CLI = process.env.POSTSEAL_TEST_CLI ?? null;

function spawnCli(args: string[], env?: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(process.execPath, BUILT_CLI ? [BUILT_CLI, ...args] : ['--import', 'tsx', MAIN, ...args], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  stdoutBytes: Buffer;
}

/** Runs one CLI command to completion (killed and rejected after timeoutMs); `env` is added to ours. */
export function runCli(args: string[], opts: { input?: string | Buffer; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const child = spawnCli(args, opts.env);
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`postseal ${args.join(' ')} did not finish in ${timeoutMs} ms; stderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, signal, stdout: stdoutBytes.toString('utf8'), stderr, stdoutBytes });
    });
    child.stdin?.end(opts.input ?? '');
  });
}

export interface ListeningLine {
  name: string;
  host: string;
  port: number;
  tls: string;
}

export interface ServeChild {
  child: ChildProcess;
  listening: ListeningLine[];
  port(name: string): number;
  stdout(): string;
  stderr(): string;
  /** Parsed JSON log lines seen so far on stderr (non-JSON lines are skipped). */
  logs(): Array<Record<string, unknown>>;
  /** Resolves once a stderr JSON line matches, rejects after timeoutMs or at exit. */
  waitForLog(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Resolves with the exit status once the process ends; rejects (and SIGKILLs) after timeoutMs. */
  waitExit(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  signal(sig: NodeJS.Signals): void;
}

/**
 * `postseal serve ARGS…`, resolved once `listeners` `listening …` lines are printed. Rejects
 * when the process exits first or after timeoutMs.
 */
export function startServeChild(args: string[], opts: { listeners?: number; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<ServeChild> {
  const want = opts.listeners ?? 1;
  const timeoutMs = opts.timeoutMs ?? 60_000;
  // No HTTP listener unless the test asks for one: the default 127.0.0.1:8025 is one fixed port.
  const child = spawnCli(['serve', ...args, ...(args.includes('--http') ? [] : ['--http', 'off'])], opts.env);
  child.stdin?.end();
  let stdout = '';
  let stderr = '';
  const listening: ListeningLine[] = [];
  const wakers = new Set<() => void>();
  const wake = (): void => {
    for (const w of [...wakers]) w();
  };
  let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  child.stdout?.on('data', (b: Buffer) => {
    stdout += b.toString();
    wake();
  });
  child.stderr?.on('data', (b: Buffer) => {
    stderr += b.toString();
    wake();
  });
  child.on('exit', (code, signal) => {
    exit = { code, signal };
    wake();
  });
  const parseLogs = (): Array<Record<string, unknown>> => {
    const out: Array<Record<string, unknown>> = [];
    for (const line of stderr.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // a line still being written
      }
    }
    return out;
  };
  /** Waits until check() returns a value, the process exits (then check once more) or the deadline. */
  const until = <T>(check: () => T | null, ms: number, what: string): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const tick = (): void => {
        const v = check();
        if (v !== null) return done(() => resolve(v));
        if (exit) return done(() => reject(new Error(`serve exited (${JSON.stringify(exit)}) before ${what}; stderr:\n${stderr}`)));
      };
      const timer = setTimeout(() => done(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}; stderr:\n${stderr}`))), ms);
      const done = (f: () => void): void => {
        clearTimeout(timer);
        wakers.delete(tick);
        f();
      };
      wakers.add(tick);
      tick();
    });
  const handle: ServeChild = {
    child,
    listening,
    port(name) {
      const l = listening.find((x) => x.name === name);
      if (!l) throw new Error(`no listener ${name} in ${JSON.stringify(listening)}`);
      return l.port;
    },
    stdout: () => stdout,
    stderr: () => stderr,
    logs: parseLogs,
    waitForLog(pred, ms = 10_000) {
      return until(() => parseLogs().find(pred) ?? null, ms, 'a matching log line');
    },
    waitExit(ms = 30_000) {
      return until(() => exit, ms, 'exit').catch((err: unknown) => {
        child.kill('SIGKILL');
        throw err;
      });
    },
    signal(sig) {
      child.kill(sig);
    },
  };
  return until(
    () => {
      listening.length = 0;
      for (const m of stdout.matchAll(/^listening (\S+) (\S+):(\d+) tls=(\S+)$/gm)) {
        listening.push({ name: m[1] ?? '', host: m[2] ?? '', port: Number(m[3]), tls: m[4] ?? '' });
      }
      return listening.length >= want ? handle : null;
    },
    timeoutMs,
    `${want} listening line(s)`,
  ).catch((err: unknown) => {
    child.kill('SIGKILL');
    throw err;
  });
}

/** The usual flags for a server with only the mx listener on a free port. */
export function mxOnly(dataDir: string, extra: string[] = []): string[] {
  // --http off: the embedded default is 127.0.0.1:8025, which parallel tests would fight over
  // (a later --http in `extra` wins: commander keeps the last value).
  return ['--data', dataDir, '--mx', '127.0.0.1:0', '--submission', 'off', '--submissions', 'off', '--http', 'off', ...extra];
}

/** Connects, reads the greeting, EHLO, STARTTLS, handshake (certificate not verified), EHLO. */
export async function startTlsSession(port: number, opts: { ca?: string; servername?: string } = {}): Promise<{ c: WireClient; socket: tls.TLSSocket }> {
  const c = await WireClient.connect(port);
  try {
    const greet = await c.readReply();
    if (!greet[0]?.startsWith('220')) throw new Error(`greeting: ${greet.join(' | ')}`);
    const ehlo = await c.cmd('EHLO client.test');
    if (!ehlo.some((l) => /^250[ -]STARTTLS$/.test(l))) throw new Error(`no STARTTLS in ${ehlo.join(' | ')}`);
    const r = await c.cmd('STARTTLS');
    if (!r[0]?.startsWith('220')) throw new Error(`STARTTLS: ${r.join(' | ')}`);
    const socket = await c.startTls(opts.ca ?? '', {
      ca: opts.ca,
      rejectUnauthorized: opts.ca !== undefined,
      servername: opts.servername ?? 'localhost',
    });
    const again = await c.cmd('EHLO client.test');
    if (!again.at(-1)?.startsWith('250 ')) throw new Error(`EHLO after TLS: ${again.join(' | ')}`);
    return { c, socket };
  } catch (err) {
    c.close();
    throw err;
  }
}

/** The SHA-256 fingerprint (colon hex, as Node prints it) of the certificate a TLS peer showed. */
export function peerFingerprint(socket: tls.TLSSocket): string {
  return socket.getPeerCertificate().fingerprint256;
}

/** Fingerprint of a PEM certificate, in the same format. */
export function pemFingerprint(pem: string): string {
  const b64 = pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
  const hex = createHash('sha256').update(Buffer.from(b64, 'base64')).digest('hex').toUpperCase();
  return hex.match(/../g)?.join(':') ?? hex;
}

/** Sends one message in an open session (pipelined MAIL/RCPT/DATA), returns the final reply line. */
export async function sendMessage(c: WireClient, from: string, to: string, body: string, timeoutMs = 10_000): Promise<string> {
  c.write(`MAIL FROM:<${from}>\r\nRCPT TO:<${to}>\r\nDATA\r\n`);
  const mail = await c.readReply(timeoutMs);
  const rcpt = await c.readReply(timeoutMs);
  const data = await c.readReply(timeoutMs);
  if (!mail[0]?.startsWith('250') || !rcpt[0]?.startsWith('250') || !data[0]?.startsWith('354')) {
    throw new Error(`transaction refused: ${[mail, rcpt, data].map((r) => r.join(' | ')).join(' / ')}`);
  }
  c.write(body + '.\r\n');
  const done = await c.readReply(timeoutMs);
  return done.at(-1) ?? '';
}

/** Queue id from "250 2.0.0 OK: queued as ID". */
export function queuedId(line: string): string | null {
  return /^250 .*queued as (\S+)/.exec(line)?.[1] ?? null;
}
