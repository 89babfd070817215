/**
 * A TLS-RPT report sent by mail (RFC 8460 §5.3) is DKIM-signed by the sender once, when it is
 * queued: the report goes through the queue runner to a real receiving postseal server, and
 * dkimpy verifies the message it stored against the record of our key (d = the From domain).
 * `postseal report tls --send-now` (the CLI, run as a child) signs the same way with the data
 * directory's keys: signed by default, unsigned with --no-dkim or a --config with dkim.enabled
 * false, and the config's `domains` give the parent fallback (From at a host name of sender.test).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
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
import { startDnsServer } from '../helpers/dns-server.js';
import { startTestServer } from '../helpers/server.js';
import { runCli } from '../cli/child.js';
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

/** The queued report message of a data directory (the CLI's store is closed by then). */
async function queuedReport(dir: string): Promise<Buffer> {
  const store = await openSqliteStore(dir);
  try {
    const q = store.listQueue();
    assert.equal(q.length, 1, JSON.stringify(q));
    return store.getMessage(q[0]?.id ?? '')?.data ?? Buffer.alloc(0);
  } finally {
    await store.close();
  }
}

/** A data directory with yesterday's counts for policy.test and keys for sender.test. */
async function dataDirWithCounts(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'postseal-tlsrpt-cli-'));
  dirs.push(dir);
  const store = await openSqliteStore(dir);
  const counter = new TlsRptCounter(store);
  counter.record({ policyDomain: 'policy.test', policyType: 'no-policy-found', policyStrings: [], mxHost: 'mx.policy.test', receivingIp: '192.0.2.1', result: 'success', detail: null, at: Date.now() - 86_400_000 });
  await counter.close();
  await store.close();
  generateKey(dir, 'sender.test', { algorithm: 'ed25519', selector: 'ed1' });
  generateKey(dir, 'sender.test', { algorithm: 'rsa', selector: 'rsa1' });
  return dir;
}

test('postseal report tls --send-now queues the report DKIM-signed with the data directory\'s keys; --no-dkim and dkim.enabled=false do not sign', { skip: !hasDkimpy && 'python3-dkim not installed (.ci/run installs it)' }, async () => {
  const dns = await startDnsServer([{ name: '_smtp._tls.policy.test', type: 'TXT', data: 'v=TLSRPTv1; rua=mailto:reports@collector.test' }]);
  try {
    const base = ['report', 'tls', '--send-now', '--dns', `127.0.0.1:${dns.port}`, '--submitter', 'out.sender.test'];

    // Default: signed with the From domain's keys (both), dkimpy verifies both.
    const signedDir = await dataDirWithCounts();
    const r1 = await runCli([...base, '--data', signedDir, '--from', 'tlsrpt@sender.test']);
    assert.equal(r1.code, 0, r1.stderr + r1.stdout);
    const signed = await queuedReport(signedDir);
    assert.match(signed.toString('latin1'), /^TLS-Report-Domain: policy\.test\r$/m);
    const sigs = dkimSignatures(signed);
    assert.equal(sigs.length, 2, signed.toString('latin1').slice(0, 1500));
    assert.match(sigs[0] ?? '', /a=ed25519-sha256; c=relaxed\/relaxed; d=sender\.test; s=ed1;/);
    assert.match(sigs[1] ?? '', /a=rsa-sha256; c=relaxed\/relaxed; d=sender\.test; s=rsa1;/);
    assert.doesNotMatch(sigs[0] ?? '', /\bx=/, 'no --config: no expiry');
    assert.equal(await dkimpyVerify(signed, publishedTxt(signedDir, 'sender.test')), 'pass pass');

    // --no-dkim: unsigned.
    const offDir = await dataDirWithCounts();
    const r2 = await runCli([...base, '--data', offDir, '--from', 'tlsrpt@sender.test', '--no-dkim']);
    assert.equal(r2.code, 0, r2.stderr + r2.stdout);
    assert.deepEqual(dkimSignatures(await queuedReport(offDir)), []);

    // --config with dkim.enabled=false: unsigned; its dataDir is used when --data is not given.
    const cfgOffDir = await dataDirWithCounts();
    const cfgOff = join(cfgOffDir, 'off.json');
    await writeFile(cfgOff, JSON.stringify({ dataDir: cfgOffDir, domains: ['sender.test'], dkim: { enabled: false } }));
    const r3 = await runCli([...base, '--config', cfgOff, '--from', 'tlsrpt@sender.test']);
    assert.equal(r3.code, 0, r3.stderr + r3.stdout);
    assert.deepEqual(dkimSignatures(await queuedReport(cfgOffDir)), []);

    // --config with domains [sender.test] and an expiry: From tlsrpt-noreply@out.sender.test has
    // no keys of its own, so the configured parent signs (d=sender.test), with x=.
    const parentDir = await dataDirWithCounts();
    const cfgOn = join(parentDir, 'on.json');
    await writeFile(cfgOn, JSON.stringify({ dataDir: parentDir, domains: ['sender.test'], dkim: { expirySeconds: 86400 } }));
    const r4 = await runCli([...base, '--config', cfgOn]);
    assert.equal(r4.code, 0, r4.stderr + r4.stdout);
    const viaParent = await queuedReport(parentDir);
    assert.match(viaParent.toString('latin1'), /^From: .*tlsrpt-noreply@out\.sender\.test/m);
    const psigs = dkimSignatures(viaParent);
    assert.equal(psigs.length, 2);
    assert.match(psigs[0] ?? '', /d=sender\.test; s=ed1;/);
    assert.match(psigs[0] ?? '', /\bx=\d+/);
    assert.equal(await dkimpyVerify(viaParent, publishedTxt(parentDir, 'sender.test')), 'pass pass');

    // Without --config there is no configured parent: unsigned, and the CLI says why.
    const noParentDir = await dataDirWithCounts();
    const r5 = await runCli([...base, '--data', noParentDir]);
    assert.equal(r5.code, 0, r5.stderr + r5.stdout);
    assert.deepEqual(dkimSignatures(await queuedReport(noParentDir)), []);
    assert.match(r5.stderr, /no DKIM key for out\.sender\.test/);
  } finally {
    await dns.close();
  }
});
