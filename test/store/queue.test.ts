/**
 * The queue, on both backends (test/store/backends.ts): rows from accept, claims with leases,
 * attempts recorded (with the node that made them), retries, stats; and what issue 13 adds for
 * several nodes on one queue — renewLeases extends only this node's live leases, releaseLeases
 * releases this node's leases (PostgreSQL) or every lease (SQLite: one owner), and concurrent
 * claimers never get the same row. Two nodes = two store objects with different node ids on one
 * site (SQLite: openSqliteStore twice on one dir; PostgreSQL: two pools on one database).
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Store } from '../../src/store/index.js';
import type { TlsFacts } from '../../src/types.js';
import { makeMessage } from './helpers.js';
import { storeTest, withStore, type Backend } from './backends.js';

const OUTCOME = { host: 'mx.r.example', levelAsked: 'may', levelReached: 'encrypt', protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', verified: false, whyNot: 'self-signed certificate' };
const TLS: TlsFacts = { protocol: 'TLSv1.2', cipher: 'ECDHE-RSA-AES128-GCM-SHA256', group: null, sni: 'mx.remote.example', alpn: null };

/** Two store objects (nodes) on one fresh site; both closed by the caller's finally via closeAll. */
async function twoNodes(b: Backend): Promise<[Store, Store]> {
  const site = await b.site();
  const a = await site.open({ nodeId: 'node-a' });
  const c = await site.open({ nodeId: 'node-b' });
  return [a, c];
}

async function closeAll(...stores: Store[]): Promise<void> {
  for (const s of stores) await s.close();
}

/** The queue row of (id, recipient) as `s` lists it. */
async function row(s: Store, id: string, recipient: string) {
  const r = (await s.listQueue()).find((e) => e.id === id && e.recipient === recipient);
  assert.ok(r, `no queue row ${id} ${recipient}`);
  return r;
}

storeTest('remote recipients become queued rows; local ones become mailbox entries', (b) =>
  withStore(b, async (store) => {
    const before = Date.now();
    const { id } = await store.accept(
      makeMessage({ localRecipients: ['me@example.org'], remoteRecipients: ['Ann@Remote.Example', 'bo@other.example'], requireTls: true, tls: TLS }),
    );
    const q = await store.listQueue();
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
      assert.equal(e.target, null);
      assert.deepEqual(e.dsn, { envId: null, ret: null, notify: null, orcpt: null });
      assert.ok(Date.parse(e.nextAttemptAt) >= before - 1);
    }
    assert.deepEqual(q.map((e) => [e.recipient, e.domain]).sort(), [['Ann@remote.example', 'remote.example'], ['bo@other.example', 'other.example']]);
    assert.equal(await store.countMessages({ mailbox: 'me@example.org' }), 1);
    assert.equal(await store.countMessages({ mailbox: 'ann@remote.example' }), 0);
  }));

storeTest('claimDue leases rows; recordAttempt defers, delivers, fails; deleteQueued removes', (b) =>
  withStore(b, async (store) => {
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

    const byRcpt = new Map((await store.listQueue()).map((e) => [e.recipient, e]));
    assert.equal(byRcpt.get('a@r.example')?.status, 'delivered');
    assert.deepEqual(byRcpt.get('a@r.example')?.lastTls, OUTCOME);
    assert.equal(byRcpt.get('b@r.example')?.status, 'deferred');
    assert.equal(byRcpt.get('b@r.example')?.attempts, 1);
    assert.equal(byRcpt.get('b@r.example')?.nextAttemptAt, later.toISOString());
    assert.equal(byRcpt.get('b@r.example')?.claimedUntil, null);
    assert.equal(byRcpt.get('c@r.example')?.status, 'failed');
    assert.equal(byRcpt.get('c@r.example')?.lastError, '550 5.1.1 no such user');
    assert.deepEqual((await store.listQueue({ status: 'deferred' })).map((e) => e.recipient), ['b@r.example']);

    assert.deepEqual(await store.claimDue(now, 10), [], 'deferred row not due yet; final rows never');
    const again = await store.claimDue(later, 10);
    assert.deepEqual(again.map((e) => e.recipient), ['b@r.example']);

    assert.equal(await store.deleteQueued(id, 'b@r.example'), 1);
    assert.equal(await store.deleteQueued(id), 2);
    assert.deepEqual(await store.listQueue(), []);
    assert.ok(await store.getMessage(id), 'the message itself stays');
  }));

storeTest('an expired lease makes a row claimable again (runner crashed mid-delivery)', (b) =>
  withStore(b, async (store) => {
    await store.accept(makeMessage({ localRecipients: [], remoteRecipients: ['x@r.example'] }));
    const t0 = new Date(Date.now() + 1000);
    assert.equal((await store.claimDue(t0, 5, { leaseMs: 1000 })).length, 1);
    assert.equal((await store.claimDue(new Date(t0.getTime() + 999), 5)).length, 0);
    assert.equal((await store.claimDue(new Date(t0.getTime() + 1000), 5)).length, 1);
  }));

storeTest('listAttempts keeps every attempt, oldest first, with the node (Store.nodeId) that made it', async (b) => {
  const [a, c] = await twoNodes(b);
  try {
    assert.equal(a.nodeId, 'node-a');
    assert.equal(c.nodeId, 'node-b');
    const { id } = await a.accept(makeMessage({ localRecipients: [], remoteRecipients: ['x@r.example'] }));
    assert.deepEqual(await a.listAttempts(id), []);
    const now = new Date(Date.now() + 1000);
    assert.equal((await a.claimDue(now, 5)).length, 1);
    const next = new Date(now.getTime() + 60_000);
    assert.equal(await a.recordAttempt({ id, recipient: 'x@r.example', outcome: 'deferred', error: '451 4.3.0 later', nextAttemptAt: next, tls: null }), true);
    assert.equal((await c.claimDue(next, 5)).length, 1, 'node-b takes the row when it is due again');
    assert.equal(await c.recordAttempt({ id, recipient: 'x@r.example', outcome: 'delivered', tls: OUTCOME }), true);

    const seen = await a.listAttempts(id);
    assert.deepEqual(
      seen.map((x) => ({ r: x.recipient, o: x.outcome, e: x.error, n: x.nextAttemptAt, node: x.node, tls: x.tls })),
      [
        { r: 'x@r.example', o: 'deferred', e: '451 4.3.0 later', n: next.toISOString(), node: 'node-a', tls: null },
        { r: 'x@r.example', o: 'delivered', e: null, n: null, node: 'node-b', tls: OUTCOME },
      ],
    );
    assert.ok(seen.every((x) => !Number.isNaN(Date.parse(x.at))), 'at is an ISO time');
    assert.ok((seen[0]?.at ?? '') <= (seen[1]?.at ?? ''), 'oldest first');
    assert.deepEqual(await c.listAttempts(id), seen, 'every node reads the same history');
    assert.deepEqual(await a.listAttempts('0000000000000000'), []);
  } finally {
    await closeAll(a, c);
  }
});

storeTest('retryQueued makes waiting rows due now; queueStats counts what waits', (b) =>
  withStore(b, async (store) => {
    assert.deepEqual(await store.queueStats(), { queued: 0, deferred: 0, oldestReceivedAt: null });
    const m1 = await store.accept(makeMessage({ localRecipients: [], remoteRecipients: ['a@r.example', 'b@r.example'], receivedAt: new Date('2025-01-01T00:00:00.000Z') }));
    const m2 = await store.accept(makeMessage({ localRecipients: [], remoteRecipients: ['c@r.example'] }));
    const now = new Date(Date.now() + 1000);
    assert.equal((await store.claimDue(now, 10)).length, 3);
    const far = new Date(Date.now() + 3_600_000);
    for (const r of ['a@r.example', 'b@r.example']) {
      assert.equal(await store.recordAttempt({ id: m1.id, recipient: r, outcome: 'deferred', error: '451 later', nextAttemptAt: far, tls: null }), true);
    }
    assert.equal(await store.recordAttempt({ id: m2.id, recipient: 'c@r.example', outcome: 'delivered', tls: null }), true);
    assert.deepEqual(await store.queueStats(), { queued: 0, deferred: 2, oldestReceivedAt: '2025-01-01T00:00:00.000Z' });
    assert.deepEqual(await store.claimDue(now, 10), [], 'deferred for an hour');

    assert.equal(await store.retryQueued(m2.id), 0, 'a delivered row is not retried');
    assert.equal(await store.retryQueued(m1.id), 2);
    const due = await store.claimDue(new Date(Date.now() + 1000), 10);
    assert.deepEqual(due.map((e) => e.recipient).sort(), ['a@r.example', 'b@r.example']);
    assert.equal((await row(store, m1.id, 'a@r.example')).status, 'deferred', 'retry keeps the status, only the time moves');
    const m3 = await store.accept(makeMessage({ localRecipients: [], remoteRecipients: ['d@r.example'] }));
    assert.deepEqual(await store.queueStats(), { queued: 1, deferred: 2, oldestReceivedAt: '2025-01-01T00:00:00.000Z' });
    assert.equal(await store.deleteQueued(m1.id), 2);
    assert.equal((await store.queueStats()).oldestReceivedAt, (await store.getMessage(m3.id))?.summary.receivedAt);
  }));

storeTest('claimDue records the node: renewLeases extends only this node\'s live leases', async (b) => {
  const [a, c] = await twoNodes(b);
  try {
    const { id } = await a.accept(makeMessage({ localRecipients: [], remoteRecipients: ['r1@r.example', 'r2@r.example', 'r3@r.example', 'r4@r.example'] }));
    const now = new Date();
    const mine = await a.claimDue(now, 2, { leaseMs: 60_000 });
    const theirs = await c.claimDue(now, 1, { leaseMs: 60_000 });
    assert.equal(mine.length, 2);
    assert.equal(theirs.length, 1);
    // The 4th row: claimed by node-a with a 1 ms lease, run out before the renewal below.
    const stale = await a.claimDue(new Date(), 1, { leaseMs: 1 });
    assert.equal(stale.length, 1);
    await sleep(20);
    const staleRcpt = stale[0]?.recipient ?? '';
    const all = [...mine, ...theirs, ...stale].map((e) => ({ id: e.id, recipient: e.recipient }));
    assert.equal(new Set(all.map((e) => e.recipient)).size, 4);

    const before = Date.now();
    assert.equal(await a.renewLeases(all, 600_000), 2, 'only node-a\'s two live leases');
    for (const e of mine) {
      const until = Date.parse((await row(a, id, e.recipient)).claimedUntil ?? '');
      assert.ok(until >= before + 600_000, `renewed ${e.recipient} to ${until}, expected ≥ ${before + 600_000}`);
    }
    assert.equal((await row(a, id, theirs[0]?.recipient ?? '')).claimedUntil, theirs[0]?.claimedUntil, 'node-b\'s lease untouched');
    assert.equal((await row(a, id, staleRcpt)).claimedUntil, stale[0]?.claimedUntil, 'an expired lease is not renewed');

    // The expired row is node-b's once it claims it; node-a cannot take it back.
    const retaken = await c.claimDue(new Date(), 10, { leaseMs: 60_000 });
    assert.deepEqual(retaken.map((e) => e.recipient), [staleRcpt]);
    assert.equal(await a.renewLeases([{ id, recipient: staleRcpt }], 600_000), 0);
    assert.equal(await c.renewLeases([{ id, recipient: staleRcpt }], 600_000), 1);
    // Unknown rows, recorded rows and an empty list renew nothing.
    assert.equal(await a.renewLeases([], 600_000), 0);
    assert.equal(await a.renewLeases([{ id: '0000000000000000', recipient: 'r1@r.example' }], 600_000), 0);
    assert.equal(await a.recordAttempt({ id, recipient: mine[0]?.recipient ?? '', outcome: 'delivered', tls: null }), true);
    assert.equal(await a.renewLeases([{ id, recipient: mine[0]?.recipient ?? '' }], 600_000), 0, 'a recorded row holds no lease');
  } finally {
    await closeAll(a, c);
  }
});

storeTest('releaseLeases: PostgreSQL releases this node\'s leases only; SQLite (one owner per data dir) releases every lease', async (b) => {
  const [a, c] = await twoNodes(b);
  try {
    const { id } = await a.accept(makeMessage({ localRecipients: [], remoteRecipients: ['r1@r.example', 'r2@r.example'] }));
    const now = new Date(Date.now() + 1000);
    const mine = await a.claimDue(now, 1);
    const theirs = await c.claimDue(now, 1);
    assert.equal(mine.length + theirs.length, 2);
    const due = (await row(a, id, mine[0]?.recipient ?? '')).nextAttemptAt;

    const released = await a.releaseLeases();
    const theirRow = await row(a, id, theirs[0]?.recipient ?? '');
    assert.equal((await row(a, id, mine[0]?.recipient ?? '')).claimedUntil, null, 'node-a\'s lease released');
    assert.equal((await row(a, id, mine[0]?.recipient ?? '')).nextAttemptAt, due, 'the due time is kept');
    if (b.name === 'postgres') {
      // Several nodes share the queue: node-b is alive and delivering; its lease stays.
      assert.equal(released, 1);
      assert.equal(theirRow.claimedUntil, theirs[0]?.claimedUntil);
      assert.deepEqual((await a.claimDue(now, 10)).map((e) => e.recipient), [mine[0]?.recipient]);
    } else {
      // SQLite: serve holds the data dir's owner lock, so any lease found at start is a dead
      // process's — all are released (the second store object here exists only in this test).
      assert.equal(released, 2);
      assert.equal(theirRow.claimedUntil, null);
      assert.equal((await a.claimDue(now, 10)).length, 2);
    }
  } finally {
    await closeAll(a, c);
  }
});

storeTest('claimDue never hands the same row to two claimers: 2 nodes × 5 concurrent claimers over 200 rows', async (b) => {
  const [a, c] = await twoNodes(b);
  try {
    // 20 messages × 10 recipients = 200 rows.
    const accepted = await Promise.all(
      Array.from({ length: 20 }, (_, m) => a.accept(makeMessage({ localRecipients: [], remoteRecipients: Array.from({ length: 10 }, (_, r) => `m${m}r${r}@r.example`) }))),
    );
    assert.equal(accepted.length, 20);
    const now = new Date(Date.now() + 1000);
    const got: Array<{ node: string; key: string }> = [];
    const claimer = async (s: Store): Promise<void> => {
      for (;;) {
        const rows = await s.claimDue(now, 7, { leaseMs: 600_000 });
        if (rows.length === 0) return;
        for (const r of rows) got.push({ node: s.nodeId, key: `${r.id} ${r.recipient}` });
      }
    };
    await Promise.all([...Array.from({ length: 5 }, () => claimer(a)), ...Array.from({ length: 5 }, () => claimer(c))]);
    const keys = got.map((g) => g.key);
    const dup = keys.filter((k, i) => keys.indexOf(k) !== i);
    assert.deepEqual(dup, [], 'no row claimed twice');
    assert.equal(new Set(keys).size, 200, 'every row claimed');
    assert.deepEqual(await a.claimDue(now, 100), [], 'nothing left');
    // Every row is leased: the listing shows a lease on each.
    assert.ok((await a.listQueue()).every((e) => e.claimedUntil !== null));
  } finally {
    await closeAll(a, c);
  }
}, { timeout: 180_000 });

storeTest(
  'a late record does not undo another node\'s work: a deferral after a delivery keeps it delivered; another node\'s live lease survives a late record and a retry',
  async (b) => {
    const [a, c] = await twoNodes(b);
    try {
      // One message per row: which row a claim takes is then not a question of tie order.
      const x = await a.accept(makeMessage({ localRecipients: [], remoteRecipients: ['x@r.example'] }));
      assert.equal((await a.claimDue(new Date(), 1, { leaseMs: 1 })).length, 1);
      await sleep(20);
      assert.equal((await c.claimDue(new Date(), 1, { leaseMs: 600_000 })).length, 1, 'node-a\'s lease ran out: node-b takes the row');
      assert.equal(await c.recordAttempt({ id: x.id, recipient: 'x@r.example', outcome: 'delivered', tls: null }), true);
      // node-a's receiver answered 451 after all: recorded in the history, the row stays delivered.
      assert.equal(await a.recordAttempt({ id: x.id, recipient: 'x@r.example', outcome: 'deferred', error: '451 4.4.1 late', nextAttemptAt: new Date(), tls: null }), false, 'a late record decides nothing');
      assert.equal((await row(a, x.id, 'x@r.example')).status, 'delivered');
      // ... nor does a late permanent failure (a 5xx at another MX): no bounce for delivered mail.
      assert.equal(await a.recordAttempt({ id: x.id, recipient: 'x@r.example', outcome: 'failed', error: '550 5.1.1 late', tls: null }), false);
      assert.equal((await row(a, x.id, 'x@r.example')).status, 'delivered');
      assert.deepEqual((await a.listAttempts(x.id)).map((h) => [h.outcome, h.node]), [['delivered', 'node-b'], ['deferred', 'node-a'], ['failed', 'node-a']]);
      assert.deepEqual(await a.claimDue(new Date(Date.now() + 1000), 10), [], 'a delivered row is never claimed again');

      const y = await a.accept(makeMessage({ localRecipients: [], remoteRecipients: ['y@r.example'] }));
      assert.equal((await a.claimDue(new Date(), 1, { leaseMs: 1 })).length, 1);
      await sleep(20);
      const held = await c.claimDue(new Date(), 1, { leaseMs: 600_000 });
      assert.equal(held.length, 1);
      assert.equal(await a.recordAttempt({ id: y.id, recipient: 'y@r.example', outcome: 'deferred', error: '451 late', nextAttemptAt: new Date(), tls: null }), true);
      assert.equal((await row(a, y.id, 'y@r.example')).claimedUntil, held[0]?.claimedUntil, 'node-b is delivering: its lease stays');
      assert.equal(await a.retryQueued(y.id), 1);
      assert.equal((await row(a, y.id, 'y@r.example')).claimedUntil, held[0]?.claimedUntil, 'a retry makes it due, not unleased');
      assert.deepEqual(await a.claimDue(new Date(Date.now() + 1000), 10), [], 'nobody else may take a row node-b holds');
    } finally {
      await closeAll(a, c);
    }
  },
);

storeTest('listQueue({ id }) reads one message\'s rows wherever they stand in the queue (not a page of it)', (b) =>
  withStore(b, async (store) => {
    const first = await store.accept(makeMessage({ localRecipients: [], remoteRecipients: ['a@r.example', 'b@r.example'] }));
    const later = await store.accept(makeMessage({ localRecipients: [], remoteRecipients: ['c@r.example'] }));
    const page = await store.listQueue({ limit: 2 });
    assert.ok(!page.some((e) => e.id === later.id), 'the later message is past the first page');
    assert.deepEqual((await store.listQueue({ id: later.id })).map((e) => [e.id, e.recipient]), [[later.id, 'c@r.example']]);
    assert.deepEqual((await store.listQueue({ id: first.id })).map((e) => e.recipient).sort(), ['a@r.example', 'b@r.example']);
    assert.deepEqual(await store.listQueue({ id: 'no-such-id' }), []);
    assert.deepEqual((await store.listQueue({ id: later.id, status: 'deferred' })), [], 'filters combine');
  }),
);

storeTest('bounds: listQueue and claimDue refuse a limit outside 1..max, a lease below 1 ms', (b) =>
  withStore(b, async (store) => {
    // SQLite may throw at the call, PostgreSQL rejects: both refuse, with the same code.
    for (const limit of [0, -1, 1.5, 100_001]) await assert.rejects(async () => store.listQueue({ limit }), { code: 'STORE_BAD_LIMIT' }, `listQueue ${limit}`);
    for (const limit of [0, 10_001]) await assert.rejects(async () => store.claimDue(new Date(), limit), { code: 'STORE_BAD_LIMIT' }, `claimDue ${limit}`);
    await assert.rejects(async () => store.renewLeases([{ id: '0000000000000000', recipient: 'a@r.example' }], 0), { code: 'STORE_BAD_LEASE' });
    assert.deepEqual(await store.listQueue({ limit: 100_000 }), []);
  }));
