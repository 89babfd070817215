/**
 * DotReader.feed on the bench's bulk body (1 MiB of 76-character lines, CRLF) delivered in 16 KiB
 * pieces as TLS records arrive. Prints ms per MiB (best of --rounds after warm-up).
 *   node --import tsx bench/micro-dot.ts [--rounds 20] [--mib 16]
 */
import { DotReader } from '../src/protocol/data.js';

/** The loadgen's body (bench/loadgen.ts makeBody; importing that file would start a run). */
function makeBody(size: number): Buffer {
  const head = 'From: <bench@example.com>\r\nTo: <bench@localhost>\r\nSubject: postseal bench\r\nMessage-ID: <bench@example.com>\r\n\r\n';
  const parts: string[] = [head];
  let len = head.length;
  const line = 'x'.repeat(76) + '\r\n';
  while (len + line.length <= size) {
    parts.push(line);
    len += line.length;
  }
  if (size - len >= 3) {
    parts.push('y'.repeat(size - len - 2) + '\r\n');
    len = size;
  }
  return Buffer.from(parts.join('') + '.\r\n', 'latin1');
}

const argv = process.argv.slice(2);
const opt = (k: string, d: number): number => {
  const i = argv.indexOf(k);
  return i >= 0 ? Number(argv[i + 1]) : d;
};
const rounds = opt('--rounds', 20);
const mib = opt('--mib', 16);
const body = makeBody(1024 * 1024);
const pieces: Buffer[] = [];
for (let o = 0; o < body.length; o += 16384) pieces.push(Buffer.from(body.subarray(o, Math.min(body.length, o + 16384))));

function once(): number {
  const t = process.hrtime.bigint();
  for (let m = 0; m < mib; m++) {
    const r = new DotReader({ maxSize: 35 * 1024 * 1024, normalize: false });
    for (const p of pieces) {
      const e = r.feed(p, 0, p.length);
      if (e >= 0) break;
    }
    if (!r.done || r.bareCr || r.bareLf) throw new Error('bad read');
  }
  return Number(process.hrtime.bigint() - t) / 1e6 / mib;
}

for (let i = 0; i < 5; i++) once();
const times: number[] = [];
for (let i = 0; i < rounds; i++) times.push(once());
times.sort((a, b) => a - b);
process.stdout.write(JSON.stringify({ bench: 'DotReader.feed 1 MiB in 16 KiB pieces', bestMsPerMiB: times[0], medianMsPerMiB: times[Math.floor(times.length / 2)] }) + '\n');
