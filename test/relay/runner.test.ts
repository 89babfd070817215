/**
 * The outbound queue runner against real receivers: a second postseal server on 127.0.0.1:0,
 * MX records from a test DNS server, real TLS with a test CA. Each test checks what was recorded
 * for every attempt (status, TLS outcome) and what the receiver really got.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { SqliteStore } from '../../src/store/index.js';
import type { QueueRunner, RelayConfig } from '../../src/relay/runner.js';
import { RelayFixture, queueMessage } from './fixture.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';

let receiver: TestServer;
let dns: DnsServer;

before(async () => {
  receiver = await startTestServer({ configure: (cfg) => { cfg.domains = ['example.net', 'example.org', 'postseal.test']; } });
  dns = await startDnsServer([
    { name: 'example.org', type: 'MX', preference: 10, exchange: 'mx1.example.org' },
    { name: 'mx1.example.org', type: 'A', address: '127.0.0.1' },
    { name: 'nomail.example', type: 'MX', preference: 0, exchange: '.' },
  ]);
});

after(async () => {
  await receiver.close();
  await dns.close();
  await fx.cleanup();
});

const fx = new RelayFixture(() => receiver, () => dns);
const senderStore = (): Promise<SqliteStore> => fx.senderStore();
const runner = (store: SqliteStore, over: Partial<RelayConfig> = {}): QueueRunner => fx.runner(store, over);
const queue = queueMessage;
const receivedByTag = (tag: string): Buffer | null => fx.receivedByTag(tag);

test('a static route at verify delivers byte-exact and records the TLS outcome', async () => {
  const store = await senderStore();
  const id = await queue(store, ['bob@example.net'], 'route-verify');
  const r = runner(store, { routes: { 'example.net': { host: '127.0.0.1', port: receiver.port('mx') } }, tlsPolicy: { 'example.net': 'verify' } });
  const s = await r.runOnce();
  assert.equal(s.delivered, 1);
  const got = receivedByTag('route-verify');
  assert.ok(got, 'receiver has the message');
  const sent = store.getMessage(id)?.data;
  assert.ok(sent);
  // The receiver prepends its own Received header; the rest is byte-exact (dot line included).
  assert.ok(got.subarray(got.length - sent.length).equals(sent));
  const row = store.listQueue().find((e) => e.id === id);
  assert.equal(row?.status, 'delivered');
  assert.equal(row?.lastTls?.levelAsked, 'verify');
  assert.equal(row?.lastTls?.levelReached, 'verify');
  assert.equal(row?.lastTls?.protocol, 'TLSv1.3');
  assert.equal(row?.lastTls?.verified, true);
  await store.close();
});

test('MX from the test DNS server; at encrypt a certificate for another name is used but recorded as unverified', async () => {
  const store = await senderStore();
  const id = await queue(store, ['carol@example.org'], 'mx-encrypt');
  const s = await runner(store, { tlsPolicy: { 'example.org': 'encrypt' } }).runOnce();
  assert.equal(s.delivered, 1);
  assert.ok(receivedByTag('mx-encrypt'));
  assert.ok(dns.queries.some((q) => /^example\.org MX$/i.test(q)));
  const row = store.listQueue().find((e) => e.id === id);
  assert.equal(row?.lastTls?.host, 'mx1.example.org');
  assert.equal(row?.lastTls?.levelReached, 'encrypt');
  assert.equal(row?.lastTls?.verified, false);
  assert.ok(row?.lastTls?.whyNot, 'the reason it is not verified is recorded');
  await store.close();
});

test('at verify a certificate that does not name the MX host defers, and no byte of the message is delivered', async () => {
  const store = await senderStore();
  const id = await queue(store, ['dave@example.org'], 'mx-verify-fail');
  const s = await runner(store, { tlsPolicy: { 'example.org': 'verify' } }).runOnce();
  assert.equal(s.deferred, 1);
  assert.equal(receivedByTag('mx-verify-fail'), null);
  const row = store.listQueue().find((e) => e.id === id);
  assert.equal(row?.status, 'deferred');
  assert.equal(row?.attempts, 1);
  assert.ok(row && new Date(row.nextAttemptAt).getTime() > Date.now());
  assert.match(row?.lastError ?? '', /TLS_VERIFY_FAILED|verif/i);
  assert.equal(await store.retryQueued(id), 1);
  assert.equal((await store.claimDue(new Date(), 10)).length, 1, 'retry makes the row due now');
  await store.close();
});

test('recipients of one message deferred together stay due together (one jitter draw per attempt)', async () => {
  const store = await senderStore();
  const rcpts = ['r1@example.org', 'r2@example.org', 'r3@example.org', 'r4@example.org'];
  const id = await queue(store, rcpts, 'jitter-together');
  const s = await runner(store, { tlsPolicy: { 'example.org': 'verify' } }).runOnce();
  assert.equal(s.deferred, rcpts.length);
  const rows = store.listQueue().filter((e) => e.id === id);
  assert.equal(rows.length, rcpts.length);
  // Per-row draws gave each row its own time: the next pass split the message into several
  // deliveries (a webhook called twice with the same message).
  assert.equal(new Set(rows.map((e) => e.nextAttemptAt)).size, 1, `one next attempt time: ${rows.map((e) => e.nextAttemptAt).join(', ')}`);
  await store.close();
});

test('REQUIRETLS raises the level to verify whatever the policy says (RFC 8689)', async () => {
  const store = await senderStore();
  await queue(store, ['erin@example.org'], 'requiretls', { requireTls: true });
  const r = runner(store, { tlsPolicy: { 'example.org': 'may' } });
  assert.equal(r.levelFor('example.org', true), 'verify');
  const s = await r.runOnce();
  assert.equal(s.delivered, 0);
  assert.equal(receivedByTag('requiretls'), null);
  await store.close();
});

test('a permanent rejection fails the recipient and bounces to the sender from <>', async () => {
  const store = await senderStore();
  const id = await queue(store, ['frank@not-local.example'], 'bounce-me');
  // The receiver is not an open relay: 550 5.7.1 for a domain it does not serve.
  const s = await runner(store, { routes: { 'not-local.example': { host: '127.0.0.1', port: receiver.port('mx') } } }).runOnce();
  assert.equal(s.failed, 1);
  assert.equal(s.bounces, 1);
  const row = store.listQueue().find((e) => e.id === id);
  assert.equal(row?.status, 'failed');
  assert.match(row?.lastError ?? '', /^550 5\.7\.1/);
  const bounces = store.listMessages({ mailbox: 'a@sender.test' });
  assert.equal(bounces.length, 1);
  assert.equal(bounces[0]?.mailFrom, '');
  const text = store.getMessage(bounces[0]?.id ?? '')?.data.toString() ?? '';
  assert.match(text, /^Status: 5\.7\.1\r$/m);
  assert.match(text, /^Final-Recipient: rfc822; frank@not-local\.example\r$/m);
  await store.close();
});

test('null MX (RFC 7505) fails at once and bounces', async () => {
  const store = await senderStore();
  await queue(store, ['x@nomail.example'], 'null-mx');
  const s = await runner(store).runOnce();
  assert.equal(s.failed, 1);
  assert.equal(s.bounces, 1);
  await store.close();
});

test('a temporary failure past the maximum age fails with 4.4.7 and bounces; a bounce never bounces', async () => {
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
  const port = (closed.address() as net.AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const store = await senderStore();
  const old = new Date(Date.now() - 6 * 86_400_000);
  await queue(store, ['g@gone.example'], 'expired', { receivedAt: old });
  await queue(store, ['h@gone.example'], 'expired-bounce', { receivedAt: old, mailFrom: '' });
  const fresh = await queue(store, ['i@gone.example'], 'fresh');
  const s = await runner(store, { routes: { 'gone.example': { host: '127.0.0.1', port } } }).runOnce();
  assert.equal(s.failed, 2);
  assert.equal(s.deferred, 1);
  assert.equal(s.bounces, 1, 'no bounce for the message from the null sender');
  const text = store.getMessage(store.listMessages({ mailbox: 'a@sender.test' })[0]?.id ?? '')?.data.toString() ?? '';
  assert.match(text, /^Status: 4\.4\.7\r$/m);
  assert.equal(store.listQueue().find((e) => e.id === fresh)?.status, 'deferred');
  await store.close();
});
