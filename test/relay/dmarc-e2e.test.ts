/**
 * Issue 11's "Done when", end to end: alice@sender.test submits on 587 (nodemailer, STARTTLS,
 * AUTH PLAIN) to a sending postseal that holds an Ed25519 and an RSA key made by the real CLI
 * (`postseal dkim keygen`); it signs at submission and its queue runner relays the message to a
 * receiving postseal (mx listener, auth.verify, auth.dmarcEnforce) whose resolver is a test DNS
 * server publishing what `postseal dns-records sender.test` prints (MX, SPF `mx -all`, both DKIM
 * keys, DMARC raised from p=none to p=reject as its note says), plus the A record of the MX host
 * mail.sender.test = 127.0.0.1, the address the sender connects from. The receiver stores it with
 * dkim=pass (both), spf=pass, dmarc=pass, and python3-dkim verifies the stored copy.
 *
 * Then the same message from a second sending postseal with signing off (dkim.enabled=false),
 * while the published MX host's address is one that is not ours (192.0.2.25): SPF fails and there
 * is no aligned signature, so DMARC fails and p=reject makes the receiver refuse it with
 * 550 5.7.1 at the end of DATA; nothing is stored there and the sender bounces it to alice.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import nodemailer from 'nodemailer';
import { listKeys } from '../../src/auth/dkim-keys.js';
import type { ServeConfig } from '../../src/config.js';
import { killAll, runCli } from '../cli/child.js';
import { startDnsServer, type DnsRecord, type DnsServer } from '../helpers/dns-server.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { dkimpyVerify, dkimSignatures, hasDkimpy, publishedTxt } from './dkimpy.js';
import { until } from '../helpers/poll.js';

const ALICE = { address: 'alice@sender.test', password: 'alice submits 587' };
const BOB = 'bob@receiver.test';

/** The records of a `dns-records` zone-file output: MX and TXT lines (comments skipped). */
function zoneRecords(out: string): DnsRecord[] {
  const recs: DnsRecord[] = [];
  for (const line of out.split('\n')) {
    if (line.startsWith(';') || line.trim() === '') continue;
    const m = /^(\S+)\s+IN\s+(MX|TXT)\s+(.*)$/.exec(line);
    assert.ok(m, `unexpected zone line: ${line}`);
    const [, name = '', type, rest = ''] = m;
    if (type === 'MX') {
      const [pref = '', exchange = ''] = rest.trim().split(/\s+/);
      recs.push({ name, type: 'MX', preference: Number(pref), exchange: exchange.replace(/\.$/, '') });
    } else {
      const strings = [...rest.matchAll(/"([^"]*)"/g)].map((s) => s[1] ?? '');
      assert.ok(strings.length > 0, line);
      recs.push({ name, type: 'TXT', data: strings });
    }
  }
  return recs;
}

function message(tag: string): string {
  return [
    'From: Alice <alice@sender.test>',
    `To: <${BOB}>`,
    `Subject: dmarc end to end ${tag}`,
    'Date: Mon, 30 Nov 2026 12:00:00 +0000',
    `Message-ID: <${tag}@sender.test>`,
    '',
    `Hello Bob, this is ${tag}.`,
    '',
  ].join('\r\n');
}

/** Submits on 587 with nodemailer: STARTTLS required, AUTH PLAIN, our CA trusted. */
async function submit(server: TestServer, raw: string): Promise<void> {
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port: server.port('submission'),
    name: 'alice-laptop.sender.test',
    secure: false,
    requireTLS: true,
    tls: { ca: server.caPem, servername: 'localhost', rejectUnauthorized: true },
    auth: { user: ALICE.address, pass: ALICE.password },
    authMethod: 'PLAIN',
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 20_000,
  });
  try {
    const info = await transport.sendMail({ envelope: { from: ALICE.address, to: [BOB] }, raw });
    assert.deepEqual(info.accepted, [BOB]);
  } finally {
    transport.close();
  }
}

describe('DKIM-signed submission passes DMARC p=reject at a verifying receiver; unsigned from an unauthorized host is refused', () => {
  let dns: DnsServer;
  let receiver: TestServer;
  let signer: TestServer;
  let unsigned: TestServer;
  let published: DnsRecord[] = [];

  const sending = (caFile: string, edit: (cfg: ServeConfig) => void = () => undefined) =>
    startTestServer({
      users: [ALICE],
      checkRecipients: true,
      configure: (cfg) => {
        cfg.hostname = 'mail.sender.test';
        cfg.domains = ['sender.test'];
        cfg.auth.verify = false; // nothing arrives on its mx listener here but bounces, made locally
        cfg.relay.routes = { 'receiver.test': `127.0.0.1:${receiver.port('mx')}@localhost` };
        cfg.relay.tlsPolicy = { 'receiver.test': 'verify' };
        cfg.relay.ca = caFile;
        edit(cfg);
      },
    });

  before(async () => {
    dns = await startDnsServer([]);
    receiver = await startTestServer({
      users: [{ address: BOB, password: 'irrelevant password' }],
      checkRecipients: true,
      configure: (cfg) => {
        cfg.hostname = 'mx.receiver.test';
        cfg.domains = ['receiver.test'];
        cfg.relay.dns = [`127.0.0.1:${dns.port}`];
        cfg.auth.verify = true;
        cfg.auth.dmarcEnforce = true;
      },
    });
    const caFile = join(receiver.dataDir, 'ca.pem');
    await writeFile(caFile, receiver.caPem);
    signer = await sending(caFile);
    unsigned = await sending(caFile, (cfg) => void (cfg.dkim.enabled = false));

    // Keys made by the real CLI in the signing server's data directory.
    for (const [alg, sel] of [['ed25519', 'ed1'], ['rsa', 'rsa1']] as const) {
      const r = await runCli(['dkim', 'keygen', 'sender.test', '--algorithm', alg, '--selector', sel, '--data', signer.dataDir]);
      assert.equal(r.code, 0, r.stderr);
    }
    const printed = await runCli(['dns-records', 'sender.test', '--hostname', 'mail.sender.test', '--data', signer.dataDir]);
    assert.equal(printed.code, 0, printed.stderr);
    published = zoneRecords(printed.stdout);
    // What was printed: MX, SPF, both DKIM keys, DMARC (p=none, to be raised), MTA-STS, TLS-RPT.
    assert.deepEqual(published.find((r) => r.name === 'sender.test.' && r.type === 'TXT'), { name: 'sender.test.', type: 'TXT', data: ['v=spf1 mx -all'] });
    assert.ok(published.some((r) => r.type === 'MX' && r.exchange === 'mail.sender.test'));
    assert.deepEqual(published.filter((r) => r.name.endsWith('._domainkey.sender.test.')).map((r) => r.name).sort(), ['ed1._domainkey.sender.test.', 'rsa1._domainkey.sender.test.']);
    const dmarc = published.find((r) => r.name === '_dmarc.sender.test.');
    assert.ok(dmarc?.type === 'TXT' && /\bp=none\b/.test([dmarc.data].flat().join('')));
    // The note says: raise p= to reject once only aligned mail is seen. Done here.
    published = published.map((r) => (r === dmarc ? { ...dmarc, data: [dmarc.data].flat().join('').replace('p=none', 'p=reject') } : r));
    dns.setRecords([...published, { name: 'mail.sender.test', type: 'A', address: '127.0.0.1' }]);
  });
  after(async () => {
    killAll();
    await unsigned?.close();
    await signer?.close();
    await receiver?.close();
    await dns?.close();
  });

  test('submitted on 587, signed Ed25519 + RSA, relayed: stored with dkim=pass (both), spf=pass, dmarc=pass; python3-dkim: pass pass', async () => {
    await submit(signer, message('signed-one'));
    signer.running.relay?.kick();
    const got = await until('the message at bob', () => receiver.running.store.listMessages({ mailbox: BOB }).find((m) => m.mailFrom === ALICE.address), 30_000);
    const stored = receiver.running.store.getMessage(got.id);
    assert.ok(stored);
    const text = stored.data.toString('latin1');
    assert.match(text, /this is signed-one/);
    // The sender's queue delivered it (not a local shortcut) and it was verified on the mx listener.
    assert.equal(stored.summary.listener, 'mx');
    assert.equal(stored.summary.clientAddress, '127.0.0.1');

    const v = stored.summary.authResults;
    assert.ok(v, 'verdicts stored');
    assert.equal(v.spf.result, 'pass');
    assert.equal(v.spf.domain, 'sender.test');
    assert.deepEqual(v.dkim.map((d) => [d.result, d.domain, d.selector]), [['pass', 'sender.test', 'ed1'], ['pass', 'sender.test', 'rsa1']]);
    assert.equal(v.dmarc.result, 'pass');
    assert.equal(v.dmarc.domain, 'sender.test');
    assert.equal(v.dmarc.policy, 'reject');
    assert.equal(stored.summary.quarantine, false);

    // One Authentication-Results header of the receiver, saying the same.
    const head = text.slice(0, text.indexOf('\r\n\r\n')).replace(/\r\n[ \t]+/g, ' ');
    const ars = head.split('\r\n').filter((l) => /^Authentication-Results:/i.test(l));
    assert.equal(ars.length, 1, head);
    const ar = ars[0] ?? '';
    assert.match(ar, /^Authentication-Results: mx\.receiver\.test;/);
    assert.match(ar, /dkim=pass [^;]*header\.d=sender\.test[^;]*header\.s=ed1/);
    assert.match(ar, /dkim=pass [^;]*header\.d=sender\.test[^;]*header\.s=rsa1/);
    assert.match(ar, /spf=pass [^;]*smtp\.mailfrom=alice@sender\.test/);
    assert.match(ar, /dmarc=pass [^;]*header\.from=sender\.test/);

    // Signed once at submission by the sender: both signatures as made there.
    const sigs = dkimSignatures(stored.data);
    assert.equal(sigs.length, 2, head);
    assert.match(sigs[0] ?? '', /a=ed25519-sha256; c=relaxed\/relaxed; d=sender\.test; s=ed1;/);
    assert.match(sigs[1] ?? '', /a=rsa-sha256; c=relaxed\/relaxed; d=sender\.test; s=rsa1;/);

    // The independent verifier on the received copy, with the keys as published.
    if (hasDkimpy) {
      const txt = Object.fromEntries(listKeys(signer.dataDir, 'sender.test').map((k) => [`${k.selector}._domainkey.sender.test`, k.record.join('')]));
      assert.deepEqual(txt, publishedTxt(signer.dataDir, 'sender.test'));
      assert.equal(await dkimpyVerify(stored.data, txt), 'pass pass');
    } else if (process.env.CI === 'true') {
      assert.fail('python3-dkim not installed: .ci/run installs it');
    }
  });

  test('the same message unsigned (dkim.enabled=false) from a host SPF does not allow: 550 5.7.1 by DMARC p=reject, bounced to alice', async () => {
    // The domain's MX host (SPF `mx`) is now elsewhere: 127.0.0.1 is no longer allowed.
    dns.setRecords([...published, { name: 'mail.sender.test', type: 'A', address: '192.0.2.25' }]);
    const before = receiver.running.store.listMessages({ mailbox: BOB }).length;
    await submit(unsigned, message('unsigned-two'));
    // Signing off: stored unsigned in the sender's queue.
    const queued = await until('the queued message', () => unsigned.running.store.listQueue().find((e) => e.recipient === BOB), 30_000);
    assert.deepEqual(dkimSignatures(unsigned.running.store.getMessage(queued.id)?.data ?? Buffer.alloc(0)), []);
    unsigned.running.relay?.kick();

    const bounce = await until('the bounce in alice\'s mailbox', () => unsigned.running.store.listMessages({ mailbox: ALICE.address }).find((m) => m.mailFrom === ''), 30_000);
    const btext = unsigned.running.store.getMessage(bounce.id)?.data.toString('latin1') ?? '';
    assert.match(btext, /^Status: 5\.7\.1\r$/m, btext.slice(0, 3000));
    assert.match(btext, /^Final-Recipient: rfc822; ?bob@receiver\.test\r$/im);
    assert.match(btext, /^Diagnostic-Code: smtp; ?550[ -]5\.7\.1 [^\r]*DMARC policy of sender\.test says reject/m);
    assert.match(btext, /this is unsigned-two|Message-ID: <unsigned-two@sender\.test>/);
    // Refused, not stored at the receiver; the queue entry is finished (a permanent failure).
    assert.equal(receiver.running.store.listMessages({ mailbox: BOB }).length, before);
    assert.equal(unsigned.running.store.listQueue().some((e) => e.recipient === BOB && e.status !== 'failed'), false);
  });
});
