/**
 * The queue runner on a shared queue (issue 13): each message's outcome is in the store as soon
 * as the receiver answered it (not at the end of its batch), the leases of the rows being
 * delivered are renewed so another node cannot claim them mid-delivery, and the MX walk reports a
 * message only once its outcome is final. Real parts: nodemailer's smtp-server as the receiver on
 * 127.0.0.1:0 (its hooks hold or refuse DATA), SQLite stores in temp dirs (two handles with two
 * node ids on one data dir stand for two nodes), the test DNS server for MX records.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { openSqliteStore, type QueueEntry, type SqliteStore } from '../../src/store/index.js';
import { DEFAULT_RELAY } from '../../src/config.js';
import { QueueRunner, type RelayConfig } from '../../src/relay/runner.js';
import { deliverBatchToDomain, systemResolver, uniformTimeouts, type DomainDelivery } from '../../src/client/index.js';
import type { Logger } from '../../src/log.js';
import { silentLogger } from '../../src/log.js';
import { queueMessage } from './fixture.js';
import { startTestServer } from '../helpers/server.js';
import { makeMessage } from '../store/helpers.js';
import { startDnsServer } from '../helpers/dns-server.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function dataDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'postseal-leases-'));
  dirs.push(d);
  return d;
}

interface Hooked {
  port: number;
  /** Recipients of every message the receiver took (250 after DATA), in order. */
  accepted: string[][];
  close(): Promise<void>;
}

/**
 * A plaintext receiver whose DATA hook decides each message's fate: resolve to null (250) or to a
 * reply code (the receiver answers it; 421 closes the connection, RFC 5321 §3.8).
 */
async function hookedReceiver(onData: (rcpts: string[], session: SMTPServerSession) => Promise<number | null>, host = '127.0.0.1', port = 0): Promise<Hooked> {
  const accepted: string[][] = [];
  const server = new SMTPServer({
    secure: false,
    name: 'mx.example.net',
    disabledCommands: ['AUTH', 'STARTTLS'],
    authOptional: true,
    logger: false,
    onData(stream: SMTPServerDataStream, session: SMTPServerSession, cb: (err?: Error | null) => void) {
      const rcpts = session.envelope.rcptTo.map((r) => r.address);
      stream.on('data', () => undefined);
      stream.on('end', () => {
        onData(rcpts, session).then(
          (code) => {
            if (code === null) {
              accepted.push(rcpts);
              cb();
            } else cb(Object.assign(new Error(`test refuses with ${code}`), { responseCode: code }));
          },
          (err: unknown) => cb(err instanceof Error ? err : new Error(String(err))),
        );
      });
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const addr = server.server.address();
  if (addr === null || typeof addr !== 'object') throw new Error('no port');
  return { port: addr.port, accepted, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

function runnerFor(store: SqliteStore, port: number, over: Partial<RelayConfig> = {}, logger: Logger = silentLogger): QueueRunner {
  const cfg: RelayConfig = {
    ...DEFAULT_RELAY,
    hostname: 'out.sender.test',
    localDomains: ['sender.test'],
    routes: { 'example.net': { host: '127.0.0.1', port } },
    tlsPolicy: { 'example.net': 'none' },
    timeouts: uniformTimeouts(15_000),
    ...over,
  };
  return new QueueRunner(store, cfg, systemResolver(['127.0.0.1:1']), logger);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A receiver holding every DATA for holdMs before its 250; `inData` resolves at the first DATA. */
async function slowReceiver(holdMs: number): Promise<Hooked & { inData: Promise<void> }> {
  let release: (() => void) | null = null;
  const inData = new Promise<void>((resolve) => {
    release = resolve;
  });
  const rx = await hookedReceiver(async () => {
    release?.();
    await sleep(holdMs);
    return null;
  });
  return { ...rx, inData };
}

/** Two store handles on one data dir with two node ids: two nodes sharing a queue. */
async function twoNodes(): Promise<{ a: SqliteStore; b: SqliteStore }> {
  const dir = await dataDir();
  return { a: await openSqliteStore(dir, { nodeId: 'node-a' }), b: await openSqliteStore(dir, { nodeId: 'node-b' }) };
}

/** Node b tries to claim every 400 ms until `running` settles: the rows it got per try. */
async function claimsWhile(b: SqliteStore, running: Promise<unknown>, leaseMs: number): Promise<number[]> {
  let done = false;
  void running.then(
    () => (done = true),
    () => (done = true),
  );
  const claims: number[] = [];
  while (!done) {
    claims.push((await b.claimDue(new Date(), 10, { kind: 'remote', leaseMs })).length);
    await sleep(400);
  }
  return claims;
}

test('each message of a batch is in the store as delivered as soon as the receiver took it, before the batch ends', async () => {
  const store = await openSqliteStore(await dataDir());
  const ids: string[] = [];
  for (let n = 1; n <= 4; n++) ids.push(await queueMessage(store, [`m${n}@example.net`], `batch-${n}`));
  // What the store said while message 3 was in DATA (the receiver then drops the connection).
  let seenAt3: Record<string, string> | null = null;
  const rx = await hookedReceiver(async (rcpts) => {
    if (rcpts[0] !== 'm3@example.net' || seenAt3 !== null) return null;
    seenAt3 = Object.fromEntries(store.listQueue().map((e) => [e.recipient, e.status]));
    return 421;
  });
  try {
    const s = await runnerFor(store, rx.port).runOnce();
    assert.ok(seenAt3, 'message 3 reached DATA');
    // Recorded at the batch's end (the old runner), all four would still be 'queued' here.
    assert.deepEqual(seenAt3, { 'm1@example.net': 'delivered', 'm2@example.net': 'delivered', 'm3@example.net': 'queued', 'm4@example.net': 'queued' });
    // 421 at the end of data: message 3 deferred; message 4 (nothing sent yet) on a new connection.
    assert.equal(s.delivered, 3);
    assert.equal(s.deferred, 1);
    const status = Object.fromEntries(store.listQueue().map((e) => [e.recipient, e.status]));
    assert.deepEqual(status, { 'm1@example.net': 'delivered', 'm2@example.net': 'delivered', 'm3@example.net': 'deferred', 'm4@example.net': 'delivered' });
    assert.deepEqual(rx.accepted, [['m1@example.net'], ['m2@example.net'], ['m4@example.net']]);
  } finally {
    await rx.close();
    await store.close();
  }
});

test('a stalled receiver: the messages it took before are recorded while the stall lasts', async () => {
  const store = await openSqliteStore(await dataDir());
  for (let n = 1; n <= 3; n++) await queueMessage(store, [`s${n}@example.net`], `stall-${n}`);
  let seenInStall: Record<string, string> | null = null;
  const rx = await hookedReceiver(async (rcpts) => {
    if (rcpts[0] !== 's2@example.net') return null;
    seenInStall = Object.fromEntries(store.listQueue().map((e) => [e.recipient, e.status]));
    // Never answers within the client's end-of-data deadline.
    await sleep(2_500);
    return null;
  });
  try {
    await runnerFor(store, rx.port, { timeouts: uniformTimeouts(1_000) }).runOnce();
    assert.deepEqual(seenInStall, { 's1@example.net': 'delivered', 's2@example.net': 'queued', 's3@example.net': 'queued' });
    const status = Object.fromEntries(store.listQueue().map((e) => [e.recipient, e.status]));
    // The timed-out message is deferred (its content was under way: never counted as delivered).
    assert.equal(status['s1@example.net'], 'delivered');
    assert.equal(status['s2@example.net'], 'deferred');
  } finally {
    await rx.close();
    await store.close();
  }
});

test('leases are renewed while a delivery runs: another node cannot claim the row, and it is delivered once', async () => {
  const { a, b } = await twoNodes();
  const id = await queueMessage(a, ['slow@example.net'], 'lease-renewed');
  const leaseMs = 5_000;
  // Longer than the lease: without renewal node-b could claim the row from ~5 s on.
  const rx = await slowReceiver(7_000);
  const warnings: object[] = [];
  const logger: Logger = { ...silentLogger, warn: (o) => void warnings.push(o) };
  try {
    const running = runnerFor(a, rx.port, { leaseMs }, logger).runOnce();
    await rx.inData;
    const claimsByB = await claimsWhile(b, running, leaseMs);
    const s = await running;
    assert.ok(claimsByB.length >= 15, `node-b tried through the whole delivery (${claimsByB.length} tries)`);
    assert.deepEqual([...new Set(claimsByB)], [0], 'node-b never got the row');
    assert.equal(s.delivered, 1);
    assert.equal(a.listQueue().find((e) => e.id === id)?.status, 'delivered');
    assert.deepEqual(a.listAttempts(id).map((x) => [x.outcome, x.node]), [['delivered', 'node-a']]);
    assert.equal((await b.claimDue(new Date(Date.now() + leaseMs * 2), 10)).length, 0, 'nothing left to claim');
    assert.deepEqual(rx.accepted, [['slow@example.net']], 'delivered exactly once at the receiver');
    assert.deepEqual(warnings, [], 'no lease was lost');
  } finally {
    await rx.close();
    await b.close();
    await a.close();
  }
});

test('rows claimed but not started yet keep their lease: with one worker, a second destination waits longer than a lease and no other node takes it', async () => {
  const { a, b } = await twoNodes();
  const slowId = await queueMessage(a, ['slow@example.net'], 'lease-round-slow');
  const waitingId = await queueMessage(a, ['later@example.org'], 'lease-round-waiting');
  const leaseMs = 5_000;
  // Longer than the lease, with one worker: the example.org task starts only after it.
  const slow = await slowReceiver(7_000);
  const fast = await hookedReceiver(async () => null);
  try {
    const runner = runnerFor(a, slow.port, { leaseMs, concurrency: 1, routes: { 'example.net': { host: '127.0.0.1', port: slow.port }, 'example.org': { host: '127.0.0.1', port: fast.port } }, tlsPolicy: { 'example.net': 'none', 'example.org': 'none' } });
    const running = runner.runOnce();
    await slow.inData;
    const claimsByB = await claimsWhile(b, running, leaseMs);
    const s = await running;
    assert.ok(claimsByB.length >= 15, `node-b tried through the whole run (${claimsByB.length} tries)`);
    // Renewed only once its task started, the example.org row's lease ran out after 5 s and node-b took it.
    assert.deepEqual([...new Set(claimsByB)], [0], 'node-b never got a row node-a had claimed');
    assert.equal(s.delivered, 2);
    assert.deepEqual(a.listAttempts(waitingId).map((x) => [x.outcome, x.node]), [['delivered', 'node-a']]);
    assert.deepEqual(a.listAttempts(slowId).map((x) => [x.outcome, x.node]), [['delivered', 'node-a']]);
    assert.deepEqual(fast.accepted, [['later@example.org']], 'delivered once');
  } finally {
    await slow.close();
    await fast.close();
    await b.close();
    await a.close();
  }
});

test('a graceful stop of serve releases the leases of rows it claimed but did not start', async () => {
  const slow = await slowReceiver(1_500);
  const fast = await hookedReceiver(async () => null);
  const server = await startTestServer({
    configure: (cfg) => {
      cfg.relay.concurrency = 1;
      cfg.relay.routes = { 'example.net': `127.0.0.1:${slow.port}`, 'example.org': `127.0.0.1:${fast.port}` };
      cfg.relay.tlsPolicy = { 'example.net': 'none', 'example.org': 'none' };
    },
  });
  let stopped = false;
  try {
    const store = server.running.store;
    // One message, two domains: both rows due at the same instant, claimed in one round; two
    // tasks (one per route), the slow one first (claim order: seq, then recipient).
    const { id: waitingId } = await store.accept(makeMessage({ localRecipients: [], remoteRecipients: ['a-slow@example.net', 'z-later@example.org'] }));
    server.running.relay?.kick();
    await slow.inData;
    // One worker is in the slow DATA; the example.org row is claimed (leased) but not started.
    const waiting = (): QueueEntry | undefined => store.listQueue().find((e) => e.recipient === 'z-later@example.org');
    assert.notEqual(waiting()?.claimedUntil ?? null, null, `claimed in the same round: ${JSON.stringify(store.listQueue())}`);
    const reopen = server.dataDir;
    await server.running.close(5_000);
    stopped = true;
    const after = await openSqliteStore(reopen);
    try {
      const row = after.listQueue().find((e) => e.id === waitingId && e.recipient === 'z-later@example.org');
      assert.equal(row?.status, 'queued', 'never started');
      assert.equal(row?.claimedUntil, null, 'its lease released at stop, not left to expire');
    } finally {
      await after.close();
    }
    assert.deepEqual(slow.accepted, [['a-slow@example.net']], 'the delivery under way finished before the stop');
    assert.deepEqual(fast.accepted, []);
  } finally {
    if (!stopped) await server.running.close(1_000);
    await slow.close();
    await fast.close();
  }
});

test('renewLeases extends only this node’s live leases (0 for rows another node holds)', async () => {
  const { a, b } = await twoNodes();
  try {
    await queueMessage(a, ['one@example.net'], 'renew-1');
    const rows = await a.claimDue(new Date(), 10, { leaseMs: 60_000 });
    assert.equal(rows.length, 1);
    assert.equal(await b.renewLeases(rows, 60_000), 0, 'node-b does not hold it');
    assert.equal(await a.renewLeases(rows, 60_000), 1, 'node-a does');
    // node-a's lease runs out; node-b claims the row; node-a cannot take it back by renewing.
    const later = new Date(Date.now() + 120_000);
    const taken = await b.claimDue(later, 10, { leaseMs: 600_000 });
    assert.equal(taken.length, 1);
    assert.equal(await a.renewLeases(rows, 60_000), 0, 'a lost lease is not renewed');
    assert.equal(await b.renewLeases(taken, 60_000), 1);
  } finally {
    await b.close();
    await a.close();
  }
});

test('deliverBatchToDomain reports a message once, when final: a 451 at the first MX is not final, the second MX’s answer is', async () => {
  // Two MX hosts on one port: 127.0.0.1 (preference 10) defers everything, 127.0.0.2 (20) takes it.
  const first = await hookedReceiver(async () => 451);
  const second = await hookedReceiver(async () => null, '127.0.0.2', first.port).catch(() => null);
  if (second === null) {
    await first.close();
    assert.fail(`127.0.0.2:${first.port} could not be bound`);
  }
  const dns = await startDnsServer([
    { name: 'two.example', type: 'MX', preference: 10, exchange: 'mx1.two.example' },
    { name: 'two.example', type: 'MX', preference: 20, exchange: 'mx2.two.example' },
    { name: 'mx1.two.example', type: 'A', address: '127.0.0.1' },
    { name: 'mx2.two.example', type: 'A', address: '127.0.0.2' },
  ]);
  try {
    const reports: Array<{ index: number; host: string | null; ok: boolean; tried: number; secondTookIt: number }> = [];
    const msg = (to: string) => ({ from: 'a@sender.test', to: [to], message: `Subject: ${to}\r\n\r\nbody\r\n` });
    const r = await deliverBatchToDomain(
      'two.example',
      {
        level: 'none',
        helo: 'out.sender.test',
        port: first.port,
        timeouts: uniformTimeouts(5_000),
        onResult: (index: number, d: DomainDelivery) => {
          reports.push({ index, host: d.final?.host ?? null, ok: d.ok, tried: d.attempts.length, secondTookIt: second.accepted.length });
        },
      },
      [msg('x@two.example'), msg('y@two.example')],
      systemResolver([`127.0.0.1:${dns.port}`]),
    );
    assert.deepEqual(r.deliveries.map((d) => d.ok), [true, true]);
    // Each reported once, after the second host took it (not after the first host's 451), and
    // the first before the second message was sent to the second host.
    assert.deepEqual(reports, [
      { index: 0, host: '127.0.0.2', ok: true, tried: 2, secondTookIt: 1 },
      { index: 1, host: '127.0.0.2', ok: true, tried: 2, secondTookIt: 2 },
    ]);
  } finally {
    await dns.close();
    await second.close();
    await first.close();
  }
});
