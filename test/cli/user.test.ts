/**
 * `postseal user add|list|remove|senders`: scrypt hashes in the store, never the
 * password; AUTH against a server on that data directory works, and stops working on removal.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { issueCert, makeTestCa, writeKeyPair } from '../helpers/certs.js';
import { WireClient } from '../helpers/wire.js';
import { killAll, runCli, startServeChild, startTlsSession, tempDirs } from './child.js';

const dirs = tempDirs();
after(() => {
  killAll();
  dirs.cleanup();
});

const PASSWORD = 'correct horse battery staple 42';

function plain(user: string, pass: string): string {
  return Buffer.from(`\u0000${user}\u0000${pass}`).toString('base64');
}

test('user add/list/remove, scrypt hash stored, AUTH works against a server on the data dir', { timeout: 120_000 }, async () => {
  const dataDir = dirs.make('postseal-user-');

  const added = await runCli(['user', 'add', 'alice@postseal.test', '--password-stdin', '--data', dataDir], { input: PASSWORD + '\n' });
  assert.equal(added.code, 0, added.stderr);
  assert.equal(added.stdout, 'added alice@postseal.test\n');
  assert.ok(!added.stdout.includes(PASSWORD) && !added.stderr.includes(PASSWORD));
  const bob = await runCli(['user', 'add', 'Bob@Postseal.test', '--password-stdin', '--data', dataDir], { input: 'another password\n' });
  assert.equal(bob.code, 0, bob.stderr);

  // Refusals: duplicate, short password, not an address, no terminal to prompt on.
  const dup = await runCli(['user', 'add', 'alice@postseal.test', '--password-stdin', '--data', dataDir], { input: 'whatever123\n' });
  assert.notEqual(dup.code, 0);
  assert.match(dup.stderr, /USER_EXISTS|exists/i);
  const short = await runCli(['user', 'add', 'carol@postseal.test', '--password-stdin', '--data', dataDir], { input: 'short\n' });
  assert.equal(short.code, 2, short.stderr);
  assert.match(short.stderr, /at least 8/);
  const notAddress = await runCli(['user', 'add', 'not an address', '--password-stdin', '--data', dataDir], { input: 'long enough password\n' });
  assert.equal(notAddress.code, 2, notAddress.stderr);
  const noTty = await runCli(['user', 'add', 'dave@postseal.test', '--data', dataDir]);
  assert.notEqual(noTty.code, 0);
  assert.match(noTty.stderr, /--password-stdin/);

  const list = await runCli(['user', 'list', '--data', dataDir]);
  assert.equal(list.code, 0, list.stderr);
  assert.deepEqual(list.stdout.trim().split('\n').sort(), ['alice@postseal.test', 'bob@postseal.test']);

  // The store holds a scrypt hash, not the password (nor its base64).
  const db = new Database(join(dataDir, 'postseal.db'), { readonly: true });
  try {
    const hash = db.prepare('SELECT password_hash FROM users WHERE address = ?').pluck().get('alice@postseal.test');
    assert.equal(typeof hash, 'string');
    assert.match(String(hash), /^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    assert.ok(!String(hash).includes(PASSWORD));
    assert.ok(!String(hash).includes(Buffer.from(PASSWORD).toString('base64')));
  } finally {
    db.close();
  }

  // A server on that data directory accepts the password on submission (STARTTLS) and
  // submissions (implicit TLS), and refuses a wrong one.
  const ca = await makeTestCa();
  const { certFile, keyFile } = await writeKeyPair(join(dataDir, 'certs'), await issueCert(ca, { names: ['localhost'] }));
  const server = await startServeChild(
    ['--data', dataDir, '--mx', 'off', '--submission', '127.0.0.1:0', '--submissions', '127.0.0.1:0', '--cert', certFile, '--key', keyFile, '--domain', 'postseal.test'],
    { listeners: 2 },
  );
  const sub = (await startTlsSession(server.port('submission'), { ca: ca.certPem })).c;
  assert.deepEqual(await sub.cmd(`AUTH PLAIN ${plain('alice@postseal.test', 'wrong password')}`), ['535 5.7.8 Authentication credentials invalid']);
  assert.deepEqual(await sub.cmd(`AUTH PLAIN ${plain('alice@postseal.test', PASSWORD)}`), ['235 2.7.0 Authentication successful']);
  assert.match((await sub.cmd('MAIL FROM:<alice@postseal.test>'))[0] ?? '', /^250 /);
  assert.match((await sub.cmd('RCPT TO:<someone@elsewhere.example>'))[0] ?? '', /^250 /);
  sub.close();

  const implicit = await WireClient.connectTls(server.port('submissions'), ca.certPem);
  assert.match((await implicit.readReply())[0] ?? '', /^220 /);
  await implicit.cmd('EHLO client.test');
  assert.deepEqual(await implicit.cmd('AUTH LOGIN'), ['334 VXNlcm5hbWU6']);
  assert.deepEqual(await implicit.cmd(Buffer.from('bob@postseal.test').toString('base64')), ['334 UGFzc3dvcmQ6']);
  assert.deepEqual(await implicit.cmd(Buffer.from('another password').toString('base64')), ['235 2.7.0 Authentication successful']);
  implicit.close();

  // Removal applies to the running server.
  const removed = await runCli(['user', 'remove', 'alice@postseal.test', '--data', dataDir]);
  assert.equal(removed.code, 0, removed.stderr);
  assert.equal(removed.stdout, 'removed alice@postseal.test\n');
  const again = (await startTlsSession(server.port('submission'), { ca: ca.certPem })).c;
  assert.deepEqual(await again.cmd(`AUTH PLAIN ${plain('alice@postseal.test', PASSWORD)}`), ['535 5.7.8 Authentication credentials invalid']);
  again.close();
  const missing = await runCli(['user', 'remove', 'alice@postseal.test', '--data', dataDir]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no user/);
  assert.equal((await runCli(['user', 'list', '--data', dataDir])).stdout, 'bob@postseal.test\n');

  server.signal('SIGTERM');
  assert.deepEqual(await server.waitExit(), { code: 0, signal: null });
  assert.ok(!server.stderr().includes(PASSWORD), 'the password is in the server log');
});

test('user add --sender and user senders: the patterns a running serve checks MAIL FROM against; unknown local users refused', { timeout: 120_000 }, async () => {
  const dataDir = dirs.make('postseal-senders-');
  const added = await runCli(['user', 'add', 'alice@postseal.test', '--sender', '*@Example.org', '--sender', 'sales@example.net', '--password-stdin', '--data', dataDir], { input: PASSWORD + '\n' });
  assert.equal(added.code, 0, added.stderr);
  assert.equal((await runCli(['user', 'senders', 'alice@postseal.test', '--data', dataDir])).stdout, '*@example.org\nsales@example.net\n');
  const edited = await runCli(['user', 'senders', 'alice@postseal.test', '--add', 'ceo@example.com', '--remove', '*@example.org', '--data', dataDir]);
  assert.equal(edited.code, 0, edited.stderr);
  assert.equal(edited.stdout, 'ceo@example.com\nsales@example.net\n');
  const bad = await runCli(['user', 'senders', 'alice@postseal.test', '--add', '*.example.org', '--data', dataDir]);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /\*\.example\.org/);
  const nobody = await runCli(['user', 'senders', 'nobody@postseal.test', '--add', 'x@example.org', '--data', dataDir]);
  assert.equal(nobody.code, 1);
  assert.match(nobody.stderr, /no user/);

  const ca = await makeTestCa();
  const { certFile, keyFile } = await writeKeyPair(join(dataDir, 'certs'), await issueCert(ca, { names: ['localhost'] }));
  const server = await startServeChild(
    ['--data', dataDir, '--mx', '127.0.0.1:0', '--submission', '127.0.0.1:0', '--submissions', 'off', '--cert', certFile, '--key', keyFile, '--domain', 'postseal.test'],
    { listeners: 2 },
  );
  const sub = (await startTlsSession(server.port('submission'), { ca: ca.certPem })).c;
  assert.deepEqual(await sub.cmd(`AUTH PLAIN ${plain('alice@postseal.test', PASSWORD)}`), ['235 2.7.0 Authentication successful']);
  assert.deepEqual(await sub.cmd('MAIL FROM:<ceo@bank.example>'), ['553 5.7.1 Sender address rejected: not owned by user alice@postseal.test']);
  assert.match((await sub.cmd('MAIL FROM:<Sales@example.net>'))[0] ?? '', /^250 /);
  sub.close();
  // serve without --catch-all: the store's users are the local recipients.
  const mx = await WireClient.connect(server.port('mx'));
  assert.match((await mx.readReply())[0] ?? '', /^220 /);
  await mx.cmd('EHLO client.test');
  assert.match((await mx.cmd('MAIL FROM:<>'))[0] ?? '', /^250 /);
  assert.deepEqual(await mx.cmd('RCPT TO:<bob@postseal.test>'), ['550 5.1.1 <bob@postseal.test>: Recipient address rejected: User unknown']);
  assert.match((await mx.cmd('RCPT TO:<alice@postseal.test>'))[0] ?? '', /^250 /);
  assert.match((await mx.cmd('RCPT TO:<postmaster>'))[0] ?? '', /^250 /);
  mx.close();
  server.signal('SIGTERM');
  assert.deepEqual(await server.waitExit(), { code: 0, signal: null });
});
