/**
 * Certificates in the running `postseal serve` process: reload on SIGHUP and on
 * file change without dropping live sessions, a bad file keeps the previous certificate, and
 * with no certificate configured a self-signed ECDSA P-256 / SHA-256 one is made once in the
 * data directory (with a warning) and reused by the next start.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { issueCert, makeTestCa, writeKeyPair, type PemKeyPair } from '../helpers/certs.js';
import { killAll, mxOnly, pemFingerprint, peerFingerprint, queuedId, sendMessage, startServeChild, startTlsSession, tempDirs } from '../cli/child.js';

const dirs = tempDirs();
after(() => {
  killAll();
  dirs.cleanup();
});

/** Fingerprint a brand-new STARTTLS connection is shown (certificate not verified). */
async function newConnectionFingerprint(port: number): Promise<string> {
  const { c, socket } = await startTlsSession(port);
  const fp = peerFingerprint(socket);
  c.close();
  return fp;
}

/** Polls new connections until they show `fp` (waiting for the watcher's event), with a deadline. */
async function waitForFingerprint(port: number, fp: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let seen = '';
  while (Date.now() < deadline) {
    seen = await newConnectionFingerprint(port);
    if (seen === fp) return;
    await new Promise((r) => setTimeout(r, 50)); // poll interval, not synchronisation
  }
  throw new Error(`new connections still show ${seen}, expected ${fp}`);
}

test('SIGHUP and file changes reload the certificate; live sessions keep working; a bad file keeps the previous one', { timeout: 90_000 }, async () => {
  const dataDir = dirs.make('postseal-reload-');
  const ca = await makeTestCa();
  const names = ['localhost', '127.0.0.1'];
  const a = await issueCert(ca, { names });
  // certs/cert.pem and certs/key.pem are symlinks into real/ (certbot's layout). The watcher
  // follows certs/, so rewriting the targets in real/ is seen only by SIGHUP; swapping the
  // links in certs/ is seen by the watcher.
  const certDir = join(dataDir, 'certs');
  const realDir = join(dataDir, 'real');
  const real = await writeKeyPair(realDir, a, 'v1-');
  mkdirSync(certDir);
  const certFile = join(certDir, 'cert.pem');
  const keyFile = join(certDir, 'key.pem');
  symlinkSync(real.certFile, certFile);
  symlinkSync(real.keyFile, keyFile);
  const server = await startServeChild(mxOnly(dataDir, ['--cert', certFile, '--key', keyFile, '--hostname', 'mail.postseal.test', '--catch-all']));
  const port = server.port('mx');
  const reloads = (fp: string) => (l: Record<string, unknown>): boolean => l.event === 'tls-reload' && l.fingerprint256 === fp;

  // A session opened under certificate A, kept open across the reloads.
  const old = await startTlsSession(port, { ca: ca.certPem });
  assert.equal(peerFingerprint(old.socket), pemFingerprint(a.certPem));

  // Rewrite the targets (invisible to the watcher), then SIGHUP: the next connection sees B.
  const b = await issueCert(ca, { names });
  assert.notEqual(pemFingerprint(b.certPem), pemFingerprint(a.certPem));
  await writeKeyPair(realDir, b, 'v1-');
  assert.equal(await newConnectionFingerprint(port), pemFingerprint(a.certPem), 'reloaded without a signal');
  server.signal('SIGHUP');
  await server.waitForLog(reloads(pemFingerprint(b.certPem)));
  assert.equal(await newConnectionFingerprint(port), pemFingerprint(b.certPem));

  // The old session is still alive and can deliver.
  const r1 = await sendMessage(old.c, 'a@client.test', 'inbox@localhost', 'Subject: across reload\r\n\r\nhello\r\n');
  assert.ok(queuedId(r1), r1);
  assert.equal(peerFingerprint(old.socket), pemFingerprint(a.certPem));

  // Swap the links to a new pair without a signal: the file watcher picks it up.
  const c = await issueCert(ca, { names });
  const v2 = await writeKeyPair(realDir, c, 'v2-');
  for (const [link, target] of [[keyFile, v2.keyFile], [certFile, v2.certFile]] as const) {
    symlinkSync(target, link + '.new');
    renameSync(link + '.new', link);
  }
  await waitForFingerprint(port, pemFingerprint(c.certPem));

  // A broken certificate file: the reload fails, C stays in service, live sessions unaffected.
  const failures = (): number => server.logs().filter((l) => l.event === 'tls-reload' && typeof l.error === 'string').length;
  const failuresBefore = failures();
  writeFileSync(v2.certFile, '-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n');
  server.signal('SIGHUP');
  await server.waitForLog(() => failures() > failuresBefore);
  assert.equal(await newConnectionFingerprint(port), pemFingerprint(c.certPem));
  const r2 = await sendMessage(old.c, 'a@client.test', 'inbox@localhost', 'Subject: after bad reload\r\n\r\nstill here\r\n');
  assert.ok(queuedId(r2), r2);
  assert.deepEqual(await old.c.cmd('QUIT'), ['221 2.0.0 Bye']);
  old.c.close();

  server.signal('SIGTERM');
  assert.deepEqual(await server.waitExit(20_000), { code: 0, signal: null });
  assert.ok(!/PRIVATE KEY/.test(server.stderr()), 'key material in the log');
});

function checkSelfSigned(pair: PemKeyPair, hostname: string): void {
  const leaf = new X509Certificate(pair.certPem);
  assert.equal(leaf.subjectAltName, `DNS:${hostname}`);
  assert.equal(leaf.publicKey.asymmetricKeyType, 'ec');
  assert.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  assert.equal(leaf.issuer, leaf.subject);
  assert.ok(leaf.verify(leaf.publicKey), 'not signed by its own key');
  const parsed = new x509.X509Certificate(pair.certPem);
  assert.deepEqual(parsed.signatureAlgorithm, { name: 'ECDSA', hash: { name: 'SHA-256' } });
}

test('no certificate configured: a self-signed one is made once, with a warning, and reused', { timeout: 90_000 }, async () => {
  const dataDir = dirs.make('postseal-selfsigned-');
  const hostname = 'mail.postseal.test';
  const args = mxOnly(dataDir, ['--hostname', hostname]);
  const certFile = join(dataDir, 'tls', 'selfsigned-cert.pem');
  const keyFile = join(dataDir, 'tls', 'selfsigned-key.pem');

  const first = await startServeChild(args);
  const pem = readFileSync(certFile, 'utf8');
  checkSelfSigned({ certPem: pem, keyPem: readFileSync(keyFile, 'utf8') }, hostname);
  assert.equal(statSync(keyFile).mode & 0o077, 0, 'the self-signed key is readable by others');
  const warn = first.logs().find((l) => l.event === 'tls' && l.level === 40);
  assert.ok(warn, `no warning about the self-signed certificate in:\n${first.stderr()}`);
  assert.match(String(warn.msg), /self-signed/);
  const fp1 = await newConnectionFingerprint(first.port('mx'));
  assert.equal(fp1, pemFingerprint(pem));
  first.signal('SIGTERM');
  assert.deepEqual(await first.waitExit(20_000), { code: 0, signal: null });

  const second = await startServeChild(args);
  assert.equal(readFileSync(certFile, 'utf8'), pem, 'the self-signed certificate was made again');
  assert.ok(second.logs().some((l) => l.event === 'tls' && l.level === 40), 'no warning on reuse');
  assert.equal(await newConnectionFingerprint(second.port('mx')), fp1);
  second.signal('SIGTERM');
  assert.deepEqual(await second.waitExit(20_000), { code: 0, signal: null });
});
