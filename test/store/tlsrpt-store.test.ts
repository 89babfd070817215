/**
 * TLS-RPT storage (RFC 8460) in the store, on both backends (test/store/backends.ts): counters
 * sum across flushes; a report is stored and subtracts exactly the counts it covers in one
 * transaction (what was added meanwhile stays); a delivery round updates it; an empty rua list
 * removes it; counts are dropped without a report. (The policy side — counting, building,
 * sending — is test/policy/tlsrpt.test.ts.)
 */
import assert from 'node:assert/strict';
import type { TlsRptCount, TlsRptStoredReport } from '../../src/store/index.js';
import { storeTest } from './backends.js';

function count(over: Partial<TlsRptCount> = {}): TlsRptCount {
  return {
    policyDomain: 'policy.test', day: '2026-01-02', policyType: 'sts', policyStrings: ['version: STSv1', 'mode: enforce'],
    mxHost: 'mx.policy.test', receivingIp: '192.0.2.7', result: 'success', count: 1, detail: null, ...over,
  };
}

function report(over: Partial<TlsRptStoredReport> = {}): TlsRptStoredReport {
  return {
    reportId: '2026-01-02T00:00:00Z_policy.test', policyDomain: 'policy.test', day: '2026-01-02',
    startAt: Date.parse('2026-01-02T00:00:00Z'), endAt: Date.parse('2026-01-03T00:00:00Z'),
    gz: Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0x00]), rua: ['mailto:tlsrpt@policy.test', 'https://collector.policy.test/v1'],
    attempts: 0, nextAttemptAt: 1_767_312_000_000, lastError: null, createdAt: 1_767_312_000_000, ...over,
  };
}

storeTest('tls-rpt: counters sum across flushes, keyed by their fields; listed by domain', async (b) => {
  const store = await b.open();
  try {
    await store.addTlsRptCounts([count({ count: 3 }), count({ result: 'certificate-expired', count: 1, detail: 'expired 2025-12-01' })]);
    await store.addTlsRptCounts([count({ policyDomain: 'POLICY.test', count: 2 }), count({ result: 'certificate-expired', count: 4 })]);
    await store.addTlsRptCounts([count({ policyDomain: 'other.test', policyType: 'no-policy-found', policyStrings: [], mxHost: '', receivingIp: '' })]);
    await store.addTlsRptCounts([]);
    const mine = await store.listTlsRptCounts({ domain: 'Policy.TEST' });
    assert.deepEqual(mine, [
      count({ result: 'certificate-expired', count: 5, detail: 'expired 2025-12-01' }),
      count({ count: 5 }),
    ]);
    assert.deepEqual((await store.listTlsRptCounts()).map((c) => [c.policyDomain, c.policyType, c.count]), [
      ['other.test', 'no-policy-found', 1],
      ['policy.test', 'sts', 5],
      ['policy.test', 'sts', 5],
    ]);
  } finally {
    await store.close();
  }
});

storeTest('tls-rpt: a report takes exactly the counts it covers; updates; an empty rua removes it; drop without a report', async (b) => {
  const store = await b.open();
  try {
    await store.addTlsRptCounts([count({ count: 5 }), count({ result: 'sts-policy-invalid', count: 2 })]);
    // The builder read 5 + 2; 1 more success arrives before the report is stored: it stays.
    await store.addTlsRptCounts([count({ count: 1 })]);
    await store.makeTlsRptReport(report({ policyDomain: 'Policy.test' }), [count({ count: 5 }), count({ result: 'sts-policy-invalid', count: 2 })]);
    assert.deepEqual(await store.listTlsRptCounts(), [count({ count: 1 })], 'only what came after the report');
    assert.deepEqual(await store.listTlsRptReports({ domain: 'policy.test' }), [report()]);

    assert.equal(await store.updateTlsRptReport(report().reportId, { rua: ['https://collector.policy.test/v1'], attempts: 1, nextAttemptAt: 1_767_315_600_000, lastError: 'HTTP 503' }), true);
    assert.deepEqual(await store.listTlsRptReports(), [report({ rua: ['https://collector.policy.test/v1'], attempts: 1, nextAttemptAt: 1_767_315_600_000, lastError: 'HTTP 503' })]);
    assert.equal(await store.updateTlsRptReport('no-such-report', { rua: ['mailto:x@policy.test'], attempts: 1, nextAttemptAt: 0, lastError: null }), false);
    assert.equal(await store.updateTlsRptReport(report().reportId, { rua: [], attempts: 2, nextAttemptAt: 0, lastError: null }), true, 'sent to every URI: removed');
    assert.deepEqual(await store.listTlsRptReports(), []);

    await store.dropTlsRptCounts([count({ count: 1 })]);
    assert.deepEqual(await store.listTlsRptCounts(), [], 'dropped to zero: the counter goes');
  } finally {
    await store.close();
  }
});
