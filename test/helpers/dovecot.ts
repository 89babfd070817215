/**
 * A real Dovecot (Debian's dovecot-core + dovecot-lmtpd + dovecot-imapd, 2.3.x) for the LMTP
 * delivery tests: its own config in a temp dir (no system config included), LMTP on a free
 * 127.0.0.1 port and on a Unix socket, IMAP on a free port, passwd-file users with plaintext
 * passwords, Maildir under DIR/mail/%d/%n, the log in DIR/dovecot.log and the raw LMTP protocol
 * of every connection in DIR/rawlog (lmtp_rawlog_dir: what Dovecot really received). Mail is read
 * back over IMAP with a real client (curl imap://, FETCH BODY[] by UID).
 *
 * Facts found while writing it (Dovecot 2.3.19):
 * - mail may not be accessed as root, whatever first_valid_uid says ("Mail access not allowed
 *   for root" in mail-storage-service.c; a userdb uid of 0 is refused too): as root the mail uid is
 *   nobody (65534) and the mail directory is chowned to it; imap-login refuses to run as root
 *   (default_login_user = dovenull, Debian's);
 * - LMTP prepends `Return-Path: <sender>` to every delivered message (not switchable); the
 *   Received and Delivered-To headers it would add are switched off here
 *   (lmtp_add_received_header = no, lmtp_hdr_delivery_address = none), so a message read back
 *   over IMAP is exactly Return-Path + the bytes we sent;
 * - its LMTP offers 8BITMIME CHUNKING ENHANCEDSTATUSCODES PIPELINING (+ STARTTLS with ssl = yes),
 *   neither DSN nor SMTPUTF8 nor SIZE.
 *
 * Invariants: free ports come from binding 127.0.0.1:0 and closing; when Dovecot then fails to
 * bind one (another process took it), it is started again on new ports (a few tries). Ready means
 * both ports answer with a greeting carrying this instance's random host name (not some other
 * program's). stop() sends SIGTERM, waits for the exit (SIGKILL after 10 s) and removes the dir.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { findPeer, runPeer } from './peers.js';

export const DOVECOT_BIN = '/usr/sbin/dovecot';
/** The uid/gid mail is stored as when the tests run as root (Dovecot refuses root for mail). */
const NOBODY = 65534;

export interface DovecotUser {
  address: string;
  password: string;
  /** A quota rule for this user (quota plugin, e.g. `*:storage=1K`): a way to make one recipient fail at end of data. */
  quota?: string;
}

export interface DovecotOptions {
  users: DovecotUser[];
  /** Certificate and key (PEM): ssl = yes, STARTTLS offered on LMTP. Default: ssl = no. */
  tls?: { certPem: string; keyPem: string };
}

export interface Dovecot {
  dir: string;
  host: '127.0.0.1';
  lmtpPort: number;
  lmtpSocket: string;
  imapPort: number;
  /** The random host name in its greetings. */
  hostname: string;
  /** Everything Dovecot logged so far. */
  log(): Promise<string>;
  /**
   * Everything clients sent over LMTP so far (all rawlog input files in name order, timestamps
   * removed); inside TLS it is what Dovecot decrypted.
   */
  lmtpInput(): Promise<string>;
  /** UIDs of the messages in the user's INBOX, over IMAP. */
  uids(user: DovecotUser): Promise<number[]>;
  /** Every message of the user's INBOX, over IMAP (FETCH BODY[] by UID), exact bytes. */
  fetchAll(user: DovecotUser): Promise<Buffer[]>;
  /** SIGTERM, wait for the exit; the dir stays (see remove). Idempotent. */
  stop(): Promise<void>;
  /** stop() and remove the dir. */
  remove(): Promise<void>;
}

/** Starts Dovecot, or returns null after marking the test skipped (fails on CI=true: .ci/run installs it). */
export async function startDovecot(t: TestContext, options: DovecotOptions): Promise<Dovecot | null> {
  const bin = await findPeer(t, DOVECOT_BIN, 'dovecot-core dovecot-lmtpd dovecot-imapd');
  if (bin === null) return null;
  let lastError = '';
  for (let attempt = 0; attempt < 4; attempt++) {
    const r = await startOnce(bin, options);
    if (r.ok) return r.dovecot;
    lastError = r.error;
    if (!r.retry) break;
  }
  assert.fail(`dovecot did not start: ${lastError}`);
}

type StartResult = { ok: true; dovecot: Dovecot } | { ok: false; retry: boolean; error: string };

async function startOnce(bin: string, options: DovecotOptions): Promise<StartResult> {
  const dir = await mkdtemp(join(tmpdir(), 'postseal-dovecot-'));
  // The mail processes run as nobody when we are root: they must reach DIR/mail.
  await chmod(dir, 0o755);
  const root = process.getuid?.() === 0;
  const uid = root ? NOBODY : (process.getuid?.() ?? NOBODY);
  const gid = root ? NOBODY : (process.getgid?.() ?? NOBODY);
  for (const d of ['base', 'state', 'mail', 'rawlog']) await mkdir(join(dir, d));
  if (root) await chown(join(dir, 'mail'), uid, gid);
  const ports = await freePorts(2);
  const lmtpPort = ports[0] ?? 0;
  const imapPort = ports[1] ?? 0;
  assert.ok(lmtpPort > 0 && imapPort > 0 && lmtpPort !== imapPort);
  const hostname = `dovecot-${randomBytes(4).toString('hex')}.test`;
  const lmtpSocket = join(dir, 'lmtp.sock');
  // user:password:uid:gid:gecos:home:shell:extra fields (userdb_* go to the userdb).
  const passwd = options.users.map((u) => `${u.address}:{PLAIN}${u.password}::::::${u.quota !== undefined ? `userdb_quota_rule=${u.quota}` : ''}`).join('\n') + '\n';
  await writeFile(join(dir, 'passwd'), passwd);
  const files: string[] = [];
  if (options.tls) {
    await writeFile(join(dir, 'cert.pem'), options.tls.certPem);
    await writeFile(join(dir, 'key.pem'), options.tls.keyPem, { mode: 0o600 });
    files.push(`ssl = yes`, `ssl_cert = <${join(dir, 'cert.pem')}`, `ssl_key = <${join(dir, 'key.pem')}`, `ssl_min_protocol = TLSv1.2`);
  } else {
    files.push('ssl = no');
  }
  const me = root ? null : (process.env.USER ?? null);
  const conf = [
    `base_dir = ${join(dir, 'base')}`,
    `state_dir = ${join(dir, 'state')}`,
    `log_path = ${join(dir, 'dovecot.log')}`,
    `hostname = ${hostname}`,
    `login_greeting = ${hostname} ready`,
    'protocols = imap lmtp',
    'listen = 127.0.0.1',
    ...files,
    // Dovecot never accesses mail as root (see the header); ids below 500 are allowed for tests.
    'first_valid_uid = 1',
    'first_valid_gid = 1',
    `mail_uid = ${uid}`,
    `mail_gid = ${gid}`,
    `default_login_user = ${root ? 'dovenull' : (me ?? 'nobody')}`,
    `default_internal_user = ${root ? 'dovecot' : (me ?? 'nobody')}`,
    `default_internal_group = ${root ? 'dovecot' : (me ?? 'nogroup')}`,
    `mail_location = maildir:${join(dir, 'mail')}/%d/%n`,
    // Quota only where a user has a rule (DovecotUser.quota); over quota = 552 5.2.2 at end of data.
    'mail_plugins = $mail_plugins quota',
    'plugin {',
    '  quota = maildir:User quota',
    '}',
    'auth_mechanisms = plain',
    'disable_plaintext_auth = no',
    // What IMAP shows is then Return-Path + our bytes (see the header).
    'lmtp_add_received_header = no',
    'lmtp_hdr_delivery_address = none',
    `lmtp_rawlog_dir = ${join(dir, 'rawlog')}`,
    'passdb {',
    '  driver = passwd-file',
    `  args = scheme=PLAIN username_format=%u ${join(dir, 'passwd')}`,
    '}',
    'userdb {',
    '  driver = passwd-file',
    `  args = username_format=%u ${join(dir, 'passwd')}`,
    `  default_fields = home=${join(dir, 'mail')}/%d/%n`,
    '}',
    'service lmtp {',
    '  inet_listener lmtp {',
    '    address = 127.0.0.1',
    `    port = ${lmtpPort}`,
    '  }',
    `  unix_listener ${lmtpSocket} {`,
    '    mode = 0666',
    '  }',
    '}',
    'service imap-login {',
    '  inet_listener imap {',
    '    address = 127.0.0.1',
    `    port = ${imapPort}`,
    '  }',
    '  inet_listener imaps {',
    '    port = 0',
    '  }',
    '}',
    '',
  ].join('\n');
  const confFile = join(dir, 'dovecot.conf');
  await writeFile(confFile, conf);
  const child = spawn(bin, ['-F', '-c', confFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString('utf8')));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString('utf8')));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await terminate(child, exited);
  };
  const log = async (): Promise<string> => readFile(join(dir, 'dovecot.log'), 'utf8').catch(() => '');

  const ready = await Promise.race([
    Promise.all([waitForGreeting(lmtpPort, hostname), waitForGreeting(imapPort, hostname), waitForGreeting(lmtpSocket, hostname)]).then(
      () => 'ready' as const,
      (e: unknown) => `not ready: ${e instanceof Error ? e.message : String(e)}`,
    ),
    exited.then(() => 'exited' as const),
  ]);
  if (ready !== 'ready') {
    const text = `${output}\n${await log()}`;
    await stop();
    await rm(dir, { recursive: true, force: true });
    // Someone took a port between our probe and Dovecot's bind: try again on new ones.
    return { ok: false, retry: /bind\(|Address already in use/i.test(text), error: text.trim() || `exited (${ready})` };
  }

  const imap = (user: DovecotUser, path: string, extra: string[] = []): Promise<Buffer> =>
    runPeer('curl', ['-sS', '--max-time', '20', '--user', `${user.address}:${user.password}`, ...extra, `imap://127.0.0.1:${imapPort}/${path}`], { timeoutMs: 30_000 }).then((r) => {
      assert.equal(r.code, 0, `curl imap ${path}: ${r.stderr}`);
      return r.stdout;
    });
  const uids = async (user: DovecotUser): Promise<number[]> => {
    const out = (await imap(user, 'INBOX', ['-X', 'UID SEARCH ALL'])).toString('utf8');
    const m = /^\* SEARCH(.*)$/m.exec(out);
    assert.ok(m, `no SEARCH answer: ${out}`);
    return (m[1] ?? '')
      .trim()
      .split(/\s+/)
      .filter((x) => x !== '')
      .map(Number);
  };
  return {
    ok: true,
    dovecot: {
      dir,
      host: '127.0.0.1',
      lmtpPort,
      lmtpSocket,
      imapPort,
      hostname,
      log,
      lmtpInput: async () => {
        const names = (await readdir(join(dir, 'rawlog'))).filter((n) => n.endsWith('.in')).sort();
        const parts = await Promise.all(names.map((n) => readFile(join(dir, 'rawlog', n), 'latin1')));
        // Each rawlog line starts with a "SECONDS.MICROS " timestamp: dropped, the bytes stay.
        return parts.join('').replace(/^\d+\.\d+ /gm, '');
      },
      uids,
      fetchAll: async (user) => {
        const out: Buffer[] = [];
        for (const uid of await uids(user)) out.push(await imap(user, `INBOX;UID=${uid}`));
        return out;
      },
      stop,
      remove: async () => {
        await stop();
        await rm(dir, { recursive: true, force: true });
      },
    },
  };
}

async function terminate(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/** `n` distinct ports that were free a moment ago (bound on 127.0.0.1:0, then closed). */
async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(0, '127.0.0.1', () => resolve());
      });
      servers.push(s);
    }
    return servers.map((s) => {
      const a = s.address();
      assert.ok(a !== null && typeof a === 'object');
      return a.port;
    });
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

/**
 * Connects until the greeting names `hostname` (this Dovecot, not another program on the port);
 * gives up after 15 s. Polling a port that is not yet listening has no event to wait for.
 */
async function waitForGreeting(where: number | string, hostname: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const greeting = await readGreeting(where).catch(() => '');
    if (greeting.includes(hostname)) return;
    if (Date.now() > deadline) throw new Error(`no Dovecot greeting on ${String(where)} (last: ${JSON.stringify(greeting)})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function readGreeting(where: number | string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = typeof where === 'number' ? net.connect({ host: '127.0.0.1', port: where }) : net.connect({ path: where });
    let text = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('timeout'));
    }, 2000);
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
      if (text.includes('\n')) {
        clearTimeout(timer);
        s.destroy();
        resolve(text);
      }
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.once('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
}
