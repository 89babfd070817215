/**
 * Command parsing (src/protocol/command.ts), RFC 5321 §4.1: verbs matched exactly, MAIL/RCPT
 * paths and ESMTP parameters (§4.1.2), HTTP lines recognised (cross-protocol defence).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { VERBS, isValidMailbox, parseCommand, parseParams, parsePathArgs, type Command } from '../../src/protocol/command.js';

describe('parseCommand', () => {
  test('table', () => {
    const cases: Array<[string, Command]> = [
      ['EHLO client.example', { kind: 'command', verb: 'EHLO', args: 'client.example' }],
      ['ehlo client.example', { kind: 'command', verb: 'EHLO', args: 'client.example' }],
      ['StartTLS', { kind: 'command', verb: 'STARTTLS', args: '' }],
      ['STARTTLS x', { kind: 'command', verb: 'STARTTLS', args: 'x' }],
      ['MAIL FROM:<a@b.c> SIZE=10', { kind: 'command', verb: 'MAIL', args: 'FROM:<a@b.c> SIZE=10' }],
      ['DATA', { kind: 'command', verb: 'DATA', args: '' }],
      ['MAILX FROM:<a@b.c>', { kind: 'unknown', word: 'MAILX' }], // no prefix matching
      ['STARTTLSX', { kind: 'unknown', word: 'STARTTLSX' }],
      ['XSTARTTLS', { kind: 'unknown', word: 'XSTARTTLS' }],
      ['', { kind: 'empty' }],
      ['   ', { kind: 'empty' }],
      ['GET / HTTP/1.1', { kind: 'http', word: 'GET' }],
      ['post /x HTTP/1.1', { kind: 'http', word: 'POST' }],
      ['CONNECT mail.example:25 HTTP/1.1', { kind: 'http', word: 'CONNECT' }],
      ['Host: mail.example', { kind: 'http', word: 'Host:' }],
      ['User-Agent: curl/8', { kind: 'http', word: 'User-Agent:' }],
      ['GET', { kind: 'unknown', word: 'GET' }], // a bare word is merely unknown
    ];
    for (const [line, want] of cases) assert.deepEqual(parseCommand(line), want, JSON.stringify(line));
  });

  test('never throws; a command verb is always one of VERBS and matches the first word exactly', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80, unit: 'binary' }), (line) => {
        const c = parseCommand(line);
        if (c.kind === 'command') {
          assert.ok((VERBS as readonly string[]).includes(c.verb));
          const sp = line.indexOf(' ');
          assert.equal((sp < 0 ? line : line.slice(0, sp)).toUpperCase(), c.verb);
          assert.equal(c.args, sp < 0 ? '' : line.slice(sp + 1));
        }
      }),
      { numRuns: 2000 },
    );
  });

  test('every verb, in any letter case, with any argument text, parses to itself', () => {
    fc.assert(
      fc.property(fc.constantFrom(...VERBS), fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }), fc.string({ maxLength: 40 }), (verb, caps, args) => {
        const word = [...verb].map((ch, i) => (caps[i % 8] ? ch.toLowerCase() : ch)).join('');
        assert.deepEqual(parseCommand(`${word} ${args}`), { kind: 'command', verb, args });
      }),
    );
  });
});

describe('parsePathArgs', () => {
  test('table', () => {
    const ok = (address: string, params: Array<[string, string | null]> = []) => ({ ok: true, address, params: params.map(([key, value]) => ({ key, value })) });
    const cases: Array<[string, 'FROM' | 'TO', boolean, unknown]> = [
      ['FROM:<bob@example.org>', 'FROM', true, ok('bob@example.org')],
      ['from:<bob@EXAMPLE.org>', 'FROM', true, ok('bob@example.org')], // domain lower-cased only
      ['FROM:<Bob@example.org>', 'FROM', true, ok('Bob@example.org')],
      ['FROM: <bob@example.org>', 'FROM', true, ok('bob@example.org')],
      ['FROM:<>', 'FROM', true, ok('')],
      ['TO:<>', 'TO', false, { ok: false, reason: 'address' }],
      ['FROM:<bob@example.org> SIZE=100 BODY=8BITMIME', 'FROM', true, ok('bob@example.org', [['SIZE', '100'], ['BODY', '8BITMIME']])],
      ['FROM:<bob@example.org> smtputf8', 'FROM', true, ok('bob@example.org', [['SMTPUTF8', null]])],
      ['FROM:<bob@example.org>SIZE=1', 'FROM', true, { ok: false, reason: 'syntax' }],
      ['FROM:bob@example.org', 'FROM', true, ok('bob@example.org')],
      ['TO:<@relay.example:alice@postseal.test>', 'TO', false, ok('alice@postseal.test')],
      ['TO:<"odd>name"@postseal.test>', 'TO', false, ok('"odd>name"@postseal.test')],
      ['TO:<alice@[192.0.2.1]>', 'TO', false, ok('alice@[192.0.2.1]')],
      ['TO:<alice@postseal.test', 'TO', false, { ok: false, reason: 'syntax' }],
      ['TO<alice@postseal.test>', 'TO', false, { ok: false, reason: 'syntax' }],
      ['FROM:<alice@postseal.test>', 'TO', false, { ok: false, reason: 'syntax' }],
      ['TO:<alice>', 'TO', false, { ok: false, reason: 'address' }],
      ['TO:<a..b@x.org>', 'TO', false, { ok: false, reason: 'address' }],
      ['TO:<a@-x.org>', 'TO', false, { ok: false, reason: 'address' }],
      ['TO:<a b@x.org>', 'TO', false, { ok: false, reason: 'address' }],
      ['TO:<a@x.org> BAD=\x01', 'TO', false, { ok: false, reason: 'param' }],
      ['TO:<a@x.org> =v', 'TO', false, { ok: false, reason: 'param' }],
    ];
    for (const [args, prefix, allowNull, want] of cases) assert.deepEqual(parsePathArgs(args, prefix, allowNull), want, JSON.stringify(args));
  });

  test('never throws; an accepted address is a valid mailbox (or the null path) without CR/LF/<>', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80, unit: 'binary' }), fc.constantFrom<'FROM' | 'TO'>('FROM', 'TO'), fc.boolean(), (tail, prefix, allowNull) => {
        for (const args of [tail, `${prefix}:${tail}`, `${prefix}:<${tail}>`]) {
          const r = parsePathArgs(args, prefix, allowNull);
          if (!r.ok) continue;
          assert.ok(r.address === '' ? allowNull : isValidMailbox(r.address), JSON.stringify(r.address));
          assert.ok(!/[\r\n]/.test(r.address));
          for (const p of r.params) assert.match(p.key, /^[A-Z0-9][A-Z0-9-]*$/);
        }
      }),
      { numRuns: 2000 },
    );
  });

  const atom = fc.stringMatching(/^[a-z0-9!#$%&'*+/=?^_`{|}~-]{1,10}$/);
  const label = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?$/);
  const mailbox = fc.tuple(fc.array(atom, { minLength: 1, maxLength: 3 }), fc.array(label, { minLength: 1, maxLength: 3 })).map(([l, d]) => `${l.join('.')}@${d.join('.')}`);
  const param = fc.tuple(fc.stringMatching(/^[A-Z0-9][A-Z0-9-]{0,8}$/), fc.option(fc.stringMatching(/^[\x21-\x3c\x3e-\x7e]{0,10}$/)));

  test('generated valid MAIL/RCPT arguments round-trip', () => {
    fc.assert(
      fc.property(mailbox, fc.array(param, { maxLength: 4 }), (addr, params) => {
        const text = `FROM:<${addr}>${params.map(([k, v]) => ` ${k}${v === null ? '' : '=' + v}`).join('')}`;
        assert.deepEqual(parsePathArgs(text, 'FROM', true), { ok: true, address: addr, params: params.map(([key, value]) => ({ key, value })) });
      }),
    );
  });
});

describe('parseParams', () => {
  test('table', () => {
    assert.deepEqual(parseParams(''), []);
    assert.deepEqual(parseParams('  SIZE=1   body=8bitmime '), [{ key: 'SIZE', value: '1' }, { key: 'BODY', value: '8bitmime' }]);
    assert.deepEqual(parseParams('X='), [{ key: 'X', value: '' }]);
    assert.equal(parseParams('SIZE=1=2'), null); // '=' is not allowed in a value (RFC 5321 esmtp-value)
    assert.equal(parseParams('-X'), null);
    assert.equal(parseParams('A\tB'), null);
  });

  test('never throws', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80, unit: 'binary' }), (s) => {
        const r = parseParams(s);
        if (r) for (const p of r) assert.ok(!p.key.includes(' ') && !(p.value ?? '').includes(' '));
      }),
      { numRuns: 2000 },
    );
  });
});
