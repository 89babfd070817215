/**
 * The store's MTA-STS policy cache (RFC 8461 §5.1: it survives a restart), on both backends
 * (test/store/backends.ts): put, replace, read after close/reopen and from a read-only store,
 * mode none removes, forget removes.
 */
import assert from 'node:assert/strict';
import type { StoredMtaStsPolicy } from '../../src/store/index.js';
import { storeTest } from './backends.js';

function policy(over: Partial<StoredMtaStsPolicy> = {}): StoredMtaStsPolicy {
  return {
    domain: 'example.org', id: 'abc1', mode: 'enforce', mx: ['mx.example.org', '*.example.net'], maxAge: 86400,
    fetchedAt: 1_700_000_000_000, expiresAt: 1_700_086_400_000, text: 'version: STSv1\nmode: enforce\n', ...over,
  };
}

storeTest('a cached policy survives close and reopen, and a read-only store sees it', async (b) => {
  const store = await b.open();
  await store.putMtaSts(policy({ domain: 'Example.ORG.' }));
  assert.deepEqual(await store.getMtaSts('example.org'), policy());
  await store.close();
  const again = await b.reopen(store);
  try {
    assert.deepEqual(await again.getMtaSts('EXAMPLE.org'), policy());
    const ro = await b.openReader(again);
    assert.deepEqual(await ro.getMtaSts('example.org'), policy());
    await ro.close();
    await again.putMtaSts(policy({ id: 'abc2', mode: 'testing' }));
    assert.equal((await again.getMtaSts('example.org'))?.id, 'abc2');
    assert.equal((await again.getMtaSts('example.org'))?.mode, 'testing');
    assert.equal(await again.getMtaSts('other.example'), null);
  } finally {
    await again.close();
  }
});

storeTest('mode none removes the cached policy; forget removes it and says whether there was one', async (b) => {
  const store = await b.open();
  try {
    await store.putMtaSts(policy());
    await store.putMtaSts(policy({ mode: 'none', mx: [] }));
    assert.equal(await store.getMtaSts('example.org'), null);
    await store.putMtaSts(policy());
    assert.equal(await store.forgetMtaSts('example.org'), true);
    assert.equal(await store.forgetMtaSts('example.org'), false);
    assert.equal(await store.getMtaSts('example.org'), null);
    await assert.rejects(async () => store.forgetMtaSts('bad domain'), { code: 'STORE_BAD_POLICY' });
    await assert.rejects(async () => store.putMtaSts(policy({ fetchedAt: 1.5 })), { code: 'STORE_BAD_POLICY' });
  } finally {
    await store.close();
  }
});
