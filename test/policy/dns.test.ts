/**
 * The one DNS client (src/policy/dns.ts) against the test DNS server: TXT joined from several
 * strings, AD per answer, SERVFAIL, a truncated UDP answer retried over TCP, a reply that lies
 * about the question, and a server that never answers (bounded by the timeout).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { DnsResolver } from '../../src/policy/dns.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';

let dns: DnsServer;
let resolver: DnsResolver;
const cert = Buffer.alloc(32, 7);

before(async () => {
  dns = await startDnsServer([
    { name: 'example.test', type: 'TXT', data: ['v=STSv1; ', 'id=abc123'] },
    { name: 'example.test', type: 'MX', preference: 10, exchange: 'mx.example.test' },
    { name: 'mx.example.test', type: 'A', address: '127.0.0.1' },
    { name: '_25._tcp.mx.example.test', type: 'TLSA', usage: 3, selector: 1, matchingType: 1, certificate: cert },
  ], { ad: true });
  resolver = new DnsResolver({ host: '127.0.0.1', port: dns.port }, 300);
});
after(() => dns.close());

test('a TXT record split over several strings is joined; TLSA and AD come through', async () => {
  assert.deepEqual(await resolver.txt('example.test'), ['v=STSv1; id=abc123']);
  const t = await resolver.tlsa('_25._tcp.mx.example.test');
  assert.equal(t.ad, true);
  assert.deepEqual(t.records, [{ usage: 3, selector: 1, matchingType: 1, data: cert }]);
  dns.setAd('_25._tcp.mx.example.test TLSA', false);
  assert.equal((await resolver.tlsa('_25._tcp.mx.example.test')).ad, false);
  dns.setAd('_25._tcp.mx.example.test TLSA', null);
  assert.equal((await resolver.query('nowhere.example.test', 'A')).rcode, 'NXDOMAIN');
});

test('SERVFAIL is reported as the rcode by query() and as DNS_FAILED by the typed lookups', async () => {
  dns.setFault('example.test MX', 'servfail');
  try {
    assert.equal((await resolver.query('example.test', 'MX')).rcode, 'SERVFAIL');
    await assert.rejects(resolver.mx('example.test'), { code: 'DNS_FAILED' });
  } finally {
    dns.setFault('example.test MX', null);
  }
});

test('a truncated UDP answer is asked again over TCP (RFC 7766 §5)', async () => {
  dns.setFault('example.test TXT', 'truncate');
  try {
    const r = await resolver.query('example.test', 'TXT');
    assert.equal(r.tcp, true);
    assert.equal(r.ad, true);
    assert.deepEqual(await resolver.txt('example.test'), ['v=STSv1; id=abc123']);
    assert.ok(dns.tcpQueries.includes('example.test TXT'));
  } finally {
    dns.setFault('example.test TXT', null);
  }
});

test('a reply with our id but another question is an error, never an answer', async () => {
  dns.setFault('mx.example.test A', 'lie');
  try {
    await assert.rejects(resolver.addresses('mx.example.test'), { code: 'DNS_BAD_ANSWER' });
  } finally {
    dns.setFault('mx.example.test A', null);
  }
  assert.deepEqual(await resolver.addresses('mx.example.test'), ['127.0.0.1']);
});

test('a server that never answers costs at most attempts x timeout, then DNS_TIMEOUT', async () => {
  dns.setFault('example.test TXT', 'drop');
  try {
    const before = dns.queries.filter((q) => q === 'example.test TXT').length;
    await assert.rejects(resolver.txt('example.test'), { code: 'DNS_TIMEOUT' });
    assert.equal(dns.queries.filter((q) => q === 'example.test TXT').length - before, 2);
  } finally {
    dns.setFault('example.test TXT', null);
  }
});
