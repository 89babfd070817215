/**
 * `postseal send` as a user runs it: `node --import tsx src/cli/main.ts send …` against the real
 * server on 127.0.0.1:0. Exit status 0 delivered, 1 rejected/failed, 2 usage error.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/server.js';

let srv: TestServer;
let dir = '';
let caFile = '';
const USER = 'alice@postseal.test';
const PASS = 'correct horse battery staple';

before(async () => {
  srv = await startTestServer({ users: [{ address: USER, password: PASS }] });
  dir = await mkdtemp(join(tmpdir(), 'postseal-send-'));
  caFile = join(dir, 'ca.pem');
  await writeFile(caFile, srv.caPem);
});
after(async () => {
  await srv.close();
  await rm(dir, { recursive: true, force: true });
});

function run(args: string[], input = '', env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'send', ...args], { env: { ...process.env, ...env }, cwd: process.cwd() });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

const mx = (): string[] => ['--server', `127.0.0.1:${srv.port('mx')}`, '--tls-name', 'localhost', '--ca', caFile, '--helo', 'cli.example.test', '--timeout', '10'];

describe('postseal send', () => {
  it('message on stdin, --tls verify to mx: exit 0, stored byte-exact', async () => {
    const msg = 'X-Cli: stdin\r\nSubject: cli\r\n\r\n.dot line\r\n';
    const r = await run([...mx(), '--tls', 'verify', '--from', 'a@example.test', '--to', 'bob@postseal.test'], msg);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /reached verify/);
    assert.match(r.stdout, /delivered\s+bob@postseal\.test/);
    const stored = srv.running.store.listMessages({ mailbox: 'bob@postseal.test', limit: 50 }).map((m) => srv.running.store.getMessage(m.id)?.data.toString('latin1') ?? '');
    assert.ok(stored.some((d) => d.endsWith(msg)));
  });

  it('--json: transcript, TLS facts and per-recipient outcome', async () => {
    const r = await run([...mx(), '--json', '--from', 'a@example.test', '--to', 'bob@postseal.test', '--to', 'carol@postseal.test', '--subject', 'json', '--body', 'hello']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as Array<{ ok: boolean; result: { level: string; tls: { verified: boolean; protocol: string; peerCertificates: unknown[] }; recipients: Array<{ status: string }>; transcript: Array<{ direction: string; line: string; phase: string }> } }>;
    const res = out[0]?.result;
    assert.ok(res);
    assert.equal(res.level, 'may'); // the default without --auth
    assert.equal(res.tls.verified, true);
    assert.ok(res.tls.peerCertificates.length >= 1);
    assert.deepEqual(res.recipients.map((x) => x.status), ['delivered', 'delivered']);
    assert.ok(res.transcript.some((e) => e.direction === 'C' && e.line === 'STARTTLS' && e.phase === 'plaintext'));
  });

  it('--auth with $POSTSEAL_PASSWORD to submission (default level verify): exit 0, password never printed', async () => {
    const r = await run(['--server', `127.0.0.1:${srv.port('submission')}`, '--tls-name', 'localhost', '--ca', caFile, '--auth', USER, '--from', USER, '--to', 'bob@postseal.test', '--subject', 's', '--body', 'b', '--json'], '', { POSTSEAL_PASSWORD: PASS });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal((JSON.parse(r.stdout) as Array<{ result: { level: string } }>)[0]?.result.level, 'verify');
    assert.ok(!r.stdout.includes(PASS) && !r.stdout.includes(Buffer.from(`\0${USER}\0${PASS}`).toString('base64')));
  });

  it('--implicit --password-stdin --file to submissions: exit 0', async () => {
    const file = join(dir, 'msg.eml');
    await writeFile(file, 'Subject: implicit\r\n\r\nhi\r\n');
    const r = await run(['--server', `127.0.0.1:${srv.port('submissions')}`, '--implicit', '--tls-name', 'localhost', '--ca', caFile, '--auth', USER, '--password-stdin', '--file', file, '--from', USER, '--to', 'bob@postseal.test'], PASS + '\n');
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });

  it('a rejected recipient exits 1', async () => {
    const r = await run([...mx(), '--from', 'a@example.test', '--to', 'x@elsewhere.test', '--subject', 's', '--body', 'b']);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /failed\s+x@elsewhere\.test/);
  });

  it('--tls verify without the test CA exits 1 with TLS_VERIFY_FAILED', async () => {
    const r = await run(['--server', `127.0.0.1:${srv.port('mx')}`, '--tls-name', 'localhost', '--tls', 'verify', '--timeout', '10', '--from', 'a@example.test', '--to', 'bob@postseal.test', '--subject', 's', '--body', 'b']);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /TLS_VERIFY_FAILED/);
  });

  it('usage errors exit 2', async () => {
    for (const args of [
      ['--to', 'bob@postseal.test', '--server', 'localhost'],
      ['--from', 'a@b.test', '--server', 'localhost'],
      ['--from', 'a@b.test', '--to', 'b@c.test', '--server', 'localhost', '--tls', 'bogus'],
      ['--from', 'a@b.test', '--to', 'b@c.test', '--server', 'localhost', '--auth', 'u', '--password-stdin'],
      ['--from', 'a@b.test', '--to', 'b@c.test', '--server', 'localhost:99999', '--subject', 'x'],
    ]) {
      const r = await run(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    }
  });
});
