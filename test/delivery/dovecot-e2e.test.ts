/**
 * End to end (issue 12): `postseal serve` (the real CLI, a child process) in front of Debian's
 * Dovecot (test/helpers/dovecot.ts), delivering with `--deliver example.org=lmtp:127.0.0.1:PORT`
 * (and `lmtp:unix:PATH`). Mail is sent to postseal's mx listener by a real client (swaks, over
 * STARTTLS), handed over LMTP from the durable queue, and read back over IMAP (curl imap://,
 * FETCH BODY[]) byte-exact.
 *
 * What Dovecot adds, asserted as it is: it prepends `Return-Path: <sender>` (its own Received and
 * Delivered-To headers are switched off in the helper). So a mailbox holds exactly
 * `Return-Path: <sender>` + postseal's Received header (ours, `by mx.example.org … id QUEUEID`)
 * + the bytes swaks sent.
 *
 * Also: a recipient postseal accepts (catch-all) but Dovecot does not know is refused by Dovecot
 * (550 5.1.1 at RCPT) → bounced to the sender's local mailbox (the store target of sender.test),
 * the other recipients delivered once; Dovecot stopped → `postseal queue list` shows the message
 * deferred; Dovecot started again (same config, same ports) → delivered once after
 * `postseal queue retry`.
 *
 * The runner's pass interval is 200 ms (config relay.intervalMs) so nothing waits on the 30 s default.
 */
import { after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { startDovecot, DOVECOT_BIN, type Dovecot, type DovecotUser } from '../helpers/dovecot.js';
import { assertExitedOk, findPeer, runPeer } from '../helpers/peers.js';
import { killAll, mxOnly, queuedId, runCli, sendMessage, startServeChild, tempDirs, type ServeChild } from '../cli/child.js';
import { WireClient } from '../helpers/wire.js';

const ALICE: DovecotUser = { address: 'alice@example.org', password: 'pw-Alice.e2e' };
const BOB: DovecotUser = { address: 'bob@example.org', password: 'pw-Bob.e2e' };
/** Accepted by postseal (catch-all), unknown to Dovecot. */
const CAROL = 'carol@example.org';
/** A local domain of postseal with the default `store` target: bounces land in its mailbox. */
const SENDER = 'sender@sender.test';

const dirs = tempDirs();
const extraChildren = new Set<ChildProcess>();
after(() => {
  killAll();
  for (const c of extraChildren) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  dirs.cleanup();
});

interface QueueRow {
  id: string;
  recipient: string;
  status: string;
  attempts: number;
  lastError: string | null;
  claimedUntil: string | null;
}

/** Polls `check` (external state: a mailbox over IMAP, the queue through the CLI) until it returns non-null or the deadline passes. */
async function until<T>(what: string, check: () => Promise<T | null>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const v = await check();
      if (v !== null) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function queueRows(dataDir: string): Promise<QueueRow[]> {
  const r = await runCli(['queue', 'list', '--json', '--data', dataDir]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as QueueRow[];
}

/** A message with lines that exercise dot-stuffing; ASCII, no '%' or backslash (swaks expands those); CRLF. */
function makeMessage(label: string, to: string[]): Buffer {
  const lines = [
    `From: Sender <${SENDER}>`,
    `To: ${to.join(', ')}`,
    `Subject: e2e ${label}`,
    'Date: Mon, 30 Nov 2026 12:00:00 +0000',
    `Message-ID: <${randomBytes(8).toString('hex')}.e2e@sender.test>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=us-ascii',
    '',
    `Hello Dovecot, ${label}.`,
    '.a line that starts with a dot',
    '..two dots',
    '.',
    'a tab\there and trailing spaces   ',
    'last line',
  ];
  return Buffer.from(lines.join('\r\n') + '\r\n', 'latin1');
}

interface Setup {
  dovecot: Dovecot;
  serve: ServeChild;
  dataDir: string;
  swaks: string;
}

async function setup(t: TestContext, target: (d: Dovecot) => string): Promise<Setup | null> {
  const swaks = await findPeer(t, 'swaks');
  if (swaks === null) return null;
  const dovecot = await startDovecot(t, { users: [ALICE, BOB] });
  if (dovecot === null) return null;
  t.after(() => dovecot.remove());
  const dataDir = dirs.make('postseal-e2e-');
  const config = join(dataDir, 'postseal.json');
  await writeFile(config, JSON.stringify({ relay: { intervalMs: 200 } }));
  const serve = await startServeChild(
    mxOnly(dataDir, [
      '--config', config,
      '--hostname', 'mx.example.org',
      '--domain', 'example.org',
      '--domain', 'sender.test',
      '--catch-all',
      '--no-auth-verify',
      '--deliver', `example.org=${target(dovecot)}`,
    ]),
  );
  t.after(async () => {
    serve.signal('SIGTERM');
    await serve.waitExit().catch(() => undefined);
  });
  return { dovecot, serve, dataDir, swaks };
}

/** swaks over STARTTLS to the mx listener; returns the queue id from the final 250. */
async function send(s: Setup, label: string, to: string[], msg: Buffer): Promise<string> {
  const file = join(s.dataDir, `${label}.eml`);
  await writeFile(file, msg.subarray(0, msg.length - 2)); // swaks adds the final CRLF before the dot
  const r = await runPeer(s.swaks, ['--server', '127.0.0.1', '--port', String(s.serve.port('mx')), '--tls', '--helo', 'client.sender.test', '--from', SENDER, '--to', to.join(','), '--data', `@${file}`]);
  assertExitedOk(r, `swaks ${label}`);
  const id = /<~ +250 .*queued as (\S+)/.exec(r.stdout.toString('utf8'))?.[1];
  assert.ok(id, `no queue id in swaks output:\n${r.stdout.toString('utf8')}`);
  return id;
}

/** Asserts a mailbox holds exactly one message: Return-Path + our Received header (this queue id) + `msg`. */
function assertStoredOnce(msgs: Buffer[], msg: Buffer, id: string, who: string): void {
  assert.equal(msgs.length, 1, `${who}: exactly one message`);
  const text = msgs[0]?.toString('latin1') ?? '';
  const returnPath = `Return-Path: <${SENDER}>\r\n`;
  assert.ok(text.startsWith(returnPath), `${who}: Dovecot's Return-Path first:\n${text}`);
  const rest = text.slice(returnPath.length);
  // Our Received header (possibly folded), nothing else of ours (--no-auth-verify: no Authentication-Results).
  const m = /^Received: [^\r\n]*(?:\r\n[ \t][^\r\n]*)*\r\n/.exec(rest);
  assert.ok(m, `${who}: our Received header follows:\n${text}`);
  assert.match(m[0], /by mx\.example\.org/);
  assert.match(m[0], new RegExp(`with ESMTPS id ${id}\\b`));
  assert.ok(Buffer.from(rest.slice(m[0].length), 'latin1').equals(msg), `${who}: byte-exact after our Received header:\n${text}`);
}

test('mx → queue → LMTP (TCP) → Dovecot → IMAP: alice and bob byte-exact once; carol unknown to Dovecot is bounced to the sender', { timeout: 120_000 }, async (t) => {
  const s = await setup(t, (d) => `lmtp:127.0.0.1:${d.lmtpPort}`);
  if (s === null) return;
  const rcpts = [ALICE.address, CAROL, BOB.address];
  const msg = makeMessage('tcp', rcpts);
  const id = await send(s, 'tcp', rcpts, msg);

  const rows = await until('alice, bob delivered and carol failed in the queue', async () => {
    const r = (await queueRows(s.dataDir)).filter((x) => x.id === id);
    const st = (a: string): string | undefined => r.find((x) => x.recipient === a)?.status;
    return st(ALICE.address) === 'delivered' && st(BOB.address) === 'delivered' && st(CAROL) === 'failed' ? r : null;
  });
  assert.match(rows.find((x) => x.recipient === CAROL)?.lastError ?? '', /550 5\.1\.1/);

  for (const u of [ALICE, BOB]) assertStoredOnce(await s.dovecot.fetchAll(u), msg, id, u.address);
  // One LMTP transaction: the three RCPTs went together, DATA once (alice and bob not redelivered).
  const wire = await s.dovecot.lmtpInput();
  assert.equal(wire.match(/^DATA\r$/gm)?.length, 1, wire);
  assert.match(wire, /^RCPT TO:<carol@example\.org>/m);

  // The bounce (RFC 3464) in the sender's local mailbox names carol and Dovecot's 550.
  const bounce = await until('the bounce in the sender mailbox', async () => {
    const r = await runCli(['mailbox', 'list', '--json', '--mailbox', SENDER, '--data', s.dataDir]);
    assert.equal(r.code, 0, r.stderr);
    const list = JSON.parse(r.stdout) as Array<{ id: string; mailFrom: string }>;
    return list.find((m) => m.mailFrom === '') ?? null;
  });
  const shown = await runCli(['mailbox', 'show', bounce.id, '--data', s.dataDir]);
  assert.equal(shown.code, 0, shown.stderr);
  assert.match(shown.stdout, /^Final-Recipient: rfc822; ?carol@example\.org\r?$/im);
  assert.match(shown.stdout, /^Action: failed\r?$/m);
  assert.match(shown.stdout, /550 5\.1\.1/);
  assert.doesNotMatch(shown.stdout, /^Final-Recipient: rfc822; ?(alice|bob)@/im, 'only carol bounced');
});

test('mx → queue → LMTP over the Unix socket → Dovecot → IMAP byte-exact', { timeout: 120_000 }, async (t) => {
  const s = await setup(t, (d) => `lmtp:unix:${d.lmtpSocket}`);
  if (s === null) return;
  const msg = makeMessage('unix', [BOB.address]);
  const id = await send(s, 'unix', [BOB.address], msg);
  const msgs = await until('bob to have the message over IMAP', async () => {
    const m = await s.dovecot.fetchAll(BOB);
    return m.length > 0 ? m : null;
  });
  assertStoredOnce(msgs, msg, id, BOB.address);
  assert.deepEqual(await s.dovecot.uids(ALICE), []);
  const rows = (await queueRows(s.dataDir)).filter((x) => x.id === id);
  assert.deepEqual(rows.map((r) => [r.recipient, r.status]), [[BOB.address, 'delivered']]);
});

/**
 * Dovecot started again on the helper's config (same dir, ports, socket); stopped at the end of
 * the test. A port the stopped instance's last children still hold for a moment ("Address already
 * in use": Dovecot exits at once) is retried, up to 20 times, 500 ms apart.
 */
async function restartDovecot(t: TestContext, d: Dovecot): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const child = spawn(DOVECOT_BIN, ['-F', '-c', join(d.dir, 'dovecot.conf')], { stdio: 'ignore' });
    extraChildren.add(child);
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const up = await until('Dovecot to greet on its LMTP port again, or to exit', async () => {
      if (child.exitCode !== null) return 'exited' as const;
      return (await greeting(d.lmtpPort)).includes(d.hostname) ? ('up' as const) : null;
    });
    if (up === 'up') {
      t.after(async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
          await exited;
          clearTimeout(timer);
        }
      });
      return;
    }
    const log = await d.log();
    if (attempt >= 20 || !log.includes('Address already in use')) throw new Error(`dovecot exited ${String(child.exitCode)}: ${log}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

function greeting(port: number): Promise<string> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let text = '';
    const done = (): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(text);
    };
    const timer = setTimeout(done, 2000);
    sock.on('data', (b: Buffer) => {
      text += b.toString('latin1');
      if (text.includes('\n')) done();
    });
    sock.once('error', done);
    sock.once('close', done);
  });
}

test('Dovecot stopped → queue list shows deferred; started again → delivered once after queue retry', { timeout: 180_000 }, async (t) => {
  const s = await setup(t, (d) => `lmtp:127.0.0.1:${d.lmtpPort}`);
  if (s === null) return;
  await s.dovecot.stop();
  const msg = makeMessage('down', [ALICE.address]);
  const id = await send(s, 'down', [ALICE.address], msg);

  await until('the message deferred in queue list', async () => {
    const r = await runCli(['queue', 'list', '--data', s.dataDir]);
    assert.equal(r.code, 0, r.stderr);
    return new RegExp(`^${id} +deferred +<${SENDER}> -> <${ALICE.address}>.*next=`, 'm').test(r.stdout) ? r.stdout : null;
  });
  const deferred = (await queueRows(s.dataDir)).find((x) => x.id === id);
  assert.equal(deferred?.status, 'deferred');
  assert.ok(deferred.lastError, 'the connection error is recorded');

  await restartDovecot(t, s.dovecot);
  const retry = await runCli(['queue', 'retry', id, '--data', s.dataDir]);
  assert.equal(retry.code, 0, retry.stderr);
  await until('the queue row delivered', async () => ((await queueRows(s.dataDir)).find((x) => x.id === id)?.status === 'delivered' ? true : null));
  assertStoredOnce(await s.dovecot.fetchAll(ALICE), msg, id, ALICE.address);
  const shown = await runCli(['queue', 'show', id, '--json', '--data', s.dataDir]);
  assert.equal(shown.code, 0, shown.stderr);
  const attempts = (JSON.parse(shown.stdout) as { attempts: Array<{ outcome: string }> }).attempts.map((a) => a.outcome);
  assert.equal(attempts.at(-1), 'delivered');
  assert.ok(attempts.slice(0, -1).length >= 1 && attempts.slice(0, -1).every((o) => o === 'deferred'), `attempts: ${attempts.join(',')}`);
});

/** Files in a Dovecot user's Maildir (new/ + cur/): a cheap count while deliveries run. */
async function maildirFiles(d: Dovecot, address: string): Promise<number> {
  const [local, domain] = address.split('@');
  let n = 0;
  for (const sub of ['new', 'cur']) n += (await readdir(join(d.dir, 'mail', domain ?? '', local ?? '', sub)).catch(() => [])).length;
  return n;
}

test('serve SIGKILLed during a handover → restarted on the same data dir: nothing lost, the dead claims released at start, every message reaches Dovecot at least once', { timeout: 240_000 }, async (t) => {
  const s = await setup(t, (d) => `lmtp:127.0.0.1:${d.lmtpPort}`);
  if (s === null) return;
  // Queue N messages while Dovecot is down (all deferred), then start it and make them due at
  // once: the runner hands several over in parallel, and serve is killed after the first lands.
  await s.dovecot.stop();
  const N = 40;
  const c = await WireClient.connect(s.serve.port('mx'));
  const ids: string[] = [];
  try {
    assert.match((await c.readReply())[0] ?? '', /^220 /);
    await c.cmd('EHLO client.sender.test');
    for (let i = 0; i < N; i++) {
      const r = await sendMessage(c, SENDER, ALICE.address, `Subject: kill ${i}\r\nMessage-ID: <kill-${i}@sender.test>\r\n\r\nmessage ${i}\r\n`);
      const id = queuedId(r);
      assert.ok(id, r);
      ids.push(id);
    }
  } finally {
    c.close();
  }
  await restartDovecot(t, s.dovecot);
  assert.equal((await runCli(['queue', 'retry', '--data', s.dataDir])).code, 0);
  await until('the first message at Dovecot', async () => ((await maildirFiles(s.dovecot, ALICE.address)) >= 1 ? true : null), 60_000);
  s.serve.signal('SIGKILL');
  await s.serve.waitExit();
  const atKill = await maildirFiles(s.dovecot, ALICE.address);
  t.diagnostic(`at SIGKILL Dovecot held ${atKill} of ${N}`);

  const again = await startServeChild(
    mxOnly(s.dataDir, ['--config', join(s.dataDir, 'postseal.json'), '--hostname', 'mx.example.org', '--domain', 'example.org', '--domain', 'sender.test', '--catch-all', '--no-auth-verify', '--deliver', `example.org=lmtp:127.0.0.1:${s.dovecot.lmtpPort}`]),
  );
  t.after(async () => {
    again.signal('SIGTERM');
    await again.waitExit().catch(() => undefined);
  });
  // The restarted serve owns the data directory (store/owner.ts): the rows the killed process
  // had claimed are released at start, not left until their lease ends (LMTP: 15 min + 5 s), so
  // every row is delivered without `queue retry`.
  const released = again.logs().find((l) => l.event === 'queue' && typeof l.released === 'number');
  t.diagnostic(`rows released from the dead process's claim: ${String(released?.released ?? 0)}`);
  await until(`all ${N} queue rows delivered without queue retry`, async () => {
    const rows = (await queueRows(s.dataDir)).filter((r) => ids.includes(r.id));
    assert.equal(rows.length, N);
    return rows.every((r) => r.status === 'delivered') ? rows : null;
  }, 90_000);
  const msgs = await s.dovecot.fetchAll(ALICE);
  const seen = new Map<string, number>();
  for (const m of msgs) {
    const mid = /^Message-ID: <(kill-\d+)@/m.exec(m.toString('latin1'))?.[1] ?? '?';
    seen.set(mid, (seen.get(mid) ?? 0) + 1);
  }
  for (let i = 0; i < N; i++) assert.ok((seen.get(`kill-${i}`) ?? 0) >= 1, `kill-${i} reached Dovecot`);
  // At-least-once: only a message in flight at the kill may arrive twice (Dovecot does not
  // de-duplicate); at most relay.concurrency (8) were in flight.
  const dupes = msgs.length - N;
  t.diagnostic(`duplicates at Dovecot: ${dupes}`);
  assert.ok(dupes >= 0 && dupes <= 8, `duplicates ${dupes}`);
});
