/**
 * SMTP smuggling (CVE-2023-51764 class) against a real server: one DATA whose content embeds
 * "<variant>MAIL FROM/RCPT TO/DATA ..." must give exactly one reply and never a second message.
 * Default (reject): 550 5.6.0 and nothing stored. With bareLineEndings=normalize: exactly one
 * message, CRLF only, the would-be commands stored as text. BDAT chunks are never commands.
 *
 * "Exactly one reply" is checked without waiting for silence: after the reply a NOOP is sent and
 * the very next reply must be the NOOP's own "250 2.0.0 OK"; any reply to a smuggled command
 * would come first.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { WireClient } from '../helpers/wire.js';
import { hasBareCrOrLf } from '../../src/protocol/data.js';

const ENDS = ['\r\n', '\n', '\r'] as const;
/** Every <E1>.<E2> with E1, E2 in {CRLF, LF, CR} except the real <CRLF>.<CRLF>, plus doubled ones. */
const VARIANTS = [
  ...ENDS.flatMap((a) => ENDS.map((b) => `${a}.${b}`)).filter((v) => v !== '\r\n.\r\n'),
  '\n\n.\n\n',
  '\r\r.\r\r',
  '\r\n.\n\r\n',
];
const SMUGGLED = 'MAIL FROM:<x@evil.example>\r\nRCPT TO:<alice@postseal.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled body';

async function openTransaction(server: TestServer): Promise<WireClient> {
  const c = await WireClient.connect(server.port('mx'));
  assert.match((await c.readReply())[0] ?? '', /^220 /);
  assert.match((await c.cmd('EHLO client.example')).at(-1) ?? '', /^250 /);
  assert.match((await c.cmd('MAIL FROM:<bob@example.org>'))[0] ?? '', /^250 /);
  assert.match((await c.cmd('RCPT TO:<alice@postseal.test>'))[0] ?? '', /^250 /);
  return c;
}

/** After the one expected reply, the next reply must be the NOOP's. */
async function assertNoMoreReplies(c: WireClient): Promise<void> {
  try {
    assert.deepEqual(await c.cmd('NOOP'), ['250 2.0.0 OK'], 'a reply to a smuggled command arrived');
    assert.deepEqual(await c.cmd('QUIT'), ['221 2.0.0 Bye']);
  } finally {
    c.close();
  }
}

const show = (v: string): string => JSON.stringify(v);

describe('smuggling: bare line endings rejected (default)', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.close());

  for (const v of VARIANTS) {
    test(`DATA with ${show(v)} then commands: one 550 5.6.0, nothing stored`, async () => {
      const n = server.running.store.countMessages();
      const c = await openTransaction(server);
      assert.deepEqual(await c.cmd('DATA'), ['354 End data with <CR><LF>.<CR><LF>']);
      c.write(Buffer.from(`Subject: one\r\n\r\nhello${v}${SMUGGLED}\r\n.\r\n`, 'latin1'));
      const r = await c.readReply();
      assert.match(r[0] ?? '', /^550 5\.6\.0 /, `got ${JSON.stringify(r)}`);
      await assertNoMoreReplies(c);
      assert.equal(server.running.store.countMessages(), n, 'nothing stored');
    });

    test(`BDAT LAST with ${show(v)} then commands: one 550 5.6.0, nothing stored`, async () => {
      const n = server.running.store.countMessages();
      const c = await openTransaction(server);
      const chunk = Buffer.from(`Subject: one\r\n\r\nhello${v}${SMUGGLED}\r\n.\r\n`, 'latin1');
      c.write(Buffer.concat([Buffer.from(`BDAT ${chunk.length} LAST\r\n`), chunk]));
      const r = await c.readReply();
      assert.match(r[0] ?? '', /^550 5\.6\.0 /, `got ${JSON.stringify(r)}`);
      await assertNoMoreReplies(c);
      assert.equal(server.running.store.countMessages(), n, 'nothing stored');
    });
  }

  test('BDAT chunk with CRLF-only content: "." lines and commands inside are content, one message', async () => {
    const n = server.running.store.countMessages();
    const c = await openTransaction(server);
    const chunk = Buffer.from(`Subject: bdat\r\n\r\nbody\r\n.\r\n${SMUGGLED}\r\n.\r\nQUIT\r\n`, 'latin1');
    c.write(Buffer.concat([Buffer.from(`BDAT ${chunk.length} LAST\r\n`), chunk]));
    assert.match((await c.readReply())[0] ?? '', /^250 2\.0\.0 OK: queued as /);
    await assertNoMoreReplies(c);
    const list = server.running.store.listMessages({ limit: 1 });
    assert.equal(server.running.store.countMessages(), n + 1);
    const m = server.running.store.getMessage(list[0]?.id ?? '');
    assert.ok(m);
    assert.ok(m.data.toString('latin1').endsWith(chunk.toString('latin1')), 'the chunk is stored byte for byte');
  });
});

describe('smuggling: bareLineEndings=normalize', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({
      configure: (cfg) => {
        cfg.bareLineEndings = 'normalize';
      },
    });
  });
  after(() => server.close());

  async function checkStoredOne(before: number): Promise<void> {
    const store = server.running.store;
    assert.equal(store.countMessages(), before + 1, 'exactly one message per submission');
    const newest = store.listMessages({ limit: 1 })[0];
    assert.ok(newest);
    const m = store.getMessage(newest.id);
    assert.ok(m);
    const text = m.data.toString('latin1');
    assert.equal(hasBareCrOrLf(m.data), false, `stored with a bare CR/LF: ${JSON.stringify(text)}`);
    assert.ok(text.includes('MAIL FROM:<x@evil.example>\r\nRCPT TO:<alice@postseal.test>\r\nDATA\r\n'), 'the smuggled commands are stored as text');
    assert.ok(text.endsWith('smuggled body\r\n'));
    assert.deepEqual(newest.recipients, ['alice@postseal.test']);
    assert.equal(newest.mailFrom, 'bob@example.org');
  }

  for (const v of VARIANTS) {
    test(`DATA with ${show(v)}: one message, CRLF only, no second message`, async () => {
      const n = server.running.store.countMessages();
      const c = await openTransaction(server);
      assert.deepEqual(await c.cmd('DATA'), ['354 End data with <CR><LF>.<CR><LF>']);
      c.write(Buffer.from(`Subject: one\r\n\r\nhello${v}${SMUGGLED}\r\n.\r\n`, 'latin1'));
      assert.match((await c.readReply())[0] ?? '', /^250 2\.0\.0 OK: queued as /);
      await assertNoMoreReplies(c);
      await checkStoredOne(n);
    });

    test(`BDAT LAST with ${show(v)}: one message, CRLF only`, async () => {
      const n = server.running.store.countMessages();
      const c = await openTransaction(server);
      const chunk = Buffer.from(`Subject: one\r\n\r\nhello${v}${SMUGGLED}\r\n`, 'latin1');
      c.write(Buffer.concat([Buffer.from(`BDAT ${chunk.length} LAST\r\n`), chunk]));
      assert.match((await c.readReply())[0] ?? '', /^250 2\.0\.0 OK: queued as /);
      await assertNoMoreReplies(c);
      await checkStoredOne(n);
    });
  }
});
