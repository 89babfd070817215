/**
 * Clients that go away at awkward moments, against a real server on 127.0.0.1:0: a reset in the
 * middle of DATA (plaintext and inside TLS) stores nothing and leaves the server serving; a
 * client that leaves while its message is being committed still gets it stored once, and the
 * session line counts it; a failed handshake is not logged as a server error; a session closed
 * for two reasons at once is closed (and logged) once.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type net from 'node:net';
import type tls from 'node:tls';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { WireClient } from '../helpers/wire.js';
import type { Logger } from '../../src/server/types.js';

type Entry = Record<string, unknown> & { level: string; msg?: string };

/** A real logger implementation that keeps what it is given (the server's Logger interface). */
function memoryLogger(): Logger & { entries: Entry[] } {
  const entries: Entry[] = [];
  const at = (level: string) => (obj: object, msg?: string): void => void entries.push({ ...(obj as Record<string, unknown>), level, msg });
  return { entries, info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') };
}

const log = memoryLogger();
let server: TestServer;
before(async () => {
  server = await startTestServer({
    logger: log,
    users: [{ address: 'u@postseal.test', password: 'right password 1' }],
    configure: (cfg) => {
      cfg.limits.maxErrors = 3;
      cfg.limits.auth = { ...cfg.limits.auth, maxFailures: 3, windowMs: 600_000 };
    },
  });
});
after(() => server.close());

/** Waits (with a deadline) until the server has logged the end of the session on `localPort`. */
async function sessionLine(localPort: number | undefined, timeoutMs = 10_000): Promise<Entry> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = log.entries.filter((e) => e.event === 'session' && e.port === localPort);
    if (found.length > 0) {
      assert.equal(found.length, 1, `more than one session line for port ${localPort}`);
      return found[0] as Entry;
    }
    if (Date.now() > deadline) throw new Error(`no session line for port ${localPort}`);
    await new Promise((r) => setImmediate(r)); // poll the in-memory log
  }
}

async function inData(port: number, useTls: boolean): Promise<{ c: WireClient; raw: net.Socket; socket: net.Socket | tls.TLSSocket }> {
  const c = await WireClient.connect(port);
  const raw = (c as unknown as { socket: net.Socket }).socket;
  let socket: net.Socket | tls.TLSSocket = raw;
  await c.readReply();
  await c.cmd('EHLO client.test');
  if (useTls) {
    assert.match((await c.cmd('STARTTLS'))[0] ?? '', /^220 /);
    socket = await c.startTls(server.caPem);
    await c.cmd('EHLO client.test');
  }
  c.write('MAIL FROM:<a@client.test>\r\nRCPT TO:<inbox@postseal.test>\r\nDATA\r\n');
  for (const want of ['250', '250', '354']) assert.equal((await c.readReply())[0]?.slice(0, 3), want);
  return { c, raw, socket };
}

async function stillServes(): Promise<void> {
  const c = await WireClient.connect(server.port('mx'));
  assert.match((await c.readReply())[0] ?? '', /^220 /);
  assert.match((await c.cmd('NOOP'))[0] ?? '', /^250 /);
  c.close();
}

for (const useTls of [false, true]) {
  test(`reset in the middle of DATA${useTls ? ' inside TLS' : ''}: nothing stored, one session line, server still serves`, async () => {
    const before = server.running.store.countMessages();
    const { c, raw, socket } = await inData(server.port('mx'), useTls);
    c.write('Subject: never finished\r\n\r\nhalf a message\r\n');
    const port = socket.localPort;
    raw.resetAndDestroy();
    const line = await sessionLine(port);
    assert.match(String(line.result), /socket error: ECONNRESET|peer closed/);
    assert.equal(line.messages, 0);
    assert.equal(server.running.store.countMessages(), before);
    await stillServes();
  });
}

test('the client leaves right after the final dot: stored once, intact, counted in the session line', async () => {
  const before = server.running.store.countMessages();
  const { c, raw } = await inData(server.port('mx'), false);
  const body = 'Subject: left early\r\n\r\nbye\r\n';
  const port = raw.localPort;
  c.write(body + '.\r\n');
  raw.end(); // FIN right behind the data: the peer is gone while the commit runs
  const line = await sessionLine(port);
  assert.equal(line.messages, 1, JSON.stringify(line));
  assert.equal(server.running.store.countMessages(), before + 1);
  const [latest] = server.running.store.listMessages({ limit: 1 });
  assert.ok(latest);
  const msg = server.running.store.getMessage(latest.id);
  assert.ok(msg?.data.toString('latin1').endsWith('\r\n' + body));
  const messageLine = log.entries.findIndex((e) => e.event === 'message' && e.id === latest.id);
  assert.ok(messageLine >= 0 && messageLine < log.entries.indexOf(line), 'message line after the session line');
});

test('a failed STARTTLS handshake closes without plaintext and is not logged as a server error', async () => {
  const errorsBefore = log.entries.filter((e) => e.level === 'error').length;
  const c = await WireClient.connect(server.port('mx'));
  const raw = (c as unknown as { socket: net.Socket }).socket;
  await c.readReply();
  await c.cmd('EHLO client.test');
  assert.match((await c.cmd('STARTTLS'))[0] ?? '', /^220 /);
  const port = raw.localPort;
  c.write('this is not a TLS ClientHello\r\n');
  assert.equal(await c.expectClose(), '');
  const line = await sessionLine(port);
  assert.match(String(line.result), /^tls handshake failed/);
  assert.deepEqual(log.entries.filter((e) => e.level === 'error').slice(errorsBefore), []);
});

test('error budget and AUTH limit reached by the same reply: one 421, one close, one session line', async () => {
  const c = await WireClient.connect(server.port('submission'));
  const port = (c as unknown as { socket: net.Socket }).socket.localPort;
  await c.readReply();
  await c.cmd('EHLO client.test');
  await c.cmd('STARTTLS');
  await c.startTls(server.caPem);
  await c.cmd('EHLO client.test');
  const bad = Buffer.from('\0u@postseal.test\0wrong password').toString('base64');
  assert.match((await c.cmd(`AUTH PLAIN ${bad}`))[0] ?? '', /^535 /);
  assert.match((await c.cmd(`AUTH PLAIN ${bad}`))[0] ?? '', /^535 /);
  c.write(`AUTH PLAIN ${bad}\r\n`);
  assert.match((await c.readReply())[0] ?? '', /^535 /);
  const rest = await c.expectClose();
  const lines = rest.split('\r\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `after the last 535: ${JSON.stringify(rest)}`);
  assert.match(lines[0] ?? '', /^421 4\.7\.0 /);
  const line = await sessionLine(port);
  assert.match(String(line.result), /too many errors|auth rate limit/);
});
