/**
 * Interop: `openssl s_client` is the TLS layer, we type the SMTP. `-starttls smtp` does the
 * EHLO/STARTTLS exchange itself (OpenSSL's code, not ours), plain `-connect` is implicit TLS for
 * submissions; both verify our certificate (-CAfile, -verify_hostname, -verify_return_error).
 * After TLS we speak one command at a time, waiting for each reply (no pipelining past DATA),
 * send the message dot-stuffed by hand, and expect the store to hold our Received header +
 * exactly the unstuffed bytes.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { expectDelivered, findPeer, makeMessage, RCPT, startInteropServer, USER, type InteropServer } from '../helpers/peers.js';

/** s_client as a line-oriented SMTP peer; SIGKILL after 30 s so a stuck conversation ends. */
class SClient {
  private lines: string[] = [];
  private partial = '';
  private waiter: (() => void) | null = null;
  private stderr = '';
  readonly exited: Promise<{ code: number | null; timedOut: boolean }>;
  private child: ChildProcessWithoutNullStreams;

  constructor(bin: string, args: string[]) {
    this.child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      this.child.kill('SIGKILL');
    }, 30_000);
    this.child.stdout.on('data', (d: Buffer) => {
      const parts = (this.partial + d.toString('latin1')).split('\n');
      this.partial = parts.pop() ?? '';
      this.lines.push(...parts.map((l) => l.replace(/\r$/, '')));
      this.waiter?.();
    });
    this.child.stderr.on('data', (d: Buffer) => (this.stderr += d.toString('utf8')));
    this.child.stdin.on('error', () => undefined);
    this.exited = new Promise((resolve) => {
      this.child.once('close', (code) => {
        clearTimeout(timer);
        this.waiter?.();
        resolve({ code, timedOut });
      });
    });
  }

  /** Reads one whole reply (multi-line: up to the "NNN " line) and checks its code. */
  async expect(code: number): Promise<string[]> {
    const reply: string[] = [];
    for (;;) {
      const line = this.lines.shift();
      if (line === undefined) {
        if (this.child.exitCode !== null || this.child.signalCode !== null) assert.fail(`s_client exited while waiting for ${code}; got ${JSON.stringify(reply)}\n${this.stderr}`);
        await new Promise<void>((resolve) => (this.waiter = resolve));
        this.waiter = null;
        continue;
      }
      reply.push(line);
      if (/^\d{3} /.test(line) || /^\d{3}$/.test(line)) break;
    }
    assert.match(reply[reply.length - 1] ?? '', new RegExp(`^${code}[ ]?`), `expected ${code}, got ${JSON.stringify(reply)}`);
    return reply;
  }

  send(data: string | Buffer): void {
    this.child.stdin.write(data);
  }

  async command(line: string, code: number): Promise<string[]> {
    this.send(line + '\r\n');
    return this.expect(code);
  }

  async finish(): Promise<void> {
    this.child.stdin.end();
    const { code, timedOut } = await this.exited;
    assert.equal(timedOut, false, 's_client timed out');
    assert.equal(code, 0, `s_client exit code ${String(code)}\n${this.stderr}`);
  }
}

let server: InteropServer;
before(async () => {
  server = await startInteropServer();
});
after(async () => {
  await server.close();
});

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

const cases = [
  { name: '-starttls smtp to mx, no AUTH', listener: 'mx', auth: null },
  { name: '-starttls smtp to submission, AUTH PLAIN', listener: 'submission', auth: 'PLAIN' },
  { name: '-starttls smtp to submission, AUTH LOGIN', listener: 'submission', auth: 'LOGIN' },
  { name: '-connect (implicit TLS) to submissions, AUTH PLAIN', listener: 'submissions', auth: 'PLAIN' },
] as const;

for (const c of cases) {
  test(`openssl s_client: ${c.name}`, async (t) => {
    const bin = await findPeer(t, 'openssl');
    if (!bin) return;
    const msg = makeMessage(`openssl ${c.name}`);
    const implicit = c.listener === 'submissions';
    const s = new SClient(bin, [
      's_client', ...(implicit ? [] : ['-starttls', 'smtp', '-name', 'openssl.interop.test']),
      '-connect', `127.0.0.1:${server.port(c.listener)}`, '-servername', 'localhost',
      '-CAfile', server.caFile, '-verify_hostname', 'localhost', '-verify_return_error', '-quiet',
    ]);
    const ids = server.ids();
    if (implicit) await s.expect(220);
    await s.command('EHLO openssl.interop.test', 250);
    if (c.auth === 'PLAIN') await s.command(`AUTH PLAIN ${b64(`\0${USER.address}\0${USER.password}`)}`, 235);
    if (c.auth === 'LOGIN') {
      await s.command('AUTH LOGIN', 334);
      await s.command(b64(USER.address), 334);
      await s.command(b64(USER.password), 235);
    }
    await s.command(`MAIL FROM:<${msg.from}>`, 250);
    await s.command(`RCPT TO:<${RCPT}>`, 250);
    await s.command('DATA', 354);
    // RFC 5321 §4.5.2: a line starting with "." gets one more "."; the server must remove it.
    s.send(Buffer.from(msg.bytes.toString('latin1').replace(/(^|\r\n)\./g, '$1..') + '.\r\n', 'latin1'));
    await s.expect(250);
    await s.command('QUIT', 221);
    await s.finish();
    await expectDelivered(server, ids, msg, { listener: c.listener, authUser: c.auth ? USER.address : null });
  });
}

test('openssl s_client: refuses our certificate when it trusts another CA (-starttls smtp to mx)', async (t) => {
  const bin = await findPeer(t, 'openssl');
  if (!bin) return;
  const ids = server.ids();
  const s = new SClient(bin, [
    's_client', '-starttls', 'smtp', '-connect', `127.0.0.1:${server.port('mx')}`, '-servername', 'localhost',
    '-CAfile', server.foreignCaFile, '-verify_hostname', 'localhost', '-verify_return_error', '-quiet',
  ]);
  s.send('EHLO openssl.interop.test\r\n');
  const { code, timedOut } = await s.exited;
  assert.equal(timedOut, false);
  assert.notEqual(code, 0);
  assert.equal(server.ids().size, ids.size);
});
