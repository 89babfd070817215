import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { openSqliteStore } from '../../src/store/index.js';
import type { TlsFacts } from '../../src/types.js';
import { PostsealError } from '../../src/errors.js';
import { makeMessage, tempDirs } from './helpers.js';

const dirs = tempDirs();
after(() => dirs.cleanup());

const TLS: TlsFacts = { protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', group: 'X25519', sni: 'mx.example.org', alpn: null };

describe('sqlite store', () => {
  test('accept then read back byte-exact, with envelope and metadata', async () => {
    const store = await openSqliteStore(dirs.make());
    try {
      const all = Buffer.alloc(256 * 4);
      for (let i = 0; i < all.length; i++) all[i] = i % 256;
      // A view with a non-zero offset into a larger buffer: only the view's bytes are stored.
      const backing = Buffer.concat([Buffer.from('JUNK'), all, Buffer.from('TAIL')]);
      const data = new Uint8Array(backing.buffer, backing.byteOffset + 4, all.length);
      const { id } = await store.accept(
        makeMessage({ data, tls: TLS, requireTls: true, authUser: 'bob@example.org', localRecipients: ['Alice@Example.ORG'], remoteRecipients: ['Carol@Remote.Example'] }),
      );
      const got = store.getMessage(id);
      assert.ok(got);
      assert.ok(got.data.equals(all));
      assert.deepEqual(got.summary, {
        id,
        receivedAt: '2025-01-02T03:04:05.678Z',
        mailFrom: 'sender@example.net',
        recipients: ['alice@example.org', 'Carol@remote.example'],
        size: all.length,
        listener: 'mx',
        clientAddress: '192.0.2.1',
        heloName: 'client.example.net',
        authUser: 'bob@example.org',
        tls: TLS,
        requireTls: true,
        authResults: null,
        quarantine: false,
      });
      assert.equal(store.getMessage('0000000000000000'), null);
    } finally {
      await store.close();
    }
  });

  test('lists newest first, filters by mailbox, counts', async () => {
    const store = await openSqliteStore(dirs.make());
    try {
      const a = await store.accept(makeMessage({ localRecipients: ['alice@example.org'] }));
      const b = await store.accept(makeMessage({ localRecipients: ['bob@example.org', 'alice@example.org'] }));
      const c = await store.accept(makeMessage({ localRecipients: ['bob@example.org'] }));
      assert.deepEqual(store.listMessages().map((m) => m.id), [c.id, b.id, a.id]);
      assert.deepEqual(store.listMessages({ limit: 2 }).map((m) => m.id), [c.id, b.id]);
      assert.deepEqual(store.listMessages({ mailbox: 'ALICE@example.org' }).map((m) => m.id), [b.id, a.id]);
      assert.equal(store.countMessages(), 3);
      assert.equal(store.countMessages({ mailbox: 'bob@example.org' }), 2);
      assert.ok(a.id < b.id && b.id < c.id, 'ids sort by creation');
      assert.throws(() => store.listMessages({ limit: 0 }), { code: 'STORE_BAD_LIMIT' });
    } finally {
      await store.close();
    }
  });

  test('200 concurrent accepts are all stored, in fewer commits than messages', async () => {
    const store = await openSqliteStore(dirs.make());
    try {
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) => store.accept(makeMessage({ data: Buffer.from(`message ${i}\r\n`) }))),
      );
      const ids = new Set(results.map((r) => r.id));
      assert.equal(ids.size, 200);
      results.forEach((r, i) => assert.equal(store.getMessage(r.id)?.data.toString(), `message ${i}\r\n`));
      const s = store.stats();
      assert.equal(s.messages, 200);
      assert.ok(s.commits < 200, `expected batching, got ${s.commits} commits for 200 messages`);
      assert.ok(s.largestBatch > 1);
    } finally {
      await store.close();
    }
  });

  test('batches respect maxBatchOps and maxBatchBytes', async () => {
    const store = await openSqliteStore(dirs.make(), { maxBatchOps: 7, maxBatchBytes: 1000 });
    try {
      await Promise.all(Array.from({ length: 30 }, () => store.accept(makeMessage({ data: Buffer.alloc(100, 0x41) }))));
      await store.accept(makeMessage({ data: Buffer.alloc(5000, 0x42) })); // larger than a batch: goes alone
      const s = store.stats();
      assert.equal(s.messages, 31);
      assert.ok(s.largestBatch <= 7);
      assert.ok(s.commits >= 6);
    } finally {
      await store.close();
    }
  });

  test('close() flushes pending accepts; reopening keeps everything', async () => {
    const dir = dirs.make();
    const store = await openSqliteStore(dir);
    const pending = Array.from({ length: 50 }, (_, i) => store.accept(makeMessage({ data: Buffer.from(`m${i}`) })));
    await store.close();
    const ids = (await Promise.all(pending)).map((r) => r.id);
    await assert.rejects(store.accept(makeMessage()), { code: 'STORE_CLOSED' });
    await store.close(); // idempotent

    const again = await openSqliteStore(dir);
    try {
      assert.equal(again.countMessages(), 50);
      ids.forEach((id, i) => assert.equal(again.getMessage(id)?.data.toString(), `m${i}`));
    } finally {
      await again.close();
    }
  });

  test('keeps an id chosen by the session; a duplicate id fails alone, not its batch', async () => {
    const store = await openSqliteStore(dirs.make());
    try {
      const given = Object.assign(makeMessage({ data: Buffer.from('one') }), { id: 'Sess-1.abc' });
      assert.deepEqual(await store.accept(given), { id: 'Sess-1.abc' });
      const dup = Object.assign(makeMessage({ data: Buffer.from('two') }), { id: 'Sess-1.abc' });
      const [a, b, c] = await Promise.allSettled([
        store.accept(makeMessage({ data: Buffer.from('x') })),
        store.accept(dup),
        store.accept(makeMessage({ data: Buffer.from('y') })),
      ]);
      assert.equal(a?.status, 'fulfilled');
      assert.equal(c?.status, 'fulfilled');
      assert.equal(b?.status, 'rejected');
      assert.equal(b?.status === 'rejected' && b.reason instanceof PostsealError ? b.reason.code : null, 'STORE_ID_COLLISION');
      assert.equal(store.getMessage('Sess-1.abc')?.data.toString(), 'one');
      assert.equal(store.countMessages(), 3);
      await assert.rejects(store.accept(Object.assign(makeMessage(), { id: 'bad id!' })), { code: 'STORE_BAD_ID' });
    } finally {
      await store.close();
    }
  });

  test('rejects a message without recipients and bad addresses; other accepts are unaffected', async () => {
    const store = await openSqliteStore(dirs.make());
    try {
      await assert.rejects(store.accept(makeMessage({ localRecipients: [] })), { code: 'STORE_NO_RECIPIENTS' });
      await assert.rejects(store.accept(makeMessage({ localRecipients: ['bad address'] })), { code: 'STORE_BAD_ADDRESS' });
      await assert.rejects(store.accept(makeMessage({ localRecipients: [], remoteRecipients: ['nodomain'] })), { code: 'STORE_BAD_ADDRESS' });
      await store.accept(makeMessage());
      assert.equal(store.countMessages(), 1);
    } finally {
      await store.close();
    }
  });
});
