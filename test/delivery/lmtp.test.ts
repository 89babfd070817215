/**
 * The lmtp delivery target (src/delivery/lmtp.ts) against a real Dovecot (test/helpers/dovecot.ts):
 * messages handed over LMTP on TCP and on the Unix socket are read back over IMAP (curl, FETCH
 * BODY[]) byte-exact; per-recipient replies after DATA (RFC 2033 §4.2) become per-recipient
 * outcomes; dot-stuffing and 8-bit content survive; a stopped Dovecot defers everyone without a
 * throw; STARTTLS at level verify succeeds with the test CA and is refused (no MAIL sent) when
 * the name does not match.
 *
 * What Dovecot 2.3.19 does to a message, asserted here as it is: it prepends
 * `Return-Path: <sender>` (not switchable; its own Received and Delivered-To are switched off in
 * the helper), so the mailbox holds exactly that line followed by the bytes we sent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createLmtpTarget, defaultLmtpLevel } from '../../src/delivery/lmtp.js';
import type { LocalDelivery } from '../../src/delivery/types.js';
import type { MessageSummary } from '../../src/types.js';
import { issueCert, makeTestCa } from '../helpers/certs.js';
import { startDovecot, type Dovecot, type DovecotUser } from '../helpers/dovecot.js';
import { startScriptedServer, type ScriptPeer } from '../client/scripted-server.js';

const ALICE: DovecotUser = { address: 'alice@example.test', password: 'pw-Alice.1' };
const BOB: DovecotUser = { address: 'bob@example.test', password: 'pw-Bob.2' };
const USERS = [ALICE, BOB];
const SENDER = 'sender@remote.test';
/** Short limits: a broken step fails the test quickly instead of hanging it. */
const TIMEOUTS = { connectMs: 5000, greetingMs: 10_000, commandMs: 10_000, mailMs: 10_000, rcptMs: 10_000, dataInitMs: 10_000, dataBlockMs: 10_000, dataFinalMs: 20_000, tlsHandshakeMs: 10_000, quitMs: 2000 };

function queueId(): string {
  return randomBytes(8).toString('hex');
}

/** A stored message as the queue holds it: our Received header first, CRLF line ends. */
function message(id: string, to: string[], bodyLines: string[], extraHeaders: string[] = []): Buffer {
  const lines = [
    `Received: from client.remote.test ([192.0.2.7]) by mx.example.test with ESMTPS id ${id}; Mon, 30 Nov 2026 12:00:00 +0000`,
    `From: Sender <${SENDER}>`,
    `To: ${to.join(', ')}`,
    `Subject: lmtp test ${id}`,
    `Message-ID: <${id}@mx.example.test>`,
    ...extraHeaders,
    '',
    ...bodyLines,
  ];
  return Buffer.from(lines.join('\r\n') + '\r\n', 'utf8');
}

function delivery(id: string, recipients: string[], data: Buffer): LocalDelivery {
  const summary: MessageSummary = {
    id,
    receivedAt: new Date().toISOString(),
    mailFrom: SENDER,
    recipients,
    size: data.length,
    listener: 'mx',
    clientAddress: '192.0.2.7',
    heloName: 'client.remote.test',
    authUser: null,
    tls: null,
    requireTls: false,
    authResults: null,
    quarantine: false,
  };
  return { id, mailFrom: SENDER, recipients, data, summary };
}

/** What Dovecot stores for a message we handed over: its Return-Path line, then our bytes. */
function stored(data: Buffer, sender = SENDER): Buffer {
  return Buffer.concat([Buffer.from(`Return-Path: <${sender}>\r\n`), data]);
}

async function withDovecot(t: import('node:test').TestContext, opts: { tls?: { certPem: string; keyPem: string } } = {}): Promise<Dovecot | null> {
  const d = await startDovecot(t, { users: USERS, ...opts });
  if (d !== null) t.after(() => d.remove());
  return d;
}

test('default TLS level: none for a Unix socket and loopback, may elsewhere', () => {
  assert.equal(defaultLmtpLevel({ kind: 'lmtp', socket: '/run/dovecot/lmtp' }), 'none');
  assert.equal(defaultLmtpLevel({ kind: 'lmtp', host: '127.0.0.1', port: 24 }), 'none');
  assert.equal(defaultLmtpLevel({ kind: 'lmtp', host: '::1', port: 24 }), 'none');
  assert.equal(defaultLmtpLevel({ kind: 'lmtp', host: 'localhost', port: 24 }), 'none');
  assert.equal(defaultLmtpLevel({ kind: 'lmtp', host: 'mail.example.org', port: 24 }), 'may');
  assert.equal(defaultLmtpLevel({ kind: 'lmtp', host: '10.0.0.5', port: 24 }), 'may');
});

test('TCP: two known recipients and one unknown: per-recipient outcomes, each mailbox byte-exact, once', async (t) => {
  const d = await withDovecot(t);
  if (d === null) return;
  const id = queueId();
  const rcpts = [ALICE.address, 'nobody@example.test', BOB.address];
  const data = message(id, rcpts, ['Hello over LMTP.', 'second line']);
  const target = createLmtpTarget({ kind: 'lmtp', host: d.host, port: d.lmtpPort }, { timeouts: TIMEOUTS });
  const out = await target.deliver(delivery(id, rcpts, data));
  assert.equal(out.length, 3);
  assert.deepEqual(out[0], { recipient: ALICE.address, outcome: 'delivered' });
  assert.deepEqual(out[2], { recipient: BOB.address, outcome: 'delivered' });
  // Dovecot refuses an unknown user at RCPT with 550 5.1.1: permanent, this recipient only.
  const nobody = out[1];
  assert.ok(nobody && nobody.outcome === 'failed', JSON.stringify(out));
  assert.match(nobody.error, /RCPT refused: 550 5\.1\.1/);
  for (const u of USERS) {
    const msgs = await d.fetchAll(u);
    assert.equal(msgs.length, 1, `${u.address} has exactly one message`);
    assert.equal(msgs[0]?.toString('utf8'), stored(data).toString('utf8'));
    assert.ok(msgs[0]?.equals(stored(data)), 'byte-exact');
  }
  // Dovecot offers no DSN: no ENVID went; the queue id is in our Received header (first line).
  assert.equal(target.last?.envIdSent, false);
  const wire = await d.lmtpInput();
  assert.match(wire, /^LHLO /m);
  assert.doesNotMatch(wire, /ENVID=/);
  assert.match(wire, new RegExp(`^Received: .* id ${id};`, 'm'));
});

test('one reply per recipient after DATA: an over-quota recipient fails alone, the others are delivered once (RFC 2033 §4.2)', async (t) => {
  const full: DovecotUser = { address: 'full@example.test', password: 'pw-Full.3', quota: '*:storage=1K' };
  const d = await startDovecot(t, { users: [...USERS, full] });
  if (d === null) return;
  t.after(() => d.remove());
  const id = queueId();
  // The full mailbox in the middle: its reply is the second of three, the order must hold.
  const rcpts = [ALICE.address, full.address, BOB.address];
  const data = message(id, rcpts, ['x'.repeat(900), 'y'.repeat(900), 'more than the 1 KiB quota']);
  const target = createLmtpTarget({ kind: 'lmtp', host: d.host, port: d.lmtpPort }, { timeouts: TIMEOUTS });
  const out = await target.deliver(delivery(id, rcpts, data));
  assert.deepEqual(out[0], { recipient: ALICE.address, outcome: 'delivered' });
  assert.deepEqual(out[2], { recipient: BOB.address, outcome: 'delivered' });
  const o = out[1];
  assert.ok(o && o.outcome === 'failed', JSON.stringify(out));
  assert.match(o.error, /end of data: 552 5\.2\.2 .*[Qq]uota/);
  // All three RCPTs were accepted: the refusal came after DATA, for this recipient only.
  const wire = await d.lmtpInput();
  assert.equal(wire.match(/^RCPT TO:/gm)?.length, 3);
  assert.equal(wire.match(/^DATA\r$/gm)?.length, 1);
  for (const u of USERS) {
    const msgs = await d.fetchAll(u);
    assert.equal(msgs.length, 1, `${u.address}: exactly once`);
    assert.ok(msgs[0]?.equals(stored(data)), 'byte-exact');
  }
  assert.deepEqual(await d.fetchAll(full), []);
});

test('Unix socket: delivered and read back over IMAP byte-exact', async (t) => {
  const d = await withDovecot(t);
  if (d === null) return;
  const id = queueId();
  const data = message(id, [BOB.address], ['via the unix socket']);
  const target = createLmtpTarget({ kind: 'lmtp', socket: d.lmtpSocket }, { timeouts: TIMEOUTS });
  const out = await target.deliver(delivery(id, [BOB.address], data));
  assert.deepEqual(out, [{ recipient: BOB.address, outcome: 'delivered' }]);
  const msgs = await d.fetchAll(BOB);
  assert.equal(msgs.length, 1);
  assert.ok(msgs[0]?.equals(stored(data)), `byte-exact:\n${msgs[0]?.toString('utf8') ?? ''}`);
  assert.deepEqual(await d.fetchAll(ALICE), []);
});

test('dot-stuffing: lines that start with "." arrive unchanged (and were stuffed on the wire)', async (t) => {
  const d = await withDovecot(t);
  if (d === null) return;
  const id = queueId();
  const body = ['.', '..', '.leading dot', '...three', 'x.', '.\t.', 'end'];
  const data = message(id, [ALICE.address], body);
  const out = await createLmtpTarget({ kind: 'lmtp', host: d.host, port: d.lmtpPort }, { timeouts: TIMEOUTS }).deliver(delivery(id, [ALICE.address], data));
  assert.deepEqual(out, [{ recipient: ALICE.address, outcome: 'delivered' }]);
  const msgs = await d.fetchAll(ALICE);
  assert.equal(msgs.length, 1);
  assert.ok(msgs[0]?.equals(stored(data)), `byte-exact:\n${msgs[0]?.toString('utf8') ?? ''}`);
  // RFC 5321 §4.5.2: what Dovecot received on the wire has every leading dot doubled.
  const wire = await d.lmtpInput();
  assert.match(wire, /\r\n\.\.\r\n\.\.\.\r\n\.\.leading dot\r\n\.\.\.\.three\r\nx\.\r\n\.\.\t\.\r\nend\r\n\.\r\n/);
});

test('8-bit content goes with BODY=8BITMIME; a UTF-8 address fails (Dovecot offers no SMTPUTF8), nothing sent', async (t) => {
  const d = await withDovecot(t);
  if (d === null) return;
  const id = queueId();
  const data = message(id, [ALICE.address], ['Grüße aus Köln — 日本語 ✓', 'plain line'], ['Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: 8bit']);
  const target = createLmtpTarget({ kind: 'lmtp', host: d.host, port: d.lmtpPort }, { timeouts: TIMEOUTS });
  assert.deepEqual(await target.deliver(delivery(id, [ALICE.address], data)), [{ recipient: ALICE.address, outcome: 'delivered' }]);
  const msgs = await d.fetchAll(ALICE);
  assert.equal(msgs.length, 1);
  assert.ok(msgs[0]?.equals(stored(data)), 'byte-exact 8-bit');
  assert.match(await d.lmtpInput(), /^MAIL FROM:<sender@remote\.test> BODY=8BITMIME\r$/m);

  const id2 = queueId();
  const utf8Rcpt = 'jörg@example.test';
  const out = await target.deliver(delivery(id2, [utf8Rcpt], message(id2, [utf8Rcpt], ['hi'])));
  const o = out[0];
  assert.ok(o && o.outcome === 'failed', JSON.stringify(out));
  assert.match(o.error, /NOT_SUPPORTED.*SMTPUTF8/);
  // Refused before the transaction: no second MAIL reached Dovecot.
  assert.equal((await d.lmtpInput()).match(/^MAIL FROM:/gm)?.length, 1);
});

test('Dovecot stopped: every recipient deferred with the connection error, no throw (TCP and socket)', async (t) => {
  const d = await withDovecot(t);
  if (d === null) return;
  await d.stop();
  const id = queueId();
  const rcpts = [ALICE.address, BOB.address];
  const data = message(id, rcpts, ['nobody home']);
  for (const spec of [{ kind: 'lmtp' as const, host: d.host, port: d.lmtpPort }, { kind: 'lmtp' as const, socket: d.lmtpSocket }]) {
    const out = await createLmtpTarget(spec, { timeouts: TIMEOUTS }).deliver(delivery(id, rcpts, data));
    assert.equal(out.length, 2);
    for (const [i, o] of out.entries()) {
      assert.equal(o.recipient, rcpts[i]);
      assert.equal(o.outcome, 'deferred', JSON.stringify(o));
      assert.ok(o.outcome === 'deferred' && /CONNECT_FAILED: cannot connect to .*(ECONNREFUSED|ENOENT)/.test(o.error), JSON.stringify(o));
    }
  }
});

test('STARTTLS at level verify: the test CA and the right name deliver inside TLS; a wrong name defers with no MAIL sent', async (t) => {
  const ca = await makeTestCa();
  const cert = await issueCert(ca, { names: ['lmtp.example.test'] });
  const d = await withDovecot(t, { tls: cert });
  if (d === null) return;
  const spec = { kind: 'lmtp' as const, host: d.host, port: d.lmtpPort };

  const id = queueId();
  const data = message(id, [ALICE.address], ['over TLS']);
  const good = createLmtpTarget(spec, { level: 'verify', ca: ca.certPem, servername: 'lmtp.example.test', timeouts: TIMEOUTS });
  assert.deepEqual(await good.deliver(delivery(id, [ALICE.address], data)), [{ recipient: ALICE.address, outcome: 'delivered' }]);
  const entries = good.last?.transcript.entries ?? [];
  assert.ok(entries.some((e) => e.direction === 'C' && e.line === 'STARTTLS' && e.phase === 'plaintext'), 'STARTTLS sent');
  const mail = entries.find((e) => e.direction === 'C' && e.line.startsWith('MAIL FROM:'));
  assert.equal(mail?.phase, 'tls', 'MAIL went inside TLS');
  assert.equal(entries.filter((e) => e.direction === 'C' && e.line.startsWith('LHLO ')).length, 2, 'LHLO again after TLS');
  const msgs = await d.fetchAll(ALICE);
  assert.equal(msgs.length, 1);
  assert.ok(msgs[0]?.equals(stored(data)), 'byte-exact over TLS');

  const before = await d.lmtpInput();
  // Dovecot's rawlog shows what it decrypted: the MAIL after STARTTLS is there (so its absence
  // below means it was never sent, not that the rawlog cannot see inside TLS).
  assert.match(before, /^STARTTLS\r\n(?:[^]*\r\n)?MAIL FROM:<sender@remote\.test>/m);
  const rawlogFiles = async (): Promise<string[]> => (await readdir(join(d.dir, 'rawlog'))).filter((n) => n.endsWith('.in'));
  const oldFiles = new Set(await rawlogFiles());
  const id2 = queueId();
  const bad = createLmtpTarget(spec, { level: 'verify', ca: ca.certPem, servername: 'other.example.test', timeouts: TIMEOUTS });
  const out = await bad.deliver(delivery(id2, [ALICE.address, BOB.address], message(id2, [ALICE.address, BOB.address], ['must not arrive'])));
  for (const o of out) {
    assert.equal(o.outcome, 'deferred', JSON.stringify(o));
    assert.ok(o.outcome === 'deferred' && o.error.includes('TLS_VERIFY_FAILED'), JSON.stringify(o));
  }
  assert.ok(!(bad.last?.transcript.entries ?? []).some((e) => e.direction === 'C' && e.line.startsWith('MAIL')), 'no MAIL written by us');
  // Dovecot's own record: the new connection got as far as STARTTLS, never to MAIL. Its rawlog
  // file is new (one per connection) and written as Dovecot goes: wait until STARTTLS shows.
  let after = '';
  for (let tries = 0; tries < 100 && !/^[\d.]+ STARTTLS\r?$/m.test(after); tries++) {
    if (tries > 0) await new Promise((r) => setTimeout(r, 50));
    const fresh = (await rawlogFiles()).filter((n) => !oldFiles.has(n)).sort();
    after = (await Promise.all(fresh.map((n) => readFile(join(d.dir, 'rawlog', n), 'latin1')))).join('');
  }
  assert.match(after, /^[\d.]+ STARTTLS\r?$/m);
  assert.doesNotMatch(after, /MAIL FROM/);
  assert.equal((await d.fetchAll(ALICE)).length, 1, 'nothing new for alice');
  assert.deepEqual(await d.fetchAll(BOB), []);
});

/**
 * What Dovecot cannot be made to do on demand: a 4xx for one recipient after DATA, and the
 * connection lost between two per-recipient replies. A scripted LMTP peer (raw bytes on
 * 127.0.0.1:0) answers exactly that.
 */
test('scripted peer: 250 / 452 after DATA map per recipient; a connection lost between replies keeps the answers already read', async (t) => {
  const lmtpDialog = async (peer: ScriptPeer, endOfData: string[], thenClose: boolean): Promise<void> => {
    await peer.write('220 scripted LMTP\r\n');
    await peer.expect('LHLO ');
    await peer.write('250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n');
    await peer.expect('MAIL FROM:<sender@remote.test>');
    for (let i = 0; i < 3; i++) await peer.expect('RCPT TO:');
    await peer.write('250 2.1.0 ok\r\n250 2.1.5 ok\r\n250 2.1.5 ok\r\n250 2.1.5 ok\r\n');
    await peer.expect('DATA');
    await peer.write('354 go\r\n');
    await peer.readData();
    await peer.write(endOfData.join(''));
    if (thenClose) peer.destroy();
    else await peer.expect('QUIT').then(() => peer.write('221 bye\r\n'));
  };
  const server = await startScriptedServer([
    (peer) => lmtpDialog(peer, ['250 2.0.0 <a@example.test> saved\r\n', '452 4.2.2 <b@example.test> mailbox full, try later\r\n', '250 2.0.0 <c@example.test> saved\r\n'], false),
    (peer) => lmtpDialog(peer, ['250 2.0.0 <a@example.test> saved\r\n'], true),
  ]);
  t.after(() => server.close());
  const rcpts = ['a@example.test', 'b@example.test', 'c@example.test'];
  const target = createLmtpTarget({ kind: 'lmtp', host: '127.0.0.1', port: server.port }, { timeouts: TIMEOUTS });
  const id = queueId();
  const data = message(id, rcpts, ['scripted']);

  const first = await target.deliver(delivery(id, rcpts, data));
  assert.deepEqual(first[0], { recipient: 'a@example.test', outcome: 'delivered' });
  assert.ok(first[1]?.outcome === 'deferred' && /end of data: 452 4\.2\.2 .*mailbox full/.test(first[1].error), JSON.stringify(first));
  assert.deepEqual(first[2], { recipient: 'c@example.test', outcome: 'delivered' });
  // The envelope went as one pipelined group (RFC 2920): MAIL and the RCPTs in one write.
  assert.ok(server.log.some((c) => c.connection === 1 && /^MAIL FROM:[^\r]*\r\nRCPT TO:<a@example\.test>\r\nRCPT TO:<b@example\.test>\r\nRCPT TO:<c@example\.test>\r\n$/.test(c.data)), 'pipelined envelope');

  const second = await target.deliver(delivery(id, rcpts, data));
  assert.deepEqual(second[0], { recipient: 'a@example.test', outcome: 'delivered' }, 'the answer read before the break stands: no redelivery to a');
  for (const o of second.slice(1)) {
    assert.equal(o.outcome, 'deferred', JSON.stringify(o));
    assert.ok(o.outcome === 'deferred' && /CONNECTION_CLOSED during or after the message content \(may have been delivered\)/.test(o.error), JSON.stringify(o));
  }
  assert.deepEqual(await server.settled(), [], 'both scripts ran to their end');
});

test('abort while waiting for the end-of-data replies: every recipient deferred, no throw, the connection dropped', async (t) => {
  const controller = new AbortController();
  const server = await startScriptedServer(async (peer) => {
    await peer.write('220 scripted LMTP\r\n');
    await peer.expect('LHLO ');
    await peer.write('250 scripted\r\n');
    await peer.expect('MAIL FROM:');
    await peer.write('250 2.1.0 ok\r\n');
    await peer.expect('RCPT TO:');
    await peer.write('250 2.1.5 ok\r\n');
    await peer.expect('DATA');
    await peer.write('354 go\r\n');
    await peer.readData();
    // A delivery agent that never answers: the caller gives up (queue shutdown), not the deadline.
    controller.abort();
    await peer.waitClose();
  });
  t.after(() => server.close());
  const id = queueId();
  const out = await createLmtpTarget({ kind: 'lmtp', host: '127.0.0.1', port: server.port }, { timeouts: TIMEOUTS }).deliver(delivery(id, [ALICE.address], message(id, [ALICE.address], ['stalled'])), controller.signal);
  assert.equal(out.length, 1);
  assert.ok(out[0]?.outcome === 'deferred' && /delivery aborted/.test(out[0].error), JSON.stringify(out));
  assert.deepEqual(await server.settled(), []);
});

test('a server that offers DSN gets the queue id as ENVID= (RFC 3461 §4.4), the idempotency key', async (t) => {
  const id = queueId();
  let mailLine = '';
  const server = await startScriptedServer(async (peer) => {
    await peer.write('220 scripted LMTP\r\n');
    await peer.expect('LHLO ');
    await peer.write('250-scripted\r\n250 DSN\r\n');
    mailLine = await peer.expect('MAIL FROM:');
    await peer.write('250 2.1.0 ok\r\n');
    await peer.expect('RCPT TO:');
    await peer.write('250 2.1.5 ok\r\n');
    await peer.expect('DATA');
    await peer.write('354 go\r\n');
    await peer.readData();
    await peer.write('250 2.0.0 saved\r\n');
    await peer.expect('QUIT');
    await peer.write('221 bye\r\n');
  });
  t.after(() => server.close());
  const target = createLmtpTarget({ kind: 'lmtp', host: '127.0.0.1', port: server.port }, { timeouts: TIMEOUTS });
  assert.deepEqual(await target.deliver(delivery(id, [ALICE.address], message(id, [ALICE.address], ['dsn']))), [{ recipient: ALICE.address, outcome: 'delivered' }]);
  assert.equal(mailLine, `MAIL FROM:<${SENDER}> ENVID=${id}`);
  assert.equal(target.last?.envIdSent, true);
  assert.deepEqual(await server.settled(), []);
});
