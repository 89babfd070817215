/**
 * The Maildir target (src/delivery/maildir.ts) against the real file system, read back with a
 * real Maildir reader: Debian's Python `mailbox.Maildir` (/usr/bin/python3; pyenv's python3 comes
 * first in PATH). Byte-exact, one file per mailbox, unsafe names refused without touching
 * anything outside DIR, a directory the deliverer may not write → failed, and a redelivery of the
 * same queue id (also after the reader moved the file to cur/) → still one file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { classifyFsError, encodeQueueId, MaildirTarget, queueIdOfName, unsafeMailboxName } from '../../src/delivery/maildir.js';
import type { LocalDelivery } from '../../src/delivery/types.js';
import type { MessageSummary } from '../../src/types.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

function delivery(id: string, recipients: string[], data: Buffer): LocalDelivery {
  const summary: MessageSummary = {
    id,
    receivedAt: '2026-11-30T12:00:00.000Z',
    mailFrom: 'sender@example.net',
    recipients,
    size: data.length,
    listener: 'mx',
    clientAddress: '127.0.0.1',
    heloName: 'client.example.net',
    authUser: null,
    tls: null,
    requireTls: false,
    authResults: null,
    quarantine: false,
  };
  return { id, mailFrom: 'sender@example.net', recipients, data, summary };
}

// CRLF, 8-bit bytes, a "From " line and a lone dot: all must come back exactly as written.
const MESSAGE = Buffer.concat([
  Buffer.from('Received: from client.example.net by mx.example.org; Mon, 30 Nov 2026 12:00:00 +0000\r\nFrom: a@example.net\r\nTo: alice@example.org\r\nSubject: maildir\r\n\r\nFrom the start\r\n.\r\n'),
  Buffer.from([0xc3, 0xa9, 0xff, 0x00, 0x0d, 0x0a]),
]);

/** Every message of a Maildir as Python's mailbox.Maildir reads it: [{ subdir, bytes }]. */
async function readMaildir(path: string): Promise<Array<{ subdir: string; bytes: Buffer }>> {
  const script = [
    'import mailbox, sys, json, base64',
    'md = mailbox.Maildir(sys.argv[1], factory=None, create=False)',
    'out = [{"subdir": md.get_message(k).get_subdir(), "b64": base64.b64encode(md.get_bytes(k)).decode()} for k in md.keys()]',
    'print(json.dumps(out))',
  ].join('\n');
  const { code, stdout, stderr } = await run('/usr/bin/python3', ['-c', script, path]);
  assert.equal(code, 0, stderr);
  return (JSON.parse(stdout) as Array<{ subdir: string; b64: string }>).map((m) => ({ subdir: m.subdir, bytes: Buffer.from(m.b64, 'base64') }));
}

function run(cmd: string, args: string[], opts: { uid?: number; gid?: number; cwd?: string } = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    p.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    p.on('error', rej);
    p.on('close', (code) => res({ code, stdout, stderr }));
  });
}

async function tempDir(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'postseal-maildir-'));
  t.after(() => rm(d, { recursive: true, force: true }));
  return d;
}

test('two recipients: each mailbox gets one file, read back byte-exact by Python mailbox.Maildir', async (t) => {
  const base = join(await tempDir(t), 'mail');
  const target = new MaildirTarget({ dir: base });
  const id = '01jq8x7k2m3n4p5q';
  const out = await target.deliver(delivery(id, ['alice@example.org', 'Bob@Example.ORG'], MESSAGE));
  assert.deepEqual(out, [
    { recipient: 'alice@example.org', outcome: 'delivered' },
    { recipient: 'Bob@Example.ORG', outcome: 'delivered' },
  ]);
  for (const box of ['alice@example.org', 'bob@example.org']) {
    const msgs = await readMaildir(join(base, box));
    assert.equal(msgs.length, 1, box);
    assert.equal(msgs[0]?.subdir, 'new');
    assert.ok(msgs[0]?.bytes.equals(MESSAGE), `${box}: bytes differ`);
    // 0700 directories, a 0600 file; nothing left in tmp/.
    for (const sub of ['', 'tmp', 'new', 'cur']) assert.equal((await stat(join(base, box, sub))).mode & 0o777, 0o700, `${box}/${sub}`);
    const names = await readdir(join(base, box, 'new'));
    assert.equal(names.length, 1);
    const name = names[0] ?? '';
    assert.equal((await stat(join(base, box, 'new', name))).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(join(base, box, 'tmp')), []);
    // The classic name shape with the queue id and the size.
    assert.match(name, new RegExp(`^[0-9]+\\.M[0-9]+P${process.pid}Q${id}R[0-9]+\\.[^/:]+,S=${MESSAGE.length}$`));
    assert.equal(queueIdOfName(name), id);
  }
});

test('redelivery of the same queue id writes no second copy (also once the reader moved it to cur/)', async (t) => {
  const base = await tempDir(t);
  const target = new MaildirTarget({ dir: base });
  const box = join(base, 'carol@example.org');
  const msg = delivery('01jq8x7k2m3n4aaa', ['carol@example.org'], MESSAGE);
  assert.deepEqual(await target.deliver(msg), [{ recipient: 'carol@example.org', outcome: 'delivered' }]);
  assert.deepEqual(await target.deliver(msg), [{ recipient: 'carol@example.org', outcome: 'delivered' }]);
  assert.equal((await readMaildir(box)).length, 1);
  // A reader marks it seen: new/NAME → cur/NAME:2,S (maildir(5) info part).
  const [name = ''] = await readdir(join(box, 'new'));
  await rename(join(box, 'new', name), join(box, 'cur', `${name}:2,S`));
  assert.deepEqual(await target.deliver(msg), [{ recipient: 'carol@example.org', outcome: 'delivered' }]);
  const after = await readMaildir(box);
  assert.deepEqual(after.map((m) => m.subdir), ['cur']);
  // The same recipient twice in one call: one copy too.
  const twice = delivery('01jq8x7k2m3n4bbb', ['carol@example.org', 'carol@example.org'], MESSAGE);
  assert.deepEqual((await target.deliver(twice)).map((o) => o.outcome), ['delivered', 'delivered']);
  // Another queue id is another message.
  assert.equal((await readMaildir(box)).length, 2);
});

test('unsafe mailbox names fail without touching anything outside DIR; the safe recipient still gets it', async (t) => {
  const outer = await tempDir(t);
  const base = join(outer, 'mail');
  await mkdir(base);
  const target = new MaildirTarget({ dir: base });
  const bad = ['../escape@example.org', '..', 'a/b@example.org', '.hidden@example.org', 'nul\0@example.org', 'cr\r\n@example.org', 'x'.repeat(300), ''];
  const out = await target.deliver(delivery('01jq8x7k2m3n4ccc', [...bad, 'dave@example.org'], MESSAGE));
  assert.equal(out.length, bad.length + 1);
  for (const [i, o] of out.slice(0, bad.length).entries()) {
    assert.equal(o.outcome, 'failed', JSON.stringify(bad[i]));
    if (o.outcome === 'failed') assert.match(o.error, /maildir: .*(mailbox|empty|longer)/);
  }
  assert.deepEqual(out[bad.length], { recipient: 'dave@example.org', outcome: 'delivered' });
  assert.deepEqual((await readdir(outer)).sort(), ['mail']);
  assert.deepEqual(await readdir(base), ['dave@example.org']);
  assert.equal(unsafeMailboxName('alice+tag@example.org'), null);
});

test('a directory the deliverer may not write → failed (EACCES), no partial file', async (t) => {
  const base = await tempDir(t);
  const ro = join(base, 'readonly');
  await mkdir(ro, { mode: 0o755 });
  const id = '01jq8x7k2m3n4ddd';
  if (process.getuid?.() === 0) {
    // root writes anywhere: deliver from a child process running as nobody (uid 65534), the real
    // unprivileged case, into a root-owned 0755 directory.
    await chmod(base, 0o755);
    const script = [
      `import { MaildirTarget } from ${JSON.stringify(join(root, 'src/delivery/maildir.ts'))};`,
      `const msg = { id: ${JSON.stringify(id)}, mailFrom: '', recipients: ['erin@example.org'], data: Buffer.from('Subject: x\\r\\n\\r\\nx\\r\\n'), summary: {} };`,
      `console.log(JSON.stringify(await new MaildirTarget({ dir: ${JSON.stringify(ro)} }).deliver(msg)));`,
    ].join('\n');
    const r = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { uid: 65534, gid: 65534, cwd: root });
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '[]') as Array<{ recipient: string; outcome: string; error?: string }>;
    assert.equal(out.length, 1);
    assert.equal(out[0]?.outcome, 'failed');
    assert.match(out[0]?.error ?? '', /EACCES|permission denied/i);
  } else {
    await chmod(ro, 0o555);
    t.after(() => chmod(ro, 0o755));
    const out = await new MaildirTarget({ dir: ro }).deliver(delivery(id, ['erin@example.org'], MESSAGE));
    assert.equal(out[0]?.outcome, 'failed');
  }
  assert.deepEqual(await readdir(ro), []);
});

test('file-system errors: disk full and over quota are temporary, permission refused is permanent', () => {
  const e = (code: string): Error => Object.assign(new Error(code), { code });
  assert.equal(classifyFsError(e('ENOSPC')), 'deferred');
  assert.equal(classifyFsError(e('EDQUOT')), 'deferred');
  assert.equal(classifyFsError(e('EROFS')), 'deferred');
  assert.equal(classifyFsError(e('EIO')), 'deferred');
  assert.equal(classifyFsError(e('EACCES')), 'failed');
  assert.equal(classifyFsError(e('EPERM')), 'failed');
  // Queue ids are encoded so the name stays one path component and the id is recognisable.
  assert.equal(encodeQueueId('01jq/..:x'), '01jq%2F%2E%2E%3Ax');
  assert.equal(queueIdOfName(`1764504000.M123P45Q${encodeQueueId('a.b')}R1.host,S=10:2,S`), 'a%2Eb');
  assert.equal(queueIdOfName('1764504000.M123P45.host'), null);
});
