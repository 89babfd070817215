/**
 * Error codes are a closed list (src/errors.ts ERROR_CODES): this reads src/ for the code
 * literals errors are made with — `new SomethingError('CODE'` and `code: 'CODE'` —
 * and fails on any that is not in the list, so a new code is added to the list (and documented
 * there) before it is used. The compiler checks the same for PostsealError's constructor; this
 * also covers codes attached to plain objects and errors made elsewhere.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ERROR_CODES } from '../../src/errors.js';
import { CLIENT_ERROR_CODES } from '../../src/client/errors.js';

const srcDir = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');

/**
 * `code` literals in src/ that are not postseal error codes, each with its reason.
 * ENOTFOUND, ENODATA: Node's resolver error codes. policy/dns.ts answers mailauth's resolver
 * callback with them (what mailauth tests for), and policy/decide.ts feeds the AD-aware DNS
 * client's answers to client/resolver.ts's MX routine in the same terms node:dns would use.
 * ETIMEOUT: Node's resolver timeout code; auth/verify.ts gives it to mailauth for a DNS question
 * past auth.dnsTimeoutMs (mailauth maps exactly that code to SPF temperror).
 */
const NOT_OURS = new Set(['ENOTFOUND', 'ENODATA', 'ETIMEOUT']);

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.ts')) out.push(p);
  }
  return out;
}

const PATTERNS = [/new [A-Za-z]*Error\(\s*'([A-Z][A-Z0-9_]*)'/g, /\bcode:\s*'([A-Z][A-Z0-9_]*)'/g];

test('every error code used in src/ is in ERROR_CODES', () => {
  const known = new Set<string>(ERROR_CODES);
  const unknown: string[] = [];
  let seen = 0;
  for (const f of walk(srcDir)) {
    const text = readFileSync(f, 'utf8');
    for (const re of PATTERNS) {
      for (const m of text.matchAll(re)) {
        const code = m[1] ?? '';
        seen++;
        if (!known.has(code) && !NOT_OURS.has(code)) unknown.push(`${relative(srcDir, f)}: ${code}`);
      }
    }
  }
  assert.ok(seen > 50, `the patterns found only ${seen} codes: are they still right?`);
  assert.deepEqual(unknown, []);
});

test('ERROR_CODES has no duplicate and holds every client code', () => {
  assert.equal(new Set(ERROR_CODES).size, ERROR_CODES.length);
  const all = new Set<string>(ERROR_CODES);
  assert.deepEqual(CLIENT_ERROR_CODES.filter((c) => !all.has(c)), []);
});
