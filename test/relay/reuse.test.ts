/**
 * Connection reuse in the queue runner: messages of one pass for the same
 * destination travel over one connection — connect, EHLO, STARTTLS, EHLO, one transaction per
 * message, QUIT — with a cap per connection, a new connection when the server drops the old
 * one or answers 421, and each message's recipients keeping their own outcome.
 * Connections are counted at the receivers (real servers on 127.0.0.1:0).
 */
import { OUR_PREFIX } from '../helpers/peers.js';
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import type { SqliteStore } from '../../src/store/index.js';
import type { QueueRunner, RelayConfig } from '../../src/relay/runner.js';
import { RelayFixture, queueMessage } from './fixture.js';
import { deliverBatch, uniformTimeouts } from '../../src/client/index.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { issueCert } from '../helpers/certs.js';
import { startSmtpServerReceiver, type Receiver } from '../helpers/receivers.js';
import { startScriptedServer, type ScriptPeer } from '../client/scripted-server.js';

let receiver: TestServer;
let dns: DnsServer;
const closers: Array<() => Promise<void>> = [];

before(async () => {
  receiver = await startTestServer({ configure: (cfg) => { cfg.domains = ['example.net', 'example.org']; } });
  dns = await startDnsServer([
    { name: 'example.org', type: 'MX', preference: 10, exchange: 'localhost' },
    { name: 'localhost', type: 'A', address: '127.0.0.1' },
  ]);
});

after(async () => {
  for (const c of closers) await c();
  await receiver.close();
  await dns.close();
  await fx.cleanup();
});

const fx = new RelayFixture(() => receiver, () => dns);
const senderStore = (): Promise<SqliteStore> => fx.senderStore();
const runner = (store: SqliteStore, over: Partial<RelayConfig> = {}): QueueRunner => fx.runner(store, over);
const queue = queueMessage;
const receivedByTag = (tag: string): Buffer | null => fx.receivedByTag(tag);

/** `got` is our Received header (and the receiver's Authentication-Results) followed by exactly `sent`. */
function assertReceivedExact(got: Buffer | null, sent: Buffer, what: string): void {
  assert.ok(got, `${what}: not received`);
  assert.ok(got.subarray(got.length - sent.length).equals(sent), `${what}: bytes differ`);
  assert.match(got.subarray(0, got.length - sent.length).toString('latin1'), OUR_PREFIX);
}

test('20 messages to one route go over ONE connection at verify, each byte-exact, each recorded', async () => {
  const store = await senderStore();
  const ids: Array<{ id: string; tag: string }> = [];
  for (let i = 0; i < 20; i++) {
    const tag = `reuse-route-${i}`;
    ids.push({ id: await queue(store, [`rcpt${i}@example.net`], tag), tag });
  }
  const before = receiver.running.server.stats.connections;
  const s = await runner(store, { routes: { 'example.net': { host: '127.0.0.1', port: receiver.port('mx') } }, tlsPolicy: { 'example.net': 'verify' } }).runOnce();
  assert.equal(receiver.running.server.stats.connections - before, 1, 'one TCP connection at the receiver');
  assert.equal(s.connections, 1);
  assert.equal(s.delivered, 20);
  const rows = store.listQueue();
  for (const { id, tag } of ids) {
    const sent = store.getMessage(id)?.data;
    assert.ok(sent);
    assertReceivedExact(receivedByTag(tag), sent, tag);
    const row = rows.find((e) => e.id === id);
    assert.equal(row?.status, 'delivered');
    assert.equal(row?.lastTls?.levelAsked, 'verify');
    assert.equal(row?.lastTls?.levelReached, 'verify');
    assert.equal(row?.lastTls?.verified, true);
  }
  await store.close();
});

test('MX delivery reuses the connection too (10 messages, encrypt, one connection)', async () => {
  const store = await senderStore();
  for (let i = 0; i < 10; i++) await queue(store, [`mx${i}@example.org`], `reuse-mx-${i}`);
  const before = receiver.running.server.stats.connections;
  const s = await runner(store, { tlsPolicy: { 'example.org': 'encrypt' } }).runOnce();
  assert.equal(s.delivered, 10);
  assert.equal(receiver.running.server.stats.connections - before, 1);
  for (let i = 0; i < 10; i++) assert.ok(receivedByTag(`reuse-mx-${i}`), `reuse-mx-${i}`);
  await store.close();
});

test('the cap per connection: 20 messages with maxMessagesPerConnection 7 take 3 connections; 1 turns reuse off', async () => {
  const store = await senderStore();
  for (let i = 0; i < 20; i++) await queue(store, [`cap${i}@example.net`], `reuse-cap-${i}`);
  const route = { 'example.net': { host: '127.0.0.1', port: receiver.port('mx') } };
  let before = receiver.running.server.stats.connections;
  let s = await runner(store, { routes: route, maxMessagesPerConnection: 7, concurrency: 1 }).runOnce();
  assert.equal(s.delivered, 20);
  assert.equal(s.connections, 3);
  assert.equal(receiver.running.server.stats.connections - before, 3);

  for (let i = 0; i < 4; i++) await queue(store, [`noreuse${i}@example.net`], `reuse-off-${i}`);
  before = receiver.running.server.stats.connections;
  s = await runner(store, { routes: route, maxMessagesPerConnection: 1 }).runOnce();
  assert.equal(s.delivered, 4);
  assert.equal(receiver.running.server.stats.connections - before, 4);
  await store.close();
});

test('recipients keep their own outcome on a shared connection (a relayhost: one domain refused, others delivered)', async () => {
  const store = await senderStore();
  const good = await queue(store, ['ok1@example.net'], 'reuse-mixed-1');
  const bad = await queue(store, ['x@not-served.example'], 'reuse-mixed-2');
  const both = await queue(store, ['ok2@example.net', 'y@not-served.example'], 'reuse-mixed-3');
  const before = receiver.running.server.stats.connections;
  // '*' is a relayhost: every domain over the same route, hence the same connection.
  const s = await runner(store, { routes: { '*': { host: '127.0.0.1', port: receiver.port('mx') } } }).runOnce();
  assert.equal(receiver.running.server.stats.connections - before, 1);
  assert.equal(s.delivered, 2);
  assert.equal(s.failed, 2);
  const rows = store.listQueue();
  const status = (id: string, rcpt: string): string | undefined => rows.find((e) => e.id === id && e.recipient === rcpt)?.status;
  assert.equal(status(good, 'ok1@example.net'), 'delivered');
  assert.equal(status(bad, 'x@not-served.example'), 'failed');
  assert.equal(status(both, 'ok2@example.net'), 'delivered');
  assert.equal(status(both, 'y@not-served.example'), 'failed');
  assert.ok(receivedByTag('reuse-mixed-1'));
  assert.equal(receivedByTag('reuse-mixed-2'), null);
  await store.close();
});

test('a server that answers 421 to MAIL after 3 messages: the rest go on new connections, all delivered once', async (t) => {
  const sink = await startSmtpServerReceiver({ hostname: 'mx.smtp-server.test', pair: await issueCert(receiver.ca, { names: ['127.0.0.1'] }), maxMessagesPerConnection: 3 });
  closers.push(() => sink.close());
  const store = await senderStore();
  for (let i = 0; i < 8; i++) await queue(store, [`drop${i}@example.net`], `reuse-421-${i}`);
  const s = await runner(store, { routes: { 'example.net': { host: '127.0.0.1', port: sink.port } }, tlsPolicy: { 'example.net': 'verify' } }).runOnce();
  assert.equal(s.delivered, 8);
  assert.equal(s.deferred, 0);
  assert.equal(sink.connections(), 3, '3 + 3 + 2 messages');
  assert.equal(s.connections, 3);
  const got = await sink.messages();
  assert.equal(got.length, 8, 'each message exactly once');
  for (let i = 0; i < 8; i++) assert.equal(got.filter((m) => m.data.includes(`<reuse-421-${i}@sender.test>`)).length, 1);
  assert.ok(got.every((m) => m.tls === true));
  t.diagnostic(`smtp-server 421 after 3 per connection: ${s.connections} connections for 8 messages`);
  await store.close();
});

/** A plain ESMTP script that takes `n` messages, then drops the TCP connection at the next MAIL. */
function takeThenDrop(n: number, drop: boolean) {
  return async (p: ScriptPeer): Promise<void> => {
    await p.write('220 scripted ESMTP\r\n');
    await p.expect('EHLO');
    await p.write('250-scripted\r\n250 8BITMIME\r\n');
    for (let i = 0; i < n; i++) {
      await p.expect('MAIL FROM:');
      await p.write('250 ok\r\n');
      await p.expect('RCPT TO:');
      await p.write('250 ok\r\n');
      await p.expect('DATA');
      await p.write('354 go\r\n');
      await p.readData();
      await p.write('250 queued\r\n');
    }
    if (drop) {
      await p.expect('MAIL FROM:');
      p.destroy();
      return;
    }
    await p.expect('QUIT');
    await p.write('221 bye\r\n');
  };
}

test('deliverBatch: a connection dropped at MAIL after 2 messages continues on a new one; nothing lost or doubled', async () => {
  const srv = await startScriptedServer([takeThenDrop(2, true), takeThenDrop(3, false)]);
  closers.push(() => srv.close());
  const msgs = Array.from({ length: 5 }, (_, i) => ({ from: 'a@sender.test', to: [`r${i}@fake.test`], message: `Subject: ${i}\r\n\r\nbody ${i}\r\n` }));
  const b = await deliverBatch({ host: '127.0.0.1', port: srv.port, level: 'may', helo: 'out.sender.test', timeouts: uniformTimeouts(5000) }, msgs);
  assert.deepEqual(b.results.map((r) => r.ok), [true, true, true, true, true], JSON.stringify(b.results.map((r) => r.error)));
  assert.equal(b.connections, 2);
  assert.equal(srv.connections, 2);
  assert.deepEqual(b.results.map((r) => r.connections), [1, 1, 1, 1, 1]);
  for (let i = 0; i < 5; i++) assert.equal(srv.received().split(`body ${i}\r\n`).length - 1, 1, `message ${i} content sent once`);
});

test('deliverBatch: RSET after a refused DATA, before the next transaction on the same connection', async () => {
  const srv = await startScriptedServer(async (p) => {
    await p.write('220 scripted ESMTP\r\n');
    await p.expect('EHLO');
    await p.write('250 scripted\r\n');
    await p.expect('MAIL FROM:');
    await p.write('250 ok\r\n');
    await p.expect('RCPT TO:');
    await p.write('250 ok\r\n');
    await p.expect('DATA');
    await p.write('451 4.3.0 not now\r\n');
    await p.expect('RSET');
    await p.write('250 reset\r\n');
    await p.expect('MAIL FROM:');
    await p.write('250 ok\r\n');
    await p.expect('RCPT TO:');
    await p.write('250 ok\r\n');
    await p.expect('DATA');
    await p.write('354 go\r\n');
    await p.readData();
    await p.write('250 queued\r\n');
    await p.expect('QUIT');
    await p.write('221 bye\r\n');
  });
  closers.push(() => srv.close());
  const msgs = [0, 1].map((i) => ({ from: 'a@sender.test', to: [`r${i}@fake.test`], message: `Subject: ${i}\r\n\r\nbody ${i}\r\n` }));
  const b = await deliverBatch({ host: '127.0.0.1', port: srv.port, level: 'none', helo: 'out.sender.test', timeouts: uniformTimeouts(5000) }, msgs);
  assert.deepEqual((await srv.settled()).filter((e) => e !== null), []);
  assert.equal(b.results[0]?.recipients[0]?.status, 'deferred');
  assert.equal(b.results[1]?.ok, true);
  assert.equal(b.connections, 1);
});
