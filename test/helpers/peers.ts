/**
 * Shared helpers for the interop tests (test/interop): find a real peer program (missing on CI is
 * a failure, missing locally is a skip), run it with a kill timer, build a unique message, and
 * check that the server stored exactly that message: our Received header + the client's bytes.
 *
 * Invariants: every child process has a timeout (SIGKILL) so no test hangs; nothing here sleeps;
 * the delivery check compares bytes, so a dropped, added or doubled byte or message fails it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { TestContext } from 'node:test';
import type { MessageSummary } from '../../src/types.js';
import { makeTestCa } from './certs.js';
import { startTestServer, type TestServer } from './server.js';

export const USER = { address: 'alice@postseal.test', password: 'interop-Pw.42' } as const;
export const RCPT = 'bob@postseal.test';
export const ROOT = new URL('../../', import.meta.url).pathname;

/**
 * The path of `bin` (a name looked up in PATH, or an absolute path), or null after marking the
 * test skipped. On CI (CI=true) a missing peer fails the test: .ci/run must install it.
 */
export async function findPeer(t: TestContext, bin: string, pkg = bin): Promise<string | null> {
  const candidates = bin.includes('/') ? [bin] : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, bin));
  for (const c of candidates) {
    try {
      await access(c, constants.X_OK);
      return c;
    } catch {
      /* try the next one */
    }
  }
  if (process.env.CI === 'true') assert.fail(`${bin} not installed: .ci/run must install ${pkg}`);
  t.skip(`${bin} not installed`);
  return null;
}

export interface PeerResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
  timedOut: boolean;
}

export interface RunOptions {
  input?: string | Buffer;
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Runs a program to completion; SIGKILL after `timeoutMs` (default 30 s). Never rejects on exit codes. */
export function runPeer(cmd: string, args: string[], opts: RunOptions = {}): Promise<PeerResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 30_000);
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.stdin.on('error', () => undefined); // the peer may exit before reading all input
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8'), timedOut });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** Asserts a clean exit, showing the peer's output when it was not. */
export function assertExitedOk(r: PeerResult, what: string): void {
  const detail = `${what}: code=${String(r.code)} signal=${String(r.signal)} timedOut=${String(r.timedOut)}\n--- stderr\n${r.stderr}\n--- stdout\n${r.stdout.toString('utf8')}`;
  assert.equal(r.timedOut, false, detail);
  assert.equal(r.code, 0, detail);
}

export interface TestMessage {
  messageId: string;
  from: string;
  to: string;
  bytes: Buffer;
}

/**
 * A message with a unique Message-ID, CRLF line ends and lines that exercise dot-stuffing
 * (RFC 5321 §4.5.2): a client that forgets to stuff, or a server that forgets to unstuff, changes
 * the bytes. ASCII only, no '%' or backslash (swaks expands those), ends with CRLF.
 */
export function makeMessage(label: string, from: string = USER.address, to: string = RCPT): TestMessage {
  const messageId = `<${Date.now()}.${randomBytes(8).toString('hex')}@interop.postseal.test>`;
  const lines = [
    `From: Alice <${from}>`,
    `To: Bob <${to}>`,
    `Subject: interop ${label}`,
    `Date: Mon, 02 Jun 2025 10:00:00 +0000`,
    `Message-ID: ${messageId}`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=us-ascii',
    '',
    `Hello from ${label}.`,
    '.a line that starts with a dot',
    '..and one with two dots',
    '.',
    'a tab\there and trailing spaces   ',
    'last line',
  ];
  return { messageId, from, to, bytes: Buffer.from(lines.join('\r\n') + '\r\n', 'latin1') };
}

/** A temp dir for peer config and message files; removed by the returned cleanup. */
export async function tempDir(prefix: string): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `postseal-${prefix}-`));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** The test server for interop: the interop user exists, the CA is on disk as `caFile`. */
export interface InteropServer extends TestServer {
  caFile: string;
  /** A different test CA: a client that really verifies must refuse our certificate with it. */
  foreignCaFile: string;
  /** Ids of the messages stored so far; pass to expectDelivered to find the one new message. */
  ids(): Set<string>;
}

export async function startInteropServer(): Promise<InteropServer> {
  const server = await startTestServer({ users: [{ ...USER }] });
  const caFile = join(server.dataDir, 'certs', 'test-ca.pem');
  await writeFile(caFile, server.caPem);
  const foreignCaFile = join(server.dataDir, 'certs', 'foreign-ca.pem');
  await writeFile(foreignCaFile, (await makeTestCa({ commonName: 'some other CA' })).certPem);
  return {
    ...server,
    caFile,
    foreignCaFile,
    ids: () => new Set(server.running.store.listMessages({ limit: 10_000 }).map((m) => m.id)),
  };
}

export interface Expectation {
  listener: 'mx' | 'submission' | 'submissions';
  authUser: string | null;
  /** 'cli': read the stored bytes through `postseal mailbox show ID --data DIR`. */
  via?: 'store' | 'cli';
}

/**
 * Exactly one message arrived since `before`, and its stored bytes are one Received header (ours,
 * naming this message id and TLS 1.3) followed by exactly `msg.bytes`. Returns the summary.
 */
export async function expectDelivered(server: InteropServer, before: Set<string>, msg: TestMessage, want: Expectation): Promise<MessageSummary> {
  const store = server.running.store;
  const fresh = store.listMessages({ limit: 10_000 }).filter((m) => !before.has(m.id));
  assert.equal(fresh.length, 1, `expected exactly one new stored message, got ${fresh.length}`);
  const summary = fresh[0];
  assert.ok(summary);
  let data: Buffer;
  if (want.via === 'cli') {
    const r = await runPeer(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'mailbox', 'show', summary.id, '--data', server.dataDir]);
    assertExitedOk(r, 'postseal mailbox show');
    data = r.stdout;
  } else {
    const stored = store.getMessage(summary.id);
    assert.ok(stored, `message ${summary.id} listed but not readable`);
    data = stored.data;
  }
  assert.ok(data.length > msg.bytes.length, 'stored message is shorter than what the client sent');
  const tail = data.subarray(data.length - msg.bytes.length);
  if (!tail.equals(msg.bytes)) {
    // Show the bytes as text so a diff points at the changed line.
    assert.equal(tail.toString('latin1'), msg.bytes.toString('latin1'), 'stored bytes after the Received header differ from the bytes the client sent');
    assert.fail('stored bytes differ');
  }
  const received = data.subarray(0, data.length - msg.bytes.length).toString('latin1');
  // Our header fields only, each possibly folded (continuation lines start with WSP): one Received,
  // then on the mx listener our Authentication-Results (RFC 8601) — nothing of the client's changed.
  assert.match(received, OUR_PREFIX, `prefix is not exactly our Received (+ Authentication-Results) header:\n${received}`);
  assert.equal(/^Authentication-Results: /m.test(received), want.listener === 'mx', 'Authentication-Results is added on mx only');
  const proto = want.authUser ? 'ESMTPSA' : 'ESMTPS';
  assert.match(received, new RegExp(`with ${proto} id ${summary.id}\\b`), received);
  assert.match(received, /\(using TLSv1\.3 with cipher /, received);
  assert.equal(summary.size, data.length);
  assert.equal(summary.listener, want.listener);
  assert.equal(summary.mailFrom, msg.from);
  assert.deepEqual(summary.recipients, [msg.to]);
  assert.equal(summary.authUser, want.authUser);
  assert.equal(summary.tls?.protocol, 'TLSv1.3');
  return summary;
}

/** A refused delivery: the client failed (not by timeout) and nothing was stored. */
export function expectRefused(server: InteropServer, before: Set<string>, r: PeerResult, what: string): void {
  assert.equal(r.timedOut, false, `${what}: timed out`);
  assert.notEqual(r.code, 0, `${what}: exited 0 although the certificate is not from its CA\n${r.stderr}`);
  assert.equal(server.ids().size, before.size, `${what}: a message was stored`);
}

/**
 * What postseal puts before the client's bytes: one Received header and, for mail received on the
 * mx listener, one Authentication-Results header with our authserv-id; each may be folded.
 */
export const OUR_PREFIX = /^Received: [^\r\n]*(?:\r\n[ \t][^\r\n]*)*\r\n(?:Authentication-Results: mail\.postseal\.test;[^\r\n]*(?:\r\n[ \t][^\r\n]*)*\r\n)?$/;
