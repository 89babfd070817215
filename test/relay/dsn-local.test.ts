/**
 * DSN finished (issue 11 item 4), end to end through a real postseal server on 127.0.0.1:0 with a
 * raw SMTP client (the installed swaks, 20201014, has no DSN options):
 * - a local recipient with NOTIFY=SUCCESS gets a success DSN (Action: delivered, RFC 3461 §5.2.2)
 *   in the sender's mailbox, committed before the 250; parsed as an RFC 6522 multipart/report
 *   and its RFC 3464 fields checked; NOTIFY=NEVER, no NOTIFY and the null sender get none;
 * - a remote sender's success DSN goes out through the queue to a real receiver (aiosmtpd);
 * - NOTIFY=SUCCESS to a receiver without DSN (aiosmtpd) → our 'relayed' DSN (RFC 3461 §4.1);
 * - RET=FULL of a 200 KB message → headers only, said in the text (relay.bounceSizeLimit);
 * - the local success DSN is DKIM-signed like a bounce (dkimpy verifies it).
 */
import { test, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { WireClient } from '../helpers/wire.js';
import { issueCert } from '../helpers/certs.js';
import { peerMissing, requirePeer, startAiosmtpdReceiver, type Receiver } from '../helpers/receivers.js';
import { buildBounce, BOUNCE_SIZE_LIMIT } from '../../src/relay/bounce.js';
import { generateKey } from '../../src/auth/dkim-keys.js';
import { dkimpyVerify, dkimSignatures, hasDkimpy, publishedTxt } from './dkimpy.js';

const ALICE = { address: 'alice@postseal.test', password: 'correct horse battery' };

let server: TestServer;
/** A second postseal that serves only its own domain: it refuses refuse.example with 550. */
let refuser: TestServer;
let aio: Receiver | null = null;

before(async () => {
  refuser = await startTestServer({ configure: (cfg) => void (cfg.auth.verify = false) });
  if (peerMissing('aiosmtpd') === null) aio = await startAiosmtpdReceiver({ hostname: 'aio.example', pair: await issueCert(refuser.ca, { names: ['localhost'] }) });
  server = await startTestServer({
    users: [ALICE],
    configure: (cfg) => {
      cfg.auth.verify = false;
      cfg.limits.spoolThreshold = 4096;
      // The runner is driven by the tests (runOnce) and by the server's kick; never by the clock.
      cfg.relay.intervalMs = 2 ** 31 - 1;
      cfg.relay.routes = {
        'refuse.example': `127.0.0.1:${refuser.port('mx')}`,
        ...(aio ? { 'remote.example': `127.0.0.1:${aio.port}`, 'nodsn.example': `127.0.0.1:${aio.port}` } : {}),
      };
    },
  });
});

after(async () => {
  await server.close();
  await refuser.close();
  await aio?.close();
});

// --- a small RFC 6522 / RFC 3464 reader -----------------------------------------------------------

interface Part {
  headers: Map<string, string>;
  body: string;
}

function parseEntity(text: string): Part {
  const end = text.indexOf('\r\n\r\n');
  assert.ok(end >= 0, 'entity has a header section');
  const headers = new Map<string, string>();
  for (const line of text.slice(0, end).replace(/\r\n[ \t]+/g, ' ').split('\r\n')) {
    const colon = line.indexOf(':');
    assert.ok(colon > 0, `header line ${JSON.stringify(line)}`);
    headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
  }
  return { headers, body: text.slice(end + 4) };
}

interface Report {
  top: Map<string, string>;
  text: string;
  perMessage: Map<string, string>;
  perRecipient: Array<Map<string, string>>;
  returned: Part & { type: string };
}

/** Parses a DSN: multipart/report; report-type=delivery-status with its three parts. */
function parseReport(data: Buffer | string): Report {
  const msg = parseEntity(data.toString());
  const ct = msg.headers.get('content-type') ?? '';
  assert.match(ct, /^multipart\/report;/i);
  assert.match(ct, /report-type=delivery-status/i);
  const boundary = /boundary="?([^";]+)"?/i.exec(ct)?.[1];
  assert.ok(boundary, ct);
  const closing = msg.body.indexOf(`\r\n--${boundary}--`);
  assert.ok(closing >= 0, 'closing boundary');
  const parts = msg.body.slice(0, closing).split(`\r\n--${boundary}\r\n`).slice(1).map(parseEntity);
  assert.equal(parts.length, 3, 'text, delivery-status, returned message');
  const [text, status, returned] = parts as [Part, Part, Part];
  assert.match(text.headers.get('content-type') ?? '', /^text\/plain/);
  assert.equal(status.headers.get('content-type'), 'message/delivery-status');
  // RFC 3464 §2.1: groups of fields separated by blank lines; the first is per-message.
  const groups = status.body
    .split(/\r\n\r\n/)
    .map((g) => g.trim())
    .filter((g) => g !== '')
    .map((g) => new Map(g.replace(/\r\n[ \t]+/g, ' ').split('\r\n').map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()] as [string, string])));
  const [perMessage, ...perRecipient] = groups;
  assert.ok(perMessage);
  return { top: msg.headers, text: text.body, perMessage, perRecipient, returned: { ...returned, type: returned.headers.get('content-type') ?? '' } };
}

// --- SMTP helpers ----------------------------------------------------------------------------------

async function ok(c: WireClient, line: string, code = '250'): Promise<string> {
  const r = await c.cmd(line);
  assert.ok((r[0] ?? '').startsWith(code + ' '), `${line} → ${JSON.stringify(r)}`);
  return r[r.length - 1] ?? '';
}

/** One message over the mx listener (no AUTH: local recipients only). Returns the queue id. */
async function sendMx(mail: string, rcpts: string[], content: string): Promise<string> {
  const c = await WireClient.connect(server.port('mx'));
  try {
    assert.match((await c.readReply())[0] ?? '', /^220 /);
    assert.ok((await c.cmd('EHLO client.example')).includes('250-DSN'));
    await ok(c, mail);
    for (const r of rcpts) await ok(c, r);
    await ok(c, 'DATA', '354');
    const done = await ok(c, content + '\r\n.');
    const id = /queued as (\S+)/.exec(done)?.[1];
    assert.ok(id, done);
    return id;
  } finally {
    c.close();
  }
}

/** One message over submissions (implicit TLS + AUTH: any recipient). Returns the queue id. */
async function submit(mail: string, rcpts: string[], content: string | Buffer): Promise<string> {
  const c = await WireClient.connectTls(server.port('submissions'), server.caPem);
  try {
    assert.match((await c.readReply())[0] ?? '', /^220 /);
    await c.cmd('EHLO client.example');
    await ok(c, `AUTH PLAIN ${Buffer.from(`\0${ALICE.address}\0${ALICE.password}`).toString('base64')}`, '235');
    await ok(c, mail);
    for (const r of rcpts) await ok(c, r);
    await ok(c, 'DATA', '354');
    c.write(content);
    const done = await ok(c, '\r\n.');
    const id = /queued as (\S+)/.exec(done)?.[1];
    assert.ok(id, done);
    return id;
  } finally {
    c.close();
  }
}

function mailbox(address: string): Array<{ id: string; mailFrom: string; data: string }> {
  const store = server.running.store;
  return store.listMessages({ mailbox: address }).map((m) => ({ id: m.id, mailFrom: m.mailFrom, data: store.getMessage(m.id)?.data.toString() ?? '' }));
}

/** Reports in `mailbox` that name `marker` (a per-test Subject or ENVID). */
function reportsFor(address: string, marker: string): string[] {
  return mailbox(address)
    .filter((m) => m.data.includes(marker))
    .map((m) => {
      assert.equal(m.mailFrom, '', 'a DSN comes from the null sender (RFC 3461 §6.2)');
      return m.data;
    });
}

function hasAio(t: TestContext): boolean {
  return requirePeer(t, 'aiosmtpd') && aio !== null;
}

// --- 1. local recipients ---------------------------------------------------------------------------

test('NOTIFY=SUCCESS,FAILURE ORCPT ENVID to a local mailbox → a delivered DSN in the local sender\'s mailbox, before the 250', async () => {
  const id = await sendMx('MAIL FROM:<carol@postseal.test> ENVID=abc RET=FULL', ['RCPT TO:<bob@postseal.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@y', 'RCPT TO:<dan@postseal.test>'], 'Subject: local-success-1\r\n\r\nbody local-success-1');
  // The report is committed before the 250: no waiting.
  const [dsn, more] = reportsFor('carol@postseal.test', 'local-success-1');
  assert.ok(dsn, 'a report in the sender\'s mailbox');
  assert.equal(more, undefined, 'one report');
  const r = parseReport(dsn);
  assert.equal(r.top.get('subject'), 'Successful Mail Delivery Report');
  assert.equal(r.top.get('to'), '<carol@postseal.test>');
  assert.equal(r.top.get('auto-submitted'), 'auto-replied');
  assert.equal(r.perMessage.get('reporting-mta'), 'dns; mail.postseal.test');
  assert.equal(r.perMessage.get('original-envelope-id'), 'abc');
  assert.equal(r.perMessage.get('x-postseal-queue-id'), id);
  assert.equal(r.perRecipient.length, 1, 'dan gave no NOTIFY: not in the report');
  const rcpt = r.perRecipient[0];
  assert.equal(rcpt?.get('final-recipient'), 'rfc822; bob@postseal.test');
  assert.equal(rcpt?.get('original-recipient'), 'rfc822; x@y');
  assert.equal(rcpt?.get('action'), 'delivered');
  assert.equal(rcpt?.get('status'), '2.0.0');
  assert.equal(rcpt?.has('remote-mta'), false);
  // RFC 3461 §4.3: RET applies to failure DSNs; a success report returns the headers.
  assert.equal(r.returned.type, 'text/rfc822-headers');
  assert.match(r.returned.body, /^Subject: local-success-1\r$/m);
  assert.doesNotMatch(r.returned.body, /body local-success-1/);
  // The message itself reached both mailboxes.
  assert.ok(mailbox('bob@postseal.test').some((m) => m.id === id));
  assert.ok(mailbox('dan@postseal.test').some((m) => m.id === id));
});

test('NOTIFY=NEVER, no NOTIFY, NOTIFY=FAILURE and the null sender: no success DSN', async () => {
  const before = mailbox('carol@postseal.test').length;
  await sendMx('MAIL FROM:<carol@postseal.test> ENVID=never', ['RCPT TO:<bob@postseal.test> NOTIFY=NEVER ORCPT=rfc822;x@y'], 'Subject: local-never\r\n\r\nx');
  await sendMx('MAIL FROM:<carol@postseal.test>', ['RCPT TO:<bob@postseal.test>'], 'Subject: local-default\r\n\r\nx');
  await sendMx('MAIL FROM:<carol@postseal.test>', ['RCPT TO:<bob@postseal.test> NOTIFY=FAILURE,DELAY'], 'Subject: local-failure-only\r\n\r\nx');
  assert.equal(mailbox('carol@postseal.test').length, before, 'nothing new in the sender\'s mailbox');
  // RFC 3461 §6.2: never a DSN for the null reverse-path, whatever NOTIFY says.
  const total = server.running.store.listMessages({}).length;
  const id = await sendMx('MAIL FROM:<> ENVID=nullsender', ['RCPT TO:<bob@postseal.test> NOTIFY=SUCCESS'], 'Subject: local-null\r\n\r\nx');
  assert.equal(server.running.store.listMessages({}).length, total + 1, 'only the message itself was stored');
  assert.ok(mailbox('bob@postseal.test').some((m) => m.id === id));
});

test('a spooled (large) message: the delivered DSN returns its header section read from the spool file', async () => {
  // Past limits.spoolThreshold (4096 here): the body goes to a spool file as it arrives.
  const big = 'Subject: local-spooled\r\nX-Big: yes\r\n\r\n' + ('z'.repeat(76) + '\r\n').repeat(900) + 'end';
  await sendMx('MAIL FROM:<carol@postseal.test> ENVID=spooled', ['RCPT TO:<bob@postseal.test> NOTIFY=SUCCESS'], big);
  const [dsn] = reportsFor('carol@postseal.test', 'Original-Envelope-Id: spooled');
  assert.ok(dsn);
  const r = parseReport(dsn);
  assert.equal(r.perRecipient[0]?.get('action'), 'delivered');
  assert.match(r.returned.body, /^Subject: local-spooled\r$/m);
  assert.match(r.returned.body, /^X-Big: yes\r$/m);
  assert.ok(Buffer.byteLength(dsn) < 16 * 1024, 'headers only, not the 64 KiB body');
});

test('a remote sender\'s success DSN for a local mailbox goes out through the queue to its server (aiosmtpd)', async (t) => {
  if (!hasAio(t) || !aio) return;
  await sendMx('MAIL FROM:<erin@remote.example> ENVID=remote-envid-42', ['RCPT TO:<bob@postseal.test> NOTIFY=SUCCESS ORCPT=rfc822;Bob+2Bold@remote.example'], 'Subject: local-remote-sender\r\n\r\nx');
  const queued = server.running.store.listQueue().filter((e) => e.recipient === 'erin@remote.example');
  assert.equal(queued.length, 1, 'the report is queued for the sender');
  assert.equal(queued[0]?.mailFrom, '');
  await server.running.relay?.runOnce();
  const got = await aio.waitFor('remote-envid-42');
  const r = parseReport(got.data.toString().replace(/\r?\n/g, '\r\n'));
  assert.equal(r.perMessage.get('original-envelope-id'), 'remote-envid-42');
  assert.equal(r.perRecipient[0]?.get('final-recipient'), 'rfc822; bob@postseal.test');
  assert.equal(r.perRecipient[0]?.get('original-recipient'), 'rfc822; Bob+old@remote.example');
  assert.equal(r.perRecipient[0]?.get('action'), 'delivered');
});

test('aliases: a RCPT expanded to a local mailbox gets a delivered DSN; one forwarded elsewhere gets none here, its target\'s relayed DSN names it as Original-Recipient', async (t) => {
  await server.running.store.addAlias('team@postseal.test', ['bob@postseal.test']);
  await sendMx('MAIL FROM:<carol@postseal.test> ENVID=alias-local', ['RCPT TO:<team@postseal.test> NOTIFY=SUCCESS'], 'Subject: alias-local\r\n\r\nx');
  const [local] = reportsFor('carol@postseal.test', 'Original-Envelope-Id: alias-local');
  assert.ok(local);
  assert.equal(parseReport(local).perRecipient[0]?.get('final-recipient'), 'rfc822; team@postseal.test');
  assert.equal(parseReport(local).perRecipient[0]?.get('action'), 'delivered');
  if (!hasAio(t) || !aio) return;
  await server.running.store.addAlias('fwd@postseal.test', ['out@nodsn.example']);
  await sendMx('MAIL FROM:<carol@postseal.test> ENVID=alias-fwd', ['RCPT TO:<fwd@postseal.test> NOTIFY=SUCCESS'], 'Subject: alias-fwd\r\n\r\nbody alias-fwd');
  assert.deepEqual(reportsFor('carol@postseal.test', 'Original-Envelope-Id: alias-fwd'), [], 'no local report for a forwarded RCPT');
  await server.running.relay?.runOnce();
  await aio.waitFor('body alias-fwd');
  const reports = reportsFor('carol@postseal.test', 'Original-Envelope-Id: alias-fwd');
  assert.equal(reports.length, 1, 'exactly one report: the relayed one');
  const r = parseReport(reports[0] ?? '');
  assert.equal(r.perRecipient[0]?.get('final-recipient'), 'rfc822; out@nodsn.example');
  assert.equal(r.perRecipient[0]?.get('original-recipient'), 'rfc822; fwd@postseal.test');
  assert.equal(r.perRecipient[0]?.get('action'), 'relayed');
});

// --- 2. remote SUCCESS ----------------------------------------------------------------------------

test('NOTIFY=SUCCESS relayed to a server without DSN (aiosmtpd) → our report says Action: relayed', async (t) => {
  if (!hasAio(t) || !aio) return;
  const id = await submit('MAIL FROM:<alice@postseal.test> ENVID=relayed-7', ['RCPT TO:<dave@nodsn.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;dave@orig.example'], 'Subject: relayed-success\r\n\r\nbody relayed-success\r\n');
  const s = await server.running.relay?.runOnce();
  assert.ok(s && s.delivered >= 1, JSON.stringify(s));
  const delivered = await aio.waitFor('body relayed-success');
  assert.match(delivered.data.toString(), /Subject: relayed-success/);
  const [dsn] = reportsFor(ALICE.address, 'relayed-7');
  assert.ok(dsn, 'a relayed report in the sender\'s mailbox');
  const r = parseReport(dsn);
  assert.equal(r.perMessage.get('original-envelope-id'), 'relayed-7');
  assert.equal(r.perMessage.get('x-postseal-queue-id'), id);
  const rcpt = r.perRecipient[0];
  assert.equal(rcpt?.get('final-recipient'), 'rfc822; dave@nodsn.example');
  assert.equal(rcpt?.get('original-recipient'), 'rfc822; dave@orig.example');
  assert.equal(rcpt?.get('action'), 'relayed');
  assert.match(rcpt?.get('status') ?? '', /^2\.\d\.\d$/);
  assert.equal(rcpt?.get('remote-mta'), 'dns; 127.0.0.1');
});

// --- 3. RET=FULL size cap --------------------------------------------------------------------------

test('RET=FULL of a 200 KB message that bounces → headers only (text/rfc822-headers), and the text says why', async () => {
  const line = 'x'.repeat(98) + '\r\n';
  const content = Buffer.from(`Subject: big-bounce\r\n\r\n${line.repeat(2000)}big-bounce-body-end\r\n`);
  assert.ok(content.length > 200_000);
  const id = await submit('MAIL FROM:<alice@postseal.test> RET=FULL ENVID=big-bounce', ['RCPT TO:<nobody@refuse.example>'], content);
  const s = await server.running.relay?.runOnce();
  assert.ok(s && s.failed >= 1, JSON.stringify(s));
  const [dsn] = reportsFor(ALICE.address, 'Original-Envelope-Id: big-bounce');
  assert.ok(dsn, 'a bounce in the sender\'s mailbox');
  const r = parseReport(dsn);
  assert.equal(r.perMessage.get('x-postseal-queue-id'), id);
  assert.equal(r.perRecipient[0]?.get('action'), 'failed');
  assert.match(r.perRecipient[0]?.get('status') ?? '', /^5\.\d\.\d+$/);
  assert.equal(r.returned.type, 'text/rfc822-headers');
  assert.match(r.returned.body, /^Subject: big-bounce\r$/m);
  assert.doesNotMatch(dsn, /big-bounce-body-end/);
  assert.match(r.text, /headers only/);
  assert.match(r.text, new RegExp(`larger than the limit of ${BOUNCE_SIZE_LIMIT} bytes`));
  assert.ok(dsn.length < 20_000, `bounce is ${dsn.length} bytes`);
});

test('bounce size limit: an original of exactly the limit is returned whole, one byte more → headers only', () => {
  const make = (size: number): Buffer => {
    const head = 'Subject: edge\r\n\r\n';
    return Buffer.from(head + 'b'.repeat(size - head.length - 2) + '\r\n');
  };
  const bounce = (original: Buffer, sizeLimit?: number): Report =>
    parseReport(
      buildBounce({
        reportingMta: 'mta.example',
        originalSender: 's@example.org',
        originalId: 'Q1',
        arrivalDate: new Date(),
        original,
        ret: 'FULL',
        ...(sizeLimit !== undefined ? { sizeLimit } : {}),
        recipients: [{ recipient: 'r@example.net', status: '5.1.1', action: 'failed', remoteMta: null, diagnostic: '550 5.1.1 no', lastAttempt: new Date() }],
      })?.data ?? '',
    );
  assert.equal(bounce(make(BOUNCE_SIZE_LIMIT)).returned.type, 'message/rfc822');
  assert.equal(bounce(make(BOUNCE_SIZE_LIMIT + 1)).returned.type, 'text/rfc822-headers');
  assert.equal(bounce(make(1000), 999).returned.type, 'text/rfc822-headers');
  assert.equal(bounce(make(1000), 1000).returned.type, 'message/rfc822');
});

test('the local success DSN is DKIM-signed when made (d=postseal.test) and dkimpy verifies it', { skip: !hasDkimpy && 'python3-dkim not installed (.ci/run installs it)' }, async () => {
  // Keys for the configured domain; MAILER-DAEMON@mail.postseal.test signs with its parent's.
  generateKey(server.dataDir, 'postseal.test', { algorithm: 'ed25519', selector: 'dsn1' });
  await sendMx('MAIL FROM:<carol@postseal.test> ENVID=signed-dsn', ['RCPT TO:<bob@postseal.test> NOTIFY=SUCCESS'], 'Subject: local-signed\r\n\r\nx');
  const [dsn] = reportsFor('carol@postseal.test', 'Original-Envelope-Id: signed-dsn');
  assert.ok(dsn);
  const data = Buffer.from(dsn);
  assert.match(dkimSignatures(data)[0] ?? '', /d=postseal\.test; s=dsn1;/);
  assert.equal(await dkimpyVerify(data, publishedTxt(server.dataDir, 'postseal.test')), 'pass');
  assert.equal(parseReport(dsn).perRecipient[0]?.get('action'), 'delivered');
});
