/** Pure parsers of domain mode: MTA-STS TXT and policy (RFC 8461), mx patterns, TLSA, SPF, TLS-RPT. */
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { describe, test } from 'node:test';
import { matchMxPattern, parseStsPolicy, parseStsTxt } from '../../src/policy/mta-sts.js';
import { matchTlsa, parseSpf, parseTlsRpt } from '../../src/check/policies.js';
import { issueCert, makeTestCa } from '../helpers/certs.js';

describe('MTA-STS', () => {
  test('TXT: exactly one v=STSv1 with an id', () => {
    assert.deepEqual(parseStsTxt(['v=STSv1; id=abc123']), { ok: true, value: { raw: 'v=STSv1; id=abc123', id: 'abc123' } });
    assert.equal(parseStsTxt(['v=STSv1; id=a', 'v=STSv1; id=b']).ok, false);
    assert.equal(parseStsTxt(['v=STSv1; id=has-dash']).ok, false);
    assert.equal(parseStsTxt(['v=spf1 -all']).ok, false);
  });
  test('policy: strict fields', () => {
    const ok = parseStsPolicy('version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n');
    assert.deepEqual(ok, { ok: true, value: { version: 'STSv1', mode: 'enforce', maxAge: 86400, mx: ['mail.example.com', '*.example.net'] } });
    assert.equal(parseStsPolicy('version: STSv1\nmode: none\nmax_age: 0\n').ok, true);
    for (const bad of [
      'mode: enforce\nmx: a.b\nmax_age: 1\n',
      'version: STSv1\nmode: Enforce\nmx: a.b\nmax_age: 1\n',
      'version: STSv1\nmode: enforce\nmax_age: 1\n',
      'version: STSv1\nmode: enforce\nmx: a.b\nmax_age: 31557601\n',
      'version: STSv1\nmode: enforce\nmode: testing\nmx: a.b\nmax_age: 1\n',
      'version: STSv1\nmode: enforce\nmx: *.*.b\nmax_age: 1\n',
    ]) assert.equal(parseStsPolicy(bad).ok, false, bad);
  });
  test('mx wildcard matches exactly one label (RFC 8461 §4.1)', () => {
    assert.equal(matchMxPattern('mx1.example.com', '*.example.com'), true);
    assert.equal(matchMxPattern('a.mx1.example.com', '*.example.com'), false);
    assert.equal(matchMxPattern('example.com', '*.example.com'), false);
    assert.equal(matchMxPattern('MX1.Example.com.', 'mx1.example.com'), true);
  });
});

describe('DANE TLSA matching', () => {
  test('3 1 1 matches the leaf SPKI, 3 0 1 the whole leaf, 2 x x the issuer, 0/1 are unusable', async () => {
    const ca = await makeTestCa();
    const leaf = await issueCert(ca, { names: ['mx.example.test'] });
    const der = (pem: string) => Buffer.from(new X509Certificate(pem).raw);
    const chain = [der(leaf.certPem).toString('base64'), der(ca.certPem).toString('base64')];
    const spki = (pem: string) => new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
    const sha256 = (b: Buffer) => createHash('sha256').update(b).digest();
    const res = matchTlsa([
      { usage: 3, selector: 1, matchingType: 1, data: sha256(spki(leaf.certPem)) },
      { usage: 3, selector: 0, matchingType: 1, data: sha256(der(leaf.certPem)) },
      { usage: 2, selector: 1, matchingType: 1, data: sha256(spki(ca.certPem)) },
      { usage: 2, selector: 1, matchingType: 1, data: sha256(spki(leaf.certPem)) },
      { usage: 1, selector: 1, matchingType: 1, data: sha256(spki(leaf.certPem)) },
    ], chain);
    assert.deepEqual(res.map((r) => r.result), ['match', 'match', 'match', 'no-match', 'unusable']);
  });
});

describe('SPF and TLS-RPT', () => {
  test('SPF terms and the all qualifier', () => {
    assert.deepEqual(parseSpf(['v=spf1 mx ip4:192.0.2.0/24 include:_spf.example.net ~all']).all, '~');
    assert.equal(parseSpf(['v=spf1 -all', 'v=spf1 +all']).error?.includes('permerror'), true);
    assert.equal(parseSpf(['v=spf1 mx bogus:x -all']).error?.includes('bogus'), true);
    assert.equal(parseSpf(['google-site-verification=x']).record, null);
  });
  test('TLS-RPT rua URIs', () => {
    assert.deepEqual(parseTlsRpt(['v=TLSRPTv1; rua=mailto:a@example.test,https://r.example.test/x']).rua, ['mailto:a@example.test', 'https://r.example.test/x']);
    assert.notEqual(parseTlsRpt(['v=TLSRPTv1; rua=ftp://x']).error, null);
    assert.notEqual(parseTlsRpt(['v=TLSRPTv1;']).error, null);
  });
});
