/**
 * The signal channel between the nodes of one PostgreSQL store (issue 13 item 4),
 * store/pg/signals.ts: NOTIFY to every listener, a durable generation per kind so a node cut off
 * while a signal went out acts on it when it reconnects, and payload checks. Against a private
 * cluster (test/helpers/postgres.ts). serve and `postseal reload` on it: test/cluster/reload.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openPgSignals, SIGNAL_CHANNEL, type PgSignals, type SignalEvent } from '../../src/store/pg/signals.js';
import { sql, usePostgres } from '../helpers/postgres.js';
import { until } from '../helpers/poll.js';

const opened: PgSignals[] = [];
const { skip, cluster } = usePostgres({
  fsync: false,
  closeFirst: async () => {
    for (const s of opened.splice(0)) await s.close().catch(() => undefined);
  },
});

async function open(url: string, from?: string): Promise<PgSignals> {
  const s = await openPgSignals(url, { connectTimeoutMs: 2000, from });
  opened.push(s);
  return s;
}

function dbName(url: string): string {
  return decodeURIComponent(new URL(url).pathname.slice(1));
}

test('publish reaches every node by NOTIFY, once per generation; foreign, malformed and oversized payloads are ignored', { skip }, async () => {
  const url = await cluster.createDatabase('signals');
  const a = await open(url, 'node-a');
  const b = await open(url, 'node-b');
  const seenA: SignalEvent[] = [];
  const seenB: SignalEvent[] = [];
  a.subscribe('certificates', (e) => seenA.push(e));
  b.subscribe('certificates', (e) => seenB.push(e));

  // Not ours: each would throw or fire if the payload checks were missing. Sent before the real
  // one on the same channel; notifications arrive in commit order, so they are handled first.
  for (const junk of ['not json', '{"kind":"dkim","generation":5}', '{"kind":"certificates"}', '{"kind":"certificates","generation":"7"}', JSON.stringify({ kind: 'certificates', generation: 9, detail: 'x'.repeat(2000) })]) {
    await sql(url, 'SELECT pg_notify($1, $2)', [SIGNAL_CHANNEL, junk]);
  }
  const generation = await a.publish('certificates', 'renewed by certbot');
  assert.equal(generation, 1);
  await until('both nodes heard generation 1', () => seenA.length >= 1 && seenB.length >= 1);
  for (const [seen, name] of [[seenA, 'a'], [seenB, 'b']] as const) {
    assert.equal(seen.length, 1, `node ${name}: ${JSON.stringify(seen)}`);
    assert.deepEqual(seen[0], { kind: 'certificates', generation: 1, detail: 'renewed by certbot', from: 'node-a', via: 'notify' });
  }
  // The durable part: the generation is in the table, bumped by each publish.
  assert.equal(await b.publish('certificates'), 2);
  await until('generation 2 heard', () => seenA.length === 2 && seenB.length === 2);
  const rows = await sql<{ kind: string; generation: string }>(url, 'SELECT kind, generation::text FROM postseal_signals');
  assert.deepEqual(rows, [{ kind: 'certificates', generation: '2' }]);
  // A node opened now starts at the current generation: nothing fires for what it already read at start.
  const c = await open(url);
  const seenC: SignalEvent[] = [];
  c.subscribe('certificates', (e) => seenC.push(e));
  await a.publish('certificates');
  await until('node c heard generation 3', () => seenC.length === 1);
  assert.equal(seenC[0]?.generation, 3);
});

test('a node cut off while a signal is published catches up when it reconnects (the generation, not the NOTIFY)', { skip }, async () => {
  const url = await cluster.createDatabase('catchup');
  const db = dbName(url);
  const publisher = await open(url, 'publisher');
  const node = await open(url, 'node');
  const seen: SignalEvent[] = [];
  node.subscribe('certificates', (e) => seen.push(e));
  const admin = cluster.url('postgres');
  // No new connection to the database (superusers included) while we cut the node off, so it
  // cannot be listening when the signal goes out: the publisher's connection is already open.
  await sql(admin, `ALTER DATABASE "${db}" WITH ALLOW_CONNECTIONS false`);
  try {
    // The two listening sessions, oldest first: the publisher's, then the node's.
    const pids = await sql<{ pid: number }>(admin, `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = 'postseal-signals' ORDER BY backend_start`, [db]);
    assert.equal(pids.length, 2);
    // With a timeout, pg_terminate_backend returns once the backend is gone (PostgreSQL 14+):
    // the NOTIFY below cannot reach it.
    const [gone] = await sql<{ ok: boolean }>(admin, 'SELECT pg_terminate_backend($1, 10000) AS ok', [pids[1]?.pid]);
    assert.equal(gone?.ok, true);
    assert.equal(await publisher.publish('certificates', 'while cut off'), 1);
  } finally {
    await sql(admin, `ALTER DATABASE "${db}" WITH ALLOW_CONNECTIONS true`);
  }
  await until('the node reconnected and caught up', () => seen.length >= 1, 20_000);
  assert.deepEqual(seen, [{ kind: 'certificates', generation: 1, detail: null, from: null, via: 'catch-up' }]);
  assert.ok(node.connects >= 2, `reconnected (${node.connects} LISTEN sessions)`);
  // Acted on once: a later signal is generation 2, heard live; 1 is not repeated.
  await publisher.publish('certificates');
  await until('generation 2 heard live', () => seen.length === 2);
  assert.deepEqual(seen.map((e) => [e.generation, e.via]), [[1, 'catch-up'], [2, 'notify']]);
});
