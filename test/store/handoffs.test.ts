/**
 * Store side of local delivery targets (issue 12): IncomingMessage.handoffs become queue rows
 * with a target and no mailbox entry, in the same accept; claimDue's `kind` separates local
 * handoffs from remote rows (both backends, test/store/backends.ts). SQLite only: schema 9 → 10
 * keeps old rows as remote (target NULL) — a migration of old SQLite files.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openSqliteStore } from '../../src/store/index.js';
import { SCHEMA_VERSION } from '../../src/store/schema.js';
import { makeMessage, tempDirs } from './helpers.js';
import { storeTest } from './backends.js';

const dirs = tempDirs();
after(() => dirs.cleanup());

storeTest('handoffs: a queue row with the target and no mailbox entry; other mailboxes keep theirs; DSN per mailbox', async (b) => {
  const store = await b.open();
  try {
    const { id } = await store.accept(
      makeMessage({
        localRecipients: ['Alice@example.org', 'bob@example.org'],
        remoteRecipients: ['far@remote.example'],
        handoffs: [{ mailbox: 'ALICE@example.org', target: 'maildir:/var/mail' }, { mailbox: 'bob@example.org', target: 'store' }],
        recipientDsn: { 'alice@example.org': { notify: ['SUCCESS'], orcpt: 'rfc822;Alice@example.org' } },
      }),
    );
    assert.deepEqual(await store.listMessages({ mailbox: 'alice@example.org' }), [], 'no store delivery for a handed-off mailbox');
    assert.deepEqual((await store.listMessages({ mailbox: 'bob@example.org' })).map((m) => m.id), [id], '"store" is no handoff');
    const rows = (await store.listQueue()).filter((e) => e.id === id).map((e) => ({ r: e.recipient, t: e.target, n: e.dsn.notify }));
    assert.deepEqual(rows.sort((a, b) => a.r.localeCompare(b.r)), [
      { r: 'alice@example.org', t: 'maildir:/var/mail', n: ['SUCCESS'] },
      { r: 'far@remote.example', t: null, n: null },
    ]);
    // claimDue by kind: the runner leases each kind for its own time.
    const now = new Date(Date.now() + 1000);
    const local = await store.claimDue(now, 10, { kind: 'local', leaseMs: 5000 });
    assert.deepEqual(local.map((e) => e.recipient), ['alice@example.org']);
    const remote = await store.claimDue(now, 10, { kind: 'remote' });
    assert.deepEqual(remote.map((e) => e.recipient), ['far@remote.example']);
    assert.deepEqual(await store.claimDue(now, 10), [], 'both leased');
    // A message whose only mailbox is handed off is still accepted (it has a final target).
    const only = await store.accept(makeMessage({ localRecipients: ['carol@example.org'], handoffs: [{ mailbox: 'carol@example.org', target: 'webhook:https://app.example/mail' }] }));
    assert.equal((await store.listQueue()).find((e) => e.id === only.id)?.target, 'webhook:https://app.example/mail');
    await assert.rejects(store.accept(makeMessage({ handoffs: [{ mailbox: 'alice@example.org', target: ' ' }] })), { code: 'STORE_BAD_HANDOFF' });
  } finally {
    await store.close();
  }
});

test('sqlite only: schema 9 → 10: existing queue rows stay remote (target NULL)', async () => {
  const dir = dirs.make();
  const store = await openSqliteStore(dir);
  const { id } = await store.accept(makeMessage({ localRecipients: [], remoteRecipients: ['far@remote.example'] }));
  await store.close();
  // Back to version 9 as an older postseal left it: no target column.
  const db = new Database(join(dir, 'postseal.db'));
  db.exec('ALTER TABLE queue DROP COLUMN target');
  // ... and without what later versions added (11: users.admin, api_tokens; 12: node columns).
  db.exec('DROP TABLE IF EXISTS api_tokens; ALTER TABLE users DROP COLUMN admin');
  db.exec('ALTER TABLE queue DROP COLUMN claimed_by; ALTER TABLE queue_attempts DROP COLUMN node');
  db.pragma('user_version = 9');
  db.close();
  const again = await openSqliteStore(dir);
  try {
    assert.ok(SCHEMA_VERSION >= 10);
    const row = again.listQueue().find((e) => e.id === id);
    assert.equal(row?.target, null);
    assert.equal((await again.claimDue(new Date(Date.now() + 1000), 10, { kind: 'local' })).length, 0);
    assert.equal((await again.claimDue(new Date(Date.now() + 1000), 10, { kind: 'remote' })).length, 1);
  } finally {
    await again.close();
  }
});
