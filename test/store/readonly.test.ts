import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { newMessageId, openSqliteStore, openSqliteStoreReadOnly } from '../../src/store/index.js';
import { isMessageId } from '../../src/store/ids.js';
import { SCHEMA_VERSION } from '../../src/store/schema.js';
import { makeMessage, tempDirs } from './helpers.js';

const dirs = tempDirs();
after(() => dirs.cleanup());

test('a read-only store sees commits of a running writer, and works after it closed', async () => {
  const dir = dirs.make();
  const store = await openSqliteStore(dir);
  const a = await store.accept(makeMessage({ data: Buffer.from('first') }));
  const ro = openSqliteStoreReadOnly(dir);
  try {
    assert.equal(ro.getMessage(a.id)?.data.toString(), 'first');
    const b = await store.accept(makeMessage({ data: Buffer.from('second') }));
    assert.deepEqual(ro.listMessages().map((m) => m.id), [b.id, a.id]);
    await store.addUser('u@example.org', 'pw');
    assert.deepEqual(ro.listUsers(), ['u@example.org']);
    assert.equal(await ro.verifyUser('u@example.org', 'pw'), true);
  } finally {
    await ro.close();
    await store.close();
  }
  const later = openSqliteStoreReadOnly(dir);
  try {
    assert.equal(later.countMessages(), 2);
  } finally {
    await later.close();
  }
});

test('read-only open of a missing store fails with STORE_NOT_FOUND and creates nothing', () => {
  const dir = join(dirs.make(), 'nothing-here');
  assert.throws(() => openSqliteStoreReadOnly(dir), { code: 'STORE_NOT_FOUND' });
});

test('schema version is recorded; a newer schema is refused', async () => {
  const dir = dirs.make();
  const store = await openSqliteStore(dir);
  await store.close();
  const db = new Database(join(dir, 'postseal.db'));
  assert.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION);
  db.pragma('user_version = 99');
  db.close();
  assert.throws(() => openSqliteStoreReadOnly(dir), { code: 'STORE_SCHEMA_TOO_NEW' });
  await assert.rejects(openSqliteStore(dir), { code: 'STORE_SCHEMA_TOO_NEW' });
});

test('message ids are short, well-formed, unique and sorted by creation', () => {
  const ids = Array.from({ length: 10_000 }, () => newMessageId());
  assert.equal(new Set(ids).size, ids.length);
  assert.deepEqual([...ids].sort(), ids);
  assert.ok(ids.every((id) => id.length === 16 && isMessageId(id)));
});
