/**
 * Pure parts of src/auth/dkim-sign.ts: relaxed body canonicalization gives the same hash for any
 * chunking (RFC 6376 §3.4.4, including the trailing-empty-line rule), author domain extraction,
 * and `x=` only when an expiry is configured.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { RelaxedBodyHash, authorDomain, parseHeader, signHeader } from '../../src/auth/dkim-sign.js';

function hash(body: string, cut: number[]): string {
  const h = new RelaxedBodyHash();
  let at = 0;
  for (const c of [...cut, body.length]) {
    h.update(Buffer.from(body.slice(at, c), 'latin1'));
    at = c;
  }
  return h.digest();
}

describe('dkim-sign', () => {
  it('relaxed body hash is independent of chunking', () => {
    const body = 'Hi  there \t\r\n\r\n line two\r\n\r\n\r\n';
    const whole = hash(body, []);
    for (let i = 0; i <= body.length; i++) assert.equal(hash(body, [i]), whole, `cut at ${i}`);
    // Same canonical form: WSP runs collapsed, trailing WSP and trailing empty lines dropped.
    assert.equal(hash('Hi there\r\n\r\n line two\r\n', []), whole);
    // RFC 6376 §3.4.4: an empty body hashes the empty string; a last line without CRLF gets one.
    assert.equal(hash('', []), '47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=');
    assert.equal(hash('x', []), hash('x\r\n', []));
  });

  it('author domain: one From, angle or bare address', () => {
    assert.equal(authorDomain(parseHeader('From: "A, B" <a@Example.org>\r\nTo: x@y')), 'example.org');
    assert.equal(authorDomain(parseHeader('From: a@example.org (comment)')), 'example.org');
    assert.equal(authorDomain(parseHeader('From: a@one.test\r\nFrom: b@two.test')), null);
    assert.equal(authorDomain(parseHeader('To: x@y.test')), null);
  });

  it('t= always, x= only with an expiry', () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const key = { domain: 'example.org', selector: 's', algorithm: 'ed25519' as const, active: true, file: '', record: [], privateKey };
    const fields = parseHeader('From: a@example.org');
    const now = new Date(1_800_000_000_000);
    assert.match(signHeader(fields, 'example.org', 'bh', [key], { now }), /t=1800000000; h=from:from:to:subject:date;/);
    assert.match(signHeader(fields, 'example.org', 'bh', [key], { now, expirySeconds: 3600 }), /t=1800000000; x=1800003600; h=from:from:to:subject:date;/);
  });
});
