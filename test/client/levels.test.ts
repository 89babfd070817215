/** TLS levels: the order is the order of strength and the predicates follow it (tls_level.c). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { atLeast, isTlsLevel, requiresTls, satisfies, TLS_LEVELS, triesTls, verifiesCert } from '../../src/client/index.js';

describe('TLS levels', () => {
  it('are ordered none < may < encrypt < verify', () => {
    assert.deepEqual([...TLS_LEVELS], ['none', 'may', 'encrypt', 'verify']);
    assert.ok(atLeast('verify', 'encrypt') && !atLeast('may', 'encrypt'));
  });
  it('predicates', () => {
    assert.deepEqual(TLS_LEVELS.map(triesTls), [false, true, true, true]);
    assert.deepEqual(TLS_LEVELS.map(requiresTls), [false, false, true, true]);
    assert.deepEqual(TLS_LEVELS.map(verifiesCert), [false, false, false, true]);
  });
  it('reached states satisfy levels', () => {
    assert.equal(satisfies('none', 'may'), true);
    assert.equal(satisfies('none', 'encrypt'), false);
    assert.equal(satisfies('encrypt', 'verify'), false);
    assert.equal(satisfies('verify', 'verify'), true);
  });
  it('parses only known names', () => {
    assert.equal(isTlsLevel('verify'), true);
    assert.equal(isTlsLevel('dane'), false);
  });
});
