/**
 * A TLS-RPT report sent by mail (RFC 8460 §5.3) is DKIM-signed by the sender once, when it is
 * queued: the report goes through the queue runner to a real receiving postseal server, and
 * dkimpy verifies the message it stored against the record of our key (d = the From domain).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { generateKey } from '../../src/auth/dkim-keys.js';
import { createOwnMailSigner } from '../../src/auth/dkim-own.js';
import { systemResolver, uniformTimeouts } from '../../src/client/index.js';
import { DEFAULT_RELAY } from '../../src/config.js';
import { silentLogger } from '../../src/log.js';
import { TlsRptCounter } from '../../src/policy/tlsrpt.js';
import { deliverTlsRptReports, makeTlsRptReports, type TlsRptSendOptions } from '../../src/policy/tlsrpt-send.js';
import { QueueRunner } from '../../src/relay/runner.js';
import { openSqliteStore } from '../../src/store/index.js';
import { startTestServer } from '../helpers/server.js';
import { dkimpyVerify, dkimSignatures, hasDkimpy, publishedTxt } from '../relay/dkimpy.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

test('a mailto: TLS-RPT report arrives DKIM-signed and dkimpy verifies it', { skip: !hasDkimpy && 'python3-dkim not installed (.ci/run installs it)' }, async () => {
  const receiver = await startTestServer({
    checkRecipients: true,
    users: [{ address: 'reports@example.net', password: 'irrelevant password' }],
    configure: (cfg) => {
      cfg.domains = ['example.net'];
      cfg.auth.verify = false;
    },
  });
  const dir = await mkdtemp(join(tmpdir(), 'postseal-tlsrpt-dkim-'));
  dirs.push(dir);
  const store = await openSqliteStore(dir);
  try {
    generateKey(dir, 'sender.test', { algorithm: 'ed25519', selector: 'ed1' });
    generateKey(dir, 'sender.test', { algorithm: 'rsa', selector: 'rsa1' });
    const counter = new TlsRptCounter(store);
    const yesterday = Date.now() - 86_400_000;
    for (let i = 0; i < 3; i++) counter.record({ policyDomain: 'policy.test', policyType: 'no-policy-found', policyStrings: [], mxHost: 'mx.policy.test', receivingIp: '192.0.2.1', result: 'success', detail: null, at: yesterday });
    await counter.close();
    const opts: TlsRptSendOptions = {
      organizationName: 'Sender Org',
      contactInfo: 'tlsrpt@sender.test',
      submitter: 'out.sender.test',
      from: 'tlsrpt-noreply@sender.test',
      lookupTxt: (name) => Promise.resolve(name === '_smtp._tls.policy.test' ? ['v=TLSRPTv1; rua=mailto:reports@example.net'] : []),
      sign: createOwnMailSigner({ dataDir: dir, domains: ['sender.test'], expirySeconds: 86_400, logger: silentLogger }),
    };
    const made = await makeTlsRptReports(store, opts, new Date());
    assert.equal(made[0]?.outcome, 'made', made[0]?.detail ?? '');
    const rounds = await deliverTlsRptReports(store, opts, new Date());
    assert.equal(rounds[0]?.queued.length, 1);
    const runner = new QueueRunner(
      store,
      {
        ...DEFAULT_RELAY,
        hostname: 'out.sender.test',
        localDomains: ['sender.test'],
        ca: receiver.caPem,
        routes: { 'example.net': { host: '127.0.0.1', port: receiver.port('mx'), name: 'localhost' } },
        tlsPolicy: { 'example.net': 'verify' },
        timeouts: uniformTimeouts(15_000),
      },
      systemResolver(),
      silentLogger,
    );
    const s = await runner.runOnce();
    assert.equal(s.delivered, 1, store.listQueue()[0]?.lastError ?? '');
    const got = receiver.running.store.listMessages({ mailbox: 'reports@example.net' });
    assert.equal(got.length, 1);
    const data = receiver.running.store.getMessage(got[0]?.id ?? '')?.data ?? Buffer.alloc(0);
    assert.match(data.toString('latin1'), /^TLS-Report-Domain: policy\.test\r$/m);
    const sigs = dkimSignatures(data);
    assert.equal(sigs.length, 2);
    assert.match(sigs[0] ?? '', /a=ed25519-sha256; c=relaxed\/relaxed; d=sender\.test; s=ed1;/);
    assert.match(sigs[1] ?? '', /d=sender\.test; s=rsa1;/);
    assert.match(sigs[0] ?? '', /\bx=\d+/, 'dkim.expirySeconds gives x=');
    assert.equal(await dkimpyVerify(data, publishedTxt(dir, 'sender.test')), 'pass pass');
    // Verified against another key (a rotation gone wrong): fails.
    generateKey(dir, 'other.test', { algorithm: 'ed25519', selector: 'ed1' });
    const wrong = { ...publishedTxt(dir, 'sender.test'), 'ed1._domainkey.sender.test': publishedTxt(dir, 'other.test')['ed1._domainkey.other.test'] ?? '' };
    assert.equal(await dkimpyVerify(data, wrong), 'fail pass');
  } finally {
    await store.close();
    await receiver.close();
  }
});
