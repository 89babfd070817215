/**
 * lookupTlsa() and dnssecStatus() against the test DNS server on 127.0.0.1:0 (real packets): the
 * AD bit decides secure vs insecure, SERVFAIL is bogus, a secure NXDOMAIN/NODATA means "DANE does
 * not apply", no answer is an error (never "no TLSA"); usable = DANE-TA/EE with known parameters
 * and well-formed data (RFC 7672 §2.2, §3.1.3).
 */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { after, describe, it } from 'node:test';
import { DnsResolver } from '../../src/policy/dns.js';
import { dnssecStatus, isSecure, lookupTlsa, matchTlsa, tlsaName } from '../../src/policy/dane.js';
import { startDnsServer, type DnsRecord, type DnsServer } from '../helpers/dns-server.js';

const MX = 'mx.fake.test';
const NAME = '_25._tcp.mx.fake.test';
const sha = (b: number): Buffer => Buffer.alloc(32, b);

const RECORDS: DnsRecord[] = [
  { name: 'fake.test', type: 'MX', preference: 10, exchange: MX },
  { name: MX, type: 'A', address: '127.0.0.1' },
  { name: NAME, type: 'TLSA', usage: 3, selector: 1, matchingType: 1, certificate: sha(1) },
  { name: NAME, type: 'TLSA', usage: 2, selector: 0, matchingType: 1, certificate: sha(2) },
  { name: NAME, type: 'TLSA', usage: 1, selector: 1, matchingType: 1, certificate: sha(3) },
  // RFC 6698 §2.1.4: SHA-256 data must be 32 octets: this one is unusable (tlsa-invalid).
  { name: NAME, type: 'TLSA', usage: 3, selector: 1, matchingType: 1, certificate: Buffer.alloc(31, 4) },
  { name: NAME, type: 'TLSA', usage: 3, selector: 7, matchingType: 1, certificate: sha(5) },
];

const servers: DnsServer[] = [];
after(async () => {
  for (const s of servers) await s.close();
});

async function resolverFor(records: DnsRecord[], options: Parameters<typeof startDnsServer>[1]): Promise<DnsResolver> {
  const s = await startDnsServer(records, options);
  servers.push(s);
  return new DnsResolver({ host: '127.0.0.1', port: s.port }, 1000, { attempts: 1 });
}

describe('lookupTlsa', () => {
  it('tlsaName is _PORT._tcp.MXHOST (RFC 7672 §3)', () => {
    assert.equal(tlsaName('mx.fake.test.', 25), NAME);
  });

  it('secure (AD): every record kept, only DANE-TA/EE with good data usable', async () => {
    const r = await lookupTlsa(await resolverFor(RECORDS, { ad: true }), MX, 25);
    assert.equal(r.status, 'secure');
    assert.equal(r.records.length, 5);
    assert.deepEqual(r.usable.map((t) => `${t.usage} ${t.selector} ${t.matchingType} ${t.data.length}`), ['3 1 1 32', '2 0 1 32']);
    assert.match(r.detail ?? '', /3 of 5 TLSA record\(s\) unusable/);
    assert.match(r.detail ?? '', /31 octets .*tlsa-invalid/);
    assert.match(r.detail ?? '', /PKIX-EE/);
  });

  it('all records unusable: secure with usable empty (encrypt without authentication is the engine\'s call)', async () => {
    const only = RECORDS.filter((x) => !(x.type === 'TLSA' && (x.usage === 2 || (x.usage === 3 && x.selector === 1 && x.certificate.length === 32))));
    const r = await lookupTlsa(await resolverFor(only, { ad: true }), MX, 25);
    assert.equal(r.status, 'secure');
    assert.equal(r.records.length, 3);
    assert.deepEqual(r.usable, []);
  });

  it('insecure (no AD): records shown, none usable', async () => {
    const r = await lookupTlsa(await resolverFor(RECORDS, { ad: false }), MX, 25);
    assert.equal(r.status, 'insecure');
    assert.equal(r.records.length, 5);
    assert.deepEqual(r.usable, []);
  });

  it('bogus: SERVFAIL from the validating resolver', async () => {
    const r = await lookupTlsa(await resolverFor(RECORDS, { ad: true, servfail: [`${NAME} TLSA`] }), MX, 25);
    assert.equal(r.status, 'bogus');
    assert.deepEqual(r.usable, []);
    assert.match(r.detail ?? '', /SERVFAIL/);
  });

  it('secure NXDOMAIN: DANE does not apply', async () => {
    const r = await lookupTlsa(await resolverFor(RECORDS, { ad: true, adNxdomain: true }), 'other.fake.test', 25);
    assert.equal(r.status, 'secure');
    assert.deepEqual(r.records, []);
    assert.match(r.detail ?? '', /NXDOMAIN: DANE does not apply/);
  });

  it('secure NODATA (the name has other records): DANE does not apply', async () => {
    const recs: DnsRecord[] = [{ name: NAME, type: 'TXT', data: 'x' }];
    const r = await lookupTlsa(await resolverFor(recs, { ad: true }), MX, 25);
    assert.equal(r.status, 'secure');
    assert.deepEqual(r.records, []);
    assert.match(r.detail ?? '', /NODATA/);
  });

  it('NXDOMAIN without AD: insecure', async () => {
    const r = await lookupTlsa(await resolverFor(RECORDS, { ad: true }), 'other.fake.test', 25);
    assert.equal(r.status, 'insecure');
  });

  it('no answer at all: error, never "no TLSA"', async () => {
    // A bound UDP socket that never answers.
    const mute = createSocket('udp4');
    await new Promise<void>((res) => mute.bind(0, '127.0.0.1', () => res()));
    try {
      const port = mute.address().port;
      const r = await lookupTlsa(new DnsResolver({ host: '127.0.0.1', port }, 200, { attempts: 1 }), MX, 25);
      assert.equal(r.status, 'error');
      assert.ok(r.detail);
    } finally {
      mute.close();
    }
  });
});

describe('dnssecStatus / isSecure (RFC 7672 §2.2: the MX RRset and addresses must be secure too)', () => {
  it('secure, insecure, bogus', async () => {
    const secure = await resolverFor(RECORDS, { ad: true, servfail: [`${MX} AAAA`] });
    assert.equal(await isSecure(secure, 'fake.test', 'MX'), true);
    assert.equal((await dnssecStatus(secure, MX, 'A')).status, 'secure');
    assert.equal((await dnssecStatus(secure, MX, 'AAAA')).status, 'bogus');
    const insecure = await resolverFor(RECORDS, { ad: false });
    assert.equal(await isSecure(insecure, 'fake.test', 'MX'), false);
    assert.equal((await dnssecStatus(insecure, MX, 'A')).status, 'insecure');
  });
});

describe('matchTlsa (the checker uses the same matcher)', () => {
  it('reports malformed and PKIX records as unusable', () => {
    const res = matchTlsa(
      [
        { usage: 3, selector: 1, matchingType: 1, data: Buffer.alloc(31) },
        { usage: 1, selector: 1, matchingType: 1, data: sha(1) },
        { usage: 3, selector: 1, matchingType: 1, data: sha(1) },
      ],
      [],
    );
    assert.deepEqual(res.map((m) => m.result), ['unusable', 'unusable', 'no-match']);
  });
});
