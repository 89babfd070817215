/**
 * Sender patterns of users in the store (both backends, test/store/backends.ts): given at addUser, changed with
 * editSenders, read with senderPatterns (lower-cased, sorted, no duplicates), checked on the way
 * in (STORE_BAD_SENDER), gone with the user; hasUser is the recipient directory's cheap read.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isSenderPattern } from '../../src/store/address.js';
import { storeTest } from './backends.js';

storeTest('senders: add with the user, edit, read back, refuse bad patterns, removed with the user', async (b) => {
  const store = await b.open();
  try {
    await store.addUser('Alice@Example.ORG', 'correct horse', { senders: ['*@Example.org', 'Sales@example.org', 'sales@example.org'] });
    assert.deepEqual(store.senderPatterns('alice@example.org'), ['*@example.org', 'sales@example.org']);
    assert.equal(store.hasUser('ALICE@example.org'), true);
    assert.equal(store.hasUser('bob@example.org'), false);
    assert.equal(store.hasUser('not an address <x>'), false);

    assert.equal(await store.editSenders('alice@example.org', { add: ['*'], remove: ['*@EXAMPLE.org'] }), true);
    assert.deepEqual(store.senderPatterns('alice@example.org'), ['*', 'sales@example.org']);
    assert.equal(await store.editSenders('ghost@example.org', { add: ['x@example.org'] }), false);

    await assert.rejects(store.addUser('bob@example.org', 'pw pw pw pw', { senders: ['*.example.org'] }), { code: 'STORE_BAD_SENDER' });
    await assert.rejects(store.editSenders('alice@example.org', { add: ['a*b@example.org'] }), { code: 'STORE_BAD_SENDER' });
    assert.equal(store.hasUser('bob@example.org'), false, 'a refused user is not half added');

    assert.equal(await store.removeUser('alice@example.org'), true);
    assert.deepEqual(store.senderPatterns('alice@example.org'), []);
    // Re-adding the login does not bring old patterns back (ON DELETE CASCADE).
    await store.addUser('alice@example.org', 'correct horse');
    assert.deepEqual(store.senderPatterns('alice@example.org'), []);
  } finally {
    await store.close();
  }
});

test('sender pattern syntax', () => {
  for (const ok of ['*', '*@example.org', 'sales@example.org', 'a.b+c@sub.example.org']) assert.equal(isSenderPattern(ok), true, ok);
  for (const bad of ['', '*@', '@example.org', 'example.org', '*.example.org', 'a*@example.org', 'a b@example.org', '<a@example.org>', '*@exa mple.org']) {
    assert.equal(isSenderPattern(bad), false, bad);
  }
});
