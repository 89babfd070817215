/**
 * Security of the console and API (issue 14 item 4) over real HTTP against a real `serve` child:
 * /api/v1 needs a token or a session (401 JSON otherwise), revoked tokens stop working at once,
 * only admins log in, the session cookie's flags, CSRF on state changes made with the cookie (not
 * with a bearer token), and the security headers on every answer.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { killAll } from '../cli/child.js';
import { ADMIN, addUser, cli, createToken, login, startConsole, type ConsoleServer } from './helpers.js';

let s: ConsoleServer;

before(async () => {
  s = await startConsole();
  await addUser(s.dataDir, 'bob@postseal.test', 'bob-password-1', false);
});

after(async () => {
  await s.close();
  killAll();
});

test('/api/v1 without credentials: 401 JSON {error}; a wrong or malformed bearer token: 401', async () => {
  const variants: Array<Record<string, string>> = [{}, { authorization: 'Bearer ps_not-a-token' }, { authorization: 'Basic YWRtaW46eA==' }, { authorization: `Bearer ${s.token}x` }, { cookie: 'postseal_session=forged' }];
  for (const headers of variants) {
    const r = await fetch(`${s.base}/api/v1/session`, { headers });
    assert.equal(r.status, 401, JSON.stringify(headers));
    assert.match(r.headers.get('content-type') ?? '', /application\/json/);
    const body = (await r.json()) as { error?: unknown };
    assert.equal(typeof body.error, 'string');
  }
  // Unknown paths under /api/v1 are not revealed without credentials either.
  assert.equal((await fetch(`${s.base}/api/v1/no-such-thing`)).status, 401);
});

test('a bearer token works; revoked with `token revoke` while serve runs, it answers 401', async () => {
  const token = await createToken(s.dataDir, 'short-lived');
  const ok = await fetch(`${s.base}/api/v1/session`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(ok.status, 200);
  assert.deepEqual(await ok.json(), { kind: 'token', name: 'short-lived' });
  await cli(['token', 'revoke', 'short-lived', '--data', s.dataDir]);
  const r = await fetch(`${s.base}/api/v1/session`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(r.status, 401);
  // The other token still works.
  assert.equal((await s.api('/api/v1/session')).status, 200);
});

test('login: wrong password and a non-admin user get 401 and no session cookie; the admin gets 303 and a session', async () => {
  const tries: Array<[string, string]> = [
    [ADMIN.address, 'wrong-password'],
    ['bob@postseal.test', 'bob-password-1'], // right password, not an admin
    ['nobody@postseal.test', 'whatever-pass'],
  ];
  for (const [address, password] of tries) {
    const r = await fetch(`${s.base}/login`, { method: 'POST', body: new URLSearchParams({ address, password }), redirect: 'manual' });
    assert.equal(r.status, 401, address);
    assert.equal(r.headers.get('set-cookie'), null, address);
    assert.match(await r.text(), /Wrong address or password, or not a console admin/);
  }
  const l = await login(s.base);
  const who = await fetch(`${s.base}/api/v1/session`, { headers: { cookie: l.cookie } });
  assert.equal(who.status, 200);
  assert.equal(((await who.json()) as { address: string }).address, ADMIN.address);
});

test('`user admin ADDRESS on` lets bob log in; `off` ends his live session at the next request', async () => {
  await cli(['user', 'admin', 'bob@postseal.test', 'on', '--data', s.dataDir]);
  const l = await login(s.base, 'bob@postseal.test', 'bob-password-1');
  assert.equal((await fetch(`${s.base}/api/v1/session`, { headers: { cookie: l.cookie } })).status, 200);
  assert.equal((await cli(['user', 'admin', 'bob@postseal.test', 'off', '--data', s.dataDir])).trim(), 'bob@postseal.test admin off');
  assert.equal((await fetch(`${s.base}/api/v1/session`, { headers: { cookie: l.cookie } })).status, 401);
});

test('the session cookie is HttpOnly; Secure; SameSite=Strict; Path=/ and its value is 32 random bytes', async () => {
  const l = await login(s.base);
  const parts = l.setCookie.split(';').map((p) => p.trim());
  const [nameValue, ...attrs] = parts;
  assert.match(nameValue ?? '', /^postseal_session=[A-Za-z0-9_-]{43}$/);
  const lower = attrs.map((a) => a.toLowerCase());
  for (const want of ['httponly', 'secure', 'samesite=strict', 'path=/']) assert.ok(lower.includes(want), `${want} missing in ${l.setCookie}`);
  // Two logins, two different sessions.
  assert.notEqual((await login(s.base)).cookie, l.cookie);
});

test('CSRF: a state change with the session cookie needs X-CSRF-Token (403 without or wrong, ok with it); a bearer token needs none', async () => {
  const l = await login(s.base);
  const del = (headers: Record<string, string>): Promise<Response> => fetch(`${s.base}/api/v1/session`, { method: 'DELETE', headers });
  const none = await del({ cookie: l.cookie });
  assert.equal(none.status, 403);
  assert.match(((await none.json()) as { error: string }).error, /CSRF/);
  assert.equal((await del({ cookie: l.cookie, 'x-csrf-token': 'x'.repeat(43) })).status, 403);
  // Another session's token is no good either.
  const other = await login(s.base);
  assert.equal((await del({ cookie: l.cookie, 'x-csrf-token': other.csrf })).status, 403);
  // The session survived the refused attempts; with its own token the logout goes through.
  assert.equal((await fetch(`${s.base}/api/v1/session`, { headers: { cookie: l.cookie } })).status, 200);
  const ok = await del({ cookie: l.cookie, 'x-csrf-token': l.csrf });
  assert.equal(ok.status, 200);
  assert.match(ok.headers.get('set-cookie') ?? '', /postseal_session=;.*Max-Age=0/);
  assert.equal((await fetch(`${s.base}/api/v1/session`, { headers: { cookie: l.cookie } })).status, 401);
  // Bearer: a state-changing method passes the auth layer without any CSRF token (400 here is the
  // handler's answer, "a token has no session", not the 403 of the CSRF check).
  const bearer = await s.api('/api/v1/session', { method: 'DELETE' });
  assert.equal(bearer.status, 400);
});

test('POST /logout with the cookie: 403 without the CSRF form field, logged out with it', async () => {
  const l = await login(s.base);
  const bare = await fetch(`${s.base}/logout`, { method: 'POST', headers: { cookie: l.cookie }, redirect: 'manual' });
  assert.equal(bare.status, 403);
  const r = await fetch(`${s.base}/logout`, { method: 'POST', headers: { cookie: l.cookie }, body: new URLSearchParams({ _csrf: l.csrf }), redirect: 'manual' });
  assert.equal(r.status, 303);
  assert.equal(r.headers.get('location'), '/login');
  assert.equal((await fetch(`${s.base}/api/v1/session`, { headers: { cookie: l.cookie } })).status, 401);
});

test('console pages without a session redirect to /login; after login no open redirect to another host', async () => {
  const r = await fetch(`${s.base}/`, { redirect: 'manual' });
  assert.equal(r.status, 303);
  assert.equal(r.headers.get('location'), '/login');
  const evil = await fetch(`${s.base}/login`, { method: 'POST', body: new URLSearchParams({ address: ADMIN.address, password: ADMIN.password, next: '//evil.example/x' }), redirect: 'manual' });
  assert.equal(evil.status, 303);
  assert.equal(evil.headers.get('location'), '/');
});

test('security headers on every answer: pages, API errors, 404s, the login page', async () => {
  const answers = [await fetch(`${s.base}/login`), await fetch(`${s.base}/api/v1/session`), await fetch(`${s.base}/no-such-page`, { redirect: 'manual' }), await s.api('/api/v1/session'), await fetch(`${s.base}/healthz`)];
  for (const r of answers) {
    const csp = r.headers.get('content-security-policy') ?? '';
    for (const d of ["default-src 'self'", "script-src 'self'", "object-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"]) assert.ok(csp.includes(d), `${r.url}: ${d} missing in ${csp}`);
    assert.ok(!/unsafe-inline|unsafe-eval/.test(csp.split(';').find((d) => d.trim().startsWith('script-src')) ?? ''), `${r.url}: script-src allows inline`);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff', r.url);
    assert.equal(r.headers.get('referrer-policy'), 'no-referrer', r.url);
    assert.equal(r.headers.get('x-frame-options'), 'DENY', r.url);
  }
});

test('a request body over 64 KiB is refused with 413, before authentication matters', async () => {
  const big = 'a'.repeat(65 * 1024);
  const r = await s.api('/api/v1/session', { method: 'DELETE', body: big, headers: { 'content-type': 'text/plain' } });
  assert.equal(r.status, 413);
  const login = await fetch(`${s.base}/login`, { method: 'POST', body: new URLSearchParams({ address: ADMIN.address, password: big }), redirect: 'manual' });
  assert.equal(login.status, 413);
});

/** A POST whose body is sent chunked (no Content-Length): the limit must count the bytes as they come. */
function postChunked(url: string, chunks: number, chunk: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' || err.code === 'ECONNRESET' ? undefined : reject(err)));
    assert.equal(req.getHeader('content-length'), undefined);
    let i = 0;
    const more = (): void => {
      while (i < chunks) {
        i++;
        if (!req.write(chunk)) return void req.once('drain', more);
      }
      req.end();
    };
    more();
  });
}

test('a chunked request body (no Content-Length) is counted as it arrives: 413 past 64 KiB, and POST /checks past 4 KiB', async () => {
  // 80 chunks of 1 KiB: no header announces the size, only the bytes themselves exceed the limit.
  const kib = 'a'.repeat(1024);
  assert.equal(await postChunked(`${s.base}/login`, 80, kib, { 'content-type': 'application/x-www-form-urlencoded' }), 413);
  assert.equal(await postChunked(`${s.base}/api/v1/checks`, 80, kib, { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' }), 413);
  // The route's own limit of 4 KiB (api/checks.ts), under the app's 64 KiB: 5 KiB is refused with its code.
  const r = await s.api('/api/v1/checks', { method: 'POST', body: JSON.stringify({ target: 'x'.repeat(5000) }), headers: { 'content-type': 'application/json' } });
  assert.equal(r.status, 413);
  assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'HTTP_BODY_TOO_LARGE');
});

test('parallel login guesses from one client: at most 2 are checked at once, the others get 429 with Retry-After', async () => {
  const guesses = await Promise.all(
    Array.from({ length: 8 }, (_, i) => fetch(`${s.base}/login`, { method: 'POST', body: new URLSearchParams({ address: ADMIN.address, password: `guess-${i}-wrong` }), redirect: 'manual' })),
  );
  const statuses = guesses.map((r) => r.status);
  assert.ok(statuses.every((st) => st === 401 || st === 429), statuses.join(','));
  assert.ok(statuses.includes(429), `no 429 among ${statuses.join(',')}`);
  for (const r of guesses) if (r.status === 429) assert.equal(r.headers.get('retry-after'), '5');
  // The right password still gets in once the slots are free.
  await login(s.base);
});
