/** The relay part of the serve config: flags and JSON keys, and the refusals that name the key. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { flagsToConfig } from '../../src/cli/serve.js';
import { applyConfigObject, defaultConfig } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';

test('relay flags become routes, a TLS table, DNS servers and the default level', () => {
  const cfg = flagsToConfig({
    route: ['example.net=127.0.0.1:2600', '*=smarthost.example:587'],
    tlsPolicy: ['bank.example=verify', 'legacy.example=none'],
    relayTls: 'encrypt',
    dns: ['127.0.0.1:5353'],
    smtpPort: '2625',
  });
  assert.deepEqual(cfg.relay.routes, { 'example.net': '127.0.0.1:2600', '*': 'smarthost.example:587' });
  assert.deepEqual(cfg.relay.tlsPolicy, { 'bank.example': 'verify', 'legacy.example': 'none' });
  assert.equal(cfg.relay.defaultTls, 'encrypt');
  assert.deepEqual(cfg.relay.dns, ['127.0.0.1:5353']);
  assert.equal(cfg.relay.smtpPort, 2625);
  assert.equal(cfg.relay.enabled, true);
  assert.equal(flagsToConfig({ relay: false }).relay.enabled, false);
});

test('bad relay values are refused with the key named', () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ relay: { tlsPolicy: { 'x.example': 'maybe' } } }, /relay\.tlsPolicy\.x\.example/],
    [{ relay: { routes: { 'x.example': 'no-port' } } }, /relay\.routes\.x\.example/],
    [{ relay: { defaultTls: 'strict' } }, /relay\.defaultTls/],
    [{ relay: { smtpPort: 70000 } }, /relay\.smtpPort/],
    [{ relay: { maxMessagesPerConnection: 0 } }, /relay\.maxMessagesPerConnection/],
    [{ relay: { retries: 3 } }, /unknown key relay\.retries/],
  ];
  for (const [doc, re] of cases) assert.throws(() => applyConfigObject(defaultConfig(), doc), (e: unknown) => e instanceof ConfigError && re.test(e.message), JSON.stringify(doc));
  assert.throws(() => flagsToConfig({ route: ['nodomain'] }), /--route nodomain is not valid/);
});
