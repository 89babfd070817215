/**
 * Interop: curl (libcurl + OpenSSL) delivers with --ssl-reqd over smtp:// (STARTTLS) and smtps://
 * (implicit TLS), verifying our certificate with --cacert. `--upload-file` sends the file as DATA
 * (curl does the dot-stuffing and adds no headers), so the stored message must be our Received
 * header + exactly the file's bytes.
 */
import { after, before, test } from 'node:test';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { assertExitedOk, expectDelivered, expectRefused, findPeer, makeMessage, RCPT, runPeer, startInteropServer, tempDir, USER, type InteropServer } from '../helpers/peers.js';

let server: InteropServer;
let tmp: Awaited<ReturnType<typeof tempDir>>;
before(async () => {
  server = await startInteropServer();
  tmp = await tempDir('curl');
});
after(async () => {
  await server.close();
  await tmp.cleanup();
});

const cases = [
  { name: 'STARTTLS to mx, no AUTH', url: 'smtp', listener: 'mx', auth: null },
  { name: 'STARTTLS to submission, AUTH PLAIN', url: 'smtp', listener: 'submission', auth: 'PLAIN' },
  { name: 'STARTTLS to submission, AUTH LOGIN', url: 'smtp', listener: 'submission', auth: 'LOGIN' },
  { name: 'implicit TLS to submissions, AUTH PLAIN', url: 'smtps', listener: 'submissions', auth: 'PLAIN' },
  { name: 'refuses our certificate when it trusts another CA (mx STARTTLS)', url: 'smtp', listener: 'mx', auth: null, foreign: true },
] as const;

for (const c of cases) {
  test(`curl: ${c.name}`, async (t) => {
    const bin = await findPeer(t, 'curl');
    if (!bin) return;
    const msg = makeMessage(`curl ${c.name}`);
    const file = join(tmp.dir, `${c.listener}-${c.auth ?? 'none'}.eml`);
    await writeFile(file, msg.bytes);
    const authArgs = c.auth ? ['--user', `${USER.address}:${USER.password}`, '--login-options', `AUTH=${c.auth}`] : [];
    const ids = server.ids();
    const r = await runPeer(bin, [
      '--silent', '--show-error', '--max-time', '20',
      '--ssl-reqd', '--cacert', 'foreign' in c ? server.foreignCaFile : server.caFile,
      `${c.url}://127.0.0.1:${server.port(c.listener)}/curl.interop.test`,
      '--mail-from', msg.from, '--mail-rcpt', RCPT,
      '--upload-file', file, ...authArgs,
    ]);
    if ('foreign' in c) return expectRefused(server, ids, r, 'curl');
    assertExitedOk(r, `curl ${c.name}`);
    await expectDelivered(server, ids, msg, { listener: c.listener, authUser: c.auth ? USER.address : null });
  });
}
