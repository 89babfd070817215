/**
 * The store's core, on both backends (test/store/backends.ts): accept and read back byte-exact,
 * list/filter/count, group commit under concurrent accepts and its batch bounds, close flushing
 * what was submitted (and the reopen keeping it), session-chosen ids, refusals.
 */
import assert from 'node:assert/strict';
import type { AuthVerdicts, TlsFacts } from '../../src/types.js';
import { PostsealError } from '../../src/errors.js';
import { makeMessage } from './helpers.js';
import { storeTest, withStore } from './backends.js';

const TLS: TlsFacts = { protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', group: 'X25519', sni: 'mx.example.org', alpn: null };

storeTest('accept then read back byte-exact, with envelope and metadata', (b) =>
  withStore(b, async (store) => {
    const all = Buffer.alloc(256 * 4);
    for (let i = 0; i < all.length; i++) all[i] = i % 256;
    // A view with a non-zero offset into a larger buffer: only the view's bytes are stored.
    const backing = Buffer.concat([Buffer.from('JUNK'), all, Buffer.from('TAIL')]);
    const data = new Uint8Array(backing.buffer, backing.byteOffset + 4, all.length);
    const { id } = await store.accept(
      makeMessage({ data, tls: TLS, requireTls: true, authUser: 'bob@example.org', localRecipients: ['Alice@Example.ORG'], remoteRecipients: ['Carol@Remote.Example'] }),
    );
    const got = await store.getMessage(id);
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
    assert.equal(await store.getMessage('0000000000000000'), null);
  }));

storeTest('lists newest first, filters by mailbox, counts', (b) =>
  withStore(b, async (store) => {
    const a = await store.accept(makeMessage({ localRecipients: ['alice@example.org'] }));
    const bb = await store.accept(makeMessage({ localRecipients: ['bob@example.org', 'alice@example.org'] }));
    const c = await store.accept(makeMessage({ localRecipients: ['bob@example.org'] }));
    const relayed = await store.accept(makeMessage({ localRecipients: [], remoteRecipients: ['far@remote.example'] }));
    assert.deepEqual((await store.listMessages()).map((m) => m.id), [relayed.id, c.id, bb.id, a.id]);
    assert.deepEqual((await store.listMessages({ limit: 2 })).map((m) => m.id), [relayed.id, c.id]);
    assert.deepEqual((await store.listMessages({ localOnly: true })).map((m) => m.id), [c.id, bb.id, a.id], 'localOnly: no relay-only message');
    assert.deepEqual((await store.listMessages({ mailbox: 'ALICE@example.org' })).map((m) => m.id), [bb.id, a.id]);
    assert.equal(await store.countMessages(), 4);
    assert.equal(await store.countMessages({ mailbox: 'bob@example.org' }), 2);
    assert.ok(a.id < bb.id && bb.id < c.id, 'ids sort by creation');
    // SQLite throws at the call, PostgreSQL rejects: both refuse.
    await assert.rejects(async () => store.listMessages({ limit: 0 }), { code: 'STORE_BAD_LIMIT' });
    await assert.rejects(async () => store.listMessages({ limit: 10_001 }), { code: 'STORE_BAD_LIMIT' });
  }));

storeTest('200 concurrent accepts are all stored, in fewer commits than messages', (b) =>
  withStore(b, async (store) => {
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => store.accept(makeMessage({ data: Buffer.from(`message ${i}\r\n`) }))));
    const ids = new Set(results.map((r) => r.id));
    assert.equal(ids.size, 200);
    for (const [i, r] of results.entries()) assert.equal((await store.getMessage(r.id))?.data.toString(), `message ${i}\r\n`);
    const s = store.stats();
    assert.equal(s.messages, 200);
    assert.ok(s.commits < 200, `expected batching, got ${s.commits} commits for 200 messages`);
    assert.ok(s.largestBatch > 1);
  }));

storeTest('batches respect maxBatchOps and maxBatchBytes', (b) =>
  withStore(
    b,
    async (store) => {
      await Promise.all(Array.from({ length: 30 }, () => store.accept(makeMessage({ data: Buffer.alloc(100, 0x41) }))));
      await store.accept(makeMessage({ data: Buffer.alloc(5000, 0x42) })); // larger than a batch: goes alone
      const s = store.stats();
      assert.equal(s.messages, 31);
      assert.ok(s.largestBatch <= 7, `largest batch ${s.largestBatch}`);
      assert.ok(s.commits >= 6, `commits ${s.commits}`);
      assert.equal(await store.countMessages(), 31);
    },
    { maxBatchOps: 7, maxBatchBytes: 1000 },
  ));

storeTest('close() flushes pending accepts; reopening keeps everything', async (b) => {
  const store = await b.open();
  const pending = Array.from({ length: 50 }, (_, i) => store.accept(makeMessage({ data: Buffer.from(`m${i}`) })));
  await store.close();
  const ids = (await Promise.all(pending)).map((r) => r.id);
  await assert.rejects(store.accept(makeMessage()), { code: 'STORE_CLOSED' });
  await store.close(); // idempotent

  const again = await b.reopen(store);
  try {
    assert.equal(await again.countMessages(), 50);
    for (const [i, id] of ids.entries()) assert.equal((await again.getMessage(id))?.data.toString(), `m${i}`);
  } finally {
    await again.close();
  }
});

storeTest('keeps an id chosen by the session; a duplicate id fails alone, not its batch', (b) =>
  withStore(b, async (store) => {
    const given = Object.assign(makeMessage({ data: Buffer.from('one') }), { id: 'Sess-1.abc' });
    assert.deepEqual(await store.accept(given), { id: 'Sess-1.abc' });
    const dup = Object.assign(makeMessage({ data: Buffer.from('two') }), { id: 'Sess-1.abc' });
    const [a, bb, c] = await Promise.allSettled([
      store.accept(makeMessage({ data: Buffer.from('x') })),
      store.accept(dup),
      store.accept(makeMessage({ data: Buffer.from('y') })),
    ]);
    assert.equal(a?.status, 'fulfilled');
    assert.equal(c?.status, 'fulfilled');
    assert.equal(bb?.status, 'rejected');
    assert.equal(bb?.status === 'rejected' && bb.reason instanceof PostsealError ? bb.reason.code : null, 'STORE_ID_COLLISION');
    assert.equal((await store.getMessage('Sess-1.abc'))?.data.toString(), 'one');
    assert.equal(await store.countMessages(), 3);
    await assert.rejects(store.accept(Object.assign(makeMessage(), { id: 'bad id!' })), { code: 'STORE_BAD_ID' });
  }));

storeTest('rejects a message without recipients and bad addresses; other accepts are unaffected', (b) =>
  withStore(b, async (store) => {
    await assert.rejects(store.accept(makeMessage({ localRecipients: [] })), { code: 'STORE_NO_RECIPIENTS' });
    await assert.rejects(store.accept(makeMessage({ localRecipients: ['bad address'] })), { code: 'STORE_BAD_ADDRESS' });
    await assert.rejects(store.accept(makeMessage({ localRecipients: [], remoteRecipients: ['nodomain'] })), { code: 'STORE_BAD_ADDRESS' });
    await store.accept(makeMessage());
    assert.equal(await store.countMessages(), 1);
  }));

storeTest('what the session knew comes back: DSN (ENVID, RET, NOTIFY, ORCPT), auth verdicts, quarantine, a UTF-8 envelope', (b) =>
  withStore(b, async (store) => {
    const authResults: AuthVerdicts = {
      spf: { result: 'pass', domain: 'example.net', comment: null },
      dkim: [{ result: 'pass', domain: 'example.net', selector: 's1', aligned: 'example.net', comment: null }],
      dkimOmitted: 0,
      dmarc: { result: 'fail', domain: 'example.net', policy: 'quarantine', comment: 'no aligned identifier' },
      arc: { result: 'none', comment: null },
    };
    const { id } = await store.accept(
      makeMessage({
        mailFrom: 'jöran@exämple.net',
        localRecipients: ['ünïcode@example.org'],
        remoteRecipients: ['far@remote.example', 'near@remote.example'],
        smtpUtf8: true,
        envId: 'QQ314159',
        ret: 'HDRS',
        recipientDsn: { 'far@remote.example': { notify: ['SUCCESS', 'DELAY'], orcpt: 'rfc822;far@remote.example' } },
        authResults,
        quarantine: true,
      }),
    );
    const got = await store.getMessage(id);
    assert.equal(got?.summary.mailFrom, 'jöran@exämple.net');
    assert.deepEqual(got?.summary.recipients, ['ünïcode@example.org', 'far@remote.example', 'near@remote.example']);
    assert.deepEqual(got?.summary.authResults, authResults);
    assert.equal(got?.summary.quarantine, true);
    assert.equal((await store.listMessages({ mailbox: 'ÜNÏCODE@example.org' }))[0]?.id, id);
    const dsn = new Map((await store.listQueue()).map((e) => [e.recipient, e.dsn]));
    assert.deepEqual(dsn.get('far@remote.example'), { envId: 'QQ314159', ret: 'HDRS', notify: ['SUCCESS', 'DELAY'], orcpt: 'rfc822;far@remote.example' });
    assert.deepEqual(dsn.get('near@remote.example'), { envId: 'QQ314159', ret: 'HDRS', notify: null, orcpt: null });
  }));
