/**
 * auth/arc-seal.ts (RFC 8617): what we seal is validated by an independent implementation
 * (python3-dkim's arc_verify) with the keys published by the test DNS server: a first seal
 * (cv=none), a second instance over a chain made by dkimpy's arc_sign (cv=pass), a broken chain
 * (cv=fail, and no seal over a chain that already ends in cv=fail), 50 instances (no seal), and
 * the key choice (RSA over Ed25519).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, verify as cryptoVerify } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { arcChainFacts, arcSeal, chooseArcKey, sealDecision, MAX_ARC_INSTANCES } from '../../src/auth/arc-seal.js';
import { generateKey, listKeys, type DkimKey } from '../../src/auth/dkim-keys.js';
import { parseHeader, relaxedHeader } from '../../src/auth/dkim-sign.js';
import { verifyMessage } from '../../src/auth/verify.js';
import { DnsResolver } from '../../src/policy/dns.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { message, pythonSign, records } from './helpers.js';
import { pythonArcSign, pythonArcVerify } from './arc-helpers.js';

const LIST = generateKeyPairSync('rsa', { modulusLength: 2048 });
const LIST_PEM = LIST.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
const LIST_RECORD = `v=DKIM1; k=rsa; p=${LIST.publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}`;
const listSign = (msg: Buffer, count = 1): Buffer => pythonArcSign(msg, { domain: 'list.example', selector: 'arc', keyPem: LIST_PEM, srvId: 'list.example', count });

/**
 * RFC 8617 §5.1.2: the AS of a cv=fail set signs AAR, AMS and AS (b= empty) of that set only,
 * relaxed (§5.1.1); verified with the public key of `key`.
 */
function sealCoversOnlyItsOwnSet(headers: string, key: DkimKey): boolean {
  const fields = parseHeader(headers);
  const get = (n: string): string => fields.find((f) => f.name === n)?.raw ?? '';
  const as = get('arc-seal');
  const b = /[;\s]b=([^;]*)/.exec(as)?.[1]?.replace(/\s+/g, '') ?? '';
  const asNoB = as.replace(/([;\s]b=)[^;]*/, '$1');
  const data = `${relaxedHeader(get('arc-authentication-results'))}\r\n${relaxedHeader(get('arc-message-signature'))}\r\n${relaxedHeader(asNoB)}`;
  return cryptoVerify('sha256', Buffer.from(data, 'latin1'), createPublicKey(key.privateKey), Buffer.from(b, 'base64'));
}

describe('ARC sealing (validated by python3-dkim arc_verify)', () => {
  let dns: DnsServer;
  let resolver: DnsResolver;
  let dataDir: string;
  let rsa: DkimKey;
  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'postseal-arc-'));
    generateKey(dataDir, 'fwd.test', { algorithm: 'ed25519', selector: 'ed1' });
    rsa = generateKey(dataDir, 'fwd.test', { algorithm: 'rsa', selector: 'rsa1' });
    dns = await startDnsServer([
      ...records(),
      { name: 'rsa1._domainkey.fwd.test', type: 'TXT', data: rsa.record },
      { name: 'arc._domainkey.list.example', type: 'TXT', data: LIST_RECORD },
    ]);
    resolver = new DnsResolver({ host: '127.0.0.1', port: dns.port }, 1000);
  });
  after(async () => {
    await dns.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  /** What postseal does on mx for a forwarded message: verify, our Received + AR, then seal. */
  async function receiveAndSeal(msg: Buffer, key: DkimKey = rsa) {
    const v = await verifyMessage({ data: msg, ip: '127.0.0.1', helo: 'mail.example.org', mailFrom: 'alice@example.org' }, { hostname: 'mx.postseal.test', resolver: resolver.mailauthResolver() });
    const received = 'Received: from mail.example.org ([127.0.0.1])\r\n\tby mx.postseal.test with ESMTP id ABC; Mon, 30 Nov 2026 10:00:01 +0000\r\n';
    const data = Buffer.concat([Buffer.from(received + v.header, 'utf8'), v.data]);
    const s = await arcSeal({ data, authResults: v.header, validation: v.verdicts.arc.result }, key);
    return { v, s, out: s.sealed ? Buffer.concat([Buffer.from(s.headers, 'latin1'), data]) : data };
  }

  test('first seal: i=1 cv=none, d= the forwarding domain, RSA key; arc_verify passes', async () => {
    const { v, s, out } = await receiveAndSeal(pythonSign(message()));
    assert.equal(v.verdicts.arc.result, 'none');
    assert.ok(s.sealed, s.sealed ? '' : s.reason);
    assert.equal(s.instance, 1);
    assert.equal(s.cv, 'none');
    assert.match(s.headers, /^ARC-Seal: i=1; a=rsa-sha256; t=\d+; cv=none;\s+d=fwd\.test; s=rsa1;/);
    assert.match(s.headers, /\r\nARC-Message-Signature: i=1; a=rsa-sha256; c=relaxed\/relaxed;/);
    // RFC 8617 §4.1.1: the AAR is our Authentication-Results with i= in front.
    assert.match(s.headers, /\r\nARC-Authentication-Results: i=1; mx\.postseal\.test; dkim=pass header\.d=example\.org/);
    const r = await pythonArcVerify(out, dns.port);
    assert.equal(r.cv, 'pass', r.reason);
    assert.deepEqual(r.instances, [1]);
  });

  test('a changed body after sealing: arc_verify fails (the AMS covers the body)', async () => {
    const { out } = await receiveAndSeal(pythonSign(message()));
    const tampered = Buffer.from(out.toString('latin1').replace('Hello Bob.', 'Hello Eve.'), 'latin1');
    assert.equal((await pythonArcVerify(tampered, dns.port)).cv, 'fail');
  });

  test('a chain of two: dkimpy arc_sign seals first (cv=none), we add i=2 cv=pass; arc_verify passes both', async () => {
    const listed = listSign(pythonSign(message()));
    assert.equal((await pythonArcVerify(listed, dns.port)).cv, 'pass', 'the fixture chain is valid');
    const { v, s, out } = await receiveAndSeal(listed);
    assert.equal(v.verdicts.arc.result, 'pass');
    assert.ok(s.sealed, s.sealed ? '' : s.reason);
    assert.equal(s.instance, 2);
    assert.equal(s.cv, 'pass');
    assert.match(s.headers, /^ARC-Seal: i=2; a=rsa-sha256; t=\d+; cv=pass;/);
    const r = await pythonArcVerify(out, dns.port);
    assert.equal(r.cv, 'pass', r.reason);
    assert.deepEqual(r.instances, [2, 1]);
  });

  test('a broken incoming chain: sealed with cv=fail (RFC 8617 §5.1.2); a chain ending in cv=fail is not sealed again (§5.1)', async () => {
    const listed = listSign(pythonSign(message())).toString('latin1');
    // The list's ARC-Seal signature no longer matches: change one character of its b= value.
    const broken = Buffer.from(listed.replace(/(ARC-Seal:[^]*?\sb=)(.)/, (_m, a: string, c: string) => a + (c === 'A' ? 'B' : 'A')), 'latin1');
    assert.equal((await pythonArcVerify(broken, dns.port)).cv, 'fail', 'the fixture chain is broken');
    const { v, s, out } = await receiveAndSeal(broken);
    assert.equal(v.verdicts.arc.result, 'fail');
    assert.ok(s.sealed, s.sealed ? '' : s.reason);
    assert.equal(s.instance, 2);
    assert.equal(s.cv, 'fail');
    assert.match(s.headers, /^ARC-Seal: i=2; a=rsa-sha256; t=\d+; cv=fail;/);
    // dkimpy: our AMS validates, and the chain is terminated by our cv=fail (it is not a pass).
    const r = await pythonArcVerify(out, dns.port);
    assert.notEqual(r.cv, 'pass');
    assert.match(r.reason, /ARC-Seal\[2\] reported failure/);
    assert.deepEqual(r.instances, [2, 1]);
    assert.equal(r.amsValid[0], true);
    // RFC 8617 §5.1.2: our AS covers only our own ARC Set (dkimpy checks every AS over the whole
    // chain, so it cannot tell): checked here with node:crypto and the published key.
    assert.ok(sealCoversOnlyItsOwnSet(s.headers, rsa), 'the cv=fail seal verifies over our set alone');
    // The next forwarder (us again) does not add to a chain that ends in cv=fail.
    const again = await receiveAndSeal(out);
    assert.equal(again.s.sealed, false);
    assert.match(again.s.sealed ? '' : again.s.reason, /cv=fail/);
  });

  test('malformed ARC fields (no AMS, junk tags, a stray ARC-Seal without i=): cv=fail seal over our set, no crash', async () => {
    const junk = 'ARC-Seal: i=1; a=rsa-sha256; cv=none; d=list.example; s=arc; b=!!notbase64!!\r\nARC-Authentication-Results: i=1; list.example; spf=pass\r\nARC-Seal: cv=pass; b=\r\n';
    const { v, s, out } = await receiveAndSeal(Buffer.concat([Buffer.from(junk), pythonSign(message())]));
    assert.equal(v.verdicts.arc.result, 'fail');
    assert.ok(s.sealed, s.sealed ? '' : s.reason);
    assert.equal(s.instance, 2);
    assert.equal(s.cv, 'fail');
    assert.ok(sealCoversOnlyItsOwnSet(s.headers, rsa));
    assert.notEqual((await pythonArcVerify(out, dns.port)).cv, 'pass');
  });

  test('50 instances already: no 51st (RFC 8617 §4.2.1), the message goes on unchanged', async () => {
    const fifty = listSign(pythonSign(message()), MAX_ARC_INSTANCES);
    assert.equal(arcChainFacts(fifty.toString('latin1').split('\r\n\r\n')[0] ?? '').highest, 50);
    const { s, out } = await receiveAndSeal(fifty);
    assert.equal(s.sealed, false);
    assert.match(s.sealed ? '' : s.reason, /50 instances/);
    assert.ok(out.toString('latin1').endsWith(fifty.toString('latin1')));
  });

  test('49 instances: the 50th is ours, and arc_verify passes all 50', async () => {
    const many = listSign(pythonSign(message()), MAX_ARC_INSTANCES - 1);
    const { s, out } = await receiveAndSeal(many);
    assert.ok(s.sealed, s.sealed ? '' : s.reason);
    assert.equal(s.instance, 50);
    const r = await pythonArcVerify(out, dns.port);
    assert.equal(r.cv, 'pass', r.reason);
    assert.equal(r.instances.length, 50);
  });

  test('key choice: the active RSA key when the domain has RSA and Ed25519; Ed25519 only when alone', () => {
    const keys = listKeys(dataDir, 'fwd.test');
    assert.equal(keys.length, 2);
    assert.equal(chooseArcKey(keys)?.selector, 'rsa1');
    assert.equal(chooseArcKey(keys.filter((k) => k.algorithm === 'ed25519'))?.selector, 'ed1');
    assert.equal(chooseArcKey(keys.map((k) => ({ ...k, active: false }))), null);
  });
});

describe('sealDecision (RFC 8617 §5.1, §4.2.1)', () => {
  const cases: Array<[string, { highest: number; lastCv: string | null }, string, string]> = [
    ['no chain', { highest: 0, lastCv: null }, 'none', 'i=1 cv=none'],
    ['valid chain', { highest: 3, lastCv: 'pass' }, 'pass', 'i=4 cv=pass'],
    ['invalid chain', { highest: 2, lastCv: 'pass' }, 'fail', 'i=3 cv=fail'],
    ['chain ends in cv=fail', { highest: 2, lastCv: 'fail' }, 'fail', 'no'],
    ['50 instances', { highest: 50, lastCv: 'pass' }, 'pass', 'no'],
    ['not validated (temperror)', { highest: 1, lastCv: 'none' }, 'temperror', 'no'],
  ];
  for (const [name, chain, validation, want] of cases) {
    test(name, () => {
      const d = sealDecision(chain, validation);
      assert.equal(d.seal ? `i=${d.instance} cv=${d.cv}` : 'no', want);
    });
  }
});
