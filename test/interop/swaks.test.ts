/**
 * Interop: swaks (Perl, IO::Socket::SSL) delivers to every listener, verifying our certificate
 * against the test CA (--tls-verify --tls-ca-path). `--data @file` sends the file as DATA with
 * swaks's own dot-stuffing; swaks always ends DATA with "\r\n.\r\n" after the file, so the file
 * holds the message without its last CRLF and the stored message must be our Received header +
 * exactly the message bytes. One delivery is read back through the CLI (`postseal mailbox show`).
 */
import { after, before, test } from 'node:test';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { assertExitedOk, expectDelivered, expectRefused, type PeerResult, findPeer, makeMessage, RCPT, runPeer, startInteropServer, tempDir, USER, type InteropServer } from '../helpers/peers.js';

let server: InteropServer;
let tmp: Awaited<ReturnType<typeof tempDir>>;
before(async () => {
  server = await startInteropServer();
  tmp = await tempDir('swaks');
});
after(async () => {
  await server.close();
  await tmp.cleanup();
});

async function deliver(bin: string, label: string, args: string[], caFile = server.caFile): Promise<{ msg: ReturnType<typeof makeMessage>; before: Set<string>; r: PeerResult }> {
  const msg = makeMessage(`swaks ${label}`);
  const file = join(tmp.dir, `${label}.eml`);
  await writeFile(file, msg.bytes.subarray(0, msg.bytes.length - 2)); // swaks adds the final CRLF
  const ids = server.ids();
  const r = await runPeer(bin, [
    '--server', '127.0.0.1', '--helo', 'swaks.interop.test',
    '--from', msg.from, '--to', RCPT,
    '--tls-verify', '--tls-ca-path', caFile, '--tls-sni', 'localhost',
    '--data', `@${file}`, ...args,
  ]);
  if (caFile === server.caFile) assertExitedOk(r, `swaks ${label}`);
  return { msg, before: ids, r };
}

test('swaks: STARTTLS to mx, no AUTH (read back via the CLI)', async (t) => {
  const bin = await findPeer(t, 'swaks');
  if (!bin) return;
  const { msg, before } = await deliver(bin, 'mx', ['--port', String(server.port('mx')), '--tls']);
  await expectDelivered(server, before, msg, { listener: 'mx', authUser: null, via: 'cli' });
});

for (const mech of ['PLAIN', 'LOGIN']) {
  test(`swaks: STARTTLS to submission, AUTH ${mech}`, async (t) => {
    const bin = await findPeer(t, 'swaks');
    if (!bin) return;
    const auth = ['--auth', mech, '--auth-user', USER.address, '--auth-password', USER.password];
    const { msg, before } = await deliver(bin, `submission-${mech}`, ['--port', String(server.port('submission')), '--tls', ...auth]);
    await expectDelivered(server, before, msg, { listener: 'submission', authUser: USER.address });
  });
}

test('swaks: implicit TLS to submissions, AUTH PLAIN', async (t) => {
  const bin = await findPeer(t, 'swaks');
  if (!bin) return;
  const auth = ['--auth', 'PLAIN', '--auth-user', USER.address, '--auth-password', USER.password];
  const { msg, before } = await deliver(bin, 'submissions', ['--port', String(server.port('submissions')), '--tls-on-connect', ...auth]);
  await expectDelivered(server, before, msg, { listener: 'submissions', authUser: USER.address });
});

test('swaks: refuses our certificate when it trusts another CA (mx STARTTLS)', async (t) => {
  const bin = await findPeer(t, 'swaks');
  if (!bin) return;
  const { before, r } = await deliver(bin, 'foreign-ca', ['--port', String(server.port('mx')), '--tls'], server.foreignCaFile);
  expectRefused(server, before, r, 'swaks');
});
