/**
 * The queue runner through the sending-policy engine, against a real postseal receiver whose
 * certificate does not name the MX host: MTA-STS enforce (MX outside the policy: no connection,
 * 4.7.5 deferral; MX inside: verify fails, deferred, nothing sent), MTA-STS testing (delivered
 * as before, the failure counted for TLS-RPT with source mta-sts), the table entry winning over
 * the policy, and a REQUIRETLS bounce with 5.7.30. The MTA-STS lookup is injected (the HTTPS
 * fetch has its own tests); DNS is the test DNS server.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { QueueRunner, type RelayConfig, type RunnerPolicy } from '../../src/relay/runner.js';
import { systemResolver, uniformTimeouts } from '../../src/client/index.js';
import { DEFAULT_RELAY } from '../../src/config.js';
import { silentLogger } from '../../src/log.js';
import type { Store } from '../../src/store/index.js';
import type { MtaStsLookup, TlsRptEvent } from '../../src/policy/types.js';
import { RelayFixture, queueMessage } from './fixture.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';

let receiver: TestServer;
let dns: DnsServer;
const fx = new RelayFixture(() => receiver, () => dns);

before(async () => {
  receiver = await startTestServer({ configure: (cfg) => { cfg.domains = ['example.org']; } });
  dns = await startDnsServer([
    { name: 'example.org', type: 'MX', preference: 10, exchange: 'mx1.example.org' },
    { name: 'mx1.example.org', type: 'A', address: '127.0.0.1' },
  ]);
});

after(async () => {
  await receiver.close();
  await dns.close();
  await fx.cleanup();
});

function sts(mode: 'enforce' | 'testing', mx: string[]): MtaStsLookup {
  const text = `version: STSv1\nmode: ${mode}\n${mx.map((m) => `mx: ${m}`).join('\n')}\nmax_age: 86400\n`;
  return { policy: { domain: 'example.org', id: 'x1', mode, mx, maxAge: 86400, fetchedAt: Date.now(), expiresAt: Date.now() + 86_400_000, text }, from: 'cache', failure: null };
}

function runner(store: Store, policy: RunnerPolicy, over: Partial<RelayConfig> = {}): QueueRunner {
  const cfg: RelayConfig = { ...DEFAULT_RELAY, hostname: 'out.sender.test', localDomains: ['sender.test'], ca: receiver.caPem, smtpPort: receiver.port('mx'), timeouts: uniformTimeouts(10_000), ...over };
  return new QueueRunner(store, cfg, systemResolver([`127.0.0.1:${dns.port}`]), silentLogger, policy);
}

function recorder(): { events: TlsRptEvent[]; record(e: TlsRptEvent): void } {
  const events: TlsRptEvent[] = [];
  return { events, record: (e) => events.push(e) };
}

test('MTA-STS enforce, MX not in the policy: no connection, deferred 4.7.5 naming the rule, counted for TLS-RPT', async () => {
  const store = await fx.senderStore();
  const rpt = recorder();
  const id = await queueMessage(store, ['a@example.org'], 'sts-nomatch');
  const s = await runner(store, { mtaSts: async () => sts('enforce', ['mx.other.example']), tlsRpt: rpt }).runOnce();
  assert.equal(s.deferred, 1);
  assert.equal(s.connections, 0, 'no connection to a host outside the policy');
  assert.equal(fx.receivedByTag('sts-nomatch'), null);
  const row = store.listQueue().find((e) => e.id === id);
  assert.equal(row?.status, 'deferred');
  assert.match(row?.lastError ?? '', /^4\.7\.5 no MX host of example\.org may be used: mx1\.example\.org: MTA-STS enforce .*RFC 8461 §4\.1/);
  assert.deepEqual(rpt.events.map((e) => [e.policyType, e.mxHost, e.result]), [['sts', 'mx1.example.org', 'validation-failure']]);
  await store.close();
});

test('MTA-STS enforce, MX in the policy, certificate for another name: verify against the MX name fails, deferred, nothing sent', async () => {
  const store = await fx.senderStore();
  const rpt = recorder();
  const id = await queueMessage(store, ['b@example.org'], 'sts-badcert');
  const s = await runner(store, { mtaSts: async () => sts('enforce', ['*.example.org']), tlsRpt: rpt }).runOnce();
  assert.equal(s.deferred, 1);
  assert.equal(fx.receivedByTag('sts-badcert'), null);
  const row = store.listQueue().find((e) => e.id === id);
  assert.equal(row?.lastTls?.levelAsked, 'verify');
  assert.equal(row?.lastTls?.host, 'mx1.example.org');
  assert.match(row?.lastError ?? '', /TLS_VERIFY_FAILED|verif/i);
  assert.equal(rpt.events[0]?.result, 'certificate-host-mismatch');
  assert.equal(rpt.events[0]?.receivingIp, '127.0.0.1');
  await store.close();
});

test('MTA-STS testing: delivered as before (may), the certificate failure counted for TLS-RPT', async () => {
  const store = await fx.senderStore();
  const rpt = recorder();
  const id = await queueMessage(store, ['c@example.org'], 'sts-testing');
  const s = await runner(store, { mtaSts: async () => sts('testing', ['mx1.example.org']), tlsRpt: rpt }).runOnce();
  assert.equal(s.delivered, 1);
  assert.ok(fx.receivedByTag('sts-testing'));
  const row = store.listQueue().find((e) => e.id === id);
  assert.equal(row?.lastTls?.levelAsked, 'may');
  assert.equal(row?.lastTls?.verified, false);
  assert.deepEqual(rpt.events.map((e) => [e.policyType, e.result]), [['sts', 'certificate-host-mismatch']]);
  await store.close();
});

test('the TLS table entry wins over MTA-STS enforce', async () => {
  const store = await fx.senderStore();
  await queueMessage(store, ['d@example.org'], 'table-wins');
  const s = await runner(store, { mtaSts: async () => sts('enforce', ['mx.other.example']) }, { tlsPolicy: { 'example.org': 'encrypt' } }).runOnce();
  assert.equal(s.delivered, 1);
  assert.ok(fx.receivedByTag('table-wins'));
  await store.close();
});

test('REQUIRETLS that cannot be met past the queue lifetime bounces with 5.7.30 (RFC 8689 §5)', async () => {
  const store = await fx.senderStore();
  await queueMessage(store, ['e@example.org'], 'requiretls-bounce', { requireTls: true, receivedAt: new Date(Date.now() - 6 * 86_400_000) });
  const s = await runner(store, {}).runOnce();
  assert.equal(s.failed, 1);
  assert.equal(s.bounces, 1);
  const bounce = store.listMessages({ mailbox: 'a@sender.test' })[0];
  const text = store.getMessage(bounce?.id ?? '')?.data.toString() ?? '';
  assert.match(text, /^Status: 5\.7\.30\r$/m);
  await store.close();
});
