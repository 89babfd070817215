/**
 * Password hashing with scrypt (node:crypto). Stored form: `scrypt$N$r$p$saltB64$hashB64`, so the
 * parameters travel with each hash and can be raised later without breaking old hashes.
 *
 * Invariants: a fresh 16-byte random salt per hash; comparison with timingSafeEqual; scrypt runs
 * on the libuv pool (async), never on the event loop; verifying against no user costs the same
 * scrypt work as a real check. Passwords are never logged or put into error messages.
 */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

const DEFAULT = { N: 16384, r: 8, p: 1 } as const;
const KEY_LEN = 32;
const SALT_LEN = 16;

interface ScryptParams {
  N: number;
  r: number;
  p: number;
}

function derive(password: string, salt: Buffer, params: ScryptParams, keyLen: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const maxmem = 256 * params.N * params.r + 1024 * 1024;
    scrypt(password.normalize('NFC'), salt, keyLen, { ...params, maxmem }, (err, key) => {
      if (err) reject(err);
      else resolve(key);
    });
  });
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(SALT_LEN);
  const key = await derive(password, salt, DEFAULT, KEY_LEN);
  return ['scrypt', DEFAULT.N, DEFAULT.r, DEFAULT.p, salt.toString('base64'), key.toString('base64')].join('$');
}

interface ParsedHash extends ScryptParams {
  salt: Buffer;
  key: Buffer;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 1 && (n & (n - 1)) === 0;
}

function parseHash(stored: string): ParsedHash | null {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return null;
  const [N, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  // Bound the parameters so a corrupted row cannot make one login allocate gigabytes.
  if (!isPowerOfTwo(N) || N > 2 ** 20 || !Number.isInteger(r) || r < 1 || r > 32 || !Number.isInteger(p) || p < 1 || p > 16) {
    return null;
  }
  const salt = Buffer.from(parts[4] ?? '', 'base64');
  const key = Buffer.from(parts[5] ?? '', 'base64');
  if (salt.length < 8 || key.length < 16) return null;
  return { N, r, p, salt, key };
}

// Used when the user does not exist (or the row is unusable): same default cost, result discarded.
const DUMMY_SALT = randomBytes(SALT_LEN);

/** `stored` null means "no such user": the work is spent anyway and the answer is false. */
export async function verifyPassword(password: string, stored: string | null): Promise<boolean> {
  const parsed = stored === null ? null : parseHash(stored);
  if (parsed === null) {
    const key = await derive(password, DUMMY_SALT, DEFAULT, KEY_LEN);
    timingSafeEqual(key, key);
    return false;
  }
  const key = await derive(password, parsed.salt, parsed, parsed.key.length);
  return timingSafeEqual(key, parsed.key);
}
