/**
 * Prometheus /metrics (issue 14 item 3): a real `postseal serve --http 127.0.0.1:0` child gets
 * known traffic — a plaintext session with two refused RCPTs and a message, a STARTTLS session
 * with a message, a STARTTLS followed by bytes that are no TLS, a TLS 1.0-only client — and two
 * alias forwards that the runner relays to a closed port (deferred). The scraped text format is
 * parsed and every counter must equal the traffic made, the commit histogram must have counts,
 * and the queue gauges must match `postseal queue list --json`.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { killAll, runCli, sendMessage, startServeChild, startTlsSession, tempDirs, type ServeChild } from '../cli/child.js';
import { WireClient } from '../helpers/wire.js';
import { closedPort } from '../helpers/poll.js';
import { handshakeFailureReason, HANDSHAKE_FAILURE_REASONS } from '../../src/server/events.js';

const dirs = tempDirs();
after(() => {
  killAll();
  dirs.cleanup();
});

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** The Prometheus text format (0.0.4): `name{l="v",…} value` lines; # lines skipped. */
function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `unparsable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] ?? ''] = (l[2] ?? '').replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    out.push({ name: m[1] ?? '', labels, value: Number(m[3]) });
  }
  return out;
}

/** The value of the one sample with this name and exactly these labels (undefined: none). */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels);
  const found = samples.filter((s) => s.name === name && Object.keys(s.labels).length === want.length && want.every(([k, v]) => s.labels[k] === v));
  assert.ok(found.length <= 1, `several samples for ${name} ${JSON.stringify(labels)}`);
  return found[0]?.value;
}

async function scrape(port: number): Promise<{ text: string; samples: Sample[]; res: Response }> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  const text = await res.text();
  return { text, samples: parseMetrics(text), res };
}

/** Polls `check` (a scrape or a CLI read, no sleeps as synchronisation) until it returns a value. */
async function until<T>(what: string, check: () => Promise<T | null>, timeoutMs = 20_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown = null;
  while (Date.now() < end) {
    const v = await check();
    if (v !== null) return v;
    last = v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what} (${String(last)})`);
}

/** EHLO then STARTTLS: returns the client with its socket ready for a handshake. */
async function startTlsCommand(port: number): Promise<WireClient> {
  const c = await WireClient.connect(port);
  assert.match((await c.readReply())[0] ?? '', /^220/);
  await c.cmd('EHLO client.test');
  assert.match((await c.cmd('STARTTLS'))[0] ?? '', /^220/);
  return c;
}

test('handshakeFailureReason: OpenSSL reasons as Node names them map to a fixed set of classes', () => {
  const table: Array<[unknown, string]> = [
    ['ERR_SSL_NO_SHARED_CIPHER', 'no_shared_cipher'],
    ['ERR_SSL_UNSUPPORTED_PROTOCOL', 'protocol_version'],
    ['ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION', 'protocol_version'],
    ['ERR_SSL_WRONG_VERSION_NUMBER', 'not_tls'],
    ['ERR_SSL_HTTP_REQUEST', 'not_tls'],
    ['ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE', 'certificate_rejected'],
    ['ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', 'certificate_rejected'],
    ['ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', 'alert'],
    ['ECONNRESET', 'client_closed'],
    [new Error('connection closed during TLS handshake'), 'client_closed'],
    [Object.assign(new Error('TLS handshake timed out'), { code: 'TLS_HANDSHAKE_TIMEOUT' }), 'timeout'],
    ['something new', 'other'],
    [42, 'other'],
  ];
  for (const [input, want] of table) assert.equal(handshakeFailureReason(input), want, String(input));
  for (const [, want] of table) assert.ok((HANDSHAKE_FAILURE_REASONS as readonly string[]).includes(want));
});

test('/metrics counts the traffic made: sessions by TLS version, STARTTLS failures, refusals, messages, deferred relays, queue gauges, commit latency', async () => {
  const data = dirs.make('metrics-');
  const dead = await closedPort();
  // An alias that forwards off-host: each message to it becomes a remote queue row.
  const alias = await runCli(['alias', 'add', 'fwd@postseal.test', 'far@remote.test', '--data', data]);
  assert.equal(alias.code, 0, alias.stderr);
  const serve: ServeChild = await startServeChild(
    [
      '--data', data, '--hostname', 'mx.postseal.test', '--domain', 'postseal.test',
      '--mx', '127.0.0.1:0', '--submission', 'off', '--submissions', 'off', '--http', '127.0.0.1:0',
      '--no-auth-verify', '--route', `remote.test=127.0.0.1:${dead}`, '--tls-policy', 'remote.test=encrypt',
    ],
    { listeners: 2 },
  );
  const mx = serve.port('mx');
  const http = serve.port('http');

  // Before any traffic: the listener's zero series and the prefixed process metrics are there.
  const first = await scrape(http);
  assert.equal(first.res.status, 200);
  assert.match(first.res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  assert.equal(value(first.samples, 'postseal_smtp_sessions_active', { listener: 'mx' }), 0);
  assert.equal(value(first.samples, 'postseal_messages_received_total', { listener: 'mx' }), 0);
  assert.equal(value(first.samples, 'postseal_starttls_failures_total', { listener: 'mx', reason: 'not_tls' }), 0);
  assert.ok(first.samples.some((s) => s.name === 'postseal_process_cpu_user_seconds_total'), 'default process metrics carry the postseal_ prefix');
  assert.ok(!first.samples.some((s) => s.name === 'process_cpu_user_seconds_total'), 'no unprefixed (global registry) metrics');

  // 1. Plaintext: two refused RCPTs (unknown local user 5.1.1, relaying denied 5.7.1), one message.
  const plain = await WireClient.connect(mx);
  await plain.readReply();
  await plain.cmd('EHLO client.test');
  assert.match((await plain.cmd('MAIL FROM:<sender@sender.test>'))[0] ?? '', /^250/);
  assert.match((await plain.cmd('RCPT TO:<nobody@postseal.test>'))[0] ?? '', /^550 5\.1\.1/);
  assert.match((await plain.cmd('RCPT TO:<someone@elsewhere.test>'))[0] ?? '', /^550 5\.7\.1/);
  assert.match((await plain.cmd('RCPT TO:<fwd@postseal.test>'))[0] ?? '', /^250/);
  assert.match((await plain.cmd('DATA'))[0] ?? '', /^354/);
  plain.write('Subject: plain\r\n\r\nover plaintext\r\n.\r\n');
  assert.match((await plain.readReply(15_000))[0] ?? '', /^250/);
  await plain.cmd('QUIT');
  plain.close();

  // 2. STARTTLS, then a message inside TLS.
  const secure = await startTlsSession(mx);
  assert.equal(secure.socket.getProtocol(), 'TLSv1.3');
  assert.match(await sendMessage(secure.c, 'sender@sender.test', 'fwd@postseal.test', 'Subject: tls\r\n\r\nover TLS\r\n', 15_000), /^250/);
  await secure.c.cmd('QUIT');
  secure.c.close();

  // 3. STARTTLS, then bytes that are no TLS record: the handshake fails (not_tls).
  const garbage = await startTlsCommand(mx);
  garbage.write('this is not a ClientHello at all\r\n');
  await garbage.expectClose();

  // 4. STARTTLS, then a client that offers TLS 1.0 only (the server's minimum is 1.2).
  const old = await startTlsCommand(mx);
  await assert.rejects(old.startTls('', { rejectUnauthorized: false, minVersion: 'TLSv1', maxVersion: 'TLSv1' }));
  old.close();

  // Sessions end asynchronously: wait (scraping) until all four are counted and none is open.
  const after4 = await until('four sessions ended', async () => {
    const s = await scrape(http);
    const ended = s.samples.filter((x) => x.name === 'postseal_smtp_sessions_total').reduce((n, x) => n + x.value, 0);
    return ended === 4 && value(s.samples, 'postseal_smtp_sessions_active', { listener: 'mx' }) === 0 ? s : null;
  });
  let m = after4.samples;
  assert.equal(value(m, 'postseal_smtp_sessions_total', { listener: 'mx', tls: 'none' }), 3, 'plaintext, garbage, TLS 1.0 sessions end without TLS');
  assert.equal(value(m, 'postseal_smtp_sessions_total', { listener: 'mx', tls: 'TLSv1.3' }), 1);
  assert.equal(value(m, 'postseal_starttls_failures_total', { listener: 'mx', reason: 'not_tls' }), 1);
  assert.equal(value(m, 'postseal_starttls_failures_total', { listener: 'mx', reason: 'protocol_version' }), 1);
  const otherFailures = m.filter((s) => s.name === 'postseal_starttls_failures_total' && s.labels['reason'] !== 'not_tls' && s.labels['reason'] !== 'protocol_version');
  assert.deepEqual(otherFailures.map((s) => s.value).filter((v) => v !== 0), []);
  assert.equal(value(m, 'postseal_messages_received_total', { listener: 'mx' }), 2);
  assert.equal(value(m, 'postseal_messages_rejected_total', { listener: 'mx', code: '5.1.1' }), 1);
  assert.equal(value(m, 'postseal_messages_rejected_total', { listener: 'mx', code: '5.7.1' }), 1);
  assert.equal(m.filter((s) => s.name === 'postseal_messages_rejected_total').reduce((n, s) => n + s.value, 0), 2, 'no other refusal counted');

  // The runner relays both forwards to the closed port: deferred, recorded with TLS none, policy from the table.
  const rows = await until('both forwards deferred', async () => {
    const r = await runCli(['queue', 'list', '--json', '--data', data]);
    assert.equal(r.code, 0, r.stderr);
    const list = JSON.parse(r.stdout) as Array<{ status: string; recipient: string }>;
    return list.length === 2 && list.every((e) => e.status === 'deferred') ? list : null;
  });
  assert.deepEqual(rows.map((e) => e.recipient), ['far@remote.test', 'far@remote.test']);
  m = (await until('the two attempts counted', async () => {
    const s = await scrape(http);
    return value(s.samples, 'postseal_deliveries_total', { outcome: 'deferred', kind: 'remote' }) === 2 ? s : null;
  })).samples;
  assert.equal(value(m, 'postseal_deliveries_total', { outcome: 'delivered', kind: 'remote' }), 0);
  assert.equal(value(m, 'postseal_deliveries_total', { outcome: 'failed', kind: 'remote' }), 0);
  assert.equal(value(m, 'postseal_delivery_tls_total', { level_reached: 'none', policy_source: 'table' }), 2);
  assert.equal(value(m, 'postseal_bounces_total'), 0);
  // Queue gauges equal the CLI's view of the waiting rows.
  const listed = JSON.parse((await runCli(['queue', 'list', '--json', '--data', data])).stdout) as Array<{ status: string }>;
  assert.equal(value(m, 'postseal_queue_depth', { status: 'deferred' }), listed.filter((e) => e.status === 'deferred').length);
  assert.equal(value(m, 'postseal_queue_depth', { status: 'queued' }), listed.filter((e) => e.status === 'queued').length);
  const oldest = value(m, 'postseal_queue_oldest_seconds') ?? -1;
  assert.ok(oldest > 0 && oldest < 600, `oldest waiting message age ${oldest}`);
  // Commits: two messages and two attempt records at least; the histogram's buckets are cumulative.
  const commits = value(m, 'postseal_store_commit_seconds_count') ?? 0;
  assert.ok(commits >= 2, `commit count ${commits}`);
  assert.ok((value(m, 'postseal_store_commit_seconds_sum') ?? 0) > 0);
  assert.equal(value(m, 'postseal_store_commit_seconds_bucket', { le: '+Inf' }), commits);
  assert.ok((value(m, 'postseal_store_committed_ops_total') ?? 0) >= 4, 'two accepts and two attempt records committed');

  serve.signal('SIGTERM');
  assert.equal((await serve.waitExit()).code, 0);
});

test('/metrics counts relays delivered over STARTTLS and refused by the next hop: deliveries by outcome, delivery TLS level by policy source, bounces', async () => {
  // The next hop: another postseal that knows ok@remote.test only.
  const peerData = dirs.make('metrics-peer-');
  const user = await runCli(['user', 'add', 'ok@remote.test', '--password-stdin', '--data', peerData], { input: 'peer-Pw.12345\n' });
  assert.equal(user.code, 0, user.stderr);
  const peer = await startServeChild(['--data', peerData, '--hostname', 'peer.remote.test', '--domain', 'remote.test', '--mx', '127.0.0.1:0', '--submission', 'off', '--submissions', 'off', '--no-relay', '--no-auth-verify']);
  const data = dirs.make('metrics-relay-');
  for (const [from, to] of [['fwd-ok@postseal.test', 'ok@remote.test'], ['fwd-bad@postseal.test', 'nobody@remote.test']] as const) {
    const r = await runCli(['alias', 'add', from, to, '--data', data]);
    assert.equal(r.code, 0, r.stderr);
  }
  const dead = await closedPort();
  const serve = await startServeChild(
    [
      '--data', data, '--hostname', 'mx.postseal.test', '--domain', 'postseal.test',
      '--mx', '127.0.0.1:0', '--submission', 'off', '--submissions', 'off', '--http', '127.0.0.1:0', '--no-auth-verify',
      '--route', `remote.test=127.0.0.1:${peer.port('mx')}`, '--tls-policy', 'remote.test=encrypt',
      // The bounce to the sender waits in the queue (its domain's route answers nothing).
      '--route', `sender.test=127.0.0.1:${dead}`,
    ],
    { listeners: 2 },
  );
  const http = serve.port('http');
  const c = await WireClient.connect(serve.port('mx'));
  await c.readReply();
  await c.cmd('EHLO client.test');
  assert.match((await c.cmd('MAIL FROM:<sender@sender.test>'))[0] ?? '', /^250/);
  assert.match((await c.cmd('RCPT TO:<fwd-ok@postseal.test>'))[0] ?? '', /^250/);
  assert.match((await c.cmd('RCPT TO:<fwd-bad@postseal.test>'))[0] ?? '', /^250/);
  assert.match((await c.cmd('DATA'))[0] ?? '', /^354/);
  c.write('Subject: two forwards\r\n\r\none lands, one bounces\r\n.\r\n');
  assert.match((await c.readReply(15_000))[0] ?? '', /^250/);
  await c.cmd('QUIT');
  c.close();

  const rows = await until('delivered, failed, and the bounce deferred', async () => {
    const r = await runCli(['queue', 'list', '--json', '--data', data]);
    const list = JSON.parse(r.stdout) as Array<{ status: string; recipient: string }>;
    const by = (rcpt: string): string | undefined => list.find((e) => e.recipient === rcpt)?.status;
    return list.length === 3 && by('ok@remote.test') === 'delivered' && by('nobody@remote.test') === 'failed' && by('sender@sender.test') === 'deferred' ? list : null;
  }, 30_000);
  const m = (await until('the three attempts counted', async () => {
    const s = await scrape(http);
    return s.samples.filter((x) => x.name === 'postseal_deliveries_total').reduce((n, x) => n + x.value, 0) === 3 ? s : null;
  })).samples;
  assert.equal(value(m, 'postseal_deliveries_total', { outcome: 'delivered', kind: 'remote' }), 1);
  assert.equal(value(m, 'postseal_deliveries_total', { outcome: 'failed', kind: 'remote' }), 1);
  assert.equal(value(m, 'postseal_deliveries_total', { outcome: 'deferred', kind: 'remote' }), 1);
  // Both forwards went over one STARTTLS session (level encrypt: the peer's certificate is self-signed), asked by the TLS table.
  assert.equal(value(m, 'postseal_delivery_tls_total', { level_reached: 'encrypt', policy_source: 'table' }), 2);
  // The bounce: no connection, no TLS, level from the default.
  assert.equal(value(m, 'postseal_delivery_tls_total', { level_reached: 'none', policy_source: 'default' }), 1);
  assert.equal(value(m, 'postseal_bounces_total'), 1);
  assert.equal(value(m, 'postseal_queue_depth', { status: 'deferred' }), rows.filter((e) => e.status === 'deferred').length);
  assert.equal(value(m, 'postseal_queue_depth', { status: 'queued' }), 0);
  serve.signal('SIGTERM');
  peer.signal('SIGTERM');
  assert.equal((await serve.waitExit()).code, 0);
  assert.equal((await peer.waitExit()).code, 0);
});

test('/metrics needs no login (no token, no session), while /api/v1 next to it answers 401; a failed implicit-TLS handshake counts on its listener', async () => {
  const data = dirs.make('metrics-auth-');
  const serve = await startServeChild(['--data', data, '--mx', '127.0.0.1:0', '--submission', 'off', '--submissions', '127.0.0.1:0', '--http', '127.0.0.1:0', '--no-relay'], { listeners: 3 });
  const http = serve.port('http');
  const res = await fetch(`http://127.0.0.1:${http}/metrics`);
  assert.equal(res.status, 200);
  assert.match(await res.text(), /^# HELP postseal_/m);
  // The API next to it does need a login: /metrics is the exception, not an open door.
  assert.equal((await fetch(`http://127.0.0.1:${http}/api/v1/queue`)).status, 401);
  // RFC 8314 §3 port: TLS from the first byte; a plaintext EHLO there is no ClientHello.
  const plain = net.connect(serve.port('submissions'), '127.0.0.1');
  await new Promise<void>((resolve, reject) => plain.once('connect', resolve).once('error', reject));
  plain.end('EHLO client.test\r\n');
  await new Promise<void>((resolve) => plain.once('close', () => resolve()).resume());
  const m = (await until('the implicit-TLS failure counted', async () => {
    const s = await scrape(http);
    return value(s.samples, 'postseal_starttls_failures_total', { listener: 'submissions', reason: 'not_tls' }) === 1 ? s : null;
  })).samples;
  // No session was started for it, and mx saw nothing.
  assert.equal(m.filter((x) => x.name === 'postseal_smtp_sessions_total').length, 0);
  assert.equal(m.filter((x) => x.name === 'postseal_starttls_failures_total' && x.labels['listener'] === 'mx').reduce((n, x) => n + x.value, 0), 0);
  serve.signal('SIGTERM');
  assert.equal((await serve.waitExit()).code, 0);
});
