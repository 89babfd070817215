/**
 * Large message bodies: received over STARTTLS by DATA and by BDAT, written to the
 * spool as they arrive, stored byte-exact (our Received header + the content), with no spool file
 * left for refused messages; and the server-wide memory budget for bodies of a server without a
 * spool (452 4.3.1 instead of growing).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { WireClient } from '../helpers/wire.js';
import { SmtpServer } from '../../src/server/server.js';
import { DEFAULT_LIMITS } from '../../src/config.js';
import type { MessageSink } from '../../src/server/types.js';
import { silentLogger } from '../../src/log.js';
import type { IncomingMessage } from '../../src/types.js';

/** Printable lines with CRLF, no line starting with a dot: `bytes` long. */
function body(bytes: number): Buffer {
  const rnd = randomBytes(Math.ceil(bytes / 2)).toString('hex');
  const lines: string[] = [];
  let n = 0;
  for (let i = 0; n < bytes; i += 76) {
    const take = Math.min(76, bytes - n - 2);
    if (take <= 0) break;
    lines.push(rnd.slice(i % (rnd.length - 80), (i % (rnd.length - 80)) + take));
    n += take + 2;
  }
  const text = `${lines.join('\r\n')}\r\n`;
  return Buffer.from(text);
}

async function tlsSession(srv: TestServer): Promise<WireClient> {
  const c = await WireClient.connect(srv.port('mx'));
  assert.match((await c.readReply())[0] ?? '', /^220 /);
  await c.cmd('EHLO client.test');
  assert.match((await c.cmd('STARTTLS'))[0] ?? '', /^220 /);
  await c.startTls(srv.caPem);
  await c.cmd('EHLO client.test');
  return c;
}

function queuedId(r: string[]): string {
  const m = /^250 .*queued as (\S+)/.exec(r.at(-1) ?? '');
  assert.ok(m, `queued reply, got ${r.join(' | ')}`);
  return m[1] ?? '';
}

/** Waits for a condition the test cannot get an event for (server-side state), with a deadline. */
async function until(check: () => boolean, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('large bodies through the spool', () => {
  let srv: TestServer;
  after(async () => srv?.close());

  test('DATA: a 6 MiB message is spooled and stored byte-exact', async () => {
    srv = await startTestServer();
    const c = await tlsSession(srv);
    const content = body(6 * 1024 * 1024);
    assert.match((await c.cmd('MAIL FROM:<a@client.test>'))[0] ?? '', /^250 /);
    assert.match((await c.cmd('RCPT TO:<postmaster@postseal.test>'))[0] ?? '', /^250 /);
    assert.match((await c.cmd('DATA'))[0] ?? '', /^354 /);
    c.write(content);
    const id = queuedId(await c.cmd('.', 30_000));
    const stored = srv.running.store.getMessage(id);
    assert.ok(stored);
    const head = stored.data.subarray(0, stored.data.length - content.length).toString('latin1');
    // Our Received header, then our Authentication-Results (the mx listener verifies spooled
    // bodies too, auth.verify): nothing else precedes the content.
    const ar = head.indexOf('\r\nAuthentication-Results: mail.postseal.test;');
    assert.ok(ar > 0, head);
    assert.match(head, /^Received: from client\.test[^]*\r\n$/);
    assert.doesNotMatch(head.slice(0, ar + 2), /\r\n(?![ \t])[^]/, 'only our (folded) Received header precedes our Authentication-Results');
    assert.doesNotMatch(head.slice(ar + 2), /\r\n(?![ \t])[^]/, 'only our (folded) Authentication-Results follows it');
    assert.ok(stored.data.subarray(stored.data.length - content.length).equals(content), 'content byte-exact after our Received header');
    assert.deepEqual(readdirSync(join(srv.dataDir, 'bodies')), [id], 'the body is the spool file named by the id');
    await c.cmd('QUIT');
  });

  test('BDAT: chunks of any size, a CRLF split across chunks, stored byte-exact', async () => {
    const c = await tlsSession(srv);
    const content = body(3 * 1024 * 1024 + 17);
    assert.match((await c.cmd('MAIL FROM:<a@client.test>'))[0] ?? '', /^250 /);
    assert.match((await c.cmd('RCPT TO:<postmaster@postseal.test>'))[0] ?? '', /^250 /);
    const sizes = [1, 300_001, 1_048_576, 77];
    let from = 0;
    for (const size of sizes) {
      const piece = content.subarray(from, from + size);
      c.write(Buffer.concat([Buffer.from(`BDAT ${piece.length}\r\n`), piece]));
      assert.match((await c.readReply(30_000))[0] ?? '', /^250 /);
      from += size;
    }
    const rest = content.subarray(from);
    c.write(Buffer.concat([Buffer.from(`BDAT ${rest.length} LAST\r\n`), rest]));
    const id = queuedId(await c.readReply(30_000));
    const stored = srv.running.store.getMessage(id);
    assert.ok(stored);
    assert.ok(stored.data.subarray(stored.data.length - content.length).equals(content));
    await c.cmd('QUIT');
  });

  test('refused large messages leave no spool file (size limit, bare LF, RSET mid-BDAT, disconnect)', async () => {
    const before = new Set(readdirSync(join(srv.dataDir, 'bodies')));
    const c = await tlsSession(srv);
    // A bare LF deep inside a spooled body: refused at the end (smuggling defence), file removed.
    const bad = Buffer.concat([body(1024 * 1024), Buffer.from('x\ny\r\n'), body(1024 * 1024)]);
    await c.cmd('MAIL FROM:<a@client.test>');
    await c.cmd('RCPT TO:<postmaster@postseal.test>');
    await c.cmd('DATA');
    c.write(bad);
    assert.match((await c.cmd('.', 30_000))[0] ?? '', /^550 5\.6\.0/);
    // BDAT chunks, then RSET: the transaction and its file are dropped.
    await c.cmd('MAIL FROM:<a@client.test>');
    await c.cmd('RCPT TO:<postmaster@postseal.test>');
    const piece = body(1024 * 1024);
    c.write(Buffer.concat([Buffer.from(`BDAT ${piece.length}\r\n`), piece]));
    assert.match((await c.readReply(30_000))[0] ?? '', /^250 /);
    assert.match((await c.cmd('RSET'))[0] ?? '', /^250 /);
    // DATA cut off by a disconnect.
    await c.cmd('MAIL FROM:<a@client.test>');
    await c.cmd('RCPT TO:<postmaster@postseal.test>');
    await c.cmd('DATA');
    c.write(body(2 * 1024 * 1024));
    await until(() => readdirSync(join(srv.dataDir, 'bodies')).length > before.size, 'the unfinished body is spooled');
    c.close();
    await until(() => srv.running.server.sessionCount === 0, 'the session ended');
    assert.deepEqual(new Set(readdirSync(join(srv.dataDir, 'bodies'))), before);
  });
});

describe('memory budget for bodies (no spool)', () => {
  test('past limits.maxBodyMemory a message is refused with 452 4.3.1, the others go on', async () => {
    const got: IncomingMessage[] = [];
    const sink: MessageSink = {
      accept: async (m) => {
        got.push(m);
        return { id: m.id };
      },
    };
    const server = new SmtpServer({
      hostname: 'mx.test',
      localDomains: ['test'],
      listeners: [{ name: 'mx', host: '127.0.0.1', port: 0, tls: 'none', auth: 'none' }],
      limits: { ...DEFAULT_LIMITS, maxBodyMemory: 1024 * 1024, spoolThreshold: 64 * 1024 * 1024 },
      bareLineEndings: 'reject',
      sink,
      users: null,
      tls: { hasCertificate: () => false, serverOptions: () => null },
      logger: silentLogger,
    });
    const [bound] = await server.listen();
    assert.ok(bound);
    try {
      const open = async (): Promise<WireClient> => {
        const c = await WireClient.connect(bound.port);
        await c.readReply();
        await c.cmd('EHLO client.test');
        await c.cmd('MAIL FROM:<a@client.test>');
        await c.cmd('RCPT TO:<u@test>');
        assert.match((await c.cmd('DATA'))[0] ?? '', /^354 /);
        return c;
      };
      const a = await open();
      a.write(body(600 * 1024));
      await until(() => server.bodyBudget.used >= 600 * 1024, 'a holds its body');
      const b = await open();
      b.write(body(600 * 1024));
      // b pushed the total past 1 MiB: b's message is dropped, a's is kept.
      assert.match((await b.cmd('.', 10_000))[0] ?? '', /^452 4\.3\.1/);
      assert.match((await a.cmd('.', 10_000))[0] ?? '', /^250 /);
      assert.equal(got.length, 1);
      a.close();
      b.close();
    } finally {
      await server.close(100);
    }
  });
});
