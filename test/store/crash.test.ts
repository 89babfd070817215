import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { openSqliteStore } from '../../src/store/index.js';
import { bodyIntact, tempDirs } from './helpers.js';

const dirs = tempDirs();
after(() => dirs.cleanup());

const FIXTURE = fileURLToPath(new URL('./fixtures/crash-writer.ts', import.meta.url));

/** Runs the writer child until it has acknowledged `acks` messages, then SIGKILLs it. */
function runAndKill(dir: string, acks: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    const acked: string[] = [];
    let stderr = '';
    let killed = false;
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const lines = createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      if (line === 'ready') return;
      acked.push(line);
      if (!killed && acked.length >= acks) {
        killed = true;
        child.kill('SIGKILL');
      }
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (signal === 'SIGKILL' && killed) resolve(acked);
      else reject(new Error(`writer exited early (code ${code}, signal ${signal}): ${stderr}`));
    });
  });
}

async function verify(dir: string, acked: string[]): Promise<number> {
  const store = await openSqliteStore(dir);
  try {
    const total = store.countMessages();
    const all = store.listMessages({ limit: 10_000 });
    assert.equal(all.length, total);
    const present = new Set(all.map((m) => m.id));
    for (const id of acked) assert.ok(present.has(id), `acknowledged message ${id} was lost`);
    for (const m of all) {
      const got = store.getMessage(m.id);
      assert.ok(got, `message ${m.id} listed but unreadable`);
      assert.equal(got.data.length, m.size);
      assert.ok(bodyIntact(got.data), `message ${m.id} is damaged`);
    }
    // Envelope side effects are all-or-nothing with the message.
    assert.equal(store.countMessages({ mailbox: 'crash@example.org' }), total);
    assert.equal(store.listQueue({ limit: 100_000 }).length, total);
    return total;
  } finally {
    await store.close();
  }
}

test('sqlite only: SIGKILL of the SQLite writer during accepts loses no acknowledged message and leaves no partial one', { timeout: 120_000 }, async () => {
  const dir = dirs.make();
  const first = await runAndKill(dir, 300);
  const afterFirst = await verify(dir, first);
  assert.ok(afterFirst >= first.length);
  // A second run on the recovered files, killed again.
  const second = await runAndKill(dir, 300);
  const afterSecond = await verify(dir, [...first, ...second]);
  assert.ok(afterSecond >= first.length + second.length);
});
