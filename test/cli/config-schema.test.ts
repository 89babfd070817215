/**
 * The one config schema: errors name the key and where the value came from (flag, config file,
 * library object) with a code; defaults come from the schema (the relay runner's too); flags map
 * onto schema keys.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { flagsToConfig } from '../../src/cli/serve.js';
import { DEFAULT_DATA_DIR as CLI_DATA_DIR } from '../../src/cli/common.js';
import { applyConfigObject, DEFAULT_DATA_DIR, DEFAULT_LIMITS, DEFAULT_RELAY, defaultConfig, loadConfigFile, relayRunnerSettings, serveFlags } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';
import { runCli, tempDirs } from './child.js';

const dirs = tempDirs();
after(() => dirs.cleanup());

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  assert.fail('no ConfigError');
}

test('the same bad value is named by its flag, by its config file, or as config', () => {
  const file = join(dirs.make('postseal-config-'), 'postseal.json');
  writeFileSync(file, JSON.stringify({ relay: { tlsPolicy: { 'bank.example': 'strict' } } }));

  const flag = configError(() => flagsToConfig({ tlsPolicy: ['bank.example=strict'] }));
  assert.equal(flag.message, '--tls-policy bank.example=strict is not valid: relay.tlsPolicy.bank.example: expected none|may|encrypt|verify|dane');
  assert.deepEqual([flag.code, flag.key, flag.source], ['CONFIG_INVALID', 'relay.tlsPolicy.bank.example', '--tls-policy bank.example=strict']);

  const fromFile = configError(() => flagsToConfig({ config: file }));
  assert.equal(fromFile.message, `config file ${file}: relay.tlsPolicy.bank.example = "strict" is not valid: expected none|may|encrypt|verify|dane`);
  assert.deepEqual([fromFile.code, fromFile.key, fromFile.source], ['CONFIG_INVALID', 'relay.tlsPolicy.bank.example', `config file ${file}`]);

  const lib = configError(() => applyConfigObject(defaultConfig(), { relay: { tlsPolicy: { 'bank.example': 'strict' } } }));
  assert.equal(lib.message, 'config: relay.tlsPolicy.bank.example = "strict" is not valid: expected none|may|encrypt|verify|dane');
});

test('flag errors start with the flag and its text, and name the key', () => {
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ smtpPort: 'abc' }, '--smtp-port abc is not valid: relay.smtpPort: expected a whole number from 1 to 65535'],
    [{ smtpPort: '0' }, '--smtp-port 0 is not valid: relay.smtpPort: expected a whole number from 1 to 65535'],
    [{ relayTls: 'strict' }, '--relay-tls strict is not valid: relay.defaultTls: expected none|may|encrypt|verify|dane'],
    [{ mxTls: 'implicit' }, '--mx-tls implicit is not valid: listeners.mx.tls: expected none|may|encrypt'],
    [{ submissionTls: 'sometimes' }, '--submission-tls sometimes is not valid: listeners.submission.tls: expected none|may|encrypt|implicit'],
    [{ logLevel: 'loud' }, '--log-level loud is not valid: log.level: expected debug|info|warn|error|silent'],
    [{ route: ['x.example'] }, '--route x.example is not valid: relay.routes: expected DOMAIN=HOST:PORT[@NAME]'],
    [{ route: ['bad domain=127.0.0.1:25'] }, '--route bad domain=127.0.0.1:25 is not valid: relay.routes.bad domain: expected a domain or *'],
    [{ mx: 'off', mxTls: 'may' }, '--mx-tls may is not valid: listeners.mx.tls: listeners.mx is off on the command line'],
  ];
  for (const [flags, message] of cases) assert.equal(configError(() => flagsToConfig(flags)).message, message, JSON.stringify(flags));
  assert.match(configError(() => flagsToConfig({ mx: '[::1]:70000' })).message, /^--mx \[::1\]:70000 is not valid: listeners\.mx\.address: expected HOST:PORT .*port 70000 is out of range/);
  assert.match(configError(() => flagsToConfig({ dns: ['127.0.0.1:53', '::1'] })).message, /^--dns ::1 is not valid: relay\.dns\[1\]: .*\[IPv6\]:PORT/);
});

test('error codes: a bad value, an unknown or renamed key, an unreadable file', () => {
  const dir = dirs.make('postseal-config-');
  const notJson = join(dir, 'bad.json');
  writeFileSync(notJson, '{');
  assert.equal(configError(() => applyConfigObject(defaultConfig(), { relay: { smtpPort: 0 } })).code, 'CONFIG_INVALID');
  const unknown = configError(() => loadConfigFile(writeJson(dir, { relay: { retries: 3 } })));
  assert.equal(unknown.code, 'CONFIG_UNKNOWN_KEY');
  assert.match(unknown.message, /^config file .*: unknown key relay\.retries \(allowed: enabled, routes, /);
  assert.equal(configError(() => applyConfigObject(defaultConfig(), { limits: { authFailures: {} } })).code, 'CONFIG_UNKNOWN_KEY');
  assert.equal(configError(() => loadConfigFile(notJson)).code, 'CONFIG_UNREADABLE');
  assert.equal(configError(() => loadConfigFile(join(dir, 'missing.json'))).code, 'CONFIG_UNREADABLE');
});

function writeJson(dir: string, doc: unknown): string {
  const f = join(dir, `c-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(f, JSON.stringify(doc));
  return f;
}

test('a rule across keys blames the key and the source that set it', () => {
  const dir = dirs.make('postseal-config-');
  const file = writeJson(dir, { limits: { auth: { delayMs: 5000, maxDelayMs: 1000 } } });
  const e = configError(() => loadConfigFile(file));
  assert.equal(e.message, `config file ${file}: limits.auth.maxDelayMs = 1000 is not valid: expected at least limits.auth.delayMs (5000)`);
});

test('defaults come from the schema: serve, the relay runner and the data directory', () => {
  const cfg = defaultConfig();
  assert.equal(cfg.dataDir, DEFAULT_DATA_DIR);
  assert.equal(CLI_DATA_DIR, DEFAULT_DATA_DIR);
  assert.deepEqual(cfg.limits, DEFAULT_LIMITS);
  assert.deepEqual(DEFAULT_RELAY, relayRunnerSettings(cfg.relay));
  assert.deepEqual(DEFAULT_RELAY.retry, { minBackoffMs: cfg.relay.minBackoffMs, maxBackoffMs: cfg.relay.maxBackoffMs, maxAgeMs: cfg.relay.maxQueueAgeMs });
  // Fresh objects: changing one config does not change the next.
  cfg.limits.auth.maxFailures = 99;
  cfg.relay.routes['x.example'] = '127.0.0.1:25';
  assert.equal(defaultConfig().limits.auth.maxFailures, 5);
  assert.deepEqual(defaultConfig().relay.routes, {});
});

test('a relay route becomes { host, port } with the one HOST:PORT parser', () => {
  const cfg = applyConfigObject(defaultConfig(), { relay: { routes: { 'v6.example': '[2001:db8::25]:2525', '*': 'smarthost.example.:587' } } });
  assert.deepEqual(relayRunnerSettings(cfg.relay).routes, { 'v6.example': { host: '2001:db8::25', port: 2525 }, '*': { host: 'smarthost.example', port: 587 } });
});

test('flags map onto schema keys; repeatable flags add to the file, --dns replaces', () => {
  const dir = dirs.make('postseal-config-');
  const file = writeJson(dir, { domains: ['a.example'], relay: { routes: { 'a.example': '127.0.0.1:1' }, dns: ['192.0.2.53:53'] }, listeners: { submissions: 'off' } });
  const cfg = flagsToConfig({ config: file, domain: ['B.example'], route: ['b.example=127.0.0.1:2'], dns: ['127.0.0.1:5353'], mx: '[::1]:0', catchAll: true, relay: true });
  assert.deepEqual(cfg.domains, ['a.example', 'b.example']);
  assert.deepEqual(cfg.relay.routes, { 'a.example': '127.0.0.1:1', 'b.example': '127.0.0.1:2' });
  assert.deepEqual(cfg.relay.dns, ['127.0.0.1:5353']);
  assert.equal(cfg.listeners.mx?.address, '[::1]:0');
  assert.equal(cfg.listeners.submissions, null);
  assert.equal(cfg.recipients.catchAll, true);
  assert.equal(cfg.relay.enabled, true, 'commander gives relay: true when --no-relay is absent');
  const names = serveFlags().map((f) => f.spec.name);
  assert.equal(new Set(names).size, names.length, 'a flag is written twice');
});

test('serve --help lists the schema flags with their keys; a bad --tls-policy exits 2 naming the flag', async () => {
  const help = await runCli(['serve', '--help']);
  assert.equal(help.code, 0, help.stderr);
  for (const f of serveFlags()) assert.ok(help.stdout.includes(f.spec.name), `serve --help lacks ${f.spec.name}`);
  assert.match(help.stdout, /\[relay\.tlsPolicy\]/);
  const r = await runCli(['serve', '--data', dirs.make('postseal-config-'), '--tls-policy', 'bank.example=strict']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--tls-policy bank\.example=strict is not valid: relay\.tlsPolicy\.bank\.example/);
  assert.equal(r.stdout, '');
});
