/**
 * Interop: msmtp (GnuTLS) delivers with a config file in a temp dir: `tls_starttls on` for mx and
 * submission, `tls_starttls off` (implicit TLS) for submissions, verifying our certificate with
 * `tls_trust_file` (tls_certcheck stays on). The message goes in on stdin; it carries From, Date
 * and Message-ID, so msmtp adds no header, and the stored message must be our Received header +
 * exactly those bytes.
 */
import { after, before, test } from 'node:test';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { assertExitedOk, expectDelivered, expectRefused, findPeer, makeMessage, RCPT, runPeer, startInteropServer, tempDir, USER, type InteropServer } from '../helpers/peers.js';

let server: InteropServer;
let tmp: Awaited<ReturnType<typeof tempDir>>;
before(async () => {
  server = await startInteropServer();
  tmp = await tempDir('msmtp');
});
after(async () => {
  await server.close();
  await tmp.cleanup();
});

const cases = [
  { name: 'tls_starttls on to mx, no AUTH', starttls: 'on', listener: 'mx', auth: null },
  { name: 'tls_starttls on to submission, AUTH PLAIN', starttls: 'on', listener: 'submission', auth: 'plain' },
  { name: 'tls_starttls on to submission, AUTH LOGIN', starttls: 'on', listener: 'submission', auth: 'login' },
  { name: 'tls_starttls off (implicit TLS) to submissions, AUTH PLAIN', starttls: 'off', listener: 'submissions', auth: 'plain' },
  { name: 'refuses our certificate when it trusts another CA (mx STARTTLS)', starttls: 'on', listener: 'mx', auth: null, foreign: true },
] as const;

for (const c of cases) {
  test(`msmtp: ${c.name}`, async (t) => {
    const bin = await findPeer(t, 'msmtp');
    if (!bin) return;
    const msg = makeMessage(`msmtp ${c.name}`);
    const config = [
      'account default',
      'host 127.0.0.1',
      `port ${server.port(c.listener)}`,
      'domain msmtp.interop.test',
      `from ${msg.from}`,
      'tls on',
      `tls_starttls ${c.starttls}`,
      `tls_trust_file ${'foreign' in c ? server.foreignCaFile : server.caFile}`,
      'timeout 20',
      ...(c.auth ? [`auth ${c.auth}`, `user ${USER.address}`, `password ${USER.password}`] : ['auth off']),
    ];
    const configFile = join(tmp.dir, `${c.listener}-${c.auth ?? 'none'}${'foreign' in c ? '-foreign' : ''}.msmtprc`);
    await writeFile(configFile, config.join('\n') + '\n', { mode: 0o600 }); // msmtp refuses a readable file with a password
    const ids = server.ids();
    const r = await runPeer(bin, ['-C', configFile, '-f', msg.from, '--', RCPT], { input: msg.bytes });
    if ('foreign' in c) return expectRefused(server, ids, r, 'msmtp');
    assertExitedOk(r, `msmtp ${c.name}`);
    await expectDelivered(server, ids, msg, { listener: c.listener, authUser: c.auth ? USER.address : null });
  });
}
