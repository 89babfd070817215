/**
 * API tokens in the store, on both backends (test/store/backends.ts): the secret is returned
 * once and only its SHA-256 is stored; verify by the secret; names unique among live tokens;
 * revoke by name or id (a revoked token never verifies again, its name may be reused); touch.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { storeTest } from './backends.js';

storeTest('tokens: create returns the secret once, the store keeps its sha256; verify, list, touch, revoke, reuse a name', async (b) => {
  const site = await b.site();
  const store = await site.open();
  try {
    const one = await store.createApiToken('deploy');
    assert.match(one.token, /^ps_[A-Za-z0-9_-]{43}$/);
    assert.equal(one.info.name, 'deploy');
    assert.equal(one.info.revoked, false);
    assert.equal(one.info.lastUsedAt, null);
    assert.deepEqual(await store.verifyApiToken(one.token), one.info);
    assert.equal(await store.verifyApiToken(one.token.slice(0, -1) + (one.token.endsWith('A') ? 'B' : 'A')), null);
    assert.equal(await store.verifyApiToken('not a token'), null);
    assert.equal(await store.verifyApiToken('ps_' + 'x'.repeat(200)), null, 'overlong input is refused');

    await assert.rejects(store.createApiToken('deploy'), { code: 'TOKEN_EXISTS' });
    await assert.rejects(async () => store.createApiToken('has space'), { code: 'TOKEN_BAD_NAME' });
    const two = await store.createApiToken('backup');
    assert.deepEqual((await store.listApiTokens()).map((t) => t.name).sort(), ['backup', 'deploy']);

    const used = new Date('2026-01-02T03:04:05.000Z');
    await store.touchApiToken(one.info.id, used);
    assert.equal((await store.verifyApiToken(one.token))?.lastUsedAt, used.toISOString());

    // What is stored: the hash, never the secret.
    const rows = await site.rawQuery('SELECT name, hash FROM api_tokens ORDER BY name');
    assert.deepEqual(rows.map((r) => [r.name, r.hash]), [
      ['backup', createHash('sha256').update(two.token).digest('hex')],
      ['deploy', createHash('sha256').update(one.token).digest('hex')],
    ]);
    assert.ok(!JSON.stringify(rows).includes(one.token.slice(3)));

    assert.equal(await store.revokeApiToken('deploy'), 1);
    assert.equal(await store.revokeApiToken('deploy'), 0, 'nothing live by that name');
    assert.equal(await store.verifyApiToken(one.token), null, 'a revoked token never verifies');
    assert.equal(await store.revokeApiToken(two.info.id), 1, 'by id');
    assert.equal(await store.verifyApiToken(two.token), null);
    const again = await store.createApiToken('deploy');
    assert.notEqual(again.token, one.token);
    assert.deepEqual(await store.verifyApiToken(again.token), again.info);
    const listed = await store.listApiTokens();
    assert.equal(listed.length, 3, 'revoked tokens stay listed');
    assert.deepEqual(listed.filter((t) => t.revoked).map((t) => t.id).sort(), [one.info.id, two.info.id].sort());
    assert.equal(await store.verifyApiToken(one.token), null, 'the old secret of a reused name stays dead');
  } finally {
    await store.close();
  }
  const reader = await site.openReader();
  try {
    assert.equal((await reader.listApiTokens()).length, 3, 'a reader lists them');
  } finally {
    await reader.close();
  }
});
