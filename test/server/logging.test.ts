/**
 * Logs of the real `postseal serve` process: one JSON line per session (client,
 * listener, TLS protocol/cipher/SNI, result) and one per message (queue id, size, recipients);
 * AUTH secrets — the password, the base64 AUTH PLAIN blob, the base64 LOGIN password — appear
 * nowhere in the output.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { issueCert, makeTestCa, writeKeyPair } from '../helpers/certs.js';
import { WireClient } from '../helpers/wire.js';
import { killAll, queuedId, runCli, sendMessage, startServeChild, startTlsSession, tempDirs } from '../cli/child.js';

const dirs = tempDirs();
after(() => {
  killAll();
  dirs.cleanup();
});

const USER = 'logger@postseal.test';
const PASSWORD = 'Zq9-unmistakable-Secret-7Xw';
const WRONG = 'Kp4-another-unmistakable-Guess-2Rv';
const b64 = (s: string): string => Buffer.from(s).toString('base64');

type Line = Record<string, unknown>;

test('one structured line per session and per message; AUTH secrets never logged', { timeout: 120_000 }, async () => {
  const dataDir = dirs.make('postseal-logging-');
  const added = await runCli(['user', 'add', USER, '--password-stdin', '--data', dataDir], { input: PASSWORD });
  assert.equal(added.code, 0, added.stderr);
  const ca = await makeTestCa();
  const { certFile, keyFile } = await writeKeyPair(join(dataDir, 'certs'), await issueCert(ca, { names: ['localhost'] }));
  const server = await startServeChild(
    ['--data', dataDir, '--mx', '127.0.0.1:0', '--submission', '127.0.0.1:0', '--submissions', '127.0.0.1:0', '--cert', certFile, '--key', keyFile, '--hostname', 'mail.postseal.test', '--domain', 'postseal.test', '--log-level', 'debug', '--catch-all'],
    { listeners: 3 },
  );

  // 1. mx over STARTTLS with SNI: one message, two recipients, QUIT.
  const mx = await startTlsSession(server.port('mx'), { ca: ca.certPem, servername: 'localhost' });
  mx.c.write('MAIL FROM:<a@client.test>\r\nRCPT TO:<one@postseal.test>\r\nRCPT TO:<two@postseal.test>\r\nDATA\r\n');
  for (const want of ['250', '250', '250', '354']) assert.equal((await mx.c.readReply())[0]?.slice(0, 3), want);
  const body = 'Subject: logged\r\n\r\nbody\r\n';
  mx.c.write(body + '.\r\n');
  const mxId = queuedId((await mx.c.readReply())[0] ?? '');
  assert.ok(mxId);
  const mxPort = mx.socket.localPort;
  await mx.c.cmd('QUIT');
  await mx.c.expectClose();

  // 2. mx in plaintext, the client just goes away.
  const plain = await WireClient.connect(server.port('mx'));
  await plain.readReply();
  await plain.cmd('EHLO plain.client.test');
  plain.close();

  // 3. submission: AUTH PLAIN with a wrong password, then the right one, then a message.
  const sub = (await startTlsSession(server.port('submission'), { ca: ca.certPem })).c;
  assert.match((await sub.cmd(`AUTH PLAIN ${b64(`\0${USER}\0${WRONG}`)}`))[0] ?? '', /^535 /);
  assert.match((await sub.cmd(`AUTH PLAIN ${b64(`\0${USER}\0${PASSWORD}`)}`))[0] ?? '', /^235 /);
  const subId = queuedId(await sendMessage(sub, USER, 'friend@elsewhere.example', 'Subject: out\r\n\r\nhi\r\n'));
  assert.ok(subId);
  await sub.cmd('QUIT');

  // 4. submissions (implicit TLS): AUTH LOGIN and AUTH PLAIN with the empty challenge.
  const imp = await WireClient.connectTls(server.port('submissions'), ca.certPem);
  await imp.readReply();
  await imp.cmd('EHLO client.test');
  await imp.cmd('AUTH LOGIN');
  await imp.cmd(b64(USER));
  assert.match((await imp.cmd(b64(WRONG)))[0] ?? '', /^535 /);
  await imp.cmd('AUTH PLAIN');
  assert.match((await imp.cmd(b64(`${USER}\0${USER}\0${PASSWORD}`)))[0] ?? '', /^235 /);
  await imp.cmd('QUIT');

  server.signal('SIGTERM');
  assert.deepEqual(await server.waitExit(), { code: 0, signal: null });
  const stderr = server.stderr();
  const logs = server.logs();

  // Every stderr line is one JSON object.
  for (const line of stderr.split('\n').filter((l) => l !== '')) assert.doesNotThrow(() => JSON.parse(line), line);

  // Secrets: not the passwords, not any base64 form the client sent, not even a fragment.
  const secrets = [PASSWORD, WRONG, b64(PASSWORD), b64(WRONG), b64(`\0${USER}\0${PASSWORD}`), b64(`\0${USER}\0${WRONG}`), b64(`${USER}\0${USER}\0${PASSWORD}`), 'unmistakable'];
  for (const s of secrets) assert.ok(!stderr.includes(s), `secret ${JSON.stringify(s)} in the log`);
  assert.ok(!server.stdout().includes('unmistakable'));

  // One line per session.
  const sessions = logs.filter((l) => l.event === 'session');
  assert.equal(sessions.length, 4, JSON.stringify(sessions, null, 1));
  const byListener = (name: string): Line[] => sessions.filter((l) => l.listener === name);
  const [mxTls, mxPlain] = [byListener('mx').find((l) => l.tls !== null), byListener('mx').find((l) => l.tls === null)];
  assert.ok(mxTls && mxPlain);
  assert.equal(mxTls.client, '127.0.0.1');
  assert.equal(mxTls.port, mxPort);
  assert.deepEqual(Object.keys(mxTls.tls as object).sort(), ['cipher', 'protocol', 'sni']);
  assert.equal((mxTls.tls as Line).protocol, 'TLSv1.3');
  assert.match(String((mxTls.tls as Line).cipher), /^TLS_/);
  assert.equal((mxTls.tls as Line).sni, 'localhost');
  assert.equal(mxTls.result, 'quit');
  assert.equal(mxTls.messages, 1);
  assert.equal(mxTls.helo, 'client.test');
  assert.match(String(mxPlain.result), /peer closed|socket error/);
  assert.equal(mxPlain.helo, 'plain.client.test');
  const [subLine] = byListener('submission');
  assert.equal(subLine?.auth, USER);
  assert.equal(subLine?.result, 'quit');
  assert.equal(subLine?.messages, 1);
  const [impLine] = byListener('submissions');
  assert.equal((impLine?.tls as Line | undefined)?.protocol, 'TLSv1.3');
  assert.equal(impLine?.auth, USER);

  // One line per message, with queue id, size and recipients.
  const messages = logs.filter((l) => l.event === 'message');
  assert.equal(messages.length, 2);
  const m1 = messages.find((l) => l.id === mxId);
  assert.ok(m1, JSON.stringify(messages));
  assert.equal(m1.size, Buffer.byteLength(body));
  assert.equal(m1.rcpts, 2);
  assert.equal(m1.listener, 'mx');
  assert.equal(m1.tls, 'TLSv1.3');
  const m2 = messages.find((l) => l.id === subId);
  assert.equal(m2?.rcpts, 1);

  // Failed AUTH is logged without the password.
  const authFails = logs.filter((l) => l.event === 'auth' && l.result === 'failed');
  assert.equal(authFails.length, 2);
});
