/**
 * DSN parameters (RFC 3461) through a real server into the store (raw client: the installed swaks,
 * 20201014, has no DSN options): ENVID (xtext-decoded) and RET on the message, NOTIFY and ORCPT
 * on each queued recipient; a recipient that gave neither has none.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer } from '../helpers/server.js';
import { WireClient } from '../helpers/wire.js';

const ALICE = { address: 'alice@postseal.test', password: 'correct horse battery' };

test('ENVID/RET and NOTIFY/ORCPT given on submission are stored with the message and its queue rows', async () => {
  const s = await startTestServer({ users: [ALICE] });
  const c = await WireClient.connectTls(s.port('submissions'), s.caPem);
  try {
    assert.match((await c.readReply())[0] ?? '', /^220 /);
    assert.ok((await c.cmd('EHLO client.example')).some((l) => l === '250-DSN'));
    assert.match((await c.cmd(`AUTH PLAIN ${Buffer.from(`\0${ALICE.address}\0${ALICE.password}`).toString('base64')}`))[0] ?? '', /^235 /);
    assert.match((await c.cmd('MAIL FROM:<alice@postseal.test> RET=HDRS ENVID=id+2B1+3D2'))[0] ?? '', /^250 /);
    assert.match((await c.cmd('RCPT TO:<bob@example.net> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;Bob+2Bx@example.net'))[0] ?? '', /^250 /);
    assert.match((await c.cmd('RCPT TO:<carol@example.net>'))[0] ?? '', /^250 /);
    assert.match((await c.cmd('DATA'))[0] ?? '', /^354 /);
    const done = await c.cmd('Subject: dsn\r\n\r\nhello\r\n.');
    const id = /queued as (\S+)/.exec(done[0] ?? '')?.[1];
    assert.ok(id, JSON.stringify(done));
    const rows = s.running.store.listQueue().filter((e) => e.id === id);
    const bob = rows.find((r) => r.recipient === 'bob@example.net');
    const carol = rows.find((r) => r.recipient === 'carol@example.net');
    assert.deepEqual(bob?.dsn, { envId: 'id+1=2', ret: 'HDRS', notify: ['SUCCESS', 'DELAY'], orcpt: 'rfc822;Bob+x@example.net' });
    assert.deepEqual(carol?.dsn, { envId: 'id+1=2', ret: 'HDRS', notify: null, orcpt: null });
  } finally {
    c.close();
    await s.close();
  }
});
