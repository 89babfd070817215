/** docs/config.md is generated from the schema: this fails when the committed file is stale. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { configReference } from '../../src/config/reference.js';
import { serveFlags } from '../../src/config.js';

const file = new URL('../../docs/config.md', import.meta.url);

test('docs/config.md is the reference the schema generates', () => {
  const committed = readFileSync(file, 'utf8');
  assert.ok(
    committed === configReference(),
    'docs/config.md is out of date: run `node --import tsx scripts/config-reference.ts > docs/config.md` and commit it',
  );
});

test('the reference names every flag of serve once', () => {
  const committed = readFileSync(file, 'utf8');
  for (const f of serveFlags()) {
    const hits = committed.split('\n').filter((line) => line.includes(`| \`${f.spec.name} `) || line.includes(`| \`${f.spec.name}\` |`)).length;
    assert.equal(hits, 1, `${f.spec.name} appears ${hits} times in docs/config.md`);
  }
});
