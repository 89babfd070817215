/**
 * The private PostgreSQL cluster of the tests (test/helpers/postgres.ts): it starts, gives each
 * test its own database, listens on 127.0.0.1 only, stop('immediate') really takes it away (a
 * connection fails), start() brings it back on the same port with the data written before, and
 * close() removes the temp dir. Skipped without PostgreSQL on a dev machine; fails on CI.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { requirePostgres, startPostgres } from '../helpers/postgres.js';

async function query<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

test('pg harness: private cluster, one database per test, 127.0.0.1 only, stop/start on the same port, close removes the dir', async (t) => {
  if (!requirePostgres(t)) return;
  const t0 = performance.now();
  const cluster = await startPostgres();
  t.diagnostic(`startPostgres (initdb + pg_ctl start): ${Math.round(performance.now() - t0)} ms`);
  try {
    assert.equal(cluster.host, '127.0.0.1');
    assert.ok(cluster.port > 0);
    assert.equal(cluster.running, true);
    assert.equal(cluster.url('x'), `postgres://postgres@127.0.0.1:${cluster.port}/x`);

    const a = await cluster.createDatabase('harness');
    const b = await cluster.createDatabase('harness');
    assert.notEqual(a, b);
    for (const u of [a, b]) assert.match(u, new RegExp(`^postgres://postgres@127\\.0\\.0\\.1:${cluster.port}/harness_\\d+_[0-9a-f]{8}$`));

    await query(a, 'CREATE TABLE t (v text NOT NULL)');
    await query(a, "INSERT INTO t VALUES ('in a')");
    await query(b, 'CREATE TABLE t (v text NOT NULL)');
    await query(b, "INSERT INTO t VALUES ('in b')");
    // Two separate databases: each sees only its own row, and current_database() is the one asked for.
    const [ra] = await query<{ v: string; db: string }>(a, 'SELECT v, current_database() AS db FROM t');
    const [rb] = await query<{ v: string; db: string }>(b, 'SELECT v, current_database() AS db FROM t');
    assert.deepEqual(ra, { v: 'in a', db: a.slice(a.lastIndexOf('/') + 1) });
    assert.deepEqual(rb, { v: 'in b', db: b.slice(b.lastIndexOf('/') + 1) });

    const [la] = await query<{ listen_addresses: string }>(a, 'SHOW listen_addresses');
    assert.equal(la?.listen_addresses, '127.0.0.1', 'the test cluster must not listen on other addresses');
    const [fs] = await query<{ fsync: string }>(a, 'SHOW fsync');
    assert.equal(fs?.fsync, 'on');

    // A connection open across the stop: its next query fails too.
    const held = new pg.Client({ connectionString: a, connectionTimeoutMillis: 5000 });
    held.on('error', () => undefined); // the server going away is reported here as well
    await held.connect();
    await cluster.stop('immediate');
    assert.equal(cluster.running, false);
    await assert.rejects(held.query('SELECT 1'));
    await held.end().catch(() => undefined);
    await assert.rejects(query(a, 'SELECT 1'), (e: NodeJS.ErrnoException) => {
      assert.equal(e.code, 'ECONNREFUSED', String(e));
      return true;
    });
    await cluster.stop('immediate'); // idempotent

    const port = cluster.port;
    await cluster.start();
    assert.equal(cluster.running, true);
    assert.equal(cluster.port, port, 'start() must reuse the port');
    assert.deepEqual(await query(a, 'SELECT v FROM t'), [{ v: 'in a' }], 'data written before the stop is there after the start');
    assert.deepEqual(await query(b, 'SELECT v FROM t'), [{ v: 'in b' }]);
    assert.match(cluster.logTail(), /database system is ready to accept connections/);
  } finally {
    await cluster.close();
  }
  assert.equal(existsSync(cluster.dir), false, 'close() removes the temp dir');
  assert.equal(existsSync(join(cluster.dir, 'data')), false);
  assert.equal(cluster.running, false);
  await cluster.close(); // idempotent
  await assert.rejects(query(cluster.url(), 'SELECT 1'), { code: 'ECONNREFUSED' });
});

test('pg harness: fsync off on request; two clusters side by side get different ports', async (t) => {
  if (!requirePostgres(t)) return;
  const [c1, c2] = await Promise.all([startPostgres({ fsync: false }), startPostgres()]);
  try {
    assert.notEqual(c1.port, c2.port);
    assert.notEqual(c1.dir, c2.dir);
    assert.deepEqual(await query(c1.url(), 'SHOW fsync'), [{ fsync: 'off' }]);
    assert.deepEqual(await query(c2.url(), 'SHOW fsync'), [{ fsync: 'on' }]);
  } finally {
    await Promise.all([c1.close(), c2.close()]);
  }
});
