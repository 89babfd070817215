/**
 * `postseal serve` end to end as a relay: an authenticated user submits mail for another domain
 * on 587 (STARTTLS + AUTH), the server queues it durably and its queue runner delivers it at
 * `verify` to the receiving server named by a static route; `postseal queue list` shows the outcome.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { deliver } from '../../src/client/index.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { until } from '../helpers/poll.js';

let receiver: TestServer;
let sender: TestServer;

before(async () => {
  receiver = await startTestServer({ configure: (cfg) => { cfg.domains = ['example.net']; } });
  const caFile = join(receiver.dataDir, 'ca.pem');
  await writeFile(caFile, receiver.caPem);
  sender = await startTestServer({
    users: [{ address: 'alice@postseal.test', password: 'correct horse battery' }],
    configure: (cfg) => {
      cfg.relay.routes = { 'example.net': `127.0.0.1:${receiver.port('mx')}` };
      cfg.relay.tlsPolicy = { 'example.net': 'verify' };
      cfg.relay.ca = caFile;
    },
  });
});

after(async () => {
  await sender.close();
  await receiver.close();
});

test('submitted mail for another domain is queued, relayed at verify, and the outcome is listed', async () => {
  const message = 'From: <alice@postseal.test>\r\nTo: <bob@example.net>\r\nSubject: relay me\r\nMessage-ID: <relay-e2e@postseal.test>\r\n\r\nhello over two hops\r\n';
  const r = await deliver({
    host: '127.0.0.1',
    port: sender.port('submission'),
    serverName: 'localhost',
    level: 'verify',
    tls: { ca: sender.caPem },
    helo: 'client.test',
    from: 'alice@postseal.test',
    to: ['bob@example.net'],
    message,
    auth: { user: 'alice@postseal.test', password: 'correct horse battery' },
  });
  assert.equal(r.ok, true, JSON.stringify(r.error));
  const got = await until('the receiver to store the relayed message', () =>
    receiver.running.store.listMessages().find((m) => m.recipients.includes('bob@example.net')),
    15_000,
  );
  const bytes = receiver.running.store.getMessage(got.id)?.data.toString() ?? '';
  // Two Received headers: the receiver's (ESMTPS, from the relay) on top of the sender's (ESMTPSA).
  assert.match(bytes, /^Received: from mail\.postseal\.test[\s\S]*with ESMTPS id[\s\S]*Received: from client\.test[\s\S]*with ESMTPSA id/);
  assert.ok(bytes.endsWith(message));
  const row = await until('the queue row to be marked delivered', () => sender.running.store.listQueue().find((e) => e.status === 'delivered'), 15_000);
  assert.equal(row.lastTls?.levelAsked, 'verify');
  assert.equal(row.lastTls?.levelReached, 'verify');
  const cli = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'queue', 'list', '--json', '--data', sender.dataDir], { encoding: 'utf8', timeout: 30000 });
  assert.equal(cli.status, 0, cli.stderr);
  const listed = JSON.parse(cli.stdout) as Array<{ recipient: string; status: string; lastTls: { levelReached: string } | null }>;
  assert.deepEqual(listed.map((e) => [e.recipient, e.status, e.lastTls?.levelReached]), [['bob@example.net', 'delivered', 'verify']]);
});
