/**
 * Waiting in tests without sleeps as synchronisation: poll a condition until it holds (with a
 * deadline), and a TCP port on 127.0.0.1 that nothing listens on.
 */
import { createServer } from 'node:net';

/** Polls f every `everyMs` until it returns a truthy value (that value); fails after `ms`. */
export async function until<T>(what: string, f: () => T | null | undefined | false | Promise<T | null | undefined | false>, ms = 20_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A TCP port nothing listens on: bound on 127.0.0.1:0, then closed. */
export async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
