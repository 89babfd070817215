/**
 * DKIM signing at submission (issue 11 item 1): a message submitted on 587 by an authenticated
 * user is stored with one DKIM-Signature per active key of its From domain (Ed25519 and RSA,
 * RFC 8463), and both verify with independent verifiers reading our published record from a test
 * DNS server: Debian's python3-dkim (dkimpy, its DNS lookups sent to the test server through
 * dnspython) and mailauth's dkimVerify. A spooled (large) body is signed too; mail on the mx
 * listener (no AUTH) is not signed.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { dkimVerify } from 'mailauth';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { queuedId, sendMessage, startTlsSession } from '../cli/child.js';
import { WireClient } from '../helpers/wire.js';
import { runPython } from '../relay/dkimpy.js';
import { generateKey, listKeys } from '../../src/auth/dkim-keys.js';

const PY = '/usr/bin/python3';
const hasDkimpy = spawnSync(PY, ['-c', 'import dkim, dns.resolver'], { stdio: 'ignore' }).status === 0;
if (!hasDkimpy && process.env.CI === 'true') throw new Error(`${PY} cannot import dkim and dns.resolver: .ci/run must install python3-dkim (it depends on python3-dnspython)`);

// dkimpy's own verifier; its DNS function asks the test DNS server (dnspython, custom port).
const PY_VERIFY = `
import sys, dkim, dns.resolver
r = dns.resolver.Resolver(configure=False)
r.nameservers = ['127.0.0.1']
r.port = int(sys.argv[1])
def dnsfunc(name, timeout=5):
    a = r.resolve(name.decode().rstrip('.'), 'TXT', lifetime=timeout)
    return b''.join(b''.join(x.strings) for x in a)
msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
n = len([l for l in msg.split(b'\\r\\n\\r\\n')[0].split(b'\\r\\n') if l.lower().startswith(b'dkim-signature:')])
print(' '.join('pass' if d.verify(idx=i, dnsfunc=dnsfunc) else 'fail' for i in range(n)))
`;

const plain = (user: string, pass: string): string => `AUTH PLAIN ${Buffer.from(`\0${user}\0${pass}`).toString('base64')}`;

describe('DKIM signing at submission', () => {
  let srv: TestServer;
  let dns: DnsServer;
  const user = 'alice@postseal.test';
  const password = 'correct horse battery';

  before(async () => {
    srv = await startTestServer({ users: [{ address: user, password }], configure: (cfg) => void (cfg.limits.spoolThreshold = 4096) });
    generateKey(srv.dataDir, 'postseal.test', { algorithm: 'ed25519', selector: 'ed1' });
    generateKey(srv.dataDir, 'postseal.test', { algorithm: 'rsa', selector: 'rsa1' });
    dns = await startDnsServer(listKeys(srv.dataDir, 'postseal.test').map((k) => ({ name: `${k.selector}._domainkey.postseal.test`, type: 'TXT' as const, data: k.record })));
  });
  after(async () => {
    await srv?.close();
    await dns?.close();
  });

  async function submit(body: string): Promise<Buffer> {
    const { c } = await startTlsSession(srv.port('submission'), { ca: srv.caPem });
    try {
      assert.match((await c.cmd(plain(user, password)))[0] ?? '', /^235 /);
      const id = queuedId(await sendMessage(c, user, 'bob@postseal.test', body));
      assert.ok(id, 'queued');
      const m = srv.running.store.getMessage(id);
      assert.ok(m);
      return Buffer.from(m.data);
    } finally {
      c.close();
    }
  }

  function message(extraBody = ''): string {
    return [
      'From: Alice <alice@postseal.test>',
      'To: Bob <bob@postseal.test>',
      'Subject: signed  on the way out',
      'Date: Mon, 30 Nov 2026 10:00:00 +0000',
      'Message-ID: <dkim-test@postseal.test>',
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      '',
      'Hello Bob,  ',
      '',
      extraBody + 'bye',
      '',
      '',
    ].join('\r\n');
  }

  async function mailauthResults(msg: Buffer): Promise<string[]> {
    const r = new Resolver();
    r.setServers([`127.0.0.1:${dns.port}`]);
    const res = await dkimVerify(msg, { resolver: (name: string, type: string) => (type === 'TXT' ? r.resolveTxt(name) : Promise.reject(new Error('unused'))) } as never);
    return res.results.map((x: { status: { result: string }; selector?: string }) => `${x.selector ?? ''}:${x.status.result}`);
  }

  // Asynchronous: the test DNS server answers from this process's event loop.
  function dkimpy(msg: Buffer): Promise<string> {
    return runPython(PY_VERIFY, [String(dns.port)], msg);
  }

  it('signs with Ed25519 and RSA; dkimpy and mailauth verify both against the published records', { skip: !hasDkimpy && 'python3-dkim not installed (.ci/run installs it)' }, async () => {
    const msg = await submit(message());
    const head = msg.subarray(0, msg.indexOf('\r\n\r\n')).toString('latin1');
    assert.match(head, /^Received: /);
    const sigs = head.split(/\r\n(?=DKIM-Signature:)/).slice(1);
    assert.equal(sigs.length, 2, head);
    assert.match(sigs[0] ?? '', /a=ed25519-sha256; c=relaxed\/relaxed; d=postseal\.test; s=ed1;/);
    assert.match(sigs[1] ?? '', /a=rsa-sha256; c=relaxed\/relaxed; d=postseal\.test; s=rsa1;/);
    for (const s of sigs) {
      assert.match(s, /\bt=\d+;/);
      assert.doesNotMatch(s, /\bx=/);
      // Oversigned: From/To/Subject/Date listed once more than present.
      assert.match(s, /h=from:from:to:to:subject:subject:date:date:message-id:mime-version:content-type;/);
    }
    assert.equal(await dkimpy(msg), 'pass pass');
    assert.deepEqual(await mailauthResults(msg), ['ed1:pass', 'rsa1:pass']);
    // A From added afterwards breaks the signature (oversigning, RFC 6376 §8.15).
    const tampered = Buffer.concat([Buffer.from('From: mallory@evil.test\r\n'), msg]);
    assert.equal(await dkimpy(tampered), 'fail fail');
  });

  it('signs a spooled (large) body read from the spool file', { skip: !hasDkimpy && 'python3-dkim not installed' }, async () => {
    const big = 'a line of a long message, long enough to pass the spool threshold\r\n'.repeat(2000);
    const msg = await submit(message(big));
    assert.ok(msg.length > 100_000);
    assert.equal(await dkimpy(msg), 'pass pass');
    assert.deepEqual(await mailauthResults(msg), ['ed1:pass', 'rsa1:pass']);
  });

  it('does not sign mail received on the mx listener (no AUTH)', async () => {
    const c = await WireClient.connect(srv.port('mx'));
    try {
      await c.readReply();
      await c.cmd('EHLO client.test');
      const id = queuedId(await sendMessage(c, 'alice@postseal.test', 'bob@postseal.test', message()));
      assert.ok(id);
      const m = srv.running.store.getMessage(id);
      assert.ok(m);
      assert.doesNotMatch(Buffer.from(m.data).toString('latin1'), /DKIM-Signature:/i);
    } finally {
      c.close();
    }
  });
});
