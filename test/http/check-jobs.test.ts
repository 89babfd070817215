/**
 * CheckJobs (src/http/checks.ts), the web checker's in-memory job table: its bounds (at most `max`
 * jobs, the least recently used dropped first; MAX_PROGRESS events per job; finished jobs dropped
 * after `ttlMs`) and that a stream following a job still hears `done` when the job was dropped
 * from the table while it ran.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CheckJobs, type CheckEvent, type CheckReport } from '../../src/http/checks.js';

const report = (message: string): CheckReport => ({ schemaVersion: 1, kind: 'host', status: 'error', error: { code: 'X', message } });
const onError = (e: unknown): CheckReport => report(String(e));

function deferred(): { promise: Promise<CheckReport>; resolve: (r: CheckReport) => void } {
  let resolve!: (r: CheckReport) => void;
  const promise = new Promise<CheckReport>((r) => (resolve = r));
  return { promise, resolve };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

test('CheckJobs keeps at most max jobs, dropping the least recently read first', async () => {
  const jobs = new CheckJobs({ max: 2 });
  const a = jobs.start('host', 'a', async () => report('a'), onError);
  const b = jobs.start('host', 'b', async () => report('b'), onError);
  await tick();
  assert.notEqual(jobs.get(a.id), null); // a is now the most recently used
  const c = jobs.start('host', 'c', async () => report('c'), onError);
  assert.equal(jobs.size, 2);
  assert.equal(jobs.get(b.id), null);
  assert.notEqual(jobs.get(a.id), null);
  assert.notEqual(jobs.get(c.id), null);
});

test('CheckJobs keeps at most 1000 progress events of a job and drops finished jobs after ttlMs', async () => {
  const jobs = new CheckJobs({ ttlMs: 20 });
  const job = jobs.start('host', 'x', async (progress) => {
    for (let i = 0; i < 1500; i++) progress({ step: 's', detail: String(i) });
    return report('x');
  }, onError);
  await tick();
  assert.equal(job.progress.length, 1000);
  assert.equal(job.status, 'done');
  await new Promise((r) => setTimeout(r, 40));
  assert.equal(jobs.get(job.id), null);
});

test('a subscriber of a running job dropped from the full table still gets done (an SSE stream must not hang)', async () => {
  const jobs = new CheckJobs({ max: 1 });
  const d = deferred();
  const first = jobs.start('host', 'first', () => d.promise, onError);
  const seen: CheckEvent['type'][] = [];
  jobs.subscribe(first.id, (e) => seen.push(e.type));
  jobs.start('host', 'second', () => new Promise<CheckReport>(() => {}), onError); // pushes `first` out
  assert.equal(jobs.get(first.id), null);
  d.resolve(report('first'));
  await tick();
  assert.deepEqual(seen, ['done']);
});
