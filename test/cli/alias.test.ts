/**
 * `postseal alias add|list|remove` with `--data DIR`, run as the real CLI (child processes),
 * also while `serve` runs on that data directory: an alias added by the CLI takes effect at the
 * next RCPT of the running server (it reads the table per RCPT; WAL lets both write), and the
 * mail lands in the users' mailboxes as `postseal mailbox list` shows them.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { WireClient } from '../helpers/wire.js';
import { killAll, mxOnly, runCli, startServeChild, tempDirs } from './child.js';

const dirs = tempDirs();
after(() => {
  killAll();
  dirs.cleanup();
});

test('alias add/list/remove on a data dir; bad input exits 2', { timeout: 120_000 }, async () => {
  const dataDir = dirs.make('postseal-alias-');
  const add = await runCli(['alias', 'add', 'Sales@Example.org', 'alice@example.org', 'bob@example.org', '--data', dataDir]);
  assert.equal(add.code, 0, add.stderr);
  assert.equal(add.stdout, 'sales@example.org: 2 targets added\n');
  const again = await runCli(['alias', 'add', 'sales@example.org', 'bob@example.org', 'Friend@Far.Example', '--data', dataDir]);
  assert.equal(again.stdout, 'sales@example.org: 1 target added\n');
  assert.equal((await runCli(['alias', 'add', '@example.org', 'alice@example.org', '--data', dataDir])).code, 0);

  const list = await runCli(['alias', 'list', '--data', dataDir]);
  assert.equal(list.code, 0, list.stderr);
  assert.equal(list.stdout, '@example.org -> alice@example.org\nsales@example.org -> alice@example.org, bob@example.org, Friend@far.example\n');
  const json = await runCli(['alias', 'list', '--json', '--data', dataDir]);
  assert.deepEqual(JSON.parse(json.stdout), [
    { address: '@example.org', targets: ['alice@example.org'] },
    { address: 'sales@example.org', targets: ['alice@example.org', 'bob@example.org', 'Friend@far.example'] },
  ]);

  const bad = await runCli(['alias', 'add', 'not an address', 'alice@example.org', '--data', dataDir]);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /not an alias address/);
  const badTarget = await runCli(['alias', 'add', 'x@example.org', 'nobody', '--data', dataDir]);
  assert.equal(badTarget.code, 2, badTarget.stderr);
  const noTarget = await runCli(['alias', 'add', 'x@example.org', '--data', dataDir]);
  assert.equal(noTarget.code, 2, noTarget.stderr);

  const rmOne = await runCli(['alias', 'remove', 'sales@example.org', 'friend@far.example', '--data', dataDir]);
  assert.equal(rmOne.code, 0, rmOne.stderr);
  assert.equal(rmOne.stdout, 'removed 1 target of sales@example.org\n');
  const rmAll = await runCli(['alias', 'remove', 'sales@example.org', '--data', dataDir]);
  assert.equal(rmAll.stdout, 'removed 2 targets of sales@example.org\n');
  const rmNone = await runCli(['alias', 'remove', 'sales@example.org', '--data', dataDir]);
  assert.equal(rmNone.code, 1);
  assert.match(rmNone.stderr, /no alias sales@example\.org/);
  assert.equal((await runCli(['alias', 'list', '--data', dataDir])).stdout, '@example.org -> alice@example.org\n');
});

test('an alias added while serve runs takes effect at the next RCPT; mailbox list shows the delivery', { timeout: 120_000 }, async () => {
  const dataDir = dirs.make('postseal-alias-serve-');
  for (const u of ['alice@postseal.test', 'bob@postseal.test']) {
    const r = await runCli(['user', 'add', u, '--password-stdin', '--data', dataDir], { input: 'a long enough password\n' });
    assert.equal(r.code, 0, r.stderr);
  }
  const server = await startServeChild(mxOnly(dataDir, ['--hostname', 'mail.postseal.test', '--domain', 'postseal.test', '--no-relay', '--no-auth-verify']));
  const rcpt = async (address: string): Promise<{ c: WireClient; reply: string }> => {
    const c = await WireClient.connect(server.port('mx'));
    await c.readReply();
    await c.cmd('EHLO peer.example');
    await c.cmd('MAIL FROM:<someone@example.net>');
    return { c, reply: (await c.cmd(`RCPT TO:<${address}>`))[0] ?? '' };
  };
  const before = await rcpt('sales@postseal.test');
  before.c.close();
  assert.match(before.reply, /^550 5\.1\.1 /);

  const add = await runCli(['alias', 'add', 'sales@postseal.test', 'alice@postseal.test', 'bob@postseal.test', '--data', dataDir]);
  assert.equal(add.code, 0, add.stderr);

  const now = await rcpt('sales@postseal.test');
  try {
    assert.match(now.reply, /^250 /);
    assert.match((await now.c.cmd('DATA'))[0] ?? '', /^354 /);
    const done = await now.c.cmd('Subject: via alias\r\n\r\nhello\r\n.');
    assert.match(done[0] ?? '', /^250 /);
  } finally {
    now.c.close();
  }
  for (const mailbox of ['alice@postseal.test', 'bob@postseal.test']) {
    const list = await runCli(['mailbox', 'list', '--mailbox', mailbox, '--json', '--data', dataDir]);
    assert.equal(list.code, 0, list.stderr);
    const items = JSON.parse(list.stdout) as Array<{ recipients: string[] }>;
    assert.equal(items.length, 1, mailbox);
    assert.deepEqual(items[0]?.recipients, ['sales@postseal.test']);
  }

  const rm = await runCli(['alias', 'remove', 'sales@postseal.test', '--data', dataDir]);
  assert.equal(rm.code, 0, rm.stderr);
  const gone = await rcpt('sales@postseal.test');
  gone.c.close();
  assert.match(gone.reply, /^550 5\.1\.1 /);
  server.signal('SIGTERM');
  await server.waitExit();
});
