/**
 * The sender test through a real `serve --http 127.0.0.1:0` child (issue 14 item 6): swaks sends
 * to tls-test@postseal.test over STARTTLS; the report page /sender-test/ID on the console's real
 * port shows it without login, and the automatic reply (in the sender's local mailbox, read
 * through the API) links to that URL with the bound port.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readdir, writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { startConsole, type ConsoleServer } from './helpers.js';

let dns: DnsServer;
let c: ConsoleServer;
let dir = '';

before(async () => {
  dns = await startDnsServer([{ name: 'sender.test', type: 'TXT', data: 'v=spf1 ip4:127.0.0.1 -all' }]);
  dir = await mkdtemp(join(tmpdir(), 'postseal-sender-test-http-'));
  const cfgFile = join(dir, 'serve.json');
  await writeFile(cfgFile, JSON.stringify({ http: { senderTest: { enabled: true } } }));
  c = await startConsole({ extra: ['--config', cfgFile, '--domain', 'sender.test', '--catch-all', '--dns', `127.0.0.1:${dns.port}`] });
});

after(async () => {
  await c.close();
  await dns.close();
  await rm(dir, { recursive: true, force: true });
});

test('serve --http: swaks to tls-test@ -> report page at the bound port without login, reply links to it', async () => {
  const mx = c.serve.port('mx');
  await promisify(execFile)('swaks', ['--server', `127.0.0.1:${mx}`, '--helo', 'swaks.sender.test', '--from', 'alice@sender.test', '--to', 'tls-test@postseal.test', '--tls', '--h-Subject', 'sender test', '--timeout', '10'], { encoding: 'utf8' });
  const files = (await readdir(join(c.dataDir, 'sender-tests'))).filter((f) => f.endsWith('.json'));
  assert.equal(files.length, 1);
  const id = (files[0] ?? '').replace(/\.json$/, '');
  const page = await fetch(`${c.base}/sender-test/${id}`, { redirect: 'manual' });
  assert.equal(page.status, 200);
  const html = await page.text();
  assert.match(html, /swaks\.sender\.test/);
  assert.match(html, /TLSv1\.[23]/);
  assert.match(page.headers.get('content-security-policy') ?? '', /default-src/);
  const json = (await (await fetch(`${c.base}/sender-test/${id}.json`)).json()) as { client: { ehlo: string }; reply: { sent: boolean } };
  assert.equal(json.client.ehlo, 'swaks.sender.test');
  assert.equal(json.reply.sent, true);

  const list = (await (await c.api('/api/v1/messages')).json()) as unknown;
  const items = (Array.isArray(list) ? list : ((list as { messages?: unknown[] }).messages ?? [])) as Array<{ id: string; mailFrom: string; recipients: string[] }>;
  const reply = items.find((m) => m.mailFrom === '' && m.recipients.includes('alice@sender.test'));
  assert.ok(reply !== undefined, JSON.stringify(items));
  const raw = await (await c.api(`/api/v1/messages/${reply.id}/raw`)).text();
  assert.match(raw, /^Auto-Submitted: auto-replied\r?$/m);
  assert.ok(raw.includes(`${c.base}/sender-test/${id}`), raw);
});
