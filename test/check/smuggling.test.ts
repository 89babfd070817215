/**
 * The opt-in smuggling probe (it sends real test mail) against postseal's server, which only
 * ends DATA at <CRLF>.<CRLF> and rejects bare CR/LF; and the default run, which sends no DATA.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkHost } from '../../src/check/host.js';
import { startTestServer } from '../helpers/server.js';

describe('smuggling probe', () => {
  test('postseal serve: no variant ends the data; bare line endings are refused', async () => {
    const s = await startTestServer();
    try {
      const r = await checkHost('localhost', {
        address: '127.0.0.1', port: s.port('mx'), ca: [s.caPem], timeoutMs: 10_000, tlsScan: false, attacks: false,
        smuggling: { rcpt: 'bob@postseal.test', from: 'probe@example.test' },
      });
      const sm = r.probes.smuggling ?? [];
      assert.equal(sm.length, 7);
      for (const v of sm) assert.ok(v.outcome === 'rejected' || v.outcome === 'not-end-of-data', `${v.variant}: ${v.outcome} ${v.evidence}`);
      assert.ok(!r.findings.some((f) => f.id === 'smuggling.end-of-data'));
    } finally {
      await s.close();
    }
  });

  test('without --probe smuggling no DATA is ever sent', async () => {
    const s = await startTestServer();
    try {
      const r = await checkHost('localhost', { address: '127.0.0.1', port: s.port('mx'), ca: [s.caPem], timeoutMs: 10_000 });
      assert.equal(r.probes.smuggling, null);
      assert.ok(r.transcript.every((e) => e.dir !== 'client' || !/^(DATA|BDAT|AUTH)/i.test(e.text)));
      assert.deepEqual(s.running.store.listMessages(), []);
    } finally {
      await s.close();
    }
  });
});
