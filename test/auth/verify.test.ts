/**
 * auth/verify.ts against a real DNS server (test/helpers/dns-server.ts) and messages signed by
 * python3-dkim: SPF, DKIM, DMARC verdicts, removal of our forged Authentication-Results, bounded
 * signature count, duplicate From, DNS timeout → temperror.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { verifyMessage } from '../../src/auth/verify.js';
import { DnsResolver } from '../../src/policy/dns.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { message, pythonSign, records } from './helpers.js';

describe('verifyMessage', () => {
  let dns: DnsServer;
  let resolver: DnsResolver;
  before(async () => {
    dns = await startDnsServer(records());
    resolver = new DnsResolver({ host: '127.0.0.1', port: dns.port }, 500);
  });
  after(() => dns.close());
  const opts = () => ({ hostname: 'mx.postseal.test', resolver: resolver.mailauthResolver() });
  const input = (data: Buffer, ip = '127.0.0.1') => ({ data, ip, helo: 'mail.example.org', mailFrom: 'alice@example.org' });

  test('signed by python3-dkim from an SPF-allowed IP: dkim, spf, dmarc pass; our header first', async () => {
    const r = await verifyMessage(input(pythonSign(message())), opts());
    assert.equal(r.verdicts.spf.result, 'pass');
    assert.equal(r.verdicts.dkim.length, 1);
    assert.equal(r.verdicts.dkim[0]?.result, 'pass');
    assert.equal(r.verdicts.dkim[0]?.domain, 'example.org');
    assert.equal(r.verdicts.dmarc.result, 'pass');
    assert.match(r.header, /^Authentication-Results: mx\.postseal\.test;\r\n dkim=pass/);
    assert.match(r.header, /spf=pass/);
    assert.match(r.header, /dmarc=pass/);
  });

  test('a forged Authentication-Results with our authserv-id is removed from the header block only; others kept', async () => {
    const forged = 'Authentication-Results: MX.postseal.test (comment);\r\n dkim=pass header.d=example.org\r\nAuthentication-Results: other.example; spf=pass\r\n';
    const body = 'Authentication-Results: mx.postseal.test; dkim=pass\r\n';
    const r = await verifyMessage(input(message({ extra: forged, body })), opts());
    const text = r.data.toString();
    assert.doesNotMatch(text.split('\r\n\r\n')[0] ?? '', /mx\.postseal\.test/i);
    assert.match(text, /Authentication-Results: other\.example; spf=pass/);
    assert.ok(text.endsWith(body), 'the body is untouched');
  });

  test('a tampered body: dkim=fail, dmarc fails (SPF from a non-listed IP)', async () => {
    const signed = pythonSign(message()).toString().replace('Hello Bob.', 'Hello Eve.');
    const r = await verifyMessage(input(Buffer.from(signed), '192.0.2.7'), opts());
    assert.equal(r.verdicts.dkim[0]?.result, 'fail');
    assert.equal(r.verdicts.spf.result, 'fail');
    assert.equal(r.verdicts.dmarc.result, 'fail');
    assert.equal(r.verdicts.dmarc.policy, 'reject');
  });

  test('duplicate From: dmarc fail (RFC 7489 §6.6.1) even with a valid signature', async () => {
    const r = await verifyMessage(input(pythonSign(message({ from: ['alice@example.org', 'mallory@example.org'] }))), opts());
    assert.equal(r.verdicts.dmarc.result, 'fail');
    assert.match(r.header, /dmarc=fail/);
  });

  test('100 signatures: at most 10 verified, the rest counted, no crash', async () => {
    const r = await verifyMessage(input(pythonSign(message(), 100)), opts());
    assert.ok(r.verdicts.dkim.length <= 10);
    assert.equal(r.verdicts.dkimOmitted, 90);
    assert.match(r.header, /dkim=policy/);
  });

  test('DNS that never answers: temperror within the deadline, no hang', async () => {
    const silent = await startDnsServer(records(), { faults: { 'example.org TXT': 'drop', 'sel._domainkey.example.org TXT': 'drop', '_dmarc.example.org TXT': 'drop' } });
    try {
      const slow = new DnsResolver({ host: '127.0.0.1', port: silent.port }, 200, { attempts: 1 });
      const r = await verifyMessage(input(pythonSign(message())), { hostname: 'mx.postseal.test', resolver: slow.mailauthResolver(), deadlineMs: 5000 });
      assert.equal(r.verdicts.spf.result, 'temperror');
      assert.equal(r.verdicts.dkim[0]?.result, 'temperror');
    } finally {
      await silent.close();
    }
  });

  test('the whole verification is bounded by its deadline', async () => {
    const never = () => new Promise<never>(() => undefined);
    const r = await verifyMessage(input(pythonSign(message())), { hostname: 'mx.postseal.test', resolver: never, deadlineMs: 100 });
    assert.equal(r.verdicts.spf.result, 'temperror');
    assert.equal(r.verdicts.dmarc.result, 'temperror');
    assert.match(r.header, /spf=temperror/);
  });
});
