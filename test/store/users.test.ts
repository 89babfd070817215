/**
 * Users in the store, on both backends (test/store/backends.ts): add, verify, passwords, remove,
 * the console admin flag, hasUser; and what is really stored (salted scrypt, never the password).
 */
import assert from 'node:assert/strict';
import { storeTest } from './backends.js';

storeTest('users: add, verify, wrong password, unknown user, case-insensitive, remove', async (b) => {
  const store = await b.open();
  try {
    await store.addUser('Alice@Example.ORG', 'correct horse');
    assert.deepEqual(await store.listUsers(), ['alice@example.org']);
    assert.equal(store.hasUser('alice@example.org'), true, 'the address read sees the user at once (synchronous)');
    assert.equal(await store.verifyUser('alice@example.org', 'correct horse'), true);
    assert.equal(await store.verifyUser('ALICE@EXAMPLE.org', 'correct horse'), true);
    assert.equal(await store.verifyUser('alice@example.org', 'correct horsE'), false);
    assert.equal(await store.verifyUser('alice@example.org', ''), false);
    assert.equal(await store.verifyUser('nobody@example.org', 'correct horse'), false);
    assert.equal(await store.verifyUser('not an address', 'x'), false);
    await assert.rejects(store.addUser('alice@EXAMPLE.org', 'other'), { code: 'USER_EXISTS' });
    await assert.rejects(store.addUser('bob@example.org', ''), { code: 'STORE_BAD_PASSWORD' });
    assert.equal(store.hasUser('bob@example.org'), false);

    assert.equal(await store.setPassword('alice@example.org', 'new secret'), true);
    assert.equal(await store.verifyUser('alice@example.org', 'correct horse'), false);
    assert.equal(await store.verifyUser('alice@example.org', 'new secret'), true);
    assert.equal(await store.setPassword('ghost@example.org', 'x'), false);

    assert.equal(await store.removeUser('ALICE@example.org'), true);
    assert.equal(await store.removeUser('alice@example.org'), false);
    assert.deepEqual(await store.listUsers(), []);
    assert.equal(store.hasUser('alice@example.org'), false);
    assert.equal(await store.verifyUser('alice@example.org', 'new secret'), false);
  } finally {
    await store.close();
  }
  // Users survive a restart.
  const again = await b.reopen(store);
  try {
    await again.addUser('carol@example.org', 'pw pw pw');
  } finally {
    await again.close();
  }
  const third = await b.reopen(store);
  try {
    assert.deepEqual(await third.listUsers(), ['carol@example.org']);
    assert.equal(third.hasUser('carol@example.org'), true, 'the directory is loaded at open');
    assert.equal(await third.verifyUser('carol@example.org', 'pw pw pw'), true);
  } finally {
    await third.close();
  }
});

storeTest('users: the admin flag (console access) is set, withdrawn, false for unknown and malformed', async (b) => {
  const store = await b.open();
  try {
    await store.addUser('root@example.org', 'pw pw pw', { admin: true });
    await store.addUser('plain@example.org', 'pw pw pw');
    assert.equal(await store.isAdmin('ROOT@example.org'), true);
    assert.equal(await store.isAdmin('plain@example.org'), false);
    assert.equal(await store.isAdmin('ghost@example.org'), false);
    assert.equal(await store.isAdmin('not an address'), false);
    assert.equal(await store.setAdmin('plain@example.org', true), true);
    assert.equal(await store.isAdmin('plain@example.org'), true);
    assert.equal(await store.setAdmin('root@example.org', false), true);
    assert.equal(await store.isAdmin('root@example.org'), false);
    assert.equal(await store.setAdmin('ghost@example.org', true), false);
  } finally {
    await store.close();
  }
});

storeTest('users: passwords are stored as salted scrypt with their parameters, never in clear', async (b) => {
  const site = await b.site();
  const store = await site.open();
  await store.addUser('a@example.org', 'same password');
  await store.addUser('b@example.org', 'same password');
  await store.close();
  const hashes = (await site.rawQuery('SELECT password_hash FROM users ORDER BY address')).map((r) => r.password_hash);
  assert.equal(hashes.length, 2);
  for (const h of hashes) {
    assert.equal(typeof h, 'string');
    assert.match(String(h), /^scrypt\$16384\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    assert.ok(!String(h).includes('same password'));
  }
  assert.notEqual(hashes[0], hashes[1], 'per-user salt');
});
