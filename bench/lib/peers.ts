/**
 * The peers: each starts on a fresh 127.0.0.1 port (listen(0), or a just-freed port for those
 * that cannot report theirs), pinned to the server core, in its own temp directory, and returns
 * the pid whose process tree is measured plus a stop() that leaves nothing behind.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { httpOffArgs } from './http-off.js';
import { pgUnavailable, startBenchPostgres, type BenchPg } from './pg.js';
import { freePort, hasCommand, onCleanup, spawnPinned, treePids, waitForLine, waitForPort } from './proc.js';

export const PEER_NAMES = ['postseal-durable', 'postseal-postgres', 'postseal-discard', 'postfix', 'smtp-server', 'aiosmtpd'] as const;
export type PeerName = (typeof PEER_NAMES)[number];

export interface RunningPeer {
  name: PeerName;
  port: number;
  /** Root of the process tree whose CPU and memory are measured. */
  pid: number;
  /** Whether the tree has several processes (PSS is then the fair memory figure). */
  multiProcess: boolean;
  notes: string[];
  /** A database server the peer commits to (postseal-postgres): its CPU is server CPU too, reported apart. */
  db?: { pid: number; name: string; pg: BenchPg };
  stop(): Promise<void>;
}

export interface PeerEnv {
  root: string; // repository root
  /** Compiled postseal to run (the working tree's dist/, or HEAD built in a temp dir). */
  dist: string;
  certFile: string;
  keyFile: string;
  serverCore: number | null;
  /** Extra node flags for postseal peers (e.g. --cpu-prof). */
  nodeFlags: string[];
}

/** null when the peer can run here; otherwise why not and how to get it. */
export function unavailable(name: PeerName): string | null {
  switch (name) {
    case 'postfix':
      if (!existsSync('/usr/sbin/postfix') || !existsSync('/usr/lib/postfix/sbin/master'))
        return 'Postfix not installed: echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections && apt-get install -y postfix';
      if (process.getuid?.() !== 0) return 'Postfix test instances need root (master, set-permissions)';
      if (spawnSync('getent', ['passwd', 'postfix']).status !== 0) return 'no postfix user (reinstall the postfix package)';
      return null;
    case 'aiosmtpd': {
      if (!existsSync('/usr/bin/python3')) return '/usr/bin/python3 missing: apt-get install -y python3 python3-aiosmtpd';
      const r = spawnSync('/usr/bin/python3', ['-c', 'import aiosmtpd'], { stdio: 'ignore' });
      return r.status === 0 ? null : 'aiosmtpd not importable by /usr/bin/python3: apt-get install -y python3-aiosmtpd';
    }
    case 'postseal-postgres':
      return pgUnavailable();
    case 'smtp-server':
      return existsSync(join(process.cwd(), 'node_modules/smtp-server/package.json')) ? null : 'smtp-server missing: npm install (it is a devDependency)';
    default:
      return null;
  }
}

function tmp(prefix: string): { dir: string; unregister: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `postseal-bench-${prefix}-`));
  const unregister = onCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return { dir, unregister };
}

async function nodePeer(name: PeerName, env: PeerEnv, args: string[], portRe: RegExp, notes: string[]): Promise<RunningPeer> {
  const sp = spawnPinned(env.serverCore, process.execPath, [...env.nodeFlags, ...args], { cwd: env.root, env: { ...process.env, POSTSEAL_DIST: env.dist } });
  try {
    const m = await waitForLine(sp, portRe, 30_000);
    return { name, port: Number(m[1]), pid: sp.pid, multiProcess: false, notes, stop: () => sp.stop(5000) };
  } catch (e) {
    await sp.stop(500);
    throw e;
  }
}

export async function startPeer(name: PeerName, env: PeerEnv): Promise<RunningPeer> {
  switch (name) {
    case 'postseal-durable': {
      const t = tmp('durable');
      const p = await nodePeer(
        name,
        env,
        serveArgs(env, t.dir),
        /listening mx 127\.0\.0\.1:(\d+)/,
        ['SQLite store in a temp data dir (fsync before 250, group commit)'],
      ).catch((e: unknown) => {
        rmSync(t.dir, { recursive: true, force: true });
        t.unregister();
        throw e;
      });
      const stop = p.stop;
      return {
        ...p,
        stop: async () => {
          await stop();
          rmSync(t.dir, { recursive: true, force: true });
          t.unregister();
        },
      };
    }
    case 'postseal-postgres':
      return startPostsealPostgres(env);
    case 'postseal-discard': {
      const t = tmp('discard');
      const p = await nodePeer(name, env, ['--import', 'tsx', 'bench/postseal-discard.ts', '--data', t.dir, '--cert', env.certFile, '--key', env.keyFile], /listening (\d+)/, ['discard sink (protocol engine alone)']).catch((e: unknown) => {
        rmSync(t.dir, { recursive: true, force: true });
        t.unregister();
        throw e;
      });
      const stop = p.stop;
      return {
        ...p,
        stop: async () => {
          await stop();
          rmSync(t.dir, { recursive: true, force: true });
          t.unregister();
        },
      };
    }
    case 'smtp-server':
      return nodePeer(name, { ...env, nodeFlags: [] }, ['--import', 'tsx', 'bench/smtp-server-peer.ts', '--cert', env.certFile, '--key', env.keyFile], /listening (\d+)/, ['nodemailer smtp-server, discarding']);
    case 'aiosmtpd': {
      const sp = spawnPinned(env.serverCore, '/usr/bin/python3', ['bench/aiosmtpd_peer.py', '--cert', env.certFile, '--key', env.keyFile], { cwd: env.root });
      try {
        const m = await waitForLine(sp, /listening (\d+)/, 30_000);
        const v = spawnSync('/usr/bin/python3', ['-c', 'import aiosmtpd;print(aiosmtpd.__version__)']).stdout.toString().trim();
        return { name, port: Number(m[1]), pid: sp.pid, multiProcess: false, notes: [`aiosmtpd ${v}, discarding`], stop: () => sp.stop(3000) };
      } catch (e) {
        await sp.stop(500);
        throw e;
      }
    }
    case 'postfix':
      return startPostfix(env);
  }
}

/** The serve arguments every postseal store peer shares (mx only, catch-all, no verification, no HTTP); also bench/cluster.ts's nodes. */
export function serveArgs(env: Pick<PeerEnv, 'dist' | 'certFile' | 'keyFile'>, dataDir: string): string[] {
  return [join(env.dist, 'cli/main.js'), 'serve', '--data', dataDir, '--hostname', 'bench.localhost', '--mx', '127.0.0.1:0', '--submission', 'off', '--submissions', 'off', '--cert', env.certFile, '--key', env.keyFile, '--log-level', 'silent', '--catch-all', '--no-auth-verify', ...httpOffArgs(env.dist)];
}

/**
 * One serve node on a private PostgreSQL cluster started for this run (fsync on,
 * synchronous_commit on: 250 only after the COMMIT is flushed to the WAL). The node and the
 * cluster both run on the server core; the node's tree and the postmaster's tree are measured
 * (reported together as server CPU, and PostgreSQL's share apart).
 */
async function startPostsealPostgres(env: PeerEnv): Promise<RunningPeer> {
  const t = tmp('postgres');
  let pgc: BenchPg | null = null;
  try {
    pgc = await startBenchPostgres(env.serverCore);
    const db = await pgc.createDatabase('bench');
    const p = await nodePeer('postseal-postgres', env, [...serveArgs(env, t.dir), '--store', db.url], /listening mx 127\.0\.0\.1:(\d+)/, [
      `PostgreSQL ${pgc.version} store (private cluster on the server core, fsync on, synchronous_commit on, one transaction per group commit), one node`,
    ]);
    const cluster = pgc;
    return {
      ...p,
      db: { pid: cluster.pid, name: db.name, pg: cluster },
      stop: async () => {
        await p.stop();
        await cluster.close();
        rmSync(t.dir, { recursive: true, force: true });
        t.unregister();
      },
    };
  } catch (e) {
    await pgc?.close().catch(() => undefined);
    rmSync(t.dir, { recursive: true, force: true });
    t.unregister();
    throw e;
  }
}

/**
 * A private Postfix instance: its own config directory, queue and data directory under a temp
 * dir, smtpd on 127.0.0.1:PORT only, every delivery to the discard transport. The queue is still
 * written (and fsync'd) by cleanup/qmgr: Postfix is measured durable, as shipped.
 */
async function startPostfix(env: PeerEnv): Promise<RunningPeer> {
  const t = tmp('postfix');
  const d = t.dir;
  const conf = join(d, 'etc');
  const queue = join(d, 'queue');
  const data = join(d, 'data');
  let started = false;
  const stopSync = (): void => {
    const master = readMasterPid(queue);
    const members = master && comm(master) === 'master' ? treePids(master) : [];
    if (started) spawnSync('postfix', ['-c', conf, 'stop'], { stdio: 'ignore', timeout: 15_000 });
    killLeftovers(members);
  };
  const unregisterStop = onCleanup(stopSync);
  try {
    chmodSync(d, 0o755); // the postfix user must reach the queue
    for (const x of [conf, queue, data]) mkdirSync(x, { recursive: true, mode: 0o755 });
    const pf = execFileSync('getent', ['passwd', 'postfix']).toString().split(':');
    chownSync(data, Number(pf[2]), Number(pf[3]));
    const port = await freePort();
    const version = execFileSync('postconf', ['-d', '-h', 'mail_version']).toString().trim();
    const bareNl = execFileSync('postconf', ['-d', '-h', 'smtpd_forbid_bare_newline']).toString().trim() || '(unknown)';
    writeFileSync(
      join(conf, 'main.cf'),
      [
        'compatibility_level = 3.6',
        `queue_directory = ${queue}`,
        `data_directory = ${data}`,
        'mail_owner = postfix',
        'setgid_group = postdrop',
        'myhostname = bench.localhost',
        'mydomain = localhost',
        'myorigin = localhost',
        'mydestination = localhost',
        'inet_interfaces = 127.0.0.1',
        'inet_protocols = ipv4',
        'mynetworks = 127.0.0.0/8',
        'relay_domains =',
        'local_recipient_maps =',
        'alias_maps =',
        'alias_database =',
        'default_transport = discard:',
        'local_transport = discard:',
        'smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination',
        'smtpd_tls_security_level = may',
        `smtpd_tls_cert_file = ${env.certFile}`,
        `smtpd_tls_key_file = ${env.keyFile}`,
        'message_size_limit = 36700160',
        // 1000 idle sessions need 1000 smtpd processes; no per-client connection cap.
        'default_process_limit = 1200',
        'smtpd_client_connection_count_limit = 0',
        'biff = no',
        `maillog_file = ${join(d, 'maillog')}`,
        `maillog_file_prefixes = ${d}`,
        '# smtpd_forbid_bare_newline left at its default',
        '',
      ].join('\n'),
    );
    writeFileSync(
      join(conf, 'master.cf'),
      [
        `127.0.0.1:${port} inet n - n - - smtpd`,
        'pickup    unix  n - n 60 1 pickup',
        'cleanup   unix  n - n - 0 cleanup',
        'qmgr      unix  n - n 300 1 qmgr',
        'tlsmgr    unix  - - n 1000? 1 tlsmgr',
        'rewrite   unix  - - n - - trivial-rewrite',
        'bounce    unix  - - n - 0 bounce',
        'defer     unix  - - n - 0 bounce',
        'trace     unix  - - n - 0 bounce',
        'verify    unix  - - n - 1 verify',
        'flush     unix  n - n 1000? 0 flush',
        'proxymap  unix  - - n - - proxymap',
        'proxywrite unix - - n - 1 proxymap',
        'showq     unix  n - n - - showq',
        'error     unix  - - n - - error',
        'retry     unix  - - n - - error',
        'discard   unix  - - n - - discard',
        'anvil     unix  - - n - 1 anvil',
        'scache    unix  - - n - 1 scache',
        'postlog   unix-dgram n - n - 1 postlogd',
        '',
      ].join('\n'),
    );
    const check = spawnSync('postfix', ['-c', conf, 'check'], { encoding: 'utf8', timeout: 30_000 });
    if (check.status !== 0) throw new Error(`postfix check failed: ${check.stderr}${tail(join(d, 'maillog'))}`);
    const args = env.serverCore === null ? ['postfix', '-c', conf, 'start'] : ['taskset', '-c', String(env.serverCore), 'postfix', '-c', conf, 'start'];
    started = true;
    const st = spawnSync(args[0] as string, args.slice(1), { encoding: 'utf8', timeout: 30_000 });
    if (st.status !== 0) throw new Error(`postfix start failed: ${st.stderr}${tail(join(d, 'maillog'))}`);
    await waitForPort(port, 15_000);
    const pid = readMasterPid(queue);
    if (!pid) throw new Error('postfix started but no master.pid');
    return {
      name: 'postfix',
      port,
      pid,
      multiProcess: true,
      notes: [`Postfix ${version}, durable queue (fsync), discard: transport`, `smtpd_forbid_bare_newline = ${bareNl} (Debian default, left as is)`],
      async stop() {
        stopSync();
        unregisterStop();
        rmSync(d, { recursive: true, force: true });
        t.unregister();
      },
    };
  } catch (e) {
    stopSync();
    unregisterStop();
    rmSync(d, { recursive: true, force: true });
    t.unregister();
    throw e;
  }
}

function tail(file: string): string {
  try {
    return '\n' + readFileSync(file, 'utf8').split('\n').slice(-8).join('\n');
  } catch {
    return '';
  }
}

function readMasterPid(queue: string): number {
  try {
    return Number(readFileSync(join(queue, 'pid', 'master.pid'), 'latin1').trim()) || 0;
  } catch {
    return 0;
  }
}

function comm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'latin1').trim();
  } catch {
    return '';
  }
}

const POSTFIX_DAEMONS = new Set(['master', 'smtpd', 'cleanup', 'qmgr', 'pickup', 'tlsmgr', 'trivial-rewrite', 'bounce', 'verify', 'flush', 'proxymap', 'showq', 'error', 'discard', 'anvil', 'scache', 'postlogd']);

/** SIGKILL what is left of a Postfix instance after `postfix stop` (only Postfix daemons). */
function killLeftovers(pids: number[]): void {
  for (const p of pids.reverse()) {
    if (!POSTFIX_DAEMONS.has(comm(p))) continue;
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}
