/** RFC 3461 parameter parsing and xtext (protocol/dsn.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dsnMailParams, dsnRcptParams, parseEnvId, parseNotify, parseOrcpt, parseRet, xtext, xtextDecode } from '../../src/protocol/dsn.js';

test('xtext: +XX uppercase hex decodes; "=", spaces, lowercase hex and a lone "+" are refused; encoding round-trips', () => {
  assert.equal(xtextDecode('a+2Bb+3Dc'), 'a+b=c');
  for (const bad of ['a=b', 'a b', 'a+2b', 'a+', 'a+G0', 'a+00b', 'a+0Ab', 'a+1F', 'a+7F']) assert.equal(xtextDecode(bad), null, bad);
  assert.equal(xtextDecode('a+20b'), 'a b', 'a space (a quoted local part of ORCPT) is printable');
  for (const s of ['plain', 'a+b=c', 'x@y.z', '~!#$%']) assert.equal(xtextDecode(xtext(s)), s);
  assert.equal(xtext('a+b=c'), 'a+2Bb+3Dc');
});

test('NOTIFY: NEVER alone, or any set of SUCCESS/FAILURE/DELAY without repeats', () => {
  assert.deepEqual(parseNotify('never'), ['NEVER']);
  assert.deepEqual(parseNotify('DELAY,SUCCESS'), ['DELAY', 'SUCCESS']);
  for (const bad of [null, '', 'NEVER,FAILURE', 'SUCCESS,SUCCESS', 'SOMETIMES', 'SUCCESS,']) assert.equal(parseNotify(bad), null, String(bad));
});

test('RET, ENVID (≤100) and ORCPT (type;xtext)', () => {
  assert.equal(parseRet('hdrs'), 'HDRS');
  assert.equal(parseRet('BODY'), null);
  assert.equal(parseEnvId('x'.repeat(100)), 'x'.repeat(100));
  assert.equal(parseEnvId('x'.repeat(101)), null);
  assert.equal(parseOrcpt('RFC822;a+2Bb@c.example'), 'rfc822;a+b@c.example');
  for (const bad of ['a@b', ';a@b', 'rfc822;', 'rfc 822;a@b']) assert.equal(parseOrcpt(bad), null, bad);
});

test('parameters passed on are re-encoded as xtext', () => {
  assert.deepEqual(dsnMailParams('id+1=2', 'FULL'), ['RET=FULL', 'ENVID=id+2B1+3D2']);
  assert.deepEqual(dsnMailParams(null, null), []);
  assert.deepEqual(dsnRcptParams(['SUCCESS', 'DELAY'], 'rfc822;X+tag@o.example'), ['NOTIFY=SUCCESS,DELAY', 'ORCPT=rfc822;X+2Btag@o.example']);
  assert.deepEqual(dsnRcptParams(null, null), []);
});
