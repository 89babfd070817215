/**
 * The store's MTA-STS policy cache (RFC 8461 §5.1: it survives a restart): put, replace, read
 * after close/reopen and from a read-only store, mode none removes, forget removes.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { openSqliteStore, openSqliteStoreReadOnly, type StoredMtaStsPolicy } from '../../src/store/index.js';
import { tempDirs } from './helpers.js';

const dirs = tempDirs();
after(() => dirs.cleanup());

function policy(over: Partial<StoredMtaStsPolicy> = {}): StoredMtaStsPolicy {
  return {
    domain: 'example.org', id: 'abc1', mode: 'enforce', mx: ['mx.example.org', '*.example.net'], maxAge: 86400,
    fetchedAt: 1_700_000_000_000, expiresAt: 1_700_086_400_000, text: 'version: STSv1\nmode: enforce\n', ...over,
  };
}

test('a cached policy survives close and reopen, and a read-only store sees it', async () => {
  const dir = dirs.make();
  const store = await openSqliteStore(dir);
  await store.putMtaSts(policy({ domain: 'Example.ORG.' }));
  assert.deepEqual(store.getMtaSts('example.org'), policy());
  await store.close();
  const again = await openSqliteStore(dir);
  try {
    assert.deepEqual(again.getMtaSts('EXAMPLE.org'), policy());
    const ro = openSqliteStoreReadOnly(dir);
    assert.deepEqual(ro.getMtaSts('example.org'), policy());
    await ro.close();
    await again.putMtaSts(policy({ id: 'abc2', mode: 'testing' }));
    assert.equal(again.getMtaSts('example.org')?.id, 'abc2');
    assert.equal(again.getMtaSts('example.org')?.mode, 'testing');
    assert.equal(again.getMtaSts('other.example'), null);
  } finally {
    await again.close();
  }
});

test("mode none removes the cached policy; forget removes it and says whether there was one", async () => {
  const store = await openSqliteStore(dirs.make());
  try {
    await store.putMtaSts(policy());
    await store.putMtaSts(policy({ mode: 'none', mx: [] }));
    assert.equal(store.getMtaSts('example.org'), null);
    await store.putMtaSts(policy());
    assert.equal(await store.forgetMtaSts('example.org'), true);
    assert.equal(await store.forgetMtaSts('example.org'), false);
    assert.equal(store.getMtaSts('example.org'), null);
    await assert.rejects(store.forgetMtaSts('bad domain'), { code: 'STORE_BAD_POLICY' });
  } finally {
    await store.close();
  }
});
