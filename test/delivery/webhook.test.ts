/**
 * The webhook target (src/delivery/webhook.ts) against real HTTP and HTTPS servers on
 * 127.0.0.1:0. The receiver verifies each call the way docs/delivery.md tells a user to: recompute
 * the HMAC over `timestamp.body` with the shared secret, compare in constant time, check the
 * timestamp is within the 5-minute window, and de-duplicate on Idempotency-Key.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { WEBHOOK_REPLAY_WINDOW_S, WebhookTarget, parseHeaderFields } from '../../src/delivery/webhook.js';
import type { LocalDelivery } from '../../src/delivery/types.js';
import type { MessageSummary } from '../../src/types.js';
import { issueCert, makeTestCa } from '../helpers/certs.js';

const SECRET = 'whsec_test_0123456789';

const MESSAGE = Buffer.concat([
  Buffer.from('Received: from client.example.net by mx.example.org;\r\n\tMon, 30 Nov 2026 12:00:00 +0000\r\nFrom: a@example.net\r\nTo: alice@example.org, bob@example.org\r\nSubject: webhook\r\n\r\nbody line\r\n.\r\n'),
  Buffer.from([0xc3, 0xa9, 0xff, 0x00, 0x0d, 0x0a]),
]);

function delivery(id = '01jq8x7k2m3n4p5q', recipients = ['alice@example.org', 'bob@example.org']): LocalDelivery {
  const summary: MessageSummary = {
    id,
    receivedAt: '2026-11-30T12:00:00.000Z',
    mailFrom: 'sender@example.net',
    recipients,
    size: MESSAGE.length,
    listener: 'mx',
    clientAddress: '192.0.2.1',
    heloName: 'client.example.net',
    authUser: null,
    tls: { protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', group: null, sni: 'mx.example.org', alpn: null },
    requireTls: false,
    authResults: null,
    quarantine: false,
  };
  return { id, mailFrom: 'sender@example.net', recipients, data: MESSAGE, summary };
}

/** What a user's receiver does with each call: verify, then de-duplicate. */
function verify(secret: string, headers: http.IncomingHttpHeaders, body: Buffer, nowS = Math.floor(Date.now() / 1000)): string | null {
  const ts = headers['x-postseal-timestamp'];
  const sig = headers['x-postseal-signature'];
  if (typeof ts !== 'string' || typeof sig !== 'string' || !/^[0-9]+$/.test(ts)) return 'missing headers';
  if (Math.abs(nowS - Number(ts)) > WEBHOOK_REPLAY_WINDOW_S) return 'timestamp outside the window';
  const expected = Buffer.from(`v1=${createHmac('sha256', secret).update(`${ts}.`).update(body).digest('hex')}`);
  const given = Buffer.from(sig);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'bad signature';
  return null;
}

interface Call {
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  verified: string | null;
  url: string;
}

type Handler = (call: Call, res: http.ServerResponse, n: number) => void;

async function receiver(t: { after: (fn: () => Promise<void> | void) => void }, handler: Handler, tlsPair?: { certPem: string; keyPem: string }): Promise<{ url: string; calls: Call[]; accepted: Map<string, Buffer>; cutOff: Promise<void> }> {
  const calls: Call[] = [];
  const accepted = new Map<string, Buffer>();
  let onCutOff = (): void => undefined;
  const cutOff = new Promise<void>((r) => (onCutOff = r));
  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const call: Call = { headers: req.headers, body, verified: verify(SECRET, req.headers, body), url: req.url ?? '' };
      calls.push(call);
      res.on('close', () => {
        if (!res.writableFinished) onCutOff();
      });
      handler(call, res, calls.length);
    });
  };
  const server = tlsPair !== undefined ? https.createServer({ cert: tlsPair.certPem, key: tlsPair.keyPem }, onRequest) : http.createServer(onRequest);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  const { port } = server.address() as AddressInfo;
  return { url: `${tlsPair !== undefined ? 'https' : 'http'}://127.0.0.1:${port}/hooks/mail?src=postseal`, calls, accepted, cutOff };
}

/** The user's handler: verify, refuse bad calls with 401, accept once per idempotency key. */
function acceptAfter(failures: number, accepted: () => Map<string, Buffer>): Handler {
  return (call, res, n) => {
    if (call.verified !== null) return void res.writeHead(401).end(call.verified);
    if (n <= failures) return void res.writeHead(503).end('busy');
    const key = String(call.headers['idempotency-key']);
    if (!accepted().has(key)) accepted().set(key, call.body);
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
  };
}

test('503, 503, then 200: deferred, deferred, delivered; signed, same idempotency key, accepted once; raw body byte-exact', async (t) => {
  let acc = new Map<string, Buffer>();
  const r = await receiver(t, acceptAfter(2, () => acc));
  acc = r.accepted;
  const target = new WebhookTarget({ url: r.url, secret: SECRET });
  const msg = delivery();
  const outcomes: string[][] = [];
  for (let i = 0; i < 3; i++) outcomes.push((await target.deliver(msg)).map((o) => o.outcome));
  assert.deepEqual(outcomes, [['deferred', 'deferred'], ['deferred', 'deferred'], ['delivered', 'delivered']]);
  // A retry after a lost answer: the receiver sees the same key again and keeps one.
  assert.deepEqual((await target.deliver(msg)).map((o) => o.outcome), ['delivered', 'delivered']);
  assert.equal(r.calls.length, 4);
  for (const c of r.calls) {
    assert.equal(c.verified, null);
    assert.equal(c.headers['idempotency-key'], msg.id);
    assert.equal(c.headers['content-type'], 'message/rfc822');
    assert.equal(c.url, '/hooks/mail?src=postseal');
    assert.ok(c.body.equals(MESSAGE));
  }
  assert.equal(r.accepted.size, 1);
  assert.ok(r.accepted.get(msg.id)?.equals(MESSAGE));
  const first = (await new WebhookTarget({ url: r.url, secret: SECRET }).deliver(delivery('01jq8x7k2m3n4zzz', ['x@example.org'])))[0];
  assert.deepEqual(first, { recipient: 'x@example.org', outcome: 'delivered' });
  assert.equal(r.accepted.size, 2);
  // A wrong secret: the receiver's check refuses it with 401, a 4xx, permanent.
  const wrong = await new WebhookTarget({ url: r.url, secret: 'wrong-secret' }).deliver(delivery('01jq8x7k2m3n4yyy', ['y@example.org']));
  assert.equal(wrong[0]?.outcome, 'failed');
  assert.equal(r.calls.at(-1)?.verified, 'bad signature');
});

test('the receiver\'s checks refuse a stale timestamp and a tampered body', () => {
  const body = Buffer.from('x');
  const ts = String(Math.floor(Date.now() / 1000));
  const sig = `v1=${createHmac('sha256', SECRET).update(`${ts}.`).update(body).digest('hex')}`;
  const headers = { 'x-postseal-timestamp': ts, 'x-postseal-signature': sig };
  assert.equal(verify(SECRET, headers, body), null);
  assert.equal(verify(SECRET, headers, Buffer.from('y')), 'bad signature');
  assert.equal(verify(SECRET, headers, body, Number(ts) + WEBHOOK_REPLAY_WINDOW_S + 1), 'timestamp outside the window');
});

test('HTTP statuses: 400 → failed (all recipients), 429 and 408 → deferred, 500 → deferred', async (t) => {
  const statuses = [400, 429, 408, 500, 404];
  const r = await receiver(t, (_c, res, n) => void res.writeHead(statuses[n - 1] ?? 500).end('no'));
  const target = new WebhookTarget({ url: r.url, secret: SECRET });
  const got: string[] = [];
  for (let i = 0; i < statuses.length; i++) {
    const out = await target.deliver(delivery());
    assert.equal(out.length, 2);
    assert.equal(out[0]?.outcome, out[1]?.outcome);
    got.push(out[0]?.outcome ?? '');
    if (out[0]?.outcome !== 'delivered') assert.match(out[0]?.error ?? '', new RegExp(`HTTP ${statuses[i]}`));
  }
  assert.deepEqual(got, ['failed', 'deferred', 'deferred', 'deferred', 'failed']);
});

test('a receiver that does not answer → deferred after the timeout; a closed port → deferred', async (t) => {
  const r = await receiver(t, () => undefined);
  const out = await new WebhookTarget({ url: r.url, secret: SECRET, timeoutMs: 300 }).deliver(delivery());
  assert.deepEqual(out.map((o) => o.outcome), ['deferred', 'deferred']);
  assert.match(out[0]?.outcome === 'deferred' ? out[0].error : '', /no complete answer within 300 ms/);
  // A port nothing listens on: the server is gone.
  const gone = http.createServer();
  await new Promise<void>((res) => gone.listen(0, '127.0.0.1', res));
  const { port } = gone.address() as AddressInfo;
  await new Promise<void>((res) => gone.close(() => res()));
  const refused = await new WebhookTarget({ url: `http://127.0.0.1:${port}/`, secret: SECRET }).deliver(delivery());
  assert.equal(refused[0]?.outcome, 'deferred');
  assert.match(refused[0]?.outcome === 'deferred' ? refused[0].error : '', /ECONNREFUSED/);
  // An AbortSignal (the queue shutting down) ends the wait as a deferral.
  const ac = new AbortController();
  const p = new WebhookTarget({ url: r.url, secret: SECRET }).deliver(delivery(), ac.signal);
  ac.abort();
  assert.deepEqual((await p).map((o) => o.outcome), ['deferred', 'deferred']);
});

test('a redirect is not followed → deferred with the reason', async (t) => {
  const r = await receiver(t, (c, res) => {
    if (c.url.startsWith('/elsewhere')) return void res.writeHead(200).end();
    res.writeHead(302, { location: '/elsewhere' }).end();
  });
  const out = await new WebhookTarget({ url: r.url, secret: SECRET }).deliver(delivery());
  assert.equal(out[0]?.outcome, 'deferred');
  assert.match(out[0]?.outcome === 'deferred' ? out[0].error : '', /HTTP 302: redirects are not followed.*"\/elsewhere"/);
  assert.deepEqual(r.calls.map((c) => c.url), ['/hooks/mail?src=postseal']);
});

test('an endless response body is read only up to the cap: the status decides, the connection is closed', async (t) => {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const r = await receiver(t, (_c, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    // Never ends: without the cap the call could only end at the (long) timeout, as a deferral.
    const pump = (): void => {
      while (!res.destroyed && res.write(chunk));
      if (!res.destroyed) res.once('drain', pump);
    };
    pump();
  });
  const out = await new WebhookTarget({ url: r.url, secret: SECRET, timeoutMs: 60_000, maxResponseBytes: 64 * 1024 }).deliver(delivery());
  assert.deepEqual(out.map((o) => o.outcome), ['delivered', 'delivered']);
  // The receiver sees its (unfinished) response cut off by us.
  await r.cutOff;
});

test('https: the certificate is verified (private CA through `ca`), untrusted → deferred', async (t) => {
  const ca = await makeTestCa();
  const pair = await issueCert(ca, { names: ['127.0.0.1'] });
  let acc = new Map<string, Buffer>();
  const r = await receiver(t, acceptAfter(0, () => acc), pair);
  acc = r.accepted;
  const ok = await new WebhookTarget({ url: r.url, secret: SECRET, ca: [ca.certPem] }).deliver(delivery());
  assert.deepEqual(ok.map((o) => o.outcome), ['delivered', 'delivered']);
  assert.equal(r.calls[0]?.verified, null);
  const untrusted = await new WebhookTarget({ url: r.url, secret: SECRET }).deliver(delivery());
  assert.equal(untrusted[0]?.outcome, 'deferred');
  assert.match(untrusted[0]?.outcome === 'deferred' ? untrusted[0].error : '', /certificate/i);
  assert.equal(r.calls.length, 1);
});

test('format json: envelope, headers in order, TLS facts, raw message decoding byte-exact, signature over the JSON body', async (t) => {
  let acc = new Map<string, Buffer>();
  const r = await receiver(t, acceptAfter(0, () => acc));
  acc = r.accepted;
  const out = await new WebhookTarget({ url: r.url, secret: SECRET, format: 'json' }).deliver(delivery());
  assert.deepEqual(out.map((o) => o.outcome), ['delivered', 'delivered']);
  const call = r.calls[0];
  assert.ok(call);
  assert.equal(call.verified, null);
  assert.equal(call.headers['content-type'], 'application/json');
  const j = JSON.parse(call.body.toString('utf8')) as {
    id: string;
    envelope: { mailFrom: string; recipients: string[] };
    headers: Array<{ name: string; value: string }>;
    tls: { protocol: string } | null;
    authResults: unknown;
    raw: string;
  };
  assert.equal(j.id, '01jq8x7k2m3n4p5q');
  assert.deepEqual(j.envelope, { mailFrom: 'sender@example.net', recipients: ['alice@example.org', 'bob@example.org'] });
  assert.deepEqual(j.headers.map((h) => h.name), ['Received', 'From', 'To', 'Subject']);
  assert.equal(j.headers[0]?.value, 'from client.example.net by mx.example.org;\tMon, 30 Nov 2026 12:00:00 +0000');
  assert.equal(j.headers[2]?.value, 'alice@example.org, bob@example.org');
  assert.equal(j.tls?.protocol, 'TLSv1.3');
  assert.equal(j.authResults, null);
  assert.ok(Buffer.from(j.raw, 'base64').equals(MESSAGE));
});

test('parseHeaderFields: order, folding, no header block', () => {
  assert.deepEqual(parseHeaderFields(Buffer.from('A: 1\r\nB:2\r\n  more\r\nA: 3\r\n\r\nC: body\r\n')), [
    { name: 'A', value: '1' },
    { name: 'B', value: '2  more' },
    { name: 'A', value: '3' },
  ]);
  assert.deepEqual(parseHeaderFields(Buffer.from('\r\nbody only\r\n')), []);
});
