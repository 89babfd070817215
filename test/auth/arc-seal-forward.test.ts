/**
 * ARC sealing end to end (RFC 8617): a message signed by python3-dkim arrives on the mx listener
 * of a postseal server for an alias that points to another host; the server verifies it, seals
 * it (arc.sealDomains, d= the alias's domain), and its queue runner relays it to a receiving
 * postseal server. What arrives there passes python3-dkim's arc_verify with the key published
 * by the test DNS server. A forwarding domain not in arc.sealDomains forwards unsealed; a body
 * spooled to disk is sealed too.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKey } from '../../src/auth/dkim-keys.js';
import { defaultConfig } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';
import { startServe } from '../../src/serve.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { WireClient } from '../helpers/wire.js';
import { message, pythonSign, records } from './helpers.js';
import { pythonArcVerify } from './arc-helpers.js';
import { until } from '../helpers/poll.js';

/** Sends one message (dot-stuffed) to `rcpt` on the mx listener; the final reply line. */
async function send(port: number, rcpt: string, data: Buffer): Promise<string> {
  const c = await WireClient.connect(port);
  try {
    await c.readReply();
    await c.cmd('EHLO mail.example.org');
    c.write(`MAIL FROM:<alice@example.org>\r\nRCPT TO:<${rcpt}>\r\nDATA\r\n`);
    for (const want of ['250', '250', '354']) assert.equal((await c.readReply())[0]?.slice(0, 3), want);
    c.write(Buffer.concat([Buffer.from(data.toString('latin1').replace(/^\./gm, '..'), 'latin1'), Buffer.from('.\r\n')]));
    return (await c.readReply(15_000)).at(-1) ?? '';
  } finally {
    c.close();
  }
}

describe('forwarded mail is ARC-sealed and passes arc_verify at the next hop', () => {
  let dns: DnsServer;
  let receiver: TestServer;
  let forwarder: TestServer;

  before(async () => {
    dns = await startDnsServer(records());
    receiver = await startTestServer({
      configure: (cfg) => {
        cfg.domains = ['far.example'];
        cfg.auth.verify = false; // the test checks with dkimpy, not with the receiver
      },
    });
    const caFile = join(receiver.dataDir, 'ca.pem');
    await writeFile(caFile, receiver.caPem);
    forwarder = await startTestServer({
      checkRecipients: true,
      configure: (cfg) => {
        cfg.domains = ['fwd.test', 'plain.test'];
        cfg.relay.dns = [`127.0.0.1:${dns.port}`];
        cfg.relay.routes = { 'far.example': `127.0.0.1:${receiver.port('mx')}@localhost` };
        cfg.relay.tlsPolicy = { 'far.example': 'verify' };
        cfg.relay.ca = caFile;
        cfg.arc.sealDomains = ['fwd.test'];
        cfg.limits.spoolThreshold = 64 * 1024;
      },
    });
    await forwarder.running.store.addAlias('list@fwd.test', ['bob@far.example']);
    await forwarder.running.store.addAlias('list@plain.test', ['carol@far.example']);
    // Both algorithms: the seal uses RSA (validators' Ed25519 support is thin).
    generateKey(forwarder.dataDir, 'fwd.test', { algorithm: 'ed25519', selector: 'ed1' });
    const rsa = generateKey(forwarder.dataDir, 'fwd.test', { algorithm: 'rsa', selector: 'rsa1' });
    generateKey(forwarder.dataDir, 'plain.test', { algorithm: 'rsa', selector: 'rsa1' });
    dns.setRecords([...records(), { name: 'rsa1._domainkey.fwd.test', type: 'TXT', data: rsa.record }]);
  });
  after(async () => {
    await forwarder?.close();
    await receiver?.close();
    await dns?.close();
  });

  const arrived = (mailbox: string, marker: string): Promise<Buffer> =>
    until(`the message at ${mailbox}`, () => {
      for (const m of receiver.running.store.listMessages({ mailbox })) {
        const data = receiver.running.store.getMessage(m.id)?.data;
        if (data?.includes(marker)) return data;
      }
      return null;
    });

  test('an alias of a seal domain: sealed i=1 cv=none d=fwd.test (RSA) after our Received, relayed, arc_verify passes', async () => {
    const reply = await send(forwarder.port('mx'), 'list@fwd.test', pythonSign(message({ body: 'forward-one\r\n' })));
    assert.match(reply, /^250 /);
    const data = await arrived('bob@far.example', 'forward-one');
    const text = data.toString('latin1');
    assert.match(text, /^ARC-Seal: i=1; a=rsa-sha256; t=\d+; cv=none;\s+d=fwd\.test; s=rsa1;/m);
    // Our Received, then our ARC Set, then our Authentication-Results (its copy is the AAR).
    assert.match(text, /^Received: from mail\.example\.org [^]*?by mail\.postseal\.test[^]*?\r\nARC-Seal: i=1;[^]*?\r\nARC-Message-Signature: i=1;[^]*?\r\nARC-Authentication-Results: i=1; mail\.postseal\.test; dkim=pass[^]*?\r\nAuthentication-Results: mail\.postseal\.test;/m);
    const r = await pythonArcVerify(data, dns.port);
    assert.equal(r.cv, 'pass', r.reason);
    assert.deepEqual(r.instances, [1]);
  });

  test('an alias of a local domain not in arc.sealDomains: forwarded without a seal', async () => {
    assert.match(await send(forwarder.port('mx'), 'list@plain.test', pythonSign(message({ body: 'forward-two\r\n' }))), /^250 /);
    const data = await arrived('carol@far.example', 'forward-two');
    assert.doesNotMatch(data.toString('latin1'), /^ARC-/im);
    assert.equal((await pythonArcVerify(data, dns.port)).cv, 'none');
  });

  test('a body spooled to disk (past limits.spoolThreshold) is sealed too, and passes', async () => {
    const big = `forward-three\r\n${'x'.repeat(76)}\r\n`.repeat(2000); // ~180 KB > 64 KiB threshold
    assert.match(await send(forwarder.port('mx'), 'list@fwd.test', pythonSign(message({ body: big }))), /^250 /);
    const data = await arrived('bob@far.example', 'forward-three');
    assert.match(data.toString('latin1'), /^ARC-Seal: i=1; a=rsa-sha256;/m);
    const r = await pythonArcVerify(data, dns.port);
    assert.equal(r.cv, 'pass', r.reason);
  });
});

test('arc.sealDomains: a domain that is not local, or auth.verify off, is a config error before anything starts', async () => {
  const cfg = defaultConfig();
  cfg.hostname = 'mail.postseal.test';
  cfg.domains = ['fwd.test'];
  cfg.dataDir = join(tmpdir(), `postseal-arc-config-${process.pid}`); // never created: refused first
  cfg.arc.sealDomains = ['fwd.test', 'elsewhere.example'];
  await assert.rejects(startServe(cfg), (e: unknown) => e instanceof ConfigError && /arc\.sealDomains: elsewhere\.example is not a local domain/.test(e.message));
  cfg.arc.sealDomains = ['FWD.test'];
  cfg.auth.verify = false;
  await assert.rejects(startServe(cfg), (e: unknown) => e instanceof ConfigError && /arc\.sealDomains needs auth\.verify/.test(e.message));
  assert.equal(existsSync(cfg.dataDir), false);
});
