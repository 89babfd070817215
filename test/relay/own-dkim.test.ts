/**
 * Our own mail DKIM-signed (issue 11): a bounce produced by a real failed delivery (the receiving
 * postseal server answers 550 to an unknown recipient) arrives at the original sender's server
 * DKIM-signed, and dkimpy verifies it against the records `postseal dkim keygen` made. The
 * bounce's From is MAILER-DAEMON@mail.postseal.test; with no key for mail.postseal.test it is
 * signed with the keys of the configured parent domain postseal.test (d=postseal.test). Also the
 * signer's choice of domain by itself: own keys first, then the nearest configured parent, else none.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKey } from '../../src/auth/dkim-keys.js';
import { createOwnMailSigner, ownSigningKeys } from '../../src/auth/dkim-own.js';
import { generatedMessage } from '../../src/store/generated.js';
import type { Logger } from '../../src/log.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { dkimpyVerify, dkimSignatures, hasDkimpy, publishedTxt } from './dkimpy.js';
import { until } from '../helpers/poll.js';

describe('a bounce from a real failed delivery is DKIM-signed', () => {
  let receiver: TestServer;
  let sender: TestServer;

  before(async () => {
    // example.net: carol exists, nobody does (550 5.1.1 at RCPT).
    receiver = await startTestServer({
      checkRecipients: true,
      users: [{ address: 'carol@example.net', password: 'irrelevant password' }],
      configure: (cfg) => {
        cfg.domains = ['example.net'];
        cfg.auth.verify = false; // no DNS of the outside world in this test
      },
    });
    const caFile = join(receiver.dataDir, 'ca.pem');
    await writeFile(caFile, receiver.caPem);
    sender = await startTestServer({
      configure: (cfg) => {
        cfg.relay.routes = { 'example.net': `127.0.0.1:${receiver.port('mx')}` };
        cfg.relay.tlsPolicy = { 'example.net': 'verify' };
        cfg.relay.ca = caFile;
      },
    });
    // Keys for the configured domain postseal.test only (the hostname is mail.postseal.test).
    generateKey(sender.dataDir, 'postseal.test', { algorithm: 'ed25519', selector: 'ed1' });
    generateKey(sender.dataDir, 'postseal.test', { algorithm: 'rsa', selector: 'rsa1' });
  });
  after(async () => {
    await sender?.close();
    await receiver?.close();
  });

  it('arrives signed with d=postseal.test (Ed25519 and RSA) and dkimpy verifies both', { skip: !hasDkimpy && 'python3-dkim not installed (.ci/run installs it)' }, async () => {
    const original = 'From: <carol@example.net>\r\nTo: <nobody@example.net>\r\nSubject: to nobody\r\nMessage-ID: <bounce-me@example.net>\r\n\r\nwill bounce\r\n';
    // Mail from carol queued on the sender (as if relayed for her), to a recipient that does not exist.
    await sender.running.store.accept(generatedMessage({ origin: 'test', from: 'carol@example.net', to: 'nobody@example.net', local: false, data: Buffer.from(original), hostname: 'client.test' }));
    sender.running.relay?.kick();
    const got = await until('the bounce in carol\'s mailbox', () => receiver.running.store.listMessages({ mailbox: 'carol@example.net' }).find((m) => m.mailFrom === ''));
    const data = receiver.running.store.getMessage(got.id)?.data ?? Buffer.alloc(0);
    const text = data.toString('latin1');
    assert.match(text, /^From: Mail Delivery System <MAILER-DAEMON@mail\.postseal\.test>\r$/m);
    assert.match(text, /^Status: 5\.1\.1\r$/m);
    const sigs = dkimSignatures(data);
    assert.equal(sigs.length, 2, text.slice(0, 2000));
    assert.match(sigs[0] ?? '', /a=ed25519-sha256; c=relaxed\/relaxed; d=postseal\.test; s=ed1;/);
    assert.match(sigs[1] ?? '', /a=rsa-sha256; c=relaxed\/relaxed; d=postseal\.test; s=rsa1;/);
    // The receiver put its Received header on top; the signatures still verify.
    assert.match(text, /^Received: /);
    assert.equal(await dkimpyVerify(data, publishedTxt(sender.dataDir, 'postseal.test')), 'pass pass');
    // Signed once, when generated: the bounce as stored in the sender's queue carries the same signatures.
    const queued = sender.running.store.listQueue().find((e) => e.mailFrom === '' && e.recipient === 'carol@example.net');
    assert.ok(queued, 'the bounce went through the sender\'s queue');
    assert.deepEqual(dkimSignatures(sender.running.store.getMessage(queued.id)?.data ?? Buffer.alloc(0)), sigs);
    // A changed delivery status no longer verifies: the body is covered.
    const tampered = Buffer.from(text.replace('Status: 5.1.1', 'Status: 2.0.0'), 'latin1');
    assert.notDeepEqual(tampered, data);
    assert.equal(await dkimpyVerify(tampered, publishedTxt(sender.dataDir, 'postseal.test')), 'fail fail');
  });
});

describe('the signing domain of generated mail', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'postseal-own-dkim-'));
    generateKey(dir, 'example.org', { algorithm: 'ed25519', selector: 'org' });
    generateKey(dir, 'mail.example.org', { algorithm: 'ed25519', selector: 'host' });
    generateKey(dir, 'unrelated.test', { algorithm: 'ed25519', selector: 'x' });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('own keys first, then the nearest configured parent, else none (a non-configured parent is not used)', () => {
    assert.equal(ownSigningKeys(dir, 'mail.example.org', ['example.org'])?.domain, 'mail.example.org');
    assert.equal(ownSigningKeys(dir, 'mx.b.example.org', ['example.org', 'b.example.org'])?.domain, 'example.org', 'b.example.org has no key');
    assert.equal(ownSigningKeys(dir, 'mx.example.org', ['example.org'])?.domain, 'example.org');
    assert.equal(ownSigningKeys(dir, 'mx.example.org', []), null);
    assert.equal(ownSigningKeys(dir, 'mx.notexample.org', ['example.org']), null, 'a parent by label, not by string suffix');
    assert.equal(ownSigningKeys(dir, 'mx.example.org', ['unrelated.test']), null);
  });

  it('leaves a message of an unknown domain unsigned, byte for byte, and says so once', async () => {
    const warned: string[] = [];
    const logger: Logger = { info() {}, debug() {}, error() {}, warn: (_o, msg) => void warned.push(String(msg)) };
    const sign = createOwnMailSigner({ dataDir: dir, domains: ['example.org'], expirySeconds: null, logger });
    const msg = Buffer.from('From: <MAILER-DAEMON@mx.nowhere.test>\r\nSubject: x\r\n\r\nbody\r\n');
    assert.deepEqual(Buffer.from(await sign(msg)), msg);
    assert.deepEqual(Buffer.from(await sign(msg)), msg);
    assert.equal(warned.length, 1, warned.join('\n'));
    assert.match(warned[0] ?? '', /no DKIM key for mx\.nowhere\.test/);
    const signed = Buffer.from(await sign(Buffer.from('From: <postmaster@mx.example.org>\r\nSubject: x\r\n\r\nbody\r\n')));
    assert.match(dkimSignatures(signed)[0] ?? '', /d=example\.org; s=org;/);
  });
});
