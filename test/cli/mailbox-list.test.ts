/**
 * `postseal mailbox list` as a new user meets it: received mail only by default (mail that was
 * only relayed out is listed with --all), and a reader that closes the pipe early
 * (`postseal mailbox list | head -1`) ends the command quietly, without an EPIPE stack trace.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { openSqliteStore } from '../../src/store/index.js';
import { makeMessage } from '../store/helpers.js';
import { MAIN, ROOT, runCli, tempDirs } from './child.js';

const dirs = tempDirs();
after(() => dirs.cleanup());

test('mailbox list shows received mail; --all adds mail only relayed out', { timeout: 60_000 }, async () => {
  const dir = dirs.make('postseal-mailbox-list-');
  const store = await openSqliteStore(dir);
  const received = (await store.accept(makeMessage({ localRecipients: ['alice@example.org'], remoteRecipients: [] }))).id;
  const mixed = (await store.accept(makeMessage({ localRecipients: ['bob@example.org'], remoteRecipients: ['x@remote.example'] }))).id;
  const relayed = (await store.accept(makeMessage({ localRecipients: [], remoteRecipients: ['carol@remote.example'] }))).id;
  await store.close();

  const def = await runCli(['mailbox', 'list', '--data', dir, '--json']);
  assert.equal(def.code, 0, def.stderr);
  assert.deepEqual((JSON.parse(def.stdout) as { id: string }[]).map((m) => m.id), [mixed, received]);
  const text = await runCli(['mailbox', 'list', '--data', dir]);
  assert.equal(text.code, 0, text.stderr);
  assert.doesNotMatch(text.stdout, new RegExp(relayed));

  const all = await runCli(['mailbox', 'list', '--data', dir, '--json', '--all']);
  assert.equal(all.code, 0, all.stderr);
  assert.deepEqual((JSON.parse(all.stdout) as { id: string }[]).map((m) => m.id), [relayed, mixed, received]);
});

test('mailbox list | head -1: the closed pipe ends the command quietly', { timeout: 120_000 }, async () => {
  const dir = dirs.make('postseal-epipe-');
  const store = await openSqliteStore(dir);
  // Far more output than a pipe buffer holds (64 KiB), so writes go on after the reader left.
  await Promise.all(Array.from({ length: 3000 }, () => store.accept(makeMessage())));
  await store.close();

  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'mailbox', 'list', '--data', dir, '--limit', '5000'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const stdout = child.stdout;
  // Read the first line, then close our end of the pipe, as `head -1` does.
  const first = await new Promise<string>((resolve) => stdout.once('data', (b: Buffer) => resolve(b.toString())));
  stdout.destroy();
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('close', (c, s) => resolve([c, s])));
  assert.match(first, /^\S+ {2}2025-01-02T03:04:05\.678Z {2}from <sender@example\.net>/);
  assert.equal(signal, null);
  assert.equal(code, 0, stderr);
  assert.doesNotMatch(stderr, /EPIPE|Error|\n\s+at /, 'no error and no stack trace on stderr');
});
