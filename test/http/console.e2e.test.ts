/**
 * The web console end to end in real Chromium (issue 14 Tests): Debian's /usr/bin/chromium driven
 * by playwright-core against a real `postseal serve` child on `--http 127.0.0.1:0`, an admin made
 * with `postseal user add --admin`. One browser profile, one logged-in session, steps in order:
 *   login through the form → the session cookie's flags as the browser stored them;
 *   a check of a loopback postseal (a second serve child; `--http-check-private`) → grade,
 *     findings, the sequence diagram with its STARTTLS band and lines on both sides of it;
 *   a check of a deliberately broken server (test/check/broken-server.ts, executes commands
 *     pipelined after STARTTLS) → its critical finding;
 *   a message sent with swaks over STARTTLS → listed on /messages with TLS 1.3 and its cipher;
 *   an HTML message with a <script> → its body shown in the sandboxed iframe, the script not run
 *     (the console's title is unchanged, no error from our own scripts);
 *   a message relayed to a closed port → deferred on /queue, the Retry button (the page sends its
 *     CSRF token) → the attempt count grows.
 * Every page is watched for "Refused to … Content Security Policy" and for console errors of our
 * origin. Screenshots: test-artifacts/console-*.png.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { Page } from 'playwright-core';
import { issueCert, makeTestCa } from '../helpers/certs.js';
import { findPeer, runPeer } from '../helpers/peers.js';
import { closedPort } from '../helpers/poll.js';
import { killAll, mxOnly, startServeChild, type ServeChild } from '../cli/child.js';
import { startBrokenServer, type BrokenServer } from '../check/broken-server.js';
import { findChromium, guardPage, launchBrowser, screenshot, type Browser, type PageGuard } from './browser.js';
import { ADMIN, addUser, createToken } from './helpers.js';


const cleanups: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined);
  killAll();
});

interface ConsoleServe {
  serve: ServeChild;
  baseUrl: string;
  /** GET an /api/v1 path with the bearer token (made by `postseal token create`); the parsed JSON. */
  api(path: string): Promise<unknown>;
  close(): Promise<void>;
}

/**
 * `postseal serve --http 127.0.0.1:0` on a fresh data directory, with the admin made first by
 * `postseal user add ADDRESS --admin` and an API token by `postseal token create` (J1's helpers;
 * the token is the test's own look at the data behind the pages). Not helpers.ts startConsole:
 * this serve has three listeners (mx, submission, http) and must wait for all three lines.
 */
async function startConsoleServe(opts: { admin: { address: string; password: string }; args: string[] }): Promise<ConsoleServe> {
  const data = await mkdtemp(join(tmpdir(), 'postseal-e2e-console-'));
  await addUser(data, opts.admin.address, opts.admin.password, true);
  const token = await createToken(data, 'console-e2e');
  const serve = await startServeChild([...mxOnly(data, ['--http', '127.0.0.1:0']), ...opts.args], { listeners: 3 });
  const baseUrl = `http://127.0.0.1:${serve.port('http')}`;
  return {
    serve,
    baseUrl,
    async api(path) {
      const res = await fetch(baseUrl + path, { headers: { authorization: `Bearer ${token}`, accept: 'application/json' }, signal: AbortSignal.timeout(10_000) });
      const body = await res.text();
      assert.equal(res.status, 200, `GET ${path}: ${res.status} ${body}`);
      return JSON.parse(body) as unknown;
    },
    async close() {
      serve.signal('SIGTERM');
      await serve.waitExit(15_000).catch(() => undefined);
      await rm(data, { recursive: true, force: true });
    },
  };
}

/** Polls f every 200 ms until it returns a truthy value (fails after ms). */
async function until<T>(what: string, f: () => Promise<T | null | undefined | false>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * No CSP violation and no console error since the last call (the lists are emptied). Chromium's own
 * favicon request is no page of ours: its 404 is not counted.
 */
function assertClean(g: PageGuard, what: string, allow: (line: string) => boolean = () => false): void {
  const ours = (l: string): boolean => !allow(l) && !/\/favicon\.ico\)$/.test(l);
  const csp = g.cspViolations.filter(ours);
  const errors = g.errors.filter(ours);
  const all = g.all.join('\n');
  g.cspViolations.length = 0;
  g.errors.length = 0;
  g.all.length = 0;
  assert.deepEqual(csp, [], `${what}: CSP violations\n${all}`);
  assert.deepEqual(errors, [], `${what}: console errors\n${all}`);
}

test('the web console in real Chromium: login, checks, messages with TLS facts, sandboxed HTML, queue retry', { timeout: 240_000 }, async (t) => {
  const chromiumPath = await findChromium(t);
  if (!chromiumPath) return;
  const swaks = await findPeer(t, 'swaks');
  if (!swaks) return;

  // The servers: the broken one, a loopback postseal to check, and the console's own serve.
  const ca = await makeTestCa();
  const pair = await issueCert(ca, { names: ['localhost'] });
  const broken: BrokenServer = await startBrokenServer(pair, { executePipelined: true });
  cleanups.push(() => broken.close());

  const targetData = await mkdtemp(join(tmpdir(), 'postseal-e2e-target-'));
  cleanups.push(() => rm(targetData, { recursive: true, force: true }));
  const target: ServeChild = await startServeChild(mxOnly(targetData, ['--http', 'off', '--hostname', 'target.postseal.test', '--domain', 'target.test', '--no-relay', '--no-auth-verify']));
  cleanups.push(() => target.signal('SIGKILL'));

  const closed = await closedPort();
  const srv: ConsoleServe = await startConsoleServe({
    admin: ADMIN,
    args: [
      '--hostname', 'mail.postseal.test',
      '--domain', 'postseal.test',
      '--catch-all',
      '--submission', '127.0.0.1:0',
      '--http-check-private',
      '--route', `closed.test=127.0.0.1:${closed}`,
      '--no-auth-verify',
    ],
  });
  cleanups.push(() => srv.close());
  const base = srv.baseUrl;

  const browser: Browser = await launchBrowser(chromiumPath, { baseURL: base });
  cleanups.push(() => browser.close());
  const page: Page = await browser.context.newPage();
  const guard = await guardPage(page);
  /** A subtest; on failure a screenshot (test-artifacts/console-failed-N.png) and the page's console join the error. */
  let failures = 0;
  const step = (name: string, fn: () => Promise<void>): Promise<void> =>
    t.test(name, async () => {
      try {
        await fn();
      } catch (err) {
        const shot = await screenshot(page, `console-failed-${++failures}`).catch(() => 'none');
        const log = guard.all.join('\n');
        throw new Error(`${String(err instanceof Error ? err.stack : err)}\nat ${page.url()}; screenshot ${shot}\npage console:\n${log}`);
      }
    });

  await step('login through the form; the session cookie is HttpOnly, Secure, SameSite=Strict', async () => {
    const r = await page.goto('/');
    assert.ok(r);
    assert.match(new URL(page.url()).pathname, /^\/login/, 'an anonymous visit is sent to /login');
    await page.fill('input[name="address"]', ADMIN.address);
    await page.fill('input[name="password"]', ADMIN.password);
    await Promise.all([page.waitForURL((u) => !u.pathname.startsWith('/login')), page.click('form[action="/login"] button[type="submit"]')]);
    const cookies = await browser.context.cookies(base);
    const session = cookies.find((c) => c.name === 'postseal_session');
    assert.ok(session, `no postseal_session cookie in ${JSON.stringify(cookies.map((c) => c.name))}`);
    assert.equal(session.httpOnly, true, 'HttpOnly');
    assert.equal(session.secure, true, 'Secure');
    assert.equal(session.sameSite, 'Strict', 'SameSite=Strict');
    // HttpOnly: the page's scripts cannot read it.
    assert.doesNotMatch(await page.evaluate<string>('document.cookie'), /postseal_session/);
    assertClean(guard, 'login + dashboard');
  });

  await step('check a loopback postseal: grade, findings, sequence diagram with the STARTTLS band', async () => {
    await page.goto('/check');
    await page.fill('input[name="target"]', `127.0.0.1:${target.port('mx')}`);
    await page.click('form.checkform button[type="submit"]');
    await page.waitForURL(/\/check\/[A-Za-z0-9_-]+$/, { timeout: 60_000 });
    const id = decodeURIComponent(new URL(page.url()).pathname.split('/').pop() ?? '');
    const grade = page.locator('article.report .report-head .grade');
    await grade.waitFor({ timeout: 90_000 });
    // What the page draws is the report the API returns for the same id (= `postseal check --json`).
    const report = (await srv.api(`/api/v1/checks/${encodeURIComponent(id)}`)) as { grade: string; findings: Array<{ id: string; severity: string }>; transcript: unknown[] };
    assert.match(report.grade, /^[A-F][+-]?$/);
    assert.equal((await grade.textContent())?.trim(), report.grade);
    const shown = await page.locator('article.report .finding').evaluateAll((els) => els.map((e) => e.getAttribute('data-id')));
    assert.deepEqual(shown, report.findings.map((f) => f.id), 'every finding drawn, by severity');
    if (report.findings.length === 0) await page.getByText('No findings.').waitFor();
    const band = page.locator('svg.seq [data-kind="starttls-band"]');
    assert.equal(await band.count(), 1, 'one STARTTLS band in the diagram');
    assert.ok((await page.locator('svg.seq g.msg[data-tls="no"]').count()) > 0, 'plaintext lines before the band');
    assert.ok((await page.locator('svg.seq g.msg[data-tls="yes"]').count()) > 0, 'encrypted lines after the band');
    // The band sits between the last plaintext line and the first encrypted one.
    const ys = await page.locator('svg.seq > g').evaluateAll((els) =>
      els.map((e) => ({ kind: e.getAttribute('data-kind') ?? e.getAttribute('data-tls'), y: (e as unknown as { getBBox(): { y: number } }).getBBox().y })),
    );
    const bandY = ys.find((e) => e.kind === 'starttls-band')?.y ?? -1;
    assert.ok(ys.filter((e) => e.kind === 'no').some((e) => e.y < bandY), 'plaintext above the band');
    assert.ok(ys.filter((e) => e.kind === 'yes').every((e) => e.y > bandY), 'every encrypted line below the band');
    assert.ok(ys.filter((e) => e.kind === 'yes').length > 0);
    await screenshot(page, 'console-check');
    assertClean(guard, 'check of a loopback postseal');
  });

  await step('check a broken server (executes commands pipelined after STARTTLS): its critical finding', async () => {
    await page.goto('/check');
    await page.fill('input[name="target"]', `127.0.0.1:${broken.port}`);
    await page.click('form.checkform button[type="submit"]');
    const grade = page.locator('article.report .report-head .grade');
    await grade.waitFor({ timeout: 90_000 });
    assert.equal((await grade.textContent())?.trim(), 'F');
    const critical = page.locator('.sev-critical .finding[data-id="starttls.injection"]');
    await critical.waitFor();
    assert.match(await critical.innerText(), /STARTTLS command injection/);
    assert.match(await critical.innerText(), /Fix:/, 'the finding carries its fix');
    await screenshot(page, 'console-check-broken');
    assertClean(guard, 'check of a broken server');
  });

  await step('a message sent with swaks over STARTTLS appears on /messages with TLS 1.3 and its cipher', async () => {
    const subject = `console e2e ${Date.now()}`;
    const rcpt = `tls-${Date.now()}@postseal.test`;
    const r = await runPeer(swaks, ['--to', rcpt, '--from', 'carol@sender.test', '--server', `127.0.0.1:${srv.serve.port('mx')}`, '--tls', '--header', `Subject: ${subject}`, '--body', 'hello from swaks']);
    assert.equal(r.code, 0, r.stderr + r.stdout.toString());
    const listed = await until('the message in the API', async () => {
      const res = (await srv.api('/api/v1/messages')) as Array<{ recipients: string[]; tls: { protocol?: string; cipher?: string } | null }>;
      return res.find((m) => m.recipients.includes(rcpt));
    });
    assert.equal(listed.tls?.protocol, 'TLSv1.3');
    assert.ok(listed.tls?.cipher, 'a cipher recorded');
    await page.goto('/messages');
    const row = page.locator('table.messages tr', { hasText: rcpt });
    await row.waitFor();
    const text = await row.innerText();
    assert.match(text, /TLSv1\.3/);
    const cipher = listed.tls?.cipher ?? '';
    assert.ok(text.includes(cipher), `cipher ${cipher} shown in ${text}`);
    // The message page shows the same TLS facts.
    await row.locator('a').first().click();
    await page.waitForURL(/\/messages\/[^/]+$/);
    const facts = page.locator('.tls-facts');
    await facts.waitFor();
    assert.match(await facts.innerText(), /TLSv1\.3/);
    assert.ok((await facts.innerText()).includes(cipher));
    await page.getByRole('heading', { name: subject }).waitFor();
    await screenshot(page, 'console-messages');
    assertClean(guard, 'messages list');
  });

  await step('an HTML body renders in the sandboxed iframe and its <script> does not run', async () => {
    const subject = `html e2e ${Date.now()}`;
    const rcpt = `html-${Date.now()}@postseal.test`;
    const html = '<html><head><title>inner</title></head><body><p id="hello">Hello <b>HTML</b> body</p>'
      + '<script>parent.document.title = "pwned"; document.body.append("script ran")</script></body></html>';
    const dir = await mkdtemp(join(tmpdir(), 'postseal-e2e-msg-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'html.eml');
    await writeFile(file, [
      'From: <carol@sender.test>', `To: <${rcpt}>`, `Subject: ${subject}`, `Message-ID: <${Date.now()}@sender.test>`,
      'MIME-Version: 1.0', 'Content-Type: text/html; charset=utf-8', '', html, '',
    ].join('\r\n'));
    const r = await runPeer(swaks, ['--to', rcpt, '--from', 'carol@sender.test', '--server', `127.0.0.1:${srv.serve.port('mx')}`, '--tls', '--data', file]);
    assert.equal(r.code, 0, r.stderr + r.stdout.toString());
    await page.goto('/messages');
    const row = page.locator('table.messages tr', { hasText: rcpt });
    await row.waitFor();
    await row.locator('a').first().click();
    await page.waitForURL(/\/messages\/[^/]+$/);
    await page.getByRole('heading', { name: subject }).waitFor();
    const titleBefore = await page.title();
    const frameEl = page.locator('iframe.mailhtml');
    await frameEl.waitFor();
    assert.equal(await frameEl.getAttribute('sandbox'), '', 'sandbox="" (no scripts, no same origin)');
    const frame = await (await frameEl.elementHandle())?.contentFrame();
    assert.ok(frame, 'the iframe has a frame');
    await frame.locator('#hello').waitFor();
    assert.equal(await frame.locator('#hello').innerText(), 'Hello HTML body');
    // The frame is not of our origin (sandbox without allow-same-origin): the console cannot reach in.
    assert.equal(await frame.evaluate<string>('self.origin'), 'null');
    assert.doesNotMatch(await frame.locator('body').innerText(), /script ran/);
    assert.notEqual(await page.title(), 'pwned');
    assert.equal(await page.title(), titleBefore);
    await screenshot(page, 'console-message-html');
    // The blocked script may be reported by Chromium for the sandboxed frame (that is the sandbox
    // working); nothing else may be.
    const frameUrl = frame.url();
    assertClean(guard, 'message view', (l) => l.includes(frameUrl) || /Blocked script execution in .* sandboxed/.test(l));
  });

  await step('a deferred message is retried with the Retry button (CSRF token sent) and its attempts grow', async () => {
    const r = await runPeer(swaks, [
      '--to', 'dave@closed.test', '--from', ADMIN.address, '--server', `127.0.0.1:${srv.serve.port('submission')}`, '--tls',
      '--auth', 'PLAIN', '--auth-user', ADMIN.address, '--auth-password', ADMIN.password, '--header', 'Subject: queued e2e',
    ]);
    assert.equal(r.code, 0, r.stderr + r.stdout.toString());
    type Row = { id: string | number; recipient: string; status: string; attempts: number };
    const first = await until('the relay to the closed port to be deferred', async () => {
      const rows = (await srv.api('/api/v1/queue')) as Row[];
      return rows.find((e) => e.recipient === 'dave@closed.test' && e.status === 'deferred' && e.attempts >= 1);
    });
    await page.goto('/queue');
    const row = page.locator('table.queue tr', { hasText: 'dave@closed.test' });
    await row.waitFor();
    const [req] = await Promise.all([
      page.waitForRequest((q) => q.method() === 'POST' && /\/api\/v1\/queue\/[^/]+\/retry$/.test(q.url())),
      row.locator('button.retry').click(),
    ]);
    const csrf = await req.headerValue('x-csrf-token');
    assert.ok(csrf && csrf.length >= 16, 'the page sent its CSRF token');
    const res = await req.response();
    assert.ok(res && res.status() < 300, `retry answered ${res?.status()}`);
    const again = await until('a second attempt', async () => {
      const rows = (await srv.api('/api/v1/queue')) as Row[];
      const e = rows.find((x) => String(x.id) === String(first.id));
      return e && e.attempts > first.attempts ? e : null;
    });
    assert.equal(again.attempts, first.attempts + 1);
    await page.reload();
    const after = page.locator(`table.queue tr[data-id="${String(first.id)}"]`);
    await after.waitFor();
    assert.ok((await after.locator('td').allInnerTexts()).includes(String(again.attempts)), 'the page shows the new attempt count');
    await screenshot(page, 'console-queue');
    assertClean(guard, 'queue');
  });

  await step('the dashboard after the traffic: the TLS chart drawn, a plaintext sender listed', async () => {
    // One message without STARTTLS, from a HELO name the list must show.
    const r = await runPeer(swaks, ['--to', `plain-${Date.now()}@postseal.test`, '--from', 'eve@plain.test', '--helo', 'plain-sender.test', '--server', `127.0.0.1:${srv.serve.port('mx')}`]);
    assert.equal(r.code, 0, r.stderr + r.stdout.toString());
    await page.goto('/');
    await page.locator('.chart .uplot').first().waitFor();
    await page.locator('table.plain-in tr', { hasText: 'plain-sender.test' }).waitFor();
    await screenshot(page, 'console-dashboard');
    assertClean(guard, 'dashboard');
  });

  await step('the console CSP blocks an inline script injected into a page, and the guard above sees it', async () => {
    await page.goto('/messages');
    await page.locator('table.messages').waitFor();
    await page.evaluate(`(() => { const s = document.createElement('script'); s.textContent = 'document.title = "injected"'; document.body.append(s); })()`);
    await until('the violation to be reported', async () => guard.cspViolations.some((l) => l.startsWith('securitypolicyviolation: script-src')));
    assert.notEqual(await page.title(), 'injected');
    guard.cspViolations.length = 0;
    guard.errors.length = 0;
    guard.all.length = 0;
  });
});
