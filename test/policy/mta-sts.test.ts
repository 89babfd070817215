/**
 * MTA-STS as a sender (src/policy/mta-sts.ts getMtaStsPolicy): real DNS (test server), a real
 * HTTPS policy host with a test CA, the real SQLite store as the persistent cache. Bad input and
 * faults each end in a defined outcome (policy invalid / fetch error), never a crash or a hang.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { DnsResolver } from '../../src/policy/dns.js';
import { forgetMtaStsPolicy, getMtaStsPolicy, refreshAt, type MtaStsContext } from '../../src/policy/mta-sts.js';
import { openSqliteStore, type Store } from '../../src/store/index.js';
import { startDnsServer, type DnsRecord, type DnsServer } from '../helpers/dns-server.js';
import { policyText, startMtaStsServer, type MtaStsServer } from '../helpers/mta-sts-server.js';
import { tempDirs } from '../store/helpers.js';

const D = 'example.test';
const dirs = tempDirs();
let dns: DnsServer;
let web: MtaStsServer;
let store: Store;

function txt(id: string): DnsRecord[] {
  return [{ name: `_mta-sts.${D}`, type: 'TXT', data: `v=STSv1; id=${id}` }];
}

function ctx(over: Partial<MtaStsContext> = {}): MtaStsContext {
  return { dns: new DnsResolver({ host: '127.0.0.1', port: dns.port }, 300), cache: store, endpoint: web.endpoint, ca: [web.ca], timeoutMs: 1500, ...over };
}

async function freshStore(): Promise<void> {
  await store.close();
  store = await openSqliteStore(dirs.make());
}

before(async () => {
  dns = await startDnsServer(txt('id1'));
  web = await startMtaStsServer([D]);
  store = await openSqliteStore(dirs.make());
});
after(async () => {
  await store.close();
  await web.close();
  await dns.close();
  dirs.cleanup();
});

test('enforce policy: fetched once, then served from the cache without HTTPS', async () => {
  await freshStore();
  dns.setRecords(txt('id1'));
  web.set(D, { body: policyText('enforce', ['mx.example.test', '*.example.net']) });
  const first = await getMtaStsPolicy(D, ctx());
  assert.equal(first.from, 'fetched');
  assert.equal(first.failure, null);
  assert.equal(first.policy?.mode, 'enforce');
  assert.deepEqual(first.policy?.mx, ['mx.example.test', '*.example.net']);
  assert.equal(first.policy?.id, 'id1');
  const n = web.requests.length;
  const second = await getMtaStsPolicy(D, ctx());
  assert.equal(second.from, 'cache');
  assert.equal(web.requests.length, n);
  assert.deepEqual(second.policy, first.policy);
});

test('a TXT record split over several strings is joined; several STSv1 records are invalid', async () => {
  await freshStore();
  web.set(D, { body: policyText('testing', ['mx.example.test']) });
  dns.setRecords([{ name: `_mta-sts.${D}`, type: 'TXT', data: ['v=STSv1; ', 'id=split1'] }]);
  const r = await getMtaStsPolicy(D, ctx());
  assert.equal(r.policy?.id, 'split1');
  await freshStore();
  dns.setRecords([...txt('a1'), ...txt('b2')]);
  const bad = await getMtaStsPolicy(D, ctx());
  assert.equal(bad.policy, null);
  assert.equal(bad.failure?.type, 'sts-policy-invalid');
  dns.setRecords([]);
  assert.deepEqual(await getMtaStsPolicy(D, ctx()), { policy: null, from: 'none', failure: null });
});

const bodies: Array<[string, string | Buffer, 'ok' | 'sts-policy-invalid', number?]> = [
  ['unknown keys are ignored (§3.2)', 'version: STSv1\nmode: enforce\nfoo: bar\nmx: mx.example.test\nmax_age: 600\n', 'ok'],
  ['CRLF and LF mixed (the ABNF allows either per line)', 'version: STSv1\r\nmode: enforce\nmx: mx.example.test\r\nmax_age: 600\n', 'ok'],
  ['a bare CR', 'version: STSv1\rmode: enforce\nmx: mx.example.test\nmax_age: 600\n', 'sts-policy-invalid'],
  ['a duplicated key', 'version: STSv1\nmode: enforce\nmode: testing\nmx: mx.example.test\nmax_age: 600\n', 'sts-policy-invalid'],
  ['max_age of 10^12 (more than 10 digits)', 'version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 1000000000000\n', 'sts-policy-invalid'],
  ['max_age above one year is capped at 31557600', 'version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 9999999999\n', 'ok', 31_557_600],
  ['not UTF-8', Buffer.from([...Buffer.from('version: STSv1\nmode: enforce\nmx: mx.'), 0xff, 0xfe, ...Buffer.from('\nmax_age: 600\n')]), 'sts-policy-invalid'],
  ['huge (over 64 KiB)', 'version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 600\n' + 'x: y\n'.repeat(20_000), 'sts-policy-invalid'],
];
for (const [name, body, outcome, maxAge] of bodies) {
  test(`policy body: ${name} → ${outcome}`, async () => {
    await freshStore();
    dns.setRecords(txt('id1'));
    web.set(D, { body });
    const r = await getMtaStsPolicy(D, ctx());
    if (outcome === 'ok') {
      assert.equal(r.failure, null, r.failure?.detail);
      assert.equal(r.policy?.mode, 'enforce');
      if (maxAge !== undefined) assert.equal(r.policy?.maxAge, maxAge);
    } else {
      assert.equal(r.policy, null);
      assert.equal(r.failure?.type, outcome);
    }
  });
}

const servers: Array<[string, Parameters<MtaStsServer['set']>[1], string]> = [
  ['a redirect', { status: 301, headers: { location: 'https://elsewhere.example/' }, body: '' }, 'sts-policy-fetch-error'],
  ['a 404', null, 'sts-policy-fetch-error'],
  ['text/html', { contentType: 'text/html', body: policyText('enforce', ['mx.example.test']) }, 'sts-policy-invalid'],
  ['a body that never ends (slow)', { stall: true, body: policyText('enforce', ['mx.example.test']) }, 'sts-policy-fetch-error'],
];
for (const [name, response, failure] of servers) {
  test(`policy host serving ${name} → ${failure}`, async () => {
    await freshStore();
    dns.setRecords(txt('id1'));
    web.set(D, response);
    const r = await getMtaStsPolicy(D, ctx({ timeoutMs: 500 }));
    assert.equal(r.policy, null);
    assert.equal(r.failure?.type, failure, r.failure?.detail);
  });
}

test('a certificate the sender does not trust → sts-webpki-invalid', async () => {
  await freshStore();
  dns.setRecords(txt('id1'));
  web.set(D, { body: policyText('enforce', ['mx.example.test']) });
  const r = await getMtaStsPolicy(D, ctx({ ca: [] }));
  assert.equal(r.policy, null);
  assert.equal(r.failure?.type, 'sts-webpki-invalid');
});

test('cache: survives a store close/reopen with the policy host gone and DNS silent', async () => {
  const dir = dirs.make();
  await store.close();
  store = await openSqliteStore(dir);
  dns.setRecords(txt('id1'));
  web.set(D, { body: policyText('enforce', ['mx.example.test']) });
  assert.equal((await getMtaStsPolicy(D, ctx())).from, 'fetched');
  await store.close();
  store = await openSqliteStore(dir);
  web.set(D, null);
  dns.setFault(`_mta-sts.${D} TXT`, 'drop');
  try {
    const r = await getMtaStsPolicy(D, ctx());
    assert.equal(r.from, 'cache');
    assert.equal(r.policy?.mode, 'enforce');
    assert.equal(r.failure?.type, 'sts-policy-fetch-error');
  } finally {
    dns.setFault(`_mta-sts.${D} TXT`, null);
  }
});

test('cache: an id change refetches; a failed refetch keeps the unexpired policy and reports it', async () => {
  await freshStore();
  dns.setRecords(txt('id1'));
  web.set(D, { body: policyText('enforce', ['mx.example.test']) });
  await getMtaStsPolicy(D, ctx());
  dns.setRecords(txt('id2'));
  web.set(D, { body: policyText('testing', ['mx2.example.test']) });
  const changed = await getMtaStsPolicy(D, ctx());
  assert.equal(changed.from, 'fetched');
  assert.equal(changed.policy?.id, 'id2');
  assert.equal(changed.policy?.mode, 'testing');
  dns.setRecords(txt('id3'));
  web.set(D, { contentType: 'text/html', body: '<html>' });
  const failed = await getMtaStsPolicy(D, ctx());
  assert.equal(failed.from, 'cache');
  assert.equal(failed.policy?.id, 'id2');
  assert.equal(failed.failure?.type, 'sts-policy-invalid');
  // Once expired, the cached policy no longer applies.
  const expiresAt = failed.policy?.expiresAt ?? 0;
  const late = await getMtaStsPolicy(D, ctx({ now: () => expiresAt + 1 }));
  assert.equal(late.policy, null);
  assert.equal(late.failure?.type, 'sts-policy-invalid');
});

test('cache: refreshed at its (deterministic, randomised) refresh time before expiry', async () => {
  await freshStore();
  dns.setRecords(txt('id1'));
  web.set(D, { body: policyText('enforce', ['mx.example.test'], 86400) });
  const first = await getMtaStsPolicy(D, ctx());
  const p = first.policy;
  assert.ok(p !== null);
  const at = refreshAt(p);
  assert.ok(at > p.fetchedAt + 0.74 * 86_400_000 && at < p.expiresAt);
  assert.equal((await getMtaStsPolicy(D, ctx({ now: () => at - 1 }))).from, 'cache');
  const refreshed = await getMtaStsPolicy(D, ctx({ now: () => at }));
  assert.equal(refreshed.from, 'fetched');
  assert.equal(refreshed.policy?.fetchedAt, at);
});

test('cache: a fetched policy of mode none removes it; forget removes it', async () => {
  await freshStore();
  dns.setRecords(txt('id1'));
  web.set(D, { body: policyText('enforce', ['mx.example.test']) });
  await getMtaStsPolicy(D, ctx());
  dns.setRecords(txt('id2'));
  web.set(D, { body: policyText('none', []) });
  const none = await getMtaStsPolicy(D, ctx());
  assert.equal(none.policy?.mode, 'none');
  assert.equal(store.getMtaSts(D), null);
  dns.setRecords(txt('id3'));
  web.set(D, { body: policyText('enforce', ['mx.example.test']) });
  await getMtaStsPolicy(D, ctx());
  assert.notEqual(store.getMtaSts(D), null);
  assert.equal(await forgetMtaStsPolicy(`${D}.`, store), true);
  assert.equal(store.getMtaSts(D), null);
  dns.setRecords([]);
  assert.deepEqual(await getMtaStsPolicy(D, ctx()), { policy: null, from: 'none', failure: null });
});
