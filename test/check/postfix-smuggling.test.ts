/**
 * The opt-in smuggling probe against Debian's Postfix 3.7 (the private instance of
 * test/helpers/receivers.ts). Postfix ends DATA at <CRLF>.<CR><CRLF> and, with
 * smtpd_forbid_bare_newline = no (3.7's default), at <LF>.<LF>; after <CRLF>.<CR><CRLF> it drops
 * the lone "." left over without a reply, so only a marker command after the variant shows it.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkHost } from '../../src/check/host.js';
import { issueCert, makeTestCa } from '../helpers/certs.js';
import { requirePeer, startPostfixReceiver } from '../helpers/receivers.js';

describe('smuggling probe against Postfix', () => {
  test('Debian Postfix 3.7: <CRLF>.<CR><CRLF> and <LF>.<LF> end DATA, decided by a marker command', async (t) => {
    if (!requirePeer(t, 'postfix')) return;
    const ca = await makeTestCa();
    const receiver = await startPostfixReceiver({ hostname: 'mx.postfix.test', pair: await issueCert(ca, { names: ['localhost'] }), domains: ['postfix.test'] });
    try {
      const r = await checkHost('localhost', {
        address: '127.0.0.1', port: receiver.port, ca: [ca.certPem], timeoutMs: 15_000, tlsScan: false, attacks: false,
        smuggling: { rcpt: 'bob@postfix.test', from: 'probe@example.test' },
      });
      const by = new Map((r.probes.smuggling ?? []).map((v) => [v.variant, v]));
      const show = [...by.values()].map((v) => `${v.variant}: ${v.outcome} (${v.evidence})`).join('\n');
      assert.equal(by.get('<CRLF>.<CR><CRLF>')?.outcome, 'end-of-data', show);
      assert.equal(by.get('<LF>.<LF>')?.outcome, 'end-of-data', show);
      // Every variant is decided: none left to 'error' or 'inconclusive'.
      for (const v of by.values()) assert.ok(['end-of-data', 'not-end-of-data', 'rejected'].includes(v.outcome), show);
      assert.ok(r.findings.some((f) => f.id === 'smuggling.end-of-data' && f.detail.startsWith('<CRLF>.<CR><CRLF>')));
    } finally {
      await receiver.close();
    }
  });
});
