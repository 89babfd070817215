import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openSqliteStore } from '../../src/store/index.js';
import { tempDirs } from './helpers.js';

const dirs = tempDirs();
after(() => dirs.cleanup());

test('users: add, verify, wrong password, unknown user, case-insensitive, remove', async () => {
  const store = await openSqliteStore(dirs.make());
  try {
    await store.addUser('Alice@Example.ORG', 'correct horse');
    assert.deepEqual(store.listUsers(), ['alice@example.org']);
    assert.equal(await store.verifyUser('alice@example.org', 'correct horse'), true);
    assert.equal(await store.verifyUser('ALICE@EXAMPLE.org', 'correct horse'), true);
    assert.equal(await store.verifyUser('alice@example.org', 'correct horsE'), false);
    assert.equal(await store.verifyUser('alice@example.org', ''), false);
    assert.equal(await store.verifyUser('nobody@example.org', 'correct horse'), false);
    assert.equal(await store.verifyUser('not an address', 'x'), false);
    await assert.rejects(store.addUser('alice@EXAMPLE.org', 'other'), { code: 'USER_EXISTS' });
    await assert.rejects(store.addUser('bob@example.org', ''), { code: 'STORE_BAD_PASSWORD' });

    assert.equal(await store.setPassword('alice@example.org', 'new secret'), true);
    assert.equal(await store.verifyUser('alice@example.org', 'correct horse'), false);
    assert.equal(await store.verifyUser('alice@example.org', 'new secret'), true);
    assert.equal(await store.setPassword('ghost@example.org', 'x'), false);

    assert.equal(await store.removeUser('ALICE@example.org'), true);
    assert.equal(await store.removeUser('alice@example.org'), false);
    assert.deepEqual(store.listUsers(), []);
    assert.equal(await store.verifyUser('alice@example.org', 'new secret'), false);
  } finally {
    await store.close();
  }
});

test('users: passwords are stored as salted scrypt with their parameters, never in clear', async () => {
  const dir = dirs.make();
  const store = await openSqliteStore(dir);
  await store.addUser('a@example.org', 'same password');
  await store.addUser('b@example.org', 'same password');
  await store.close();
  const db = new Database(join(dir, 'postseal.db'), { readonly: true });
  try {
    const hashes = db.prepare('SELECT password_hash FROM users ORDER BY address').pluck().all();
    assert.equal(hashes.length, 2);
    for (const h of hashes) {
      assert.equal(typeof h, 'string');
      assert.match(String(h), /^scrypt\$16384\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
      assert.ok(!String(h).includes('same password'));
    }
    assert.notEqual(hashes[0], hashes[1], 'per-user salt');
  } finally {
    db.close();
  }
});
