/**
 * The console pages and their assets (issue 14, src/http/pages.ts), over fetch against a real
 * `postseal serve --http 127.0.0.1:0` child:
 * - every page answers 200 for a logged-in admin with a shell that carries the session's CSRF
 *   token, and 303 to /login without a session;
 * - the HTML has no inline script body, no <style> element and no style= attribute (the CSP is
 *   script-src 'self'; style-src 'self'), and every script/stylesheet it names, and every module
 *   those import (our ui/ modules and the vendor ones), is served with the right content type;
 * - the asset routes are allow-lists: traversal attempts, plain and encoded, are 404;
 * - a received HTML message: /api/v1/messages/ID/html answers with the sandbox CSP (never
 *   rendered in the console's origin), /parsed gives its header fields and text;
 * - /api/v1/stats/tls counts it as a plaintext inbound message and lists its sender under
 *   "who still sends me plaintext?"; tlsStats buckets per hour (pure).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';
import nodemailer from 'nodemailer';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule, { type FormatsPlugin } from 'ajv-formats';
import { killAll } from '../cli/child.js';
import { cli, login, startConsole, ADMIN, type ConsoleServer, type Login } from './helpers.js';
import { MESSAGE_HTML_CSP } from '../../src/http/api/message-view.js';
import { tlsStats } from '../../src/http/api/stats.js';
import type { MessageSummary } from '../../src/types.js';

// A CommonJS module seen through ESM: the plugin function may be the default export's default.
const addFormats = ((addFormatsModule as unknown as { default?: FormatsPlugin }).default ?? addFormatsModule) as FormatsPlugin;

const PAGES = ['/', '/check', '/check/some-id', '/messages', '/messages/some-id', '/queue'];

let srv: ConsoleServer;
let session: Login;

let ajv: Ajv2020;

before(async () => {
  srv = await startConsole();
  session = await login(srv.base);
  ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  ajv.addSchema({ ...((await (await fetch(srv.base + '/api/v1/openapi.json')).json()) as object), $id: 'api' });
});

/** The JSON of a response, checked against its schema in openapi.json (documented path, method, status). */
async function documented(res: Response, template: string): Promise<unknown> {
  const body: unknown = await res.json();
  const pointer = `api#/paths/${template.replace(/~/g, '~0').replace(/\//g, '~1')}/get/responses/${res.status}/content/application~1json/schema`;
  const validate = ajv.getSchema(pointer);
  assert.ok(validate, `GET ${template} ${res.status} is documented (${pointer})`);
  assert.ok(validate(body), `GET ${template} ${res.status}: ${ajv.errorsText(validate.errors)}`);
  return body;
}
after(async () => {
  await srv?.close();
  killAll();
});

/** A raw GET whose path is sent exactly as given (fetch would normalise `..` segments away). */
function rawGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

test('pages redirect to /login without a session', async () => {
  for (const p of PAGES) {
    const r = await fetch(srv.base + p, { redirect: 'manual' });
    assert.equal(r.status, 303, p);
    assert.match(r.headers.get('location') ?? '', /^\/login(\?next=|$)/, p);
  }
  // The login page uses the console's stylesheet, served without a login, and has no inline style.
  const lp = await fetch(srv.base + '/login');
  assert.equal(lp.status, 200);
  const lb = await lp.text();
  assert.match(lb, /<link rel="stylesheet" href="\/assets\/ui\/app.css">/);
  assert.doesNotMatch(lb, /\sstyle\s*=|<style\b|<script\b/i);
  const css = await fetch(srv.base + '/assets/ui/app.css');
  assert.equal(css.status, 200);
  assert.match(css.headers.get('content-type') ?? '', /^text\/css/);
  // A session cookie the server did not issue is no session.
  const bad = await fetch(srv.base + '/queue', { redirect: 'manual', headers: { cookie: 'postseal_session=forged' } });
  assert.equal(bad.status, 303);
});

test('every page: 200 for the admin, CSRF meta, no inline script or style, assets served', async () => {
  const seen = new Set<string>();
  for (const p of PAGES) {
    const r = await fetch(srv.base + p, { headers: { cookie: session.cookie }, redirect: 'manual' });
    assert.equal(r.status, 200, p);
    assert.match(r.headers.get('content-type') ?? '', /^text\/html/, p);
    assert.match(r.headers.get('content-security-policy') ?? '', /script-src 'self'/, p);
    const body = await r.text();
    const meta = /<meta name="csrf-token" content="([^"]*)">/.exec(body);
    assert.equal(meta?.[1], session.csrf, `${p}: the shell carries the session's CSRF token`);
    // CSP: no inline script bodies, no inline styles (attributes or elements).
    const scripts = [...body.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)];
    assert.ok(scripts.length >= 1, `${p}: a module script`);
    for (const s of scripts) {
      assert.match(s[1] ?? '', /\bsrc="\/assets\//, `${p}: script from our origin's assets`);
      assert.equal((s[2] ?? '').trim(), '', `${p}: no inline script body`);
    }
    assert.doesNotMatch(body, /\sstyle\s*=/i, `${p}: no style= attribute`);
    assert.doesNotMatch(body, /<style\b/i, `${p}: no <style> element`);
    assert.doesNotMatch(body, /\son[a-z]+\s*=/i, `${p}: no inline event handler`);
    assert.doesNotMatch(body, /https?:\/\//, `${p}: no external origin`);
    for (const m of body.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)) seen.add(m[1] ?? '');
  }
  // Walk the module graph from the pages' scripts: every import is served, with its type.
  const queue = [...seen];
  const done = new Set<string>();
  while (queue.length > 0) {
    const url = queue.shift() ?? '';
    if (done.has(url)) continue;
    done.add(url);
    const r = await fetch(srv.base + url);
    assert.equal(r.status, 200, url);
    const type = r.headers.get('content-type') ?? '';
    if (url.endsWith('.css')) assert.match(type, /^text\/css/, url);
    else assert.match(type, /^text\/javascript/, url);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff', url);
    const text = await r.text();
    if (!url.endsWith('.js')) continue;
    // Static import/export statements (at a statement start; minified or not), not words in comments.
    for (const m of text.matchAll(/(?:^|[;\n])\s*(?:import|export)\s*(?:[\w$*{}\s,]+?\s*from\s*)?["']([^"'\n]+)["']/g)) {
      const spec = m[1] ?? '';
      // A bare specifier (`preact`) cannot load in a browser without an import map.
      assert.match(spec, /^(\/assets\/|\.\/)/, `${url} imports ${spec}`);
      queue.push(spec.startsWith('./') ? new URL(spec, 'http://x' + url).pathname : spec);
    }
  }
  for (const must of ['/assets/ui/app.css', '/assets/ui/common.js', '/assets/ui/diagram.js', '/assets/vendor/preact.js', '/assets/vendor/preact-hooks.js', '/assets/vendor/htm.js', '/assets/vendor/uplot.js', '/assets/vendor/uplot.css']) {
    assert.ok(done.has(must), `${must} reached from the pages`);
  }
});

test('asset routes are allow-lists: traversal attempts are 404', async () => {
  const port = Number(new URL(srv.base).port);
  const attempts = [
    '/assets/vendor/../../package.json',
    '/assets/ui/../../../package.json',
    '/assets/vendor/..%2f..%2fpackage.json',
    '/assets/vendor/%2e%2e%2f%2e%2e%2fpackage.json',
    '/assets/vendor/%2e%2e/%2e%2e/package.json',
    '/assets/ui/..%5c..%5c..%5cpackage.json',
    '/assets/vendor/%252e%252e%252fpackage.json',
    '/assets/vendor/preact/package.json',
    '/assets/vendor/preact.js.map',
    '/assets/ui/pages.ts',
    '/assets/ui/',
  ];
  for (const path of attempts) {
    const r = await rawGet(port, path);
    assert.equal(r.status, 404, path);
    assert.doesNotMatch(r.body, /"name":\s*"(postseal|preact)"/, path);
  }
  const viaFetch = await fetch(srv.base + '/assets/vendor/../../package.json');
  assert.equal(viaFetch.status, 404);
});

test('a received HTML message: sandboxed html endpoint, parsed view, plaintext stats', async () => {
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: srv.serve.port('mx'), secure: false, ignoreTLS: true, name: 'plain-sender.example', connectionTimeout: 10_000, socketTimeout: 10_000 });
  await transport.sendMail({
    from: 'someone@sender.example',
    to: ADMIN.address,
    subject: 'pages test',
    text: 'the text part',
    html: '<p>the html part</p><script>document.title="pwned"</script>',
  });
  transport.close();

  // The id from the CLI (a reader beside the running serve), not from another route of the API.
  const msgs = JSON.parse(await cli(['mailbox', 'list', '--json', '--data', srv.dataDir])) as MessageSummary[];
  const m = msgs.find((x) => x.mailFrom === 'someone@sender.example');
  assert.ok(m, 'the message is listed');
  assert.equal(m.tls, null, 'sent without STARTTLS');

  const h = await fetch(`${srv.base}/api/v1/messages/${m.id}/html`, { headers: { cookie: session.cookie } });
  assert.equal(h.status, 200);
  assert.equal(h.headers.get('content-security-policy'), MESSAGE_HTML_CSP);
  assert.equal(MESSAGE_HTML_CSP, "sandbox; default-src 'none'; img-src data:");
  assert.match(h.headers.get('content-type') ?? '', /^text\/html/);
  assert.equal(h.headers.get('x-frame-options'), 'SAMEORIGIN', 'framable by the console only');
  assert.equal(h.headers.get('x-content-type-options'), 'nosniff');
  assert.match(await h.text(), /<p>the html part<\/p>/);

  // The console's own pages stay unframable.
  const page = await fetch(`${srv.base}/messages/${m.id}`, { headers: { cookie: session.cookie } });
  assert.equal(page.headers.get('x-frame-options'), 'DENY');

  assert.equal((await fetch(`${srv.base}/api/v1/messages/${m.id}/html`)).status, 401, 'no login, no message');
  assert.equal((await srv.api('/api/v1/messages/no-such-id/html')).status, 404);
  const missing = await srv.api('/api/v1/messages/no-such-id/parsed');
  assert.equal(missing.status, 404);
  await documented(missing, '/messages/{id}/parsed');

  const parsed = (await documented(await srv.api(`/api/v1/messages/${m.id}/parsed`), '/messages/{id}/parsed')) as { subject: string; text: string; hasHtml: boolean; headers: Array<{ name: string; value: string }>; summary: { id: string } };
  assert.equal(parsed.subject, 'pages test');
  assert.match(parsed.text, /the text part/);
  assert.equal(parsed.hasHtml, true);
  assert.equal(parsed.summary.id, m.id);
  assert.ok(parsed.headers.some((x) => x.name.toLowerCase() === 'subject' && x.value === 'pages test'));

  const stats = (await documented(await srv.api('/api/v1/stats/tls?hours=24'), '/stats/tls')) as ReturnType<typeof tlsStats>;
  assert.equal(stats.buckets.length, 24);
  const plain = stats.inbound['plaintext'] ?? [];
  assert.ok(plain.reduce((a, b) => a + b, 0) >= 1, 'the plaintext message is counted');
  assert.ok(stats.plaintext.inbound.some((p) => p.heloName === 'plain-sender.example' && p.clientAddress.endsWith('127.0.0.1')), JSON.stringify(stats.plaintext.inbound));

  const now = (await documented(await srv.api('/api/v1/stats/now'), '/stats/now')) as { sessions: number; messages: number; listeners: unknown[]; queue: { queued: number; deferred: number } };
  assert.ok(now.messages >= 1);
  assert.ok(Number.isInteger(now.queue.queued) && now.queue.queued >= 0 && Number.isInteger(now.queue.deferred) && now.queue.deferred >= 0, JSON.stringify(now.queue));
  assert.ok(now.listeners.length >= 1);
});

test('stats/tls refuses a bad window', async () => {
  for (const q of ['0', '169', 'abc', '-1', '1e2']) {
    const r = await srv.api(`/api/v1/stats/tls?hours=${q}`);
    assert.equal(r.status, 400, q);
    await documented(r, '/stats/tls');
  }
  assert.equal((await fetch(`${srv.base}/api/v1/stats/tls`)).status, 401);
});

test('tlsStats buckets per hour and names plaintext peers and domains', () => {
  const now = new Date('2026-11-30T12:30:00Z');
  const msg = (at: string, protocol: string | null, helo: string): MessageSummary => ({
    id: at, receivedAt: at, mailFrom: 'a@b', recipients: ['c@d'], size: 1, listener: 'mx', clientAddress: '192.0.2.1', heloName: helo,
    authUser: null, tls: protocol ? { protocol, cipher: 'X', group: null, sni: null, alpn: null } : null, requireTls: false, authResults: null, quarantine: false,
  });
  const tls = (protocol: string | null) => ({ host: 'mx', levelAsked: 'may', levelReached: protocol ? 'encrypt' : 'none', protocol, cipher: null, verified: false, whyNot: protocol ? null : 'STARTTLS not offered' });
  const s = tlsStats(
    [msg('2026-11-30T12:10:00Z', 'TLSv1.3', 'a'), msg('2026-11-30T11:59:59Z', null, 'old.example'), msg('2026-11-30T09:00:00Z', 'TLSv1.2', 'b'), msg('2026-11-01T00:00:00Z', null, 'ancient')],
    [
      { recipient: 'x@plain.example', domain: 'plain.example', at: '2026-11-30T12:00:00Z', outcome: 'delivered', error: null, tls: tls(null), nextAttemptAt: null, node: null },
      { recipient: 'y@good.example', domain: 'good.example', at: '2026-11-30T12:01:00Z', outcome: 'delivered', error: null, tls: tls('TLSv1.3'), nextAttemptAt: null, node: null },
      { recipient: 'z@dns.example', domain: 'dns.example', at: '2026-11-30T12:02:00Z', outcome: 'deferred', error: 'no MX', tls: null, nextAttemptAt: null, node: null },
      { recipient: 'w@down.example', domain: 'down.example', at: '2026-11-30T12:03:00Z', outcome: 'deferred', error: 'CONNECT_FAILED: cannot connect to 192.0.2.9:25: ECONNREFUSED', tls: tls(null), nextAttemptAt: null, node: null },
    ],
    now,
    4,
  );
  assert.deepEqual(s.buckets, [Date.parse('2026-11-30T09:00:00Z') / 1000, Date.parse('2026-11-30T10:00:00Z') / 1000, Date.parse('2026-11-30T11:00:00Z') / 1000, Date.parse('2026-11-30T12:00:00Z') / 1000]);
  assert.deepEqual(s.inbound, { 'TLSv1.3': [0, 0, 0, 1], plaintext: [0, 0, 1, 0], 'TLSv1.2': [1, 0, 0, 0] });
  assert.deepEqual(s.outbound, { plaintext: [0, 0, 0, 1], 'TLSv1.3': [0, 0, 0, 1] }, 'an attempt without a connection (no TLS outcome, CONNECT_FAILED) is no session');
  assert.deepEqual(s.plaintext.inbound.map((p) => p.heloName), ['old.example'], 'older than 7 days is left out');
  assert.deepEqual(s.plaintext.outbound.map((d) => [d.domain, d.whyNot]), [['plain.example', 'STARTTLS not offered']]);
});
