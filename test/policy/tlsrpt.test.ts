/**
 * TLS-RPT (RFC 8460) end to end with real parts: counters through the store (they survive a
 * reopen), the report JSON checked by a validator of the §4.4 fields, a mailto: report put in the
 * queue and delivered by the queue runner to a real receiver (smtp-server, MX from a test DNS
 * server, STARTTLS with the test CA) and taken apart there (multipart/report, gunzip), and an
 * https: collector on 127.0.0.1:0 with a certificate from the test CA.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { after, test } from 'node:test';
import { uniformTimeouts, systemResolver } from '../../src/client/index.js';
import { DEFAULT_RELAY } from '../../src/config.js';
import { silentLogger } from '../../src/log.js';
import { DnsResolver } from '../../src/policy/dns.js';
import { TlsRptCounter } from '../../src/policy/tlsrpt.js';
import { deliverTlsRptReports, makeTlsRptReports, planTlsRptReports, type TlsRptSendOptions } from '../../src/policy/tlsrpt-send.js';
import type { TlsRptEvent } from '../../src/policy/types.js';
import { TLSRPT_FAILURES } from '../../src/policy/types.js';
import { QueueRunner } from '../../src/relay/runner.js';
import { openSqliteStore, type SqliteStore } from '../../src/store/index.js';
import { issueCert, makeTestCa } from '../helpers/certs.js';
import { startDnsServer } from '../helpers/dns-server.js';
import { requirePeer, startSmtpServerReceiver } from '../helpers/receivers.js';
import { runCli } from '../cli/child.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function tempStore(): Promise<{ dir: string; store: SqliteStore }> {
  const dir = await mkdtemp(join(tmpdir(), 'postseal-tlsrpt-'));
  dirs.push(dir);
  return { dir, store: await openSqliteStore(dir) };
}

const YESTERDAY = Date.parse(new Date(Date.now() - 86_400_000).toISOString().slice(0, 10) + 'T12:00:00Z');
const STS = ['version: STSv1', 'mode: enforce', 'mx: *.policy.test', 'max_age: 86400'];

function ev(o: Partial<TlsRptEvent>): TlsRptEvent {
  return { policyDomain: 'policy.test', policyType: 'sts', policyStrings: STS, mxHost: 'mx1.policy.test', receivingIp: '192.0.2.1', result: 'success', detail: null, at: YESTERDAY, ...o };
}

function recordSome(c: TlsRptCounter): void {
  for (let i = 0; i < 5; i++) c.record(ev({}));
  c.record(ev({ result: 'certificate-host-mismatch', detail: 'cert names mx.other.test' }));
  c.record(ev({ result: 'certificate-host-mismatch', detail: 'cert names mx.other.test' }));
  c.record(ev({ result: 'starttls-not-supported', mxHost: 'MX2.policy.test.', receivingIp: '192.0.2.2' }));
  c.record(ev({ policyType: 'no-policy-found', policyStrings: [], mxHost: 'mx.plain.test', receivingIp: null }));
}

// ---- a validator for the RFC 8460 §4.4 report (field names, types, required fields) ----
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isCount = (v: unknown): boolean => Number.isInteger(v) && (v as number) >= 0;
const isDateTime = (v: unknown): boolean => typeof v === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(v) && !Number.isNaN(Date.parse(v));
function only(o: Record<string, unknown>, allowed: string[], where: string, errs: string[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) errs.push(`${where}: unknown field ${k}`);
}
function validateReport(r: unknown): string[] {
  const errs: string[] = [];
  if (!isObj(r)) return ['report is not an object'];
  only(r, ['organization-name', 'date-range', 'contact-info', 'report-id', 'policies'], 'report', errs);
  for (const k of ['organization-name', 'contact-info', 'report-id']) if (typeof r[k] !== 'string' || r[k] === '') errs.push(`${k} must be a non-empty string`);
  const dr = r['date-range'];
  if (!isObj(dr) || !isDateTime(dr['start-datetime']) || !isDateTime(dr['end-datetime'])) errs.push('date-range needs start-datetime and end-datetime (RFC 3339)');
  else if (Date.parse(String(dr['start-datetime'])) > Date.parse(String(dr['end-datetime']))) errs.push('date-range ends before it starts');
  if (!Array.isArray(r.policies) || r.policies.length === 0) return [...errs, 'policies must be a non-empty array'];
  r.policies.forEach((p: unknown, i) => {
    const w = `policies[${i}]`;
    if (!isObj(p)) return void errs.push(`${w} not an object`);
    only(p, ['policy', 'summary', 'failure-details'], w, errs);
    const pol = p.policy;
    if (!isObj(pol)) errs.push(`${w}.policy missing`);
    else {
      only(pol, ['policy-type', 'policy-string', 'policy-domain', 'mx-host'], `${w}.policy`, errs);
      if (!['sts', 'tlsa', 'no-policy-found'].includes(String(pol['policy-type']))) errs.push(`${w}.policy.policy-type bad`);
      if (typeof pol['policy-domain'] !== 'string') errs.push(`${w}.policy.policy-domain missing`);
      for (const k of ['policy-string', 'mx-host']) if (k in pol && !(Array.isArray(pol[k]) && (pol[k] as unknown[]).every((s) => typeof s === 'string'))) errs.push(`${w}.policy.${k} must be an array of strings`);
    }
    const s = p.summary;
    if (!isObj(s) || !isCount(s['total-successful-session-count']) || !isCount(s['total-failure-session-count'])) errs.push(`${w}.summary needs both counts`);
    let failed = 0;
    if ('failure-details' in p) {
      if (!Array.isArray(p['failure-details'])) errs.push(`${w}.failure-details must be an array`);
      else
        p['failure-details'].forEach((d: unknown, j) => {
          const wd = `${w}.failure-details[${j}]`;
          if (!isObj(d)) return void errs.push(`${wd} not an object`);
          only(d, ['result-type', 'sending-mta-ip', 'receiving-mx-hostname', 'receiving-mx-helo', 'receiving-ip', 'failed-session-count', 'additional-information', 'failure-reason-code'], wd, errs);
          if (!(TLSRPT_FAILURES as readonly string[]).includes(String(d['result-type']))) errs.push(`${wd}.result-type ${String(d['result-type'])} is not an RFC 8460 §4.3 type`);
          if (!isCount(d['failed-session-count'])) errs.push(`${wd}.failed-session-count`);
          else failed += d['failed-session-count'] as number;
          for (const k of ['sending-mta-ip', 'receiving-mx-hostname', 'receiving-mx-helo', 'receiving-ip', 'additional-information', 'failure-reason-code']) if (k in d && typeof d[k] !== 'string') errs.push(`${wd}.${k} must be a string`);
        });
    }
    if (isObj(s) && failed !== s['total-failure-session-count']) errs.push(`${w}: failure-details add up to ${failed}, summary says ${String(s['total-failure-session-count'])}`);
  });
  return errs;
}

function sendOptions(txt: Record<string, string[]>, extra: Partial<TlsRptSendOptions> = {}): TlsRptSendOptions {
  return {
    organizationName: 'Sender Org',
    contactInfo: 'tlsrpt@sender.test',
    submitter: 'out.sender.test',
    from: 'tlsrpt-noreply@sender.test',
    lookupTxt: (name) => Promise.resolve(txt[name] ?? []),
    ...extra,
  };
}

test('counters go to the store as one write, sum across flushes and survive a reopen', async () => {
  const { dir, store } = await tempStore();
  const c = new TlsRptCounter(store);
  recordSome(c);
  assert.equal(c.pending().length, 4);
  const before = store.stats().ops;
  await c.flush();
  assert.equal(store.stats().ops - before, 1, 'one store op per flush');
  recordSome(c);
  await c.close();
  await store.close();
  const again = await openSqliteStore(dir);
  try {
    const rows = again.listTlsRptCounts({ domain: 'POLICY.test' });
    const get = (result: string, mx = 'mx1.policy.test'): number => rows.find((r) => r.result === result && r.mxHost === mx)?.count ?? 0;
    assert.equal(get('success'), 10);
    assert.equal(get('certificate-host-mismatch'), 4);
    assert.equal(get('starttls-not-supported', 'mx2.policy.test'), 2, 'MX host lower-cased, trailing dot gone');
    assert.equal(rows.find((r) => r.result === 'certificate-host-mismatch')?.detail, 'cert names mx.other.test');
    assert.equal(rows.find((r) => r.policyType === 'no-policy-found')?.receivingIp, '');
    assert.ok(rows.every((r) => r.day === new Date(YESTERDAY).toISOString().slice(0, 10)));
  } finally {
    await again.close();
  }
});

test('the planned report is RFC 8460 §4.4 JSON; today is left out unless asked for', async () => {
  const { store } = await tempStore();
  const c = new TlsRptCounter(store);
  recordSome(c);
  c.record(ev({ at: Date.now() }));
  await c.close();
  const id = { organizationName: 'Sender Org', contactInfo: 'tlsrpt@sender.test', submitter: 'out.sender.test' };
  const plan = await planTlsRptReports(store, id, new Date());
  assert.equal(plan.length, 1, 'only yesterday');
  const report = plan[0]?.report;
  assert.deepEqual(validateReport(report), []);
  assert.equal(report?.['date-range']['start-datetime'].slice(11), '00:00:00Z');
  assert.equal(report?.['date-range']['end-datetime'].slice(11), '23:59:59Z');
  const sts = report?.policies.find((p) => p.policy['policy-type'] === 'sts');
  assert.deepEqual(sts?.policy['mx-host'], ['*.policy.test']);
  assert.deepEqual(sts?.policy['policy-string'], STS);
  assert.deepEqual(sts?.summary, { 'total-successful-session-count': 5, 'total-failure-session-count': 3 });
  const mismatch = sts?.['failure-details']?.find((d) => d['result-type'] === 'certificate-host-mismatch');
  assert.deepEqual(mismatch, { 'result-type': 'certificate-host-mismatch', 'receiving-mx-hostname': 'mx1.policy.test', 'receiving-ip': '192.0.2.1', 'failed-session-count': 2, 'failure-reason-code': 'cert names mx.other.test' });
  const none = report?.policies.find((p) => p.policy['policy-type'] === 'no-policy-found');
  assert.deepEqual(none?.summary, { 'total-successful-session-count': 1, 'total-failure-session-count': 0 });
  assert.equal((await planTlsRptReports(store, id, new Date(), { includeToday: true })).length, 2);
  // The validator itself catches what it is for.
  assert.notDeepEqual(validateReport({ ...report, policies: [{ policy: { 'policy-type': 'x' }, summary: {} }] }), []);
  await store.close();
});

test('a domain without a TLS-RPT record gets no report and its counts go; a DNS failure keeps them', async () => {
  const { store } = await tempStore();
  const c = new TlsRptCounter(store);
  c.record(ev({ policyDomain: 'silent.test' }));
  c.record(ev({ policyDomain: 'flaky.test' }));
  await c.close();
  const made = await makeTlsRptReports(store, sendOptions({}, { lookupTxt: (n) => (n.includes('flaky') ? Promise.reject(new Error('SERVFAIL')) : Promise.resolve([])) }), new Date());
  assert.deepEqual(made.map((m) => `${m.policyDomain} ${m.outcome}`).sort(), ['flaky.test dns-error', 'silent.test no-record']);
  assert.deepEqual(store.listTlsRptCounts().map((r) => r.policyDomain), ['flaky.test']);
  assert.equal(store.listTlsRptReports().length, 0);
  await store.close();
});

test('https: collector on 127.0.0.1 (test CA) gets a POST of application/tlsrpt+gzip; a failure is retried with the same report', async () => {
  const ca = await makeTestCa();
  const pair = await issueCert(ca, { names: ['127.0.0.1'] });
  const posts: { type: string | undefined; domain: string | undefined; path: string | undefined; body: Buffer }[] = [];
  let answer = 500;
  const server = https.createServer({ key: pair.keyPem, cert: pair.certPem }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      posts.push({ type: req.headers['content-type'], domain: req.headers['tls-report-domain'] as string | undefined, path: req.url, body: Buffer.concat(chunks) });
      res.writeHead(answer).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  assert.ok(addr !== null && typeof addr === 'object');
  const { store } = await tempStore();
  try {
    const c = new TlsRptCounter(store);
    recordSome(c);
    await c.close();
    const opts = sendOptions({ '_smtp._tls.policy.test': [`v=TLSRPTv1; rua=https://127.0.0.1:${addr.port}/tlsrpt`] }, { ca: [ca.certPem], httpsTimeoutMs: 10_000 });
    const made = await makeTlsRptReports(store, opts, new Date());
    assert.equal(made[0]?.outcome, 'made');
    assert.equal(store.listTlsRptCounts().length, 0, 'the report took the counts');
    let rounds = await deliverTlsRptReports(store, opts, new Date());
    assert.equal(rounds[0]?.state, 'retry');
    const kept = store.listTlsRptReports();
    assert.equal(kept.length, 1);
    assert.equal(kept[0]?.attempts, 1);
    assert.ok((kept[0]?.nextAttemptAt ?? 0) > Date.now(), 'next attempt later');
    assert.equal((await deliverTlsRptReports(store, opts, new Date())).length, 0, 'not due yet');
    answer = 200;
    rounds = await deliverTlsRptReports(store, opts, new Date(), { force: true });
    assert.equal(rounds[0]?.state, 'sent');
    assert.equal(store.listTlsRptReports().length, 0, 'sent reports go');
    assert.equal(posts.length, 2);
    const [p1, p2] = posts;
    assert.ok(p1 && p2);
    assert.equal(p2.type, 'application/tlsrpt+gzip');
    assert.equal(p2.path, '/tlsrpt');
    assert.equal(p2.domain, 'policy.test');
    assert.deepEqual(p1.body, p2.body, 'a retry sends the same report');
    const json: unknown = JSON.parse(gunzipSync(p2.body).toString('utf8'));
    assert.deepEqual(validateReport(json), []);
    assert.equal((json as { 'report-id': string })['report-id'], made[0]?.reportId);
    // Without the test CA the collector is not trusted: PKIX, no fall-back.
    const c2 = new TlsRptCounter(store);
    recordSome(c2);
    await c2.close();
    const untrusted = { ...opts, ca: [] };
    await makeTlsRptReports(store, untrusted, new Date());
    rounds = await deliverTlsRptReports(store, untrusted, new Date());
    assert.equal(rounds[0]?.state, 'retry');
    assert.match(Object.values(rounds[0]?.failed ?? {}).join(' '), /certificate/i);
    assert.equal(posts.length, 2, 'nothing posted to an untrusted collector');
  } finally {
    await store.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

/** Splits a MIME multipart body by its boundary (RFC 2046 §5.1.1), by hand. */
function parts(message: string): { headers: string; body: string }[] {
  const sep = message.indexOf('\r\n\r\n');
  const head = message.slice(0, sep).replace(/\r\n[ \t]+/g, ' ');
  const m = /boundary="([^"]+)"/.exec(head);
  assert.ok(m?.[1], 'boundary parameter');
  const chunks = message.slice(sep + 4).split(`--${m[1]}`);
  return chunks.slice(1, -1).map((c) => {
    const s = c.replace(/^\r\n/, '');
    const i = s.indexOf('\r\n\r\n');
    return { headers: s.slice(0, i).replace(/\r\n[ \t]+/g, ' '), body: s.slice(i + 4) };
  });
}

test('mailto: report goes through the queue to a real receiver (smtp-server) as multipart/report with the RFC 8460 §5.3 fields', async (t) => {
  if (!requirePeer(t, 'smtp-server')) return;
  const ca = await makeTestCa();
  const mx = 'mx.collector.test';
  const receiver = await startSmtpServerReceiver({ hostname: mx, pair: await issueCert(ca, { names: [mx] }) });
  const dns = await startDnsServer([
    { name: '_smtp._tls.policy.test', type: 'TXT', data: ['v=TLSRPTv1; ', 'rua=mailto:reports@collector.test'] },
    { name: 'collector.test', type: 'MX', preference: 10, exchange: mx },
    { name: mx, type: 'A', address: '127.0.0.1' },
  ]);
  const { store } = await tempStore();
  try {
    const c = new TlsRptCounter(store);
    recordSome(c);
    await c.close();
    const resolver = new DnsResolver({ host: '127.0.0.1', port: dns.port }, 5000);
    const opts = sendOptions({}, { lookupTxt: (n) => resolver.txt(n) });
    const made = await makeTlsRptReports(store, opts, new Date());
    assert.equal(made[0]?.outcome, 'made', made[0]?.detail ?? '');
    const rounds = await deliverTlsRptReports(store, opts, new Date());
    assert.equal(rounds[0]?.state, 'sent');
    assert.equal(rounds[0]?.queued.length, 1);
    assert.equal(store.listTlsRptReports().length, 0);
    const runner = new QueueRunner(
      store,
      { ...DEFAULT_RELAY, hostname: 'out.sender.test', localDomains: ['sender.test'], ca: ca.certPem, smtpPort: receiver.port, timeouts: uniformTimeouts(15_000) },
      systemResolver([`127.0.0.1:${dns.port}`]),
      silentLogger,
    );
    const s = await runner.runOnce();
    assert.equal(s.delivered, 1, store.listQueue()[0]?.lastError ?? '');
    const reportId = made[0]?.reportId ?? '';
    const got = await receiver.waitFor(reportId);
    const text = got.data.toString('latin1');
    const head = text.slice(0, text.indexOf('\r\n\r\n')).replace(/\r\n[ \t]+/g, ' ');
    assert.match(head, /^TLS-Report-Domain: policy\.test$/m);
    assert.match(head, /^TLS-Report-Submitter: out\.sender\.test$/m);
    assert.match(head, new RegExp(`^Subject: Report Domain: policy\\.test Submitter: out\\.sender\\.test Report-ID: <${reportId.replace(/[.]/g, '\\.')}>$`, 'm'));
    assert.match(head, /^Content-Type: multipart\/report; report-type="tlsrpt";/m);
    assert.match(head, /^To: <reports@collector\.test>$/m);
    const ps = parts(text);
    assert.equal(ps.length, 2);
    const gz = ps.find((p) => /^Content-Type: application\/tlsrpt\+gzip$/im.test(p.headers));
    assert.ok(gz, 'an application/tlsrpt+gzip part');
    // RFC 8460 §5.1: sender!policy-domain!begin!end[!unique].json.gz
    assert.match(gz.headers, /filename="out\.sender\.test!policy\.test!\d+!\d+(![A-Za-z0-9]+)?\.json\.gz"/);
    assert.match(gz.headers, /Content-Transfer-Encoding: base64/i);
    const json: unknown = JSON.parse(gunzipSync(Buffer.from(gz.body, 'base64')).toString('utf8'));
    assert.deepEqual(validateReport(json), []);
    assert.equal((json as { 'report-id': string })['report-id'], reportId);
    assert.equal((json as { 'organization-name': string })['organization-name'], 'Sender Org');
  } finally {
    await store.close();
    await receiver.close();
    await dns.close();
  }
});

test('postseal report tls shows the counts and the next report (--json), and --send-now queues a mailto: report', async () => {
  const { dir, store } = await tempStore();
  const c = new TlsRptCounter(store);
  recordSome(c);
  await c.close();
  await store.close();
  const dns = await startDnsServer([{ name: '_smtp._tls.policy.test', type: 'TXT', data: 'v=TLSRPTv1; rua=mailto:reports@collector.test' }]);
  try {
    const shown = await runCli(['report', 'tls', '--data', dir, '--json', '--domain', 'policy.test']);
    assert.equal(shown.code, 0, shown.stderr);
    const out = JSON.parse(shown.stdout) as { counts: unknown[]; next: { report: unknown }[]; waiting: unknown[] };
    assert.equal(out.counts.length, 4);
    assert.equal(out.next.length, 1);
    assert.deepEqual(validateReport(out.next[0]?.report), []);
    const text = await runCli(['report', 'tls', '--data', dir]);
    assert.match(text.stdout, /certificate-host-mismatch=2/);
    const sent = await runCli(['report', 'tls', '--data', dir, '--send-now', '--dns', `127.0.0.1:${dns.port}`, '--submitter', 'out.sender.test']);
    assert.equal(sent.code, 0, sent.stderr + sent.stdout);
    assert.match(sent.stdout, /policy\.test {2}made/);
    assert.match(sent.stdout, /sent: mailto:reports@collector\.test {2}queued: /);
    const after = await openSqliteStore(dir);
    try {
      assert.equal(after.listTlsRptCounts().length, 0);
      const q = after.listQueue();
      assert.equal(q.length, 1);
      assert.equal(q[0]?.recipient, 'reports@collector.test');
      assert.equal(q[0]?.mailFrom, 'tlsrpt-noreply@out.sender.test');
    } finally {
      await after.close();
    }
  } finally {
    await dns.close();
  }
});
