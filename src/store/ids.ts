/**
 * Message ids: 16 characters of lower-case Crockford base32, 10 for the millisecond timestamp
 * and 6 for a counter seeded randomly each millisecond.
 *
 * Invariants: ids sort by creation time (lexicographic == chronological across processes to the
 * millisecond); within one process they are strictly increasing, hence unique; across processes
 * a collision needs the same millisecond and the same 30-bit random seed. The writer's UNIQUE
 * constraint is the final guard.
 */
import { randomFillSync } from 'node:crypto';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz';
const RANDOM_SPACE = 2 ** 30;

let lastMs = -1;
let lastPrefix = '';
let counter = 0;

// Random seeds are drawn 256 at a time (one getrandom per 256 new milliseconds, not one each).
const seeds = new Uint32Array(256);
let seedPos = seeds.length;

function randomSeed(): number {
  if (seedPos === seeds.length) {
    randomFillSync(seeds);
    seedPos = 0;
  }
  // Leave headroom so the per-millisecond counter rarely overflows: [0, 2^29).
  return (seeds[seedPos++] as number) % (RANDOM_SPACE / 2);
}

function encode(value: number, length: number): string {
  let out = '';
  let v = value;
  for (let i = 0; i < length; i++) {
    out = ALPHABET.charAt(v % 32) + out;
    v = Math.floor(v / 32);
  }
  return out;
}

export function newMessageId(now: number = Date.now()): string {
  let ms = Math.max(now, lastMs);
  if (ms !== lastMs) {
    lastMs = ms;
    lastPrefix = encode(ms, 10);
    counter = randomSeed();
  } else {
    counter++;
    if (counter >= RANDOM_SPACE) {
      // More than 2^29 ids in one millisecond cannot happen in practice; borrow the next one.
      lastMs = ms = ms + 1;
      lastPrefix = encode(ms, 10);
      counter = 0;
    }
  }
  return lastPrefix + encode(counter, 6);
}

const ID_PATTERN = /^[0-9a-hjkmnp-tv-z]{16}$/;

export function isMessageId(value: string): boolean {
  return ID_PATTERN.test(value);
}
