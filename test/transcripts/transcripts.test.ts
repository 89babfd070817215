/**
 * Plays every test/transcripts/*.smtp conversation against a real postseal server (SQLite store,
 * certificate from a test CA, listeners on 127.0.0.1:0). Format (ARCHITECTURE.md "Tests"):
 *   # comment
 *   !listener mx|submission|submissions      which listener to talk to (default mx)
 *   !config KEY=JSON                         edit the config before start (limits.maxErrors=3)
 *   !nocert                                  start without any certificate
 *   !user ADDRESS PASSWORD [SENDER…]         create a user (with sender patterns)
 *   C: line                                  send line + CRLF
 *   S: glob                                  next line must match (* matches anything)
 *   S*: glob                                 read a whole reply; its last line must match
 *   !has glob / !lacks glob                  some / no line of the last whole reply matches
 *   !write "bytes"                           send bytes in one segment (JS escapes: \r \n \x00)
 *   !auth-plain USER PASS                    send AUTH PLAIN with the initial response
 *   !tls                                     client TLS handshake on this connection
 *   !expect-close                            the server closes; nothing that looks like an SMTP
 *                                            reply arrives before the close
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer } from '../helpers/server.js';
import { WireClient } from '../helpers/wire.js';
import type { ServeConfig } from '../../src/config.js';

const dir = new URL('.', import.meta.url).pathname;
const files = readdirSync(dir).filter((f) => f.endsWith('.smtp')).sort();
assert.ok(files.length > 0, 'no transcript files found');

function glob(pattern: string): RegExp {
  return new RegExp('^' + pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*') + '$', 's');
}

function unescapeJs(s: string): string {
  return JSON.parse(s.replace(/\\x([0-9a-fA-F]{2})/g, '\\u00$1')) as string;
}

function setPath(cfg: ServeConfig, path: string, value: unknown): void {
  const keys = path.split('.');
  let o = cfg as unknown as Record<string, unknown>;
  for (const k of keys.slice(0, -1)) o = o[k] as Record<string, unknown>;
  const last = keys[keys.length - 1];
  assert.ok(last !== undefined && last in o, `unknown config path ${path}`);
  o[last] = value;
}

for (const file of files) {
  test(`transcript ${file}`, async () => {
    const lines = readFileSync(join(dir, file), 'utf8').split('\n');
    let listener = 'mx' as 'mx' | 'submission' | 'submissions';
    const edits: Array<[string, unknown]> = [];
    const users: Array<{ address: string; password: string; senders: string[] }> = [];
    let withCert = true;
    for (const raw of lines) {
      const line = raw.trimEnd();
      let m: RegExpExecArray | null;
      if ((m = /^!listener (\S+)$/.exec(line))) listener = m[1] as typeof listener;
      else if ((m = /^!config ([\w.]+)=(.*)$/.exec(line))) edits.push([m[1] ?? '', JSON.parse(m[2] ?? 'null')]);
      else if (line === '!nocert') withCert = false;
      else if ((m = /^!user (\S+) (\S+)((?: \S+)*)$/.exec(line))) users.push({ address: m[1] ?? '', password: m[2] ?? '', senders: (m[3] ?? '').split(' ').filter(Boolean) });
    }
    const server = await startTestServer({ withCert, users, configure: (cfg) => edits.forEach(([k, v]) => setPath(cfg, k, v)) });
    let client: WireClient | null = null;
    try {
      client = listener === 'submissions' ? await WireClient.connectTls(server.port(listener), server.caPem, { ALPNProtocols: ['smtp'] }) : await WireClient.connect(server.port(listener));
      let last: string[] = [];
      for (const [n, raw] of lines.entries()) {
        const line = raw.trimEnd();
        const where = `${file}:${n + 1}: ${line}`;
        let m: RegExpExecArray | null;
        if (line === '' || line.startsWith('#') || /^!(listener|config|nocert|user) ?/.test(line)) continue;
        if ((m = /^C: ?(.*)$/.exec(line))) {
          client.write((m[1] ?? '') + '\r\n');
          last = [];
        } else if ((m = /^S: (.*)$/.exec(line))) {
          const got = await client.readLine().catch((e: Error) => assert.fail(`${where}: ${e.message}`));
          last.push(got);
          assert.match(got, glob(m[1] ?? ''), where);
        } else if ((m = /^S\*: (.*)$/.exec(line))) {
          last = await client.readReply().catch((e: Error) => assert.fail(`${where}: ${e.message}`));
          assert.match(last[last.length - 1] ?? '', glob(m[1] ?? ''), `${where} (got ${JSON.stringify(last)})`);
        } else if ((m = /^!has (.*)$/.exec(line))) {
          const re = glob(m[1] ?? '');
          assert.ok(last.some((l) => re.test(l)), `${where} (reply was ${JSON.stringify(last)})`);
        } else if ((m = /^!lacks (.*)$/.exec(line))) {
          const re = glob(m[1] ?? '');
          assert.ok(!last.some((l) => re.test(l)), `${where} (reply was ${JSON.stringify(last)})`);
        } else if ((m = /^!write (".*")$/.exec(line))) {
          client.write(Buffer.from(unescapeJs(m[1] ?? '""'), 'latin1'));
          last = [];
        } else if ((m = /^!auth-plain (\S+) (\S+)$/.exec(line))) {
          client.write(`AUTH PLAIN ${Buffer.from(`\0${m[1]}\0${m[2]}`).toString('base64')}\r\n`);
          last = [];
        } else if (line === '!tls') {
          await client.startTls(server.caPem, { ALPNProtocols: ['smtp'] }).catch((e: Error) => assert.fail(`${where}: ${e.message}`));
        } else if (line === '!expect-close') {
          const rest = await client.expectClose().catch((e: Error) => assert.fail(`${where}: ${e.message}`));
          assert.doesNotMatch(rest, /(^|\r\n)\d{3}[ -]/, `${where}: an SMTP reply arrived before the close`);
        } else {
          assert.fail(`${where}: unknown transcript line`);
        }
      }
    } finally {
      client?.close();
      await server.close();
    }
  });
}
