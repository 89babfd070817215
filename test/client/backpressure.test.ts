/**
 * The client under a hostile or slow server (client side): a server that stops reading
 * while a big message is sent makes the client wait for 'drain' (the bytes queued in Node stay
 * below two write pieces, not the message size) and the send completes once the server reads
 * again; a server that sends an endless reply line, or thousands of "250-" lines, is cut off with
 * PROTOCOL_ERROR naming the limit, after a bounded amount of input.
 *
 * How a stall is recognised without timing: the test polls the client's own stats between event
 * loop turns (setImmediate, no timers) until a write has been waiting for 'drain' with the same
 * queue for many turns in a row. Whether or not that point is reached early, the assertions hold.
 */
import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { after, describe, it } from 'node:test';
import { SmtpClient, uniformTimeouts, type ConnectOptions } from '../../src/client/index.js';
import { WRITE_PIECE } from '../../src/transport/client-connection.js';
import { drainUntilQuit, greetAndEhlo, type ScriptedServer, type ScriptPeer, scriptedServers } from './scripted-server.js';

const serve = scriptedServers();


function opts(port: number, extra: Partial<ConnectOptions> = {}): ConnectOptions {
  return { host: '127.0.0.1', port, timeouts: uniformTimeouts(30_000), ...extra };
}

/** 16 MiB of 80-octet lines: well above what loopback TCP buffers hold for a reader that stopped. */
const LINE = 'a'.repeat(78) + '\r\n';
const BODY = Buffer.from('Subject: big\r\n\r\n' + LINE.repeat((16 * 1024 * 1024) / LINE.length), 'latin1');

/** Everything up to and including `\r\n.\r\n` (no line starts with "." in BODY: no stuffing). */
async function readDataBytes(p: ScriptPeer): Promise<{ length: number; tail: string }> {
  let length = 0;
  let tail = '';
  for (;;) {
    const chunk = await p.readRaw(30_000);
    length += chunk.length;
    tail = (tail + chunk).slice(-5);
    if (tail === '\r\n.\r\n') return { length, tail };
  }
}

async function readExactly(p: ScriptPeer, n: number, already: number): Promise<number> {
  let got = already;
  while (got < n) got += (await p.readRaw(30_000)).length;
  return got;
}

/**
 * Polls the client until it has been waiting for 'drain' with an unchanged queue for 200 turns
 * (the server's TCP window is full). Returns the largest queue seen meanwhile.
 */
async function untilStalled(c: SmtpClient, sending: Promise<unknown>): Promise<number> {
  let settled = false;
  void sending.then(
    () => (settled = true),
    () => (settled = true),
  );
  let max = 0;
  let same = 0;
  let last = -1;
  while (same < 200) {
    assert.equal(settled, false, 'the send finished although the server stopped reading');
    await nextTurn();
    const s = c.stats;
    max = Math.max(max, s.queuedBytes);
    same = s.waitingForDrain && s.queuedBytes === last ? same + 1 : 0;
    last = s.queuedBytes;
  }
  return max;
}

/** MAIL, RCPT accepted; DATA read (its 354 is the caller's, which may pause reading first). */
async function acceptUntilData(p: ScriptPeer): Promise<void> {
  await p.expect('MAIL FROM:');
  await p.write('250 2.1.0 ok\r\n');
  await p.expect('RCPT TO:');
  await p.write('250 2.1.5 ok\r\n');
  await p.expect('DATA');
}

describe('writes respect backpressure', () => {
  // Below this, whatever the message size: one piece in flight plus the stream's high-water mark.
  const BOUND = 2 * WRITE_PIECE;

  it('DATA: a server that stops reading stalls the client with a bounded queue; the send completes when it reads again', async () => {
    let resumeReading: () => void = () => undefined;
    const resumed = new Promise<void>((r) => (resumeReading = r));
    let received = { length: 0, tail: '' };
    const srv = await serve(async (p) => {
      await greetAndEhlo(p, ['8BITMIME']);
      await acceptUntilData(p);
      p.pause();
      await p.write('354 go ahead\r\n');
      await resumed;
      p.resume();
      received = await readDataBytes(p);
      await p.write('250 2.0.0 queued\r\n');
      await drainUntilQuit(p);
    });
    const c = await SmtpClient.connect(opts(srv.port));
    await c.ehlo('client.test');
    const sending = c.send({ from: 'a@b.test', to: ['c@d.test'] }, BODY);
    const max = await untilStalled(c, sending);
    assert.ok(max <= BOUND, `client queued ${max} octets in Node while the server was not reading (bound ${BOUND})`);
    resumeReading();
    const tx = await sending;
    assert.equal(tx.data?.code, 250);
    assert.equal(received.length, BODY.length + 3, 'the server got the whole body and the final dot');
    await c.quit();
    assert.deepEqual(await srv.settled(), []);
  });

  it('BDAT: one chunk the size of the whole message still leaves in pieces, never as one 16 MiB write', async () => {
    let resumeReading: () => void = () => undefined;
    const resumed = new Promise<void>((r) => (resumeReading = r));
    let got = 0;
    const srv = await serve(async (p) => {
      await greetAndEhlo(p, ['CHUNKING', '8BITMIME']);
      await p.expect('MAIL FROM:');
      await p.write('250 2.1.0 ok\r\n');
      await p.expect('RCPT TO:');
      p.pause();
      await p.write('250 2.1.5 ok\r\n');
      await resumed;
      p.resume();
      const header = await p.expect('BDAT ');
      assert.equal(header, `BDAT ${BODY.length} LAST`);
      got = await readExactly(p, BODY.length, 0);
      await p.write(`250 2.0.0 ${got} octets queued\r\n`);
      await drainUntilQuit(p);
    });
    const c = await SmtpClient.connect(opts(srv.port));
    await c.ehlo('client.test');
    const sending = c.send({ from: 'a@b.test', to: ['c@d.test'] }, BODY, { chunking: true, chunkSize: BODY.length });
    const max = await untilStalled(c, sending);
    assert.ok(max <= BOUND, `client queued ${max} octets in Node while the server was not reading (bound ${BOUND})`);
    resumeReading();
    const tx = await sending;
    assert.equal(tx.method, 'BDAT');
    assert.equal(tx.data?.code, 250);
    assert.equal(got, BODY.length);
    await c.quit();
    assert.deepEqual(await srv.settled(), []);
  });

  it('a server that never reads again: TIMEOUT naming dataBlockMs, once per stalled write', async () => {
    const srv = await serve(async (p) => {
      await greetAndEhlo(p, []);
      await acceptUntilData(p);
      p.pause();
      await p.write('354 go ahead\r\n');
      await p.waitClose(30_000);
    });
    const c = await SmtpClient.connect(opts(srv.port, { timeouts: { ...uniformTimeouts(30_000), dataBlockMs: 300 } }));
    await c.ehlo('client.test');
    await assert.rejects(c.send({ from: 'a@b.test', to: ['c@d.test'] }, BODY), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'TIMEOUT');
      assert.match(err.message, /^could not send message content within 300 ms \(dataBlockMs\)/);
      return true;
    });
    assert.equal(c.isOpen, true, 'the client object is still open; its socket is destroyed');
    c.destroy();
  });
});

describe('reads have a byte limit', () => {
  it('an endless reply line: PROTOCOL_ERROR naming limits.maxLineLength, and the server is cut off', async () => {
    let written = 0;
    const srv = await serve(async (p) => {
      const junk = Buffer.alloc(64 * 1024, 0x78);
      await p.write('220-');
      // At most 64 MiB: the client must hang up long before (the test never loops forever).
      for (let i = 0; i < 1024; i++) {
        try {
          await p.write(junk);
        } catch {
          return;
        }
        written += junk.length;
      }
    });
    await assert.rejects(SmtpClient.connect(opts(srv.port, { limits: { maxLineLength: 2048 } })), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'PROTOCOL_ERROR');
      assert.match(err.message, /reply line longer than 2048 octets \(limits\.maxLineLength\)/);
      return true;
    });
    await srv.settled();
    assert.ok(written < 64 * 1024 * 1024, `the server could write ${written} octets: the client did not hang up`);
  });

  it('10,000 "250-" continuation lines: PROTOCOL_ERROR naming limits.maxReplyLines after 100 lines', async () => {
    const srv = await serve(async (p) => {
      await p.write('220 fake.test ESMTP\r\n');
      await p.expect('EHLO ');
      try {
        await p.write('250-fake.test\r\n' + '250-SIZE 1000\r\n'.repeat(10_000) + '250 OK\r\n');
      } catch {
        // The client hung up in the middle: that is the point.
      }
      await p.waitClose();
    });
    const c = await SmtpClient.connect(opts(srv.port));
    await assert.rejects(c.ehlo('client.test'), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'PROTOCOL_ERROR');
      assert.match(err.message, /^reply to EHLO client\.test has more than 100 lines \(limits\.maxReplyLines\)/);
      return true;
    });
    // 100 lines went into the transcript, not 10,000.
    assert.equal(c.transcript.entries.filter((e) => e.direction === 'S').length, 1 + 100);
    c.destroy();
    await srv.settled();
  });
});
