/**
 * `postseal token create|list|revoke` and `user add --admin` / `user admin` (issue 14): the token
 * is printed once in its documented shape, only its SHA-256 is in the database, names are unique
 * among live tokens, revoke by name or id, and the admin flag round-trips.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { killAll, runCli, tempDirs } from './child.js';

const dirs = tempDirs();
after(() => {
  killAll();
  dirs.cleanup();
});

interface TokenJson {
  id: string;
  name: string;
  createdAt: string;
  lastUsedAt: string | null;
  revoked: boolean;
}

async function list(data: string): Promise<TokenJson[]> {
  const r = await runCli(['token', 'list', '--json', '--data', data]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as TokenJson[];
}

test('token create prints ps_ + 32 bytes base64url once; the database holds its sha256, not the token', async () => {
  const data = dirs.make('postseal-token-');
  const r = await runCli(['token', 'create', '--name', 'ci', '--data', data]);
  assert.equal(r.code, 0, r.stderr);
  const token = r.stdout.trim();
  assert.match(token, /^ps_[A-Za-z0-9_-]{43}$/);
  assert.equal(Buffer.from(token.slice(3), 'base64url').length, 32);
  assert.match(r.stderr, /shown only now/);
  const db = new Database(join(data, 'postseal.db'), { readonly: true });
  try {
    const rows = db.prepare('SELECT name, hash FROM api_tokens').all() as Array<{ name: string; hash: string }>;
    assert.deepEqual(rows, [{ name: 'ci', hash: createHash('sha256').update(token).digest('hex') }]);
    const everything = JSON.stringify(db.prepare('SELECT * FROM api_tokens').all());
    assert.ok(!everything.includes(token.slice(3)), 'the token itself is not stored');
  } finally {
    db.close();
  }
  // list: no secret, no hash.
  const listed = await list(data);
  assert.equal(listed.length, 1);
  assert.deepEqual(Object.keys(listed[0] ?? {}).sort(), ['createdAt', 'id', 'lastUsedAt', 'name', 'revoked']);
  assert.equal(listed[0]?.revoked, false);
  const text = await runCli(['token', 'list', '--data', data]);
  assert.match(text.stdout, /\bci\b.*last used never/);
  assert.ok(!text.stdout.includes(token));
});

test('a live name cannot be used twice (exit 1, TOKEN_EXISTS); revoke by name or id; revoked names can be reused', async () => {
  const data = dirs.make('postseal-token-');
  assert.equal((await runCli(['token', 'create', '--name', 'deploy', '--data', data])).code, 0);
  const dup = await runCli(['token', 'create', '--name', 'deploy', '--data', data]);
  assert.equal(dup.code, 1);
  assert.match(dup.stderr, /TOKEN_EXISTS/);
  assert.equal(dup.stdout, '');
  const rev = await runCli(['token', 'revoke', 'deploy', '--data', data]);
  assert.equal(rev.code, 0, rev.stderr);
  assert.equal((await list(data))[0]?.revoked, true);
  // Revoking again: nothing live by that name.
  assert.equal((await runCli(['token', 'revoke', 'deploy', '--data', data])).code, 1);
  // The name is free again; revoke the new one by its id.
  assert.equal((await runCli(['token', 'create', '--name', 'deploy', '--data', data])).code, 0);
  const live = (await list(data)).find((t) => !t.revoked);
  assert.ok(live !== undefined);
  assert.equal((await runCli(['token', 'revoke', live.id, '--data', data])).code, 0);
  assert.ok((await list(data)).every((t) => t.revoked));
  // A bad name is refused before anything is stored.
  const bad = await runCli(['token', 'create', '--name', 'has space', '--data', data]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /TOKEN_BAD_NAME/);
});

test('user add --admin, user admin ADDRESS [on|off]', async () => {
  const data = dirs.make('postseal-token-');
  assert.equal((await runCli(['user', 'add', 'root@postseal.test', '--admin', '--password-stdin', '--data', data], { input: 'root-password' })).code, 0);
  assert.equal((await runCli(['user', 'add', 'bob@postseal.test', '--password-stdin', '--data', data], { input: 'bob-password' })).code, 0);
  assert.equal((await runCli(['user', 'admin', 'root@postseal.test', '--data', data])).stdout, 'root@postseal.test admin on\n');
  assert.equal((await runCli(['user', 'admin', 'bob@postseal.test', '--data', data])).stdout, 'bob@postseal.test admin off\n');
  assert.equal((await runCli(['user', 'admin', 'bob@postseal.test', 'on', '--data', data])).stdout, 'bob@postseal.test admin on\n');
  assert.equal((await runCli(['user', 'admin', 'root@postseal.test', 'off', '--data', data])).stdout, 'root@postseal.test admin off\n');
  const none = await runCli(['user', 'admin', 'nobody@postseal.test', 'on', '--data', data]);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /no user nobody@postseal\.test/);
  assert.equal((await runCli(['user', 'admin', 'bob@postseal.test', 'maybe', '--data', data])).code, 2);
});
