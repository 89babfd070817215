/**
 * The README's two delivery setups (issue 12 "Done when"), run as written so they cannot drift:
 *
 * - "postseal in front of Dovecot": its `postseal user add`, `alias add` and `serve` lines are run
 *   (the CLI as a child, with `--data` on a temp dir and listeners on 127.0.0.1:0 added; the LMTP
 *   port 24 replaced by the test Dovecot's), mail to the alias is sent over SMTP, and the README's
 *   `curl … imap://` line (password and IMAP port filled in) counts it in alice's INBOX.
 * - "postseal into my app (webhook)": its `serve` line is run with the README's environment
 *   variable (URL replaced by a receiver on 127.0.0.1:0); the receiver checks each call with the
 *   README's JavaScript verifier, loaded from the README itself. The verifier is also checked
 *   against the implementation's signature (src/delivery/webhook.ts) and must refuse a changed
 *   body, a wrong secret and a timestamp outside the 5-minute window.
 * - Every flag of the README's serve lines is listed by `postseal serve --help`.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { webhookSignature } from '../../src/delivery/webhook.js';
import { startDovecot, type DovecotUser } from '../helpers/dovecot.js';
import { findPeer, runPeer } from '../helpers/peers.js';
import { WireClient } from '../helpers/wire.js';
import { killAll, mxOnly, ROOT, runCli, startServeChild, tempDirs } from '../cli/child.js';

const dirs = tempDirs();
after(() => {
  killAll();
  dirs.cleanup();
});

const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

/** The text of the `### TITLE` section, up to the next heading. */
function section(title: string): string {
  const start = README.indexOf(`\n### ${title}\n`);
  assert.ok(start >= 0, `README has no section "### ${title}"`);
  const rest = README.slice(start + 1);
  const next = rest.slice(4).search(/^#{1,3} /m);
  return next < 0 ? rest : rest.slice(0, next + 4);
}

/** The fenced code blocks of a language in a text. */
function blocks(text: string, lang: string): string[] {
  return [...text.matchAll(new RegExp('^```' + lang + '\\n([\\s\\S]*?)^```$', 'gm'))].map((m) => m[1] ?? '');
}

/** Shell words of one command line: blanks split, '…' quotes, a trailing `# comment` dropped. */
function words(line: string): string[] {
  const out: string[] = [];
  let cur: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] ?? '';
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      assert.ok(end > i, `unbalanced quote in ${line}`);
      cur = (cur ?? '') + line.slice(i + 1, end);
      i = end;
    } else if (c === ' ' || c === '\t') {
      if (cur !== null) out.push(cur);
      cur = null;
    } else if (c === '#' && cur === null) {
      break;
    } else cur = (cur ?? '') + c;
  }
  if (cur !== null) out.push(cur);
  return out;
}

interface Command {
  env: Record<string, string>;
  argv: string[];
}

/** The command lines of a section's sh blocks that run `program` (leading VAR=value words become env). */
function commands(text: string, program: string[]): Command[] {
  const out: Command[] = [];
  for (const b of blocks(text, 'sh')) {
    for (const line of b.split('\n')) {
      const w = words(line);
      const env: Record<string, string> = {};
      while (w[0] !== undefined && /^[A-Z_][A-Z0-9_]*=/.test(w[0])) {
        const [k, ...v] = (w.shift() ?? '').split('=');
        env[k ?? ''] = v.join('=');
      }
      if (program.every((p, i) => w[i] === p)) out.push({ env, argv: w.slice(program.length) });
    }
  }
  return out;
}

const DOVECOT = section('postseal in front of Dovecot');
const WEBHOOK = section('postseal into my app (webhook)');

/** Listeners on free ports, a temp data dir, a 200 ms queue pass: added to a README serve line to run it in a test. */
async function testFlags(prefix: string): Promise<{ dataDir: string; flags: string[] }> {
  const dataDir = dirs.make(prefix);
  const config = join(dataDir, 'postseal.json');
  await writeFile(config, JSON.stringify({ relay: { intervalMs: 200 } }));
  return { dataDir, flags: mxOnly(dataDir, ['--config', config, '--hostname', 'mx.example.org', '--no-auth-verify']) };
}

async function sendOne(port: number, from: string, to: string, body: string): Promise<void> {
  const c = await WireClient.connect(port);
  try {
    assert.match((await c.readReply())[0] ?? '', /^220 /);
    await c.cmd('EHLO client.readme.test');
    assert.match((await c.cmd(`MAIL FROM:<${from}>`))[0] ?? '', /^250 /);
    assert.match((await c.cmd(`RCPT TO:<${to}>`))[0] ?? '', /^250 /);
    assert.match((await c.cmd('DATA'))[0] ?? '', /^354 /);
    assert.match((await c.cmd(`${body}\r\n.`))[0] ?? '', /^250 /);
    await c.cmd('QUIT');
  } finally {
    c.close();
  }
}

test('README delivery sections: each has one serve line, and every flag of it is in `postseal serve --help`', { timeout: 60_000 }, async () => {
  const help = await runCli(['serve', '--help']);
  assert.equal(help.code, 0, help.stderr);
  for (const [name, text, target] of [['Dovecot', DOVECOT, /^example\.org=lmtp:127\.0\.0\.1:24$/], ['webhook', WEBHOOK, /^example\.org=webhook:https:\/\/app\.example\/hook$/]] as const) {
    const serve = commands(text, ['npx', 'postseal', 'serve']);
    assert.equal(serve.length, 1, `${name}: one serve line`);
    const argv = serve[0]?.argv ?? [];
    const flags = argv.filter((a) => a.startsWith('--'));
    assert.ok(flags.includes('--deliver'), `${name}: the serve line uses --deliver`);
    for (const f of flags) assert.match(help.stdout, new RegExp(`^ +${f} `, 'm'), `${name}: ${f} is listed by serve --help`);
    assert.match(argv[argv.indexOf('--deliver') + 1] ?? '', target);
  }
  // The webhook secret the README sets is the one serve reads (docs/config.md names the variable).
  assert.deepEqual(Object.keys(commands(WEBHOOK, ['npx', 'postseal', 'serve'])[0]?.env ?? {}), ['POSTSEAL_WEBHOOK_SECRET']);
  assert.match(readFileSync(join(ROOT, 'docs/config.md'), 'utf8'), /POSTSEAL_WEBHOOK_SECRET/);
});

/** The README's verifier, loaded from its js block. */
async function readmeVerifier(): Promise<(secret: string, headers: Record<string, string | undefined>, body: Buffer) => boolean> {
  const js = blocks(WEBHOOK, 'js');
  assert.equal(js.length, 1, 'one js block in the webhook section');
  const lines = (js[0] ?? '').trim().split('\n');
  assert.ok(lines.length <= 7, `the verifier is short (${lines.length} lines)`);
  const file = join(dirs.make('postseal-readme-js-'), 'verify.mjs');
  await writeFile(file, js[0] ?? '');
  const mod = (await import(pathToFileURL(file).href)) as { verified?: unknown };
  assert.equal(typeof mod.verified, 'function', 'the README block exports verified()');
  return mod.verified as (secret: string, headers: Record<string, string | undefined>, body: Buffer) => boolean;
}

test("README webhook verifier accepts the implementation's signature and refuses a changed body, a wrong secret, a stale timestamp", async () => {
  const verified = await readmeVerifier();
  const secret = 'change-me';
  const body = Buffer.from('Received: from x\r\nSubject: hi\r\n\r\nbody \xff\r\n', 'latin1');
  const now = String(Math.floor(Date.now() / 1000));
  const headers = (ts: string, b = body, s = secret): Record<string, string> => ({ 'x-postseal-timestamp': ts, 'x-postseal-signature': webhookSignature(s, ts, b) });
  assert.equal(verified(secret, headers(now), body), true);
  assert.equal(verified(secret, headers(now), Buffer.concat([body, Buffer.from('x')])), false, 'changed body');
  assert.equal(verified(secret, headers(now, body, 'other'), body), false, 'wrong secret');
  const stale = String(Number(now) - 301);
  assert.equal(verified(secret, headers(stale), body), false, 'outside the replay window');
  assert.equal(verified(secret, {}, body), false, 'no headers');
});

test('README webhook setup run as written: serve POSTs a received message, the README verifier accepts it', { timeout: 120_000 }, async (t) => {
  const verified = await readmeVerifier();
  const line = commands(WEBHOOK, ['npx', 'postseal', 'serve'])[0];
  assert.ok(line);
  const secret = line.env.POSTSEAL_WEBHOOK_SECRET ?? '';
  const calls: Array<{ headers: http.IncomingHttpHeaders; body: Buffer; ok: boolean }> = [];
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (b: Buffer) => {
      size += b.length;
      if (size > 1 << 20) req.destroy();
      else parts.push(b);
    });
    req.on('end', () => {
      const body = Buffer.concat(parts);
      const h = req.headers as Record<string, string | undefined>;
      const ok = verified(secret, h, body);
      calls.push({ headers: req.headers, body, ok });
      res.writeHead(ok ? 200 : 401).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  const { dataDir, flags } = await testFlags('postseal-readme-hook-');
  const argv = line.argv.map((a) => a.replace('https://app.example/hook', url));
  const serve = await startServeChild([...argv, ...flags, '--catch-all'], { env: line.env });
  t.after(async () => {
    serve.signal('SIGTERM');
    await serve.waitExit().catch(() => undefined);
  });
  await sendOne(serve.port('mx'), 'someone@elsewhere.test', 'alice@example.org', 'Subject: to the app\r\n\r\nhello app');
  const deadline = Date.now() + 30_000;
  while (calls.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  assert.equal(calls.length, 1, `one call; serve stderr:\n${serve.stderr()}`);
  const call = calls[0];
  assert.ok(call?.ok, 'the README verifier accepts the call');
  assert.match(String(call.headers['idempotency-key'] ?? ''), /^\S+$/);
  assert.match(call.body.toString('utf8'), /^Received: [\s\S]*by mx\.example\.org[\s\S]*\r\nSubject: to the app\r\n\r\nhello app\r\n$/);
  const rows = await runCli(['queue', 'list', '--json', '--data', dataDir]);
  const list = JSON.parse(rows.stdout) as Array<{ id: string; status: string }>;
  assert.deepEqual(list.map((r) => [r.id, r.status]), [[call.headers['idempotency-key'], 'delivered']]);
});

test('README Dovecot setup run as written: alias add, serve --deliver lmtp, the curl IMAP line sees the message', { timeout: 120_000 }, async (t) => {
  const curl = await findPeer(t, 'curl');
  if (curl === null) return;
  const alice: DovecotUser = { address: 'alice@example.org', password: 'pw-Alice.readme' };
  const dovecot = await startDovecot(t, { users: [alice, { address: 'bob@example.org', password: 'pw-Bob.readme' }] });
  if (dovecot === null) return;
  t.after(() => dovecot.remove());
  const { dataDir, flags } = await testFlags('postseal-readme-dovecot-');

  // `user add` prompts for a password: the test gives it on stdin (--password-stdin).
  const userLines = commands(DOVECOT, ['npx', 'postseal', 'user', 'add']);
  assert.equal(userLines.length, 1);
  const user = await runCli(['user', 'add', ...(userLines[0]?.argv ?? []), '--password-stdin', '--data', dataDir], { input: 'a long enough password\n' });
  assert.equal(user.code, 0, user.stderr);
  const aliasLines = commands(DOVECOT, ['npx', 'postseal', 'alias', 'add']);
  assert.equal(aliasLines.length, 1);
  const alias = aliasLines[0]?.argv ?? [];
  const added = await runCli(['alias', 'add', ...alias, '--data', dataDir]);
  assert.equal(added.code, 0, added.stderr);

  const line = commands(DOVECOT, ['npx', 'postseal', 'serve'])[0];
  assert.ok(line);
  const argv = line.argv.map((a) => a.replace('lmtp:127.0.0.1:24', `lmtp:127.0.0.1:${dovecot.lmtpPort}`));
  const serve = await startServeChild([...argv, ...flags], { env: line.env });
  t.after(async () => {
    serve.signal('SIGTERM');
    await serve.waitExit().catch(() => undefined);
  });
  // To the alias of the README: it reaches alice at Dovecot.
  await sendOne(serve.port('mx'), 'someone@elsewhere.test', alias[0] ?? '', 'Subject: via the README\r\n\r\nhello Dovecot');

  const curlLine = commands(DOVECOT, ['curl'])[0];
  assert.ok(curlLine, 'the section has a curl line');
  const curlArgs = curlLine.argv.map((a) => a.replace(/^alice@example\.org$/, `${alice.address}:${alice.password}`).replace('imap://127.0.0.1/', `imap://127.0.0.1:${dovecot.imapPort}/`));
  const deadline = Date.now() + 30_000;
  let out = '';
  for (;;) {
    const r = await runPeer(curl, ['-sS', '--max-time', '10', ...curlArgs], { timeoutMs: 20_000 });
    out = r.stdout.toString('utf8') + r.stderr;
    if (/MESSAGES 1\b/.test(out) || Date.now() > deadline) break;
    await new Promise((res) => setTimeout(res, 200));
  }
  assert.match(out, /\* STATUS INBOX \(MESSAGES 1\)/, `curl output:\n${out}\nserve stderr:\n${serve.stderr()}`);
  const msgs = await dovecot.fetchAll(alice);
  assert.equal(msgs.length, 1);
  assert.match(msgs[0]?.toString('utf8') ?? '', /^Return-Path: <someone@elsewhere\.test>\r\nReceived: [\s\S]*by mx\.example\.org[\s\S]*\r\nSubject: via the README\r\n\r\nhello Dovecot\r\n$/);
});
