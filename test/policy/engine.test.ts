/**
 * The sending-policy engine as a table: one row per rule of the precedence (table, DANE,
 * MTA-STS enforce/testing, default, REQUIRETLS), each with the facts and the expected decision
 * per MX host. Pure: no network.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decidePolicy, PRECEDENCE, type MxFacts, type PolicyInput } from '../../src/policy/engine.js';
import type { MtaStsLookup, TlsaLookup, TlsaRecord } from '../../src/policy/types.js';

const ee: TlsaRecord = { usage: 3, selector: 1, matchingType: 1, data: Buffer.alloc(32, 7) };
const pkix: TlsaRecord = { usage: 1, selector: 1, matchingType: 1, data: Buffer.alloc(32, 9) };
const secure = (records: TlsaRecord[], usable: TlsaRecord[]): TlsaLookup => ({ status: 'secure', records, usable, detail: null });
const bogus: TlsaLookup = { status: 'bogus', records: [], usable: [], detail: 'SERVFAIL' };
const failed: TlsaLookup = { status: 'error', records: [], usable: [], detail: 'timeout' };
const insecure: TlsaLookup = { status: 'insecure', records: [ee], usable: [ee], detail: null };

function sts(mode: 'enforce' | 'testing' | 'none', mx = ['mx1.example.net']): MtaStsLookup {
  const text = `version: STSv1\r\nmode: ${mode}\r\n${mx.map((m) => `mx: ${m}`).join('\r\n')}\r\nmax_age: 86400\r\n`;
  return { policy: { domain: 'example.net', id: '1', mode, mx, maxAge: 86400, fetchedAt: 0, expiresAt: 86_400_000, text }, from: 'fetched', failure: null };
}

function host(name: string, tlsa: TlsaLookup | null = null, addressesSecure = true): MxFacts {
  return { name, preference: 10, implicit: false, addresses: ['127.0.0.1'], addressesSecure, tlsa };
}

function input(over: Partial<PolicyInput>): PolicyInput {
  return { domain: 'example.net', mxSecure: true, mx: [host('mx1.example.net')], table: null, defaultLevel: 'may', dane: true, mtaSts: null, requireTls: false, ...over };
}

type Row = [name: string, PolicyInput, Array<{ allowed: boolean; level: string; source: string; rfc?: RegExp; tlsa?: number; failure?: string | null }>];

const rows: Row[] = [
  ['nothing published: default level', input({}), [{ allowed: true, level: 'may', source: 'default', rfc: /RFC 7435/ }]],
  ['table entry wins over DANE and MTA-STS', input({ table: 'encrypt', mx: [host('mx1.example.net', secure([ee], [ee]))], mtaSts: sts('enforce') }), [{ allowed: true, level: 'encrypt', source: 'table' }]],
  ['table entry none is obeyed', input({ table: 'none', mtaSts: sts('enforce') }), [{ allowed: true, level: 'none', source: 'table' }]],
  ['table dane without usable TLSA: host not used', input({ table: 'dane' }), [{ allowed: false, level: 'dane', source: 'table', failure: 'dane-required' }]],
  ['secure usable TLSA: dane', input({ mx: [host('mx1.example.net', secure([ee], [ee]))] }), [{ allowed: true, level: 'dane', source: 'dane', tlsa: 1, rfc: /RFC 7672 §2.2/ }]],
  ['DANE wins over MTA-STS enforce (RFC 8461 §2)', input({ mx: [host('mx1.example.net', secure([ee], [ee]))], mtaSts: sts('enforce') }), [{ allowed: true, level: 'dane', source: 'dane' }]],
  ['secure TLSA, all unusable: encrypt', input({ mx: [host('mx1.example.net', secure([pkix], []))] }), [{ allowed: true, level: 'encrypt', source: 'dane', rfc: /§3\.1\.3/ }]],
  ['bogus TLSA: host not used, dnssec-invalid', input({ mx: [host('mx1.example.net', bogus)] }), [{ allowed: false, level: 'dane', source: 'dane', failure: 'dnssec-invalid' }]],
  ['failed TLSA lookup where DANE may apply: host not used', input({ mx: [host('mx1.example.net', failed)] }), [{ allowed: false, level: 'dane', source: 'dane' }]],
  ['insecure TLSA: no DANE', input({ mx: [host('mx1.example.net', insecure)] }), [{ allowed: true, level: 'may', source: 'default' }]],
  ['insecure MX RRset: no DANE even with secure TLSA', input({ mxSecure: false, mx: [host('mx1.example.net', secure([ee], [ee]))] }), [{ allowed: true, level: 'may', source: 'default' }]],
  ['insecure addresses: no DANE', input({ mx: [host('mx1.example.net', secure([ee], [ee]), false)] }), [{ allowed: true, level: 'may', source: 'default' }]],
  ['DANE switched off: TLSA ignored', input({ dane: false, mx: [host('mx1.example.net', secure([ee], [ee]))] }), [{ allowed: true, level: 'may', source: 'default' }]],
  [
    'MTA-STS enforce: matching MX verify, other MX not used',
    input({ mtaSts: sts('enforce', ['*.example.net']), mx: [host('mx1.example.net'), host('mx.attacker.test'), host('a.b.example.net')] }),
    [
      { allowed: true, level: 'verify', source: 'mta-sts', rfc: /RFC 8461 §4\.1, §4\.2/ },
      { allowed: false, level: 'verify', source: 'mta-sts', failure: 'validation-failure' },
      { allowed: false, level: 'verify', source: 'mta-sts' },
    ],
  ],
  ['MTA-STS testing: default level, source mta-sts', input({ mtaSts: sts('testing'), mx: [host('mx1.example.net'), host('other.test')] }), [{ allowed: true, level: 'may', source: 'mta-sts', failure: null }, { allowed: true, level: 'may', source: 'mta-sts', failure: 'validation-failure' }]],
  ['MTA-STS none: default', input({ mtaSts: sts('none') }), [{ allowed: true, level: 'may', source: 'default' }]],
  ['REQUIRETLS raises the default to verify', input({ requireTls: true }), [{ allowed: true, level: 'verify', source: 'default', rfc: /RFC 8689 §4\.2\.1/ }]],
  ['REQUIRETLS raises unusable-TLSA encrypt to verify', input({ requireTls: true, mx: [host('mx1.example.net', secure([pkix], []))] }), [{ allowed: true, level: 'verify', source: 'dane' }]],
  ['REQUIRETLS keeps dane', input({ requireTls: true, mx: [host('mx1.example.net', secure([ee], [ee]))] }), [{ allowed: true, level: 'dane', source: 'dane' }]],
  ['REQUIRETLS raises a table entry of may', input({ requireTls: true, table: 'may' }), [{ allowed: true, level: 'verify', source: 'table' }]],
];

for (const [name, i, want] of rows) {
  test(`engine: ${name}`, () => {
    const d = decidePolicy(i);
    assert.equal(d.mx.length, want.length);
    want.forEach((w, k) => {
      const m = d.mx[k];
      assert.ok(m);
      assert.equal(m.allowed, w.allowed, m.rule);
      assert.equal(m.level, w.level, m.rule);
      assert.equal(m.source, w.source, m.rule);
      assert.equal(m.verifyName, m.host, 'the certificate name is the MX host name');
      assert.match(m.rule, /\(.*(RFC|operator).*\)/, 'the rule names its RFC section');
      if (w.rfc) assert.match(m.rfc, w.rfc);
      if (w.tlsa !== undefined) assert.equal(m.tlsa.length, w.tlsa);
      if (w.failure !== undefined) assert.equal(m.failure, w.failure);
    });
    const any = d.mx.some((m) => m.allowed);
    assert.equal(d.deferReason === null, any);
    if (!any) assert.match(d.deferReason ?? '', /^4\.7\.5 /);
  });
}

test('engine: no usable MX is a temporary 4.7.5 deferral naming each host and rule', () => {
  const d = decidePolicy(input({ mtaSts: sts('enforce', ['mx9.example.net']), mx: [host('mx1.example.net'), host('mx2.example.net')] }));
  assert.match(d.deferReason ?? '', /^4\.7\.5 no MX host of example\.net may be used: mx1\.example\.net: .*RFC 8461.*; mx2\.example\.net: /);
  assert.equal(d.source, 'mta-sts');
  assert.equal(d.mode, 'enforce');
});

test('engine: TLS-RPT policy type and strings (RFC 8460 §4.4)', () => {
  assert.deepEqual(decidePolicy(input({})).tlsRpt, { policyType: 'no-policy-found', policyStrings: [] });
  const s = decidePolicy(input({ mtaSts: sts('enforce') })).tlsRpt;
  assert.equal(s.policyType, 'sts');
  assert.deepEqual(s.policyStrings, ['version: STSv1', 'mode: enforce', 'mx: mx1.example.net', 'max_age: 86400']);
  const t = decidePolicy(input({ mx: [host('mx1.example.net', secure([ee], [ee]))] })).tlsRpt;
  assert.equal(t.policyType, 'tlsa');
  assert.deepEqual(t.policyStrings, [`3 1 1 ${'07'.repeat(32)}`]);
});

test('engine: the precedence is table, dane, mta-sts, default', () => {
  assert.deepEqual(PRECEDENCE.map((p) => p.source), ['table', 'dane', 'mta-sts', 'default']);
});
