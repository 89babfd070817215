/**
 * `postseal store copy --from sqlite:DIR --to postgres://…` (issue 13): a SQLite installation with
 * real content (local mail, a spooled body past the inline limit, a remote row with a deferred
 * attempt, a user with a password, sender patterns and the admin flag, an alias, an API token, an
 * MTA-STS policy, TLS-RPT counts and a waiting report) copied into a private PostgreSQL cluster:
 * the user logs in with the same password against the PostgreSQL store, bodies are byte-identical,
 * queue rows and attempts are equal, a second run adds nothing, a target with messages is refused
 * without --append, a message missing from the target is added by an --append re-run, and a
 * data directory a serve holds is refused.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { lockDataDir, openSqliteStore } from '../../src/store/index.js';
import { openPgStore } from '../../src/store/pg/pg-store.js';
import type { QueueEntry, Store, StoreReader } from '../../src/store/index.js';
import { usePostgres } from '../helpers/postgres.js';
import { makeMessage } from '../store/helpers.js';
import { killAll, runCli, tempDirs } from './child.js';

const dirs = tempDirs();
const { skip, cluster } = usePostgres({ fsync: false, closeFirst: killAll });
after(() => dirs.cleanup());

const PASSWORD = 'a long password for alice 7';
const DAY = '2025-03-04';

interface Made {
  ids: string[];
  spooledId: string;
  remoteId: string;
  token: string;
}

/** A SQLite data directory with one of everything the copy moves. */
async function populate(dir: string): Promise<Made> {
  const store = await openSqliteStore(dir);
  try {
    await store.addUser('alice@example.test', PASSWORD, { senders: ['*@example.test', 'sales@other.test'], admin: true });
    await store.addUser('bob@example.test', 'bob password 12345');
    await store.addAlias('info@example.test', ['alice@example.test', 'Someone@Remote.Example']);
    await store.addAlias('@example.test', ['bob@example.test']);
    const { token } = await store.createApiToken('deploy');
    await store.putMtaSts({ domain: 'remote.example', id: '20250101', mode: 'enforce', mx: ['mx.remote.example'], maxAge: 86_400, fetchedAt: Date.parse('2025-03-04T00:00:00Z'), expiresAt: Date.parse('2025-03-05T00:00:00Z'), text: 'version: STSv1\nmode: enforce\nmx: mx.remote.example\nmax_age: 86400\n' });
    await store.addTlsRptCounts([
      { policyDomain: 'remote.example', day: DAY, policyType: 'sts', policyStrings: ['version: STSv1', 'mode: enforce'], mxHost: 'mx.remote.example', receivingIp: '192.0.2.25', result: 'success', count: 7, detail: null },
      { policyDomain: 'remote.example', day: DAY, policyType: 'sts', policyStrings: ['version: STSv1', 'mode: enforce'], mxHost: 'mx.remote.example', receivingIp: '192.0.2.25', result: 'certificate-expired', count: 2, detail: 'expired' },
    ]);
    await store.makeTlsRptReport(
      { reportId: 'r-1', policyDomain: 'old.example', day: '2025-03-01', startAt: 1, endAt: 2, gz: randomBytes(300), rua: ['mailto:tlsrpt@old.example'], attempts: 1, nextAttemptAt: 3, lastError: 'refused', createdAt: 4 },
      [],
    );

    const ids: string[] = [];
    // Local mail.
    for (let i = 0; i < 5; i++) {
      ids.push((await store.accept(makeMessage({ localRecipients: ['alice@example.test'], data: Buffer.from(`Subject: local ${i}\r\n\r\nbody ${i}\r\n`) }))).id);
    }
    // A big body spooled to DIR/bodies as the server does past limits.spoolThreshold (256 KiB).
    const big = Buffer.concat([Buffer.from('Subject: big\r\n\r\n'), Buffer.from(randomBytes(300 * 1024).toString('base64'))]);
    const spoolId = makeMessage().id;
    const file = store.spool.create(`${spoolId}.eml`);
    file.write([big]);
    const spooled = await file.finish();
    const received = Buffer.from(`Received: from client.example.net by localhost with ESMTP id ${spoolId}\r\n`);
    const spooledId = (await store.accept(makeMessage({ id: spoolId, localRecipients: ['bob@example.test'], data: received, spooled }))).id;
    ids.push(spooledId);
    // A remote row, attempted once and deferred, and a message to both a mailbox and remote.
    const remoteId = (await store.accept(makeMessage({ localRecipients: [], remoteRecipients: ['carol@remote.example', 'dan@remote.example'], authUser: 'alice@example.test', listener: 'submission' }))).id;
    ids.push(remoteId);
    const claimed = await store.claimDue(new Date(Date.now() + 1000), 10);
    assert.equal(claimed.length, 2);
    await store.recordAttempt({ id: remoteId, recipient: 'carol@remote.example', tls: null, outcome: 'deferred', error: '451 4.7.1 greylisted', nextAttemptAt: new Date(Date.now() + 3_600_000) });
    await store.recordAttempt({ id: remoteId, recipient: 'dan@remote.example', tls: null, outcome: 'delivered' });
    return { ids, spooledId, remoteId, token };
  } finally {
    await store.close();
  }
}

function withoutLease(rows: QueueEntry[]): Array<Omit<QueueEntry, 'claimedUntil'>> {
  return rows.map(({ claimedUntil: _, ...rest }) => rest).sort((a, b) => `${a.id} ${a.recipient}`.localeCompare(`${b.id} ${b.recipient}`));
}

/** Everything a reader shows, for comparing the two stores. */
async function snapshot(s: StoreReader, made: Made): Promise<unknown> {
  return {
    users: await s.listUsers(),
    admin: await s.isAdmin('alice@example.test'),
    senders: s.senderPatterns('alice@example.test'),
    aliases: await s.listAliases(),
    tokens: await s.listApiTokens(),
    mtaSts: await s.getMtaSts('remote.example'),
    counts: await s.listTlsRptCounts(),
    reports: await s.listTlsRptReports(),
    messages: await s.listMessages({ limit: 100 }),
    queue: withoutLease(await s.listQueue()),
    attempts: await s.listAttempts(made.remoteId),
  };
}

function parseCounts(stdout: string): Record<string, { source: number; copied: number; target: number }> {
  const out: Record<string, { source: number; copied: number; target: number }> = {};
  for (const m of stdout.matchAll(/^(\w+)\s+source (\d+)\s+copied (\d+)\s+in target (\d+)$/gm)) {
    out[m[1] ?? ''] = { source: Number(m[2]), copied: Number(m[3]), target: Number(m[4]) };
  }
  return out;
}

test('store copy moves a SQLite installation into PostgreSQL, verified; re-running adds nothing', { skip, timeout: 300_000 }, async () => {
  const dir = dirs.make('postseal-copy-');
  const made = await populate(dir);
  const url = await cluster.createDatabase('copy');

  // Small batches: several transactions, the spooled message alone in its own (byte bound).
  const r = await runCli(['store', 'copy', '--from', `sqlite:${dir}`, '--to', url, '--batch', '3']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^verified: every source row is in the target$/m);
  const counts = parseCounts(r.stdout);
  assert.deepEqual(counts.messages, { source: 7, copied: 7, target: 7 });
  assert.deepEqual(counts.mailbox_entries, { source: 6, copied: 6, target: 6 });
  assert.deepEqual(counts.queue, { source: 2, copied: 2, target: 2 });
  assert.deepEqual(counts.queue_attempts, { source: 2, copied: 2, target: 2 });
  assert.deepEqual(counts.users, { source: 2, copied: 2, target: 2 });
  assert.deepEqual(counts.user_senders, { source: 2, copied: 2, target: 2 });
  assert.deepEqual(counts.aliases, { source: 3, copied: 3, target: 3 });
  assert.deepEqual(counts.api_tokens, { source: 1, copied: 1, target: 1 });
  assert.deepEqual(counts.mta_sts_policies, { source: 1, copied: 1, target: 1 });
  assert.deepEqual(counts.tlsrpt_counts, { source: 2, copied: 2, target: 2 });
  assert.deepEqual(counts.tlsrpt_reports, { source: 1, copied: 1, target: 1 });
  assert.match(r.stderr, /messages: 7 of 7 read, 7 copied/);

  const sqlite = await openSqliteStore(dir);
  const pgStore: Store = await openPgStore(url, { nodeId: 'check', spoolDir: dirs.make('postseal-spool-') });
  try {
    // The same password logs in against PostgreSQL (the scrypt hash was copied, not re-made).
    assert.equal(await pgStore.verifyUser('alice@example.test', PASSWORD), true);
    assert.equal(await pgStore.verifyUser('alice@example.test', 'not the password'), false);
    assert.equal(pgStore.hasUser('bob@example.test'), true);
    assert.notEqual(await pgStore.verifyApiToken(made.token), null, 'the API token still works (its hash was copied)');
    // Every body byte-identical, the spooled one included.
    for (const id of made.ids) {
      const a = sqlite.getMessage(id);
      const b = await pgStore.getMessage(id);
      assert.ok(a !== null && b !== null, id);
      assert.ok(a.data.equals(b.data), `body of ${id}`);
      assert.deepEqual(b.summary, a.summary);
    }
    const big = await pgStore.getMessage(made.spooledId);
    assert.ok(big !== null && big.data.length > 300 * 1024);
    // Queue rows (status, attempts, due time, last error) and attempts equal; everything else too.
    assert.deepEqual(await snapshot(pgStore, made), await snapshot(sqlite, made));
    const carol = (await pgStore.listQueue()).find((e) => e.recipient === 'carol@remote.example');
    assert.equal(carol?.status, 'deferred');
    assert.equal(carol?.claimedUntil, null, 'leases of the old serve are not copied');
  } finally {
    await pgStore.close();
    await sqlite.close();
  }

  // A target that holds messages: refused without --append, untouched.
  const again = await runCli(['store', 'copy', '--from', dir, '--to', url]);
  assert.equal(again.code, 1, again.stderr);
  assert.match(again.stderr, /STORE_NOT_EMPTY: .*already holds 7 message\(s\).*--append/);
  // With --append: nothing new, still verified.
  const append = await runCli(['store', 'copy', '--from', dir, '--to', url, '--append', '--quiet']);
  assert.equal(append.code, 0, append.stderr);
  assert.equal(append.stderr, '');
  for (const [table, c] of Object.entries(parseCounts(append.stdout))) assert.equal(c.copied, 0, `${table} copied again`);
  assert.match(append.stdout, /^verified/m);

  // An interrupted copy: a message missing from the target is added by the re-run, with its rows.
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('DELETE FROM messages WHERE id = $1', [made.remoteId]);
  } finally {
    await client.end();
  }
  const resumed = await runCli(['store', 'copy', '--from', dir, '--to', url, '--append']);
  assert.equal(resumed.code, 0, resumed.stderr);
  const rc = parseCounts(resumed.stdout);
  assert.deepEqual([rc.messages?.copied, rc.queue?.copied, rc.queue_attempts?.copied, rc.mailbox_entries?.copied], [1, 2, 2, 0]);
  assert.match(resumed.stdout, /^verified/m);
});

test('store copy refuses a data directory a serve holds, a non-SQLite source and a non-PostgreSQL target', { skip, timeout: 120_000 }, async () => {
  const dir = dirs.make('postseal-copy-');
  await (await openSqliteStore(dir)).close();
  const url = await cluster.createDatabase('locked');
  // This test process holds the owner lock, as a running serve would.
  const lock = lockDataDir(dir);
  try {
    const r = await runCli(['store', 'copy', '--from', `sqlite:${dir}`, '--to', url]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /STORE_LOCKED: .*in use by postseal serve \(pid \d+/);
  } finally {
    lock.release();
  }
  const fromPg = await runCli(['store', 'copy', '--from', url, '--to', url]);
  assert.equal(fromPg.code, 2);
  assert.match(fromPg.stderr, /--from takes the SQLite store/);
  const toDir = await runCli(['store', 'copy', '--from', dir, '--to', dir]);
  assert.equal(toDir.code, 2);
  assert.match(toDir.stderr, /--to takes a PostgreSQL URL/);
  const none = await runCli(['store', 'copy', '--from', dirs.make('postseal-empty-'), '--to', url]);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /STORE_NOT_FOUND: no SQLite store to copy/);
});
