/**
 * Hostile clients against a real `postseal serve` child process: the server's memory is
 * read from /proc/PID/status (VmRSS) around a bounded attack, and slot-holding tricks must end
 * with the server closing the connection. Each attack is bounded in bytes and time; nothing
 * asserts on durations (the waits are events with generous deadlines).
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { killAll, startServeChild, tempDirs, type ServeChild } from '../cli/child.js';

const dirs = tempDirs();
after(() => {
  killAll();
  dirs.cleanup();
});

function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, 'VmRSS in /proc status');
  return Number(m[1]) * 1024;
}

/** `serve` with only the listeners given, a config file with these limits, self-signed TLS. */
async function serveWith(config: Record<string, unknown>, listeners = 1): Promise<ServeChild> {
  const dir = dirs.make('postseal-hostile-');
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify({ dataDir: join(dir, 'data'), log: { level: 'info' }, ...config }));
  return startServeChild(['--config', file], { listeners });
}

const mxOnly = { mx: { address: '127.0.0.1:0' }, submission: 'off', submissions: 'off' };

function connect(port: number, localAddress = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress }, () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Collects what the server sends; resolves `closed` with it once the server closes. */
function collect(s: net.Socket): { text(): string; closed: Promise<string>; waitFor(re: RegExp, ms?: number): Promise<string> } {
  let text = '';
  const wakers = new Set<() => void>();
  s.on('data', (b: Buffer) => {
    text += b.toString('latin1');
    for (const w of [...wakers]) w();
  });
  const closed = new Promise<string>((resolve) => {
    s.on('close', () => {
      resolve(text);
      for (const w of [...wakers]) w();
    });
    s.on('error', () => undefined);
  });
  return {
    text: () => text,
    closed,
    waitFor(re, ms = 10_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${re} within ${ms} ms; got ${JSON.stringify(text.slice(-300))}`)), ms);
        const check = (): void => {
          if (re.test(text)) {
            clearTimeout(timer);
            wakers.delete(check);
            resolve(text);
          } else if (s.destroyed) {
            clearTimeout(timer);
            wakers.delete(check);
            reject(new Error(`closed before ${re}; got ${JSON.stringify(text.slice(-300))}`));
          }
        };
        wakers.add(check);
        check();
      });
    },
  };
}

/** Resolves true if the socket closes within ms, false otherwise. */
function closesWithin(closed: Promise<unknown>, ms: number): Promise<boolean> {
  return Promise.race([closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref())]);
}

/** Writes `chunk` again and again, waiting for 'drain' as a polite writer would, until `ms` pass. */
async function floodFor(s: net.Socket, chunk: Buffer, ms: number): Promise<number> {
  const end = Date.now() + ms;
  let sent = 0;
  while (Date.now() < end && !s.destroyed) {
    if (!s.write(chunk)) {
      const drained = await Promise.race([
        new Promise<boolean>((r) => s.once('drain', () => r(true))),
        new Promise<boolean>((r) => setTimeout(() => r(false), Math.max(1, end - Date.now())).unref()),
      ]);
      if (!drained) break;
    }
    sent += chunk.length;
  }
  return sent;
}

function dataDirOf(srv: ServeChild): string {
  const arg = srv.child.spawnargs.find((a) => a.endsWith('config.json'));
  assert.ok(arg, 'config path in the child arguments');
  return join(arg.slice(0, -'config.json'.length), 'data');
}

/** Writes `total` bytes of `chunk` repeats with backpressure; resolves with the bytes written. */
async function sendBounded(s: net.Socket, chunk: Buffer, total: number, ms: number): Promise<number> {
  const end = Date.now() + ms;
  let sent = 0;
  while (sent < total && Date.now() < end && !s.destroyed) {
    const piece = chunk.subarray(0, Math.min(chunk.length, total - sent));
    sent += piece.length;
    if (!s.write(piece)) await new Promise<void>((r) => s.once('drain', () => r()));
  }
  // Everything handed to the kernel has been read by the server once the send buffer is empty.
  while (s.writableLength > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  return sent;
}

async function waitUntil(check: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('hostile clients', { concurrency: false }, () => {
  test('pipelined NOOPs whose replies are never read: memory stays bounded, the client is dropped', async () => {
    // Before the fix the server queued every reply: RSS grew ~95 MB/s under this attack.
    const srv = await serveWith({ listeners: mxOnly, limits: { commandTimeoutMs: 3000 } });
    const pid = srv.child.pid ?? 0;
    const attacker = await connect(srv.port('mx'));
    attacker.pause(); // never read a reply
    const closed = new Promise<void>((r) => attacker.on('close', () => r()));
    attacker.on('error', () => undefined);
    const before = rssBytes(pid);
    const sent = await floodFor(attacker, Buffer.from('NOOP\r\n'.repeat(10_000)), 2500);
    const grown = rssBytes(pid) - before;
    // The server read at most what fits in its buffers, then stopped reading: the flood stalls.
    assert.ok(sent < 64 * 1024 * 1024, `the server stopped reading (sent ${sent} bytes)`);
    assert.ok(grown < 40 * 1024 * 1024, `server RSS grew ${(grown / 1048576).toFixed(1)} MB under the flood`);
    // Another client is served meanwhile.
    const other = await connect(srv.port('mx'));
    const o = collect(other);
    await o.waitFor(/^220 /m);
    other.end('QUIT\r\n');
    // The attacker, blocked with nothing read or written, meets the idle timeout and is cut off.
    assert.equal(await closesWithin(closed, 20_000), true, 'the non-reading client was dropped');
    srv.signal('SIGTERM');
    await srv.waitExit();
  });

  test('many DATA bodies that never end: memory stays bounded, bodies go to disk and are removed when the clients leave', async () => {
    // Before the fix every body was held whole in memory: 200 × 32 MB took RSS from 87 MB to 6.6 GB.
    const srv = await serveWith({ listeners: mxOnly, limits: { maxConnectionsPerIp: 1000 } });
    const pid = srv.child.pid ?? 0;
    const bodies = join(dataDirOf(srv), 'bodies');
    const conns = 40;
    const perConn = 8 * 1024 * 1024;
    const socks: net.Socket[] = [];
    try {
      for (let i = 0; i < conns; i++) {
        const s = await connect(srv.port('mx'));
        socks.push(s);
        const c = collect(s);
        await c.waitFor(/^220 /m);
        s.write('EHLO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<postmaster>\r\nDATA\r\n');
        await c.waitFor(/^354 /m);
      }
      const before = rssBytes(pid);
      const line = Buffer.from(`${'x'.repeat(1022)}\r\n`.repeat(64));
      const sent = await Promise.all(socks.map((s) => sendBounded(s, line, perConn, 60_000)));
      assert.equal(sent.reduce((a, b) => a + b, 0), conns * perConn, 'every body was read by the server');
      const grown = rssBytes(pid) - before;
      assert.ok(grown < 120 * 1024 * 1024, `server RSS grew ${(grown / 1048576).toFixed(1)} MB while holding ${(conns * perConn) / 1048576} MB of unfinished bodies`);
      assert.equal(readdirSync(bodies).length, conns, 'each unfinished body is a spool file');
    } finally {
      for (const s of socks) s.destroy();
    }
    // The sessions end: their spool files go, and their memory with them.
    await waitUntil(() => readdirSync(bodies).length === 0, 15_000, 'spool files removed after the clients left');
    srv.signal('SIGTERM');
    await srv.waitExit();
  });

  test('a command line trickled one byte at a time is cut off by the command timeout counted from its first byte', async () => {
    const srv = await serveWith({ listeners: mxOnly, limits: { commandTimeoutMs: 1500 } });
    const s = await connect(srv.port('mx'));
    const c = collect(s);
    await c.waitFor(/^220 /m);
    // One byte every 200 ms: each byte would restart an idle timer, never a first-byte deadline.
    const line = `EHLO ${'x'.repeat(200)}`;
    let i = 0;
    const timer = setInterval(() => {
      if (s.destroyed) return;
      s.write(line[i % line.length] ?? 'x');
      i++;
    }, 200);
    try {
      const text = await Promise.race([c.closed, new Promise<string>((_, rej) => setTimeout(() => rej(new Error('still open after 15 s of trickling')), 15_000).unref())]);
      assert.match(text, /^421 4\.4\.2 Command line not completed in time/m);
    } finally {
      clearInterval(timer);
    }
    srv.signal('SIGTERM');
    await srv.waitExit();
  });

  test('message data trickled below the minimum rate is cut off', async () => {
    const srv = await serveWith({ listeners: mxOnly, limits: { dataTimeoutMs: 1500, minDataRate: 500 } });
    const s = await connect(srv.port('mx'));
    const c = collect(s);
    await c.waitFor(/^220 /m);
    s.write('EHLO client.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<postmaster>\r\nDATA\r\n');
    await c.waitFor(/^354 /m);
    const timer = setInterval(() => {
      if (!s.destroyed) s.write('x');
    }, 100);
    try {
      const text = await Promise.race([c.closed, new Promise<string>((_, rej) => setTimeout(() => rej(new Error('still open after 15 s of trickling')), 15_000).unref())]);
      assert.match(text, /^421 4\.4\.2 Message data arriving too slowly/m);
    } finally {
      clearInterval(timer);
    }
    srv.signal('SIGTERM');
    await srv.waitExit();
  });

  test('a flood on the mx port does not lock out submission and submissions (per-listener caps)', async () => {
    const srv = await serveWith(
      {
        listeners: {
          mx: { address: '127.0.0.1:0', maxConnections: 20 },
          submission: { address: '127.0.0.1:0' },
          submissions: { address: '127.0.0.1:0' },
        },
        limits: { maxConnections: 40, maxConnectionsPerIp: 1000 },
      },
      3,
    );
    const flood: net.Socket[] = [];
    try {
      for (let i = 0; i < 20; i++) {
        const s = await connect(srv.port('mx'));
        flood.push(s);
        await collect(s).waitFor(/^220 /m);
      }
      // The 21st on mx is refused...
      const extra = await connect(srv.port('mx'));
      const text = await collect(extra).closed;
      assert.match(text, /^421 4\.7\.0 Too many connections/m);
      // ...while submission still greets.
      const sub = await connect(srv.port('submission'));
      const c = collect(sub);
      await c.waitFor(/^220 /m);
      sub.end('QUIT\r\n');
      // The log says which cap refused.
      const line = await srv.waitForLog((l) => typeof l.result === 'string' && l.result.includes('listener connection limit'));
      assert.equal(line.listener, 'mx');
    } finally {
      for (const s of flood) s.destroy();
    }
    srv.signal('SIGTERM');
    await srv.waitExit();
  });

  test('per-client connection cap counts 127.0.0.2 apart from 127.0.0.3', async () => {
    const srv = await serveWith({ listeners: mxOnly, limits: { maxConnectionsPerIp: 3 } });
    const held: net.Socket[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const s = await connect(srv.port('mx'), '127.0.0.2');
        held.push(s);
        await collect(s).waitFor(/^220 /m);
      }
      const fourth = await connect(srv.port('mx'), '127.0.0.2');
      assert.match(await collect(fourth).closed, /^421 4\.7\.0/m);
      const other = await connect(srv.port('mx'), '127.0.0.3');
      held.push(other);
      await collect(other).waitFor(/^220 /m);
    } finally {
      for (const s of held) s.destroy();
    }
    srv.signal('SIGTERM');
    await srv.waitExit();
  });
});
