/** Bounces (RFC 3464/6522) and the retry schedule. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildBounce, headerSection } from '../../src/relay/bounce.js';
import { DEFAULT_RELAY } from '../../src/config.js';
import { nextAttempt } from '../../src/relay/schedule.js';

const DEFAULT_RETRY = DEFAULT_RELAY.retry;

const original = Buffer.from('Received: from x\r\nSubject: hello\r\nFrom: <a@example.org>\r\n\r\nsecret body text\r\n');

test('a bounce is a multipart/report with a delivery-status part and only the original headers', () => {
  const b = buildBounce({
    reportingMta: 'mail.postseal.test',
    originalSender: 'a@example.org',
    originalId: 'abc123',
    arrivalDate: new Date('2026-11-01T10:00:00Z'),
    original,
    recipients: [{ recipient: 'bob@example.net', status: '5.1.1', action: 'failed', remoteMta: 'mx.example.net', diagnostic: '550 5.1.1 no such user', lastAttempt: new Date('2026-11-01T10:01:00Z') }],
  });
  assert.ok(b);
  assert.equal(b.mailFrom, '');
  assert.equal(b.to, 'a@example.org');
  const text = b.data.toString('utf8');
  assert.match(text, /^Content-Type: multipart\/report; report-type=delivery-status; boundary="/m);
  assert.match(text, /^Reporting-MTA: dns; mail\.postseal\.test\r$/m);
  assert.match(text, /^Final-Recipient: rfc822; bob@example\.net\r$/m);
  assert.match(text, /^Action: failed\r$/m);
  assert.match(text, /^Status: 5\.1\.1\r$/m);
  assert.match(text, /^Diagnostic-Code: smtp; 550 5\.1\.1 no such user\r$/m);
  assert.match(text, /^Auto-Submitted: auto-replied\r$/m);
  assert.match(text, /Subject: hello/);
  assert.doesNotMatch(text, /secret body text/, 'only headers of the original are returned');
  assert.doesNotMatch(text.replace(/\r\n/g, ''), /[\r\n]/, 'every line ends in CRLF');
});

test('no bounce for a message from the null sender (RFC 5321 §4.5.5)', () => {
  const b = buildBounce({ reportingMta: 'm', originalSender: '', originalId: 'x', arrivalDate: new Date(), original, recipients: [] });
  assert.equal(b, null);
});

test('values from the original cannot inject headers into the bounce', () => {
  const b = buildBounce({
    reportingMta: 'm.test',
    originalSender: 'a@example.org',
    originalId: 'x',
    arrivalDate: new Date(),
    original,
    recipients: [{ recipient: 'b@x.test\r\nBcc: victim@x.test', status: '5.0.0', action: 'failed', remoteMta: null, diagnostic: '550 no\r\nX-Evil: 1', lastAttempt: new Date() }],
  });
  assert.ok(b);
  assert.doesNotMatch(b.data.toString(), /^Bcc:|^X-Evil:/m);
});

test('headerSection stops at the blank line', () => {
  assert.equal(headerSection(original), 'Received: from x\r\nSubject: hello\r\nFrom: <a@example.org>\r\n');
});

test('retries back off exponentially up to the cap, and stop at the maximum age', () => {
  const received = new Date('2026-11-01T00:00:00Z');
  const now = new Date('2026-11-01T00:00:00Z');
  const d1 = nextAttempt(DEFAULT_RETRY, 1, received, now, 0.5);
  const d3 = nextAttempt(DEFAULT_RETRY, 3, received, now, 0.5);
  const d20 = nextAttempt(DEFAULT_RETRY, 20, received, now, 0.5);
  assert.ok(d1 && d3 && d20);
  assert.equal(d1.getTime() - now.getTime(), DEFAULT_RETRY.minBackoffMs);
  assert.equal(d3.getTime() - now.getTime(), DEFAULT_RETRY.minBackoffMs * 4);
  assert.equal(d20.getTime() - now.getTime(), DEFAULT_RETRY.maxBackoffMs);
  const late = new Date(received.getTime() + DEFAULT_RETRY.maxAgeMs);
  assert.equal(nextAttempt(DEFAULT_RETRY, 5, received, late), null);
  const nearEnd = new Date(received.getTime() + DEFAULT_RETRY.maxAgeMs - 60_000);
  const last = nextAttempt(DEFAULT_RETRY, 5, received, nearEnd, 0.5);
  assert.ok(last && last.getTime() <= received.getTime() + DEFAULT_RETRY.maxAgeMs);
});
