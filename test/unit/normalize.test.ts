/** normalizeLineEndings: every bare CR, bare LF and CRLF becomes CRLF; nothing else changes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LineEndingStream, hasBareCrOrLf, normalizeLineEndings } from '../../src/protocol/data.js';

/** The rule written the slow, obvious way. */
function model(bytes: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i] ?? 0;
    if (b === 0x0d) {
      out.push(0x0d, 0x0a);
      if (bytes[i + 1] === 0x0a) i++;
    } else if (b === 0x0a) out.push(0x0d, 0x0a);
    else out.push(b);
  }
  return out;
}

const enc = (s: string): Uint8Array => Buffer.from(s, 'latin1');

test('table', () => {
  const cases: Array<[string, string]> = [
    ['a\nb', 'a\r\nb'],
    ['a\rb', 'a\r\nb'],
    ['a\r\nb', 'a\r\nb'],
    ['\n.\n', '\r\n.\r\n'],
    ['\r\r\n', '\r\n\r\n'],
    ['x\r', 'x\r\n'],
    ['', ''],
  ];
  for (const [i, o] of cases) assert.equal(Buffer.from(normalizeLineEndings(enc(i))).toString('latin1'), o, JSON.stringify(i));
});

test('matches the byte-by-byte model and leaves no bare CR or LF', () => {
  const bytes = fc.array(fc.constantFrom(0x0d, 0x0a, 0x2e, 0x41, 0x20), { maxLength: 64 }).map((a) => Uint8Array.from(a));
  fc.assert(
    fc.property(bytes, (b) => {
      const out = normalizeLineEndings(b);
      assert.deepEqual([...out], model(b));
      assert.equal(hasBareCrOrLf(out), false);
    }),
  );
});

test('LineEndingStream over any split into pieces agrees with the whole-message functions', () => {
  const bytes = fc.array(fc.constantFrom(0x0d, 0x0a, 0x2e, 0x41), { maxLength: 48 }).map((a) => Uint8Array.from(a));
  const cuts = fc.array(fc.nat(48), { maxLength: 6 });
  fc.assert(
    fc.property(bytes, cuts, fc.boolean(), (b, at, normalize) => {
      const points = [...new Set(at.map((x) => x % (b.length + 1)))].sort((x, y) => x - y);
      const pieces: Uint8Array[] = [];
      let from = 0;
      for (const p of [...points, b.length]) {
        pieces.push(b.subarray(from, p));
        from = p;
      }
      const s = new LineEndingStream(normalize);
      const out: Uint8Array[] = [];
      for (const p of pieces) out.push(...s.push(p));
      out.push(...s.end());
      assert.equal(s.bare, hasBareCrOrLf(b));
      const joined = Buffer.concat(out);
      assert.deepEqual([...joined], normalize ? [...normalizeLineEndings(b)] : [...b]);
    }),
    { numRuns: 3000 },
  );
});
