/**
 * One serve per data directory (store/owner.ts): a second serve on the same directory is refused
 * (STORE_LOCKED, exit 1, the pid named); a pid file left by a dead process is taken over; and the
 * queue leases such a process left behind are released at start, so its mail does not wait for
 * the lease end (15 min for LMTP handoffs).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { lockDataDir, openSqliteStore, openSqliteStoreReadOnly, OWNER_FILE } from '../../src/store/index.js';
import { killAll, mxOnly, startServeChild, tempDirs } from '../cli/child.js';
import { makeMessage } from './helpers.js';

const dirs = tempDirs();
after(() => {
  killAll();
  dirs.cleanup();
});

/** A pid that surely names no running process: one that just ran and exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  const pid = Number(r.stdout);
  assert.ok(pid > 0);
  return pid;
}

test('sqlite only: a second serve on the same data directory is refused, naming the first; the lock goes with the first', async () => {
  const dir = dirs.make();
  const first = await startServeChild(mxOnly(dir));
  try {
    assert.equal(readFileSync(join(dir, OWNER_FILE), 'utf8').trim(), String(first.child.pid));
    const second = await startServeChild(mxOnly(dir)).then(
      () => assert.fail('the second serve started'),
      (err: unknown) => (err instanceof Error ? err.message : String(err)),
    );
    assert.match(second, /serve exited \(\{"code":1/);
    assert.match(second, new RegExp(`STORE_LOCKED: data directory \\S+ is in use by postseal serve \\(pid ${String(first.child.pid)};`));
  } finally {
    first.signal('SIGTERM');
    assert.equal((await first.waitExit()).code, 0);
  }
  assert.equal(existsSync(join(dir, OWNER_FILE)), false, 'a clean stop removes the pid file');
});

test('sqlite only: a pid file of a dead process is taken over; its leases are released at start', async () => {
  const dir = dirs.make();
  // The state a SIGKILLed serve leaves: its pid file, and a queue row it had claimed for an hour.
  const store = await openSqliteStore(dir);
  const { id } = await store.accept(makeMessage({ localRecipients: [], remoteRecipients: ['far@remote.example'] }));
  const claimed = await store.claimDue(new Date(Date.now() + 1000), 10, { leaseMs: 3_600_000 });
  assert.deepEqual(claimed.map((e) => e.id), [id]);
  await store.close();
  const dead = deadPid();
  writeFileSync(join(dir, OWNER_FILE), `${dead}\n`);

  // --no-relay: nothing delivers the row, so what the test reads is the lease alone.
  const srv = await startServeChild(mxOnly(dir, ['--no-relay']));
  try {
    assert.equal(readFileSync(join(dir, OWNER_FILE), 'utf8').trim(), String(srv.child.pid));
    const log = await srv.waitForLog((l) => l.event === 'queue' && l.released !== undefined);
    assert.equal(log.released, 1);
    assert.equal(log.previousPid, dead);
    const reader = await openSqliteStoreReadOnly(dir);
    try {
      const row = reader.listQueue().find((e) => e.id === id);
      assert.ok(row);
      assert.equal(row.claimedUntil, null, 'the dead process’s lease is gone');
      assert.equal(row.status, 'queued');
    } finally {
      await reader.close();
    }
  } finally {
    srv.signal('SIGTERM');
    await srv.waitExit();
  }
});

test('sqlite only: lockDataDir: one holder at a time in a process tree; release lets the next one in', () => {
  const dir = dirs.make();
  const lock = lockDataDir(dir);
  assert.equal(lock.tookOverFrom, null);
  // Another process (the test runner's parent here) holding it: refused.
  writeFileSync(join(dir, OWNER_FILE), `${process.ppid}\n`);
  assert.throws(() => lockDataDir(dir), { code: 'STORE_LOCKED' });
  writeFileSync(join(dir, OWNER_FILE), `${process.pid}\n`);
  lock.release();
  assert.equal(existsSync(join(dir, OWNER_FILE)), false);
  const again = lockDataDir(dir);
  again.release();
});
