/** normalizeLineEndings: every bare CR, bare LF and CRLF becomes CRLF; nothing else changes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { hasBareCrOrLf, normalizeLineEndings } from '../../src/protocol/data.js';

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
