/**
 * Readers beside a writer, on both backends (test/store/backends.ts): the CLI's read-only store
 * sees what the server commits. SQLite only: a missing data dir, the file's schema version.
 * Message ids (no store).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { newMessageId, openSqliteStore, openSqliteStoreReadOnly } from '../../src/store/index.js';
import { isMessageId } from '../../src/store/ids.js';
import { SCHEMA_VERSION } from '../../src/store/schema.js';
import { makeMessage, tempDirs } from './helpers.js';
import { storeTest } from './backends.js';

const dirs = tempDirs();
after(() => dirs.cleanup());

storeTest('a read-only store sees commits of a running writer, and works after it closed', async (b) => {
  const store = await b.open();
  const a = await store.accept(makeMessage({ data: Buffer.from('first') }));
  const ro = await b.openReader(store);
  try {
    assert.equal((await ro.getMessage(a.id))?.data.toString(), 'first');
    const bb = await store.accept(makeMessage({ data: Buffer.from('second') }));
    assert.deepEqual((await ro.listMessages()).map((m) => m.id), [bb.id, a.id]);
    await store.addUser('u@example.org', 'pw');
    assert.deepEqual(await ro.listUsers(), ['u@example.org']);
    assert.equal(await ro.verifyUser('u@example.org', 'pw'), true);
    await store.accept(makeMessage({ localRecipients: [], remoteRecipients: ['far@r.example'] }));
    assert.equal((await ro.queueStats()).queued, 1);
  } finally {
    await ro.close();
    await store.close();
  }
  const later = await b.openReader(store);
  try {
    assert.equal(await later.countMessages(), 3);
    assert.equal(later.hasUser('u@example.org'), true);
  } finally {
    await later.close();
  }
});

test('sqlite only: read-only open of a missing store fails with STORE_NOT_FOUND and creates nothing', () => {
  const dir = join(dirs.make(), 'nothing-here');
  assert.throws(() => openSqliteStoreReadOnly(dir), { code: 'STORE_NOT_FOUND' });
});

test('sqlite only: schema version is recorded (user_version); a newer schema is refused', async () => {
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
