/**
 * Interop: Python's smtplib (/usr/bin/python3, OpenSSL via the ssl module) delivers with
 * starttls() and SMTP_SSL, verifying our certificate with ssl.create_default_context(cafile=...)
 * (chain + host name). sendmail() gets the message file's bytes; smtplib stuffs dots and leaves
 * CRLF lines alone, so the stored message must be our Received header + exactly those bytes.
 */
import { after, before, test } from 'node:test';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { assertExitedOk, expectDelivered, expectRefused, findPeer, makeMessage, RCPT, runPeer, startInteropServer, tempDir, USER, type InteropServer } from '../helpers/peers.js';

// argv: mode(starttls|ssl) port cafile msgfile from to mech(none|PLAIN|LOGIN) user password
const SCRIPT = `
import smtplib, ssl, sys
mode, port, cafile, msgfile, sender, rcpt, mech, user, password = sys.argv[1:10]
ctx = ssl.create_default_context(cafile=cafile)
if mode == 'ssl':
    s = smtplib.SMTP_SSL('127.0.0.1', int(port), local_hostname='smtplib.interop.test', context=ctx, timeout=20)
else:
    s = smtplib.SMTP('127.0.0.1', int(port), local_hostname='smtplib.interop.test', timeout=20)
    s.ehlo()
    s.starttls(context=ctx)
s.ehlo()
if mech == 'PLAIN':
    s.user, s.password = user, password
    s.auth('PLAIN', s.auth_plain)
elif mech == 'LOGIN':
    s.user, s.password = user, password
    s.auth('LOGIN', s.auth_login, initial_response_ok=False)
with open(msgfile, 'rb') as f:
    refused = s.sendmail(sender, [rcpt], f.read())
assert not refused, refused
s.quit()
`;

let server: InteropServer;
let tmp: Awaited<ReturnType<typeof tempDir>>;
before(async () => {
  server = await startInteropServer();
  tmp = await tempDir('smtplib');
});
after(async () => {
  await server.close();
  await tmp.cleanup();
});

const cases = [
  { name: 'starttls() to mx, no AUTH', mode: 'starttls', listener: 'mx', auth: null },
  { name: 'starttls() to submission, AUTH PLAIN', mode: 'starttls', listener: 'submission', auth: 'PLAIN' },
  { name: 'starttls() to submission, AUTH LOGIN', mode: 'starttls', listener: 'submission', auth: 'LOGIN' },
  { name: 'SMTP_SSL to submissions, AUTH PLAIN', mode: 'ssl', listener: 'submissions', auth: 'PLAIN' },
  { name: 'refuses our certificate when it trusts another CA (mx starttls())', mode: 'starttls', listener: 'mx', auth: null, foreign: true },
] as const;

for (const c of cases) {
  test(`python smtplib: ${c.name}`, async (t) => {
    const python = await findPeer(t, '/usr/bin/python3', 'python3');
    if (!python) return;
    const msg = makeMessage(`smtplib ${c.name}`);
    const file = join(tmp.dir, `${c.listener}-${c.auth ?? 'none'}.eml`);
    await writeFile(file, msg.bytes);
    const ids = server.ids();
    const r = await runPeer(python, ['-c', SCRIPT, c.mode, String(server.port(c.listener)), 'foreign' in c ? server.foreignCaFile : server.caFile, file, msg.from, RCPT, c.auth ?? 'none', USER.address, USER.password]);
    if ('foreign' in c) return expectRefused(server, ids, r, 'smtplib');
    assertExitedOk(r, `smtplib ${c.name}`);
    await expectDelivered(server, ids, msg, { listener: c.listener, authUser: c.auth ? USER.address : null });
  });
}
