/**
 * Delivery target text (src/delivery/target-spec.ts): every form of issue 12's contract parses
 * into its TargetSpec, and each kind of mistake gets a problem that names it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatTargetSpec, parseDeliverFlag, parseTargetSpec } from '../../src/delivery/target-spec.js';
import type { TargetSpec } from '../../src/delivery/types.js';

const GOOD: Array<[string, TargetSpec]> = [
  ['store', { kind: 'store' }],
  ['lmtp:127.0.0.1:24', { kind: 'lmtp', host: '127.0.0.1', port: 24 }],
  ['lmtp:mail.example.org:2424', { kind: 'lmtp', host: 'mail.example.org', port: 2424 }],
  ['lmtp:[::1]:24', { kind: 'lmtp', host: '::1', port: 24 }],
  ['lmtp:unix:/run/dovecot/lmtp', { kind: 'lmtp', socket: '/run/dovecot/lmtp' }],
  ['lmtp:unix:relative/sock', { kind: 'lmtp', socket: 'relative/sock' }],
  ['maildir:/var/mail/vhosts', { kind: 'maildir', dir: '/var/mail/vhosts' }],
  ['maildir:/path:with:colons', { kind: 'maildir', dir: '/path:with:colons' }],
  ['webhook:https://app.example.org/mail?x=1', { kind: 'webhook', url: 'https://app.example.org/mail?x=1' }],
  ['webhook:http://127.0.0.1:8080/in', { kind: 'webhook', url: 'http://127.0.0.1:8080/in' }],
  ['webhook:http://[::1]:8080/', { kind: 'webhook', url: 'http://[::1]:8080/' }],
];

test('every target form parses to its spec and formats back', () => {
  for (const [text, spec] of GOOD) {
    const r = parseTargetSpec(text);
    assert.deepEqual(r, { ok: true, spec }, text);
    assert.deepEqual(parseTargetSpec(formatTargetSpec(spec)), { ok: true, spec }, `round trip of ${text}`);
  }
});

const BAD: Array<[string, RegExp]> = [
  ['', /empty/],
  ['  ', /empty/],
  ['mbox:/var/mail', /unknown delivery target "mbox"/],
  ['Store', /unknown delivery target/],
  ['lmtp', /lmtp needs HOST:PORT or unix:PATH/],
  ['lmtp:', /lmtp needs HOST:PORT/],
  ['lmtp:127.0.0.1', /port is missing/],
  ['lmtp:host:0', /out of range/],
  ['lmtp:host:99999', /out of range/],
  ['lmtp:host:abc', /not a number/],
  ['lmtp:::1:24', /IPv6 address with a port goes in brackets/],
  ['lmtp:[::1:24', /no closing \]/],
  ['lmtp:unix:', /socket path is missing/],
  ['lmtp:unix:/a\0b', /NUL/],
  ['maildir:', /directory is missing/],
  ['maildir', /directory is missing/],
  ['webhook:', /needs a URL/],
  ['webhook:not a url', /is not a URL/],
  ['webhook:ftp://example.org/x', /"ftp:" is not http: or https:/],
  ['webhook:https://example.org/x#frag', /fragment/],
];

test('each mistake gets a problem that names it', () => {
  for (const [text, re] of BAD) {
    const r = parseTargetSpec(text);
    assert.equal(r.ok, false, JSON.stringify(text));
    if (!r.ok) assert.match(r.problem, re, JSON.stringify(text));
  }
});

test('--deliver DOMAIN=TARGET: domain lower-cased, target parsed, mistakes named', () => {
  assert.deepEqual(parseDeliverFlag('Example.ORG=maildir:/srv/mail'), { ok: true, domain: 'example.org', target: { kind: 'maildir', dir: '/srv/mail' } });
  assert.deepEqual(parseDeliverFlag('example.org.=store'), { ok: true, domain: 'example.org', target: { kind: 'store' } });
  // Only the first '=' splits: a URL may carry '=' in its query.
  assert.deepEqual(parseDeliverFlag('app.example=webhook:https://h.example/in?k=v'), { ok: true, domain: 'app.example', target: { kind: 'webhook', url: 'https://h.example/in?k=v' } });
  assert.deepEqual(parseDeliverFlag('x.example=lmtp:[2001:db8::1]:24'), { ok: true, domain: 'x.example', target: { kind: 'lmtp', host: '2001:db8::1', port: 24 } });
  const bad: Array<[string, RegExp]> = [
    ['example.org', /expected DOMAIN=TARGET/],
    ['=store', /domain before = is missing/],
    ['bad_domain!=store', /is not a domain name/],
    ['-x.example=store', /is not a domain name/],
    ['example.org=lmtp:host', /port is missing/],
    ['example.org=', /empty/],
  ];
  for (const [text, re] of bad) {
    const r = parseDeliverFlag(text);
    assert.equal(r.ok, false, text);
    if (!r.ok) assert.match(r.problem, re, text);
  }
});
