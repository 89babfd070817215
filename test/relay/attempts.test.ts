/**
 * The queue's attempt history and the names in bounces, through real delivery attempts: a second
 * postseal server on 127.0.0.1:0 reached by MX records from a test DNS server, real TLS.
 * - every attempt is kept (time, outcome, error, TLS facts), and `queue show` (text and --json)
 *   lists them; `queue list` shows `next=` only on rows that have a next attempt;
 * - a bounce names the remote MTA by its MX host name (RFC 3464 §2.3.5), not its address.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { openSqliteStore } from '../../src/store/index.js';
import { RelayFixture, queueMessage } from './fixture.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { runCli, tempDirs } from '../cli/child.js';

let receiver: TestServer;
let dns: DnsServer;
const fx = new RelayFixture(() => receiver, () => dns);
const dirs = tempDirs();

before(async () => {
  receiver = await startTestServer({ configure: (cfg) => { cfg.domains = ['example.org']; } });
  dns = await startDnsServer([
    { name: 'example.org', type: 'MX', preference: 10, exchange: 'mx1.example.org' },
    { name: 'mx1.example.org', type: 'A', address: '127.0.0.1' },
    { name: 'elsewhere.example', type: 'MX', preference: 10, exchange: 'mx.elsewhere.example' },
    { name: 'mx.elsewhere.example', type: 'A', address: '127.0.0.1' },
  ]);
});

after(async () => {
  await receiver.close();
  await dns.close();
  await fx.cleanup();
  dirs.cleanup();
});

interface ShownAttempt {
  recipient: string;
  at: string;
  outcome: string;
  error: string | null;
  tls: { levelAsked: string; levelReached: string; host: string | null; verified: boolean; whyNot: string | null } | null;
  nextAttemptAt: string | null;
}

test('every delivery attempt is kept with its outcome, error and TLS facts; queue show lists them', { timeout: 60_000 }, async () => {
  const dir = dirs.make('postseal-attempts-');
  const store = await openSqliteStore(dir);
  const id = await queueMessage(store, ['carol@example.org'], 'history');
  // 1st attempt at verify: the receiver's certificate does not name mx1.example.org -> deferred.
  assert.equal((await fx.runner(store, { tlsPolicy: { 'example.org': 'verify' } }).runOnce()).deferred, 1);
  await store.close();
  const listed = await runCli(['queue', 'list', '--data', dir]);
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(listed.stdout, /deferred .* next=/, 'a deferred row shows its next attempt');
  // 2nd attempt, made due now, at encrypt -> delivered.
  const reopened = await openSqliteStore(dir);
  assert.equal(await reopened.retryQueued(id), 1);
  assert.equal((await fx.runner(reopened, { tlsPolicy: { 'example.org': 'encrypt' } }).runOnce()).delivered, 1);
  await reopened.close();

  const show = await runCli(['queue', 'show', id, '--data', dir, '--json']);
  assert.equal(show.code, 0, show.stderr);
  const { attempts, recipients } = JSON.parse(show.stdout) as { attempts: ShownAttempt[]; recipients: { status: string; attempts: number }[] };
  assert.equal(recipients[0]?.status, 'delivered');
  assert.equal(recipients[0]?.attempts, 2);
  assert.deepEqual(attempts.map((a) => [a.recipient, a.outcome]), [['carol@example.org', 'deferred'], ['carol@example.org', 'delivered']]);
  const [first, second] = attempts;
  assert.ok(first && second);
  assert.match(first.error ?? '', /TLS_VERIFY_FAILED|verif/i);
  assert.ok(first.nextAttemptAt, 'a deferral records when the next attempt was due');
  assert.equal(first.tls?.levelAsked, 'verify');
  assert.equal(second.error, null);
  assert.equal(second.tls?.levelAsked, 'encrypt');
  assert.equal(second.tls?.levelReached, 'encrypt');
  assert.equal(second.tls?.host, 'mx1.example.org');
  assert.ok(Date.parse(first.at) <= Date.parse(second.at));

  const text = await runCli(['queue', 'show', id, '--data', dir]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /attempts:\n\s+\S+\s+<carol@example\.org>\s+deferred .*\n\s+\S+\s+<carol@example\.org>\s+delivered/);

  const list = await runCli(['queue', 'list', '--data', dir]);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /delivered/);
  assert.doesNotMatch(list.stdout, /next=/, 'a delivered row has no next attempt');
});

test('a bounce names the remote MTA by its MX host name, not its address', { timeout: 60_000 }, async () => {
  const store = await fx.senderStore();
  // The receiver does not serve elsewhere.example: 550 5.7.1, a permanent failure.
  await queueMessage(store, ['frank@elsewhere.example'], 'bounce-name');
  const s = await fx.runner(store).runOnce();
  assert.equal(s.failed, 1);
  assert.equal(s.bounces, 1);
  const bounce = store.listMessages({ mailbox: 'a@sender.test' })[0];
  assert.ok(bounce);
  const text = store.getMessage(bounce.id)?.data.toString() ?? '';
  assert.match(text, /^Remote-MTA: dns; mx\.elsewhere\.example\r$/m);
  assert.doesNotMatch(text, /Remote-MTA: dns; 127\.0\.0\.1/);
  await store.close();
});
