/** TLS levels: the order is the order of strength and the predicates follow it (tls_level.c). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { atLeast, checksPkix, isTlsLevel, requiresTls, satisfies, TLS_LEVELS, triesTls, usesDane, verifiesCert } from '../../src/client/index.js';

describe('TLS levels', () => {
  it('are ordered none < may < encrypt < verify < dane', () => {
    assert.deepEqual([...TLS_LEVELS], ['none', 'may', 'encrypt', 'verify', 'dane']);
    assert.ok(atLeast('verify', 'encrypt') && !atLeast('may', 'encrypt') && atLeast('dane', 'verify'));
  });
  it('predicates', () => {
    assert.deepEqual(TLS_LEVELS.map(triesTls), [false, true, true, true, true]);
    assert.deepEqual(TLS_LEVELS.map(requiresTls), [false, false, true, true, true]);
    assert.deepEqual(TLS_LEVELS.map(verifiesCert), [false, false, false, true, true]);
    // The peer is authenticated by PKIX at verify, by TLSA records at dane (never both).
    assert.deepEqual(TLS_LEVELS.map(checksPkix), [false, false, false, true, false]);
    assert.deepEqual(TLS_LEVELS.map(usesDane), [false, false, false, false, true]);
  });
  it('reached states satisfy levels', () => {
    assert.equal(satisfies('none', 'may'), true);
    assert.equal(satisfies('none', 'encrypt'), false);
    assert.equal(satisfies('encrypt', 'verify'), false);
    assert.equal(satisfies('verify', 'verify'), true);
    // RFC 8689 §4.2.1: a DANE-authenticated peer is a verified peer; PKIX alone is not DANE.
    assert.equal(satisfies('dane', 'verify'), true);
    assert.equal(satisfies('verify', 'dane'), false);
    assert.equal(satisfies('dane', 'dane'), true);
  });
  it('parses only known names', () => {
    assert.equal(isTlsLevel('verify'), true);
    assert.equal(isTlsLevel('dane'), true);
    assert.equal(isTlsLevel('dane-only'), false);
  });
});
