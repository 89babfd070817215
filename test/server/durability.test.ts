/**
 * The durability contract end to end: the real `postseal serve` process under
 * load from ~20 concurrent STARTTLS sessions is killed with SIGKILL; every message whose 250
 * arrived must be in the store with intact bytes, and no stored message may be partial. Then the
 * server restarts on the same data directory, serves, and still lists them.
 *
 * Run alone: node --import tsx --test test/server/durability.test.ts
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { openSqliteStoreReadOnly } from '../../src/store/index.js';
import { issueCert, makeTestCa, writeKeyPair } from '../helpers/certs.js';
import type { WireClient } from '../helpers/wire.js';
import { killAll, mxOnly, queuedId, runCli, sendMessage, startServeChild, startTlsSession, tempDirs } from '../cli/child.js';

const dirs = tempDirs();
after(() => {
  killAll();
  dirs.cleanup();
});

const SESSIONS = 20;
const KILL_AFTER = 1000;
/** Load bounds: never more than this many messages, never longer than this. */
const MAX_MESSAGES = 5000;
const MAX_LOAD_MS = 60_000;

interface Sent {
  testId: string;
  body: Buffer;
}

function sha256(b: Buffer | string): string {
  return createHash('sha256').update(b).digest('hex');
}

/** A message whose headers carry its id and the SHA-256 of its body (after the blank line). */
function makeMessage(testId: string): string {
  const lines: string[] = [];
  const n = 1 + (randomBytes(1)[0] ?? 0) % 64;
  for (let i = 0; i < n; i++) lines.push(randomBytes(57).toString('base64'));
  const payload = lines.join('\r\n') + '\r\n';
  return `From: <load@client.test>\r\nTo: <inbox@localhost>\r\nSubject: durability ${testId}\r\nX-Test-Id: ${testId}\r\nX-Test-Sum: ${sha256(payload)}\r\n\r\n${payload}`;
}

/** Checks a stored message: Received header first, then our headers, checksum matching the body. */
function verifyStored(data: Buffer): { ok: boolean; testId: string | null; why?: string } {
  const text = data.toString('latin1');
  if (!text.startsWith('Received: ')) return { ok: false, testId: null, why: 'no Received header first' };
  const id = /\r\nX-Test-Id: (\S+)\r\n/.exec(text)?.[1] ?? null;
  const sum = /\r\nX-Test-Sum: ([0-9a-f]{64})\r\n/.exec(text)?.[1];
  const split = text.indexOf('\r\n\r\n');
  if (!sum || split < 0) return { ok: false, testId: id, why: 'headers missing' };
  const body = text.slice(split + 4);
  if (sha256(Buffer.from(body, 'latin1')) !== sum) return { ok: false, testId: id, why: 'checksum mismatch' };
  return { ok: true, testId: id };
}

test('SIGKILL under load loses no acknowledged message and leaves no partial one', { timeout: 180_000 }, async (t) => {
  const dataDir = dirs.make('postseal-durability-');
  const ca = await makeTestCa();
  const pair = await issueCert(ca, { names: ['localhost', '127.0.0.1'] });
  const { certFile, keyFile } = await writeKeyPair(join(dataDir, 'certs'), pair);
  const args = mxOnly(dataDir, ['--cert', certFile, '--key', keyFile, '--hostname', 'mail.postseal.test', '--log-level', 'warn', '--catch-all', '--no-auth-verify']);

  const server = await startServeChild(args);
  const port = server.port('mx');
  const acked = new Map<string, Sent>();
  let killed = false;
  let attempted = 0;
  let firstSendAt = 0;
  let killAt = 0;
  const loadDeadline = Date.now() + MAX_LOAD_MS;

  const kill = (): void => {
    if (killed) return;
    killed = true;
    killAt = Date.now();
    server.signal('SIGKILL');
  };

  const worker = async (w: number): Promise<void> => {
    let c: WireClient | null = null;
    try {
      c = (await startTlsSession(port, { ca: ca.certPem })).c;
      for (let n = 0; !killed && attempted < MAX_MESSAGES && Date.now() < loadDeadline; n++) {
        attempted++;
        const testId = `w${w}-${n}-${randomBytes(4).toString('hex')}`;
        const body = makeMessage(testId);
        if (firstSendAt === 0) firstSendAt = Date.now();
        const last = await sendMessage(c, 'load@client.test', 'inbox@localhost', body);
        const qid = queuedId(last);
        if (!qid) throw new Error(`worker ${w}: not queued: ${last}`);
        acked.set(qid, { testId, body: Buffer.from(body, 'latin1') });
        if (acked.size >= KILL_AFTER) kill();
      }
    } catch (err) {
      // After the kill every session breaks; before it, a failure is a test failure.
      if (!killed) throw err;
    } finally {
      c?.close();
    }
  };

  const results = await Promise.allSettled(Array.from({ length: SESSIONS }, (_, w) => worker(w)));
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (!killed) kill(); // bounded load ended first: still kill, the contract holds either way
  const exit = await server.waitExit(15_000);
  assert.equal(exit.signal, 'SIGKILL');
  assert.deepEqual(failures.map((f) => String(f.reason)), [], 'sessions failed before the kill');
  assert.ok(acked.size >= KILL_AFTER, `only ${acked.size} messages acknowledged before the load bound`);

  const seconds = (killAt - firstSendAt) / 1000;
  const rate = acked.size / seconds;
  t.diagnostic(`durability: ${acked.size} messages acknowledged by ${SESSIONS} STARTTLS sessions in ${seconds.toFixed(2)} s = ${rate.toFixed(0)} messages/s sustained before SIGKILL`);

  // Every acknowledged message is there, byte for byte; nothing stored is partial.
  const store = openSqliteStoreReadOnly(dataDir);
  let stored = 0;
  try {
    for (const [qid, sent] of acked) {
      const m = store.getMessage(qid);
      assert.ok(m, `acknowledged message ${qid} (${sent.testId}) was lost`);
      assert.ok(m.data.length > sent.body.length, `${qid} is shorter than what was sent`);
      assert.ok(m.data.subarray(m.data.length - sent.body.length).equals(sent.body), `${qid} bytes differ from what was sent`);
      assert.equal(m.summary.size, m.data.length);
      assert.equal(verifyStored(m.data).testId, sent.testId);
    }
    stored = store.countMessages();
    const all = store.listMessages({ limit: 10_000 });
    assert.equal(all.length, stored);
    assert.ok(stored >= acked.size);
    for (const s of all) {
      const m = store.getMessage(s.id);
      assert.ok(m, `listed message ${s.id} has no data`);
      const v = verifyStored(m.data);
      assert.ok(v.ok, `stored message ${s.id} is damaged: ${v.why}`);
      assert.deepEqual(s.recipients, ['inbox@localhost']);
      assert.equal(s.tls?.protocol, 'TLSv1.3');
    }
  } finally {
    await store.close();
  }
  t.diagnostic(`durability: ${stored} stored (${stored - acked.size} more than acknowledged: committed while the reply was in flight)`);

  // Restart on the same data directory: it serves, and lists everything.
  const again = await startServeChild(args);
  const { c } = await startTlsSession(again.port('mx'), { ca: ca.certPem });
  const last = await sendMessage(c, 'load@client.test', 'inbox@localhost', makeMessage('after-restart'));
  const newId = queuedId(last);
  assert.ok(newId, last);
  assert.deepEqual(await c.cmd('QUIT'), ['221 2.0.0 Bye']);
  c.close();
  const list = await runCli(['mailbox', 'list', '--data', dataDir, '--json', '--limit', '10000']);
  assert.equal(list.code, 0, list.stderr);
  const ids = new Set((JSON.parse(list.stdout) as Array<{ id: string }>).map((m) => m.id));
  assert.equal(ids.size, stored + 1);
  assert.ok(ids.has(newId));
  for (const qid of acked.keys()) assert.ok(ids.has(qid), `${qid} not listed after restart`);
  again.signal('SIGTERM');
  assert.deepEqual(await again.waitExit(20_000), { code: 0, signal: null });
});
