/**
 * Large bodies on disk: the spool file, the store row that names it (SQLite) or the body stored
 * from it (PostgreSQL), orphan removal (both backends, test/store/backends.ts), and the body
 * collector's memory accounting (threshold, budget, discard; no store).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { FileSpool } from '../../src/store/spool.js';
import { BodyBudget, BodyCollector } from '../../src/server/body.js';
import { makeMessage, tempDirs } from './helpers.js';
import { storeTest } from './backends.js';

const dirs = tempDirs();
after(() => dirs.cleanup());

storeTest('a spooled message is stored whole, read back whole, sized whole; a reader reads it the same way', async (b) => {
  const store = await b.open();
  try {
    const content = randomBytes(3 * 1024 * 1024);
    const msg = makeMessage();
    const f = store.spool.create(msg.id);
    f.write([content.subarray(0, 1000), content.subarray(1000, 2_000_000)]);
    f.write([content.subarray(2_000_000)]);
    const spooled = await f.finish();
    assert.equal(spooled.size, content.length);
    const header = Buffer.from('Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n');
    await store.accept({ ...msg, data: [header], spooled });
    const got = await store.getMessage(msg.id);
    assert.ok(got);
    assert.deepEqual(got.data, Buffer.concat([header, content]));
    assert.equal(got.summary.size, header.length + content.length);
    // The CLI's read-only store reads it the same way.
    const ro = await b.openReader(store);
    assert.deepEqual((await ro.getMessage(msg.id))?.data, Buffer.concat([header, content]));
    await ro.close();
    const spoolDir = (store.spool as FileSpool).dir;
    if (b.name === 'sqlite') {
      // SQLite: the row names the file, which stays in the data dir's bodies/ (mode 0600).
      assert.deepEqual(readdirSync(spoolDir), [msg.id]);
      assert.equal(statSync(join(spoolDir, msg.id)).mode & 0o777, 0o600);
    } else {
      // PostgreSQL: nodes are on different hosts, so the body is stored in the database and the
      // local spool file goes after the commit.
      assert.deepEqual(readdirSync(spoolDir), []);
    }
  } finally {
    await store.close();
  }
});

test('discard removes the file; a name is created only once', async () => {
  const dir = dirs.make();
  const spool = new FileSpool(join(dir, 'b'));
  const f = spool.create('abc');
  f.write([Buffer.from('hello')]);
  assert.throws(() => spool.create('abc'), /EEXIST/);
  f.discard();
  f.discard();
  assert.equal(existsSync(join(dir, 'b', 'abc')), false);
  assert.throws(() => spool.create('../etc'), (e: Error & { code?: string }) => e.code === 'STORE_BAD_ID');
  await assert.rejects(f.finish(), (e: Error & { code?: string }) => e.code === 'STORE_SPOOL_CLOSED');
});

storeTest('orphan spool files (no message, old enough) are removed; referenced and young ones are kept', async (b) => {
  const store = await b.open();
  try {
    const msg = makeMessage();
    const f = store.spool.create(msg.id);
    f.write([Buffer.from('body\r\n')]);
    await store.accept({ ...msg, data: [Buffer.from('H: 1\r\n')], spooled: await f.finish() });
    const bodies = (store.spool as FileSpool).dir;
    writeFileSync(join(bodies, 'orphan-old'), 'x');
    writeFileSync(join(bodies, 'orphan-young'), 'x');
    const old = new Date(Date.now() - 2 * 3_600_000);
    utimesSync(join(bodies, 'orphan-old'), old, old);
    // SQLite keeps the committed body in its file: old, but referenced. PostgreSQL removed it.
    const kept = b.name === 'sqlite' ? [msg.id] : [];
    for (const name of kept) utimesSync(join(bodies, name), old, old);
    assert.equal(store.removeOrphanBodies(), 1);
    assert.deepEqual(readdirSync(bodies).sort(), [...kept, 'orphan-young'].sort());
    assert.equal((await store.getMessage(msg.id))?.data.toString(), 'H: 1\r\nbody\r\n');
  } finally {
    await store.close();
  }
});

test('collector: small bodies stay in memory, large ones go to the spool; the budget sees only what is held', async () => {
  const dir = dirs.make();
  const spool = new FileSpool(dir);
  const budget = new BodyBudget(10 * 1024 * 1024);
  const small = new BodyCollector(budget, spool, 64 * 1024, 'small1');
  small.add([Buffer.alloc(1000, 0x41)]);
  assert.equal(small.spooled, false);
  assert.equal(budget.used, 1000);
  const inline = small.takeInline();
  assert.equal(Buffer.concat(inline).length, 1000);
  assert.equal(budget.used, 0);

  const big = new BodyCollector(budget, spool, 64 * 1024, 'big1');
  const content = randomBytes(1024 * 1024);
  for (let i = 0; i < content.length; i += 10_000) {
    big.add([content.subarray(i, i + 10_000)]);
    assert.ok(budget.used < 64 * 1024 + 10_000, `held ${budget.used} bytes`);
  }
  assert.equal(big.spooled, true);
  const end = await big.end();
  assert.equal(budget.used, 0);
  assert.deepEqual(end.spooled, { file: 'big1', size: content.length });
  assert.deepEqual(readdirSync(dir).sort(), ['big1']);

  const dropped = new BodyCollector(budget, spool, 64 * 1024, 'gone1');
  dropped.add([content]);
  assert.equal(dropped.spooled, true);
  dropped.discard();
  assert.equal(budget.used, 0);
  assert.deepEqual(readdirSync(dir).sort(), ['big1']);
});

test('collector without a spool: past the budget the message is dropped, not held', () => {
  const budget = new BodyBudget(1024 * 1024);
  const a = new BodyCollector(budget, null, 256 * 1024, 'a');
  a.add([Buffer.alloc(600 * 1024)]);
  assert.equal(a.overBudget, false);
  const b = new BodyCollector(budget, null, 256 * 1024, 'b');
  b.add([Buffer.alloc(600 * 1024)]);
  assert.equal(b.overBudget, true);
  assert.equal(budget.used, 600 * 1024, 'b gave its bytes back, a still holds its own');
  b.add([Buffer.alloc(600 * 1024)]);
  assert.equal(budget.used, 600 * 1024, 'an over-budget message keeps nothing');
  a.discard();
  assert.equal(budget.used, 0);
});
