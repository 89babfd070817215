/**
 * The `postseal` command line contract: --help, one `listening …` line per
 * listener, --mx-tls, and config errors refused at start with exit status 2 and a message naming
 * the bad key or value.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { WireClient } from '../helpers/wire.js';
import { killAll, mxOnly, runCli, startServeChild, tempDirs, type CliResult } from './child.js';

const dirs = tempDirs();
after(() => {
  killAll();
  dirs.cleanup();
});

test('postseal --help exits 0 and names the commands', async () => {
  const r = await runCli(['--help']);
  assert.equal(r.code, 0, r.stderr);
  for (const word of ['serve', 'mailbox', 'user']) assert.match(r.stdout, new RegExp(`\\b${word}\\b`));
  const serve = await runCli(['serve', '--help']);
  assert.equal(serve.code, 0, serve.stderr);
  for (const flag of ['--config', '--data', '--hostname', '--mx', '--submission', '--submissions', '--mx-tls', '--cert', '--key', '--domain']) {
    assert.ok(serve.stdout.includes(flag), `serve --help does not mention ${flag}`);
  }
});

test('an unknown command or flag is a usage error (exit 2)', async () => {
  assert.equal((await runCli(['frobnicate'])).code, 2);
  assert.equal((await runCli(['serve', '--no-such-flag'])).code, 2);
});

test('serve prints one listening line per listener, with its TLS level', { timeout: 60_000 }, async () => {
  const dataDir = dirs.make();
  const server = await startServeChild(
    ['--data', dataDir, '--mx', '127.0.0.1:0', '--submission', '127.0.0.1:0', '--submissions', '127.0.0.1:0', '--log-level', 'silent'],
    { listeners: 3 },
  );
  assert.deepEqual(
    server.listening.map((l) => [l.name, l.host, l.tls]),
    [
      ['mx', '127.0.0.1', 'may'],
      ['submission', '127.0.0.1', 'encrypt'],
      ['submissions', '127.0.0.1', 'implicit'],
    ],
  );
  const ports = server.listening.map((l) => l.port);
  assert.ok(ports.every((p) => p > 0));
  assert.equal(new Set(ports).size, 3);
  assert.equal(server.stdout().split('\n').filter((l) => l !== '').length, 3, server.stdout());
  server.signal('SIGTERM');
  assert.deepEqual(await server.waitExit(), { code: 0, signal: null });
});

test('--mx-tls encrypt applies: 530 before STARTTLS', { timeout: 60_000 }, async () => {
  const dataDir = dirs.make();
  const server = await startServeChild(mxOnly(dataDir, ['--mx-tls', 'encrypt']));
  assert.equal(server.listening[0]?.tls, 'encrypt');
  const c = await WireClient.connect(server.port('mx'));
  assert.match((await c.readReply())[0] ?? '', /^220 /);
  const ehlo = await c.cmd('EHLO client.test');
  assert.ok(ehlo.includes('250-STARTTLS') || ehlo.includes('250 STARTTLS'), ehlo.join(' | '));
  assert.deepEqual(await c.cmd('MAIL FROM:<a@client.test>'), ['530 5.7.0 Must issue a STARTTLS command first']);
  c.close();
  server.signal('SIGTERM');
  assert.deepEqual(await server.waitExit(), { code: 0, signal: null });
});

test('a config file sets the listeners; flags override it', { timeout: 60_000 }, async () => {
  const dataDir = dirs.make();
  const config = join(dataDir, 'postseal.json');
  writeFileSync(
    config,
    JSON.stringify({
      hostname: 'mx.postseal.test',
      listeners: { mx: { address: '127.0.0.1:0', tls: 'none' }, submission: 'off', submissions: 'off' },
      log: { level: 'silent' },
    }),
  );
  const server = await startServeChild(['--config', config, '--data', dataDir]);
  assert.deepEqual(server.listening.map((l) => [l.name, l.tls]), [['mx', 'none']]);
  const c = await WireClient.connect(server.port('mx'));
  assert.deepEqual(await c.readReply(), ['220 mx.postseal.test ESMTP postseal']);
  assert.ok(!(await c.cmd('EHLO client.test')).some((l) => l.includes('STARTTLS')));
  c.close();
  server.signal('SIGTERM');
  assert.deepEqual(await server.waitExit(), { code: 0, signal: null });

  const overridden = await startServeChild(['--config', config, '--data', dataDir, '--mx-tls', 'may']);
  assert.deepEqual(overridden.listening.map((l) => [l.name, l.tls]), [['mx', 'may']]);
  overridden.signal('SIGTERM');
  assert.deepEqual(await overridden.waitExit(), { code: 0, signal: null });
});

const BAD_CONFIGS: Array<[string, unknown, RegExp]> = [
  ['bad listener TLS level', { listeners: { mx: { tls: 'maybe' } } }, /listeners\.mx\.tls/],
  ['unknown listener key', { listeners: { mx: { tsl: 'may' } } }, /listeners\.mx\.tsl/],
  ['unknown top-level key', { hostnmae: 'x' }, /hostnmae/],
  ['unknown listener name', { listeners: { smtp: 'off' } }, /listeners\.smtp/],
  ['bad address', { listeners: { mx: { address: '127.0.0.1' } } }, /listeners\.mx\.address/],
  ['bad auth mode', { listeners: { submission: { auth: 'sometimes' } } }, /listeners\.submission\.auth/],
  ['recipient limit under RFC 5321 floor', { limits: { maxRecipients: 5 } }, /limits\.maxRecipients/],
  ['negative limit', { limits: { maxConnections: -1 } }, /limits\.maxConnections/],
  ['unknown limit', { limits: { maxFoo: 1 } }, /limits\.maxFoo/],
  ['bad log level', { log: { level: 'loud' } }, /log\.level/],
  ['bad TLS floor', { tls: { minVersion: 'SSLv3' } }, /tls\.minVersion/],
  ['unknown key in limits.auth', { limits: { auth: { maxFailures: 5, maxx: 3 } } }, /limits\.auth\.maxx/],
  ['negative limits.auth.maxFailures', { limits: { auth: { maxFailures: -1 } } }, /limits\.auth\.maxFailures/],
  ['IPv4 prefix over 32', { limits: { auth: { ipv4Prefix: 33 } } }, /limits\.auth\.ipv4Prefix/],
  ['auth delay ceiling under the first delay', { limits: { auth: { delayMs: 5000, maxDelayMs: 1000 } } }, /limits\.auth\.maxDelayMs/],
  ['the replaced limits.authFailures', { limits: { authFailures: { max: 5, windowMs: 1000 } } }, /limits\.authFailures was replaced by limits\.auth/],
  ['catchAll not a boolean', { recipients: { catchAll: 'yes' } }, /recipients\.catchAll/],
  ['unknown key in received', { received: { showAuthSender: false } }, /received\.showAuthSender/],
  ['zero handshake timeout', { limits: { handshakeTimeoutMs: 0 } }, /limits\.handshakeTimeoutMs/],
  ['zero connection limit', { limits: { maxConnections: 0 } }, /limits\.maxConnections/],
  ['certificate without key', { tls: { cert: '/nonexistent/cert.pem' } }, /tls\.key/],
  ['bad hostname', { hostname: 'bad host' }, /hostname/],
  ['bad domain list', { domains: 'postseal.test' }, /domains/],
  ['not an object', [1, 2], /top level/],
];

test('a bad config is refused at start: exit 2, a message naming the key, nothing listening', { timeout: 240_000 }, async () => {
  const dataDir = dirs.make();
  // Independent child processes: a few at a time side by side.
  const results: Array<{ name: string; r: CliResult }> = [];
  for (let at = 0; at < BAD_CONFIGS.length; at += 4) {
    const batch = BAD_CONFIGS.slice(at, at + 4).map(async ([name, doc], j) => {
      const config = join(dataDir, `bad-${at + j}.json`);
      writeFileSync(config, JSON.stringify(doc));
      return { name, r: await runCli(['serve', '--config', config, '--data', dataDir, '--mx', '127.0.0.1:0', '--submission', 'off', '--submissions', 'off']) };
    });
    results.push(...(await Promise.all(batch)));
  }
  for (const [i, { name, r }] of results.entries()) {
    const key = BAD_CONFIGS[i]?.[2] ?? /never/;
    assert.equal(r.code, 2, `${name}: exit ${r.code}; stderr: ${r.stderr}`);
    assert.match(r.stderr, key, name);
    assert.equal(r.stdout, '', `${name}: it started listening anyway`);
  }
});

test('config file not JSON, missing, or bad flags: exit 2 with a message', { timeout: 120_000 }, async () => {
  const dataDir = dirs.make();
  const notJson = join(dataDir, 'bad.json');
  writeFileSync(notJson, '{ listeners: ');
  const cases: Array<[string[], RegExp]> = [
    [['--config', notJson], /not valid JSON/],
    [['--config', join(dataDir, 'missing.json')], /cannot read/],
    [['--mx-tls', 'maybe'], /--mx-tls/],
    [['--mx', '127.0.0.1'], /--mx/],
    [['--submission-tls', 'sometimes'], /--submission-tls/],
  ];
  for (const [flags, msg] of cases) {
    const r = await runCli(['serve', '--data', dataDir, ...flags]);
    assert.equal(r.code, 2, `${flags.join(' ')}: exit ${r.code}; stderr: ${r.stderr}`);
    assert.match(r.stderr, msg);
    assert.equal(r.stdout, '');
  }
});
