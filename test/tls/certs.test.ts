/**
 * Certificates on disk: loadKeyPair validation and its errors, the self-signed development pair,
 * and the test PKI's deliberately broken certificates as a real verifying client sees them.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { ensureSelfSigned, loadKeyPair } from '../../src/tls/certs.js';
import { serverContextOptions } from '../../src/tls/options.js';
import { summarizeCertificate } from '../../src/tls/summary.js';
import {
  expiredCert,
  issueCert,
  makeTestCa,
  notYetValidCert,
  selfSigned,
  wrongNameCert,
  writeKeyPair,
  type TestCa,
} from '../helpers/certs.js';
import { closeSocket, connectTls, startWrapServer } from './harness.js';

let dir: string;
let ca: TestCa;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'postseal-tls-'));
  ca = await makeTestCa();
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('loadKeyPair', () => {
  test('loads a leaf + chain file and summarizes the leaf', async () => {
    const pair = await issueCert(ca, { names: ['mx.test'], includeChain: true });
    const files = await writeKeyPair(join(dir, 'chain'), pair);
    const loaded = await loadKeyPair(files.certFile, files.keyFile);
    assert.equal(loaded.chain.length, 2);
    assert.deepEqual(loaded.leaf.subjectAltNames, [{ type: 'dns', value: 'mx.test' }]);
    assert.equal(loaded.chain[1]?.isCa, true);
  });

  test('a key that does not match the certificate is TLS_CERT_INVALID naming the key file', async () => {
    const a = await issueCert(ca, { names: ['a.test'] });
    const b = await issueCert(ca, { names: ['b.test'] });
    const files = await writeKeyPair(join(dir, 'mismatch'), { certPem: a.certPem, keyPem: b.keyPem });
    await assert.rejects(loadKeyPair(files.certFile, files.keyFile), (err: unknown) => {
      assert.ok(err instanceof Error);
      assert.equal((err as { code?: string }).code, 'TLS_CERT_INVALID');
      assert.ok(err.message.includes(files.keyFile), err.message);
      return true;
    });
  });

  test('garbage or missing files are TLS_CERT_INVALID naming the file', async () => {
    const good = await issueCert(ca, { names: ['c.test'] });
    const files = await writeKeyPair(join(dir, 'garbage'), good);
    await writeFile(files.certFile, 'not a certificate\n');
    await assert.rejects(loadKeyPair(files.certFile, files.keyFile), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'TLS_CERT_INVALID');
      assert.ok(err.message.includes(files.certFile), err.message);
      return true;
    });
    const missing = join(dir, 'nope.pem');
    await assert.rejects(loadKeyPair(missing, files.keyFile), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'TLS_CERT_INVALID');
      assert.ok(err.message.includes(missing), err.message);
      return true;
    });
  });
});

describe('ensureSelfSigned', () => {
  test('creates once, then reuses the same certificate', async () => {
    const data = join(dir, 'data1');
    const first = await ensureSelfSigned(data, 'mail.example.test');
    assert.equal(first.created, true);
    assert.equal(first.certFile, join(data, 'tls', 'selfsigned-cert.pem'));
    const second = await ensureSelfSigned(data, 'mail.example.test');
    assert.equal(second.created, false);
    const fp1 = summarizeCertificate(await readFile(first.certFile)).fingerprint256;
    const fp2 = summarizeCertificate(await readFile(second.certFile)).fingerprint256;
    assert.equal(fp1, fp2);
  });

  test('EC P-256 key, SHA-256 signature, SAN and CN = hostname, key file 0600, ~1 year', async () => {
    const data = join(dir, 'data2');
    const r = await ensureSelfSigned(data, 'mx1.example.test');
    const summary = summarizeCertificate(await readFile(r.certFile));
    assert.deepEqual(summary.key, { type: 'ec', bits: 256, curve: 'prime256v1' });
    assert.equal(summary.signatureAlgorithm.name, 'ecdsa-with-SHA256');
    assert.deepEqual(summary.subjectAltNames, [{ type: 'dns', value: 'mx1.example.test' }]);
    assert.equal(summary.subject, 'CN=mx1.example.test');
    assert.equal(summary.selfSigned, true);
    const days = (Date.parse(summary.notAfter) - Date.now()) / 86_400_000;
    assert.ok(days > 360 && days < 370, `validity ${days} days`);
    assert.equal((await stat(r.keyFile)).mode & 0o777, 0o600);
    await loadKeyPair(r.certFile, r.keyFile); // key matches, OpenSSL accepts it
  });

  test('a different hostname makes a new certificate', async () => {
    const data = join(dir, 'data3');
    const a = await ensureSelfSigned(data, 'one.example.test');
    const fpA = summarizeCertificate(await readFile(a.certFile)).fingerprint256;
    const b = await ensureSelfSigned(data, 'two.example.test');
    assert.equal(b.created, true);
    const cert = new X509Certificate(await readFile(b.certFile));
    assert.notEqual(cert.fingerprint256, fpA);
    assert.equal(cert.checkHost('two.example.test'), 'two.example.test');
  });

  test('an IP hostname gets an IP SAN', async () => {
    const r = await ensureSelfSigned(join(dir, 'data4'), '192.0.2.25');
    const summary = summarizeCertificate(await readFile(r.certFile));
    assert.deepEqual(summary.subjectAltNames, [{ type: 'ip', value: '192.0.2.25' }]);
    const again = await ensureSelfSigned(join(dir, 'data4'), '192.0.2.25');
    assert.equal(again.created, false);
  });
});

describe('test PKI as a verifying client sees it', () => {
  async function verifyError(pair: { certPem: string; keyPem: string }, servername: string): Promise<string> {
    const ctx = tls.createSecureContext({ ...serverContextOptions(), cert: pair.certPem, key: pair.keyPem });
    const server = await startWrapServer(() => ctx);
    try {
      const socket = await connectTls(server.port, { ca: ca.certPem, servername, rejectUnauthorized: true });
      await closeSocket(socket);
      return 'OK';
    } catch (err) {
      return String((err as { code?: unknown }).code);
    } finally {
      await server.close();
    }
  }

  test('good leaf (EC and RSA) verifies; expired, not-yet-valid, wrong name, self-signed do not', async () => {
    assert.equal(await verifyError(await issueCert(ca, { names: ['ok.test'] }), 'ok.test'), 'OK');
    assert.equal(await verifyError(await issueCert(ca, { names: ['rsa.test'], keyType: 'rsa' }), 'rsa.test'), 'OK');
    assert.equal(await verifyError(await expiredCert(ca, ['old.test']), 'old.test'), 'CERT_HAS_EXPIRED');
    assert.equal(await verifyError(await notYetValidCert(ca, ['new.test']), 'new.test'), 'CERT_NOT_YET_VALID');
    assert.equal(await verifyError(await wrongNameCert(ca), 'right.test'), 'ERR_TLS_CERT_ALTNAME_INVALID');
    assert.equal(await verifyError(await selfSigned(['ss.test']), 'ss.test'), 'DEPTH_ZERO_SELF_SIGNED_CERT');
  });

  test('an intermediate-free chain served with the CA appended still verifies', async () => {
    const pair = await issueCert(ca, { names: ['chain.test'], includeChain: true });
    assert.equal(await verifyError(pair, 'chain.test'), 'OK');
  });
});
