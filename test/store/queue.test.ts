import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { openSqliteStore, type SqliteStore } from '../../src/store/index.js';
import type { TlsFacts } from '../../src/types.js';
import { makeMessage, tempDirs } from './helpers.js';

const dirs = tempDirs();
after(() => dirs.cleanup());

const TLS: TlsFacts = { protocol: 'TLSv1.2', cipher: 'ECDHE-RSA-AES128-GCM-SHA256', group: null, sni: 'mx.remote.example', alpn: null };

async function withStore(fn: (s: SqliteStore) => Promise<void>): Promise<void> {
  const store = await openSqliteStore(dirs.make());
  try {
    await fn(store);
  } finally {
    await store.close();
  }
}

test('remote recipients become queued rows; local ones become mailbox entries', () =>
  withStore(async (store) => {
    const before = Date.now();
    const { id } = await store.accept(
      makeMessage({ localRecipients: ['me@example.org'], remoteRecipients: ['Ann@Remote.Example', 'bo@other.example'], requireTls: true }),
    );
    const q = store.listQueue();
    assert.equal(q.length, 2);
    for (const e of q) {
      assert.equal(e.id, id);
      assert.equal(e.mailFrom, 'sender@example.net');
      assert.equal(e.status, 'queued');
      assert.equal(e.attempts, 0);
      assert.equal(e.lastError, null);
      assert.equal(e.lastTls, null);
      assert.equal(e.claimedUntil, null);
      assert.equal(e.requireTls, true);
      assert.ok(Date.parse(e.nextAttemptAt) >= before - 1);
    }
    assert.deepEqual(q.map((e) => [e.recipient, e.domain]).sort(), [['Ann@remote.example', 'remote.example'], ['bo@other.example', 'other.example']]);
    assert.equal(store.countMessages({ mailbox: 'me@example.org' }), 1);
    assert.equal(store.countMessages({ mailbox: 'ann@remote.example' }), 0);
  }));

const OUTCOME = { host: 'mx.r.example', levelAsked: 'may', levelReached: 'encrypt', protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', verified: false, whyNot: 'self-signed certificate' };

test('claimDue leases rows; recordAttempt defers, delivers, fails; deleteQueued removes', () =>
  withStore(async (store) => {
    const { id } = await store.accept(makeMessage({ localRecipients: [], remoteRecipients: ['a@r.example', 'b@r.example', 'c@r.example'] }));
    const now = new Date(Date.now() + 1000);
    const claimed = await store.claimDue(now, 10, { leaseMs: 60_000 });
    assert.equal(claimed.length, 3);
    assert.ok(claimed.every((e) => e.claimedUntil === new Date(now.getTime() + 60_000).toISOString()));
    assert.deepEqual(await store.claimDue(now, 10), [], 'leased rows are not claimed twice');

    assert.equal(await store.recordAttempt({ id, recipient: 'a@r.example', outcome: 'delivered', tls: OUTCOME }), true);
    const later = new Date(now.getTime() + 30_000);
    assert.equal(await store.recordAttempt({ id, recipient: 'b@r.example', outcome: 'deferred', error: '451 4.7.0 try later', nextAttemptAt: later, tls: null }), true);
    assert.equal(await store.recordAttempt({ id, recipient: 'c@r.example', outcome: 'failed', error: '550 5.1.1 no such user', tls: OUTCOME }), true);
    assert.equal(await store.recordAttempt({ id, recipient: 'zz@r.example', outcome: 'delivered', tls: null }), false);

    const byRcpt = new Map(store.listQueue().map((e) => [e.recipient, e]));
    assert.equal(byRcpt.get('a@r.example')?.status, 'delivered');
    assert.deepEqual(byRcpt.get('a@r.example')?.lastTls, OUTCOME);
    assert.equal(byRcpt.get('b@r.example')?.status, 'deferred');
    assert.equal(byRcpt.get('b@r.example')?.attempts, 1);
    assert.equal(byRcpt.get('b@r.example')?.nextAttemptAt, later.toISOString());
    assert.equal(byRcpt.get('b@r.example')?.claimedUntil, null);
    assert.equal(byRcpt.get('c@r.example')?.status, 'failed');
    assert.equal(byRcpt.get('c@r.example')?.lastError, '550 5.1.1 no such user');
    assert.deepEqual(store.listQueue({ status: 'deferred' }).map((e) => e.recipient), ['b@r.example']);

    assert.deepEqual(await store.claimDue(now, 10), [], 'deferred row not due yet; final rows never');
    const again = await store.claimDue(later, 10);
    assert.deepEqual(again.map((e) => e.recipient), ['b@r.example']);

    assert.equal(await store.deleteQueued(id, 'b@r.example'), 1);
    assert.equal(await store.deleteQueued(id), 2);
    assert.deepEqual(store.listQueue(), []);
    assert.ok(store.getMessage(id), 'the message itself stays');
  }));

test('an expired lease makes a row claimable again (runner crashed mid-delivery)', () =>
  withStore(async (store) => {
    await store.accept(makeMessage({ localRecipients: [], remoteRecipients: ['x@r.example'] }));
    const t0 = new Date(Date.now() + 1000);
    assert.equal((await store.claimDue(t0, 5, { leaseMs: 1000 })).length, 1);
    assert.equal((await store.claimDue(new Date(t0.getTime() + 999), 5)).length, 0);
    assert.equal((await store.claimDue(new Date(t0.getTime() + 1000), 5)).length, 1);
  }));
