/**
 * DSN requests (RFC 3461) honoured by the queue runner's reports (RFC 3464): NOTIFY=NEVER sends
 * none, SUCCESS a 'relayed' report, DELAY one warning after the first deferral, ENVID and ORCPT
 * echoed, RET=HDRS headers only and RET=FULL the whole original. Real receiver (postseal on
 * 127.0.0.1:0) that refuses a domain it does not serve; a closed port for deferrals; two
 * smtp-server receivers, one offering DSN (the parameters are passed on: checked in what it saw)
 * and one not (then the report is ours, 'relayed', RFC 3461 §4.1).
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { SMTPServer, type SMTPServerEnvelope } from 'smtp-server';
import { newMessageId, type SqliteStore } from '../../src/store/index.js';
import type { RecipientDsn } from '../../src/protocol/dsn.js';
import { RelayFixture, taggedBody } from './fixture.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';

let receiver: TestServer;
let dns: DnsServer;
let closedPort = 0;
const seen: SMTPServerEnvelope[] = [];
const smtpServers: Array<{ server: SMTPServer; port: number }> = [];

async function startSmtpServer(dsn: boolean): Promise<number> {
  const server = new SMTPServer({
    hideDSN: !dsn,
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    onData(stream, session, cb) {
      stream.on('data', () => undefined);
      stream.on('end', () => {
        seen.push(structuredClone(session.envelope));
        cb();
      });
    },
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.server.address() as net.AddressInfo).port;
  smtpServers.push({ server, port });
  return port;
}
let dsnPort = 0;
let plainPort = 0;

before(async () => {
  receiver = await startTestServer({ configure: (cfg) => { cfg.domains = ['example.net']; } });
  dns = await startDnsServer([]);
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
  closedPort = (closed.address() as net.AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  dsnPort = await startSmtpServer(true);
  plainPort = await startSmtpServer(false);
});

after(async () => {
  await receiver.close();
  await dns.close();
  for (const s of smtpServers) await new Promise<void>((r) => s.server.close(() => r()));
  await fx.cleanup();
});

const fx = new RelayFixture(() => receiver, () => dns);

async function queueDsn(store: SqliteStore, to: string, tag: string, dsn: { envId?: string; ret?: 'FULL' | 'HDRS'; rcpt?: RecipientDsn }): Promise<string> {
  const { id } = await store.accept({
    id: newMessageId(),
    mailFrom: 'a@sender.test',
    localRecipients: [],
    remoteRecipients: [to],
    data: taggedBody(tag),
    receivedAt: new Date(),
    listener: 'submission',
    clientAddress: '127.0.0.1',
    heloName: 'client',
    authUser: 'a@sender.test',
    tls: null,
    requireTls: false,
    body: null,
    smtpUtf8: false,
    envId: dsn.envId ?? null,
    ret: dsn.ret ?? null,
    ...(dsn.rcpt ? { recipientDsn: { [to]: dsn.rcpt } } : {}),
  });
  return id;
}

function reports(store: SqliteStore): string[] {
  return store.listMessages({ mailbox: 'a@sender.test' }).map((m) => store.getMessage(m.id)?.data.toString() ?? '');
}

const routes = (): Record<string, { host: string; port: number }> => ({
  'not-local.example': { host: '127.0.0.1', port: receiver.port('mx') },
  'example.net': { host: '127.0.0.1', port: receiver.port('mx') },
  'gone.example': { host: '127.0.0.1', port: closedPort },
  'dsn.example': { host: '127.0.0.1', port: dsnPort },
  'nodsn.example': { host: '127.0.0.1', port: plainPort },
});

test('the store keeps NOTIFY/ORCPT per queued recipient and ENVID/RET per message', async () => {
  const store = await fx.senderStore();
  const id = await queueDsn(store, 'x@not-local.example', 'stored', { envId: 'env-1', ret: 'HDRS', rcpt: { notify: ['SUCCESS', 'DELAY'], orcpt: 'rfc822;X@Orig.example' } });
  const row = store.listQueue().find((e) => e.id === id);
  assert.deepEqual(row?.dsn, { envId: 'env-1', ret: 'HDRS', notify: ['SUCCESS', 'DELAY'], orcpt: 'rfc822;X@Orig.example' });
  await store.close();
});

test('NOTIFY=NEVER: a refused recipient fails and no bounce is sent', async () => {
  const store = await fx.senderStore();
  await queueDsn(store, 'never@not-local.example', 'never', { rcpt: { notify: ['NEVER'], orcpt: null } });
  const s = await fx.runner(store, { routes: routes() }).runOnce();
  assert.equal(s.failed, 1);
  assert.equal(s.bounces, 0);
  assert.deepEqual(reports(store), []);
  await store.close();
});

test('NOTIFY=SUCCESS alone: a refused recipient gets no failure DSN', async () => {
  const store = await fx.senderStore();
  await queueDsn(store, 'succ@not-local.example', 'success-only', { rcpt: { notify: ['SUCCESS'], orcpt: null } });
  const s = await fx.runner(store, { routes: routes() }).runOnce();
  assert.equal(s.failed, 1);
  assert.equal(s.bounces, 0);
  await store.close();
});

test('failure DSN with ENVID, ORCPT and RET=HDRS: Original-Envelope-Id, Original-Recipient, headers only', async () => {
  const store = await fx.senderStore();
  await queueDsn(store, 'f@not-local.example', 'hdrs', { envId: 'QQ314159', ret: 'HDRS', rcpt: { notify: ['FAILURE'], orcpt: 'rfc822;orig+tag@sender.test' } });
  const s = await fx.runner(store, { routes: routes() }).runOnce();
  assert.equal(s.bounces, 1);
  const [text = ''] = reports(store);
  assert.match(text, /^Original-Envelope-Id: QQ314159\r$/m);
  assert.match(text, /^Original-Recipient: rfc822; orig\+tag@sender\.test\r\nFinal-Recipient: rfc822; f@not-local\.example\r$/m);
  assert.match(text, /^Action: failed\r$/m);
  assert.match(text, /^Content-Type: text\/rfc822-headers\r$/m);
  assert.match(text, /Subject: hdrs/);
  assert.doesNotMatch(text, /body hdrs/);
  await store.close();
});

test('default (no NOTIFY) still bounces; RET=FULL returns the whole original as message/rfc822', async () => {
  const store = await fx.senderStore();
  await queueDsn(store, 'full@not-local.example', 'full', { ret: 'FULL' });
  const s = await fx.runner(store, { routes: routes() }).runOnce();
  assert.equal(s.bounces, 1);
  const [text = ''] = reports(store);
  assert.match(text, /^Content-Type: message\/rfc822\r$/m);
  assert.match(text, /body full\r\n\.leading dot line\r\n/);
  assert.doesNotMatch(text, /^Original-Envelope-Id:/m);
  await store.close();
});

test('NOTIFY=SUCCESS: delivered to a server that does not offer DSN → nothing passed on, our report says Action: relayed', async () => {
  const store = await fx.senderStore();
  await queueDsn(store, 'bob@nodsn.example', 'success', { envId: 'E-success', rcpt: { notify: ['SUCCESS', 'FAILURE'], orcpt: 'rfc822;bob@nodsn.example' } });
  const before = seen.length;
  const s = await fx.runner(store, { routes: routes() }).runOnce();
  assert.equal(s.delivered, 1);
  assert.equal(s.bounces, 1);
  const got = seen.slice(before);
  assert.equal(got.length, 1);
  assert.equal(got[0]?.mailFrom && got[0].mailFrom.args && 'ENVID' in got[0].mailFrom.args, false, 'no ENVID to a non-DSN server');
  assert.equal(got[0]?.rcptTo[0]?.args && 'NOTIFY' in got[0].rcptTo[0].args, false, 'no NOTIFY to a non-DSN server');
  const [text = ''] = reports(store);
  assert.match(text, /^Subject: Successful Mail Delivery Report\r$/m);
  assert.match(text, /^Action: relayed\r$/m);
  assert.match(text, /^Status: 2\.\d\.\d\r$/m);
  assert.match(text, /^Original-Envelope-Id: E-success\r$/m);
  assert.doesNotMatch(text, /body success/);
  await store.close();
});

test('no NOTIFY: a delivered recipient gets no report', async () => {
  const store = await fx.senderStore();
  await queueDsn(store, 'bob@example.net', 'plain-delivered', {});
  const s = await fx.runner(store, { routes: routes() }).runOnce();
  assert.equal(s.delivered, 1);
  assert.equal(s.bounces, 0);
  await store.close();
});

test('NOTIFY=DELAY: one warning after the first deferral, none after the second; no warning without DELAY', async () => {
  const store = await fx.senderStore();
  const id = await queueDsn(store, 'slow@gone.example', 'delay', { envId: 'E-delay', rcpt: { notify: ['DELAY', 'FAILURE'], orcpt: null } });
  await queueDsn(store, 'quiet@gone.example', 'no-delay', { rcpt: { notify: ['FAILURE'], orcpt: null } });
  await queueDsn(store, 'default@gone.example', 'default-delay', {});
  const r = fx.runner(store, { routes: routes() });
  const s1 = await r.runOnce();
  assert.equal(s1.deferred, 3);
  assert.equal(s1.bounces, 1);
  const first = reports(store);
  assert.equal(first.length, 1);
  assert.match(first[0] ?? '', /^Action: delayed\r$/m);
  assert.match(first[0] ?? '', /^Final-Recipient: rfc822; slow@gone\.example\r$/m);
  assert.match(first[0] ?? '', /^Original-Envelope-Id: E-delay\r$/m);
  assert.match(first[0] ?? '', /^Subject: Delayed Mail/m);
  assert.equal(await store.retryQueued(id), 1);
  const s2 = await r.runOnce();
  assert.equal(s2.deferred, 1);
  assert.equal(s2.bounces, 0, 'the delay warning is sent once per recipient');
  assert.equal(reports(store).length, 1);
  await store.close();
});

test('to a server that offers DSN, RET/ENVID go on MAIL and NOTIFY/ORCPT on each RCPT (xtext); no report of ours', async () => {
  const store = await fx.senderStore();
  await store.accept({
    id: newMessageId(), mailFrom: 'a@sender.test', localRecipients: [], remoteRecipients: ['x@dsn.example', 'y@dsn.example', 'z@dsn.example'],
    data: taggedBody('pass-on'), receivedAt: new Date(), listener: 'submission', clientAddress: '127.0.0.1', heloName: 'client',
    authUser: 'a@sender.test', tls: null, requireTls: false, body: null, smtpUtf8: false, envId: 'id+1=2', ret: 'HDRS',
    recipientDsn: { 'x@dsn.example': { notify: ['SUCCESS', 'DELAY'], orcpt: 'rfc822;X+tag@orig.example' }, 'y@dsn.example': { notify: ['NEVER'], orcpt: null } },
  });
  const before = seen.length;
  const s = await fx.runner(store, { routes: routes() }).runOnce();
  assert.equal(s.delivered, 3);
  assert.equal(s.bounces, 0, 'the next hop reports success, not us');
  const got = seen.slice(before);
  assert.equal(got.length, 1);
  const env = got[0];
  assert.ok(env && env.mailFrom);
  // smtp-server decodes xtext: getting the originals back shows they were encoded on the wire.
  assert.deepEqual(env.dsn, { ret: 'HDRS', envid: 'id+1=2' });
  const rcpt = (a: string): Record<string, string | true> | false | undefined => env.rcptTo.find((r) => r.address === a)?.args;
  assert.deepEqual(rcpt('x@dsn.example'), { NOTIFY: 'SUCCESS,DELAY', ORCPT: 'rfc822;X+tag@orig.example' });
  assert.deepEqual(rcpt('y@dsn.example'), { NOTIFY: 'NEVER' });
  assert.equal(rcpt('z@dsn.example'), false, 'a recipient without DSN parameters gets none');
  await store.close();
});
