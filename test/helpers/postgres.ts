/**
 * A private PostgreSQL cluster for tests (issue 13: "the tests start a private cluster — no mock"):
 * initdb into a temp dir, the server started with pg_ctl on a free 127.0.0.1 port, its Unix socket
 * in the data dir, trust authentication for the `postgres` role. One cluster per test file; each
 * test takes its own database with createDatabase().
 *
 * Binaries: Debian's /usr/lib/postgresql/<ver>/bin (highest version that has initdb, pg_ctl and
 * postgres; .ci/run installs `postgresql`), else initdb/pg_ctl/postgres found on PATH.
 * initdb and postgres refuse to run as root: when we are root they run as the `postgres` user
 * (runuser -u postgres --), and the temp dir is chowned to that user first.
 *
 * Invariants: never a fixed port (a free port from binding 127.0.0.1:0; when the server then
 * cannot bind it because another process took it, a new port is tried); the server listens on
 * 127.0.0.1 only; every child process has a deadline; a process 'exit' (and SIGINT/SIGTERM) hook
 * stops every cluster still running (pg_ctl stop -m immediate, synchronously) and removes its dir,
 * so a crashed test file does not leave a postgres behind (a SIGKILLed test process still can).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, chownSync, constants, existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, before, type TestContext } from 'node:test';
import pg from 'pg';
import { closedPort } from './poll.js';

export interface PgClusterOptions {
  /** fsync of the server (default true: the store's durability tests need it). initdb always runs with --no-sync. */
  fsync?: boolean;
}

export interface PgCluster {
  readonly host: '127.0.0.1';
  /** The port, fixed for the life of the cluster (start() after stop() reuses it). */
  readonly port: number;
  /** The temp dir: data/ (the cluster, also its socket dir) and server.log. */
  readonly dir: string;
  /** Whether the server is started (by this helper; a server that crashed by itself still counts). */
  readonly running: boolean;
  /** `postgres://postgres@127.0.0.1:PORT/DB` (default DB: postgres). */
  url(db?: string): string;
  /** A fresh, uniquely named database (owner postgres); returns its URL. */
  createDatabase(prefix?: string): Promise<string>;
  /** pg_ctl stop (default mode fast). Idempotent. */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Starts the server again on the same port and data dir (after stop()). */
  start(): Promise<void>;
  /** stop('immediate') and remove the temp dir. Idempotent. */
  close(): Promise<void>;
  /** The last lines of the server log (for failure messages). */
  logTail(lines?: number): string;
}

interface Bins {
  initdb: string;
  pgCtl: string;
}

let binsCache: Bins | null | undefined;

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The binaries, or null when PostgreSQL is not installed. */
export function postgresBins(): Bins | null {
  if (binsCache !== undefined) return binsCache;
  const dirs: string[] = [];
  const base = '/usr/lib/postgresql';
  if (existsSync(base)) {
    const versions = readdirSync(base)
      .filter((v) => /^\d+(\.\d+)?$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    dirs.push(...versions.map((v) => join(base, v, 'bin')));
  }
  dirs.push(...(process.env.PATH ?? '').split(delimiter).filter(Boolean));
  binsCache = null;
  for (const d of dirs) {
    if (['initdb', 'pg_ctl', 'postgres'].every((b) => executable(join(d, b)))) {
      binsCache = { initdb: join(d, 'initdb'), pgCtl: join(d, 'pg_ctl') };
      break;
    }
  }
  return binsCache;
}

/** Whether initdb/pg_ctl/postgres are installed (and, as root, the postgres user exists). */
export function postgresAvailable(): boolean {
  return postgresBins() !== null && (!isRoot() || postgresUser() !== null);
}

/**
 * The repo's rule for a missing peer (test/helpers/peers.ts findPeer): true when PostgreSQL is
 * there; otherwise the test is skipped on a dev machine and FAILS on CI (CI=true: .ci/run must
 * install `postgresql`).
 */
export function requirePostgres(t: TestContext): boolean {
  if (postgresAvailable()) return true;
  if (process.env.CI === 'true') assert.fail('PostgreSQL (initdb, pg_ctl, postgres) not installed: .ci/run must install postgresql');
  t.skip('PostgreSQL not installed');
  return false;
}

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

let userCache: { uid: number; gid: number } | null | undefined;
function postgresUser(): { uid: number; gid: number } | null {
  if (userCache !== undefined) return userCache;
  const uid = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8', timeout: 5000 });
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8', timeout: 5000 });
  userCache = uid.status === 0 && gid.status === 0 ? { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) } : null;
  return userCache;
}

/** The command line for a PostgreSQL binary: as the postgres user when we are root. */
function asPg(bin: string, args: string[]): [string, string[]] {
  return isRoot() ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
}

/** The environment for the children: no PG* variables of ours (PGPORT, PGDATA… would change what they do), C locale. */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG') && !k.startsWith('LC_')) env[k] = v;
  env.LANG = 'C';
  env.LC_ALL = 'C';
  return env;
}

interface RunResult {
  code: number | null;
  output: string;
  timedOut: boolean;
}

function run(bin: string, args: string[], cwd: string, timeoutMs: number): Promise<RunResult> {
  const [cmd, argv] = asPg(bin, args);
  return new Promise((resolve, reject) => {
    // stdin ignored: pg_ctl's postmaster gets /dev/null and the log file, so no pipe of ours stays open.
    const child = spawn(cmd, argv, { cwd, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (d: Buffer) => (output += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (output += d.toString('utf8')));
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output, timedOut });
    });
  });
}

function chownTree(path: string, uid: number, gid: number): void {
  chownSync(path, uid, gid);
  for (const e of readdirSync(path, { withFileTypes: true })) {
    if (e.isDirectory()) chownTree(join(path, e.name), uid, gid);
    else chownSync(join(path, e.name), uid, gid);
  }
}

function tail(text: string, lines: number): string {
  return text.split('\n').slice(-lines - 1).join('\n');
}

/** Clusters still running or not yet removed: the exit hook stops and removes them. */
const live = new Set<{ pgCtl: string; data: string; dir: string }>();
let hooked = false;

function cleanupSync(): void {
  for (const c of live) {
    const [cmd, argv] = asPg(c.pgCtl, ['stop', '-D', c.data, '-m', 'immediate', '-w', '-t', '10']);
    if (existsSync(join(c.data, 'postmaster.pid'))) spawnSync(cmd, argv, { cwd: c.dir, env: childEnv(), stdio: 'ignore', timeout: 15_000 });
    try {
      rmSync(c.dir, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
  live.clear();
}

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', cleanupSync);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      cleanupSync();
      process.kill(process.pid, sig); // the handler is gone (once): the default action now ends the process
    });
  }
}

/**
 * initdb + start on a free port. Throws (with initdb's output or the server log) when it cannot;
 * call requirePostgres(t) first for the skip-or-fail rule.
 */
export async function startPostgres(opts: PgClusterOptions = {}): Promise<PgCluster> {
  const bins = postgresBins();
  if (bins === null) throw new Error('PostgreSQL is not installed (initdb/pg_ctl/postgres): apt-get install postgresql');
  const user = isRoot() ? postgresUser() : null;
  if (isRoot() && user === null) throw new Error('running as root but there is no postgres user to run initdb/postgres as');
  hookExit();

  const dir = await mkdtemp(join(tmpdir(), 'postseal-pg-'));
  const data = join(dir, 'data');
  const logFile = join(dir, 'server.log');
  const entry = { pgCtl: bins.pgCtl, data, dir };
  live.add(entry);
  if (user !== null) chownTree(dir, user.uid, user.gid);

  const init = await run(bins.initdb, ['-D', data, '--auth=trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C'], dir, 60_000);
  if (init.code !== 0) {
    live.delete(entry);
    await rm(dir, { recursive: true, force: true });
    throw new Error(`initdb failed (code ${String(init.code)}${init.timedOut ? ', timed out' : ''}):\n${init.output}`);
  }

  let port = 0;
  let running = false;
  let closed = false;
  const readLog = (): string => {
    try {
      return readFileSync(logFile, 'utf8');
    } catch {
      return '';
    }
  };
  const logTail = (lines = 30): string => tail(readLog(), lines) || '(no server log)';

  /** pg_ctl start on `port`; 'busy' when the port was taken meanwhile. */
  const startOn = async (p: number): Promise<'ok' | 'busy' | string> => {
    const sock = `'${data.replace(/'/g, `'\\''`)}'`; // pg_ctl hands -o to /bin/sh
    const o = [`-p ${p}`, '-c listen_addresses=127.0.0.1', `-c unix_socket_directories=${sock}`, `-c fsync=${opts.fsync === false ? 'off' : 'on'}`, '-c max_connections=200', '-c shared_buffers=32MB'].join(' ');
    const before = readLog().length;
    const r = await run(bins.pgCtl, ['start', '-D', data, '-o', o, '-l', logFile, '-w', '-t', '30'], dir, 45_000);
    if (r.code === 0) return 'ok';
    const log = readLog().slice(before);
    // A postmaster that could not bind exits: nothing to stop. One that timed out may still run.
    if (existsSync(join(data, 'postmaster.pid'))) await run(bins.pgCtl, ['stop', '-D', data, '-m', 'immediate', '-w', '-t', '10'], dir, 15_000);
    if (/could not bind|Address already in use|could not create any TCP\/IP sockets/i.test(log)) return 'busy';
    return `pg_ctl start failed (code ${String(r.code)}${r.timedOut ? ', timed out' : ''}):\n${r.output}\n--- server log\n${tail(log, 30)}`;
  };

  let lastError = '';
  for (let attempt = 0; attempt < 5 && !running; attempt++) {
    const p = await closedPort();
    const r = await startOn(p);
    if (r === 'ok') {
      port = p;
      running = true;
    } else if (r === 'busy') {
      lastError = `port ${p} taken`;
    } else {
      lastError = r;
      break;
    }
  }
  if (!running) {
    live.delete(entry);
    await rm(dir, { recursive: true, force: true });
    throw new Error(`PostgreSQL did not start: ${lastError}`);
  }

  const url = (db = 'postgres'): string => `postgres://postgres@127.0.0.1:${port}/${encodeURIComponent(db)}`;
  let dbSeq = 0;

  const stop = async (mode: 'fast' | 'immediate' = 'fast'): Promise<void> => {
    if (!running) return;
    const r = await run(bins.pgCtl, ['stop', '-D', data, '-m', mode, '-w', '-t', '30'], dir, 45_000);
    // Code 3-ish "no server running" (it died by itself) also means stopped.
    if (r.code !== 0 && existsSync(join(data, 'postmaster.pid'))) throw new Error(`pg_ctl stop -m ${mode} failed (code ${String(r.code)}):\n${r.output}\n--- server log\n${logTail()}`);
    running = false;
  };

  const cluster: PgCluster = {
    host: '127.0.0.1',
    get port() {
      return port;
    },
    dir,
    get running() {
      return running;
    },
    url,
    async createDatabase(prefix = 'test') {
      assert.ok(running, 'createDatabase: the cluster is stopped');
      const clean = prefix.toLowerCase().replace(/[^a-z0-9_]/g, '_').slice(0, 40) || 'test';
      const name = `${clean}_${++dbSeq}_${randomBytes(4).toString('hex')}`;
      const client = new pg.Client({ connectionString: url(), connectionTimeoutMillis: 10_000 });
      await client.connect();
      try {
        // The name is [a-z0-9_] only (made above): safe inside the quotes.
        await client.query(`CREATE DATABASE "${name}"`);
      } finally {
        await client.end();
      }
      return url(name);
    },
    stop,
    async start() {
      assert.ok(!closed, 'start: the cluster is closed');
      if (running) return;
      const r = await startOn(port);
      if (r !== 'ok') throw new Error(r === 'busy' ? `PostgreSQL could not start again: port ${port} is taken by another process` : r);
      running = true;
    },
    async close() {
      if (closed) return;
      closed = true;
      try {
        await stop('immediate');
      } finally {
        live.delete(entry);
        await rm(dir, { recursive: true, force: true });
      }
    },
    logTail,
  };
  return cluster;
}

export interface UsePostgresOptions extends PgClusterOptions {
  /**
   * Run in the after() hook before the cluster stops: end what uses it (CLI children, stores,
   * signal channels), so that nothing of the file talks to a server that is going away.
   */
  closeFirst?: () => unknown;
}

export interface PostgresForFile {
  /**
   * The `skip` option of the tests that need PostgreSQL: false, or a reason when it is not
   * installed on a dev machine. On CI (CI=true) it is never skipped: before() then fails.
   */
  readonly skip: string | false;
  /** The file's cluster (started in before()); using it in a skipped file, or outside the tests, throws. */
  readonly cluster: PgCluster;
}

/**
 * One private cluster for a test file: registers before() (start it, unless skipped) and after()
 * (opts.closeFirst, then close the cluster). Each test takes its own database with
 * `cluster.createDatabase()`.
 */
export function usePostgres(opts: UsePostgresOptions = {}): PostgresForFile {
  const skip = !postgresAvailable() && process.env.CI !== 'true' ? 'PostgreSQL not installed' : false;
  let started: PgCluster | null = null;
  const { closeFirst, ...clusterOpts } = opts;
  before(async () => {
    if (skip === false) started = await startPostgres(clusterOpts);
  });
  after(async () => {
    try {
      await closeFirst?.();
    } finally {
      await started?.close();
    }
  });
  const live = (): PgCluster => {
    if (started === null) throw new Error(skip === false ? 'usePostgres: the cluster is not started yet (used outside a test?)' : `usePostgres: ${skip}`);
    return started;
  };
  const cluster: PgCluster = {
    host: '127.0.0.1',
    get port() {
      return live().port;
    },
    get dir() {
      return live().dir;
    },
    get running() {
      return live().running;
    },
    url: (db) => live().url(db),
    createDatabase: (prefix) => live().createDatabase(prefix),
    stop: (mode) => live().stop(mode),
    start: () => live().start(),
    close: () => live().close(),
    logTail: (lines) => live().logTail(lines),
  };
  return { skip, cluster };
}

/** One statement on a fresh connection to `url` (what a test reads or changes behind the store's back). */
export async function sql<T extends pg.QueryResultRow>(url: string, text: string, values?: unknown[]): Promise<T[]> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await c.connect();
  try {
    return (await c.query<T>(text, values)).rows;
  } finally {
    await c.end();
  }
}
