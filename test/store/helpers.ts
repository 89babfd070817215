/**
 * Test helpers for the store: temp data directories removed in after(), message builders, and
 * a self-checking message body (an X-Checksum header over the payload) for crash tests.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IncomingMessage } from '../../src/types.js';
import { newMessageId } from '../../src/store/index.js';

export function tempDirs(): { make(): string; track(dir: string): void; cleanup(): void } {
  const dirs: string[] = [];
  return {
    make() {
      const d = mkdtempSync(join(tmpdir(), 'postseal-store-'));
      dirs.push(d);
      return d;
    },
    track(dir: string) {
      dirs.push(dir);
    },
    cleanup() {
      for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    },
  };
}

/** Includes an `id` (as the session assigns one) when IncomingMessage has that field. */
export function makeMessage(overrides: Partial<IncomingMessage> = {}): IncomingMessage {
  const base = {
    id: newMessageId(),
    mailFrom: 'sender@example.net',
    localRecipients: ['alice@example.org'],
    remoteRecipients: [],
    data: Buffer.from('Subject: hi\r\n\r\nhello\r\n'),
    receivedAt: new Date('2025-01-02T03:04:05.678Z'),
    listener: 'mx',
    clientAddress: '192.0.2.1',
    heloName: 'client.example.net',
    authUser: null,
    tls: null,
    requireTls: false,
    body: null,
    smtpUtf8: false,
    envId: null,
    ret: null,
  };
  return { ...base, ...overrides };
}

/** A message body that carries the SHA-256 of its own payload. */
export function checksummedBody(payloadBytes: number): Buffer {
  const payload = randomBytes(payloadBytes).toString('base64');
  const sum = createHash('sha256').update(payload).digest('hex');
  return Buffer.from(`X-Checksum: ${sum}\r\nSubject: crash test\r\n\r\n${payload}`);
}

/** True when the body's X-Checksum matches its payload. */
export function bodyIntact(data: Buffer): boolean {
  const text = data.toString('latin1');
  const m = /^X-Checksum: ([0-9a-f]{64})\r\nSubject: crash test\r\n\r\n/.exec(text);
  if (m === null) return false;
  const payload = text.slice(m[0].length);
  return createHash('sha256').update(payload).digest('hex') === m[1];
}
