/**
 * AUTH on a node whose PostgreSQL is down: RFC 4954 §6 `454 4.7.0` (temporary: try again), never
 * `535` (which tells the client its password is wrong) and never a dropped session or a dead node;
 * once PostgreSQL is back the same session's next AUTH succeeds, without restarting the node.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { issueCert, makeTestCa, writeKeyPair } from '../helpers/certs.js';
import { usePostgres } from '../helpers/postgres.js';
import { until } from '../helpers/poll.js';
import { killAll, runCli, startServeChild, startTlsSession, tempDirs } from '../cli/child.js';

const dirs = tempDirs();
const { skip, cluster } = usePostgres({ fsync: false, closeFirst: killAll });
after(() => dirs.cleanup());

const PASSWORD = 'correct horse battery staple 42';
const plain = (user: string, pass: string): string => Buffer.from(`\u0000${user}\u0000${pass}`).toString('base64');

test('AUTH while PostgreSQL is down answers 454 4.7.0; after it is back the same session authenticates', { skip, timeout: 120_000 }, async () => {
  const url = await cluster.createDatabase('auth');
  const data = dirs.make('postseal-auth-node-');
  const added = await runCli(['user', 'add', 'alice@postseal.test', '--password-stdin', '--store', url], { input: PASSWORD + '\n' });
  assert.equal(added.code, 0, added.stderr);
  const ca = await makeTestCa();
  const { certFile, keyFile } = await writeKeyPair(join(data, 'certs'), await issueCert(ca, { names: ['localhost'] }));
  const server = await startServeChild(['--data', data, '--store', url, '--mx', 'off', '--submission', '127.0.0.1:0', '--submissions', 'off', '--cert', certFile, '--key', keyFile, '--domain', 'postseal.test', '--no-relay']);
  const { c } = await startTlsSession(server.port('submission'), { ca: ca.certPem });
  try {
    assert.deepEqual(await c.cmd(`AUTH PLAIN ${plain('alice@postseal.test', 'wrong password')}`), ['535 5.7.8 Authentication credentials invalid'], 'PostgreSQL up: a wrong password is 535');
    await cluster.stop('immediate');
    const down = await c.cmd(`AUTH PLAIN ${plain('alice@postseal.test', PASSWORD)}`, 30_000);
    assert.equal(down.length, 1);
    assert.match(down[0] ?? '', /^454 4\.7\.0 /, `PostgreSQL down: ${down.join(' | ')}`);
    await cluster.start();
    // The pool reconnects by itself; the session and the node are the same.
    const reply = await until(
      'an AUTH answer other than 454 after PostgreSQL is back',
      async () => {
        const r = await c.cmd(`AUTH PLAIN ${plain('alice@postseal.test', PASSWORD)}`, 30_000);
        return r[0]?.startsWith('454') ? null : r;
      },
      30_000,
      500,
    );
    assert.deepEqual(reply, ['235 2.7.0 Authentication successful']);
    assert.ok(server.logs().some((l) => l.event === 'auth' && l.result === 'unavailable'), 'the outage is logged');
    assert.equal(server.child.exitCode, null, 'the node is still running');
  } finally {
    c.close();
    server.signal('SIGTERM');
    await server.waitExit();
  }
});
