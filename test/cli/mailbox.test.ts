/**
 * `postseal mailbox list [--json]` and `mailbox show ID` against messages a
 * running `postseal serve` accepted: list fields with the TLS facts of the session, and the
 * stored bytes exactly (our Received header, then what the client sent, dot-unstuffed).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { issueCert, makeTestCa, writeKeyPair } from '../helpers/certs.js';
import { WireClient } from '../helpers/wire.js';
import { killAll, mxOnly, queuedId, runCli, sendMessage, startServeChild, startTlsSession, tempDirs } from './child.js';

const dirs = tempDirs();
after(() => {
  killAll();
  dirs.cleanup();
});

interface Listed {
  id: string;
  receivedAt: string;
  mailFrom: string;
  recipients: string[];
  size: number;
  listener: string;
  tls: { protocol: string; cipher: string; sni: string | null } | null;
}

test('mailbox list --json and mailbox show return what the server stored, byte-exact', { timeout: 120_000 }, async () => {
  const dataDir = dirs.make('postseal-mailbox-');
  const empty = await runCli(['mailbox', 'list', '--data', dataDir]);
  assert.notEqual(empty.code, 0, 'listing a data dir without a store should fail');

  const ca = await makeTestCa();
  const { certFile, keyFile } = await writeKeyPair(join(dataDir, 'certs'), await issueCert(ca, { names: ['localhost'] }));
  const server = await startServeChild(mxOnly(dataDir, ['--cert', certFile, '--key', keyFile, '--hostname', 'mail.postseal.test', '--domain', 'postseal.test', '--catch-all']));
  const port = server.port('mx');

  // Over STARTTLS: 8-bit content and a dot-stuffed line.
  const tlsBody = 'From: <a@client.test>\r\nSubject: =?utf-8?q?h=C3=A9?=\r\n\r\nhé, ünïcödé\r\n..leading dot\r\n.\tdot tab\r\nend\r\n';
  const { c } = await startTlsSession(port, { ca: ca.certPem });
  c.write('MAIL FROM:<a@client.test> BODY=8BITMIME\r\nRCPT TO:<Alice@postseal.test>\r\nRCPT TO:<bob@postseal.test>\r\nDATA\r\n');
  for (const want of ['250', '250', '250', '354']) assert.equal((await c.readReply())[0]?.slice(0, 3), want);
  c.write(Buffer.from(tlsBody + '.\r\n', 'utf8'));
  const tlsId = queuedId((await c.readReply())[0] ?? '');
  assert.ok(tlsId);
  c.close();

  // In plaintext.
  const p = await WireClient.connect(port);
  await p.readReply();
  await p.cmd('EHLO plain.client.test');
  const plainId = queuedId(await sendMessage(p, '', 'postmaster@postseal.test', 'Subject: plain\r\n\r\nno tls\r\n'));
  assert.ok(plainId);
  p.close();

  const list = await runCli(['mailbox', 'list', '--data', dataDir, '--json']);
  assert.equal(list.code, 0, list.stderr);
  const items = JSON.parse(list.stdout) as Listed[];
  assert.deepEqual(items.map((m) => m.id), [plainId, tlsId], 'newest first');
  const [plain, secure] = items as [Listed, Listed];
  assert.equal(secure.mailFrom, 'a@client.test');
  assert.deepEqual(secure.recipients, ['alice@postseal.test', 'bob@postseal.test']); // local mailboxes are normalized
  assert.equal(secure.listener, 'mx');
  assert.ok(!Number.isNaN(Date.parse(secure.receivedAt)), secure.receivedAt);
  assert.equal(secure.tls?.protocol, 'TLSv1.3');
  assert.match(secure.tls?.cipher ?? '', /^TLS_(AES|CHACHA20)/);
  assert.equal(secure.tls?.sni, 'localhost');
  assert.equal(plain.mailFrom, '');
  assert.equal(plain.tls, null);

  // show: the Received header, then the exact bytes sent (dot-unstuffed).
  const shown = await runCli(['mailbox', 'show', tlsId, '--data', dataDir]);
  assert.equal(shown.code, 0, shown.stderr);
  // RFC 5321 §4.5.2: the first period of a line is removed ("..x" → ".x", ".\tx" → "\tx").
  const sent = Buffer.from(tlsBody.replace('\r\n..leading', '\r\n.leading').replace('\r\n.\tdot', '\r\n\tdot'), 'utf8');
  const out = shown.stdoutBytes;
  assert.ok(out.subarray(out.length - sent.length).equals(sent), `body differs:\n${out.toString('utf8')}`);
  assert.equal(out.length, secure.size);
  const received = out.subarray(0, out.length - sent.length).toString('latin1');
  // Our Received header, then our Authentication-Results (auth.verify, RFC 8601): nothing is signed.
  assert.match(received, /^Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n\tby mail\.postseal\.test \(postseal\) with ESMTPS id \S+\r\n\t\(using TLSv1\.3 with cipher TLS_\S+\);\r\n\t.+\r\nAuthentication-Results: mail\.postseal\.test;\r\n dkim=none[^]*\r\n$/);
  assert.deepEqual((secure as Listed & { authResults: { dkim: Array<{ result: string }> } | null }).authResults?.dkim.map((d) => d.result), ['none']);
  assert.ok(received.includes(`id ${tlsId}`));
  const shownPlain = await runCli(['mailbox', 'show', plainId, '--data', dataDir]);
  assert.match(shownPlain.stdout, /^Received: from plain\.client\.test \(\[127\.0\.0\.1\]\)\r\n\tby mail\.postseal\.test \(postseal\) with ESMTP id /);
  const shownJson = JSON.parse((await runCli(['mailbox', 'show', plainId, '--data', dataDir, '--json'])).stdout) as { id: string; authResults: { dkim: unknown[] } | null; quarantine: boolean; data: string };
  assert.equal(shownJson.id, plainId);
  assert.equal(shownJson.quarantine, false);
  assert.ok(shownJson.data.endsWith('\r\nSubject: plain\r\n\r\nno tls\r\n'));
  assert.ok(shownPlain.stdout.endsWith('\r\nSubject: plain\r\n\r\nno tls\r\n'));

  // The text listing names the TLS facts too; --mailbox filters; unknown id fails.
  const text = await runCli(['mailbox', 'list', '--data', dataDir]);
  assert.match(text.stdout, new RegExp(`${tlsId} .*TLSv1\\.3 TLS_`));
  assert.match(text.stdout, new RegExp(`${plainId} .*no TLS`));
  assert.match(text.stdout, new RegExp(`${tlsId} .*spf=\\w+ dkim=none dmarc=\\w+ arc=none`));
  const bobs = JSON.parse((await runCli(['mailbox', 'list', '--data', dataDir, '--json', '--mailbox', 'bob@postseal.test'])).stdout) as Listed[];
  assert.deepEqual(bobs.map((m) => m.id), [tlsId]);
  const missing = await runCli(['mailbox', 'show', 'nosuchid', '--data', dataDir]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no message nosuchid/);

  server.signal('SIGTERM');
  assert.deepEqual(await server.waitExit(), { code: 0, signal: null });
});
