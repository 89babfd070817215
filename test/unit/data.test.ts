/**
 * DATA reading and dot-stuffing (src/protocol/data.ts), RFC 5321 §4.1.1.4 and §4.5.2, and the
 * SMTP smuggling rules (CVE-2023-51764 class): only <CRLF>.<CRLF> ends DATA, bare CR/LF is
 * flagged (or normalized), the result does not depend on how the input is split into reads.
 *
 * The reference model ("oracle") below is written independently of the state machine: it looks
 * for the first "\r\n.\r\n" in "\r\n" + wire (the CRLF of the DATA command counts as the first
 * CRLF) and unstuffs line by line.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DotReader, dotStuff, hasBareCrOrLf } from '../../src/protocol/data.js';

const enc = (s: string): Uint8Array => Buffer.from(s, 'latin1');
const dec = (parts: Uint8Array[]): string => Buffer.concat(parts).toString('latin1');

interface Outcome {
  end: number;
  content: string;
  bareCr: boolean;
  bareLf: boolean;
  tooBig: boolean;
  size: number;
}

/** Feeds `wire` to a fresh reader in pieces cut at `cuts`; stops at the end of data. */
function read(wire: Uint8Array, opts: { maxSize?: number; normalize?: boolean } = {}, cuts: number[] = []): Outcome {
  const r = new DotReader({ maxSize: opts.maxSize ?? 1 << 30, normalize: opts.normalize ?? false });
  const points = [...new Set(cuts.filter((c) => c > 0 && c < wire.length))].sort((a, b) => a - b);
  points.push(wire.length);
  let from = 0;
  let end = -1;
  for (const to of points) {
    // Each piece is its own buffer, as the socket delivers it (subarrays kept by the reader must
    // stay valid after the next read).
    const piece = Uint8Array.from(wire.subarray(from, to));
    const e = r.feed(piece, 0, piece.length);
    if (e >= 0) {
      end = from + e;
      break;
    }
    from = to;
  }
  return { end, content: dec(r.content()), bareCr: r.bareCr, bareLf: r.bareLf, tooBig: r.tooBig, size: r.size };
}

/** Independent model of a correct reader. */
function oracle(wire: string, normalize: boolean): { end: number; raw: string; content: string } {
  const s = '\r\n' + wire;
  const k = s.indexOf('\r\n.\r\n');
  if (k < 0) return { end: -1, raw: wire, content: '' };
  const raw = wire.slice(0, k); // content lines with their CRLF, terminator excluded
  const text = normalize ? raw.replace(/\r\n|\r|\n/g, '\r\n') : raw;
  const content = text
    .split('\r\n')
    .map((line) => (line.startsWith('.') ? line.slice(1) : line))
    .join('\r\n');
  return { end: k + 3, raw, content };
}

/** Every way a line ending can be spelled wrong, plus the right one. */
const ENDINGS = ['\r\n', '\n', '\r', '\n\r', '\r\r', '\n\n', '\r\r\n', '\n\r\n', ''] as const;

describe('DotReader: only <CRLF>.<CRLF> ends DATA', () => {
  test('the plain cases', () => {
    assert.deepEqual(read(enc('.\r\n')), { end: 3, content: '', bareCr: false, bareLf: false, tooBig: false, size: 0 });
    const o = read(enc('Subject: x\r\n\r\nbody\r\n..dot\r\n.\r\nQUIT\r\n'));
    assert.equal(o.end, 'Subject: x\r\n\r\nbody\r\n..dot\r\n.\r\n'.length);
    assert.equal(o.content, 'Subject: x\r\n\r\nbody\r\n.dot\r\n');
    assert.equal(o.bareCr || o.bareLf, false);
  });

  for (const e1 of ENDINGS) {
    for (const e2 of ENDINGS) {
      const variant = `${e1}.${e2}`;
      const name = JSON.stringify(variant);
      if (variant.includes('\r\n.\r\n')) continue; // the real terminator, tested above
      for (const normalize of [false, true]) {
        test(`${name} inside a line never ends DATA (normalize=${normalize})`, () => {
          const smuggled = `text${variant}MAIL FROM:<x@evil.example>\r\nRCPT TO:<y@postseal.test>\r\nDATA\r\nsmuggled\r\n`;
          const wire = enc(`${smuggled}.\r\n`);
          const o = read(wire, { normalize });
          // The only end is the real one, at the very end of the input.
          assert.equal(o.end, wire.length, `${name} ended DATA early`);
          assert.ok(o.content.includes('MAIL FROM:<x@evil.example>'), 'the smuggled commands must stay content');
          if (variant.replace(/\r\n/g, '').match(/[\r\n]/)) {
            assert.ok(o.bareCr || o.bareLf, `${name}: a bare CR or LF must be flagged`);
          }
          if (normalize) {
            assert.equal(hasBareCrOrLf(enc(o.content)), false, `${name}: normalize must leave only CRLF`);
          }
          // Also when the variant is split across reads at every position.
          for (let cut = 1; cut < wire.length; cut++) {
            assert.deepEqual(read(wire, { normalize }, [cut]), o, `${name} split at ${cut}`);
          }
        });
      }
    }
  }

  test('bare CR and bare LF are flagged separately', () => {
    assert.deepEqual([read(enc('a\rb\r\n.\r\n')).bareCr, read(enc('a\rb\r\n.\r\n')).bareLf], [true, false]);
    assert.deepEqual([read(enc('a\nb\r\n.\r\n')).bareCr, read(enc('a\nb\r\n.\r\n')).bareLf], [false, true]);
    // An LF right after the 354 (the DATA line's CRLF is already complete) is bare.
    assert.equal(read(enc('\n.\r\n.\r\n')).bareLf, true);
  });

  test('normalize rewrites each bare CR or LF to CRLF and keeps CRLF as is', () => {
    const o = read(enc('a\rb\nc\r\nd\n\re\r\r\n.\r\n'), { normalize: true });
    assert.equal(o.content, 'a\r\nb\r\nc\r\nd\r\n\r\ne\r\n\r\n');
    assert.equal(o.bareCr && o.bareLf, true);
    // Without normalize the bytes are kept as sent (the server rejects the message anyway).
    assert.equal(read(enc('a\rb\nc\r\n.\r\n')).content, 'a\rb\nc\r\n');
  });

  test('a size limit sets tooBig, drops the content and still scans to the terminator', () => {
    const body = 'x'.repeat(100) + '\r\n';
    const wire = enc(body.repeat(10) + '.\r\nNOOP\r\n');
    const o = read(wire, { maxSize: 500 }, [7, 333, 800]);
    assert.equal(o.tooBig, true);
    assert.equal(o.end, body.length * 10 + 3);
    assert.equal(o.content, '');
    assert.equal(o.size, body.length * 10);
    const fits = read(wire, { maxSize: body.length * 10 });
    assert.equal(fits.tooBig, false);
    assert.equal(fits.content, body.repeat(10));
  });
});

const wireAlphabet = fc.constantFrom('\r', '\n', '.', 'a', '\r\n', '\r\n.', '.\r\n', '\xff');
const wireString = fc.array(wireAlphabet, { maxLength: 40 }).map((a) => a.join(''));
const cutsFor = (n: number): fc.Arbitrary<number[]> => fc.array(fc.integer({ min: 1, max: Math.max(1, n) }), { maxLength: 6 });

describe('DotReader properties (fast-check)', () => {
  test('never throws on arbitrary bytes, in any split', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat(300), { maxLength: 8 }), fc.boolean(), fc.nat(400), (bytes, cuts, normalize, maxSize) => {
        read(bytes, { normalize, maxSize }, cuts);
      }),
      { numRuns: 500 },
    );
  });

  test('the end and the flags match the model; content matches when there is no bare CR/LF', () => {
    fc.assert(
      fc.property(wireString, fc.boolean(), (w, normalize) => {
        const wire = enc(w);
        const o = read(wire, { normalize });
        const m = oracle(w, normalize);
        assert.equal(o.end, m.end);
        if (m.end < 0) return;
        assert.equal(o.bareCr || o.bareLf, hasBareCrOrLf(enc(m.raw)));
        if (normalize || !hasBareCrOrLf(enc(m.raw))) assert.equal(o.content, m.content);
      }),
      { numRuns: 3000 },
    );
  });

  test('the outcome does not depend on how the input is split', () => {
    fc.assert(
      fc.property(
        wireString.chain((w) => fc.tuple(fc.constant(w), cutsFor(w.length))),
        fc.boolean(),
        fc.integer({ min: 0, max: 30 }),
        ([w, cuts], normalize, maxSize) => {
          const wire = enc(w);
          assert.deepEqual(read(wire, { normalize, maxSize }, cuts), read(wire, { normalize, maxSize }));
        },
      ),
      { numRuns: 3000 },
    );
  });

  test('tooBig exactly when the content exceeds maxSize', () => {
    fc.assert(
      fc.property(wireString, fc.integer({ min: 0, max: 40 }), fc.boolean(), (w, maxSize, normalize) => {
        const m = oracle(w, normalize);
        // Without normalize, content after a bare CR/LF is kept as sent and the model does not
        // say how dots there are unstuffed; the server rejects such a message anyway.
        fc.pre(m.end >= 0 && (normalize || !hasBareCrOrLf(enc(m.raw))));
        const o = read(enc(w), { maxSize, normalize });
        assert.equal(o.end, m.end);
        assert.equal(o.size, m.content.length);
        assert.equal(o.tooBig, m.content.length > maxSize);
        if (o.tooBig) assert.equal(o.content, '');
      }),
      { numRuns: 2000 },
    );
  });
});

/** CRLF-only content: lines without CR/LF, joined by CRLF, with or without a final CRLF. */
const lineChars = fc.constantFrom('.', 'a', ' ', '\xe9', '\x00', '\t', 'Z');
const line = fc.array(lineChars, { maxLength: 12 }).map((a) => a.join(''));
const crlfContent = fc.tuple(fc.array(line, { maxLength: 10 }), fc.boolean()).map(([lines, finalCrlf]) => lines.join('\r\n') + (finalCrlf && lines.length ? '\r\n' : ''));

describe('dotStuff', () => {
  test('table', () => {
    assert.equal(dec(dotStuff(enc('a\r\n.b\r\n..\r\n'))), 'a\r\n..b\r\n...\r\n.\r\n');
    assert.equal(dec(dotStuff(enc('.\r\n'))), '..\r\n.\r\n');
    assert.equal(dec(dotStuff(enc('no final crlf'))), 'no final crlf\r\n.\r\n');
  });

  test('DotReader(dotStuff(c)) gives back c byte for byte (plus the CRLF dotStuff adds)', () => {
    fc.assert(
      fc.property(crlfContent, fc.array(fc.nat(200), { maxLength: 5 }), (c, cuts) => {
        const wire = Buffer.concat(dotStuff(enc(c)));
        const o = read(wire, {}, cuts);
        assert.equal(o.end, wire.length, 'the terminator dotStuff appends is the only end');
        const expected = c.endsWith('\r\n') ? c : c + '\r\n';
        assert.equal(o.content, expected);
        assert.equal(o.bareCr || o.bareLf, false);
        // Nothing in the stuffed body looks like the terminator before the end.
        assert.equal(('\r\n' + wire.toString('latin1')).indexOf('\r\n.\r\n'), wire.length - 3);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('hasBareCrOrLf', () => {
  test('table', () => {
    for (const [s, want] of [['', false], ['a\r\nb\r\n', false], ['\r', true], ['\n', true], ['a\r\r\n', true], ['a\n\r', true], ['\r\n\n', true]] as const) {
      assert.equal(hasBareCrOrLf(enc(s)), want, JSON.stringify(s));
    }
  });

  test('agrees with a regex model', () => {
    fc.assert(
      fc.property(wireString, (w) => {
        assert.equal(hasBareCrOrLf(enc(w)), /\r(?!\n)|(?<!\r)\n/.test(w));
      }),
      { numRuns: 2000 },
    );
  });
});
