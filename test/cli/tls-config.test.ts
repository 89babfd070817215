/** The TLS part of the serve config: several certificates (tls.certificates, --cert-pair) and the refusals that name the key. */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { flagsToConfig } from '../../src/cli/serve.js';
import { applyConfigObject, defaultConfig } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';
import { runCli, tempDirs } from './child.js';

const dirs = tempDirs();
after(() => dirs.cleanup());

test('tls.certificates defaults to none and takes a list of { cert, key }', () => {
  assert.deepEqual(defaultConfig().tls.certificates, []);
  const cfg = applyConfigObject(defaultConfig(), {
    tls: { cert: '/etc/a/ec.pem', key: '/etc/a/ec.key', certificates: [{ cert: '/etc/a/rsa.pem', key: '/etc/a/rsa.key' }, { cert: '/etc/b/cert.pem', key: '/etc/b/key.pem' }] },
  });
  assert.equal(cfg.tls.cert, '/etc/a/ec.pem');
  assert.deepEqual(cfg.tls.certificates, [
    { cert: '/etc/a/rsa.pem', key: '/etc/a/rsa.key' },
    { cert: '/etc/b/cert.pem', key: '/etc/b/key.pem' },
  ]);
});

test('a certificate without its key, an unknown field, not a list: refused naming the key', () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ tls: { certificates: [{ cert: '/c.pem' }] } }, /tls\.certificates\[0\]\.key = null is not valid/],
    [{ tls: { certificates: [{ cert: '/c.pem', key: '/k.pem' }, { key: '/k2.pem' }] } }, /tls\.certificates\[1\]\.cert/],
    [{ tls: { certificates: [{ cert: '/c.pem', key: '' }] } }, /tls\.certificates\[0\]\.key/],
    [{ tls: { certificates: [{ cert: '/c.pem', key: '/k.pem', chain: '/x.pem' }] } }, /unknown key tls\.certificates\[0\]\.chain/],
    [{ tls: { certificates: [['/c.pem', '/k.pem']] } }, /tls\.certificates\[0\] = .* expected an object/],
    [{ tls: { certificates: { cert: '/c.pem', key: '/k.pem' } } }, /tls\.certificates = .* expected a list/],
  ];
  for (const [doc, re] of cases) {
    assert.throws(() => applyConfigObject(defaultConfig(), doc), (e: unknown) => e instanceof ConfigError && re.test(e.message), JSON.stringify(doc));
  }
});

test('--cert-pair CERT:KEY (repeatable) adds to the config file list and keeps --cert/--key', () => {
  const dir = dirs.make('postseal-tls-config-');
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ tls: { certificates: [{ cert: '/from/file.pem', key: '/from/file.key' }] } }));
  const cfg = flagsToConfig({ config: file, cert: '/d/cert.pem', key: '/d/key.pem', certPair: ['/a/rsa.pem:/a/rsa.key', '/b/c.pem:/b/k.pem'] });
  assert.equal(cfg.tls.cert, '/d/cert.pem');
  assert.equal(cfg.tls.key, '/d/key.pem');
  assert.deepEqual(cfg.tls.certificates, [
    { cert: '/from/file.pem', key: '/from/file.key' },
    { cert: '/a/rsa.pem', key: '/a/rsa.key' },
    { cert: '/b/c.pem', key: '/b/k.pem' },
  ]);
  for (const bad of ['/only/cert.pem', '/a:/b:/c', ':/k.pem', '/c.pem:']) {
    assert.throws(() => flagsToConfig({ certPair: [bad] }), (e: unknown) => e instanceof ConfigError && e.message.startsWith(`--cert-pair ${bad} is not valid`), bad);
  }
});

test('serve --help lists --cert-pair; a bad --cert-pair is a usage error (exit 2)', async () => {
  const help = await runCli(['serve', '--help']);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /--cert-pair <cert:key>/);
  const dataDir = dirs.make('postseal-tls-config-');
  const r = await runCli(['serve', '--data', dataDir, '--cert-pair', 'no-key.pem']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--cert-pair no-key\.pem is not valid/);
});
