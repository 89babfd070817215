/**
 * The JSON API under /api/v1 against a real `postseal serve --http 127.0.0.1:0` child, every
 * response validated against the OpenAPI document the server itself serves (ajv, JSON Schema
 * 2020-12 = OpenAPI 3.1's dialect): 401 without auth; a message sent with swaks over STARTTLS
 * (list, summary with TLS facts, raw as a message/rfc822 attachment); a message relayed to a closed
 * port (queue list/show with the attempt's TLS outcome, retry, delete); users; policy explain; a
 * check of a loopback postseal (`--http-check-private`): 202, progress over SSE, then the same
 * report shape as `postseal check --json`; 429 with Retry-After past the running-checks limit.
 */
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule, { type FormatsPlugin } from 'ajv-formats';
import { findPeer, runPeer } from '../helpers/peers.js';
import { startDnsServer } from '../helpers/dns-server.js';
import { closedPort } from '../helpers/poll.js';
import { login } from './helpers.js';
import { killAll, mxOnly, runCli, startServeChild, type ServeChild } from '../cli/child.js';
import { CheckLimiter } from '../../src/http/checks.js';
import { parseCheckRequest } from '../../src/http/api/checks.js';

// A CommonJS module seen through ESM: the plugin function may be the default export's default.
const addFormats = ((addFormatsModule as unknown as { default?: FormatsPlugin }).default ?? addFormatsModule) as FormatsPlugin;

const ADMIN = { address: 'admin@api.test', password: 'api-Pw.4242' } as const;
const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined);
  killAll();
});

let serve: ServeChild;
let target: ServeChild;
let base = '';
let dataDir = '';
let token = '';
let doc: { paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, unknown> }> }>> };
let ajv: Ajv2020;
let silent: Server;
const silentSockets = new Set<Socket>();

async function until<T>(what: string, f: () => Promise<T | null | undefined | false>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: unknown;
}

async function call(method: string, path: string, opts: { body?: unknown; auth?: boolean } = {}): Promise<Answer> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (opts.auth !== false) headers.authorization = `Bearer ${token}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(base + path, { method, headers, ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}), signal: AbortSignal.timeout(20_000) });
  const text = await res.text();
  let json: unknown = null;
  if ((res.headers.get('content-type') ?? '').includes('application/json')) json = JSON.parse(text);
  return { status: res.status, headers: res.headers, text, json };
}

/** Asserts that the answer is documented for (template, method, status) and matches its schema. */
function assertDocumented(a: Answer, template: string, method: string): void {
  const op = doc.paths[template]?.[method];
  assert.ok(op, `${method.toUpperCase()} ${template} is in openapi.json`);
  const resp = op.responses[String(a.status)];
  assert.ok(resp, `${method.toUpperCase()} ${template}: status ${a.status} is documented (body: ${a.text.slice(0, 300)})`);
  const json = resp.content?.['application/json'];
  if (json === undefined) return;
  const pointer = `api#/paths/${template.replace(/~/g, '~0').replace(/\//g, '~1')}/${method}/responses/${a.status}/content/application~1json/schema`;
  const validate = ajv.getSchema(pointer);
  assert.ok(validate, `schema ${pointer}`);
  const ok = validate(a.json);
  assert.ok(ok, `${method.toUpperCase()} ${template} ${a.status}: ${ajv.errorsText(validate.errors)}\n${a.text.slice(0, 600)}`);
}

before(async () => {
  const data = await mkdtemp(join(tmpdir(), 'postseal-api-'));
  dataDir = data;
  cleanups.push(() => rm(data, { recursive: true, force: true }));
  const add = await runCli(['user', 'add', ADMIN.address, '--admin', '--password-stdin', '--data', data], { input: `${ADMIN.password}\n` });
  assert.equal(add.code, 0, add.stderr);
  const tok = await runCli(['token', 'create', '--name', 'api-test', '--data', data]);
  assert.equal(tok.code, 0, tok.stderr);
  token = /ps_[A-Za-z0-9_-]+/.exec(tok.stdout)?.[0] ?? '';
  assert.ok(token, tok.stdout);

  const targetData = await mkdtemp(join(tmpdir(), 'postseal-api-target-'));
  cleanups.push(() => rm(targetData, { recursive: true, force: true }));
  target = await startServeChild(mxOnly(targetData, ['--hostname', 'target.api.test', '--domain', 'target.test', '--no-relay', '--no-auth-verify']));
  cleanups.push(() => void target.signal('SIGKILL'));

  // A server that accepts and never greets: checks against it stay running (the 429 test).
  silent = createServer((s) => {
    silentSockets.add(s);
    s.on('close', () => silentSockets.delete(s));
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  cleanups.push(() => {
    for (const s of silentSockets) s.destroy();
    silent.close();
  });

  // The test DNS server: a domain whose one MX is the loopback postseal (a domain check with
  // --http-check-private).
  const dns = await startDnsServer([
    { name: 'dom.test', type: 'MX', preference: 10, exchange: 'mx.dom.test' },
    { name: 'mx.dom.test', type: 'A', address: '127.0.0.1' },
  ]);
  cleanups.push(() => dns.close());

  const closed = await closedPort();
  serve = await startServeChild([
    '--dns', `127.0.0.1:${dns.port}`,
    ...mxOnly(data, ['--http', '127.0.0.1:0']),
    '--hostname', 'mail.api.test', '--domain', 'api.test', '--catch-all', '--submission', '127.0.0.1:0',
    '--http-check-private', '--route', `closed.test=127.0.0.1:${closed}`, '--no-auth-verify',
  ], { listeners: 3 });
  cleanups.push(async () => {
    serve.signal('SIGTERM');
    await serve.waitExit(15_000).catch(() => undefined);
  });
  base = `http://127.0.0.1:${serve.port('http')}`;

  const d = await call('GET', '/api/v1/openapi.json', { auth: false });
  assert.equal(d.status, 200, 'openapi.json needs no login');
  doc = d.json as typeof doc;
  ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  ajv.addSchema({ ...(d.json as object), $id: 'api' });
});

test('openapi.json: OpenAPI 3.1 listing every /api/v1 route', () => {
  const d = doc as unknown as { openapi: string; paths: Record<string, Record<string, unknown>> };
  assert.equal(d.openapi, '3.1.0');
  const want: Array<[string, string]> = [
    ['/checks', 'post'], ['/checks/{id}', 'get'], ['/checks/{id}/events', 'get'], ['/messages', 'get'], ['/messages/{id}', 'get'],
    ['/messages/{id}/raw', 'get'], ['/queue', 'get'], ['/queue/{id}', 'get'], ['/queue/{id}', 'delete'], ['/queue/{id}/retry', 'post'],
    ['/users', 'get'], ['/policy/{domain}', 'get'], ['/openapi.json', 'get'],
  ];
  for (const [p, m] of want) assert.ok(d.paths[p]?.[m], `${m} ${p}`);
});

test('401 without a token or a session, documented', async () => {
  for (const [m, p, t] of [['GET', '/api/v1/messages', '/messages'], ['GET', '/api/v1/queue', '/queue'], ['GET', '/api/v1/users', '/users'], ['POST', '/api/v1/checks', '/checks'], ['POST', '/api/v1/queue/x/retry', '/queue/{id}/retry']] as const) {
    const a = await call(m, p, { auth: false, ...(m === 'POST' ? { body: { target: '127.0.0.1:25' } } : {}) });
    assert.equal(a.status, 401, `${m} ${p}`);
    assertDocumented(a, t, m.toLowerCase());
  }
  const bad = await fetch(`${base}/api/v1/messages`, { headers: { authorization: 'Bearer ps_not-a-token' } });
  assert.equal(bad.status, 401);
});

test('messages: swaks over STARTTLS → list, summary with TLS facts, raw as an attachment', async (t) => {
  const swaks = await findPeer(t, 'swaks');
  if (!swaks) return;
  const rcpt = `bob-${Date.now()}@api.test`;
  const subject = `api test ${Date.now()}`;
  const r = await runPeer(swaks, ['--to', rcpt, '--from', 'carol@sender.test', '--server', `127.0.0.1:${serve.port('mx')}`, '--tls', '--header', `Subject: ${subject}`, '--body', 'hello API']);
  assert.equal(r.code, 0, r.stderr + r.stdout.toString());
  const list = await call('GET', '/api/v1/messages?limit=10');
  assert.equal(list.status, 200);
  assertDocumented(list, '/messages', 'get');
  const m = (list.json as Array<{ id: string; recipients: string[]; tls: { protocol: string } | null }>).find((x) => x.recipients.includes(rcpt));
  assert.ok(m, 'the message is listed');
  assert.equal(m.tls?.protocol, 'TLSv1.3');
  // The same fields as `postseal mailbox list --json`.
  const cli = await runCli(['mailbox', 'list', '--json', '--limit', '10', '--data', dataDir]);
  assert.equal(cli.code, 0, cli.stderr);
  assert.deepEqual(list.json, JSON.parse(cli.stdout));

  const byMailbox = await call('GET', `/api/v1/messages?mailbox=${encodeURIComponent(rcpt)}`);
  assert.deepEqual((byMailbox.json as Array<{ id: string }>).map((x) => x.id), [m.id]);
  assert.equal((await call('GET', '/api/v1/messages?limit=0')).status, 400);

  const one = await call('GET', `/api/v1/messages/${m.id}`);
  assert.equal(one.status, 200);
  assertDocumented(one, '/messages/{id}', 'get');
  assert.equal((one.json as { tls: { protocol: string } }).tls.protocol, 'TLSv1.3');

  const raw = await call('GET', `/api/v1/messages/${m.id}/raw`);
  assert.equal(raw.status, 200);
  assert.equal(raw.headers.get('content-type'), 'message/rfc822');
  assert.match(raw.headers.get('content-disposition') ?? '', /^attachment; filename="[A-Za-z0-9_-]+\.eml"$/);
  assert.equal(raw.headers.get('x-content-type-options'), 'nosniff');
  assert.match(raw.headers.get('content-security-policy') ?? '', /sandbox/);
  assert.ok(raw.text.includes(`Subject: ${subject}`));
  assert.ok(raw.text.includes('hello API'));

  const missing = await call('GET', '/api/v1/messages/nosuchid');
  assert.equal(missing.status, 404);
  assertDocumented(missing, '/messages/{id}', 'get');
});

test('queue: a relayed message deferred (closed port) → list, show with TLS outcome, retry, delete', async (t) => {
  const swaks = await findPeer(t, 'swaks');
  if (!swaks) return;
  const r = await runPeer(swaks, [
    '--to', 'dave@closed.test', '--from', ADMIN.address, '--server', `127.0.0.1:${serve.port('submission')}`, '--tls',
    '--auth', 'PLAIN', '--auth-user', ADMIN.address, '--auth-password', ADMIN.password, '--header', 'Subject: queued api',
  ]);
  assert.equal(r.code, 0, r.stderr + r.stdout.toString());
  type Row = { id: string; recipient: string; status: string; attempts: number };
  const row = await until('a deferred row', async () => {
    const a = await call('GET', '/api/v1/queue?status=deferred');
    assertDocumented(a, '/queue', 'get');
    return (a.json as Row[]).find((e) => e.recipient === 'dave@closed.test' && e.attempts >= 1);
  });
  const all = await call('GET', '/api/v1/queue');
  assertDocumented(all, '/queue', 'get');
  assert.ok((all.json as Row[]).some((e) => e.id === row.id));
  assert.equal((await call('GET', '/api/v1/queue?status=bogus')).status, 400);

  const show = await call('GET', `/api/v1/queue/${row.id}`);
  assert.equal(show.status, 200);
  assertDocumented(show, '/queue/{id}', 'get');
  const s = show.json as { attempts: Array<{ outcome: string; tls: { levelAsked: string; levelReached: string } | null }>; recipients: Row[] };
  assert.ok(s.attempts.length >= 1);
  assert.equal(s.attempts[0]?.outcome, 'deferred');
  assert.equal(s.recipients[0]?.recipient, 'dave@closed.test');

  const retry = await call('POST', `/api/v1/queue/${row.id}/retry`);
  assert.equal(retry.status, 200, retry.text);
  assertDocumented(retry, '/queue/{id}/retry', 'post');
  assert.equal((retry.json as { due: number }).due, 1);
  // The retry wakes the runner: a second attempt is recorded.
  await until('a second attempt', async () => {
    const rows = (await call('GET', '/api/v1/queue')).json as Row[];
    return rows.find((e) => e.id === row.id && e.attempts > row.attempts);
  });

  const del = await call('DELETE', `/api/v1/queue/${row.id}`);
  assert.equal(del.status, 200, del.text);
  assertDocumented(del, '/queue/{id}', 'delete');
  assert.equal((del.json as { deleted: number }).deleted, 1);
  const gone = await call('POST', `/api/v1/queue/${row.id}/retry`);
  assert.equal(gone.status, 404);
  assertDocumented(gone, '/queue/{id}/retry', 'post');
  assert.equal((await call('DELETE', `/api/v1/queue/${row.id}`)).status, 404);
});

test('users and policy explain', async () => {
  const u = await call('GET', '/api/v1/users');
  assert.equal(u.status, 200);
  assertDocumented(u, '/users', 'get');
  assert.deepEqual((u.json as Array<{ address: string; admin: boolean }>).find((x) => x.address === ADMIN.address), { address: ADMIN.address, admin: true });

  // closed.test has a route in serve's TLS table? No: a route is not a policy; explain works on DNS,
  // which may be absent here: the answer is still an Explanation (hosts may be empty).
  const p = await call('GET', '/api/v1/policy/invalid');
  assert.equal(p.status, 200, p.text);
  assertDocumented(p, '/policy/{domain}', 'get');
  assert.equal((p.json as { domain: string }).domain, 'invalid');
  const bad = await call('GET', '/api/v1/policy/not%20a%20domain');
  assert.equal(bad.status, 400);
  assertDocumented(bad, '/policy/{domain}', 'get');
});

test('checks: a loopback postseal (--http-check-private) → 202, SSE progress, then the check --json report', { timeout: 120_000 }, async () => {
  const start = await call('POST', '/api/v1/checks', { body: { target: `127.0.0.1:${target.port('mx')}` } });
  assert.equal(start.status, 202, start.text);
  assertDocumented(start, '/checks', 'post');
  const { id, url } = start.json as { id: string; url: string };
  assert.equal(url, `/api/v1/checks/${id}`);

  const running = await call('GET', url);
  assert.equal(running.status, 200);
  assertDocumented(running, '/checks/{id}', 'get');

  // The event stream: progress steps as they happen, ending with `done` carrying the report.
  const res = await fetch(`${base}${url}/events`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(90_000) });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  const events = [...(await res.text()).matchAll(/event: (\w+)\ndata: (.*)\n/g)].map((m) => ({ event: m[1], data: JSON.parse(m[2] ?? 'null') as { step?: string } }));
  const steps = events.filter((e) => e.event === 'progress').map((e) => e.data.step);
  for (const s of ['connect', 'greeting', 'ehlo', 'starttls', 'handshake', 'probes', 'done']) assert.ok(steps.includes(s), `step ${s} in ${steps.join(',')}`);
  assert.ok(steps.indexOf('greeting') < steps.indexOf('starttls') && steps.indexOf('starttls') < steps.indexOf('handshake'), 'in order');
  const last = events.at(-1);
  assert.equal(last?.event, 'done');

  const done = await call('GET', url);
  assert.equal(done.status, 200);
  assertDocumented(done, '/checks/{id}', 'get');
  const report = done.json as { kind: string; status: string; grade: string; target: { port: number }; transcript: unknown[] };
  assert.deepEqual(last?.data, report, 'the done event carries the report');
  assert.equal(report.kind, 'host');
  assert.equal(report.status, 'checked');
  assert.equal(report.target.port, target.port('mx'));
  assert.match(report.grade, /^[A-F][+-]?$/);
  // Same top-level shape as the CLI's JSON for the same target.
  const cli = await runCli(['check', `127.0.0.1:${target.port('mx')}`, '--json'], { timeoutMs: 90_000 });
  assert.deepEqual(Object.keys(report).sort(), Object.keys(JSON.parse(cli.stdout) as object).sort());

  const unknown = await call('GET', '/api/v1/checks/AAAAAAAAAAAAAAAAAAAAAA');
  assert.equal(unknown.status, 404);
  assertDocumented(unknown, '/checks/{id}', 'get');
  const bad = await call('POST', '/api/v1/checks', { body: { target: '127.0.0.1:25', domain: 'x.test' } });
  assert.equal(bad.status, 400);
  assertDocumented(bad, '/checks', 'post');
});

test('checks: a domain (its MX the loopback postseal) → the check --domain --json report, MX addresses checked', { timeout: 120_000 }, async () => {
  const start = await call('POST', '/api/v1/checks', { body: { domain: 'dom.test', port: target.port('mx') } });
  assert.equal(start.status, 202, start.text);
  assertDocumented(start, '/checks', 'post');
  const { url } = start.json as { url: string };
  const report = await until('the domain check to finish', async () => {
    const a = await call('GET', url);
    assertDocumented(a, '/checks/{id}', 'get');
    return (a.json as { status: string }).status !== 'running' ? a : null;
  }, 90_000);
  const r = report.json as { kind: string; domain: string; status: string; mx: { hosts: Array<{ name: string; addresses: string[] }> }; hosts: Array<{ target: { address: string; port: number }; status: string }> };
  assert.equal(r.kind, 'domain');
  assert.equal(r.domain, 'dom.test');
  assert.equal(r.status, 'checked', report.text.slice(0, 400));
  assert.deepEqual(r.mx.hosts.map((h) => [h.name, h.addresses]), [['mx.dom.test', ['127.0.0.1']]]);
  assert.equal(r.hosts.length, 1);
  assert.equal(r.hosts[0]?.target.address, '127.0.0.1');
  assert.equal(r.hosts[0]?.target.port, target.port('mx'));
  assert.equal(r.hosts[0]?.status, 'checked');
});

test('a console session: state changes need its CSRF token; a check id is readable by another principal', { timeout: 60_000 }, async () => {
  const s = await login(base, ADMIN.address, ADMIN.password);
  const send = (method: string, path: string, csrf: boolean, body?: unknown): Promise<Response> => fetch(base + path, {
    method,
    headers: { cookie: s.cookie, 'content-type': 'application/json', ...(csrf ? { 'x-csrf-token': s.csrf } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const noCsrf = await send('POST', '/api/v1/checks', false, { target: `127.0.0.1:${target.port('mx')}` });
  assert.equal(noCsrf.status, 403);
  const a403: Answer = { status: 403, headers: noCsrf.headers, text: '', json: await noCsrf.json() };
  assertDocumented(a403, '/checks', 'post');
  const ok = await send('POST', '/api/v1/checks', true, { target: `127.0.0.1:${target.port('mx')}` });
  assert.equal(ok.status, 202);
  const { id } = (await ok.json()) as { id: string };
  // Shareable: the bearer token (another principal) reads the session's check.
  const viaToken = await call('GET', `/api/v1/checks/${id}`);
  assert.equal(viaToken.status, 200);
  assertDocumented(viaToken, '/checks/{id}', 'get');
  assert.equal((await send('POST', '/api/v1/queue/nosuchid/retry', false)).status, 403);
  assert.equal((await send('POST', '/api/v1/queue/nosuchid/retry', true)).status, 404, 'past the CSRF check: not in the queue');
  assert.equal((await send('DELETE', '/api/v1/queue/nosuchid', false)).status, 403);
  // Reads need no CSRF token.
  assert.equal((await send('GET', '/api/v1/messages', false)).status, 200);
  // Wait for the session's check to end (it holds one of this client's running slots).
  await until('the session check to finish', async () => ((await call('GET', `/api/v1/checks/${id}`)).json as { status: string }).status !== 'running', 60_000);
});

test('checks: 429 with Retry-After past 2 running checks per client', { timeout: 60_000 }, async () => {
  const port = (silent.address() as { port: number }).port;
  const a = await call('POST', '/api/v1/checks', { body: { target: `127.0.0.1:${port}` } });
  const b = await call('POST', '/api/v1/checks', { body: { target: `127.0.0.1:${port}` } });
  assert.equal(a.status, 202, a.text);
  assert.equal(b.status, 202, b.text);
  const c = await call('POST', '/api/v1/checks', { body: { target: `127.0.0.1:${port}` } });
  assert.equal(c.status, 429, c.text);
  assertDocumented(c, '/checks', 'post');
  assert.match(c.headers.get('retry-after') ?? '', /^[1-9][0-9]*$/);
  assert.equal((c.json as { error: { code: string } }).error.code, 'HTTP_RATE_LIMITED');
});

test('CheckLimiter: 10 a minute per client, 2 at once, released slots and other clients unaffected', () => {
  const l = new CheckLimiter();
  const t0 = 1_000_000;
  for (let i = 0; i < 10; i++) {
    const d = l.tryStart('a', t0 + i);
    assert.ok(d.ok);
    d.release();
  }
  const over = l.tryStart('a', t0 + 100);
  assert.equal(over.ok, false);
  assert.ok(!over.ok && over.retryAfterS === 60);
  assert.ok(l.tryStart('b', t0 + 100).ok, 'another client has its own budget');
  assert.ok(l.tryStart('a', t0 + 60_001).ok, 'the window slides');
  const l2 = new CheckLimiter();
  const x = l2.tryStart('c', t0);
  const y = l2.tryStart('c', t0);
  assert.ok(x.ok && y.ok);
  assert.equal(l2.tryStart('c', t0).ok, false, 'a third running check is refused');
  x.release();
  assert.ok(l2.tryStart('c', t0).ok, 'a finished check frees its slot');
});

test('parseCheckRequest: one of target/domain, ports, no unknown fields', () => {
  assert.deepEqual(parseCheckRequest({ target: 'mx.example.org:2525' }), { kind: 'host', host: 'mx.example.org', port: 2525, implicitTls: null });
  assert.deepEqual(parseCheckRequest({ target: '[2001:db8::1]', port: 465, starttls: false }), { kind: 'host', host: '2001:db8::1', port: 465, implicitTls: true });
  assert.deepEqual(parseCheckRequest({ domain: 'Example.ORG.' }), { kind: 'domain', host: 'example.org', port: null, implicitTls: null });
  for (const bad of [null, [], {}, { target: 'a', domain: 'b' }, { target: 5 }, { target: 'a:99999' }, { domain: 'a b' }, { target: 'a', port: 0 }, { target: 'a', evil: 1 }, { target: 'a:25', port: 26 }]) {
    assert.equal(typeof parseCheckRequest(bad), 'string', JSON.stringify(bad));
  }
});
