/**
 * Local delivery targets run from the durable queue (issue 12), end to end with the real CLI:
 * `postseal serve` children (config file + `--deliver DOMAIN=TARGET`), mail sent to the mx
 * listener over SMTP, handed on by the queue runner to a Maildir (read back with Python's
 * mailbox.Maildir) or to a webhook receiver on 127.0.0.1:0 that verifies the HMAC signature and
 * de-duplicates on Idempotency-Key. Retry backoff is shortened in the config (relay.minBackoffMs
 * 200 ms, relay.intervalMs 100 ms) so retries happen within the test; nothing is timed.
 *
 * (a) maildir: byte-exact, not a store delivery (`mailbox list`); (b) webhook 503, 503, 200 →
 * exactly one accepted delivery, `queue show` lists deferred, deferred, delivered; (c) webhook
 * 4xx → bounce to the sender with NOTIFY=FAILURE, none with NOTIFY=NEVER, and the bounce does not
 * name the webhook URL; (d) webhook down → queue holds (deferred), delivered once it is up;
 * (e) serve SIGKILLed while a webhook call is held open → delivered after restart, exactly once
 * as the receiver sees it; (f) per-address override; (g) NOTIFY=SUCCESS on a maildir mailbox →
 * no report while the handoff is deferred, one `Action: delivered` report after it.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { openSqliteStoreReadOnly } from '../../src/store/index.js';
import type { QueueAttempt, QueueEntry } from '../../src/store/index.js';
import { WireClient } from '../helpers/wire.js';
import { killAll, mxOnly, runCli, startServeChild, tempDirs, type ServeChild } from '../cli/child.js';

const SECRET = 'test-webhook-secret-0123456789';
const SENDER = 'sender@sender.test';
const dirs = tempDirs();

after(() => {
  killAll();
  dirs.cleanup();
});

// --- helpers ------------------------------------------------------------------------------------

function writeConfig(dir: string, targets: Record<string, string>): string {
  const file = join(dir, 'config.json');
  const cfg = {
    hostname: 'mx.postseal.test',
    domains: ['example.org', 'example.net', 'slow.test', 'sender.test', 'hook.test', 'rej.test', 'down.test', 'hold.test'],
    recipients: { catchAll: true },
    auth: { verify: false },
    relay: { intervalMs: 100, minBackoffMs: 200, maxBackoffMs: 400 },
    delivery: { targets, webhook: { secret: SECRET, timeoutMs: 2000 } },
  };
  writeFileSync(file, JSON.stringify(cfg));
  return file;
}

/** One SMTP transaction on the mx listener; returns the queue id from the 250. */
async function send(port: number, mail: string, rcpts: string[], content: string): Promise<string> {
  const c = await WireClient.connect(port);
  try {
    assert.match((await c.readReply())[0] ?? '', /^220 /);
    await c.cmd('EHLO client.example');
    const ok = async (line: string, code = '250'): Promise<string> => {
      const r = await c.cmd(line, 10_000);
      assert.ok(r.at(-1)?.startsWith(code), `${line} → ${r.join(' | ')}`);
      return r.at(-1) ?? '';
    };
    await ok(`MAIL FROM:<${mail}>`);
    for (const r of rcpts) await ok(`RCPT TO:${r}`);
    await ok('DATA', '354');
    const done = await ok(content + '\r\n.');
    const id = /queued as (\S+)/.exec(done)?.[1];
    assert.ok(id, done);
    return id;
  } finally {
    c.close();
  }
}

async function until<T>(what: string, check: () => T | null | undefined | false, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== null && v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Reads the store of a running serve from this process (WAL: a second reader is fine). */
function withReader<T>(dataDir: string, f: (r: ReturnType<typeof openSqliteStoreReadOnly>) => T): T {
  const r = openSqliteStoreReadOnly(dataDir);
  try {
    return f(r);
  } finally {
    void r.close();
  }
}

function queueRows(dataDir: string, id: string): QueueEntry[] {
  return withReader(dataDir, (r) => r.listQueue().filter((e) => e.id === id));
}

function attempts(dataDir: string, id: string): QueueAttempt[] {
  return withReader(dataDir, (r) => r.listAttempts(id));
}

/** Messages in a store mailbox whose bytes contain `marker`. */
function mailboxWith(dataDir: string, address: string, marker: string): Array<{ id: string; mailFrom: string; text: string }> {
  return withReader(dataDir, (r) =>
    r
      .listMessages({ mailbox: address })
      .map((m) => ({ id: m.id, mailFrom: m.mailFrom, text: r.getMessage(m.id)?.data.toString('utf8') ?? '' }))
      .filter((m) => m.text.includes(marker)),
  );
}

/** The messages of one Maildir mailbox, read by Python's mailbox.Maildir (raw bytes). */
function readMaildir(dir: string): Buffer[] {
  const py = 'import base64, json, mailbox, sys\nmd = mailbox.Maildir(sys.argv[1], factory=None, create=False)\nprint(json.dumps([base64.b64encode(md.get_bytes(k)).decode() for k in sorted(md.keys())]))';
  const r = spawnSync('/usr/bin/python3', ['-c', py, dir], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  return (JSON.parse(r.stdout) as string[]).map((b) => Buffer.from(b, 'base64'));
}

interface Call {
  path: string;
  key: string;
  verified: boolean;
  status: number;
}

/**
 * A webhook receiver: verifies the signature (docs/delivery.md: HMAC-SHA256 over `ts.` + body,
 * 300 s window, constant-time compare), de-duplicates on Idempotency-Key, and answers per path:
 *   /flaky  503 for the first two calls of a key, then 200;  /reject 404;  /hold the first call
 *   of a key is held open (never answered), later ones 200;  anything else 200.
 */
class Receiver {
  readonly calls: Call[] = [];
  /** Accepted deliveries: key → body (a repeated key is answered 200 and not stored again). */
  readonly accepted = new Map<string, Buffer>();
  readonly held: http.ServerResponse[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly server: http.Server;
  onHeld: (() => void) | null = null;

  constructor() {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (b: Buffer) => {
        size += b.length;
        if (size > 10 * 1024 * 1024) req.destroy();
        else chunks.push(b);
      });
      req.on('end', () => this.handle(req, res, Buffer.concat(chunks)));
    });
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  listen(port = 0): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => resolve((this.server.address() as AddressInfo).port));
    });
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): void {
    const path = req.url ?? '';
    const key = String(req.headers['idempotency-key'] ?? '');
    const ts = String(req.headers['x-postseal-timestamp'] ?? '');
    const sig = Buffer.from(String(req.headers['x-postseal-signature'] ?? ''));
    const want = Buffer.from('v1=' + createHmac('sha256', SECRET).update(`${ts}.`).update(body).digest('hex'));
    const fresh = /^[0-9]+$/.test(ts) && Math.abs(Date.now() / 1000 - Number(ts)) <= 300;
    const verified = fresh && sig.length === want.length && timingSafeEqual(sig, want);
    const before = this.calls.filter((c) => c.key === key && c.path === path).length;
    let status = 200;
    if (!verified) status = 401;
    else if (path === '/flaky' && before < 2) status = 503;
    else if (path === '/reject') status = 404;
    else if (path === '/hold' && before === 0) status = 0;
    this.calls.push({ path, key, verified, status });
    if (status === 0) {
      this.held.push(res);
      this.onHeld?.();
      return;
    }
    if (status === 200 && !this.accepted.has(key)) this.accepted.set(key, body);
    res.writeHead(status, { 'content-type': 'text/plain' }).end(status === 200 ? 'ok' : 'no');
  }
}

/** A port nothing listens on right now (bound, then released). */
async function freePort(): Promise<number> {
  const s = http.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

// --- maildir and store targets ------------------------------------------------------------------

let mdServe: ServeChild;
let mdData: string;
let maildirs: string;

before(async () => {
  mdData = dirs.make('postseal-handoff-md-');
  maildirs = dirs.make('postseal-handoff-maildirs-');
  // slow.test's Maildir base is a regular file at first: mkdir fails (ENOTDIR) → deferred.
  writeFileSync(join(maildirs, 'slow'), 'not a directory');
  const config = writeConfig(mdData, { 'alice@example.net': `maildir:${join(maildirs, 'alice-only')}`, 'slow.test': `maildir:${join(maildirs, 'slow')}` });
  mdServe = await startServeChild(['--config', config, ...mxOnly(mdData, ['--deliver', `example.org=maildir:${join(maildirs, 'org')}`])]);
});

test('(a) --deliver example.org=maildir:DIR: the message lands in DIR byte-exact (mailbox.Maildir) and is not a store delivery', { timeout: 60_000 }, async () => {
  const content = 'From: sender@sender.test\r\nTo: bob@example.org\r\nSubject: handoff-a\r\n\r\nline one\r\n..dot-stuffed line\r\nlast line';
  const id = await send(mdServe.port('mx'), SENDER, ['<bob@example.org>'], content);
  const box = join(maildirs, 'org', 'bob@example.org');
  const msgs = await until('the Maildir delivery', () => (existsSync(join(box, 'new')) && readdirSync(join(box, 'new')).length > 0 ? readMaildir(box) : null));
  assert.equal(msgs.length, 1);
  const got = msgs[0] ?? Buffer.alloc(0);
  const stored = withReader(mdData, (r) => r.getMessage(id));
  assert.ok(stored, 'the message row is kept (the queue row names it)');
  assert.ok(got.equals(stored.data), 'Maildir file = the message as stored, byte for byte');
  assert.match(got.toString('latin1'), /^Received: /);
  // The client's bytes, unstuffed (RFC 5321 §4.5.2), CRLF, after our Received header.
  assert.ok(got.toString('latin1').endsWith(content.replace('\r\n..dot', '\r\n.dot') + '\r\n'), got.toString('latin1'));
  assert.deepEqual(queueRows(mdData, id).map((e) => [e.recipient, e.status, e.target]), [['bob@example.org', 'delivered', `maildir:${join(maildirs, 'org')}`]]);
  const list = await runCli(['mailbox', 'list', '--data', mdData]);
  assert.equal(list.code, 0, list.stderr);
  assert.ok(!list.stdout.includes(id), `mailbox list shows no store delivery of ${id}:\n${list.stdout}`);
  const q = await runCli(['queue', 'list', '--data', mdData]);
  assert.match(q.stdout, new RegExp(`${id}  delivered +<sender@sender\\.test> -> <bob@example\\.org> via maildir:`));
});

test('(f) per-address override: alice@example.net → maildir, bob@example.net → store', { timeout: 60_000 }, async () => {
  const id = await send(mdServe.port('mx'), SENDER, ['<alice@example.net>', '<bob@example.net>'], 'Subject: handoff-f\r\n\r\nhello both');
  const alice = join(maildirs, 'alice-only', 'alice@example.net');
  const msgs = await until('alice\'s Maildir delivery', () => (existsSync(join(alice, 'new')) && readdirSync(join(alice, 'new')).length > 0 ? readMaildir(alice) : null));
  assert.equal(msgs.length, 1);
  assert.match(msgs[0]?.toString('latin1') ?? '', /Subject: handoff-f/);
  assert.ok(!existsSync(join(maildirs, 'alice-only', 'bob@example.net')), 'bob is not handed to alice\'s Maildir');
  assert.deepEqual(mailboxWith(mdData, 'bob@example.net', 'handoff-f').map((m) => m.id), [id], 'bob: the store mailbox');
  assert.deepEqual(mailboxWith(mdData, 'alice@example.net', 'handoff-f'), [], 'alice: no store mailbox entry');
  assert.deepEqual(queueRows(mdData, id).map((e) => e.recipient), ['alice@example.net'], 'only alice has a queue row');
});

test('(g) NOTIFY=SUCCESS on a maildir mailbox: no report at accept or while deferred; one Action: delivered report after the handoff', { timeout: 60_000 }, async () => {
  const id = await send(mdServe.port('mx'), SENDER, ['<carol@slow.test> NOTIFY=SUCCESS ORCPT=rfc822;carol@slow.test'], 'Subject: handoff-g\r\n\r\nsuccess please');
  // The target is broken at first (its base is a file): deferred, retried.
  await until('a deferred attempt', () => attempts(mdData, id).some((a) => a.outcome === 'deferred'));
  assert.equal(queueRows(mdData, id)[0]?.status, 'deferred');
  assert.deepEqual(mailboxWith(mdData, SENDER, 'handoff-g'), [], 'no success report before the handoff');
  rmSync(join(maildirs, 'slow'));
  mkdirSync(join(maildirs, 'slow'));
  await until('the handoff', () => queueRows(mdData, id)[0]?.status === 'delivered');
  const reports = await until('the success report', () => {
    const r = mailboxWith(mdData, SENDER, 'handoff-g');
    return r.length > 0 ? r : null;
  });
  // Several more runner passes (100 ms apart) must not add a second one.
  await new Promise((r) => setTimeout(r, 500));
  const again = mailboxWith(mdData, SENDER, 'handoff-g');
  assert.equal(again.length, 1, 'exactly one report');
  const text = reports[0]?.text ?? '';
  assert.equal(reports[0]?.mailFrom, '', 'from the null sender');
  assert.match(text, /Action: delivered/);
  assert.match(text, /Final-Recipient: rfc822; ?carol@slow\.test/i);
  assert.match(text, /Original-Recipient: rfc822; ?carol@slow\.test/i);
  assert.ok(!text.includes(maildirs), 'the report names no Maildir path');
  const list = await runCli(['queue', 'show', id, '--data', mdData]);
  assert.match(list.stdout, /deferred[\s\S]*delivered/);
});

// --- webhook targets ----------------------------------------------------------------------------

test('(b)(c)(d) webhook: flaky → exactly one accepted delivery after deferred, deferred; 4xx → bounce per NOTIFY; down → held, then delivered', { timeout: 120_000 }, async () => {
  const rx = new Receiver();
  const port = await rx.listen();
  const downPort = await freePort();
  const data = dirs.make('postseal-handoff-hook-');
  const config = writeConfig(data, { 'rej.test': `webhook:http://127.0.0.1:${port}/reject`, 'down.test': `webhook:http://127.0.0.1:${downPort}/late` });
  const serve = await startServeChild(['--config', config, ...mxOnly(data, ['--deliver', `hook.test=webhook:http://127.0.0.1:${port}/flaky`])]);
  const late = new Receiver();
  try {
    // (b) 503, 503, then 200.
    const content = 'Subject: handoff-b\r\n\r\nto the app';
    const idB = await send(serve.port('mx'), SENDER, ['<app@hook.test>', '<other@hook.test>'], content);
    await until('the webhook delivery', () => queueRows(data, idB).every((e) => e.status === 'delivered') && queueRows(data, idB).length === 2);
    const callsB = rx.calls.filter((c) => c.key === idB);
    assert.deepEqual(callsB.map((c) => c.status), [503, 503, 200], 'one call per attempt for both recipients');
    assert.ok(callsB.every((c) => c.verified), 'every call is signed with the secret');
    assert.equal(rx.accepted.size, 1);
    const body = rx.accepted.get(idB);
    const stored = withReader(data, (r) => r.getMessage(idB));
    assert.ok(body && stored && body.equals(stored.data), 'the raw body is the message as stored');
    const show = await runCli(['queue', 'show', idB, '--data', data, '--json']);
    assert.equal(show.code, 0, show.stderr);
    const shown = JSON.parse(show.stdout) as { recipients: QueueEntry[]; attempts: QueueAttempt[] };
    assert.deepEqual(shown.attempts.filter((a) => a.recipient === 'app@hook.test').map((a) => a.outcome), ['deferred', 'deferred', 'delivered']);
    assert.match(shown.attempts[0]?.error ?? '', /HTTP 503/);
    assert.equal(shown.recipients[0]?.target, `webhook:http://127.0.0.1:${port}/flaky`);
    const text = await runCli(['queue', 'show', idB, '--data', data]);
    assert.match(text.stdout, /via webhook:http:\/\/127\.0\.0\.1:\d+\/flaky/);

    // (c) 404: failed; a bounce for NOTIFY=FAILURE, none for NOTIFY=NEVER.
    const idC1 = await send(serve.port('mx'), SENDER, ['<x@rej.test> NOTIFY=FAILURE'], 'Subject: handoff-c1\r\n\r\nrefused');
    const idC2 = await send(serve.port('mx'), SENDER, ['<y@rej.test> NOTIFY=NEVER'], 'Subject: handoff-c2\r\n\r\nrefused quietly');
    await until('both refusals recorded', () => queueRows(data, idC1)[0]?.status === 'failed' && queueRows(data, idC2)[0]?.status === 'failed');
    const bounces = await until('the bounce', () => {
      const b = mailboxWith(data, SENDER, 'handoff-c1');
      return b.length > 0 ? b : null;
    });
    assert.equal(bounces.length, 1);
    assert.match(bounces[0]?.text ?? '', /Action: failed/);
    assert.match(bounces[0]?.text ?? '', /Final-Recipient: rfc822; ?x@rej\.test/i);
    assert.match(bounces[0]?.text ?? '', /HTTP 404/);
    assert.ok(!(bounces[0]?.text ?? '').includes(`127.0.0.1:${port}`), 'the bounce does not name the webhook URL');
    assert.equal(attempts(data, idC1).length, 1, 'a 4xx is not retried');
    assert.deepEqual(mailboxWith(data, SENDER, 'handoff-c2'), [], 'NOTIFY=NEVER: no bounce');

    // (d) nothing listens: deferred and held; then it comes up → delivered once.
    const idD = await send(serve.port('mx'), SENDER, ['<z@down.test>'], 'Subject: handoff-d\r\n\r\nlater');
    await until('two deferred attempts', () => attempts(data, idD).filter((a) => a.outcome === 'deferred').length >= 2);
    assert.equal(queueRows(data, idD)[0]?.status, 'deferred', 'the queue holds the message');
    assert.match(attempts(data, idD)[0]?.error ?? '', /ECONNREFUSED|connect/i);
    await late.listen(downPort);
    await until('the late delivery', () => queueRows(data, idD)[0]?.status === 'delivered');
    assert.equal(late.accepted.size, 1);
    assert.ok(late.accepted.has(idD));
    assert.ok(late.calls.every((c) => c.verified));
  } finally {
    serve.signal('SIGKILL');
    await serve.waitExit().catch(() => undefined);
    await rx.close();
    await late.close().catch(() => undefined);
  }
});

test('(e) serve SIGKILLed while a webhook call is in flight: delivered after restart, exactly once as the receiver sees it', { timeout: 120_000 }, async () => {
  const rx = new Receiver();
  const port = await rx.listen();
  const data = dirs.make('postseal-handoff-kill-');
  const config = writeConfig(data, {});
  const args = ['--config', config, ...mxOnly(data, ['--deliver', `hold.test=webhook:http://127.0.0.1:${port}/hold`])];
  const first = await startServeChild(args);
  const held = new Promise<void>((resolve) => (rx.onHeld = resolve));
  const id = await send(first.port('mx'), SENDER, ['<app@hold.test>'], 'Subject: handoff-e\r\n\r\nsurvive a crash');
  await held;
  first.signal('SIGKILL');
  assert.equal((await first.waitExit()).signal, 'SIGKILL');
  for (const r of rx.held) r.socket?.destroy();
  assert.equal(queueRows(data, id)[0]?.status, 'queued', 'no outcome was recorded before the crash');
  const second = await startServeChild(args);
  try {
    await until('the delivery after restart', () => queueRows(data, id)[0]?.status === 'delivered', 60_000);
    const calls = rx.calls.filter((c) => c.key === id);
    assert.ok(calls.length >= 2, 'called again after the restart (at least once)');
    assert.ok(calls.every((c) => c.verified));
    assert.equal([...rx.accepted.keys()].filter((k) => k === id).length, 1, 'exactly one accepted delivery');
    assert.deepEqual(attempts(data, id).map((a) => a.outcome), ['delivered']);
  } finally {
    second.signal('SIGKILL');
    await second.waitExit().catch(() => undefined);
    await rx.close();
  }
});

test('a webhook target without a secret: serve refuses to start, naming the key and the variable; POSTSEAL_WEBHOOK_SECRET supplies it', { timeout: 60_000 }, async () => {
  const data = dirs.make('postseal-handoff-nosecret-');
  const r = await runCli(['serve', ...mxOnly(data, ['--deliver', 'hook.test=webhook:http://127.0.0.1:9/x'])]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /delivery\.webhook\.secret is not set/);
  assert.match(r.stderr, /POSTSEAL_WEBHOOK_SECRET/);
  // The secret from the environment (kept off the command line): serve starts.
  const s = await startServeChild(mxOnly(data, ['--deliver', 'hook.test=webhook:http://127.0.0.1:9/x']), { env: { POSTSEAL_WEBHOOK_SECRET: SECRET } });
  s.signal('SIGKILL');
  await s.waitExit().catch(() => undefined);
});
