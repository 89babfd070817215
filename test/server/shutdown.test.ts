/**
 * Graceful stop of the real `postseal serve` process: on SIGTERM/SIGINT idle
 * sessions get `421 4.3.2` at once, a session inside DATA finishes its message (250, stored) and
 * gets 421 after it, new connections are refused, the process exits 0. When the grace period
 * ends, a session that never finishes is cut off and the process still exits 0.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { issueCert, makeTestCa, writeKeyPair } from '../helpers/certs.js';
import { WireClient } from '../helpers/wire.js';
import { killAll, mxOnly, queuedId, runCli, startServeChild, startTlsSession, tempDirs } from '../cli/child.js';

const dirs = tempDirs();
after(() => {
  killAll();
  dirs.cleanup();
});

function connectRefused(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('connect neither refused nor accepted'));
    }, 5000);
    s.once('connect', () => {
      // Accepted at TCP level: the server must at least not greet with 220.
      s.once('data', (d: Buffer) => {
        clearTimeout(timer);
        s.destroy();
        resolve(`accepted: ${d.toString('latin1').trim()}`);
      });
      s.once('close', () => {
        clearTimeout(timer);
        resolve('accepted then closed');
      });
    });
    s.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(err.code ?? err.message);
    });
  });
}

async function plainSessionInData(port: number): Promise<WireClient> {
  const c = await WireClient.connect(port);
  assert.match((await c.readReply())[0] ?? '', /^220 /);
  assert.equal((await c.cmd('EHLO client.test')).at(-1)?.slice(0, 4), '250 ');
  assert.match((await c.cmd('MAIL FROM:<a@client.test>'))[0] ?? '', /^250 /);
  assert.match((await c.cmd('RCPT TO:<inbox@localhost>'))[0] ?? '', /^250 /);
  assert.match((await c.cmd('DATA'))[0] ?? '', /^354 /);
  return c;
}

for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  test(`${sig}: 421 to idle sessions, DATA in flight finishes, new connections refused, exit 0`, { timeout: 60_000 }, async () => {
    const dataDir = dirs.make('postseal-shutdown-');
    const ca = await makeTestCa();
    const { certFile, keyFile } = await writeKeyPair(join(dataDir, 'certs'), await issueCert(ca, { names: ['localhost'] }));
    const server = await startServeChild(mxOnly(dataDir, ['--cert', certFile, '--key', keyFile, '--catch-all']));
    const port = server.port('mx');

    const idleTls = (await startTlsSession(port, { ca: ca.certPem })).c;
    const idlePlain = await WireClient.connect(port);
    assert.match((await idlePlain.readReply())[0] ?? '', /^220 /);
    const inData = await plainSessionInData(port);
    inData.write('Subject: in flight\r\n\r\nfirst half\r\n');

    server.signal(sig);
    assert.deepEqual(await idleTls.readReply(10_000), ['421 4.3.2 Service shutting down, closing connection']);
    assert.deepEqual(await idlePlain.readReply(10_000), ['421 4.3.2 Service shutting down, closing connection']);
    await idleTls.expectClose();
    await idlePlain.expectClose();

    // Shutdown has started: nobody new gets in.
    const refused = await connectRefused(port);
    assert.equal(refused, 'ECONNREFUSED');

    // The transaction in flight completes and is stored; the next reply is 421.
    inData.write('second half\r\n.\r\n');
    const done = await inData.readReply(10_000);
    const id = queuedId(done[0] ?? '');
    assert.ok(id, done.join(' | '));
    inData.write('NOOP\r\n');
    assert.deepEqual(await inData.readReply(10_000), ['421 4.3.2 Service shutting down, closing connection']);
    await inData.expectClose();

    assert.deepEqual(await server.waitExit(20_000), { code: 0, signal: null });
    const show = await runCli(['mailbox', 'show', id, '--data', dataDir]);
    assert.equal(show.code, 0, show.stderr);
    assert.ok(show.stdout.endsWith('Subject: in flight\r\n\r\nfirst half\r\nsecond half\r\n'), show.stdout);

    // The per-session log lines written during shutdown reach stderr before exit.
    const sessions = server.logs().filter((l) => l.event === 'session');
    assert.equal(sessions.length, 3, server.stderr());
    assert.equal(sessions.filter((l) => l.result === 'shutdown').length, 3, server.stderr());
    assert.ok(server.logs().some((l) => l.event === 'shutdown' && l.signal === sig));
  });
}

test('grace period over: a session that never finishes DATA is cut off and the process exits 0', { timeout: 60_000 }, async () => {
  const dataDir = dirs.make('postseal-shutdown-grace-');
  const config = join(dataDir, 'postseal.json');
  writeFileSync(config, JSON.stringify({ limits: { shutdownGraceMs: 300 }, tls: { selfSigned: false } }));
  const server = await startServeChild(mxOnly(dataDir, ['--config', config, '--catch-all']));
  const stuck = await plainSessionInData(server.port('mx'));
  stuck.write('Subject: never finished\r\n\r\npartial');
  server.signal('SIGTERM');
  const rest = await stuck.expectClose(20_000);
  assert.match(rest, /^421 4\.3\.2 /);
  assert.deepEqual(await server.waitExit(20_000), { code: 0, signal: null });
  const list = await runCli(['mailbox', 'list', '--data', dataDir, '--json']);
  assert.equal(list.code, 0, list.stderr);
  assert.deepEqual(JSON.parse(list.stdout), []);
  assert.ok(server.logs().some((l) => l.event === 'session' && l.result === 'shutdown (grace period over)'), server.stderr());
});
