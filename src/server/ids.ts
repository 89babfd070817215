/**
 * Queue ids: short, unique, and sortable by time (base32 of milliseconds + a counter + random),
 * so logs, Received headers and the store name a message the same way.
 */
import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'; // Crockford base32
let lastMs = 0;
let counter = 0;
let pool = randomBytes(256);
let poolPos = 0;

function b32(n: number, width: number): string {
  let s = '';
  for (let i = 0; i < width; i++) {
    s = (ALPHABET[n % 32] ?? '0') + s;
    n = Math.floor(n / 32);
  }
  return s;
}

export function newQueueId(now = Date.now()): string {
  if (now === lastMs) counter++;
  else {
    lastMs = now;
    counter = 0;
  }
  if (poolPos + 3 > pool.length) {
    pool = randomBytes(256);
    poolPos = 0;
  }
  const r = ((pool[poolPos] ?? 0) << 16) | ((pool[poolPos + 1] ?? 0) << 8) | (pool[poolPos + 2] ?? 0);
  poolPos += 3;
  return b32(now, 9) + b32(counter % 1024, 2) + b32(r, 5);
}
