/**
 * `startServe(...).close()` as a library call leaves nothing running: after it resolves, with
 * sessions that were idle, inside TLS, in the middle of DATA and on implicit TLS, the process
 * exits on its own (no timer, socket, watcher or worker left), without process.exit().
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, killAll, tempDirs } from '../cli/child.js';

const dirs = tempDirs();
after(() => {
  killAll();
  dirs.cleanup();
});

const url = (p: string): string => pathToFileURL(join(ROOT, p)).href;

const SCRIPT = `
import { startTestServer } from '${url('test/helpers/server.ts')}';
import { WireClient } from '${url('test/helpers/wire.ts')}';
const s = await startTestServer({ configure: (cfg) => { cfg.limits.shutdownGraceMs = 200; } });
const port = s.port('mx');
const idle = await WireClient.connect(port);
await idle.readReply();
const secure = await WireClient.connect(port);
await secure.readReply();
await secure.cmd('EHLO a.test');
await secure.cmd('STARTTLS');
await secure.startTls(s.caPem);
await secure.cmd('EHLO a.test');
const data = await WireClient.connect(port);
await data.readReply();
await data.cmd('EHLO a.test');
await data.cmd('MAIL FROM:<a@a.test>');
await data.cmd('RCPT TO:<b@postseal.test>');
await data.cmd('DATA');
data.write('Subject: never finished\\r\\n\\r\\npartial');
const implicit = await WireClient.connectTls(s.port('submissions'), s.caPem);
await implicit.readReply();
s.running.certs.watch();
await s.close();
// The clients are not closed here: the server's close must end their connections.
process.stdout.write('closed\\n');
`;

test('after close() resolves the process exits by itself', { timeout: 60_000 }, async () => {
  const dir = dirs.make('postseal-libclose-');
  const file = join(dir, 'close.mts');
  writeFileSync(file, SCRIPT);
  const child = spawn(process.execPath, ['--import', 'tsx', file], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`still running after close(): stdout ${JSON.stringify(out)} stderr ${err}`));
    }, 30_000);
    child.on('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  assert.equal(code, 0, err);
  assert.equal(out, 'closed\n');
});
