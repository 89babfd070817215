/**
 * The sender test (server/sender-test.ts, issue 14 item 6) against a real serve (mx listener,
 * verification through the test DNS server), with our own client (src/client deliver at levels
 * none/may/encrypt/verify) and swaks as the senders:
 * - a TLS 1.3 sender and a plaintext sender: the report's facts, the page and its JSON, and the
 *   automatic reply (null sender, Auto-Submitted: auto-replied, DKIM-signed, the report URL);
 * - badcert: the first RCPT gets 451 and arms; at level may the second attempt delivers over the
 *   wrong-name certificate ("accepted an unverifiable certificate"); at verify it never delivers;
 * - nostarttls: may falls back to plaintext (reported); encrypt does not deliver;
 * - no reply to a message failing SPF and DKIM, nor to Auto-Submitted mail; the rate limit.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { deliver, uniformTimeouts, type TlsLevel } from '../../src/client/index.js';
import { generateKey } from '../../src/auth/dkim-keys.js';
import { readSenderTestReport, type SenderTestReport } from '../../src/server/sender-test.js';
import { senderTestApp } from '../../src/http/sender-test.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';

let server: TestServer;
let dns: DnsServer;
const SENDERS = ['sender.test', 'plain.test', 'badcert.test', 'subm.test', 'verify.test', 'fallback.test', 'encrypt.test', 'auto.test', 'limited.test', 'swaks.test'];

before(async () => {
  // Each test sends from its own domain: replies are limited to 2 per sender domain and hour.
  dns = await startDnsServer([...SENDERS.map((name) => ({ name, type: 'TXT' as const, data: 'v=spf1 ip4:127.0.0.1 -all' })), { name: 'nospf.test', type: 'TXT', data: 'v=spf1 -all' }]);
  server = await startTestServer({
    users: [{ address: 'frank@subm.test', password: 'frank-password-1' }],
    configure: (cfg) => {
      cfg.domains = ['postseal.test', ...SENDERS, 'nospf.test'];
      cfg.relay.dns = [`127.0.0.1:${dns.port}`];
      cfg.relay.enabled = false;
      cfg.auth.verify = true;
      cfg.http.senderTest = { enabled: true, localPart: 'tls-test', repliesPerDomainPerHour: 2, repliesPerIpPerHour: 100 };
    },
  });
  // The reply is signed by the own-mail signer with postseal.test's key (From: tls-test@postseal.test).
  generateKey(server.dataDir, 'postseal.test', { algorithm: 'ed25519', selector: 'st1' });
});

after(async () => {
  await server.close();
  await dns.close();
});

function message(from: string, extra: string[] = []): string {
  return [`From: <${from}>`, 'To: <tls-test@postseal.test>', 'Subject: sender test', `Message-ID: <${Math.random().toString(36).slice(2)}@sender.test>`, ...extra, '', 'hello', ''].join('\r\n');
}

async function send(level: TlsLevel, to: string, from = 'alice@sender.test', extra: string[] = []): ReturnType<typeof deliver> {
  return deliver({ host: '127.0.0.1', port: server.port('mx'), serverName: 'localhost', level, helo: 'client.sender.test', tls: { ca: server.caPem }, from, to: [to], message: message(from, extra), timeouts: uniformTimeouts(5000) });
}

/** The replies in `mailbox` (a local sender's mailbox), newest last. */
function replies(mailbox: string): Array<{ from: string; text: string }> {
  const s = server.running.store;
  return s.listMessages({ mailbox }).map((m) => ({ from: m.mailFrom, text: s.getMessage(m.id)?.data.toString('utf8') ?? '' })).filter((m) => /Auto-Submitted: auto-replied/.test(m.text));
}

function reportOf(text: string): SenderTestReport {
  const m = /\/sender-test\/([A-Za-z0-9_-]{22})/.exec(text);
  assert.ok(m !== null, text);
  const r = readSenderTestReport(server.dataDir, m[1] ?? '');
  assert.ok(r !== null);
  return r;
}

function testMessages(rcpt: string): number {
  return server.running.store.countMessages({ mailbox: rcpt });
}

test('sender test: a TLS 1.3 sender gets a report (page, JSON) and a signed automatic reply', async () => {
  const r = await send('may', 'tls-test@postseal.test');
  assert.equal(r.ok, true, JSON.stringify(r.error));
  const got = replies('alice@sender.test');
  assert.equal(got.length, 1);
  const reply = got[0]?.text ?? '';
  assert.equal(got[0]?.from, '', 'RFC 3834 §3.3: null envelope sender');
  assert.match(reply, /^DKIM-Signature: [^]*d=postseal\.test/m);
  assert.match(reply, /^From: postseal sender test <tls-test@postseal\.test>$/m);
  assert.match(reply, /^To: <alice@sender\.test>$/m);
  assert.match(reply, /^In-Reply-To: <[^>]+@sender\.test>$/m);
  const rep = reportOf(reply);
  assert.equal(rep.variant, 'plain');
  assert.equal(rep.tls?.protocol, 'TLSv1.3');
  assert.equal(rep.tls?.sni, 'localhost');
  assert.equal(rep.client.ehlo, 'client.sender.test');
  assert.equal(rep.client.address, '127.0.0.1');
  assert.equal(rep.auth?.spf, 'pass');
  assert.equal(rep.reply.sent, true);
  assert.ok(rep.findings.some((f) => f.severity === 'good' && /TLS version TLSv1\.3/.test(f.text)));
  assert.match(reply, /TLS version TLSv1\.3, cipher TLS_/);

  const app = senderTestApp(server.dataDir);
  const page = await app.request(`/sender-test/${rep.id}`);
  assert.equal(page.status, 200);
  const html = await page.text();
  assert.match(html, /TLSv1\.3/);
  assert.match(html, /client\.sender\.test/);
  assert.doesNotMatch(html, /<script/i);
  const json = (await (await app.request(`/sender-test/${rep.id}.json`)).json()) as SenderTestReport;
  assert.deepEqual(json, rep);
  for (const bad of ['AAAAAAAAAAAAAAAAAAAAAA', '..%2F..%2Fetc', 'x']) assert.equal((await app.request(`/sender-test/${bad}`)).status, 404, bad);
});

test('sender test: a plaintext sender (level none) is reported as plaintext', async () => {
  const r = await send('none', 'tls-test@postseal.test', 'bob@plain.test');
  assert.equal(r.ok, true);
  const rep = reportOf(replies('bob@plain.test')[0]?.text ?? '');
  assert.equal(rep.tls, null);
  assert.ok(rep.findings.some((f) => f.severity === 'bad' && /plaintext: no STARTTLS/.test(f.text)));
});

test('sender test badcert: 451 arms; level may then delivers over the wrong-name certificate and is told so', async () => {
  const first = await send('may', 'tls-test+badcert@postseal.test', 'carol@badcert.test');
  assert.equal(first.ok, false);
  assert.match(first.recipients[0]?.reason ?? first.error?.message ?? '', /451|sender test armed/);
  const second = await send('may', 'tls-test+badcert@postseal.test', 'carol@badcert.test');
  assert.equal(second.ok, true, JSON.stringify(second.error));
  assert.equal(second.tls?.verified, false, 'the client saw a certificate it could not verify');
  const rep = reportOf(replies('carol@badcert.test')[0]?.text ?? '');
  assert.equal(rep.variant, 'badcert');
  assert.equal(rep.hostile, 'badcert');
  assert.notEqual(rep.tls, null);
  assert.ok(rep.findings.some((f) => /accepted an unverifiable certificate/.test(f.text)));
  assert.match(replies('carol@badcert.test')[0]?.text ?? '', /^Subject: postseal sender test: accepted an unverifiable certificate$/m);
});

test('sender test badcert: an IP armed on mx gets the real certificate on submission; the hostile one stays for mx', async () => {
  const first = await send('may', 'tls-test+badcert@postseal.test', 'erin@subm.test');
  assert.equal(first.ok, false);
  // The same client on the submission port (STARTTLS required there): verified against our CA.
  // The transaction itself is refused (no AUTH), the handshake is what this checks.
  const sub = await deliver({ host: '127.0.0.1', port: server.port('submission'), serverName: 'localhost', level: 'verify', helo: 'client.subm.test', tls: { ca: server.caPem }, from: 'erin@subm.test', to: ['tls-test+badcert@postseal.test'], message: message('erin@subm.test'), timeouts: uniformTimeouts(5000) });
  assert.equal(sub.tls?.verified, true, JSON.stringify(sub.error));
  // Still armed for mx: the next mx STARTTLS meets the wrong-name certificate (and uses it up).
  const second = await send('may', 'tls-test+badcert@postseal.test', 'erin@subm.test');
  assert.equal(second.ok, true, JSON.stringify(second.error));
  assert.equal(second.tls?.verified, false);
});

test('sender test on mx only: an authenticated submission RCPT to a hostile variant is plain mail (no 451, nothing armed)', async () => {
  const r = await deliver({ host: '127.0.0.1', port: server.port('submission'), serverName: 'localhost', level: 'verify', helo: 'client.subm.test', tls: { ca: server.caPem }, auth: { user: 'frank@subm.test', password: 'frank-password-1' }, from: 'frank@subm.test', to: ['tls-test+nostarttls@postseal.test'], message: message('frank@subm.test'), timeouts: uniformTimeouts(5000) });
  assert.equal(r.ok, true, JSON.stringify(r.recipients[0]?.reason ?? r.error));
  // Nothing armed for this IP: the next mx STARTTLS is the normal one.
  const mx = await send('encrypt', 'tls-test@postseal.test', 'frank@subm.test');
  assert.equal(mx.ok, true, JSON.stringify(mx.error));
  assert.notEqual(mx.tls, null);
});

test('sender test badcert: level verify refuses the wrong-name certificate, nothing is delivered', async () => {
  const before = testMessages('tls-test+badcert@postseal.test');
  const first = await send('verify', 'tls-test+badcert@postseal.test', 'dave@verify.test');
  assert.equal(first.ok, false);
  const second = await send('verify', 'tls-test+badcert@postseal.test', 'dave@verify.test');
  assert.equal(second.ok, false);
  assert.match(second.error?.code ?? '', /TLS_VERIFY_FAILED|TLS/);
  assert.equal(testMessages('tls-test+badcert@postseal.test'), before);
  assert.equal(replies('dave@verify.test').length, 0);
});

test('sender test nostarttls: level may falls back to plaintext (reported); encrypt does not deliver', async () => {
  const first = await send('may', 'tls-test+nostarttls@postseal.test', 'erin@fallback.test');
  assert.equal(first.ok, false);
  const second = await send('may', 'tls-test+nostarttls@postseal.test', 'erin@fallback.test');
  assert.equal(second.ok, true, JSON.stringify(second.error));
  assert.equal(second.tls, null);
  const rep = reportOf(replies('erin@fallback.test')[0]?.text ?? '');
  assert.equal(rep.hostile, 'nostarttls');
  assert.equal(rep.tls, null);
  assert.ok(rep.findings.some((f) => /fell back to plaintext after STARTTLS was refused with 454/.test(f.text)));

  const before = testMessages('tls-test+nostarttls@postseal.test');
  const a = await send('encrypt', 'tls-test+nostarttls@postseal.test', 'frank@encrypt.test');
  assert.equal(a.ok, false);
  const b = await send('encrypt', 'tls-test+nostarttls@postseal.test', 'frank@encrypt.test');
  assert.equal(b.ok, false);
  assert.match(b.error?.code ?? '', /STARTTLS|TLS/);
  assert.equal(testMessages('tls-test+nostarttls@postseal.test'), before);
});

test('sender test: no reply to a message failing SPF and DKIM, nor to Auto-Submitted or list mail', async () => {
  const r = await send('may', 'tls-test@postseal.test', 'mallory@nospf.test');
  assert.equal(r.ok, true);
  assert.equal(replies('mallory@nospf.test').length, 0);
  const auto = await send('may', 'tls-test@postseal.test', 'grace@auto.test', ['Auto-Submitted: auto-generated']);
  assert.equal(auto.ok, true);
  const list = await send('may', 'tls-test@postseal.test', 'heidi@auto.test', ['List-Id: <l.sender.test>']);
  assert.equal(list.ok, true);
  assert.equal(replies('grace@auto.test').length, 0);
  assert.equal(replies('heidi@auto.test').length, 0);
});

test('sender test: replies per sender domain are rate-limited (2 per hour here)', async () => {
  for (const who of ['a', 'b', 'c']) assert.equal((await send('may', 'tls-test@postseal.test', `${who}@limited.test`)).ok, true);
  assert.equal(replies('a@limited.test').length, 1);
  assert.equal(replies('b@limited.test').length, 1);
  assert.equal(replies('c@limited.test').length, 0, 'the third reply to limited.test within the hour is not sent');
});

test('sender test with swaks (pipelining, STARTTLS): the report names its EHLO and that it pipelined', async () => {
  await promisify(execFile)('swaks', ['--server', `127.0.0.1:${server.port('mx')}`, '--helo', 'swaks.sender.test', '--from', 'ivan@swaks.test', '--to', 'tls-test@postseal.test', '--tls', '--pipeline', '--tls-sni', 'localhost', '--h-Subject', 'swaks sender test', '--timeout', '10'], { encoding: 'utf8' });
  const rep = reportOf(replies('ivan@swaks.test')[0]?.text ?? '');
  assert.equal(rep.client.ehlo, 'swaks.sender.test');
  assert.notEqual(rep.tls, null);
  assert.equal(rep.pipelined, true);
  assert.equal(rep.tls?.sni, 'localhost');
});

test('sender test (library): replies per client IP are limited, the counter is per IP; RFC 3834 refusals', async () => {
  const { mkdtemp, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { SenderTest, replyAllowed } = await import('../../src/server/sender-test.js');
  const dir = await mkdtemp(join(tmpdir(), 'postseal-sender-test-'));
  try {
    const t = await SenderTest.create({ localPart: 'tls-test', localDomains: ['postseal.test'], repliesPerDomainPerHour: 100, repliesPerIpPerHour: 1, dataDir: dir, hostname: 'mail.postseal.test' });
    const pass = { spf: { result: 'pass', domain: 'x.test', comment: null }, dkim: [], dkimOmitted: 0, dmarc: { result: 'none', domain: null, policy: null, comment: null }, arc: { result: 'none', comment: null } };
    const msg = (ip: string, from = 'a@x.test', head = 'Subject: t\r\n') => ({ id: 'm', mailFrom: from, localRecipients: ['tls-test@postseal.test'], remoteRecipients: [], data: Buffer.from(`${head}\r\nbody\r\n`), receivedAt: new Date(), listener: 'mx', clientAddress: ip, heloName: 'h', authUser: null, tls: null, requireTls: false, body: null, smtpUtf8: false, envId: null, ret: null, authResults: pass });
    assert.equal((await t.afterAccept(msg('192.0.2.1'), 'm1')).replies.length, 1);
    const second = await t.afterAccept(msg('192.0.2.1'), 'm2');
    assert.equal(second.replies.length, 0);
    assert.match(second.reports[0]?.reply.reason ?? '', /rate limit: 1 replies per hour to client 192\.0\.2\.1/);
    assert.equal((await t.afterAccept(msg('192.0.2.2'), 'm3')).replies.length, 1, 'another client IP has its own count');
    // Never to <>, nor to Auto-Submitted (other than no), list or bulk mail; SPF for another domain does not count.
    assert.match(replyAllowed(msg('192.0.2.9', '')) ?? '', /null envelope sender/);
    assert.equal(replyAllowed(msg('192.0.2.9', 'a@x.test', 'Auto-Submitted: no\r\n')), null);
    assert.match(replyAllowed(msg('192.0.2.9', 'a@x.test', 'Auto-Submitted: auto-replied\r\n')) ?? '', /Auto-Submitted/);
    assert.match(replyAllowed(msg('192.0.2.9', 'a@x.test', 'Precedence: bulk\r\n')) ?? '', /Precedence/);
    assert.match(replyAllowed(msg('192.0.2.9', 'a@x.test', 'Precedence:\r\n  Junk \r\n')) ?? '', /Precedence/, 'a folded value is unfolded');
    assert.match(replyAllowed(msg('192.0.2.9', 'a@x.test', 'List-Id: <talk.lists.x.test>\r\n')) ?? '', /mailing list/);
    assert.match(replyAllowed(msg('192.0.2.9', 'a@x.test', 'Subject: t\r\nAUTO-SUBMITTED: auto-generated\r\n')) ?? '', /Auto-Submitted/, 'field names in any case');
    assert.match(replyAllowed(msg('192.0.2.9', 'a@other.test')) ?? '', /neither SPF nor DKIM passed for other\.test/);
    assert.match(replyAllowed({ ...msg('192.0.2.9'), spooled: { file: 'x', size: 300_000 } }) ?? '', /too large/);
    // A submission (not mx) message gets no report at all.
    assert.equal((await t.afterAccept({ ...msg('192.0.2.3'), listener: 'submission' }, 'm4')).reports.length, 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
