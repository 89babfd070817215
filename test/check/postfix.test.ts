/**
 * checkHost against Postfix (Debian's 3.7, a real server nobody here wrote), started with its own
 * configuration directory in a temp dir on a free loopback port (`postfix -c DIR start`, which
 * waits for the master daemon to be ready), and stopped the same way. The findings Postfix's
 * defaults deserve are recorded here.
 */
import assert from 'node:assert/strict';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { checkHost } from '../../src/check/host.js';
import { issueCert, makeTestCa, writeKeyPair } from '../helpers/certs.js';
import { findPeer, runPeer } from '../helpers/peers.js';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(a !== null && typeof a === 'object' ? a.port : 0));
    });
  });
}

describe('checkHost against Postfix', () => {
  test('Debian Postfix 3.7 defaults with smtpd_tls_security_level=may', async (t) => {
    const postfix = await findPeer(t, '/usr/sbin/postfix', 'postfix');
    if (postfix === null) return;
    if (userInfo().uid !== 0) {
      if (process.env.CI === 'true') assert.fail('the Postfix test needs root (postfix start)');
      t.skip('postfix start needs root');
      return;
    }
    const dir = await mkdtemp(join(tmpdir(), 'postseal-postfix-'));
    await chmod(dir, 0o755); // the postfix user must reach data/ and the certificate
    const data = join(dir, 'data');
    await mkdir(join(dir, 'queue'));
    await mkdir(data);
    const pw = (await readFile('/etc/passwd', 'utf8')).split('\n').find((l) => l.startsWith('postfix:'));
    const postfixUid = Number(pw?.split(':')[2] ?? NaN);
    if (Number.isFinite(postfixUid)) await chown(data, postfixUid, -1);
    const ca = await makeTestCa();
    const files = await writeKeyPair(dir, await issueCert(ca, { names: ['localhost', '127.0.0.1'] }));
    const port = await freePort();
    await writeFile(join(dir, 'main.cf'), [
      'compatibility_level = 3.6',
      `queue_directory = ${join(dir, 'queue')}`,
      `data_directory = ${data}`,
      'mail_owner = postfix',
      'setgid_group = postdrop',
      'inet_interfaces = 127.0.0.1',
      'inet_protocols = ipv4',
      'myhostname = mx.postfix.test',
      'mydestination =',
      `maillog_file = ${join(dir, 'maillog')}`,
      `maillog_file_prefixes = ${dir}`,
      `smtpd_tls_cert_file = ${files.certFile}`,
      `smtpd_tls_key_file = ${files.keyFile}`,
      'smtpd_tls_security_level = may',
      '',
    ].join('\n'));
    // Debian's master.cf with our listener instead of smtp inet, and no chroot (no /etc copy inside).
    const master = (await readFile('/etc/postfix/master.cf', 'utf8'))
      .replace(/^smtp\s+inet.*$/m, `127.0.0.1:${port} inet n - n - - smtpd`)
      .replace(/^(\S+\s+(?:unix|unix-dgram|inet|fifo)\s+\S+\s+\S+\s+)y/gm, '$1n');
    await writeFile(join(dir, 'master.cf'), master);
    const start = await runPeer(postfix, ['-c', dir, 'start'], { timeoutMs: 60_000 });
    try {
      if (start.code !== 0) {
        const log = await readFile(join(dir, 'maillog'), 'utf8').catch(() => '');
        assert.fail(`postfix start failed (${start.code}): ${start.stderr}\n${log.slice(-2000)}`);
      }
      const r = await checkHost('localhost', { address: '127.0.0.1', port, ca: [ca.certPem], timeoutMs: 15_000 });
      assert.equal(r.status, 'checked');
      assert.match(r.smtp.greeting?.text ?? '', /Postfix/);
      assert.equal(r.smtp.starttlsOfferedAgain, false);
      assert.equal(r.probes.injectionWholeLine.outcome, 'discarded');
      assert.equal(r.probes.injectionPartialLine.outcome, 'discarded');
      assert.equal(r.probes.stateReset.outcome, 'reset');
      assert.equal(r.certificate?.trusted, true);
      assert.equal(r.certificate?.nameMatches, true);
      assert.deepEqual(r.tls?.versions, { TLSv1: 'accepted', 'TLSv1.1': 'accepted', 'TLSv1.2': 'accepted', 'TLSv1.3': 'accepted' });
      // Recorded: what Debian's Postfix defaults deserve.
      assert.deepEqual(r.findings.map((f) => f.id), ['tls.cipher.anon', 'tls.version.tls1', 'tls.version.tls1_1', 'tls.cipher.cbc-sha1']);
      assert.equal(r.grade, 'B');
    } finally {
      await runPeer(postfix, ['-c', dir, 'stop'], { timeoutMs: 60_000 });
      await rm(dir, { recursive: true, force: true });
    }
  });
});
