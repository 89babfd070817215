/**
 * Received-mail verification end to end: a real server (startTestServer) whose relay.dns is the
 * test DNS server, messages signed by python3-dkim sent over SMTP to the mx listener, read back
 * from the store: our Authentication-Results, the stored verdicts, forged headers removed, and
 * the policy options (auth.spfHardFailReject, auth.dmarcEnforce) answering 550 5.7.1.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ServeConfig } from '../../src/config.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { WireClient } from '../helpers/wire.js';
import { message, pythonSign, records } from './helpers.js';

/** Sends one message (dot-stuffed) and returns the final reply line. */
async function send(port: number, from: string, data: Buffer): Promise<string> {
  const c = await WireClient.connect(port);
  try {
    await c.readReply();
    await c.cmd('EHLO mail.example.org');
    c.write(`MAIL FROM:<${from}>\r\nRCPT TO:<bob@postseal.test>\r\nDATA\r\n`);
    for (const want of ['250', '250', '354']) assert.equal((await c.readReply())[0]?.slice(0, 3), want);
    c.write(Buffer.concat([Buffer.from(data.toString('latin1').replace(/^\./gm, '..'), 'latin1'), Buffer.from('.\r\n')]));
    return (await c.readReply(15_000)).at(-1) ?? '';
  } finally {
    c.close();
  }
}

function queuedId(line: string): string {
  const id = /^250 .*queued as (\S+)/.exec(line)?.[1];
  assert.ok(id, line);
  return id;
}

describe('verification of mail received on the mx listener', () => {
  let dns: DnsServer;
  const servers: TestServer[] = [];
  before(async () => {
    dns = await startDnsServer(records());
  });
  after(async () => {
    for (const s of servers) await s.close();
    await dns.close();
  });
  const start = async (edit: (cfg: ServeConfig) => void = () => undefined): Promise<TestServer> => {
    const s = await startTestServer({
      configure: (cfg) => {
        cfg.relay.dns = [`127.0.0.1:${dns.port}`];
        edit(cfg);
      },
    });
    servers.push(s);
    return s;
  };

  test('signed by python3-dkim from 127.0.0.1: stored with our Authentication-Results (dkim, spf, dmarc pass); a forged one of ours removed', async () => {
    const s = await start();
    const forged = Buffer.from('Authentication-Results: mail.postseal.test; dkim=pass header.d=bank.example\r\n');
    const id = queuedId(await send(s.port('mx'), 'alice@example.org', Buffer.concat([forged, pythonSign(message())])));
    const stored = s.running.store.getMessage(id);
    assert.ok(stored);
    const text = stored.data.toString('utf8');
    const ours = text.match(/^Authentication-Results: mail\.postseal\.test;/gim) ?? [];
    assert.equal(ours.length, 1, text);
    assert.doesNotMatch(text, /bank\.example/);
    assert.match(text, /^Received: [^]*?\r\nAuthentication-Results: mail\.postseal\.test;\r\n dkim=pass[^]*spf=pass[^]*dmarc=pass/);
    const v = stored.summary.authResults;
    assert.equal(v?.spf.result, 'pass');
    assert.deepEqual(v?.dkim.map((d) => d.result), ['pass']);
    assert.equal(v?.dmarc.result, 'pass');
    assert.equal(stored.summary.quarantine, false);
  });

  test('a tampered body: dkim=fail stored; without dmarcEnforce the message is kept', async () => {
    const s = await start();
    const tampered = Buffer.from(pythonSign(message()).toString().replace('Hello Bob.', 'Hello Eve.'));
    const id = queuedId(await send(s.port('mx'), 'alice@example.org', tampered));
    const v = s.running.store.getMessage(id)?.summary.authResults;
    assert.deepEqual(v?.dkim.map((d) => d.result), ['fail']);
  });

  test('SPF -all from an unlisted IP: spf=fail; with auth.spfHardFailReject → 550 5.7.1, nothing stored', async () => {
    dns.setRecords(records({ spf: 'v=spf1 ip4:192.0.2.1 -all' }));
    try {
      const kept = await start();
      const id = queuedId(await send(kept.port('mx'), 'alice@example.org', message()));
      assert.equal(kept.running.store.getMessage(id)?.summary.authResults?.spf.result, 'fail');
      const strict = await start((cfg) => {
        cfg.auth.spfHardFailReject = true;
      });
      assert.match(await send(strict.port('mx'), 'alice@example.org', message()), /^550 5\.7\.1 SPF/);
      assert.equal(strict.running.store.countMessages(), 0);
    } finally {
      dns.setRecords(records());
    }
  });

  test('DMARC p=reject failure with auth.dmarcEnforce → 550 5.7.1; p=quarantine → stored with the flag', async () => {
    const s = await start((cfg) => {
      cfg.auth.dmarcEnforce = true;
    });
    // Unsigned, and SPF passes for another domain than the From domain: not aligned.
    assert.match(await send(s.port('mx'), 'someone@other.example', message()), /^550 5\.7\.1 DMARC/);
    assert.equal(s.running.store.countMessages(), 0);
    dns.setRecords(records({ dmarc: 'v=DMARC1; p=quarantine' }));
    try {
      const id = queuedId(await send(s.port('mx'), 'someone@other.example', message()));
      const m = s.running.store.getMessage(id)?.summary;
      assert.equal(m?.authResults?.dmarc.result, 'fail');
      assert.equal(m?.quarantine, true);
    } finally {
      dns.setRecords(records());
    }
  });

  test('duplicate From: dmarc=fail; with dmarcEnforce refused', async () => {
    const s = await start((cfg) => {
      cfg.auth.dmarcEnforce = true;
    });
    const twoFroms = pythonSign(message({ from: ['alice@example.org', 'mallory@example.org'] }));
    assert.match(await send(s.port('mx'), 'alice@example.org', twoFroms), /^550 5\.7\.1/);
  });

  test('DNS that never answers: stored with temperror verdicts, no hang', async () => {
    const silent = await startDnsServer(records(), { faults: { 'example.org TXT': 'drop', 'sel._domainkey.example.org TXT': 'drop', '_dmarc.example.org TXT': 'drop' } });
    try {
      const s = await start((cfg) => {
        cfg.relay.dns = [`127.0.0.1:${silent.port}`];
      });
      const id = queuedId(await send(s.port('mx'), 'alice@example.org', pythonSign(message())));
      const v = s.running.store.getMessage(id)?.summary.authResults;
      assert.equal(v?.spf.result, 'temperror');
      assert.equal(v?.dkim[0]?.result, 'temperror');
    } finally {
      await silent.close();
    }
  });

  test('100 signatures on one message: a bounded verdict list, stored', async () => {
    const s = await start();
    const id = queuedId(await send(s.port('mx'), 'alice@example.org', pythonSign(message(), 100)));
    const v = s.running.store.getMessage(id)?.summary.authResults;
    assert.ok(v && v.dkim.length <= 10);
    assert.equal(v?.dkimOmitted, 90);
  });

  test('auth.verify=false: no Authentication-Results, verdicts null', async () => {
    const s = await start((cfg) => {
      cfg.auth.verify = false;
    });
    const id = queuedId(await send(s.port('mx'), 'alice@example.org', message()));
    const m = s.running.store.getMessage(id);
    assert.equal(m?.summary.authResults, null);
    assert.doesNotMatch(m?.data.toString() ?? '', /Authentication-Results/);
  });
});
