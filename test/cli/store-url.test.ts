/**
 * `--store URL` and `POSTSEAL_STORE` (issue 13): the CLI commands that read or write the store
 * work against PostgreSQL (a private cluster, test/helpers/postgres.ts), the spec parser refuses
 * a URL with a password (saying where the password goes, never echoing it) and unknown schemes,
 * `store migrate` prints the versions, and serve runs on a PostgreSQL store, logging its node and
 * the store without credentials.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { openPgStore } from '../../src/store/pg/pg-store.js';
import { PG_SCHEMA_VERSION } from '../../src/store/pg/schema.js';
import { parseStoreSpec, describeStore } from '../../src/store/spec.js';
import { PostsealError } from '../../src/errors.js';
import { usePostgres } from '../helpers/postgres.js';
import { makeMessage } from '../store/helpers.js';
import { killAll, mxOnly, queuedId, runCli, sendMessage, startServeChild, tempDirs } from './child.js';
import { WireClient } from '../helpers/wire.js';

const dirs = tempDirs();
const { skip, cluster } = usePostgres({ fsync: false, closeFirst: killAll });
after(() => dirs.cleanup());

const PASSWORD = 'correct horse battery staple 42';

test('the spec parser: data dir, sqlite:DIR, postgres URLs; refusals name the rule and never echo a password', () => {
  assert.deepEqual(parseStoreSpec('./postseal-data'), { kind: 'sqlite', dir: './postseal-data' });
  assert.deepEqual(parseStoreSpec('/var/lib/postseal'), { kind: 'sqlite', dir: '/var/lib/postseal' });
  assert.deepEqual(parseStoreSpec('sqlite:/var/lib/postseal'), { kind: 'sqlite', dir: '/var/lib/postseal' });
  assert.deepEqual(parseStoreSpec('postgres://mail@db.example:5432/postseal'), { kind: 'postgres', url: 'postgres://mail@db.example:5432/postseal' });
  assert.deepEqual(parseStoreSpec('postgresql://mail@db.example/postseal'), { kind: 'postgres', url: 'postgresql://mail@db.example/postseal' });
  assert.equal(describeStore(parseStoreSpec('postgres://mail@db.example:5432/postseal?sslmode=require')), 'postgres://mail@db.example:5432/postseal');
  const refused = (text: string, pattern: RegExp): void => {
    assert.throws(
      () => parseStoreSpec(text),
      (err: unknown) => err instanceof PostsealError && err.code === 'STORE_BAD_URL' && pattern.test(err.message) && !err.message.includes('s3cret'),
      text,
    );
  };
  refused('postgres://mail:s3cret@db.example/postseal', /PGPASSWORD.*store\.passwordFile/);
  refused('postgres://mail@db.example/postseal?password=s3cret', /must not carry a password/);
  refused('postgres://mail@db.example/postseal?sslpassword=s3cret', /must not carry a password/);
  refused('mysql://mail@db.example/postseal', /unknown store "mysql:"/);
  refused('sqlite:', /needs a directory/);
  refused('sqlite:///var/lib/x', /not a URL/);
  refused('postgres:db', /postgres:\/\/USER@HOST:PORT\/DB/);
  refused('', /empty store/);
});

test('user add via --store, user list via POSTSEAL_STORE; senders and admin read back through the PG replica', { skip, timeout: 120_000 }, async () => {
  const url = await cluster.createDatabase('cli');
  const added = await runCli(['user', 'add', 'bob@example.test', '--password-stdin', '--sender', '*@example.test', '--store', url], { input: PASSWORD + '\n' });
  assert.equal(added.code, 0, added.stderr);
  assert.equal(added.stdout, 'added bob@example.test\n');

  const list = await runCli(['user', 'list'], { env: { POSTSEAL_STORE: url } });
  assert.equal(list.code, 0, list.stderr);
  assert.equal(list.stdout, 'bob@example.test\n');

  // Synchronous address reads (senderPatterns, hasUser) answered by the PostgreSQL store's replica.
  const senders = await runCli(['user', 'senders', 'bob@example.test', '--add', 'bob@other.test', '--store', url]);
  assert.equal(senders.code, 0, senders.stderr);
  assert.deepEqual(senders.stdout.trim().split('\n'), ['*@example.test', 'bob@other.test']);
  const admin = await runCli(['user', 'admin', 'bob@example.test', 'on'], { env: { POSTSEAL_STORE: url } });
  assert.equal(admin.code, 0, admin.stderr);
  assert.equal(admin.stdout, 'bob@example.test admin on\n');
  const nobody = await runCli(['user', 'senders', 'nobody@example.test', '--store', url]);
  assert.equal(nobody.code, 1);
  assert.match(nobody.stderr, /no user nobody@example.test/);

  // The password hash landed in PostgreSQL: the store verifies it.
  const store = await openPgStore(url, { nodeId: 'test-reader', spoolDir: dirs.make('postseal-spool-'), readOnly: true });
  try {
    assert.equal(await store.verifyUser('bob@example.test', PASSWORD), true);
    assert.equal(await store.verifyUser('bob@example.test', 'wrong password'), false);
  } finally {
    await store.close();
  }

  // alias and token through the environment too; --data beats POSTSEAL_STORE (an explicit flag).
  const alias = await runCli(['alias', 'add', 'info@example.test', 'bob@example.test'], { env: { POSTSEAL_STORE: url } });
  assert.equal(alias.code, 0, alias.stderr);
  const aliases = await runCli(['alias', 'list', '--store', url]);
  assert.equal(aliases.stdout, 'info@example.test -> bob@example.test\n');
  const token = await runCli(['token', 'create', '--name', 'ci'], { env: { POSTSEAL_STORE: url } });
  assert.equal(token.code, 0, token.stderr);
  const tokens = await runCli(['token', 'list', '--json', '--store', url]);
  assert.deepEqual((JSON.parse(tokens.stdout) as Array<{ name: string }>).map((t) => t.name), ['ci']);
  const dataDir = dirs.make('postseal-sqlite-');
  const local = await runCli(['user', 'list', '--data', dataDir], { env: { POSTSEAL_STORE: url } });
  assert.equal(local.code, 1, 'an empty data directory has no store to read');
  assert.match(local.stderr, /STORE_NOT_FOUND/);
});

test('queue list, queue show and mailbox list/show against PostgreSQL', { skip, timeout: 120_000 }, async () => {
  const url = await cluster.createDatabase('queue');
  const store = await openPgStore(url, { nodeId: 'test-writer', spoolDir: dirs.make('postseal-spool-') });
  const local = makeMessage({ localRecipients: ['alice@example.test'], data: Buffer.from('Subject: for alice\r\n\r\nhello alice\r\n') });
  const remote = makeMessage({ localRecipients: [], remoteRecipients: ['carol@remote.example'], data: Buffer.from('Subject: out\r\n\r\nbye\r\n') });
  let remoteId: string;
  let localId: string;
  try {
    localId = (await store.accept(local)).id;
    remoteId = (await store.accept(remote)).id;
    const [claimed] = await store.claimDue(new Date(Date.now() + 1000), 10);
    assert.equal(claimed?.id, remoteId);
    assert.equal(await store.recordAttempt({ id: remoteId, recipient: 'carol@remote.example', tls: null, outcome: 'deferred', error: '451 4.7.1 try later', nextAttemptAt: new Date(Date.now() + 3_600_000) }), true);
  } finally {
    await store.close();
  }

  const queue = await runCli(['queue', 'list', '--store', url]);
  assert.equal(queue.code, 0, queue.stderr);
  assert.match(queue.stdout, new RegExp(`^${remoteId}  deferred  <sender@example.net> -> <carol@remote.example>  attempts=1 .*last: 451 4\\.7\\.1 try later`, 'm'));
  const show = await runCli(['queue', 'show', remoteId], { env: { POSTSEAL_STORE: url } });
  assert.equal(show.code, 0, show.stderr);
  assert.match(show.stdout, /attempts:\n.*<carol@remote\.example>  deferred by test-writer  451 4\.7\.1 try later/, "the attempt names the node that made it");

  const mailbox = await runCli(['mailbox', 'list', '--store', url]);
  assert.equal(mailbox.code, 0, mailbox.stderr);
  assert.match(mailbox.stdout, new RegExp(`^${localId}  .*to <alice@example.test>`, 'm'));
  assert.doesNotMatch(mailbox.stdout, new RegExp(remoteId), 'relayed-only mail is not in the mailbox list');
  const body = await runCli(['mailbox', 'show', localId, '--store', url]);
  assert.equal(body.stdout, 'Subject: for alice\r\n\r\nhello alice\r\n');
});

test('a URL with a password is refused by every entry point, saying where the password goes', { skip, timeout: 120_000 }, async () => {
  const withPassword = cluster.url('postgres').replace('postgres@', 'postgres:s3cret@');
  for (const [args, env] of [
    [['user', 'list', '--store', withPassword], {}],
    [['queue', 'list'], { POSTSEAL_STORE: withPassword }],
    [['store', 'migrate', '--store', withPassword], {}],
  ] as const) {
    const r = await runCli([...args], { env });
    assert.equal(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /STORE_BAD_URL: .*must not carry a password.*PGPASSWORD/, args.join(' '));
    assert.ok(!r.stderr.includes('s3cret'), 'the password is not echoed');
  }
  // serve: a config error (exit 2) naming store.url, before anything opens.
  const data = dirs.make('postseal-serve-');
  const serve = await runCli(['serve', ...mxOnly(data), '--store', withPassword]);
  assert.equal(serve.code, 2, serve.stderr);
  assert.match(serve.stderr, /store\.url: .*must not carry a password.*PGPASSWORD/);
  assert.ok(!serve.stderr.includes('s3cret'));
  const unknown = await runCli(['queue', 'list', '--store', 'mysql://db/x']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /STORE_BAD_URL: --store: unknown store "mysql:"/);
});

test('store migrate on a fresh database prints the versions; again: up to date', { skip, timeout: 120_000 }, async () => {
  const url = await cluster.createDatabase('migrate');
  const where = describeStore(parseStoreSpec(url));
  const first = await runCli(['store', 'migrate', '--store', url]);
  assert.equal(first.code, 0, first.stderr);
  assert.equal(first.stdout, `${where}: schema version 0 -> ${PG_SCHEMA_VERSION}\n`);
  const again = await runCli(['store', 'migrate'], { env: { POSTSEAL_STORE: url } });
  assert.equal(again.stdout, `${where}: schema version ${PG_SCHEMA_VERSION}, up to date\n`);
  // SQLite too: a new data directory is created at the current version.
  const dir = dirs.make('postseal-migrate-');
  const sqlite = await runCli(['store', 'migrate', '--data', join(dir, 'data')]);
  assert.equal(sqlite.code, 0, sqlite.stderr);
  assert.match(sqlite.stdout, /^sqlite:.*: schema version 0 -> \d+\n$/);
});

test('serve on a PostgreSQL store: logs its node and the store without credentials; mail lands in PG', { skip, timeout: 120_000 }, async () => {
  const url = await cluster.createDatabase('serve');
  const data = dirs.make('postseal-node-');
  const added = await runCli(['user', 'add', 'dave@example.test', '--password-stdin', '--store', url], { input: PASSWORD + '\n' });
  assert.equal(added.code, 0, added.stderr);
  const server = await startServeChild(mxOnly(data, ['--domain', 'example.test', '--no-relay']), { env: { POSTSEAL_STORE: url } });
  const log = await server.waitForLog((l) => l.event === 'store');
  assert.equal(log.store, describeStore(parseStoreSpec(url)));
  assert.match(String(log.node), new RegExp(`^${hostname().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-\\d+$`));
  const c = await WireClient.connect(server.port('mx'));
  await c.readReply();
  await c.cmd('EHLO client.test');
  const reply = await sendMessage(c, 'someone@elsewhere.example', 'dave@example.test', 'Subject: via pg\r\n\r\nstored in postgres\r\n');
  c.close();
  const id = queuedId(reply);
  assert.ok(id !== null, reply);
  // The user the CLI added is a recipient the server knows (replica), and the mail is in PostgreSQL.
  const list = await runCli(['mailbox', 'list', '--store', url]);
  assert.match(list.stdout, new RegExp(`^${id}  .*to <dave@example.test>`, 'm'));
  // No owner lock with PostgreSQL (several nodes share the store): no serve.pid in the node's data dir.
  assert.equal(existsSync(join(data, 'serve.pid')), false);
  server.signal('SIGTERM');
  assert.equal((await server.waitExit()).code, 0);
});
