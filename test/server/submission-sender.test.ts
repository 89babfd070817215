/**
 * What an authenticated submission leaves in the message, against a real server
 * (startTestServer: SQLite store, real certificate, implicit TLS): the Received header names the
 * login as Postfix does, "(Authenticated sender: alice@postseal.test)", unless
 * received.showAuthenticatedSender is false; a message from mx names nobody. The sender patterns
 * given to the store are what MAIL FROM is checked against, and RCPT on a checked server refuses
 * an unknown local user while the user's own mailbox is accepted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { WireClient } from '../helpers/wire.js';

const ALICE = { address: 'alice@postseal.test', password: 'correct horse battery', senders: ['*@example.org'] };

async function submit(s: TestServer, from: string, to: string): Promise<string> {
  const c = await WireClient.connectTls(s.port('submissions'), s.caPem);
  try {
    assert.match((await c.readReply())[0] ?? '', /^220 /);
    await c.cmd('EHLO client.example');
    assert.match((await c.cmd(`AUTH PLAIN ${Buffer.from(`\0${ALICE.address}\0${ALICE.password}`).toString('base64')}`))[0] ?? '', /^235 /);
    assert.match((await c.cmd(`MAIL FROM:<${from}>`))[0] ?? '', /^250 /);
    assert.match((await c.cmd(`RCPT TO:<${to}>`))[0] ?? '', /^250 /);
    assert.match((await c.cmd('DATA'))[0] ?? '', /^354 /);
    const done = await c.cmd('Subject: hi\r\n\r\nhello\r\n.');
    const id = /queued as (\S+)/.exec(done[0] ?? '')?.[1];
    assert.ok(id, JSON.stringify(done));
    return id;
  } finally {
    c.close();
  }
}

function headerOf(s: TestServer, id: string): string {
  const m = s.running.store.getMessage(id);
  assert.ok(m);
  const text = m.data.toString('utf8');
  return text.slice(0, text.indexOf('\r\n\r\n'));
}

test('Received names the authenticated sender; a pattern-owned sender and a local mailbox are accepted', async () => {
  const s = await startTestServer({ users: [ALICE], checkRecipients: true });
  try {
    const id = await submit(s, 'news@example.org', ALICE.address);
    const head = headerOf(s, id);
    assert.match(head, /^Received: from client\.example \(\[127\.0\.0\.1\]\)\r\n\t\(Authenticated sender: alice@postseal\.test\)\r\n\tby mail\.postseal\.test \(postseal\) with ESMTPSA id /);
    assert.equal(s.running.store.listMessages({ mailbox: ALICE.address }).length, 1);

    // From mx, no AUTH: nobody is named.
    const c = await WireClient.connect(s.port('mx'));
    await c.readReply();
    await c.cmd('EHLO peer.example');
    await c.cmd('MAIL FROM:<someone@example.net>');
    assert.match((await c.cmd('RCPT TO:<ghost@postseal.test>'))[0] ?? '', /^550 5\.1\.1 <ghost@postseal\.test>: Recipient address rejected: User unknown$/);
    await c.cmd(`RCPT TO:<${ALICE.address}>`);
    await c.cmd('DATA');
    const mxId = /queued as (\S+)/.exec((await c.cmd('Subject: in\r\n\r\nhi\r\n.'))[0] ?? '')?.[1];
    c.close();
    assert.ok(mxId);
    assert.doesNotMatch(headerOf(s, mxId), /Authenticated sender/);
  } finally {
    await s.close();
  }
});

test('received.showAuthenticatedSender=false hides the login (the ESMTPSA keyword stays)', async () => {
  const s = await startTestServer({ users: [ALICE], configure: (cfg) => void (cfg.received.showAuthenticatedSender = false) });
  try {
    const head = headerOf(s, await submit(s, ALICE.address, 'friend@postseal.test'));
    assert.doesNotMatch(head, /Authenticated sender/);
    assert.match(head, /with ESMTPSA id /);
  } finally {
    await s.close();
  }
});
