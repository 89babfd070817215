/** The one HOST:PORT parser (protocol/host-port.ts): table-driven, plus a round-trip property. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fc from 'fast-check';
import { isIpv6, parseHostPort, type HostPortOptions } from '../../src/protocol/host-port.js';

type Row = [text: string, opts: HostPortOptions, expected: { host: string; port: number } | RegExp];

const ROWS: Row[] = [
  ['127.0.0.1:2525', {}, { host: '127.0.0.1', port: 2525 }],
  ['mx.example.org:25', {}, { host: 'mx.example.org', port: 25 }],
  ['mx.example.org.:25', {}, { host: 'mx.example.org', port: 25 }],
  ['smtp_relay.internal:587', {}, { host: 'smtp_relay.internal', port: 587 }],
  ['[::1]:25', {}, { host: '::1', port: 25 }],
  ['[2001:db8::1]:587', {}, { host: '2001:db8::1', port: 587 }],
  ['[::ffff:192.0.2.1]:25', {}, { host: '::ffff:192.0.2.1', port: 25 }],
  ['[fe80:0:0:0:0:0:0:1]:1', {}, { host: 'fe80:0:0:0:0:0:0:1', port: 1 }],
  ['localhost:65535', {}, { host: 'localhost', port: 65535 }],
  // default port: the port may be left out, also after a bare IPv6 literal
  ['mx.example.org', { defaultPort: 25 }, { host: 'mx.example.org', port: 25 }],
  ['[::1]', { defaultPort: 465 }, { host: '::1', port: 465 }],
  ['::1', { defaultPort: 25 }, { host: '::1', port: 25 }],
  ['2001:db8::25', { defaultPort: 25 }, { host: '2001:db8::25', port: 25 }],
  // port 0 only for listeners
  ['127.0.0.1:0', { allowPortZero: true }, { host: '127.0.0.1', port: 0 }],
  ['127.0.0.1:0', {}, /port 0 is out of range \(1-65535\)/],
  // missing port
  ['127.0.0.1', {}, /the port is missing/],
  ['127.0.0.1:', {}, /the port is missing/],
  ['[::1]', {}, /the port is missing/],
  ['::1', {}, /\[IPv6\]:PORT/],
  ['::1:25', {}, /\[IPv6\]:PORT/],
  // bad ports
  ['mx.example.org:65536', {}, /port 65536 is out of range/],
  ['mx.example.org:99999', {}, /out of range/],
  ['mx.example.org:123456', {}, /not a number/],
  ['mx.example.org:-1', {}, /not a number/],
  ['mx.example.org:+25', {}, /not a number/],
  ['mx.example.org:2 5', {}, /not a number/],
  ['mx.example.org:smtp', {}, /not a number/],
  ['[::1]:', {}, /the port is missing/],
  // bad hosts
  [':25', {}, /the host is missing/],
  ['mx..example.org:25', {}, /not a host name/],
  ['mx example.org:25', {}, /not a host name/],
  ['[::1:25', {}, /no closing \]/],
  ['[::1]25', {}, /after \]/],
  ['[mx.example.org]:25', {}, /not an IPv6 address/],
  ['[1:2:3:4:5:6:7:8:9]:25', {}, /not an IPv6 address/],
  ['[::1::2]:25', {}, /not an IPv6 address/],
  ['[fe80::1%eth0]:25', {}, /not an IPv6 address/],
  ['', { defaultPort: 25 }, /the host is missing/],
];

test('parseHostPort: the table', () => {
  for (const [text, opts, expected] of ROWS) {
    const r = parseHostPort(text, opts);
    if (expected instanceof RegExp) {
      assert.equal(r.ok, false, `${text}: accepted`);
      if (!r.ok) assert.match(r.problem, expected, text);
    } else {
      assert.deepEqual(r, { ok: true, ...expected }, text);
    }
  }
});

test('isIpv6 agrees with node:net on IPv6 text forms', () => {
  fc.assert(
    fc.property(fc.ipV6(), (a) => {
      assert.equal(isIpv6(a), net.isIPv6(a), a);
    }),
  );
  for (const bad of ['1.2.3.4', ':', ':::', '1::2::3', '12345::', 'g::1', '::1.2.3', '::256.1.1.1', '1:2:3:4:5:6:7:8:9']) assert.equal(isIpv6(bad), false, bad);
});

test('[IPv6]:PORT and HOST:PORT round-trip for every valid port', () => {
  fc.assert(
    fc.property(fc.oneof(fc.ipV6(), fc.ipV4(), fc.domain()), fc.integer({ min: 1, max: 65535 }), (host, port) => {
      const text = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
      assert.deepEqual(parseHostPort(text), { ok: true, host, port });
    }),
  );
});
