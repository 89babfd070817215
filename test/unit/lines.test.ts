/**
 * Command-line framing (src/protocol/lines.ts): lines end at LF; a CRLF line is a `line`, a bare-LF
 * one a `bare-lf` (RFC 5321 §2.3.8: the server decides), a line longer than the limit (RFC 5321
 * §4.5.3.1.4) is reported once as too-long whatever ended it, memory stays bounded, and the result
 * does not depend on how the bytes arrive.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LineFramer, decodeUtf8 } from '../../src/protocol/lines.js';

type Out = string | { tooLong: true } | { bareLf: string };

/**
 * Drives a framer exactly as the server connection does: the unread tail of the buffer is kept,
 * a new read is appended, `need` with keepFrom at the end drops the buffer. Returns the framed
 * lines and the largest number of bytes held between reads.
 */
function frame(bytes: Uint8Array, maxLength: number, cuts: number[] = []): { out: Out[]; maxHeld: number } {
  const f = new LineFramer(maxLength);
  const points = [...new Set(cuts.filter((c) => c > 0 && c < bytes.length))].sort((a, b) => a - b);
  points.push(bytes.length);
  let buf = new Uint8Array(0);
  let pos = 0;
  let from = 0;
  let maxHeld = 0;
  const out: Out[] = [];
  for (const to of points) {
    const chunk = bytes.subarray(from, to);
    from = to;
    const next = new Uint8Array(buf.length - pos + chunk.length);
    next.set(buf.subarray(pos), 0);
    next.set(chunk, buf.length - pos);
    buf = next;
    pos = 0;
    for (;;) {
      const r = f.scan(buf, pos, buf.length);
      if (r.kind === 'need') {
        if (r.keepFrom >= buf.length) {
          buf = new Uint8Array(0);
          pos = 0;
        } else {
          pos = r.keepFrom;
        }
        break;
      }
      pos = r.end;
      out.push(r.kind === 'line' ? r.text : r.kind === 'bare-lf' ? { bareLf: r.text } : { tooLong: true });
    }
    maxHeld = Math.max(maxHeld, buf.length - pos);
  }
  return { out, maxHeld };
}

const enc = (s: string): Uint8Array => Buffer.from(s, 'latin1');

describe('LineFramer', () => {
  test('table', () => {
    const cases: Array<[string, number, Out[]]> = [
      ['EHLO a\r\n', 10, ['EHLO a']],
      ['EHLO a\n', 10, [{ bareLf: 'EHLO a' }]], // RFC 5321 §2.3.8: reported, the server decides
      ['A\r\nB\nC', 10, ['A', { bareLf: 'B' }]], // C is pending
      ['\r\n\n', 10, ['', { bareLf: '' }]],
      ['\n\r\n', 10, [{ bareLf: '' }, '']],
      ['a\r\r\n', 10, ['a\r']], // CRLF ends it; the CR before is text
      ['a\n\r\n', 10, [{ bareLf: 'a' }, '']],
      ['01234567890\n', 10, [{ tooLong: true }]], // too long wins over bare LF: the line is gone anyway
      ['a\rb\r\n', 10, ['a\rb']], // a bare CR inside a command line is just a byte
      ['0123456789\r\n', 10, ['0123456789']], // exactly the limit (CRLF excluded) is fine
      ['01234567890\r\n', 10, [{ tooLong: true }]],
      ['01234567890\r\nNOOP\r\n', 10, [{ tooLong: true }, 'NOOP']],
    ];
    for (const [input, max, want] of cases) {
      assert.deepEqual(frame(enc(input), max).out, want, JSON.stringify(input));
    }
  });

  test('a line of exactly the limit whose CR and LF arrive in different reads is accepted', () => {
    // RFC 5321 §4.5.3.1.4: the limit counts the text; where TCP splits CRLF must not matter.
    assert.deepEqual(frame(enc('0123456789\r\n'), 10, [11]).out, ['0123456789']);
  });

  test('a 1 MiB line without LF is held in bounded memory and reported once', () => {
    const big = new Uint8Array(1 << 20).fill(0x41);
    const input = new Uint8Array(big.length + 8);
    input.set(big, 0);
    input.set(enc('\r\nNOOP\r\n'), big.length);
    const cuts = Array.from({ length: 256 }, (_, i) => (i + 1) * 4096);
    const { out, maxHeld } = frame(input, 512, cuts);
    assert.deepEqual(out, [{ tooLong: true }, 'NOOP']);
    assert.ok(maxHeld <= 513, `held ${maxHeld} bytes`);
  });

  test('decodeUtf8 handles ASCII, UTF-8 and invalid bytes without throwing', () => {
    assert.equal(decodeUtf8(enc('MAIL'), 0, 4), 'MAIL');
    const u = Buffer.from('RCPT TO:<jörg@exämple.org>', 'utf8');
    assert.equal(decodeUtf8(u, 0, u.length), 'RCPT TO:<jörg@exämple.org>');
    assert.equal(decodeUtf8(Uint8Array.from([0xff, 0xfe]), 0, 2), '\ufffd\ufffd');
  });
});

const lineBytes = fc.array(fc.constantFrom(0x0d, 0x0a, 0x41, 0x20, 0xc3, 0xa9, 0x00, 0xff), { maxLength: 60 }).map((a) => Uint8Array.from(a));

describe('LineFramer properties (fast-check)', () => {
  test('never throws; lines never contain LF; held bytes stay within limit + 1', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.array(fc.nat(400), { maxLength: 10 }), fc.integer({ min: 0, max: 64 }), (bytes, cuts, max) => {
        const { out, maxHeld } = frame(bytes, max, cuts);
        for (const o of out) {
          const text = typeof o === 'string' ? o : 'bareLf' in o ? o.bareLf : '';
          assert.ok(!text.includes('\n'));
        }
        // Between reads the framer keeps at most one partial line of limit + 1 bytes (a CR
        // waiting for its LF); everything past that is dropped as it arrives.
        assert.ok(maxHeld <= max + 1, `held ${maxHeld} > ${max + 1}`);
      }),
      { numRuns: 1000 },
    );
  });

  test('framing matches a split-on-LF model, whatever the read boundaries', () => {
    fc.assert(
      fc.property(lineBytes, fc.array(fc.nat(60), { maxLength: 8 }), fc.integer({ min: 0, max: 12 }), (bytes, cuts, max) => {
        const s = Buffer.from(bytes).toString('latin1');
        const parts = s.split('\n');
        parts.pop(); // the unterminated tail is pending
        const want: Out[] = parts.map((p) => {
          const crlf = p.endsWith('\r');
          const text = crlf ? p.slice(0, -1) : p;
          if (text.length > max) return { tooLong: true };
          const decoded = decodeUtf8(enc(text), 0, text.length);
          return crlf ? decoded : { bareLf: decoded };
        });
        assert.deepEqual(frame(bytes, max, cuts).out, want);
      }),
      { numRuns: 3000 },
    );
  });
});
