/**
 * The address table at RCPT, against a real server (startTestServer: SQLite store, real sockets on
 * 127.0.0.1:0): aliases to users, aliases of aliases, loops, sub-addressing, the `@domain`
 * catch-all alias, per-domain catch-all, unknown recipients, postmaster, forwarding to an external
 * address from an unauthenticated mx session (queued) while a plain external RCPT is still refused
 * (no open relay), the recipient limit counting final targets, and the submission sender check
 * through aliases. Messages are read back from the store (mailbox entries, queue rows).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { WireClient } from '../helpers/wire.js';

const PASSWORD = 'correct horse battery';
const USERS = ['alice@postseal.test', 'bob@postseal.test', 'carol@postseal.test'].map((address) => ({ address, password: PASSWORD }));

let s: TestServer;
before(async () => {
  s = await startTestServer({
    users: USERS,
    checkRecipients: true,
    configure: (cfg) => {
      cfg.domains = ['postseal.test', 'catchall.test', 'aliased.test'];
      cfg.recipients.catchAllDomains = ['catchall.test'];
      cfg.relay.enabled = false; // queue rows stay queued: the test reads them
      cfg.auth.verify = false;
      cfg.limits.maxRecipients = 100;
    },
  });
  const st = s.running.store;
  await st.addAlias('sales@postseal.test', ['alice@postseal.test', 'bob@postseal.test']);
  await st.addAlias('team@postseal.test', ['sales@postseal.test', 'carol@postseal.test']);
  await st.addAlias('a@postseal.test', ['b@postseal.test']);
  await st.addAlias('b@postseal.test', ['a@postseal.test']);
  await st.addAlias('fwd@postseal.test', ['Someone@Elsewhere.example', 'carol@postseal.test']);
  await st.addAlias('@aliased.test', ['bob@postseal.test']);
  await st.addAlias('crowd@postseal.test', Array.from({ length: 101 }, (_, i) => `r${i}@elsewhere.example`));
  await st.addAlias('carols@postseal.test', ['carol@postseal.test']);
});
after(() => s.close());

async function mx(): Promise<WireClient> {
  const c = await WireClient.connect(s.port('mx'));
  assert.match((await c.readReply())[0] ?? '', /^220 /);
  assert.match((await c.cmd('EHLO peer.example')).at(-1) ?? '', /^250 /);
  return c;
}

/** One message from mx to these recipients (each must get 250); returns the queue id. */
async function deliver(rcpts: string[], rcptParams = ''): Promise<string> {
  const c = await mx();
  try {
    assert.match((await c.cmd('MAIL FROM:<someone@example.net>'))[0] ?? '', /^250 /);
    for (const r of rcpts) assert.match((await c.cmd(`RCPT TO:<${r}>${rcptParams}`))[0] ?? '', /^250 /, r);
    assert.match((await c.cmd('DATA'))[0] ?? '', /^354 /);
    const done = await c.cmd('Subject: table\r\n\r\nhello\r\n.');
    const id = /queued as (\S+)/.exec(done[0] ?? '')?.[1];
    assert.ok(id, JSON.stringify(done));
    return id;
  } finally {
    c.close();
  }
}

/** The reply to one RCPT from mx. */
async function rcptReply(address: string): Promise<string> {
  const c = await mx();
  try {
    await c.cmd('MAIL FROM:<someone@example.net>');
    return (await c.cmd(`RCPT TO:<${address}>`))[0] ?? '';
  } finally {
    c.close();
  }
}

function inMailbox(mailbox: string, id: string): boolean {
  return s.running.store.listMessages({ mailbox, limit: 1000 }).some((m) => m.id === id);
}

test('alias to two users: both mailboxes get it; the envelope keeps the alias', async () => {
  const id = await deliver(['sales@postseal.test']);
  assert.ok(inMailbox('alice@postseal.test', id));
  assert.ok(inMailbox('bob@postseal.test', id));
  assert.ok(!inMailbox('carol@postseal.test', id));
  assert.equal(s.running.store.countMessages({ mailbox: 'sales@postseal.test' }), 0);
  assert.deepEqual(s.running.store.getMessage(id)?.summary.recipients, ['sales@postseal.test']);
});

test('alias -> alias -> user, duplicates across RCPTs removed', async () => {
  const id = await deliver(['team@postseal.test', 'alice@postseal.test']);
  for (const u of ['alice@postseal.test', 'bob@postseal.test', 'carol@postseal.test']) assert.ok(inMailbox(u, id), u);
  assert.deepEqual(s.running.store.getMessage(id)?.summary.recipients, ['team@postseal.test', 'alice@postseal.test']);
});

test('a loop with no final target (a -> b -> a) is an unknown recipient: 550 5.1.1', async () => {
  assert.equal(await rcptReply('a@postseal.test'), '550 5.1.1 <a@postseal.test>: Recipient address rejected: User unknown');
});

test('sub-addressing: alice+tag@ goes to alice; the tag stays in the envelope only', async () => {
  const id = await deliver(['alice+invoices@postseal.test']);
  assert.ok(inMailbox('alice@postseal.test', id));
  assert.equal(s.running.store.countMessages({ mailbox: 'alice+invoices@postseal.test' }), 0);
  assert.deepEqual(s.running.store.getMessage(id)?.summary.recipients, ['alice+invoices@postseal.test']);
  // An alias with a tag resolves like the alias.
  const id2 = await deliver(['sales+q4@postseal.test']);
  assert.ok(inMailbox('bob@postseal.test', id2));
});

test('@domain catch-all alias; catchAllDomains; unknown at a checked domain: 550 5.1.1', async () => {
  const id = await deliver(['whoever@aliased.test']);
  assert.ok(inMailbox('bob@postseal.test', id));
  const id2 = await deliver(['Anything.Goes@catchall.test']);
  assert.ok(inMailbox('anything.goes@catchall.test', id2));
  assert.equal(await rcptReply('ghost@postseal.test'), '550 5.1.1 <ghost@postseal.test>: Recipient address rejected: User unknown');
});

test('postmaster without a user or alias: accepted into the mailbox postmaster@domain', async () => {
  const id = await deliver(['postmaster@catchall.test', 'PostMaster@postseal.test']);
  assert.ok(inMailbox('postmaster@catchall.test', id));
  assert.ok(inMailbox('postmaster@postseal.test', id));
  // Not swallowed by the @aliased.test catch-all alias.
  const id2 = await deliver(['postmaster@aliased.test']);
  assert.ok(inMailbox('postmaster@aliased.test', id2));
  assert.ok(!inMailbox('bob@postseal.test', id2));
});

test('forwarding: an alias to an external address from an unauthenticated mx session is queued; a plain external RCPT is still refused', async () => {
  assert.equal(await rcptReply('someone@elsewhere.example'), '550 5.7.1 Relaying denied');
  const id = await deliver(['fwd@postseal.test']);
  assert.ok(inMailbox('carol@postseal.test', id));
  const rows = s.running.store.listQueue({ limit: 100000 }).filter((q) => q.id === id);
  assert.equal(rows.length, 1);
  assert.equal(rows[0]?.recipient, 'Someone@elsewhere.example');
  assert.equal(rows[0]?.status, 'queued');
  // RFC 3461 §4.2: the client's RCPT is the original recipient of the expanded target.
  assert.equal(rows[0]?.dsn.orcpt, 'rfc822;fwd@postseal.test');
  assert.deepEqual(s.running.store.getMessage(id)?.summary.recipients, ['fwd@postseal.test']);

  // The client's ORCPT wins; NOTIFY is passed on as given (the runner reports for the target).
  const id2 = await deliver(['fwd@postseal.test'], ' NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig@client.example');
  const row = s.running.store.listQueue({ limit: 100000 }).find((q) => q.id === id2 && q.recipient === 'Someone@elsewhere.example');
  assert.equal(row?.dsn.orcpt, 'rfc822;orig@client.example');
  assert.deepEqual(row?.dsn.notify, ['SUCCESS', 'FAILURE']);
});

test('the recipient limit counts final targets: an alias of 101 addresses passes 100', async () => {
  assert.equal(await rcptReply('crowd@postseal.test'), '452 4.5.3 Too many recipients');
  // One final target behind many RCPTs of the same alias is fine up to the RCPT count.
  const c = await mx();
  try {
    await c.cmd('MAIL FROM:<someone@example.net>');
    for (let i = 0; i < 100; i++) assert.match((await c.cmd('RCPT TO:<carols@postseal.test>'))[0] ?? '', /^250 /);
    assert.equal((await c.cmd('RCPT TO:<carols@postseal.test>'))[0], '452 4.5.3 Too many recipients');
  } finally {
    c.close();
  }
});

test('a new alias takes effect at the next RCPT (the table is read per RCPT)', async () => {
  assert.match(await rcptReply('late@postseal.test'), /^550 5\.1\.1 /);
  await s.running.store.addAlias('late@postseal.test', ['alice@postseal.test']);
  assert.match(await rcptReply('late@postseal.test'), /^250 /);
  await s.running.store.removeAlias('late@postseal.test');
  assert.match(await rcptReply('late@postseal.test'), /^550 5\.1\.1 /);
});

test('submission: a user may send as an alias whose expansion includes the login, not as others or via a catch-all', async () => {
  const c = await WireClient.connectTls(s.port('submissions'), s.caPem);
  try {
    await c.readReply();
    await c.cmd('EHLO client.example');
    assert.match((await c.cmd(`AUTH PLAIN ${Buffer.from(`\0alice@postseal.test\0${PASSWORD}`).toString('base64')}`))[0] ?? '', /^235 /);
    const from = async (a: string): Promise<string> => {
      const r = (await c.cmd(`MAIL FROM:<${a}>`))[0] ?? '';
      if (r.startsWith('250')) await c.cmd('RSET');
      return r;
    };
    assert.match(await from('sales@postseal.test'), /^250 /); // sales -> alice, bob
    assert.match(await from('team@postseal.test'), /^250 /); // team -> sales -> alice
    assert.match(await from('alice+lists@postseal.test'), /^250 /);
    assert.match(await from('carols@postseal.test'), /^553 5\.7\.1 /); // carols -> carol only
    assert.match(await from('whoever@aliased.test'), /^553 5\.7\.1 /); // @aliased.test -> bob; catch-alls never count
    assert.match(await from('bob@postseal.test'), /^553 5\.7\.1 /);
  } finally {
    c.close();
  }
});

test('separator off: alice+tag@ is unknown (550 5.1.1)', async () => {
  const off = await startTestServer({ users: [USERS[0] ?? { address: '', password: '' }], checkRecipients: true, configure: (cfg) => (cfg.recipients.subaddressSeparator = '') });
  try {
    const c = await WireClient.connect(off.port('mx'));
    await c.readReply();
    await c.cmd('EHLO peer.example');
    await c.cmd('MAIL FROM:<someone@example.net>');
    assert.match((await c.cmd('RCPT TO:<alice+tag@postseal.test>'))[0] ?? '', /^550 5\.1\.1 /);
    assert.match((await c.cmd('RCPT TO:<alice@postseal.test>'))[0] ?? '', /^250 /);
    c.close();
  } finally {
    await off.close();
  }
});
