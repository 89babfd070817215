/**
 * What only the PostgreSQL store has (the shared behaviour is the two-backend suite's): commits
 * visible to another connection, group commit, claims with FOR UPDATE SKIP LOCKED across nodes,
 * leases of a dead node, renewals of one's own leases, the directory replica kept current by
 * NOTIFY, PostgreSQL going away and coming back under the same store object, migrations raced by
 * several nodes, and the URL/password rule. Against a private cluster (test/helpers/postgres.ts).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PostsealError } from '../../src/errors.js';
import { openPgStore, type PgStoreOptions } from '../../src/store/pg/pg-store.js';
import { migratePg, PG_SCHEMA_VERSION } from '../../src/store/pg/schema.js';
import type { Store } from '../../src/store/index.js';
import { sql, usePostgres } from '../helpers/postgres.js';
import { until } from '../helpers/poll.js';
import { makeMessage } from './helpers.js';

const dirs: string[] = [];
const stores: Store[] = [];
const { skip, cluster } = usePostgres({
  closeFirst: async () => {
    for (const s of stores.splice(0)) await s.close().catch(() => undefined);
  },
});
after(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function spoolDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'postseal-pg-spool-'));
  dirs.push(d);
  return d;
}

async function open(url: string, nodeId: string, extra: Partial<PgStoreOptions> = {}): Promise<Store> {
  const s = await openPgStore(url, { nodeId, spoolDir: spoolDir(), connectTimeoutMs: 2000, statementTimeoutMs: 5000, ...extra });
  stores.push(s);
  return s;
}

async function rejectsWith(p: unknown, code: string): Promise<PostsealError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof PostsealError, `expected a PostsealError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected a rejection with ${code}`);
}

test('accept resolves after COMMIT: the message is visible to another connection, byte-exact, with its queue rows', { skip }, async () => {
  const url = await cluster.createDatabase('accept');
  const store = await open(url, 'n1');
  const data = Buffer.from('Subject: pg\r\n\r\nbody \u00e9\r\n');
  const { id } = await store.accept(makeMessage({ data, localRecipients: ['Alice@Example.org'], remoteRecipients: ['Bob@R.Example'] }));
  const rows = await sql<{ data: Buffer; n: string }>(
    url,
    `SELECT d.data, (SELECT count(*) FROM queue q WHERE q.seq = m.seq) AS n FROM messages m JOIN message_data d ON d.seq = m.seq WHERE m.id = $1`,
    [id],
  );
  assert.equal(rows.length, 1);
  assert.deepEqual(rows[0]?.data, data);
  assert.equal(rows[0]?.n, '1');
  // A second store (another node) reads it back through the Store interface.
  const other = await open(url, 'n2');
  const got = await other.getMessage(id);
  assert.deepEqual(got?.data, data);
  assert.deepEqual(got?.summary.recipients, ['alice@example.org', 'Bob@r.example']);
  assert.deepEqual((await other.listMessages({ mailbox: 'alice@example.org' })).map((m) => m.id), [id]);
  assert.equal((await other.listQueue())[0]?.recipient, 'Bob@r.example');
});

test('group commit: 200 concurrent accepts are all stored, in fewer commits than messages; a collision fails alone', { skip }, async () => {
  const url = await cluster.createDatabase('group');
  const store = await open(url, 'n1');
  const first = await store.accept(makeMessage());
  const before = store.stats();
  const results = await Promise.allSettled([
    ...Array.from({ length: 200 }, () => store.accept(makeMessage({ remoteRecipients: ['x@r.example'] }))),
    // The same id again, in the same batches: only that one fails.
    store.accept(makeMessage({ id: first.id })),
    store.addUser('u@example.org', 'pw'),
    store.addUser('u@example.org', 'pw2'),
    // Submitted in the same tick as the accepts (same batch): an op that fails inside the
    // transaction (the writer then runs the batch again with a savepoint per op) fails alone.
    store.addAlias('big@example.org', Array.from({ length: 1001 }, (_, i) => `t${i}@example.org`)),
    store.addAlias('ok@example.org', ['a@example.org']),
  ]);
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  assert.deepEqual(failed.map((r) => (r.reason as PostsealError).code).sort(), ['STORE_BAD_ALIAS', 'STORE_ID_COLLISION', 'USER_EXISTS']);
  assert.deepEqual(await store.listAliases(), [{ address: 'ok@example.org', targets: ['a@example.org'] }]);
  const s = store.stats();
  assert.equal(s.messages - before.messages, 200);
  assert.ok(s.commits - before.commits < 200, `commits: ${s.commits - before.commits}`);
  assert.equal(await store.countMessages(), 201);
  assert.equal((await store.queueStats()).queued, 200);
});

test('a spooled body is read into the row, the spool file goes after the commit', { skip }, async () => {
  const url = await cluster.createDatabase('spool');
  const dir = spoolDir();
  const store = await open(url, 'n1', { spoolDir: dir });
  const content = Buffer.alloc(300_000, 'x');
  const f = store.spool.create('big1');
  f.write([content]);
  const spooled = await f.finish();
  const header = Buffer.from('Received: by us\r\n');
  const { id } = await store.accept({ ...makeMessage(), data: [header], spooled });
  assert.equal(existsSync(join(dir, 'big1')), false);
  const got = await store.getMessage(id);
  assert.deepEqual(got?.data, Buffer.concat([header, content]));
  assert.equal(got?.summary.size, header.length + content.length);
  // A spool file no commit took (a crash before COMMIT) is an orphan.
  const left = store.spool.create('left1');
  left.write([Buffer.from('x')]);
  await left.finish();
  assert.equal(store.removeOrphanBodies(0), 1);
  assert.equal(existsSync(join(dir, 'left1')), false);
});

test('claims: two nodes claiming at once never get the same row (SKIP LOCKED); the claim names the node', { skip }, async () => {
  const url = await cluster.createDatabase('claim');
  const a = await open(url, 'node-a');
  const b = await open(url, 'node-b');
  await Promise.all(Array.from({ length: 120 }, (_, i) => a.accept(makeMessage({ localRecipients: [], remoteRecipients: [`r${i}@r.example`] }))));
  const now = new Date(Date.now() + 1000);
  const taken = new Map<string, string>();
  const claimLoop = async (s: Store): Promise<void> => {
    for (;;) {
      const rows = await s.claimDue(now, 7, { leaseMs: 60_000 });
      if (rows.length === 0) return;
      for (const r of rows) {
        const key = `${r.id} ${r.recipient}`;
        assert.equal(taken.has(key), false, `${key} claimed twice (by ${taken.get(key)} and ${s.nodeId})`);
        taken.set(key, s.nodeId);
      }
    }
  };
  await Promise.all([claimLoop(a), claimLoop(b), claimLoop(a), claimLoop(b)]);
  assert.equal(taken.size, 120);
  const byNode = await sql<{ claimed_by: string; n: string }>(url, 'SELECT claimed_by, count(*) AS n FROM queue GROUP BY claimed_by');
  const counts = Object.fromEntries(byNode.map((r) => [r.claimed_by, Number(r.n)]));
  assert.equal((counts['node-a'] ?? 0) + (counts['node-b'] ?? 0), 120);
  assert.equal(counts['node-a'], [...taken.values()].filter((n) => n === 'node-a').length);
});

test('a dead node’s lease: not claimable before it expires, claimable after; releaseLeases frees only the own node’s', { skip }, async () => {
  const url = await cluster.createDatabase('lease');
  const a = await open(url, 'node-a');
  const { id } = await a.accept(makeMessage({ localRecipients: [], remoteRecipients: ['r@r.example', 's@r.example'] }));
  const t0 = new Date(Date.now() + 1000);
  assert.equal((await a.claimDue(t0, 1, { leaseMs: 60_000 })).length, 1);
  await a.close(); // died holding its lease: nothing released
  const b = await open(url, 'node-b');
  // The other row is free; the leased one is not, until its lease ends.
  const free = await b.claimDue(new Date(t0.getTime() + 30_000), 10, { leaseMs: 60_000 });
  assert.equal(free.length, 1);
  assert.equal(await b.releaseLeases(), 1, 'node-b releases its own lease only');
  const stillHeld = await b.claimDue(new Date(t0.getTime() + 30_000), 10, { leaseMs: 60_000 });
  assert.deepEqual(stillHeld.map((r) => r.recipient), [free[0]?.recipient], 'the dead node’s row stays leased');
  const later = await b.claimDue(new Date(t0.getTime() + 60_001), 10, { leaseMs: 60_000 });
  assert.equal(later.length, 1);
  assert.equal(later[0]?.id, id);
  assert.notEqual(later[0]?.recipient, free[0]?.recipient);
});

test('renewLeases extends only this node’s live leases; recordAttempt names the node; a late deferral does not undo a delivery', { skip }, async () => {
  const url = await cluster.createDatabase('renew');
  const a = await open(url, 'node-a');
  const b = await open(url, 'node-b');
  const { id } = await a.accept(makeMessage({ localRecipients: [], remoteRecipients: ['r1@r.example', 'r2@r.example', 'r3@r.example'] }));
  const now = new Date();
  const [ra] = await a.claimDue(now, 1, { leaseMs: 60_000 });
  const [rb] = await b.claimDue(now, 1, { leaseMs: 60_000 });
  // Another row claimed by a with a lease that has run out by the time of the renewal.
  const [old] = await a.claimDue(now, 1, { leaseMs: 1 });
  assert.ok(ra && rb && old);
  const all = [ra, rb, old].map((r) => ({ id: r.id, recipient: r.recipient }));
  assert.equal(await a.renewLeases(all, 600_000), 1, 'only a’s live lease');
  const leases = new Map((await a.listQueue()).map((e) => [e.recipient, e.claimedUntil]));
  assert.ok(Date.parse(leases.get(ra.recipient) ?? '') > now.getTime() + 300_000, 'a’s lease extended');
  assert.equal(leases.get(rb.recipient), rb.claimedUntil, 'b’s lease untouched');
  assert.equal(await b.renewLeases(all, 600_000), 1);

  // b records a delivery of a's row (as after a's lease ran out and b took it over); a's late
  // deferral is recorded in the history but does not make the delivered row wait again.
  assert.equal(await b.recordAttempt({ id, recipient: ra.recipient, outcome: 'delivered', tls: null }), true);
  assert.equal(await a.recordAttempt({ id, recipient: ra.recipient, outcome: 'deferred', error: '451 late', nextAttemptAt: new Date(), tls: null }), false, 'late: the history only');
  const row = (await a.listQueue()).find((e) => e.recipient === ra.recipient);
  assert.equal(row?.status, 'delivered');
  const attempts = (await a.listAttempts(id)).filter((x) => x.recipient === ra.recipient);
  assert.deepEqual(attempts.map((x) => [x.outcome, x.node]), [['delivered', 'node-b'], ['deferred', 'node-a']]);
  // A record by a node that does not hold a live lease leaves the holder's lease alone.
  assert.equal(await a.recordAttempt({ id, recipient: rb.recipient, outcome: 'deferred', error: '451', nextAttemptAt: new Date(), tls: null }), true);
  assert.ok((await a.listQueue()).find((e) => e.recipient === rb.recipient)?.claimedUntil, 'b’s lease kept');
});

test('the directory replica sees a user and an alias added by another node (NOTIFY), without reopening', { skip }, async () => {
  const url = await cluster.createDatabase('notify');
  // No poll in this test's time: only the notification can bring the change.
  const a = await open(url, 'node-a', { directoryPollMs: 3_600_000 });
  const b = await open(url, 'node-b', { directoryPollMs: 3_600_000 });
  assert.equal(a.hasUser('new@example.org'), false);
  await b.addUser('new@example.org', 'pw', { senders: ['*@example.org'] });
  assert.equal(b.hasUser('new@example.org'), true, 'the writer reads its own write at once');
  await until('node a sees the user', () => a.hasUser('New@Example.org'));
  assert.deepEqual(a.senderPatterns('new@example.org'), ['*@example.org']);
  await b.addAlias('info@example.org', ['new@example.org']);
  await until('node a sees the alias', () => a.aliasTargets('info@example.org').length === 1);
  assert.deepEqual(a.resolveRecipient('info@example.org', { localDomains: ['example.org'] }).mailboxes, ['new@example.org']);
  assert.equal(await a.verifyUser('new@example.org', 'pw'), true);
  assert.equal(await a.verifyUser('new@example.org', 'wrong'), false);
  await b.removeUser('new@example.org');
  await until('node a sees the removal', () => !a.hasUser('new@example.org'));
});

test('PostgreSQL stopped: accept and reads reject STORE_UNAVAILABLE (no hang); started again: the same store works, the replica catches up', { skip }, async () => {
  const url = await cluster.createDatabase('outage');
  const a = await open(url, 'node-a', { directoryPollMs: 3_600_000 });
  await a.accept(makeMessage());
  await cluster.stop('immediate');
  try {
    await rejectsWith(a.accept(makeMessage()), 'STORE_UNAVAILABLE');
    await rejectsWith(a.listMessages(), 'STORE_UNAVAILABLE');
    await rejectsWith(a.claimDue(new Date(), 10), 'STORE_UNAVAILABLE');
    await rejectsWith(a.verifyUser('x@example.org', 'pw'), 'STORE_UNAVAILABLE');
  } finally {
    await cluster.start();
  }
  const { id } = await a.accept(makeMessage());
  assert.ok(await a.getMessage(id));
  assert.equal(await a.countMessages(), 2, 'the refused message was not stored');
  // The LISTEN connection came back: a change by another node arrives by notification.
  const b = await open(url, 'node-b');
  await until('node a listens again', async () => {
    await b.addAlias('probe@example.org', [`t${Date.now()}@example.org`]);
    return a.aliasTargets('probe@example.org').length > 0;
  }, 30_000, 500);
});

test('five nodes opening a fresh database at once: one migrates, all open, the version is current; a newer database is refused', { skip }, async () => {
  const url = await cluster.createDatabase('migrate');
  const opened = await Promise.all(Array.from({ length: 5 }, (_, i) => open(url, `n${i}`)));
  assert.equal(opened.length, 5);
  const rows = await sql<{ version: number }>(url, 'SELECT version FROM postseal_schema');
  assert.deepEqual(rows, [{ version: PG_SCHEMA_VERSION }]);
  assert.deepEqual(await migratePg(url), { from: PG_SCHEMA_VERSION, to: PG_SCHEMA_VERSION });
  // The migrations of a second fresh database raced by migratePg itself: exactly one ran them.
  const url2 = await cluster.createDatabase('migrate');
  const runs = await Promise.all(Array.from({ length: 5 }, () => migratePg(url2)));
  assert.equal(runs.filter((r) => r.from === 0).length, 1);
  await sql(url, 'UPDATE postseal_schema SET version = version + 1');
  await rejectsWith(openPgStore(url, { nodeId: 'n9', spoolDir: spoolDir() }), 'STORE_SCHEMA_TOO_NEW');
  await rejectsWith(migratePg(url), 'STORE_SCHEMA_TOO_NEW');
});

test('a URL with a password is refused; a read-only store reads and refuses writes; close() then STORE_CLOSED', { skip }, async () => {
  const url = await cluster.createDatabase('url');
  const withPassword = url.replace('postgres@', 'postgres:secret@');
  const err = await rejectsWith(openPgStore(withPassword, { nodeId: 'n', spoolDir: spoolDir() }), 'STORE_BAD_URL');
  assert.match(err.message, /must not carry a password.*PGPASSWORD.*store\.passwordFile/);
  assert.doesNotMatch(err.message, /secret/);
  const w = await open(url, 'writer');
  await w.accept(makeMessage());
  const r = await open(url, 'reader', { readOnly: true });
  assert.equal(await r.countMessages(), 1);
  await rejectsWith(r.accept(makeMessage()), 'STORE_READ_ONLY');
  await w.close();
  await rejectsWith(w.accept(makeMessage()), 'STORE_CLOSED');
  await rejectsWith(w.claimDue(new Date(), 1), 'STORE_CLOSED');
});
