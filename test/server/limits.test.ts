/**
 * Limits and abuse rules against a real server: command line length with a
 * bounded-memory check, recipients, message size, connection limits (total, per IP), idle
 * timeout, error budget, early talkers, HTTP lines before/after TLS. The AUTH limiter has its own
 * file (auth-limit.test.ts).
 * Every wait is on an event (a reply, a close) with a timeout; nothing asserts on durations.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import { startTestServer, type TestServer, type TestServerOptions } from '../helpers/server.js';
import { WireClient } from '../helpers/wire.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

async function withServer(opts: TestServerOptions, fn: (s: TestServer) => Promise<void>): Promise<void> {
  const s = await startTestServer(opts);
  try {
    await fn(s);
  } finally {
    await s.close();
  }
}

/** Connects from a chosen loopback address (127.0.0.0/8 is all local on Linux). */
function rawConnect(port: number, localAddress = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress }, () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

async function connectFrom(port: number, localAddress: string): Promise<WireClient> {
  return new WireClient(await rawConnect(port, localAddress));
}

async function greeted(port: number, from?: string): Promise<WireClient> {
  const c = from ? await connectFrom(port, from) : await WireClient.connect(port);
  assert.match((await c.readReply())[0] ?? '', /^220 /);
  return c;
}

async function ehlo(c: WireClient): Promise<string[]> {
  const r = await c.cmd('EHLO client.example');
  assert.match(r.at(-1) ?? '', /^250 /);
  return r;
}

/** Expects one reply matching `re`, then the server closing the connection with nothing more. */
async function expectReplyThenClose(c: WireClient, re: RegExp): Promise<void> {
  const r = await c.readReply();
  assert.match(r.join('\n'), re);
  const rest = await c.expectClose();
  assert.equal(rest, '', 'nothing after the closing reply');
}

function arrayBuffersAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().arrayBuffers;
}

describe('limits', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({
      configure: (cfg) => {
        cfg.limits.maxRecipients = 100;
        cfg.limits.maxMessageSize = 10_000;
      },
    });
  });
  after(() => server.close());

  test('a 1 MiB command line with no CRLF, then CRLF: 500 5.5.2, and the session goes on', async () => {
    const c = await greeted(server.port('mx'));
    c.write(Buffer.alloc(1 << 20, 'A'));
    assert.deepEqual(await c.cmd(''), ['500 5.5.2 Line too long']);
    await ehlo(c);
    assert.deepEqual(await c.cmd('NOOP'), ['250 2.0.0 OK']);
    c.close();
  });

  test('8 MiB of one command line, sent in pieces, is not held in memory', async () => {
    const sock = await rawConnect(server.port('mx'));
    const c = new WireClient(sock);
    assert.match((await c.readReply())[0] ?? '', /^220 /);
    const piece = Buffer.alloc(64 * 1024, 'B'); // one buffer, written again and again
    const sent = 8 * 1024 * 1024;
    const base = arrayBuffersAfterGc();
    let peak = 0;
    for (let n = 0; n < sent; n += piece.length) {
      // Wait for each piece to be taken by the kernel (so the server is reading), then sample.
      await new Promise<void>((resolve, reject) => sock.write(piece, (err) => (err ? reject(err) : resolve())));
      if ((n / piece.length) % 16 === 15) peak = Math.max(peak, arrayBuffersAfterGc() - base);
    }
    assert.deepEqual(await c.cmd(''), ['500 5.5.2 Line too long']);
    // The server has now read all 8 MiB; whatever it still holds is live memory.
    peak = Math.max(peak, arrayBuffersAfterGc() - base);
    assert.ok(peak < 2 * 1024 * 1024, `server held ${peak} bytes while ${sent} were sent on one line`);
    assert.deepEqual(await c.cmd('NOOP'), ['250 2.0.0 OK']);
    c.close();
  });

  test('100 recipients are accepted; the 101st gets 452 4.5.3; the message goes to the 100', async () => {
    const c = await greeted(server.port('mx'));
    await ehlo(c);
    assert.match((await c.cmd('MAIL FROM:<bob@example.org>'))[0] ?? '', /^250 /);
    // Pipelined (RFC 2920): all RCPTs in one write, replies in order.
    c.write(Array.from({ length: 101 }, (_, i) => `RCPT TO:<user${i}@postseal.test>\r\n`).join(''));
    for (let i = 0; i < 100; i++) assert.deepEqual(await c.readReply(), ['250 2.1.5 Recipient OK'], `recipient ${i}`);
    assert.match((await c.readReply())[0] ?? '', /^452 4\.5\.3 /);
    const n = server.running.store.countMessages();
    assert.match((await c.cmd('DATA'))[0] ?? '', /^354 /);
    assert.match((await c.cmd('Subject: many\r\n\r\nhi\r\n.'))[0] ?? '', /^250 2\.0\.0 OK: queued as /);
    assert.equal(server.running.store.countMessages(), n + 1);
    const m = server.running.store.listMessages({ limit: 1 })[0];
    assert.equal(m?.recipients.length, 100);
    c.close();
  });

  test(
    'a client that pipelines 130 recipients gets 30 x 452 and can still deliver to the first 100',
    async () => {
      // RFC 5321 §4.5.3.1.10: the client is told 452 and sends the rest in a later transaction;
      // Postfix does not count these against smtpd_hard_error_limit (smtpd_recipient_overshoot_limit).
      const c = await greeted(server.port('mx'));
      await ehlo(c);
      assert.match((await c.cmd('MAIL FROM:<bob@example.org>'))[0] ?? '', /^250 /);
      c.write(Array.from({ length: 130 }, (_, i) => `RCPT TO:<user${i}@postseal.test>\r\n`).join(''));
      try {
        for (let i = 0; i < 100; i++) assert.deepEqual(await c.readReply(), ['250 2.1.5 Recipient OK'], `recipient ${i}`);
        for (let i = 100; i < 130; i++) assert.match((await c.readReply())[0] ?? '', /^452 4\.5\.3 /, `recipient ${i}`);
        assert.match((await c.cmd('DATA'))[0] ?? '', /^354 /);
        assert.match((await c.cmd('Subject: many\r\n\r\nhi\r\n.'))[0] ?? '', /^250 2\.0\.0 OK: queued as /);
      } finally {
        c.close();
      }
    },
  );

  test('message size: 552 at MAIL SIZE=, 552 after DATA and after BDAT, nothing stored, session goes on', async () => {
    const n = server.running.store.countMessages();
    const c = await greeted(server.port('mx'));
    const caps = await ehlo(c);
    assert.ok(caps.includes('250-SIZE 10000'), JSON.stringify(caps));
    assert.match((await c.cmd('MAIL FROM:<bob@example.org> SIZE=10001'))[0] ?? '', /^552 5\.3\.4 /);
    assert.match((await c.cmd('MAIL FROM:<bob@example.org> SIZE=10000'))[0] ?? '', /^250 /);
    assert.match((await c.cmd('RCPT TO:<alice@postseal.test>'))[0] ?? '', /^250 /);
    assert.match((await c.cmd('DATA'))[0] ?? '', /^354 /);
    c.write(('x'.repeat(998) + '\r\n').repeat(11));
    assert.match((await c.cmd('.'))[0] ?? '', /^552 5\.3\.4 /);
    assert.match((await c.cmd('MAIL FROM:<bob@example.org>'))[0] ?? '', /^250 /);
    assert.match((await c.cmd('RCPT TO:<alice@postseal.test>'))[0] ?? '', /^250 /);
    const chunk = Buffer.alloc(6000, 'y');
    c.write(Buffer.concat([Buffer.from(`BDAT ${chunk.length}\r\n`), chunk]));
    assert.match((await c.readReply())[0] ?? '', /^250 /);
    c.write(Buffer.concat([Buffer.from(`BDAT ${chunk.length} LAST\r\n`), chunk]));
    assert.match((await c.readReply())[0] ?? '', /^552 5\.3\.4 /);
    assert.deepEqual(await c.cmd('NOOP'), ['250 2.0.0 OK']);
    assert.equal(server.running.store.countMessages(), n);
    c.close();
  });

  for (const [when, line] of [
    ['before TLS', 'GET / HTTP/1.1'],
    ['before TLS', 'POST /submit HTTP/1.1'],
    ['before TLS', 'CONNECT mail.example:25 HTTP/1.1'],
    ['before TLS', 'Host: mail.postseal.test'],
    ['after TLS', 'GET / HTTP/1.1'],
    ['after TLS', 'POST /submit HTTP/1.1'],
    ['after TLS', 'CONNECT mail.example:25 HTTP/1.1'],
    ['after TLS', 'User-Agent: curl/8.0'],
  ] as const) {
    test(`${JSON.stringify(line)} ${when} closes the connection (554 5.7.0)`, async () => {
      const c = await greeted(server.port('mx'));
      if (when === 'after TLS') {
        await ehlo(c);
        assert.match((await c.cmd('STARTTLS'))[0] ?? '', /^220 /);
        await c.startTls(server.caPem);
      }
      // The request and what follows arrive in one segment; only one reply, then the close.
      c.write(`${line}\r\nHost: x\r\nNOOP\r\n\r\n`);
      await expectReplyThenClose(c, /^554 5\.7\.0 /);
    });
  }
});

describe('connection limits', () => {
  test('total: the connection past maxConnections gets 421 4.7.0 while the others work', async () => {
    await withServer({ configure: (cfg) => void (cfg.limits.maxConnections = 2) }, async (s) => {
      const a = await greeted(s.port('mx'));
      const b = await greeted(s.port('mx'));
      const extra = await WireClient.connect(s.port('mx'));
      await expectReplyThenClose(extra, /^421 4\.7\.0 /);
      const other = await connectFrom(s.port('mx'), '127.0.0.2');
      await expectReplyThenClose(other, /^421 4\.7\.0 /); // the total counts every client
      assert.deepEqual(await a.cmd('NOOP'), ['250 2.0.0 OK']);
      assert.deepEqual(await b.cmd('NOOP'), ['250 2.0.0 OK']);
      // A slot freed by QUIT is usable again.
      assert.deepEqual(await a.cmd('QUIT'), ['221 2.0.0 Bye']);
      await a.expectClose();
      const c = await greeted(s.port('mx'));
      assert.deepEqual(await c.cmd('NOOP'), ['250 2.0.0 OK']);
      b.close();
      c.close();
    });
  });

  test('per IP: the third connection from one address gets 421 4.7.0; another address is served', async () => {
    await withServer({ configure: (cfg) => void (cfg.limits.maxConnectionsPerIp = 2) }, async (s) => {
      const a = await greeted(s.port('mx'));
      const b = await greeted(s.port('mx'));
      const extra = await WireClient.connect(s.port('mx'));
      await expectReplyThenClose(extra, /^421 4\.7\.0 /);
      const other = await greeted(s.port('mx'), '127.0.0.2');
      assert.deepEqual(await other.cmd('NOOP'), ['250 2.0.0 OK']);
      assert.deepEqual(await a.cmd('NOOP'), ['250 2.0.0 OK']);
      assert.deepEqual(await b.cmd('NOOP'), ['250 2.0.0 OK']);
      for (const c of [a, b, other]) c.close();
    });
  });
});

describe('timeouts, errors, early talkers', () => {
  test('idle timeout: 421 4.4.2 and close', async () => {
    await withServer({ configure: (cfg) => void (cfg.limits.commandTimeoutMs = 200) }, async (s) => {
      const c = await greeted(s.port('mx'));
      await ehlo(c);
      await expectReplyThenClose(c, /^421 4\.4\.2 /);
    });
  });

  test('error budget: after maxErrors failed commands, 421 4.7.0 and close', async () => {
    await withServer({ configure: (cfg) => void (cfg.limits.maxErrors = 3) }, async (s) => {
      const c = await greeted(s.port('mx'));
      assert.match((await c.cmd('FOO'))[0] ?? '', /^500 /);
      assert.match((await c.cmd('MAIL FROM:<a@b.example>'))[0] ?? '', /^503 /); // no EHLO yet
      await ehlo(c); // successes do not reset the budget
      c.write('RCPT TO:<a@postseal.test>\r\n');
      assert.match((await c.readReply())[0] ?? '', /^503 /);
      await expectReplyThenClose(c, /^421 4\.7\.0 /);
    });
  });

  test('early talker: bytes before the greeting get 554 and close; a patient client is served', async () => {
    await withServer({ configure: (cfg) => void (cfg.limits.greetingDelayMs = 300) }, async (s) => {
      const hasty = await WireClient.connect(s.port('mx'));
      hasty.write('EHLO hasty.example\r\n');
      await expectReplyThenClose(hasty, /^554 5\.5\.0 /);
      const patient = await greeted(s.port('mx'));
      await ehlo(patient);
      patient.close();
    });
  });
});

