/**
 * `postseal policy refresh|forget` through the real CLI: refresh fetches from the test policy host
 * (DNS and HTTPS on 127.0.0.1:0) into the store, forget removes it, a failed refresh exits 1 and
 * keeps the cached policy; a bad domain or flag is a usage error (exit 2).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openSqliteStoreReadOnly } from '../../src/store/index.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { policyText, startMtaStsServer, type MtaStsServer } from '../helpers/mta-sts-server.js';
import { killAll, runCli, tempDirs } from './child.js';

const D = 'example.test';
const dirs = tempDirs();
let dns: DnsServer;
let web: MtaStsServer;
let caFile: string;

before(async () => {
  dns = await startDnsServer([{ name: `_mta-sts.${D}`, type: 'TXT', data: 'v=STSv1; id=cli1' }]);
  web = await startMtaStsServer([D]);
  caFile = join(dirs.make(), 'ca.pem');
  writeFileSync(caFile, web.ca);
});
after(async () => {
  killAll();
  await web.close();
  await dns.close();
  dirs.cleanup();
});

test('policy refresh stores the policy, a failed refresh keeps it (exit 1), forget removes it', async () => {
  const data = dirs.make();
  const common = ['--data', data, '--dns', `127.0.0.1:${dns.port}`, '--ca', caFile, '--mta-sts-endpoint', `127.0.0.1:${web.port}`];
  web.set(D, { body: policyText('enforce', ['mx.example.test']) });
  const ok = await runCli(['policy', 'refresh', D, ...common, '--json']);
  assert.equal(ok.code, 0, ok.stderr);
  const parsed = JSON.parse(ok.stdout) as { from: string; policy: { mode: string; id: string } };
  assert.equal(parsed.from, 'fetched');
  assert.equal(parsed.policy.mode, 'enforce');
  const ro = openSqliteStoreReadOnly(data);
  assert.equal(ro.getMtaSts(D)?.id, 'cli1');
  await ro.close();

  web.set(D, { contentType: 'text/html', body: '<html></html>' });
  const failed = await runCli(['policy', 'refresh', D, ...common]);
  assert.equal(failed.code, 1);
  assert.match(failed.stdout, /from the cache/);
  assert.match(failed.stdout, /sts-policy-invalid/);

  const forget = await runCli(['policy', 'forget', D, '--data', data]);
  assert.equal(forget.code, 0, forget.stderr);
  assert.match(forget.stdout, /removed/);
  const again = await runCli(['policy', 'forget', D, '--data', data, '--json']);
  assert.deepEqual(JSON.parse(again.stdout), { domain: D, removed: false });

  assert.equal((await runCli(['policy', 'forget', 'not a domain', '--data', data])).code, 2);
  assert.equal((await runCli(['policy', 'refresh', D, '--data', data, '--dns', 'nope'])).code, 2);
});
