/**
 * The address table in the store, on both backends (test/store/backends.ts): alias rows
 * (add/list/remove, checks), the resolver (store/resolve.ts) over the store's synchronous address
 * reads (SQLite: indexed reads; PostgreSQL: the directory replica), and accept() putting mailbox
 * entries for the final mailboxes and queue rows for forwarded targets. The resolver's bounds are
 * checked on a table in memory (no backend).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAX_ALIAS_DEPTH, MAX_FINAL_TARGETS, resolveAddress, stripSubaddress, type ResolveOptions } from '../../src/store/resolve.js';
import { makeMessage } from './helpers.js';
import { storeTest } from './backends.js';

const OPTS: ResolveOptions = { localDomains: ['example.org', 'other.test'] };

storeTest('aliases: add, list, remove; addresses checked; @domain allowed; a reader sees them', async (b) => {
  const site = await b.site();
  const store = await site.open();
  try {
    assert.equal(await store.addAlias('Sales@Example.ORG', ['alice@example.org', 'Bob@Example.org', 'alice@example.org']), 2);
    assert.equal(await store.addAlias('sales@example.org', ['bob@example.org', 'Ext.User@Far.Example']), 1);
    assert.equal(await store.addAlias('@other.test', ['alice@example.org']), 1);
    assert.deepEqual(await store.listAliases(), [
      { address: '@other.test', targets: ['alice@example.org'] },
      { address: 'sales@example.org', targets: ['alice@example.org', 'Bob@example.org', 'Ext.User@far.example'] },
    ]);
    assert.deepEqual(store.aliasTargets('SALES@example.org'), ['alice@example.org', 'Bob@example.org', 'Ext.User@far.example']);
    assert.deepEqual(store.aliasTargets('nobody@example.org'), []);
    assert.deepEqual(store.aliasTargets('not an address'), []);

    for (const bad of ['no-at-sign', '@', 'a b@example.org', '<x@example.org>', '@bad domain']) {
      await assert.rejects(store.addAlias(bad, ['alice@example.org']), { code: 'STORE_BAD_ALIAS' }, bad);
    }
    await assert.rejects(store.addAlias('x@example.org', ['@example.org']), { code: 'STORE_BAD_ALIAS' });
    await assert.rejects(store.addAlias('x@example.org', []), { code: 'STORE_BAD_ALIAS' });
    // 1000 targets per alias at most; the op is rolled back alone.
    const many = Array.from({ length: 1001 }, (_, i) => `u${i}@example.org`);
    await assert.rejects(store.addAlias('big@example.org', many), { code: 'STORE_BAD_ALIAS' });
    assert.deepEqual(store.aliasTargets('big@example.org'), []);

    assert.equal(await store.removeAlias('sales@example.org', 'bob@EXAMPLE.org'), 1);
    assert.equal(await store.removeAlias('sales@example.org', 'bob@example.org'), 0);
    assert.equal(await store.removeAlias('sales@example.org'), 2);
    assert.equal(await store.removeAlias('sales@example.org'), 0);
  } finally {
    await store.close();
  }
  assert.equal(Number((await site.rawQuery('SELECT count(*) AS n FROM aliases'))[0]?.n), 1);
  // The read-only store (the CLI while serve runs) sees the table.
  const ro = await site.openReader();
  try {
    assert.deepEqual(await ro.listAliases(), [{ address: '@other.test', targets: ['alice@example.org'] }]);
    assert.deepEqual(ro.aliasTargets('anyone@other.test'), [], 'an @domain alias is its own key');
    assert.deepEqual(ro.aliasTargets('@other.test'), ['alice@example.org']);
  } finally {
    await ro.close();
  }
});

storeTest('resolveRecipient: users, aliases of aliases, loops, subaddress, catch-alls, postmaster', async (b) => {
  const store = await b.open();
  try {
    for (const u of ['alice@example.org', 'bob@example.org', 'carol@example.org']) await store.addUser(u, 'password 1234');
    await store.addAlias('sales@example.org', ['alice@example.org', 'bob@example.org']);
    await store.addAlias('team@example.org', ['sales@example.org', 'carol@example.org', 'alice@example.org']);
    await store.addAlias('fwd@example.org', ['Someone@Far.Example', 'alice@example.org']);
    await store.addAlias('a@example.org', ['b@example.org']);
    await store.addAlias('b@example.org', ['a@example.org']);
    await store.addAlias('loopy@example.org', ['a@example.org', 'carol@example.org']);
    // A user whose alias keeps a copy and forwards (Postfix: alice -> alice, elsewhere).
    await store.addAlias('carol@example.org', ['carol@example.org', 'carol@far.example']);
    await store.addAlias('@other.test', ['bob@example.org']);
    const r = (a: string, o: Partial<ResolveOptions> = {}) => store.resolveRecipient(a, { ...OPTS, ...o });

    assert.deepEqual(r('alice@example.org'), { mailboxes: ['alice@example.org'], external: [], problems: [] });
    assert.deepEqual(r('ALICE@example.org').mailboxes, ['alice@example.org']);
    assert.deepEqual(r('sales@example.org').mailboxes, ['alice@example.org', 'bob@example.org']);
    // alias -> alias -> user, duplicates removed.
    const team = r('team@example.org');
    assert.deepEqual(team.mailboxes.sort(), ['alice@example.org', 'bob@example.org', 'carol@example.org']);
    assert.deepEqual(team.external, ['carol@far.example']);
    assert.deepEqual(r('fwd@example.org'), { mailboxes: ['alice@example.org'], external: ['Someone@far.example'], problems: [] });
    // A loop with no final target: nothing (RCPT answers 550 5.1.1), and reported.
    const loop = r('a@example.org');
    assert.deepEqual([loop.mailboxes, loop.external], [[], []]);
    assert.match(loop.problems.join('\n'), /alias loop a@example\.org -> b@example\.org -> a@example\.org/);
    // A loop beside a real target: the target stays.
    assert.deepEqual(r('loopy@example.org').mailboxes, ['carol@example.org']);
    assert.deepEqual(r('carol@example.org'), { mailboxes: ['carol@example.org'], external: ['carol@far.example'], problems: [] });

    // Sub-addressing: the tag goes; alias tags too; separator off (''), or another one.
    assert.deepEqual(r('alice+news@example.org').mailboxes, ['alice@example.org']);
    assert.deepEqual(r('sales+x@example.org').mailboxes, ['alice@example.org', 'bob@example.org']);
    assert.deepEqual(r('alice+news@example.org', { subaddressSeparator: '' }).mailboxes, []);
    assert.deepEqual(r('alice-news@example.org', { subaddressSeparator: '-' }).mailboxes, ['alice@example.org']);
    assert.deepEqual(r('alice+news@example.org', { subaddressSeparator: '-' }).mailboxes, []);
    assert.equal(stripSubaddress('+x@example.org', '+'), null);

    // Unknown; @domain catch-all alias; catchAllDomains; the global catchAll.
    assert.deepEqual(r('ghost@example.org').mailboxes, []);
    assert.deepEqual(r('anyone@other.test').mailboxes, ['bob@example.org']);
    assert.deepEqual(r('Ghost@example.org', { catchAllDomains: ['example.org'] }).mailboxes, ['ghost@example.org']);
    assert.deepEqual(r('ghost@example.org', { catchAll: true }).mailboxes, ['ghost@example.org']);
    // Users and aliases still come before a catch-all domain.
    assert.deepEqual(r('alice+x@example.org', { catchAllDomains: ['example.org'] }).mailboxes, ['alice@example.org']);

    // postmaster: its own mailbox unless a user/alias says otherwise; never the @domain catch-all.
    assert.deepEqual(r('postmaster@other.test').mailboxes, ['postmaster@other.test']);
    await store.addAlias('postmaster@other.test', ['carol@example.org']);
    assert.deepEqual(r('postmaster@other.test').mailboxes, ['carol@example.org']);

    // The sender view ignores catch-alls.
    assert.deepEqual(r('anyone@other.test', { forSender: true }).mailboxes, []);
    assert.deepEqual(r('sales@example.org', { forSender: true }).mailboxes, ['alice@example.org', 'bob@example.org']);

    // A new alias counts at the next read (SQLite: no cache; PostgreSQL: the node's own write
    // updates its replica before the write resolves).
    await store.addAlias('new@example.org', ['bob@example.org']);
    assert.deepEqual(r('new@example.org').mailboxes, ['bob@example.org']);
    assert.equal(await store.removeAlias('new@example.org'), 1);
    assert.deepEqual(r('new@example.org').mailboxes, []);
    assert.equal(await store.removeUser('bob@example.org'), true);
    assert.deepEqual(r('sales@example.org').mailboxes, ['alice@example.org'], 'a removed user is gone from the next resolution');
  } finally {
    await store.close();
  }
});

test('resolver bounds: depth 10, at most 1000 targets, diamonds expanded once', () => {
  // A chain of 15 aliases: expansion stops after MAX_ALIAS_DEPTH levels.
  const table = new Map<string, string[]>();
  for (let i = 0; i < 15; i++) table.set(`c${i}@d.test`, [`c${i + 1}@d.test`]);
  const users = new Set(['c15@d.test', 'c5@d.test']);
  let reads = 0;
  const reads_ = {
    isUser: (a: string) => (reads++, users.has(a)),
    aliasTargets: (a: string) => (reads++, table.get(a) ?? []),
  };
  const deep = resolveAddress('c0@d.test', reads_, { localDomains: ['d.test'] });
  assert.deepEqual(deep.mailboxes, []);
  assert.match(deep.problems.join('\n'), new RegExp(`deeper than ${MAX_ALIAS_DEPTH} levels`));
  // c5 is an alias (alias before user): resolving from c0 never reaches a user within 10 levels.
  table.set('c3@d.test', ['c15@d.test']);
  assert.deepEqual(resolveAddress('c0@d.test', reads_, { localDomains: ['d.test'] }).mailboxes, ['c15@d.test']);

  // A diamond: top -> 40 parents, each -> the same 40 mid aliases of 10 users: 400 users, each mid
  // expanded once (without that, 40 x 40 x 21 reads would pass the lookup bound and truncate).
  const wide = new Map<string, string[]>();
  const mids = Array.from({ length: 40 }, (_, i) => `m${i}@d.test`);
  for (let i = 0; i < 40; i++) wide.set(mids[i] ?? '', Array.from({ length: 10 }, (_, j) => `u${i}.${j}@d.test`));
  wide.set('top@d.test', Array.from({ length: 40 }, (_, i) => `p${i}@d.test`));
  for (let i = 0; i < 40; i++) wide.set(`p${i}@d.test`, mids);
  reads = 0;
  const wideReads = { isUser: (a: string) => (reads++, a.startsWith('u')), aliasTargets: (a: string) => (reads++, wide.get(a) ?? []) };
  const diamond = resolveAddress('top@d.test', wideReads, { localDomains: ['d.test'] });
  assert.equal(diamond.mailboxes.length, 400);
  assert.deepEqual(diamond.problems, []);
  assert.ok(reads < 5000, `reads ${reads}`);

  // More than 1000 final targets: cut at 1000, without duplicates, and reported.
  wide.set('huge@d.test', ['h1@d.test', 'h2@d.test']);
  wide.set('h1@d.test', Array.from({ length: 600 }, (_, j) => `ua${j}@d.test`));
  wide.set('h2@d.test', Array.from({ length: 600 }, (_, j) => `ub${j}@d.test`));
  const big = resolveAddress('huge@d.test', wideReads, { localDomains: ['d.test'] });
  assert.equal(big.mailboxes.length, MAX_FINAL_TARGETS);
  assert.equal(new Set(big.mailboxes).size, MAX_FINAL_TARGETS);
  assert.match(big.problems.join('\n'), /more than 1000 targets: expansion truncated/);
});

storeTest('accept: mailbox entries for the final mailboxes, queue rows for forwards; the envelope kept as given', async (b) => {
  const store = await b.open();
  try {
    const { id } = await store.accept(
      makeMessage({
        localRecipients: ['sales+Q4@example.org'],
        remoteRecipients: [],
        mailboxes: ['alice@example.org', 'bob@example.org'],
        forwardedFrom: { 'Ext@far.example': 'sales+Q4@example.org' },
        recipientDsn: { 'Ext@far.example': { notify: null, orcpt: 'rfc822;sales+Q4@example.org' } },
      }),
    );
    assert.deepEqual((await store.getMessage(id))?.summary.recipients, ['sales+q4@example.org']);
    assert.equal((await store.listMessages({ mailbox: 'alice@example.org' }))[0]?.id, id);
    assert.equal((await store.listMessages({ mailbox: 'bob@example.org' }))[0]?.id, id);
    assert.equal(await store.countMessages({ mailbox: 'sales+q4@example.org' }), 0);
    const q = await store.listQueue();
    assert.equal(q.length, 1);
    assert.equal(q[0]?.recipient, 'Ext@far.example');
    assert.equal(q[0]?.dsn.orcpt, 'rfc822;sales+Q4@example.org');
    // Without `mailboxes` (library callers): the local recipients are the mailboxes, as before.
    const old = await store.accept(makeMessage({ localRecipients: ['carol@example.org'] }));
    assert.equal((await store.listMessages({ mailbox: 'carol@example.org' }))[0]?.id, old.id);
    // Nothing at all to deliver to: refused.
    await assert.rejects(store.accept(makeMessage({ localRecipients: ['x@example.org'], mailboxes: [] })), { code: 'STORE_NO_RECIPIENTS' });
  } finally {
    await store.close();
  }
});
