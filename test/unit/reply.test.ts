/**
 * Replies (src/protocol/reply.ts), RFC 5321 §4.2 and enhanced status codes (RFC 3463/2034):
 * formatting, line parsing, multi-line assembly; and EHLO keywords (src/protocol/ehlo.ts,
 * RFC 5321 §4.1.1.1) matched exactly.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ReplyAssembler, formatReply, parseReplyLine, reply, splitEnhanced, type Reply } from '../../src/protocol/reply.js';
import { authMechanisms, has, parseEhloReply, sizeLimit } from '../../src/protocol/ehlo.js';

/** Feeds a formatted reply, line by line, to a fresh assembler. */
function reassemble(text: string): Array<Reply | null | { error: string }> {
  const a = new ReplyAssembler();
  const lines = text.split('\r\n');
  assert.equal(lines.pop(), '', 'a formatted reply ends with CRLF');
  return lines.map((l) => a.push(l));
}

describe('formatReply / parseReplyLine / ReplyAssembler', () => {
  test('table', () => {
    assert.equal(formatReply(reply(250, '2.0.0', 'OK')), '250 2.0.0 OK\r\n');
    assert.equal(formatReply(reply(250, null, 'a', 'b')), '250-a\r\n250 b\r\n');
    assert.equal(formatReply(reply(550, '5.7.1', 'one', 'two')), '550-5.7.1 one\r\n550 5.7.1 two\r\n');
    assert.equal(formatReply(reply(250, null, 'evil\r\n250 injected')), '250 evil  250 injected\r\n');
    assert.deepEqual(parseReplyLine('250'), { ok: true, code: 250, last: true, text: '' });
    assert.deepEqual(parseReplyLine('250-PIPELINING'), { ok: true, code: 250, last: false, text: 'PIPELINING' });
    assert.deepEqual(parseReplyLine('250_x'), { ok: false, line: '250_x' });
    assert.deepEqual(parseReplyLine('150 x'), { ok: false, line: '150 x' });
    assert.deepEqual(parseReplyLine('25'), { ok: false, line: '25' });
    assert.deepEqual(splitEnhanced(250, '2.1.5 ok'), { enhanced: '2.1.5', text: 'ok' });
    assert.deepEqual(splitEnhanced(250, '5.1.5 ok'), { enhanced: null, text: '5.1.5 ok' }); // class must match
    const a = new ReplyAssembler();
    assert.equal(a.push('250-a'), null);
    assert.ok(a.pending);
    assert.deepEqual(a.push('251 b'), { error: 'reply code changed inside a multi-line reply (250 then 251)' });
  });

  test('parseReplyLine and ReplyAssembler never throw', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string({ maxLength: 30, unit: 'binary' }), fc.stringMatching(/^[2-5]\d\d[ -][245]\.\d{1,3}\.\d{1,3} .{0,5}$/)), { maxLength: 20 }), fc.integer({ min: 1, max: 5 }), (lines, maxLines) => {
        const a = new ReplyAssembler(maxLines);
        for (const l of lines) {
          parseReplyLine(l);
          const r = a.push(l);
          if (r && !('error' in r)) assert.ok(r.code >= 200 && r.code <= 599);
        }
      }),
      { numRuns: 2000 },
    );
  });

  const code = fc.integer({ min: 200, max: 599 });
  // Text that does not itself begin like an enhanced code (that would be ambiguous on the wire).
  const text = fc.string({ maxLength: 30, unit: 'binary' }).filter((t) => !/^[245]\.\d{1,3}\.\d{1,3}(?: |$)/.test(t.replace(/[\r\n]/g, ' ')));

  test('formatReply output always parses back to the same reply (CR/LF in text become spaces)', () => {
    fc.assert(
      fc.property(code, fc.boolean(), fc.tuple(fc.integer({ min: 0, max: 999 }), fc.integer({ min: 0, max: 999 })), fc.array(text, { minLength: 1, maxLength: 6 }), (c, withEnh, [sub, det], lines) => {
        // RFC 3463 §3.1: an enhanced code's class is 2, 4 or 5 (there is no 3.x.x for 3yz replies).
        const enhanced = withEnh && c < 300 || withEnh && c >= 400 ? `${String(c)[0]}.${sub}.${det}` : null;
        const formatted = formatReply(reply(c, enhanced, ...lines));
        assert.ok(!/\r(?!\n)|(?<!\r)\n/.test(formatted), 'no bare CR/LF on the wire');
        const got = reassemble(formatted);
        assert.deepEqual(got.slice(0, -1), got.slice(0, -1).map(() => null));
        assert.deepEqual(got[got.length - 1], { code: c, enhanced, lines: lines.map((l) => l.replace(/[\r\n]/g, ' ')) });
      }),
      { numRuns: 2000 },
    );
  });
});

describe('parseEhloReply', () => {
  const ehlo = (...lines: string[]): Reply => ({ code: 250, enhanced: null, lines: ['mx.example greets you', ...lines] });

  test('keywords are exact: XSTARTTLS is not STARTTLS, a greeting mentioning STARTTLS is not', () => {
    const caps = parseEhloReply({ code: 250, enhanced: null, lines: ['mx.example STARTTLS ready', 'XSTARTTLS', 'X-STARTTLS', 'STARTTLSX', 'PIPELINING'] });
    assert.equal(has(caps, 'STARTTLS'), false);
    assert.equal(has(caps, 'PIPELINING'), true);
    assert.equal(has(caps, 'XSTARTTLS'), true);
    assert.equal(caps.greeting, 'mx.example STARTTLS ready');
  });

  test('keywords are case-insensitive, parameters kept; SIZE parsed', () => {
    const caps = parseEhloReply(ehlo('starttls', 'size 1000', '8bitmime', '  CHUNKING  '));
    assert.equal(has(caps, 'STARTTLS'), true);
    assert.equal(has(caps, 'CHUNKING'), true);
    assert.equal(sizeLimit(caps), 1000);
    assert.equal(sizeLimit(parseEhloReply(ehlo('SIZE'))), 0); // RFC 1870: no fixed limit
    assert.equal(sizeLimit(parseEhloReply(ehlo('PIPELINING'))), null);
  });

  test('AUTH: the new form, the old "AUTH=" form, and both together in either order', () => {
    assert.deepEqual(authMechanisms(parseEhloReply(ehlo('AUTH PLAIN login'))), ['PLAIN', 'LOGIN']);
    assert.deepEqual(authMechanisms(parseEhloReply(ehlo('AUTH=LOGIN'))), ['LOGIN']);
    assert.deepEqual(authMechanisms(parseEhloReply(ehlo('AUTH=LOGIN PLAIN'))), ['LOGIN', 'PLAIN']);
    assert.deepEqual(new Set(authMechanisms(parseEhloReply(ehlo('AUTH PLAIN', 'AUTH=LOGIN')))), new Set(['PLAIN', 'LOGIN']));
    assert.deepEqual(new Set(authMechanisms(parseEhloReply(ehlo('AUTH=LOGIN', 'AUTH PLAIN')))), new Set(['PLAIN', 'LOGIN']));
  });

  test('never throws on any reply', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 30, unit: 'binary' }), { maxLength: 10 }), (lines) => {
        const caps = parseEhloReply({ code: 250, enhanced: null, lines });
        sizeLimit(caps);
        authMechanisms(caps);
        for (const k of caps.keywords.keys()) assert.equal(k, k.toUpperCase());
      }),
      { numRuns: 2000 },
    );
  });
});
